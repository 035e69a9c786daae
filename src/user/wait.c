/* Objects and waits of the user-mode side: event objects, NtWaitFor*, alertable waits with user
 * APCs and alerts, NtClose, NtDuplicateObject and ObOpenObjectByPointer.
 *
 * User APCs (the completion routine of NtReadFile & co., or NtQueueApcThread's) run in their
 * target thread the next time it waits alertably — as in Windows. The per-thread queue lives in
 * ETHREAD.User (guarded by IrpListLock, see user.h); queuing sets the thread's ApcEvent. Kernel
 * waits learn about both through ke's alert hook (alert_state below): an alertable kernel wait
 * returns STATUS_ALERTED or (UserMode) STATUS_USER_APC without running anything, and includes
 * ApcEvent so a wait already in progress breaks too; user_wait then runs the APCs. */
#include "trace/trace.h"
#include "user/user.h"

/* ---- the generic mapping per object type */

ACCESS_MASK user_map_generic(const ob_type *type, ACCESS_MASK a)
{
    ACCESS_MASK r = a & ~(ACCESS_MASK)(GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL | MAXIMUM_ALLOWED);
    if (type == &user_file_type) {
        if (a & GENERIC_READ) r |= FILE_GENERIC_READ;
        if (a & GENERIC_WRITE) r |= FILE_GENERIC_WRITE;
        if (a & GENERIC_EXECUTE) r |= FILE_GENERIC_EXECUTE;
        if (a & (GENERIC_ALL | MAXIMUM_ALLOWED)) r |= FILE_ALL_ACCESS;
    } else if (type == (const ob_type *)*ExEventObjectType) {
        if (a & GENERIC_READ) r |= STANDARD_RIGHTS_READ | EVENT_QUERY_STATE;
        if (a & GENERIC_WRITE) r |= STANDARD_RIGHTS_WRITE | EVENT_MODIFY_STATE;
        if (a & GENERIC_EXECUTE) r |= STANDARD_RIGHTS_EXECUTE | SYNCHRONIZE;
        if (a & (GENERIC_ALL | MAXIMUM_ALLOWED)) r |= EVENT_ALL_ACCESS;
    } else if (a & (GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL | MAXIMUM_ALLOWED)) {
        r |= THREAD_ALL_ACCESS; /* threads and the rest: generic rights grant everything */
    }
    return r;
}

/* ---- user APCs and alerts */

void user_apc_queue_locked(PETHREAD e, user_apc *apc)
{
    InsertTailList(&e->User.ApcList, &apc->link);
    KeSetEvent(&e->User.ApcEvent, IO_NO_INCREMENT, FALSE); /* IrpListLock -> dispatcher lock */
}

static void run_apc(user_apc *apc)
{
    if (apc->io) ((PIO_APC_ROUTINE)apc->routine)(apc->arg1, (PIO_STATUS_BLOCK)apc->arg2, 0);
    else ((PPS_APC_ROUTINE)apc->routine)(apc->arg1, apc->arg2, apc->arg3);
    plat_free(apc);
}

/* An alert wins over queued APCs (they stay queued for the next alertable wait); once APCs
 * started running, an alert arriving meanwhile waits for the next one. */
NTSTATUS user_apc_deliver(PETHREAD self)
{
    bool ran = false;
    for (;;) {
        KIRQL irql = user_lock(&self->IrpListLock);
        bool alerted = !ran && self->User.Alerted;
        if (alerted) self->User.Alerted = FALSE;
        user_apc *apc = NULL;
        if (!alerted && !IsListEmpty(&self->User.ApcList))
            apc = CONTAINING_RECORD(RemoveHeadList(&self->User.ApcList), user_apc, link);
        user_unlock(&self->IrpListLock, irql);
        if (alerted) return STATUS_ALERTED;
        if (!apc) return ran ? STATUS_USER_APC : STATUS_SUCCESS;
        run_apc(apc); /* no lock held: the routine may issue I/O or wait */
        ran = true;
    }
}

void user_apc_rundown(PETHREAD e)
{
    LIST_ENTRY gone;
    InitializeListHead(&gone);
    KIRQL irql = user_lock(&e->IrpListLock);
    e->User.RunDown = TRUE;
    while (!IsListEmpty(&e->User.ApcList)) InsertTailList(&gone, RemoveHeadList(&e->User.ApcList));
    user_unlock(&e->IrpListLock, irql);
    while (!IsListEmpty(&gone)) plat_free(CONTAINING_RECORD(RemoveHeadList(&gone), user_apc, link));
}

