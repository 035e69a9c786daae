/* Completion checks (VERIFIER.md §1 "Completion"): each buggy driver triggers exactly its report;
 * its correct twin triggers none. */
#include "vfixture.h"

/* ---- 0x44 double completion */

static NTSTATUS read_complete_twice(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf_complete(irp, STATUS_SUCCESS);
    vf_complete(irp, STATUS_SUCCESS); /* the bug */
    return STATUS_SUCCESS;
}

TEST(double_completion_reports_0x44_and_ignores_the_second)
{
    vf_setup();
    PIRP irp = vf_send_read(read_complete_twice, true);
    CHECK_EQ(vf.sent, STATUS_SUCCESS);
    CHECK_EQ(vf.completions, 1); /* the second completion was ignored */
    CHECK_CONTAINS(vf_text(), "completed");
    CHECK_CONTAINS(vf_text(), "completed                        PASSIVE");
    CHECK_CONTAINS(vf_text(), "in dispatch read_complete_twice"); /* routine of the step */
    CHECK_CONTAINS(vf_text(), "Device: \\Device\\VfDev (driver \\Driver\\vf)");
    EXPECT_REPORT(0x44, (uintptr_t)irp, "MULTIPLE_IRP_COMPLETE_REQUESTS", irp);
    VF_TEARDOWN(irp);
}

TEST(single_completion_twin_reports_nothing)
{
    vf_setup();
    PIRP irp = vf_send_read(vf_read_complete, true);
    CHECK_EQ(vf.sent, STATUS_SUCCESS);
    CHECK_EQ(vf.completions, 1);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp);
}

/* ---- 0xC9/0x06 completion with STATUS_PENDING */

static NTSTATUS read_complete_pending_status(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf_complete(irp, STATUS_PENDING); /* the bug: pending is not a final status */
    return STATUS_PENDING;
}

TEST(completion_with_status_pending_reports_c9_06)
{
    vf_setup();
    EXPECT_BUGGY_AND_TWIN(read_complete_pending_status, vf_read_pend_complete, 0xC9, 0x06, NULL);
    vf_teardown();
}

/* ---- 0xC9/0x07 completion with the cancel routine still set (switch 6), and 0x48 without */

static VOID some_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoReleaseCancelSpinLock(irp->CancelIrql);
}

static NTSTATUS read_complete_armed(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoSetCancelRoutine(irp, some_cancel);
    vf_complete(irp, STATUS_SUCCESS); /* the bug: still cancelable */
    return STATUS_SUCCESS;
}

