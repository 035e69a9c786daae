/* Internal to src/explore: schedules, strategies, guided replay, minimization, swimlanes.
 * Uses only the platform layer and its explore backend (platform/explore.h). */
#ifndef IRPK_EXPLORE_INT_H
#define IRPK_EXPLORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "irpkit/explore.h"
#include "platform/explore.h"

/* ------------------------------------------------------------------ schedules (schedule.c) */

/* A schedule: where it came from, and the thread chosen at each decision point. */
typedef struct xsched {
    char strategy[16]; /* "dfs", "pct2", "random", "replay" */
    uint64_t seed;
    unsigned bound; /* DFS bound or PCT depth */
    unsigned vcpus;
    uint64_t max_steps; /* 0: default */
    uint8_t *tids;
    size_t n, cap;
} xsched;

void xsched_init(xsched *s, const char *strategy, uint64_t seed, unsigned bound, unsigned vcpus,
                 uint64_t max_steps);
void xsched_push(xsched *s, uint8_t tid);
void xsched_copy_choices(xsched *dst, const xsched *src);
/* The string form (malloc'd). */
char *xsched_format(const xsched *s);
/* Parse; returns 0, or -1 if malformed (s is then empty). */
int xsched_parse(const char *str, xsched *s);
void xsched_free(xsched *s);

/* ------------------------------------------------------------------ strategies (strategy.c) */

typedef struct xstrategy xstrategy;

/* bound: DFS preemption bound; depth: PCT depth (0 rotates 1..3). */
xstrategy *xstrategy_new(irpk_strategy kind, const irpk_explore_options *opt);
void xstrategy_free(xstrategy *s);
/* Prepare execution number `exec` (0-based). False when the strategy has nothing left. */
bool xstrategy_begin(xstrategy *s, uint64_t exec);
int xstrategy_choose(xstrategy *s, const plat_explore_decision *d);
void xstrategy_end(xstrategy *s, const plat_explore_outcome *o);
/* Name, seed and bound/depth of the execution just run (for its schedule string). */
const char *xstrategy_label(const xstrategy *s, unsigned *bound);
/* DFS: replay of a prefix saw different choices (uncontrolled nondeterminism). */
bool xstrategy_diverged(const xstrategy *s);
/* DFS: every schedule within the bound was covered; the bound reached. */
bool xstrategy_exhaustive(const xstrategy *s, unsigned *bound);

/* ------------------------------------------------------------------ replay (replay.c) */

/* How decisions after `override_at` follow the schedule (minimization). */
typedef enum xtail {
    XTAIL_RECORDED = 0, /* the recorded thread when enabled, else the default */
    XTAIL_DEFAULT,      /* always the non-preemptive default */
    XTAIL_RELATIVE,     /* the recorded thread unless that is now a preemption */
} xtail;

/* Run one execution following `sched` (decisions beyond its end, or — unless strict — whose
 * recorded thread is not enabled, take the non-preemptive default: the running thread, else
 * the lowest id). `override_at` (or SIZE_MAX) forces the default at that decision and `tail`
 * says how the decisions after it follow the schedule. Records the choices actually taken in
 * `taken` (if not NULL) and one flag per decision that was a preemption in *preempted
 * (malloc'd, caller frees; may be NULL). Returns true unless a strict replay diverged. */
typedef struct xreplay {
    const xsched *sched;
    bool strict;
    size_t override_at;
    bool log_steps;
    xsched *taken;
    uint8_t **preempted;
    xtail tail;
} xreplay;
bool xreplay_run(irpk_scenario_fn fn, void *arg, const xreplay *r, plat_explore_outcome *out);

/* Map an execution outcome to the public failure kind. */
irpk_failure xoutcome_failure(const plat_explore_outcome *o);

/* Greedy preemption removal (minimize.c): returns a schedule (in *best, to free) that still
 * fails with the same kind and `what`, with as few preemptions as it could find (a plain copy
 * when !enabled). */
void xminimize(irpk_scenario_fn fn, void *arg, const xsched *failing,
               const plat_explore_outcome *failure, bool enabled, xsched *best);

/* ------------------------------------------------------------------ swimlane (swimlane.c) */

/* One column per thread, one row per step (malloc'd text). full: every step of every thread;
 * else the slice that tells the failure's story (swimlane.c). */
char *xswimlane_render(const plat_explore_outcome *o, bool full);

/* ------------------------------------------------------------------ verifier reports */

/* While exploring, verifier reports and bug checks fail the execution (search.c); the report
 * store keeps what it held before the exploration (each report raised inside an execution is
 * removed again at once) and the last one's full text is kept for the result. */
void xreports_capture_begin(void);
void xreports_capture_end(void);
/* Full text of the last report raised inside an execution ("" if none since `clear`). */
const char *xreports_last(void);
void xreports_clear_last(void);

#endif
