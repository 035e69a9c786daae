/* Cancel-safe IRP queues: IoCsqInitialize(Ex), IoCsqInsertIrp(Ex), IoCsqRemoveNextIrp,
 * IoCsqRemoveIrp and the library's cancel routine (NT_SEMANTICS.md §8, cases 71–87).
 *
 * The driver owns the list and its lock (six callbacks); this file owns the cancel protocol.
 * Ownership of a queued IRP is decided by one atomic exchange of Irp->CancelRoutine with NULL:
 * the caller that gets the library's routine back owns the IRP (a dequeuer, the inserter of an
 * IRP cancelled before it was armed, or IoCancelIrp, which then calls csq_cancel_routine). An
 * IRP claimed by IoCancelIrp stays in the list until that routine removes it under the CSQ
 * lock, so dequeuers skip it instead of touching an IRP they do not own (R4).
 *
 * Locks: the CSQ lock is the driver's; the global cancel lock is never taken here, and the
 * cancel routine releases it before taking the CSQ lock, so the two are never held together
 * (no lock order between them exists or is needed). CompleteCanceledIrp is called with no
 * lock held (compat switch 4 off: the insert path calls it under the CSQ lock, as ReactOS). */
#include "io/io.h"
#include "irpkit/runtime.h"
#include "verify/hooks.h"

/* While queued, DriverContext[3] names the queue: the caller's IO_CSQ_IRP_CONTEXT or the IO_CSQ
 * itself; both start with their Type, which tells them apart. */
#define CSQ_OWNER(irp) ((irp)->Tail.Overlay.DriverContext[3])

/* irpkit identifiers (P1 of the 0xC4 report) for the CSQ checks of VERIFIER.md §1. */
#define CSQ_RULE_CONTEXT 0xA0201u     /* VERIFIER CsqContextOverwritten */
#define CSQ_RULE_NOT_COMPLETED 0xA0202u /* VERIFIER CsqCanceledIrpNotCompleted */
#define CSQ_RULE_LOCK_HELD 0xA0203u   /* VERIFIER CsqInsertWithLockHeld */

static DRIVER_CANCEL csq_cancel_routine;

/* Every CSQ routine clears ReservePointer. Many threads call them at once on one queue: an
 * atomic store, and only when it is not already NULL (no shared cache-line write per call). */
static void clear_reserve(PIO_CSQ csq)
{
    if (plat_load_ptr(&csq->ReservePointer)) plat_store_ptr(&csq->ReservePointer, NULL);
}

NTSTATUS IoCsqInitialize(PIO_CSQ Csq, PIO_CSQ_INSERT_IRP CsqInsertIrp, PIO_CSQ_REMOVE_IRP CsqRemoveIrp,
                         PIO_CSQ_PEEK_NEXT_IRP CsqPeekNextIrp, PIO_CSQ_ACQUIRE_LOCK CsqAcquireLock,
                         PIO_CSQ_RELEASE_LOCK CsqReleaseLock,
                         PIO_CSQ_COMPLETE_CANCELED_IRP CsqCompleteCanceledIrp)
{
    Csq->Type = IO_TYPE_CSQ;
    Csq->CsqInsertIrp = CsqInsertIrp;
    Csq->CsqRemoveIrp = CsqRemoveIrp;
    Csq->CsqPeekNextIrp = CsqPeekNextIrp;
    Csq->CsqAcquireLock = CsqAcquireLock;
    Csq->CsqReleaseLock = CsqReleaseLock;
    Csq->CsqCompleteCanceledIrp = CsqCompleteCanceledIrp;
    plat_store_ptr(&Csq->ReservePointer, NULL);
    return STATUS_SUCCESS;
}

