/* hello_startio — a StartIo driver in the style of the seed's sample.
 *
 * DispatchRead marks the IRP pending and calls IoStartPacket with a cancel routine. StartIo
 * takes the cancel spin lock and returns at once if `Irp != CurrentIrp || Irp->Cancel` (the
 * cancel routine owns the IRP then); otherwise it clears the cancel routine and starts the
 * "device". The cancel routine either finds the IRP current (it was cancelled in the window
 * between IoStartPacket/IoStartNextPacket dropping the cancel lock and StartIo taking it):
 * it releases the lock and calls IoStartNextPacket itself; or finds it queued and removes it.
 * Either way it completes the IRP with STATUS_CANCELLED.
 *
 * Variant 1 (as written in the seed): StartIo simulates the device by waiting on a KEVENT with
 * a timeout, then completes the IRP and calls IoStartNextPacket. StartIo runs at
 * DISPATCH_LEVEL, where waiting is illegal: the verifier reports 0xC4/0x3B for every request.
 * Variant 2 (corrected): StartIo arms a KTIMER; the timer's DPC completes the IRP and calls
 * IoStartNextPacket — what a real device with a DpcForIsr does. With DelayMs 0 the "interrupt"
 * is immediate and StartIo requests the DpcForIsr directly (IoRequestDpc).
 *
 * IRP_MJ_CLEANUP (the last handle to a file object was closed) cancels the reads of that file
 * object still waiting in the device queue; the one the device is working on finishes normally.
 * The I/O manager itself cancels nothing on close: that is the driver's job.
 *
 * Only <ntddk.h> is used: this file builds unchanged against the WDK. */
#include "hello_startio.h"

typedef struct _HELLO_EXTENSION {
    KTIMER Timer;       /* variant 2: the simulated device latency */
    KDPC TimerDpc;
    KEVENT NeverSignalled; /* variant 1: what the seed's StartIo waits on */
    PIRP ActiveIrp;     /* the IRP the device is working on */
    NTSTATUS ActiveStatus; /* how it will end (STATUS_CANCELLED when cancelled before StartIo) */
    ULONG DelayMs;
    BOOLEAN AsWritten;
} HELLO_EXTENSION, *PHELLO_EXTENSION;

static HELLO_CONFIG g_config = {FALSE, 40};

VOID HelloSetConfig(const HELLO_CONFIG *Config) { g_config = *Config; }

static VOID HelloFillAndSucceed(PIRP Irp)
{
    static const char message[] = "hello from StartIo";
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
    ULONG n = sp->Parameters.Read.Length;
    if (n > sizeof message) n = sizeof message;
    if (Irp->AssociatedIrp.SystemBuffer) RtlCopyMemory(Irp->AssociatedIrp.SystemBuffer, message, n);
    Irp->IoStatus.Status = STATUS_SUCCESS;
    Irp->IoStatus.Information = n;
}

