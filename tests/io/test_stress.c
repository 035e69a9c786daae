/* Stress: 4 reader threads x 100 000 IRPs (scaled by IRPK_STRESS_SCALE) through the corrected
 * hello_startio sample, with a fifth thread calling IoCancelIrp on random in-flight IRPs.
 * Every IRP completes exactly once (success or STATUS_CANCELLED), nothing leaks, no report is
 * raised and StartIo never nests (the sample finishes IRPs from its DPC, never inside StartIo). */
#include "fixture.h"
#include "requester.h"

static void run_and_check(unsigned delay_ms, long per_reader)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    hello_run_config cfg = {.as_written = 0, .delay_ms = delay_ms, .readers = 4,
                            .irps_per_reader = per_reader, .window = 8,
                            .cancel = HELLO_CANCEL_RANDOM, .seed = 0x5eed};
    hello_run_result r;
    REQUIRE(hello_run(&cfg, &r) == 0);
    CHECK_EQ(r.issued, 4 * per_reader);
    CHECK_EQ(r.completions, r.issued); /* exactly once: a second completion would be a 0x44 */
    CHECK_EQ(r.succeeded + r.cancelled, r.issued);
    CHECK_EQ(r.other, 0);
    CHECK(r.cancelled <= r.cancel_calls); /* a cancel before arming is finished by StartIo */
    CHECK_EQ(r.max_startio_depth, 1);
    CHECK_EQ(r.irps_leaked, 0);
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "%s\n", irpk_report_text(0));
    printf("  %ld IRPs: %ld succeeded, %ld cancelled (%ld IoCancelIrp, %ld TRUE), %ld StartIo\n",
           r.issued, r.succeeded, r.cancelled, r.cancel_calls, r.cancel_true, r.startio_calls);
}

TEST(stress_corrected_sample_4x100k_random_cancel_dpc_for_isr)
{
    run_and_check(0, irpk_test_scale(100000));
}

TEST(stress_corrected_sample_timer_path_random_cancel)
{
    run_and_check(1, irpk_test_scale(300));
}
