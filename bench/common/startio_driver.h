/* The StartIo round-trip driver the IRP benchmarks measure, shared so that bench_io,
 * bench_verify, bench_csq and bench_queue drive the same code:
 *   read dispatch: IoMarkIrpPending + IoStartPacket (with or without a cancel routine)
 *   StartIo:       [cancel-lock handling] -> IoCompleteRequest / IoStartNextPacket (either order)
 * and the sender's loop: IoAllocateIrp -> IoCallDriver -> [wait for the completion] -> IoFreeIrp.
 *
 * Parameters:
 *   cancel  BENCH_STARTIO_NOT_CANCELABLE  IoStartPacket without a cancel routine;
 *                                         IoStartNextPacket(FALSE)
 *           BENCH_STARTIO_DISARM          the seed's shape: IoStartPacket arms a routine that only
 *                                         releases the cancel lock; StartIo clears it under the
 *                                         cancel lock, unchecked; IoStartNextPacket(FALSE)
 *           BENCH_STARTIO_CLAIM           the corrected hello_startio: the classic cancel routine;
 *                                         StartIo claims its IRP under the cancel lock
 *                                         (CurrentIrp + IoSetCancelRoutine(NULL));
 *                                         IoStartNextPacket(TRUE)
 *   order   BENCH_STARTIO_COMPLETE_THEN_NEXT  IoCompleteRequest, then IoStartNextPacket
 *           BENCH_STARTIO_NEXT_THEN_COMPLETE  IoStartNextPacket, then IoCompleteRequest (the
 *                                             corrected sample's order)
 *   holdable  with it, setting hold_next = 1 makes StartIo keep the next IRP it would finish in
 *             `held` (the device stays busy, later IRPs queue) until bench_startio_release_held.
 * Each combination is its own StartIo / dispatch routine with the parameters compiled in, so the
 * driver runs no code that chooses between shapes; bench_startio_set_cancel switches routines
 * between runs (the device idle).
 *
 * Sender: bench_read_round_trips(dev, n, wait): wait = 1 has the completion routine raise a flag
 * the sender spins on (needed with two senders: the other one's StartIo chain may complete our
 * IRP); wait = 0 relies on the IRP completing inside IoCallDriver (one sender only).
 *
 * Header-only, like lock_list_baseline.h: each bench includes it as
 * "../common/startio_driver.h". The bench_startio state lives in the device's extension. */
#ifndef IRPK_BENCH_STARTIO_DRIVER_H
#define IRPK_BENCH_STARTIO_DRIVER_H

#include <ntddk.h>

#include "platform/platform.h"

#define BENCH_INLINE static inline __attribute__((always_inline))

typedef enum bench_startio_cancel {
    BENCH_STARTIO_NOT_CANCELABLE = 0,
    BENCH_STARTIO_DISARM = 1,
    BENCH_STARTIO_CLAIM = 2,
} bench_startio_cancel;

typedef enum bench_startio_order {
    BENCH_STARTIO_COMPLETE_THEN_NEXT = 0,
    BENCH_STARTIO_NEXT_THEN_COMPLETE = 1,
} bench_startio_order;

typedef struct bench_startio {
    PDEVICE_OBJECT dev;
    bench_startio_cancel cancel; /* read-only: bench_startio_load / bench_startio_set_cancel */
    bench_startio_order order;   /* read-only */
    BOOLEAN holdable;            /* read-only */
    int hold_next;               /* holdable: 1 keeps the next IRP StartIo would finish ... */
    PIRP held;                   /* ... here */
} bench_startio;

/* ---- the driver */

/* BENCH_STARTIO_DISARM's routine: never called (nothing is cancelled while armed). */
static inline VOID bench_startio_cancel_release_only(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    IoReleaseCancelSpinLock(irp->CancelIrql);
}

/* BENCH_STARTIO_CLAIM's routine: the classic contract (bench_queue's cancel row runs it on IRPs
 * queued behind a held one). */