NTSTATUS IoCsqInitializeEx(PIO_CSQ Csq, PIO_CSQ_INSERT_IRP_EX CsqInsertIrp,
                           PIO_CSQ_REMOVE_IRP CsqRemoveIrp, PIO_CSQ_PEEK_NEXT_IRP CsqPeekNextIrp,
                           PIO_CSQ_ACQUIRE_LOCK CsqAcquireLock, PIO_CSQ_RELEASE_LOCK CsqReleaseLock,
                           PIO_CSQ_COMPLETE_CANCELED_IRP CsqCompleteCanceledIrp)
{
    /* The WDK stores the Ex callback in the same field; Type says how to call it. */
    IoCsqInitialize(Csq, (PIO_CSQ_INSERT_IRP)(void (*)(void))CsqInsertIrp, CsqRemoveIrp,
                    CsqPeekNextIrp, CsqAcquireLock, CsqReleaseLock, CsqCompleteCanceledIrp);
    Csq->Type = IO_TYPE_CSQ_EX;
    return STATUS_SUCCESS;
}

/* ---- verifier checks (VERIFIER.md §1 "StartIo and queues") */

static void report_context(PIO_CSQ csq, PIRP irp, const void *found, const char *where)
{
    vrf_report(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, CSQ_RULE_CONTEXT, (uintptr_t)irp,
               (uintptr_t)found, (uintptr_t)csq, irp, NULL, "CsqContextOverwritten",
               "while an IRP is in a cancel-safe queue, Irp->Tail.Overlay.DriverContext[3] belongs "
               "to IoCsq*: use DriverContext[0..2] (and never put the IRP in a device queue at "
               "the same time, whose entry overlays them).",
               "%s found IRP#%u's DriverContext[3] = %p, which is %s: the driver overwrote it "
               "while the IRP was queued.",
               where, io_irp_id(irp), found,
               csq ? "neither the IO_CSQ_IRP_CONTEXT it was inserted with nor its queue"
                   : "no IO_CSQ_IRP_CONTEXT or IO_CSQ (the IRP is left alone, uncompleted)");
}

/* The context the IRP was inserted with (NULL: none), checked against the queue. `known` is
 * the caller's context when it has one (IoCsqRemoveIrp): then only pointers are compared. */
static PIO_CSQ_IRP_CONTEXT queued_context(PIO_CSQ csq, PIRP irp, PIO_CSQ_IRP_CONTEXT known,
                                          const char *where)
{
    PVOID owner = CSQ_OWNER(irp);
    if (known) {
        if (owner != known && vrf_on()) report_context(csq, irp, owner, where);
        return known;
    }
    if (owner == csq) return NULL;
    PIO_CSQ_IRP_CONTEXT ctx = owner;
    if (ctx && ctx->Type == IO_TYPE_CSQ_IRP_CONTEXT && ctx->Csq == csq && ctx->Irp == irp) return ctx;
    if (vrf_on()) report_context(csq, irp, owner, where);
    return NULL;
}

/* True when the IRP was completed (its history has a completion step) since step `since`.
 * More steps than the history keeps means it went on to be completed and freed.
 * Bookkeeping reads (plat_bk_*): the history is instrumentation, recorded with plat_bk_* too,
 * and only the verifier's report depends on the answer — plat_load* made each read a
 * scheduling point, so the verifier changed what the explorer explores. */
static bool completed_since(PIRP irp, int32_t since)
{
    io_irp_priv *p = io_priv(irp);
    int32_t total = plat_bk_load32(&p->hist_next);
    if (total - since > IO_HISTORY_LEN) return true;
    for (int32_t i = since; i < total; i++)
        if ((plat_bk_load64(&p->hist[i % IO_HISTORY_LEN]) & 0xFF) == IO_STEP_COMPLETE) return true;
    return false;
}

static void complete_canceled(PIO_CSQ csq, PIRP irp)
{
    if (!vrf_on()) {
        csq->CsqCompleteCanceledIrp(csq, irp);
        return;
    }
    /* A verifier reference (no scheduling point, unlike io_irp_ref): the callback normally
     * completes the IRP and its owner may free it before completed_since reads the history. */
    vrf_irp_hold(irp);
    int32_t before = plat_bk_load32(&io_priv(irp)->hist_next); /* bookkeeping, as above */
    csq->CsqCompleteCanceledIrp(csq, irp);
    if (!completed_since(irp, before))
        vrf_report(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, CSQ_RULE_NOT_COMPLETED,
                   (uintptr_t)irp, (uintptr_t)csq, 0, irp, NULL, "CsqCanceledIrpNotCompleted",
                   "CsqCompleteCanceledIrp must complete the IRP (usually STATUS_CANCELLED, "
                   "Information 0, IoCompleteRequest): nobody else will.",
                   "CsqCompleteCanceledIrp returned without completing IRP#%u, which was "
                   "cancelled and removed from its cancel-safe queue: the IRP is lost.",
                   io_irp_id(irp));
    vrf_irp_drop(irp);
}

