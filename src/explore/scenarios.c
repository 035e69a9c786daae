/* The scenario registry: the tables of every built-in scenario file, in listing order, then the
 * scenarios registered with irpk_explore_register_scenario (examples, tests). */
#include <string.h>

#include "explore/scenarios_int.h"

#define MAX_SCENARIOS 64

static xscenario all[MAX_SCENARIOS];
static size_t n_all;

static void collect(const xscenario *table)
{
    for (; table->name && n_all < MAX_SCENARIOS; table++) all[n_all++] = *table;
}

/* Built on first use from the main thread of the CLI or a test, before any exploration. */
const xscenario *xscenario_list(size_t *n)
{
    if (!n_all) {
        collect(xscenarios_platform);
        collect(xscenarios_io);
        collect(xscenarios_queue);
        collect(xscenarios_csq);
        xscenarios_io_init();
    }
    *n = n_all;
    return all;
}

int irpk_explore_register_scenario(const irpk_scenario *s)
{
    size_t n;
    xscenario_list(&n); /* built-ins first */
    if (!s || !s->name || !s->fn || xscenario_find(s->name) || n_all == MAX_SCENARIOS) return -1;
    all[n_all++] = (xscenario){s->name, s->summary ? s->summary : "", s->fn, s->expect,
                               s->expect_what, 829};
    return 0;
}

const xscenario *xscenario_find(const char *name)
{
    size_t n;
    const xscenario *list = xscenario_list(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i].name, name)) return &list[i];
    return NULL;
}

bool xscenario_what_matches(const xscenario *sc, const char *what)
{
    if (!sc->expect_what) return true;
    size_t n = strlen(what);
    for (const char *p = sc->expect_what; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, what, n)) return true;
        p += len + (bar != NULL);
    }
    return false;
}
