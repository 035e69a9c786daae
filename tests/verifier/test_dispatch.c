/* Checks when a dispatch routine returns (VERIFIER.md §1 "Pending status"): pending flag vs
 * returned status vs completion, IRQL and held spin locks unchanged, IoMarkIrpPending after
 * publishing, IoCallDriver with a cancel routine set. Buggy driver + correct twin each. */
#include "vfixture.h"

/* ---- 0xC9/0x23D STATUS_PENDING without IoMarkIrpPending */

static NTSTATUS read_queue_unmarked(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf.held = irp; /* "queued" for later */
    return STATUS_PENDING; /* the bug: not marked */
}

static NTSTATUS read_queue_marked(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf.held = irp;
    return STATUS_PENDING;
}

TEST(pending_without_mark_reports_c9_23d)
{
    vf_setup();
    PIRP irp = vf_send_read(read_queue_unmarked, false);
    EXPECT_REPORT(0xC9, 0x23D, NULL, irp);
    vf_complete(vf.held, STATUS_SUCCESS);
    PIRP twin = vf_send_read(read_queue_marked, false);
    vf_complete(vf.held, STATUS_SUCCESS);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}

/* ---- 0xC9/0x23E marked pending, returned something else */

static NTSTATUS read_mark_complete_return_success(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf_complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS; /* the bug: marked pending must return STATUS_PENDING */
}

TEST(marked_pending_but_returned_success_reports_c9_23e)
{
    vf_setup();
    EXPECT_BUGGY_AND_TWIN(read_mark_complete_return_success, vf_read_pend_complete, 0xC9, 0x23E, NULL);
    vf_teardown();
}

/* ---- PendedCompletedRequest: completed, then STATUS_PENDING without the mark */

static NTSTATUS read_complete_return_pending(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf_complete(irp, STATUS_SUCCESS);
    return STATUS_PENDING; /* the bug */
}

TEST(pending_returned_for_a_completed_irp_reports_pendedcompletedrequest)
{
    vf_setup();
    EXPECT_BUGGY_AND_TWIN(read_complete_return_pending, vf_read_complete, 0xC4,
                          IRPK_RULE_PENDED_COMPLETED_REQUEST, "PendedCompletedRequest");
    vf_teardown();
}

/* ---- 0xC9/0x226 the lost IRP */

static NTSTATUS read_forget(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf.held = irp;
    return STATUS_SUCCESS; /* the bug: neither completed, forwarded nor pended */
}

TEST(returning_without_completing_reports_c9_226)
{
    vf_setup();
    PIRP irp = vf_send_read(read_forget, false);
    CHECK_CONTAINS(vf_text(), "is lost");
    EXPECT_REPORT(0xC9, 0x226, NULL, irp);
    vf_complete(irp, STATUS_SUCCESS); /* clean up for the test */
    PIRP twin = vf_send_read(vf_read_complete, false);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}

/* ---- 0xC9/0x224 returned status ≠ IoStatus.Status */

static NTSTATUS read_return_other_status(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf_complete(irp, STATUS_SUCCESS);
    return STATUS_UNSUCCESSFUL; /* the bug */
}

TEST(returned_status_differs_from_completion_status_reports_c9_224)
{
    vf_setup();
    EXPECT_BUGGY_AND_TWIN(read_return_other_status, vf_read_complete, 0xC9, 0x224, NULL);
    vf_teardown();
}

/* ---- MarkingQueuedIrps (R6): IoMarkIrpPending after IoStartPacket */

static NTSTATUS read_mark_after_startpacket(PDEVICE_OBJECT dev, PIRP irp)
{
    IoStartPacket(dev, irp, NULL, NULL);
    IoMarkIrpPending(irp); /* the bug: StartIo/another thread may have completed it already */
    return STATUS_PENDING;
}

