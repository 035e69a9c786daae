/* The IRP adapter (include/irpkit/irpqueue.h): WDM IRPs on an irpkit request queue.
 *
 * Each IRP is one queue request (context = the IRP, owner = its file object). Who completes the
 * IRP is decided by the queue's single terminal transition; the adapter only has to make sure
 * IoCancelIrp can reach the request and that the IRP is completed exactly once afterwards:
 *
 *  - submit arms the adapter's cancel routine under the queue lock, then checks whether
 *    IoCancelIrp already ran (its atomic mirror of Irp->Cancel): an IRP cancelled before it was
 *    submitted is completed as cancelled at once, one cancelled later finds the routine armed
 *    (no lost cancel, R3). The global cancel spin lock is never acquired.
 *  - the cancel routine releases the cancel spin lock first thing and calls irpk_req_cancel:
 *    a queued request is removed (the queue completes it with IRPK_QS_CANCELLED), a running one
 *    is flagged for its handler, a finished one is too late.
 *  - the queue's completion callback disarms the routine (IoSetCancelRoutine(Irp, NULL)). If
 *    it got the routine back, no cancel routine can run any more: it completes the IRP. If it
 *    got NULL, IoCancelIrp took the routine: that routine is running or about to run, and the
 *    IRP is completed by whichever of the two finishes last (a two-bit handshake), so the
 *    routine never touches a completed IRP and nobody completes it twice (R4, R5).
 *
 * Per-IRP state lives in Irp->Tail.Overlay.DriverContext while the adapter owns the IRP. */
#include "io/io.h"
#include "irpkit/irpqueue.h"
#include "queue/queue_internal.h"

#include <string.h>

_Static_assert(sizeof(void *) >= sizeof(irpk_req_handle), "a request handle fits DriverContext[1]");

#define DC(irp) ((irp)->Tail.Overlay.DriverContext)
enum { DC_QUEUE = 0, DC_HANDLE = 1, DC_HANDSHAKE = 2, DC_NEXT = 3 };
enum { HS_COMPLETED = 1, HS_CANCEL_DONE = 2 };

struct irpk_irpq {
    irpk_queue *q;
    irpk_irpq_config cfg;
    /* cancel routines that may still use this adapter (close waits for 0) */
    volatile int32_t cancels_pending;
    /* IRQL_PASSIVE: handlers deferred from a raised IRQL, run by the worker thread. The lock is
     * taken at PASSIVE_LEVEL (the worker) and from DPCs (defer_to_worker): held at
     * DISPATCH_LEVEL under the explorer (plat_lock_acquire_cpu), as the queue's lock is. */
    volatile plat_lockword lock;
    uint8_t lock_irql;
    PIRP whead, wtail; /* linked through DriverContext[DC_NEXT] */
    volatile uint32_t wword;
    plat_thread *worker;
    bool wquit;
};

/* Atomic: irp_complete clears it while the cancel routine or a late irpk_irpq_complete reads it
 * (a stale or NULL handle is then refused by the queue's lookup). */
static irpk_req_handle irp_handle(PIRP irp)
{
    return (irpk_req_handle)(uintptr_t)plat_load_ptr(&DC(irp)[DC_HANDLE]);
}

/* Set a handshake bit; returns the bits set before. */
static uintptr_t handshake(PIRP irp, uintptr_t bit)
{
    void *volatile *w = &DC(irp)[DC_HANDSHAKE];
    void *old = plat_load_ptr(w);
    for (;;) {
        void *seen = plat_cas_ptr(w, old, (void *)((uintptr_t)old | bit));
        if (seen == old) return (uintptr_t)old;
        old = seen;
    }
}

