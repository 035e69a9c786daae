/* Checks on the IRP's way through the I/O manager: dispatch-routine return, IoMarkIrpPending,
 * completion, completion routines, cancel routines, IoStartPacket / StartIo /
 * IoStartNextPacket. Every hook is called only when vrf_on() (the exits whenever the matching
 * enter pushed a frame). The frames on the calling thread say which driver routine runs; a
 * dispatch frame also collects what the routine did with its IRP (marked pending, completed,
 * published, forwarded) so the return checks need not touch an IRP another thread may own. */
#include <stdio.h>

#include "irpkit/runtime.h"
#include "verify/verify.h"

#define VFN_STARTIO(dev) VRF_FN((dev)->DriverObject->DriverStartIo)

static void *volatile completion_seam; /* vrf_completion_seam_fn, tests only */

void vrf_set_completion_seam(vrf_completion_seam_fn fn)
{
    plat_bk_store_ptr(&completion_seam, (void *)(uintptr_t)fn);
}

static char *describe_routine(const void *routine, char *buf, size_t n)
{
    vrf_symbol(routine, buf, n);
    return buf;
}

/* The innermost dispatch frame of this thread for irp at its current location. */
static vrf_frame *dispatch_frame_at(PIRP irp, int8_t location)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    for (int i = v ? v->depth - 1 : -1; i >= 0; i--) {
        vrf_frame *f = &v->frames[i];
        if (f->kind == VRF_IN_DISPATCH && f->irp == irp && f->location == location) return f;
    }
    return NULL;
}

/* ---- spin locks left held when a routine returns (SDV SpinLock), and their release */

int vrf_release_leaked(int32_t keep, char *names, size_t n)
{
    ke_thread *k = ke_self();
    int count = 0;
    size_t len = 0;
    names[0] = 0;
    /* Only tracked entries can be released (more than 16 nested locks are counted, not kept). */
    while (k->n_held > keep && k->n_held <= 16) {
        PKSPIN_LOCK lock = (PKSPIN_LOCK)k->held[k->n_held - 1];
        char d[64];
        if (lock == &io_cancel_lock) snprintf(d, sizeof d, "the cancel spin lock");
        else snprintf(d, sizeof d, "spin lock %s", vrf_symbol(lock, d + 40, 24));
        if (len + 1 < n) len += (size_t)snprintf(names + len, n - len, "%s%s", count ? ", " : "", d);
        /* The cancel lock through io, so its owner record is cleared too; IRQL unchanged. */
        if (lock == &io_cancel_lock) IoReleaseCancelSpinLock(ke_irql());
        else ke_spin_force_release(lock);
        count++;
    }
    return count;
}

static void check_leaked_locks(const vrf_frame *f, int32_t keep, const char *what)
{
    if (ke_self()->n_held <= keep) return;
    char names[256], r[64];
    int n = vrf_release_leaked(keep, names, sizeof names);
    vrf_report(0xC4, IRPK_RULE_SPINLOCK, (uintptr_t)f->routine, (uintptr_t)n, 0, f->irp, f->dev,
               "SpinLock",
               "release every spin lock a routine acquires before it returns (KeReleaseSpinLock "
               "on each path, including early returns and error paths).",
               "%s %s returned holding %d spin lock(s): %s. irpkit released them.", what,
               describe_routine(f->routine, r, sizeof r), n, names);
}

/* ---- dispatch routines (IoCallDriver) */

