/* Private structures of the irpkit request queue. Everything here is protected by the owning
 * queue's lock (irpk_queue.lock) unless a comment says otherwise. */
#ifndef IRPK_QUEUE_INTERNAL_H
#define IRPK_QUEUE_INTERNAL_H

#include "irpkit/queue.h"
#include "platform/platform.h"

#include <stdbool.h>

/* ------------------------------------------------------------------ intrusive list */

typedef struct qlink {
    struct qlink *prev, *next;
} qlink;

static inline void ql_init(qlink *h) { h->prev = h->next = h; }
static inline bool ql_empty(const qlink *h) { return h->next == h; }
static inline bool ql_linked(const qlink *n) { return n->next != n; }
static inline void ql_insert_between(qlink *n, qlink *prev, qlink *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}
static inline void ql_push_back(qlink *h, qlink *n) { ql_insert_between(n, h->prev, h); }
static inline void ql_push_front(qlink *h, qlink *n) { ql_insert_between(n, h, h->next); }
static inline void ql_remove(qlink *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    ql_init(n); /* self-linked = "not on a list", so ql_linked() answers membership */
}
#define QL_ENTRY(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* ------------------------------------------------------------------ ordered tree (treap) */

/* Ordered by (key, seq); seq makes equal keys FIFO. prio is a random heap priority, so the
 * expected depth is O(log n) whatever the insertion order. */
typedef struct tnode {
    struct tnode *l, *r;
    uint64_t key, seq;
    uint32_t prio;
} tnode;

void tn_insert(tnode **root, tnode *n);
void tn_remove(tnode **root, tnode *n);
tnode *tn_min(tnode *root);
tnode *tn_lower_bound(tnode *root, uint64_t key); /* first node with key >= key */
tnode *tn_find(tnode *root, uint64_t key);        /* any node with exactly key */

/* ------------------------------------------------------------------ requests */

enum qreq_state { RS_FREE = 0, RS_RESERVED, RS_QUEUED, RS_RUNNING, RS_DONE };

#define NO_HEAP ((size_t)-1)

typedef struct qlane qlane;
typedef struct qowner qowner;
typedef struct qlease qlease;

typedef struct qreq {
    uint64_t gen;            /* generation of the current (or next) occupant */
    uint32_t idx;            /* slot index */
    uint8_t state;           /* enum qreq_state */
    uint8_t cancel_req;      /* cancel asked while running (or deadline passed while running) */
    uint8_t acked;           /* stop disposition KEEP */
    uint8_t release_deferred;/* released while pinned: completion waits for pins == 0 */
    uint8_t forwarded;       /* left for another queue: release frees the slot silently */
    uint8_t notify_reason;
    uint16_t pins;           /* notifications / stop callbacks in flight for this request */
    int32_t decided;         /* the terminal transition: 0 → 1 exactly once, under the lock (while
                                a dispatch lease holds the request, its lease word decides) */
    int32_t status;          /* final status, written by the winner of `decided` */
    qlease *lease;           /* the dispatch lease whose handler is running this request, or NULL */
    void *ctx;
    uint64_t key, owner;
    int64_t deadline, t_submit;
    qlink link;              /* pending FIFO, lane FIFO, or running list */
    qlink age;               /* queue-wide list of queued requests, oldest first (unused when
                                age_is_fifo: the FIFO list is that order) */
    qlink olink;             /* owner group list */
    qlink order;             /* dispatch_order (in-order completion) */
    uint8_t held;            /* released, waiting for earlier dispatches (in-order completion) */
    tnode tn;                /* keyed orders */
    size_t heap_pos;         /* index in the deadline heap or NO_HEAP */
    qlane *lane;
    qowner *og;
    struct qreq *done_next, *notify_next, *stop_next;
    uint32_t next_free;
} qreq;

/* KEYED_SERIAL: one lane per key in use. */
struct qlane {
    tnode tn;     /* in irpk_queue.lanes, key = lane key */
    qlink reqs;   /* queued requests of this key, FIFO */
    qlink ready;  /* on irpk_queue.ready_lanes when !busy && reqs non-empty */
    bool busy;    /* one request of this key is running */
    uint32_t refs;/* reservations that will attach to this lane */
};

