/* Request queue core: slot table and handles, pending structures, the terminal transition,
 * and the dispatch/callback loop. Every function here runs with the queue lock held. */
#include "queue/queue_internal.h"

/* Per-request helpers: inlined into the API calls of this file (each keeps an out-of-line copy
 * for the other files), which is most of what a request costs. */
#define HOT __attribute__((always_inline)) inline

/* ------------------------------------------------------------------ slot table and handles */

/* A free slot is kept "clean", in the state a new occupant starts from: on no list, no lane,
 * owner group, lease or deadline-heap position, no pins, no flags. Each of these is undone
 * where the request leaves it (ql_remove self-links, og_leave, heap_remove, lease_settle,
 * unpin, order_advance, stop_running) and slot_free clears the rest, so taking a slot writes
 * only its state: resetting ~20 fields per request was a fifth of a cancel's stores. Debug
 * builds (the sanitizer runs) check the invariant at every allocation. */
static void slot_clean(qreq *r)
{
    r->cancel_req = r->acked = r->release_deferred = r->forwarded = 0;
    r->pins = 0;
    r->decided = 0;
    r->lane = NULL;
    r->og = NULL;
    r->lease = NULL;
    r->heap_pos = NO_HEAP;
    ql_init(&r->link);
    ql_init(&r->age);
    ql_init(&r->olink);
    ql_init(&r->order);
    r->held = 0;
}

#ifndef NDEBUG
static void slot_check_clean(const qreq *r)
{
    if (r->cancel_req || r->acked || r->release_deferred || r->forwarded || r->pins ||
        r->decided || r->lane || r->og || r->lease || r->heap_pos != NO_HEAP ||
        ql_linked(&r->link) || ql_linked(&r->age) || ql_linked(&r->olink) ||
        ql_linked(&r->order) || r->held)
        plat_panic("queue: a slot was reused with state left by its previous occupant");
}
#else
static inline void slot_check_clean(const qreq *r) { (void)r; }
#endif

static int grow_slots(irpk_queue *q)
{
    if ((uint64_t)(q->nchunks + 1) * SLOT_CHUNK > SLOT_MAX) return IRPK_QE_NOMEM;
    if (q->nchunks == q->dir_cap) {
        uint32_t cap = q->dir_cap ? q->dir_cap * 2 : 8;
        qreq **dir = plat_alloc(cap * sizeof *dir);
        if (!dir) return IRPK_QE_NOMEM;
        for (uint32_t i = 0; i < q->nchunks; i++) dir[i] = q->chunks[i];
        plat_free(q->chunks);
        q->chunks = dir;
        q->dir_cap = cap;
    }
    qreq *c = plat_calloc(SLOT_CHUNK, sizeof *c);
    if (!c) return IRPK_QE_NOMEM;
    uint32_t base = q->nchunks * SLOT_CHUNK;
    for (uint32_t i = SLOT_CHUNK; i-- > 0;) {
        slot_clean(&c[i]);
        c[i].gen = 1;
        c[i].idx = base + i;
        c[i].next_free = q->free_head;
        q->free_head = base + i;
    }
    q->chunks[q->nchunks++] = c;
    return 0;
}

static qreq *slot_at(irpk_queue *q, uint32_t idx)
{
    return &q->chunks[idx / SLOT_CHUNK][idx % SLOT_CHUNK];
}

HOT qreq *slot_alloc(irpk_queue *q)
{
    if (q->free_head == NO_SLOT && grow_slots(q) != 0) return NULL;
    qreq *r = slot_at(q, q->free_head);
    q->free_head = r->next_free;
    slot_check_clean(r);
    r->state = RS_RESERVED;
    q->live++;
    return r;
}

/* 40 bits of generation wrap only after 10^12 reuses of one slot; 0 is never used. */
HOT static uint64_t next_gen(uint64_t gen)
{
    gen = (gen + 1) & ((1ull << 40) - 1);
    return gen ? gen : 1;
}

HOT void slot_free(irpk_queue *q, qreq *r)
{
    /* Bumping the generation is what makes every handle of this occupant stale. */
    r->gen = next_gen(r->gen);
    r->state = RS_FREE;
    /* Clean for the next occupant (see slot_clean): what no exit path undoes. */
    r->cancel_req = r->forwarded = 0;
    r->decided = 0;
    r->lane = NULL;
    r->next_free = q->free_head;
    q->free_head = r->idx;
    q->live--;
    wake_word(&q->release_word, q->release_waiters);
}

HOT qreq *req_lookup(irpk_queue *q, irpk_req_handle h, bool *gone)
{
    uint32_t idx = (uint32_t)(h & (SLOT_MAX - 1));
    uint64_t gen = h >> 24;
    *gone = false;
    if (gen == 0 || idx >= q->nchunks * SLOT_CHUNK) return NULL;
    qreq *r = slot_at(q, idx);
    if (r->gen == gen && r->state != RS_FREE && r->state != RS_RESERVED) return r;
    /* Generations only grow, so an older one names a request that has left the queue. */
    *gone = gen < r->gen;
    return NULL;
}

/* ------------------------------------------------------------------ lanes and owner groups */

/* Treap priorities: xorshift32, seeded per queue, so runs are reproducible (explorer replay). */
static uint32_t next_prio(irpk_queue *q)
{
    uint32_t x = q->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return q->rng = x;
}

qlane *lane_get(irpk_queue *q, uint64_t key)
{
    tnode *n = tn_find(q->lanes, key);
    if (n) return QL_ENTRY(n, qlane, tn);
    qlane *l = plat_calloc(1, sizeof *l);
    if (!l) return NULL;
    l->tn.key = key;
    l->tn.prio = next_prio(q);
    ql_init(&l->reqs);
    ql_init(&l->ready);
    tn_insert(&q->lanes, &l->tn);
    return l;
}

/* Keep the lane on the ready list exactly when it can start a request; free it when nothing
 * refers to it any more. front: a requeued request goes first. */
void lane_update(irpk_queue *q, qlane *l, bool front)
{
    bool ready = !l->busy && !ql_empty(&l->reqs);
    if (ready && !ql_linked(&l->ready)) {
        if (front)
            ql_push_front(&q->ready_lanes, &l->ready);
        else
            ql_push_back(&q->ready_lanes, &l->ready);
    } else if (!ready && ql_linked(&l->ready)) {
        ql_remove(&l->ready);
    }
    if (!l->busy && ql_empty(&l->reqs) && l->refs == 0) {
        tn_remove(&q->lanes, &l->tn);
        plat_free(l);
    }
}

qowner *owner_get(irpk_queue *q, uint64_t owner)
{
    tnode *n = tn_find(q->owners, owner);
    if (n) return QL_ENTRY(n, qowner, tn);
    qowner *o = plat_calloc(1, sizeof *o);
    if (!o) return NULL;
    o->tn.key = owner;
    o->tn.prio = next_prio(q);
    ql_init(&o->reqs);
    tn_insert(&q->owners, &o->tn);
    return o;
}

