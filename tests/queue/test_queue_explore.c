/* Request queue under the race explorer: the platform's explore backend runs each scenario as
 * fibers and a random chooser picks the interleaving at every lock, atomic and wait, so many
 * distinct schedules of complete / cancel / deadline / stop / close are checked for the queue's
 * invariants (exactly one completion, consistent outcomes, the lifetime barrier), including
 * handlers that run on a dispatch lease and complete their request lock-free. */
#include "platform/explore.h"
#include "qtest.h"

static struct {
    irpk_queue *q;
    irpk_req_handle h;
    int completions, in_callback;
    int32_t status;
    int complete_rc, cancel_rc, timers_rc, retrieve_rc;
} X;

static void x_complete(irpk_queue *q, irpk_req_handle h, int32_t status, void *r, void *c)
{
    (void)q, (void)h, (void)r, (void)c;
    X.in_callback = 1;
    plat_yield(); /* a scheduling point inside the callback */
    X.completions++;
    X.status = status;
    X.in_callback = 0;
}

static irpk_queue *x_queue(irpk_queue_mode mode, irpk_dispatch_fn d)
{
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = mode;
    c.manual_timers = 1;
    c.on_dispatch = d;
    c.on_complete = x_complete;
    irpk_queue *q = NULL;
    if (irpk_queue_create(&c, &q)) plat_explore_fail("assert", "create failed");
    return q;
}

static void expect(int cond, const char *what)
{
    if (!cond) plat_explore_fail("assert", what);
}

static void t_complete(void *a) { (void)a, X.complete_rc = irpk_req_complete(X.q, X.h, 7); }
static void t_cancel(void *a) { (void)a, X.cancel_rc = irpk_req_cancel(X.q, X.h); }
static void t_timers(void *a) { (void)a, X.timers_rc = irpk_queue_run_timers(X.q, 1000); }
static void t_take_and_complete(void *a)
{
    (void)a;
    irpk_req_handle got;
    X.retrieve_rc = irpk_queue_retrieve(X.q, &got);
    if (X.retrieve_rc == 0) X.complete_rc = irpk_req_complete(X.q, got, 7);
}

static void run3(plat_thread_fn a, plat_thread_fn b, plat_thread_fn c)
{
    plat_thread *t[3] = {plat_thread_start(a, NULL, "a", 0), plat_thread_start(b, NULL, "b", 0),
                         plat_thread_start(c, NULL, "c", 0)};
    for (int i = 0; i < 3; i++) plat_thread_join(t[i]);
}

/* A running request: its executor completes it while someone cancels and the deadline hits. */
static void running_race(void *arg)
{
    (void)arg;
    memset(&X, 0, sizeof X);
    X.q = x_queue(IRPK_QUEUE_MANUAL, NULL);
    irpk_req_opts o = {0, 0, 0, 1000};
    irpk_queue_submit(X.q, &o, &X.h);
    irpk_req_handle got;
    irpk_queue_retrieve(X.q, &got);
    run3(t_complete, t_cancel, t_timers);
    expect(X.completions == 1, "not exactly one completion");
    if (X.complete_rc == 0)
        expect(X.status == 7 && X.timers_rc == 0, "executor's status lost");
    else
        expect(X.complete_rc == IRPK_REQ_OVERRIDDEN && X.status == IRPK_QS_TIMEDOUT &&
                   X.timers_rc == 1, "deadline outcome inconsistent");
    expect(X.cancel_rc == IRPK_CANCEL_REQUESTED || X.cancel_rc == IRPK_CANCEL_TOO_LATE,
           "running request: bad cancel result");
    irpk_queue_free(X.q);
}

/* A queued request: a worker takes and completes it while someone cancels and the deadline
 * hits; exactly one of them decides. */
