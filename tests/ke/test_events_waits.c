/* Dispatcher objects and waits (events, semaphores, mutexes, timers), DPCs, pool and
 * lookaside lists, counted strings and list macros. Waits with timeouts assert only the
 * returned status, never how long they took. */
#include <wdm.h>

#include "irpkit/runtime.h"
#include "irpkit/verifier.h"
#include "ke/ke.h" /* ke_pool_outstanding_tag (internal) */
#include "platform/platform.h"
#include "test.h"

static LARGE_INTEGER rel_ms(int ms) { return (LARGE_INTEGER){.QuadPart = -10000LL * ms}; }
static LARGE_INTEGER zero_timeout(void) { return (LARGE_INTEGER){.QuadPart = 0}; }

static NTSTATUS poll(PVOID obj)
{
    LARGE_INTEGER z = zero_timeout();
    return KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, &z);
}

/* Generous bound for waits that must succeed (a hang becomes a failure, not a stuck test). */
static NTSTATUS wait_ok(PVOID obj)
{
    LARGE_INTEGER t = rel_ms(20000);
    return KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, &t);
}

/* ------------------------------------------------------------------ events */

TEST(event_notification_set_reset_read)
{
    irpk_reports_clear();
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    CHECK_EQ(ev.Header.Type, EventNotificationObject);
    CHECK_EQ(KeReadStateEvent(&ev), 0);
    CHECK_EQ(poll(&ev), STATUS_TIMEOUT);
    CHECK_EQ(KeSetEvent(&ev, IO_NO_INCREMENT, FALSE), 0); /* previous state */
    CHECK_EQ(KeSetEvent(&ev, IO_NO_INCREMENT, FALSE), 1);
    CHECK_EQ(KeReadStateEvent(&ev), 1);
    CHECK_EQ(poll(&ev), STATUS_SUCCESS);
    CHECK_EQ(poll(&ev), STATUS_SUCCESS); /* notification: stays signalled */
    CHECK_EQ(KeReadStateEvent(&ev), 1);
    CHECK_EQ(KeResetEvent(&ev), 1);
    CHECK_EQ(KeResetEvent(&ev), 0);
    CHECK_EQ(KeReadStateEvent(&ev), 0);
    KeSetEvent(&ev, IO_NO_INCREMENT, TRUE); /* Wait == TRUE accepted */
    KeClearEvent(&ev);
    CHECK_EQ(KeReadStateEvent(&ev), 0);
    KeInitializeEvent(&ev, NotificationEvent, TRUE);
    CHECK_EQ(KeReadStateEvent(&ev), 1);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(event_synchronization_auto_resets)
{
    KEVENT ev;
    KeInitializeEvent(&ev, SynchronizationEvent, TRUE);
    CHECK_EQ(ev.Header.Type, EventSynchronizationObject);
    CHECK_EQ(poll(&ev), STATUS_SUCCESS);
    CHECK_EQ(KeReadStateEvent(&ev), 0); /* consumed by the satisfied wait */
    CHECK_EQ(poll(&ev), STATUS_TIMEOUT);
    CHECK_EQ(KeSetEvent(&ev, 0, FALSE), 0);
    CHECK_EQ(KeSetEvent(&ev, 0, FALSE), 1); /* no waiter: stays set, does not count */
    CHECK_EQ(poll(&ev), STATUS_SUCCESS);
    CHECK_EQ(poll(&ev), STATUS_TIMEOUT);
}

/* N waiters on one synchronization event, N KeSetEvent calls paced so each finds the event
 * clear: every waiter is released exactly once and nothing is left signalled. */
#define NW 4
static KEVENT sync_ev;
static KSEMAPHORE released_sem;
static int32_t released_by[NW];
static NTSTATUS waiter_status[NW];

static void sync_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    waiter_status[i] = KeWaitForSingleObject(&sync_ev, Executive, KernelMode, FALSE, NULL);
    plat_fetch_add32(&released_by[i], 1);
    KeReleaseSemaphore(&released_sem, 0, 1, FALSE);
}

TEST(event_sync_releases_each_waiter_exactly_once)
{
    irpk_reports_clear();
    long rounds = irpk_test_scale(200);
    for (long r = 0; r < rounds; r++) {
        KeInitializeEvent(&sync_ev, SynchronizationEvent, FALSE);
        KeInitializeSemaphore(&released_sem, 0, NW);
        plat_thread *t[NW];
        for (int i = 0; i < NW; i++) {
            released_by[i] = 0;
            waiter_status[i] = -1;
            t[i] = plat_thread_start(sync_waiter, (void *)(intptr_t)i, "sync-waiter", 0);
            REQUIRE(t[i] != NULL);
        }
        for (int k = 0; k < NW; k++) {
            KeSetEvent(&sync_ev, 0, FALSE);
            /* The next set only after this one was consumed by exactly one waiter. */
            CHECK_EQ(wait_ok(&released_sem), STATUS_SUCCESS);
        }
        for (int i = 0; i < NW; i++) plat_thread_join(t[i]);
        int total = 0;
        for (int i = 0; i < NW; i++) {
            CHECK_EQ(released_by[i], 1);
            CHECK_EQ(waiter_status[i], STATUS_SUCCESS);
            total += released_by[i];
        }
        CHECK_EQ(total, NW);
        CHECK_EQ(KeReadStateEvent(&sync_ev), 0); /* every set was consumed by one waiter */
        CHECK_EQ(KeReadStateSemaphore(&released_sem), 0);
        if (irpk_test_failed_in_case()) break;
    }
    CHECK_EQ(irpk_report_count(), 0);
}

