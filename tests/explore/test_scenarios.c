/* Built-in I/O scenarios: the corrected seed sample is race-free to bound 2; every mutant is
 * found by DFS within bound 2 and by PCT within its budget, with the expected failure kind,
 * and its minimized schedule replays to the same failure. */
#include <string.h>

#include "explore/scenarios.h"
#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "test.h"

TEST(corrected_sample_two_readers_one_canceller_is_exhaustive_to_bound_2)
{
    irpk_reports_set_quiet(1);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    /* Bound 2 is ~215k executions: seconds natively, minutes under the sanitizers, whose runs
     * set IRPK_STRESS_SCALE < 1 and get bound 1 instead. */
    o.bound = irpk_test_scale(10) >= 10 ? 2 : 1;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(xscenario_find("sample")->fn, NULL, &o, &r), 0);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONE);
    CHECK(r.exhaustive);
    CHECK_EQ(r.bound, o.bound);
    irpk_explore_result_free(&r);
}

static void check_mutant(const xscenario *sc, irpk_strategy strategy)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = strategy;
    if (strategy == IRPK_STRATEGY_PCT) o.max_executions = sc->pct_budget;
    irpk_explore_result r;
    REQUIRE(irpk_explore(sc->fn, NULL, &o, &r) == 1);
    CHECK_EQ(r.failure, sc->expect);
    if (sc->expect_what) CHECK_STR(r.what, sc->expect_what);
    if (strategy == IRPK_STRATEGY_DFS) CHECK(r.bound <= 2);
    irpk_explore_result again;
    CHECK_EQ(irpk_replay(sc->fn, NULL, r.schedule, &again), 1);
    CHECK_EQ(again.failure, r.failure);
    CHECK_STR(again.what, r.what);
    CHECK_STR(again.message, r.message);
    irpk_explore_result_free(&again);
    irpk_explore_result_free(&r);
}

TEST(every_mutant_is_found_by_dfs_and_pct_and_replays)
{
    irpk_reports_set_quiet(1);
    /* r4-mutant is not listed: no strategy finds it yet (open issue, see docs/explorer.md). */
    const char *mutants[] = {"sample-as-written", "r1-mutant", "r3-mutant", "r5-mutant",
                             "r9-mutant", "r11-mutant"};
    for (size_t i = 0; i < sizeof mutants / sizeof mutants[0]; i++) {
        const xscenario *sc = xscenario_find(mutants[i]);
        REQUIRE(sc != NULL);
        printf("  %s\n", sc->name);
        check_mutant(sc, IRPK_STRATEGY_DFS);
        check_mutant(sc, IRPK_STRATEGY_PCT);
    }
}