static void check_insert_locks(PIRP irp)
{
    int32_t held = ke_self()->n_held;
    if (held <= 0) return;
    vrf_report(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, CSQ_RULE_LOCK_HELD, (uintptr_t)irp,
               (uintptr_t)held, 0, irp, NULL, "CsqInsertWithLockHeld",
               "call IoCsqInsertIrp(Ex) with no spin lock held: an IRP that is already cancelled "
               "is completed inside the call, and its completion routines would run under your "
               "lock (R10).",
               "IoCsqInsertIrp(Ex) called on IRP#%u while holding %d spin lock(s) (reported even "
               "though the IRP was not cancelled this time).",
               io_irp_id(irp), (int)held);
}

/* ---- queue operations */

/* Unlink a claimed IRP and drop the queue's claim on it (CSQ lock held). */
static void unlink_claimed(PIO_CSQ csq, PIRP irp, PIO_CSQ_IRP_CONTEXT known, const char *where)
{
    PIO_CSQ_IRP_CONTEXT ctx = queued_context(csq, irp, known, where);
    csq->CsqRemoveIrp(csq, irp);
    if (ctx) ctx->Irp = NULL;
    CSQ_OWNER(irp) = NULL;
    io_irp_mark(irp, IO_STEP_CSQ_REMOVE);
}

static bool insert_accepted(NTSTATUS status)
{
    return irpk_compat_get(IRPK_COMPAT_CSQ_EX_NT_SUCCESS) ? NT_SUCCESS(status) : status == STATUS_SUCCESS;
}

NTSTATUS IoCsqInsertIrpEx(PIO_CSQ Csq, PIRP Irp, PIO_CSQ_IRP_CONTEXT Context, PVOID InsertContext)
{
    plat_point("IoCsqInsertIrp", Irp);
    if (vrf_on()) check_insert_locks(Irp);
    clear_reserve(Csq);
    /* Claims written before the IRP is published: the arming exchange below orders them before
     * any cancel routine that reads them. */
    if (Context) {
        Context->Type = IO_TYPE_CSQ_IRP_CONTEXT;
        Context->Irp = Irp;
        Context->Csq = Csq;
        CSQ_OWNER(Irp) = Context;
    } else {
        CSQ_OWNER(Irp) = Csq;
    }
    KIRQL irql;
    NTSTATUS status = STATUS_SUCCESS;
    Csq->CsqAcquireLock(Csq, &irql);
    if (Csq->Type == IO_TYPE_CSQ_EX) {
        status = ((PIO_CSQ_INSERT_IRP_EX)(void (*)(void))Csq->CsqInsertIrp)(Csq, Irp, InsertContext);
        if (!insert_accepted(status)) {
            /* Not queued: the caller owns the IRP again, without our claims on it (irpkit clears
             * them; NT leaves them stale). */
            if (Context) Context->Irp = NULL;
            CSQ_OWNER(Irp) = NULL;
            Csq->CsqReleaseLock(Csq, irql);
            return status;
        }
    } else {
        Csq->CsqInsertIrp(Csq, Irp);
    }
    io_irp_mark(Irp, IO_STEP_CSQ_INSERT);
    IoMarkIrpPending(Irp);
    /* Armed before the CSQ lock is released: a dequeuer never sees the IRP unarmed, which it
     * would take for one IoCancelIrp owns and skip. */
    IoSetCancelRoutine(Irp, csq_cancel_routine);
    /* Dekker with IoCancelIrp (which publishes the cancel request, then exchanges the routine):
     * if we read "not cancelled" after arming, its exchange comes later and finds our routine;
     * if we read "cancelled", whichever exchange gets the routine back owns the IRP (R3). */
    bool cancelled_here = io_irp_cancel_requested(Irp) && IoSetCancelRoutine(Irp, NULL) != NULL;
    if (cancelled_here) unlink_claimed(Csq, Irp, Context, "IoCsqInsertIrp");
    if (cancelled_here && !irpk_compat_get(IRPK_COMPAT_CSQ_COMPLETE_OUTSIDE_LOCK)) {
        complete_canceled(Csq, Irp); /* switch 4 off: under the CSQ lock, as ReactOS */
        Csq->CsqReleaseLock(Csq, irql);
        return status;
    }
    Csq->CsqReleaseLock(Csq, irql);
    if (cancelled_here) complete_canceled(Csq, Irp);
    return status;
}

