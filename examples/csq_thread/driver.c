/* csq_thread — reads queued in a cancel-safe queue and served, in order, by one dedicated
 * system thread.
 *
 *  - DispatchRead inserts the read (IoCsqInsertIrp marks it pending and makes it cancelable)
 *    and releases the Work semaphore by one: one unit per queued read.
 *  - The worker thread (PsCreateSystemThread at load) waits on the semaphore, takes the head
 *    with IoCsqRemoveNextIrp and completes it. Units never fall behind queued reads — each insert
 *    adds one of each, each wake-up consumes one unit and takes at most one read, and it finds
 *    none only when the queue holds nothing it may take (a cancelled read consumed no unit of
 *    its own: its wake-up simply finds the next read early, and a later one finds nothing).
 *    So no read waits while the worker sleeps, and FIFO order holds because only the worker
 *    dequeues with a NULL peek context.
 *  - IoCancelIrp on a queued read: the CSQ's cancel routine removes it and CompleteCanceledIrp
 *    completes it. A read the worker already took is past cancellation (it completes at once).
 *  - IRP_MJ_CLEANUP: IoCsqRemoveNextIrp with the file object as the peek context, until none.
 *  - Unload: Stop := 1, one more unit so the worker wakes and sees it, then wait on the worker's
 *    thread object (referenced at load with ObReferenceObjectByHandle) until it has terminated.
 *  - IOCTL_CSQ_THREAD_PAUSE: the worker waits on the Running event before each dequeue, so
 *    reads stay queued (a stopped device; the tests use it to cancel queued reads at will).
 *
 * Lock: QueueLock (the CSQ lock) guards Pending, NextSequence and LastServed; nothing else is
 * taken under it. Only <ntddk.h> is used: this file builds unchanged against the WDK. */
#include "csq_thread.h"

#ifndef MAXLONG
#define MAXLONG 0x7fffffff
#endif

typedef struct _DEVICE_EXTENSION {
    IO_CSQ Csq;
    KSPIN_LOCK QueueLock;
    LIST_ENTRY Pending;   /* queued reads, oldest first */
    ULONG NextSequence;   /* insertion order, stored in DriverContext[0] */
    ULONG LastServed;     /* insertion number of the read served last (worker only) */
    ULONG Served;         /* worker only */
    KSEMAPHORE Work;      /* one unit per inserted read, plus one to stop */
    KEVENT Running;       /* notification event, cleared while paused */
    volatile LONG Stop;
    PKTHREAD Worker;      /* referenced until unload */
    CSQ_THREAD_STATS Stats;
} DEVICE_EXTENSION, *PDEVICE_EXTENSION;

#define EXT_OF_CSQ(csq) CONTAINING_RECORD(csq, DEVICE_EXTENSION, Csq)
#define SEQUENCE(irp) ((irp)->Tail.Overlay.DriverContext[0])

