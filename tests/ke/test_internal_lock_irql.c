/* ke's internal locks against DPCs of the same virtual CPU, under the race explorer.
 *
 * Windows holds its dispatcher database lock, the per-processor DPC queue locks and the timer
 * table lock at DISPATCH_LEVEL or above, so a DPC can never run on a CPU while code there holds
 * one of them. irpkit's equivalents (wait.c's dispatcher lock, dpc.c's queue locks and
 * start_lock, timer.c's timer_lock) are platform lock words; they used to be taken at the
 * caller's IRQL, often PASSIVE_LEVEL. Under the explorer a thread at DISPATCH_LEVEL holds its
 * vCPU (its neighbours are shut out while it runs or spins for a lock), so a DPC — or a thread
 * holding a spin lock — on a PASSIVE holder's vCPU could preempt it at a scheduling point
 * inside the critical section (KeSetEvent's wake-up, the DPC insert's atomics, the thread
 * start), spin on the lock and shut the holder out: a deadlock no Windows machine can have.
 *
 * Each scenario puts exactly that contention on one vCPU and must pass every schedule within
 * two preemptions (before the fix each was reported as a deadlock at the first preemption).
 * Every scenario also checks that the caller's IRQL is what it was (the locks raise and lower
 * again) and that the work got done. */
#include <ntddk.h>
#include <string.h>

#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "ke/ke.h"
#include "explore_check.h"
#include "test.h"

/* Exhaustive to two preemptions natively (each deadlock needed one; the second checks the raised
 * locks bring no new failure nearby), to one in sanitizer runs (IRPK_STRESS_SCALE < 1). */
static void expect_clean(const char *what, irpk_scenario_fn fn, unsigned vcpus)
{
    irpk_test_explore_clean(what, fn, 2, vcpus);
}

static void on_vcpu(uint8_t k) { plat_self()->vcpu = k; }

/* ------------------------------------------------------------------ the dispatcher lock */

/* main (vCPU 0, PASSIVE_LEVEL) sets an event a waiter sleeps on: KeSetEvent holds the
 * dispatcher lock across the waiter's wake-up (a scheduling point). A DPC on vCPU 0 sets the
 * same event and another one. The waiter says it is about to wait and main waits for that, so
 * the waiter is asleep on the event without a preemption. Before the fix: main preempted inside
 * KeSetEvent (the one preemption), DPC cpu0 at DISPATCH_LEVEL waiting for the dispatcher lock,
 * main shut out of vCPU 0, the waiter asleep. */
static struct {
    KEVENT ready, wake, dpc_done;
    KDPC dpc;
    volatile int32_t woken;
} D;

static VOID set_events_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx);
    UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    KeSetEvent(&D.wake, IO_NO_INCREMENT, FALSE);
    KeSetEvent(&D.dpc_done, IO_NO_INCREMENT, FALSE);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == DISPATCH_LEVEL);
}

static void event_waiter(void *arg)
{
    (void)arg;
    on_vcpu(1);
    KeSetEvent(&D.ready, IO_NO_INCREMENT, FALSE);
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&D.wake, Executive, KernelMode, FALSE, NULL) == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    plat_store32(&D.woken, 1);
}

static void dispatcher_lock_scenario(void *arg)
{
    (void)arg;
    memset(&D, 0, sizeof D);
    on_vcpu(0);
    KeInitializeEvent(&D.ready, NotificationEvent, FALSE);
    KeInitializeEvent(&D.wake, NotificationEvent, FALSE);
    KeInitializeEvent(&D.dpc_done, NotificationEvent, FALSE);
    KeInitializeDpc(&D.dpc, set_events_dpc, NULL);
    KeSetTargetProcessorDpc(&D.dpc, 0); /* main's own vCPU */
    irpk_thread *w = irpk_thread_start(event_waiter, NULL, "waiter");
    KeWaitForSingleObject(&D.ready, Executive, KernelMode, FALSE, NULL);
    KeInsertQueueDpc(&D.dpc, NULL, NULL);
    KeSetEvent(&D.wake, IO_NO_INCREMENT, FALSE);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&D.dpc_done, Executive, KernelMode, FALSE, NULL) == STATUS_SUCCESS);
    irpk_thread_join(w);
    IRPK_EXPLORE_CHECK(plat_load32(&D.woken) == 1);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
}

