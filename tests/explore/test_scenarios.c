/* Built-in I/O scenarios: the mutants' base driver (a copy of hello_startio's corrected driver)
 * and the own-queue driver are race-free to bound 2; every mutant is found by DFS within bound
 * 2 and by PCT within its budget, with an expected failure kind, its minimized schedule replays
 * to the same failure, and its sliced swimlane is at most 30 lines. */
#include <string.h>

#include "explore/scenarios.h"
#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "test.h"

static size_t lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

static void expect_clean(const char *name, unsigned bound)
{
    const xscenario *sc = xscenario_find(name);
    REQUIRE(sc != NULL);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = bound;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(sc->fn, NULL, &o, &r), 0);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONE);
    CHECK(r.exhaustive);
    CHECK_EQ(r.bound, bound);
    CHECK(r.schedules > 100);
    irpk_explore_result_free(&r);
}

TEST(correct_drivers_are_exhaustive_to_bound_2)
{
    irpk_reports_set_quiet(1);
    expect_clean("startio-base", 2);
    expect_clean("own-queue", 2);
}

static void check_mutant(const xscenario *sc, irpk_strategy strategy)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = strategy;
    if (strategy == IRPK_STRATEGY_PCT) o.max_executions = sc->pct_budget;
    irpk_explore_result r;
    REQUIRE(irpk_explore(sc->fn, NULL, &o, &r) == 1);
    if (!xscenario_what_matches(sc, r.what)) irpk_test_fail(__FILE__, __LINE__, "%s found %s", sc->name, r.what);
    if (strategy == IRPK_STRATEGY_DFS) {
        CHECK_EQ(r.failure, sc->expect);
        CHECK(r.bound <= 2);
    }
    CHECK(lines(r.swimlane) <= 30);
    CHECK(lines(r.swimlane_full) >= lines(r.swimlane));
    CHECK((r.failure == IRPK_FAILURE_REPORT) == (r.report != NULL));
    irpk_explore_result again;
    CHECK_EQ(irpk_replay(sc->fn, NULL, r.schedule, &again), 1);
    CHECK_EQ(again.failure, r.failure);
    CHECK_STR(again.what, r.what);
    CHECK_STR(again.message, r.message);
    CHECK_STR(again.swimlane, r.swimlane);
    irpk_explore_result_free(&again);
    irpk_explore_result_free(&r);
}

TEST(every_mutant_is_found_by_dfs_and_pct_and_replays)
{
    irpk_reports_set_quiet(1);
    size_t before = irpk_report_count();
    const char *mutants[] = {"r1-mutant", "r3-mutant", "r4-mutant", "r5-mutant", "r9-mutant", "r11-mutant"};
    for (size_t i = 0; i < sizeof mutants / sizeof mutants[0]; i++) {
        const xscenario *sc = xscenario_find(mutants[i]);
        REQUIRE(sc != NULL);
        printf("  %s\n", sc->name);
        check_mutant(sc, IRPK_STRATEGY_DFS);
        check_mutant(sc, IRPK_STRATEGY_PCT);
    }
    CHECK_EQ(irpk_report_count(), before); /* reports inside executions are not kept */
}

/* R1 and R4 are double completions one preemption away once the oracle sees them (the
 * completion routine lets completion continue, so the second IoCompleteRequest is 0x44). */
TEST(r1_and_r4_need_exactly_one_preemption)
{
    irpk_reports_set_quiet(1);
    const char *names[] = {"r1-mutant", "r4-mutant"};
    for (int i = 0; i < 2; i++) {
        irpk_explore_options o;
        irpk_explore_options_init(&o);
        irpk_explore_result r;
        REQUIRE(irpk_explore(xscenario_find(names[i])->fn, NULL, &o, &r) == 1);
        CHECK_STR(r.what, "MULTIPLE_IRP_COMPLETE_REQUESTS");
        CHECK_EQ(r.bound, 1); /* bound 0 was exhausted without it */
        CHECK_EQ(r.preemptions, 1);
        CHECK_CONTAINS(r.swimlane, "*"); /* the preemption is visible in the slice */
        CHECK_CONTAINS(r.swimlane, "IRP#2");
        irpk_explore_result_free(&r);
    }
}

/* Regression: PCT seed 30 on r1-mutant reaches a schedule where the mutant finishes the device
 * twice; the second DpcForIsr found no active IRP and dereferenced NULL, killing the explorer's
 * process (make bench crashed). It is now an assertion failure of that execution. */
TEST(r1_mutant_double_dpc_is_a_failure_not_a_crash)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_PCT;
    o.seed = 30;
    o.max_executions = 3000;
    o.minimize = false;
    irpk_explore_result r;
    REQUIRE(irpk_explore(xscenario_find("r1-mutant")->fn, NULL, &o, &r) == 1);
    CHECK(r.failure == IRPK_FAILURE_ASSERT || r.failure == IRPK_FAILURE_REPORT);
    irpk_explore_result_free(&r);
}
