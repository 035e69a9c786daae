/* The StartIo packet machinery (NT_SEMANTICS.md §5) and the DpcForIsr helpers. */
#include "io/io.h"
#include "irpkit/runtime.h"
#include "trace/trace.h"
#include "verify/hooks.h"

#define STARTIO_REQUEST_BITS (DOE_STARTIO_REQUESTED | DOE_STARTIO_REQUESTED_BYKEY)
#define STARTIO_RECORDED_BITS (STARTIO_REQUEST_BITS | DOE_STARTIO_CANCELABLE)

static void io_thread_exit(plat_thread *t)
{
    io_thread *io = t->ext[PLAT_EXT_IO];
    t->ext[PLAT_EXT_IO] = NULL;
    plat_free(io);
}

io_thread *io_self(void)
{
    plat_thread *t = plat_self();
    io_thread *io = t->ext[PLAT_EXT_IO];
    if (io) return io;
    io = plat_calloc(1, sizeof *io);
    if (!io) plat_panic("out of memory for per-thread io state");
    t->ext[PLAT_EXT_IO] = io;
    plat_on_thread_exit(io_thread_exit);
    return io;
}

int io_startio_depth(void)
{
    io_thread *io = plat_self()->ext[PLAT_EXT_IO];
    return io ? io->startio_depth : 0;
}

int io_startio_max_depth(PDEVICE_OBJECT dev) { return plat_bk_load32(&io_dev_priv(dev)->max_startio_depth); }

/* Statistics (max depth, call count) are bookkeeping atomics: no scheduling points. */
static void note_depth(io_device_priv *d, int32_t depth)
{
    for (int32_t m = plat_bk_load32(&d->max_startio_depth); depth > m; m = plat_bk_load32(&d->max_startio_depth))
        if (plat_bk_cas32(&d->max_startio_depth, m, depth) == m) break;
}

/* StartIo runs synchronously in the caller's thread at DISPATCH_LEVEL with no I/O-manager lock
 * held. The caller holds a reference on irp so the pointer stays valid even when a cancel
 * routine on another thread completes it before StartIo looks at it. */
void io_call_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    uint32_t id = io_irp_id(irp);
    io_irp_mark(irp, IO_STEP_STARTIO);
    plat_point("StartIo", irp);
    io_thread *t = io_self();
    int32_t depth = ++t->startio_depth;
    note_depth(io_dev_priv(dev), depth);
    plat_bk_fetch_add32(&io_dev_priv(dev)->startio_calls, 1);
    trace_emit(TRACE_BEGIN, "StartIo", id, (uint8_t)depth, "depth %d", depth);
    int vf = vrf_on() ? vrf_startio_enter(dev, irp) : -1; /* StartIoRecursion, queue-stall state */
    dev->DriverObject->DriverStartIo(dev, irp);
    if (vf != -1) vrf_startio_exit(vf, dev);
    trace_emit(TRACE_END, "StartIo", id, (uint8_t)depth, "returns");
    t->startio_depth--;
}

VOID IoSetStartIoAttributes(PDEVICE_OBJECT DeviceObject, BOOLEAN DeferredStartIo, BOOLEAN NonCancelable)
{
    if (DeferredStartIo) DeviceObject->DeviceObjectExtension->StartIoFlags |= DOE_STARTIO_DEFERRED;
    if (NonCancelable) DeviceObject->DeviceObjectExtension->StartIoFlags |= DOE_STARTIO_NO_CANCEL;
}

static bool no_cancel(PDEVICE_OBJECT dev)
{
    return (dev->DeviceObjectExtension->StartIoFlags & DOE_STARTIO_NO_CANCEL) != 0;
}

static void clear_cancel_routine(PIRP irp)
{
    if (plat_xchg_ptr((void *volatile *)&irp->CancelRoutine, NULL))
        io_irp_step(irp, IO_STEP_DISARM_CANCEL, " (NonCancelable StartIo)");
}

/* ---- deferred StartIo (§5.5) */

static void start_next_now(PDEVICE_OBJECT dev, BOOLEAN cancelable, bool bykey, ULONG key);

static void run_recorded(PDEVICE_OBJECT dev, ULONG request, ULONG key)
{
    PDEVOBJ_EXTENSION ext = dev->DeviceObjectExtension;
    ext->StartIoFlags &= ~(ULONG)STARTIO_RECORDED_BITS;
    ext->StartIoKey = 0;
    start_next_now(dev, (request & DOE_STARTIO_CANCELABLE) != 0,
                   (request & DOE_STARTIO_REQUESTED_BYKEY) != 0, key);
}

/* Called holding one StartIoCount: drop it; the caller that brings the count to zero runs
 * whatever nested calls recorded meanwhile, one start per iteration. StartIoFlags is a plain
 * field: callers for one device never overlap (NT_SEMANTICS.md §1.4). */
