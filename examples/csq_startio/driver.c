/* csq_startio — StartIo's "one current request" built on a cancel-safe queue instead of the
 * device queue and the global cancel spin lock.
 *
 *  - DispatchRead marks the read pending and calls IoCsqInsertIrpEx. Under the queue lock,
 *    InsertEx either queues the IRP (device busy) or — device idle — makes it the current
 *    request and refuses the insert with CSQ_STARTIO_STARTED, so it never becomes cancelable
 *    in the queue; the dispatch routine then starts the device by queuing the poll DPC.
 *  - The "device" runs in the poll DPC. A request that needs no settling transfers at once; a
 *    settling one re-arms the poll timer until the device is ready (or the request is
 *    cancelled / its handle cleaned up). Finishing the current request starts the next one with
 *    IoCsqRemoveNextIrp(Csq, NULL): PeekNext with no context is the device's own call, and when
 *    it finds nothing it marks the device idle — under the queue lock, so a dispatch routine
 *    either sees "busy" and queues (and the DPC will find its IRP) or sees "idle" and starts
 *    the device itself. No request is ever stranded, and no StartIo recursion exists: the DPC
 *    loops.
 *  - IoCancelIrp on a queued request runs the CSQ's cancel routine (CompleteCanceledIrp); the
 *    current request is not in the queue: the DPC honours Irp->Cancel while the device settles.
 *  - IRP_MJ_CLEANUP cancels the handle's requests: IoCsqRemoveNextIrp with the file object as
 *    the peek context, plus an "abort" flag for the current one. A per-handle remove lock, held
 *    by every dispatch routine on the handle, is released-and-waited first: no dispatch
 *    routine can queue a request for the handle after cleanup swept the queue (later ones get
 *    STATUS_DELETE_PENDING).
 *
 * Lock: QueueLock (the CSQ lock) guards Pending, Busy, CurrentIrp, AbortCurrent, the device's
 * per-request state and Sequence. It is the only driver lock; the cancel spin lock is taken
 * only to read Irp->Cancel: of a settling current request (alone), and in cleanup's final
 * check (inside QueueLock; nothing nests them the other way).
 *
 * Only <ntddk.h> is used: this file builds unchanged against the WDK. */
#include "csq_startio.h"

/* InsertEx's "not queued: it is the current request now" (an error status, so IoCsqInsertIrpEx
 * neither queues nor arms the IRP; customer bit set). */
#define CSQ_STARTIO_STARTED ((NTSTATUS)0xE0000001L)

typedef struct _HANDLE_CONTEXT {
    IO_REMOVE_LOCK RemoveLock; /* every dispatch routine on the handle holds it */
} HANDLE_CONTEXT, *PHANDLE_CONTEXT;

typedef struct _DEVICE_EXTENSION {
    IO_CSQ Csq;
    KSPIN_LOCK QueueLock;
    LIST_ENTRY Pending;  /* queued reads, oldest first */
    BOOLEAN Busy;        /* the device has a current request */
    BOOLEAN AbortCurrent; /* cleanup asked the current request to end */
    PIRP CurrentIrp;     /* NULL while the DPC hands over from one request to the next */
    ULONG SettleLeft;    /* polls the current request still waits */
    ULONG Sequence;      /* requests started so far */
    ULONG CurrentNumber; /* the current request's number */
    KTIMER PollTimer;
    KDPC PollDpc;
    CSQ_STARTIO_CONFIG Config;
    CSQ_STARTIO_STATS Stats; /* interlocked counters */
} DEVICE_EXTENSION, *PDEVICE_EXTENSION;

static CSQ_STARTIO_CONFIG g_config = {8, 2, 1};

VOID CsqStartIoSetConfig(const CSQ_STARTIO_CONFIG *Config) { g_config = *Config; }

#define EXT_OF_CSQ(csq) CONTAINING_RECORD(csq, DEVICE_EXTENSION, Csq)

static PFILE_OBJECT FileOf(PIRP Irp) { return IoGetCurrentIrpStackLocation(Irp)->FileObject; }

/* Make Irp the current request (QueueLock held). */
static VOID MakeCurrent(PDEVICE_EXTENSION ext, PIRP Irp)
{
    ext->CurrentIrp = Irp;
    ext->AbortCurrent = FALSE;
    ext->CurrentNumber = ++ext->Sequence;
    ext->SettleLeft = ext->Config.SettleEvery && ext->CurrentNumber % ext->Config.SettleEvery == 0
                          ? ext->Config.SettlePolls
                          : 0;
    InterlockedIncrement(&ext->Stats.MadeCurrent);
}

/* ---- the cancel-safe queue's callbacks (QueueLock held, except CompleteCanceledIrp) */