static VOID CompleteWith(PIRP Irp, NTSTATUS Status, ULONG_PTR Information)
{
    Irp->IoStatus.Status = Status;
    Irp->IoStatus.Information = Information;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

/* ---- the cancel-safe queue's callbacks (QueueLock held, except CompleteCanceledIrp) */

static VOID CsqInsert(PIO_CSQ Csq, PIRP Irp)
{
    PDEVICE_EXTENSION ext = EXT_OF_CSQ(Csq);
    SEQUENCE(Irp) = (PVOID)(ULONG_PTR)++ext->NextSequence;
    InsertTailList(&ext->Pending, &Irp->Tail.Overlay.ListEntry);
}

static VOID CsqRemove(PIO_CSQ Csq, PIRP Irp)
{
    UNREFERENCED_PARAMETER(Csq);
    RemoveEntryList(&Irp->Tail.Overlay.ListEntry);
}

static PIRP CsqPeekNext(PIO_CSQ Csq, PIRP Irp, PVOID PeekContext)
{
    PDEVICE_EXTENSION ext = EXT_OF_CSQ(Csq);
    PLIST_ENTRY e = Irp ? Irp->Tail.Overlay.ListEntry.Flink : ext->Pending.Flink;
    for (; e != &ext->Pending; e = e->Flink) {
        PIRP candidate = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
        if (!PeekContext || IoGetCurrentIrpStackLocation(candidate)->FileObject == (PFILE_OBJECT)PeekContext)
            return candidate;
    }
    return NULL;
}

static VOID CsqAcquireLock(PIO_CSQ Csq, PKIRQL Irql) { KeAcquireSpinLock(&EXT_OF_CSQ(Csq)->QueueLock, Irql); }

static VOID CsqReleaseLock(PIO_CSQ Csq, KIRQL Irql) { KeReleaseSpinLock(&EXT_OF_CSQ(Csq)->QueueLock, Irql); }

static VOID CsqCompleteCanceled(PIO_CSQ Csq, PIRP Irp)
{
    InterlockedIncrement(&EXT_OF_CSQ(Csq)->Stats.QueueCancelled);
    CompleteWith(Irp, STATUS_CANCELLED, 0);
}

/* ---- the worker thread (PASSIVE_LEVEL) */

static VOID Serve(PDEVICE_EXTENSION ext, PIRP Irp)
{
    ULONG sequence = (ULONG)(ULONG_PTR)SEQUENCE(Irp);
    if (sequence <= ext->LastServed) InterlockedIncrement(&ext->Stats.OutOfOrder);
    ext->LastServed = sequence;
    *(PULONG)Irp->AssociatedIrp.SystemBuffer = ++ext->Served;
    InterlockedIncrement(&ext->Stats.Served);
    CompleteWith(Irp, STATUS_SUCCESS, sizeof(ULONG));
}

static VOID WorkerThread(PVOID Context)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)Context;
    for (;;) {
        KeWaitForSingleObject(&ext->Work, Executive, KernelMode, FALSE, NULL);
        if (InterlockedCompareExchange(&ext->Stop, 0, 0)) break;
        KeWaitForSingleObject(&ext->Running, Executive, KernelMode, FALSE, NULL);
        InterlockedIncrement(&ext->Stats.Wakeups);
        PIRP irp = IoCsqRemoveNextIrp(&ext->Csq, NULL);
        if (irp) Serve(ext, irp);
        else InterlockedIncrement(&ext->Stats.EmptyWakeups);
    }
    PsTerminateSystemThread(STATUS_SUCCESS);
}

/* ---- dispatch routines */

static NTSTATUS DispatchRead(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
    if (sp->Parameters.Read.Length < sizeof(ULONG) || !Irp->AssociatedIrp.SystemBuffer) {
        CompleteWith(Irp, STATUS_INVALID_PARAMETER, 0);
        return STATUS_INVALID_PARAMETER;
    }
    InterlockedIncrement(&ext->Stats.Queued);
    IoCsqInsertIrp(&ext->Csq, Irp, NULL);
    /* After the insert: the worker that takes this unit finds the read (or a later one). */
    KeReleaseSemaphore(&ext->Work, IO_NO_INCREMENT, 1, FALSE);
    return STATUS_PENDING;
}

