/* Explore backend of the platform layer (platform/explore.h): one execution at a time under a
 * chooser the test controls. Asserts outcomes, step logs and enabled sets; never timing. */
#include <string.h>

#include "platform/explore.h"
#include "test.h"

/* ------------------------------------------------------------------ choosers */

static int choose_first(void *ctx, const plat_explore_decision *d)
{
    (void)ctx, (void)d;
    return 0;
}

static int choose_last(void *ctx, const plat_explore_decision *d)
{
    (void)ctx;
    return (int)d->n - 1;
}

/* Keep running the current thread when possible, else the lowest id (no preemptions). */
static int choose_current(void *ctx, const plat_explore_decision *d)
{
    (void)ctx;
    for (unsigned i = 0; i < d->n; i++)
        if (!plat_explore_is_preemption(d, i)) return (int)i;
    return 0;
}

static int choose_random(void *ctx, const plat_explore_decision *d)
{
    return (int)(irpk_test_rand(ctx) % d->n);
}

static plat_explore_outcome out;

static void run(plat_thread_fn entry, void *arg, plat_explore_chooser ch, void *ctx, unsigned vcpus,
                uint64_t max_steps, bool log)
{
    plat_explore_config cfg = {entry, arg, ch, ctx, vcpus, max_steps, log};
    plat_explore_run(&cfg, &out);
}

/* ------------------------------------------------------------------ scenarios */

static int32_t counter;

static void racy_increment(void *arg)
{
    (void)arg;
    int32_t v = plat_load32(&counter); /* load and store are separate steps: not atomic */
    plat_store32(&counter, v + 1);
}

static void two_incrementers(void *arg)
{
    (void)arg;
    counter = 0;
    plat_thread *a = plat_thread_start(racy_increment, NULL, "inc-a", 0);
    plat_thread *b = plat_thread_start(racy_increment, NULL, "inc-b", 0);
    plat_thread_join(a);
    plat_thread_join(b);
    if (plat_load32(&counter) != 2) plat_explore_fail("assert", "lost update");
}

TEST(plat_mode_is_explore_only_during_a_run)
{
    CHECK_EQ(plat_mode(), PLAT_NATIVE);
    run(two_incrementers, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(plat_mode(), PLAT_NATIVE);
    CHECK_EQ(out.status, PLAT_EXO_OK);
    CHECK_EQ(out.nthreads, 3);
    CHECK_STR(out.names[0], "main");
    CHECK_STR(out.names[1], "inc-a");
    CHECK_EQ(out.preemptions, 0);
}

TEST(lost_update_found_by_some_schedule_and_runs_are_deterministic)
{
    int failures = 0;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        uint64_t s = seed;
        run(two_incrementers, NULL, choose_random, &s, 2, 0, false);
        CHECK(out.status == PLAT_EXO_OK || out.status == PLAT_EXO_FAILED);
        if (out.status != PLAT_EXO_FAILED) continue;
        failures++;
        CHECK_STR(out.what, "assert");
        CHECK_STR(out.detail, "lost update");
        uint64_t h = out.hash, steps = out.steps;
        s = seed; /* same seed, same schedule, same trace */
        run(two_incrementers, NULL, choose_random, &s, 2, 0, false);
        CHECK_EQ(out.status, PLAT_EXO_FAILED);
        CHECK_EQ(out.hash, h);
        CHECK_EQ(out.steps, steps);
    }
    CHECK(failures > 0);
}

static plat_lockword lock_a, lock_b;

static void lock_ab(void *arg)
{
    (void)arg;
    plat_lock_acquire(&lock_a);
    plat_yield();
    plat_lock_acquire(&lock_b);
    plat_lock_release(&lock_b);
    plat_lock_release(&lock_a);
}

static void lock_ba(void *arg)
{
    (void)arg;
    plat_lock_acquire(&lock_b);
    plat_yield();
    plat_lock_acquire(&lock_a);
    plat_lock_release(&lock_a);
    plat_lock_release(&lock_b);
}

static void lock_order_inversion(void *arg)
{
    (void)arg;
    plat_thread *a = plat_thread_start(lock_ab, NULL, "ab", 0);
    plat_thread *b = plat_thread_start(lock_ba, NULL, "ba", 0);
    plat_thread_join(a);
    plat_thread_join(b);
}