/* ---- waits */

/* ke's alert hook (ke.h): what breaks the calling thread's alertable kernel wait. The ETHREAD is
 * not created here: a thread that never had one was never alerted nor sent an APC. Threads
 * that are not user threads (system threads, DPC and other runtime service threads) have no
 * user APCs: only an alert breaks their waits. */
static NTSTATUS alert_state(KPROCESSOR_MODE mode, DISPATCHER_HEADER **wake)
{
    plat_thread *t = plat_self();
    PETHREAD e = t->ext[PLAT_EXT_PS];
    *wake = NULL;
    if (!e) return STATUS_SUCCESS;
    bool user_apcs = mode == UserMode && !e->SystemThread && !t->system;
    NTSTATUS st = STATUS_SUCCESS;
    KIRQL irql = user_lock(&e->IrpListLock);
    if (e->User.Alerted) {
        e->User.Alerted = FALSE; /* an alert wins over queued APCs, as in user_apc_deliver */
        st = STATUS_ALERTED;
    } else if (user_apcs && !IsListEmpty(&e->User.ApcList)) {
        st = STATUS_USER_APC; /* left queued: user_wait runs it */
    }
    user_unlock(&e->IrpListLock, irql);
    /* Queuing and NtAlertThread set ApcEvent after changing what was read above (both under
     * IrpListLock): whatever arrives after this answer leaves ApcEvent signalled for ke. */
    *wake = &e->User.ApcEvent.Header;
    return st;
}

/* Before main: ke reads the hook without synchronisation (ke.h). */
__attribute__((constructor)) static void register_alert_hook(void) { ke_set_alert_hook(alert_state); }

static void remaining(int64_t deadline, LARGE_INTEGER *rel)
{
    int64_t left = deadline - plat_now_ns();
    rel->QuadPart = left > 0 ? -(left + 99) / 100 : 0;
}

/* An alertable wait in NT order (ke does it: the objects first — a wait they satisfy at once
 * returns their status and leaves queued APCs and a pending alert for later; then the alert,
 * then queued APCs, with a zero timeout too); here STATUS_USER_APC means "deliver": the APCs
 * run (user_apc_deliver; an alert arriving meanwhile wins) and their status is returned. No
 * objects (NtDelayExecution): STATUS_TIMEOUT when the time is up. */
NTSTATUS user_wait(ULONG count, PVOID objects[], WAIT_TYPE type, BOOLEAN alertable, PLARGE_INTEGER timeout)
{
    KWAIT_BLOCK blocks[MAXIMUM_WAIT_OBJECTS];
    if (!alertable && count == 1) return KeWaitForSingleObject(objects[0], UserRequest, UserMode, FALSE, timeout);
    if (!alertable) return KeWaitForMultipleObjects(count, objects, type, UserRequest, UserMode, FALSE, timeout, blocks);
    PETHREAD self = PsGetCurrentThread();
    int64_t deadline = ke_timeout_to_deadline(timeout);
    LARGE_INTEGER rel, *tmo = timeout;
    for (;;) {
        NTSTATUS st = count ? KeWaitForMultipleObjects(count, objects, type, UserRequest, UserMode, TRUE, tmo, blocks)
                            : KeDelayExecutionThread(UserMode, TRUE, tmo);
        if (!count && st == STATUS_SUCCESS) return STATUS_TIMEOUT;
        if (st != STATUS_USER_APC) return st;
        st = user_apc_deliver(self);
        if (st != STATUS_SUCCESS) return st;
        /* Nothing ran (the queue was run down meanwhile): wait again for the time left. */
        if (deadline != PLAT_FOREVER) remaining(deadline, tmo = &rel);
    }
}

/* The dispatcher object a handle's object waits on: events, semaphores and threads are
 * dispatcher objects; a file object waits on FileObject->Event. */
static NTSTATUS waitable(PVOID body, PVOID *dispatcher)
{
    const ob_type *t = ob_type_of(body);
    if (t == &user_file_type) *dispatcher = &((PFILE_OBJECT)body)->Event;
    else if (t == (const ob_type *)*ExEventObjectType || t == (const ob_type *)*ExSemaphoreObjectType ||
             t == (const ob_type *)*PsThreadType)
        *dispatcher = body;
    else return STATUS_OBJECT_TYPE_MISMATCH;
    return STATUS_SUCCESS;
}