struct qowner {
    tnode tn;     /* in irpk_queue.owners, key = owner tag */
    qlink reqs;   /* live requests with this owner, oldest first */
    uint32_t refs;
};

enum queue_op { OP_NONE = 0, OP_STOP, OP_DRAIN, OP_PURGE };

/* Keyed orders at small depth: the key kept inline next to the request (its seq, needed only
 * to order equal keys, is read from the request), in no particular order (see keyed_insert). */
typedef struct qsmall {
    uint64_t key;
    qreq *r;
} qsmall;

/* ------------------------------------------------------------------ leases
 *
 * A lease lets one callback end without taking the queue lock again. It is granted under the
 * lock (the callback is counted in cb_active from then on); when the callback returns, its
 * thread flips the lease word to L_RET with one CAS and leaves. The next lock holder settles the
 * lease (the bookkeeping the old "re-lock after every callback" did: cb_active--, slot release,
 * running slot release). Anyone who, under the lock, needs the holder to come back through the
 * lock instead — work it must run, a stop/drain/purge waiting for callbacks, a waiter — sets
 * L_SLOW ("poke"); then the holder's CAS fails and it takes the lock and settles the lease
 * itself. Either the poke sees L_RET (and the poker settles) or the holder sees L_SLOW: one CAS
 * against one fetch_or on the same word, so nothing is missed.
 *
 * A dispatch lease also carries the terminal transition of its request while the handler runs:
 * irpk_req_complete from inside that on_dispatch sets L_DONE with one CAS (no lock), and every
 * locked path that wants to end, move or notify the request first flips the same word
 * (L_DETACHED: taken over; L_CANCEL: a cancel notification is pending) — both fail once L_DONE
 * is set, and the handler's CAS fails once L_DETACHED is set. Exactly one of them wins. */
enum lease_kind { LK_DISPATCH = 1, LK_COMPLETE = 2 };
enum lease_bits {
    L_HELD = 1,     /* the holder is inside the callback */
    L_DONE = 2,     /* dispatch: the handler completed the request in its frame (status below) */
    L_CANCEL = 4,   /* dispatch: a cancel notification was queued before L_DONE */
    L_DETACHED = 8, /* dispatch: a locked path took the request over (complete/requeue/forward) */
    L_SLOW = 16,    /* the holder must come back through the lock when the callback returns */
    L_RET = 32,     /* the callback returned without the lock; settle pending */
};
#define LEASE_MAX 8

struct qlease {
    union {
        struct {
            volatile int32_t w; /* lease_bits; plain writes only while no holder exists */
            uint8_t kind;       /* enum lease_kind, under the lock */
            int32_t status;     /* dispatch: the in-frame status, written before L_DONE */
            qreq *r;            /* under the lock */
        };
        char line[64]; /* one lease per cache line: holders on different CPUs do not collide */
    };
};

/* The per-thread record of a dispatch loop running for one queue (plat_self()->ext); the
 * frames of one thread form a stack, one per queue at most. While the loop runs a leased
 * on_dispatch, h/lease name that request, and the handler's in-frame completion fills done. */
typedef struct qframe {
    irpk_queue *q;
    struct qframe *up;
    irpk_req_handle h;
    qlease *lease;
    bool done;     /* the handler completed h in this frame */
    bool deliver;  /* ... and no cancel notification was pending: deliver it after the handler */
} qframe;

#define SMALL_MAX 16u /* keyed orders: an unordered array up to this depth */
#define SLOT_CHUNK 1024u
#define SLOT_MAX (1u << 24) /* handle = generation << 24 | slot index */
#define NO_SLOT UINT32_MAX

struct irpk_queue {
    volatile plat_lockword lock; /* the queue's only lock; never held across a callback; taken
                                    with q_acquire/q_release only */
    uint8_t lock_irql;           /* explore mode: the holder's IRQL before it took the lock;
                                    PLAT_LOCK_NO_RAISE unless an IRP adapter's queue (set before
                                    first use) */
    irpk_queue_config cfg;
    char name[32];
    unsigned limit; /* running limit for dispatching modes */

    /* slot table: chunks never move, the directory grows under the lock */
    qreq **chunks;
    uint32_t nchunks, dir_cap, free_head;

