/* irpk_explore / irpk_replay: the search loop, failure confirmation (every failure is replayed
 * twice and the trace hashes compared), minimization and the result. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"
#include "irpkit/bugcheck.h"
#include "irpkit/verifier.h"
#include "verify/verify.h"
#include "platform/platform.h"

#define DEFAULT_NONDFS_EXECUTIONS 10000

/* ------------------------------------------------------------------ names and options */

const char *irpk_strategy_name(irpk_strategy s)
{
    static const char *names[] = {"dfs", "pct", "random", "portfolio"};
    return (unsigned)s < 4 ? names[s] : "?";
}

const char *irpk_failure_name(irpk_failure f)
{
    static const char *names[] = {"none", "assert", "report", "deadlock", "livelock", "nondeterminism"};
    return (unsigned)f < 6 ? names[f] : "?";
}

void irpk_explore_options_init(irpk_explore_options *o)
{
    memset(o, 0, sizeof *o);
    o->strategy = IRPK_STRATEGY_DFS;
    o->bound = 2;
    o->vcpus = 2;
    o->sleep_sets = true;
    o->minimize = true;
    o->job_count = 1;
}

void irpk_explore_result_free(irpk_explore_result *r)
{
    free(r->schedule);
    free(r->swimlane);
    free(r->swimlane_full);
    free(r->report);
    r->schedule = r->swimlane = r->swimlane_full = r->report = NULL;
}

/* ------------------------------------------------------------------ scenario side */

void irpk_explore_fail(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    plat_explore_fail("assert", msg);
}

bool irpk_explore_active(void) { return plat_mode() == PLAT_EXPLORE; }

/* ------------------------------------------------------------------ verifier reports */

static irpk_bugcheck_hook saved_hook;
static void *saved_ctx;
static size_t saved_count; /* reports in the store when the exploration began */
static char last_report[8192];

const char *xreports_last(void) { return last_report; }
void xreports_clear_last(void) { last_report[0] = 0; }

/* A report inside an execution fails it; the report's name is the failure kind. The store
 * already holds it (it records before calling the hook): drop it again, so reports from
 * thousands of executions do not pile up and irpk_report_count() stays meaningful. */
static void report_hook(const irpk_bugcheck *bc, void *ctx)
{
    (void)ctx;
    if (plat_mode() != PLAT_EXPLORE) {
        if (saved_hook) saved_hook(bc, saved_ctx);
        return;
    }
    vrf_reports_truncate(saved_count);
    snprintf(last_report, sizeof last_report, "%s", bc->text ? bc->text : "");
    char first[256];
    const char *nl = bc->text ? strchr(bc->text, '\n') : NULL;
    size_t n = bc->text ? (nl ? (size_t)(nl - bc->text) : strlen(bc->text)) : 0;
    snprintf(first, sizeof first, "%.*s", (int)n, bc->text ? bc->text : "");
    plat_explore_fail(bc->name ? bc->name : irpk_bugcheck_name(bc->code), first);
}

void xreports_capture_begin(void)
{
    saved_count = irpk_report_count();
    last_report[0] = 0;
    saved_hook = irpk_bugcheck_set_hook(report_hook, NULL);
}

void xreports_capture_end(void)
{
    irpk_bugcheck_set_hook(saved_hook, saved_ctx);
    saved_hook = NULL;
}

/* ------------------------------------------------------------------ distinct schedules */

typedef struct hashset {
    uint64_t *slots;
    size_t cap, n;
} hashset;

static void hashset_add(hashset *h, uint64_t v)
{
    v |= 1; /* 0 marks an empty slot */
    if (2 * (h->n + 1) > h->cap) {
        hashset g = {calloc(h->cap ? h->cap * 2 : 4096, sizeof *g.slots), h->cap ? h->cap * 2 : 4096, 0};
        if (!g.slots) return;
        for (size_t i = 0; i < h->cap; i++)
            if (h->slots[i]) hashset_add(&g, h->slots[i]);
        free(h->slots);
        *h = g;
    }
    size_t i = (size_t)(v * 0x9e3779b97f4a7c15ull) & (h->cap - 1);
    while (h->slots[i] && h->slots[i] != v) i = (i + 1) & (h->cap - 1);
    if (!h->slots[i]) {
        h->slots[i] = v;
        h->n++;
    }
}