void owner_put(irpk_queue *q, qowner *o)
{
    if (ql_empty(&o->reqs) && o->refs == 0) {
        tn_remove(&q->owners, &o->tn);
        plat_free(o);
    }
}

/* r leaves its owner group (if any) for good: it is done, or its slot is being recycled. */
HOT static void og_leave(irpk_queue *q, qreq *r)
{
    if (!r->og) return;
    ql_remove(&r->olink);
    owner_put(q, r->og);
    r->og = NULL;
}

/* ------------------------------------------------------------------ reserve / publish */

/* Take everything a new request needs (slot, lane, owner group, heap room) so that publishing
 * it cannot fail. The reservation is invisible to dispatch, cancel and lookup. */
int reserve(irpk_queue *q, const irpk_req_opts *o, qreq **out)
{
    if (o->deadline_ns && heap_reserve(q) != 0) return IRPK_QE_NOMEM;
    qreq *r = slot_alloc(q);
    if (!r) return IRPK_QE_NOMEM;
    r->ctx = o->ctx;
    r->key = o->key;
    r->owner = o->owner;
    r->deadline = o->deadline_ns;
    if (q->cfg.mode == IRPK_QUEUE_KEYED_SERIAL) {
        r->lane = lane_get(q, o->key);
        if (!r->lane) goto nomem;
        r->lane->refs++;
    }
    if (o->owner) {
        r->og = owner_get(q, o->owner);
        if (!r->og) goto nomem;
        r->og->refs++;
    }
    q->reserved++;
    *out = r;
    return 0;
nomem:
    q->reserved++;
    unreserve(q, r);
    return IRPK_QE_NOMEM;
}

void unreserve(irpk_queue *q, qreq *r)
{
    if (r->lane) {
        r->lane->refs--;
        lane_update(q, r->lane, false);
    }
    if (r->og) {
        r->og->refs--;
        owner_put(q, r->og);
        r->og = NULL; /* the slot goes back clean (slot_clean) */
    }
    q->reserved--;
    slot_free(q, r);
}

/* Make a reserved request QUEUED (or cancel it at once when the queue is purging). */
void publish(irpk_queue *q, qreq *r)
{
    q->reserved--;
    if (r->lane) r->lane->refs--;
    if (r->og) {
        r->og->refs--;
        ql_push_back(&r->og->reqs, &r->olink);
    }
    r->t_submit = q->timed ? plat_now_ns() : 0; /* a clock read only when ages are wanted */
    q->n_submitted++;
    log_event(q, IRPK_EV_SUBMIT, req_handle(r), 0);
    if (r->deadline) heap_push(q, r);
    r->state = RS_QUEUED;
    pend_insert(q, r, false);
    if (q->op == OP_PURGE) cancel_queued(q, r, IRPK_QS_CANCELLED); /* forwarded into a purge */
}

/* ------------------------------------------------------------------ pending structures */

static uint64_t effective_key(const irpk_queue *q, const qreq *r)
{
    if (q->cfg.order != IRPK_ORDER_PRIORITY || q->cfg.aging_ns == 0) return r->key;
    /* Aging: a later submission pays one key unit per aging_ns, so an old request is
     * eventually first whatever its key, and the key stays static in the tree. */
    uint64_t waited = (uint64_t)(r->t_submit - q->t0) / q->cfg.aging_ns;
    return r->key > UINT64_MAX - waited ? UINT64_MAX : r->key + waited;
}

HOT static void watermark_check(irpk_queue *q)
{
    if (!q->cfg.high_watermark) return;
    if (!q->above_high && q->queued >= q->cfg.high_watermark) {
        q->above_high = true;
        q->wm_pending = 1;
    } else if (q->above_high && q->queued <= q->cfg.low_watermark) {
        q->above_high = false;
        q->wm_pending = 2;
    }
}

/* Keyed pending requests: an unordered array while there are few — at small depths one scan
 * over keys stored inline beats a tree's pointer chasing and rotations, and keeping the array
 * unordered makes insert and remove O(1) (an append, a swap with the last), so a request costs
 * one scan, at the pick — and the treap once more than SMALL_MAX wait (back to the array when
 * the treap empties). Both order by (key, seq), so the switch changes no outcome. */

/* The array's answer to "first in (key, seq) order with key >= from, wrapping to the first of
 * all": the least (key - from) mod 2^64 — keys below from wrap past every key at or above it,
 * and keep their order — with seq, read from the request, deciding equal keys. One scan;
 * from = 0 gives the first of all. */
static inline unsigned small_pick(const irpk_queue *q, uint64_t from)
{
    const qsmall *s = q->small;
    unsigned n = q->n_small, m = 0;
    uint64_t best = s[0].key - from;
    for (unsigned i = 1; i < n; i++) {
        uint64_t d = s[i].key - from;
        if (d > best || (d == best && s[i].r->tn.seq > s[m].r->tn.seq)) continue;
        best = d;
        m = i;
    }
    return m;
}

HOT static void keyed_insert(irpk_queue *q, qreq *r)
{
    if (!q->tree && q->n_small < SMALL_MAX) {
        q->small[q->n_small++] = (qsmall){r->tn.key, r};
        return;
    }
    if (!q->tree) { /* the array is full: everything moves to the treap */
        for (unsigned i = 0; i < q->n_small; i++) {
            q->small[i].r->tn.prio = next_prio(q);
            tn_insert(&q->tree, &q->small[i].r->tn);
        }
        q->n_small = 0;
    }
    r->tn.prio = next_prio(q);
    tn_insert(&q->tree, &r->tn);
}

HOT static void keyed_remove(irpk_queue *q, qreq *r)
{
    if (q->tree) {
        tn_remove(&q->tree, &r->tn);
        return;
    }
    unsigned i = q->small_hint; /* where the last pick found it, usually */
    if (i >= q->n_small || q->small[i].r != r)
        for (i = 0; q->small[i].r != r;) i++; /* r is queued: it is in the array */
    q->small[i] = q->small[--q->n_small]; /* unordered: the last entry fills the hole */
}

