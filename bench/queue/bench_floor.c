/* bench_floor: how fast can "cancel a queued request" be at all, with the guarantees issue 8
 * asks of irpkit's queue? bench_queue's cancel row has irpkit's queue at ~0.55x of a pthread
 * mutex + condvar queue. This program measures, in one process and interleaved, the same loop
 * (submit, cancel by handle, completion callback) on:
 *
 *   1. the mutex + condvar queue (bench_queue's baseline: a node pointer, no handle, the
 *      callback runs after the unlock, nothing tracks it);
 *   2. FLOOR: the least code that still gives the guarantees the queue's cancel needs, and
 *      nothing else (one queue, FIFO, no options, no stop/drain/close paths, no checks):
 *        - a generation-tagged handle (slot index + generation; a stale handle never reaches
 *          a recycled request) and a request state, checked under the queue's lock;
 *        - the completion callback runs with the lock dropped, counted for the lifetime
 *          barrier (close must wait for it) and with the slot kept until it returns (a
 *          blocking cancel waits for exactly that) — one lease word, granted under the lock,
 *          returned with one CAS (the CAS is what lets a closer or waiter ask the holder to come
 *          back, see queue_internal.h);
 *        - a per-thread callback frame, so a call from the callback into the queue is seen to
 *          come from inside it (no recursion, no self-deadlock);
 *   3. FLOOR without the lease CAS (a plain store): NOT correct (a closer's request to come back
 *      could be lost); it shows what the completion handshake itself costs;
 *   4. irpkit's queue (MANUAL mode, as bench_queue's cancel row).
 *
 * The FLOOR rows use irpkit's platform lock (a CAS to take, a plain store to release: about
 * 3 ns a pair here against 8 ns for a pthread mutex's) and the same callback. If FLOOR is
 * not faster than the baseline, no implementation with these guarantees is: the cancel row's
 * "fastest of the four" goal then asks for less than the queue must do.
 *
 * A second section does the same for bench_queue's keyed row at depth 10 (insert a random key,
 * take "first key >= k, wrapping", complete it), where the row to beat is StartIo's device
 * queue (bench_irp.c's, the data structure alone): the floor there is three lock round trips
 * (submit, retrieve, complete by handle), an unordered inline-key array with one scan per pick,
 * and the completion on the lease. */
#include "baseline.h"
#include "bench_irp.h"
#include "irpkit/queue.h"
#include "platform/platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile long completions;
static void on_complete(void *q, uint64_t h, int32_t status, void *ctx)
{
    (void)q, (void)h, (void)status, (void)ctx;
    completions++; /* benchmark counter */
}
static void (*volatile complete_cb)(void *, uint64_t, int32_t, void *) = on_complete;

/* ------------------------------------------------------------------ the floor queue */

typedef struct flink {
    struct flink *prev, *next;
} flink;

typedef struct freq {
    flink link;
    uint64_t gen, key, seq;
    uint32_t idx, next_free;
    uint8_t state; /* 0 free, 1 queued, 2 done (completion running) */
    void *ctx;
    /* "+ checks" rows: what irpkit keeps per request besides (owner group, deadline-heap
     * position, pins, forward flag, terminal decision, dispatch lease, option values) */
    void *og, *lease;
    size_t heap_pos;
    uint16_t pins;
    uint8_t forwarded, decided;
    uint64_t owner;
    int64_t deadline, t_submit;
    uint8_t unusual; /* one-word rows: og | pins | forward | deadline, kept by the slow paths */
} freq;

typedef struct fframe {
    void *q;
    struct fframe *up;
} fframe;

enum { F_FREE = 0, F_QUEUED = 1, F_DONE = 2, F_RUNNING = 3, L_HELD = 1, L_RET = 32, SLOTS = 1024 };
#define NO_HEAP ((size_t)-1)

typedef struct fsmall {
    uint64_t key;
    freq *r;
} fsmall;

/* What irpkit's queue must also look at on its per-request path, for the features issue 8 asks
 * for besides a cancel's guarantees: pending callback work (notifications, stop dispositions,
 * completions, watermarks, the ready callback, a stop/drain/purge) and waiters, closed / not
 * accepting / stopped, the ready callback of an empty queue, the event log, statistics and the
 * optional clock. All zero (nothing unusual) in these rows: the tests are made, never taken —
 * the "+ checks" rows measure exactly their cost. */