/* The one IoCompleteRequest of an IRP the adapter took. */
static void irp_complete(PIRP irp)
{
    plat_store_ptr(&DC(irp)[DC_HANDLE], NULL); /* a late irpk_irpq_complete now reads STALE */
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* Complete an IRP that never became a request (refused, or cancelled before it was queued). */
static void irp_refuse(PIRP irp, NTSTATUS status)
{
    /* A handle may have been computed for it (the arm hook): it must never name a request. */
    plat_store_ptr(&DC(irp)[DC_HANDLE], NULL);
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* ------------------------------------------------------------------ cancellation */

/* The cancel routine this thread is running (a stack: a completion it causes may cancel another
 * adapter IRP): which IRP, and whether that IRP's completion ran nested in its irpk_req_cancel. */
typedef struct cancel_frame {
    PIRP irp;
    bool completed;
    struct cancel_frame *up;
} cancel_frame;

static cancel_frame **cancel_top(void) { return (cancel_frame **)&plat_self()->ext[PLAT_EXT_IRPQ]; }

static VOID irpq_cancel_routine(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    /* First thing: the global lock is IoCancelIrp's, not ours. Everything below is decided by
     * the queue's own lock and terminal transition. */
    IoReleaseCancelSpinLock(irp->CancelIrql);
    /* Still alive: the IRP is not completed before this routine says so (handshake, or the
     * nested completion below), and close waits for cancels_pending, raised before the request
     * could be released. */
    irpk_irpq *q = DC(irp)[DC_QUEUE];
    cancel_frame **top = cancel_top(), me = {irp, false, *top};
    *top = &me;
    irpk_req_cancel(q->q, irp_handle(irp)); /* queued: completed (below); running: flagged */
    *top = me.up;
    /* The common case, a queued request: the queue delivered its completion inside that call,
     * on this thread, and irpq_on_complete completed the IRP at once. It is gone: not touched
     * again, and q was not counted (the completion returned before irpk_req_cancel did, and
     * nothing of q is read after it). */
    if (me.completed) return;
    if (handshake(irp, HS_CANCEL_DONE) & HS_COMPLETED) {
        irp_complete(irp);
        plat_fetch_add32(&q->cancels_pending, -1); /* our last access to q */
    }
}

/* ------------------------------------------------------------------ queue callbacks */

static void irpq_on_complete(irpk_queue *qq, irpk_req_handle h, int32_t status, void *ctx,
                             void *qctx)
{
    (void)qq, (void)h;
    PIRP irp = ctx;
    irpk_irpq *q = qctx;
    if (status == IRPK_QS_CANCELLED) { /* the only status the queue itself decides here */
        irp->IoStatus.Status = STATUS_CANCELLED;
        irp->IoStatus.Information = 0; /* irpk_irpq_complete set it otherwise */
    } else {
        irp->IoStatus.Status = status;
    }
    /* Nested in this IRP's own cancel routine (its irpk_req_cancel delivered us): IoCancelIrp
     * took the routine, and that routine is our caller, which leaves the IRP alone once it
     * sees `completed`. No handshake and no count needed: complete now. */
    for (cancel_frame *c = *cancel_top(); c; c = c->up) {
        if (c->irp == irp) {
            c->completed = true;
            irp_complete(irp);
            return;
        }
    }
    /* Got the routine back: IoCancelIrp can no longer call it, the IRP is ours alone. */
    if (IoSetCancelRoutine(irp, NULL)) {
        irp_complete(irp);
        return;
    }
    /* NULL: IoCancelIrp took the routine; it runs now or soon, and the later of us completes
     * the IRP. Counted first, so close waits for the routine even after this request left. */
    plat_fetch_add32(&q->cancels_pending, 1);
    if (handshake(irp, HS_COMPLETED) & HS_CANCEL_DONE) {
        irp_complete(irp);
        plat_fetch_add32(&q->cancels_pending, -1);
    }
}

static void irpq_on_cancel(irpk_queue *qq, irpk_req_handle h, irpk_notify_reason why, void *ctx,
                           void *qctx)
{
    (void)qq, (void)h, (void)why;
    irpk_irpq *q = qctx;
    q->cfg.on_cancel(q, ctx, q->cfg.context); /* the queue pins the IRP until this returns */
}

static void worker_main(void *arg)
{
    irpk_irpq *q = arg;
    plat_lock_acquire_cpu(&q->lock, &q->lock_irql);
    while (!q->wquit) {
        PIRP irp = q->whead;
        if (!irp) {
            /* Sampled under q->lock; hand-offs and close bump wword under it: none is missed. */
            uint32_t seen = (uint32_t)plat_load32((volatile int32_t *)&q->wword);
            plat_lock_release_cpu(&q->lock, &q->lock_irql);
            plat_wait(&q->wword, seen, PLAT_FOREVER);
            plat_lock_acquire_cpu(&q->lock, &q->lock_irql);
            continue;
        }
        q->whead = DC(irp)[DC_NEXT];
        if (!q->whead) q->wtail = NULL;
        plat_lock_release_cpu(&q->lock, &q->lock_irql);
        q->cfg.handler(q, irp, q->cfg.context); /* this thread never raises: PASSIVE_LEVEL */
        plat_lock_acquire_cpu(&q->lock, &q->lock_irql);
    }
    plat_lock_release_cpu(&q->lock, &q->lock_irql);
}

/* Hand a PASSIVE_LEVEL handler call to the worker (started on first use). */
static void defer_to_worker(irpk_irpq *q, PIRP irp)
{
    DC(irp)[DC_NEXT] = NULL;
    /* From on_dispatch, which runs with the queue lock dropped: the adapter lock is never held
     * together with the queue's. */
    plat_lock_acquire_cpu(&q->lock, &q->lock_irql);
    if (q->wtail)
        DC(q->wtail)[DC_NEXT] = irp;
    else
        q->whead = irp;
    q->wtail = irp;
    /* Started under the adapter lock: its first act is to take that lock, so it waits. */
    if (!q->worker) q->worker = plat_thread_start(worker_main, q, "irpq-worker", PLAT_THREAD_SYSTEM);
    if (!q->worker) plat_panic("irpq: cannot start the PASSIVE_LEVEL worker thread");
    plat_fetch_add32((volatile int32_t *)&q->wword, 1);
    plat_wake(&q->wword, 1);
    plat_lock_release_cpu(&q->lock, &q->lock_irql);
}

static void irpq_dispatch(irpk_queue *qq, irpk_req_handle h, void *ctx, void *qctx)
{
    (void)qq, (void)h;
    irpk_irpq *q = qctx;
    PIRP irp = ctx;
    switch (q->cfg.handler_irql) {
    case IRPK_IRPQ_IRQL_CALLER:
        q->cfg.handler(q, irp, q->cfg.context);
        break;
    case IRPK_IRPQ_IRQL_DISPATCH: {
        KIRQL old;
        KeRaiseIrql(DISPATCH_LEVEL, &old);
        q->cfg.handler(q, irp, q->cfg.context);
        KeLowerIrql(old);
        break;
    }
    case IRPK_IRPQ_IRQL_PASSIVE:
        if (KeGetCurrentIrql() == PASSIVE_LEVEL)
            q->cfg.handler(q, irp, q->cfg.context);
        else
            defer_to_worker(q, irp);
        break;
    }
}

/* ------------------------------------------------------------------ the API */

void irpk_irpq_config_init(irpk_irpq_config *c)
{
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->mode = IRPK_QUEUE_SEQUENTIAL;
    c->order = IRPK_ORDER_FIFO;
    c->max_parallel = 1;
    c->handler_irql = IRPK_IRPQ_IRQL_CALLER;
}

int irpk_irpq_create(const irpk_irpq_config *c, irpk_irpq **out)
{
    if (!c || !out || !c->handler || c->mode == IRPK_QUEUE_MANUAL ||
        (unsigned)c->handler_irql > IRPK_IRPQ_IRQL_PASSIVE)
        return IRPK_QE_INVAL;
    irpk_irpq *q = plat_calloc(1, sizeof *q);
    if (!q) return IRPK_QE_NOMEM;
    q->cfg = *c;
    q->cfg.name = NULL; /* the queue keeps its own copy */
    plat_lock_init(&q->lock);
    irpk_queue_config qc;
    irpk_queue_config_init(&qc);
    qc.mode = c->mode;
    qc.max_parallel = c->max_parallel;
    qc.order = c->order;
    qc.on_dispatch = irpq_dispatch;
    qc.on_complete = irpq_on_complete;
    qc.on_cancel = c->on_cancel ? irpq_on_cancel : NULL;
    qc.ctx = q;
    qc.name = c->name;
    int rc = irpk_queue_create(&qc, &q->q);
    if (rc) {
        plat_free(q);
        return rc;
    }
    /* Taken by dispatch routines and by DPCs: held at DISPATCH_LEVEL under the explorer (see
     * q_acquire). Set before the queue is published to anyone. */
    q->q->lock_irql = 0;
    *out = q;
    return 0;
}

static NTSTATUS refusal_status(int rc)
{
    return rc == IRPK_QE_NOMEM ? STATUS_INSUFFICIENT_RESOURCES : STATUS_DEVICE_NOT_READY;
}

/* Under the queue lock, with the handle the IRP's request will get, before the request is
 * visible: arm the cancel routine. Returns false when the IRP was cancelled before it got here
 * and the cancellation is ours to finish (the request is then never queued). */
static bool arm_cancel(irpk_req_handle h, void *ctx)
{
    PIRP irp = ctx;
    plat_store_ptr(&DC(irp)[DC_HANDLE], (void *)(uintptr_t)h);
    IoSetCancelRoutine(irp, irpq_cancel_routine);
    /* Dekker with IoCancelIrp, which publishes the cancel request (an atomic mirror of
     * Irp->Cancel) before it exchanges the routine: reading "not cancelled" after arming means
     * its exchange comes later and finds our routine; reading "cancelled", whichever exchange
     * gets the routine back owns the cancellation (R3). */
    if (!io_irp_cancel_requested(irp)) return true;
    return IoSetCancelRoutine(irp, NULL) == NULL; /* NULL: its routine runs once we unlock */
}

NTSTATUS irpk_irpq_submit(irpk_irpq *q, PIRP Irp, const uint64_t *Key)
{
    /* First: once queued, the IRP may be completed by another thread at any moment (R6). */
    IoMarkIrpPending(Irp);
    if (!q) {
        irp_refuse(Irp, STATUS_INVALID_PARAMETER);
        return STATUS_PENDING;
    }
    PFILE_OBJECT fo = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    irpk_req_opts o = {Irp, Key ? *Key : 0, (uint64_t)(uintptr_t)fo, 0};
    /* Plain stores: nobody else can see the IRP yet; arming the routine (an atomic exchange)
     * and the queue lock publish them. */
    DC(Irp)[DC_QUEUE] = q;
    DC(Irp)[DC_HANDLE] = NULL;
    DC(Irp)[DC_HANDSHAKE] = NULL;
    irpk_queue *qq = q->q;
    /* The cancel routine's irpk_req_cancel takes the queue lock, so arming it under that lock
     * (the hook) means it can only find the request published. */
    int rc = fast_submit(qq, &o, NULL, arm_cancel, Irp); /* may run the handler here */
    if (rc == 1) return STATUS_PENDING;
    if (rc == 0) { /* not idle: the normal path (lock held) */
        qreq *r;
        bool drop;
        rc = submit_reserve(qq, &o, &r, &drop);
        if (!rc && !arm_cancel(req_handle(r), Irp)) {
            unreserve(qq, r);
            q_leave(qq);
            rc = FAST_REFUSED;
        } else if (!rc) {
            submit_publish(qq, r, drop);
            q_leave(qq); /* may run the handler on this thread */
            return STATUS_PENDING;
        }
    }
    irp_refuse(Irp, rc == FAST_REFUSED ? STATUS_CANCELLED : refusal_status(rc));
    return STATUS_PENDING;
}

int irpk_irpq_complete(irpk_irpq *q, PIRP Irp, NTSTATUS Status, ULONG_PTR Information)
{
    if (!q || !Irp) return IRPK_QE_INVAL;
    irpk_req_handle h = irp_handle(Irp);
    if (!h) return IRPK_QE_STALE;
    irpk_queue *qq = q->q;
    /* From inside the handler the queue dispatched on this thread: decide on the lease (no
     * lock); the IRP is completed after the handler returns, so Information can follow. */
    qframe *f = frame_of(qq);
    if (f && f->lease && f->h == h) {
        int rc = lease_complete(f, Status);
        if (rc == 0) Irp->IoStatus.Information = Information;
        if (rc != LEASE_FALLBACK) return rc;
    }
    int rc = q_enter(qq);
    if (rc) return rc;
    qreq *r;
    rc = executor_lookup(qq, h, &r);
    if (!rc && r->ctx != Irp) rc = IRPK_QE_STALE;
    if (!rc) {
        /* We hold the lock and the request is running: no other completer can get here
         * before executor_release decides it, so the IRP's status block is ours. */
        Irp->IoStatus.Information = Information;
        rc = executor_release(qq, r, Status);
    }
    q_leave(qq); /* delivers the completion (irpq_on_complete) unless inside its handler */
    return rc;
}

int irpk_irpq_is_cancelled(irpk_irpq *q, PIRP Irp)
{
    if (!q || !Irp) return IRPK_QE_INVAL;
    irpk_req_handle h = irp_handle(Irp);
    return h ? irpk_req_is_cancelled(q->q, h) : IRPK_QE_STALE;
}

int irpk_irpq_cancel_file(irpk_irpq *q, PFILE_OBJECT FileObject, size_t *removed,
                          size_t *requested)
{
    if (!q || !FileObject) return IRPK_QE_INVAL;
    return irpk_queue_cancel_owner(q->q, (uint64_t)(uintptr_t)FileObject, removed, requested);
}

irpk_queue *irpk_irpq_queue(irpk_irpq *q) { return q ? q->q : NULL; }

int irpk_irpq_close(irpk_irpq *q)
{
    if (!q) return IRPK_QE_INVAL;
    int rc = irpk_queue_close(q->q);
    if (rc) return rc;
    /* Every request has been released; a cancel routine that IoCancelIrp took before its
     * request's completion may still be finishing with q: wait for it (microseconds). */
    while (plat_load32(&q->cancels_pending)) plat_sleep_ns(20000);
    plat_lock_acquire_cpu(&q->lock, &q->lock_irql);
    q->wquit = true;
    plat_fetch_add32((volatile int32_t *)&q->wword, 1);
    plat_wake(&q->wword, 1);
    plat_thread *t = q->worker;
    q->worker = NULL;
    plat_lock_release_cpu(&q->lock, &q->lock_irql);
    if (t) plat_thread_join(t); /* outside the lock: the worker takes it to see wquit */
    return 0;
}

int irpk_irpq_free(irpk_irpq *q)
{
    if (!q) return IRPK_QE_INVAL;
    int rc = irpk_irpq_close(q);
    if (rc && rc != IRPK_QE_CLOSED) return rc;
    irpk_queue_free(q->q);
    plat_free(q);
    return 0;
}
