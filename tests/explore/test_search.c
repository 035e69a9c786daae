/* The search layer: strategies, schedule strings, replay determinism, nondeterminism
 * detection, minimization, job splitting, verifier reports as failures. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "explore/explore_int.h"
#include "explore/scenarios.h"
#include "irpkit/bugcheck.h"
#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "irpkit/verifier.h"
#include "io/io.h"
#include "platform/platform.h"
#include "test.h"

static irpk_explore_options opts(irpk_strategy s)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = s;
    return o;
}

static const xscenario *scenario(const char *name)
{
    const xscenario *sc = xscenario_find(name);
    if (!sc) irpk_test_fail(__FILE__, __LINE__, "no scenario %s", name);
    return sc;
}

/* ------------------------------------------------------------------ schedule strings */

TEST(schedule_strings_round_trip_including_a_million_steps)
{
    xsched s, t;
    xsched_init(&s, "pct2", 12345, 2, 3, 777);
    uint64_t rng = 9;
    for (size_t i = 0; i < 1000000; i++) xsched_push(&s, (uint8_t)(1 + irpk_test_rand(&rng) % 3 / 2));
    char *str = xsched_format(&s);
    REQUIRE(str != NULL);
    REQUIRE(xsched_parse(str, &t) == 0);
    CHECK_STR(t.strategy, "pct2");
    CHECK_EQ(t.seed, 12345);
    CHECK_EQ(t.bound, 2);
    CHECK_EQ(t.vcpus, 3);
    CHECK_EQ(t.max_steps, 777);
    REQUIRE(t.n == s.n);
    CHECK(memcmp(t.tids, s.tids, s.n) == 0);
    char *again = xsched_format(&t);
    CHECK_STR(again, str);
    free(again);
    free(str);
    xsched_free(&s);
    xsched_free(&t);
}

TEST(schedule_strings_are_run_length_encoded)
{
    xsched s;
    xsched_init(&s, "dfs", 0, 2, 2, 0);
    const uint8_t tids[] = {1, 1, 1, 2, 3, 3};
    for (size_t i = 0; i < sizeof tids; i++) xsched_push(&s, tids[i]);
    char *str = xsched_format(&s);
    CHECK_STR(str, "irpk1:dfs:s=0:b=2:v=2:c=1x3.2.3x2");
    free(str);
    xsched_free(&s);
}

TEST(malformed_schedule_strings_are_rejected)
{
    const char *bad[] = {"", "irpk2:dfs:s=0:b=0:v=2:c=1", "irpk1:dfs:s=0:b=0:v=0:c=1",
                         "irpk1:dfs:s=x:b=0:v=2:c=1", "irpk1:dfs:s=0:b=0:v=2:c=0",
                         "irpk1:dfs:s=0:b=0:v=2:c=1x", "irpk1:dfs:s=0:b=0:v=2:c=1,2",
                         "irpk1:dfs:s=0:q=1:v=2:c=1", "irpk1:dfs:s=0:b=0:v=2:c=99"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        xsched s;
        CHECK(xsched_parse(bad[i], &s) == -1);
        irpk_explore_result r;
        CHECK_EQ(irpk_replay(scenario("lost-update")->fn, NULL, bad[i], &r), -1);
    }
}

/* ------------------------------------------------------------------ finding and proving */

static void expect_found(const char *name, irpk_strategy strategy, uint64_t budget)
{
    const xscenario *sc = scenario(name);
    irpk_explore_options o = opts(strategy);
    o.max_executions = budget;
    irpk_explore_result r;
    REQUIRE(irpk_explore(sc->fn, NULL, &o, &r) == 1);
    CHECK_EQ(r.failure, sc->expect);
    CHECK_STR(r.what, sc->expect_what);
    if (strategy == IRPK_STRATEGY_DFS) CHECK(r.bound <= 2);
    CHECK(r.found_at >= 1 && r.found_at <= (budget ? budget : r.executions));
    REQUIRE(r.schedule != NULL);
    CHECK(r.swimlane != NULL);
    /* The reported (minimized) schedule reproduces the same failure. */
    irpk_explore_result again;
    CHECK_EQ(irpk_replay(sc->fn, NULL, r.schedule, &again), 1);
    CHECK_EQ(again.failure, sc->expect);
    CHECK_STR(again.what, r.what);
    CHECK_EQ(again.preemptions, r.preemptions);
    CHECK_STR(again.swimlane, r.swimlane);
    irpk_explore_result_free(&again);
    irpk_explore_result_free(&r);
}