typedef struct fchecks {
    void *notify_head, *stop_head, *done_head;
    int wm_pending, op;
    bool ready_pending, closed, not_accepting, stopped, timed;
    unsigned n_waiting;
    void (*on_ready)(void);
    size_t log_capacity, max_queued_seen;
    uint64_t n_completed, n_timed_out, n_dropped;
} fchecks;

typedef struct fopts { /* irpk_req_opts' shape */
    void *ctx;
    uint64_t key, owner;
    int64_t deadline;
} fopts;

typedef struct floorq {
    volatile plat_lockword lock;
    freq *slots;
    uint32_t free_head;
    flink fifo;
    size_t queued, live;
    uint64_t submitted, cancelled;
    unsigned cb_active;       /* callbacks running: the lifetime barrier */
    int leased;               /* the one completion lease is in use */
    volatile int32_t lease_w; /* L_HELD while the callback runs, L_RET once it returned */
    freq *lease_r;
    int plain_return; /* row 3: return the lease with a store instead of the CAS */
    fsmall small[16]; /* keyed section: the pending requests, unordered (as irpkit's array) */
    unsigned n_small;
    uint64_t seq, completed;
    fchecks c;
    /* One-word rows: everything fchecks tests, folded into one word the slow paths would keep
     * (set when any of it becomes non-zero, recomputed when it clears) — a design irpkit does not
     * have; the rows show what it would buy. */
    uint32_t unusual;
} floorq;

static fframe **frame_top(void) { return (fframe **)&plat_self()->ext[PLAT_EXT_USER3]; }

#define HOT static inline __attribute__((always_inline))

/* A returned lease: the callback is over, the slot may go (its generation bump makes every
 * handle of the finished request stale). */
HOT void settle(floorq *q)
{
    if (!q->leased || !(plat_load32(&q->lease_w) & L_RET)) return;
    freq *r = q->lease_r;
    r->gen++;
    r->state = F_FREE;
    r->next_free = q->free_head;
    q->free_head = r->idx;
    q->live--;
    q->leased = 0;
    q->cb_active--;
}

/* Every operation starts by taking the lock and settling the last returned lease. */
HOT void fenter(floorq *q)
{
    plat_lock_acquire(&q->lock);
    settle(q);
}
HOT uint64_t fhandle(const freq *r) { return r->gen << 24 | r->idx; }

/* ---- the "+ checks" tests (X: the row makes them; they never fire here) */

HOT int fwork(const floorq *q) /* callback work pending or a waiter: irpkit's callback_work */
{
    const fchecks *c = &q->c;
    return ((uintptr_t)c->notify_head | (uintptr_t)c->stop_head | (uintptr_t)c->done_head |
            (uintptr_t)c->wm_pending | (uintptr_t)c->ready_pending | (uintptr_t)c->op |
            (uintptr_t)c->n_waiting) != 0;
}
HOT int f_in_callback(const floorq *q) /* called from one of q's own callbacks? */
{
    for (const fframe *f = *frame_top(); f; f = f->up)
        if (f->q == q) return 1;
    return 0;
}
/* Submit: open and accepting, nothing pending, no ready callback due, no owner or deadline (the
 * general path otherwise); after the insert: option fields, statistics, clock, log. */
HOT void check_submit(floorq *q, const fopts *o)
{
    if (q->c.closed | q->c.not_accepting | fwork(q) | (!q->queued & (q->c.on_ready != NULL)) |
        ((o->owner | (uint64_t)o->deadline) != 0))
        abort(); /* the general path: never in this benchmark */
}
HOT void note_submit(floorq *q, freq *r, const fopts *o, const int X)
{
    r->key = o->key;
    r->owner = 0;
    r->deadline = 0;
    if (q->queued > q->c.max_queued_seen) q->c.max_queued_seen = q->queued;
    if (X == 2) return; /* the clock and the log are in the word */
    r->t_submit = q->c.timed ? plat_now_ns() : 0;
    if (q->c.log_capacity) abort();
}
/* Direct delivery of a decided request: nothing pending, no owner group, deadline, pin or
 * forward, not from one of q's callbacks, no log; the decision made once; the final count. */
HOT void check_deliver(floorq *q, freq *r, int32_t status)
{
    if (fwork(q) | ((uintptr_t)r->og | r->pins | r->forwarded) | (r->heap_pos != NO_HEAP) |
        f_in_callback(q) | (q->c.log_capacity != 0) | r->decided)
        abort(); /* the general path: never in this benchmark */
    r->decided = 1;
    if (status == -1)
        q->cancelled++;
    else if (status == -2)
        q->c.n_timed_out++;
    else if (status == -3)
        q->c.n_dropped++;
    else
        q->c.n_completed++;
    r->decided = 0; /* the slot goes back clean */
}

