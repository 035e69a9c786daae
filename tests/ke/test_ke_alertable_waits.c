/* Kernel waits honour Alertable and WaitMode (learn.microsoft.com, "Waits and APCs"): an
 * alertable UserMode wait (KeWaitForSingleObject, KeWaitForMultipleObjects,
 * KeDelayExecutionThread) in a thread with a user APC pending, or one queued while it waits,
 * returns STATUS_USER_APC without running the APC (it runs when the thread next waits
 * alertably in user mode); an alerted thread's alertable wait returns STATUS_ALERTED whatever
 * the WaitMode; a KernelMode alertable wait is not broken by user APCs; a non-alertable wait by
 * neither. The objects come first: a wait satisfied at once returns its status. The test's main
 * thread is a user thread (not a system thread). */
#include <ntifs.h>

#include "irpkit/runtime.h"
#include "platform/platform.h"
#include "test.h"

static volatile int32_t apcs;

static VOID NTAPI count_apc(PVOID a, PVOID b, PVOID c)
{
    (void)a;
    (void)b;
    (void)c;
    plat_fetch_add32(&apcs, 1);
}

static void queue_apc(HANDLE thread)
{
    CHECK_EQ(NtQueueApcThread(thread, count_apc, NULL, NULL, NULL), STATUS_SUCCESS);
}

static LARGE_INTEGER rel_ms(int ms) { return (LARGE_INTEGER){.QuadPart = -10000LL * ms}; }

/* Run what is queued at a user-mode alertable wait (the APC's real delivery point); returns
 * how many APCs ran there. */
static int32_t deliver(void)
{
    int32_t before = plat_load32(&apcs);
    LARGE_INTEGER zero = {.QuadPart = 0};
    NTSTATUS st = NtDelayExecution(TRUE, &zero);
    CHECK(st == STATUS_USER_APC || st == STATUS_SUCCESS);
    return plat_load32(&apcs) - before;
}

TEST(user_apc_breaks_an_alertable_user_mode_wait_without_running)
{
    plat_store32(&apcs, 0);
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    LARGE_INTEGER t = rel_ms(5000); /* a bug shows as STATUS_TIMEOUT, not a hang */
    queue_apc(NtCurrentThread());
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, &t), STATUS_USER_APC);
    CHECK_EQ(plat_load32(&apcs), 0); /* not run inside the kernel wait */
    /* Still pending: the next alertable UserMode wait breaks too, also with a zero timeout. */
    LARGE_INTEGER zero = {.QuadPart = 0};
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, &zero), STATUS_USER_APC);
    PVOID objs[2] = {&ev, &ev};
    KEVENT ev2;
    KeInitializeEvent(&ev2, NotificationEvent, TRUE);
    objs[1] = &ev2;
    CHECK_EQ(KeWaitForMultipleObjects(2, objs, WaitAny, Executive, UserMode, TRUE, &t, NULL), STATUS_WAIT_1);
    CHECK_EQ(KeWaitForMultipleObjects(2, objs, WaitAll, Executive, UserMode, TRUE, &t, NULL), STATUS_USER_APC);
    KeClearEvent(&ev2);
    CHECK_EQ(KeWaitForMultipleObjects(2, objs, WaitAny, Executive, UserMode, TRUE, &t, NULL), STATUS_USER_APC);
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(deliver(), 1); /* the user-mode wait runs it */
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, &zero), STATUS_TIMEOUT);
}

TEST(kernel_mode_alertable_and_non_alertable_waits_ignore_user_apcs)
{
    plat_store32(&apcs, 0);
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    LARGE_INTEGER t = rel_ms(30);
    queue_apc(NtCurrentThread());
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, TRUE, &t), STATUS_TIMEOUT);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, FALSE, &t), STATUS_TIMEOUT);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &t), STATUS_TIMEOUT);
    CHECK_EQ(KeDelayExecutionThread(KernelMode, TRUE, &t), STATUS_SUCCESS);
    CHECK_EQ(KeDelayExecutionThread(UserMode, FALSE, &t), STATUS_SUCCESS);
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(deliver(), 1);
}

TEST(a_signalled_object_wins_over_a_pending_apc)
{
    plat_store32(&apcs, 0);
    KEVENT ev;
    KeInitializeEvent(&ev, SynchronizationEvent, TRUE);
    queue_apc(NtCurrentThread());
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, NULL), STATUS_SUCCESS);
    CHECK_EQ(KeReadStateEvent(&ev), 0); /* consumed */
    LARGE_INTEGER t = rel_ms(5000);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, &t), STATUS_USER_APC);
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(deliver(), 1);
}

TEST(delay_execution_alertable_user_mode_breaks_for_an_apc)
{
    plat_store32(&apcs, 0);
    LARGE_INTEGER t = rel_ms(5000);
    queue_apc(NtCurrentThread());
    int64_t t0 = plat_now_ns();
    CHECK_EQ(KeDelayExecutionThread(UserMode, TRUE, &t), STATUS_USER_APC);
    CHECK(plat_now_ns() - t0 < 4000LL * 1000000);
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(deliver(), 1);
    LARGE_INTEGER short_t = rel_ms(10);
    CHECK_EQ(KeDelayExecutionThread(UserMode, TRUE, &short_t), STATUS_SUCCESS); /* nothing pending */
}

