/* irpkit explore — explore a built-in scenario's interleavings, or replay one schedule.
 *
 *   irpkit explore [--strategy dfs|pct|random|portfolio] [--bound N] [--depth D]
 *                  [--max-executions N] [--seed S] [--max-steps N] [--vcpus N] [--jobs N]
 *                  [--time-limit SEC] [--no-sleep-sets] [--no-minimize] [--quiet] [--full]
 *                  [--report] [--replay SCHEDULE] SCENARIO
 *   irpkit explore --list
 *   irpkit explore --load ./my_driver_scenarios.so [options] MY_SCENARIO
 *
 * --load dlopens a shared object whose constructor calls irpk_explore_register_scenario()
 * for the user's own driver code (see docs/explorer.md); the CLI exports irpkit's symbols to
 * it, so the object links against nothing.
 *
 * A failure prints its minimal schedule and a swimlane sliced to the steps that matter (the
 * IRPs the failure is about, preemptions, thread start/exit, labelled I/O operations);
 * --full prints every step, --report the verifier's full report for that run.
 *
 * --jobs N forks N processes that split the search (seeds, or DFS subtrees); the parent
 * merges their counts and replays the failure it reports. */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "explore_csq.h"
#include "explore_hello.h"
#include "explore/scenarios.h"
#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "platform/platform.h"

typedef struct cli_opts {
    irpk_explore_options ex;
    const char *replay;
    const char *scenario;
    const char *loads[8]; /* --load: shared objects that register their own scenarios */
    unsigned nloads;
    char load_args[1024]; /* the same, as arguments for the printed replay command */
    unsigned jobs;
    bool quiet, list, full, report;
} cli_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: irpkit explore [--strategy dfs|pct|random|portfolio] [--bound N] [--depth D]\n"
               "                      [--max-executions N] [--seed S] [--max-steps N] [--vcpus N]\n"
               "                      [--jobs N] [--time-limit SEC] [--no-sleep-sets] [--no-minimize]\n"
               "                      [--quiet] [--full] [--report] [--replay SCHEDULE]\n"
               "                      [--load SHARED_OBJECT]... SCENARIO\n"
               "       irpkit explore [--load SHARED_OBJECT]... --list\n");
}

static int parse_strategy(const char *s, irpk_strategy *out)
{
    for (int i = 0; i <= IRPK_STRATEGY_PORTFOLIO; i++)
        if (!strcmp(s, irpk_strategy_name((irpk_strategy)i))) {
            *out = (irpk_strategy)i;
            return 0;
        }
    return -1;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    *v = strtoull(s, &end, 0);
    return (!*s || *end || errno) ? -1 : 0;
}

/* Options that take a number; returns -1 on a bad value. */
static int numeric_option(const char *name, const char *val, cli_opts *o)
{
    uint64_t v;
    if (!strcmp(name, "--time-limit")) {
        char *end;
        o->ex.time_limit_s = strtod(val, &end);
        return *end ? -1 : 0;
    }
    if (parse_u64(val, &v) != 0) return -1;
    if (!strcmp(name, "--bound")) o->ex.bound = (unsigned)v;
    else if (!strcmp(name, "--depth")) o->ex.pct_depth = (unsigned)v;
    else if (!strcmp(name, "--max-executions")) o->ex.max_executions = v;
    else if (!strcmp(name, "--seed")) o->ex.seed = v;
    else if (!strcmp(name, "--max-steps")) o->ex.max_steps = v;
    else if (!strcmp(name, "--vcpus")) o->ex.vcpus = (unsigned)v;
    else if (!strcmp(name, "--jobs")) o->jobs = (unsigned)v;
    else return -1;
    return 0;
}

static int parse_args(int argc, char **argv, cli_opts *o)
{
    irpk_explore_options_init(&o->ex);
    o->jobs = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--list")) o->list = true;
        else if (!strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "--full")) o->full = true;
        else if (!strcmp(a, "--report")) o->report = true;
        else if (!strcmp(a, "--no-sleep-sets")) o->ex.sleep_sets = false;
        else if (!strcmp(a, "--no-minimize")) o->ex.minimize = false;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 1;
        else if (a[0] == '-' && a[1] == '-' && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(a, "--strategy")) {
                if (parse_strategy(v, &o->ex.strategy)) return -1;
            } else if (!strcmp(a, "--replay")) {
                o->replay = v;
            } else if (!strcmp(a, "--load")) {
                if (o->nloads == sizeof o->loads / sizeof o->loads[0]) return -1;
                o->loads[o->nloads++] = v;
            } else if (numeric_option(a, v, o)) {
                return -1;
            }
        } else if (a[0] != '-' && !o->scenario) {
            o->scenario = a;
        } else {
            return -1;
        }
    }
    return o->jobs < 1 || o->jobs > 256 || (!o->scenario && !o->list) ? -1 : 0;
}

