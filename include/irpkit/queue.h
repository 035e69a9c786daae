/* irpkit request queue — serialized asynchronous requests with exactly-once completion and
 * race-free cancellation by construction.
 *
 * Concepts (docs/queue.md has the walkthrough):
 *   - A queue owns its requests. Each request is named by a 64-bit generation-tagged handle
 *     (slot index + generation); a handle whose request has left the queue can never reach the
 *     slot's next occupant. Handles are per queue: every request call takes (queue, handle).
 *   - A request is QUEUED (waiting), RUNNING (dispatched: owned by a handler or by the caller of
 *     irpk_queue_retrieve*) or DONE (its final status is decided; the completion callback runs
 *     and the slot is recycled).
 *   - Completion, cancellation, deadline expiry, purge and admission drops all go through one
 *     atomic terminal transition per request: exactly one of them decides the final status and
 *     the completion callback runs exactly once, with that status.
 *   - Callbacks are invoked with the queue lock dropped. A callback may call any non-blocking
 *     function of its own queue. Work a callback triggers on its own queue (the next dispatch,
 *     a completion callback) runs after that callback returns, on the same thread: iteration,
 *     never recursion. Blocking functions (the *_sync variants, irpk_req_cancel_wait,
 *     irpk_queue_close, a BLOCK-policy submit) called from a callback of the same queue fail
 *     with IRPK_QE_BUSY instead of deadlocking.
 *   - Every error is a negative IRPK_QE_* code; nothing crashes on bad input except a pointer
 *     to memory that is not (or no longer) a queue, which cannot be detected: use
 *     irpk_queue_close first (after it, calls fail with IRPK_QE_CLOSED) and irpk_queue_free last.
 *   - No global lock: each queue has its own lock and its own (lazily started) timer thread.
 */
#ifndef IRPKIT_QUEUE_H
#define IRPKIT_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors and statuses */

enum irpk_queue_error {
    IRPK_QE_OK = 0,
    IRPK_QE_INVAL = -1,      /* NULL or out-of-range argument, inconsistent configuration */
    IRPK_QE_STALE = -2,      /* handle does not name a live request of this queue */
    IRPK_QE_CLOSED = -3,     /* queue closed, or not accepting (draining, purging, drained) */
    IRPK_QE_FULL = -4,       /* admission control rejected the request (REJECT policy) */
    IRPK_QE_BUSY = -5,       /* blocking call from one of the queue's own callbacks */
    IRPK_QE_NOTOWNER = -6,   /* request is queued, not dispatched to the caller */
    IRPK_QE_MODE = -7,       /* operation not valid for this queue's mode or ordering */
    IRPK_QE_NOMEM = -8,      /* allocation failed; nothing changed */
    IRPK_QE_ALREADY = -9,    /* request's final status already decided and being delivered */
    IRPK_QE_STOPPED = -10,   /* manual retrieve while the queue is stopped */
    IRPK_QE_EMPTY = -11,     /* manual retrieve: nothing queued */
    IRPK_QE_INPROGRESS = -12 /* another stop/drain/purge is still pending */
};

/* Final statuses the queue itself decides (user statuses should be >= 0 or distinct). */
enum irpk_req_status {
    IRPK_QS_CANCELLED = -1001, /* cancelled while queued, purged, or stop disposition COMPLETED */
    IRPK_QS_TIMEDOUT = -1002,  /* deadline passed (queued or running) */
    IRPK_QS_DROPPED = -1003    /* evicted by admission control (DROP_OLDEST) */
};

/* Positive (non-error) result of irpk_req_complete/requeue/forward: the request was released,
 * but its final status had already been decided by its deadline (IRPK_QS_TIMEDOUT). */
#define IRPK_REQ_OVERRIDDEN 1

/* Outcome of irpk_req_cancel: exactly one of these. */
typedef enum irpk_cancel_result {
    IRPK_CANCEL_REMOVED = 0,   /* was queued: removed, completed with IRPK_QS_CANCELLED */
    IRPK_CANCEL_REQUESTED = 1, /* is running: the handler is told and decides the status */
    IRPK_CANCEL_TOO_LATE = 2,  /* final status already decided (or the request left the queue) */
    IRPK_CANCEL_NOT_FOUND = 3  /* this queue never issued the handle */
} irpk_cancel_result;

