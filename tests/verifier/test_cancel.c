/* Cancellation checks (VERIFIER.md §1 "Cancellation"): cancel-routine return (cancel lock
 * released, IRQL == Irp->CancelIrql), cancel-lock misuse, cancel routine on a completed IRP,
 * and the cancelled IRP that is never completed. Buggy driver + correct twin each. */
#include "vfixture.h"

static NTSTATUS read_arm(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf.held = irp;
    IoSetCancelRoutine(irp, vf.cancel);
    return STATUS_PENDING;
}

/* An IRP parked by read_arm with `cancel` armed, then IoCancelIrp'd: the routine ran. */
static PIRP send_and_cancel(PDRIVER_CANCEL cancel)
{
    vf.cancel = cancel;
    PIRP irp = vf_send_read(read_arm, false);
    CHECK_EQ(IoCancelIrp(irp), TRUE);
    return irp;
}

/* ---- 0x11B: returns holding the cancel lock (R9) */

static VOID cancel_keeps_lock(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    irp->IoStatus.Status = STATUS_CANCELLED; /* the bug: no IoReleaseCancelSpinLock */
}

static VOID cancel_releases(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoReleaseCancelSpinLock(irp->CancelIrql);
    vf_complete(irp, STATUS_CANCELLED);
}

TEST(cancel_routine_returning_with_cancel_lock_reports_0x11b_and_releases_it)
{
    vf_setup();
    PIRP irp = send_and_cancel(cancel_keeps_lock);
    CHECK(!io_cancel_lock_held());
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    EXPECT_REPORT(0x11B, (uintptr_t)cancel_keeps_lock, "DRIVER_RETURNED_HOLDING_CANCEL_LOCK", irp);
    vf_complete(irp, STATUS_CANCELLED);
    PIRP twin = send_and_cancel(cancel_releases);
    EXPECT_NO_REPORT();
    CHECK_EQ(vf.completions, 2);
    VF_TEARDOWN(irp, twin);
}

/* ---- 0xC8: returns at an IRQL other than Irp->CancelIrql (C28144) */

static VOID cancel_stays_at_dispatch(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoReleaseCancelSpinLock(DISPATCH_LEVEL); /* the bug: never lowered back to CancelIrql */
    vf_complete(irp, STATUS_CANCELLED);
}

static VOID cancel_seed_style(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old = irp->CancelIrql; /* the seed's pattern: keep DISPATCH a while, then lower */
    IoReleaseCancelSpinLock(DISPATCH_LEVEL);
    vf_complete(irp, STATUS_CANCELLED);
    KeLowerIrql(old);
}

TEST(cancel_routine_returning_at_wrong_irql_reports_0xc8_and_restores_it)
{
    vf_setup();
    PIRP irp = send_and_cancel(cancel_stays_at_dispatch);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    EXPECT_REPORT(0xC8, DISPATCH_LEVEL, "IRQL_UNEXPECTED_VALUE", irp);
    PIRP twin = send_and_cancel(cancel_seed_style);
    EXPECT_NO_REPORT();
    CHECK_EQ(vf.completions, 2);
    VF_TEARDOWN(irp, twin);
}

/* ---- CancelSpinlockRelease: release when not held (0x1002), acquire twice (0x1000) */

TEST(cancel_lock_released_when_not_held_reports_0x1002)
{
    vf_setup();
    IoReleaseCancelSpinLock(PASSIVE_LEVEL); /* the bug */
    EXPECT_REPORT(0xC4, 0x1002, "CancelSpinlockRelease", NULL);
    KIRQL old;
    IoAcquireCancelSpinLock(&old); /* twin: paired */
    IoReleaseCancelSpinLock(old);
    EXPECT_NO_REPORT();
    CHECK(!io_cancel_lock_held());
    vf_teardown();
}

TEST(cancel_lock_acquired_twice_reports_0x1000_refuses_it_and_stays_consistent)
{
    vf_setup();
    KIRQL a, b;
    IoAcquireCancelSpinLock(&a);
    IoAcquireCancelSpinLock(&b); /* the bug: a self-deadlock, refused */
    EXPECT_REPORT(0xC4, 0x1000, "CancelSpinlockRelease", NULL);
    IoReleaseCancelSpinLock(b); /* the refused acquire's release: a no-op */
    CHECK(io_cancel_lock_held_by_me());
    IoReleaseCancelSpinLock(a);
    CHECK(!io_cancel_lock_held());
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    EXPECT_NO_REPORT();
    vf_teardown();
}

/* ---- 0xC4/0x135: a cancelled IRP that is never completed (the lost cancel, R3 shape) */

static VOID cancel_forgets(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoReleaseCancelSpinLock(irp->CancelIrql); /* the bug: the IRP is never completed */
}

TEST(cancelled_irp_never_completed_reports_c4_135_at_quiescence)
{
    vf_setup();
    PIRP irp = send_and_cancel(cancel_forgets);
    EXPECT_NO_REPORT();
    CHECK_EQ(irpk_verifier_check_quiescence(), 1);
    CHECK_CONTAINS(vf_text(), "the lost cancel");
    CHECK_CONTAINS(vf_text(), "Cancel := TRUE");
    EXPECT_REPORT(0xC4, 0x135, NULL, irp);
    CHECK_EQ(irpk_verifier_check_quiescence(), 0); /* each IRP once */
    vf_complete(irp, STATUS_CANCELLED);
    PIRP twin = send_and_cancel(cancel_releases);
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}

TEST(cancelled_irp_never_completed_is_reported_by_the_watchdog)
{
    vf_setup();
    long old = irpk_verifier_set_cancel_timeout_ms(30);
    PIRP irp = send_and_cancel(cancel_forgets);
    REQUIRE(vf_wait_reports(1)); /* the watchdog notices on its own */
    CHECK_EQ(irpk_report_param(0, 1), (uintptr_t)irp);
    CHECK(irpk_report_param(0, 2) >= 30); /* age in ms */
    EXPECT_REPORT(0xC4, 0x135, NULL, irp);
    vf_complete(irp, STATUS_CANCELLED);
    irpk_verifier_set_cancel_timeout_ms(old);
    VF_TEARDOWN(irp);
}