TEST(lost_update_found_by_dfs_pct_random_and_portfolio)
{
    expect_found("lost-update", IRPK_STRATEGY_DFS, 0);
    expect_found("lost-update", IRPK_STRATEGY_PCT, scenario("lost-update")->pct_budget);
    expect_found("lost-update", IRPK_STRATEGY_RANDOM, 1000);
    expect_found("lost-update", IRPK_STRATEGY_PORTFOLIO, 1000);
}

TEST(lock_order_deadlock_found_by_dfs_and_pct)
{
    expect_found("lock-order", IRPK_STRATEGY_DFS, 0);
    expect_found("lock-order", IRPK_STRATEGY_PCT, scenario("lock-order")->pct_budget);
}

TEST(dfs_finds_the_lost_update_with_one_preemption)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_DFS);
    irpk_explore_result r;
    REQUIRE(irpk_explore(scenario("lost-update")->fn, NULL, &o, &r) == 1);
    CHECK_EQ(r.bound, 1); /* bound 0 is exhausted first: the bug needs one preemption */
    CHECK_EQ(r.preemptions, 1);
    irpk_explore_result_free(&r);
}

static void expect_clean(const char *name, unsigned bound, bool sleep_sets)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_DFS);
    o.bound = bound;
    o.sleep_sets = sleep_sets;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(scenario(name)->fn, NULL, &o, &r), 0);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONE);
    CHECK(r.exhaustive);
    CHECK_EQ(r.bound, bound);
    CHECK(r.schedules > 1);
    irpk_explore_result_free(&r);
}

TEST(correct_scenarios_are_exhausted_without_failure)
{
    expect_clean("atomic-counter", 2, true);
    expect_clean("atomic-counter", 2, false);
    expect_clean("3x20", 1, true);
    expect_clean("spin-heavy", 1, true);
}

TEST(spin_lock_heavy_scenario_has_no_false_livelock_under_random_search)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_RANDOM);
    o.max_executions = (uint64_t)irpk_test_scale(3000);
    o.max_steps = 2000; /* ~3 x 30 x 6 steps are needed; a busy-spin model would blow this */
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(scenario("spin-heavy")->fn, NULL, &o, &r), 0);
    CHECK_EQ(r.executions, o.max_executions);
    irpk_explore_result_free(&r);
}

TEST(sleep_sets_prune_without_losing_the_result)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_DFS);
    irpk_explore_result with, without;
    irpk_explore(scenario("atomic-counter")->fn, NULL, &o, &with);
    o.sleep_sets = false;
    irpk_explore(scenario("atomic-counter")->fn, NULL, &o, &without);
    CHECK(with.executions <= without.executions);
    CHECK_EQ(with.failure, IRPK_FAILURE_NONE);
    irpk_explore_result_free(&with);
    irpk_explore_result_free(&without);
}

TEST(dfs_jobs_partition_the_schedules)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_DFS);
    o.sleep_sets = false;
    irpk_explore_result all, part;
    irpk_explore(scenario("atomic-counter")->fn, NULL, &o, &all);
    uint64_t sum = 0;
    o.job_count = 3;
    for (unsigned j = 0; j < 3; j++) {
        o.job_index = j;
        CHECK_EQ(irpk_explore(scenario("atomic-counter")->fn, NULL, &o, &part), 0);
        CHECK(part.exhaustive);
        sum += part.schedules;
        irpk_explore_result_free(&part);
    }
    /* Every schedule is covered; only runs shorter than the split depth repeat across jobs. */
    CHECK(sum >= all.schedules);
    CHECK(sum < all.schedules + 3 * 64);
    irpk_explore_result_free(&all);
}

TEST(invalid_options_are_refused)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_PCT);
    o.pct_depth = 4;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(scenario("lost-update")->fn, NULL, &o, &r), -1);
    o = opts(IRPK_STRATEGY_DFS);
    o.job_index = 2;
    o.job_count = 2;
    CHECK_EQ(irpk_explore(scenario("lost-update")->fn, NULL, &o, &r), -1);
}

/* ------------------------------------------------------------------ replay determinism */

static int random_choose(void *ctx, const plat_explore_decision *d)
{
    return (int)(irpk_test_rand(ctx) % d->n);
}

