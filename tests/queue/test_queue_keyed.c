/* Request queue: keyed orders (priority with FIFO among equal keys, aging, C-SCAN elevator,
 * "key >= k wrapping"), O(log n) reprioritisation, keyed-serial dispatch. */
#include "qtest.h"

static irpk_req_handle take(irpk_queue *q)
{
    irpk_req_handle h = 0;
    CHECK_EQ(irpk_queue_retrieve(q, &h), 0);
    CHECK_EQ(irpk_req_complete(q, h, 0), 0);
    return h;
}

static uint64_t take_key(irpk_queue *q, rec *r)
{
    take(q);
    return (uint64_t)(uintptr_t)r->cctx[(r->ncomplete - 1) % REC_MAX];
}

TEST(priority_smallest_key_first_fifo_among_equal)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_PRIORITY, 1);
    REQUIRE(q);
    irpk_req_handle h5 = submit_opts(q, 5, 0, 0), h1a = submit_opts(q, 1, 0, 0);
    irpk_req_handle h3 = submit_opts(q, 3, 0, 0), h1b = submit_opts(q, 1, 0, 0);
    CHECK_EQ(take(q), h1a);
    CHECK_EQ(take(q), h1b);
    CHECK_EQ(take(q), h3);
    CHECK_EQ(take(q), h5);
    irpk_queue_free(q);
}

TEST(elevator_sweeps_upward_and_wraps)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_ELEVATOR, 1);
    REQUIRE(q);
    submit_opts(q, 10, 0, 0);
    submit_opts(q, 20, 0, 0);
    submit_opts(q, 30, 0, 0);
    submit_opts(q, 5, 0, 0);
    CHECK_EQ(take_key(q, &r), 5);
    CHECK_EQ(take_key(q, &r), 10);
    submit_opts(q, 7, 0, 0); /* behind the head: waits for the next sweep */
    CHECK_EQ(take_key(q, &r), 20);
    submit_opts(q, 25, 0, 0); /* ahead of the head: served in this sweep */
    CHECK_EQ(take_key(q, &r), 25);
    CHECK_EQ(take_key(q, &r), 30);
    CHECK_EQ(take_key(q, &r), 7);
    irpk_queue_free(q);
}

TEST(retrieve_key_takes_next_at_or_above_and_wraps)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_PRIORITY, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_opts(q, 10, 0, 0), b = submit_opts(q, 20, 0, 0);
    irpk_req_handle got;
    CHECK_EQ(irpk_queue_retrieve_key(q, 20, &got), 0);
    CHECK_EQ(got, b);
    irpk_req_complete(q, got, 0);
    CHECK_EQ(irpk_queue_retrieve_key(q, 25, &got), 0); /* nothing >= 25: wrap to 10 */
    CHECK_EQ(got, a);
    irpk_req_complete(q, got, 0);
    CHECK_EQ(irpk_queue_retrieve_key(q, 0, &got), IRPK_QE_EMPTY);
    irpk_queue_free(q);
}

TEST(set_key_reprioritises_a_queued_request)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_PRIORITY, 1);
    REQUIRE(q);
    irpk_req_handle a = submit_opts(q, 1, 0, 0), b = submit_opts(q, 2, 0, 0);
    irpk_req_handle c = submit_opts(q, 3, 0, 0);
    CHECK_EQ(irpk_req_set_key(q, c, 0), 0);
    CHECK_EQ(irpk_req_set_key(q, a, 2), 0); /* now after b, which has key 2 already */
    irpk_req_handle got;
    CHECK_EQ(irpk_queue_peek(q, &got), 0);
    CHECK_EQ(got, c);
    CHECK_EQ(take(q), c);
    CHECK_EQ(irpk_queue_retrieve(q, &got), 0);
    CHECK_EQ(got, b);
    CHECK_EQ(irpk_req_set_key(q, b, 9), IRPK_QE_NOTOWNER); /* running */
    irpk_req_complete(q, b, 0);
    CHECK_EQ(take(q), a);
    CHECK_EQ(irpk_req_set_key(q, a, 1), IRPK_QE_STALE);
    irpk_queue_free(q);
}

