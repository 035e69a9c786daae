/* csq_startio under the race explorer, through the CLI's built-in scenario `csq-startio`
 * (tools/irpkit/explore_csq.c): the example driver itself, unmodified, with two overlapped
 * reads on one handle, a CancelIoEx and the handle closed at the same time, all through the NT
 * services. Every read must end once with an accepted status, cleanup must leave nothing of
 * its handle queued, and nothing may leak (a lost read deadlocks its reader). */
#include "explore/scenarios.h"
#include "explore_csq.h"
#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "test.h"

TEST(csq_startio_explored_with_cancel_and_close)
{
    irpk_reports_set_quiet(1);
    irpk_explore_csq_register();
    irpk_explore_csq_register(); /* idempotent: names are unique */
    const xscenario *sc = xscenario_find("csq-startio");
    REQUIRE(sc != NULL);
    CHECK_EQ(sc->expect, IRPK_FAILURE_NONE);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_DFS;
    o.bound = 1; /* exhaustive in 5-10 s natively (~151 000 executions); bound 2 is millions */
    o.time_limit_s = irpk_test_scale(100) >= 100 ? 30 : 10;
    irpk_explore_result r;
    int found = irpk_explore(sc->fn, NULL, &o, &r);
    printf("  csq-startio: DFS bound %u, %llu executions, %s, %.2f s\n", r.bound,
           (unsigned long long)r.executions, r.exhaustive ? "exhaustive" : "time limit", r.seconds);
    if (found == 1) fprintf(stderr, "  %s: %s\n%s\n%s\n", r.what, r.message, r.schedule ? r.schedule : "",
                            r.swimlane ? r.swimlane : "");
    CHECK_EQ(found, 0);
    if (irpk_test_scale(100) >= 100) CHECK(r.exhaustive); /* natively 3-8 s; sanitizers: a prefix */
    CHECK(r.executions > 100);
    irpk_explore_result_free(&r);
    o.strategy = IRPK_STRATEGY_PCT;
    o.max_executions = (uint64_t)irpk_test_scale(20000);
    o.time_limit_s = 10;
    o.seed = 0xC5010;
    found = irpk_explore(sc->fn, NULL, &o, &r);
    printf("  csq-startio: PCT, %llu executions, %.2f s\n", (unsigned long long)r.executions, r.seconds);
    if (found == 1) fprintf(stderr, "  %s: %s\n%s\n", r.what, r.message, r.schedule ? r.schedule : "");
    CHECK_EQ(found, 0);
    irpk_explore_result_free(&r);
}
