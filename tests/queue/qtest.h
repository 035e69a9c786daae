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

/* A queue wired to a recorder. */
static inline irpk_queue *rec_queue(rec *r, irpk_queue_mode mode, irpk_queue_order order,
                                    unsigned par)
{
    memset(r, 0, sizeof *r);
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = mode;
    c.order = order;
    c.max_parallel = par;
    c.on_dispatch = rec_dispatch;
    c.on_complete = rec_complete;
    c.on_cancel = rec_notify;
    c.on_ready = rec_ready;
    c.manual_timers = 1;
    c.log_capacity = QTEST_LOG; /* 0 in the *_lease builds: callbacks then run on leases */
    c.ctx = r;
    irpk_queue *q = NULL;
    if (irpk_queue_create(&c, &q) != 0) return NULL;
    return q;
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