/* ------------------------------------------------------------------ the search */

typedef struct search {
    xstrategy *strategy;
    xsched rec; /* choices of the running execution */
} search;

static int recording_choose(void *ctx, const plat_explore_decision *d)
{
    search *s = ctx;
    int i = xstrategy_choose(s->strategy, d);
    if (i >= 0) xsched_push(&s->rec, (uint8_t)d->choices[i].tid);
    return i;
}

static void copy_failure(irpk_explore_result *r, irpk_failure f, const char *what, const char *msg)
{
    r->failure = f;
    snprintf(r->what, sizeof r->what, "%s", what);
    snprintf(r->message, sizeof r->message, "%s", msg);
}

/* Replay twice with the step log; a trace that differs from the original run or between the
 * replays means the scenario depends on something the explorer does not control. */
static bool confirm(irpk_scenario_fn fn, void *arg, const xsched *s, uint64_t hash,
                    plat_explore_outcome *out)
{
    xreplay r = {s, true, SIZE_MAX, true, NULL, NULL, XTAIL_RECORDED};
    bool ok = xreplay_run(fn, arg, &r, out) && out->hash == hash;
    uint64_t h1 = out->hash;
    ok = xreplay_run(fn, arg, &r, out) && ok && out->hash == h1;
    return ok;
}

static void report_nondeterminism(irpk_explore_result *r, const char *why)
{
    copy_failure(r, IRPK_FAILURE_NONDETERMINISM, "nondeterminism", why);
}

/* A failure was found with the choices in s->rec: confirm, minimize, render. */
static void finish_failure(irpk_scenario_fn fn, void *arg, const irpk_explore_options *opt,
                           search *s, const plat_explore_outcome *found, irpk_explore_result *r)
{
    static plat_explore_outcome out; /* large; the explorer is single-threaded per process */
    r->schedule = xsched_format(&s->rec);
    if (!confirm(fn, arg, &s->rec, found->hash, &out)) {
        report_nondeterminism(r, "replaying the failing schedule gave a different trace "
                                 "(the scenario reads something the explorer does not control: "
                                 "OS clock, pthreads, uninitialised globals?)");
        return;
    }
    copy_failure(r, xoutcome_failure(found), found->what, found->detail);
    xsched best;
    xminimize(fn, arg, &s->rec, found, opt->minimize, &best);
    xreplay rr = {&best, false, SIZE_MAX, true, NULL, NULL, XTAIL_RECORDED};
    xsched taken;
    xsched_init(&taken, best.strategy, best.seed, best.bound, best.vcpus, best.max_steps);
    rr.taken = &taken;
    xreports_clear_last();
    xreplay_run(fn, arg, &rr, &out);
    free(r->schedule);
    r->schedule = xsched_format(&taken);
    r->swimlane = xswimlane_render(&out, false);
    r->swimlane_full = xswimlane_render(&out, true);
    if (xreports_last()[0]) r->report = strdup(xreports_last());
    r->preemptions = out.preemptions;
    r->steps = out.steps;
    copy_failure(r, xoutcome_failure(&out), out.what, out.detail); /* the minimized run's words */
    xsched_free(&taken);
    xsched_free(&best);
}

static int check_options(const irpk_explore_options *o)
{
    if ((unsigned)o->strategy > IRPK_STRATEGY_PORTFOLIO || o->pct_depth > 3) return -1;
    if (o->vcpus < 1 || o->vcpus > 64 || o->job_count < 1 || o->job_index >= o->job_count) return -1;
    return 0;
}

static bool out_of_budget(const irpk_explore_options *o, uint64_t execs, int64_t t0)
{
    uint64_t cap = o->max_executions;
    if (!cap && o->strategy != IRPK_STRATEGY_DFS) cap = DEFAULT_NONDFS_EXECUTIONS;
    if (cap && execs >= cap) return true;
    return o->time_limit_s > 0 && (double)(plat_now_ns() - t0) / 1e9 >= o->time_limit_s;
}

