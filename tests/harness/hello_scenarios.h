/* The scenarios tools/irpkit/explore_hello.c registers (`sample`, `sample-as-written`,
 * `sample-user`, `sample-user-as-written`), for the tests that run them. A test using this
 * compiles and links tools/irpkit/explore_hello.c (see tests/explore/CMakeLists.txt). */
#ifndef IRPK_TEST_HELLO_SCENARIOS_H
#define IRPK_TEST_HELLO_SCENARIOS_H

#include "explore/scenarios.h"
#include "explore_hello.h"
#include "test.h"

/* Register the sample's scenarios (idempotent) and return the one called name; NULL, and a
 * failed check naming it, when there is none. */
static inline const xscenario *irpk_test_hello_scenario(const char *name)
{
    irpk_explore_hello_register();
    const xscenario *sc = xscenario_find(name);
    if (!sc) irpk_test_fail(__FILE__, __LINE__, "scenario %s not registered", name);
    return sc;
}

#endif
