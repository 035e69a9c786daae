/* ke's service threads (DPC queues, the timer) against a shutdown that overlaps their use, under
 * the race explorer (regression tests for the review of src/ke/dpc.c and src/ke/timer.c).
 *
 *   - A DPC inserted while ke_dpc_shutdown stops its queue's thread: KeInsertQueueDpc saw the
 *     thread (queue_for's unlocked check), the thread then drained its queue and exited, and the
 *     DPC was linked after it — with no thread to run it until some later insert. The inserter
 *     waits for its DPC: before the fix, a deadlock at one preemption (main after queue_for).
 *   - ke_timer_shutdown overlapping the first start of the timer thread: it saw "being
 *     started", returned at once, and the thread came up after the shutdown had returned.
 *     main reads the timer thread's state, then shuts down: if a start had begun by then, the
 *     thread must be gone when the shutdown returns (nothing else starts it: the arming
 *     thread's one KeSetTimer has begun its start). Before the fix: fails at one preemption
 *     (the armer's, right after its compare-exchange elected it the starter).
 *
 *   - Two ke_dpc_shutdown calls at once: both read the queue's thread under start_lock, both
 *     asked it to stop, and both joined it — a second pthread_join of a thread whose record
 *     the first join freed. The explorer reports a second join of one thread ("double join").
 *     Before the fix: fails at zero preemptions (the second stopper reads the thread before the
 *     first one's join unpublishes it).
 *
 * All explore every schedule within two preemptions (one under the sanitizers). */
#include <ntddk.h>
#include <string.h>

#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "ke/ke.h"
#include "explore_check.h"
#include "test.h"

/* ------------------------------------------------------------------ DPC insert vs shutdown */

static struct {
    KDPC first, second;
    KEVENT first_ran, second_ran;
} D;

static VOID set_event_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    KeSetEvent((PKEVENT)ctx, IO_NO_INCREMENT, FALSE);
}

static void dpc_stopper(void *arg)
{
    (void)arg;
    ke_dpc_shutdown();
}

static void dpc_insert_vs_shutdown(void *arg)
{
    (void)arg;
    memset(&D, 0, sizeof D);
    KeInitializeEvent(&D.first_ran, NotificationEvent, FALSE);
    KeInitializeEvent(&D.second_ran, NotificationEvent, FALSE);
    KeInitializeDpc(&D.first, set_event_dpc, &D.first_ran);
    KeInitializeDpc(&D.second, set_event_dpc, &D.second_ran);
    KeSetTargetProcessorDpc(&D.first, 0);
    KeSetTargetProcessorDpc(&D.second, 0);
    /* DPC cpu0 is up and idle before the shutdown starts. */
    IRPK_EXPLORE_CHECK(KeInsertQueueDpc(&D.first, NULL, NULL));
    KeWaitForSingleObject(&D.first_ran, Executive, KernelMode, FALSE, NULL);
    irpk_thread *s = irpk_thread_start(dpc_stopper, NULL, "stopper");
    IRPK_EXPLORE_CHECK(KeInsertQueueDpc(&D.second, NULL, NULL));
    /* Run by the stopping thread (it drains before exiting) or by a thread the insert started:
     * never left behind (the lost DPC was a deadlock here). */
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&D.second_ran, Executive, KernelMode, FALSE, NULL) == STATUS_SUCCESS);
    irpk_thread_join(s);
    IRPK_EXPLORE_CHECK(ke_dpcs_queued() == 0);
}

TEST(dpc_inserted_during_shutdown_is_run)
{
    irpk_test_explore_clean("KeInsertQueueDpc vs ke_dpc_shutdown", dpc_insert_vs_shutdown, 2, 2);
}

/* A native round of the same (no explorer): insert, shutdown, insert again — the second DPC
 * runs on a restarted thread, and KeFlushQueuedDpcs finds nothing left. */