static inline VOID bench_startio_cancel_classic(PDEVICE_OBJECT d, PIRP irp)
{
    if (irp == d->CurrentIrp) { /* StartIo has not claimed it: it sees the routine gone */
        IoReleaseCancelSpinLock(irp->CancelIrql);
        return;
    }
    KeRemoveEntryDeviceQueue(&d->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
    IoReleaseCancelSpinLock(irp->CancelIrql);
    irp->IoStatus.Status = STATUS_CANCELLED;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* Complete the current IRP (Status only: IoAllocateIrp zeroed Information) and start the next,
 * in order o. */
BENCH_INLINE void bench_startio_finish(PDEVICE_OBJECT d, PIRP irp, bench_startio_cancel c,
                                       bench_startio_order o)
{
    if (o == BENCH_STARTIO_NEXT_THEN_COMPLETE) IoStartNextPacket(d, c == BENCH_STARTIO_CLAIM);
    irp->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    if (o == BENCH_STARTIO_COMPLETE_THEN_NEXT) IoStartNextPacket(d, c == BENCH_STARTIO_CLAIM);
}

/* The StartIo routine, for constant c, o and holdable. */
BENCH_INLINE void bench_startio_body(PDEVICE_OBJECT d, PIRP irp, bench_startio_cancel c,
                                     bench_startio_order o, int holdable)
{
    if (c == BENCH_STARTIO_CLAIM) {
        KIRQL old;
        IoAcquireCancelSpinLock(&old);
        if (irp != d->CurrentIrp || IoSetCancelRoutine(irp, NULL) == NULL) {
            IoReleaseCancelSpinLock(old);
            return; /* the cancel routine completes it */
        }
        IoReleaseCancelSpinLock(old);
    } else if (c == BENCH_STARTIO_DISARM) {
        KIRQL old;
        IoAcquireCancelSpinLock(&old);
        IoSetCancelRoutine(irp, NULL);
        IoReleaseCancelSpinLock(old);
    }
    if (holdable) {
        bench_startio *s = d->DeviceExtension;
        if (s->hold_next) {
            s->hold_next = 0;
            s->held = irp;
            return;
        }
    }
    bench_startio_finish(d, irp, c, o);
}

/* bench_startio_<cancel>_<order> and its holdable twin, _h. */
#define BENCH_STARTIO_FNS(suffix, c, o)                                       \
    static inline VOID bench_startio_##suffix(PDEVICE_OBJECT d, PIRP irp)     \
    {                                                                         \
        bench_startio_body(d, irp, c, o, 0);                                  \
    }                                                                         \
    static inline VOID bench_startio_##suffix##_h(PDEVICE_OBJECT d, PIRP irp) \
    {                                                                         \
        bench_startio_body(d, irp, c, o, 1);                                  \
    }
BENCH_STARTIO_FNS(nc_cn, BENCH_STARTIO_NOT_CANCELABLE, BENCH_STARTIO_COMPLETE_THEN_NEXT)
BENCH_STARTIO_FNS(nc_nc, BENCH_STARTIO_NOT_CANCELABLE, BENCH_STARTIO_NEXT_THEN_COMPLETE)
BENCH_STARTIO_FNS(di_cn, BENCH_STARTIO_DISARM, BENCH_STARTIO_COMPLETE_THEN_NEXT)
BENCH_STARTIO_FNS(di_nc, BENCH_STARTIO_DISARM, BENCH_STARTIO_NEXT_THEN_COMPLETE)
BENCH_STARTIO_FNS(cl_cn, BENCH_STARTIO_CLAIM, BENCH_STARTIO_COMPLETE_THEN_NEXT)
BENCH_STARTIO_FNS(cl_nc, BENCH_STARTIO_CLAIM, BENCH_STARTIO_NEXT_THEN_COMPLETE)
#undef BENCH_STARTIO_FNS

/* [cancel][order][holdable] */
static PDRIVER_STARTIO const bench_startio_fns[3][2][2] = {
    {{bench_startio_nc_cn, bench_startio_nc_cn_h}, {bench_startio_nc_nc, bench_startio_nc_nc_h}},
    {{bench_startio_di_cn, bench_startio_di_cn_h}, {bench_startio_di_nc, bench_startio_di_nc_h}},
    {{bench_startio_cl_cn, bench_startio_cl_cn_h}, {bench_startio_cl_nc, bench_startio_cl_nc_h}},
};

/* The read dispatch: IoStartPacket with the shape's cancel routine. */
#define BENCH_STARTIO_READ(name, routine)                   \
    static inline NTSTATUS name(PDEVICE_OBJECT d, PIRP irp) \
    {                                                       \
        IoMarkIrpPending(irp);                              \
        IoStartPacket(d, irp, NULL, routine);               \
        return STATUS_PENDING;                              \
    }
BENCH_STARTIO_READ(bench_startio_read_nc, NULL)
BENCH_STARTIO_READ(bench_startio_read_di, bench_startio_cancel_release_only)
BENCH_STARTIO_READ(bench_startio_read_cl, bench_startio_cancel_classic)
#undef BENCH_STARTIO_READ

static PDRIVER_DISPATCH const bench_startio_reads[3] = {
    bench_startio_read_nc, bench_startio_read_di, bench_startio_read_cl};

/* Switch the driver to cancel shape c; only while the device is idle. */
static inline void bench_startio_set_cancel(bench_startio *s, bench_startio_cancel c)
{
    PDRIVER_OBJECT drv = s->dev->DriverObject;
    s->cancel = c;
    drv->DriverStartIo = bench_startio_fns[c][s->order][s->holdable ? 1 : 0];
    drv->MajorFunction[IRP_MJ_READ] = bench_startio_reads[c];
}

static bench_startio bench_startio_loading; /* the parameters, for bench_startio_entry */

static inline NTSTATUS bench_startio_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    PDEVICE_OBJECT dev;
    NTSTATUS st =
        IoCreateDevice(drv, sizeof(bench_startio), NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (!NT_SUCCESS(st)) return st;
    bench_startio *s = dev->DeviceExtension;
    *s = bench_startio_loading;
    s->dev = dev;
    bench_startio_set_cancel(s, s->cancel);
    dev->Flags &= ~DO_DEVICE_INITIALIZING;
    bench_startio_loading.dev = dev;
    return STATUS_SUCCESS;
}

/* Create the driver `driver_name` ("\\Driver\\...") with one device driven as the parameters
 * say. Returns the device's state (in its extension; ->dev is the device), NULL on failure. */
static inline bench_startio *bench_startio_load(const WCHAR *driver_name, bench_startio_cancel c,
                                                bench_startio_order o, BOOLEAN holdable)
{
    UNICODE_STRING name;
    RtlInitUnicodeString(&name, driver_name);
    bench_startio_loading = (bench_startio){.cancel = c, .order = o, .holdable = holdable};
    if (!NT_SUCCESS(IoCreateDriver(&name, bench_startio_entry)) || !bench_startio_loading.dev)
        return NULL;
    return bench_startio_loading.dev->DeviceExtension;
}

/* Finish the held IRP as StartIo would have (at DISPATCH_LEVEL, where StartIo runs), so the
 * device goes on to what queued behind it. */
static inline void bench_startio_release_held(bench_startio *s)
{
    PIRP irp = s->held;
    s->held = NULL;
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    if (s->order == BENCH_STARTIO_NEXT_THEN_COMPLETE)
        bench_startio_finish(s->dev, irp, s->cancel, BENCH_STARTIO_NEXT_THEN_COMPLETE);
    else
        bench_startio_finish(s->dev, irp, s->cancel, BENCH_STARTIO_COMPLETE_THEN_NEXT);
    KeLowerIrql(old);
}

/* ---- the sender */

/* Completion routines: keep the IRP (the sender frees it); _flag also sets *ctx to 1. */
static inline NTSTATUS bench_done_flag(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(irp);
    plat_store32(ctx, 1);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static inline NTSTATUS bench_done_keep(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(irp);
    UNREFERENCED_PARAMETER(ctx);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

/* A read IRP for d whose completion sets *done to 1 (cleared here). */
BENCH_INLINE PIRP bench_read_irp(PDEVICE_OBJECT d, volatile int32_t *done)
{
    PIRP irp = IoAllocateIrp(d->StackSize, FALSE);
    IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
    IoSetCompletionRoutine(irp, bench_done_flag, (PVOID)done, TRUE, TRUE, TRUE);
    plat_store32(done, 0);
    return irp;
}

/* n read round trips to d (any driver's device): allocate, send, [wait for the completion,]
 * free. wait (a constant): see the top of this file. */
BENCH_INLINE void bench_read_round_trips(PDEVICE_OBJECT d, long n, int wait)
{
    volatile int32_t done;
    for (long i = 0; i < n; i++) {
        PIRP irp;
        if (wait) {
            irp = bench_read_irp(d, &done);
        } else {
            irp = IoAllocateIrp(d->StackSize, FALSE);
            IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
            IoSetCompletionRoutine(irp, bench_done_keep, NULL, TRUE, TRUE, TRUE);
        }
        IoCallDriver(d, irp);
        if (wait)
            while (!plat_load32(&done)) plat_yield();
        IoFreeIrp(irp);
    }
}

#endif