int vrf_dispatch_enter(PDEVICE_OBJECT dev, PIRP irp, const void *routine)
{
    int8_t loc = irp->CurrentLocation;
    /* A driver passing its IRP down (its frame is on this thread, one location up, or the same
     * location after IoSkipCurrentIrpStackLocation). */
    vrf_frame *parent = vrf_find_frame(irp, VRF_IN_DISPATCH);
    bool forwarded = parent && (parent->location == loc + 1 || parent->location == loc);
    if (forwarded) parent->flags |= VRF_F_FORWARDED;
    if (forwarded || loc + 1 <= irp->StackCount) {
        PDRIVER_CANCEL cr = (PDRIVER_CANCEL)vrf_load_ptr((void *const volatile *)&irp->CancelRoutine);
        char r[64];
        if (cr)
            vrf_report(0xC9, 0x203, (uintptr_t)irp, (uintptr_t)cr, 0, irp, dev, NULL,
                       "clear the cancel routine (IoSetCancelRoutine(Irp, NULL), honouring a NULL "
                       "result) before passing the IRP to the next driver: the lower driver owns "
                       "it and its cancellation now.",
                       "IoCallDriver passes IRP#%u down with cancel routine %s still set.",
                       io_irp_id(irp), describe_routine(VRF_FN(cr), r, sizeof r));
    }
    int index = vrf_push(VRF_IN_DISPATCH, routine, dev, irp);
    vrf_frame *f = vrf_frame_at(index);
    if (f) {
        f->location = loc;
        /* Keeps the IRP's memory for the return checks (an IRP in driver memory is the
         * driver's to keep alive). */
        if (!(io_priv(irp)->pflags & IO_PF_DRIVER_MEMORY)) {
            vrf_irp_hold(irp);
            f->flags |= VRF_F_HELD;
        }
    }
    vrf_irp_set_state(irp, VRF_S_DISPATCHED);
    return index;
}

static void check_pending_status(const vrf_frame *f, NTSTATUS st)
{
    bool marked = f->flags & VRF_F_MARKED, done = f->flags & VRF_F_COMPLETED;
    bool fine = st == STATUS_PENDING ? marked : !marked && done && st == f->status;
    if (fine) return; /* the hot path: no formatting */
    char r[64];
    uint32_t id = io_irp_id(f->irp);
    describe_routine(f->routine, r, sizeof r);
    if (st == STATUS_PENDING && !marked && done) {
        vrf_report(0xC4, IRPK_RULE_PENDED_COMPLETED_REQUEST, (uintptr_t)f->irp, (uintptr_t)st, 0,
                   f->irp, f->dev, "PendedCompletedRequest",
                   "return the status the IRP was completed with (or call IoMarkIrpPending before "
                   "completing or publishing it, and then return STATUS_PENDING).",
                   "Dispatch routine %s completed IRP#%u and then returned STATUS_PENDING "
                   "without IoMarkIrpPending.",
                   r, id);
    } else if (st == STATUS_PENDING && !marked) {
        vrf_report(0xC9, 0x23D, (uintptr_t)f->dev, (uintptr_t)f->irp, (uintptr_t)st, f->irp, f->dev,
                   NULL,
                   "call IoMarkIrpPending(Irp) before queuing the IRP or handing it to another "
                   "thread, whenever the routine will return STATUS_PENDING (SDV MarkIrpPending2).",
                   "Dispatch routine %s returned STATUS_PENDING for IRP#%u without calling "
                   "IoMarkIrpPending.",
                   r, id);
    } else if (st != STATUS_PENDING && marked) {
        vrf_report(0xC9, 0x23E, (uintptr_t)f->dev, (uintptr_t)f->irp, (uintptr_t)st, f->irp, f->dev,
                   NULL,
                   "a routine that calls IoMarkIrpPending must return STATUS_PENDING, even if the "
                   "IRP was completed meanwhile (SDV MarkIrpPending).",
                   "Dispatch routine %s marked IRP#%u pending but returned 0x%08X.", r, id,
                   (unsigned)st);
    } else if (st != STATUS_PENDING && !done) {
        vrf_report(0xC9, 0x226, (uintptr_t)f->dev, (uintptr_t)f->irp, (uintptr_t)st, f->irp, f->dev,
                   NULL,
                   "a dispatch routine must complete the IRP, pass it down with IoCallDriver, or "
                   "mark it pending, queue it and return STATUS_PENDING; returning anything else "
                   "tells the caller it is finished.",
                   "Dispatch routine %s returned 0x%08X without completing IRP#%u, forwarding it "
                   "or marking it pending%s: the IRP is lost.",
                   r, (unsigned)st, id,
                   f->flags & VRF_F_PUBLISHED ? " (it was handed to IoStartPacket)" : "");
    } else if (st != STATUS_PENDING && st != f->status) {
        vrf_report(0xC9, 0x224, (uintptr_t)f->irp, (uint32_t)st, (uint32_t)f->status, f->irp, f->dev, NULL,
                   "return exactly the status stored in Irp->IoStatus.Status before "
                   "IoCompleteRequest (keep it in a local variable: the IRP may be freed once "
                   "completed).",
                   "Dispatch routine %s completed IRP#%u with status 0x%08X but returned 0x%08X.",
                   r, id, (unsigned)f->status, (unsigned)st);
    }
}