static void queued_race(void *arg)
{
    (void)arg;
    memset(&X, 0, sizeof X);
    X.q = x_queue(IRPK_QUEUE_MANUAL, NULL);
    irpk_req_opts o = {0, 0, 0, 1000};
    irpk_queue_submit(X.q, &o, &X.h);
    run3(t_take_and_complete, t_cancel, t_timers);
    expect(X.completions == 1, "not exactly one completion");
    if (X.cancel_rc == IRPK_CANCEL_REMOVED)
        expect(X.status == IRPK_QS_CANCELLED && X.retrieve_rc == IRPK_QE_EMPTY, "cancel lost");
    else if (X.retrieve_rc == IRPK_QE_EMPTY)
        expect(X.status == IRPK_QS_TIMEDOUT && X.timers_rc == 1, "who ended it?");
    else
        expect(X.status == 7 || X.status == IRPK_QS_TIMEDOUT, "bad final status");
    irpk_queue_free(X.q);
}

/* Lifetime barrier: a sequential queue whose handler hands requests to a worker thread; the
 * main thread stops it synchronously and then closes it. After either returns, no callback
 * may be running. */
static irpk_req_handle handed;
static void hand_off(irpk_queue *q, irpk_req_handle h, void *r, void *c)
{
    (void)q, (void)r, (void)c;
    handed = h;
}
static void worker(void *a)
{
    (void)a;
    while (!handed) plat_yield();
    irpk_req_complete(X.q, handed, 1);
}

static void barrier_race(void *arg)
{
    (void)arg;
    memset(&X, 0, sizeof X);
    handed = 0;
    X.q = x_queue(IRPK_QUEUE_SEQUENTIAL, hand_off);
    irpk_req_opts o = {0};
    irpk_queue_submit(X.q, &o, NULL);
    irpk_queue_submit(X.q, &o, NULL);
    plat_thread *w = plat_thread_start(worker, NULL, "worker", 0);
    expect(irpk_queue_stop_sync(X.q) == 0, "stop_sync failed");
    expect(!X.in_callback, "callback running after stop_sync returned");
    expect(X.completions == 1, "stop returned before the running request completed");
    plat_thread_join(w);
    handed = 0;
    expect(irpk_queue_close(X.q) == 0, "close failed");
    expect(!X.in_callback, "callback running after close returned");
    expect(X.completions == 2, "close left a request behind");
    irpk_queue_free(X.q);
}

/* Direct delivery (release_and_leave): a cancel of a queued request and a manual completion
 * each deliver their completion on the calling thread, on a completion lease, while a third
 * thread closes the queue. close must not return while either callback runs, and each request
 * completes exactly once with its own outcome. */
static irpk_req_handle direct_h[2];
static int direct_cancel_rc, direct_take_rc;
static void d_cancel(void *a) { (void)a, direct_cancel_rc = irpk_req_cancel(X.q, direct_h[0]); }
static void d_take_and_complete(void *a)
{
    (void)a;
    irpk_req_handle got;
    direct_take_rc = irpk_queue_retrieve(X.q, &got);
    if (direct_take_rc == 0) X.complete_rc = irpk_req_complete(X.q, got, 7);
}
static void d_close(void *a)
{
    (void)a;
    expect(irpk_queue_close(X.q) == 0, "close failed");
    expect(!X.in_callback, "callback running after close returned");
    expect(X.completions == 2, "close returned before both requests completed");
}

static void direct_delivery_vs_close(void *arg)
{
    (void)arg;
    memset(&X, 0, sizeof X);
    X.q = x_queue(IRPK_QUEUE_MANUAL, NULL);
    irpk_req_opts o = {0};
    irpk_queue_submit(X.q, &o, &direct_h[0]);
    irpk_queue_submit(X.q, &o, &direct_h[1]);
    run3(d_cancel, d_take_and_complete, d_close);
    expect(X.completions == 2, "not exactly two completions");
    /* The cancel removes request 0 unless the worker retrieved it first (FIFO) or close's purge
     * got it; the worker gets a request unless close purged both. */
    expect(direct_cancel_rc == IRPK_CANCEL_REMOVED || direct_cancel_rc == IRPK_CANCEL_REQUESTED ||
               direct_cancel_rc == IRPK_CANCEL_TOO_LATE || direct_cancel_rc == IRPK_QE_CLOSED,
           "bad cancel result");
    expect(direct_take_rc == 0 ? X.complete_rc == 0 || X.complete_rc == IRPK_REQ_OVERRIDDEN
                               : direct_take_rc == IRPK_QE_EMPTY || direct_take_rc == IRPK_QE_CLOSED,
           "bad worker result");
    irpk_queue_free(X.q);
}

