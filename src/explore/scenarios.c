/* The built-in scenario registry: the tables of every scenario file, in listing order. */
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
        xscenarios_io_init();
    }
    *n = n_all;
    return all;
}

const xscenario *xscenario_find(const char *name)
{
    size_t n;
    const xscenario *list = xscenario_list(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i].name, name)) return &list[i];
    return NULL;
}
