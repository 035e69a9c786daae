/* Request queue public API: lifecycle, submission, the executor's calls, manual retrieval and
 * cancellation. Each function takes the queue lock (q_enter), changes state, and leaves
 * through the dispatch loop (q_leave), which runs the callbacks the change made due. */
#include "queue/queue_internal.h"

#include <string.h>

void irpk_queue_config_init(irpk_queue_config *c)
{
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->mode = IRPK_QUEUE_SEQUENTIAL;
    c->order = IRPK_ORDER_FIFO;
    c->max_parallel = 1;
}

static int config_check(const irpk_queue_config *c)
{
    if ((unsigned)c->mode > IRPK_QUEUE_KEYED_SERIAL || (unsigned)c->order > IRPK_ORDER_ELEVATOR ||
        (unsigned)c->admit > IRPK_ADMIT_DROP_OLDEST)
        return IRPK_QE_INVAL;
    if (c->mode != IRPK_QUEUE_MANUAL && !c->on_dispatch) return IRPK_QE_INVAL;
    if ((c->mode == IRPK_QUEUE_PARALLEL || c->mode == IRPK_QUEUE_KEYED_SERIAL) && !c->max_parallel)
        return IRPK_QE_INVAL;
    if (c->high_watermark && c->low_watermark >= c->high_watermark) return IRPK_QE_INVAL;
    if (c->mode == IRPK_QUEUE_KEYED_SERIAL && c->order != IRPK_ORDER_FIFO) return IRPK_QE_MODE;
    return 0;
}

int irpk_queue_create(const irpk_queue_config *c, irpk_queue **out)
{
    if (!c || !out) return IRPK_QE_INVAL;
    int rc = config_check(c);
    if (rc) return rc;
    irpk_queue *q = plat_calloc(1, sizeof *q);
    if (!q) return IRPK_QE_NOMEM;
    q->cfg = *c;
    if (c->log_capacity && !(q->log = plat_calloc(c->log_capacity, sizeof *q->log))) {
        plat_free(q);
        return IRPK_QE_NOMEM;
    }
    if (c->name) strncpy(q->name, c->name, sizeof q->name - 1);
    q->cfg.name = q->name;
    plat_lock_init(&q->lock);
    q->lock_irql = PLAT_LOCK_NO_RAISE; /* plain threads: see q_acquire */
    q->limit = c->mode == IRPK_QUEUE_SEQUENTIAL ? 1 : c->max_parallel;
    q->free_head = NO_SLOT;
    ql_init(&q->fifo);
    ql_init(&q->ready_lanes);
    ql_init(&q->running);
    ql_init(&q->dispatch_order);
    ql_init(&q->age);
    q->rng = 0x9e3779b9u;
    q->timed = c->timed || c->aging_ns;
    q->t0 = q->timed ? plat_now_ns() : 0;
    /* The event log and in-order completion order every completion under the lock, so such
     * queues run every callback on the locked path (same semantics, no lease). */
    q->lease_ok = !c->log_capacity && !c->in_order_completion;
    q->age_is_fifo = c->order == IRPK_ORDER_FIFO && c->mode != IRPK_QUEUE_KEYED_SERIAL;
    q->plain = q->lease_ok && !c->high_watermark && c->mode != IRPK_QUEUE_KEYED_SERIAL &&
               !(c->order == IRPK_ORDER_PRIORITY && c->aging_ns);
    q->accepting = q->dispatch_on = true;
    *out = q;
    return 0;
}

int irpk_queue_close(irpk_queue *q)
{
    int rc = q_enter(q);
    if (rc) return rc;
    if (in_own_callback(q)) {
        q_release(q);
        return IRPK_QE_BUSY;
    }
    /* Purge until nothing is left: a concurrent irpk_queue_start could reopen the queue
     * between two rounds, so the condition is re-checked under the lock each time. */
    for (;;) {
        while (q->op != OP_NONE) wait_word(q, &q->op_word, &q->op_waiters);
        q->accepting = false;
        if (q->live == 0 && q->cb_active == 0) break;
        /* Sampled before begin_op: flush may end the purge at once, and deliver_op_done bumps
         * op_word even with no waiter registered. */
        uint32_t seen = q->op_word;
        begin_op(q, OP_PURGE, NULL, NULL);
        flush(q);
        while (q->op_word == seen) wait_word(q, &q->op_word, &q->op_waiters);
    }
    q->closed = true;
    q->timer_quit = true;
    /* 1 waiter: the timer thread waits on timer_word without registering as one. */
    wake_word(&q->timer_word, 1);
    wake_word(&q->space_word, q->space_waiters); /* blocked submitters return CLOSED */
    plat_thread *t = q->timer;
    q->timer = NULL;
    q_release(q);
    if (t) plat_thread_join(t); /* outside the lock: the timer thread takes it to see timer_quit */
    return 0;
}