typedef struct recorder {
    uint64_t rng;
    xsched *s;
} recorder;

static int recording_random(void *ctx, const plat_explore_decision *d)
{
    recorder *r = ctx;
    int i = random_choose(&r->rng, d);
    xsched_push(r->s, (uint8_t)d->choices[i].tid);
    return i;
}

TEST(a_thousand_random_schedules_replay_byte_identically)
{
    static plat_explore_outcome out;
    const char *names[] = {"lost-update", "spin-heavy", "lock-order", "3x20"};
    int mismatches = 0;
    for (int i = 0; i < 1000; i++) {
        const xscenario *sc = scenario(names[i % 4]);
        xsched s;
        xsched_init(&s, "random", (uint64_t)i, 0, 2, 0);
        recorder rec = {(uint64_t)i * 7919 + 1, &s};
        plat_explore_config cfg = {sc->fn, NULL, recording_random, &rec, 2, 0, true};
        plat_explore_run(&cfg, &out);
        char *lane = xswimlane_render(&out, true);
        char *str = xsched_format(&s);
        irpk_explore_result r;
        REQUIRE(irpk_replay(sc->fn, NULL, str, &r) >= 0);
        mismatches += r.failure == IRPK_FAILURE_NONDETERMINISM || strcmp(r.swimlane_full, lane) != 0 ||
                      strcmp(r.schedule, str) != 0 || r.steps != out.steps;
        irpk_explore_result_free(&r);
        free(lane);
        free(str);
        xsched_free(&s);
    }
    CHECK_EQ(mismatches, 0);
}

/* A scenario that reads the wall clock: its step count depends on the time. */
static void reads_wall_clock(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    irpk_thread *t = irpk_thread_start((irpk_thread_fn)irpk_thread_yield, NULL, "helper");
    for (long i = 0; i <= ts.tv_nsec / 1000 % 89; i++) irpk_thread_yield();
    irpk_thread_join(t);
    irpk_explore_fail("the end-state check fails every time");
}

TEST(a_scenario_reading_the_wall_clock_is_flagged_nondeterministic)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_DFS);
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(reads_wall_clock, NULL, &o, &r), 1);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONDETERMINISM);
    CHECK_STR(r.what, "nondeterminism");
    irpk_explore_result_free(&r);
}

/* ------------------------------------------------------------------ minimization */

TEST(random_search_failures_are_minimized_to_the_fewest_preemptions)
{
    int checked = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        irpk_explore_options o = opts(IRPK_STRATEGY_RANDOM);
        o.seed = seed;
        o.max_executions = 1000;
        irpk_explore_result r;
        if (irpk_explore(scenario("lost-update")->fn, NULL, &o, &r) != 1) continue;
        checked++;
        CHECK_EQ(r.failure, IRPK_FAILURE_ASSERT);
        CHECK_EQ(r.preemptions, 1); /* DFS proves 1 is the minimum */
        irpk_explore_result again;
        CHECK_EQ(irpk_replay(scenario("lost-update")->fn, NULL, r.schedule, &again), 1);
        CHECK_EQ(again.failure, IRPK_FAILURE_ASSERT);
        irpk_explore_result_free(&again);
        irpk_explore_result_free(&r);
    }
    CHECK(checked > 10);
}

/* ------------------------------------------------------------------ verifier reports */

static int32_t report_flag;

static void raiser(void *arg)
{
    (void)arg;
    if (plat_xchg32(&report_flag, 1) == 1) /* second thread to get here */
        irpk_bugcheck_raise(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS, 0, 0, 0, 0, "both ran");
}

static void two_raisers(void *arg)
{
    (void)arg;
    report_flag = 0;
    irpk_thread *a = irpk_thread_start(raiser, NULL, "a");
    irpk_thread *b = irpk_thread_start(raiser, NULL, "b");
    irpk_thread_join(a);
    irpk_thread_join(b);
}

TEST(verifier_reports_fail_the_execution_with_their_name)
{
    irpk_explore_options o = opts(IRPK_STRATEGY_DFS);
    irpk_explore_result r;
    REQUIRE(irpk_explore(two_raisers, NULL, &o, &r) == 1);
    CHECK_EQ(r.failure, IRPK_FAILURE_REPORT);
    CHECK_STR(r.what, "MULTIPLE_IRP_COMPLETE_REQUESTS");
    REQUIRE(r.report != NULL); /* the full text of the reported run's report */
    CHECK_CONTAINS(r.report, "MULTIPLE_IRP_COMPLETE_REQUESTS");
    CHECK_CONTAINS(r.report, "both ran");
    irpk_explore_result_free(&r);
}

