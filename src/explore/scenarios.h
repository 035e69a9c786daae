/* Built-in scenarios for `irpkit explore`, the tests and the benchmark. */
#ifndef IRPK_EXPLORE_SCENARIOS_H
#define IRPK_EXPLORE_SCENARIOS_H

#include <stdbool.h>
#include <stddef.h>

#include "irpkit/explore.h"

typedef struct xscenario {
    const char *name;
    const char *summary;
    irpk_scenario_fn fn;
    irpk_failure expect;     /* what exploring it should find (NONE: correct code) */
    const char *expect_what; /* the failure's `what` ("assert", a report name; alternatives
                                separated by '|': PCT may meet another symptom first), or NULL */
    unsigned pct_budget;     /* executions within which PCT must find it (tests) */
} xscenario;

/* All built-in scenarios, in listing order. */
const xscenario *xscenario_list(size_t *n);
const xscenario *xscenario_find(const char *name);
/* Whether `what` is one of the '|'-separated alternatives in sc->expect_what (true if NULL). */
bool xscenario_what_matches(const xscenario *sc, const char *what);

#endif