static void deferred_finish(PDEVICE_OBJECT dev)
{
    PDEVOBJ_EXTENSION ext = dev->DeviceObjectExtension;
    while (plat_fetch_add32(&ext->StartIoCount, -1) == 1) {
        ULONG request = ext->StartIoFlags & STARTIO_RECORDED_BITS;
        if (!(request & STARTIO_REQUEST_BITS)) return;
        plat_fetch_add32(&ext->StartIoCount, 1);
        run_recorded(dev, request, (ULONG)ext->StartIoKey);
    }
}

static void start_next_deferred(PDEVICE_OBJECT dev, ULONG request, ULONG key)
{
    PDEVOBJ_EXTENSION ext = dev->DeviceObjectExtension;
    if (plat_fetch_add32(&ext->StartIoCount, 1) > 0) {
        /* Inside the loop already (nested in StartIo): record; BYKEY wins, the key is
         * last-writer-wins, CANCELABLE accumulates. */
        ext->StartIoFlags |= request;
        ext->StartIoKey = (LONG)key;
        plat_fetch_add32(&ext->StartIoCount, -1);
        return;
    }
    run_recorded(dev, request, key);
    deferred_finish(dev);
}

/* ---- immediate forms (§5.3, §5.4) */

static void start_next_now(PDEVICE_OBJECT dev, BOOLEAN cancelable, bool bykey, ULONG key)
{
    KIRQL cancel_irql = PASSIVE_LEVEL;
    if (cancelable) IoAcquireCancelSpinLock(&cancel_irql);
    /* CurrentIrp changes under the cancel lock when Cancelable: a cancel routine compares its
     * IRP with CurrentIrp holding that lock (the classic StartIo cancel pattern). */
    dev->CurrentIrp = NULL;
    PKDEVICE_QUEUE_ENTRY e = bykey ? KeRemoveByKeyDeviceQueue(&dev->DeviceQueue, key)
                                   : KeRemoveDeviceQueue(&dev->DeviceQueue);
    if (!e) {
        if (cancelable) IoReleaseCancelSpinLock(cancel_irql);
        return;
    }
    PIRP irp = CONTAINING_RECORD(e, IRP, Tail.Overlay.DeviceQueueEntry);
    if (!io_irp_check_usable(irp, "IoStartNextPacket (a freed IRP was still in the device queue)")) {
        if (cancelable) IoReleaseCancelSpinLock(cancel_irql);
        return; /* never hand a dead IRP to StartIo */
    }
    /* Our reference, taken while nobody else can complete the IRP (it is neither queued nor
     * current yet), keeps it valid through StartIo. */
    io_irp_ref(irp);
    if (bykey) io_irp_step(irp, IO_STEP_DEQUEUED, " by key %u", (unsigned)key);
    else io_irp_step(irp, IO_STEP_DEQUEUED, " (head)");
    dev->CurrentIrp = irp;
    /* The verifier's current IRP changes with CurrentIrp, under the same cancel lock: a cancel
     * routine's IoStartNextPacket (which needs that lock) cannot come in between. */
    PIRP vrf_old = vrf_on() ? vrf_current_irp(dev, irp) : NULL;
    if (cancelable) {
        if (no_cancel(dev)) clear_cancel_routine(irp);
        IoReleaseCancelSpinLock(cancel_irql);
    }
    if (vrf_old) vrf_irp_drop(vrf_old); /* after the release: the last drop recycles the IRP */
    io_call_startio(dev, irp);
    io_irp_unref(irp);
}

VOID IoStartNextPacket(PDEVICE_OBJECT DeviceObject, BOOLEAN Cancelable)
{
    plat_point("IoStartNextPacket", DeviceObject);
    if (vrf_on()) vrf_start_next(DeviceObject); /* SpinLockSafe; the queue moves on */
    trace_emit(TRACE_INSTANT, "IoStartNextPacket", 0, (uint8_t)io_startio_depth(), "%s",
               Cancelable ? "cancelable" : "not cancelable");
    if (DeviceObject->DeviceObjectExtension->StartIoFlags & DOE_STARTIO_DEFERRED)
        start_next_deferred(DeviceObject,
                            DOE_STARTIO_REQUESTED | (Cancelable ? DOE_STARTIO_CANCELABLE : 0), 0);
    else
        start_next_now(DeviceObject, Cancelable, false, 0);
}

VOID IoStartNextPacketByKey(PDEVICE_OBJECT DeviceObject, BOOLEAN Cancelable, ULONG Key)
{
    plat_point("IoStartNextPacketByKey", DeviceObject);
    if (vrf_on()) vrf_start_next(DeviceObject);
    trace_emit(TRACE_INSTANT, "IoStartNextPacket", 0, (uint8_t)io_startio_depth(), "by key %u",
               (unsigned)Key);
    if (DeviceObject->DeviceObjectExtension->StartIoFlags & DOE_STARTIO_DEFERRED)
        start_next_deferred(DeviceObject,
                            DOE_STARTIO_REQUESTED_BYKEY | (Cancelable ? DOE_STARTIO_CANCELABLE : 0), Key);
    else
        start_next_now(DeviceObject, Cancelable, true, Key);
}