HOT void pend_insert(irpk_queue *q, qreq *r, bool head)
{
    if (q->plain && !head) { /* the common case, without the general branches below */
        if (q->cfg.order == IRPK_ORDER_FIFO) {
            ql_push_back(&q->fifo, &r->link);
        } else {
            r->tn.key = r->key; /* plain: no aging */
            r->tn.seq = ++q->seq;
            keyed_insert(q, r);
            ql_push_back(&q->age, &r->age);
        }
        if (q->queued++ == 0 && q->cfg.mode == IRPK_QUEUE_MANUAL && q->dispatch_on && q->cfg.on_ready)
            q->ready_pending = true;
        if (q->queued > q->max_queued_seen) q->max_queued_seen = q->queued;
        return;
    }
    if (r->lane) {
        if (head)
            ql_push_front(&r->lane->reqs, &r->link);
        else
            ql_push_back(&r->lane->reqs, &r->link);
        lane_update(q, r->lane, head);
    } else if (q->cfg.order == IRPK_ORDER_FIFO) {
        if (head)
            ql_push_front(&q->fifo, &r->link);
        else
            ql_push_back(&q->fifo, &r->link);
    } else {
        if (!head) {
            r->tn.key = effective_key(q, r);
            r->tn.seq = ++q->seq;
        } /* head: keep the original (key, seq), i.e. its place before later equal keys */
        keyed_insert(q, r);
    }
    if (q->age_is_fifo) {
        /* the FIFO list is the age order */
    } else if (head) {
        ql_push_front(&q->age, &r->age);
    } else {
        ql_push_back(&q->age, &r->age);
    }
    if (q->queued++ == 0 && q->cfg.mode == IRPK_QUEUE_MANUAL && q->dispatch_on && q->cfg.on_ready)
        q->ready_pending = true;
    if (q->queued > q->max_queued_seen) q->max_queued_seen = q->queued;
    log_event(q, IRPK_EV_QUEUE, req_handle(r), 0);
    watermark_check(q);
}

HOT void pend_remove(irpk_queue *q, qreq *r)
{
    if (q->plain) { /* no lane, no watermarks */
        if (q->cfg.order == IRPK_ORDER_FIFO) {
            ql_remove(&r->link); /* age_is_fifo: no age link */
        } else {
            keyed_remove(q, r);
            ql_remove(&r->age);
        }
        q->queued--;
        wake_word(&q->space_word, q->space_waiters);
        return;
    }
    if (r->lane) {
        ql_remove(&r->link);
        lane_update(q, r->lane, false);
    } else if (q->cfg.order == IRPK_ORDER_FIFO) {
        ql_remove(&r->link);
    } else {
        keyed_remove(q, r);
    }
    if (!q->age_is_fifo) ql_remove(&r->age);
    q->queued--;
    watermark_check(q);
    wake_word(&q->space_word, q->space_waiters);
}

qreq *pend_pick(irpk_queue *q)
{
    if (q->cfg.mode == IRPK_QUEUE_KEYED_SERIAL) {
        if (ql_empty(&q->ready_lanes)) return NULL;
        qlane *l = QL_ENTRY(q->ready_lanes.next, qlane, ready);
        return QL_ENTRY(l->reqs.next, qreq, link);
    }
    switch (q->cfg.order) {
    case IRPK_ORDER_FIFO:
        return ql_empty(&q->fifo) ? NULL : QL_ENTRY(q->fifo.next, qreq, link);
    case IRPK_ORDER_ELEVATOR:
        return pend_pick_key(q, q->cursor);
    default:
        if (!q->tree) return q->n_small ? q->small[q->small_hint = small_pick(q, 0)].r : NULL;
        return QL_ENTRY(tn_min(q->tree), qreq, tn);
    }
}

HOT qreq *pend_pick_key(irpk_queue *q, uint64_t key)
{
    if (!q->tree) {
        if (!q->n_small) return NULL;
        return q->small[q->small_hint = small_pick(q, key)].r; /* wraps: the C-SCAN sweep restarts */
    }
    tnode *n = tn_lower_bound(q->tree, key);
    if (!n) n = tn_min(q->tree); /* wrap to the smallest key: the C-SCAN sweep restarts */
    return QL_ENTRY(n, qreq, tn);
}

HOT void start_running(irpk_queue *q, qreq *r)
{
    if (r->lane) r->lane->busy = true; /* before pend_remove, so the lane leaves the ready list */
    pend_remove(q, r);
    if (q->cfg.order == IRPK_ORDER_ELEVATOR) q->cursor = r->tn.key + 1; /* UINT64_MAX wraps to 0 */
    r->state = RS_RUNNING;
    ql_push_back(&q->running, &r->link);
    if (q->cfg.in_order_completion) ql_push_back(&q->dispatch_order, &r->order);
    q->running_n++;
    log_event(q, IRPK_EV_DISPATCH, req_handle(r), 0);
}

void tree_rekey(irpk_queue *q, qreq *r, uint64_t key)
{
    keyed_remove(q, r);
    r->key = key;
    r->tn.key = effective_key(q, r);
    r->tn.seq = ++q->seq;
    keyed_insert(q, r);
}

HOT void stop_running(irpk_queue *q, qreq *r)
{
    ql_remove(&r->link);
    q->running_n--;
    if (r->acked) {
        r->acked = 0;
        q->acked_n--;
    }
    if (r->lane) {
        r->lane->busy = false;
        lane_update(q, r->lane, false);
    }
}

/* ------------------------------------------------------------------ the terminal transition */

/* The single terminal transition. Every path that can end a request (complete, cancel of a
 * queued request, deadline, purge, drop, stop disposition) calls this under the queue lock and
 * acts only if it won, so exactly one final status exists. (While a dispatch lease holds the
 * request, its lease word plays this role — see lease_complete/lease_detach — and settling the
 * lease replays the winner here.) */
HOT bool decide(qreq *r, int32_t status)
{
    if (r->decided) return false;
    r->decided = 1;
    r->status = status;
    return true;
}

static void push_done(irpk_queue *q, qreq *r)
{
    r->done_next = NULL;
    if (q->done_tail)
        q->done_tail->done_next = r;
    else
        q->done_head = r;
    q->done_tail = r;
}

/* In-order completion (config.in_order_completion): dispatched requests sit on
 * dispatch_order; a released one is held until every request dispatched before it has been
 * released or has left (requeue, forward). The head of the list is therefore never held. */
static void order_advance(irpk_queue *q)
{
    while (!ql_empty(&q->dispatch_order)) {
        qreq *h = QL_ENTRY(q->dispatch_order.next, qreq, order);
        if (!h->held) return;
        ql_remove(&h->order);
        h->held = 0;
        push_done(q, h);
    }
}

static void deliver_in_order(irpk_queue *q, qreq *r)
{
    if (!ql_linked(&r->order)) {
        push_done(q, r); /* never dispatched (or not ordered): deliver at once */
        return;
    }
    r->held = 1;
    order_advance(q);
}

void order_leave(irpk_queue *q, qreq *r)
{
    if (!ql_linked(&r->order)) return;
    ql_remove(&r->order);
    order_advance(q);
}

/* r is decided and no longer queued or running: detach it and schedule its completion. */
void release(irpk_queue *q, qreq *r)
{
    r->state = RS_DONE;
    if (r->heap_pos != NO_HEAP) heap_remove(q, r);
    og_leave(q, r);
    if (!r->forwarded) log_event(q, IRPK_EV_COMPLETE, req_handle(r), r->status);
    if (r->pins) {
        r->release_deferred = 1; /* a notification is still using it: it finishes the job */
    } else if (r->forwarded) {
        slot_free(q, r);
    } else {
        deliver_in_order(q, r);
    }
}