static void list_scenarios(void)
{
    size_t n;
    const xscenario *s = xscenario_list(&n);
    for (size_t i = 0; i < n; i++)
        printf("  %-22s %s [expect: %s]\n", s[i].name, s[i].summary,
               s[i].expect_what ? s[i].expect_what : irpk_failure_name(s[i].expect));
}

/* ------------------------------------------------------------------ output */

static void print_failure(const char *scenario, const irpk_explore_result *r, const cli_opts *o)
{
    bool quiet = o->quiet;
    printf("FAILURE: %s (%s)\n  %s\n", r->what, irpk_failure_name(r->failure), r->message);
    if (r->found_at)
        printf("found at execution %" PRIu64 "; minimal counterexample: %u preemption%s, %" PRIu64 " steps\n",
               r->found_at, r->preemptions, r->preemptions == 1 ? "" : "s", r->steps);
    if (r->schedule) {
        printf("schedule: %s\n", r->schedule);
        printf("replay:   irpkit explore%s --replay '%s' %s\n", o->load_args, r->schedule, scenario);
    }
    const char *lane = o->full ? r->swimlane_full : r->swimlane;
    if (lane && !quiet) printf("\n%s", lane);
    if (r->report && o->report) printf("\n%s\n", r->report);
    else if (r->report && !quiet) printf("(--report prints the verifier's full report)\n");
}

static void print_summary(const cli_opts *o, const irpk_explore_result *r)
{
    printf("executions: %" PRIu64 ", distinct schedules: %" PRIu64 ", time: %.3f s\n", r->executions,
           r->schedules, r->seconds);
    if (r->failure) return;
    if (o->ex.strategy == IRPK_STRATEGY_DFS && r->exhaustive)
        printf("no failure within bound %u (%" PRIu64 " schedules, exhaustive)\n", r->bound, r->schedules);
    else
        printf("no failure in %" PRIu64 " executions (%s; not exhaustive)\n", r->executions,
               irpk_strategy_name(o->ex.strategy));
}

/* ------------------------------------------------------------------ parallel jobs */

/* What a child reports to the parent through its pipe. */
typedef struct job_report {
    irpk_explore_result r; /* pointers not valid across processes */
    char schedule[65536];
} job_report;

static void run_child(const xscenario *sc, cli_opts *o, unsigned index, int fd)
{
    static job_report rep;
    o->ex.job_index = index;
    o->ex.job_count = o->jobs;
    irpk_explore(sc->fn, NULL, &o->ex, &rep.r);
    snprintf(rep.schedule, sizeof rep.schedule, "%s", rep.r.schedule ? rep.r.schedule : "");
    const char *p = (const char *)&rep;
    for (size_t left = sizeof rep; left;) {
        ssize_t w = write(fd, p, left);
        if (w <= 0) _exit(3);
        p += w;
        left -= (size_t)w;
    }
    _exit(0);
}

static int read_report(int fd, job_report *rep)
{
    char *p = (char *)rep;
    size_t got = 0;
    for (ssize_t n; got < sizeof *rep && (n = read(fd, p + got, sizeof *rep - got)) > 0;) got += (size_t)n;
    return got == sizeof *rep ? 0 : -1;
}

/* Keep the failure with the fewest preemptions (ties: the lowest job). */
static void merge(irpk_explore_result *total, char *best_schedule, const job_report *rep, bool first)
{
    const irpk_explore_result *r = &rep->r;
    total->executions += r->executions;
    total->schedules += r->schedules;
    total->exhaustive = first ? r->exhaustive : total->exhaustive && r->exhaustive;
    total->bound = r->bound;
    if (r->failure && (!total->failure || r->preemptions < total->preemptions)) {
        irpk_explore_result keep = *total;
        *total = *r;
        total->executions = keep.executions, total->schedules = keep.schedules;
        total->exhaustive = keep.exhaustive;
        snprintf(best_schedule, 65536, "%s", rep->schedule);
    }
}

