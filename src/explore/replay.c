/* Guided replay of a schedule: follow the recorded thread at each decision point. */
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"
#include "platform/platform.h"

typedef struct guide {
    const xreplay *r;
    size_t pos;
    bool diverged;
    uint8_t *pre;
    size_t npre, precap;
} guide;

static int default_choice(const plat_explore_decision *d)
{
    for (unsigned i = 0; i < d->n; i++)
        if (!plat_explore_is_preemption(d, i)) return (int)i;
    return 0;
}

static int find_tid(const plat_explore_decision *d, uint8_t tid)
{
    for (unsigned i = 0; i < d->n; i++)
        if (d->choices[i].tid == tid) return (int)i;
    return -1;
}

static void note_preemption(guide *g, uint8_t flag)
{
    if (!g->r->preempted) return;
    if (g->npre == g->precap) {
        g->precap = g->precap ? g->precap * 2 : 256;
        g->pre = realloc(g->pre, g->precap);
        if (!g->pre) plat_panic("explore: out of memory in replay");
    }
    g->pre[g->npre++] = flag;
}

/* The recorded thread for decision k, or -1 to take the default. */
static int recorded_choice(const guide *g, const plat_explore_decision *d, size_t k)
{
    const xreplay *r = g->r;
    if (k >= r->sched->n || k == r->override_at) return -1;
    bool after = r->override_at != SIZE_MAX && k > r->override_at;
    if (after && r->tail == XTAIL_DEFAULT) return -1;
    int i = find_tid(d, r->sched->tids[k]);
    if (i >= 0 && after && r->tail == XTAIL_RELATIVE && plat_explore_is_preemption(d, (unsigned)i))
        return -1;
    return i;
}

static int guided_choose(void *ctx, const plat_explore_decision *d)
{
    guide *g = ctx;
    size_t k = g->pos++;
    int i = recorded_choice(g, d, k);
    if (i < 0 && g->r->strict) {
        g->diverged = true; /* the recorded thread is not enabled: not the same execution */
        return -1;
    }
    if (i < 0) i = default_choice(d);
    if (g->r->taken) xsched_push(g->r->taken, d->choices[i].tid);
    note_preemption(g, plat_explore_is_preemption(d, (unsigned)i));
    return i;
}

bool xreplay_run(irpk_scenario_fn fn, void *arg, const xreplay *r, plat_explore_outcome *out)
{
    guide g = {.r = r};
    if (r->taken) r->taken->n = 0;
    plat_explore_config cfg = {fn, arg, guided_choose, &g, r->sched->vcpus, r->sched->max_steps,
                               r->log_steps};
    plat_explore_run(&cfg, out);
    if (r->preempted) *r->preempted = g.pre;
    /* A strict replay must also consume the whole schedule (strict implies no override). */
    return !g.diverged && (!r->strict || g.pos >= r->sched->n);
}

irpk_failure xoutcome_failure(const plat_explore_outcome *o)
{
    switch (o->status) {
    case PLAT_EXO_FAILED: return strcmp(o->what, "assert") ? IRPK_FAILURE_REPORT : IRPK_FAILURE_ASSERT;
    case PLAT_EXO_DEADLOCK: return IRPK_FAILURE_DEADLOCK;
    case PLAT_EXO_LIVELOCK: return IRPK_FAILURE_LIVELOCK;
    default: return IRPK_FAILURE_NONE;
    }
}