/* The one-word design (X == 2): one test of the queue's word, the request's byte, and "no
 * callback frame on this thread" (any frame: the general path, which finds out whose). */
HOT void check_submit1(floorq *q, const fopts *o)
{
    if (q->unusual | ((o->owner | (uint64_t)o->deadline) != 0)) abort();
}
HOT void check_deliver1(floorq *q, freq *r)
{
    if (q->unusual | r->unusual | r->decided | (*frame_top() != NULL)) abort();
}

/* ---- the cancel row */

/* A submit's start (lock, the row's checks, a free slot) and end (counts, the row's option
 * fields and statistics, the handle, unlock); the pending structure is the caller's. */
HOT freq *submit_begin(floorq *q, const fopts *o, const int X)
{
    fenter(q);
    if (X == 1) check_submit(q, o);
    if (X == 2) check_submit1(q, o);
    freq *r = &q->slots[q->free_head];
    q->free_head = r->next_free;
    r->state = F_QUEUED;
    r->ctx = o->ctx;
    return r;
}
HOT uint64_t submit_end(floorq *q, freq *r, const fopts *o, const int X)
{
    q->queued++;
    q->submitted++;
    q->live++;
    if (X) note_submit(q, r, o, X);
    uint64_t h = fhandle(r);
    plat_lock_release(&q->lock);
    return h;
}

HOT uint64_t submit_impl(floorq *q, const fopts *o, const int X)
{
    freq *r = submit_begin(q, o, X);
    r->link.prev = q->fifo.prev;
    r->link.next = &q->fifo;
    q->fifo.prev->next = &r->link;
    q->fifo.prev = &r->link;
    return submit_end(q, r, o, X);
}
static __attribute__((noinline)) uint64_t floor_submit(floorq *q, const fopts *o)
{
    return submit_impl(q, o, 0);
}
static __attribute__((noinline)) uint64_t floor_submit_x(floorq *q, const fopts *o)
{
    return submit_impl(q, o, 1);
}

/* r leaves (cancelled or completed), lock held: the terminal transition, then its completion
 * callback with the lock dropped, on the lease. Returns with the lock released. */
HOT void deliver(floorq *q, freq *r, uint64_t h, int32_t status)
{
    r->state = F_DONE; /* the terminal transition: under the lock, once */
    q->leased = 1;     /* the completion lease, counted for the lifetime barrier */
    q->lease_r = r;
    q->lease_w = L_HELD;
    q->cb_active++;
    fframe **top = frame_top(), me = {q, *top};
    *top = &me;
    void *ctx = r->ctx;
    plat_lock_release(&q->lock);
    complete_cb(q, h, status, ctx);
    *top = me.up;
    if (q->plain_return)
        plat_store32(&q->lease_w, L_RET);
    else if (plat_cas32(&q->lease_w, L_HELD, L_RET) != L_HELD)
        abort(); /* someone asked us back: not in this benchmark */
}

HOT int cancel_impl(floorq *q, uint64_t h, const int X)
{
    fenter(q);
    if (X == 1 && q->c.closed) abort();
    uint32_t idx = (uint32_t)(h & ((1u << 24) - 1));
    freq *r = idx < SLOTS ? &q->slots[idx] : NULL;
    if (!r || r->gen != h >> 24 || r->state != F_QUEUED || q->leased) {
        plat_lock_release(&q->lock);
        return -1; /* stale / not queued (the benchmark never gets here) */
    }
    r->link.prev->next = r->link.next;
    r->link.next->prev = r->link.prev;
    q->queued--;
    if (X == 1)
        check_deliver(q, r, -1);
    else if (X == 2)
        check_deliver1(q, r), q->cancelled++;
    else
        q->cancelled++;
    deliver(q, r, h, -1);
    return 0;
}
static __attribute__((noinline)) int floor_cancel(floorq *q, uint64_t h) { return cancel_impl(q, h, 0); }
static __attribute__((noinline)) int floor_cancel_x(floorq *q, uint64_t h) { return cancel_impl(q, h, 1); }
static __attribute__((noinline)) uint64_t floor_submit_1(floorq *q, const fopts *o)
{
    return submit_impl(q, o, 2);
}
static __attribute__((noinline)) int floor_cancel_1(floorq *q, uint64_t h) { return cancel_impl(q, h, 2); }