static KEVENT notif_ev;
static void notif_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    waiter_status[i] = KeWaitForSingleObject(&notif_ev, Executive, KernelMode, FALSE, NULL);
}

TEST(event_notification_releases_all_waiters)
{
    KeInitializeEvent(&notif_ev, NotificationEvent, FALSE);
    plat_thread *t[NW];
    for (int i = 0; i < NW; i++) {
        waiter_status[i] = -1;
        t[i] = plat_thread_start(notif_waiter, (void *)(intptr_t)i, "notif-waiter", 0);
    }
    LARGE_INTEGER d = rel_ms(5);
    KeDelayExecutionThread(KernelMode, FALSE, &d); /* let some of them block (not required) */
    CHECK_EQ(KeSetEvent(&notif_ev, 0, FALSE), 0);
    for (int i = 0; i < NW; i++) plat_thread_join(t[i]); /* one set released them all */
    for (int i = 0; i < NW; i++) CHECK_EQ(waiter_status[i], STATUS_SUCCESS);
    CHECK_EQ(KeReadStateEvent(&notif_ev), 1);
}

/* ------------------------------------------------------------------ timeouts */

TEST(wait_timeouts_relative_zero_absolute)
{
    irpk_reports_clear();
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    LARGE_INTEGER t = rel_ms(10);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &t), STATUS_TIMEOUT);
    CHECK_EQ(poll(&ev), STATUS_TIMEOUT);
    LARGE_INTEGER now;
    KeQuerySystemTime(&now);
    CHECK(now.QuadPart > 0);
    LARGE_INTEGER abs_t = {.QuadPart = now.QuadPart + 10 * 10000}; /* now + 10 ms */
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &abs_t), STATUS_TIMEOUT);
    LARGE_INTEGER past = {.QuadPart = now.QuadPart - 10000000}; /* 1 s ago */
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &past), STATUS_TIMEOUT);
    /* A signalled object satisfies the wait whatever the timeout. */
    KeSetEvent(&ev, 0, FALSE);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &t), STATUS_SUCCESS);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &abs_t), STATUS_SUCCESS);
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(time_queries_are_consistent)
{
    LARGE_INTEGER a, b, tick;
    KeQuerySystemTime(&a);
    ULONGLONG i1 = KeQueryInterruptTime();
    LARGE_INTEGER d = rel_ms(2);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeQuerySystemTime(&b);
    ULONGLONG i2 = KeQueryInterruptTime();
    CHECK(b.QuadPart >= a.QuadPart);
    CHECK(i2 > i1); /* monotonic and advanced by a sleep */
    /* 1601 → 2020-01-01 is 132223104000000000 units of 100 ns: a real wall clock. */
    CHECK(a.QuadPart > 132223104000000000LL);
    KeQueryTickCount(&tick);
    CHECK_EQ(tick.QuadPart, (LONGLONG)(KeQueryInterruptTime() / KeQueryTimeIncrement()));
    CHECK_EQ(KeQueryTimeIncrement(), 156250);
}

static KEVENT wake_ev;
static void delayed_setter(void *arg)
{
    (void)arg;
    LARGE_INTEGER d = rel_ms(5);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeSetEvent(&wake_ev, 0, FALSE);
}

TEST(wait_infinite_woken_by_another_thread)
{
    KeInitializeEvent(&wake_ev, SynchronizationEvent, FALSE);
    plat_thread *t = plat_thread_start(delayed_setter, NULL, "setter", 0);
    CHECK_EQ(KeWaitForSingleObject(&wake_ev, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    plat_thread_join(t);
    CHECK_EQ(KeReadStateEvent(&wake_ev), 0);
}

TEST(delay_execution_statuses)
{
    LARGE_INTEGER d = rel_ms(1);
    CHECK_EQ(KeDelayExecutionThread(KernelMode, FALSE, &d), STATUS_SUCCESS);
    LARGE_INTEGER z = zero_timeout();
    CHECK_EQ(KeDelayExecutionThread(KernelMode, FALSE, &z), STATUS_SUCCESS);
    LARGE_INTEGER now;
    KeQuerySystemTime(&now);
    now.QuadPart += 10000;
    CHECK_EQ(KeDelayExecutionThread(KernelMode, FALSE, &now), STATUS_SUCCESS); /* absolute */
    CHECK_EQ(KeDelayExecutionThread(KernelMode, FALSE, NULL), STATUS_INVALID_PARAMETER);
    KeStallExecutionProcessor(10);
}

/* ------------------------------------------------------------------ multiple objects */

TEST(wait_multiple_any_returns_index)
{
    irpk_reports_clear();
    KEVENT e[3];
    for (int i = 0; i < 3; i++) KeInitializeEvent(&e[i], SynchronizationEvent, FALSE);
    PVOID objs[3] = {&e[0], &e[1], &e[2]};
    LARGE_INTEGER z = zero_timeout();
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAny, Executive, KernelMode, FALSE, &z, NULL),
             STATUS_TIMEOUT);
    KeSetEvent(&e[2], 0, FALSE);
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAny, Executive, KernelMode, FALSE, &z, NULL),
             STATUS_WAIT_0 + 2);
    CHECK_EQ(KeReadStateEvent(&e[2]), 0); /* only the satisfying object is consumed */
    KeSetEvent(&e[1], 0, FALSE);
    KeSetEvent(&e[2], 0, FALSE);
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAny, Executive, KernelMode, FALSE, &z, NULL),
             STATUS_WAIT_1); /* lowest index first */
    CHECK_EQ(KeReadStateEvent(&e[2]), 1);
    LARGE_INTEGER t = rel_ms(5);
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAny, Executive, KernelMode, FALSE, &t, NULL),
             STATUS_WAIT_0 + 2);
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAny, Executive, KernelMode, FALSE, &t, NULL),
             STATUS_TIMEOUT);
    CHECK_EQ(irpk_report_count(), 0);
}

