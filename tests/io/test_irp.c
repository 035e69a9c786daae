/* NT_SEMANTICS.md §4 and §6: cancel primitives (T44–T49) and the IRP lifecycle (T50–T57),
 * plus the bug checks io raises (0x35, 0x44, 0x48, 0x11B). */
#include "fixture.h"

static int r_calls;
static VOID counting_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    r_calls++;
    IoReleaseCancelSpinLock(irp->CancelIrql);
}

static VOID cancel_keeping_lock(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    UNREFERENCED_PARAMETER(irp);
    r_calls++;
}

TEST(t44_cancel_without_routine_returns_false_sets_cancel)
{
    fx_setup();
    PIRP i = IoAllocateIrp(1, FALSE);
    CHECK_EQ(IoCancelIrp(i), FALSE);
    CHECK(i->Cancel);
    CHECK(!io_cancel_lock_held());
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t45_cancel_twice_calls_routine_once)
{
    fx_setup();
    r_calls = 0;
    PIRP i = IoAllocateIrp(1, FALSE);
    IoSetCancelRoutine(i, counting_cancel);
    CHECK_EQ(IoCancelIrp(i), TRUE);
    CHECK_EQ(IoCancelIrp(i), FALSE);
    CHECK_EQ(r_calls, 1);
    CHECK(!io_cancel_lock_held());
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t46_disarm_before_cancel_and_cancel_before_disarm)
{
    fx_setup();
    r_calls = 0;
    PIRP i = IoAllocateIrp(1, FALSE);
    IoSetCancelRoutine(i, counting_cancel);
    CHECK(IoSetCancelRoutine(i, NULL) == counting_cancel); /* caller owns it */
    CHECK_EQ(IoCancelIrp(i), FALSE);
    CHECK_EQ(r_calls, 0);
    PIRP j = IoAllocateIrp(1, FALSE);
    IoSetCancelRoutine(j, counting_cancel);
    CHECK_EQ(IoCancelIrp(j), TRUE);
    CHECK(IoSetCancelRoutine(j, NULL) == NULL); /* IoCancelIrp claimed it first */
    CHECK_EQ(r_calls, 1);
    IoFreeIrp(i);
    IoFreeIrp(j);
    fx_teardown();
}

TEST(t47_cancel_routine_left_on_completed_irp_is_bugcheck_0x48)
{
    fx_setup();
    r_calls = 0;
    PIRP i = IoAllocateIrp(1, FALSE);
    IoSetCancelRoutine(i, counting_cancel);
    IoCompleteRequest(i, IO_NO_INCREMENT); /* never sent: completes at once */
    CHECK_EQ(IoCancelIrp(i), FALSE);
    CHECK_EQ(irpk_report_count_code(IRPK_BUGCHECK_CANCEL_STATE_IN_COMPLETED_IRP), 1);
    CHECK_EQ(irpk_report_param(0, 0), (uintptr_t)i);
    CHECK_EQ(irpk_report_param(0, 1), (uintptr_t)counting_cancel);
    CHECK_EQ(r_calls, 0);
    CHECK(!io_cancel_lock_held());
    irpk_reports_clear();
    IoFreeIrp(i);
    fx_teardown();
}

/* Completion routines that count their calls in *(int *)ctx; the first lets completion continue
 * upward, the second stops it there. */
static NTSTATUS count_and_continue(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    UNREFERENCED_PARAMETER(irp);
    ++*(int *)ctx;
    return STATUS_SUCCESS;
}

