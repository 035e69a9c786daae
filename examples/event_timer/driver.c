/* event_timer — each IOCTL_EVENT_TIMER_WAIT request pends until its own KTIMER fires; the timer
 * DPC completes it (and sets the caller's event, when one was passed by handle).
 *
 * Three paths race to finish a request: the timer DPC, the cancel routine (IoCancelIrp) and
 * IRP_MJ_CLEANUP of its handle. Two return values settle every interleaving:
 *
 *  - Who completes the IRP: whoever takes the cancel routine back. The DPC and cleanup call
 *    IoSetCancelRoutine(Irp, NULL) under the device lock; non-NULL means they own the IRP, NULL
 *    means IoCancelIrp got there first and its cancel routine owns it. The owner unlinks the
 *    request (under the lock) and sets req->Irp = NULL, so the losers, which look at req->Irp
 *    under the same lock, never touch an IRP that may already be completed.
 *  - Who may free the request (its KTIMER and KDPC): a reference count of two — one for the
 *    IRP's owner, one for the timer's DPC. The owner drops its reference after completing. The
 *    timer's reference is dropped by the DPC at its end, or by whoever cancels the timer and
 *    gets TRUE from KeCancelTimer (the DPC will then never run for it). FALSE means the timer
 *    already expired: its DPC is queued or running and drops the reference itself.
 *
 * The timer is set under the device lock, after the cancel routine is armed, so any owner that
 * runs KeCancelTimer finds it set (or expired). Irp->Cancel is read at dispatch under the
 * cancel spin lock (the classic pattern: IoCancelIrp writes it there), so a request cancelled
 * before its routine was armed is completed right away (R3).
 *
 * Every live request holds the device's remove lock (tag = the request): unload's
 * IoReleaseRemoveLockAndWait returns once the last DPC of a cancelled request has freed it
 * (R12). Lock order: cancel spin lock -> device lock (dispatch only); the cancel routine
 * releases the cancel lock before taking the device lock.
 *
 * Only <ntddk.h> is used: this file builds unchanged against the WDK. */
#include "event_timer.h"

typedef struct _DEVICE_EXTENSION DEVICE_EXTENSION, *PDEVICE_EXTENSION;

typedef struct _TIMER_REQUEST {
    KTIMER Timer;
    KDPC Dpc;
    PDEVICE_EXTENSION Ext;
    PIRP Irp;             /* the pending IRP; NULL once an owner took it (under Lock) */
    PIRP Owned;           /* cleanup's claim, after it took the IRP */
    PFILE_OBJECT File;
    PKEVENT Event;        /* referenced user event, or NULL */
    LIST_ENTRY Link;      /* in Ext->Requests while Irp != NULL */
    volatile LONG Refs;   /* the IRP's owner + the timer's DPC */
} TIMER_REQUEST, *PTIMER_REQUEST;

struct _DEVICE_EXTENSION {
    KSPIN_LOCK Lock;       /* Requests, and every TIMER_REQUEST's Irp and Link */
    LIST_ENTRY Requests;
    IO_REMOVE_LOCK RemoveLock; /* one acquisition per live request */
    EVENT_TIMER_STATS Stats;
};

#define REQUEST_OF(irp) ((PTIMER_REQUEST)(irp)->Tail.Overlay.DriverContext[0])