static KEVENT ma_ev[3];
static void set_second(void *arg)
{
    (void)arg;
    LARGE_INTEGER d = rel_ms(3);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeSetEvent(&ma_ev[1], 0, FALSE);
}

TEST(wait_multiple_any_blocks_until_one_signalled)
{
    for (int i = 0; i < 3; i++) KeInitializeEvent(&ma_ev[i], NotificationEvent, FALSE);
    PVOID objs[3] = {&ma_ev[0], &ma_ev[1], &ma_ev[2]};
    plat_thread *t = plat_thread_start(set_second, NULL, "setter", 0);
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAny, Executive, KernelMode, FALSE, NULL, NULL),
             STATUS_WAIT_1);
    plat_thread_join(t);
}

TEST(wait_multiple_all)
{
    KEVENT n, s;
    KSEMAPHORE sem;
    KeInitializeEvent(&n, NotificationEvent, TRUE);
    KeInitializeEvent(&s, SynchronizationEvent, FALSE);
    KeInitializeSemaphore(&sem, 2, 5);
    PVOID objs[3] = {&n, &s, &sem};
    LARGE_INTEGER z = zero_timeout();
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAll, Executive, KernelMode, FALSE, &z, NULL),
             STATUS_TIMEOUT);
    /* Not all signalled: nothing is consumed. */
    CHECK_EQ(KeReadStateEvent(&n), 1);
    CHECK_EQ(KeReadStateSemaphore(&sem), 2);
    KeSetEvent(&s, 0, FALSE);
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAll, Executive, KernelMode, FALSE, &z, NULL),
             STATUS_SUCCESS);
    CHECK_EQ(KeReadStateEvent(&n), 1);       /* notification: stays */
    CHECK_EQ(KeReadStateEvent(&s), 0);       /* synchronization: consumed */
    CHECK_EQ(KeReadStateSemaphore(&sem), 1); /* one unit taken */
}

static void set_third(void *arg)
{
    (void)arg;
    LARGE_INTEGER d = rel_ms(3);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeSetEvent(&ma_ev[0], 0, FALSE);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeSetEvent(&ma_ev[2], 0, FALSE);
}

TEST(wait_multiple_all_blocks_until_every_object)
{
    for (int i = 0; i < 3; i++) KeInitializeEvent(&ma_ev[i], SynchronizationEvent, FALSE);
    KeSetEvent(&ma_ev[1], 0, FALSE);
    PVOID objs[3] = {&ma_ev[0], &ma_ev[1], &ma_ev[2]};
    plat_thread *t = plat_thread_start(set_third, NULL, "setter", 0);
    LARGE_INTEGER to = rel_ms(20000);
    CHECK_EQ(KeWaitForMultipleObjects(3, objs, WaitAll, Executive, KernelMode, FALSE, &to, NULL),
             STATUS_SUCCESS);
    plat_thread_join(t);
    for (int i = 0; i < 3; i++) CHECK_EQ(KeReadStateEvent(&ma_ev[i]), 0);
}

TEST(wait_multiple_count_limits)
{
    int quiet = irpk_reports_set_quiet(1);
    irpk_reports_clear();
    KEVENT e[5];
    PVOID objs[5];
    for (int i = 0; i < 5; i++) {
        KeInitializeEvent(&e[i], NotificationEvent, FALSE);
        objs[i] = &e[i];
    }
    KeSetEvent(&e[4], 0, FALSE);
    LARGE_INTEGER z = zero_timeout();
    CHECK_EQ(KeWaitForMultipleObjects(5, objs, WaitAny, Executive, KernelMode, FALSE, &z, NULL),
             STATUS_INVALID_PARAMETER);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC);
    CHECK_EQ(irpk_report_param(0, 0), 5);
    KWAIT_BLOCK blocks[5];
    CHECK_EQ(KeWaitForMultipleObjects(5, objs, WaitAny, Executive, KernelMode, FALSE, &z, blocks),
             STATUS_WAIT_0 + 4);
    CHECK_EQ(irpk_report_count(), 1);
    irpk_reports_clear();
    irpk_reports_set_quiet(quiet);
}

/* ------------------------------------------------------------------ semaphores, mutexes */

TEST(semaphore_count_and_limit)
{
    int quiet = irpk_reports_set_quiet(1);
    irpk_reports_clear();
    KSEMAPHORE s;
    KeInitializeSemaphore(&s, 2, 3);
    CHECK_EQ(KeReadStateSemaphore(&s), 2);
    CHECK_EQ(poll(&s), STATUS_SUCCESS);
    CHECK_EQ(poll(&s), STATUS_SUCCESS);
    CHECK_EQ(poll(&s), STATUS_TIMEOUT);
    CHECK_EQ(KeReadStateSemaphore(&s), 0);
    CHECK_EQ(KeReleaseSemaphore(&s, SEMAPHORE_INCREMENT, 2, FALSE), 0); /* previous count */
    CHECK_EQ(KeReadStateSemaphore(&s), 2);
    CHECK_EQ(irpk_report_count(), 0);
    CHECK_EQ(KeReleaseSemaphore(&s, 0, 2, FALSE), 2); /* 2 + 2 > 3 */
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_CONTAINS(irpk_report_text(0), "STATUS_SEMAPHORE_LIMIT_EXCEEDED");
    CHECK_EQ(KeReadStateSemaphore(&s), 2); /* unchanged */
    CHECK_EQ(KeReleaseSemaphore(&s, 0, 1, FALSE), 2);
    CHECK_EQ(KeReadStateSemaphore(&s), 3);
    CHECK_EQ(irpk_report_count(), 1);
    irpk_reports_clear();
    irpk_reports_set_quiet(quiet);
}

