/* Request queue: configuration, dispatch modes, FIFO order, handles, exactly-once completion,
 * bad input. Single-threaded and deterministic (manual timers). */
#include "qtest.h"

TEST(create_rejects_bad_configurations)
{
    irpk_queue_config c;
    irpk_queue *q = NULL;
    CHECK_EQ(irpk_queue_create(NULL, &q), IRPK_QE_INVAL);
    irpk_queue_config_init(&c);
    CHECK_EQ(irpk_queue_create(&c, &q), IRPK_QE_INVAL); /* no on_dispatch */
    c.on_dispatch = rec_dispatch;
    CHECK_EQ(irpk_queue_create(&c, NULL), IRPK_QE_INVAL);
    c.mode = (irpk_queue_mode)9;
    CHECK_EQ(irpk_queue_create(&c, &q), IRPK_QE_INVAL);
    c.mode = IRPK_QUEUE_PARALLEL;
    c.max_parallel = 0;
    CHECK_EQ(irpk_queue_create(&c, &q), IRPK_QE_INVAL);
    c.mode = IRPK_QUEUE_KEYED_SERIAL;
    c.max_parallel = 2;
    c.order = IRPK_ORDER_PRIORITY;
    CHECK_EQ(irpk_queue_create(&c, &q), IRPK_QE_MODE);
    c.order = IRPK_ORDER_FIFO;
    c.high_watermark = 4;
    c.low_watermark = 4;
    CHECK_EQ(irpk_queue_create(&c, &q), IRPK_QE_INVAL);
    c.low_watermark = 1;
    CHECK_EQ(irpk_queue_create(&c, &q), 0);
    CHECK_EQ(irpk_queue_free(q), 0);
}

TEST(null_queue_and_null_arguments_return_inval)
{
    irpk_req_handle h;
    irpk_req_opts o = {0};
    CHECK_EQ(irpk_queue_submit(NULL, &o, &h), IRPK_QE_INVAL);
    CHECK_EQ(irpk_req_complete(NULL, 1, 0), IRPK_QE_INVAL);
    CHECK_EQ(irpk_req_cancel(NULL, 1), IRPK_QE_INVAL);
    CHECK_EQ(irpk_req_cancel_wait(NULL, 1), IRPK_QE_INVAL);
    CHECK_EQ(irpk_queue_retrieve(NULL, &h), IRPK_QE_INVAL);
    CHECK_EQ(irpk_queue_stop_sync(NULL), IRPK_QE_INVAL);
    CHECK_EQ(irpk_queue_close(NULL), IRPK_QE_INVAL);
    CHECK_EQ(irpk_queue_free(NULL), IRPK_QE_INVAL);
    CHECK_EQ(irpk_queue_dump(NULL, NULL, 0), IRPK_QE_INVAL);
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    CHECK_EQ(irpk_queue_submit(q, NULL, &h), IRPK_QE_INVAL);
    CHECK_EQ(irpk_queue_retrieve(q, NULL), IRPK_QE_INVAL);
    CHECK_EQ(irpk_req_info_get(q, 1, NULL), IRPK_QE_INVAL);
    irpk_queue_free(q);
}

TEST(sequential_dispatches_fifo_one_at_a_time)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_SEQUENTIAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle h[3];
    for (int i = 0; i < 3; i++) h[i] = submit_ctx(q, (void *)(uintptr_t)(i + 1));
    CHECK_EQ(r.ndispatch, 1); /* first one runs at once, the others wait */
    CHECK_EQ(r.dispatched[0], h[0]);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.queued, 2);
    CHECK_EQ(s.running, 1);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(r.dispatched[i], h[i]);
        CHECK_EQ(irpk_req_complete(q, h[i], 100 + i), 0);
    }
    CHECK_EQ(r.ncomplete, 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(r.completed[i], h[i]);
        CHECK_EQ(r.status[i], 100 + i);
        CHECK_PTR(r.cctx[i], (void *)(uintptr_t)(i + 1));
    }
    irpk_queue_free(q);
}

TEST(inline_completion_is_iteration_not_recursion)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_SEQUENTIAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_queue_stop_sync(q);
    for (int i = 0; i < 1000; i++) submit_ctx(q, NULL);
    r.complete_inline = 1;
    CHECK_EQ(irpk_queue_start(q), 0); /* dispatches all 1000 from this one call */
    CHECK_EQ(r.ndispatch, 1000);
    CHECK_EQ(r.ncomplete, 1000);
    CHECK_EQ(r.max_depth, 1); /* never nested */
    irpk_queue_free(q);
}

