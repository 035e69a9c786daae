/* Request queue: cancel outcomes, the cancel / complete / deadline race matrix (deterministic:
 * manual timers drive the clock), blocking cancel, group cancel, notification lifetime. */
#include "qtest.h"

#define T_DEADLINE 1000 /* manual clock: deadlines at 1000, time advanced with run_timers */

static irpk_queue *matrix_queue(rec *r, irpk_req_handle *h, int running)
{
    irpk_queue *q = rec_queue(r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    if (!q) return NULL;
    *h = submit_opts(q, 0, 0, T_DEADLINE);
    irpk_req_handle got = 0;
    if (running) CHECK_EQ(irpk_queue_retrieve(q, &got), 0);
    if (running) CHECK_EQ(got, *h);
    return q;
}

TEST(queued_cancel_then_deadline_then_complete)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 0);
    REQUIRE(q);
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_REMOVED);
    CHECK_EQ(irpk_queue_run_timers(q, T_DEADLINE), 0);
    CHECK_EQ(irpk_req_complete(q, h, 7), IRPK_QE_STALE);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], IRPK_QS_CANCELLED);
    irpk_queue_free(q);
}

TEST(queued_deadline_then_cancel_then_complete)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 0);
    REQUIRE(q);
    CHECK_EQ(irpk_queue_run_timers(q, T_DEADLINE - 1), 0);
    CHECK_EQ(irpk_queue_run_timers(q, T_DEADLINE), 1);
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_TOO_LATE);
    CHECK_EQ(irpk_req_complete(q, h, 7), IRPK_QE_STALE);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], IRPK_QS_TIMEDOUT);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.timed_out, 1);
    irpk_queue_free(q);
}

TEST(running_cancel_then_complete_handler_decides)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 1);
    REQUIRE(q);
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_REQUESTED);
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_REQUESTED); /* still running: same answer */
    CHECK_EQ(r.nnotify, 1);                                  /* but told only once */
    CHECK_EQ(r.why[0], IRPK_NOTIFY_CANCEL);
    CHECK_EQ(irpk_req_is_cancelled(q, h), 1);
    CHECK_EQ(irpk_req_complete(q, h, 42), 0); /* the handler finished anyway */
    CHECK_EQ(irpk_queue_run_timers(q, T_DEADLINE), 0);
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_TOO_LATE);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], 42);
    irpk_queue_free(q);
}

TEST(running_deadline_then_cancel_then_complete)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 1);
    REQUIRE(q);
    CHECK_EQ(irpk_queue_run_timers(q, T_DEADLINE), 1);
    CHECK_EQ(r.nnotify, 1);
    CHECK_EQ(r.why[0], IRPK_NOTIFY_TIMEOUT);
    CHECK_EQ(r.ncomplete, 0); /* the executor still holds it */
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_TOO_LATE);
    CHECK_EQ(irpk_req_complete(q, h, 42), IRPK_REQ_OVERRIDDEN);
    CHECK_EQ(irpk_req_complete(q, h, 42), IRPK_QE_STALE);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], IRPK_QS_TIMEDOUT);
    irpk_queue_free(q);
}

TEST(running_complete_then_deadline_then_cancel)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 1);
    REQUIRE(q);
    CHECK_EQ(irpk_req_complete(q, h, 3), 0);
    CHECK_EQ(irpk_queue_run_timers(q, T_DEADLINE * 2), 0);
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_TOO_LATE);
    CHECK_EQ(r.nnotify, 0);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], 3);
    irpk_queue_free(q);
}

TEST(running_cancel_then_deadline_then_complete_deadline_wins)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 1);
    REQUIRE(q);
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_REQUESTED);
    CHECK_EQ(irpk_queue_run_timers(q, T_DEADLINE), 1);
    CHECK_EQ(r.nnotify, 1); /* already asked to stop: not told twice */
    CHECK_EQ(irpk_req_complete(q, h, 0), IRPK_REQ_OVERRIDDEN);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], IRPK_QS_TIMEDOUT);
    irpk_queue_free(q);
}

TEST(event_log_records_each_step_once)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 1);
    REQUIRE(q);
    irpk_req_cancel(q, h);
    irpk_req_complete(q, h, 9);
    irpk_queue_event ev[16];
    int n = irpk_queue_events(q, ev, 16);
    if (!QTEST_HAS_LOG) {
        CHECK_EQ(n, 0);
        irpk_queue_free(q);
        return;
    }
    static const irpk_queue_event_type want[] = {IRPK_EV_SUBMIT, IRPK_EV_QUEUE, IRPK_EV_DISPATCH,
                                                 IRPK_EV_CANCEL_REQUEST, IRPK_EV_COMPLETE};
    REQUIRE(n == 5);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(ev[i].type, want[i]);
        CHECK_EQ(ev[i].h, h);
        CHECK_EQ(ev[i].seq, (uint64_t)i + 1);
    }
    CHECK_EQ(ev[4].status, 9);
    CHECK_STR(irpk_queue_event_name(ev[3].type), "cancel-request");
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- notification lifetime */

static int notify_returned, completion_saw_notify_returned;
static void complete_in_notify(irpk_queue *q, irpk_req_handle h, irpk_notify_reason why,
                               void *r_ctx, void *q_ctx)
{
    (void)why;
    (void)r_ctx;
    (void)q_ctx;
    CHECK_EQ(irpk_req_complete(q, h, 5), 0);
    notify_returned = 1; /* the completion must not have run yet */
}
static void check_after_notify(irpk_queue *q, irpk_req_handle h, int32_t st, void *r_ctx, void *c)
{
    (void)q;
    (void)h;
    (void)st;
    (void)r_ctx;
    (void)c;
    completion_saw_notify_returned = notify_returned;
}