void vrf_dispatch_exit(int index, NTSTATUS returned)
{
    vrf_frame *f = vrf_frame_at(index);
    if (!f) {
        vrf_pop(index);
        return;
    }
    KIRQL now = ke_irql();
    if (ke_self()->n_held > f->n_held) {
        check_leaked_locks(f, f->n_held, "Dispatch routine");
        if (ke_irql() != f->irql) ke_set_irql(f->irql);
    } else if (now != f->irql) {
        char r[64];
        vrf_report(0xC9, 0x05, (uintptr_t)f->dev, f->irql, now, f->irp, f->dev, NULL,
                   "every KeRaiseIrql/KeAcquireSpinLock in a dispatch routine needs its matching "
                   "KeLowerIrql/KeReleaseSpinLock on every path (SDV IrqlReturn).",
                   "Dispatch routine %s was called at IRQL %u and returned at IRQL %u. irpkit "
                   "restored IRQL %u.",
                   describe_routine(f->routine, r, sizeof r), f->irql, now, f->irql);
        ke_set_irql(f->irql);
    }
    if (!(f->flags & VRF_F_FORWARDED)) check_pending_status(f, returned);
    PIRP irp = f->irp;
    bool held = f->flags & VRF_F_HELD;
    vrf_pop(index);
    if (held) vrf_irp_drop(irp);
}

/* ---- IoMarkIrpPending */

void vrf_mark_pending(PIRP irp)
{
    vrf_frame *f = dispatch_frame_at(irp, irp->CurrentLocation);
    if (!f) return; /* e.g. a completion routine propagating PendingReturned */
    f->flags |= VRF_F_MARKED;
    if (!(f->flags & VRF_F_PUBLISHED) || (f->flags & VRF_F_MQ_REPORTED)) return;
    f->flags |= VRF_F_MQ_REPORTED;
    char r[64];
    vrf_report(0xC4, IRPK_RULE_MARKING_QUEUED_IRPS, (uintptr_t)irp, 0, 0, irp, f->dev,
               "MarkingQueuedIrps",
               "call IoMarkIrpPending before IoStartPacket (or before inserting the IRP into any "
               "queue another thread can take it from); afterwards the IRP may already be "
               "completed and freed.",
               "Dispatch routine %s called IoMarkIrpPending on IRP#%u after handing it to "
               "IoStartPacket (reported even though no other thread touched it this time).",
               describe_routine(f->routine, r, sizeof r), io_irp_id(irp));
}

/* ---- IoCompleteRequest */

static void describe_held(char *buf, size_t n)
{
    ke_thread *k = ke_self();
    const void *lock = k->n_held > 0 && k->n_held <= 16 ? k->held[k->n_held - 1] : NULL;
    if (lock == &io_cancel_lock) snprintf(buf, n, "the cancel spin lock");
    else if (lock) snprintf(buf, n, "spin lock %p", lock);
    else snprintf(buf, n, "%d spin locks", (int)k->n_held);
}