/* ------------------------------------------------------------------ keyed depth 10: the floor
 *
 * bench_queue's keyed row (submit a random key, take "first key >= k, wrapping", complete it)
 * with the same guarantees and nothing else: three lock round trips (submit, retrieve, complete
 * by handle), the pending requests in an unordered inline-key array picked by one scan for the
 * least (key - k) mod 2^64 (irpkit's small-depth structure), the completion on the lease. */

HOT uint64_t submit_key_impl(floorq *q, const fopts *o, const int X)
{
    freq *r = submit_begin(q, o, X);
    r->key = o->key;
    r->seq = ++q->seq;
    q->small[q->n_small++] = (fsmall){o->key, r};
    return submit_end(q, r, o, X);
}

HOT uint64_t retrieve_key_impl(floorq *q, uint64_t from, const int X)
{
    fenter(q);
    /* + checks: open, dispatching, nothing pending at the end (irpkit's q_leave) */
    if (X == 1 && (q->c.closed | q->c.stopped)) abort();
    if (X == 2 && q->unusual) abort();
    unsigned n = q->n_small, m = 0;
    if (!n) abort(); /* never empty in this benchmark */
    uint64_t best = q->small[0].key - from;
    for (unsigned i = 1; i < n; i++) {
        uint64_t d = q->small[i].key - from;
        if (d > best || (d == best && q->small[i].r->seq > q->small[m].r->seq)) continue;
        best = d;
        m = i;
    }
    freq *r = q->small[m].r;
    q->small[m] = q->small[--q->n_small];
    q->queued--;
    r->state = F_RUNNING;
    if (X == 1 && (fwork(q) | (q->c.log_capacity != 0))) abort();
    uint64_t h = fhandle(r);
    plat_lock_release(&q->lock);
    return h;
}

HOT int complete_impl(floorq *q, uint64_t h, const int X)
{
    fenter(q);
    if (X == 1 && q->c.closed) abort();
    uint32_t idx = (uint32_t)(h & ((1u << 24) - 1));
    freq *r = idx < SLOTS ? &q->slots[idx] : NULL;
    if (!r || r->gen != h >> 24 || r->state != F_RUNNING || q->leased || (X && r->lease)) {
        plat_lock_release(&q->lock);
        return -1; /* stale / not running (the benchmark never gets here) */
    }
    if (X == 1)
        check_deliver(q, r, 0);
    else if (X == 2)
        check_deliver1(q, r), q->c.n_completed++;
    else
        q->completed++;
    deliver(q, r, h, 0);
    return 0;
}

#define KEYED_OPS(sfx, X)                                                                        \
    static __attribute__((noinline)) uint64_t floor_submit_key##sfx(floorq *q, const fopts *o)   \
    {                                                                                            \
        return submit_key_impl(q, o, X);                                                         \
    }                                                                                            \
    static __attribute__((noinline)) uint64_t floor_retrieve_key##sfx(floorq *q, uint64_t k)     \
    {                                                                                            \
        return retrieve_key_impl(q, k, X);                                                       \
    }                                                                                            \
    static __attribute__((noinline)) int floor_complete##sfx(floorq *q, uint64_t h)              \
    {                                                                                            \
        return complete_impl(q, h, X);                                                           \
    }
KEYED_OPS(, 0)
KEYED_OPS(_x, 1)
KEYED_OPS(_1, 2)

static floorq *floor_new(int plain_return)
{
    floorq *q = calloc(1, sizeof *q);
    if (!q || !(q->slots = calloc(SLOTS, sizeof *q->slots))) abort();
    for (uint32_t i = SLOTS; i-- > 0;) {
        q->slots[i].idx = i;
        q->slots[i].gen = 1;
        q->slots[i].heap_pos = NO_HEAP;
        q->slots[i].next_free = q->free_head;
        q->free_head = i;
    }
    q->fifo.prev = q->fifo.next = &q->fifo;
    q->plain_return = plain_return;
    return q;
}

/* ------------------------------------------------------------------ the rows */

static double ns_since(int64_t t0, long n) { return (double)(plat_now_ns() - t0) / (double)n; }

/* kind 0: FLOOR; 1: FLOOR with the lease returned by a store (unsafe); 2: FLOOR + checks;
 * 3: FLOOR + the one-word checks */