/* Returns a static string naming an IRPK_QE_* code or an IRPK_QS_* status. */
const char *irpk_queue_strerror(int code);

/* ------------------------------------------------------------------ types */

typedef struct irpk_queue irpk_queue;
typedef uint64_t irpk_req_handle; /* 0 (IRPK_REQ_NULL) is never a valid handle */
#define IRPK_REQ_NULL ((irpk_req_handle)0)

typedef enum irpk_queue_mode {
    IRPK_QUEUE_SEQUENTIAL = 0,  /* one request running at a time */
    IRPK_QUEUE_PARALLEL = 1,    /* at most max_parallel running */
    IRPK_QUEUE_MANUAL = 2,      /* nothing is dispatched: the owner pulls with retrieve */
    IRPK_QUEUE_KEYED_SERIAL = 3 /* strict FIFO within a key, parallel (max_parallel) across keys */
} irpk_queue_mode;

typedef enum irpk_queue_order {
    IRPK_ORDER_FIFO = 0,     /* submission order */
    IRPK_ORDER_PRIORITY = 1, /* smallest key first, FIFO among equal keys, optional aging */
    IRPK_ORDER_ELEVATOR = 2  /* C-SCAN: next key greater than the last dispatched, wrapping */
} irpk_queue_order;

typedef enum irpk_admit_policy {
    IRPK_ADMIT_REJECT = 0,     /* submit fails with IRPK_QE_FULL */
    IRPK_ADMIT_BLOCK = 1,      /* submit waits for room */
    IRPK_ADMIT_DROP_OLDEST = 2 /* the oldest queued request completes with IRPK_QS_DROPPED */
} irpk_admit_policy;

typedef enum irpk_stop_disposition {
    IRPK_STOP_REQUEUE = 0,  /* handler let go: put the request back at the head of the queue */
    IRPK_STOP_KEEP = 1,     /* handler keeps it and will complete it later (acknowledged) */
    IRPK_STOP_COMPLETED = 2 /* handler let go: complete it with IRPK_QS_CANCELLED */
} irpk_stop_disposition;

typedef enum irpk_notify_reason {
    IRPK_NOTIFY_CANCEL = 0, /* irpk_req_cancel / group cancel / purge on a running request */
    IRPK_NOTIFY_TIMEOUT = 1 /* the running request's deadline passed (status already TIMEDOUT) */
} irpk_notify_reason;

/* Callbacks. q_ctx is irpk_queue_config.ctx; r_ctx is the request's context. */
typedef void (*irpk_dispatch_fn)(irpk_queue *q, irpk_req_handle h, void *r_ctx, void *q_ctx);
typedef void (*irpk_complete_fn)(irpk_queue *q, irpk_req_handle h, int32_t status, void *r_ctx,
                                 void *q_ctx);
/* A running request was asked to stop. The request stays valid until this returns: its
 * completion callback never runs concurrently with, or before the end of, this notification. */
typedef void (*irpk_notify_fn)(irpk_queue *q, irpk_req_handle h, irpk_notify_reason why,
                               void *r_ctx, void *q_ctx);
typedef irpk_stop_disposition (*irpk_stop_fn)(irpk_queue *q, irpk_req_handle h, void *r_ctx,
                                              void *q_ctx);
typedef void (*irpk_ready_fn)(irpk_queue *q, void *q_ctx);
typedef void (*irpk_watermark_fn)(irpk_queue *q, int high, size_t depth, void *q_ctx);
typedef void (*irpk_done_fn)(irpk_queue *q, void *done_ctx);

