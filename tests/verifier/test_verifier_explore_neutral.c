/* The verifier must not change what the race explorer explores: its checks read and keep
 * bookkeeping (plat_bk_* forms, verifier references), never adding a scheduling point. A
 * built-in scenario is run under the same deterministic schedule with the verifier off and on;
 * the executions must take the same steps (same count, same trace hash).
 *
 * Regression: the CSQ's check that CsqCompleteCanceledIrp completed the IRP (src/io/csq.c)
 * read the IRP's history with plat_load* and held the IRP with io_irp_ref/unref — five or more
 * extra scheduling points per cancelled IRP, only with the verifier on.
 *
 * One fixed schedule, not a sample of random ones: under some interleavings the verifier's
 * bookkeeping references (which share the IRP's reference count) make IoCancelIrp's
 * compare-exchange on that count retry, a separate effect outside the CSQ. */
#include <string.h>

#include "explore/scenarios.h"
#include "irpkit/verifier.h"
#include "platform/explore.h"
#include "test.h"

/* Lowest thread id first: the readers queue both IRPs, then the canceller cancels the second
 * while it is queued (the library's cancel routine calls CsqCompleteCanceledIrp). */
static int choose_lowest(void *ctx, const plat_explore_decision *d)
{
    (void)ctx, (void)d;
    return 0;
}

static plat_explore_outcome run_once(const xscenario *sc, irpk_verifier_mode mode, bool log)
{
    irpk_verifier_set_mode(mode);
    plat_explore_config cfg = {sc->fn, NULL, choose_lowest, NULL, 0, 0, log};
    plat_explore_outcome out;
    plat_explore_run(&cfg, &out);
    return out;
}

static bool logged(const plat_explore_outcome *out, const char *op)
{
    for (size_t i = 0; i < out->nlog; i++)
        if (out->log[i].op && !strcmp(out->log[i].op, op)) return true;
    return false;
}

static void expect_same_steps(const char *name)
{
    const xscenario *sc = xscenario_find(name);
    REQUIRE(sc != NULL);
    irpk_verifier_mode saved = irpk_verifier_get_mode();
    plat_explore_outcome off = run_once(sc, IRPK_VERIFIER_OFF, false);
    plat_explore_outcome on = run_once(sc, IRPK_VERIFIER_REPORT, true);
    CHECK(logged(&on, "CancelRoutine")); /* the schedule does take the cancel path */
    if (off.steps != on.steps || off.hash != on.hash)
        fprintf(stderr, "%s: verifier off %llu steps, on %llu steps\n", name,
                (unsigned long long)off.steps, (unsigned long long)on.steps);
    CHECK_EQ(on.status, PLAT_EXO_OK);
    CHECK_EQ(off.status, PLAT_EXO_OK);
    CHECK_EQ(on.steps, off.steps);
    CHECK(on.hash == off.hash);
    irpk_verifier_set_mode(saved);
}

TEST(verifier_adds_no_scheduling_point_to_the_csq_cancel_path)
{
    irpk_reports_set_quiet(1);
    expect_same_steps("csq");
    expect_same_steps("csq-context");
}
