/* Platform-level scenarios: exercise the explorer's machinery without the I/O manager.
 * Each resets its globals at its start (a scenario runs many times in one process). */
#include "explore/scenarios_int.h"
#include "irpkit/thread.h"
#include "platform/platform.h"

/* ---- lost update: two threads increment with a separate load and store */

static int32_t counter;

static void racy_increment(void *arg)
{
    (void)arg;
    int32_t v = plat_load32(&counter); /* the bug: load and store are separate steps */
    plat_store32(&counter, v + 1);
}

static void lost_update(void *arg)
{
    (void)arg;
    counter = 0;
    irpk_thread *a = irpk_thread_start(racy_increment, NULL, "inc-a");
    irpk_thread *b = irpk_thread_start(racy_increment, NULL, "inc-b");
    irpk_thread_join(a);
    irpk_thread_join(b);
    IRPK_EXPLORE_CHECK(plat_load32(&counter) == 2);
}

/* ---- atomic counter: the corrected version */

static void atomic_increment(void *arg)
{
    (void)arg;
    plat_fetch_add32(&counter, 1);
}

static void atomic_counter(void *arg)
{
    (void)arg;
    counter = 0;
    irpk_thread *t[3];
    for (int i = 0; i < 3; i++) t[i] = irpk_thread_start(atomic_increment, NULL, NULL);
    for (int i = 0; i < 3; i++) irpk_thread_join(t[i]);
    IRPK_EXPLORE_CHECK(plat_load32(&counter) == 3);
}

/* ---- lock-order inversion: A then B against B then A */

static plat_lockword lock_a, lock_b;

static void take_two(volatile plat_lockword *first, volatile plat_lockword *second)
{
    plat_lock_acquire(first);
    plat_point("holding", (const void *)first);
    plat_lock_acquire(second);
    plat_lock_release(second);
    plat_lock_release(first);
}

static void lock_ab(void *arg) { (void)arg, take_two(&lock_a, &lock_b); }
static void lock_ba(void *arg) { (void)arg, take_two(&lock_b, &lock_a); }

static void lock_order(void *arg)
{
    (void)arg;
    plat_lock_init(&lock_a);
    plat_lock_init(&lock_b);
    irpk_thread *a = irpk_thread_start(lock_ab, NULL, "a-then-b");
    irpk_thread *b = irpk_thread_start(lock_ba, NULL, "b-then-a");
    irpk_thread_join(a);
    irpk_thread_join(b);
}

/* ---- spin-lock heavy but correct: many short critical sections, no false livelock */

#define SPIN_ROUNDS 30

static plat_lockword spin;
static int32_t guarded; /* plain int: only the lock protects it */

static void spin_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        plat_lock_acquire(&spin);
        int32_t v = guarded;
        plat_point("in-lock", &guarded);
        guarded = v + 1;
        plat_lock_release(&spin);
    }
}

static void spin_heavy(void *arg)
{
    (void)arg;
    plat_lock_init(&spin);
    guarded = 0;
    irpk_thread *t[3];
    for (int i = 0; i < 3; i++) t[i] = irpk_thread_start(spin_worker, NULL, NULL);
    for (int i = 0; i < 3; i++) irpk_thread_join(t[i]);
    IRPK_EXPLORE_CHECK(guarded == 3 * SPIN_ROUNDS);
}

/* ---- 3 threads x 20 points: the benchmark's shape (all points conflict) */

static int32_t shared_word;

static void twenty_points(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) plat_fetch_add32(&shared_word, 1);
}

static void three_by_twenty(void *arg)
{
    (void)arg;
    shared_word = 0;
    irpk_thread *t[3];
    for (int i = 0; i < 3; i++) t[i] = irpk_thread_start(twenty_points, NULL, NULL);
    for (int i = 0; i < 3; i++) irpk_thread_join(t[i]);
    IRPK_EXPLORE_CHECK(plat_load32(&shared_word) == 60);
}

const xscenario xscenarios_platform[] = {
    {"lost-update", "two threads increment a counter with a separate load and store", lost_update,
     IRPK_FAILURE_ASSERT, "assert", 200},
    {"atomic-counter", "three threads increment with an interlocked add (correct)", atomic_counter,
     IRPK_FAILURE_NONE, NULL, 0},
    {"lock-order", "two threads take two locks in opposite order", lock_order,
     IRPK_FAILURE_DEADLOCK, "deadlock", 200},
    {"spin-heavy", "three threads, 30 short spin-locked sections each (correct)", spin_heavy,
     IRPK_FAILURE_NONE, NULL, 0},
    {"3x20", "three threads of twenty interlocked adds each (benchmark shape, correct)",
     three_by_twenty, IRPK_FAILURE_NONE, NULL, 0},
    {NULL, NULL, NULL, IRPK_FAILURE_NONE, NULL, 0},
};