int irpk_queue_free(irpk_queue *q)
{
    int rc = irpk_queue_close(q);
    if (rc && rc != IRPK_QE_CLOSED) return rc;
    for (uint32_t i = 0; i < q->nchunks; i++) plat_free(q->chunks[i]);
    plat_free(q->chunks);
    plat_free(q->heap);
    plat_free(q->log);
    plat_free(q);
    return 0;
}

/* ------------------------------------------------------------------ submitting */

static void drop_oldest(irpk_queue *q)
{
    qreq *r = oldest_queued(q); /* admit found the queue at max_depth: not empty */
    log_event(q, IRPK_EV_DROP, req_handle(r), 0);
    cancel_queued(q, r, IRPK_QS_DROPPED);
}

/* Admission control at max_depth. *drop: make room by dropping the oldest after reserving. */
static int admit(irpk_queue *q, bool may_block, bool *drop)
{
    for (;;) {
        if (!q->accepting) return IRPK_QE_CLOSED;
        if (!q->cfg.max_depth || q->queued < q->cfg.max_depth) return 0;
        if (q->cfg.admit == IRPK_ADMIT_DROP_OLDEST) {
            *drop = true;
            return 0;
        }
        if (q->cfg.admit == IRPK_ADMIT_REJECT || !may_block) {
            q->n_rejected++;
            log_event(q, IRPK_EV_REJECT, IRPK_REQ_NULL, 0);
            return IRPK_QE_FULL;
        }
        if (in_own_callback(q)) return IRPK_QE_BUSY; /* our own callbacks make the room */
        wait_word(q, &q->space_word, &q->space_waiters);
    }
}

int submit_reserve(irpk_queue *q, const irpk_req_opts *o, qreq **r, bool *drop)
{
    *drop = false;
    /* Unbounded and accepting: admit() would return 0 at once; skip the call (hot path). */
    int rc = q->accepting && !q->cfg.max_depth ? 0 : admit(q, true, drop);
    if (!rc && o->deadline_ns) rc = timer_ensure(q);
    if (!rc) rc = reserve(q, o, r);
    if (rc) q_release(q);
    return rc;
}

void submit_publish(irpk_queue *q, qreq *r, bool drop)
{
    if (drop) drop_oldest(q);
    publish(q, r);
}

/* ------------------------------------------------------------------ the executor's side */

/* The RUNNING request named by h, or the error saying why h cannot be acted on. */
int executor_lookup(irpk_queue *q, irpk_req_handle h, qreq **out)
{
    bool gone;
    qreq *r = req_lookup(q, h, &gone);
    if (!r) return IRPK_QE_STALE;
    if (r->state == RS_QUEUED) return IRPK_QE_NOTOWNER;
    if (r->state == RS_DONE) return IRPK_QE_ALREADY;
    int rc = lease_detach(q, r); /* ALREADY if its handler completed it in its frame */
    if (rc) return rc;
    *out = r;
    return 0;
}

int irpk_req_requeue(irpk_queue *q, irpk_req_handle h)
{
    int rc = q_enter(q);
    if (rc) return rc;
    qreq *r;
    rc = executor_lookup(q, h, &r);
    if (!rc) rc = executor_requeue(q, r);
    q_leave(q);
    return rc;
}

int irpk_req_is_cancelled(irpk_queue *q, irpk_req_handle h)
{
    int rc = q_enter(q);
    if (rc) return rc;
    bool gone;
    qreq *r = req_lookup(q, h, &gone);
    rc = r ? r->cancel_req : IRPK_QE_STALE;
    /* Plain release, no q_leave: settling leases in q_enter makes no loop work (a lease ends
     * lock-free only while nothing is due; anything due later pokes it back). */
    q_release(q);
    return rc;
}

int irpk_req_set_key(irpk_queue *q, irpk_req_handle h, uint64_t key)
{
    int rc = q_enter(q);
    if (rc) return rc;
    bool gone;
    qreq *r = req_lookup(q, h, &gone);
    if (!r)
        rc = IRPK_QE_STALE;
    else if (q->cfg.order == IRPK_ORDER_FIFO)
        rc = IRPK_QE_MODE;
    else if (r->state != RS_QUEUED)
        rc = IRPK_QE_NOTOWNER;
    else
        tree_rekey(q, r, key);
    q_release(q);
    return rc;
}

/* ------------------------------------------------------------------ forwarding */

