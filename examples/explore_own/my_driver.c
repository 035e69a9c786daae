/* A driver writer's own StartIo/cancel code, explored from outside irpkit.
 *
 * The driver follows the seed's pattern: DispatchRead marks the IRP pending and calls
 * IoStartPacket with a cancel routine; StartIo finishes the request at once (a device that
 * completes synchronously) and starts the next packet. The cancel routine completes a current
 * IRP itself (the seed's choice) and removes a queued one from the device queue.
 *
 * MY_DRIVER_FIXED selects the corrected StartIo. The buggy one clears the cancel routine but
 * ignores what IoSetCancelRoutine returns: when IoCancelIrp got there first, the cancel routine
 * already owns (and completes) the IRP, and StartIo completes it a second time (race R1). */
#include <ntddk.h>

#include "my_driver.h"

PDEVICE_OBJECT MyDeviceObject;

static VOID MyCancel(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    if (Irp == DeviceObject->CurrentIrp) {
        KIRQL irql = Irp->CancelIrql;
        IoReleaseCancelSpinLock(DISPATCH_LEVEL);
        IoStartNextPacket(DeviceObject, TRUE);
        KeLowerIrql(irql);
    } else {
        KeRemoveEntryDeviceQueue(&DeviceObject->DeviceQueue, &Irp->Tail.Overlay.DeviceQueueEntry);
        IoReleaseCancelSpinLock(Irp->CancelIrql);
    }
    Irp->IoStatus.Status = STATUS_CANCELLED;
    Irp->IoStatus.Information = 0;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

static VOID MyStartIo(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    KIRQL irql;
    IoAcquireCancelSpinLock(&irql);
#ifdef MY_DRIVER_FIXED
    /* Ownership is decided by the exchange: NULL means the cancel routine has the IRP. */
    if (Irp != DeviceObject->CurrentIrp || IoSetCancelRoutine(Irp, NULL) == NULL) {
        IoReleaseCancelSpinLock(irql);
        return;
    }
#else
    IoSetCancelRoutine(Irp, NULL); /* BUG: the result is ignored */
#endif
    IoReleaseCancelSpinLock(irql);
    Irp->IoStatus.Status = STATUS_SUCCESS;
    Irp->IoStatus.Information = 0;
    IoStartNextPacket(DeviceObject, TRUE);
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

static NTSTATUS MyRead(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    IoMarkIrpPending(Irp);
    IoStartPacket(DeviceObject, Irp, NULL, MyCancel);
    return STATUS_PENDING;
}

static NTSTATUS MyCreateClose(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    Irp->IoStatus.Status = STATUS_SUCCESS;
    Irp->IoStatus.Information = 0;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

NTSTATUS MyDriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNREFERENCED_PARAMETER(RegistryPath);
    UNICODE_STRING name = RTL_CONSTANT_STRING(MY_DEVICE_NAME);
    PDEVICE_OBJECT dev;
    NTSTATUS st = IoCreateDevice(DriverObject, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (!NT_SUCCESS(st)) return st;
    DriverObject->MajorFunction[IRP_MJ_CREATE] = MyCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = MyCreateClose;
    DriverObject->MajorFunction[IRP_MJ_READ] = MyRead;
    DriverObject->DriverStartIo = MyStartIo;
    dev->Flags &= ~DO_DEVICE_INITIALIZING;
    MyDeviceObject = dev;
    return STATUS_SUCCESS;
}