typedef struct irpk_queue_config {
    irpk_queue_mode mode;
    unsigned max_parallel;   /* PARALLEL and KEYED_SERIAL: running limit (>= 1) */
    irpk_queue_order order;  /* KEYED_SERIAL requires FIFO */
    uint64_t aging_ns;       /* PRIORITY: a waiting request gains one key unit per aging_ns
                                (0 = no aging); nothing starves */
    size_t max_depth;        /* queued (not running) requests; 0 = unbounded */
    irpk_admit_policy admit; /* what submit does at max_depth */
    size_t high_watermark;   /* 0 = no watermark notifications */
    size_t low_watermark;    /* must be < high_watermark */
    size_t log_capacity;     /* event log ring size in events; 0 = no log */
    int in_order_completion; /* 1: completion callbacks of dispatched requests run in dispatch
                                order (a reorder buffer for PARALLEL / KEYED_SERIAL / MANUAL);
                                requests that end while queued are delivered at once */
    int manual_timers;       /* 1: no timer thread; the owner calls irpk_queue_run_timers */
    int timed;               /* 1: read the clock at every submit so irpk_req_info_get and
                                irpk_queue_dump report request ages (implied by aging_ns);
                                0 (default): no clock read per request, age_ns reads -1 */
    irpk_dispatch_fn on_dispatch;  /* required unless MANUAL */
    irpk_complete_fn on_complete;  /* optional */
    irpk_notify_fn on_cancel;      /* optional: running request cancel/timeout notification */
    irpk_stop_fn on_stop;          /* optional: disposition of running requests at stop */
    irpk_ready_fn on_ready;        /* optional, MANUAL: queue went from empty to non-empty */
    irpk_watermark_fn on_watermark;/* optional: depth reached high / fell to low watermark */
    void *ctx;                     /* q_ctx passed to every callback */
    const char *name;              /* shown by irpk_queue_dump; copied */
} irpk_queue_config;

/* Per-request submission options. */
typedef struct irpk_req_opts {
    void *ctx;           /* r_ctx passed to callbacks */
    uint64_t key;        /* PRIORITY/ELEVATOR sort key; KEYED_SERIAL serialization key */
    uint64_t owner;      /* group tag for irpk_queue_cancel_owner / find (0 = none) */
    int64_t deadline_ns; /* absolute plat_now_ns() time covering wait + run; 0 = none */
} irpk_req_opts;

/* ------------------------------------------------------------------ lifecycle */

/* Fill c with defaults: SEQUENTIAL, FIFO, max_parallel 1, unbounded, no callbacks. */
void irpk_queue_config_init(irpk_queue_config *c);

/* Create a queue (started: accepting and dispatching). Errors: INVAL (NULL, bad enum,
 * max_parallel 0, missing on_dispatch, low >= high watermark), MODE (KEYED_SERIAL with a keyed
 * order), NOMEM. */
int irpk_queue_create(const irpk_queue_config *c, irpk_queue **out);

/* Close: stop accepting, cancel every queued request, tell running ones (on_cancel) and wait
 * until their executors have completed them and no callback of q is running (a running request
 * nobody completes keeps close waiting: irpk_queue_dump shows it); then stop the timer thread,
 * and waits for a pending stop/drain/purge first. Every
 * later call on q fails with IRPK_QE_CLOSED (irpk_queue_free excepted). Errors: INVAL, BUSY (from
 * one of q's callbacks), CLOSED (closed already). */
int irpk_queue_close(irpk_queue *q);

/* Release q's memory; closes it first if needed. Errors: INVAL, BUSY (from q's callback). */
int irpk_queue_free(irpk_queue *q);

/* ------------------------------------------------------------------ submitting */

/* Queue a request; *out (may be NULL) receives its handle before any callback can see it.
 * The request may be dispatched — on this thread — before this returns. Errors: INVAL, CLOSED,
 * FULL (REJECT policy), BUSY (BLOCK policy from q's own callback), NOMEM. */
int irpk_queue_submit(irpk_queue *q, const irpk_req_opts *o, irpk_req_handle *out);

/* ------------------------------------------------------------------ the executor's side */

/* Complete a RUNNING request with status; its completion callback runs exactly once.
 * Returns 0, or IRPK_REQ_OVERRIDDEN when the deadline had already decided IRPK_QS_TIMEDOUT
 * (the request is released all the same). Errors: INVAL, STALE (not live: e.g. completed
 * twice), NOTOWNER (still queued), ALREADY (final status being delivered), CLOSED. */