    /* pending requests: exactly one of these structures is used, by mode/order (keyed orders:
     * the small unordered array while the treap is empty, see keyed_insert) */
    qlink fifo;
    tnode *tree;
    qsmall small[SMALL_MAX];
    unsigned n_small, small_hint; /* small_hint: index of the last pend_pick_key result */
    uint64_t seq, cursor;
    uint32_t rng;
    int64_t t0;
    tnode *lanes;
    qlink ready_lanes;

    tnode *owners;
    qlink running;
    qlink dispatch_order; /* in_order_completion: dispatched requests, dispatch order */
    qlink age;
    size_t queued, running_n, acked_n, live, reserved;

    /* deadlines: binary min-heap */
    qreq **heap;
    size_t heap_n, heap_cap;

    /* control */
    bool accepting, dispatch_on, closed, above_high, ready_pending;
    int wm_pending; /* 0 none, 1 reached high, 2 fell to low */
    enum queue_op op;
    irpk_done_fn op_done;
    void *op_ctx;
    unsigned cb_active; /* callbacks of this queue running right now (any thread), held leases
                           included */
    uint32_t lease_mask; /* leases[i] in use */
    bool lease_ok;       /* the configuration allows dispatch leases (no log, no in-order) */
    bool plain;          /* lease_ok, no watermarks, no lanes, no aging: pend_insert/remove's short
                            path (the general one gives the same result) */
    bool timed;          /* read the clock per submit (config.timed or aging) */
    bool age_is_fifo;    /* FIFO order without lanes: q->fifo is oldest-first (a requeue to the
                            head is the oldest again in both), so q->age is not kept */
    qreq *done_head, *done_tail, *notify_head, *notify_tail, *stop_head, *stop_tail;
    volatile uint32_t op_word, space_word, release_word;
    unsigned op_waiters, space_waiters, release_waiters;
    unsigned n_waiting; /* all waiters (quiet() reads one word instead of three) */

    /* timer thread (lazily started, per queue) */
    plat_thread *timer;
    bool timer_quit;
    volatile uint32_t timer_word;

    /* statistics */
    uint64_t n_submitted, n_completed, n_cancelled, n_timed_out, n_dropped, n_rejected, n_fwd;
    size_t max_queued_seen;

    /* event log ring */
    irpk_queue_event *log;
    size_t log_n, log_head;
    uint64_t log_seq;

    qlease leases[LEASE_MAX];
};

/* ------------------------------------------------------------------ core (queue_core.c) */

static inline irpk_req_handle req_handle(const qreq *r) { return (r->gen << 24) | r->idx; }
qreq *slot_alloc(irpk_queue *q);
void slot_free(irpk_queue *q, qreq *r);
/* Live request named by h, or NULL; *gone says the handle once named a request of q. */
qreq *req_lookup(irpk_queue *q, irpk_req_handle h, bool *gone);

qlane *lane_get(irpk_queue *q, uint64_t key);
void lane_update(irpk_queue *q, qlane *l, bool front);
qowner *owner_get(irpk_queue *q, uint64_t owner);
void owner_put(irpk_queue *q, qowner *o);

int reserve(irpk_queue *q, const irpk_req_opts *o, qreq **out);
/* A submission in two steps (the IRP adapter arms its cancel routine in between). With the lock
 * held: admission, deadline timer and reservation; on failure the lock is released. Then
 * submit_publish makes the request QUEUED (the caller leaves with q_leave), or unreserve gives
 * the reservation back. */
int submit_reserve(irpk_queue *q, const irpk_req_opts *o, qreq **r, bool *drop);
void submit_publish(irpk_queue *q, qreq *r, bool drop);
/* The RUNNING request named by h (taken over from its handler's lease), or why h cannot be
 * acted on by an executor: STALE, NOTOWNER (queued), ALREADY. */
int executor_lookup(irpk_queue *q, irpk_req_handle h, qreq **out);
void unreserve(irpk_queue *q, qreq *r);
void publish(irpk_queue *q, qreq *r);