TEST(aging_lets_an_old_request_overtake_newer_smaller_keys)
{
    rec r;
    memset(&r, 0, sizeof r);
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = IRPK_QUEUE_MANUAL;
    c.order = IRPK_ORDER_PRIORITY;
    c.aging_ns = 1; /* one key unit per nanosecond of waiting */
    c.on_complete = rec_complete;
    c.ctx = &r;
    irpk_queue *q;
    REQUIRE(irpk_queue_create(&c, &q) == 0);
    irpk_req_handle old = submit_opts(q, 1000, 0, 0);
    plat_sleep_ns(1000000); /* >= 1 ms >> 1000 units: the newcomer's effective key is larger */
    submit_opts(q, 0, 0, 0);
    CHECK_EQ(take(q), old);
    irpk_queue_free(q);
}

TEST(keyed_order_many_random_keys_come_out_sorted_and_stable)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_PRIORITY, 1);
    REQUIRE(q);
    long n = irpk_test_scale(50000);
    uint64_t seed = 42;
    for (long i = 0; i < n; i++) {
        irpk_req_opts o = {(void *)(uintptr_t)i, irpk_test_rand(&seed) % 1000, 0, 0};
        CHECK_EQ(irpk_queue_submit(q, &o, NULL), 0);
    }
    uint64_t last_key = 0;
    long last_seq = -1, bad = 0;
    irpk_req_info info;
    for (long i = 0; i < n; i++) {
        irpk_req_handle h;
        if (irpk_queue_retrieve(q, &h) != 0) {
            bad++;
            break;
        }
        irpk_req_info_get(q, h, &info);
        long seq = (long)(uintptr_t)info.ctx;
        if (info.key < last_key || (info.key == last_key && seq < last_seq)) bad++;
        last_key = info.key;
        last_seq = seq;
        irpk_req_complete(q, h, 0);
    }
    CHECK_EQ(bad, 0);
    irpk_queue_free(q);
}

TEST(keyed_serial_orders_within_a_key_and_runs_keys_in_parallel)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_KEYED_SERIAL, IRPK_ORDER_FIFO, 2);
    REQUIRE(q);
    irpk_req_handle a1 = submit_opts(q, 1, 0, 0), a2 = submit_opts(q, 1, 0, 0);
    irpk_req_handle b1 = submit_opts(q, 2, 0, 0), c1 = submit_opts(q, 3, 0, 0);
    CHECK_EQ(r.ndispatch, 2); /* a1 and b1: a2 waits for a1 although a slot is free later */
    CHECK_EQ(r.dispatched[0], a1);
    CHECK_EQ(r.dispatched[1], b1);
    CHECK_EQ(irpk_req_complete(q, b1, 0), 0);
    CHECK_EQ(r.ndispatch, 3);
    CHECK_EQ(r.dispatched[2], c1); /* key 1 is busy: key 3 goes */
    CHECK_EQ(irpk_req_complete(q, a1, 0), 0);
    CHECK_EQ(r.ndispatch, 4);
    CHECK_EQ(r.dispatched[3], a2);
    CHECK_EQ(irpk_req_requeue(q, a2), 0); /* back to the head of its key */
    CHECK_EQ(r.ndispatch, 5);
    CHECK_EQ(r.dispatched[4], a2);
    irpk_req_complete(q, a2, 0);
    irpk_req_complete(q, c1, 0);
    irpk_queue_stats s;
    irpk_queue_stats_get(q, &s);
    CHECK_EQ(s.live, 0);
    CHECK_EQ(s.completed, 4);
    irpk_queue_free(q);
}

TEST(keyed_serial_cancel_of_queued_request_keeps_lane_order)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_KEYED_SERIAL, IRPK_ORDER_FIFO, 4);
    REQUIRE(q);
    irpk_req_handle a1 = submit_opts(q, 1, 0, 0), a2 = submit_opts(q, 1, 0, 0);
    irpk_req_handle a3 = submit_opts(q, 1, 0, 0);
    CHECK_EQ(irpk_req_cancel(q, a2), IRPK_CANCEL_REMOVED);
    irpk_req_complete(q, a1, 0);
    CHECK_EQ(r.dispatched[1], a3);
    irpk_req_complete(q, a3, 0);
    irpk_queue_free(q);
}