VOID IoCsqInsertIrp(PIO_CSQ Csq, PIRP Irp, PIO_CSQ_IRP_CONTEXT Context)
{
    (void)IoCsqInsertIrpEx(Csq, Irp, Context, NULL);
}

PIRP IoCsqRemoveNextIrp(PIO_CSQ Csq, PVOID PeekContext)
{
    plat_point("IoCsqRemoveNextIrp", Csq);
    clear_reserve(Csq);
    KIRQL irql;
    Csq->CsqAcquireLock(Csq, &irql);
    PIRP irp = Csq->CsqPeekNextIrp(Csq, NULL, PeekContext);
    /* A NULL exchange result means IoCancelIrp owns the candidate: it stays listed (its cancel
     * routine is waiting for this lock to remove it) and we look past it (R4). */
    while (irp && IoSetCancelRoutine(irp, NULL) == NULL) irp = Csq->CsqPeekNextIrp(Csq, irp, PeekContext);
    if (irp) unlink_claimed(Csq, irp, NULL, "IoCsqRemoveNextIrp");
    Csq->CsqReleaseLock(Csq, irql);
    return irp;
}

PIRP IoCsqRemoveIrp(PIO_CSQ Csq, PIO_CSQ_IRP_CONTEXT Context)
{
    plat_point("IoCsqRemoveIrp", Context);
    clear_reserve(Csq);
    KIRQL irql;
    Csq->CsqAcquireLock(Csq, &irql);
    /* Context->Irp is cleared under this lock by whoever removes the IRP, so a non-NULL value
     * here is still listed; the exchange decides against a concurrent IoCancelIrp. */
    PIRP irp = Context->Irp;
    if (irp && IoSetCancelRoutine(irp, NULL) != NULL) unlink_claimed(Csq, irp, Context, "IoCsqRemoveIrp");
    else irp = NULL;
    Csq->CsqReleaseLock(Csq, irql);
    return irp;
}

/* Called by IoCancelIrp with the cancel lock held, after it exchanged our routine out: the IRP
 * is ours to remove and complete. */
static VOID csq_cancel_routine(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    /* First thing: the cancel lock is never held together with a CSQ lock. */
    IoReleaseCancelSpinLock(Irp->CancelIrql);
    /* Read without the CSQ lock: IoCancelIrp won the exchange, so the IRP is ours, and only the
     * IRP's owner writes DriverContext[3] while it is queued. */
    PVOID owner = CSQ_OWNER(Irp);
    PIO_CSQ csq;
    switch (owner ? *(const ULONG *)owner : 0) {
    case IO_TYPE_CSQ_IRP_CONTEXT:
        csq = ((PIO_CSQ_IRP_CONTEXT)owner)->Csq;
        break;
    case IO_TYPE_CSQ:
    case IO_TYPE_CSQ_EX:
        csq = owner;
        break;
    default: /* not ours to interpret: leave the IRP alone (T86) */
        if (vrf_on()) report_context(NULL, Irp, owner, "the cancel-safe queue's cancel routine");
        return;
    }
    clear_reserve(csq);
    KIRQL irql;
    csq->CsqAcquireLock(csq, &irql);
    unlink_claimed(csq, Irp, csq == owner ? NULL : owner, "the cancel-safe queue's cancel routine");
    csq->CsqReleaseLock(csq, irql);
    complete_canceled(csq, Irp);
}