TEST(reports_raised_inside_executions_do_not_stay_in_the_report_store)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    irpk_bugcheck_raise(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS, 1, 0, 0, 0, "before");
    REQUIRE(irpk_report_count() == 1);
    /* DFS runs many executions, several of which raise; PCT and a replay too. */
    irpk_explore_options o = opts(IRPK_STRATEGY_DFS);
    o.minimize = false;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(two_raisers, NULL, &o, &r), 1);
    CHECK_EQ(irpk_report_count(), 1);
    irpk_explore_result again;
    CHECK_EQ(irpk_replay(two_raisers, NULL, r.schedule, &again), 1);
    CHECK_EQ(irpk_report_count(), 1);
    CHECK(again.report != NULL);
    irpk_explore_result_free(&again);
    irpk_explore_result_free(&r);
    o = opts(IRPK_STRATEGY_PCT);
    o.max_executions = 50;
    irpk_explore(two_raisers, NULL, &o, &r);
    irpk_explore_result_free(&r);
    CHECK_EQ(irpk_report_count(), 1);
    CHECK_EQ(irpk_report_find(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS, 1), 0); /* the old one */
    irpk_reports_clear();
}

/* ------------------------------------------------------------------ describing objects */

/* Objects that are no io object but start like one: a 2-byte word holding IO_TYPE_IRP (6) at
 * the end of an array, an interior pointer into a device, a stack address. io_describe used to
 * read an IRP header through them (out of bounds); now it reads only registered objects. */
static CSHORT fake_irp_tail[4] = {0, 0, 0, IO_TYPE_IRP};
static PDEVICE_OBJECT odd_dev;

static NTSTATUS odd_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\Odd");
    return IoCreateDevice(drv, 8, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &odd_dev);
}

static void odd_objects(void *arg)
{
    (void)arg;
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\Odd");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, odd_entry)));
    PIRP irp = IoAllocateIrp(1, FALSE);
    CSHORT local = IO_TYPE_IRP;
    plat_point("odd", &fake_irp_tail[3]);
    plat_point("odd", (const char *)odd_dev->DeviceExtension + 6);
    plat_point("odd", &local);
    plat_point("odd", (const void *)&irp->CancelRoutine);
    plat_point("real", irp);
    plat_point("real", odd_dev);
    plat_point("part", &odd_dev->DeviceQueue);
    IoFreeIrp(irp);
}

static int first_choice(void *ctx, const plat_explore_decision *d)
{
    (void)ctx, (void)d;
    return 0;
}

TEST(swimlanes_describe_only_real_io_objects)
{
    static plat_explore_outcome out;
    size_t n;
    xscenario_list(&n); /* registers the io describer */
    plat_explore_config cfg = {odd_objects, NULL, first_choice, NULL, 2, 0, true};
    plat_explore_run(&cfg, &out);
    REQUIRE(out.status == PLAT_EXO_OK);
    char *full = xswimlane_render(&out, true);
    REQUIRE(full != NULL);
    int irps = 0;
    for (const char *p = full; (p = strstr(p, "IRP#")); p++) irps++;
    CHECK_CONTAINS(full, "real IRP#1");
    CHECK_CONTAINS(full, "real \\Device\\Odd");
    CHECK_CONTAINS(full, "part \\Device\\Odd queue");
    CHECK_EQ(irps, 1); /* the four odd pointers are obj#N, never an IRP */
    free(full);
}

/* ------------------------------------------------------------------ threads natively */

static void set_flag(void *arg) { *(int *)arg = 1; }

TEST(irpk_threads_work_natively_too)
{
    int flag = 0;
    CHECK(!irpk_explore_active());
    irpk_thread *t = irpk_thread_start(set_flag, &flag, "native");
    REQUIRE(t != NULL);
    CHECK_STR(irpk_thread_name(t), "native");
    CHECK(irpk_thread_id(t) > 0);
    irpk_thread_join(t);
    CHECK_EQ(flag, 1);
    CHECK(irpk_thread_self() != NULL);
}