/* The executor (handler or manual owner) lets go of a RUNNING request with this status. */
int executor_release(irpk_queue *q, qreq *r, int32_t status)
{
    stop_running(q, r);
    int rc = decide(r, status) ? 0 : IRPK_REQ_OVERRIDDEN;
    release(q, r);
    return rc;
}

/* Give a RUNNING request back to the head of the queue; a request that was cancelled or timed
 * out meanwhile completes instead (IRPK_REQ_OVERRIDDEN). */
int executor_requeue(irpk_queue *q, qreq *r)
{
    if (r->decided || r->cancel_req || q->op == OP_PURGE) {
        executor_release(q, r, IRPK_QS_CANCELLED);
        return IRPK_REQ_OVERRIDDEN;
    }
    if (r->lane) r->lane->refs++; /* stop_running may otherwise free the now idle, empty lane */
    order_leave(q, r);            /* it will be dispatched (and ordered) again */
    stop_running(q, r);
    r->state = RS_QUEUED;
    log_event(q, IRPK_EV_REQUEUE, req_handle(r), 0);
    pend_insert(q, r, true);
    if (r->lane) r->lane->refs--; /* the lane now holds r: it cannot be freed */
    return 0;
}

/* End a QUEUED request with a queue-decided status (cancel, purge, timeout, drop). */
void cancel_queued(irpk_queue *q, qreq *r, int32_t status)
{
    if (!decide(r, status)) plat_panic("queue: queued request already decided");
    pend_remove(q, r);
    release(q, r);
}

/* Tell the executor of a RUNNING request to stop (once); the pin keeps the request from being
 * completed until the notification has returned. */
void cancel_request(irpk_queue *q, qreq *r, irpk_notify_reason why)
{
    if (r->cancel_req) return;
    r->cancel_req = 1;
    log_event(q, IRPK_EV_CANCEL_REQUEST, req_handle(r), 0);
    if (!q->cfg.on_cancel) return;
    r->pins++;
    r->notify_reason = (uint8_t)why;
    r->notify_next = NULL;
    if (q->notify_tail)
        q->notify_tail->notify_next = r;
    else
        q->notify_head = r;
    q->notify_tail = r;
}

int expire_due(irpk_queue *q, int64_t now)
{
    int n = 0;
    while (q->heap_n && q->heap[0]->deadline <= now) {
        qreq *r = q->heap[0];
        heap_remove(q, r);
        n++;
        log_event(q, IRPK_EV_TIMEOUT, req_handle(r), 0);
        if (r->state == RS_QUEUED) {
            cancel_queued(q, r, IRPK_QS_TIMEDOUT);
        } else if (decide(r, IRPK_QS_TIMEDOUT)) {
            /* Running: the status is now fixed; the executor still owns the request and
             * releases it with complete/requeue/forward (which then return OVERRIDDEN). */
            cancel_request(q, r, IRPK_NOTIFY_TIMEOUT);
        }
    }
    return n;
}

/* ------------------------------------------------------------------ frames and wake-ups */


qframe *frame_of(irpk_queue *q)
{
    for (qframe *f = *frame_top(); f; f = f->up)
        if (f->q == q) return f;
    return NULL;
}

bool in_own_callback(irpk_queue *q) { return frame_of(q) != NULL; }

HOT void wake_word(volatile uint32_t *w, unsigned waiters)
{
    /* Bump then wake, under the queue lock. A waiter registers (waiters++) and samples *w in
     * the same lock hold before sleeping, so with waiters == 0 nobody can miss this change and
     * the bump is skipped (it is on the per-request path). */
    if (!waiters) return;
    plat_fetch_add32((volatile int32_t *)w, 1);
    plat_wake(w, INT32_MAX);
}

/* Callbacks run with the lock dropped; cb_active counts them for the lifetime barrier. */
static void call_begin(irpk_queue *q)
{
    q->cb_active++;
    q_release(q);
}

static void call_end(irpk_queue *q)
{
    q_lock(q);
    q->cb_active--;
}

HOT static void count_final(irpk_queue *q, int32_t status)
{
    if (status == IRPK_QS_CANCELLED)
        q->n_cancelled++;
    else if (status == IRPK_QS_TIMEDOUT)
        q->n_timed_out++;
    else if (status == IRPK_QS_DROPPED)
        q->n_dropped++;
    else
        q->n_completed++;
}

/* ------------------------------------------------------------------ leases (see queue_internal.h) */

HOT static qlease *lease_grant(irpk_queue *q, enum lease_kind kind, qreq *r)
{
    uint32_t free = ~q->lease_mask & ((1u << LEASE_MAX) - 1);
    if (!free) return NULL; /* all in use: the caller takes the locked path */
    unsigned i = (unsigned)__builtin_ctz(free);
    qlease *l = &q->leases[i];
    q->lease_mask |= 1u << i;
    l->kind = (uint8_t)kind;
    l->r = r;
    l->status = 0;
    /* Plain store: a free lease has no holder, and every earlier access to it happened before
     * this lock hold (it was settled under the lock after its last word was read). */
    l->w = L_HELD;
    q->cb_active++;
    if (kind == LK_DISPATCH) r->lease = l;
    return l;
}

/* The holder leaves: true if the lease now reads L_RET (a later lock holder settles it), false
 * if L_SLOW asks the holder to settle it under the lock itself. Every bit another thread sets
 * comes with L_SLOW, so a single CAS against the expected word decides. */
HOT static bool lease_return(qlease *l, bool done)
{
    int32_t expect = L_HELD | (done ? L_DONE : 0);
    return plat_cas32(&l->w, expect, (expect & ~L_HELD) | L_RET) == expect;
}

/* The holder delivered r's completion itself (in-frame completion): release r without a
 * second delivery. No notification can be pending (it would have set L_CANCEL) and dispatch
 * leases are never granted to requests with a deadline, in-order completion or an event log. */
static void release_delivered(irpk_queue *q, qreq *r)
{
    if (r->pins) plat_panic("queue: in-frame completion with a notification pending");
    r->state = RS_DONE;
    og_leave(q, r);
    count_final(q, r->status);
    slot_free(q, r);
}

/* Settle a lease whose holder has left (L_RET seen) or is the caller (came back on L_SLOW). */
static void lease_settle(irpk_queue *q, qlease *l)
{
    int32_t w = plat_load32(&l->w);
    qreq *r = l->r;
    if (l->kind == LK_COMPLETE) {
        slot_free(q, r); /* the completion callback has returned: the handle may go stale */
    } else if (!(w & L_DETACHED)) {
        r->lease = NULL;
        if (w & L_DONE) {
            stop_running(q, r);
            if (!decide(r, l->status)) plat_panic("queue: leased request decided twice");
            if (w & L_CANCEL)
                release(q, r); /* the holder left the delivery to the notification's end */
            else
                release_delivered(q, r);
        } else if (q->op == OP_STOP) {
            stop_offer(q, r); /* a stop began while its handler ran: ask about it now */
        }
    }
    q->lease_mask &= ~(1u << (unsigned)(l - q->leases));
    l->r = NULL;
    l->w = 0; /* plain: the holder has left or is the caller; pokers hold the lock */
    q->cb_active--;
}

