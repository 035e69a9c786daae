/* Greedy preemption removal: bounded DFS already finds a failure with the fewest preemptions;
 * schedules from PCT or random search usually carry many. Try replacing each preemption by
 * the non-preemptive choice (later decisions follow the old schedule where they still can),
 * keep any change that fails the same way with fewer preemptions, repeat until none helps. */
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"

#define MAX_ATTEMPTS 400

static bool same_failure(const plat_explore_outcome *a, const plat_explore_outcome *b)
{
    return a->status == b->status && strcmp(a->what, b->what) == 0;
}

/* One pass: returns true if some preemption could be removed (best updated). */
static bool improve_once(irpk_scenario_fn fn, void *arg, const plat_explore_outcome *failure,
                         xsched *best, unsigned *best_pre, int *attempts)
{
    static plat_explore_outcome out; /* large: keep it off the stack */
    uint8_t *pre = NULL;
    xreplay r = {best, false, SIZE_MAX, false, NULL, &pre};
    xreplay_run(fn, arg, &r, &out);
    size_t decisions = out.decisions < best->n ? out.decisions : best->n;
    bool improved = false;
    xsched cand;
    xsched_init(&cand, best->strategy, best->seed, best->bound, best->vcpus, best->max_steps);
    for (size_t k = decisions; k-- > 0 && !improved && *attempts < MAX_ATTEMPTS;) {
        if (!pre || !pre[k]) continue;
        ++*attempts;
        xreplay t = {best, false, k, false, &cand, NULL};
        xreplay_run(fn, arg, &t, &out);
        if (same_failure(&out, failure) && out.preemptions < *best_pre) {
            xsched_copy_choices(best, &cand);
            *best_pre = out.preemptions;
            improved = true;
        }
    }
    xsched_free(&cand);
    free(pre);
    return improved;
}

void xminimize(irpk_scenario_fn fn, void *arg, const xsched *failing,
               const plat_explore_outcome *failure, bool enabled, xsched *best)
{
    xsched_init(best, failing->strategy, failing->seed, failing->bound, failing->vcpus,
                failing->max_steps);
    xsched_copy_choices(best, failing);
    unsigned best_pre = failure->preemptions;
    int attempts = 0;
    while (enabled && best_pre > 0 && improve_once(fn, arg, failure, best, &best_pre, &attempts)) {
    }
}