static NTSTATUS ref_waitable(HANDLE h, KPROCESSOR_MODE mode, PVOID *body, PVOID *dispatcher)
{
    NTSTATUS st;
    if (h == NtCurrentThread()) {
        *body = PsGetCurrentThread();
        ObReferenceObject(*body);
    } else if (!NT_SUCCESS(st = ObReferenceObjectByHandle(h, SYNCHRONIZE, NULL, mode, body, NULL))) {
        return st;
    }
    st = waitable(*body, dispatcher);
    if (!NT_SUCCESS(st)) ObDereferenceObject(*body);
    return st;
}

static NTSTATUS wait_single(HANDLE h, BOOLEAN alertable, PLARGE_INTEGER timeout, KPROCESSOR_MODE mode)
{
    user_init_once();
    PVOID body, obj;
    NTSTATUS st = ref_waitable(h, mode, &body, &obj);
    if (!NT_SUCCESS(st)) return st;
    st = user_wait(1, &obj, WaitAny, alertable, timeout);
    ObDereferenceObject(body);
    return st;
}

NTSTATUS NtWaitForSingleObject(HANDLE Handle, BOOLEAN Alertable, PLARGE_INTEGER Timeout)
{
    return wait_single(Handle, Alertable, Timeout, UserMode);
}

NTSTATUS ZwWaitForSingleObject(HANDLE Handle, BOOLEAN Alertable, PLARGE_INTEGER Timeout)
{
    return wait_single(Handle, Alertable, Timeout, KernelMode);
}

static NTSTATUS wait_multiple(ULONG Count, HANDLE Handles[], WAIT_TYPE WaitType, BOOLEAN Alertable,
                              PLARGE_INTEGER Timeout, KPROCESSOR_MODE mode)
{
    user_init_once();
    if (Count == 0 || Count > MAXIMUM_WAIT_OBJECTS) return STATUS_INVALID_PARAMETER_1;
    if (!Handles) return STATUS_ACCESS_VIOLATION;
    if (WaitType != WaitAll && WaitType != WaitAny) return STATUS_INVALID_PARAMETER_3;
    PVOID bodies[MAXIMUM_WAIT_OBJECTS], objs[MAXIMUM_WAIT_OBJECTS];
    NTSTATUS st = STATUS_SUCCESS;
    ULONG n = 0;
    for (; n < Count && NT_SUCCESS(st); n++) st = ref_waitable(Handles[n], mode, &bodies[n], &objs[n]);
    if (!NT_SUCCESS(st)) n--; /* the failed one holds nothing */
    else st = user_wait(Count, objs, WaitType, Alertable, Timeout);
    for (ULONG i = 0; i < n; i++) ObDereferenceObject(bodies[i]);
    return st;
}

NTSTATUS NtWaitForMultipleObjects(ULONG Count, HANDLE Handles[], WAIT_TYPE WaitType, BOOLEAN Alertable,
                                  PLARGE_INTEGER Timeout)
{
    return wait_multiple(Count, Handles, WaitType, Alertable, Timeout, UserMode);
}

NTSTATUS ZwWaitForMultipleObjects(ULONG Count, HANDLE Handles[], WAIT_TYPE WaitType, BOOLEAN Alertable,
                                  PLARGE_INTEGER Timeout)
{
    return wait_multiple(Count, Handles, WaitType, Alertable, Timeout, KernelMode);
}

NTSTATUS NtDelayExecution(BOOLEAN Alertable, PLARGE_INTEGER DelayInterval)
{
    user_init_once();
    if (!DelayInterval) return STATUS_ACCESS_VIOLATION;
    if (!Alertable) return KeDelayExecutionThread(UserMode, FALSE, DelayInterval);
    /* No object: an alertable wait on the APC event alone (APCs, an alert, or the timeout). */
    NTSTATUS st = user_wait(0, NULL, WaitAny, TRUE, DelayInterval);
    return st == STATUS_TIMEOUT ? STATUS_SUCCESS : st;
}

/* ---- threads: APCs and alerts */

NTSTATUS user_ref_thread(HANDLE h, ACCESS_MASK need, KPROCESSOR_MODE mode, PETHREAD *out)
{
    if (h == NtCurrentThread()) {
        *out = PsGetCurrentThread();
        ObReferenceObject(*out);
        return STATUS_SUCCESS;
    }
    PVOID body;
    NTSTATUS st = ObReferenceObjectByHandle(h, need, *PsThreadType, mode, &body, NULL);
    if (NT_SUCCESS(st)) *out = body;
    return st;
}

