/* The seed's program (examples/hello_startio/user_program.c) against the sample driver — what
 * `irpkit demo` runs — checked on its recorded event stream: CREATE, READ x2, StartIo (and in
 * which context), CANCEL, CLEANUP, CLOSE, in the order each flow implies; and every request's
 * result. A device time of 300 ms gives the flows' "while the read is in progress" room. */
#include "irpkit/verifier.h"
#include "test.h"
#include "trace/trace.h"
#include "user_program.h"

typedef struct stream {
    trace_event *ev;
    size_t n;
} stream;

static stream record(hello_user_flow flow, hello_user_result *res)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    trace_observe_ke(true);
    trace_clear();
    trace_enable(true);
    hello_user_config cfg = {flow, 0, 300};
    int rc = hello_user_run(&cfg, res);
    trace_enable(false);
    trace_observe_ke(false);
    if (rc) irpk_test_fail(__FILE__, __LINE__, "hello_user_run failed");
    stream s = {calloc(trace_count() + 1, sizeof(trace_event)), 0};
    s.n = trace_snapshot(s.ev, trace_count());
    CHECK_EQ(trace_dropped(), 0);
    return s;
}

static bool is_dispatch(const trace_event *e, const char *major)
{
    return e->phase == TRACE_BEGIN && !strcmp(e->routine, "Dispatch") && !strcmp(e->what, major);
}

/* Index of the nth (0-based) event at or after `from` satisfying the predicate, or -1. */
static long find(const stream *s, size_t from, int nth, bool (*pred)(const trace_event *, const void *),
                 const void *arg)
{
    for (size_t i = from; i < s->n; i++)
        if (pred(&s->ev[i], arg) && nth-- == 0) return (long)i;
    return -1;
}

static bool p_dispatch(const trace_event *e, const void *major) { return is_dispatch(e, major); }
static bool p_startio(const trace_event *e, const void *a)
{
    (void)a;
    return e->phase == TRACE_BEGIN && !strcmp(e->routine, "StartIo");
}
static bool p_cancel_irp(const trace_event *e, const void *a)
{
    (void)a;
    return e->phase == TRACE_INSTANT && !strcmp(e->routine, "IoCancelIrp");
}
static bool p_completed_cancelled(const trace_event *e, const void *a)
{
    (void)a;
    return e->phase == TRACE_INSTANT && !strcmp(e->routine, "IoCompleteRequest") && strstr(e->what, "0xC0000120");
}
static bool p_handoff(const trace_event *e, const void *a)
{
    (void)a;
    return e->phase == TRACE_INSTANT && !strcmp(e->routine, "I/O completion");
}

static bool p_cancel_of(const trace_event *e, const void *irp_id)
{
    return p_cancel_irp(e, NULL) && e->irp_id == *(const uint32_t *)irp_id;
}

static bool p_cancelled_of(const trace_event *e, const void *irp_id)
{
    return p_completed_cancelled(e, NULL) && e->irp_id == *(const uint32_t *)irp_id;
}

static long last(const stream *s, bool (*pred)(const trace_event *, const void *), const void *arg)
{
    long r = -1;
    for (size_t i = 0; i < s->n; i++)
        if (pred(&s->ev[i], arg)) r = (long)i;
    return r;
}

