/* The cancel-safe queue under the race explorer: the built-in `csq` and `csq-context`
 * scenarios (src/explore/scenarios_csq.c) explored exhaustively to three preemptions and with
 * PCT, and the `csq-dc3-mutant` found (NT_SEMANTICS.md §8; the hand-rolled r3/r4 mutants of
 * the same shape are in tests/explore). */
#include "explore/scenarios.h"
#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "test.h"

static void explore_and_expect_none(const char *name)
{
    const xscenario *sc = xscenario_find(name);
    REQUIRE(sc != NULL);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_DFS;
    o.bound = irpk_test_scale(100) >= 100 ? 3 : 2; /* sanitizer runs scale down */
    o.time_limit_s = 8; /* exhausts bound 3 in ~5 s natively; sanitizer builds stop early */
    irpk_explore_result r;
    int found = irpk_explore(sc->fn, NULL, &o, &r);
    printf("  %s: DFS bound %u, %llu executions, %s, %.2f s\n", name, r.bound,
           (unsigned long long)r.executions, r.exhaustive ? "exhaustive" : "time limit", r.seconds);
    if (found == 1) fprintf(stderr, "  %s: %s\n%s\n", r.what, r.message, r.swimlane ? r.swimlane : "");
    CHECK_EQ(found, 0);
    irpk_explore_result_free(&r);
    o.strategy = IRPK_STRATEGY_PCT;
    o.max_executions = (uint64_t)irpk_test_scale(1000);
    o.seed = 0xC50;
    found = irpk_explore(sc->fn, NULL, &o, &r);
    printf("  %s: PCT, %llu executions\n", name, (unsigned long long)r.executions);
    if (found == 1) fprintf(stderr, "  %s: %s\n", r.what, r.message);
    CHECK_EQ(found, 0);
    irpk_explore_result_free(&r);
}

TEST(csq_insert_cancel_remove_next_is_race_free)
{
    irpk_reports_set_quiet(1);
    explore_and_expect_none("csq");
}

TEST(csq_insert_cancel_remove_by_context_is_race_free)
{
    irpk_reports_set_quiet(1);
    explore_and_expect_none("csq-context");
}

/* An Insert callback that keeps its own data in DriverContext[3] makes the library's cancel
 * routine leave a cancelled IRP alone (T86); the verifier reports it, DFS and PCT find it and
 * the failure replays. */
TEST(csq_mutant_overwriting_driver_context_3_is_found)
{
    irpk_reports_set_quiet(1);
    const xscenario *sc = xscenario_find("csq-dc3-mutant");
    REQUIRE(sc != NULL);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = 2;
    irpk_explore_result r;
    REQUIRE(irpk_explore(sc->fn, NULL, &o, &r) == 1);
    printf("  %s: %s after %llu executions, %u preemptions: %s\n", sc->name, r.what,
           (unsigned long long)r.found_at, r.preemptions, r.message);
    CHECK_EQ(r.failure, sc->expect);
    CHECK(xscenario_what_matches(sc, r.what));
    irpk_explore_result again;
    CHECK_EQ(irpk_replay(sc->fn, NULL, r.schedule, &again), 1);
    CHECK_STR(again.what, r.what);
    irpk_explore_result_free(&again);
    irpk_explore_result_free(&r);
    o.strategy = IRPK_STRATEGY_PCT;
    o.max_executions = sc->pct_budget;
    CHECK_EQ(irpk_explore(sc->fn, NULL, &o, &r), 1);
    irpk_explore_result_free(&r);
}