static NTSTATUS CsqInsertEx(PIO_CSQ Csq, PIRP Irp, PVOID InsertContext)
{
    PDEVICE_EXTENSION ext = EXT_OF_CSQ(Csq);
    UNREFERENCED_PARAMETER(InsertContext);
    if (!ext->Busy) {
        ext->Busy = TRUE;
        MakeCurrent(ext, Irp);
        return CSQ_STARTIO_STARTED;
    }
    InsertTailList(&ext->Pending, &Irp->Tail.Overlay.ListEntry);
    InterlockedIncrement(&ext->Stats.Queued);
    return STATUS_SUCCESS;
}

static VOID CsqRemove(PIO_CSQ Csq, PIRP Irp)
{
    UNREFERENCED_PARAMETER(Csq);
    RemoveEntryList(&Irp->Tail.Overlay.ListEntry);
}

/* PeekContext NULL is the device asking for its next request: finding none makes the device
 * idle here, under the queue lock, atomically with the search. */
static PIRP CsqPeekNext(PIO_CSQ Csq, PIRP Irp, PVOID PeekContext)
{
    PDEVICE_EXTENSION ext = EXT_OF_CSQ(Csq);
    PLIST_ENTRY e = Irp ? Irp->Tail.Overlay.ListEntry.Flink : ext->Pending.Flink;
    for (; e != &ext->Pending; e = e->Flink) {
        PIRP candidate = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
        if (!PeekContext || FileOf(candidate) == (PFILE_OBJECT)PeekContext) return candidate;
    }
    if (!PeekContext) ext->Busy = FALSE;
    return NULL;
}

static VOID CsqAcquireLock(PIO_CSQ Csq, PKIRQL Irql) { KeAcquireSpinLock(&EXT_OF_CSQ(Csq)->QueueLock, Irql); }

static VOID CsqReleaseLock(PIO_CSQ Csq, KIRQL Irql) { KeReleaseSpinLock(&EXT_OF_CSQ(Csq)->QueueLock, Irql); }

static VOID CompleteWith(PIRP Irp, NTSTATUS Status, ULONG_PTR Information)
{
    Irp->IoStatus.Status = Status;
    Irp->IoStatus.Information = Information;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

static VOID CsqCompleteCanceled(PIO_CSQ Csq, PIRP Irp)
{
    InterlockedIncrement(&EXT_OF_CSQ(Csq)->Stats.QueueCancelled);
    CompleteWith(Irp, STATUS_CANCELLED, 0);
}

/* ---- the device (DPC context) */

/* Irp->Cancel is written under the cancel spin lock; read it there. Only a settling request
 * pays for this: one that transfers at once is racing its cancel and may simply succeed. */
static BOOLEAN CancelRequested(PIRP Irp)
{
    KIRQL irql;
    IoAcquireCancelSpinLock(&irql);
    BOOLEAN cancel = Irp->Cancel;
    IoReleaseCancelSpinLock(irql);
    return cancel;
}

/* Hand the device to the next queued request; FALSE when there is none (the device went idle
 * inside PeekNext, and a dispatch routine may already have made its IRP current: CurrentIrp
 * is then not ours to touch). */
static BOOLEAN StartNext(PDEVICE_EXTENSION ext)
{
    PIRP next = IoCsqRemoveNextIrp(&ext->Csq, NULL);
    if (!next) return FALSE;
    KIRQL irql;
    KeAcquireSpinLock(&ext->QueueLock, &irql);
    MakeCurrent(ext, next);
    KeReleaseSpinLock(&ext->QueueLock, irql);
    return TRUE;
}

static VOID FinishCurrent(PDEVICE_EXTENSION ext, PIRP Irp, ULONG Number, BOOLEAN Cancelled)
{
    /* Cleanup reads CurrentIrp under the lock: clear it before the IRP can be completed. */
    KIRQL irql;
    KeAcquireSpinLock(&ext->QueueLock, &irql);
    ext->CurrentIrp = NULL;
    KeReleaseSpinLock(&ext->QueueLock, irql);
    if (Cancelled) {
        InterlockedIncrement(&ext->Stats.CurrentCancelled);
        CompleteWith(Irp, STATUS_CANCELLED, 0);
        return;
    }
    *(PULONG)Irp->AssociatedIrp.SystemBuffer = Number;
    InterlockedIncrement(&ext->Stats.Transferred);
    CompleteWith(Irp, STATUS_SUCCESS, sizeof(ULONG));
}

/* The device owns the current request from MakeCurrent until FinishCurrent: one DPC activation
 * at a time (the dispatch routine's KeInsertQueueDpc or the poll timer), never both. */
static VOID PollDpc(PKDPC Dpc, PVOID DeferredContext, PVOID Arg1, PVOID Arg2)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeferredContext;
    UNREFERENCED_PARAMETER(Dpc);
    UNREFERENCED_PARAMETER(Arg1);
    UNREFERENCED_PARAMETER(Arg2);
    do {
        KIRQL irql;
        KeAcquireSpinLock(&ext->QueueLock, &irql);
        PIRP irp = ext->CurrentIrp;
        BOOLEAN abort = ext->AbortCurrent;
        ULONG number = ext->CurrentNumber;
        BOOLEAN settling = ext->SettleLeft > 0;
        if (settling && !abort) ext->SettleLeft--;
        KeReleaseSpinLock(&ext->QueueLock, irql);
        BOOLEAN cancelled = abort || (settling && CancelRequested(irp));
        if (settling && !cancelled) {
            LARGE_INTEGER due;
            due.QuadPart = -(LONGLONG)ext->Config.PollMs * 10000;
            InterlockedIncrement(&ext->Stats.Polls);
            KeSetTimer(&ext->PollTimer, due, &ext->PollDpc); /* still settling: poll again */
            return;
        }
        FinishCurrent(ext, irp, number, cancelled);
    } while (StartNext(ext));
}

