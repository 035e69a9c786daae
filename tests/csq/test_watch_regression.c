/* Regression: an IRP that a cancel routine completed in the StartIo window (after IoStartPacket
 * made it current and dropped the cancel lock, before StartIo ran) is then handed to StartIo;
 * a second IoCancelIrp on it (CancelIoEx racing CancelIo in the user stress test) must not put
 * it on the verifier's cancelled-not-completed watch: it was completed. The shadow state used to
 * go back from "completed" to "in StartIo", and the quiescence check reported a false 0xC4/0x135. */
#include <ntddk.h>

#include "io/io.h"
#include "irpkit/verifier.h"
#include "test.h"

static PDEVICE_OBJECT dev;
static PIRP target;
static int startio_calls, completions;

static VOID cancel_routine(PDEVICE_OBJECT d, PIRP irp)
{
    if (irp == d->CurrentIrp) { /* cancelled in the StartIo window: StartIo will leave it */
        KIRQL irql = irp->CancelIrql;
        IoReleaseCancelSpinLock(DISPATCH_LEVEL);
        IoStartNextPacket(d, TRUE);
        KeLowerIrql(irql);
    } else {
        KeRemoveEntryDeviceQueue(&d->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
        IoReleaseCancelSpinLock(irp->CancelIrql);
    }
    irp->IoStatus.Status = STATUS_CANCELLED;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

static VOID start_io(PDEVICE_OBJECT d, PIRP irp)
{
    startio_calls++;
    KIRQL irql;
    IoAcquireCancelSpinLock(&irql);
    bool mine = irp == d->CurrentIrp && IoSetCancelRoutine(irp, NULL) != NULL;
    IoReleaseCancelSpinLock(irql);
    if (!mine) return; /* the cancel routine completed it */
    IoStartNextPacket(d, TRUE);
    irp->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

static NTSTATUS read(PDEVICE_OBJECT d, PIRP irp)
{
    IoMarkIrpPending(irp);
    IoStartPacket(d, irp, NULL, cancel_routine);
    return STATUS_PENDING;
}

static NTSTATUS entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->DriverStartIo = start_io;
    drv->MajorFunction[IRP_MJ_READ] = read;
    NTSTATUS st = IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (NT_SUCCESS(st)) dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

/* At the StartIo scheduling point (cancel lock dropped, StartIo not yet called): cancel it. */
static void cancel_in_window(const char *op, const void *obj)
{
    if (strcmp(op, "StartIo") || obj != target) return;
    plat_set_point_hook(NULL);
    CHECK(IoCancelIrp(target));
}

static NTSTATUS done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(irp);
    UNREFERENCED_PARAMETER(ctx);
    completions++;
    return STATUS_MORE_PROCESSING_REQUIRED;
}

TEST(cancel_after_completion_in_the_startio_window_is_not_watched)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\watchregr");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&name, entry)));
    target = IoAllocateIrp(1, FALSE);
    IoGetNextIrpStackLocation(target)->MajorFunction = IRP_MJ_READ;
    IoSetCompletionRoutine(target, done, NULL, TRUE, TRUE, TRUE);
    plat_set_point_hook(cancel_in_window);
    CHECK_EQ(IoCallDriver(dev, target), STATUS_PENDING);
    plat_set_point_hook(NULL);
    CHECK_EQ(completions, 1);   /* by the cancel routine */
    CHECK_EQ(startio_calls, 1); /* StartIo still ran, saw it was not current, and left it */
    CHECK(!IoCancelIrp(target)); /* a late cancel of the completed IRP */
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "%s\n", irpk_report_text(0));
    IoFreeIrp(target);
    IoDeleteDevice(dev);
    CHECK_EQ(io_unload_driver(io_lookup_driver(L"watchregr")), 0);
    irpk_reports_clear();
    irpk_verifier_reset_state();
    CHECK_EQ(io_irps_live(), 0);
}