static NTSTATUS count_and_stop(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    count_and_continue(dev, irp, ctx);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

TEST(t49_invoke_on_cancel_and_status_selection)
{
    fx_setup();
    int upper_calls = 0;
    PIRP i = IoAllocateIrp(1, FALSE);
    IoSetCompletionRoutine(i, count_and_continue, &upper_calls, FALSE, FALSE, TRUE);
    IoSetNextIrpStackLocation(i); /* as if sent */
    i->Cancel = TRUE;
    i->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(i, IO_NO_INCREMENT);
    CHECK_EQ(upper_calls, 1);
    PIRP j = IoAllocateIrp(1, FALSE);
    IoSetCompletionRoutine(j, count_and_continue, &upper_calls, TRUE, FALSE, FALSE);
    IoSetNextIrpStackLocation(j);
    j->IoStatus.Status = STATUS_UNSUCCESSFUL;
    IoCompleteRequest(j, IO_NO_INCREMENT);
    CHECK_EQ(upper_calls, 1);
    IoFreeIrp(i);
    IoFreeIrp(j);
    fx_teardown();
}

TEST(t50_allocate_initial_state)
{
    fx_setup();
    PIRP i = IoAllocateIrp(3, FALSE);
    CHECK_EQ(i->Type, IO_TYPE_IRP);
    CHECK_EQ(i->StackCount, 3);
    CHECK_EQ(i->CurrentLocation, 4);
    CHECK(!i->Cancel);
    CHECK(i->CancelRoutine == NULL);
    CHECK(!i->PendingReturned);
    CHECK(i->AllocationFlags & IRP_LOOKASIDE_ALLOCATION);
    CHECK(IsListEmpty(&i->ThreadListEntry));
    CHECK_PTR(IoGetNextIrpStackLocation(i), (PIO_STACK_LOCATION)(i + 1) + 2);
    PIRP big = IoAllocateIrp(20, FALSE); /* beyond the lookaside size: pool */
    CHECK(!(big->AllocationFlags & IRP_LOOKASIDE_ALLOCATION));
    CHECK(big->Size >= IoSizeOfIrp(20));
    IoFreeIrp(big);
    IoFreeIrp(i);
    fx_teardown();
}

static PDEVICE_OBJECT seen_dev;
static NTSTATUS record_dispatch(PDEVICE_OBJECT dev, PIRP irp)
{
    seen_dev = IoGetCurrentIrpStackLocation(irp)->DeviceObject;
    UNREFERENCED_PARAMETER(dev);
    return STATUS_SUCCESS;
}

TEST(t51_calldriver_moves_down_and_bugchecks_0x35_when_out_of_locations)
{
    fx_setup();
    fx.dev->DriverObject->MajorFunction[IRP_MJ_WRITE] = record_dispatch;
    PIRP i = IoAllocateIrp(3, FALSE);
    IoGetNextIrpStackLocation(i)->MajorFunction = IRP_MJ_WRITE;
    IoCallDriver(fx.dev, i);
    CHECK_EQ(i->CurrentLocation, 3);
    CHECK_PTR(((PIO_STACK_LOCATION)(i + 1))[2].DeviceObject, fx.dev);
    CHECK_PTR(seen_dev, fx.dev);
    for (int k = 0; k < 2; k++) {
        IoGetNextIrpStackLocation(i)->MajorFunction = IRP_MJ_WRITE;
        IoCallDriver(fx.dev, i);
    } /* now at 1 */
    CHECK_EQ(i->CurrentLocation, 1);
    CHECK_EQ(IoCallDriver(fx.dev, i), STATUS_INVALID_DEVICE_REQUEST);
    CHECK_EQ(irpk_report_count_code(IRPK_BUGCHECK_NO_MORE_IRP_STACK_LOCATIONS), 1);
    CHECK_EQ(i->CurrentLocation, 1); /* refused, unchanged */
    irpk_reports_clear();
    IoCompleteRequest(i, IO_NO_INCREMENT);
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t52_double_completion_is_bugcheck_0x44_with_history)
{
    fx_setup();
    PIRP i = fx_irp();
    fx_send(i, NULL, NULL);
    fx_finish_current(FALSE);
    CHECK_EQ(fx.completions, 1);
    /* MORE_PROCESSING stopped it below the top: complete once more to finish, then again. */
    IoCompleteRequest(i, IO_NO_INCREMENT);
    CHECK_EQ(irpk_report_count(), 0);
    IoCompleteRequest(i, IO_NO_INCREMENT);
    CHECK_EQ(irpk_report_count_code(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS), 1);
    CHECK_CONTAINS(irpk_report_text(0), "StartIo");
    CHECK_CONTAINS(irpk_report_text(0), "completed");
    irpk_reports_clear();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t53_more_processing_then_complete_again_continues_upward)
{
    fx_setup();
    int upper_calls = 0, lower_calls = 0;
    PIRP i = IoAllocateIrp(2, FALSE);
    IoSetCompletionRoutine(i, count_and_continue, &upper_calls, TRUE, TRUE, TRUE);
    IoSetNextIrpStackLocation(i);
    IoSetCompletionRoutine(i, count_and_stop, &lower_calls, TRUE, TRUE, TRUE);
    IoSetNextIrpStackLocation(i);
    IoCompleteRequest(i, IO_NO_INCREMENT);
    CHECK_EQ(lower_calls, 1);
    CHECK_EQ(upper_calls, 0);
    IoCompleteRequest(i, IO_NO_INCREMENT);
    CHECK_EQ(irpk_report_count(), 0);
    CHECK_EQ(lower_calls, 1);
    CHECK_EQ(upper_calls, 1);
    CHECK_EQ(i->CurrentLocation, i->StackCount + 2);
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t54_pending_propagates_when_upper_has_no_routine)
{
    fx_setup();
    PIRP i = IoAllocateIrp(2, FALSE);
    IoSetNextIrpStackLocation(i); /* upper, no routine */
    IoSetNextIrpStackLocation(i); /* lower */
    IoMarkIrpPending(i);
    PIO_STACK_LOCATION upper = IoGetCurrentIrpStackLocation(i) + 1;
    CHECK(!(upper->Control & SL_PENDING_RETURNED));
    IoCompleteRequest(i, IO_NO_INCREMENT);
    CHECK(upper->Control & SL_PENDING_RETURNED);
    CHECK(i->PendingReturned);
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t55_master_completes_after_last_associated_irp)
{
    fx_setup();
    int master_done = 0;
    PIRP m = IoAllocateIrp(1, FALSE);
    IoSetCompletionRoutine(m, count_and_stop, &master_done, TRUE, TRUE, TRUE);
    IoSetNextIrpStackLocation(m);
    PIRP a = IoMakeAssociatedIrp(m, 1), b = IoMakeAssociatedIrp(m, 1);
    m->AssociatedIrp.IrpCount = 2;
    IoCompleteRequest(a, IO_NO_INCREMENT); /* associated IRPs are freed by completion */
    CHECK_EQ(master_done, 0);
    IoCompleteRequest(b, IO_NO_INCREMENT);
    CHECK_EQ(master_done, 1);
    IoFreeIrp(m);
    fx_teardown();
}

TEST(t56_complete_after_free_is_bugcheck_0x44)
{
    fx_setup();
    PIRP i = IoAllocateIrp(1, FALSE);
    io_irp_ref(i); /* keep the memory so the use-after-free is observable, not fatal */
    IoFreeIrp(i);
    IoCompleteRequest(i, IO_NO_INCREMENT);
    IoFreeIrp(i);
    CHECK_EQ(irpk_report_count_code(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS), 2);
    CHECK_CONTAINS(irpk_report_text(0), "freed");
    irpk_reports_clear();
    io_irp_unref(i);
    CHECK_EQ(i->Type, 0); /* poisoned once the last reference went (still cached memory) */
    fx_teardown();
}

TEST(t57_disassociated_cancelled_irp_is_dropped_silently)
{
    fx_setup();
    KEVENT ev;
    IO_STATUS_BLOCK iosb = {{STATUS_PENDING}, 77};
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    PIRP i = IoAllocateIrp(1, FALSE);
    io_priv(i)->pflags |= IO_PF_THREADED; /* as the user-mode layer marks its IRPs */
    i->UserIosb = &iosb;
    i->UserEvent = &ev;
    i->Tail.Overlay.Thread = NULL; /* disassociated after a cancel timeout */
    IoCancelIrp(i);
    IoCompleteRequest(i, IO_NO_INCREMENT);
    CHECK_EQ(iosb.Status, STATUS_PENDING);
    CHECK_EQ(iosb.Information, 77);
    CHECK_EQ(KeReadStateEvent(&ev), 0);
    CHECK_EQ(io_irps_live(), 0); /* freed */
    fx_teardown();
}

TEST(bugcheck_0x11b_cancel_routine_returning_with_lock)
{
    fx_setup();
    r_calls = 0;
    PIRP i = IoAllocateIrp(1, FALSE);
    IoSetCancelRoutine(i, cancel_keeping_lock);
    CHECK_EQ(IoCancelIrp(i), TRUE);
    CHECK_EQ(r_calls, 1);
    CHECK_EQ(irpk_report_count_code(IRPK_BUGCHECK_DRIVER_RETURNED_HOLDING_CANCEL_LOCK), 1);
    CHECK(!io_cancel_lock_held()); /* released on the driver's behalf */
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    irpk_reports_clear();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(reuse_and_initialize_on_driver_memory)
{
    fx_setup();
    USHORT size = IoSizeOfIrp(2);
    PIRP own = ExAllocatePoolWithTag(NonPagedPool, size, 0x78667374u);
    IoInitializeIrp(own, size, 2);
    CHECK_EQ(own->StackCount, 2);
    CHECK_EQ(own->CurrentLocation, 3);
    CHECK(io_irp_id(own) != 0);
    PIRP i = IoAllocateIrp(1, FALSE);
    uint32_t id = io_irp_id(i);
    i->Cancel = TRUE;
    IoCompleteRequest(i, IO_NO_INCREMENT);
    IoReuseIrp(i, STATUS_UNSUCCESSFUL);
    CHECK(!i->Cancel);
    CHECK_EQ(i->CurrentLocation, 2);
    CHECK_EQ(i->IoStatus.Status, STATUS_UNSUCCESSFUL);
    CHECK(i->AllocationFlags & IRP_LOOKASIDE_ALLOCATION);
    CHECK_EQ(io_irp_id(i), id);
    IoFreeIrp(i);
    ExFreePoolWithTag(own, 0x78667374u);
    fx_teardown();
}

TEST(lookaside_steady_state_needs_no_pool)
{
    fx_setup();
    PIRP warm = IoAllocateIrp(2, FALSE);
    IoFreeIrp(warm);
    io_lookaside_stats before, after;
    io_lookaside_get_stats(&before);
    for (int n = 0; n < 1000; n++) IoFreeIrp(IoAllocateIrp(2, FALSE));
    io_lookaside_get_stats(&after);
    CHECK_EQ(after.allocs - before.allocs, 1000);
    CHECK_EQ(after.hits - before.hits, 1000);
    fx_teardown();
}

TEST(history_and_describe_name_the_steps)
{
    fx_setup();
    PIRP i = fx_irp();
    fx_send(i, NULL, fx_cancel);
    char buf[2048];
    io_irp_history(i, buf, sizeof buf);
    CHECK_CONTAINS(buf, "IoAllocateIrp");
    CHECK_CONTAINS(buf, "IoMarkIrpPending");
    CHECK_CONTAINS(buf, "StartIo");
    CHECK_CONTAINS(buf, "DISPATCH");
    CHECK_CONTAINS(io_describe(i, buf, sizeof buf), "IRP#");
    CHECK_STR(io_describe(fx.dev, buf, sizeof buf), "\\Device\\FxDev");
    CHECK_STR(io_describe(&io_cancel_lock, buf, sizeof buf), "cancel lock");
    IoSetCancelRoutine(i, NULL);
    fx_finish_current(FALSE);
    IoFreeIrp(i);
    fx_teardown();
}