static void report_spinlock_safe(PIRP irp)
{
    char held[64];
    describe_held(held, sizeof held);
    vrf_report(0xC4, IRPK_RULE_SPINLOCK_SAFE, (uintptr_t)irp, (uintptr_t)ke_self()->n_held, 0, irp, NULL,
               "SpinLockSafe",
               "release spin locks before IoCompleteRequest: completion routines run inside it and "
               "may take the same lock (self-deadlock) or call back into the driver (R10).",
               "IoCompleteRequest on IRP#%u while holding %s.", io_irp_id(irp), held);
}

/* The routine of frame f completed d's current IRP, writing `state` (done + finishing): keep d
 * until the frame is popped. One device per frame: a routine that finishes a second device's
 * current IRP gives up the first mark (its stall, if any, is then visible at once). */
static void finishing_begin(vrf_frame *f, vrf_device *d, int64_t state)
{
    if (f->finishing) vrf_finishing_end(f);
    /* d is alive here: its IRP is being completed, and the device is deleted only after. */
    vrf_add32(&d->refs, 1);
    f->finishing = d;
    f->finishing_state = state;
}

void vrf_finishing_end(vrf_frame *f)
{
    vrf_device *d = f->finishing;
    f->finishing = NULL;
    /* Compare-exchange against the exact word this routine wrote: if an IoStartNextPacket changed
     * the current IRP meanwhile (a new generation), that newer state is left alone; the
     * generation never repeats a word, so a stale mark cannot clear a newer one. */
    vrf_cas64(&d->cur_state, f->finishing_state, f->finishing_state & ~VRF_CUR_FINISHING);
    vrf_device_drop(d);
}