TEST(dispatcher_lock_holder_is_not_preempted_by_a_dpc_of_its_vcpu)
{
    expect_clean("KeSetEvent vs a DPC's KeSetEvent, one vCPU", dispatcher_lock_scenario, 2);
}

/* ------------------------------------------------------------------ the DPC queue lock */

/* main (vCPU 0, PASSIVE_LEVEL) queues a DPC on vCPU 0's queue (its lock is held across the
 * insert's atomics); a second thread of vCPU 0 holds a driver spin lock (DISPATCH_LEVEL) and
 * queues another DPC there, as StartIo calling IoRequestDpc does. Before the fix: main
 * preempted inside KeInsertQueueDpc, the spin-lock holder at DISPATCH_LEVEL waiting for the
 * queue lock, main shut out. */
static struct {
    KDPC a, b;
    KSPIN_LOCK lock;
    volatile int32_t ran;
} Q;

static VOID count_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx);
    UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    plat_fetch_add32(&Q.ran, 1);
}

static void raised_inserter(void *arg)
{
    (void)arg;
    on_vcpu(0);
    KIRQL old;
    KeAcquireSpinLock(&Q.lock, &old);
    KeInsertQueueDpc(&Q.b, NULL, NULL);
    KeReleaseSpinLock(&Q.lock, old);
}

static void dpc_queue_lock_scenario(void *arg)
{
    (void)arg;
    memset(&Q, 0, sizeof Q);
    on_vcpu(0);
    KeInitializeSpinLock(&Q.lock);
    KeInitializeDpc(&Q.a, count_dpc, NULL);
    KeInitializeDpc(&Q.b, count_dpc, NULL);
    KeSetTargetProcessorDpc(&Q.a, 0);
    KeSetTargetProcessorDpc(&Q.b, 0);
    irpk_thread *t = irpk_thread_start(raised_inserter, NULL, "raised");
    KeInsertQueueDpc(&Q.a, NULL, NULL);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    irpk_thread_join(t);
    KeFlushQueuedDpcs();
    IRPK_EXPLORE_CHECK(plat_load32(&Q.ran) == 2);
}

TEST(dpc_queue_lock_holder_is_not_preempted_by_a_raised_thread_of_its_vcpu)
{
    expect_clean("KeInsertQueueDpc vs KeInsertQueueDpc at DISPATCH_LEVEL, one vCPU", dpc_queue_lock_scenario, 2);
}

/* ------------------------------------------------------------------ the DPC threads' start lock */

/* Three vCPUs. main (vCPU 0) queues a DPC on vCPU 0, then the first DPC for vCPU 2: it starts
 * vCPU 2's DPC thread holding start_lock (the thread start is a scheduling point). The DPC on
 * vCPU 0 queues the first DPC for vCPU 1, which needs start_lock too. Before the fix: main
 * preempted while starting the thread, DPC cpu0 waiting for start_lock at DISPATCH_LEVEL. */
static struct {
    KDPC first, to1, to2;
    volatile int32_t ran;
} S;

static VOID count_s(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx);
    UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    plat_fetch_add32(&S.ran, 1);
}

static VOID queue_to_cpu1(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx);
    UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    KeInsertQueueDpc(&S.to1, NULL, NULL);
    plat_fetch_add32(&S.ran, 1);
}

static void start_lock_scenario(void *arg)
{
    (void)arg;
    memset(&S, 0, sizeof S);
    on_vcpu(0);
    KeInitializeDpc(&S.first, queue_to_cpu1, NULL);
    KeInitializeDpc(&S.to1, count_s, NULL);
    KeInitializeDpc(&S.to2, count_s, NULL);
    KeSetTargetProcessorDpc(&S.first, 0);
    KeSetTargetProcessorDpc(&S.to1, 1);
    KeSetTargetProcessorDpc(&S.to2, 2);
    KeInsertQueueDpc(&S.first, NULL, NULL);
    KeInsertQueueDpc(&S.to2, NULL, NULL);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    /* The flush may pass vCPU 1's queue before DPC cpu0 queued to it: flush until all ran. */
    while (plat_load32(&S.ran) != 3) {
        KeFlushQueuedDpcs();
        if (plat_load32(&S.ran) != 3) irpk_thread_yield();
    }
}