/* Direct delivery behind a running request (release_and_leave with nothing_to_run): a
 * SEQUENTIAL queue whose handler keeps its request running (hand_off), A running and B, C
 * queued behind it. One thread cancels C — while A or B holds the only slot and no lease is
 * held nothing else can run, so C's completion is delivered directly — while another completes
 * A (which must dispatch B) and a third submits D behind them. Every request ends exactly once
 * with its own status, B and D are dispatched in order, and close waits for everything. */
static int busy_status[4], busy_done[4], busy_in_cb;
static irpk_req_handle busy_h[4];
static void busy_complete(irpk_queue *q, irpk_req_handle h, int32_t status, void *r, void *c)
{
    (void)q, (void)h, (void)c;
    busy_in_cb = 1;
    plat_yield();
    int i = (int)(intptr_t)r;
    busy_done[i]++;
    busy_status[i] = status;
    busy_in_cb = 0;
}
static void b_cancel(void *a) { (void)a, X.cancel_rc = irpk_req_cancel(X.q, busy_h[2]); }
static void b_complete_running(void *a) { (void)a, X.complete_rc = irpk_req_complete(X.q, busy_h[0], 7); }
static void b_submit(void *a)
{
    (void)a;
    irpk_req_opts o = {(void *)(intptr_t)3, 0, 0, 0};
    expect(irpk_queue_submit(X.q, &o, &busy_h[3]) == 0, "submit D failed");
}

static void busy_cancel_race(void *arg)
{
    (void)arg;
    memset(&X, 0, sizeof X);
    memset(busy_status, 0, sizeof busy_status);
    memset(busy_done, 0, sizeof busy_done);
    busy_in_cb = 0;
    handed = 0;
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = IRPK_QUEUE_SEQUENTIAL;
    c.on_dispatch = hand_off;
    c.on_complete = busy_complete;
    expect(irpk_queue_create(&c, &X.q) == 0, "create failed");
    for (int i = 0; i < 3; i++) {
        irpk_req_opts o = {(void *)(intptr_t)i, 0, 0, 0};
        expect(irpk_queue_submit(X.q, &o, &busy_h[i]) == 0, "submit failed");
    }
    expect(handed == busy_h[0], "A not dispatched");
    run3(b_cancel, b_complete_running, b_submit);
    expect(X.cancel_rc == IRPK_CANCEL_REMOVED, "C was queued behind B: the cancel must remove it");
    expect(X.complete_rc == 0, "completing the running A failed");
    expect(busy_done[0] == 1 && busy_status[0] == 7, "A not completed once with its status");
    expect(busy_done[2] == 1 && busy_status[2] == IRPK_QS_CANCELLED, "C not cancelled once");
    expect(handed == busy_h[1], "A's completion did not dispatch B");
    expect(irpk_req_complete(X.q, busy_h[1], 8) == 0, "completing B failed");
    expect(handed == busy_h[3], "B's completion did not dispatch D");
    expect(irpk_req_complete(X.q, busy_h[3], 9) == 0, "completing D failed");
    expect(irpk_queue_close(X.q) == 0, "close failed");
    expect(!busy_in_cb, "callback running after close returned");
    for (int i = 0; i < 4; i++) expect(busy_done[i] == 1, "a request did not complete exactly once");
    expect(busy_status[1] == 8 && busy_status[3] == 9, "B or D completed with the wrong status");
    irpk_queue_free(X.q);
}

static int choose_random(void *ctx, const plat_explore_decision *d)
{
    return (int)(irpk_test_rand(ctx) % d->n);
}

