/* The seed's sample (examples/hello_startio) under the verifier: as written it produces exactly
 * one kind of report — waiting at DISPATCH_LEVEL in StartIo (0xC4/0x3B) — and nothing else; the
 * corrected sample produces none, with random cancels, on both completion paths. */
#include "requester.h"
#include "vfixture.h"

TEST(sample_as_written_reports_only_the_wait_at_dispatch)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    irpk_verifier_reset_state();
    hello_run_config cfg = {.as_written = 1, .delay_ms = 2, .readers = 2, .irps_per_reader = 3,
                            .window = 3, .cancel = HELLO_CANCEL_DEMO, .seed = 1};
    hello_run_result r;
    REQUIRE(hello_run(&cfg, &r) == 0);
    CHECK_EQ(r.completions, r.issued);
    size_t n = irpk_report_count();
    CHECK(n >= 1);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(irpk_report_code(i), 0xC4);
        CHECK_EQ(irpk_report_param(i, 0), 0x3B);
        if (irpk_report_code(i) != 0xC4 || irpk_report_param(i, 0) != 0x3B)
            fprintf(stderr, "unexpected:\n%s\n", irpk_report_text(i));
    }
    CHECK_CONTAINS(irpk_report_text(0), "in StartIo HelloStartIo");
    CHECK_CONTAINS(irpk_report_text(0), "the IRP the current routine is processing");
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    irpk_reports_clear();
}

static void run_corrected(unsigned delay_ms, long per_reader)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    irpk_verifier_reset_state();
    hello_run_config cfg = {.as_written = 0, .delay_ms = delay_ms, .readers = 4,
                            .irps_per_reader = per_reader, .window = 8,
                            .cancel = HELLO_CANCEL_RANDOM, .seed = 0xfeed};
    hello_run_result r;
    REQUIRE(hello_run(&cfg, &r) == 0);
    CHECK_EQ(r.completions, r.issued);
    CHECK_EQ(r.irps_leaked, 0);
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "%s\n", irpk_report_text(0));
    irpk_reports_clear();
}

TEST(sample_corrected_dpc_for_isr_path_reports_nothing)
{
    run_corrected(0, irpk_test_scale(20000));
}

TEST(sample_corrected_timer_path_reports_nothing)
{
    run_corrected(1, irpk_test_scale(100));
}
