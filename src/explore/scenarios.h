/* Built-in scenarios for `irpkit explore`, the tests and the benchmark. */
#ifndef IRPK_EXPLORE_SCENARIOS_H
#define IRPK_EXPLORE_SCENARIOS_H

#include <stddef.h>

#include "irpkit/explore.h"

typedef struct xscenario {
    const char *name;
    const char *summary;
    irpk_scenario_fn fn;
    irpk_failure expect;     /* what exploring it should find (NONE: correct code) */
    const char *expect_what; /* the failure's `what` ("assert", a report name), or NULL */
    unsigned pct_budget;     /* executions within which PCT must find it (tests) */
} xscenario;

/* All built-in scenarios, in listing order. */
const xscenario *xscenario_list(size_t *n);
const xscenario *xscenario_find(const char *name);

#endif