static double row_floor(int kind, long n)
{
    floorq *q = floor_new(kind == 1);
    fopts o = {0};
    int64_t t0 = plat_now_ns();
    if (kind == 2)
        for (long i = 0; i < n; i++) floor_cancel_x(q, floor_submit_x(q, &o));
    else if (kind == 3)
        for (long i = 0; i < n; i++) floor_cancel_1(q, floor_submit_1(q, &o));
    else
        for (long i = 0; i < n; i++) floor_cancel(q, floor_submit(q, &o));
    double ns = ns_since(t0, n);
    if (q->cancelled != (uint64_t)n || q->queued) abort();
    free(q->slots);
    free(q);
    return ns;
}

static void base_done(bnode *n)
{
    (void)n;
    completions++;
}

static void irpk_done(irpk_queue *q, irpk_req_handle h, int32_t s, void *r, void *c)
{
    (void)q, (void)h, (void)s, (void)r, (void)c;
    completions++;
}

static double row_irpkit(long n)
{
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = IRPK_QUEUE_MANUAL;
    c.on_complete = irpk_done;
    irpk_queue *q = NULL;
    if (irpk_queue_create(&c, &q) != 0) abort();
    irpk_req_opts o = {0};
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < n; i++) {
        irpk_req_handle h;
        irpk_queue_submit(q, &o, &h);
        if (irpk_req_cancel(q, h) != IRPK_CANCEL_REMOVED) abort();
    }
    double ns = ns_since(t0, n);
    irpk_queue_free(q);
    return ns;
}

/* ------------------------------------------------------------------ keyed depth 10 rows
 *
 * bench_queue's keyed row at depth 10, the same key sequence for every row: the mutex+condvar
 * sorted list (its baseline), StartIo's device queue (KeInsertByKeyDeviceQueue /
 * KeRemoveByKeyDeviceQueue, bench_irp.c: the data structure alone, no completion), the floor
 * above, and irpkit's MANUAL PRIORITY queue (submit, retrieve_key, complete). */

#define KEY_RANGE (1u << 20)
static uint64_t krng;
static uint64_t krnd(void)
{
    krng ^= krng << 13;
    krng ^= krng >> 7;
    krng ^= krng << 17;
    return krng;
}

static double keyed_baseline(long depth, long ops)
{
    mcq *m = mcq_new(1);
    bnode *v = calloc((size_t)depth + 1, sizeof *v);
    if (!m || !v) abort();
    krng = 88172645463325252ull;
    for (long i = 0; i < depth; i++) {
        v[i].key = krnd() % KEY_RANGE;
        mcq_push(m, &v[i]);
    }
    double ns = mcq_keyed_loop_ns(m, &v[depth], ops, KEY_RANGE, krnd, base_done);
    mcq_free(m);
    free(v);
    return ns;
}

static double keyed_floor(long depth, long ops, int checks)
{
    floorq *q = floor_new(0);
    fopts o = {0};
    krng = 88172645463325252ull;
    for (long i = 0; i < depth; i++) {
        o.key = krnd() % KEY_RANGE;
        floor_submit_key(q, &o);
    }
    int64_t t0 = plat_now_ns();
    if (checks == 1) {
        for (long i = 0; i < ops; i++) {
            o.key = krnd() % KEY_RANGE;
            floor_submit_key_x(q, &o);
            if (floor_complete_x(q, floor_retrieve_key_x(q, krnd() % KEY_RANGE))) abort();
        }
    } else if (checks == 2) {
        for (long i = 0; i < ops; i++) {
            o.key = krnd() % KEY_RANGE;
            floor_submit_key_1(q, &o);
            if (floor_complete_1(q, floor_retrieve_key_1(q, krnd() % KEY_RANGE))) abort();
        }
    } else {
        for (long i = 0; i < ops; i++) {
            o.key = krnd() % KEY_RANGE;
            floor_submit_key(q, &o);
            if (floor_complete(q, floor_retrieve_key(q, krnd() % KEY_RANGE))) abort();
        }
    }
    double ns = ns_since(t0, ops);
    if (q->completed + q->c.n_completed != (uint64_t)ops || q->queued != (size_t)depth) abort();
    free(q->slots);
    free(q);
    return ns;
}

static double keyed_irpkit(long depth, long ops)
{
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = IRPK_QUEUE_MANUAL;
    c.order = IRPK_ORDER_PRIORITY;
    c.on_complete = irpk_done;
    irpk_queue *q = NULL;
    if (irpk_queue_create(&c, &q) != 0) abort();
    irpk_req_opts o = {0};
    krng = 88172645463325252ull;
    for (long i = 0; i < depth; i++) {
        o.key = krnd() % KEY_RANGE;
        irpk_queue_submit(q, &o, NULL);
    }
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < ops; i++) {
        o.key = krnd() % KEY_RANGE;
        irpk_queue_submit(q, &o, NULL);
        irpk_req_handle h;
        if (irpk_queue_retrieve_key(q, krnd() % KEY_RANGE, &h) || irpk_req_complete(q, h, 0))
            abort();
    }
    double ns = ns_since(t0, ops);
    irpk_queue_purge_sync(q);
    irpk_queue_free(q);
    return ns;
}