NTSTATUS NtQueueApcThread(HANDLE ThreadHandle, PPS_APC_ROUTINE ApcRoutine, PVOID ApcArgument1,
                          PVOID ApcArgument2, PVOID ApcArgument3)
{
    user_init_once();
    if (!ApcRoutine) return STATUS_INVALID_PARAMETER;
    PETHREAD e;
    NTSTATUS st = user_ref_thread(ThreadHandle, THREAD_SET_CONTEXT, UserMode, &e);
    if (!NT_SUCCESS(st)) return st;
    user_apc *apc = plat_calloc(1, sizeof *apc);
    if (!apc) {
        ObDereferenceObject(e);
        return STATUS_NO_MEMORY;
    }
    *apc = (user_apc){{NULL, NULL}, false, (void (*)(void))ApcRoutine, ApcArgument1, ApcArgument2, ApcArgument3};
    KIRQL irql = user_lock(&e->IrpListLock);
    bool gone = e->User.RunDown;
    if (!gone) user_apc_queue_locked(e, apc);
    user_unlock(&e->IrpListLock, irql);
    if (gone) plat_free(apc);
    ObDereferenceObject(e);
    return gone ? STATUS_THREAD_IS_TERMINATING : STATUS_SUCCESS;
}

NTSTATUS NtAlertThread(HANDLE ThreadHandle)
{
    user_init_once();
    PETHREAD e;
    NTSTATUS st = user_ref_thread(ThreadHandle, THREAD_ALERT, UserMode, &e);
    if (!NT_SUCCESS(st)) return st;
    KIRQL irql = user_lock(&e->IrpListLock);
    e->User.Alerted = TRUE;
    KeSetEvent(&e->User.ApcEvent, IO_NO_INCREMENT, FALSE); /* IrpListLock -> dispatcher lock */
    user_unlock(&e->IrpListLock, irql);
    ObDereferenceObject(e);
    return STATUS_SUCCESS;
}

NTSTATUS NtTestAlert(VOID)
{
    user_init_once();
    NTSTATUS st = user_apc_deliver(PsGetCurrentThread());
    return st == STATUS_USER_APC ? STATUS_SUCCESS : st;
}

/* ---- events */

static NTSTATUS create_event(PHANDLE EventHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                             EVENT_TYPE EventType, BOOLEAN InitialState)
{
    user_init_once();
    if (!EventHandle) return STATUS_ACCESS_VIOLATION;
    if (ObjectAttributes && ObjectAttributes->ObjectName) return STATUS_NOT_SUPPORTED; /* named events */
    if (EventType != NotificationEvent && EventType != SynchronizationEvent) return STATUS_INVALID_PARAMETER;
    const ob_type *type = (const ob_type *)*ExEventObjectType;
    PKEVENT ev = ob_create(type, sizeof *ev);
    if (!ev) return STATUS_INSUFFICIENT_RESOURCES;
    KeInitializeEvent(ev, EventType, InitialState);
    NTSTATUS st = ob_insert_handle(ev, user_map_generic(type, DesiredAccess),
                                   ObjectAttributes ? ObjectAttributes->Attributes : 0, EventHandle);
    ObDereferenceObject(ev); /* the handle holds its own reference */
    return st;
}

NTSTATUS NtCreateEvent(PHANDLE EventHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                       EVENT_TYPE EventType, BOOLEAN InitialState)
{
    return create_event(EventHandle, DesiredAccess, ObjectAttributes, EventType, InitialState);
}

NTSTATUS ZwCreateEvent(PHANDLE EventHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                       EVENT_TYPE EventType, BOOLEAN InitialState)
{
    return create_event(EventHandle, DesiredAccess, ObjectAttributes, EventType, InitialState);
}

typedef enum event_op { EV_SET, EV_RESET, EV_CLEAR } event_op;

static NTSTATUS event_op_on(HANDLE h, event_op op, PLONG previous, KPROCESSOR_MODE mode)
{
    PVOID ev;
    NTSTATUS st = ObReferenceObjectByHandle(h, EVENT_MODIFY_STATE, *ExEventObjectType, mode, &ev, NULL);
    if (!NT_SUCCESS(st)) return st;
    LONG prev = op == EV_SET ? KeSetEvent(ev, IO_NO_INCREMENT, FALSE) : KeResetEvent(ev);
    if (previous && op != EV_CLEAR) *previous = prev;
    ObDereferenceObject(ev);
    return STATUS_SUCCESS;
}

