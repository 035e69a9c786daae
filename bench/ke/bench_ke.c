/* bench_ke: per-operation cost of the ke primitives next to a bare baseline measured in the same
 * run.
 *
 *   spin lock      KeAcquireSpinLock + KeReleaseSpinLock (uncontended)
 *                  vs. a C11-atomic test-and-set lock on a plain word (acquire + release)
 *   devq fifo D    KeInsertDeviceQueue + KeRemoveDeviceQueue on a busy queue holding D entries
 *                  vs. the bare lock around an intrusive tail push + head pop
 *   devq bykey D   KeInsertByKeyDeviceQueue + KeRemoveByKeyDeviceQueue (random keys) at depth D
 *                  vs. the bare lock around push/pop (as requested: the floor) and, for
 *                  reference, the bare lock around the same sorted-list walk written inline
 *
 * Each figure is the best of 3 time-boxed runs (~0.1 s each). Whole run: a few seconds.
 * Usage: bench_ke [seconds-per-run]   (default 0.1) */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <wdm.h>

#include "irpkit/verifier.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double run_budget = 0.1;
static volatile uintptr_t sink;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Run body(n) in growing batches until the budget is spent; ns per iteration, best of 3. */
typedef void (*bench_fn)(long n);
static double measure(bench_fn body)
{
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        long total = 0, batch = 64;
        double t0 = now_s(), t;
        do {
            body(batch);
            total += batch;
            t = now_s() - t0;
            if (batch < (1L << 22)) batch *= 2;
        } while (t < run_budget);
        double ns = t * 1e9 / (double)total;
        if (ns < best) best = ns;
    }
    return best;
}

/* ---------------------------------------------------------------- bare baseline */

static atomic_uintptr_t bare_lock;
static inline void bare_acquire(void)
{
    while (atomic_exchange_explicit(&bare_lock, 1, memory_order_acquire))
        while (atomic_load_explicit(&bare_lock, memory_order_relaxed)) {
        }
}
static inline void bare_release(void) { atomic_store_explicit(&bare_lock, 0, memory_order_release); }

static void bare_lock_only(long n)
{
    for (long i = 0; i < n; i++) {
        bare_acquire();
        sink++;
        bare_release();
    }
}

typedef struct item {
    LIST_ENTRY link;
    ULONG key;
} item;
static LIST_ENTRY bare_head;
static item *bare_items;

static void bare_fill(long depth, int sorted)
{
    InitializeListHead(&bare_head);
    for (long i = 0; i < depth; i++) {
        bare_items[i].key = sorted ? (ULONG)i : 0;
        InsertTailList(&bare_head, &bare_items[i].link);
    }
}

static void bare_push_pop(long n)
{
    for (long i = 0; i < n; i++) {
        bare_acquire();
        PLIST_ENTRY e = RemoveHeadList(&bare_head);
        bare_release();
        bare_acquire();
        InsertTailList(&bare_head, e);
        bare_release();
    }
}

static ULONG key_range = 1;
static void bare_sorted(long n)
{
    for (long i = 0; i < n; i++) {
        ULONG rk = (ULONG)(rnd() % key_range), ik = (ULONG)(rnd() % key_range);
        bare_acquire();
        PLIST_ENTRY p = bare_head.Flink;
        while (p != &bare_head && CONTAINING_RECORD(p, item, link)->key < rk) p = p->Flink;
        if (p == &bare_head) p = bare_head.Flink;
        RemoveEntryList(p);
        bare_release();
        item *it = CONTAINING_RECORD(p, item, link);
        it->key = ik;
        bare_acquire();
        PLIST_ENTRY q = bare_head.Flink;
        while (q != &bare_head && CONTAINING_RECORD(q, item, link)->key <= ik) q = q->Flink;
        InsertTailList(q, &it->link);
        bare_release();
    }
}

/* ---------------------------------------------------------------- ke */

static KSPIN_LOCK ke_lock;
static void ke_spin(long n)
{
    for (long i = 0; i < n; i++) {
        KIRQL old;
        KeAcquireSpinLock(&ke_lock, &old);
        sink++;
        KeReleaseSpinLock(&ke_lock, old);
    }
}

static KDEVICE_QUEUE dq;
static KDEVICE_QUEUE_ENTRY *dq_entries;

static void dq_fill(long depth, int keyed)
{
    KeInitializeDeviceQueue(&dq);
    static KDEVICE_QUEUE_ENTRY owner;
    KeInsertDeviceQueue(&dq, &owner); /* idle → busy, not queued */
    for (long i = 0; i < depth; i++) {
        if (keyed) KeInsertByKeyDeviceQueue(&dq, &dq_entries[i], (ULONG)i); /* ascending: O(1) */
        else KeInsertDeviceQueue(&dq, &dq_entries[i]);
    }
}

static void ke_fifo(long n)
{
    for (long i = 0; i < n; i++) {
        PKDEVICE_QUEUE_ENTRY e = KeRemoveDeviceQueue(&dq);
        KeInsertDeviceQueue(&dq, e);
    }
}

static void ke_bykey(long n)
{
    for (long i = 0; i < n; i++) {
        PKDEVICE_QUEUE_ENTRY e = KeRemoveByKeyDeviceQueue(&dq, (ULONG)(rnd() % key_range));
        KeInsertByKeyDeviceQueue(&dq, e, (ULONG)(rnd() % key_range));
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) run_budget = atof(argv[1]);
    if (run_budget <= 0) run_budget = 0.1;
    irpk_reports_set_quiet(1);
    static const long depths[] = {10, 1000, 100000};
    bare_items = calloc(100001, sizeof *bare_items);
    dq_entries = calloc(100001, sizeof *dq_entries);
    if (!bare_items || !dq_entries) return 1;
    KeInitializeSpinLock(&ke_lock);
    double t_start = now_s();

    printf("%-28s %12s %12s %8s\n", "operation (per op pair)", "irpkit ns", "bare ns", "ratio");
    double b = measure(bare_lock_only), k = measure(ke_spin);
    printf("%-28s %12.1f %12.1f %7.2fx\n", "spin lock acquire+release", k, b, k / b);

    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old); /* the device-queue routines run at DISPATCH_LEVEL */
    for (int d = 0; d < 3; d++) {
        long depth = depths[d];
        bare_fill(depth, 0);
        b = measure(bare_push_pop);
        dq_fill(depth, 0);
        k = measure(ke_fifo);
        char label[64];
        snprintf(label, sizeof label, "devq insert+remove @%ld", depth);
        printf("%-28s %12.1f %12.1f %7.2fx\n", label, k, b, k / b);
    }
    for (int d = 0; d < 3; d++) {
        long depth = depths[d];
        key_range = (ULONG)depth;
        bare_fill(depth, 0);
        double floor = measure(bare_push_pop);
        bare_fill(depth, 1);
        b = measure(bare_sorted);
        dq_fill(depth, 1);
        k = measure(ke_bykey);
        char label[64];
        snprintf(label, sizeof label, "devq bykey ins+rem @%ld", depth);
        printf("%-28s %12.1f %12.1f %7.2fx   (sorted-walk baseline %.1f ns, %.2fx)\n", label, k,
               floor, k / floor, b, k / b);
    }
    KeLowerIrql(old);
    size_t reports = irpk_report_count();
    printf("total %.1f s, verifier reports: %zu\n", now_s() - t_start, reports);
    free(bare_items);
    free(dq_entries);
    return reports ? 1 : 0;
}
