/* Explorer benchmarks, each printed next to its goal (shared/spec/EXPLORER.md):
 *   switch cost between simulated threads          goal <= 50 ns
 *   complete executions/s, 3 threads x ~20 points  goal >= 100 000 /s
 *   exhaust preemption bound 2 / 3 of that shape   goal < 0.5 s / < 10 s
 *   executions until PCT finds the R1 mutant (99th percentile over seeds)  goal <= 829
 *   each seeded-bug mutant found by DFS in <= 1 s with a minimal trace of <= 30 lines
 *   the seed's sample driver (examples/hello_startio) proved to bounds 2 and 3
 * Prints numbers only; never fails on speed. `bench_explore quick` runs smaller sizes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explore/scenarios.h"
#include "explore_hello.h"
#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "platform/explore.h"
#include "platform/explore/fiber.h"
#include "platform/platform.h"

static double now_s(void) { return (double)plat_now_ns() / 1e9; }

static void row(const char *what, double value, const char *unit, const char *goal, bool met)
{
    printf("  %-86s %10.2f %-5s goal %-12s %s\n", what, value, unit, goal, met ? "met" : "MISSED");
}

/* ---- raw fiber switch: two fibers ping-pong */

static plat_fiber *host, *fa, *fb;
static long rounds;

static void ping(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) plat_fiber_switch(fa, fb, 0);
    plat_fiber_switch(fa, host, 1);
}

static void pong(void *arg)
{
    (void)arg;
    for (;;) plat_fiber_switch(fb, fa, 0);
}

static void bench_raw_switch(long n)
{
    rounds = n;
    host = plat_fiber_host();
    fa = plat_fiber_new(ping, NULL);
    fb = plat_fiber_new(pong, NULL);
    double t0 = now_s();
    plat_fiber_switch(host, fa, 0);
    double ns = (now_s() - t0) * 1e9 / (2.0 * (double)n);
    plat_fiber_release(fa);
    plat_fiber_release(fb);
    row("fiber switch (raw)", ns, "ns", "<= 50 ns", ns <= 50);
}

/* ---- scheduler switch: two simulated threads alternate through plat_yield */

static void yielder(void *arg)
{
    for (long i = 0; i < (long)(intptr_t)arg; i++) plat_yield();
}

static void two_yielders(void *arg)
{
    plat_thread *a = plat_thread_start(yielder, arg, "a", 0);
    plat_thread *b = plat_thread_start(yielder, arg, "b", 0);
    plat_thread_join(a);
    plat_thread_join(b);
}

static int first(void *ctx, const plat_explore_decision *d)
{
    (void)ctx, (void)d;
    return 0;
}

static void bench_sched_switch(long n)
{
    static plat_explore_outcome out;
    plat_explore_config cfg = {two_yielders, (void *)(intptr_t)n, first, NULL, 2, 0, false};
    cfg.max_steps = (uint64_t)n * 4 + 100;
    double t0 = now_s();
    plat_explore_run(&cfg, &out);
    double ns = (now_s() - t0) * 1e9 / (double)out.steps;
    row("switch via scheduling point (yield ping-pong)", ns, "ns", "<= 50 ns", ns <= 50);
}

/* ---- executions per second and exhaustive bounds for the 3x20 scenario */

static void bench_exec_rate(uint64_t n)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_RANDOM;
    o.max_executions = n;
    irpk_explore_result r;
    irpk_explore(xscenario_find("3x20")->fn, NULL, &o, &r);
    double rate = (double)r.executions / r.seconds;
    row("executions/s, 3 threads x 20 points (random)", rate, "/s", ">= 100000/s", rate >= 100000);
    irpk_explore_result_free(&r);
}

static void bench_exhaust(unsigned bound, bool sleep_sets, double goal)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = bound;
    o.sleep_sets = sleep_sets;
    irpk_explore_result r;
    irpk_explore(xscenario_find("3x20")->fn, NULL, &o, &r);
    char what[96], g[32];
    snprintf(what, sizeof what, "exhaust bound %u%s (%" PRIu64 " schedules, %" PRIu64 " runs)", bound,
             sleep_sets ? " +sleep" : "", r.schedules, r.executions);
    snprintf(g, sizeof g, "< %.1f s", goal);
    row(what, r.seconds, "s", g, r.exhaustive && r.seconds < goal);
    irpk_explore_result_free(&r);
}