NTSTATUS NtSetEvent(HANDLE EventHandle, PLONG PreviousState) { return event_op_on(EventHandle, EV_SET, PreviousState, UserMode); }
NTSTATUS ZwSetEvent(HANDLE EventHandle, PLONG PreviousState) { return event_op_on(EventHandle, EV_SET, PreviousState, KernelMode); }
NTSTATUS NtResetEvent(HANDLE EventHandle, PLONG PreviousState) { return event_op_on(EventHandle, EV_RESET, PreviousState, UserMode); }
NTSTATUS ZwResetEvent(HANDLE EventHandle, PLONG PreviousState) { return event_op_on(EventHandle, EV_RESET, PreviousState, KernelMode); }
NTSTATUS NtClearEvent(HANDLE EventHandle) { return event_op_on(EventHandle, EV_CLEAR, NULL, UserMode); }
NTSTATUS ZwClearEvent(HANDLE EventHandle) { return event_op_on(EventHandle, EV_CLEAR, NULL, KernelMode); }

/* ---- handles */

/* The timeline shows the closes of file handles (the ones that send IRPs). */
static bool is_file_handle(HANDLE h)
{
    PVOID body;
    if (!trace_enabled() || !NT_SUCCESS(ob_reference_handle(h, &user_file_type, &body, NULL))) return false;
    ObDereferenceObject(body);
    return true;
}

NTSTATUS NtClose(HANDLE Handle)
{
    bool traced = is_file_handle(Handle);
    if (traced) user_trace(TRACE_BEGIN, "NtClose", 0, "file handle %p", Handle);
    NTSTATUS st = ob_close_handle(Handle);
    if (traced) user_trace(TRACE_END, "NtClose", 0, "returns 0x%08X %s", (unsigned)st, user_status_name(st));
    return st;
}

static NTSTATUS duplicate(HANDLE SourceProcessHandle, HANDLE SourceHandle, HANDLE TargetProcessHandle,
                          PHANDLE TargetHandle, ACCESS_MASK DesiredAccess, ULONG HandleAttributes, ULONG Options)
{
    if (SourceProcessHandle != NtCurrentProcess() || TargetProcessHandle != NtCurrentProcess())
        return STATUS_INVALID_HANDLE; /* one process */
    if (!TargetHandle) return STATUS_ACCESS_VIOLATION;
    PVOID body;
    ACCESS_MASK granted;
    NTSTATUS st = ob_reference_handle(SourceHandle, NULL, &body, &granted);
    if (!NT_SUCCESS(st)) return st;
    ACCESS_MASK access = (Options & DUPLICATE_SAME_ACCESS) ? granted : user_map_generic(ob_type_of(body), DesiredAccess);
    st = ob_insert_handle(body, access, HandleAttributes, TargetHandle);
    ObDereferenceObject(body);
    if (NT_SUCCESS(st) && (Options & DUPLICATE_CLOSE_SOURCE)) ob_close_handle(SourceHandle);
    return st;
}

NTSTATUS NtDuplicateObject(HANDLE SourceProcessHandle, HANDLE SourceHandle, HANDLE TargetProcessHandle,
                           PHANDLE TargetHandle, ACCESS_MASK DesiredAccess, ULONG HandleAttributes, ULONG Options)
{
    return duplicate(SourceProcessHandle, SourceHandle, TargetProcessHandle, TargetHandle, DesiredAccess,
                     HandleAttributes, Options);
}

NTSTATUS ZwDuplicateObject(HANDLE SourceProcessHandle, HANDLE SourceHandle, HANDLE TargetProcessHandle,
                           PHANDLE TargetHandle, ACCESS_MASK DesiredAccess, ULONG HandleAttributes, ULONG Options)
{
    return duplicate(SourceProcessHandle, SourceHandle, TargetProcessHandle, TargetHandle, DesiredAccess,
                     HandleAttributes, Options);
}

NTSTATUS ObOpenObjectByPointer(PVOID Object, ULONG HandleAttributes, PACCESS_STATE PassedAccessState,
                               ACCESS_MASK DesiredAccess, POBJECT_TYPE ObjectType, KPROCESSOR_MODE AccessMode,
                               PHANDLE Handle)
{
    (void)PassedAccessState;
    (void)AccessMode;
    if (!Object || !Handle) return STATUS_INVALID_PARAMETER;
    if (ObjectType && ob_type_of(Object) != (const ob_type *)ObjectType) return STATUS_OBJECT_TYPE_MISMATCH;
    return ob_insert_handle(Object, user_map_generic(ob_type_of(Object), DesiredAccess), HandleAttributes, Handle);
}
