/* The baseline the IRP benchmarks divide by, shared so every bench measures the same thing: an
 * uncontended platform lock around an intrusive list push, then around a pop. Returns ns per
 * push+pop pair. Header-only: each bench includes it as "../common/lock_list_baseline.h". */
#ifndef IRPK_BENCH_LOCK_LIST_BASELINE_H
#define IRPK_BENCH_LOCK_LIST_BASELINE_H

#include "platform/platform.h"

typedef struct bench_node {
    struct bench_node *next;
} bench_node;

static inline double lock_list_baseline_ns(long n)
{
    static plat_lockword lock;
    static bench_node nodes[64], *head;
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < n; i++) {
        bench_node *x = &nodes[i & 63];
        plat_lock_acquire(&lock); /* single thread: never contended */
        x->next = head;
        head = x;
        plat_lock_release(&lock);
        plat_lock_acquire(&lock);
        head = head->next;
        plat_lock_release(&lock);
    }
    return (double)(plat_now_ns() - t0) / (double)n;
}

#endif
