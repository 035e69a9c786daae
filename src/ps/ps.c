/* Threads and the process: PsCreateSystemThread, PsTerminateSystemThread, thread objects. */
#include "ps/ps.h"

#include "ke/ke.h"

static void thread_delete(void *body) { (void)body; }

const ob_type ps_thread_type = {"Thread", NULL, thread_delete};
static const ob_type process_type = {"Process", NULL, NULL};
static const ob_type event_type = {"Event", NULL, NULL};
static const ob_type semaphore_type = {"Semaphore", NULL, NULL};

static POBJECT_TYPE thread_type_ptr = (POBJECT_TYPE)&ps_thread_type;
static POBJECT_TYPE process_type_ptr = (POBJECT_TYPE)&process_type;
static POBJECT_TYPE event_type_ptr = (POBJECT_TYPE)&event_type;
static POBJECT_TYPE semaphore_type_ptr = (POBJECT_TYPE)&semaphore_type;
POBJECT_TYPE *PsThreadType = &thread_type_ptr;
POBJECT_TYPE *PsProcessType = &process_type_ptr;
POBJECT_TYPE *ExEventObjectType = &event_type_ptr;
POBJECT_TYPE *ExSemaphoreObjectType = &semaphore_type_ptr;

static struct _EPROCESS the_process = {{{ProcessObject, 0, 0, 0, 0, {NULL, NULL}}}, 4};

static PETHREAD new_ethread(void)
{
    PETHREAD e = ob_create(&ps_thread_type, sizeof *e);
    if (!e) return NULL;
    ke_init_dispatcher_header(&e->Tcb.Header, ThreadObject, 0);
    KeInitializeSpinLock(&e->IrpListLock);
    InitializeListHead(&e->IrpList);
    InitializeListHead(&e->User.ApcList);
    InitializeListHead(&e->User.Link);
    KeInitializeEvent(&e->User.ApcEvent, SynchronizationEvent, FALSE);
    e->ExitStatus = STATUS_PENDING;
    e->Cid.UniqueProcess = (HANDLE)(uintptr_t)the_process.UniqueProcessId;
    return e;
}

static void bind(PETHREAD e, plat_thread *t)
{
    e->Thread = t;
    e->Cid.UniqueThread = (HANDLE)(uintptr_t)(t->id * 4);
    t->ext[PLAT_EXT_PS] = e;
}

PETHREAD ps_thread_of(plat_thread *t)
{
    /* No lock: ext[PLAT_EXT_PS] is only touched by t itself (callers pass plat_self(); a system
     * thread binds its ETHREAD on its own first step). */
    PETHREAD e = t->ext[PLAT_EXT_PS];
    if (e) return e;
    e = new_ethread(); /* its one reference belongs to the running thread */
    if (e) bind(e, t);
    return e;
}

/* Runs last among exit hooks (registered before main), after the I/O layer has drained the
 * thread's IRPs: the thread object becomes signalled and the thread drops its reference. */
static void thread_exited(plat_thread *t)
{
    PETHREAD e = t->ext[PLAT_EXT_PS];
    if (!e) return;
    t->ext[PLAT_EXT_PS] = NULL;
    if (e->ExitStatus == STATUS_PENDING) e->ExitStatus = STATUS_SUCCESS;
    e->Thread = NULL;
    /* Written before the signal: a waiter it releases reads them after the dispatcher lock. */
    ke_signal_object(&e->Tcb.Header, 1);
    ObfDereferenceObject(e);
}

__attribute__((constructor)) static void register_exit_hook(void) { plat_on_thread_exit(thread_exited); }

static void system_thread_main(void *arg)
{
    PETHREAD e = arg;
    bind(e, plat_self());
    e->StartRoutine(e->StartContext);
    if (ke_irql() != PASSIVE_LEVEL)
        irpk_bugcheck_raise(IRPK_BUGCHECK_IRQL_NOT_LESS_OR_EQUAL, (uintptr_t)e->StartRoutine,
                            ke_irql(), 0, 0,
                            "System thread routine %p returned at IRQL %u (must be PASSIVE_LEVEL).",
                            (void *)(uintptr_t)e->StartRoutine, ke_irql());
}

NTSTATUS PsCreateSystemThread(PHANDLE ThreadHandle, ULONG DesiredAccess,
                              POBJECT_ATTRIBUTES ObjectAttributes, HANDLE ProcessHandle,
                              PCLIENT_ID ClientId, PKSTART_ROUTINE StartRoutine, PVOID StartContext)
{
    (void)ObjectAttributes;
    (void)ProcessHandle;
    if (!ThreadHandle || !StartRoutine) return STATUS_INVALID_PARAMETER;
    PETHREAD e = new_ethread();
    if (!e) return STATUS_INSUFFICIENT_RESOURCES;
    e->SystemThread = TRUE;
    e->StartRoutine = StartRoutine;
    e->StartContext = StartContext;
    NTSTATUS st = ob_insert_handle(e, DesiredAccess ? DesiredAccess : THREAD_ALL_ACCESS, 0, ThreadHandle);
    if (!NT_SUCCESS(st)) {
        ObfDereferenceObject(e);
        return st;
    }
    /* The creation reference passes to the new thread (dropped by thread_exited). */
    plat_thread *t = plat_thread_start(system_thread_main, e, "system", PLAT_THREAD_DETACHED);
    if (!t) {
        ob_close_handle(*ThreadHandle);
        *ThreadHandle = NULL;
        ObfDereferenceObject(e);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if (ClientId) {
        ClientId->UniqueProcess = e->Cid.UniqueProcess;
        ClientId->UniqueThread = NULL; /* known once the thread runs; see PsGetThreadId */
    }
    return STATUS_SUCCESS;
}

NTSTATUS PsTerminateSystemThread(NTSTATUS ExitStatus)
{
    PETHREAD e = PsGetCurrentThread();
    if (!e || !e->SystemThread) {
        irpk_bugcheck_raise(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x1, (uintptr_t)e, 0,
                            0, "PsTerminateSystemThread called on a thread that is not a system "
                               "thread; ignored.");
        return STATUS_INVALID_PARAMETER;
    }
    e->ExitStatus = ExitStatus;
    plat_thread_exit();
}

PETHREAD PsGetCurrentThread(VOID) { return ps_thread_of(plat_self()); }
PKTHREAD KeGetCurrentThread(VOID) { return (PKTHREAD)PsGetCurrentThread(); }
HANDLE PsGetCurrentThreadId(VOID) { return PsGetCurrentThread()->Cid.UniqueThread; }
HANDLE PsGetThreadId(PETHREAD Thread) { return Thread->Cid.UniqueThread; }
BOOLEAN PsIsSystemThread(PETHREAD Thread) { return Thread->SystemThread; }
PEPROCESS PsGetCurrentProcess(VOID) { return &the_process; }
PEPROCESS IoGetCurrentProcess(VOID) { return &the_process; }
HANDLE PsGetCurrentProcessId(VOID) { return (HANDLE)(uintptr_t)the_process.UniqueProcessId; }