TEST(an_alert_breaks_alertable_waits_in_either_mode_and_is_consumed)
{
    plat_store32(&apcs, 0);
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    LARGE_INTEGER t = rel_ms(5000), short_t = rel_ms(20);
    CHECK_EQ(NtAlertThread(NtCurrentThread()), STATUS_SUCCESS);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &short_t), STATUS_TIMEOUT); /* kept */
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, TRUE, &t), STATUS_ALERTED);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, TRUE, &short_t), STATUS_TIMEOUT); /* consumed */
    CHECK_EQ(NtAlertThread(NtCurrentThread()), STATUS_SUCCESS);
    queue_apc(NtCurrentThread());
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, &t), STATUS_ALERTED); /* the alert first */
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, &t), STATUS_USER_APC);
    CHECK_EQ(NtAlertThread(NtCurrentThread()), STATUS_SUCCESS);
    CHECK_EQ(KeDelayExecutionThread(KernelMode, TRUE, &t), STATUS_ALERTED);
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(deliver(), 1);
}

/* ---- from another thread while the waiter is blocked */

typedef struct {
    HANDLE target;
    bool alert; /* NtAlertThread instead of an APC */
} poke;

static void poke_later(void *arg)
{
    poke *p = arg;
    LARGE_INTEGER t = rel_ms(50); /* the waiter is most likely blocked by then; either way the
                                     status must be the same */
    KeDelayExecutionThread(KernelMode, FALSE, &t);
    if (p->alert) CHECK_EQ(NtAlertThread(p->target), STATUS_SUCCESS);
    else queue_apc(p->target);
}

static NTSTATUS wait_while_poked(bool alert, KPROCESSOR_MODE mode, bool delay)
{
    HANDLE self = NULL;
    CHECK_EQ(ObOpenObjectByPointer(PsGetCurrentThread(), 0, NULL, THREAD_ALL_ACCESS, *PsThreadType,
                                   KernelMode, &self),
             STATUS_SUCCESS);
    poke p = {self, alert};
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    LARGE_INTEGER t = rel_ms(10000);
    plat_thread *th = plat_thread_start(poke_later, &p, "poker", 0);
    CHECK(th != NULL);
    NTSTATUS st = delay ? KeDelayExecutionThread(mode, TRUE, &t)
                        : KeWaitForSingleObject(&ev, Executive, mode, TRUE, &t);
    plat_thread_join(th);
    NtClose(self);
    return st;
}

TEST(an_apc_or_alert_queued_by_another_thread_breaks_a_blocked_wait)
{
    plat_store32(&apcs, 0);
    CHECK_EQ(wait_while_poked(false, UserMode, false), STATUS_USER_APC);
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(deliver(), 1);
    CHECK_EQ(wait_while_poked(false, UserMode, true), STATUS_USER_APC);
    CHECK_EQ(deliver(), 1);
    CHECK_EQ(wait_while_poked(true, KernelMode, false), STATUS_ALERTED);
    CHECK_EQ(wait_while_poked(true, UserMode, false), STATUS_ALERTED);
    CHECK_EQ(wait_while_poked(true, KernelMode, true), STATUS_ALERTED);
}

/* ---- a system thread has no user APCs */

static volatile int32_t system_status;

static VOID system_thread(PVOID ctx)
{
    (void)ctx;
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    LARGE_INTEGER t = rel_ms(30);
    NTSTATUS st = NtQueueApcThread(NtCurrentThread(), count_apc, NULL, NULL, NULL);
    if (st == STATUS_SUCCESS) st = KeWaitForSingleObject(&ev, Executive, UserMode, TRUE, &t);
    plat_store32(&system_status, st);
    PsTerminateSystemThread(STATUS_SUCCESS);
}

TEST(a_system_thread_wait_is_not_broken_by_user_apcs)
{
    plat_store32(&apcs, 0);
    plat_store32(&system_status, -1);
    HANDLE h = NULL;
    CHECK_EQ(PsCreateSystemThread(&h, THREAD_ALL_ACCESS, NULL, NULL, NULL, system_thread, NULL), STATUS_SUCCESS);
    LARGE_INTEGER t = rel_ms(20000);
    PVOID th = NULL;
    CHECK_EQ(ObReferenceObjectByHandle(h, SYNCHRONIZE, *PsThreadType, KernelMode, &th, NULL), STATUS_SUCCESS);
    CHECK_EQ(KeWaitForSingleObject(th, Executive, KernelMode, FALSE, &t), STATUS_SUCCESS);
    ObDereferenceObject(th);
    NtClose(h);
    CHECK_EQ(plat_load32(&system_status), STATUS_TIMEOUT);
    CHECK_EQ(plat_load32(&apcs), 0);
}