static NTSTATUS read_complete_disarmed(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoSetCancelRoutine(irp, some_cancel);
    if (IoSetCancelRoutine(irp, NULL)) vf_complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

TEST(completion_with_cancel_routine_set_reports_c9_07_and_clears_it)
{
    vf_setup();
    PIRP irp = vf_send_read(read_complete_armed, false);
    CHECK_CONTAINS(vf_text(), "some_cancel");
    EXPECT_REPORT(0xC9, 0x07, NULL, irp);
    CHECK(irp->CancelRoutine == NULL); /* neutralised: a later IoCancelIrp finds nothing */
    CHECK_EQ(IoCancelIrp(irp), FALSE);
    EXPECT_NO_REPORT();
    PIRP twin = vf_send_read(read_complete_disarmed, false);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}

TEST(switch6_off_the_same_bug_surfaces_as_0x48_at_cancel_time)
{
    vf_setup();
    irpk_compat_set(IRPK_COMPAT_VERIFY_COMPLETE_WITH_CANCEL_ROUTINE, 0);
    PIRP irp = vf_send_read(read_complete_armed, true); /* through: the IRP is really completed */
    EXPECT_NO_REPORT();
    CHECK_EQ(IoCancelIrp(irp), FALSE);
    EXPECT_REPORT(0x48, (uintptr_t)irp, "CANCEL_STATE_IN_COMPLETED_IRP", irp);
    VF_TEARDOWN(irp);
}

/* ---- 0xC9/0x0E completion above DISPATCH_LEVEL */

static NTSTATUS read_complete_at_high(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old;
    KeRaiseIrql(HIGH_LEVEL, &old);
    vf_complete(irp, STATUS_SUCCESS); /* the bug */
    KeLowerIrql(old);
    return STATUS_SUCCESS;
}

TEST(completion_above_dispatch_reports_c9_0e)
{
    vf_setup();
    EXPECT_BUGGY_AND_TWIN(read_complete_at_high, vf_read_complete_at_dispatch, 0xC9, 0x0E, NULL);
    vf_teardown();
}

/* ---- SpinLockSafe: completion while holding a spin lock (R10) */

static NTSTATUS read_complete_under_lock(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old;
    KeAcquireSpinLock(&vf.queue_lock, &old);
    vf_complete(irp, STATUS_SUCCESS); /* the bug */
    KeReleaseSpinLock(&vf.queue_lock, old);
    return STATUS_SUCCESS;
}

static NTSTATUS read_complete_after_unlock(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old;
    KeAcquireSpinLock(&vf.queue_lock, &old);
    KeReleaseSpinLock(&vf.queue_lock, old);
    vf_complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

TEST(completion_holding_a_spin_lock_reports_spinlocksafe)
{
    vf_setup();
    EXPECT_BUGGY_AND_TWIN(read_complete_under_lock, read_complete_after_unlock, 0xC4,
                          IRPK_RULE_SPINLOCK_SAFE, "SpinLockSafe");
    vf_teardown();
}

/* ---- 0xC9/0x209 completing an IRP still owned by a lower driver */

static NTSTATUS lower_pends(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf.held = irp; /* the lower driver keeps it */
    return STATUS_PENDING;
}

static NTSTATUS upper_forwards_then_completes(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoCopyCurrentIrpStackLocationToNext(irp);
    NTSTATUS st = IoCallDriver(vf.lower, irp);
    if (st == STATUS_PENDING) vf_complete(irp, STATUS_CANCELLED); /* the bug: lower owns it */
    return st;
}

static NTSTATUS upper_waits(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    UNREFERENCED_PARAMETER(irp);
    KeSetEvent((PKEVENT)ctx, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS upper_forwards_waits_completes(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KEVENT done;
    KeInitializeEvent(&done, NotificationEvent, FALSE);
    IoCopyCurrentIrpStackLocationToNext(irp);
    IoSetCompletionRoutine(irp, upper_waits, &done, TRUE, TRUE, TRUE);
    if (IoCallDriver(vf.lower, irp) == STATUS_PENDING)
        KeWaitForSingleObject(&done, Executive, KernelMode, FALSE, NULL);
    vf_complete(irp, STATUS_SUCCESS); /* it came back: ours again */
    return STATUS_SUCCESS;
}

TEST(completing_an_irp_pending_below_reports_c9_209_and_is_refused)
{
    vf_setup_stack();
    vf.lower_read = lower_pends;
    PIRP irp = vf_send_read(upper_forwards_then_completes, false);
    CHECK_EQ(vf.sent, STATUS_PENDING);
    CHECK_EQ(vf.completions, 0); /* refused */
    EXPECT_REPORT(0xC9, 0x209, NULL, irp);
    vf_complete(vf.held, STATUS_SUCCESS); /* the lower driver finishes it */
    CHECK_EQ(vf.completions, 1);
    EXPECT_NO_REPORT();
    vf.lower_read = vf_read_complete;
    PIRP twin = vf_send_read(upper_forwards_waits_completes, false);
    CHECK_EQ(vf.sent, STATUS_SUCCESS);
    CHECK_EQ(vf.completions, 2);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}

/* ---- 0xC9/0x228 completion routine ignoring PendingReturned */

static NTSTATUS routine_ignoring_pending(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    UNREFERENCED_PARAMETER(irp);
    UNREFERENCED_PARAMETER(ctx);
    return STATUS_SUCCESS; /* the bug: no IoMarkIrpPending when PendingReturned */
}

static NTSTATUS routine_propagating_pending(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    UNREFERENCED_PARAMETER(ctx);
    if (irp->PendingReturned) IoMarkIrpPending(irp);
    return STATUS_SUCCESS;
}

static PIO_COMPLETION_ROUTINE upper_routine;

static NTSTATUS upper_forwards_with_routine(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoCopyCurrentIrpStackLocationToNext(irp);
    IoSetCompletionRoutine(irp, upper_routine, NULL, TRUE, TRUE, TRUE);
    return IoCallDriver(vf.lower, irp);
}

TEST(completion_routine_ignoring_pending_returned_reports_c9_228)
{
    vf_setup_stack();
    vf.lower_read = vf_read_pend_complete; /* legal: pends and completes */
    upper_routine = routine_ignoring_pending;
    PIRP irp = vf_send_read(upper_forwards_with_routine, false);
    CHECK_EQ(vf.sent, STATUS_PENDING);
    CHECK_CONTAINS(vf_text(), "routine_ignoring_pending");
    EXPECT_REPORT(0xC9, 0x228, NULL, irp);
    CHECK(irp->PendingReturned); /* neutralised: marked pending on its behalf */
    upper_routine = routine_propagating_pending;
    PIRP twin = vf_send_read(upper_forwards_with_routine, false);
    CHECK_EQ(vf.sent, STATUS_PENDING);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}