/* Keyed orders keep a small sorted array up to 16 queued requests and a treap beyond, switching
 * both ways. A random walk of submit / retrieve_key / set_key / cancel / requeue across that
 * threshold is checked step by step against a reference model: a list sorted by (key, order
 * of entry), "first key >= k, wrapping" taken from it. */
#define KM_MAX 64
typedef struct km_entry {
    uint64_t key, seq;
    irpk_req_handle h;
} km_entry;
static km_entry km[KM_MAX];
static int km_n;
static uint64_t km_seq;

static void km_insert(uint64_t key, uint64_t seq, irpk_req_handle h)
{
    int i = km_n;
    while (i > 0 && (km[i - 1].key > key || (km[i - 1].key == key && km[i - 1].seq > seq))) {
        km[i] = km[i - 1];
        i--;
    }
    km[i] = (km_entry){key, seq, h};
    km_n++;
}

static km_entry km_take(int i)
{
    km_entry e = km[i];
    for (int j = i; j < km_n - 1; j++) km[j] = km[j + 1];
    km_n--;
    return e;
}

static int km_find(irpk_req_handle h)
{
    for (int i = 0; i < km_n; i++)
        if (km[i].h == h) return i;
    return -1;
}

TEST(keyed_small_array_and_treap_switch_back_and_forth_like_a_sorted_list)
{
    rec r;
    irpk_queue *q = rec_queue(&r, IRPK_QUEUE_MANUAL, IRPK_ORDER_PRIORITY, 1);
    REQUIRE(q);
    km_n = 0;
    km_seq = 0;
    uint64_t s = 42;
    int max_seen = 0;
    for (long step = 0; step < irpk_test_scale(40000); step++) {
        uint64_t x = irpk_test_rand(&s);
        int op = (int)(x % 10);
        uint64_t key = (x >> 8) % 12; /* few keys: many equal ones */
        /* phases of 300 steps: growing (30% removals) and shrinking (60% removals) */
        bool remove = km_n > 0 && (km_n >= KM_MAX - 1 || ((step / 300) % 2 ? op < 6 : op < 3));
        if (remove) {
            if (op == 0 || op == 1) { /* retrieve "key >= k, wrapping" and complete */
                irpk_req_handle h = 0;
                REQUIRE(irpk_queue_retrieve_key(q, key, &h) == 0);
                int i = 0;
                while (i < km_n && km[i].key < key) i++;
                if (i == km_n) i = 0;
                CHECK_EQ(h, km[i].h);
                if (op == 1 && km_find(h) >= 0) { /* requeue: back first among its key */
                    km_entry e = km_take(km_find(h));
                    CHECK_EQ(irpk_req_requeue(q, h), 0);
                    km_insert(e.key, e.seq, h);
                } else {
                    km_take(km_find(h));
                    CHECK_EQ(irpk_req_complete(q, h, 0), 0);
                }
            } else if (op == 2) { /* set_key: last among its new key */
                int i = (int)((x >> 16) % (uint64_t)km_n);
                km_entry e = km_take(i);
                CHECK_EQ(irpk_req_set_key(q, e.h, key), 0);
                km_insert(key, ++km_seq, e.h);
            } else { /* cancel a queued one */
                int i = (int)((x >> 16) % (uint64_t)km_n);
                km_entry e = km_take(i);
                CHECK_EQ(irpk_req_cancel(q, e.h), IRPK_CANCEL_REMOVED);
            }
        } else {
            irpk_req_handle h = submit_opts(q, key, 0, 0);
            km_insert(key, ++km_seq, h);
        }
        if (km_n > max_seen) max_seen = km_n;
        irpk_req_handle peeked;
        if (km_n)
            CHECK(irpk_queue_peek(q, &peeked) == 0 && peeked == km[0].h);
        else
            CHECK_EQ(irpk_queue_peek(q, &peeked), IRPK_QE_EMPTY);
        if (irpk_test_failed_in_case()) break;
    }
    CHECK(max_seen > 16); /* the walk crossed the threshold */
    irpk_queue_free(q);
}