/* ---- dispatch routines */

static NTSTATUS DispatchRead(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
    PHANDLE_CONTEXT h = sp->FileObject ? (PHANDLE_CONTEXT)sp->FileObject->FsContext : NULL;
    if (!h || sp->Parameters.Read.Length < sizeof(ULONG) || !Irp->AssociatedIrp.SystemBuffer) {
        CompleteWith(Irp, STATUS_INVALID_PARAMETER, 0);
        return STATUS_INVALID_PARAMETER;
    }
    NTSTATUS status = IoAcquireRemoveLock(&h->RemoveLock, Irp);
    if (!NT_SUCCESS(status)) { /* the handle's cleanup has begun */
        InterlockedIncrement(&ext->Stats.DeletePending);
        CompleteWith(Irp, status, 0);
        return status;
    }
    IoMarkIrpPending(Irp); /* before the IRP can reach the queue or the device */
    status = IoCsqInsertIrpEx(&ext->Csq, Irp, NULL, NULL);
    if (status == CSQ_STARTIO_STARTED) KeInsertQueueDpc(&ext->PollDpc, NULL, NULL);
    IoReleaseRemoveLock(&h->RemoveLock, Irp);
    return STATUS_PENDING;
}

static NTSTATUS DispatchCreate(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    PFILE_OBJECT fo = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    PHANDLE_CONTEXT h = (PHANDLE_CONTEXT)ExAllocatePoolZero(NonPagedPoolNx, sizeof *h, CSQ_STARTIO_TAG);
    if (!fo || !h) {
        if (h) ExFreePoolWithTag(h, CSQ_STARTIO_TAG);
        CompleteWith(Irp, STATUS_INSUFFICIENT_RESOURCES, 0);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    IoInitializeRemoveLock(&h->RemoveLock, CSQ_STARTIO_TAG, 0, 0);
    fo->FsContext = h;
    CompleteWith(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

/* Is a request of this file object still queued that no cancel owns? (Checks cleanup's own
 * promise.) One whose cancel routine IoCancelIrp already took is still listed until that
 * routine removes it: Cancel is set and the exchange done, both under the cancel spin lock,
 * so reading Cancel under it tells them apart. Lock order QueueLock -> cancel spin lock: no
 * path takes them the other way round (the CSQ's cancel routine releases the cancel lock
 * before it takes QueueLock). */
static BOOLEAN QueuedFor(PDEVICE_EXTENSION ext, PFILE_OBJECT fo)
{
    BOOLEAN found = FALSE;
    KIRQL irql, cancel_irql;
    KeAcquireSpinLock(&ext->QueueLock, &irql);
    IoAcquireCancelSpinLock(&cancel_irql);
    for (PLIST_ENTRY e = ext->Pending.Flink; e != &ext->Pending && !found; e = e->Flink) {
        PIRP irp = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
        found = FileOf(irp) == fo && !irp->Cancel;
    }
    IoReleaseCancelSpinLock(cancel_irql);
    KeReleaseSpinLock(&ext->QueueLock, irql);
    return found;
}

static NTSTATUS DispatchCleanup(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PFILE_OBJECT fo = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    PHANDLE_CONTEXT h = (PHANDLE_CONTEXT)fo->FsContext;
    /* Wait out the dispatch routines on this handle; later ones get STATUS_DELETE_PENDING. */
    if (NT_SUCCESS(IoAcquireRemoveLock(&h->RemoveLock, Irp))) IoReleaseRemoveLockAndWait(&h->RemoveLock, Irp);
    KIRQL irql;
    KeAcquireSpinLock(&ext->QueueLock, &irql);
    if (ext->CurrentIrp && FileOf(ext->CurrentIrp) == fo) ext->AbortCurrent = TRUE;
    KeReleaseSpinLock(&ext->QueueLock, irql);
    PIRP queued;
    while ((queued = IoCsqRemoveNextIrp(&ext->Csq, fo)) != NULL) {
        InterlockedIncrement(&ext->Stats.CleanupCancelled);
        CompleteWith(queued, STATUS_CANCELLED, 0);
    }
    if (QueuedFor(ext, fo)) InterlockedIncrement(&ext->Stats.CleanupLeftovers);
    CompleteWith(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

static NTSTATUS DispatchClose(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    PFILE_OBJECT fo = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    if (fo && fo->FsContext) {
        ExFreePoolWithTag(fo->FsContext, CSQ_STARTIO_TAG);
        fo->FsContext = NULL;
    }
    CompleteWith(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

static NTSTATUS DispatchDeviceControl(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
    if (sp->Parameters.DeviceIoControl.IoControlCode != IOCTL_CSQ_STARTIO_STATS ||
        sp->Parameters.DeviceIoControl.OutputBufferLength < sizeof(CSQ_STARTIO_STATS)) {
        CompleteWith(Irp, STATUS_INVALID_DEVICE_REQUEST, 0);
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    PLONG out = (PLONG)Irp->AssociatedIrp.SystemBuffer;
    const LONG *in = (const LONG *)&ext->Stats;
    for (ULONG i = 0; i < sizeof(CSQ_STARTIO_STATS) / sizeof(LONG); i++)
        out[i] = InterlockedCompareExchange((LONG volatile *)&in[i], 0, 0);
    CompleteWith(Irp, STATUS_SUCCESS, sizeof(CSQ_STARTIO_STATS));
    return STATUS_SUCCESS;
}

static VOID CsqStartIoUnload(PDRIVER_OBJECT DriverObject)
{
    UNICODE_STRING link = RTL_CONSTANT_STRING(CSQ_STARTIO_LINK_NAME);
    IoDeleteSymbolicLink(&link);
    PDEVICE_OBJECT fdo = DriverObject->DeviceObject;
    if (!fdo) return;
    /* Every handle is closed, so every request has completed; the DPC that completed the last
     * one may still be returning. */
    KeCancelTimer(&((PDEVICE_EXTENSION)fdo->DeviceExtension)->PollTimer);
    KeFlushQueuedDpcs();
    IoDeleteDevice(fdo);
}

NTSTATUS CsqStartIoDriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(CSQ_STARTIO_DEVICE_NAME);
    UNICODE_STRING link = RTL_CONSTANT_STRING(CSQ_STARTIO_LINK_NAME);
    PDEVICE_OBJECT fdo;
    UNREFERENCED_PARAMETER(RegistryPath);
    NTSTATUS status = IoCreateDevice(DriverObject, sizeof(DEVICE_EXTENSION), &name, FILE_DEVICE_UNKNOWN,
                                     0, FALSE, &fdo);
    if (!NT_SUCCESS(status)) return status;
    status = IoCreateSymbolicLink(&link, &name);
    if (!NT_SUCCESS(status)) {
        IoDeleteDevice(fdo);
        return status;
    }
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)fdo->DeviceExtension;
    ext->Config = g_config;
    KeInitializeSpinLock(&ext->QueueLock);
    InitializeListHead(&ext->Pending);
    KeInitializeTimer(&ext->PollTimer);
    KeInitializeDpc(&ext->PollDpc, PollDpc, ext);
    IoCsqInitializeEx(&ext->Csq, CsqInsertEx, CsqRemove, CsqPeekNext, CsqAcquireLock, CsqReleaseLock,
                      CsqCompleteCanceled);
    fdo->Flags |= DO_BUFFERED_IO;
    fdo->Flags &= ~DO_DEVICE_INITIALIZING;
    DriverObject->DriverUnload = CsqStartIoUnload;
    DriverObject->MajorFunction[IRP_MJ_CREATE] = DispatchCreate;
    DriverObject->MajorFunction[IRP_MJ_CLEANUP] = DispatchCleanup;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = DispatchClose;
    DriverObject->MajorFunction[IRP_MJ_READ] = DispatchRead;
    DriverObject->MajorFunction[IRP_MJ_DEVICE_CONTROL] = DispatchDeviceControl;
    return STATUS_SUCCESS;
}