/* ---- PCT: executions until the R1 mutant is found */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_pct(const char *name, unsigned depth, int seeds)
{
    const xscenario *sc = xscenario_find(name);
    if (!sc) return;
    uint64_t *found = calloc((size_t)seeds, sizeof *found);
    int misses = 0;
    for (int s = 0; s < seeds; s++) {
        irpk_explore_options o;
        irpk_explore_options_init(&o);
        o.strategy = IRPK_STRATEGY_PCT;
        o.pct_depth = depth;
        o.seed = (uint64_t)s;
        o.max_executions = 20000;
        o.minimize = false;
        irpk_explore_result r;
        found[s] = irpk_explore(sc->fn, NULL, &o, &r) == 1 ? r.found_at : 20000;
        misses += r.failure == IRPK_FAILURE_NONE;
        irpk_explore_result_free(&r);
    }
    qsort(found, (size_t)seeds, sizeof *found, cmp_u64);
    char what[96];
    snprintf(what, sizeof what, "PCT %s executions to find %s (p99 of %d seeds; median %" PRIu64 ")",
             depth ? (depth == 2 ? "d=2" : depth == 3 ? "d=3" : "d=1") : "d=1..3", name, seeds,
             found[seeds / 2]);
    row(what, (double)found[seeds * 99 / 100], "runs", "<= 829", misses == 0 && found[seeds * 99 / 100] <= 829);
    free(found);
}

/* ---- the seeded-bug corpus: DFS time to the failure and the minimal trace's length */

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

static void bench_mutant(const char *name)
{
    const xscenario *sc = xscenario_find(name);
    if (!sc) return;
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    irpk_explore_result r;
    int rc = irpk_explore(sc->fn, NULL, &o, &r);
    char what[256];
    snprintf(what, sizeof what, "%-17s %-24.24s run %5" PRIu64 ", %u preempt., trace %2zu lines (%3" PRIu64 " steps)",
             name, rc == 1 ? r.what : "NOT FOUND", r.found_at, r.preemptions, count_lines(r.swimlane), r.steps);
    row(what, r.seconds, "s", "<= 1 s, 30 l", rc == 1 && r.seconds <= 1.0 && count_lines(r.swimlane) <= 30);
    irpk_explore_result_free(&r);
}

static void bench_prove(const char *name, unsigned bound, double goal)
{
    const xscenario *sc = xscenario_find(name);
    if (!sc) return;
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = bound;
    irpk_explore_result r;
    int rc = irpk_explore(sc->fn, NULL, &o, &r);
    char what[256], g[32];
    snprintf(what, sizeof what, "%s: no failure to bound %u (%" PRIu64 " schedules, %" PRIu64 " runs)", name,
             bound, r.schedules, r.executions);
    snprintf(g, sizeof g, "< %.1f s", goal);
    row(what, r.seconds, "s", g, rc == 0 && r.exhaustive && r.seconds < goal);
    irpk_explore_result_free(&r);
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && !strcmp(argv[1], "quick");
    irpk_reports_set_quiet(1);
    irpk_explore_hello_register();
    printf("irpkit explorer benchmarks (one core)\n");
    bench_raw_switch(quick ? 100000 : 5000000);
    bench_sched_switch(quick ? 100000 : 2000000);
    bench_exec_rate(quick ? 20000 : 300000);
    bench_exhaust(2, false, 0.5);
    bench_exhaust(2, true, 0.5);
    if (!quick) bench_exhaust(3, false, 10.0);
    if (!quick) bench_exhaust(3, true, 10.0);
    bench_pct("r1-mutant", 0, quick ? 50 : 200);
    bench_pct("r1-mutant", 2, quick ? 50 : 200);
    bench_pct("r4-mutant", 0, quick ? 50 : 200);
    const char *corpus[] = {"sample-as-written", "r1-mutant", "r3-mutant", "r4-mutant",
                            "r5-mutant", "r9-mutant", "r11-mutant"};
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) bench_mutant(corpus[i]);
    bench_prove("sample", 2, 10.0);
    if (!quick) bench_prove("sample", 3, 60.0);
    return 0;
}