void leases_settle_returned(irpk_queue *q)
{
    for (uint32_t m = q->lease_mask; m; m &= m - 1) {
        unsigned i = (unsigned)__builtin_ctz(m);
        qlease *l = &q->leases[i];
        /* L_RET is the holder's last write to q: a lease seen returned is ours to settle. */
        if (!(plat_load32(&l->w) & L_RET)) continue;
        if (l->kind != LK_COMPLETE) {
            lease_settle(q, l);
            continue;
        }
        /* A returned completion lease (every queued request a cancel removed ends on one):
         * lease_settle's first branch, inline. */
        slot_free(q, l->r);
        q->lease_mask &= ~(1u << i);
        l->r = NULL;
        l->w = 0; /* plain: the holder has left */
        q->cb_active--;
    }
}

/* Ask every holder to come back through the lock; settle the leases already returned. Returns
 * true if it settled any (their bookkeeping may have made work for the loop). */
static bool leases_poke(irpk_queue *q)
{
    bool settled = false;
    for (uint32_t m = q->lease_mask; m; m &= m - 1) {
        qlease *l = &q->leases[__builtin_ctz(m)];
        if (plat_fetch_or32(&l->w, L_SLOW) & L_RET) {
            lease_settle(q, l);
            settled = true;
        }
    }
    return settled;
}

/* A locked path (complete, requeue, forward, stop disposition) takes r over from its handler's
 * lease. Returns IRPK_QE_ALREADY if the handler completed it in its frame first, else 0. */
int lease_detach(irpk_queue *q, qreq *r)
{
    qlease *l = r->lease;
    if (!l) return 0;
    int32_t old = plat_load32(&l->w);
    for (;;) {
        if (old & L_DONE) return IRPK_QE_ALREADY;
        int32_t seen = plat_cas32(&l->w, old, old | L_DETACHED | L_SLOW);
        if (seen == old) break;
        old = seen;
    }
    r->lease = NULL;
    if (old & L_RET) lease_settle(q, l); /* its holder already left: finish the lease now */
    return 0;
}

/* A cancel is about to notify r's handler. Returns false if the handler already completed r in
 * its frame (the cancel is too late), else true; with on_cancel set the lease is marked so the
 * completion waits for the notification to end. */
bool lease_mark_cancel(irpk_queue *q, qreq *r)
{
    qlease *l = r->lease;
    if (!l) return true;
    int32_t add = q->cfg.on_cancel ? L_CANCEL | L_SLOW : 0;
    int32_t old = plat_load32(&l->w);
    for (;;) {
        if (old & L_DONE) return false;
        if (!add) return true; /* nothing to mark: the cancel is ordered before the completion */
        int32_t seen = plat_cas32(&l->w, old, old | add);
        if (seen == old) break;
        old = seen;
    }
    if (old & L_RET) lease_settle(q, l); /* handler returned without completing: plain running */
    return true;
}

bool decided_or_done(const qreq *r)
{
    /* The lease word atomically: the handler sets L_DONE in its frame without the lock. */
    return r->decided || (r->lease && (plat_load32(&r->lease->w) & L_DONE));
}

/* ------------------------------------------------------------------ deliveries */

static void unpin(irpk_queue *q, qreq *r)
{
    if (--r->pins || !r->release_deferred) return;
    r->release_deferred = 0;
    if (r->forwarded)
        slot_free(q, r);
    else
        deliver_in_order(q, r);
}

/* Deliver the first completion. With may_leave, when nothing else is pending, the callback
 * runs on a lease and this returns true with the lock released (the callback returned and no
 * one poked the lease); otherwise it returns false with the lock held. */
static bool deliver_completion(irpk_queue *q, bool may_leave)
{
    qreq *r = q->done_head;
    q->done_head = r->done_next;
    if (!q->done_head) q->done_tail = NULL;
    count_final(q, r->status);
    if (!q->cfg.on_complete) {
        slot_free(q, r);
        return false;
    }
    irpk_req_handle h = req_handle(r);
    int32_t status = r->status;
    void *ctx = r->ctx;
    qlease *l = may_leave && quiet(q) ? lease_grant(q, LK_COMPLETE, r) : NULL;
    if (l) {
        q_release(q);
        q->cfg.on_complete(q, h, status, ctx, q->cfg.ctx);
        if (lease_return(l, false)) return true;
        q_lock(q);
        lease_settle(q, l); /* frees the slot: irpk_req_cancel_wait waits for exactly this */
        return false;
    }
    call_begin(q);
    q->cfg.on_complete(q, h, status, ctx, q->cfg.ctx);
    call_end(q);
    /* The slot is recycled only after the callback returned: irpk_req_cancel_wait waits for
     * exactly this generation bump. */
    slot_free(q, r);
    return false;
}

static void deliver_notify(irpk_queue *q)
{
    qreq *r = q->notify_head;
    q->notify_head = r->notify_next;
    if (!q->notify_head) q->notify_tail = NULL;
    irpk_req_handle h = req_handle(r);
    irpk_notify_reason why = (irpk_notify_reason)r->notify_reason;
    void *ctx = r->ctx;
    call_begin(q);
    q->cfg.on_cancel(q, h, why, ctx, q->cfg.ctx);
    call_end(q);
    unpin(q, r);
}

static void deliver_stop(irpk_queue *q)
{
    qreq *r = q->stop_head;
    q->stop_head = r->stop_next;
    if (!q->stop_head) q->stop_tail = NULL;
    irpk_req_handle h = req_handle(r);
    void *ctx = r->ctx;
    call_begin(q);
    irpk_stop_disposition d = q->cfg.on_stop(q, h, ctx, q->cfg.ctx);
    call_end(q);
    /* The executor may have completed it while on_stop ran: then the disposition is moot. */
    if (r->state == RS_RUNNING && lease_detach(q, r) == 0) {
        if (d == IRPK_STOP_REQUEUE) {
            executor_requeue(q, r);
        } else if (d == IRPK_STOP_COMPLETED) {
            executor_release(q, r, IRPK_QS_CANCELLED);
        } else if (!r->acked) {
            r->acked = 1;
            q->acked_n++;
        }
    }
    unpin(q, r);
}

static void deliver_watermark(irpk_queue *q)
{
    int high = q->wm_pending == 1;
    q->wm_pending = 0;
    if (!q->cfg.on_watermark) return;
    size_t depth = q->queued;
    call_begin(q);
    q->cfg.on_watermark(q, high, depth, q->cfg.ctx);
    call_end(q);
}

static void deliver_ready(irpk_queue *q)
{
    q->ready_pending = false;
    if (!q->cfg.on_ready || !q->queued) return;
    call_begin(q);
    q->cfg.on_ready(q, q->cfg.ctx);
    call_end(q);
}

