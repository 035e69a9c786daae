/* Request queue stress: 2 producers submit with random deadlines, owners, cancels and group
 * cancels while a controller cycles stop/start and a completer thread finishes half of the
 * requests asynchronously. Every request must reach exactly one terminal state exactly once
 * and the counters must balance. IRPK_STRESS_SCALE scales the request count. */
#include "qtest.h"

#define RING 4096

typedef struct stress {
    irpk_queue *q;
    volatile int32_t *count; /* completions per request */
    long per_producer;
    plat_lockword ring_lock;
    irpk_req_handle ring[RING];
    unsigned head, tail;
    volatile int32_t producers_done, quit;
    volatile int32_t accepted, ring_used_inline;
} stress;

static stress S;

static void on_complete(irpk_queue *q, irpk_req_handle h, int32_t status, void *r_ctx, void *c)
{
    (void)q;
    (void)h;
    (void)status;
    (void)c;
    plat_fetch_add32((volatile int32_t *)r_ctx, 1);
}

/* Half the requests complete inline, the rest go to the completer thread. */
static void on_dispatch(irpk_queue *q, irpk_req_handle h, void *r_ctx, void *c)
{
    (void)c;
    uintptr_t id = (uintptr_t)((volatile int32_t *)r_ctx - S.count);
    if (id % 2 == 0) {
        irpk_req_complete(q, h, 0);
        return;
    }
    plat_lock_acquire(&S.ring_lock);
    bool room = S.tail - S.head < RING;
    if (room) S.ring[S.tail++ % RING] = h;
    plat_lock_release(&S.ring_lock);
    if (!room) irpk_req_complete(q, h, 0);
}

static irpk_stop_disposition on_stop(irpk_queue *q, irpk_req_handle h, void *r_ctx, void *c)
{
    (void)q;
    (void)h;
    (void)r_ctx;
    (void)c;
    return IRPK_STOP_KEEP; /* the completer still finishes it */
}

static void completer(void *arg)
{
    (void)arg;
    for (;;) {
        irpk_req_handle h = 0;
        plat_lock_acquire(&S.ring_lock);
        if (S.head != S.tail) h = S.ring[S.head++ % RING];
        plat_lock_release(&S.ring_lock);
        if (h) {
            int rc = irpk_req_complete(S.q, h, 1);
            CHECK(rc == 0 || rc == IRPK_REQ_OVERRIDDEN);
        } else if (plat_load32(&S.quit)) {
            return;
        } else {
            plat_yield();
        }
    }
}

static void producer(void *arg)
{
    long base = (long)(intptr_t)arg * S.per_producer;
    uint64_t seed = (uint64_t)base + 1;
    irpk_req_handle recent[64] = {0};
    for (long i = 0; i < S.per_producer; i++) {
        uint64_t rnd = irpk_test_rand(&seed);
        irpk_req_opts o = {(void *)&S.count[base + i], rnd % 7, rnd % 5,
                           rnd % 10 == 0 ? plat_now_ns() + (int64_t)(rnd % 200000) : 0};
        irpk_req_handle h;
        int rc = irpk_queue_submit(S.q, &o, &h);
        CHECK_EQ(rc, 0);
        if (rc) continue;
        plat_fetch_add32(&S.accepted, 1);
        recent[i % 64] = h;
        if (rnd % 10 == 1) {
            int c = irpk_req_cancel(S.q, recent[(rnd >> 8) % 64]);
            CHECK(c >= IRPK_CANCEL_REMOVED && c <= IRPK_CANCEL_NOT_FOUND);
        }
        if (rnd % 5000 == 2) CHECK_EQ(irpk_queue_cancel_owner(S.q, rnd % 5, NULL, NULL), 0);
    }
    plat_fetch_add32(&S.producers_done, 1);
}

static void controller(void *arg)
{
    (void)arg;
    while (plat_load32(&S.producers_done) < 2) {
        CHECK_EQ(irpk_queue_stop_sync(S.q), 0);
        plat_yield();
        CHECK_EQ(irpk_queue_start(S.q), 0);
        plat_sleep_ns(200000);
    }
}

static void run_stress(irpk_queue_mode mode, unsigned par, int in_order)
{
    memset(&S, 0, sizeof S);
    S.per_producer = irpk_test_scale(200000);
    S.count = plat_calloc((size_t)(2 * S.per_producer), sizeof *S.count);
    REQUIRE(S.count);
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = mode;
    c.max_parallel = par;
    c.on_dispatch = on_dispatch;
    c.on_complete = on_complete;
    c.on_stop = on_stop;
    c.in_order_completion = in_order;
    REQUIRE(irpk_queue_create(&c, &S.q) == 0);
    plat_thread *t[4];
    t[0] = plat_thread_start(completer, NULL, "completer", 0);
    t[1] = plat_thread_start(producer, (void *)0, "producer-0", 0);
    t[2] = plat_thread_start(producer, (void *)1, "producer-1", 0);
    t[3] = plat_thread_start(controller, NULL, "controller", 0);
    for (int i = 1; i < 4; i++) plat_thread_join(t[i]);
    CHECK_EQ(irpk_queue_start(S.q), 0);
    CHECK_EQ(irpk_queue_drain_sync(S.q), 0);
    plat_store32(&S.quit, 1);
    plat_thread_join(t[0]);

    long total = 2 * S.per_producer, once = 0;
    for (long i = 0; i < total; i++) once += S.count[i] == 1;
    CHECK_EQ(once, total);
    CHECK_EQ(S.accepted, total);
    irpk_queue_stats s;
    irpk_queue_stats_get(S.q, &s);
    CHECK_EQ(s.live, 0);
    CHECK_EQ(s.submitted, (uint64_t)total);
    CHECK_EQ(s.completed + s.cancelled + s.timed_out, (uint64_t)total);
    CHECK(s.cancelled > 0);
    printf("  %ld requests: completed %llu, cancelled %llu, timed out %llu\n", total,
           (unsigned long long)s.completed, (unsigned long long)s.cancelled,
           (unsigned long long)s.timed_out);
    CHECK_EQ(irpk_queue_free(S.q), 0);
    plat_free((void *)S.count);
}

TEST(stress_parallel_two_producers_exactly_once)
{
    run_stress(IRPK_QUEUE_PARALLEL, 2, 0);
}

TEST(stress_sequential_two_producers_exactly_once)
{
    run_stress(IRPK_QUEUE_SEQUENTIAL, 1, 0);
}

TEST(stress_keyed_serial_two_producers_exactly_once)
{
    run_stress(IRPK_QUEUE_KEYED_SERIAL, 3, 0);
}

TEST(stress_parallel_in_order_completion_exactly_once)
{
    run_stress(IRPK_QUEUE_PARALLEL, 2, 1);
}
