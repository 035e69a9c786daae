/* A check shared by the tests that run a scenario under the explorer and expect no failure. */
#ifndef IRPK_TEST_EXPLORE_CHECK_H
#define IRPK_TEST_EXPLORE_CHECK_H

#include <stdio.h>

#include "irpkit/explore.h"
#include "test.h"

/* Explore fn exhaustively to `bound` preemptions natively — to 1 in the sanitizer runs
 * (IRPK_STRESS_SCALE < 1, where an execution costs ~100 times more) — on `vcpus` virtual CPUs
 * (0: the default), and check that no schedule fails and the search was exhaustive. Prints the
 * counts under `what`; on a failure, the failure, its schedule string and its swimlane. */
static inline void irpk_test_explore_clean(const char *what, irpk_scenario_fn fn, unsigned bound,
                                           unsigned vcpus)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = irpk_test_scale(100) >= 100 ? bound : 1;
    if (vcpus) o.vcpus = vcpus;
    irpk_explore_result r;
    int found = irpk_explore(fn, NULL, &o, &r);
    printf("  %s: %llu executions, %llu schedules, %s, %.2f s\n", what,
           (unsigned long long)r.executions, (unsigned long long)r.schedules,
           r.exhaustive ? "exhaustive" : "not exhaustive", r.seconds);
    if (found)
        fprintf(stderr, "%s: %s: %s\nschedule %s\n%s\n", what, irpk_failure_name(r.failure),
                r.message, r.schedule ? r.schedule : "-", r.swimlane ? r.swimlane : "");
    CHECK_EQ(found, 0);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONE);
    CHECK(r.exhaustive);
    CHECK(r.schedules > 1);
    irpk_explore_result_free(&r);
}

#endif
