#include "fixture.h"

fx_state fx;

static VOID fx_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    int i = fx.n_startio++;
    fx.startio[i] = (fx_startio_rec){
        .irp = irp,
        .thread = plat_self(),
        .irql = KeGetCurrentIrql(),
        .cancel_lock_held = io_cancel_lock_held(),
        .cancel_routine = (PDRIVER_CANCEL)plat_load_ptr((void *const volatile *)&irp->CancelRoutine),
        .current = dev->CurrentIrp,
        .depth = io_startio_depth(),
    };
    if (fx.startio_action) fx.startio_action(dev, irp);
    fx.startio_returns[fx.n_returns++] = i;
}

static void record_cancel(PDEVICE_OBJECT dev, PIRP irp, BOOLEAN removed)
{
    fx.cancel[fx.n_cancel++] = (fx_cancel_rec){
        .irp = irp,
        .dev = dev,
        .cancel_lock_held = io_cancel_lock_held_by_me(),
        .cancel_routine = (PDRIVER_CANCEL)plat_load_ptr((void *const volatile *)&irp->CancelRoutine),
        .was_current = dev && irp == dev->CurrentIrp,
        .removed = removed,
    };
}

VOID fx_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    if (irp == dev->CurrentIrp) {
        record_cancel(dev, irp, FALSE);
        IoReleaseCancelSpinLock(irp->CancelIrql);
        return;
    }
    BOOLEAN removed = KeRemoveEntryDeviceQueue(&dev->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
    record_cancel(dev, irp, removed);
    IoReleaseCancelSpinLock(irp->CancelIrql);
    if (!removed) return;
    irp->IoStatus.Status = STATUS_CANCELLED;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

VOID fx_cancel2(PDEVICE_OBJECT dev, PIRP irp) { fx_cancel(dev, irp); }

static NTSTATUS fx_read(PDEVICE_OBJECT dev, PIRP irp)
{
    IoMarkIrpPending(irp);
    IoStartPacket(dev, irp, fx.key, fx.cancel_fn);
    return STATUS_PENDING;
}

static NTSTATUS fx_done(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    UNREFERENCED_PARAMETER(ctx);
    fx.completions++;
    fx.last_status = irp->IoStatus.Status;
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS fx_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\FxDev");
    drv->DriverStartIo = fx_startio;
    drv->MajorFunction[IRP_MJ_READ] = fx_read;
    NTSTATUS st = IoCreateDevice(drv, 16, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &fx.dev);
    if (NT_SUCCESS(st)) fx.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

void fx_setup(void)
{
    memset(&fx, 0, sizeof fx);
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\fx");
    NTSTATUS st = IoCreateDriver(&name, fx_entry);
    if (!NT_SUCCESS(st)) irpk_test_fail(__FILE__, __LINE__, "IoCreateDriver failed 0x%x", (unsigned)st);
}

void fx_teardown(void)
{
    PDRIVER_OBJECT drv = io_lookup_driver(L"fx");
    if (!drv) return;
    IoDeleteDevice(fx.dev);
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(irpk_report_count(), 0); /* tests that provoke reports clear them */
    if (irpk_report_count()) fprintf(stderr, "  first report: %s\n", irpk_report_text(0));
    CHECK_EQ(io_irps_live(), 0);
}

PIRP fx_irp(void)
{
    PIRP irp = IoAllocateIrp(1, FALSE);
    IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
    IoSetCompletionRoutine(irp, fx_done, NULL, TRUE, TRUE, TRUE);
    return irp;
}

NTSTATUS fx_send(PIRP irp, PULONG key, PDRIVER_CANCEL cancel_fn)
{
    fx.key = key;
    fx.cancel_fn = cancel_fn;
    return IoCallDriver(fx.dev, irp);
}

void fx_complete_and_next(PDEVICE_OBJECT dev, PIRP irp)
{
    irp->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    IoStartNextPacket(dev, FALSE);
}

void fx_finish_current(BOOLEAN cancelable)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    PIRP irp = fx.dev->CurrentIrp;
    IoStartNextPacket(fx.dev, cancelable);
    if (irp) {
        irp->IoStatus.Status = STATUS_SUCCESS;
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
    KeLowerIrql(old);
}

int fx_queue(PIRP *out, int max)
{
    int n = 0;
    PLIST_ENTRY head = &fx.dev->DeviceQueue.DeviceListHead;
    for (PLIST_ENTRY e = head->Flink; e != head && n < max; e = e->Flink)
        out[n++] = CONTAINING_RECORD(e, IRP, Tail.Overlay.DeviceQueueEntry.DeviceListEntry);
    return n;
}
