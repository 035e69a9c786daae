/* Spin-lock checks (VERIFIER.md §1 "IRQL and spin locks"): self-deadlock, release when not held
 * or by another thread, the IRQL a release restores, and lock-order cycles reported before
 * any deadlock. Buggy use + correct twin each. */
#include "vfixture.h"

static KSPIN_LOCK a, b;

static void locks_init(void)
{
    KeInitializeSpinLock(&a);
    KeInitializeSpinLock(&b);
}

TEST(same_lock_acquired_twice_reports_0x1000_and_is_refused)
{
    vf_setup();
    locks_init();
    KIRQL o1, o2;
    KeAcquireSpinLock(&a, &o1);
    KeAcquireSpinLock(&a, &o2); /* the bug: would spin forever */
    CHECK_CONTAINS(vf_text(), "self-deadlock");
    EXPECT_REPORT(0xC4, 0x1000, "SpinLock", NULL);
    KeReleaseSpinLock(&a, o2); /* the refused acquire's release: no-op */
    CHECK(a != 0);
    KeReleaseSpinLock(&a, o1);
    CHECK_EQ(a, 0);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(ke_self()->n_held, 0);
    KeAcquireSpinLock(&a, &o1); /* twin: nested different locks */
    KeAcquireSpinLock(&b, &o2);
    KeReleaseSpinLock(&b, o2);
    KeReleaseSpinLock(&a, o1);
    EXPECT_NO_REPORT();
    vf_teardown();
}

TEST(release_of_a_lock_not_held_reports_0x1002_and_is_ignored)
{
    vf_setup();
    locks_init();
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    KeReleaseSpinLockFromDpcLevel(&a); /* the bug */
    EXPECT_REPORT(0xC4, 0x1002, "SpinlockRelease", NULL);
    KeAcquireSpinLockAtDpcLevel(&a); /* twin */
    KeReleaseSpinLockFromDpcLevel(&a);
    KeLowerIrql(old);
    EXPECT_NO_REPORT();
    CHECK_EQ(a, 0);
    vf_teardown();
}

static vf_gate holder_has_it, releaser_done;

static void holder(void *arg)
{
    (void)arg;
    KIRQL old;
    KeAcquireSpinLock(&a, &old);
    vf_gate_open(&holder_has_it);
    vf_gate_wait(&releaser_done); /* plat wait: legal at DISPATCH_LEVEL */
    KeReleaseSpinLock(&a, old);
}

TEST(release_by_a_thread_that_does_not_hold_it_reports_0x1003)
{
    vf_setup();
    locks_init();
    memset(&holder_has_it, 0, sizeof holder_has_it);
    memset(&releaser_done, 0, sizeof releaser_done);
    plat_thread *t = plat_thread_start(holder, NULL, "holder", 0);
    vf_gate_wait(&holder_has_it);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    KeReleaseSpinLockFromDpcLevel(&a); /* the bug: the holder's lock */
    KeLowerIrql(old);
    CHECK(a != 0); /* still the holder's */
    EXPECT_REPORT(0xC4, 0x1003, "SpinlockRelease", NULL);
    vf_gate_open(&releaser_done);
    plat_thread_join(t);
    CHECK_EQ(a, 0);
    EXPECT_NO_REPORT();
    vf_teardown();
}

TEST(release_restoring_an_irql_below_the_acquire_reports_0x32)
{
    vf_setup();
    locks_init();
    KIRQL raised, old;
    KeRaiseIrql(DISPATCH_LEVEL, &raised);
    KeAcquireSpinLock(&a, &old); /* old == DISPATCH_LEVEL */
    KeReleaseSpinLock(&a, PASSIVE_LEVEL); /* the bug: below what the acquire saved */
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL); /* neutralised: the saved IRQL */
    EXPECT_REPORT(0xC4, 0x32, "IrqlKeReleaseSpinLock", NULL);
    KeLowerIrql(raised);
    vf_teardown();
}

TEST(legal_release_orders_report_nothing)
{
    vf_setup();
    locks_init();
    KIRQL oa, ob;
    /* Hand over hand: release the first lock with the second's OldIrql, then the second with
     * the first's. */
    KeAcquireSpinLock(&a, &oa);
    KeAcquireSpinLock(&b, &ob);
    KeReleaseSpinLock(&a, ob);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeReleaseSpinLock(&b, oa);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    /* The seed's cancel-routine pattern: release keeping DISPATCH_LEVEL, lower later. */
    KeAcquireSpinLock(&a, &oa);
    KeReleaseSpinLock(&a, DISPATCH_LEVEL);
    KeLowerIrql(oa);
    EXPECT_NO_REPORT();
    vf_teardown();
}

TEST(lowering_below_dispatch_while_holding_another_lock_reports_0x32)
{
    vf_setup();
    locks_init();
    KIRQL oa, ob;
    KeAcquireSpinLock(&a, &oa);
    KeAcquireSpinLock(&b, &ob);
    KeReleaseSpinLock(&a, oa); /* the bug: PASSIVE while b is still held */
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    EXPECT_REPORT(0xC4, 0x32, "IrqlKeReleaseSpinLock", NULL);
    KeReleaseSpinLock(&b, ob); /* b now owes the caller PASSIVE; ob (DISPATCH) keeps it raised */
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(oa);
    EXPECT_NO_REPORT();
    vf_teardown();
}

/* ---- lock-order cycle: reported when the second order first happens, with no deadlock */

static vf_gate first_done;

static void take_a_then_b(void *arg)
{
    (void)arg;
    KIRQL oa, ob;
    KeAcquireSpinLock(&a, &oa);
    KeAcquireSpinLock(&b, &ob);
    KeReleaseSpinLock(&b, ob);
    KeReleaseSpinLock(&a, oa);
    vf_gate_open(&first_done);
}

static void take_b_then_a(void)
{
    KIRQL oa, ob;
    KeAcquireSpinLock(&b, &ob);
    KeAcquireSpinLock(&a, &oa);
    KeReleaseSpinLock(&a, oa);
    KeReleaseSpinLock(&b, ob);
}

TEST(lock_order_cycle_is_reported_before_any_deadlock)
{
    vf_setup();
    locks_init();
    memset(&first_done, 0, sizeof first_done);
    plat_thread *t = plat_thread_start(take_a_then_b, NULL, "order-ab", 0);
    vf_gate_wait(&first_done); /* strictly one after the other: no deadlock can happen */
    plat_thread_join(t);
    EXPECT_NO_REPORT();
    take_b_then_a();
    CHECK_CONTAINS(vf_text(), "order-ab");
    CHECK_CONTAINS(vf_text(), "No deadlock has happened yet");
    EXPECT_REPORT(0xC4, 0x1001, "DRIVER_VERIFIER_DETECTED_VIOLATION", NULL);
    take_b_then_a(); /* the same cycle is reported once */
    EXPECT_NO_REPORT();
    vf_teardown();
}

TEST(lock_order_twin_same_order_everywhere_and_reinitialised_locks_are_new)
{
    vf_setup();
    locks_init();
    memset(&first_done, 0, sizeof first_done);
    plat_thread *t = plat_thread_start(take_a_then_b, NULL, "order-ab", 0);
    vf_gate_wait(&first_done);
    plat_thread_join(t);
    memset(&first_done, 0, sizeof first_done);
    take_a_then_b(NULL); /* same order on this thread: fine */
    EXPECT_NO_REPORT();
    locks_init(); /* new locks at the same addresses: the old order is forgotten */
    take_b_then_a();
    EXPECT_NO_REPORT();
    vf_teardown();
}
