/* Request queue: stop/start with dispositions, drain, purge, the lifetime barrier, synchronous
 * calls from callbacks, admission control and watermarks, forward, requeue, introspection. */
#include "qtest.h"

static int done_count;
static void on_done(irpk_queue *q, void *ctx)
{
    (void)q;
    (void)ctx;
    done_count++;
}

TEST(stop_without_handler_waits_for_running_requests)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_PARALLEL, IRPK_ORDER_FIFO, 2);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL);
    irpk_req_handle c = submit_ctx(q, NULL);
    done_count = 0;
    CHECK_EQ(irpk_queue_stop(q, on_done, NULL), 0);
    CHECK_EQ(irpk_queue_drain(q, on_done, NULL), IRPK_QE_INPROGRESS);
    CHECK_EQ(irpk_queue_start(q), IRPK_QE_INPROGRESS);
    irpk_req_complete(q, a, 0);
    CHECK_EQ(r.ndispatch, 2); /* stopped: c stays queued */
    CHECK_EQ(done_count, 0);
    irpk_req_complete(q, b, 0);
    CHECK_EQ(done_count, 1);
    irpk_req_opts o = {0};
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), 0); /* stopped queues still accept */
    CHECK_EQ(irpk_queue_start(q), 0);
    CHECK_EQ(r.ndispatch, 4);
    CHECK_EQ(r.dispatched[2], c);
    r.complete_on_notify = 1;
    irpk_queue_free(q);
}

/* A MANUAL queue that asks r (r->stop_disp) what to do with running requests at stop. */
static irpk_queue *stop_queue(rec *r)
{
    irpk_queue_config c = rec_config(r, IRPK_QUEUE_MANUAL);
    c.on_stop = rec_stop;
    return queue_from(&c);
}

TEST(stop_dispositions_requeue_keep_and_complete)
{
    rec r;
    irpk_queue *q = stop_queue(&r);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL), got;
    irpk_queue_retrieve(q, &got);

    r.stop_disp = IRPK_STOP_REQUEUE;
    CHECK_EQ(irpk_queue_stop_sync(q), 0);
    CHECK_EQ(r.nstop, 1);
    CHECK_EQ(irpk_queue_peek(q, &got), 0);
    CHECK_EQ(got, a); /* back at the head, before b */
    CHECK_EQ(irpk_queue_start(q), 0);

    irpk_queue_retrieve(q, &got);
    r.stop_disp = IRPK_STOP_KEEP;
    CHECK_EQ(irpk_queue_stop_sync(q), 0); /* returns: a is acknowledged */
    CHECK_EQ(r.nstop, 2);
    CHECK_EQ(irpk_queue_start(q), 0);

    r.stop_disp = IRPK_STOP_COMPLETED; /* a kept, asked again after start */
    CHECK_EQ(irpk_queue_stop_sync(q), 0);
    CHECK_EQ(r.nstop, 3);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.completed[0], a);
    CHECK_EQ(r.status[0], IRPK_QS_CANCELLED);
    CHECK_EQ(irpk_req_complete(q, a, 0), IRPK_QE_STALE);
    CHECK_EQ(irpk_req_cancel(q, b), IRPK_CANCEL_REMOVED);
    irpk_queue_free(q);
}

TEST(drain_refuses_new_requests_and_finishes_queued_ones)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_SEQUENTIAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL);
    done_count = 0;
    CHECK_EQ(irpk_queue_drain(q, on_done, NULL), 0);
    irpk_req_opts o = {0};
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), IRPK_QE_CLOSED);
    irpk_req_complete(q, a, 0);
    CHECK_EQ(done_count, 0);
    irpk_req_complete(q, b, 0);
    CHECK_EQ(done_count, 1);
    CHECK_EQ(r.ncomplete, 2);
    CHECK_EQ(r.status[1], 0);
    CHECK_EQ(irpk_queue_start(q), 0);
    CHECK_EQ(irpk_queue_submit(q, &o, &a), 0);
    irpk_req_complete(q, a, 0);
    irpk_queue_free(q);
}

