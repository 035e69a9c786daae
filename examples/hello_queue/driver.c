/* hello_queue — the seed's sample driver (examples/hello_startio) rewritten on irpkit's IRP
 * adapter (irpkit/irpqueue.h), the "better way than StartIo" the seed's author asked for.
 *
 * DispatchRead hands the IRP to the adapter: irpk_irpq_submit marks it pending, queues it and
 * makes it cancelable. HelloReadHandler replaces StartIo: it starts the simulated device (a
 * KTIMER whose DPC finishes the read, or an immediate DpcForIsr) and returns. The DPC
 * completes the read with irpk_irpq_complete, which also starts the next one. There is no
 * cancel routine, no cancel spin lock, no IoStartNextPacket, no CurrentIrp check: a queued
 * IRP that is cancelled is completed by the adapter; a running one is reported to
 * HelloCancelRunning, which stops the timer and finishes the read early. IRP_MJ_CLEANUP
 * cancels the reads of the closing file object with one call.
 *
 * The handler runs at PASSIVE_LEVEL (HandlerIrql, the adapter defers it to its worker thread
 * when the previous read was completed by a DPC): unlike StartIo, it could wait or touch
 * pageable memory.
 *
 * Only <ntddk.h> and the adapter's header are used. */
#include "hello_queue.h"

typedef struct _HELLO_EXTENSION {
    irpk_irpq *Queue; /* replaces the device queue, StartIo and the cancel routine */
    KTIMER Timer;     /* the simulated device latency */
    KDPC TimerDpc;
    PIRP ActiveIrp;   /* the read the device is working on */
    ULONG DelayMs;
} HELLO_EXTENSION, *PHELLO_EXTENSION;

static HELLOQ_CONFIG g_config = {40, IRPK_IRPQ_IRQL_PASSIVE};
static HELLOQ_STATS g_stats; /* handler fields: handlers run one after another (the queue) */

VOID HelloQueueSetConfig(const HELLOQ_CONFIG *Config) { g_config = *Config; }
VOID HelloQueueGetStats(HELLOQ_STATS *Stats) { *Stats = g_stats; }

static ULONG HelloFill(PIRP Irp)
{
    static const char message[] = "hello from the queue";
    ULONG n = IoGetCurrentIrpStackLocation(Irp)->Parameters.Read.Length;
    if (n > sizeof message) n = sizeof message;
    if (Irp->AssociatedIrp.SystemBuffer) RtlCopyMemory(Irp->AssociatedIrp.SystemBuffer, message, n);
    return n;
}

