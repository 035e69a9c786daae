/* bench_queue: irpkit's request queue against what people write by hand.
 *   1. submit → dispatch → complete per request, 1 and 2 threads, vs a pthread mutex+condvar queue
 *   2. cancel of a queued request (submit + cancel pair) vs the same queue
 *   3. keyed insert + "next with key >= k, wrapping" at depth 10 / 1 000 / 100 000, vs a bare
 *      sorted linked list and a mutex+condvar queue with sorted insert
 * Prints absolute ns/op and the ratio baseline/ours (> 1: irpkit faster). */
#include "baseline.h"
#include "irpkit/queue.h"
#include "platform/platform.h"

#include <stdio.h>
#include <stdlib.h>

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double ns_per(int64_t t0, long n) { return (double)(plat_now_ns() - t0) / (double)n; }

static void report(const char *what, double ours, double base, const char *base_name)
{
    printf("  %-44s irpkit %9.1f ns/op   %-16s %10.1f ns/op   ratio %7.2fx\n", what, ours,
           base_name, base, base / ours);
}

/* ------------------------------------------------------------------ 1. round trip */

static volatile long completions;
static void count_complete(irpk_queue *q, irpk_req_handle h, int32_t s, void *r, void *c)
{
    (void)q; (void)h; (void)s; (void)r; (void)c;
    completions++; /* benchmark counter; only read for sanity, races are harmless */
}
static void complete_inline(irpk_queue *q, irpk_req_handle h, void *r, void *c)
{
    (void)r; (void)c;
    irpk_req_complete(q, h, 0);
}

static int untimed;

static irpk_queue *make_queue(irpk_queue_mode mode, unsigned par, irpk_queue_order order)
{
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = mode;
    c.max_parallel = par;
    c.order = order;
    c.on_dispatch = mode == IRPK_QUEUE_MANUAL ? NULL : complete_inline;
    c.on_complete = count_complete;
    c.timed = !untimed;
    irpk_queue *q = NULL;
    if (irpk_queue_create(&c, &q) != 0) abort();
    return q;
}

typedef struct rt_arg {
    irpk_queue *q;
    mcq *m;
    long n;
} rt_arg;

static void ours_roundtrip(void *p)
{
    rt_arg *a = p;
    irpk_req_opts o = {0};
    for (long i = 0; i < a->n; i++) irpk_queue_submit(a->q, &o, NULL);
}

static void (*volatile base_complete)(bnode *) = NULL;
static void base_done(bnode *n) { (void)n; completions++; }

static volatile int32_t node_pick;
static void base_roundtrip(void *p)
{
    rt_arg *a = p;
    static bnode nodes[2]; /* static, not on the stack: the other thread may hold ours at exit */
    bnode *mine = &nodes[plat_fetch_add32(&node_pick, 1) & 1];
    for (long i = 0; i < a->n; i++) {
        mcq_push(a->m, mine);
        mine = mcq_pop(a->m); /* maybe the other thread's node: we own it from now on */
        base_complete(mine);  /* the "completion callback" of the hand-written queue */
    }
}

static double run_threads(void (*fn)(void *), rt_arg *a, int threads)
{
    int64_t t0 = plat_now_ns();
    plat_thread *t[2];
    for (int i = 0; i < threads; i++) t[i] = plat_thread_start(fn, a, NULL, 0);
    for (int i = 0; i < threads; i++) plat_thread_join(t[i]);
    return ns_per(t0, a->n * threads);
}

/* The usual hand-written dispatcher: the producer mallocs a request and pushes it, a worker
 * thread waits on the condvar, pops, "handles", completes and frees it. */
#define STOP_KEY UINT64_MAX
static void base_worker(void *p)
{
    mcq *m = p;
    for (;;) {
        bnode *n = mcq_pop(m);
        if (n->key == STOP_KEY) {
            free(n);
            return;
        }
        base_complete(n);
        free(n);
    }
}

static double base_worker_roundtrip(long n)
{
    mcq *m = mcq_new(0);
    int64_t t0 = plat_now_ns();
    plat_thread *w = plat_thread_start(base_worker, m, "worker", 0);
    for (long i = 0; i <= n; i++) {
        bnode *b = calloc(1, sizeof *b);
        if (!b) abort();
        b->key = i == n ? STOP_KEY : 0;
        mcq_push(m, b);
    }
    plat_thread_join(w);
    double r = ns_per(t0, n);
    mcq_free(m);
    return r;
}

static void bench_roundtrip(long n)
{
    base_complete = base_done;
    printf("submit -> dispatch -> complete (per request)\n");
    for (int threads = 1; threads <= 2; threads++) {
        irpk_queue *q = make_queue(threads == 1 ? IRPK_QUEUE_SEQUENTIAL : IRPK_QUEUE_PARALLEL, 2,
                                   IRPK_ORDER_FIFO);
        mcq *m = mcq_new(0);
        rt_arg a = {q, m, n / threads};
        double ours = run_threads(ours_roundtrip, &a, threads);
        double base = run_threads(base_roundtrip, &a, threads);
        char what[64];
        snprintf(what, sizeof what, "%d thread%s", threads, threads > 1 ? "s (shared queue)" : "");
        report(what, ours, base, "mutex+condvar");
        if (threads == 1)
            report("1 producer; baseline handler on a worker", ours, base_worker_roundtrip(n),
                   "mutex+cv+worker");
        irpk_queue_free(q);
        mcq_free(m);
    }
}

