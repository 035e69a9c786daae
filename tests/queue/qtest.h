/* Shared helpers for the queue tests: a recorder of every callback, single-threaded use. */
#ifndef QTEST_H
#define QTEST_H

#include "irpkit/queue.h"
#include "platform/platform.h"
#include "test.h"

#define REC_MAX 4096

/* The suites are built twice: with an event log (every callback on the locked path) and, as
 * test_queue_*_lease, without one (dispatch and completion callbacks on leases). Both must
 * behave identically; only the event-log checks are skipped in the lease build. */
#ifdef QTEST_NO_LOG
#define QTEST_LOG 0
#define QTEST_HAS_LOG 0
#else
#define QTEST_LOG 256
#define QTEST_HAS_LOG 1
#endif

typedef struct rec {
    int ndispatch, ncomplete, nnotify, nready, nstop;
    irpk_req_handle dispatched[REC_MAX];
    irpk_req_handle completed[REC_MAX];
    int32_t status[REC_MAX];
    void *cctx[REC_MAX];
    irpk_req_handle notified[REC_MAX];
    irpk_notify_reason why[REC_MAX];
    int complete_inline;            /* dispatch handler completes at once with status 0 */
    int complete_on_notify;         /* cancel notification completes with IRPK_QS_CANCELLED */
    int depth, max_depth;           /* dispatch nesting on this thread */
    irpk_stop_disposition stop_disp;
} rec;

static inline void rec_dispatch(irpk_queue *q, irpk_req_handle h, void *r_ctx, void *q_ctx)
{
    rec *r = q_ctx;
    (void)r_ctx;
    if (++r->depth > r->max_depth) r->max_depth = r->depth;
    r->dispatched[r->ndispatch++ % REC_MAX] = h;
    if (r->complete_inline) CHECK_EQ(irpk_req_complete(q, h, 0), 0);
    r->depth--;
}

static inline void rec_complete(irpk_queue *q, irpk_req_handle h, int32_t status, void *r_ctx,
                                void *q_ctx)
{
    rec *r = q_ctx;
    (void)q;
    r->cctx[r->ncomplete % REC_MAX] = r_ctx;
    r->status[r->ncomplete % REC_MAX] = status;
    r->completed[r->ncomplete++ % REC_MAX] = h;
}

static inline void rec_notify(irpk_queue *q, irpk_req_handle h, irpk_notify_reason why,
                              void *r_ctx, void *q_ctx)
{
    rec *r = q_ctx;
    (void)r_ctx;
    r->why[r->nnotify % REC_MAX] = why;
    r->notified[r->nnotify++ % REC_MAX] = h;
    if (r->complete_on_notify) irpk_req_complete(q, h, IRPK_QS_CANCELLED);
}

static inline irpk_stop_disposition rec_stop(irpk_queue *q, irpk_req_handle h, void *r_ctx,
                                             void *q_ctx)
{
    rec *r = q_ctx;
    (void)q;
    (void)h;
    (void)r_ctx;
    r->nstop++;
    return r->stop_disp;
}

static inline void rec_ready(irpk_queue *q, void *q_ctx)
{
    (void)q;
    ((rec *)q_ctx)->nready++;
}

/* ------------------------------------------------------------------ arranging a queue
 * A test with a queue of its own makes it in one call: rec_queue (every callback recorded),
 * completion_queue (completions recorded), handler_queue (one dispatch handler), or a helper
 * of its own that starts from queue_config / rec_config and ends with queue_from. */

/* irpk_queue_config_init's defaults, in the given mode. */
static inline irpk_queue_config queue_config(irpk_queue_mode mode)
{
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = mode;
    return c;
}

/* queue_config with completions recorded in r (zeroed here); no other callback. */
static inline irpk_queue_config rec_config(rec *r, irpk_queue_mode mode)
{
    memset(r, 0, sizeof *r);
    irpk_queue_config c = queue_config(mode);
    c.on_complete = rec_complete;
    c.ctx = r;
    return c;
}

/* The queue c describes; NULL when irpk_queue_create refuses it. */
static inline irpk_queue *queue_from(const irpk_queue_config *c)
{
    irpk_queue *q = NULL;
    if (irpk_queue_create(c, &q) != 0) return NULL;
    return q;
}

/* A queue wired to a recorder: every callback recorded, timers run by hand (run_timers). */
static inline irpk_queue *rec_queue(rec *r, irpk_queue_mode mode, irpk_queue_order order,
                                    unsigned par)
{
    irpk_queue_config c = rec_config(r, mode);
    c.order = order;
    c.max_parallel = par;
    c.on_dispatch = rec_dispatch;
    c.on_cancel = rec_notify;
    c.on_ready = rec_ready;
    c.manual_timers = 1;
    c.log_capacity = QTEST_LOG; /* 0 in the *_lease builds: callbacks then run on leases */
    return queue_from(&c);
}

/* A queue that records only completions in r, with the real timer thread. */
static inline irpk_queue *completion_queue(rec *r, irpk_queue_mode mode)
{
    irpk_queue_config c = rec_config(r, mode);
    return queue_from(&c);
}

/* A queue whose only callback is on_dispatch, up to par requests running (no recorder). */
static inline irpk_queue *handler_queue(irpk_queue_mode mode, unsigned par,
                                        irpk_dispatch_fn on_dispatch)
{
    irpk_queue_config c = queue_config(mode);
    c.max_parallel = par;
    c.on_dispatch = on_dispatch;
    return queue_from(&c);
}

static inline irpk_req_handle submit_ctx(irpk_queue *q, void *ctx)
{
    irpk_req_opts o = {ctx, 0, 0, 0};
    irpk_req_handle h = 0;
    CHECK_EQ(irpk_queue_submit(q, &o, &h), 0);
    return h;
}

static inline irpk_req_handle submit_opts(irpk_queue *q, uint64_t key, uint64_t owner,
                                          int64_t deadline)
{
    irpk_req_opts o = {(void *)(uintptr_t)key, key, owner, deadline};
    irpk_req_handle h = 0;
    CHECK_EQ(irpk_queue_submit(q, &o, &h), 0);
    return h;
}

#endif
