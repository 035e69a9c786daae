/* irpkit race explorer: run a scenario under a deterministic scheduler, enumerate its
 * interleavings, and turn any failure into a minimal, exactly replayable schedule.
 *
 * A scenario is an ordinary function. It sets up whatever it needs (load drivers, create
 * objects), starts simulated threads with irpk_thread_start() (irpkit/thread.h; DPCs, timers
 * and PsCreateSystemThread map onto the same machinery), joins them, and checks its end-state
 * invariants with IRPK_EXPLORE_CHECK(). Every synchronising runtime call (spin locks,
 * interlocked operations, IRQL changes, queue operations, IoCancelIrp, IoCompleteRequest, …)
 * is a scheduling point; the explorer decides which thread runs at each one. Only one
 * simulated thread runs at a time, on the calling OS thread; time is virtual.
 *
 * A scenario must be deterministic given the schedule: it may not read the OS clock, start
 * pthreads or use OS locks directly (the explorer replays every failure twice and reports
 * IRPK_FAILURE_NONDETERMINISM when the traces differ). Globals it uses must be re-initialised
 * at its start: it runs many times in one process.
 *
 * Failures: the scenario's own checks, every verifier report / bug check, deadlock (every
 * thread blocked), livelock (step bound exceeded).
 *
 * Schedule strings look like
 *     irpk1:dfs:s=0:b=2:v=2:c=1x7.2.3x4.1x9
 * — format version, strategy that found it, seed, bound (DFS) or depth (PCT), virtual CPUs,
 * optional step bound (m=), and the thread chosen at each decision point, run-length encoded
 * ("1x7" = thread 1 seven times). Replaying a string reproduces the execution exactly. */
#ifndef IRPKIT_EXPLORE_H
#define IRPKIT_EXPLORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*irpk_scenario_fn)(void *arg);

typedef enum irpk_strategy {
    IRPK_STRATEGY_DFS = 0,   /* iterative preemption-bounded DFS (0, 1, …, bound), sleep sets */
    IRPK_STRATEGY_PCT,       /* probabilistic concurrency testing, depth pct_depth */
    IRPK_STRATEGY_RANDOM,    /* uniform random choice at every decision */
    IRPK_STRATEGY_PORTFOLIO, /* rotate DFS, PCT d=1..3 and random, one execution each */
} irpk_strategy;

typedef struct irpk_explore_options {
    irpk_strategy strategy;  /* default DFS */
    unsigned bound;          /* DFS: highest preemption bound; default 2 */
    unsigned pct_depth;      /* PCT: bug depth 1..3; 0 (default) rotates 1, 2, 3 */
    uint64_t max_executions; /* 0 (default): DFS until exhausted, others 10 000 */
    uint64_t seed;           /* PCT / random / portfolio seed; default 0 */
    uint64_t max_steps;      /* steps per execution before "livelock"; default 100 000 */
    unsigned vcpus;          /* virtual CPUs; default 2 */
    bool sleep_sets;         /* DFS sleep-set reduction; default true */
    bool minimize;           /* greedily remove preemptions from a failure; default true */
    double time_limit_s;     /* stop after this long (0 = no limit) */
    unsigned job_index;      /* this process explores share job_index of job_count … */
    unsigned job_count;      /* … (seeds / DFS subtrees split across processes); default 1 */
} irpk_explore_options;

typedef enum irpk_failure {
    IRPK_FAILURE_NONE = 0,
    IRPK_FAILURE_ASSERT,         /* IRPK_EXPLORE_CHECK / irpk_explore_fail in the scenario */
    IRPK_FAILURE_REPORT,         /* a verifier report or bug check; `what` is its name */
    IRPK_FAILURE_DEADLOCK,       /* every thread blocked */
    IRPK_FAILURE_LIVELOCK,       /* max_steps exceeded */
    IRPK_FAILURE_NONDETERMINISM, /* the same schedule gave different traces */
} irpk_failure;