static VOID CompleteWith(PIRP Irp, NTSTATUS Status)
{
    Irp->IoStatus.Status = Status;
    Irp->IoStatus.Information = 0;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

/* The last reference frees the request; the remove lock goes last (unload may be waiting). */
static VOID DereferenceRequest(PTIMER_REQUEST req)
{
    if (InterlockedDecrement(&req->Refs) != 0) return;
    PDEVICE_EXTENSION ext = req->Ext;
    if (req->Event) ObDereferenceObject(req->Event);
    ExFreePoolWithTag(req, EVENT_TIMER_TAG);
    InterlockedDecrement(&ext->Stats.Live);
    IoReleaseRemoveLock(&ext->RemoveLock, req);
}

/* The owner of the IRP stops the timer: TRUE means its DPC will never run, so the timer's
 * reference is ours to drop; FALSE means the DPC is queued or running and drops it. */
static VOID StopTimer(PTIMER_REQUEST req)
{
    if (!KeCancelTimer(&req->Timer)) return;
    InterlockedIncrement(&req->Ext->Stats.TimersCancelled);
    DereferenceRequest(req);
}

static VOID TimerDpc(PKDPC Dpc, PVOID DeferredContext, PVOID Arg1, PVOID Arg2)
{
    PTIMER_REQUEST req = (PTIMER_REQUEST)DeferredContext;
    PDEVICE_EXTENSION ext = req->Ext;
    UNREFERENCED_PARAMETER(Dpc);
    UNREFERENCED_PARAMETER(Arg1);
    UNREFERENCED_PARAMETER(Arg2);
    KeAcquireSpinLockAtDpcLevel(&ext->Lock);
    PIRP irp = req->Irp;
    /* NULL from the exchange: IoCancelIrp owns the IRP; its routine unlinks the request. */
    if (irp && IoSetCancelRoutine(irp, NULL) != NULL) {
        RemoveEntryList(&req->Link);
        req->Irp = NULL;
    } else {
        irp = NULL;
    }
    KeReleaseSpinLockFromDpcLevel(&ext->Lock);
    if (irp) {
        if (req->Event) {
            KeSetEvent(req->Event, IO_NO_INCREMENT, FALSE);
            InterlockedIncrement(&ext->Stats.EventsSignalled);
        }
        InterlockedIncrement(&ext->Stats.TimerCompleted);
        CompleteWith(irp, STATUS_SUCCESS);
        DereferenceRequest(req); /* the owner's */
    } else {
        InterlockedIncrement(&ext->Stats.DpcLost);
    }
    DereferenceRequest(req); /* the timer's: this was its only expiry */
}

static VOID CancelRoutine(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PTIMER_REQUEST req = REQUEST_OF(Irp);
    PDEVICE_EXTENSION ext = req->Ext;
    UNREFERENCED_PARAMETER(DeviceObject);
    IoReleaseCancelSpinLock(Irp->CancelIrql); /* never held with the device lock */
    KIRQL irql;
    KeAcquireSpinLock(&ext->Lock, &irql);
    /* We own the IRP (IoCancelIrp took the routine); only an owner unlinks. */
    RemoveEntryList(&req->Link);
    req->Irp = NULL;
    KeReleaseSpinLock(&ext->Lock, irql);
    StopTimer(req);
    InterlockedIncrement(&ext->Stats.CancelCompleted);
    CompleteWith(Irp, STATUS_CANCELLED);
    DereferenceRequest(req);
}

static NTSTATUS StartWait(PDEVICE_EXTENSION ext, PIRP Irp, const EVENT_TIMER_WAIT_INPUT *in)
{
    PKEVENT event = NULL;
    if (in->Event) {
        NTSTATUS status = ObReferenceObjectByHandle(in->Event, EVENT_MODIFY_STATE, *ExEventObjectType,
                                                    Irp->RequestorMode, (PVOID *)&event, NULL);
        if (!NT_SUCCESS(status)) return status;
    }
    PTIMER_REQUEST req = (PTIMER_REQUEST)ExAllocatePoolZero(NonPagedPoolNx, sizeof *req, EVENT_TIMER_TAG);
    if (!req) {
        if (event) ObDereferenceObject(event);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    NTSTATUS status = IoAcquireRemoveLock(&ext->RemoveLock, req);
    if (!NT_SUCCESS(status)) {
        if (event) ObDereferenceObject(event);
        ExFreePoolWithTag(req, EVENT_TIMER_TAG);
        return status;
    }
    InterlockedIncrement(&ext->Stats.Live);
    KeInitializeTimer(&req->Timer);
    KeInitializeDpc(&req->Dpc, TimerDpc, req);
    req->Ext = ext;
    req->Irp = Irp;
    req->File = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    req->Event = event;
    req->Refs = 2;
    Irp->Tail.Overlay.DriverContext[0] = req;
    IoMarkIrpPending(Irp);
    LARGE_INTEGER due;
    due.QuadPart = -(LONGLONG)in->DueMs * 10000;
    KIRQL cancel_irql;
    IoAcquireCancelSpinLock(&cancel_irql);
    if (Irp->Cancel) { /* cancelled before we could arm: nobody else will finish it */
        IoReleaseCancelSpinLock(cancel_irql);
        req->Irp = NULL;
        InterlockedIncrement(&ext->Stats.EarlyCancelled);
        CompleteWith(Irp, STATUS_CANCELLED);
        DereferenceRequest(req);
        DereferenceRequest(req); /* no timer was set */
        return STATUS_PENDING;
    }
    KeAcquireSpinLockAtDpcLevel(&ext->Lock);
    InsertTailList(&ext->Requests, &req->Link);
    IoSetCancelRoutine(Irp, CancelRoutine);
    KeSetTimer(&req->Timer, due, &req->Dpc);
    InterlockedIncrement(&ext->Stats.Armed);
    KeReleaseSpinLockFromDpcLevel(&ext->Lock);
    IoReleaseCancelSpinLock(cancel_irql);
    return STATUS_PENDING;
}

static NTSTATUS DispatchDeviceControl(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
    NTSTATUS status = STATUS_INVALID_DEVICE_REQUEST;
    ULONG_PTR info = 0;
    switch (sp->Parameters.DeviceIoControl.IoControlCode) {
    case IOCTL_EVENT_TIMER_WAIT:
        if (sp->Parameters.DeviceIoControl.InputBufferLength < sizeof(EVENT_TIMER_WAIT_INPUT)) {
            status = STATUS_INVALID_PARAMETER;
            break;
        }
        {
            EVENT_TIMER_WAIT_INPUT in = *(const EVENT_TIMER_WAIT_INPUT *)Irp->AssociatedIrp.SystemBuffer;
            status = StartWait(ext, Irp, &in);
        }
        if (status == STATUS_PENDING) return status;
        break;
    case IOCTL_EVENT_TIMER_STATS:
        if (sp->Parameters.DeviceIoControl.OutputBufferLength < sizeof(EVENT_TIMER_STATS)) {
            status = STATUS_BUFFER_TOO_SMALL;
            break;
        }
        {
            PLONG out = (PLONG)Irp->AssociatedIrp.SystemBuffer;
            LONG volatile *stats = (LONG volatile *)&ext->Stats;
            for (ULONG i = 0; i < sizeof(EVENT_TIMER_STATS) / sizeof(LONG); i++)
                out[i] = InterlockedCompareExchange(&stats[i], 0, 0);
        }
        status = STATUS_SUCCESS;
        info = sizeof(EVENT_TIMER_STATS);
        break;
    default:
        break;
    }
    Irp->IoStatus.Status = status;
    Irp->IoStatus.Information = info;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    return status;
}

/* Cleanup: take every request of this file object whose cancel routine we can take back. */
static NTSTATUS DispatchCleanup(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)DeviceObject->DeviceExtension;
    PFILE_OBJECT fo = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    LIST_ENTRY mine;
    InitializeListHead(&mine);
    KIRQL irql;
    KeAcquireSpinLock(&ext->Lock, &irql);
    for (PLIST_ENTRY e = ext->Requests.Flink, next; e != &ext->Requests; e = next) {
        next = e->Flink;
        PTIMER_REQUEST req = CONTAINING_RECORD(e, TIMER_REQUEST, Link);
        /* NULL from the exchange: IoCancelIrp owns it; its routine unlinks and completes it. */
        if (req->File != fo || IoSetCancelRoutine(req->Irp, NULL) == NULL) continue;
        RemoveEntryList(&req->Link);
        req->Owned = req->Irp;
        req->Irp = NULL;
        InsertTailList(&mine, &req->Link);
    }
    KeReleaseSpinLock(&ext->Lock, irql);
    while (!IsListEmpty(&mine)) {
        PTIMER_REQUEST req = CONTAINING_RECORD(RemoveHeadList(&mine), TIMER_REQUEST, Link);
        StopTimer(req);
        InterlockedIncrement(&ext->Stats.CleanupCompleted);
        CompleteWith(req->Owned, STATUS_CANCELLED);
        DereferenceRequest(req);
    }
    CompleteWith(Irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

static NTSTATUS DispatchCreateClose(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    CompleteWith(Irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

static VOID EventTimerUnload(PDRIVER_OBJECT DriverObject)
{
    UNICODE_STRING link = RTL_CONSTANT_STRING(EVENT_TIMER_LINK_NAME);
    IoDeleteSymbolicLink(&link);
    PDEVICE_OBJECT fdo = DriverObject->DeviceObject;
    if (!fdo) return;
    PDEVICE_EXTENSION ext = (PDEVICE_EXTENSION)fdo->DeviceExtension;
    /* Every request has completed (all handles are closed), but a cancelled request's timer
     * DPC may still be on its way to freeing it: wait for the last one. */
    if (NT_SUCCESS(IoAcquireRemoveLock(&ext->RemoveLock, DriverObject)))
        IoReleaseRemoveLockAndWait(&ext->RemoveLock, DriverObject);
    IoDeleteDevice(fdo);
}

NTSTATUS EventTimerDriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(EVENT_TIMER_DEVICE_NAME);
    UNICODE_STRING link = RTL_CONSTANT_STRING(EVENT_TIMER_LINK_NAME);
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
    KeInitializeSpinLock(&ext->Lock);
    InitializeListHead(&ext->Requests);
    IoInitializeRemoveLock(&ext->RemoveLock, EVENT_TIMER_TAG, 0, 0);
    fdo->Flags |= DO_BUFFERED_IO;
    fdo->Flags &= ~DO_DEVICE_INITIALIZING;
    DriverObject->DriverUnload = EventTimerUnload;
    DriverObject->MajorFunction[IRP_MJ_CREATE] = DispatchCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = DispatchCreateClose;
    DriverObject->MajorFunction[IRP_MJ_CLEANUP] = DispatchCleanup;
    DriverObject->MajorFunction[IRP_MJ_DEVICE_CONTROL] = DispatchDeviceControl;
    return STATUS_SUCCESS;
}