bool vrf_complete(PIRP irp)
{
    int8_t loc = irp->CurrentLocation;
    vrf_frame *f = vrf_find_frame(irp, VRF_IN_DISPATCH);
    if (f && f->location > loc) { /* its driver passed it down and still calls IoCompleteRequest */
        char r[64];
        vrf_report(0xC9, 0x209, (uintptr_t)irp, (uintptr_t)f->dev, 0, irp, f->dev, NULL,
                   "after IoCallDriver the IRP belongs to the lower driver; complete it only "
                   "after it comes back (completion routine returning "
                   "STATUS_MORE_PROCESSING_REQUIRED), never while it is pending below (SDV "
                   "PendedCompletedRequest3).",
                   "Dispatch routine %s completes IRP#%u, which is still owned by a lower driver "
                   "(stack location %d, its own is %d). The completion is ignored.",
                   describe_routine(f->routine, r, sizeof r), io_irp_id(irp), loc, f->location);
        return false;
    }
    vrf_irp_set_state(irp, VRF_S_COMPLETING);
    KIRQL irql = ke_irql();
    if (irql > DISPATCH_LEVEL)
        vrf_report(0xC9, 0x0E, (uintptr_t)irp, irql, 0, irp, NULL, NULL,
                   "complete IRPs at or below DISPATCH_LEVEL: queue a DPC from the "
                   "higher-IRQL code and complete from the DPC.",
                   "IoCompleteRequest on IRP#%u at IRQL %u (above DISPATCH_LEVEL).", io_irp_id(irp), irql);
    NTSTATUS st = irp->IoStatus.Status;
    if (st == STATUS_PENDING || st == (NTSTATUS)0xFFFFFFFF)
        vrf_report(0xC9, 0x06, (uintptr_t)st, (uintptr_t)irp, 0, irp, NULL, NULL,
                   "set Irp->IoStatus.Status to the final result before IoCompleteRequest; "
                   "STATUS_PENDING is what the dispatch routine returns, never a completion status.",
                   "IoCompleteRequest on IRP#%u with IoStatus.Status 0x%08X.", io_irp_id(irp),
                   (unsigned)st);
    if (ke_self()->n_held > 0) {
        /* A cancel routine completing its IRP under the cancel lock is reported when it
         * returns, after io's 0x11B if it also returns holding the lock (the root cause). */
        vrf_frame *c = vrf_find_frame(irp, VRF_IN_CANCEL);
        if (c && ke_self()->n_held == c->n_held && io_cancel_lock_held_by_me()) c->flags |= VRF_F_COMPLETED_LOCKED;
        else report_spinlock_safe(irp);
    }
    PDRIVER_CANCEL cr = (PDRIVER_CANCEL)vrf_load_ptr((void *const volatile *)&irp->CancelRoutine);
    /* Driver-owned IRPs only: an IRP completed by its originator was never cancelable by a
     * driver. The compat switch (NT_SEMANTICS.md §10, switch 6) is read only when it matters. */
    if (cr && vrf_driver_owned(irp) && irpk_compat_get(IRPK_COMPAT_VERIFY_COMPLETE_WITH_CANCEL_ROUTINE)) {
        char r[64];
        vrf_report(0xC9, 0x07, (uintptr_t)cr, (uintptr_t)irp, 0, irp, NULL, NULL,
                   "clear the cancel routine with IoSetCancelRoutine(Irp, NULL) before completing; "
                   "if that returns NULL the cancel routine is running and owns the IRP, so do not "
                   "complete it (R5).",
                   "IoCompleteRequest on IRP#%u while its cancel routine %s is still set: a later "
                   "IoCancelIrp would call it on a completed (maybe freed) IRP. irpkit cleared it.",
                   io_irp_id(irp), describe_routine(VRF_FN(cr), r, sizeof r));
        /* CAS, not a store: an IoCancelIrp that exchanged the routine out meanwhile owns it. */
        vrf_cas_ptr((void *volatile *)&irp->CancelRoutine, (void *)cr, NULL);
    }
    /* What the dispatch routines on this thread did with it (for their return checks). */
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    /* The driver routine this completion comes from (innermost frame), if any. */
    vrf_frame *routine = v && v->depth > 0 ? &v->frames[v->depth - 1] : NULL;
    for (int i = v ? v->depth - 1 : -1; i >= 0; i--)
        if (v->frames[i].kind == VRF_IN_DISPATCH && v->frames[i].irp == irp) {
            v->frames[i].flags |= VRF_F_COMPLETED;
            v->frames[i].status = st;
        }
    /* After state := COMPLETING above (Dekker with vrf_cancelled): a watch added after this
     * load sees COMPLETING and is taken off by vrf_cancelled itself. */
    if (vrf_load32(&io_priv(irp)->vrf) & VRF_WATCHED) vrf_watch_remove(irp);
    /* The device's current IRP is finished: until IoStartNextPacket, the queue waits. */
    vrf_device *d = vrf_dev_of((PDEVICE_OBJECT)vrf_load_ptr((void *const volatile *)&io_priv(irp)->vrf_dev));
    /* "Current IRP completed" is set only if the word still names this IRP in the same
     * generation: a load-then-store (as before) let an IoStartNextPacket + StartIo that ran in
     * between be overwritten by this stale completion — a false stall — and a StartIo's reset
     * overwrite a completion that followed its change of IRP — a lost one. */
    uint32_t id = io_irp_id(irp);
    for (int64_t st_now = d ? vrf_load64(&d->cur_state) : 0; d && id && vrf_cur_id(st_now) == id &&
                                                           !(st_now & VRF_CUR_DONE);) {
        vrf_completion_seam_fn seam = (vrf_completion_seam_fn)(uintptr_t)vrf_load_ptr(&completion_seam);
        if (seam) seam(irp);
        /* From inside a driver routine: "finishing" until it returns (it may start the next
         * packet after this completion, like a cancel routine or a DPC for the current IRP). */
        int64_t done = st_now | VRF_CUR_DONE | (routine ? VRF_CUR_FINISHING : 0);
        int64_t seen = vrf_cas64(&d->cur_state, st_now, done);
        if (seen == st_now) {
            if (routine) finishing_begin(routine, d, done);
            if (!vrf_load32(&vrf_watchdog_running)) vrf_watchdog_poke();
            break;
        }
        st_now = seen; /* changed meanwhile: re-check that it still names this IRP */
    }
    return true; /* (the shadow state stays "completing": IoCompleteRequest was called) */
}