typedef struct irpk_explore_result {
    irpk_failure failure;  /* NONE if no failure was found */
    char what[64];         /* "assert", "deadlock", "livelock", a report name, … */
    char message[512];     /* details (the assertion, the report's first line, who is blocked) */
    uint64_t executions;   /* executions run (DFS re-runs lower bounds at each bound) */
    uint64_t schedules;    /* distinct complete schedules (DFS: at the last bound) */
    double seconds;        /* wall time of the search */
    bool exhaustive;       /* DFS covered every schedule within `bound` */
    unsigned bound;        /* DFS: bound reached; PCT: depth of the failing run */
    uint64_t found_at;     /* 1-based execution number of the failure (0: none) */
    unsigned preemptions;  /* of the reported (minimized) failing schedule */
    uint64_t steps;        /* steps of that schedule */
    char *schedule;        /* the failing schedule string (malloc'd), or NULL */
    char *swimlane;        /* that schedule as a swimlane, sliced to the steps that tell the
                              failure's story (malloc'd), or NULL */
    char *swimlane_full;   /* every step of every thread (malloc'd), or NULL */
    char *report;          /* IRPK_FAILURE_REPORT: the verifier's full report text for the
                              reported schedule (IRP history, where, cause and fix), or NULL */
} irpk_explore_result;

/* Defaults as documented in irpk_explore_options. */
void irpk_explore_options_init(irpk_explore_options *opt);

/* Explore `scenario`. opt NULL = defaults. Fills *res (release with irpk_explore_result_free).
 * Returns 1 if a failure was found, 0 if none, -1 on invalid options.
 * Verifier reports raised inside executions fail them but do not stay in the report store:
 * irpk_report_count() after irpk_explore/irpk_replay returns what it did before (the failing
 * run's report is res->report). */
int irpk_explore(irpk_scenario_fn scenario, void *arg, const irpk_explore_options *opt,
                 irpk_explore_result *res);

/* Re-run one schedule string (twice: a differing trace is IRPK_FAILURE_NONDETERMINISM).
 * Fills *res with the failure (if any), schedule and swimlane. Returns 1 if the execution
 * failed, 0 if it passed, -1 if the string is malformed. */
int irpk_replay(irpk_scenario_fn scenario, void *arg, const char *schedule,
                irpk_explore_result *res);

void irpk_explore_result_free(irpk_explore_result *res);

/* Names for messages and the CLI: "dfs", "pct", …; "assert", "deadlock", … */
const char *irpk_strategy_name(irpk_strategy s);
const char *irpk_failure_name(irpk_failure f);

/* Scenario side: fail the current execution with a printf-style message (kind "assert").
 * Does not return inside an exploration; outside one it prints and aborts. */
void irpk_explore_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* True while the calling code runs inside an exploration (a simulated thread). */
bool irpk_explore_active(void);

/* ---- named scenarios (`irpkit explore SCENARIO`, --list, the tests and the benchmark)
 * The library's built-in scenarios (platform-level ones and driver mutants) are always there;
 * code outside it — the CLI for the example drivers, tests — adds its own. */
typedef struct irpk_scenario {
    const char *name;        /* unique, shell-friendly ("sample") */
    const char *summary;     /* one line for --list */
    irpk_scenario_fn fn;     /* run with arg NULL */
    irpk_failure expect;     /* what exploring it should find (IRPK_FAILURE_NONE: correct code) */
    const char *expect_what; /* the failure's `what`, alternatives separated by '|'; or NULL */
} irpk_scenario;

/* Add a scenario (copied; its strings and fn must stay valid). Call from one thread before
 * exploring. Returns 0, or -1 if the name is taken, an argument is missing or the registry is
 * full (64 scenarios in all). */
int irpk_explore_register_scenario(const irpk_scenario *s);

#define IRPK_EXPLORE_CHECK(cond)                                                              \
    do {                                                                                      \
        if (!(cond)) irpk_explore_fail("%s:%d: check failed: %s", __FILE__, __LINE__, #cond); \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