TEST(lock_order_inversion_deadlocks_and_names_the_holders)
{
    /* The yields hand over after each first acquire: both hold one lock and want the other. */
    run(lock_order_inversion, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(out.status, PLAT_EXO_DEADLOCK);
    CHECK_STR(out.what, "deadlock");
    CHECK_CONTAINS(out.detail, "ab acquiring");
    CHECK_CONTAINS(out.detail, "held by ba");
    CHECK_CONTAINS(out.detail, "main joining ab");
}

static plat_lockword spin;
static int32_t protected_count;

static void spin_worker(void *arg)
{
    for (int i = 0; i < (int)(intptr_t)arg; i++) {
        plat_lock_acquire(&spin);
        int32_t v = protected_count; /* plain access: the lock is the only protection */
        plat_point("critical", &protected_count);
        protected_count = v + 1;
        plat_lock_release(&spin);
    }
}

static void spin_heavy(void *arg)
{
    (void)arg;
    protected_count = 0;
    plat_thread *t[3];
    for (int i = 0; i < 3; i++) t[i] = plat_thread_start(spin_worker, (void *)(intptr_t)40, NULL, 0);
    for (int i = 0; i < 3; i++) plat_thread_join(t[i]);
    if (protected_count != 120) plat_explore_fail("assert", "mutual exclusion broken");
}

TEST(spin_lock_heavy_code_never_livelocks_and_stays_exclusive)
{
    uint64_t s = 42;
    for (int i = 0; i < 300; i++) {
        run(spin_heavy, NULL, choose_random, &s, 2, 2000, false);
        CHECK_EQ(out.status, PLAT_EXO_OK);
        CHECK(out.steps < 2000);
    }
}

static int32_t forever;

static void spinner(void *arg)
{
    (void)arg;
    while (plat_load32(&forever) == 0) {
    }
}

TEST(step_bound_reports_livelock)
{
    forever = 0;
    run(spinner, NULL, choose_current, NULL, 2, 500, false);
    CHECK_EQ(out.status, PLAT_EXO_LIVELOCK);
    CHECK_STR(out.what, "livelock");
}

static int32_t flag;

static void poller(void *arg)
{
    (void)arg;
    while (plat_load32(&flag) == 0) plat_yield();
}

static void setter(void *arg)
{
    (void)arg;
    plat_store32(&flag, 1);
}

static void poll_scenario(void *arg)
{
    (void)arg;
    flag = 0;
    plat_thread *p = plat_thread_start(poller, NULL, "poller", 0);
    plat_thread *s = plat_thread_start(setter, NULL, "setter", 0);
    plat_thread_join(p);
    plat_thread_join(s);
}

TEST(yield_lets_others_run_so_polling_terminates)
{
    /* Even a chooser that never preempts must see the setter run: yield disables the poller. */
    run(poll_scenario, NULL, choose_current, NULL, 2, 1000, false);
    CHECK_EQ(out.status, PLAT_EXO_OK);
    run(poll_scenario, NULL, choose_first, NULL, 2, 1000, false);
    CHECK_EQ(out.status, PLAT_EXO_OK);
}

static uint32_t word;
static int results[4];
static int64_t waited_ns;

static void timed_waiter(void *arg)
{
    (void)arg;
    int64_t t0 = plat_now_ns();
    results[0] = plat_wait(&word, 0, t0 + 5000000);
    waited_ns = plat_now_ns() - t0;
}

static void waker(void *arg)
{
    (void)arg;
    plat_store32((int32_t *)&word, 1);
    plat_wake(&word, 1);
}

static void wait_scenario(void *arg)
{
    word = 0;
    plat_thread *w = plat_thread_start(timed_waiter, NULL, "waiter", 0);
    plat_thread *k = arg ? plat_thread_start(waker, NULL, "waker", 0) : NULL;
    plat_thread_join(w);
    if (k) plat_thread_join(k);
}

TEST(timed_wait_times_out_in_virtual_time)
{
    run(wait_scenario, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(out.status, PLAT_EXO_OK);
    CHECK_EQ(results[0], PLAT_TIMEDOUT);
    CHECK_EQ(waited_ns, 5000000);
}

TEST(wake_or_timeout_are_both_reachable_choices)
{
    int woken = 0, timedout = 0;
    uint64_t s = 7;
    for (int i = 0; i < 200; i++) {
        run(wait_scenario, (void *)1, choose_random, &s, 2, 0, false);
        CHECK_EQ(out.status, PLAT_EXO_OK);
        woken += results[0] == PLAT_WOKEN;
        timedout += results[0] == PLAT_TIMEDOUT;
    }
    CHECK(woken > 0);
    CHECK(timedout > 0);
}

static void sleeper(void *arg)
{
    plat_sleep_ns((int64_t)(intptr_t)arg);
    results[1] = (int)((plat_now_ns() / 1000000) % 1000);
}

static void sleep_scenario(void *arg)
{
    (void)arg;
    int64_t t0 = plat_now_ns();
    plat_thread *a = plat_thread_start(sleeper, (void *)(intptr_t)3000000, "s3", 0);
    plat_thread *b = plat_thread_start(sleeper, (void *)(intptr_t)1000000, "s1", 0);
    plat_thread_join(a);
    plat_thread_join(b);
    waited_ns = plat_now_ns() - t0;
}

TEST(sleep_advances_virtual_time_monotonically)
{
    uint64_t s = 3;
    for (int i = 0; i < 50; i++) {
        run(sleep_scenario, NULL, choose_random, &s, 2, 0, false);
        CHECK_EQ(out.status, PLAT_EXO_OK);
        /* 3 ms, or 4 ms when s1 woke before s3 even started its sleep; never less. */
        CHECK(waited_ns == 3000000 || waited_ns == 4000000);
    }
}

static void service_loop(void *arg)
{
    (void)arg;
    uint32_t never = 0;
    for (;;) plat_wait(&never, 0, PLAT_FOREVER);
}

static void with_system_thread(void *arg)
{
    (void)arg;
    plat_thread_start(service_loop, NULL, "DPC cpu0", PLAT_THREAD_SYSTEM);
    plat_yield();
}

TEST(system_threads_do_not_keep_an_execution_alive)
{
    run(with_system_thread, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(out.status, PLAT_EXO_OK);
    CHECK_EQ(out.nthreads, 2);
}

static void *first_alloc;

static void allocating(void *arg)
{
    (void)arg;
    void *p = plat_alloc(100);
    void *q = plat_calloc(10, 1000);
    first_alloc = p;
    plat_free(q);
    void *big = plat_alloc(1 << 20); /* beyond the arena's size classes */
    plat_free(plat_alloc(200000)); /* tracked, freed explicitly */
    (void)big;                     /* left for the end of the execution to release */
}

TEST(allocations_are_per_execution_and_repeat_addresses)
{
    run(allocating, NULL, choose_current, NULL, 2, 0, false);
    void *a = first_alloc;
    run(allocating, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(out.status, PLAT_EXO_OK);
    CHECK_PTR(first_alloc, a); /* the previous execution's memory was released and reused */
}

static int at_dispatch_violations;

static void dispatch_worker(void *arg)
{
    plat_thread *self = plat_self();
    if (arg) self->irql = 2;
    for (int i = 0; i < 5; i++) plat_point("work", NULL);
    self->irql = 0;
    plat_point("lowered", NULL);
}

static void dispatch_scenario(void *arg)
{
    (void)arg;
    plat_thread *a = plat_thread_start(dispatch_worker, (void *)1, "hi", 0);
    plat_thread *b = plat_thread_start(dispatch_worker, NULL, "lo", 0);
    plat_thread_join(a);
    plat_thread_join(b);
}

/* Whether thread `tid` sat at IRQL >= 2 while step k ran: the IRQL a thread has at the start
 * of its next step is the one it held since its previous step ended. */
static bool at_dispatch_during(uint32_t tid, size_t k)
{
    bool started = false;
    for (size_t j = 0; j < k && !started; j++) started = out.log[j].tid == tid;
    for (size_t j = k + 1; started && j < out.nlog; j++)
        if (out.log[j].tid == tid) return out.log[j].irql >= 2;
    return false;
}

TEST(dispatch_level_thread_is_not_preempted_on_its_vcpu)
{
    uint64_t s = 11;
    for (int i = 0; i < 200; i++) {
        run(dispatch_scenario, NULL, choose_random, &s, 1, 0, true);
        REQUIRE(out.status == PLAT_EXO_OK);
        for (size_t k = 0; k < out.nlog; k++)
            if (out.log[k].tid != 2 && at_dispatch_during(2, k)) at_dispatch_violations++;
    }
    CHECK_EQ(at_dispatch_violations, 0);
}

TEST(other_vcpus_still_run_beside_a_dispatch_level_thread)
{
    uint64_t s = 11;
    int interleaved = 0;
    for (int i = 0; i < 200 && !interleaved; i++) {
        run(dispatch_scenario, NULL, choose_random, &s, 2, 0, true);
        REQUIRE(out.status == PLAT_EXO_OK);
        for (size_t k = 0; k < out.nlog; k++) /* "lo" (tid 3) is on the other vCPU */
            interleaved |= out.log[k].tid == 3 && at_dispatch_during(2, k);
    }
    CHECK(interleaved);
}

static int hook_ran;
static void count_exit(plat_thread *t)
{
    if (!strcmp(t->name, "hooked")) hook_ran++;
}

static void nothing(void *arg) { (void)arg; }

static void hook_scenario(void *arg)
{
    (void)arg;
    plat_thread_join(plat_thread_start(nothing, NULL, "hooked", 0));
}

TEST(exit_hooks_run_when_a_fiber_returns)
{
    plat_on_thread_exit(count_exit);
    hook_ran = 0;
    run(hook_scenario, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(out.status, PLAT_EXO_OK);
    CHECK_EQ(hook_ran, 1);
}

static plat_thread *parker_thread;

static void parker(void *arg)
{
    (void)arg;
    results[2] = plat_park(PLAT_FOREVER);
}

static void park_scenario(void *arg)
{
    (void)arg;
    parker_thread = plat_thread_start(parker, NULL, "parker", 0);
    plat_unpark(parker_thread);
    plat_thread_join(parker_thread);
}

TEST(park_unpark_never_loses_the_permit)
{
    uint64_t s = 5;
    for (int i = 0; i < 100; i++) {
        results[2] = -1;
        run(park_scenario, NULL, choose_random, &s, 2, 0, false);
        CHECK_EQ(out.status, PLAT_EXO_OK);
        CHECK_EQ(results[2], PLAT_WOKEN);
    }
}

TEST(thread_ids_restart_at_one_every_execution)
{
    for (int i = 0; i < 3; i++) {
        run(two_incrementers, NULL, choose_last, NULL, 2, 0, true);
        CHECK_EQ(out.log[0].tid, 1);
        CHECK_STR(out.log[0].op, "start");
        CHECK_EQ(out.nthreads, 3);
    }
}

static bool describe_counter(const void *obj, char *buf, size_t n)
{
    if (obj != &counter) return false;
    snprintf(buf, n, "counter=%d", (int)counter);
    return true;
}

TEST(describers_name_objects_before_and_after_each_step)
{
    plat_explore_add_describer(describe_counter);
    run(two_incrementers, NULL, choose_current, NULL, 2, 0, true);
    int stores = 0;
    for (size_t k = 0; k < out.nlog; k++) {
        if (strcmp(out.log[k].op, "store") || out.log[k].obj != &counter) continue;
        stores++;
        CHECK_CONTAINS(out.log[k].obj_name, "counter=");
        CHECK(strcmp(out.log[k].obj_name, out.log[k].obj_after) != 0);
    }
    CHECK_EQ(stores, 2);
}

static int end_checks_seen;
static void end_check(void) { end_checks_seen++; }

TEST(end_checks_run_after_clean_executions_only)
{
    plat_explore_add_end_check(end_check);
    end_checks_seen = 0;
    run(two_incrementers, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(end_checks_seen, 1);
    run(lock_order_inversion, NULL, choose_current, NULL, 2, 0, false);
    CHECK_EQ(end_checks_seen, 1);
}

static int abort_after_two(void *ctx, const plat_explore_decision *d)
{
    (void)d;
    return ++*(int *)ctx > 2 ? -1 : 0;
}

TEST(chooser_can_abandon_an_execution)
{
    int calls = 0;
    run(spin_heavy, NULL, abort_after_two, &calls, 2, 0, false);
    CHECK_EQ(out.status, PLAT_EXO_ABORTED);
    CHECK_EQ(calls, 3);
}
