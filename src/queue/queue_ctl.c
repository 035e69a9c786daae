/* Request queue control: stop / start / drain / purge (asynchronous and synchronous), and the
 * deadline timer thread. */
#include "queue/queue_internal.h"

/* Offer one running request to on_stop (queued for the dispatch loop). */
void stop_offer(irpk_queue *q, qreq *r)
{
    if (!q->cfg.on_stop || r->acked) return; /* no handler: stop waits for completion */
    r->pins++; /* the request stays valid until on_stop has returned */
    r->stop_next = NULL;
    if (q->stop_tail)
        q->stop_tail->stop_next = r;
    else
        q->stop_head = r;
    q->stop_tail = r;
}

static void offer_to_stop_handler(irpk_queue *q)
{
    for (qlink *p = q->running.next; p != &q->running; p = p->next) {
        qreq *r = QL_ENTRY(p, qreq, link);
        /* A request whose handler is still inside on_dispatch on a lease is offered when the
         * lease is settled (the stop pokes it), so on_stop never races its own on_dispatch. */
        if (!r->lease) stop_offer(q, r);
    }
}

static void purge_all(irpk_queue *q)
{
    for (qreq *r; (r = oldest_queued(q));) cancel_queued(q, r, IRPK_QS_CANCELLED);
    for (qlink *p = q->running.next; p != &q->running; p = p->next) {
        qreq *r = QL_ENTRY(p, qreq, link);
        if (!r->decided && lease_mark_cancel(q, r)) cancel_request(q, r, IRPK_NOTIFY_CANCEL);
    }
}

/* Start a stop/drain/purge. Only one is pending at a time; the dispatch loop reports its end
 * (deliver_op_done) once the condition holds and no callback of q is running. */
int begin_op(irpk_queue *q, enum queue_op op, irpk_done_fn fn, void *ctx)
{
    if (q->op != OP_NONE) return IRPK_QE_INPROGRESS;
    q->op = op;
    q->op_done = fn;
    q->op_ctx = ctx;
    if (op == OP_STOP) {
        q->dispatch_on = false;
        offer_to_stop_handler(q);
        return 0;
    }
    q->accepting = false;
    wake_word(&q->space_word, q->space_waiters); /* blocked submitters now fail with CLOSED */
    if (op == OP_DRAIN)
        q->dispatch_on = true; /* draining means dispatching what is queued */
    else
        purge_all(q);
    return 0;
}

static int run_async(irpk_queue *q, enum queue_op op, irpk_done_fn fn, void *ctx)
{
    int rc = q_enter(q);
    if (rc) return rc;
    rc = begin_op(q, op, fn, ctx);
    q_leave(q);
    return rc;
}

static int run_sync(irpk_queue *q, enum queue_op op)
{
    int rc = q_enter(q);
    if (rc) return rc;
    if (in_own_callback(q)) {
        /* Waiting here would wait for ourselves: fail at once instead of deadlocking. */
        q_release(q);
        return IRPK_QE_BUSY;
    }
    rc = begin_op(q, op, NULL, NULL);
    if (rc) {
        q_release(q);
        return rc;
    }
    /* Sampled before flush, which may end the op at once (deliver_op_done bumps it anyway). */
    uint32_t seen = q->op_word;
    flush(q);
    while (q->op_word == seen) wait_word(q, &q->op_word, &q->op_waiters);
    q_leave(q);
    return 0;
}

int irpk_queue_stop(irpk_queue *q, irpk_done_fn done, void *ctx) { return run_async(q, OP_STOP, done, ctx); }
int irpk_queue_drain(irpk_queue *q, irpk_done_fn done, void *ctx) { return run_async(q, OP_DRAIN, done, ctx); }
int irpk_queue_purge(irpk_queue *q, irpk_done_fn done, void *ctx) { return run_async(q, OP_PURGE, done, ctx); }
int irpk_queue_stop_sync(irpk_queue *q) { return run_sync(q, OP_STOP); }
int irpk_queue_drain_sync(irpk_queue *q) { return run_sync(q, OP_DRAIN); }
int irpk_queue_purge_sync(irpk_queue *q) { return run_sync(q, OP_PURGE); }

int irpk_queue_start(irpk_queue *q)
{
    int rc = q_enter(q);
    if (rc) return rc;
    if (q->op != OP_NONE) {
        q_release(q);
        return IRPK_QE_INPROGRESS;
    }
    q->accepting = q->dispatch_on = true;
    for (qlink *p = q->running.next; p != &q->running; p = p->next)
        QL_ENTRY(p, qreq, link)->acked = 0; /* a later stop asks about them again */
    q->acked_n = 0;
    if (q->cfg.mode == IRPK_QUEUE_MANUAL && q->queued && q->cfg.on_ready) q->ready_pending = true;
    q_leave(q);
    return 0;
}

/* ------------------------------------------------------------------ deadlines */

int irpk_queue_run_timers(irpk_queue *q, int64_t now_ns)
{
    int rc = q_enter(q);
    if (rc) return rc;
    rc = expire_due(q, now_ns);
    q_leave(q);
    return rc;
}

/* One timer thread per queue, started with the first deadline. It sleeps on timer_word until
 * the earliest deadline; heap_push bumps the word when a new earliest deadline arrives. */
static void timer_main(void *arg)
{
    irpk_queue *q = arg;
    q_lock(q);
    while (!q->timer_quit) {
        expire_due(q, plat_now_ns());
        flush(q); /* completions, notifications, and dispatches a callback made room for */
        if (q->timer_quit) break;
        int64_t next = q->heap_n ? q->heap[0]->deadline : PLAT_FOREVER;
        /* Sampled under the lock: heap_push and close bump timer_word under it, so a change
         * after the release makes plat_wait return at once. */
        uint32_t seen = q->timer_word;
        q_release(q);
        plat_wait(&q->timer_word, seen, next);
        q_lock(q);
    }
    q_release(q);
}

int timer_ensure(irpk_queue *q)
{
    if (q->timer || q->cfg.manual_timers) return 0;
    /* Started under the queue lock: the new thread's first act is to take that lock, so it
     * simply waits for us; nothing else is held. */
    q->timer = plat_thread_start(timer_main, q, "irpk-queue-timer", PLAT_THREAD_SYSTEM);
    return q->timer ? 0 : IRPK_QE_NOMEM;
}