/* The device finished the active read (DPC context, DISPATCH_LEVEL). */
static VOID HelloDeviceDone(PDEVICE_OBJECT fdo)
{
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    PIRP Irp = ext->ActiveIrp;
    ext->ActiveIrp = NULL; /* before completing: the next read's handler may run right away */
    if (irpk_irpq_is_cancelled(ext->Queue, Irp) == 1)
        irpk_irpq_complete(ext->Queue, Irp, STATUS_CANCELLED, 0);
    else
        irpk_irpq_complete(ext->Queue, Irp, STATUS_SUCCESS, HelloFill(Irp));
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

/* Replaces StartIo: one read at a time, at PASSIVE_LEVEL. Start the device and return. */
static VOID HelloReadHandler(irpk_irpq *Queue, PIRP Irp, PVOID Context)
{
    PDEVICE_OBJECT fdo = (PDEVICE_OBJECT)Context;
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    UNREFERENCED_PARAMETER(Queue);
    if (KeGetCurrentIrql() > g_stats.MaxHandlerIrql) g_stats.MaxHandlerIrql = KeGetCurrentIrql();
    g_stats.HandlerCalls++;
    ext->ActiveIrp = Irp;
    if (ext->DelayMs == 0) {
        IoRequestDpc(fdo, Irp, NULL);
    } else {
        LARGE_INTEGER due;
        due.QuadPart = -(LONGLONG)ext->DelayMs * 10000; /* relative, 100 ns units */
        KeSetTimer(&ext->Timer, due, &ext->TimerDpc);
    }
}

/* The running read was cancelled (IoCancelIrp, cleanup, unload). If the timer had not fired
 * yet, its DPC will not run: finish the read now. Otherwise the DPC sees the flag. */
static VOID HelloCancelRunning(irpk_irpq *Queue, PIRP Irp, PVOID Context)
{
    PDEVICE_OBJECT fdo = (PDEVICE_OBJECT)Context;
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    if (!KeCancelTimer(&ext->Timer)) return;
    ext->ActiveIrp = NULL;
    InterlockedIncrement(&g_stats.CancelledWhileRunning);
    irpk_irpq_complete(Queue, Irp, STATUS_CANCELLED, 0);
}

static NTSTATUS HelloRead(PDEVICE_OBJECT fdo, PIRP Irp)
{
    return irpk_irpq_submit(((PHELLO_EXTENSION)fdo->DeviceExtension)->Queue, Irp, NULL);
}

/* The last handle of a file object was closed: cancel its reads, queued or running. */
static NTSTATUS HelloCleanup(PDEVICE_OBJECT fdo, PIRP Irp)
{
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    irpk_irpq_cancel_file(ext->Queue, IoGetCurrentIrpStackLocation(Irp)->FileObject, NULL, NULL);
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
    UNICODE_STRING link = RTL_CONSTANT_STRING(HELLOQ_LINK_NAME);
    IoDeleteSymbolicLink(&link);
    if (DriverObject->DeviceObject) {
        PHELLO_EXTENSION ext = (PHELLO_EXTENSION)DriverObject->DeviceObject->DeviceExtension;
        irpk_irpq_free(ext->Queue); /* cancels what is queued, waits for the running read */
        IoDeleteDevice(DriverObject->DeviceObject);
    }
}

NTSTATUS HelloQueueDriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(HELLOQ_DEVICE_NAME);
    UNICODE_STRING link = RTL_CONSTANT_STRING(HELLOQ_LINK_NAME);
    PDEVICE_OBJECT fdo;
    UNREFERENCED_PARAMETER(RegistryPath);
    NTSTATUS status = IoCreateDevice(DriverObject, sizeof(HELLO_EXTENSION), &name, FILE_DEVICE_UNKNOWN,
                                     0, FALSE, &fdo);
    if (!NT_SUCCESS(status)) return status;
    PHELLO_EXTENSION ext = (PHELLO_EXTENSION)fdo->DeviceExtension;
    irpk_irpq_config qc;
    irpk_irpq_config_init(&qc); /* SEQUENTIAL: one read at a time, like StartIo */
    qc.handler = HelloReadHandler;
    qc.on_cancel = HelloCancelRunning;
    qc.handler_irql = g_config.HandlerIrql;
    qc.context = fdo;
    qc.name = "hello_queue";
    if (irpk_irpq_create(&qc, &ext->Queue) != 0) {
        IoDeleteDevice(fdo);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    status = IoCreateSymbolicLink(&link, &name);
    if (!NT_SUCCESS(status)) {
        irpk_irpq_free(ext->Queue);
        IoDeleteDevice(fdo);
        return status;
    }
    RtlZeroMemory(&g_stats, sizeof g_stats);
    ext->DelayMs = g_config.DelayMs;
    KeInitializeTimer(&ext->Timer);
    KeInitializeDpc(&ext->TimerDpc, HelloTimerDpc, fdo);
    IoInitializeDpcRequest(fdo, HelloDpcForIsr);
    fdo->Flags |= DO_BUFFERED_IO;
    fdo->Flags &= ~DO_DEVICE_INITIALIZING;
    DriverObject->DriverUnload = HelloUnload;
    DriverObject->MajorFunction[IRP_MJ_CREATE] = HelloCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = HelloCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLEANUP] = HelloCleanup;
    DriverObject->MajorFunction[IRP_MJ_READ] = HelloRead;
    return STATUS_SUCCESS;
}