TEST(dpc_after_shutdown_restarts_its_thread)
{
    memset(&D, 0, sizeof D);
    KeInitializeEvent(&D.first_ran, NotificationEvent, FALSE);
    KeInitializeEvent(&D.second_ran, NotificationEvent, FALSE);
    KeInitializeDpc(&D.first, set_event_dpc, &D.first_ran);
    KeInitializeDpc(&D.second, set_event_dpc, &D.second_ran);
    CHECK(KeInsertQueueDpc(&D.first, NULL, NULL));
    CHECK_EQ(KeWaitForSingleObject(&D.first_ran, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    ke_dpc_shutdown();
    CHECK(KeInsertQueueDpc(&D.second, NULL, NULL));
    CHECK_EQ(KeWaitForSingleObject(&D.second_ran, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    KeFlushQueuedDpcs();
    CHECK_EQ(ke_dpcs_queued(), 0);
    ke_dpc_shutdown();
}

/* ------------------------------------------------------------------ two shutdowns at once */

static void dpc_double_shutdown(void *arg)
{
    (void)arg;
    memset(&D, 0, sizeof D);
    KeInitializeEvent(&D.first_ran, NotificationEvent, FALSE);
    KeInitializeEvent(&D.second_ran, NotificationEvent, FALSE);
    KeInitializeDpc(&D.first, set_event_dpc, &D.first_ran);
    KeInitializeDpc(&D.second, set_event_dpc, &D.second_ran);
    KeSetTargetProcessorDpc(&D.first, 0);
    KeSetTargetProcessorDpc(&D.second, 0);
    IRPK_EXPLORE_CHECK(KeInsertQueueDpc(&D.first, NULL, NULL)); /* DPC cpu0 is up */
    KeWaitForSingleObject(&D.first_ran, Executive, KernelMode, FALSE, NULL);
    irpk_thread *s1 = irpk_thread_start(dpc_stopper, NULL, "stopper-1");
    irpk_thread *s2 = irpk_thread_start(dpc_stopper, NULL, "stopper-2");
    irpk_thread_join(s1); /* each returns with the thread stopped; it was joined once */
    irpk_thread_join(s2);
    /* Both are done: the queue is usable again (a new thread starts for the next DPC). */
    IRPK_EXPLORE_CHECK(KeInsertQueueDpc(&D.second, NULL, NULL));
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&D.second_ran, Executive, KernelMode, FALSE, NULL) == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(ke_dpcs_queued() == 0);
}

TEST(concurrent_dpc_shutdowns_join_the_thread_once)
{
    irpk_test_explore_clean("ke_dpc_shutdown vs ke_dpc_shutdown", dpc_double_shutdown, 2, 2);
}

/* ------------------------------------------------------------------ timer shutdown vs first start */

static struct {
    KTIMER timer;
    KEVENT ready;
} T;

static void arm_far_timer(void *arg)
{
    (void)arg;
    KeSetEvent(&T.ready, IO_NO_INCREMENT, FALSE); /* main goes on: no preemption spent on that */
    LARGE_INTEGER due;
    due.QuadPart = -10LL * 1000 * 1000 * 3600; /* an hour: never fires within the execution */
    KeSetTimer(&T.timer, due, NULL); /* the first arming: starts the timer thread */
}

static void timer_shutdown_vs_first_start(void *arg)
{
    (void)arg;
    memset(&T, 0, sizeof T);
    KeInitializeTimer(&T.timer);
    KeInitializeEvent(&T.ready, NotificationEvent, FALSE);
    irpk_thread *a = irpk_thread_start(arm_far_timer, NULL, "armer");
    KeWaitForSingleObject(&T.ready, Executive, KernelMode, FALSE, NULL);
    int before = ke_timer_thread_state(); /* 0: no start has begun yet */
    ke_timer_shutdown();
    /* A start that had begun is finished and stopped by the shutdown; the armer makes no other
     * (its one KeSetTimer started it). Before the fix: state 1 or 2 here. */
    if (before != 0) IRPK_EXPLORE_CHECK(ke_timer_thread_state() == 0);
    irpk_thread_join(a);
    KeCancelTimer(&T.timer);
    IRPK_EXPLORE_CHECK(ke_timers_set() == 0);
}

TEST(timer_shutdown_stops_a_thread_being_started)
{
    irpk_test_explore_clean("ke_timer_shutdown vs the first KeSetTimer", timer_shutdown_vs_first_start, 2, 2);
}