/* ------------------------------------------------------------------ 2. cancel */

static void bench_cancel(long n)
{
    printf("cancel a queued request (submit + cancel + completion callback)\n");
    irpk_queue *q = make_queue(IRPK_QUEUE_MANUAL, 1, IRPK_ORDER_FIFO);
    irpk_req_opts o = {0};
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < n; i++) {
        irpk_req_handle h;
        irpk_queue_submit(q, &o, &h);
        irpk_req_cancel(q, h);
    }
    double ours = ns_per(t0, n);
    mcq *m = mcq_new(0);
    bnode node = {0};
    t0 = plat_now_ns();
    for (long i = 0; i < n; i++) {
        mcq_push(m, &node);
        if (mcq_cancel(m, &node)) base_complete(&node);
    }
    double base = ns_per(t0, n);
    report("queued-cancel pair", ours, base, "mutex+condvar");
    irpk_queue_free(q);
    mcq_free(m);
}

/* ------------------------------------------------------------------ 3. keyed */

#define KEY_RANGE (1u << 20)

static double keyed_ours(long depth, long ops)
{
    irpk_queue *q = make_queue(IRPK_QUEUE_MANUAL, 1, IRPK_ORDER_PRIORITY);
    irpk_req_opts o = {0};
    for (long i = 0; i < depth; i++) {
        o.key = rnd() % KEY_RANGE;
        irpk_queue_submit(q, &o, NULL);
    }
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < ops; i++) {
        o.key = rnd() % KEY_RANGE;
        irpk_queue_submit(q, &o, NULL);
        irpk_req_handle h;
        irpk_queue_retrieve_key(q, rnd() % KEY_RANGE, &h);
        irpk_req_complete(q, h, 0);
    }
    double r = ns_per(t0, ops);
    irpk_queue_purge_sync(q);
    irpk_queue_free(q);
    return r;
}

static int by_key(const void *a, const void *b)
{
    uint64_t x = (*(bnode *const *)a)->key, y = (*(bnode *const *)b)->key;
    return x < y ? -1 : x > y;
}

/* n nodes with random keys, allocated in arrival order (so list order is scattered in memory,
 * as in a real queue), and the first n-1 linked into l in sorted order in O(n log n): the
 * prefill is not what is measured. */
static bnode *make_nodes(long n, bnode *head)
{
    bnode *v = calloc((size_t)n, sizeof *v);
    bnode **p = calloc((size_t)n, sizeof *p);
    if (!v || !p) abort();
    for (long i = 0; i < n; i++) {
        v[i].key = rnd() % KEY_RANGE;
        p[i] = &v[i];
    }
    qsort(p, (size_t)n - 1, sizeof *p, by_key);
    bnode *prev = head;
    for (long i = 0; i < n - 1; i++) {
        prev->next = p[i];
        p[i]->prev = prev;
        prev = p[i];
    }
    prev->next = head;
    head->prev = prev;
    free(p);
    return v;
}

static double keyed_slist(long depth, long ops)
{
    slist l;
    bnode *v = make_nodes(depth + 1, &l.head);
    bnode *spare = &v[depth];
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < ops; i++) {
        spare->key = rnd() % KEY_RANGE;
        slist_insert(&l, spare);
        spare = slist_pop_key(&l, rnd() % KEY_RANGE);
        base_complete(spare);
    }
    double r = ns_per(t0, ops);
    free(v);
    return r;
}

static double keyed_mcq(long depth, long ops)
{
    mcq *m = mcq_new(1);
    bnode *v = make_nodes(depth + 1, mcq_head(m));
    bnode *spare = &v[depth];
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < ops; i++) {
        spare->key = rnd() % KEY_RANGE;
        mcq_push(m, spare);
        spare = mcq_pop_key(m, rnd() % KEY_RANGE);
        base_complete(spare);
    }
    double r = ns_per(t0, ops);
    mcq_free(m);
    free(v);
    return r;
}

static void bench_keyed(void)
{
    printf("keyed insert + next(key >= k, wrapping) + complete, steady depth\n");
    static const long depths[] = {10, 1000, 100000};
    for (int i = 0; i < 3; i++) {
        long d = depths[i];
        long list_ops = d >= 100000 ? 1000 : d >= 1000 ? 50000 : 1000000;
        double ours = keyed_ours(d, 500000);
        double sl = keyed_slist(d, list_ops);
        double mc = keyed_mcq(d, list_ops);
        char what[64];
        snprintf(what, sizeof what, "depth %ld", d);
        report(what, ours, sl, "sorted list");
        report(what, ours, mc, "mutex+cv sorted");
    }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    printf("bench_queue: %ld requests per round-trip measurement\n", n);
    for (untimed = 0; untimed < 2; untimed++) {
        printf("== irpkit queue config: %s\n", untimed ? "untimed = 1 (no clock read per request)"
                                                      : "defaults (request ages tracked)");
        bench_roundtrip(n);
        bench_cancel(n);
    }
    untimed = 0;
    bench_keyed();
    if (!completions) return 1; /* keeps the callbacks observable */
    return 0;
}