static KMUTEX mtx;
static NTSTATUS other_poll;
static void poll_mutex(void *arg)
{
    (void)arg;
    other_poll = poll(&mtx);
}

TEST(mutex_recursion_and_ownership)
{
    int quiet = irpk_reports_set_quiet(1);
    irpk_reports_clear();
    KeInitializeMutex(&mtx, 0);
    CHECK_EQ(KeReadStateMutex(&mtx), 1);
    CHECK_EQ(KeWaitForMutexObject(&mtx, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(KeReadStateMutex(&mtx), 0);
    CHECK_EQ(poll(&mtx), STATUS_SUCCESS); /* recursive acquire by the owner */
    CHECK_EQ(KeReadStateMutex(&mtx), -1);
    plat_thread *t = plat_thread_start(poll_mutex, NULL, "other", 0);
    plat_thread_join(t);
    CHECK_EQ(other_poll, STATUS_TIMEOUT); /* owned by us */
    CHECK_EQ(KeReleaseMutex(&mtx, FALSE), -1);
    CHECK_EQ(KeReadStateMutex(&mtx), 0); /* still owned once */
    CHECK_EQ(KeReleaseMutex(&mtx, FALSE), 0);
    CHECK_EQ(KeReadStateMutex(&mtx), 1);
    t = plat_thread_start(poll_mutex, NULL, "other", 0);
    plat_thread_join(t);
    CHECK_EQ(other_poll, STATUS_SUCCESS); /* free now: the other thread got (and kept) it */
    CHECK_EQ(irpk_report_count(), 0);
    KeReleaseMutex(&mtx, FALSE); /* not the owner */
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0x1E);
    CHECK_EQ(KeReadStateMutex(&mtx), 0); /* unchanged */
    irpk_reports_clear();
    irpk_reports_set_quiet(quiet);
}

/* ------------------------------------------------------------------ DPCs */

typedef struct dpc_probe {
    int32_t runs;
    KIRQL irql;
    char thread_name[PLAT_NAME_MAX];
    PVOID ctx, a1, a2;
    KEVENT done;
} dpc_probe;

static VOID probe_dpc(PKDPC Dpc, PVOID Ctx, PVOID A1, PVOID A2)
{
    (void)Dpc;
    dpc_probe *p = Ctx;
    p->irql = KeGetCurrentIrql();
    snprintf(p->thread_name, sizeof p->thread_name, "%s", plat_self()->name);
    p->ctx = Ctx;
    p->a1 = A1;
    p->a2 = A2;
    plat_fetch_add32(&p->runs, 1);
    KeSetEvent(&p->done, 0, FALSE);
}

/* A fresh probe, and the DPC that runs probe_dpc with it as its context. */
static void probe_init(dpc_probe *p, PKDPC dpc)
{
    memset(p, 0, sizeof *p);
    KeInitializeEvent(&p->done, NotificationEvent, FALSE);
    KeInitializeDpc(dpc, probe_dpc, p);
}

TEST(dpc_runs_at_dispatch_on_dpc_thread)
{
    irpk_reports_clear();
    static dpc_probe p;
    KDPC dpc;
    probe_init(&p, &dpc);
    CHECK_EQ(dpc.Type, DpcObject);
    ULONG cpu = KeGetCurrentProcessorNumber();
    CHECK_EQ(KeInsertQueueDpc(&dpc, (PVOID)0x11, (PVOID)0x22), TRUE);
    CHECK_EQ(wait_ok(&p.done), STATUS_SUCCESS);
    KeFlushQueuedDpcs();
    CHECK_EQ(p.runs, 1);
    CHECK_EQ(p.irql, DISPATCH_LEVEL);
    char want[PLAT_NAME_MAX];
    snprintf(want, sizeof want, "DPC cpu%u", (unsigned)cpu);
    CHECK_STR(p.thread_name, want);
    CHECK_PTR(p.ctx, &p);
    CHECK_PTR(p.a1, (PVOID)0x11);
    CHECK_PTR(p.a2, (PVOID)0x22);
    CHECK_PTR(dpc.DpcData, NULL); /* not queued any more */
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(irpk_report_count(), 0);
}

/* A DPC that keeps its CPU's DPC thread busy until released (stalling is legal at DISPATCH). */
static volatile int32_t blocker_release, blocker_running;
static VOID blocker_dpc(PKDPC Dpc, PVOID Ctx, PVOID A1, PVOID A2)
{
    (void)Dpc, (void)Ctx, (void)A1, (void)A2;
    plat_store32((int32_t *)&blocker_running, 1);
    while (!plat_load32((int32_t *)&blocker_release)) KeStallExecutionProcessor(50);
}

static void block_cpu(PKDPC blocker, CCHAR cpu)
{
    blocker_release = 0;
    blocker_running = 0;
    KeInitializeDpc(blocker, blocker_dpc, NULL);
    KeSetTargetProcessorDpc(blocker, cpu);
    KeInsertQueueDpc(blocker, NULL, NULL);
    while (!plat_load32((int32_t *)&blocker_running)) plat_yield();
}

TEST(dpc_insert_twice_remove_flush_targeted)
{
    irpk_reports_clear();
    for (CCHAR cpu = 0; cpu < 2; cpu++) {
        static dpc_probe p;
        KDPC blocker, dpc;
        probe_init(&p, &dpc);
        block_cpu(&blocker, cpu);
        KeSetTargetProcessorDpc(&dpc, cpu);
        CHECK_EQ(KeInsertQueueDpc(&dpc, (PVOID)1, NULL), TRUE);
        CHECK_EQ(KeInsertQueueDpc(&dpc, (PVOID)2, NULL), FALSE); /* already queued */
        CHECK_EQ(KeRemoveQueueDpc(&dpc), TRUE);
        CHECK_EQ(KeRemoveQueueDpc(&dpc), FALSE);
        CHECK_EQ(KeInsertQueueDpc(&dpc, (PVOID)3, NULL), TRUE);
        CHECK_EQ(p.runs, 0);
        plat_store32((int32_t *)&blocker_release, 1);
        KeFlushQueuedDpcs(); /* everything queued before the call has run */
        CHECK_EQ(p.runs, 1); /* the removed insertion did not run */
        CHECK_PTR(p.a1, (PVOID)3);
        char want[PLAT_NAME_MAX];
        snprintf(want, sizeof want, "DPC cpu%d", (int)cpu);
        CHECK_STR(p.thread_name, want);
        CHECK_EQ(KeRemoveQueueDpc(&dpc), FALSE); /* already ran */
    }
    CHECK_EQ(ke_dpcs_queued(), 0);
    CHECK_EQ(irpk_report_count(), 0);
}

static int32_t hi_order[3], hi_n;
static VOID order_dpc(PKDPC Dpc, PVOID Ctx, PVOID A1, PVOID A2)
{
    (void)Dpc, (void)A1, (void)A2;
    hi_order[plat_fetch_add32(&hi_n, 1)] = (int32_t)(intptr_t)Ctx;
}

TEST(dpc_high_importance_goes_first)
{
    KDPC blocker, a, b, c;
    block_cpu(&blocker, 0);
    KeInitializeDpc(&a, order_dpc, (PVOID)1);
    KeInitializeDpc(&b, order_dpc, (PVOID)2);
    KeInitializeDpc(&c, order_dpc, (PVOID)3);
    KeSetTargetProcessorDpc(&a, 0);
    KeSetTargetProcessorDpc(&b, 0);
    KeSetTargetProcessorDpc(&c, 0);
    KeSetImportanceDpc(&c, HighImportance);
    hi_n = 0;
    KeInsertQueueDpc(&a, NULL, NULL);
    KeInsertQueueDpc(&b, NULL, NULL);
    KeInsertQueueDpc(&c, NULL, NULL);
    plat_store32((int32_t *)&blocker_release, 1);
    KeFlushQueuedDpcs();
    REQUIRE(hi_n == 3);
    CHECK_EQ(hi_order[0], 3);
    CHECK_EQ(hi_order[1], 1);
    CHECK_EQ(hi_order[2], 2);
}

/* ------------------------------------------------------------------ timers */

TEST(timer_one_shot_fires_dpc_once)
{
    irpk_reports_clear();
    static dpc_probe p;
    KTIMER timer;
    KDPC dpc;
    probe_init(&p, &dpc);
    KeInitializeTimer(&timer);
    CHECK_EQ(KeReadStateTimer(&timer), FALSE);
    CHECK_EQ(KeSetTimer(&timer, rel_ms(5), &dpc), FALSE); /* was not set */
    CHECK_EQ(KeWaitForSingleObject(&timer, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(KeReadStateTimer(&timer), TRUE); /* notification timer stays signalled */
    CHECK_EQ(wait_ok(&p.done), STATUS_SUCCESS);
    LARGE_INTEGER d = rel_ms(20);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeFlushQueuedDpcs();
    CHECK_EQ(p.runs, 1);
    CHECK_EQ(p.irql, DISPATCH_LEVEL);
    CHECK_EQ(strncmp(p.thread_name, "DPC cpu", 7), 0);
    CHECK_EQ(KeCancelTimer(&timer), FALSE); /* expired */
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(timer_cancel_and_rearm_return_values)
{
    static dpc_probe p;
    KTIMER timer;
    KDPC dpc;
    probe_init(&p, &dpc);
    KeInitializeTimer(&timer);
    CHECK_EQ(KeCancelTimer(&timer), FALSE); /* never set */
    CHECK_EQ(KeSetTimer(&timer, rel_ms(60000), &dpc), FALSE);
    CHECK_EQ(KeSetTimer(&timer, rel_ms(60000), &dpc), TRUE); /* re-arming a set timer */
    CHECK_EQ(ke_timers_set() >= 1, 1);
    CHECK_EQ(KeCancelTimer(&timer), TRUE);
    CHECK_EQ(KeCancelTimer(&timer), FALSE);
    CHECK_EQ(KeReadStateTimer(&timer), FALSE);
    KeFlushQueuedDpcs();
    CHECK_EQ(p.runs, 0);
    /* Re-arm after cancel with a short due time: fires. */
    CHECK_EQ(KeSetTimer(&timer, rel_ms(1), &dpc), FALSE);
    CHECK_EQ(wait_ok(&timer), STATUS_SUCCESS);
    CHECK_EQ(wait_ok(&p.done), STATUS_SUCCESS);
    CHECK_EQ(p.runs, 1);
    /* Setting again resets the signal state. */
    CHECK_EQ(KeSetTimer(&timer, rel_ms(60000), NULL), FALSE);
    CHECK_EQ(KeReadStateTimer(&timer), FALSE);
    CHECK_EQ(KeCancelTimer(&timer), TRUE);
}

TEST(timer_absolute_due_time_and_sync_timer)
{
    KTIMER timer;
    KeInitializeTimerEx(&timer, SynchronizationTimer);
    CHECK_EQ(timer.Header.Type, TimerSynchronizationObject);
    LARGE_INTEGER due;
    KeQuerySystemTime(&due);
    due.QuadPart += 5 * 10000; /* now + 5 ms, absolute */
    CHECK_EQ(KeSetTimer(&timer, due, NULL), FALSE);
    CHECK_EQ(wait_ok(&timer), STATUS_SUCCESS);
    CHECK_EQ(KeReadStateTimer(&timer), FALSE); /* synchronization timer: consumed */
    CHECK_EQ(poll(&timer), STATUS_TIMEOUT);
}

static int32_t periodic_runs;
static VOID periodic_dpc(PKDPC Dpc, PVOID Ctx, PVOID A1, PVOID A2)
{
    (void)Dpc, (void)Ctx, (void)A1, (void)A2;
    plat_fetch_add32(&periodic_runs, 1);
}

TEST(timer_periodic_fires_until_cancelled)
{
    KTIMER timer;
    KDPC dpc;
    KeInitializeTimer(&timer);
    KeInitializeDpc(&dpc, periodic_dpc, NULL);
    periodic_runs = 0;
    CHECK_EQ(KeSetTimerEx(&timer, rel_ms(1), 2, &dpc), FALSE);
    LARGE_INTEGER d = rel_ms(2);
    for (int i = 0; i < 10000 && plat_load32(&periodic_runs) < 3; i++)
        KeDelayExecutionThread(KernelMode, FALSE, &d);
    CHECK(plat_load32(&periodic_runs) >= 3);
    CHECK_EQ(KeCancelTimer(&timer), TRUE); /* a periodic timer stays set */
    /* A DPC queued by an expiry that raced with the cancel may still run; let it. */
    d = rel_ms(100);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeFlushQueuedDpcs();
    int32_t after_cancel = plat_load32(&periodic_runs);
    KeDelayExecutionThread(KernelMode, FALSE, &d);
    KeFlushQueuedDpcs();
    CHECK_EQ(plat_load32(&periodic_runs), after_cancel); /* no more expiries */
    CHECK_EQ(KeCancelTimer(&timer), FALSE);
}

/* Regression: KeSetTimer reset the signal state *after* publishing the armed timer, so an
 * expiry that ran in between was wiped out and a waiter on the timer hung. Many short timers
 * while a periodic timer keeps the timer thread busy make the window likely. */
static KTIMER busy_timer;
TEST(regress_short_timer_signal_not_lost)
{
    KeInitializeTimer(&busy_timer);
    KeSetTimerEx(&busy_timer, rel_ms(1), 1, NULL); /* keeps the timer thread awake */
    long n = irpk_test_scale(2000);
    long timeouts = 0;
    for (long i = 0; i < n; i++) {
        KTIMER t;
        KeInitializeTimer(&t);
        LARGE_INTEGER due = {.QuadPart = -1 - (LONGLONG)(i % 3)}; /* already due (100–300 ns) */
        KeSetTimer(&t, due, NULL);
        LARGE_INTEGER to = rel_ms(2000);
        if (KeWaitForSingleObject(&t, Executive, KernelMode, FALSE, &to) != STATUS_SUCCESS) {
            timeouts++;
            KeCancelTimer(&t);
            if (timeouts > 2) break;
        }
    }
    KeCancelTimer(&busy_timer);
    CHECK_EQ(timeouts, 0);
}

/* ------------------------------------------------------------------ pool and lookaside */

#define TAG_A 0x41414141u /* 'AAAA' */
#define TAG_B 0x42424242u

TEST(pool_allocate_zero_tags_failure)
{
    int quiet = irpk_reports_set_quiet(1);
    irpk_reports_clear();
    long base = ke_pool_outstanding_tag(TAG_A);
    unsigned char *p = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG_A);
    REQUIRE(p != NULL);
    CHECK_EQ(((uintptr_t)p) % 16, 0);
    memset(p, 0xAB, 64);
    CHECK_EQ(ke_pool_outstanding_tag(TAG_A), base + 1);
    ExFreePoolWithTag(p, TAG_A);
    CHECK_EQ(ke_pool_outstanding_tag(TAG_A), base);

    unsigned char *z = ExAllocatePoolZero(NonPagedPoolNx, 4096, TAG_A);
    REQUIRE(z != NULL);
    int nonzero = 0;
    for (int i = 0; i < 4096; i++) nonzero += z[i] != 0;
    CHECK_EQ(nonzero, 0);
    ExFreePoolWithTag(z, TAG_A);
    unsigned char *z2 = ExAllocatePool2(POOL_FLAG_NON_PAGED, 4096, TAG_A);
    REQUIRE(z2 != NULL);
    for (int i = 0; i < 4096; i++) nonzero += z2[i] != 0;
    CHECK_EQ(nonzero, 0);
    ExFreePool(z2); /* untagged free: no check */
    unsigned char *u = ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, 16, TAG_A);
    REQUIRE(u != NULL);
    ExFreePoolWithTag(u, TAG_A);
    CHECK_EQ(irpk_report_count(), 0);

    /* Tag mismatch: reported (0xC2), freed anyway. */
    p = ExAllocatePoolWithTag(NonPagedPool, 8, TAG_A);
    REQUIRE(p != NULL);
    ExFreePoolWithTag(p, TAG_B);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC2);
    CHECK_EQ(irpk_report_param(0, 0), 0x9B);
    CHECK_PTR(irpk_report_param(0, 1), p);
    CHECK_EQ(irpk_report_param(0, 2), TAG_B);
    CHECK_EQ(irpk_report_param(0, 3), TAG_A);
    CHECK_STR(irpk_report_name(0), "BAD_POOL_CALLER");
    CHECK_EQ(ke_pool_outstanding_tag(TAG_A), base);

    /* ExFreePool(NULL) is reported, not a crash. */
    ExFreePool(NULL);
    CHECK_EQ(irpk_report_count(), 2);
    CHECK_EQ(irpk_report_code(1), 0xC2);

    /* Injected allocation failure: NULL, never an abort; the next one succeeds. */
    plat_fail_allocs(1);
    CHECK_PTR(ExAllocatePoolWithTag(NonPagedPool, 32, TAG_A), NULL);
    CHECK_EQ(ke_pool_outstanding_tag(TAG_A), base);
    p = ExAllocatePoolWithTag(NonPagedPool, 32, TAG_A);
    CHECK(p != NULL);
    ExFreePoolWithTag(p, TAG_A);
    plat_fail_allocs(1);
    CHECK_PTR(ExAllocatePoolZero(NonPagedPool, 32, TAG_A), NULL);
    plat_fail_allocs(1);
    CHECK_PTR(ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, TAG_A), NULL);
    CHECK_PTR(ExAllocatePoolWithTag(NonPagedPool, (SIZE_T)-1, TAG_A), NULL); /* overflow */
    CHECK_EQ(ke_pool_outstanding_tag(TAG_A), base);
    irpk_reports_clear();
    irpk_reports_set_quiet(quiet);
}