static bool op_finished(const irpk_queue *q)
{
    if (q->op == OP_NONE || q->cb_active || q->stop_head || q->notify_head || q->done_head)
        return false;
    if (q->op == OP_STOP) return q->running_n == q->acked_n;
    return q->queued == 0 && q->running_n == 0 && q->reserved == 0;
}

static void deliver_op_done(irpk_queue *q)
{
    irpk_done_fn fn = q->op_done;
    void *ctx = q->op_ctx;
    q->op = OP_NONE;
    q->op_done = NULL;
    /* Unconditional bump: a synchronous caller samples op_word before it registers as a
     * waiter (its own flush may finish the operation in between). */
    plat_fetch_add32((volatile int32_t *)&q->op_word, 1);
    if (q->op_waiters) plat_wake(&q->op_word, INT32_MAX);
    if (!fn) return;
    call_begin(q);
    fn(q, ctx);
    call_end(q);
}

enum { DISPATCHED_NONE = 0, DISPATCHED = 1, DISPATCHED_LEFT = 2 };

/* Dispatch the next request. Eligible requests (no deadline; queue without event log or
 * in-order completion) run on a dispatch lease: the handler may complete them in its frame,
 * their completion is delivered right after the handler returns, and, with may_leave and
 * nothing else pending, the loop ends lock-free (DISPATCHED_LEFT). */
static int dispatch_one(irpk_queue *q, qframe *f, bool may_leave)
{
    if (!q->dispatch_on || q->cfg.mode == IRPK_QUEUE_MANUAL || q->running_n >= q->limit)
        return DISPATCHED_NONE;
    qreq *r = pend_pick(q);
    if (!r) return DISPATCHED_NONE;
    start_running(q, r);
    irpk_req_handle h = req_handle(r);
    void *ctx = r->ctx;
    qlease *l = q->lease_ok && !r->deadline ? lease_grant(q, LK_DISPATCH, r) : NULL;
    if (!l) {
        call_begin(q);
        q->cfg.on_dispatch(q, h, ctx, q->cfg.ctx);
        call_end(q);
        return DISPATCHED;
    }
    /* quiet() is sampled under the lock; work that arrives after the release pokes the lease
     * (q_leave, wait_word), so the lock-free return below never strands it. */
    bool tail = may_leave && quiet(q);
    f->h = h;
    f->lease = l;
    f->done = f->deliver = false;
    q_release(q);
    q->cfg.on_dispatch(q, h, ctx, q->cfg.ctx);
    bool done = f->done;
    f->h = 0;
    f->lease = NULL;
    /* Still inside the lease (counted as a running callback): the completion runs after the
     * handler returned, as on the locked path. */
    if (f->deliver && q->cfg.on_complete) q->cfg.on_complete(q, h, l->status, ctx, q->cfg.ctx);
    if (tail && lease_return(l, done)) return DISPATCHED_LEFT;
    q_lock(q);
    lease_settle(q, l);
    return DISPATCHED;
}

/* The dispatch loop (KMDF FxIoQueue style). Runs every pending notification, completion and
 * dispatch of q. A thread already inside this loop for q (i.e. inside one of q's callbacks)
 * returns at once: the outer loop re-examines the queue under the lock after the callback
 * returns — that re-check is the "run again" flag; an outer loop that ends lock-free on a lease
 * is poked instead (q_leave) — so handler → complete → next handler is iteration, never
 * recursion, and no wake-up is lost. Other threads run their own loop, which is what lets
 * PARALLEL queues run handlers concurrently. Returns true if it released the lock (only with
 * may_leave: its last callback ended lock-free on a lease). */
static bool run_loop(irpk_queue *q, bool may_leave)
{
    qframe **top = frame_top();
    for (qframe *f = *top; f; f = f->up)
        if (f->q == q) return false;
    qframe me = {q, *top, 0, NULL, false, false};
    *top = &me;
    bool left = false;
    for (;;) {
        if (q->notify_head) {
            deliver_notify(q);
        } else if (q->stop_head) {
            deliver_stop(q);
        } else if (q->done_head) {
            if ((left = deliver_completion(q, may_leave))) break;
        } else if (q->wm_pending) {
            deliver_watermark(q);
        } else if (q->ready_pending) {
            deliver_ready(q);
        } else {
            int d = dispatch_one(q, &me, may_leave);
            if ((left = d == DISPATCHED_LEFT)) break;
            if (d == DISPATCHED) continue;
            if (!op_finished(q)) break;
            deliver_op_done(q);
        }
    }
    *top = me.up;
    return left;
}

void flush(irpk_queue *q) { run_loop(q, false); }

void q_leave_work(irpk_queue *q)
{
    for (;;) {
        if (run_loop(q, true)) return;
        /* Work left that a lease holder must come back for (or that we could not run because
         * we are inside one of q's callbacks ourselves): poke the holders. */
        if (!q->lease_mask || quiet(q) || !leases_poke(q)) break;
    }
    q_release(q);
}

/* ------------------------------------------------------------------ direct delivery */

/* r has just been decided and taken out of the pending structures or the running list (a
 * cancel of a queued request, the completion of a retrieved one); the lock is held. Deliver
 * its completion and leave (the lock is released on return).
 *
 * When nothing else is due, the dispatch loop q_leave would run finds exactly one thing to do
 * — r's completion — and delivers it on a completion lease (deliver_completion). This does the
 * same directly, without the done list and the loop's scan: same lease, same frame (so calls
 * from on_complete see "inside q's callback"), same count, same slot release when the lease is
 * settled. Anything else (a pin, a notification or stop pending, a waiter, a watermark, an
 * event log or in-order completion, being inside one of q's callbacks already, no free lease)
 * takes the general path: release + q_leave. */
HOT void release_and_leave(irpk_queue *q, qreq *r)
{
    qframe **top = frame_top();
    /* nothing_to_run, not quiet: requests queued behind a running one that has no lease (no
     * room, nobody to poke) leave the loop nothing but r's completion either — a cancel of
     * one of several IRPs queued behind the one the device holds. */
    bool direct = q->lease_ok && q->cfg.on_complete && !r->pins && !r->forwarded &&
                  nothing_to_run(q) && q->lease_mask != (1u << LEASE_MAX) - 1;
    for (const qframe *f = *top; direct && f; f = f->up)
        direct = f->q != q; /* inside q's own callback: the outer loop delivers it (no nesting) */
    if (!direct) {
        release(q, r);
        q_leave(q);
        return;
    }
    r->state = RS_DONE;
    if (r->heap_pos != NO_HEAP) heap_remove(q, r);
    og_leave(q, r);
    count_final(q, r->status);
    irpk_req_handle h = req_handle(r);
    int32_t status = r->status;
    void *ctx = r->ctx;
    qlease *l = lease_grant(q, LK_COMPLETE, r); /* counted in cb_active: the lifetime barrier */
    qframe me = {q, *top, 0, NULL, false, false};
    *top = &me;
    q_release(q);
    q->cfg.on_complete(q, h, status, ctx, q->cfg.ctx);
    *top = me.up;
    if (lease_return(l, false)) return; /* the next lock holder frees the slot */
    q_lock(q); /* poked: someone needs us back through the lock */
    lease_settle(q, l);
    q_leave(q);
}

