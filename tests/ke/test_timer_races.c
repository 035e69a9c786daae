/* Timer and DPC teardown races (regression tests for the review of src/ke/timer.c and dpc.c).
 *
 * The driver's classic teardown is "KeCancelTimer; KeFlushQueuedDpcs; free the extension": once
 * both have returned, the timer's DPC must be neither queued, nor running, nor about to be
 * queued (KeCancelTimer's documentation: FALSE for a one-shot timer means its DPC has been
 * queued; KeFlushQueuedDpcs then waits for it). The races are explored, not slept on: the race
 * explorer enumerates every interleaving within the preemption bound, so a window a few
 * instructions wide is found every time. The leak-check tests are plain sequential checks. */
#include <ntddk.h>
#include <string.h>

#include "irpkit/explore.h"
#include "irpkit/runtime.h"
#include "irpkit/thread.h"
#include "ke/ke.h"
#include "explore_check.h"
#include "test.h"

/* ------------------------------------------------------------------ timer expiry vs teardown */

/* The "device extension" the teardown frees. */
static struct {
    KTIMER timer;
    KDPC dpc;
    volatile int32_t ran;      /* DPC routine calls */
    volatile int32_t torn_down; /* the teardown finished: the memory is gone */
    bool with_dpc;
} x;

static VOID timer_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx);
    UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    IRPK_EXPLORE_CHECK(!plat_load32(&x.torn_down)); /* a DPC on freed memory */
    plat_fetch_add32(&x.ran, 1);
}

/* The trace's observer reads timer->Dpc when the timer fires: the KTIMER must still be live. */
static void on_timer_fired(PKTIMER t)
{
    IRPK_EXPLORE_CHECK(!plat_load32(&x.torn_down));
    IRPK_EXPLORE_CHECK(t == &x.timer && t->Dpc == (x.with_dpc ? &x.dpc : NULL));
}
static const ke_observer observer = {NULL, NULL, on_timer_fired};

/* Arm a timer (with a DPC unless !with_dpc), wait until it has expired, then tear down.
 * `period` 0: one-shot. */
static void teardown_after_expiry(LONG period, bool with_dpc)
{
    memset(&x, 0, sizeof x);
    x.with_dpc = with_dpc;
    ke_set_observer(&observer);
    KeInitializeTimer(&x.timer);
    KeInitializeDpc(&x.dpc, timer_dpc, NULL);
    LARGE_INTEGER due = {.QuadPart = -10000}; /* 1 ms (virtual) */
    KeSetTimerEx(&x.timer, due, period, with_dpc ? &x.dpc : NULL);
    /* Signalled = expired (the fire signals the timer and queues its DPC as one step). */
    KeWaitForSingleObject(&x.timer, Executive, KernelMode, FALSE, NULL);
    BOOLEAN still_set = KeCancelTimer(&x.timer);
    KeFlushQueuedDpcs();
    int32_t ran = plat_load32(&x.ran);
    /* One-shot: FALSE (it expired), and its DPC, queued by that expiry, has run. */
    if (!period) IRPK_EXPLORE_CHECK(!still_set && ran == (with_dpc ? 1 : 0));
    if (period) IRPK_EXPLORE_CHECK(still_set && (ran >= 1 || !with_dpc));
    IRPK_EXPLORE_CHECK(ke_dpcs_queued() == 0);
    plat_store32(&x.torn_down, 1);
    /* Give the timer and DPC threads virtual time to do anything still pending (a DPC queued
     * after the teardown fails the check in timer_dpc, or is caught by the recount below). */
    LARGE_INTEGER later = {.QuadPart = -50 * 10000};
    KeDelayExecutionThread(KernelMode, FALSE, &later);
    KeFlushQueuedDpcs();
    IRPK_EXPLORE_CHECK(plat_load32(&x.ran) == ran);
    IRPK_EXPLORE_CHECK(ke_timers_set() == 0);
    ke_set_observer(NULL);
}

static void one_shot_scenario(void *arg) { (void)arg, teardown_after_expiry(0, true); }
static void periodic_scenario(void *arg) { (void)arg, teardown_after_expiry(5, true); }
static void no_dpc_scenario(void *arg) { (void)arg, teardown_after_expiry(0, false); }

/* Exhaustive to `bound` preemptions natively; to 1 in sanitizer runs (IRPK_STRESS_SCALE < 1),
 * where every execution costs ~100 times more. Each race here is found at bound 1 or less. */
static void expect_clean(irpk_scenario_fn fn, unsigned bound)
{
    irpk_test_explore_clean("timer race", fn, bound, 0);
    /* A failing execution stops mid-scenario: the observer is cleared here as well. */
    ke_set_observer(NULL);
}

/* The timer thread used to signal the expiry under timer_lock, drop the lock and only then
 * queue the DPC: KeCancelTimer (FALSE) + KeFlushQueuedDpcs fitted in between and returned
 * before the DPC was even queued. */
TEST(one_shot_dpc_is_done_after_cancel_and_flush)
{
    expect_clean(one_shot_scenario, 3);
}

TEST(periodic_dpc_is_done_after_cancel_and_flush)
{
    expect_clean(periodic_scenario, 2);
}