/* The oldest queued request (drop-oldest, purge), or NULL. */
static inline qreq *oldest_queued(irpk_queue *q)
{
    qlink *h = q->age_is_fifo ? &q->fifo : &q->age;
    if (ql_empty(h)) return NULL;
    return q->age_is_fifo ? QL_ENTRY(h->next, qreq, link) : QL_ENTRY(h->next, qreq, age);
}
void pend_insert(irpk_queue *q, qreq *r, bool head);
void pend_remove(irpk_queue *q, qreq *r);
qreq *pend_pick(irpk_queue *q);
qreq *pend_pick_key(irpk_queue *q, uint64_t key);
void start_running(irpk_queue *q, qreq *r);
void stop_running(irpk_queue *q, qreq *r);
void order_leave(irpk_queue *q, qreq *r);
void tree_rekey(irpk_queue *q, qreq *r, uint64_t key);

bool decide(qreq *r, int32_t status);
void release(irpk_queue *q, qreq *r);
int executor_release(irpk_queue *q, qreq *r, int32_t status);
int executor_requeue(irpk_queue *q, qreq *r);
void cancel_queued(irpk_queue *q, qreq *r, int32_t status);
/* r decided and out of the pending/running structures, lock held: deliver its completion
 * (directly when nothing else is due) and release the lock. */
void release_and_leave(irpk_queue *q, qreq *r);
/* Cancel h with the lock held (the result of irpk_req_cancel); q_leave delivers. */
int cancel_locked(irpk_queue *q, irpk_req_handle h);
void cancel_request(irpk_queue *q, qreq *r, irpk_notify_reason why);

void heap_push(irpk_queue *q, qreq *r);
void heap_remove(irpk_queue *q, qreq *r);
int heap_reserve(irpk_queue *q);
int expire_due(irpk_queue *q, int64_t now);

void flush(irpk_queue *q);
void wait_word(irpk_queue *q, volatile uint32_t *w, unsigned *waiters);
static inline qframe **frame_top(void) { return (qframe **)&plat_self()->ext[PLAT_EXT_QUEUE]; }
qframe *frame_of(irpk_queue *q);
/* Called under the queue lock with the handle a submission will get, before anything of it is
 * visible; false abandons the submission (the IRP adapter: cancelled before it was queued). */
typedef bool (*submit_hook)(irpk_req_handle h, void *ctx);
#define FAST_REFUSED 2
/* Take q's lock and try the submit fast path: 1 = submitted (lock released), FAST_REFUSED =
 * the hook abandoned it (lock released), 0 = not taken (lock held, returned leases settled),
 * or IRPK_QE_CLOSED (lock released). */
int fast_submit(irpk_queue *q, const irpk_req_opts *o, irpk_req_handle *out, submit_hook hook,
                void *hook_ctx);
bool decided_or_done(const qreq *r);
#define LEASE_FALLBACK 100 /* lease_complete: take the locked path */

/* The handler completes its own request from inside on_dispatch (no lock): one CAS sets L_DONE
 * unless a locked path detached the request first. Returns 0, IRPK_QE_ALREADY, or
 * LEASE_FALLBACK (detached: the locked path decides what the call means now). Inline: it is
 * half of the per-request fast path. */
static inline int lease_complete(qframe *f, int32_t status)
{
    if (f->done) return IRPK_QE_ALREADY;
    qlease *l = f->lease;
    l->status = status; /* read by others only after they observe L_DONE */
    int32_t old = L_HELD;
    for (;;) {
        int32_t seen = plat_cas32(&l->w, old, old | L_DONE);
        if (seen == old) break;
        if (seen & L_DETACHED) return LEASE_FALLBACK;
        old = seen; /* L_SLOW / L_CANCEL arrived meanwhile: keep them */
    }
    f->done = true;
    f->deliver = !(old & L_CANCEL); /* a pending cancel notification delivers it at its end */
    return 0;
}
void stop_offer(irpk_queue *q, qreq *r);
int lease_detach(irpk_queue *q, qreq *r);
bool lease_mark_cancel(irpk_queue *q, qreq *r);
void leases_settle_returned(irpk_queue *q);
int timer_ensure(irpk_queue *q);
int begin_op(irpk_queue *q, enum queue_op op, irpk_done_fn fn, void *ctx);
bool in_own_callback(irpk_queue *q);
void wake_word(volatile uint32_t *w, unsigned waiters);
void log_append(irpk_queue *q, irpk_queue_event_type t, irpk_req_handle h, int32_t status);
static inline void log_event(irpk_queue *q, irpk_queue_event_type t, irpk_req_handle h,
                             int32_t status)
{
    if (q->cfg.log_capacity) log_append(q, t, h, status); /* inline test: off costs nothing */
}

