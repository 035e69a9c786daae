/* System threads and the objects the queuing examples use: PsCreateSystemThread /
 * PsTerminateSystemThread, thread objects waitable with KeWaitForSingleObject,
 * ObReferenceObjectByHandle / ObDereferenceObject, KSEMAPHORE, critical regions,
 * IoGetCurrentProcess / PsGetCurrentThread. */
#include <ntddk.h>

#include "ob/ob.h"
#include "ps/ps.h"
#include "irpkit/verifier.h"
#include "test.h"

typedef struct seen {
    volatile int32_t ran;
    PETHREAD self;
    HANDLE id;
    BOOLEAN system;
    KIRQL irql;
    PEPROCESS process;
    KEVENT go;      /* the thread waits on it when `wait` is set */
    bool wait;
    NTSTATUS terminate_with; /* STATUS_PENDING: return normally */
    volatile int32_t after_terminate;
} seen;

static VOID thread_routine(PVOID context)
{
    seen *s = context;
    s->self = PsGetCurrentThread();
    s->id = PsGetCurrentThreadId();
    s->system = PsIsSystemThread(s->self);
    s->irql = KeGetCurrentIrql();
    s->process = IoGetCurrentProcess();
    plat_store32(&s->ran, 1);
    if (s->wait) KeWaitForSingleObject(&s->go, Executive, KernelMode, FALSE, NULL);
    if (s->terminate_with != STATUS_PENDING) {
        PsTerminateSystemThread(s->terminate_with);
        plat_store32(&s->after_terminate, 1); /* never reached */
    }
}

static void init_seen(seen *s)
{
    memset(s, 0, sizeof *s);
    KeInitializeEvent(&s->go, NotificationEvent, FALSE);
    s->terminate_with = STATUS_PENDING;
}

static PVOID thread_object(HANDLE h)
{
    PVOID obj = NULL;
    CHECK_EQ(ObReferenceObjectByHandle(h, SYNCHRONIZE, *PsThreadType, KernelMode, &obj, NULL), STATUS_SUCCESS);
    return obj;
}

TEST(system_thread_runs_at_passive_and_its_object_signals_at_exit)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    LONG handles = ob_open_handles();
    seen s;
    init_seen(&s);
    HANDLE h = NULL;
    CLIENT_ID cid;
    CHECK_EQ(PsCreateSystemThread(&h, THREAD_ALL_ACCESS, NULL, NULL, &cid, thread_routine, &s), STATUS_SUCCESS);
    CHECK(h != NULL);
    CHECK_PTR(cid.UniqueProcess, PsGetCurrentProcessId());
    PVOID obj = thread_object(h);
    CHECK_EQ(KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(s.ran, 1);
    CHECK_PTR(s.self, obj); /* the handle names the thread that ran */
    CHECK(s.system);
    CHECK_EQ(s.irql, PASSIVE_LEVEL);
    CHECK_PTR(s.process, PsGetCurrentProcess());
    CHECK(s.process != NULL);
    CHECK_PTR(PsGetThreadId(obj), s.id);
    CHECK(s.id != PsGetCurrentThreadId());
    CHECK(!PsIsSystemThread(PsGetCurrentThread()));
    CHECK_EQ(((PETHREAD)obj)->ExitStatus, STATUS_SUCCESS);
    /* a thread object stays signalled */
    LARGE_INTEGER zero = {.QuadPart = 0};
    CHECK_EQ(KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, &zero), STATUS_SUCCESS);
    CHECK_EQ(ZwClose(h), STATUS_SUCCESS);
    /* The thread drops its own reference right after signalling its object: ours is the last. */
    while (ob_refcount(obj) > 1) plat_yield();
    CHECK_EQ(ob_refcount(obj), 1);
    ObDereferenceObject(obj);
    CHECK_EQ(ob_open_handles(), handles);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(thread_handle_is_waitable_and_unsignalled_until_the_thread_exits)
{
    seen s;
    init_seen(&s);
    s.wait = true;
    HANDLE h;
    CHECK_EQ(PsCreateSystemThread(&h, 0, NULL, NULL, NULL, thread_routine, &s), STATUS_SUCCESS);
    PVOID obj = thread_object(h);
    while (!plat_load32(&s.ran)) plat_yield();
    LARGE_INTEGER zero = {.QuadPart = 0};
    CHECK_EQ(KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, &zero), STATUS_TIMEOUT);
    LARGE_INTEGER short_wait = {.QuadPart = -10000}; /* 1 ms, relative */
    CHECK_EQ(KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, &short_wait), STATUS_TIMEOUT);
    KeSetEvent(&s.go, IO_NO_INCREMENT, FALSE);
    CHECK_EQ(KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    /* the object outlives the handle: close first, wait again, then drop the reference */
    ZwClose(h);
    CHECK_EQ(KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, &zero), STATUS_SUCCESS);
    ObDereferenceObject(obj);
}

