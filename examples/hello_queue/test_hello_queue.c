/* hello_queue end to end: 4 readers × many reads through the sample driver on the IRP adapter,
 * with random IoCancelIrp from a fifth thread, or with each reader's IRP_MJ_CLEANUP arriving
 * while its reads are in flight. Every IRP completes exactly once with success or
 * STATUS_CANCELLED, nothing leaks, no report is raised, every handler call ran at PASSIVE_LEVEL
 * (the sample's setting) or at the configured level. */
#include "io/io.h"
#include "irpkit/verifier.h"
#include "requester.h"
#include "test.h"

static void run_and_check(unsigned delay_ms, long per_reader, helloq_cancel_mode mode,
                          irpk_irpq_irql irql)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    helloq_run_config cfg = {.delay_ms = delay_ms, .handler_irql = irql, .readers = 4,
                             .irps_per_reader = per_reader, .window = 8, .cancel = mode,
                             .seed = 0x5eed};
    helloq_run_result r;
    REQUIRE(helloq_run(&cfg, &r) == 0);
    CHECK_EQ(r.issued, 4 * per_reader);
    CHECK_EQ(r.completions, r.issued); /* exactly once: a second completion would be a 0x44 */
    CHECK_EQ(r.succeeded + r.cancelled, r.issued);
    CHECK_EQ(r.other, 0);
    CHECK_EQ(r.bytes_ok, r.succeeded);  /* every successful read carries the device's message */
    CHECK(r.handler_calls <= r.issued); /* cancelled-while-queued reads never reach it */
    CHECK(r.handler_calls >= r.succeeded);
    if (mode == HELLOQ_CANCEL_NONE) CHECK_EQ(r.cancelled, 0);
    if (mode == HELLOQ_CANCEL_CLEANUP) CHECK(r.cancelled > 0);
    if (irql == IRPK_IRPQ_IRQL_PASSIVE) CHECK_EQ(r.max_handler_irql, PASSIVE_LEVEL);
    if (irql == IRPK_IRPQ_IRQL_DISPATCH) CHECK_EQ(r.max_handler_irql, DISPATCH_LEVEL);
    CHECK_EQ(r.irps_leaked, 0);
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "%s\n", irpk_report_text(0));
    printf("  %ld reads: %ld succeeded, %ld cancelled (%ld IoCancelIrp, %ld TRUE; %ld cut short "
           "while running), %ld handler calls, max handler IRQL %d\n",
           r.issued, r.succeeded, r.cancelled, r.cancel_calls, r.cancel_true,
           r.cancelled_while_running, r.handler_calls, r.max_handler_irql);
}

TEST(reads_complete_with_the_devices_message_handler_at_passive_level)
{
    run_and_check(0, irpk_test_scale(20000), HELLOQ_CANCEL_NONE, IRPK_IRPQ_IRQL_PASSIVE);
}

TEST(stress_4_readers_random_iocancelirp_dpc_for_isr)
{
    run_and_check(0, irpk_test_scale(50000), HELLOQ_CANCEL_RANDOM, IRPK_IRPQ_IRQL_PASSIVE);
}

TEST(timer_path_random_iocancelirp_cuts_running_reads_short)
{
    run_and_check(1, irpk_test_scale(150), HELLOQ_CANCEL_RANDOM, IRPK_IRPQ_IRQL_PASSIVE);
}

TEST(cleanup_cancels_each_readers_reads_in_flight)
{
    run_and_check(1, irpk_test_scale(40), HELLOQ_CANCEL_CLEANUP, IRPK_IRPQ_IRQL_PASSIVE);
}

TEST(handler_at_dispatch_level_like_startio)
{
    run_and_check(0, irpk_test_scale(20000), HELLOQ_CANCEL_RANDOM, IRPK_IRPQ_IRQL_DISPATCH);
}