static int run_jobs(const xscenario *sc, cli_opts *o, irpk_explore_result *total, char *best)
{
    pid_t pids[256];
    int fds[256];
    fflush(stdout);
    for (unsigned j = 0; j < o->jobs; j++) {
        int p[2];
        if (pipe(p) != 0) return -1;
        pids[j] = fork();
        if (pids[j] < 0) return -1;
        if (pids[j] == 0) {
            close(p[0]);
            run_child(sc, o, j, p[1]);
        }
        close(p[1]);
        fds[j] = p[0];
    }
    static job_report rep;
    int rc = 0;
    for (unsigned j = 0; j < o->jobs; j++) {
        if (read_report(fds[j], &rep) != 0) rc = -1;
        else merge(total, best, &rep, j == 0);
        close(fds[j]);
        waitpid(pids[j], NULL, 0);
    }
    return rc;
}

/* ------------------------------------------------------------------ main */

static int explore_cmd(const xscenario *sc, cli_opts *o)
{
    irpk_explore_result r;
    printf("scenario: %s — %s\nstrategy: %s", sc->name, sc->summary, irpk_strategy_name(o->ex.strategy));
    if (o->ex.strategy == IRPK_STRATEGY_DFS || o->ex.strategy == IRPK_STRATEGY_PORTFOLIO)
        printf(", preemption bound %u", o->ex.bound);
    printf(o->jobs > 1 ? ", %u jobs\n" : "\n", o->jobs);
    if (o->jobs <= 1) {
        if (irpk_explore(sc->fn, NULL, &o->ex, &r) < 0) return 2;
    } else {
        static char best[65536];
        memset(&r, 0, sizeof r);
        int64_t t0 = plat_now_ns();
        if (run_jobs(sc, o, &r, best) != 0) {
            fprintf(stderr, "irpkit explore: a job failed\n");
            return 2;
        }
        r.seconds = (double)(plat_now_ns() - t0) / 1e9;
        r.schedule = r.swimlane = r.swimlane_full = r.report = NULL;
        if (r.failure) { /* the parent renders the chosen failure by replaying it */
            irpk_explore_result rr;
            irpk_replay(sc->fn, NULL, best, &rr);
            r.swimlane = rr.swimlane;
            r.swimlane_full = rr.swimlane_full;
            r.report = rr.report;
            r.schedule = rr.schedule;
        }
    }
    print_summary(o, &r);
    if (r.failure) print_failure(sc->name, &r, o);
    int rc = r.failure ? 1 : 0;
    irpk_explore_result_free(&r);
    return rc;
}

static int replay_cmd(const xscenario *sc, const cli_opts *o)
{
    irpk_explore_result r;
    int rc = irpk_replay(sc->fn, NULL, o->replay, &r);
    if (rc < 0) {
        fprintf(stderr, "irpkit explore: malformed schedule string\n");
        return 2;
    }
    printf("scenario: %s — replaying %s\n", sc->name, o->replay);
    if (r.failure) print_failure(sc->name, &r, o);
    else printf("no failure (%" PRIu64 " steps)\n%s", r.steps,
                o->quiet || !r.swimlane_full ? "" : r.swimlane_full);
    irpk_explore_result_free(&r);
    return rc;
}

/* dlopen every --load object; its constructors register its scenarios. */
static int load_objects(cli_opts *o)
{
    size_t used = 0;
    for (unsigned i = 0; i < o->nloads; i++) {
        if (!dlopen(o->loads[i], RTLD_NOW | RTLD_GLOBAL)) {
            fprintf(stderr, "irpkit explore: cannot load %s: %s\n", o->loads[i], dlerror());
            return -1;
        }
        int n = snprintf(o->load_args + used, sizeof o->load_args - used, " --load '%s'", o->loads[i]);
        if (n > 0 && (size_t)n < sizeof o->load_args - used) used += (size_t)n;
    }
    return 0;
}

int irpk_cmd_explore(int argc, char **argv)
{
    cli_opts o;
    memset(&o, 0, sizeof o);
    irpk_explore_hello_register(); /* `sample`, `sample-user` and their as-written twins */
    irpk_explore_csq_register();   /* `csq-startio`: examples/csq_startio's driver itself */
    int p = parse_args(argc, argv, &o);
    if (p == 0 && load_objects(&o) != 0) return 2;
    if (p != 0 || o.list) {
        if (p != 0) usage(p > 0 ? stdout : stderr);
        if (p >= 0) {
            printf("scenarios:\n");
            list_scenarios();
        }
        return p < 0 ? 2 : 0;
    }
    irpk_reports_set_quiet(1); /* failures are printed here; no report summary at exit */
    const xscenario *sc = xscenario_find(o.scenario);
    if (!sc) {
        fprintf(stderr, "irpkit explore: unknown scenario '%s'; known:\n", o.scenario);
        list_scenarios();
        return 2;
    }
    return o.replay ? replay_cmd(sc, &o) : explore_cmd(sc, &o);
}
