/* The cancel spin lock, IoSetCancelRoutine and IoCancelIrp (NT_SEMANTICS.md §4). */
#include "io/io.h"
#include "trace/trace.h"
#include "verify/hooks.h"

/* One global lock, a KSPIN_LOCK so IRQL rules and held-lock tracking apply to it. */
KSPIN_LOCK io_cancel_lock;
/* Holder's thread record, for 0x11B and io_cancel_lock_held_by_me (written only by the holder,
 * read racily by others: atomic). Diagnostics only, so bookkeeping atomics (plat_bk_*): no
 * scheduling points next to the lock's own. */
static void *volatile cancel_owner;
/* IoAcquireCancelSpinLock calls (one atomic add next to taking the global lock anyway). */
static volatile int64_t cancel_acquisitions;

static void cancel_reset(void)
{
    io_cancel_lock = 0;
    cancel_owner = NULL;
    cancel_acquisitions = 0;
}

__attribute__((constructor)) static void cancel_register_reset(void) { plat_on_reset(cancel_reset); }

bool io_cancel_lock_held_by_me(void) { return plat_bk_load_ptr(&cancel_owner) == plat_self(); }
bool io_cancel_lock_held(void) { return plat_lock_is_held((volatile plat_lockword *)&io_cancel_lock); }
uint64_t io_cancel_lock_acquisitions(void) { return (uint64_t)plat_bk_load64(&cancel_acquisitions); }
uint64_t io_cancel_lock_acquisitions_by_me(void) { return io_self()->cancel_acquisitions; }

VOID IoAcquireCancelSpinLock(PKIRQL Irql)
{
    plat_bk_fetch_add64(&cancel_acquisitions, 1); /* a statistic: bookkeeping */
    io_self()->cancel_acquisitions++;             /* per thread: only its owner touches it */
    KeAcquireSpinLock(&io_cancel_lock, Irql);
    plat_bk_store_ptr(&cancel_owner, plat_self());
}

VOID IoReleaseCancelSpinLock(KIRQL Irql)
{
    /* Verifier: this thread's matching acquire was refused as a self-deadlock; the outer
     * acquisition still owns the lock, so only the IRQL is restored. */
    if (vrf_on() && vrf_spin_is_refused(&io_cancel_lock)) {
        KeReleaseSpinLock(&io_cancel_lock, Irql);
        return;
    }
    if (!io_cancel_lock_held_by_me()) {
        vrf_report(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x1002, (uintptr_t)&io_cancel_lock,
                   0, 0, NULL, NULL, "CancelSpinlockRelease",
                   "pair every IoReleaseCancelSpinLock with one IoAcquireCancelSpinLock on the "
                   "same thread (a cancel routine releases the lock it was called with exactly "
                   "once).",
                   "IoReleaseCancelSpinLock by a thread that does not hold the cancel spin lock "
                   "(released twice, or never acquired). The release is ignored.");
        return;
    }
    plat_bk_store_ptr(&cancel_owner, NULL);
    KeReleaseSpinLock(&io_cancel_lock, Irql);
}

PDRIVER_CANCEL IoSetCancelRoutine(PIRP Irp, PDRIVER_CANCEL CancelRoutine)
{
    plat_label("IoSetCancelRoutine", Irp); /* the exchange is the (one) scheduling point */
    PDRIVER_CANCEL old = (PDRIVER_CANCEL)plat_xchg_ptr((void *volatile *)&Irp->CancelRoutine,
                                                       (void *)CancelRoutine);
    if (CancelRoutine) io_irp_mark(Irp, IO_STEP_ARM_CANCEL);
    else if (old) io_irp_mark(Irp, IO_STEP_DISARM_CANCEL);
    return old;
}

/* Call a cancel routine with the cancel lock held (the caller stored CancelIrql). A routine that
 * returns still holding the lock is bug check 0x11B; the lock is then released for it. */