static int32_t la_allocs, la_frees;
static PVOID la_alloc(POOL_TYPE t, SIZE_T n, ULONG tag)
{
    plat_fetch_add32(&la_allocs, 1);
    return ExAllocatePoolWithTag(t, n, tag);
}
static VOID la_free(PVOID p)
{
    plat_fetch_add32(&la_frees, 1);
    ExFreePoolWithTag(p, TAG_B);
}

TEST(lookaside_reuse_and_delete)
{
    irpk_reports_clear();
    long base = ke_pool_outstanding_tag(TAG_B);
    NPAGED_LOOKASIDE_LIST L;
    la_allocs = la_frees = 0;
    ExInitializeNPagedLookasideList(&L, la_alloc, la_free, 0, 100, TAG_B, 2);
    CHECK_EQ(L.Size, 100);
    CHECK_EQ(L.Tag, TAG_B);
    void *a = ExAllocateFromNPagedLookasideList(&L);
    void *b = ExAllocateFromNPagedLookasideList(&L);
    void *c = ExAllocateFromNPagedLookasideList(&L);
    REQUIRE(a && b && c);
    CHECK_EQ(la_allocs, 3);
    CHECK_EQ(L.TotalAllocates, 3);
    CHECK_EQ(L.AllocateMisses, 3);
    memset(a, 1, 100);
    ExFreeToNPagedLookasideList(&L, a);
    ExFreeToNPagedLookasideList(&L, b);
    ExFreeToNPagedLookasideList(&L, c);
    CHECK_EQ(L.TotalFrees, 3);
#if defined(IRPK_SANITIZER_ASAN)
    /* Under ASan nothing is cached (use-after-free is caught at once). */
    CHECK_EQ(la_frees, 3);
    CHECK_EQ(L.FreeMisses, 3);
#else
    CHECK_EQ(la_frees, 1); /* depth 2: the third block is really freed */
    CHECK_EQ(L.FreeMisses, 1);
    CHECK_EQ(L.IrpkCount, 2);
    void *r = ExAllocateFromNPagedLookasideList(&L);
    CHECK_PTR(r, b); /* LIFO reuse of a cached block */
    CHECK_EQ(la_allocs, 3);
    CHECK_EQ(L.AllocateMisses, 3);
    ExFreeToNPagedLookasideList(&L, r);
#endif
    ExDeleteNPagedLookasideList(&L);
    CHECK_EQ(la_frees, 3);
    CHECK_EQ(ke_pool_outstanding_tag(TAG_B), base);

    /* Default pool functions and depth. */
    ExInitializeNPagedLookasideList(&L, NULL, NULL, 0, 1, TAG_B, 0);
    CHECK(L.Size >= sizeof(SINGLE_LIST_ENTRY));
    CHECK_EQ(L.MaximumDepth, 256);
    void *d = ExAllocateFromNPagedLookasideList(&L);
    REQUIRE(d != NULL);
    CHECK_EQ(ke_pool_outstanding_tag(TAG_B), base + 1);
    ExFreeToNPagedLookasideList(&L, d);
    ExDeleteNPagedLookasideList(&L);
    CHECK_EQ(ke_pool_outstanding_tag(TAG_B), base);
    CHECK_EQ(irpk_report_count(), 0);
}

