/* The seed's sample driver itself (examples/hello_startio) under the explorer, through the
 * scenarios the CLI registers (tools/irpkit/explore_hello.c): the corrected driver with two
 * readers and a canceller has no failing schedule within two preemptions; the driver as written
 * loses the IRP cancelled before IoStartPacket, and its reader waits forever. */
#include <string.h>

#include "explore_hello.h"
#include "hello_scenarios.h"
#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "test.h"

TEST(registration_adds_the_example_scenarios_once)
{
    irpk_explore_hello_register();
    irpk_explore_hello_register();
    size_t n, found = 0;
    const xscenario *all = xscenario_list(&n);
    for (size_t i = 0; i < n; i++) found += !strcmp(all[i].name, "sample");
    CHECK_EQ(found, 1);
    irpk_scenario dup = {"sample", "again", irpk_test_hello_scenario("sample")->fn, IRPK_FAILURE_NONE, NULL};
    CHECK_EQ(irpk_explore_register_scenario(&dup), -1);
    irpk_scenario bad = {"no-fn", "", NULL, IRPK_FAILURE_NONE, NULL};
    CHECK_EQ(irpk_explore_register_scenario(&bad), -1);
}

TEST(corrected_sample_two_readers_one_canceller_is_exhaustive_to_bound_2)
{
    irpk_reports_set_quiet(1);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = 2;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(irpk_test_hello_scenario("sample")->fn, NULL, &o, &r), 0);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONE);
    CHECK(r.exhaustive);
    CHECK_EQ(r.bound, 2);
    CHECK(r.schedules > 1000);
    irpk_explore_result_free(&r);
}

TEST(sample_as_written_loses_the_irp_cancelled_before_IoStartPacket)
{
    irpk_reports_set_quiet(1);
    const xscenario *sc = irpk_test_hello_scenario("sample-as-written");
    for (int s = IRPK_STRATEGY_DFS; s <= IRPK_STRATEGY_PCT; s++) {
        irpk_explore_options o;
        irpk_explore_options_init(&o);
        o.strategy = (irpk_strategy)s;
        o.max_executions = s == IRPK_STRATEGY_PCT ? 829 : 0;
        irpk_explore_result r;
        REQUIRE(irpk_explore(sc->fn, NULL, &o, &r) == 1);
        CHECK_EQ(r.failure, IRPK_FAILURE_DEADLOCK);
        CHECK_CONTAINS(r.message, "reader-2"); /* the reader of the cancelled IRP waits */
        CHECK_CONTAINS(r.swimlane, "IoCancelIrp IRP#2");
        CHECK_CONTAINS(r.swimlane, "StartIo IRP#2");
        if (s == IRPK_STRATEGY_DFS) CHECK_EQ(r.preemptions, 0); /* no preemption needed */
        irpk_explore_result again;
        CHECK_EQ(irpk_replay(sc->fn, NULL, r.schedule, &again), 1);
        CHECK_EQ(again.failure, IRPK_FAILURE_DEADLOCK);
        irpk_explore_result_free(&again);
        irpk_explore_result_free(&r);
    }
}