int irpk_req_complete(irpk_queue *q, irpk_req_handle h, int32_t status);

/* 1 if cancel was requested or the deadline passed for this request, 0 if not; errors INVAL,
 * STALE, CLOSED. Handlers poll this. */
int irpk_req_is_cancelled(irpk_queue *q, irpk_req_handle h);

/* Give a RUNNING request back: it goes to the head of the queue (keyed orders: first among its
 * key). Returns 0 or IRPK_REQ_OVERRIDDEN (deadline already passed: completed instead).
 * Errors: INVAL, STALE, NOTOWNER, ALREADY, CLOSED. */
int irpk_req_requeue(irpk_queue *q, irpk_req_handle h);

/* Move a RUNNING request to queue dst (its context, key, owner and deadline travel with it).
 * *new_h receives its handle in dst; the old handle becomes stale in q. Returns 0 or
 * IRPK_REQ_OVERRIDDEN (deadline already passed: completed in q instead, *new_h = 0). Errors:
 * INVAL (dst == q or NULL), STALE, NOTOWNER, ALREADY, CLOSED, FULL, NOMEM (dst refused: the
 * request stays running in q, unchanged). Never holds both queue locks. */
int irpk_req_forward(irpk_queue *q, irpk_req_handle h, irpk_queue *dst, irpk_req_handle *new_h);

/* Change a QUEUED request's key in O(log n) (it goes last among equal keys). Errors: INVAL,
 * STALE, MODE (FIFO order or KEYED_SERIAL), NOTOWNER (not queued: running), CLOSED. */
int irpk_req_set_key(irpk_queue *q, irpk_req_handle h, uint64_t key);

/* ------------------------------------------------------------------ manual mode */

/* Take the next queued request (queue order; ELEVATOR continues its sweep); it becomes RUNNING
 * and owned by the caller. Errors: INVAL, MODE (not MANUAL), STOPPED, EMPTY, CLOSED. */
int irpk_queue_retrieve(irpk_queue *q, irpk_req_handle *out);

/* Take the first queued request with key >= k, wrapping to the smallest key: O(log n).
 * Errors: as irpk_queue_retrieve, plus MODE for FIFO order. */
int irpk_queue_retrieve_key(irpk_queue *q, uint64_t k, irpk_req_handle *out);

/* ------------------------------------------------------------------ cancellation */

/* Cancel one request. Returns an irpk_cancel_result (>= 0) or INVAL / CLOSED. */
int irpk_req_cancel(irpk_queue *q, irpk_req_handle h);

/* irpk_req_cancel, then wait until the request's completion callback has returned (for a
 * RUNNING request: until its executor has completed it). Returns the cancel result; errors
 * INVAL, CLOSED, BUSY (from q's callback). */
int irpk_req_cancel_wait(irpk_queue *q, irpk_req_handle h);

/* Cancel every request with this owner tag in O(k): queued ones are removed, running ones
 * notified. *removed / *requested (may be NULL) receive the counts. Errors: INVAL, CLOSED. */
int irpk_queue_cancel_owner(irpk_queue *q, uint64_t owner, size_t *removed, size_t *requested);

/* ------------------------------------------------------------------ stop / start / drain / purge */

/* Stop dispatching (submissions are still accepted). Running requests are offered to on_stop
 * (if set) for a disposition; done(q, done_ctx) runs once every running request was completed,
 * requeued or KEPT and no callback of q is running. Errors: INVAL, CLOSED, INPROGRESS. */
int irpk_queue_stop(irpk_queue *q, irpk_done_fn done, void *done_ctx);
/* Drain: accept nothing new, dispatch what is queued; done runs when nothing is queued or
 * running and no callback of q is running. Errors: INVAL, CLOSED, INPROGRESS. */
