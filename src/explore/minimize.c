/* Minimization. Bounded DFS already finds a failure with the fewest preemptions; schedules
 * from PCT or random search usually carry more. First, greedily: try replacing each
 * preemption by the non-preemptive choice (later decisions follow the old schedule in one of
 * three ways), keep any change that fails the same way with fewer preemptions, repeat until
 * none helps. Greedy removal cannot *move* a preemption, so then a bounded DFS with fewer
 * preemptions than the best so far looks for the same failure within a budget: its first
 * find has the fewest preemptions. */
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"

#define MAX_ATTEMPTS 400
#define DFS_BUDGET 20000

/* Cheapest first: dropping everything after the preemption often keeps the failure. */
static const xtail tails[] = {XTAIL_DEFAULT, XTAIL_RELATIVE, XTAIL_RECORDED};

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
    xreplay r = {best, false, SIZE_MAX, false, NULL, &pre, XTAIL_RECORDED};
    xreplay_run(fn, arg, &r, &out);
    size_t decisions = out.decisions < best->n ? out.decisions : best->n;
    bool improved = false;
    xsched cand;
    xsched_init(&cand, best->strategy, best->seed, best->bound, best->vcpus, best->max_steps);
    for (size_t k = decisions; k-- > 0 && !improved && *attempts < MAX_ATTEMPTS;) {
        if (!pre || !pre[k]) continue;
        for (int m = 0; m < 3 && !improved; m++) {
            ++*attempts;
            xreplay t = {best, false, k, false, &cand, NULL, tails[m]};
            xreplay_run(fn, arg, &t, &out);
            if (same_failure(&out, failure) && out.preemptions < *best_pre) {
                xsched_copy_choices(best, &cand);
                *best_pre = out.preemptions;
                improved = true;
            }
        }
    }
    xsched_free(&cand);
    free(pre);
    return improved;
}

typedef struct refine {
    xstrategy *dfs;
    xsched *rec;
} refine;

static int refine_choose(void *ctx, const plat_explore_decision *d)
{
    refine *r = ctx;
    int i = xstrategy_choose(r->dfs, d);
    if (i >= 0) xsched_push(r->rec, (uint8_t)d->choices[i].tid);
    return i;
}

/* Bounded DFS below best_pre preemptions for the same failure; updates best on success. */
static void dfs_refine(irpk_scenario_fn fn, void *arg, const plat_explore_outcome *failure,
                       xsched *best, unsigned best_pre)
{
    static plat_explore_outcome out;
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = best_pre - 1;
    xsched rec;
    xsched_init(&rec, best->strategy, best->seed, best->bound, best->vcpus, best->max_steps);
    refine r = {xstrategy_new(IRPK_STRATEGY_DFS, &o), &rec};
    plat_explore_config cfg = {fn, arg, refine_choose, &r, best->vcpus, best->max_steps, false};
    for (uint64_t e = 0; r.dfs && e < DFS_BUDGET && xstrategy_begin(r.dfs, e); e++) {
        rec.n = 0;
        plat_explore_run(&cfg, &out);
        xstrategy_end(r.dfs, &out);
        if (xstrategy_diverged(r.dfs)) break;
        if (same_failure(&out, failure) && out.preemptions < best_pre) {
            xsched_copy_choices(best, &rec);
            break;
        }
    }
    xstrategy_free(r.dfs);
    xsched_free(&rec);
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
    if (enabled && best_pre > 0) dfs_refine(fn, arg, failure, best, best_pre);
}