/* ---- completion routines */

/* No reference is held: the exit check reads the IRP only when the routine did not return
 * STATUS_MORE_PROCESSING_REQUIRED (then it must not have freed it), and reports raised inside
 * the routine do not print the history of a completion frame's IRP (it may be gone). */
int vrf_completion_enter(PIRP irp, PDEVICE_OBJECT dev, const void *routine)
{
    return vrf_push(VRF_IN_COMPLETION, routine, dev, irp);
}

void vrf_completion_exit(int index, PIRP irp, NTSTATUS returned)
{
    vrf_frame *f = vrf_frame_at(index);
    if (f && returned != STATUS_MORE_PROCESSING_REQUIRED && irp->PendingReturned &&
        vrf_driver_owned(irp) && !(IoGetCurrentIrpStackLocation(irp)->Control & SL_PENDING_RETURNED)) {
        char r[64];
        vrf_report(0xC9, 0x228, (uintptr_t)f->routine, (uintptr_t)irp, 0, irp, NULL, NULL,
                   "a completion routine that does not return STATUS_MORE_PROCESSING_REQUIRED must "
                   "begin with `if (Irp->PendingReturned) IoMarkIrpPending(Irp);`.",
                   "Completion routine %s returned 0x%08X for IRP#%u without propagating "
                   "PendingReturned (IoMarkIrpPending). irpkit marked it pending.",
                   describe_routine(f->routine, r, sizeof r), (unsigned)returned, io_irp_id(irp));
        IoGetCurrentIrpStackLocation(irp)->Control |= SL_PENDING_RETURNED;
    }
    vrf_pop(index);
}

/* ---- cancellation */

void vrf_cancelled(PIRP irp)
{
    int32_t s = vrf_load32(&io_priv(irp)->vrf);
    int32_t state = s & VRF_STATE_MASK;
    /* Driver-owned by the shadow state: IoCancelIrp runs concurrently with the owner's
     * IoCallDriver/IoCompleteRequest, which write CurrentLocation without synchronisation. */
    if (state < VRF_S_DISPATCHED || state >= VRF_S_COMPLETING || (s & VRF_WATCHED)) return;
    vrf_watch_add(irp);
    /* Dekker with vrf_complete (state := COMPLETING, then it looks for VRF_WATCHED): a
     * completion that missed our flag is seen here, and we take the IRP off the watch. */
    if ((vrf_load32(&io_priv(irp)->vrf) & VRF_STATE_MASK) >= VRF_S_COMPLETING) vrf_watch_remove(irp);
}

int vrf_cancel_enter(PDEVICE_OBJECT dev, PIRP irp, const void *routine)
{
    return vrf_push(VRF_IN_CANCEL, routine, dev, irp);
}

void vrf_cancel_exit(int index, PIRP irp, KIRQL cancel_irql)
{
    vrf_frame *f = vrf_frame_at(index);
    if (f && (f->flags & VRF_F_COMPLETED_LOCKED))
        vrf_report(0xC4, IRPK_RULE_SPINLOCK_SAFE, (uintptr_t)irp, 1, 0, irp, f->dev, "SpinLockSafe",
                   "release the cancel lock (IoReleaseCancelSpinLock(Irp->CancelIrql)) before "
                   "completing the IRP in a cancel routine (R10).",
                   "Cancel routine completed IRP#%u while holding the cancel spin lock.", io_irp_id(irp));
    if (f) {
        /* The cancel lock, held on entry, must be gone (io reports and releases it: 0x11B). */
        check_leaked_locks(f, f->n_held - 1, "Cancel routine");
        KIRQL now = ke_irql();
        if (now != cancel_irql) {
            char r[64];
            vrf_report(0xC8, now, cancel_irql, (uintptr_t)irp, (uintptr_t)f->routine, irp, f->dev, NULL,
                       "a cancel routine must release the cancel lock with "
                       "IoReleaseCancelSpinLock(Irp->CancelIrql), or lower back to that IRQL "
                       "before it returns (C28144).",
                       "Cancel routine %s for IRP#%u returned at IRQL %u; it was called by code "
                       "running at IRQL %u (Irp->CancelIrql). irpkit restored IRQL %u.",
                       describe_routine(f->routine, r, sizeof r), io_irp_id(irp), now, cancel_irql,
                       cancel_irql);
            ke_set_irql(cancel_irql);
        }
    }
    vrf_pop(index);
}