int irpk_queue_drain(irpk_queue *q, irpk_done_fn done, void *done_ctx);
/* Purge: accept nothing new, cancel every queued request, notify running ones; done as drain. */
int irpk_queue_purge(irpk_queue *q, irpk_done_fn done, void *done_ctx);
/* Synchronous variants: when they return, the condition holds and no callback of q is running
 * (the lifetime barrier). Extra error: BUSY when called from one of q's callbacks. */
int irpk_queue_stop_sync(irpk_queue *q);
int irpk_queue_drain_sync(irpk_queue *q);
int irpk_queue_purge_sync(irpk_queue *q);
/* Accept and dispatch again (after stop, drain or purge). Errors: INVAL, CLOSED, INPROGRESS
 * (a stop/drain/purge has not finished yet). */
int irpk_queue_start(irpk_queue *q);

/* Expire every deadline <= now_ns (normally the timer thread does this with plat_now_ns()).
 * With manual_timers this is the queue's clock: tests and simulations drive time through it.
 * Returns the number of requests that expired, or INVAL / CLOSED. */
int irpk_queue_run_timers(irpk_queue *q, int64_t now_ns);

/* ------------------------------------------------------------------ introspection */

typedef enum irpk_req_state {
    IRPK_REQ_QUEUED = 1,
    IRPK_REQ_RUNNING = 2,
    IRPK_REQ_DONE = 3 /* final status decided; completion callback pending or running */
} irpk_req_state;

typedef struct irpk_req_info {
    irpk_req_state state;
    int cancel_requested;
    void *ctx;
    uint64_t key, owner;
    int64_t deadline_ns;
    int64_t age_ns;     /* since submit; -1 unless the queue is timed (config.timed/aging_ns) */
} irpk_req_info;

/* Snapshot of one request. Errors: INVAL, STALE, CLOSED. */
int irpk_req_info_get(irpk_queue *q, irpk_req_handle h, irpk_req_info *info);

/* Up to max handles of live requests with this owner (oldest first); returns the number
 * written or INVAL / CLOSED. O(k). */
int irpk_queue_find_owner(irpk_queue *q, uint64_t owner, irpk_req_handle *out, size_t max);

/* Handle of the request that would be dispatched/retrieved next, without taking it.
 * Errors: INVAL, CLOSED, EMPTY. */
int irpk_queue_peek(irpk_queue *q, irpk_req_handle *out);

typedef struct irpk_queue_stats {
    int accepting, dispatching, closed; /* flags */
    size_t queued, running, live;       /* live = queued + running + done-not-yet-released */
    uint64_t submitted, completed, cancelled, timed_out, dropped, rejected, forwarded_out;
    size_t max_queued_seen;
} irpk_queue_stats;
int irpk_queue_stats_get(irpk_queue *q, irpk_queue_stats *s); /* INVAL */

typedef enum irpk_queue_event_type {
    IRPK_EV_SUBMIT = 1, IRPK_EV_QUEUE, IRPK_EV_DISPATCH, IRPK_EV_CANCEL_REQUEST, IRPK_EV_COMPLETE,
    IRPK_EV_TIMEOUT, IRPK_EV_REQUEUE, IRPK_EV_FORWARD, IRPK_EV_DROP, IRPK_EV_REJECT
} irpk_queue_event_type;

typedef struct irpk_queue_event {
    uint64_t seq;         /* 1, 2, 3 … per queue */
    int64_t time_ns;      /* plat_now_ns() */
    irpk_req_handle h;
    irpk_queue_event_type type;
    int32_t status;       /* COMPLETE: final status; otherwise 0 */
    uint32_t thread_id;   /* plat_thread id of the caller */
} irpk_queue_event;

/* Copy the retained events (oldest first, at most max) into out; returns how many, or INVAL.
 * The log keeps the last log_capacity events. */
int irpk_queue_events(irpk_queue *q, irpk_queue_event *out, size_t max);
const char *irpk_queue_event_name(irpk_queue_event_type t);

/* "Why is this stuck": queue state, counts and one line per live request (handle, state,
 * owner, key, age, cancel flag, deadline). Writes at most n bytes (NUL-terminated) into buf and
 * returns the length the full report needs (snprintf style), or INVAL. */
int irpk_queue_dump(irpk_queue *q, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