static double keyed_startio(long depth, long ops)
{
    unsigned long long seed = 88172645463325252ull;
    return irp_keyed_ns(IRP_STARTIO, depth, ops, KEY_RANGE, &seed);
}

enum { NROWS = 12, PER_SECTION = 6 };

static double run_row(int i, long n, long kops)
{
    switch (i) {
    case 0: return mcq_cancel_loop_ns(n, base_done);
    case 1: case 2: case 3: case 4: return row_floor(i - 1, n);
    case 5: return row_irpkit(n);
    case 6: return keyed_baseline(10, kops);
    case 7: return keyed_startio(10, kops);
    case 8: case 9: case 10: return keyed_floor(10, kops, i - 8);
    default: return keyed_irpkit(10, kops);
    }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    /* Optional third argument: run one row only (for whole-process A/B timings of two rows). */
    static const char *const rows[NROWS] = {
        "baseline",       "floor",         "floor-store", "floor-checks", "floor-word", "irpkit",
        "keyed-baseline", "keyed-startio", "keyed-floor", "keyed-floor-checks", "keyed-floor-word",
        "keyed-irpkit"};
    int only = -1;
    if (argc > 3)
        for (int i = 0; i < NROWS; i++)
            if (!strcmp(argv[3], rows[i])) only = i;
    if (n <= 0 || reps <= 0 || (argc > 3 && only < 0)) {
        fprintf(stderr, "usage: bench_floor [requests > 0] [repetitions > 0] [row]; rows:");
        for (int i = 0; i < NROWS; i++) fprintf(stderr, " %s", rows[i]);
        fprintf(stderr, "\n");
        return 2;
    }
    if ((only < 0 || only == 7) && irp_bench_init() != 0) { /* StartIo's device queue row */
        fprintf(stderr, "bench_floor: cannot initialise the I/O runtime\n");
        return 1;
    }
    static const char *const names[NROWS] = {
        "mutex+condvar queue",        "FLOOR (lease CAS)",       "FLOOR, no lease CAS (unsafe)",
        "FLOOR + the queue's checks", "FLOOR + one-word checks", "irpkit queue",
        "mutex+condvar sorted list",  "StartIo device queue",    "FLOOR (keyed)",
        "FLOOR (keyed) + checks",     "FLOOR (keyed) + one word", "irpkit queue"};
    double best[NROWS];
    for (int i = 0; i < NROWS; i++) best[i] = 1e300;
    long kops = n / 4 > 0 ? n / 4 : 1; /* a keyed op is ~3 cancel ops */
    for (int r = 0; r < reps; r++) /* interleaved: load changes hit every row */
        for (int i = 0; i < NROWS; i++) {
            if (only >= 0 && i != only) continue;
            double t = run_row(i, n, kops);
            if (t < best[i]) best[i] = t;
        }
    for (int sec = 0; sec < 2; sec++) {
        int lo = sec * PER_SECTION;
        if (only >= 0 && (only < lo || only >= lo + PER_SECTION)) continue;
        if (sec == 0)
            printf("cancel a queued request (submit + cancel + completion), %ld requests, best of "
                   "%d\n", n, reps);
        else
            printf("keyed depth 10 (insert + next key >= k wrapping + complete), %ld ops, best of "
                   "%d\n", kops, reps);
        for (int i = lo; i < lo + PER_SECTION; i++) {
            if (only >= 0 && i != only) continue;
            printf("  %-30s %7.1f ns/op", names[i], best[i]);
            if (only < 0) printf("  %5.2fx%s", best[lo] / best[i], i == lo ? "  (baseline)" : "");
            printf("\n");
        }
    }
    if (only < 0)
        printf("FLOOR = the least work with a generation handle, a lifetime-counted completion "
               "and a\ncallback frame; + checks = the tests the queue's other features need on "
               "each call,\nas irpkit makes them (made, never taken); + one word = the same "
               "folded into one\nqueue word and one request byte; ratios > 1 are faster than the "
               "section's first row.\n");
    return 0;
}