/* ---- StartIo family */

void vrf_start_packet(PDEVICE_OBJECT dev, PIRP irp)
{
    (void)dev;
    vrf_frame *f = vrf_find_frame(irp, VRF_IN_DISPATCH);
    if (f) f->flags |= VRF_F_PUBLISHED;
    vrf_irp_set_state(irp, VRF_S_QUEUED);
}

/* The device's current IRP changes: the device state keeps a verifier reference on it so a
 * stall report can show its history after its owner freed it. Returns the previous current IRP,
 * whose verifier reference the caller drops (vrf_irp_drop) — outside the cancel lock when io
 * holds it here: the last drop recycles the IRP (lookaside lock, free). */
static PIRP swap_current(vrf_device *d, PIRP irp)
{
    PIRP old = (PIRP)vrf_load_ptr((void *const volatile *)&d->current);
    if (old != irp) { /* (the same IRP again — NULL → NULL, or a reused one — keeps its hold) */
        if (irp) vrf_irp_hold(irp);
        /* An exchange (StartIo on one thread and IoStartNextPacket from a cancel routine on
         * another may race for one device). */
        for (PIRP seen; (seen = (PIRP)vrf_cas_ptr((void *volatile *)&d->current, old, irp)) != old;) old = seen;
    }
    /* New IRP, not completed, next generation — in one compare-exchange, so a completion of the
     * old IRP either landed before (and is replaced) or fails its own compare-exchange. */
    int64_t next = (int64_t)io_irp_id(irp);
    for (int64_t cur = vrf_load64(&d->cur_state), seen;; cur = seen) {
        /* (Clears done and finishing. Unsigned: the generation wraps, which is fine.) */
        int64_t want = (int64_t)((uint64_t)(cur & ~(VRF_CUR_GEN - 1)) + (uint64_t)VRF_CUR_GEN) | next;
        if ((seen = vrf_cas64(&d->cur_state, cur, want)) == cur) break;
    }
    return old != irp ? old : NULL;
}

static void set_current(vrf_device *d, PIRP irp)
{
    PIRP old = swap_current(d, irp);
    if (old) vrf_irp_drop(old);
}

/* io made irp the device's CurrentIrp (IoStartNextPacket's dequeue, IoStartPacket on an idle
 * device) — under the cancel lock when the start is cancelable, where a cancel routine's own
 * IoStartNextPacket also changes it. Tracking it here, not when StartIo is entered, keeps the
 * order io gives these changes: an IRP cancelled in the window before its StartIo call, whose
 * cancel routine started the next IRP and completed it, is no longer made "current" again by its
 * late StartIo call (which hid a stall of the IRP the cancel routine started). */
PIRP vrf_current_irp(PDEVICE_OBJECT dev, PIRP irp)
{
    /* Before any completion can look for it: the cancel routine may complete it before StartIo. */
    vrf_store_ptr((void *volatile *)&io_priv(irp)->vrf_dev, dev);
    vrf_device *d = vrf_dev_of(dev);
    return d ? swap_current(d, irp) : NULL;
}