TEST(mark_pending_after_publish_reports_markingqueuedirps_even_without_a_race)
{
    vf_setup();
    /* StartIo (none set) leaves the IRP current */
    PIRP irp = vf_send_read(read_mark_after_startpacket, false);
    CHECK_EQ(vf.sent, STATUS_PENDING);
    EXPECT_REPORT(0xC4, IRPK_RULE_MARKING_QUEUED_IRPS, "MarkingQueuedIrps", irp);
    vf_finish_current();
    PIRP twin = vf_send_read(vf_read_startpacket, false);
    CHECK_EQ(vf.sent, STATUS_PENDING);
    vf_finish_current();
    EXPECT_NO_REPORT();
    CHECK_EQ(vf.completions, 2);
    VF_TEARDOWN(irp, twin);
}

/* ---- 0xC9/0x05 IRQL changed across the dispatch routine */

static NTSTATUS read_leaves_dispatch(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old); /* the bug: never lowered */
    vf_complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

TEST(irql_changed_by_dispatch_routine_reports_c9_05_and_restores_it)
{
    vf_setup();
    PIRP irp = vf_send_read(read_leaves_dispatch, false);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL); /* neutralised */
    EXPECT_REPORT(0xC9, 0x05, NULL, irp);
    CHECK_EQ(irpk_report_count(), 0);
    PIRP twin = vf_send_read(vf_read_complete_at_dispatch, false);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}

/* ---- SpinLock (0xC4/0x40009): dispatch routine returns holding a spin lock */

static NTSTATUS read_keeps_lock(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old;
    KeAcquireSpinLock(&vf.queue_lock, &old); /* the bug: never released */
    vf.held = irp;
    IoMarkIrpPending(irp);
    return STATUS_PENDING;
}

TEST(dispatch_returning_with_a_spin_lock_reports_spinlock_and_releases_it)
{
    vf_setup();
    PIRP irp = vf_send_read(read_keeps_lock, false);
    CHECK_EQ(vf.queue_lock, 0);                  /* released for the driver */
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL); /* and the IRQL restored */
    CHECK_CONTAINS(vf_text(), "read_keeps_lock");
    EXPECT_REPORT(0xC4, IRPK_RULE_SPINLOCK, "SpinLock", irp);
    vf_complete(vf.held, STATUS_SUCCESS);
    PIRP twin = vf_send_read(read_queue_marked, false);
    vf_complete(vf.held, STATUS_SUCCESS);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}

/* ---- 0xC9/0x203 IoCallDriver with a cancel routine set */

static VOID upper_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoReleaseCancelSpinLock(irp->CancelIrql);
}

static NTSTATUS upper_forwards_cancelable(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoSetCancelRoutine(irp, upper_cancel);
    IoCopyCurrentIrpStackLocationToNext(irp);
    NTSTATUS st = IoCallDriver(vf.lower, irp); /* the bug: still cancelable by us */
    return st;
}

static NTSTATUS upper_forwards_disarmed(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoSetCancelRoutine(irp, upper_cancel);
    if (!IoSetCancelRoutine(irp, NULL)) return STATUS_PENDING; /* (cancel owns it: not here) */
    IoCopyCurrentIrpStackLocationToNext(irp);
    return IoCallDriver(vf.lower, irp);
}

static NTSTATUS lower_disarms_and_completes(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoSetCancelRoutine(irp, NULL); /* keep the completion check quiet: this test is about 0x203 */
    vf_complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

TEST(iocalldriver_with_cancel_routine_set_reports_c9_203)
{
    vf_setup_stack();
    vf.lower_read = lower_disarms_and_completes;
    PIRP irp = vf_send_read(upper_forwards_cancelable, false);
    CHECK_CONTAINS(vf_text(), "upper_cancel");
    EXPECT_REPORT(0xC9, 0x203, NULL, irp);
    PIRP twin = vf_send_read(upper_forwards_disarmed, false);
    EXPECT_NO_REPORT();
    CHECK_EQ(vf.completions, 2);
    VF_TEARDOWN(irp, twin);
}