static void run_search(irpk_scenario_fn fn, void *arg, const irpk_explore_options *o, search *s,
                       irpk_explore_result *r, int64_t t0)
{
    static plat_explore_outcome out;
    hashset seen = {0};
    plat_explore_config cfg = {fn, arg, recording_choose, s, o->vcpus, o->max_steps, false};
    for (uint64_t exec = 0; !out_of_budget(o, exec, t0) && xstrategy_begin(s->strategy, exec); exec++) {
        s->rec.n = 0;
        plat_explore_run(&cfg, &out);
        xstrategy_end(s->strategy, &out);
        r->executions++;
        if (out.status != PLAT_EXO_ABORTED) hashset_add(&seen, out.hash);
        if (xstrategy_diverged(s->strategy)) {
            report_nondeterminism(r, "the same schedule prefix offered different choices on a "
                                     "re-run (uncontrolled nondeterminism)");
            break;
        }
        if (xoutcome_failure(&out) == IRPK_FAILURE_NONE) continue;
        unsigned bound;
        const char *label = xstrategy_label(s->strategy, &bound);
        snprintf(s->rec.strategy, sizeof s->rec.strategy, "%s", label);
        s->rec.bound = bound;
        r->bound = bound;
        r->found_at = r->executions;
        finish_failure(fn, arg, o, s, &out, r);
        break;
    }
    r->schedules = seen.n;
    free(seen.slots);
}

int irpk_explore(irpk_scenario_fn fn, void *arg, const irpk_explore_options *opt,
                 irpk_explore_result *r)
{
    irpk_explore_options defaults;
    irpk_explore_options_init(&defaults);
    const irpk_explore_options *o = opt ? opt : &defaults;
    memset(r, 0, sizeof *r);
    if (check_options(o) != 0) return -1;
    search s;
    memset(&s, 0, sizeof s);
    if (!(s.strategy = xstrategy_new(o->strategy, o))) return -1;
    xsched_init(&s.rec, "", o->seed, o->bound, o->vcpus, o->max_steps);
    int64_t t0 = plat_now_ns();
    xreports_capture_begin();
    run_search(fn, arg, o, &s, r, t0);
    xreports_capture_end();
    if (!r->failure && o->strategy == IRPK_STRATEGY_DFS)
        r->exhaustive = xstrategy_exhaustive(s.strategy, &r->bound);
    r->seconds = (double)(plat_now_ns() - t0) / 1e9;
    xsched_free(&s.rec);
    xstrategy_free(s.strategy);
    return r->failure ? 1 : 0;
}

int irpk_replay(irpk_scenario_fn fn, void *arg, const char *schedule, irpk_explore_result *r)
{
    static plat_explore_outcome out;
    memset(r, 0, sizeof *r);
    xsched s;
    if (xsched_parse(schedule, &s) != 0) return -1;
    int64_t t0 = plat_now_ns();
    xreports_capture_begin();
    xreplay rr = {&s, true, SIZE_MAX, true, NULL, NULL, XTAIL_RECORDED};
    bool exact = xreplay_run(fn, arg, &rr, &out);
    uint64_t h = out.hash;
    xreports_clear_last();
    exact = xreplay_run(fn, arg, &rr, &out) && exact && out.hash == h;
    if (xreports_last()[0]) r->report = strdup(xreports_last());
    xreports_capture_end();
    r->executions = 2;
    r->schedules = 1;
    r->bound = s.bound;
    r->preemptions = out.preemptions;
    r->steps = out.steps;
    r->schedule = xsched_format(&s);
    r->swimlane = xswimlane_render(&out, false);
    r->swimlane_full = xswimlane_render(&out, true);
    if (!exact)
        report_nondeterminism(r, "the schedule did not replay identically (diverged from the "
                                 "recorded choices, or two replays differed)");
    else
        copy_failure(r, xoutcome_failure(&out), out.what, out.detail);
    r->seconds = (double)(plat_now_ns() - t0) / 1e9;
    xsched_free(&s);
    return r->failure ? 1 : 0;
}