void vrf_start_next(PDEVICE_OBJECT dev)
{
    if (ke_self()->n_held > 0) {
        char held[64];
        describe_held(held, sizeof held);
        vrf_report(0xC4, IRPK_RULE_SPINLOCK_SAFE, (uintptr_t)dev, (uintptr_t)ke_self()->n_held, 0, NULL,
                   dev, "SpinLockSafe",
                   "release spin locks before IoStartNextPacket: it calls StartIo, which then "
                   "runs with the lock held (and may take it again).",
                   "IoStartNextPacket while holding %s.", held);
    }
    vrf_device *d = vrf_dev_of(dev);
    if (d) set_current(d, NULL);
}

/* StartIo may receive an IRP a cancel routine already completed (the window after
 * IoStartPacket/IoStartNextPacket dropped the cancel lock): its shadow state must not go back
 * from completing/completed, or a later IoCancelIrp would put it on the cancel watch. */
static void set_in_startio(PIRP irp)
{
    volatile int32_t *w = &io_priv(irp)->vrf;
    for (int32_t old = vrf_load32(w);;) {
        if ((old & VRF_STATE_MASK) >= VRF_S_COMPLETING) return;
        int32_t seen = vrf_cas32(w, old, (old & ~VRF_STATE_MASK) | VRF_S_IN_STARTIO);
        if (seen == old) return;
        old = seen;
    }
}

int vrf_startio_enter(PDEVICE_OBJECT dev, PIRP irp)
{
    set_in_startio(irp);
    vrf_device *d = vrf_dev_of(dev);
    /* Not the current IRP: io set it when it made irp CurrentIrp (vrf_current_irp), and irp
     * may have been completed and another IRP started since (a cancel in the window). */
    if (d) vrf_add32(&d->startio_active, 1);
    /* Nesting for this device on this thread. */
    vrf_thread *v = vrf_self();
    int depth = 1;
    for (int i = 0; i < v->depth && i < VRF_FRAMES; i++)
        depth += v->frames[i].kind == VRF_IN_STARTIO && v->frames[i].dev == dev;
    int index = vrf_push(VRF_IN_STARTIO, VFN_STARTIO(dev), dev, irp);
    bool deferred = dev->DeviceObjectExtension->StartIoFlags & DOE_STARTIO_DEFERRED;
    if (depth >= vrf_startio_depth_limit() && !deferred && d &&
        vrf_cas32(&d->recursion_reported, 0, 1) == 0) {
        char r[64];
        vrf_report(0xC4, IRPK_RULE_STARTIO_RECURSION, (uintptr_t)dev, (uintptr_t)depth, 0, irp, dev,
                   "StartIoRecursion",
                   "call IoSetStartIoAttributes(DeviceObject, TRUE, …) (DeferredStartIo) when "
                   "StartIo can complete synchronously and call IoStartNextPacket, or finish the "
                   "IRP from a DPC instead; without it the nesting grows with the queue length.",
                   "StartIo %s re-entered for IRP#%u at nesting depth %d on one thread (limit %d); "
                   "the device has no DeferredStartIo, so each IRP completed inside StartIo starts "
                   "the next one a level deeper.",
                   describe_routine(VFN_STARTIO(dev), r, sizeof r), io_irp_id(irp), depth,
                   vrf_startio_depth_limit());
    }
    return index;
}

void vrf_startio_exit(int index, PDEVICE_OBJECT dev)
{
    vrf_device *d = vrf_dev_of(dev);
    if (d) vrf_add32(&d->startio_active, -1);
    vrf_pop(index);
}

void vrf_irp_freed(PIRP irp)
{
    if (vrf_load32(&io_priv(irp)->vrf) & VRF_WATCHED) vrf_watch_remove(irp);
    vrf_irp_set_state(irp, VRF_S_FREED);
}

/* ---- DPC routines (ke): locks left held */

int vrf_dpc_enter(const void *routine) { return vrf_push(VRF_IN_DPC, routine, NULL, NULL); }

void vrf_dpc_exit(int index)
{
    vrf_frame *f = vrf_frame_at(index);
    if (f) check_leaked_locks(f, f->n_held, "DPC routine");
    vrf_pop(index);
}