TEST(reference_by_handle_checks_type_handle_and_access)
{
    irpk_reports_clear();
    seen s;
    init_seen(&s);
    s.wait = true;
    HANDLE h;
    PsCreateSystemThread(&h, SYNCHRONIZE, NULL, NULL, NULL, thread_routine, &s);
    PVOID obj = (PVOID)0x1;
    CHECK_EQ(ObReferenceObjectByHandle(h, SYNCHRONIZE, *ExEventObjectType, KernelMode, &obj, NULL),
             STATUS_OBJECT_TYPE_MISMATCH);
    CHECK_PTR(obj, (PVOID)0x1); /* untouched on failure */
    /* access: a user-mode caller gets only what the handle grants; kernel mode skips the check */
    CHECK_EQ(ObReferenceObjectByHandle(h, THREAD_ALL_ACCESS, *PsThreadType, UserMode, &obj, NULL),
             STATUS_ACCESS_DENIED);
    OBJECT_HANDLE_INFORMATION info;
    CHECK_EQ(ObReferenceObjectByHandle(h, THREAD_ALL_ACCESS, *PsThreadType, KernelMode, &obj, &info),
             STATUS_SUCCESS);
    CHECK_EQ(info.GrantedAccess, SYNCHRONIZE);
    ObDereferenceObject(obj);
    /* any type */
    CHECK_EQ(ObReferenceObjectByHandle(h, 0, NULL, KernelMode, &obj, NULL), STATUS_SUCCESS);
    KeSetEvent(&s.go, IO_NO_INCREMENT, FALSE);
    KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, NULL);
    ObDereferenceObject(obj);
    CHECK_EQ(ZwClose(h), STATUS_SUCCESS);
    /* closed, never issued, misaligned */
    CHECK_EQ(ObReferenceObjectByHandle(h, 0, *PsThreadType, KernelMode, &obj, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(ZwClose(h), STATUS_INVALID_HANDLE);
    CHECK_EQ(ObReferenceObjectByHandle((HANDLE)(uintptr_t)0x7FFFFFF0, 0, NULL, KernelMode, &obj, NULL),
             STATUS_INVALID_HANDLE);
    CHECK_EQ(ObReferenceObjectByHandle((HANDLE)(uintptr_t)3, 0, NULL, KernelMode, &obj, NULL),
             STATUS_INVALID_HANDLE);
    CHECK_EQ(ObReferenceObjectByHandle(NULL, 0, NULL, KernelMode, &obj, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(terminate_system_thread_ends_it_early_with_its_status)
{
    seen s;
    init_seen(&s);
    s.terminate_with = (NTSTATUS)0x12345;
    HANDLE h;
    CHECK_EQ(PsCreateSystemThread(&h, 0, NULL, NULL, NULL, thread_routine, &s), STATUS_SUCCESS);
    PVOID obj = thread_object(h);
    ZwClose(h);
    CHECK_EQ(KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(s.ran, 1);
    CHECK_EQ(s.after_terminate, 0);
    CHECK_EQ(((PETHREAD)obj)->ExitStatus, (NTSTATUS)0x12345);
    ObDereferenceObject(obj);
}

TEST(terminate_from_a_non_system_thread_is_refused)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    CHECK_EQ(PsTerminateSystemThread(STATUS_SUCCESS), STATUS_INVALID_PARAMETER);
    CHECK_EQ(irpk_report_count(), 1);
    irpk_reports_clear();
}

TEST(create_system_thread_rejects_missing_arguments)
{
    HANDLE h;
    CHECK_EQ(PsCreateSystemThread(NULL, 0, NULL, NULL, NULL, thread_routine, NULL), STATUS_INVALID_PARAMETER);
    CHECK_EQ(PsCreateSystemThread(&h, 0, NULL, NULL, NULL, NULL, NULL), STATUS_INVALID_PARAMETER);
}

/* ---- semaphores */

static struct {
    KSEMAPHORE sem;
    volatile int32_t woken;
} sm;

static VOID semaphore_waiter(PVOID context)
{
    UNREFERENCED_PARAMETER(context);
    KeWaitForSingleObject(&sm.sem, Executive, KernelMode, FALSE, NULL);
    plat_fetch_add32(&sm.woken, 1);
}

TEST(semaphore_release_wakes_exactly_adjustment_waiters)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    memset(&sm, 0, sizeof sm);
    KeInitializeSemaphore(&sm.sem, 0, 10);
    CHECK_EQ(KeReadStateSemaphore(&sm.sem), 0);
    HANDLE h[5];
    PVOID obj[5];
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(PsCreateSystemThread(&h[i], 0, NULL, NULL, NULL, semaphore_waiter, NULL), STATUS_SUCCESS);
        obj[i] = thread_object(h[i]);
        ZwClose(h[i]);
    }
    CHECK_EQ(KeReleaseSemaphore(&sm.sem, SEMAPHORE_INCREMENT, 3, FALSE), 0); /* previous count */
    while (plat_load32(&sm.woken) < 3) plat_yield();
    /* three units, three wake-ups: the count is used up and nobody else got through */
    CHECK_EQ(KeReadStateSemaphore(&sm.sem), 0);
    CHECK_EQ(plat_load32(&sm.woken), 3);
    CHECK_EQ(KeReleaseSemaphore(&sm.sem, SEMAPHORE_INCREMENT, 2, FALSE), 0);
    for (int i = 0; i < 5; i++) {
        KeWaitForSingleObject(obj[i], Executive, KernelMode, FALSE, NULL);
        ObDereferenceObject(obj[i]);
    }
    CHECK_EQ(sm.woken, 5);
    CHECK_EQ(KeReadStateSemaphore(&sm.sem), 0);
    /* without waiters the count accumulates; a wait takes one unit */
    CHECK_EQ(KeReleaseSemaphore(&sm.sem, SEMAPHORE_INCREMENT, 4, FALSE), 0);
    CHECK_EQ(KeReleaseSemaphore(&sm.sem, SEMAPHORE_INCREMENT, 1, FALSE), 4);
    LARGE_INTEGER zero = {.QuadPart = 0};
    CHECK_EQ(KeWaitForSingleObject(&sm.sem, Executive, KernelMode, FALSE, &zero), STATUS_SUCCESS);
    CHECK_EQ(KeReadStateSemaphore(&sm.sem), 4);
    CHECK_EQ(irpk_report_count(), 0);
    /* beyond the limit: reported, count unchanged */
    CHECK_EQ(KeReleaseSemaphore(&sm.sem, SEMAPHORE_INCREMENT, 7, FALSE), 4);
    CHECK_EQ(KeReadStateSemaphore(&sm.sem), 4);
    CHECK_EQ(irpk_report_count(), 1);
    irpk_reports_clear();
    for (int i = 0; i < 4; i++) CHECK_EQ(KeWaitForSingleObject(&sm.sem, Executive, KernelMode, FALSE, &zero), STATUS_SUCCESS);
    CHECK_EQ(KeWaitForSingleObject(&sm.sem, Executive, KernelMode, FALSE, &zero), STATUS_TIMEOUT);
}

/* ---- critical regions */

static VOID region_thread(PVOID context)
{
    BOOLEAN *out = context;
    out[0] = KeAreApcsDisabled(); /* a new thread starts outside any region */
    KeEnterCriticalRegion();
    out[1] = KeAreApcsDisabled();
    KeLeaveCriticalRegion();
    out[2] = KeAreApcsDisabled();
}

TEST(critical_regions_nest_per_thread)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    CHECK(!KeAreApcsDisabled());
    KeEnterCriticalRegion();
    CHECK(KeAreApcsDisabled());
    KeEnterCriticalRegion();
    CHECK(KeAreApcsDisabled());
    BOOLEAN other[3] = {TRUE, FALSE, TRUE};
    HANDLE h;
    PsCreateSystemThread(&h, 0, NULL, NULL, NULL, region_thread, other);
    PVOID obj = thread_object(h);
    ZwClose(h);
    KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, NULL);
    ObDereferenceObject(obj);
    CHECK(!other[0]);
    CHECK(other[1]);
    CHECK(!other[2]);
    KeLeaveCriticalRegion();
    CHECK(KeAreApcsDisabled()); /* still inside the outer region */
    KeLeaveCriticalRegion();
    CHECK(!KeAreApcsDisabled());
    KIRQL old;
    KeRaiseIrql(APC_LEVEL, &old);
    CHECK(KeAreApcsDisabled()); /* APC_LEVEL disables them too */
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 0);
    KeLeaveCriticalRegion(); /* unmatched */
    CHECK_EQ(irpk_report_count(), 1);
    CHECK(!KeAreApcsDisabled());
    irpk_reports_clear();
}

TEST(current_process_and_thread_identities)
{
    CHECK(IoGetCurrentProcess() != NULL);
    CHECK_PTR(IoGetCurrentProcess(), PsGetCurrentProcess());
    CHECK_PTR(PsGetCurrentThread(), PsGetCurrentThread());
    CHECK_PTR((PVOID)KeGetCurrentThread(), (PVOID)PsGetCurrentThread());
    CHECK(PsGetCurrentThreadId() != NULL);
    CHECK_PTR(PsGetThreadId(PsGetCurrentThread()), PsGetCurrentThreadId());
}