/* ------------------------------------------------------------------ the submit fast path */

/* An idle dispatching queue runs a new request's handler at once, on a dispatch lease, with one
 * lock round trip: what publish + the dispatch loop would do, minus the pending structures the
 * request would only pass through. Taken only when the outcome is the same as on the normal
 * path: nothing queued or pending, no stop/drain/purge or waiter, room to run, and not from
 * one of q's own callbacks (those never dispatch inline: no recursion). */
HOT static bool fast_ok(const irpk_queue *q, const irpk_req_opts *o, const qlease *reuse,
                    qframe *const *top)
{
    if (!q->lease_ok || o->deadline_ns || !q->dispatch_on || !q->accepting || q->queued ||
        q->cfg.mode > IRPK_QUEUE_PARALLEL) /* SEQUENTIAL or PARALLEL */
        return false;
    if (q->running_n - (reuse ? 1 : 0) >= q->limit) return false;
    if (!reuse && q->lease_mask == (1u << LEASE_MAX) - 1) return false;
    if (!quiet(q)) return false;
    for (const qframe *f = *top; f; f = f->up)
        if (f->q == q) return false;
    return true;
}

/* The slot of a returned dispatch lease whose request was completed in its handler's frame and
 * delivered: finish that occupant (what lease_settle + release_delivered + slot_free would do)
 * and make the slot, still on the running list, the next request's. */
static inline void recycle(irpk_queue *q, qlease *l, qreq *r, uint64_t gen)
{
    count_final(q, l->status);
    og_leave(q, r);
    r->gen = gen; /* next_gen(r->gen): the old handle goes stale, as in slot_free */
    r->cancel_req = r->acked = 0;
    r->decided = 0;
    r->status = 0;
    l->status = 0;
    l->w = L_HELD; /* plain: its holder has left (L_RET seen under the lock) */
    /* No wake_word(release_word) as slot_free does: fast_ok found the queue quiet, so nobody
     * waits for this slot's old handle to go stale. */
}

static inline __attribute__((always_inline)) int
fast_submit_body(irpk_queue *q, const irpk_req_opts *o, irpk_req_handle *out, submit_hook hook,
                 void *hook_ctx)
{
    qframe **top = frame_top(); /* thread-local: looked up before taking the lock */
    q_acquire(q); /* settling returned leases (q_lock's job) happens below */
    if (q->closed) {
        q_release(q);
        return IRPK_QE_CLOSED;
    }
    qlease *reuse = NULL;
    for (uint32_t m = q->lease_mask; m; m &= m - 1) {
        qlease *l = &q->leases[__builtin_ctz(m)];
        int32_t w = plat_load32(&l->w);
        if (!(w & L_RET)) continue;
        if (!reuse && w == (L_RET | L_DONE) && l->kind == LK_DISPATCH)
            reuse = l;
        else
            lease_settle(q, l);
    }
    if (!fast_ok(q, o, reuse, top)) goto no;
    qowner *og = NULL;
    if (o->owner) {
        if (!(og = owner_get(q, o->owner))) goto no;
        og->refs++; /* the old occupant may be its last member: keep it */
    }
    qreq *r = reuse ? reuse->r : slot_alloc(q);
    if (!r) {
        if (og) og->refs--, owner_put(q, og);
        return 0; /* the normal path reports NOMEM */
    }
    uint64_t gen = reuse ? next_gen(r->gen) : r->gen;
    irpk_req_handle h = gen << 24 | r->idx;
    if (hook && !hook(h, hook_ctx)) { /* nothing of the new request is visible yet */
        if (og) og->refs--, owner_put(q, og);
        if (reuse)
            lease_settle(q, reuse);
        else
            slot_free(q, r);
        q_leave(q);
        return FAST_REFUSED;
    }
    qlease *l = reuse;
    if (l) {
        recycle(q, l, r, gen);
    } else {
        r->state = RS_RUNNING;
        ql_push_back(&q->running, &r->link);
        q->running_n++;
        l = lease_grant(q, LK_DISPATCH, r);
    }
    r->ctx = o->ctx;
    r->key = o->key;
    r->owner = o->owner;
    r->deadline = 0;
    r->t_submit = q->timed ? plat_now_ns() : 0;
    if (og) {
        r->og = og;
        ql_push_back(&og->reqs, &r->olink);
        og->refs--;
    }
    if (q->cfg.order == IRPK_ORDER_ELEVATOR) q->cursor = o->key + 1;
    q->n_submitted++;
    if (out) *out = h;
    void *ctx = r->ctx;
    qframe me = {q, *top, h, l, false, false};
    *top = &me;
    q_release(q);
    q->cfg.on_dispatch(q, h, ctx, q->cfg.ctx);
    me.h = 0;
    me.lease = NULL;
    if (me.deliver && q->cfg.on_complete) q->cfg.on_complete(q, h, l->status, ctx, q->cfg.ctx);
    *top = me.up;
    if (lease_return(l, me.done)) return 1;
    q_lock(q);
    lease_settle(q, l);
    q_leave(q);
    return 1;
no:
    if (reuse) lease_settle(q, reuse);
    return 0;
}

int fast_submit(irpk_queue *q, const irpk_req_opts *o, irpk_req_handle *out, submit_hook hook,
                void *hook_ctx)
{
    return fast_submit_body(q, o, out, hook, hook_ctx);
}

/* irpk_queue_submit lives here, next to the fast path it inlines (the per-request path). */
int irpk_queue_submit(irpk_queue *q, const irpk_req_opts *o, irpk_req_handle *out)
{
    if (!o || !q) return IRPK_QE_INVAL;
    int rc;
    /* cfg is immutable after create: the eligibility by configuration needs no lock. */
    if (q->lease_ok && q->cfg.mode <= IRPK_QUEUE_PARALLEL && !o->deadline_ns) {
        rc = fast_submit_body(q, o, out, NULL, NULL); /* takes the lock */
        if (rc) return rc > 0 ? 0 : rc;
    } else if ((rc = q_enter(q)) != 0) {
        return rc;
    }
    qreq *r = NULL;
    if (q->accepting && !q->cfg.max_depth && !o->deadline_ns && !o->owner &&
        q->cfg.mode != IRPK_QUEUE_KEYED_SERIAL) {
        /* Nothing to reserve (no heap room, lane or owner group) and nothing to admit:
         * reserve + publish without the reservation's bookkeeping (the common submit). */
        if (!(r = slot_alloc(q))) {
            q_release(q);
            return IRPK_QE_NOMEM;
        }
        r->ctx = o->ctx;
        r->key = o->key;
        r->owner = 0;
        r->deadline = 0;
        r->t_submit = q->timed ? plat_now_ns() : 0;
        q->n_submitted++;
        log_event(q, IRPK_EV_SUBMIT, req_handle(r), 0);
        r->state = RS_QUEUED;
        pend_insert(q, r, false);
        if (out) *out = req_handle(r);
        q_leave(q);
        return 0;
    }
    bool drop;
    if ((rc = submit_reserve(q, o, &r, &drop)) != 0) return rc;
    submit_publish(q, r, drop);
    if (out) *out = req_handle(r); /* before q_leave, which may dispatch it */
    q_leave(q);
    return 0;
}