static void explore(plat_thread_fn scenario, long runs)
{
    uint64_t seed = 12345;
    long failures = 0;
    uint64_t distinct_hint = 0;
    for (long i = 0; i < runs; i++) {
        plat_explore_config cfg = {scenario, NULL, choose_random, &seed, 2, 200000, false};
        plat_explore_outcome out;
        plat_explore_run(&cfg, &out);
        distinct_hint ^= out.hash;
        if (out.status != PLAT_EXO_OK && failures++ < 3)
            irpk_test_fail(__FILE__, __LINE__, "run %ld: status %d %s: %s", i, (int)out.status,
                           out.what, out.detail);
    }
    CHECK_EQ(failures, 0);
    CHECK(distinct_hint != 0);
}

TEST(explore_running_request_complete_cancel_deadline)
{
    explore(running_race, irpk_test_scale(3000));
}

TEST(explore_queued_request_retrieve_cancel_deadline)
{
    explore(queued_race, irpk_test_scale(3000));
}

TEST(explore_stop_sync_and_close_are_lifetime_barriers)
{
    explore(barrier_race, irpk_test_scale(2000));
}

TEST(explore_direct_delivery_and_close)
{
    explore(direct_delivery_vs_close, irpk_test_scale(3000));
}

TEST(explore_cancel_behind_a_running_request_and_its_completion)
{
    explore(busy_cancel_race, irpk_test_scale(3000));
}

/* ------------------------------------------------------------------ dispatch leases
 *
 * A handler running inline on a lease (SEQUENTIAL, no event log) completes its request in its
 * frame — one CAS on the lease word, no lock — while other threads cancel it (with a
 * notification), complete it a second time, or stop the queue. Checked: one completion with
 * the winner's status, exactly one successful completer, the notification never after the
 * completion, and stop_sync / close never returning while a callback (the lease) runs. */

static struct {
    irpk_queue *q;
    volatile irpk_req_handle h;
    int completions, notifies, in_notify, in_callback;
    int32_t status;
    int inframe_rc, other_rc, cancel_rc, notify_overlap;
} L;

static void l_dispatch(irpk_queue *q, irpk_req_handle h, void *r, void *c)
{
    (void)r, (void)c;
    L.in_callback = 1;
    L.h = h;
    plat_yield(); /* the other threads run here */
    L.inframe_rc = irpk_req_complete(q, h, 7);
    plat_yield();
    L.in_callback = 0;
}
static void l_complete(irpk_queue *q, irpk_req_handle h, int32_t status, void *r, void *c)
{
    (void)q, (void)h, (void)r, (void)c;
    if (L.in_notify) L.notify_overlap = 1;
    L.in_callback = 1;
    plat_yield();
    L.completions++;
    L.status = status;
    L.in_callback = 0;
}
static void l_notify(irpk_queue *q, irpk_req_handle h, irpk_notify_reason why, void *r, void *c)
{
    (void)q, (void)h, (void)why, (void)r, (void)c;
    L.in_notify = 1;
    plat_yield();
    if (L.completions) L.notify_overlap = 1; /* a notification after the completion */
    L.notifies++;
    L.in_notify = 0;
}
static irpk_queue *l_queue(void)
{
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.on_dispatch = l_dispatch;
    c.on_complete = l_complete;
    c.on_cancel = l_notify;
    irpk_queue *q = NULL;
    if (irpk_queue_create(&c, &q)) plat_explore_fail("assert", "create failed");
    return q;
}
static void l_wait_handle(void)
{
    while (!L.h) plat_yield();
}
static void l_cancel(void *a) { (void)a, l_wait_handle(), L.cancel_rc = irpk_req_cancel(L.q, L.h); }
static void l_complete_again(void *a)
{
    (void)a, l_wait_handle(), L.other_rc = irpk_req_complete(L.q, L.h, 9);
}
static void l_submit(void *a)
{
    (void)a;
    irpk_req_opts o = {0};
    irpk_queue_submit(L.q, &o, NULL); /* idle queue: the handler runs here, on a lease */
}