/* ------------------------------------------------------------------ strings and lists */

TEST(unicode_strings)
{
    UNICODE_STRING a, b, e;
    RtlInitUnicodeString(&a, L"Device");
    CHECK_EQ(a.Length, 6 * sizeof(WCHAR));
    CHECK_EQ(a.MaximumLength, 7 * sizeof(WCHAR));
    RtlInitUnicodeString(&b, L"DEVICE");
    CHECK_EQ(RtlEqualUnicodeString(&a, &b, FALSE), FALSE);
    CHECK_EQ(RtlEqualUnicodeString(&a, &b, TRUE), TRUE);
    CHECK(RtlCompareUnicodeString(&a, &b, FALSE) > 0); /* 'e' > 'E' */
    CHECK_EQ(RtlCompareUnicodeString(&a, &b, TRUE), 0);
    RtlInitUnicodeString(&e, NULL);
    CHECK_EQ(e.Length, 0);
    CHECK_EQ(e.MaximumLength, 0);
    CHECK_PTR(e.Buffer, NULL);
    UNICODE_STRING c = RTL_CONSTANT_STRING(L"Dev");
    CHECK_EQ(c.Length, 3 * sizeof(WCHAR));
    CHECK_EQ(c.MaximumLength, 4 * sizeof(WCHAR));
    CHECK(RtlCompareUnicodeString(&c, &a, FALSE) < 0); /* prefix sorts first */
    CHECK_EQ(RtlEqualUnicodeString(&c, &a, TRUE), FALSE);
    WCHAR buf[4];
    UNICODE_STRING d = {0, sizeof buf, buf};
    RtlCopyUnicodeString(&d, &a); /* truncated to 4 characters */
    CHECK_EQ(d.Length, sizeof buf);
    CHECK_EQ(memcmp(buf, L"Devi", sizeof buf), 0);
    CHECK_EQ(RtlCompareMemory("abcd", "abXd", 4), 2);
}