/* An IRP adapter's queue lock is taken from PASSIVE code and from DPCs: under the explorer its
 * holder runs at DISPATCH_LEVEL, as an NT spin lock's does (plat_lock_acquire_cpu), so no DPC
 * of its vCPU can preempt it and then spin on it. Other queues serve plain threads, which can
 * be preempted holding the lock: the explorer keeps exploring that. Natively: the plain lock. */
static inline void q_acquire(irpk_queue *q)
{
    plat_lock_acquire_cpu(&q->lock, &q->lock_irql);
}
static inline void q_release(irpk_queue *q)
{
    plat_lock_release_cpu(&q->lock, &q->lock_irql);
}

/* Take q's lock and settle the leases that returned meanwhile. Every lock acquisition of the
 * queue goes through here (or q_enter), so a returned lease is never overlooked. */
static inline __attribute__((always_inline)) void q_lock(irpk_queue *q)
{
    q_acquire(q);
    if (!q->lease_mask) return;
    /* The common case inline: the one completion lease the last direct delivery left (a cancel
     * of a queued request, a completion of a retrieved one) has returned. Exactly L_RET: its
     * holder's CAS wrote that and nothing else (a poke after it settles under the lock). */
    qlease *l = &q->leases[0];
    if (q->lease_mask == 1 && plat_load32(&l->w) == L_RET && l->kind == LK_COMPLETE) {
        slot_free(q, l->r); /* the callback has returned: the handle may go stale */
        q->lease_mask = 0;
        l->r = NULL;
        l->w = 0; /* plain: the holder has left */
        q->cb_active--;
        return;
    }
    leases_settle_returned(q);
}
/* Lock q and check it is usable; returns 0 with the lock held or an error without it. Inline:
 * every API call starts here. */
static inline __attribute__((always_inline)) int q_enter(irpk_queue *q)
{
    if (!q) return IRPK_QE_INVAL;
    q_lock(q);
    if (q->closed) {
        q_release(q);
        return IRPK_QE_CLOSED;
    }
    return 0;
}
/* Nothing a returning callback would have to do under the lock: no callback work pending,
 * nothing waiting to be dispatched, no stop/drain/purge, nobody waiting. Only then may a
 * callback end lock-free on a lease, and only otherwise are held leases poked. */
static inline __attribute__((always_inline)) uintptr_t callback_work(const irpk_queue *q)
{
    /* One OR of everything that must be zero: this is on the per-request path. */
    return (uintptr_t)q->notify_head | (uintptr_t)q->stop_head | (uintptr_t)q->done_head |
           (uintptr_t)q->wm_pending | (uintptr_t)q->ready_pending | (uintptr_t)q->op |
           (uintptr_t)q->n_waiting;
}
static inline __attribute__((always_inline)) bool quiet(const irpk_queue *q)
{
    return !callback_work(q) && !(q->queued && q->dispatch_on && q->cfg.mode != IRPK_QUEUE_MANUAL);
}
/* quiet(), or the only thing it saw is queued requests with no room to run them and no lease
 * whose holder could make room without the lock: then the loop would find nothing to do and
 * poke nobody (a submit to a busy SEQUENTIAL/PARALLEL queue, e.g. every IRP queued behind a
 * running one). A held lease needs the loop's poke: its holder's completion makes room. */
static inline __attribute__((always_inline)) bool nothing_to_run(const irpk_queue *q)
{
    return quiet(q) || (q->running_n >= q->limit && !q->lease_mask && !callback_work(q));
}
/* q_leave when there is something to run or someone to poke. */
void q_leave_work(irpk_queue *q);
/* Run the dispatch loop (its last callback may end lock-free on a lease) and release the lock.
 * Inline: the common end of every call is the plain release. */
static inline __attribute__((always_inline)) void q_leave(irpk_queue *q)
{
    if (nothing_to_run(q))
        q_release(q);
    else
        q_leave_work(q);
}

#endif
