/* bench_queue: irpkit's request queue against the three ways it replaces, in one run:
 *   - a pthread mutex + condvar queue (the usual hand-written answer; the baseline),
 *   - the classic StartIo path and a cancel-safe queue (IoCsq), on IRPs,
 * plus irpkit's IRP adapter on the same IRPs (see bench_irp.h).
 *   1. submit -> dispatch -> complete per request, 1 and 2 threads
 *   2. cancel of a queued request (submit + cancel + completion)
 *   3. keyed insert + "next with key >= k, wrapping" + complete at depth 10 / 1 000 / 100 000,
 *      with a bare sorted linked list as the reference of the "100x" goal
 * Every number is the best of several runs (the benchmark VM is shared); ratios are
 * baseline / contender (> 1: faster than the mutex+condvar queue). Rows marked (IRP) carry the
 * same IoAllocateIrp / IoCallDriver / IoCompleteRequest / IoFreeIrp cost: compare them with
 * each other; the IRP-free rows compare with each other. */
#include "baseline.h"
#include "bench_irp.h"
#include "irpkit/queue.h"
#include "platform/platform.h"

#include <stdio.h>
#include <stdlib.h>

static int reps = 5;
static unsigned long long rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double ns_per(int64_t t0, long n) { return (double)(plat_now_ns() - t0) / (double)n; }
static double min2(double a, double b) { return a < b ? a : b; }

/* One section: rows of (name, ns); the first row is the baseline. */
typedef struct row {
    const char *name;
    double ns;
    int irp;
} row;

static void print_section(const char *title, row *rows, int n)
{
    printf("%s\n", title);
    double base = rows[0].ns;
    for (int i = 0; i < n; i++) {
        if (rows[i].ns < 0) {
            printf("  %-34s %12s\n", rows[i].name, "n/a (IoCsq not in this build)");
            continue;
        }
        printf("  %-34s %10.1f ns/op  %7.2fx%s\n", rows[i].name, rows[i].ns, base / rows[i].ns,
               i == 0 ? "  (baseline)" : "");
    }
}

/* "Fastest of the four": irpkit's queue against the mutex+condvar queue (IRP-free), and irpkit's
 * adapter against StartIo and IoCsq (same IRP path). rows: [0] baseline, [1] irpkit queue,
 * [2] adapter, [3] StartIo, [4] IoCsq. */
static int verdict(const row *rows, int n_irp_rows)
{
    int ok = rows[1].ns < rows[0].ns;
    for (int i = 3; i < 2 + n_irp_rows; i++)
        if (rows[i].ns >= 0 && rows[2].ns >= rows[i].ns) ok = 0;
    printf("  -> irpkit fastest: %s\n", ok ? "yes" : "NO");
    return ok;
}

/* ------------------------------------------------------------------ irpkit queue */

static volatile long completions;
static void count_complete(irpk_queue *q, irpk_req_handle h, int32_t s, void *r, void *c)
{
    (void)q, (void)h, (void)s, (void)r, (void)c;
    completions++; /* benchmark counter; only read for sanity, races are harmless */
}
static void complete_inline(irpk_queue *q, irpk_req_handle h, void *r, void *c)
{
    (void)r, (void)c;
    irpk_req_complete(q, h, 0);
}

static irpk_queue *make_queue(irpk_queue_mode mode, unsigned par, irpk_queue_order order)
{
    irpk_queue_config c;
    irpk_queue_config_init(&c);
    c.mode = mode;
    c.max_parallel = par;
    c.order = order;
    c.on_dispatch = mode == IRPK_QUEUE_MANUAL ? NULL : complete_inline;
    c.on_complete = count_complete;
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
static void base_done(bnode *n)
{
    (void)n;
    completions++;
}

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

static int bench_roundtrip(long n, long n_irp)
{
    int ok = 1;
    for (int threads = 1; threads <= 2; threads++) {
        irpk_queue *q = make_queue(threads == 1 ? IRPK_QUEUE_SEQUENTIAL : IRPK_QUEUE_PARALLEL, 2,
                                   IRPK_ORDER_FIFO);
        mcq *m = mcq_new(0);
        rt_arg a = {q, m, n / threads};
        row rows[5] = {{"mutex+condvar queue", 1e300, 0}, {"irpkit queue", 1e300, 0},
                       {"irpkit IRP adapter (IRP)", 1e300, 1}, {"StartIo (IRP)", 1e300, 1},
                       {"IoCsq (IRP)", 1e300, 1}};
        for (int r = 0; r < reps; r++) { /* interleaved, so load changes hit every row */
            rows[1].ns = min2(rows[1].ns, run_threads(ours_roundtrip, &a, threads));
            rows[0].ns = min2(rows[0].ns, run_threads(base_roundtrip, &a, threads));
            for (int k = 0; k < IRP_KINDS; k++)
                rows[2 + k].ns = irp_kind_available((irp_kind)k)
                                     ? min2(rows[2 + k].ns, irp_roundtrip_ns((irp_kind)k, threads, n_irp))
                                     : -1;
        }
        char title[96];
        snprintf(title, sizeof title, "submit -> dispatch -> complete, %d thread%s", threads,
                 threads > 1 ? "s (one shared queue / device)" : "");
        print_section(title, rows, 5);
        ok &= verdict(rows, 3);
        irpk_queue_free(q);
        mcq_free(m);
    }
    return ok;
}

/* ------------------------------------------------------------------ cancel */

static double ours_cancel(long n)
{
    irpk_queue *q = make_queue(IRPK_QUEUE_MANUAL, 1, IRPK_ORDER_FIFO);
    irpk_req_opts o = {0};
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < n; i++) {
        irpk_req_handle h;
        irpk_queue_submit(q, &o, &h);
        irpk_req_cancel(q, h);
    }
    double r = ns_per(t0, n);
    irpk_queue_free(q);
    return r;
}