TEST(list_macros)
{
    LIST_ENTRY h, a, b, c;
    InitializeListHead(&h);
    CHECK(IsListEmpty(&h));
    InsertTailList(&h, &a);
    InsertTailList(&h, &b);
    InsertHeadList(&h, &c); /* c a b */
    CHECK_PTR(h.Flink, &c);
    CHECK_PTR(h.Blink, &b);
    CHECK_PTR(c.Blink, &h);
    CHECK_EQ(RemoveEntryList(&a), FALSE); /* c b: not empty */
    CHECK_PTR(RemoveTailList(&h), &b);
    CHECK_PTR(RemoveHeadList(&h), &c);
    CHECK(IsListEmpty(&h));
    InsertTailList(&h, &a);
    CHECK_EQ(RemoveEntryList(&a), TRUE); /* now empty */
    /* AppendTailList: [a] + headless ring (b c) → a b c */
    InsertTailList(&h, &a);
    b.Flink = &c, b.Blink = &c, c.Flink = &b, c.Blink = &b;
    AppendTailList(&h, &b);
    CHECK_PTR(h.Flink, &a);
    CHECK_PTR(a.Flink, &b);
    CHECK_PTR(b.Flink, &c);
    CHECK_PTR(c.Flink, &h);
    CHECK_PTR(h.Blink, &c);
    CHECK_PTR(c.Blink, &b);
    SINGLE_LIST_ENTRY sh = {NULL}, s1, s2;
    CHECK_PTR(PopEntryList(&sh), NULL);
    PushEntryList(&sh, &s1);
    PushEntryList(&sh, &s2);
    CHECK_PTR(PopEntryList(&sh), &s2);
    CHECK_PTR(PopEntryList(&sh), &s1);
    CHECK_PTR(PopEntryList(&sh), NULL);
    struct holder {
        int x;
        LIST_ENTRY link;
    } hold;
    CHECK_PTR(CONTAINING_RECORD(&hold.link, struct holder, link), &hold);
    CHECK_EQ(FIELD_OFFSET(struct holder, link), offsetof(struct holder, link));
}