void io_call_cancel_routine(PDEVICE_OBJECT dev, PIRP irp, PDRIVER_CANCEL routine, const char *who)
{
    uint32_t id = io_irp_id(irp);
    KIRQL irql = irp->CancelIrql;
    io_irp_step(irp, IO_STEP_CANCEL_ROUTINE, " (from %s)", who);
    plat_point("CancelRoutine", irp);
    trace_emit(TRACE_BEGIN, "cancel routine", id, (uint8_t)io_startio_depth(), "called by %s", who);
    int vf = vrf_on() ? vrf_cancel_enter(dev, irp, (const void *)(uintptr_t)routine) : -1;
    routine(dev, irp);
    trace_emit(TRACE_END, "cancel routine", id, (uint8_t)io_startio_depth(), "returns");
    if (io_cancel_lock_held_by_me()) {
        vrf_report(IRPK_BUGCHECK_DRIVER_RETURNED_HOLDING_CANCEL_LOCK, (uintptr_t)routine, (uintptr_t)irp,
                   0, 0, irp, dev, NULL,
                   "every cancel routine must call IoReleaseCancelSpinLock(Irp->CancelIrql) on "
                   "every path before it returns (R9: otherwise every later cancel spins forever).",
                   "The cancel routine for IRP#%u returned holding the cancel spin lock. irpkit "
                   "released it so the process can go on.",
                   id);
        IoReleaseCancelSpinLock(irql);
    }
    /* Verifier: other spin locks left held, IRQL ≠ CancelIrql on return. */
    if (vf != -1) vrf_cancel_exit(vf, irp, irql);
}

/* A reference for the whole call, taken only while the IRP is still alive (refs > 0). */
static bool try_ref(PIRP irp)
{
    volatile int32_t *refs = &io_priv(irp)->refs;
    /* CAS, not fetch_add: never revive an IRP whose last reference is gone (being released). */
    for (int32_t n = plat_load32(refs); n > 0; n = plat_load32(refs))
        if (plat_cas32(refs, n, n + 1) == n) return true;
    return false;
}

static void report_cancel_of_completed(PIRP irp, PDRIVER_CANCEL routine)
{
    vrf_report(IRPK_BUGCHECK_CANCEL_STATE_IN_COMPLETED_IRP, (uintptr_t)irp, (uintptr_t)routine, 0, 0,
               irp, NULL, NULL,
               "clear the cancel routine with IoSetCancelRoutine(Irp, NULL) before completing the "
               "IRP, and complete it only when that returned non-NULL (R5).",
               "IoCancelIrp found a cancel routine on IRP#%u, which was already completed: the "
               "driver completed it without clearing its cancel routine. The routine is not "
               "called.",
               io_irp_id(irp));
}

BOOLEAN IoCancelIrp(PIRP Irp)
{
    plat_label("IoCancelIrp", Irp); /* try_ref's first load is the scheduling point */
    if (!try_ref(Irp)) { /* already released: a use after free */
        io_irp_check_usable(Irp, "IoCancelIrp");
        return FALSE;
    }
    /* Freed by its owner while our caller held a reference: nothing left to cancel. */
    if (plat_load32(&io_priv(Irp)->freed)) {
        io_irp_unref(Irp);
        return FALSE;
    }
    KIRQL irql;
    IoAcquireCancelSpinLock(&irql);
    /* The atomic mirror first: a reader that sees it FALSE after arming its cancel routine is
     * ordered before the exchange below, which then finds that routine. */
    plat_store32(&io_priv(Irp)->cancel_requested, 1);
    Irp->Cancel = TRUE;
    io_irp_mark(Irp, IO_STEP_CANCEL);
    if (vrf_on()) vrf_cancelled(Irp); /* watched until completed (0xC4/0x135) */
    PDRIVER_CANCEL routine = (PDRIVER_CANCEL)plat_xchg_ptr((void *volatile *)&Irp->CancelRoutine, NULL);
    BOOLEAN called = FALSE;
    /* Read only with the routine in hand: a correct completer must win that exchange first, so
     * CurrentLocation is stable here unless the driver skipped it (R5, reported below). */
    if (routine && Irp->CurrentLocation > Irp->StackCount + 1) {
        report_cancel_of_completed(Irp, routine);
    } else if (routine) {
        Irp->CancelIrql = irql;
        io_call_cancel_routine(IoGetCurrentIrpStackLocation(Irp)->DeviceObject, Irp, routine,
                               "IoCancelIrp");
        called = TRUE;
    }
    if (!called) IoReleaseCancelSpinLock(irql);
    io_irp_unref(Irp);
    return called;
}