/* The observer (the trace's reads timer->Dpc) was called after timer_lock was dropped: the
 * driver could cancel and free the timer first. */
TEST(observer_sees_a_live_timer)
{
    expect_clean(no_dpc_scenario, 3);
}

/* ------------------------------------------------------------------ KeFlushQueuedDpcs vs other DPCs */

/* KeFlushQueuedDpcs waits for the DPCs queued before the call, whatever other DPCs do
 * meanwhile. It used to wait until "DPCs finished" reached "DPCs inserted" as sampled at the
 * call: a DPC inserted after that and removed again (KeRemoveQueueDpc counts as finished), or
 * a HighImportance one that overtook the queue, made up the count while the flushed DPC was
 * still queued. */
static KDPC mine, other;
static volatile int32_t mine_ran, other_ran;
static bool other_high;

static VOID count_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    plat_fetch_add32((volatile int32_t *)ctx, 1);
}

static void flusher(void *arg)
{
    (void)arg;
    KeInsertQueueDpc(&mine, NULL, NULL);
    KeFlushQueuedDpcs();
    IRPK_EXPLORE_CHECK(plat_load32(&mine_ran) == 1); /* queued before the flush: it has run */
}

static void other_dpc_user(void *arg)
{
    (void)arg;
    KeInsertQueueDpc(&other, NULL, NULL);
    if (!other_high) KeRemoveQueueDpc(&other);
}

static void flush_scenario(void *arg)
{
    other_high = arg != NULL;
    mine_ran = other_ran = 0;
    KeInitializeDpc(&mine, count_dpc, (PVOID)&mine_ran);
    KeInitializeDpc(&other, count_dpc, (PVOID)&other_ran);
    KeSetTargetProcessorDpc(&mine, 0); /* one queue: the count is per queue */
    KeSetTargetProcessorDpc(&other, 0);
    if (other_high) KeSetImportanceDpc(&other, HighImportance);
    irpk_thread *a = irpk_thread_start(flusher, NULL, "flusher");
    irpk_thread *b = irpk_thread_start(other_dpc_user, NULL, "other");
    irpk_thread_join(a);
    irpk_thread_join(b);
    KeFlushQueuedDpcs();
}

static void flush_vs_remove(void *arg) { (void)arg, flush_scenario(NULL); }
static void flush_vs_high_importance(void *arg) { (void)arg, flush_scenario((void *)1); }

TEST(flush_waits_for_its_dpc_when_another_is_inserted_and_removed)
{
    expect_clean(flush_vs_remove, 2);
}

TEST(flush_waits_for_its_dpc_when_a_high_importance_one_overtakes_it)
{
    expect_clean(flush_vs_high_importance, 2);
}

/* ------------------------------------------------------------------ timers left by a shutdown */

/* irpk_runtime_shutdown stops the timer thread but leaves armed timers linked (they fire once
 * the thread restarts). KeCancelTimer and the leak checks used to test "is the thread running"
 * as "is anything armed": after a shutdown they answered FALSE / 0 / NULL for an armed timer,
 * and the KTIMER stayed linked after its owner freed it. */
TEST(timer_armed_before_shutdown_is_still_set_and_cancellable)
{
    static KTIMER t;
    static struct { char before[8]; KTIMER timer; char after[8]; } ext;
    KeInitializeTimer(&t);
    KeInitializeTimer(&ext.timer);
    LARGE_INTEGER due = {.QuadPart = -10LL * 10000000}; /* 10 s: never expires in this test */
    KeSetTimer(&t, due, NULL);
    KeSetTimer(&ext.timer, due, NULL);
    irpk_runtime_shutdown();
    CHECK_EQ(ke_timers_set(), 2);
    CHECK(irpk_runtime_init(NULL) != 0); /* refuses: timers are still set */
    CHECK_PTR(ke_timer_set_in(&ext, &ext + 1), &ext.timer);
    CHECK_EQ(KeCancelTimer(&t), TRUE);
    CHECK(!t.Header.Inserted);
    CHECK_EQ(KeCancelTimer(&t), FALSE);
    CHECK_EQ(ke_timers_set(), 1);
    CHECK_EQ(KeCancelTimer(&ext.timer), TRUE);
    CHECK_PTR(ke_timer_set_in(&ext, &ext + 1), NULL);
    CHECK_EQ(ke_timers_set(), 0);
    CHECK_EQ(irpk_runtime_init(NULL), 0);
}

/* A timer re-armed after a shutdown restarts the thread and still fires. */
TEST(timer_restarts_after_shutdown)
{
    static KTIMER t;
    KeInitializeTimer(&t);
    LARGE_INTEGER due = {.QuadPart = -10LL * 10000000};
    KeSetTimer(&t, due, NULL);
    irpk_runtime_shutdown();
    LARGE_INTEGER soon = {.QuadPart = -10000}; /* 1 ms */
    CHECK_EQ(KeSetTimer(&t, soon, NULL), TRUE); /* it was still set */
    CHECK_EQ(KeWaitForSingleObject(&t, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(KeCancelTimer(&t), FALSE);
    CHECK_EQ(ke_timers_set(), 0);
    irpk_runtime_shutdown();
}