static void check_clean(const hello_user_result *r)
{
    CHECK_EQ(r->open_status, STATUS_SUCCESS);
    CHECK_EQ(r->close_status, STATUS_SUCCESS);
    CHECK_EQ(r->read_returned[0], STATUS_PENDING);
    CHECK_EQ(r->read_returned[1], STATUS_PENDING);
    CHECK_EQ(r->irps_leaked, 0);
    CHECK_EQ(r->handles_leaked, 0);
    CHECK_EQ(r->files_leaked, 0);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(demo_default_close_while_reads_are_in_flight)
{
    hello_user_result r;
    stream s = record(HELLO_FLOW_CLOSE_EARLY, &r);
    long create = find(&s, 0, 0, p_dispatch, "IRP_MJ_CREATE");
    long read1 = find(&s, 0, 0, p_dispatch, "IRP_MJ_READ");
    long read2 = find(&s, 0, 1, p_dispatch, "IRP_MJ_READ");
    long startio = find(&s, 0, 0, p_startio, NULL);
    long cleanup = find(&s, 0, 0, p_dispatch, "IRP_MJ_CLEANUP");
    long cancel = find(&s, (size_t)(cleanup < 0 ? 0 : cleanup), 0, p_completed_cancelled, NULL);
    long close = find(&s, 0, 0, p_dispatch, "IRP_MJ_CLOSE");
    CHECK(create >= 0 && read1 > create && startio > read1 && read2 > startio);
    CHECK(cleanup > read2 && cancel > cleanup);    /* the driver's cleanup cancels the queued read */
    CHECK(close > last(&s, p_handoff, NULL));      /* CLOSE only after the last read completed */
    CHECK_EQ(find(&s, 0, 1, p_dispatch, "IRP_MJ_CLEANUP"), -1);
    CHECK_EQ(find(&s, 0, 1, p_dispatch, "IRP_MJ_CLOSE"), -1);
    REQUIRE(startio >= 0);
    CHECK_STR(s.ev[startio].thread, "reader-1"); /* StartIo ran inside reader-1's NtReadFile */
    char irql[16];
    CHECK_STR(trace_irql_name(s.ev[startio].irql, irql, sizeof irql), "DISPATCH");
    CHECK_EQ(r.iosb[0].Status, STATUS_SUCCESS);
    CHECK_EQ(r.iosb[0].Information, 10);
    CHECK(!memcmp(r.data[0], "hello from", 10));
    CHECK_EQ(r.iosb[1].Status, STATUS_CANCELLED);
    check_clean(&r);
    free(s.ev);
}

TEST(demo_cancel_each_thread_calls_cancelio)
{
    hello_user_result r;
    stream s = record(HELLO_FLOW_CANCEL_IO, &r);
    long create = find(&s, 0, 0, p_dispatch, "IRP_MJ_CREATE");
    long read1 = find(&s, 0, 0, p_dispatch, "IRP_MJ_READ");
    long read2 = find(&s, 0, 1, p_dispatch, "IRP_MJ_READ");
    long startio = find(&s, 0, 0, p_startio, NULL);
    REQUIRE(read1 >= 0 && read2 >= 0);
    uint32_t irp1 = s.ev[read1].irp_id, irp2 = s.ev[read2].irp_id;
    long cancel1 = find(&s, 0, 0, p_cancel_of, &irp1), cancel2 = find(&s, 0, 0, p_cancel_of, &irp2);
    long cancelled2 = find(&s, 0, 0, p_cancelled_of, &irp2);
    long cleanup = find(&s, 0, 0, p_dispatch, "IRP_MJ_CLEANUP");
    long close = find(&s, 0, 0, p_dispatch, "IRP_MJ_CLOSE");
    CHECK(create >= 0 && read1 > create && startio > read1 && cancel1 > startio && read2 > read1);
    CHECK(cancel2 > read2 && cancelled2 > cancel2); /* reader-2's queued read: cancelled by CancelIo */
    CHECK_EQ(find(&s, 0, 0, p_cancelled_of, &irp1), -1); /* reader-1's: StartIo owned it already */
    CHECK(cleanup > last(&s, p_handoff, NULL));      /* main closes after both threads finished */
    CHECK(close > cleanup);
    REQUIRE(cancel1 >= 0 && cancel2 >= 0);
    CHECK_STR(s.ev[cancel1].thread, "reader-1"); /* CancelIo runs IoCancelIrp in its caller */
    CHECK_STR(s.ev[cancel2].thread, "reader-2");
    CHECK_EQ(r.iosb[0].Status, STATUS_SUCCESS); /* StartIo owned it: not cancelable, CancelIo waited */
    CHECK_EQ(r.iosb[1].Status, STATUS_CANCELLED);
    check_clean(&r);
    free(s.ev);
}

TEST(demo_wait_first_the_seed_program_as_written)
{
    hello_user_result r;
    stream s = record(HELLO_FLOW_WAIT_FIRST, &r);
    long startio2 = find(&s, 0, 1, p_startio, NULL);
    long cleanup = find(&s, 0, 0, p_dispatch, "IRP_MJ_CLEANUP");
    long close = find(&s, 0, 0, p_dispatch, "IRP_MJ_CLOSE");
    CHECK_EQ(find(&s, 0, 0, p_cancel_irp, NULL), -1);
    CHECK_EQ(find(&s, 0, 0, p_completed_cancelled, NULL), -1);
    REQUIRE(startio2 >= 0);
    CHECK(!strncmp(s.ev[startio2].thread, "DPC", 3)); /* the second StartIo: IoStartNextPacket in the DPC */
    CHECK(cleanup > last(&s, p_handoff, NULL) && close > cleanup);
    CHECK_EQ(r.iosb[0].Status, STATUS_SUCCESS);
    CHECK_EQ(r.iosb[1].Status, STATUS_SUCCESS);
    check_clean(&r);
    free(s.ev);
}