/* The device finished the active IRP (DPC context, DISPATCH_LEVEL). */
static VOID HelloDeviceDone(PDEVICE_OBJECT fdo)
{
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    PIRP Irp = ext->ActiveIrp;
    ext->ActiveIrp = NULL;
    if (ext->ActiveStatus == STATUS_SUCCESS) {
        HelloFillAndSucceed(Irp);
    } else {
        Irp->IoStatus.Status = ext->ActiveStatus;
        Irp->IoStatus.Information = 0;
    }
    /* Start the next packet *before* completing this one: IoCompleteRequest does not clear
     * CurrentIrp, and once completed the IRP's memory may be reused for a new request. A
     * cancel routine comparing `fdo->CurrentIrp == Irp` would then take that new, still queued
     * IRP for the current one and complete it while it stays in the device queue. */
    IoStartNextPacket(fdo, TRUE);
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

static VOID HelloTimerDpc(PKDPC Dpc, PVOID DeferredContext, PVOID Arg1, PVOID Arg2)
{
    UNREFERENCED_PARAMETER(Dpc);
    UNREFERENCED_PARAMETER(Arg1);
    UNREFERENCED_PARAMETER(Arg2);
    HelloDeviceDone((PDEVICE_OBJECT)DeferredContext);
}

static VOID HelloDpcForIsr(PKDPC Dpc, PDEVICE_OBJECT fdo, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(Dpc);
    UNREFERENCED_PARAMETER(Irp);
    UNREFERENCED_PARAMETER(Context);
    HelloDeviceDone(fdo);
}

static VOID HelloCancel(PDEVICE_OBJECT fdo, PIRP Irp)
{
    if (fdo->CurrentIrp == Irp) {
        /* Cancelled between "made current" and StartIo's check: StartIo will see
         * Irp != CurrentIrp or Irp->Cancel and leave it to us. Keep DISPATCH_LEVEL across
         * IoStartNextPacket, then return to the IRQL IoCancelIrp came from. */
        KIRQL oldirql = Irp->CancelIrql;
        IoReleaseCancelSpinLock(DISPATCH_LEVEL);
        IoStartNextPacket(fdo, TRUE);
        KeLowerIrql(oldirql);
    } else {
        KeRemoveEntryDeviceQueue(&fdo->DeviceQueue, &Irp->Tail.Overlay.DeviceQueueEntry);
        IoReleaseCancelSpinLock(Irp->CancelIrql);
    }
    Irp->IoStatus.Status = STATUS_CANCELLED;
    Irp->IoStatus.Information = 0;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

/* Variant 1: the seed's blocking StartIo. */
static VOID HelloWorkAsWritten(PDEVICE_OBJECT fdo, PIRP Irp)
{
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    LARGE_INTEGER timeout;
    timeout.QuadPart = -(LONGLONG)ext->DelayMs * 10000; /* relative, 100 ns units */
    KeWaitForSingleObject(&ext->NeverSignalled, Executive, KernelMode, FALSE, &timeout);
    HelloFillAndSucceed(Irp);
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    IoStartNextPacket(fdo, TRUE);
}

/* Variant 2: start the device and return; its DPC finishes the IRP. */
static VOID HelloWorkCorrected(PDEVICE_OBJECT fdo, PIRP Irp)
{
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    ext->ActiveIrp = Irp;
    if (ext->DelayMs == 0 || ext->ActiveStatus != STATUS_SUCCESS) {
        IoRequestDpc(fdo, Irp, NULL);
        return;
    }
    LARGE_INTEGER due;
    due.QuadPart = -(LONGLONG)ext->DelayMs * 10000;
    KeSetTimer(&ext->Timer, due, &ext->TimerDpc);
}

/* Variant 1 keeps the seed's check exactly. It loses an IRP that was cancelled before
 * IoStartPacket armed the cancel routine (Cancel set, no routine called) on an idle device:
 * StartIo returns expecting the cancel routine to complete it, and none ever runs. */
static VOID HelloStartIoAsWritten(PDEVICE_OBJECT fdo, PIRP Irp)
{
    KIRQL oldirql;
    IoAcquireCancelSpinLock(&oldirql);
    if (Irp != fdo->CurrentIrp || Irp->Cancel) {
        IoReleaseCancelSpinLock(oldirql);
        return; /* the cancel routine completes it */
    }
    IoSetCancelRoutine(Irp, NULL);
    IoReleaseCancelSpinLock(oldirql);
    HelloWorkAsWritten(fdo, Irp);
}

/* Variant 2 decides ownership by the cancel routine itself (one exchange under the cancel
 * lock): NULL means IoCancelIrp claimed the IRP and its cancel routine finishes it; non-NULL
 * means we own it — and if Cancel is already set, it was cancelled before the routine was
 * armed, so we must finish it ourselves (through the DPC, so StartIo never nests). */
static VOID HelloStartIoCorrected(PDEVICE_OBJECT fdo, PIRP Irp)
{
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    KIRQL oldirql;
    IoAcquireCancelSpinLock(&oldirql);
    if (Irp != fdo->CurrentIrp || IoSetCancelRoutine(Irp, NULL) == NULL) {
        IoReleaseCancelSpinLock(oldirql);
        return; /* the cancel routine completes it */
    }
    ext->ActiveStatus = Irp->Cancel ? STATUS_CANCELLED : STATUS_SUCCESS;
    IoReleaseCancelSpinLock(oldirql);
    HelloWorkCorrected(fdo, Irp);
}

static NTSTATUS HelloRead(PDEVICE_OBJECT fdo, PIRP Irp)
{
    IoMarkIrpPending(Irp);
    IoStartPacket(fdo, Irp, NULL, HelloCancel);
    return STATUS_PENDING;
}

/* Every change to this driver's device queue happens under the cancel spin lock (IoStartPacket
 * with a cancel routine, IoStartNextPacket(fdo, TRUE), HelloCancel), so holding it we may walk
 * the queue. A queued IRP is ours once IoSetCancelRoutine(Irp, NULL) returns non-NULL (else
 * IoCancelIrp owns it and its cancel routine, waiting for the lock we hold, completes it). The
 * IRPs we claim are completed after the lock is released. */
static NTSTATUS HelloCleanup(PDEVICE_OBJECT fdo, PIRP Irp)
{
    PFILE_OBJECT file = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    PLIST_ENTRY head = &fdo->DeviceQueue.DeviceListHead;
    LIST_ENTRY cancelled;
    KIRQL irql;
    InitializeListHead(&cancelled);
    IoAcquireCancelSpinLock(&irql);
    for (PLIST_ENTRY e = head->Flink; e != head;) {
        PIRP queued = CONTAINING_RECORD(e, IRP, Tail.Overlay.DeviceQueueEntry.DeviceListEntry);
        e = e->Flink;
        if (IoGetCurrentIrpStackLocation(queued)->FileObject != file) continue;
        if (IoSetCancelRoutine(queued, NULL) == NULL) continue;
        KeRemoveEntryDeviceQueue(&fdo->DeviceQueue, &queued->Tail.Overlay.DeviceQueueEntry);
        InsertTailList(&cancelled, &queued->Tail.Overlay.ListEntry);
    }
    IoReleaseCancelSpinLock(irql);
    while (!IsListEmpty(&cancelled)) {
        PIRP done = CONTAINING_RECORD(RemoveHeadList(&cancelled), IRP, Tail.Overlay.ListEntry);
        done->IoStatus.Status = STATUS_CANCELLED;
        done->IoStatus.Information = 0;
        IoCompleteRequest(done, IO_NO_INCREMENT);
    }
    Irp->IoStatus.Status = STATUS_SUCCESS;
    Irp->IoStatus.Information = 0;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

static NTSTATUS HelloCreateClose(PDEVICE_OBJECT fdo, PIRP Irp)
{
    UNREFERENCED_PARAMETER(fdo);
    Irp->IoStatus.Status = STATUS_SUCCESS;
    Irp->IoStatus.Information = 0;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

static VOID HelloUnload(PDRIVER_OBJECT DriverObject)
{
    UNICODE_STRING link = RTL_CONSTANT_STRING(HELLO_LINK_NAME);
    UNICODE_STRING ddk = RTL_CONSTANT_STRING(HELLO_DDK_LINK_NAME);
    IoDeleteSymbolicLink(&link);
    IoDeleteSymbolicLink(&ddk);
    if (DriverObject->DeviceObject) {
        PHELLO_EXTENSION ext = (PHELLO_EXTENSION)DriverObject->DeviceObject->DeviceExtension;
        KeCancelTimer(&ext->Timer);
        IoDeleteDevice(DriverObject->DeviceObject);
    }
}

NTSTATUS HelloDriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(HELLO_DEVICE_NAME);
    UNICODE_STRING link = RTL_CONSTANT_STRING(HELLO_LINK_NAME);
    UNICODE_STRING ddk = RTL_CONSTANT_STRING(HELLO_DDK_LINK_NAME);
    PDEVICE_OBJECT fdo;
    UNREFERENCED_PARAMETER(RegistryPath);
    NTSTATUS status = IoCreateDevice(DriverObject, sizeof(HELLO_EXTENSION), &name, FILE_DEVICE_UNKNOWN,
                                     0, FALSE, &fdo);
    if (!NT_SUCCESS(status)) return status;
    status = IoCreateSymbolicLink(&link, &name);
    if (NT_SUCCESS(status)) {
        status = IoCreateSymbolicLink(&ddk, &name);
        if (!NT_SUCCESS(status)) IoDeleteSymbolicLink(&link);
    }
    if (!NT_SUCCESS(status)) {
        IoDeleteDevice(fdo);
        return status;
    }
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    ext->AsWritten = g_config.AsWritten;
    ext->DelayMs = g_config.DelayMs;
    KeInitializeTimer(&ext->Timer);
    KeInitializeDpc(&ext->TimerDpc, HelloTimerDpc, fdo);
    KeInitializeEvent(&ext->NeverSignalled, NotificationEvent, FALSE);
    IoInitializeDpcRequest(fdo, HelloDpcForIsr);
    fdo->Flags |= DO_BUFFERED_IO;
    fdo->Flags &= ~DO_DEVICE_INITIALIZING;
    DriverObject->DriverStartIo = g_config.AsWritten ? HelloStartIoAsWritten : HelloStartIoCorrected;
    DriverObject->DriverUnload = HelloUnload;
    DriverObject->MajorFunction[IRP_MJ_CREATE] = HelloCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = HelloCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLEANUP] = HelloCleanup;
    DriverObject->MajorFunction[IRP_MJ_READ] = HelloRead;
    return STATUS_SUCCESS;
}