static int bench_cancel(long n, long n_irp)
{
    row rows[5] = {{"mutex+condvar queue", 1e300, 0}, {"irpkit queue", 1e300, 0},
                   {"irpkit IRP adapter (IRP)", 1e300, 1}, {"StartIo (IRP)", 1e300, 1},
                   {"IoCsq (IRP)", 1e300, 1}};
    for (int r = 0; r < reps; r++) {
        rows[1].ns = min2(rows[1].ns, ours_cancel(n));
        rows[0].ns = min2(rows[0].ns, mcq_cancel_loop_ns(n, base_complete));
        for (int k = 0; k < IRP_KINDS; k++)
            rows[2 + k].ns = irp_kind_available((irp_kind)k)
                                 ? min2(rows[2 + k].ns, irp_cancel_ns((irp_kind)k, n_irp))
                                 : -1;
    }
    print_section("cancel a queued request (submit + cancel + completion)", rows, 5);
    return verdict(rows, 3);
}

/* ------------------------------------------------------------------ keyed */

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
    double r = mcq_keyed_loop_ns(m, &v[depth], ops, KEY_RANGE, rnd, base_complete);
    mcq_free(m);
    free(v);
    return r;
}

static int bench_keyed(int *hundred_x)
{
    static const long depths[] = {10, 1000, 100000};
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        long d = depths[i];
        long list_ops = d >= 100000 ? 1000 : d >= 1000 ? 50000 : 1000000;
        int r_list = d >= 100000 ? 1 : reps; /* the O(n) rows take seconds at depth 100 000 */
        row rows[6] = {{"mutex+condvar sorted list", 1e300, 0}, {"irpkit queue", 1e300, 0},
                       {"(no IRP adapter row: see below)", -2, 0}, {"StartIo device queue", 1e300, 0},
                       {"IoCsq driver sorted list", 1e300, 0}, {"bare sorted list (no lock)", 1e300, 0}};
        for (int r = 0; r < reps; r++) rows[1].ns = min2(rows[1].ns, keyed_ours(d, 500000));
        for (int r = 0; r < r_list; r++) {
            rows[0].ns = min2(rows[0].ns, keyed_mcq(d, list_ops));
            rows[5].ns = min2(rows[5].ns, keyed_slist(d, list_ops));
            for (int k = IRP_STARTIO; k < IRP_KINDS; k++)
                rows[2 + k].ns = irp_kind_available((irp_kind)k)
                                     ? min2(rows[2 + k].ns, irp_keyed_ns((irp_kind)k, d, list_ops,
                                                                         KEY_RANGE, &rng_state))
                                     : -1;
        }
        char title[96];
        snprintf(title, sizeof title, "keyed insert + next(key >= k, wrapping) + complete, depth %ld", d);
        printf("%s\n", title);
        double base = rows[0].ns;
        for (int j = 0; j < 6; j++) {
            if (j == 2) continue;
            if (rows[j].ns < 0) {
                printf("  %-34s %12s\n", rows[j].name, "n/a (IoCsq not in this build)");
                continue;
            }
            printf("  %-34s %10.1f ns/op  %7.2fx%s\n", rows[j].name, rows[j].ns, base / rows[j].ns,
                   j == 0 ? "  (baseline)" : "");
        }
        int fastest = 1;
        for (int j = 0; j < 5; j++)
            if (j != 1 && j != 2 && rows[j].ns >= 0 && rows[1].ns >= rows[j].ns) fastest = 0;
        double vs_list = rows[5].ns / rows[1].ns;
        printf("  -> irpkit fastest of the four: %s; vs the bare sorted list: %.2fx\n",
               fastest ? "yes" : "NO", vs_list);
        ok &= fastest;
        if (d == 100000) *hundred_x = vs_list >= 100;
    }
    return ok;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    if (argc > 2) reps = atoi(argv[2]);
    if (n < 1000 || reps < 1) return 2;
    long n_irp = n / 5;
    base_complete = base_done;
    if (irp_bench_init() != 0) {
        fprintf(stderr, "bench_queue: cannot load the IRP drivers\n");
        return 1;
    }
    printf("bench_queue: %ld requests per round-trip run (%ld per IRP run), best of %d runs, "
           "ratios = mutex+condvar / row (> 1: faster)\n", n, n_irp, reps);
    int rt = bench_roundtrip(n, n_irp);
    int cancel = bench_cancel(n, n_irp);
    int hundred = 0;
    int keyed = bench_keyed(&hundred);
    printf("keyed: the StartIo and IoCsq rows are their data structures alone (no IRP path): the\n"
           "adapter dispatches keyed queues itself (ELEVATOR/PRIORITY), it has no retrieve_key.\n");
    printf("goals: fastest of the four everywhere: %s; keyed at depth 100 000 >= 100x the linear "
           "list: %s\n", rt && cancel && keyed ? "met" : "NOT met", hundred ? "met" : "NOT met");
    if (!completions) return 1; /* keeps the callbacks observable */
    return 0;
}