TEST(purge_cancels_queued_and_waits_for_running)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_SEQUENTIAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL);
    submit_ctx(q, NULL);
    submit_ctx(q, NULL);
    done_count = 0;
    CHECK_EQ(irpk_queue_purge(q, on_done, NULL), 0);
    CHECK_EQ(r.ncomplete, 2);
    CHECK_EQ(r.nnotify, 1);
    CHECK_EQ(r.notified[0], a);
    CHECK_EQ(done_count, 0);
    CHECK_EQ(irpk_req_complete(q, a, IRPK_QS_CANCELLED), 0);
    CHECK_EQ(done_count, 1);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.cancelled, 3);
    CHECK_EQ(s.accepting, 0);
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- sync calls from callbacks */

static int sync_results[4];
static void sync_calls_in_dispatch(irpk_queue *q, irpk_req_handle h, void *r_ctx, void *q_ctx)
{
    (void)r_ctx;
    (void)q_ctx;
    sync_results[0] = irpk_queue_stop_sync(q);
    sync_results[1] = irpk_queue_drain_sync(q);
    sync_results[2] = irpk_queue_purge_sync(q);
    sync_results[3] = irpk_queue_close(q);
    irpk_req_complete(q, h, 0);
}

TEST(synchronous_stop_drain_purge_close_from_own_callback_fail_busy)
{
    irpk_queue *q = handler_queue(IRPK_QUEUE_SEQUENTIAL, 1, sync_calls_in_dispatch);
    REQUIRE(q);
    submit_ctx(q, NULL);
    for (int i = 0; i < 4; i++) CHECK_EQ(sync_results[i], IRPK_QE_BUSY);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.live, 0);
    CHECK_EQ(s.accepting, 1); /* nothing happened */
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- lifetime barrier */

static volatile int32_t in_handler, handler_entered;
static void slow_handler(irpk_queue *q, irpk_req_handle h, void *r_ctx, void *q_ctx)
{
    (void)r_ctx;
    (void)q_ctx;
    plat_store32(&in_handler, 1);
    plat_store32(&handler_entered, 1);
    plat_sleep_ns(20000000);
    plat_store32(&in_handler, 0);
    irpk_req_complete(q, h, 0);
}

static void submit_from_thread(void *arg) { submit_ctx(arg, NULL); }

TEST(stop_sync_returns_only_when_no_callback_runs)
{
    irpk_queue *q = handler_queue(IRPK_QUEUE_PARALLEL, 4, slow_handler);
    REQUIRE(q);
    plat_store32(&handler_entered, 0);
    plat_thread *t = plat_thread_start(submit_from_thread, q, "submitter", 0);
    while (!plat_load32(&handler_entered)) plat_sleep_ns(100000);
    CHECK_EQ(irpk_queue_stop_sync(q), 0);
    CHECK_EQ(plat_load32(&in_handler), 0);
    plat_thread_join(t);
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- admission control */

/* A MANUAL queue of at most depth queued requests, admitting by p; completions in r. */
static irpk_queue *bounded(rec *r, irpk_admit_policy p, size_t depth)
{
    irpk_queue_config c = rec_config(r, IRPK_QUEUE_MANUAL);
    c.max_depth = depth;
    c.admit = p;
    return queue_from(&c);
}

TEST(admission_reject_fails_full)
{
    rec r;
    irpk_queue *q = bounded(&r, IRPK_ADMIT_REJECT, 2);
    REQUIRE(q);
    irpk_req_opts o = {0};
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), 0);
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), 0);
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), IRPK_QE_FULL);
    irpk_req_handle h;
    irpk_queue_retrieve(q, &h); /* running requests do not count against the depth */
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), 0);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.rejected, 1);
    irpk_req_complete(q, h, 0);
    irpk_queue_free(q);
}

TEST(admission_drop_oldest_completes_the_oldest_as_dropped)
{
    rec r;
    irpk_queue *q = bounded(&r, IRPK_ADMIT_DROP_OLDEST, 2);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL), c = submit_ctx(q, NULL);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.completed[0], a);
    CHECK_EQ(r.status[0], IRPK_QS_DROPPED);
    irpk_req_handle got;
    irpk_queue_retrieve(q, &got);
    CHECK_EQ(got, b);
    irpk_req_complete(q, got, 0);
    CHECK_EQ(irpk_req_cancel(q, c), IRPK_CANCEL_REMOVED);
    irpk_queue_free(q);
}

typedef struct blocker {
    irpk_queue *q;
    volatile int32_t result, done;
} blocker;