TEST(dpc_start_lock_holder_is_not_preempted_by_a_dpc_of_its_vcpu)
{
    expect_clean("first DPC for a vCPU vs a DPC's first DPC for another, one vCPU", start_lock_scenario, 3);
}

/* ------------------------------------------------------------------ the timer lock */

/* Two timers due at the same time; the first one's DPC (not targeted) goes to the timer
 * thread's own vCPU and re-arms a third timer. The timer thread fires both in one hold of
 * timer_lock; signalling the second takes the dispatcher lock (a scheduling point), where the
 * DPC, woken by the first expiry, may run. Before the fix: the timer thread preempted there,
 * the DPC at DISPATCH_LEVEL waiting for timer_lock, the timer thread shut out of its vCPU,
 * main waiting for the second timer. */
static struct {
    KTIMER first, second, rearmed;
    KDPC dpc;
    volatile int32_t ran;
} T;

static VOID rearm_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx);
    UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    LARGE_INTEGER due = {.QuadPart = -10LL * 10000000}; /* 10 s: cancelled before it fires */
    KeSetTimer(&T.rearmed, due, NULL);
    plat_fetch_add32(&T.ran, 1);
}

static void timer_lock_scenario(void *arg)
{
    (void)arg;
    memset(&T, 0, sizeof T);
    KeInitializeTimer(&T.first);
    KeInitializeTimer(&T.second);
    KeInitializeTimer(&T.rearmed);
    KeInitializeDpc(&T.dpc, rearm_dpc, NULL);
    LARGE_INTEGER due = {.QuadPart = -10000}; /* 1 ms (virtual), both */
    KeSetTimer(&T.first, due, &T.dpc);
    KeSetTimer(&T.second, due, NULL);
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&T.second, Executive, KernelMode, FALSE, NULL) == STATUS_SUCCESS);
    KeFlushQueuedDpcs();
    IRPK_EXPLORE_CHECK(plat_load32(&T.ran) == 1);
    KeCancelTimer(&T.rearmed); /* or it fired: virtual time may jump 10 s when all wait */
    IRPK_EXPLORE_CHECK(ke_timers_set() == 0);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
}

TEST(timer_lock_holder_is_not_preempted_by_a_dpc_of_its_vcpu)
{
    expect_clean("timer expiry vs a DPC's KeSetTimer, one vCPU", timer_lock_scenario, 2);
}

/* ------------------------------------------------------------------ natively */

/* Natively the raise is invisible to the caller: the IRQL comes back to what it was, from
 * PASSIVE_LEVEL and from DISPATCH_LEVEL (a spin lock held), and no verifier report is raised. */
TEST(internal_locks_leave_the_callers_irql_as_it_was)
{
    KEVENT ev;
    KTIMER t;
    KDPC dpc;
    KSPIN_LOCK lock;
    KIRQL old;
    memset(&Q, 0, sizeof Q);
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    KeInitializeTimer(&t);
    KeInitializeDpc(&dpc, count_dpc, NULL);
    KeInitializeSpinLock(&lock);
    for (int raised = 0; raised < 2; raised++) {
        if (raised) KeAcquireSpinLock(&lock, &old);
        KIRQL expect = raised ? DISPATCH_LEVEL : PASSIVE_LEVEL;
        KeSetEvent(&ev, IO_NO_INCREMENT, FALSE);
        CHECK_EQ(KeGetCurrentIrql(), expect);
        LARGE_INTEGER zero = {.QuadPart = 0};
        CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &zero), STATUS_SUCCESS);
        CHECK_EQ(KeGetCurrentIrql(), expect);
        KeResetEvent(&ev);
        CHECK_EQ(KeGetCurrentIrql(), expect);
        LARGE_INTEGER due = {.QuadPart = -10LL * 10000000};
        KeSetTimer(&t, due, NULL);
        CHECK_EQ(KeGetCurrentIrql(), expect);
        CHECK_EQ(KeCancelTimer(&t), TRUE);
        CHECK_EQ(KeGetCurrentIrql(), expect);
        CHECK_EQ(KeInsertQueueDpc(&dpc, NULL, NULL), TRUE);
        CHECK_EQ(KeGetCurrentIrql(), expect);
        if (raised) KeReleaseSpinLock(&lock, old);
        KeFlushQueuedDpcs();
        CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    }
    CHECK_EQ(plat_load32(&Q.ran), 2);
}