/* The other per-request calls, here so the compiler can inline the helpers they share with
 * the submit path above. */

/* irpk_req_complete under the lock: an executor (manual owner, or a handler's request taken
 * over from its lease) lets go of a RUNNING request. Its own function: a manual queue's call
 * (which never completes in a handler's frame) comes straight here, without the frame lookup
 * and without the in-frame path's register saves. */
static __attribute__((noinline)) int complete_locked(irpk_queue *q, irpk_req_handle h,
                                                     int32_t status)
{
    int rc = q_enter(q);
    if (rc) return rc;
    bool gone;
    qreq *r = req_lookup(q, h, &gone);
    /* executor_lookup's common answer inline: running, held by no handler's lease */
    if (!r || r->state != RS_RUNNING || r->lease) {
        if ((rc = executor_lookup(q, h, &r)) != 0) {
            q_leave(q);
            return rc;
        }
    }
    stop_running(q, r); /* executor_release, with the completion delivered directly */
    rc = decide(r, status) ? 0 : IRPK_REQ_OVERRIDDEN;
    release_and_leave(q, r);
    return rc;
}

/* From inside the request's own leased on_dispatch: decide it with one CAS on the lease,
 * without the lock (q cannot be closed while one of its handlers runs); otherwise the locked
 * path. */
static __attribute__((noinline)) int complete_in_frame(irpk_queue *q, irpk_req_handle h,
                                                       int32_t status)
{
    qframe *f = *frame_top(); /* the innermost frame is q's when a handler completes its request */
    if (f && f->q != q) f = frame_of(q);
    if (f && f->lease && f->h == h) {
        int rc = lease_complete(f, status);
        if (rc != LEASE_FALLBACK) return rc;
    }
    return complete_locked(q, h, status);
}

int irpk_req_complete(irpk_queue *q, irpk_req_handle h, int32_t status)
{
    if (!q) return IRPK_QE_INVAL;
    /* Dispatch leases exist only on lease_ok dispatching queues (dispatch_one and fast_submit
     * never lease in MANUAL mode): elsewhere skip the thread-local frame lookup. cfg and
     * lease_ok are immutable after create, so this test needs no lock. */
    if (q->lease_ok && q->cfg.mode != IRPK_QUEUE_MANUAL) return complete_in_frame(q, h, status);
    return complete_locked(q, h, status);
}

static int retrieve(irpk_queue *q, bool by_key, uint64_t key, irpk_req_handle *out)
{
    if (!out) return IRPK_QE_INVAL;
    int rc = q_enter(q);
    if (rc) return rc;
    qreq *r = NULL;
    if (q->cfg.mode != IRPK_QUEUE_MANUAL || (by_key && q->cfg.order == IRPK_ORDER_FIFO))
        rc = IRPK_QE_MODE;
    else if (!q->dispatch_on)
        rc = IRPK_QE_STOPPED;
    else if (!(r = by_key ? pend_pick_key(q, key) : pend_pick(q)))
        rc = IRPK_QE_EMPTY;
    if (!rc) {
        start_running(q, r);
        *out = req_handle(r);
    }
    q_leave(q);
    return rc;
}

int irpk_queue_retrieve(irpk_queue *q, irpk_req_handle *out) { return retrieve(q, false, 0, out); }

int irpk_queue_retrieve_key(irpk_queue *q, uint64_t k, irpk_req_handle *out)
{
    return retrieve(q, true, k, out);
}

int cancel_locked(irpk_queue *q, irpk_req_handle h)
{
    bool gone;
    qreq *r = req_lookup(q, h, &gone);
    if (!r) return gone ? IRPK_CANCEL_TOO_LATE : IRPK_CANCEL_NOT_FOUND;
    if (r->state == RS_QUEUED) {
        log_event(q, IRPK_EV_CANCEL_REQUEST, h, 0);
        cancel_queued(q, r, IRPK_QS_CANCELLED);
        return IRPK_CANCEL_REMOVED;
    }
    if (r->state == RS_RUNNING && !r->decided && lease_mark_cancel(q, r)) {
        cancel_request(q, r, IRPK_NOTIFY_CANCEL);
        return IRPK_CANCEL_REQUESTED;
    }
    return IRPK_CANCEL_TOO_LATE;
}

int irpk_req_cancel(irpk_queue *q, irpk_req_handle h)
{
    int rc = q_enter(q);
    if (rc) return rc;
    bool gone;
    qreq *r = req_lookup(q, h, &gone);
    if (r && r->state == RS_QUEUED) { /* the common case, delivered without the loop */
        log_event(q, IRPK_EV_CANCEL_REQUEST, h, 0);
        if (!decide(r, IRPK_QS_CANCELLED)) plat_panic("queue: queued request already decided");
        pend_remove(q, r);
        release_and_leave(q, r);
        return IRPK_CANCEL_REMOVED;
    }
    rc = cancel_locked(q, h);
    q_leave(q);
    return rc;
}

/* ------------------------------------------------------------------ event log */

void log_append(irpk_queue *q, irpk_queue_event_type t, irpk_req_handle h, int32_t status)
{
    size_t cap = q->cfg.log_capacity;
    size_t at = (q->log_head + q->log_n) % cap;
    if (q->log_n == cap)
        q->log_head = (q->log_head + 1) % cap; /* full: overwrite the oldest */
    else
        q->log_n++;
    q->log[at] = (irpk_queue_event){++q->log_seq, plat_now_ns(), h, t, status, plat_self()->id};
}

/* Sleep until *w changes. Called with the lock held; the sample is taken under the lock and
 * every writer bumps *w under it (wake_word), so the change cannot be missed. What the caller
 * waits for may need a lease holder to come back through the lock: the holders are poked first
 * (and if that settled a lease, the caller re-checks instead of sleeping). */
void wait_word(irpk_queue *q, volatile uint32_t *w, unsigned *waiters)
{
    uint32_t seen = (uint32_t)plat_load32((volatile int32_t *)w);
    (*waiters)++;
    q->n_waiting++;
    if (!(q->lease_mask && leases_poke(q))) {
        q_release(q);
        plat_wait(w, seen, PLAT_FOREVER);
        q_lock(q);
    }
    flush(q);
    q->n_waiting--;
    (*waiters)--;
}