/* Phase 2 of a forward: reserve room in dst so that publishing later cannot fail. */
static int forward_reserve(irpk_queue *dst, const irpk_req_opts *o, qreq **nr)
{
    int rc = q_enter(dst);
    if (rc) return rc;
    bool drop = false;
    rc = admit(dst, false, &drop); /* a forward never blocks: BLOCK behaves as REJECT */
    if (!rc && o->deadline_ns) rc = timer_ensure(dst);
    if (!rc) rc = reserve(dst, o, nr);
    if (!rc && drop) drop_oldest(dst);
    q_leave(dst);
    return rc;
}

static void forward_undo(irpk_queue *dst, qreq *nr)
{
    q_lock(dst);
    unreserve(dst, nr);
    q_leave(dst);
}

/* Phase 3: take r out of q. Fails if r changed hands while no lock was held. */
static int forward_detach(irpk_queue *q, irpk_req_handle h)
{
    q_lock(q); /* q cannot close meanwhile: close waits for running r */
    qreq *r;
    int rc = executor_lookup(q, h, &r);
    if (!rc && (r->decided || r->cancel_req)) {
        executor_release(q, r, IRPK_QS_CANCELLED);
        rc = IRPK_REQ_OVERRIDDEN;
    } else if (!rc) {
        order_leave(q, r);
        stop_running(q, r);
        r->forwarded = 1;
        q->n_fwd++;
        log_event(q, IRPK_EV_FORWARD, h, 0);
        release(q, r); /* frees the slot without a completion in q */
    }
    q_leave(q);
    return rc;
}

int irpk_req_forward(irpk_queue *q, irpk_req_handle h, irpk_queue *dst, irpk_req_handle *new_h)
{
    if (!dst || dst == q || !new_h) return IRPK_QE_INVAL;
    *new_h = IRPK_REQ_NULL;
    int rc = q_enter(q);
    if (rc) return rc;
    qreq *r;
    rc = executor_lookup(q, h, &r);
    if (!rc && (r->decided || r->cancel_req)) {
        executor_release(q, r, IRPK_QS_CANCELLED);
        rc = IRPK_REQ_OVERRIDDEN;
    }
    irpk_req_opts o = {0};
    if (!rc) o = (irpk_req_opts){r->ctx, r->key, r->owner, r->deadline};
    q_leave(q);
    if (rc) return rc;
    /* Never hold both queue locks, so there is no lock order between queues to get wrong. */
    qreq *nr;
    rc = forward_reserve(dst, &o, &nr);
    if (rc) return rc;
    rc = forward_detach(q, h);
    if (rc) {
        forward_undo(dst, nr);
        return rc;
    }
    q_lock(dst); /* dst cannot close meanwhile: close waits for reservations */
    publish(dst, nr);
    *new_h = req_handle(nr);
    q_leave(dst);
    return 0;
}

/* ------------------------------------------------------------------ manual retrieval */

/* ------------------------------------------------------------------ cancellation */

int irpk_req_cancel_wait(irpk_queue *q, irpk_req_handle h)
{
    int rc = q_enter(q);
    if (rc) return rc;
    if (in_own_callback(q)) {
        q_release(q);
        return IRPK_QE_BUSY;
    }
    rc = cancel_locked(q, h);
    flush(q);
    bool gone;
    while (req_lookup(q, h, &gone)) wait_word(q, &q->release_word, &q->release_waiters);
    q_release(q);
    return rc;
}

int irpk_queue_cancel_owner(irpk_queue *q, uint64_t owner, size_t *removed, size_t *requested)
{
    int rc = q_enter(q);
    if (rc) return rc;
    size_t nrem = 0, nreq = 0;
    tnode *n = owner ? tn_find(q->owners, owner) : NULL;
    if (n) {
        qowner *og = QL_ENTRY(n, qowner, tn);
        og->refs++; /* keep the group alive while its members leave it */
        for (qlink *p = og->reqs.next, *next; p != &og->reqs; p = next) {
            next = p->next; /* p may leave the list below */
            qreq *r = QL_ENTRY(p, qreq, olink);
            if (r->state == RS_QUEUED) {
                log_event(q, IRPK_EV_CANCEL_REQUEST, req_handle(r), 0);
                cancel_queued(q, r, IRPK_QS_CANCELLED);
                nrem++;
            } else if (r->state == RS_RUNNING && !r->decided && !r->cancel_req &&
                       lease_mark_cancel(q, r)) {
                cancel_request(q, r, IRPK_NOTIFY_CANCEL);
                nreq++;
            }
        }
        og->refs--;
        owner_put(q, og);
    }
    if (removed) *removed = nrem;
    if (requested) *requested = nreq;
    q_leave(q);
    return 0;
}