TEST(runtime_shutdown_and_restart_of_service_threads)
{
    static dpc_probe p;
    KDPC dpc;
    probe_init(&p, &dpc);
    irpk_runtime_shutdown();
    irpk_runtime_shutdown(); /* idempotent */
    CHECK_EQ(KeInsertQueueDpc(&dpc, NULL, NULL), TRUE); /* threads restart on demand */
    CHECK_EQ(wait_ok(&p.done), STATUS_SUCCESS);
    KTIMER t;
    KeInitializeTimer(&t);
    KeSetTimer(&t, rel_ms(1), NULL);
    CHECK_EQ(wait_ok(&t), STATUS_SUCCESS);
    irpk_runtime_shutdown();
    CHECK_EQ(ke_dpcs_queued(), 0);
    CHECK_EQ(ke_timers_set(), 0);
}

/* Regression: two threads on different virtual CPUs inserting the same untargeted DPC at once
 * must queue it at most once per run (each TRUE return is matched by exactly one run). */
static KDPC shared_dpc;
static int32_t shared_runs, shared_inserts, race_stop;
static VOID shared_dpc_routine(PKDPC Dpc, PVOID Ctx, PVOID A1, PVOID A2)
{
    UNREFERENCED_PARAMETER(Dpc);
    UNREFERENCED_PARAMETER(Ctx);
    UNREFERENCED_PARAMETER(A1);
    UNREFERENCED_PARAMETER(A2);
    InterlockedIncrement(&shared_runs);
}
static void dpc_inserter(void *arg)
{
    plat_self()->vcpu = (uint8_t)(intptr_t)arg; /* one inserter per virtual CPU */
    while (!plat_load32(&race_stop))
        if (KeInsertQueueDpc(&shared_dpc, NULL, NULL)) InterlockedIncrement(&shared_inserts);
}
TEST(regress_same_dpc_inserted_from_two_cpus_runs_once_per_insert)
{
    KeInitializeDpc(&shared_dpc, shared_dpc_routine, NULL);
    shared_runs = shared_inserts = race_stop = 0;
    plat_thread *a = plat_thread_start(dpc_inserter, (void *)0, "ins-0", 0);
    plat_thread *b = plat_thread_start(dpc_inserter, (void *)1, "ins-1", 0);
    plat_sleep_ns(irpk_test_scale(200) * 1000000LL);
    plat_store32(&race_stop, 1);
    plat_thread_join(a);
    plat_thread_join(b);
    KeFlushQueuedDpcs();
    CHECK(shared_inserts > 0);
    CHECK_EQ(shared_runs, shared_inserts);
    CHECK_EQ(ke_dpcs_queued(), 0);
}