static NTSTATUS DispatchCreateClose(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    CompleteWith(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

static NTSTATUS DispatchCleanup(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PFILE_OBJECT fo = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    PIRP queued;
    while ((queued = IoCsqRemoveNextIrp(&ext->Csq, fo)) != NULL) {
        InterlockedIncrement(&ext->Stats.CleanupCancelled);
        CompleteWith(queued, STATUS_CANCELLED, 0);
    }
    CompleteWith(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

static NTSTATUS DispatchDeviceControl(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
    if (sp->Parameters.DeviceIoControl.IoControlCode == IOCTL_CSQ_THREAD_PAUSE &&
        sp->Parameters.DeviceIoControl.InputBufferLength >= sizeof(ULONG)) {
        if (*(PULONG)Irp->AssociatedIrp.SystemBuffer) KeClearEvent(&ext->Running);
        else KeSetEvent(&ext->Running, IO_NO_INCREMENT, FALSE);
        CompleteWith(Irp, STATUS_SUCCESS, 0);
        return STATUS_SUCCESS;
    }
    if (sp->Parameters.DeviceIoControl.IoControlCode != IOCTL_CSQ_THREAD_STATS ||
        sp->Parameters.DeviceIoControl.OutputBufferLength < sizeof(CSQ_THREAD_STATS)) {
        CompleteWith(Irp, STATUS_INVALID_DEVICE_REQUEST, 0);
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    PLONG out = (PLONG)Irp->AssociatedIrp.SystemBuffer;
    LONG volatile *in = (LONG volatile *)&ext->Stats;
    for (ULONG i = 0; i < sizeof(CSQ_THREAD_STATS) / sizeof(LONG); i++) out[i] = InterlockedCompareExchange(&in[i], 0, 0);
    CompleteWith(Irp, STATUS_SUCCESS, sizeof(CSQ_THREAD_STATS));
    return STATUS_SUCCESS;
}

/* Stop the worker and wait until its thread object is signalled (it has terminated). */
static VOID StopWorker(PDEVICE_EXTENSION ext)
{
    InterlockedExchange(&ext->Stop, 1);
    KeReleaseSemaphore(&ext->Work, IO_NO_INCREMENT, 1, FALSE);
    KeSetEvent(&ext->Running, IO_NO_INCREMENT, FALSE); /* a paused worker must see Stop too */
    KeWaitForSingleObject(ext->Worker, Executive, KernelMode, FALSE, NULL);
    ObDereferenceObject(ext->Worker);
    ext->Worker = NULL;
}

static VOID CsqThreadUnload(PDRIVER_OBJECT DriverObject)
{
    UNICODE_STRING link = RTL_CONSTANT_STRING(CSQ_THREAD_LINK_NAME);
    IoDeleteSymbolicLink(&link);
    PDEVICE_OBJECT fdo = DriverObject->DeviceObject;
    if (!fdo) return;
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)fdo->DeviceExtension;
    StopWorker(ext);
    /* Every handle was closed, so nothing should be left; finish anything that is. */
    PIRP irp;
    while ((irp = IoCsqRemoveNextIrp(&ext->Csq, NULL)) != NULL) CompleteWith(irp, STATUS_CANCELLED, 0);
    IoDeleteDevice(fdo);
}

static NTSTATUS StartWorker(PDEVICE_EXTENSION ext)
{
    HANDLE thread;
    NTSTATUS status = PsCreateSystemThread(&thread, THREAD_ALL_ACCESS, NULL, NULL, NULL, WorkerThread, ext);
    if (!NT_SUCCESS(status)) return status;
    status = ObReferenceObjectByHandle(thread, THREAD_ALL_ACCESS, *PsThreadType, KernelMode,
                                       (PVOID *)&ext->Worker, NULL);
    ZwClose(thread);
    if (!NT_SUCCESS(status)) { /* cannot happen for our own fresh handle; stop it blind */
        InterlockedExchange(&ext->Stop, 1);
        KeReleaseSemaphore(&ext->Work, IO_NO_INCREMENT, 1, FALSE);
    }
    return status;
}

NTSTATUS CsqThreadDriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(CSQ_THREAD_DEVICE_NAME);
    UNICODE_STRING link = RTL_CONSTANT_STRING(CSQ_THREAD_LINK_NAME);
    PDEVICE_OBJECT fdo;
    UNREFERENCED_PARAMETER(RegistryPath);
    NTSTATUS status = IoCreateDevice(DriverObject, sizeof(DEVICE_EXTENSION), &name, FILE_DEVICE_UNKNOWN,
                                     0, FALSE, &fdo);
    if (!NT_SUCCESS(status)) return status;
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)fdo->DeviceExtension;
    KeInitializeSpinLock(&ext->QueueLock);
    InitializeListHead(&ext->Pending);
    KeInitializeSemaphore(&ext->Work, 0, MAXLONG);
    KeInitializeEvent(&ext->Running, NotificationEvent, TRUE);
    IoCsqInitialize(&ext->Csq, CsqInsert, CsqRemove, CsqPeekNext, CsqAcquireLock, CsqReleaseLock,
                    CsqCompleteCanceled);
    status = StartWorker(ext);
    if (NT_SUCCESS(status)) status = IoCreateSymbolicLink(&link, &name);
    if (!NT_SUCCESS(status)) {
        if (ext->Worker) StopWorker(ext);
        IoDeleteDevice(fdo);
        return status;
    }
    fdo->Flags |= DO_BUFFERED_IO;
    fdo->Flags &= ~DO_DEVICE_INITIALIZING;
    DriverObject->DriverUnload = CsqThreadUnload;
    DriverObject->MajorFunction[IRP_MJ_CREATE] = DispatchCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = DispatchCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLEANUP] = DispatchCleanup;
    DriverObject->MajorFunction[IRP_MJ_READ] = DispatchRead;
    DriverObject->MajorFunction[IRP_MJ_DEVICE_CONTROL] = DispatchDeviceControl;
    return STATUS_SUCCESS;
}