TEST(parallel_caps_running_requests)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_PARALLEL, IRPK_ORDER_FIFO, 3);
    REQUIRE(q);
    irpk_req_handle h[5];
    for (int i = 0; i < 5; i++) h[i] = submit_ctx(q, NULL);
    CHECK_EQ(r.ndispatch, 3);
    CHECK_EQ(irpk_req_complete(q, h[1], 0), 0);
    CHECK_EQ(r.ndispatch, 4);
    CHECK_EQ(r.dispatched[3], h[3]);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.running, 3);
    CHECK_EQ(s.queued, 1);
    irpk_req_complete(q, h[0], 0);
    irpk_req_complete(q, h[2], 0);
    irpk_req_complete(q, h[3], 0);
    irpk_req_complete(q, h[4], 0);
    CHECK_EQ(r.ncomplete, 5);
    irpk_queue_free(q);
}

TEST(manual_queue_retrieve_and_ready_notification)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle out;
    CHECK_EQ(irpk_queue_retrieve(q, &out), IRPK_QE_EMPTY);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL);
    CHECK_EQ(r.nready, 1); /* empty → non-empty once */
    CHECK_EQ(r.ndispatch, 0);
    CHECK_EQ(irpk_queue_peek(q, &out), 0);
    CHECK_EQ(out, a);
    CHECK_EQ(irpk_queue_retrieve(q, &out), 0);
    CHECK_EQ(out, a);
    CHECK_EQ(irpk_queue_retrieve(q, &out), 0);
    CHECK_EQ(out, b);
    CHECK_EQ(irpk_queue_retrieve(q, &out), IRPK_QE_EMPTY);
    submit_ctx(q, NULL);
    CHECK_EQ(r.nready, 2);
    CHECK_EQ(irpk_queue_retrieve_key(q, 0, &out), IRPK_QE_MODE); /* FIFO has no keys */
    CHECK_EQ(irpk_req_complete(q, a, 0), 0);
    CHECK_EQ(irpk_req_complete(q, b, 0), 0);
    CHECK_EQ(irpk_queue_stop_sync(q), 0);
    CHECK_EQ(irpk_queue_retrieve(q, &out), IRPK_QE_STOPPED);
    CHECK_EQ(irpk_queue_start(q), 0);
    CHECK_EQ(r.nready, 3); /* start with requests waiting announces them */
    irpk_queue_free(q);
}

TEST(retrieve_on_dispatching_queue_is_wrong_mode)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_SEQUENTIAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle out;
    CHECK_EQ(irpk_queue_retrieve(q, &out), IRPK_QE_MODE);
    irpk_req_handle h = submit_ctx(q, NULL);
    CHECK_EQ(irpk_req_set_key(q, h, 3), IRPK_QE_MODE);
    irpk_req_complete(q, h, 0);
    irpk_queue_free(q);
}

TEST(complete_twice_or_not_owned_is_an_error_that_changes_nothing)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_SEQUENTIAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), b = submit_ctx(q, NULL);
    CHECK_EQ(irpk_req_complete(q, b, 5), IRPK_QE_NOTOWNER); /* still queued */
    CHECK_EQ(irpk_req_complete(q, a, 1), 0);
    CHECK_EQ(irpk_req_complete(q, a, 2), IRPK_QE_STALE);
    CHECK_EQ(r.ncomplete, 1);
    CHECK_EQ(r.status[0], 1);
    CHECK_EQ(irpk_req_complete(q, b, 3), 0); /* b was dispatched after a completed */
    CHECK_EQ(r.ncomplete, 2);
    CHECK_EQ(irpk_req_complete(q, 0, 0), IRPK_QE_STALE);
    CHECK_EQ(irpk_req_complete(q, ~0ull, 0), IRPK_QE_STALE);
    irpk_queue_free(q);
}

TEST(stale_handle_never_reaches_recycled_slot)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL), out;
    irpk_queue_retrieve(q, &out);
    irpk_req_complete(q, a, 0);
    irpk_req_handle b = submit_ctx(q, (void *)7); /* reuses a's slot (LIFO free list) */
    CHECK((a & 0xffffff) == (b & 0xffffff));
    CHECK(a != b);
    CHECK_EQ(irpk_req_cancel(q, a), IRPK_CANCEL_TOO_LATE);
    CHECK_EQ(irpk_req_complete(q, a, 0), IRPK_QE_STALE);
    irpk_req_info info;
    CHECK_EQ(irpk_req_info_get(q, a, &info), IRPK_QE_STALE);
    CHECK_EQ(irpk_req_info_get(q, b, &info), 0);
    CHECK_EQ(info.state, IRPK_REQ_QUEUED);
    CHECK_PTR(info.ctx, (void *)7);
    CHECK_EQ(irpk_req_cancel(q, b + (1ull << 24)), IRPK_CANCEL_NOT_FOUND); /* future generation */
    CHECK_EQ(irpk_req_cancel(q, b), IRPK_CANCEL_REMOVED);
    irpk_queue_free(q);
}