static void blocked_submit(void *arg)
{
    blocker *b = arg;
    irpk_req_opts o = {0};
    plat_store32(&b->result, irpk_queue_submit(b->q, &o, NULL));
    plat_store32(&b->done, 1);
}

TEST(admission_block_waits_for_room_and_fails_when_drained)
{
    rec r;
    irpk_queue *q = bounded(&r, IRPK_ADMIT_BLOCK, 1);
    REQUIRE(q);
    submit_ctx(q, NULL);
    blocker b = {q, 99, 0};
    plat_thread *t = plat_thread_start(blocked_submit, &b, "blocked", 0);
    plat_sleep_ns(2000000);
    CHECK_EQ(plat_load32(&b.done), 0); /* would be a race if it could pass: depth is 1 */
    irpk_req_handle h;
    irpk_queue_retrieve(q, &h);
    plat_thread_join(t);
    CHECK_EQ(b.result, 0);
    irpk_req_complete(q, h, 0);
    /* Full again; a drain makes the blocked submitter give up. */
    b.done = 0;
    t = plat_thread_start(blocked_submit, &b, "blocked", 0);
    plat_sleep_ns(2000000);
    CHECK_EQ(irpk_queue_purge_sync(q), 0);
    plat_thread_join(t);
    CHECK_EQ(b.result, IRPK_QE_CLOSED); /* blocked or not yet submitted: either way refused */
    irpk_queue_free(q);
}

static int wm_high, wm_low;
static void on_wm(irpk_queue *q, int high, size_t depth, void *ctx)
{
    (void)q;
    (void)ctx;
    if (high) {
        wm_high++;
        CHECK_EQ(depth, 3);
    } else {
        wm_low++;
        CHECK_EQ(depth, 1);
    }
}

/* A MANUAL queue that calls on_wm when its depth reaches 3 and when it falls back to 1. */
static irpk_queue *watermark_queue(void)
{
    irpk_queue_config c = queue_config(IRPK_QUEUE_MANUAL);
    c.high_watermark = 3;
    c.low_watermark = 1;
    c.on_watermark = on_wm;
    return queue_from(&c);
}

TEST(watermarks_fire_on_crossing_with_hysteresis)
{
    irpk_queue *q = watermark_queue();
    REQUIRE(q);
    wm_high = wm_low = 0;
    irpk_req_handle h[4];
    for (int i = 0; i < 4; i++) h[i] = submit_ctx(q, NULL);
    CHECK_EQ(wm_high, 1);
    irpk_req_cancel(q, h[0]);
    irpk_req_cancel(q, h[1]); /* depth 2: between the marks, nothing */
    CHECK_EQ(wm_low, 0);
    irpk_req_cancel(q, h[2]);
    CHECK_EQ(wm_low, 1);
    irpk_req_cancel(q, h[3]);
    CHECK_EQ(wm_low, 1);
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- forward, requeue, find */

TEST(forward_moves_a_running_request_to_another_queue)
{
    rec r1, r2;
    irpk_queue *q1 = rec_queue(&r1, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    irpk_queue *q2 = rec_queue(&r2, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q1 && q2);
    irpk_req_handle h = submit_opts(q1, 4, 9, 0), moved, got;
    CHECK_EQ(irpk_req_forward(q1, h, q2, &moved), IRPK_QE_NOTOWNER); /* queued, not ours */
    irpk_queue_retrieve(q1, &got);
    CHECK_EQ(irpk_req_forward(q1, h, q1, &moved), IRPK_QE_INVAL);
    CHECK_EQ(irpk_req_forward(q1, h, q2, &moved), 0);
    CHECK_EQ(irpk_req_complete(q1, h, 0), IRPK_QE_STALE);
    irpk_req_info info;
    CHECK_EQ(irpk_req_info_get(q2, moved, &info), 0);
    CHECK_EQ(info.owner, 9);
    CHECK_EQ(info.key, 4);
    CHECK_EQ(r1.ncomplete, 0);
    irpk_queue_stats s;
    irpk_queue_stats_get(q1, &s);
    CHECK_EQ(s.live, 0);
    CHECK_EQ(s.forwarded_out, 1);
    irpk_queue_retrieve(q2, &got);
    CHECK_EQ(irpk_req_complete(q2, moved, 8), 0);
    CHECK_EQ(r2.ncomplete, 1);
    CHECK_PTR(r2.cctx[0], (void *)4);
    /* A refusing destination leaves the request running where it was. */
    h = submit_ctx(q1, NULL);
    irpk_queue_retrieve(q1, &got);
    irpk_queue_purge_sync(q2);
    CHECK_EQ(irpk_req_forward(q1, h, q2, &moved), IRPK_QE_CLOSED);
    CHECK_EQ(moved, 0);
    CHECK_EQ(irpk_req_complete(q1, h, 0), 0);
    irpk_queue_free(q1);
    irpk_queue_free(q2);
}

TEST(requeue_puts_a_running_request_back_at_the_head)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL), got;
    irpk_queue_retrieve(q, &got);
    CHECK_EQ(irpk_req_requeue(q, b), IRPK_QE_NOTOWNER);
    CHECK_EQ(irpk_req_requeue(q, a), 0);
    irpk_queue_retrieve(q, &got);
    CHECK_EQ(got, a);
    irpk_req_cancel(q, a); /* cancel requested while running... */
    CHECK_EQ(irpk_req_requeue(q, a), IRPK_REQ_OVERRIDDEN); /* ...so requeue completes it */
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], IRPK_QS_CANCELLED);
    irpk_req_cancel(q, b);
    irpk_queue_free(q);
}