/* ---- IoStartPacket (§5.2) */

/* Switch 3 (deferred_covers_startpacket): the StartIo call of IoStartPacket counts as being
 * inside the deferred loop, so StartIo is never re-entered (the docs' reading). */
static void startio_from_startpacket(PDEVICE_OBJECT dev, PIRP irp)
{
    PDEVOBJ_EXTENSION ext = dev->DeviceObjectExtension;
    if (!(ext->StartIoFlags & DOE_STARTIO_DEFERRED) ||
        !irpk_compat_get(IRPK_COMPAT_DEFERRED_COVERS_STARTPACKET)) {
        io_call_startio(dev, irp);
        return;
    }
    plat_fetch_add32(&ext->StartIoCount, 1);
    io_call_startio(dev, irp);
    deferred_finish(dev);
}

static void start_idle(PDEVICE_OBJECT dev, PIRP irp, PDRIVER_CANCEL cancel, KIRQL cancel_irql)
{
    dev->CurrentIrp = irp;
    /* As in start_next_now: under the cancel lock (when there is a cancel routine), with
     * CurrentIrp. */
    PIRP vrf_old = vrf_on() ? vrf_current_irp(dev, irp) : NULL;
    if (cancel) {
        if (no_cancel(dev)) clear_cancel_routine(irp);
        IoReleaseCancelSpinLock(cancel_irql);
    }
    if (vrf_old) vrf_irp_drop(vrf_old); /* after the release: the last drop recycles the IRP */
    /* Irp->Cancel is deliberately not checked: StartIo must check it (T27). */
    startio_from_startpacket(dev, irp);
}

static void queued_busy(PDEVICE_OBJECT dev, PIRP irp, PDRIVER_CANCEL cancel, KIRQL cancel_irql)
{
    io_irp_mark(irp, IO_STEP_QUEUED);
    if (!cancel) return;
    /* Still under the cancel lock, so an IoCancelIrp that ran before we armed the routine is
     * seen here and one that comes later waits for the lock and finds the routine (T28/T29). */
    if (!irp->Cancel) {
        IoReleaseCancelSpinLock(cancel_irql);
        return;
    }
    irp->CancelIrql = cancel_irql;
    /* Cleared under the cancel lock before the call: a later IoCancelIrp finds no routine, so
     * the routine runs once. */
    plat_store_ptr((void *volatile *)&irp->CancelRoutine, NULL);
    io_call_cancel_routine(dev, irp, cancel, "IoStartPacket");
}

VOID IoStartPacket(PDEVICE_OBJECT DeviceObject, PIRP Irp, PULONG Key, PDRIVER_CANCEL CancelFunction)
{
    plat_point("IoStartPacket", Irp);
    if (vrf_on()) vrf_start_packet(DeviceObject, Irp); /* published: IoMarkIrpPending too late now */
    KIRQL old, cancel_irql = PASSIVE_LEVEL;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    /* Held until we return: the IRP may be dequeued and completed by another thread as soon as
     * it is in the queue, yet we still record its history. */
    io_irp_ref(Irp);
    if (CancelFunction) {
        IoAcquireCancelSpinLock(&cancel_irql);
        plat_store_ptr((void *volatile *)&Irp->CancelRoutine, (void *)CancelFunction);
        io_irp_step(Irp, IO_STEP_ARM_CANCEL, " (IoStartPacket)");
    }
    /* Lock order: the cancel lock, then the device queue's own (inside KeInsert*DeviceQueue and
     * KeRemove*DeviceQueue); nothing takes them the other way round. */
    BOOLEAN queued = Key ? KeInsertByKeyDeviceQueue(&DeviceObject->DeviceQueue,
                                                    &Irp->Tail.Overlay.DeviceQueueEntry, *Key)
                         : KeInsertDeviceQueue(&DeviceObject->DeviceQueue, &Irp->Tail.Overlay.DeviceQueueEntry);
    if (queued) queued_busy(DeviceObject, Irp, CancelFunction, cancel_irql);
    else start_idle(DeviceObject, Irp, CancelFunction, cancel_irql);
    io_irp_unref(Irp);
    KeLowerIrql(old);
}

/* ---- DpcForIsr */

static VOID dpc_for_isr_trampoline(PKDPC Dpc, PVOID Context, PVOID Arg1, PVOID Arg2)
{
    PDEVICE_OBJECT dev = Context;
    io_dev_priv(dev)->dpc_for_isr(Dpc, dev, (PIRP)Arg1, Arg2);
}

VOID IoInitializeDpcRequest(PDEVICE_OBJECT DeviceObject, PIO_DPC_ROUTINE DpcRoutine)
{
    io_dev_priv(DeviceObject)->dpc_for_isr = DpcRoutine;
    KeInitializeDpc(&DeviceObject->Dpc, dpc_for_isr_trampoline, DeviceObject);
}

VOID IoRequestDpc(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    KeInsertQueueDpc(&DeviceObject->Dpc, Irp, Context);
}