/* A MANUAL queue whose cancel notification completes the request at once. */
static irpk_queue *notify_completes_queue(void)
{
    irpk_queue_config c = queue_config(IRPK_QUEUE_MANUAL);
    c.on_cancel = complete_in_notify;
    c.on_complete = check_after_notify;
    return queue_from(&c);
}

TEST(completion_never_runs_before_cancel_notification_returns)
{
    irpk_queue *q = notify_completes_queue();
    REQUIRE(q);
    irpk_req_handle h = submit_ctx(q, NULL), got;
    irpk_queue_retrieve(q, &got);
    notify_returned = completion_saw_notify_returned = 0;
    CHECK_EQ(irpk_req_cancel(q, h), IRPK_CANCEL_REQUESTED);
    CHECK_EQ(completion_saw_notify_returned, 1);
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- blocking cancel */

typedef struct later {
    irpk_queue *q;
    irpk_req_handle h;
} later;

static void complete_later(void *arg)
{
    later *l = arg;
    while (irpk_req_is_cancelled(l->q, l->h) == 0) plat_sleep_ns(100000); /* until asked */
    CHECK_EQ(irpk_req_complete(l->q, l->h, 11), 0);
}

TEST(cancel_wait_returns_after_the_completion_callback)
{
    rec r;
    irpk_req_handle h;
    irpk_queue *q = matrix_queue(&r, &h, 1);
    REQUIRE(q);
    later l = {q, h};
    plat_thread *t = plat_thread_start(complete_later, &l, "completer", 0);
    REQUIRE(t);
    CHECK_EQ(irpk_req_cancel_wait(q, h), IRPK_CANCEL_REQUESTED);
    CHECK_EQ(r.ncomplete, 1); /* the callback has run by now */
    CHECK_EQ(r.status[0], 11);
    plat_thread_join(t);
    irpk_req_handle h2 = submit_ctx(q, NULL);
    CHECK_EQ(irpk_req_cancel_wait(q, h2), IRPK_CANCEL_REMOVED);
    CHECK_EQ(r.ncomplete, 2);
    CHECK_EQ(irpk_req_cancel_wait(q, h2), IRPK_CANCEL_TOO_LATE);
    irpk_queue_free(q);
}

static int busy_result;
static void cancel_wait_in_callback(irpk_queue *q, irpk_req_handle h, void *r_ctx, void *q_ctx)
{
    (void)r_ctx;
    (void)q_ctx;
    busy_result = irpk_req_cancel_wait(q, h);
    irpk_req_complete(q, h, 0);
}

TEST(cancel_wait_from_own_callback_fails_busy)
{
    irpk_queue *q = handler_queue(IRPK_QUEUE_SEQUENTIAL, 1, cancel_wait_in_callback);
    REQUIRE(q);
    busy_result = 0;
    submit_ctx(q, NULL);
    CHECK_EQ(busy_result, IRPK_QE_BUSY);
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- group cancel */

TEST(cancel_owner_removes_queued_and_notifies_running)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a1 = submit_opts(q, 0, 1, 0);
    irpk_req_handle b1 = submit_opts(q, 0, 2, 0);
    irpk_req_handle a2 = submit_opts(q, 0, 1, 0);
    irpk_req_handle a3 = submit_opts(q, 0, 1, 0);
    irpk_req_handle got;
    irpk_queue_retrieve(q, &got); /* a1 running */
    irpk_req_handle found[8];
    CHECK_EQ(irpk_queue_find_owner(q, 1, found, 8), 3);
    CHECK_EQ(found[0], a1);
    CHECK_EQ(found[2], a3);
    size_t removed = 9, requested = 9;
    CHECK_EQ(irpk_queue_cancel_owner(q, 1, &removed, &requested), 0);
    CHECK_EQ(removed, 2);
    CHECK_EQ(requested, 1);
    CHECK_EQ(r.ncomplete, 2);
    CHECK_EQ(r.completed[0], a2);
    CHECK_EQ(r.completed[1], a3);
    CHECK_EQ(r.notified[0], a1);
    CHECK_EQ(irpk_queue_find_owner(q, 2, found, 8), 1);
    CHECK_EQ(found[0], b1);
    CHECK_EQ(irpk_queue_cancel_owner(q, 77, &removed, &requested), 0);
    CHECK_EQ(removed + requested, 0);
    irpk_req_complete(q, a1, 0);
    CHECK_EQ(irpk_queue_find_owner(q, 1, found, 8), 0);
    irpk_queue_free(q);
}

/* --------------------------------------------------------------- real timer thread */

TEST(timer_thread_expires_queued_request)
{
    rec r;
    irpk_queue *q = completion_queue(&r, IRPK_QUEUE_MANUAL);
    REQUIRE(q);
    irpk_req_handle late = submit_opts(q, 0, 0, plat_now_ns() + 3600 * 1000000000LL);
    irpk_req_handle h = submit_opts(q, 0, 0, plat_now_ns() + 1000000);
    irpk_queue_stats s;
    for (int i = 0; i < 5000; i++) { /* up to 5 s: the check is on the outcome, not the time */
        irpk_queue_stats_get(q, &s);
        if (s.timed_out) break;
        plat_sleep_ns(1000000);
    }
    CHECK_EQ(s.timed_out, 1);
    /* _wait: the timer thread may still be inside the completion callback (the recorder is
     * not thread-safe); this returns once that callback has returned. */
    CHECK_EQ(irpk_req_cancel_wait(q, h), IRPK_CANCEL_TOO_LATE);
    CHECK_EQ(irpk_req_cancel(q, late), IRPK_CANCEL_REMOVED);
    irpk_queue_free(q);
}