TEST(dump_explains_what_is_stuck)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_opts(q, 3, 77, 5000), got;
    submit_opts(q, 4, 0, 0);
    irpk_queue_retrieve(q, &got);
    irpk_req_cancel(q, a);
    char buf[1024];
    int n = irpk_queue_dump(q, buf, sizeof buf);
    CHECK(n > 0 && (size_t)n < sizeof buf);
    CHECK_CONTAINS(buf, "queued=1 running=1");
    CHECK_CONTAINS(buf, "RUNNING owner=77 key=3");
    CHECK_CONTAINS(buf, "cancel=1");
    CHECK_CONTAINS(buf, "QUEUED owner=0 key=4");
    char small[8];
    CHECK_EQ(irpk_queue_dump(q, small, sizeof small), n); /* truncated, length reported */
    CHECK_EQ(strlen(small), 7);
    irpk_req_complete(q, a, 0);
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- in-order completion */

/* A PARALLEL queue of 3 that delivers completions in dispatch order; dispatches and
 * completions in r. */
static irpk_queue *in_order_queue(rec *r)
{
    irpk_queue_config c = rec_config(r, IRPK_QUEUE_PARALLEL);
    c.max_parallel = 3;
    c.in_order_completion = 1;
    c.on_dispatch = rec_dispatch;
    return queue_from(&c);
}

TEST(in_order_completion_delivers_in_dispatch_order)
{
    rec r;
    irpk_queue *q = in_order_queue(&r);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL), d = submit_ctx(q, NULL);
    CHECK_EQ(irpk_queue_stop(q, NULL, NULL), 0);
    irpk_req_handle e = submit_ctx(q, NULL); /* queued: the queue is stopped */
    CHECK_EQ(irpk_req_complete(q, d, 3), 0);
    CHECK_EQ(irpk_req_complete(q, b, 2), 0);
    CHECK_EQ(r.ncomplete, 0); /* held behind a */
    CHECK_EQ(irpk_req_cancel(q, e), IRPK_CANCEL_REMOVED);
    CHECK_EQ(r.ncomplete, 1); /* never dispatched: not ordered */
    CHECK_EQ(r.completed[0], e);
    CHECK_EQ(irpk_req_complete(q, a, 1), 0);
    CHECK_EQ(r.ncomplete, 4);
    CHECK_EQ(r.completed[1], a);
    CHECK_EQ(r.completed[2], b);
    CHECK_EQ(r.completed[3], d);
    CHECK_EQ(irpk_queue_start(q), 0);
    /* A requeued head leaves the order: what waited behind it is delivered. */
    irpk_req_handle f = submit_ctx(q, NULL), g = submit_ctx(q, NULL);
    CHECK_EQ(irpk_req_complete(q, g, 0), 0);
    CHECK_EQ(r.ncomplete, 4);
    CHECK_EQ(irpk_req_requeue(q, f), 0); /* dispatched again at once, now after g */
    CHECK_EQ(r.ncomplete, 5);
    CHECK_EQ(r.completed[4], g);
    CHECK_EQ(irpk_req_complete(q, f, 0), 0);
    CHECK_EQ(r.completed[5], f);
    irpk_queue_free(q);
}