TEST(closed_queue_rejects_every_call)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_SEQUENTIAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_ctx(q, NULL);
    irpk_req_handle b = submit_ctx(q, NULL);
    r.complete_on_notify = 1; /* running a is told to stop and completes itself */
    CHECK_EQ(irpk_queue_close(q), 0);
    CHECK_EQ(r.ncomplete, 2);
    CHECK_EQ(r.nnotify, 1);
    CHECK_EQ(r.notified[0], a);
    CHECK_EQ(r.completed[0], b); /* queued b is removed at once; running a completes itself */
    CHECK_EQ(r.completed[1], a);
    CHECK_EQ(r.status[0], IRPK_QS_CANCELLED);
    CHECK_EQ(r.status[1], IRPK_QS_CANCELLED);
    irpk_req_opts o = {0};
    irpk_req_handle h;
    CHECK_EQ(irpk_queue_submit(q, &o, &h), IRPK_QE_CLOSED);
    CHECK_EQ(irpk_req_cancel(q, a), IRPK_QE_CLOSED);
    CHECK_EQ(irpk_queue_close(q), IRPK_QE_CLOSED);
    CHECK_EQ(irpk_queue_start(q), IRPK_QE_CLOSED);
    CHECK_EQ(irpk_queue_free(q), 0);
}

TEST(strerror_names_every_code)
{
    for (int c = IRPK_QE_INPROGRESS; c <= 0; c++) CHECK(strcmp(irpk_queue_strerror(c), "unknown") != 0);
    CHECK_STR(irpk_queue_strerror(IRPK_QS_TIMEDOUT), "timed out");
    CHECK_STR(irpk_queue_strerror(12345), "unknown");
}

TEST(handles_stay_valid_across_slot_table_growth)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_FIFO, 1);
    REQUIRE(q);
    enum { N = 5000 };
    static irpk_req_handle h[N];
    for (int i = 0; i < N; i++) h[i] = submit_ctx(q, (void *)(uintptr_t)i);
    irpk_req_info info;
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += irpk_req_info_get(q, h[i], &info) == 0 && info.ctx == (void *)(uintptr_t)i;
    CHECK_EQ(ok, N);
    CHECK_EQ(irpk_queue_purge_sync(q), 0);
    CHECK_EQ(r.ncomplete, N);
    irpk_queue_free(q);
}

TEST(allocation_failures_return_nomem_and_change_nothing)
{
    rec r;
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.on_dispatch = rec_dispatch;
    irpk_queue *q = NULL;
    plat_fail_allocs(1);
    CHECK_EQ(irpk_queue_create(&c, &q), IRPK_QE_NOMEM);
    CHECK(q == NULL);

    q = rec_queue(&r, IRPK_QUEUE_KEYED_SERIAL, IRPK_ORDER_FIFO, 2);
    REQUIRE(q);
    irpk_req_opts o = {0, 5, 9, 0};
    irpk_req_handle h = 0;
    plat_fail_allocs(1); /* the slot table's first chunk */
    CHECK_EQ(irpk_queue_submit(q, &o, &h), IRPK_QE_NOMEM);
    CHECK_EQ(irpk_queue_submit(q, &o, &h), 0); /* table, lane 5, owner 9 now exist */
    o.key = 6;
    plat_fail_allocs(1); /* lane 6 */
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), IRPK_QE_NOMEM);
    o.owner = 10;
    o.key = 5;
    plat_fail_allocs(1); /* owner group 10 */
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), IRPK_QE_NOMEM);
    o.owner = 0;
    o.deadline_ns = 1;
    plat_fail_allocs(1); /* deadline heap */
    CHECK_EQ(irpk_queue_submit(q, &o, NULL), IRPK_QE_NOMEM);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.submitted, 1);
    CHECK_EQ(s.live, 1);
    CHECK_EQ(r.ndispatch, 1);
    CHECK_EQ(irpk_req_complete(q, h, 0), 0);
    irpk_req_handle found[2];
    CHECK_EQ(irpk_queue_find_owner(q, 10, found, 2), 0);
    irpk_queue_free(q);
}