static void lease_complete_cancel_complete(void *arg)
{
    (void)arg;
    memset(&L, 0, sizeof L);
    L.q = l_queue();
    run3(l_submit, l_cancel, l_complete_again);
    expect(L.completions == 1, "not exactly one completion");
    expect((L.inframe_rc == 0) != (L.other_rc == 0), "not exactly one successful completer");
    expect(L.status == (L.inframe_rc == 0 ? 7 : 9), "the winner's status was not delivered");
    expect(L.inframe_rc == 0 || L.inframe_rc == IRPK_QE_ALREADY || L.inframe_rc == IRPK_QE_STALE,
           "handler: bad result");
    expect(L.other_rc == 0 || L.other_rc == IRPK_QE_ALREADY || L.other_rc == IRPK_QE_STALE,
           "second completer: bad result");
    expect(!L.notify_overlap, "cancel notification overlapped or followed the completion");
    expect(L.cancel_rc == IRPK_CANCEL_REQUESTED ? L.notifies == 1 : L.notifies == 0,
           "notification count does not match the cancel result");
    expect(L.cancel_rc == IRPK_CANCEL_REQUESTED || L.cancel_rc == IRPK_CANCEL_TOO_LATE,
           "bad cancel result");
    irpk_req_info info;
    expect(irpk_req_info_get(L.q, L.h, &info) == IRPK_QE_STALE, "request still live");
    irpk_queue_free(L.q);
}

static void l_submit_two(void *a)
{
    (void)a;
    irpk_req_opts o = {0};
    irpk_queue_submit(L.q, &o, NULL); /* idle: runs here on a lease */
    irpk_queue_submit(L.q, &o, NULL); /* queued behind, or running on the next lease */
}
/* stop_sync, then close, from one thread: each must return with no callback running. */
static void l_stop_then_close(void *a)
{
    (void)a;
    l_wait_handle();
    expect(irpk_queue_stop_sync(L.q) == 0, "stop_sync failed");
    expect(!L.in_callback && !L.in_notify, "callback running after stop_sync returned");
    expect(L.completions >= 1, "stop returned before the running request completed");
    expect(irpk_queue_start(L.q) == 0, "start failed");
    expect(irpk_queue_close(L.q) == 0, "close failed");
    expect(!L.in_callback && !L.in_notify, "callback running after close returned");
}

static void lease_stop_and_close_are_barriers(void *arg)
{
    (void)arg;
    memset(&L, 0, sizeof L);
    L.q = l_queue();
    run3(l_submit_two, l_stop_then_close, l_cancel);
    irpk_queue_stats s;
    irpk_queue_stats_get(L.q, &s);
    expect(s.live == 0 && s.submitted == s.completed + s.cancelled, "requests left behind");
    expect(L.completions == (int)s.submitted, "completion count");
    irpk_queue_free(L.q);
}

/* A submit to a queue that is full because its one request runs on a dispatch lease: the
 * submitter cannot dispatch, so it must poke the lease, or the handler's lock-free return
 * strands the new request (nobody would dispatch it until some later call). Regression for
 * q_leave's "queued but no room" shortcut, which is taken only while no lease is held. */
static void l_submit_behind(void *a)
{
    (void)a;
    l_wait_handle(); /* the first handler is running (on its lease) */
    irpk_req_opts o = {0};
    irpk_queue_submit(L.q, &o, NULL);
}
static void l_idle(void *a) { (void)a; }

static void lease_submit_behind_running_handler(void *arg)
{
    (void)arg;
    memset(&L, 0, sizeof L);
    L.q = l_queue();
    run3(l_submit, l_submit_behind, l_idle);
    expect(L.completions == 2, "a request queued behind a leased handler was never dispatched");
    irpk_queue_stats s;
    irpk_queue_stats_get(L.q, &s);
    expect(s.live == 0 && s.queued == 0, "requests left behind");
    irpk_queue_free(L.q);
}

TEST(explore_lease_submit_behind_a_leased_handler_is_dispatched)
{
    explore(lease_submit_behind_running_handler, irpk_test_scale(3000));
}

TEST(explore_lease_inframe_complete_vs_cancel_vs_second_complete)
{
    explore(lease_complete_cancel_complete, irpk_test_scale(3000));
}

TEST(explore_lease_stop_sync_and_close_wait_for_the_leased_handler)
{
    explore(lease_stop_and_close_are_barriers, irpk_test_scale(2000));
}
