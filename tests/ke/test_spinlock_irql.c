/* IRQL model, spin locks, queued spin locks, interlocked operations and lists, and the IRQL
 * misuse reports of VERIFIER.md §1 "IRQL and spin locks". Every misuse must produce exactly its
 * report and let the process run on; correct usage must produce none. */
#include <wdm.h>

#include "irpkit/verifier.h"
#include "ke/ke.h" /* ke_self(): the held-lock set (internal) */
#include "platform/platform.h"
#include "test.h"

/* ------------------------------------------------------------------ IRQL */

TEST(irql_starts_passive_and_raise_lower_round_trip)
{
    irpk_reports_clear();
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    KIRQL old = 0xFF;
    KeRaiseIrql(APC_LEVEL, &old);
    CHECK_EQ(old, PASSIVE_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), APC_LEVEL);
    KIRQL old2 = 0xFF;
    KeRaiseIrql(DISPATCH_LEVEL, &old2);
    CHECK_EQ(old2, APC_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KIRQL same = 0xFF;
    KeRaiseIrql(DISPATCH_LEVEL, &same); /* raising to the current level is legal */
    CHECK_EQ(same, DISPATCH_LEVEL);
    KeRaiseIrql(HIGH_LEVEL, &same);
    CHECK_EQ(same, DISPATCH_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), HIGH_LEVEL);
    KeLowerIrql(DISPATCH_LEVEL);
    KeLowerIrql(old2);
    CHECK_EQ(KeGetCurrentIrql(), APC_LEVEL);
    KeLowerIrql(old);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(KeRaiseIrqlToDpcLevel(), PASSIVE_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    CHECK_EQ(KeRaiseIrqlToDpcLevel(), DISPATCH_LEVEL);
    KeLowerIrql(PASSIVE_LEVEL);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(irql_apcs_disabled_and_critical_region)
{
    irpk_reports_clear();
    CHECK_EQ(KeAreApcsDisabled(), FALSE);
    KeEnterCriticalRegion();
    KeEnterCriticalRegion();
    CHECK_EQ(KeAreApcsDisabled(), TRUE);
    KeLeaveCriticalRegion();
    CHECK_EQ(KeAreApcsDisabled(), TRUE);
    KeLeaveCriticalRegion();
    CHECK_EQ(KeAreApcsDisabled(), FALSE);
    KIRQL old;
    KeRaiseIrql(APC_LEVEL, &old);
    CHECK_EQ(KeAreApcsDisabled(), TRUE);
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(processor_number_within_active_count)
{
    KAFFINITY aff = 0;
    ULONG n = KeQueryActiveProcessorCount(&aff);
    CHECK(n >= 1);
    CHECK(KeGetCurrentProcessorNumber() < n);
    CHECK_EQ(aff, ((KAFFINITY)1 << n) - 1);
    CHECK_EQ(KeQueryActiveProcessorCount(NULL), n);
}

static KIRQL child_irql = 0xFF;
static void read_irql(void *arg)
{
    (void)arg;
    child_irql = KeGetCurrentIrql();
}

TEST(irql_is_per_thread)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    plat_thread *t = plat_thread_start(read_irql, NULL, "irql-reader", 0);
    REQUIRE(t != NULL);
    plat_thread_join(t);
    CHECK_EQ(child_irql, PASSIVE_LEVEL); /* the raise on this thread is not seen there */
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(old);
}

/* ------------------------------------------------------------------ spin locks */

TEST(spinlock_acquire_raises_release_restores)
{
    irpk_reports_clear();
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    CHECK_EQ(lock, 0);
    KIRQL old = 0xFF;
    KeAcquireSpinLock(&lock, &old);
    CHECK_EQ(old, PASSIVE_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    CHECK(lock != 0); /* held */
    CHECK_EQ(ke_self()->n_held, 1);
    KeReleaseSpinLock(&lock, old);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(lock, 0);
    CHECK_EQ(ke_self()->n_held, 0);

    /* From APC_LEVEL: release restores APC_LEVEL. */
    KIRQL apc_old;
    KeRaiseIrql(APC_LEVEL, &apc_old);
    old = KeAcquireSpinLockRaiseToDpc(&lock);
    CHECK_EQ(old, APC_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeReleaseSpinLock(&lock, old);
    CHECK_EQ(KeGetCurrentIrql(), APC_LEVEL);
    KeLowerIrql(apc_old);

    /* Already at DISPATCH: OldIrql is DISPATCH and the release stays there. */
    KeRaiseIrql(DISPATCH_LEVEL, &apc_old);
    KeAcquireSpinLock(&lock, &old);
    CHECK_EQ(old, DISPATCH_LEVEL);
    KeReleaseSpinLock(&lock, old);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(apc_old);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(spinlock_at_dpc_level_forms_do_not_change_irql)
{
    irpk_reports_clear();
    KSPIN_LOCK a, b;
    KeInitializeSpinLock(&a);
    KeInitializeSpinLock(&b);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    KeAcquireSpinLockAtDpcLevel(&a);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    CHECK(a != 0);
    CHECK_EQ(KeTryToAcquireSpinLockAtDpcLevel(&a), FALSE); /* held (not recursive) */
    CHECK_EQ(KeTryToAcquireSpinLockAtDpcLevel(&b), TRUE);
    CHECK(b != 0);
    CHECK_EQ(ke_self()->n_held, 2);
    KeReleaseSpinLockFromDpcLevel(&b);
    KeReleaseSpinLockFromDpcLevel(&a);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    CHECK_EQ(a, 0);
    CHECK_EQ(b, 0);
    CHECK_EQ(ke_self()->n_held, 0);
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(spinlock_in_stack_queued_forms)
{
    irpk_reports_clear();
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    KLOCK_QUEUE_HANDLE h;
    memset(&h, 0xCC, sizeof h);
    KeAcquireInStackQueuedSpinLock(&lock, &h);
    CHECK_EQ(h.OldIrql, PASSIVE_LEVEL);
    CHECK_PTR(h.LockQueue.Lock, &lock);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    CHECK(lock != 0);
    KeReleaseInStackQueuedSpinLock(&h);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(lock, 0);

    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    KLOCK_QUEUE_HANDLE h2;
    KeAcquireInStackQueuedSpinLockAtDpcLevel(&lock, &h2);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    CHECK(lock != 0);
    KeReleaseInStackQueuedSpinLockFromDpcLevel(&h2);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    CHECK_EQ(lock, 0);
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 0);
}

/* Regression: nesting more than 16 spin locks left the held-lock count permanently raised. */
TEST(regress_held_lock_count_returns_to_zero_after_deep_nesting)
{
    irpk_reports_clear();
    KSPIN_LOCK locks[20];
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    for (int i = 0; i < 20; i++) {
        KeInitializeSpinLock(&locks[i]);
        KeAcquireSpinLockAtDpcLevel(&locks[i]);
    }
    CHECK_EQ(ke_self()->n_held, 20);
    for (int i = 19; i >= 0; i--) KeReleaseSpinLockFromDpcLevel(&locks[i]);
    CHECK_EQ(ke_self()->n_held, 0);
    for (int i = 0; i < 20; i++) CHECK_EQ(locks[i], 0);
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 0);
}

/* 4 threads, a non-atomic counter under a KSPIN_LOCK (mixing the three acquire forms). */
static KSPIN_LOCK mx_lock;
static long mx_counter;
static int32_t mx_irql_errors;

static void mx_worker(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) {
        KIRQL old;
        KLOCK_QUEUE_HANDLE h;
        switch (i % 3) {
        case 0:
            KeAcquireSpinLock(&mx_lock, &old);
            break;
        case 1:
            KeAcquireInStackQueuedSpinLock(&mx_lock, &h);
            break;
        default:
            KeRaiseIrql(DISPATCH_LEVEL, &old);
            KeAcquireSpinLockAtDpcLevel(&mx_lock);
            break;
        }
        if (KeGetCurrentIrql() != DISPATCH_LEVEL) plat_fetch_add32(&mx_irql_errors, 1);
        long v = mx_counter; /* non-atomic read-modify-write: only exclusion keeps it exact */
        if ((i & 63) == 0) plat_yield();
        mx_counter = v + 1;
        switch (i % 3) {
        case 0:
            KeReleaseSpinLock(&mx_lock, old);
            break;
        case 1:
            KeReleaseInStackQueuedSpinLock(&h);
            break;
        default:
            KeReleaseSpinLockFromDpcLevel(&mx_lock);
            KeLowerIrql(old);
            break;
        }
        if (KeGetCurrentIrql() != PASSIVE_LEVEL) plat_fetch_add32(&mx_irql_errors, 1);
    }
}

TEST(spinlock_mutual_exclusion_4_threads)
{
    irpk_reports_clear();
    long n = irpk_test_scale(100000);
    KeInitializeSpinLock(&mx_lock);
    mx_counter = 0;
    mx_irql_errors = 0;
    plat_thread *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = plat_thread_start(mx_worker, (void *)(intptr_t)n, "spin-worker", 0);
        REQUIRE(t[i] != NULL);
    }
    for (int i = 0; i < 4; i++) plat_thread_join(t[i]);
    CHECK_EQ(mx_counter, 4 * n);
    CHECK_EQ(mx_irql_errors, 0);
    CHECK_EQ(mx_lock, 0);
    CHECK_EQ(irpk_report_count(), 0);
}

/* ------------------------------------------------------------------ interlocked */

TEST(interlocked_return_values)
{
    LONG v = 5;
    CHECK_EQ(InterlockedIncrement(&v), 6);
    CHECK_EQ(InterlockedDecrement(&v), 5);
    CHECK_EQ(InterlockedExchange(&v, 9), 5);
    CHECK_EQ(v, 9);
    CHECK_EQ(InterlockedExchangeAdd(&v, 3), 9);
    CHECK_EQ(v, 12);
    CHECK_EQ(InterlockedCompareExchange(&v, 100, 1), 12); /* mismatch: unchanged */
    CHECK_EQ(v, 12);
    CHECK_EQ(InterlockedCompareExchange(&v, 100, 12), 12);
    CHECK_EQ(v, 100);
    CHECK_EQ(InterlockedOr(&v, 0x3), 100);
    CHECK_EQ(v, 103);
    CHECK_EQ(InterlockedAnd(&v, 0x6), 103);
    CHECK_EQ(v, 6);
    v = 0x7FFFFFFF;
    /* Regression: wraps like the Windows LONG (was signed-overflow UB, caught by UBSan). */
    CHECK_EQ(InterlockedIncrement(&v), (LONG)0x80000000);
    CHECK_EQ(InterlockedDecrement(&v), 0x7FFFFFFF);
    v = (LONG)0x80000000;
    CHECK_EQ(InterlockedDecrement(&v), 0x7FFFFFFF);
    LONG64 big = INT64_MAX;
    CHECK_EQ(InterlockedIncrement64(&big), INT64_MIN);
    CHECK_EQ(InterlockedDecrement64(&big), INT64_MAX);
    LONG64 w = 1;
    CHECK_EQ(InterlockedIncrement64(&w), 2);
    CHECK_EQ(InterlockedDecrement64(&w), 1);
    CHECK_EQ(InterlockedExchange64(&w, 1LL << 40), 1);
    CHECK_EQ(InterlockedCompareExchange64(&w, 7, 1LL << 40), 1LL << 40);
    CHECK_EQ(w, 7);
    CHECK_EQ(InterlockedCompareExchange64(&w, 8, 1), 7);
    CHECK_EQ(w, 7);
    int x, y;
    PVOID p = &x;
    CHECK_PTR(InterlockedExchangePointer(&p, &y), &x);
    CHECK_PTR(InterlockedCompareExchangePointer(&p, NULL, &x), &y); /* mismatch */
    CHECK_PTR(p, &y);
    CHECK_PTR(InterlockedCompareExchangePointer(&p, NULL, &y), &y);
    CHECK_PTR(p, NULL);
    KeMemoryBarrier();
}

static LONG inc_counter;
static void inc_worker(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) InterlockedIncrement(&inc_counter);
}

TEST(interlocked_increment_4_threads)
{
    long n = irpk_test_scale(100000);
    inc_counter = 0;
    plat_thread *t[4];
    for (int i = 0; i < 4; i++) t[i] = plat_thread_start(inc_worker, (void *)(intptr_t)n, NULL, 0);
    for (int i = 0; i < 4; i++) plat_thread_join(t[i]);
    CHECK_EQ(inc_counter, 4 * n);
}

TEST(ex_interlocked_list_return_values)
{
    irpk_reports_clear();
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    LIST_ENTRY head, a, b, c;
    InitializeListHead(&head);
    CHECK_PTR(ExInterlockedRemoveHeadList(&head, &lock), NULL);
    CHECK_PTR(ExInterlockedInsertTailList(&head, &a, &lock), NULL); /* was empty */
    CHECK_PTR(ExInterlockedInsertTailList(&head, &b, &lock), &a);   /* previous first */
    CHECK_PTR(ExInterlockedInsertHeadList(&head, &c, &lock), &a);   /* previous first */
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(lock, 0);
    /* [c, a, b] */
    CHECK_PTR(head.Flink, &c);
    CHECK_PTR(head.Blink, &b);
    CHECK_PTR(ExInterlockedRemoveHeadList(&head, &lock), &c);
    CHECK_PTR(ExInterlockedRemoveHeadList(&head, &lock), &a);
    CHECK_PTR(ExInterlockedRemoveHeadList(&head, &lock), &b);
    CHECK_PTR(ExInterlockedRemoveHeadList(&head, &lock), NULL);
    CHECK(IsListEmpty(&head));
    CHECK_PTR(ExInterlockedInsertHeadList(&head, &a, &lock), NULL);

    SINGLE_LIST_ENTRY sh = {NULL}, s1, s2;
    CHECK_PTR(ExInterlockedPopEntryList(&sh, &lock), NULL);
    CHECK_PTR(ExInterlockedPushEntryList(&sh, &s1, &lock), NULL);
    CHECK_PTR(ExInterlockedPushEntryList(&sh, &s2, &lock), &s1);
    CHECK_PTR(ExInterlockedPopEntryList(&sh, &lock), &s2);
    CHECK_PTR(ExInterlockedPopEntryList(&sh, &lock), &s1);
    CHECK_PTR(ExInterlockedPopEntryList(&sh, &lock), NULL);
    /* From DISPATCH_LEVEL the routines return to DISPATCH. */
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    CHECK_PTR(ExInterlockedRemoveHeadList(&head, &lock), &a);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 0);
}

/* 4 threads move nodes between two interlocked lists; nothing is lost or duplicated. */
#define XL_NODES 64
static LIST_ENTRY xl_heads[2];
static KSPIN_LOCK xl_locks[2];
static LIST_ENTRY xl_nodes[XL_NODES];

static void xl_worker(void *arg)
{
    long n = (long)(intptr_t)arg;
    uint64_t rs = (uint64_t)n ^ (uint64_t)(uintptr_t)plat_self();
    for (long i = 0; i < n; i++) {
        int from = (int)(irpk_test_rand(&rs) & 1);
        PLIST_ENTRY e = ExInterlockedRemoveHeadList(&xl_heads[from], &xl_locks[from]);
        if (e) ExInterlockedInsertTailList(&xl_heads[!from], e, &xl_locks[!from]);
    }
}

TEST(ex_interlocked_lists_4_threads_conserve_nodes)
{
    irpk_reports_clear();
    for (int i = 0; i < 2; i++) {
        InitializeListHead(&xl_heads[i]);
        KeInitializeSpinLock(&xl_locks[i]);
    }
    for (int i = 0; i < XL_NODES; i++) InsertTailList(&xl_heads[i & 1], &xl_nodes[i]);
    long n = irpk_test_scale(50000);
    plat_thread *t[4];
    for (int i = 0; i < 4; i++) t[i] = plat_thread_start(xl_worker, (void *)(intptr_t)(n + i), NULL, 0);
    for (int i = 0; i < 4; i++) plat_thread_join(t[i]);
    int seen[XL_NODES] = {0}, total = 0;
    for (int l = 0; l < 2; l++)
        for (PLIST_ENTRY p = xl_heads[l].Flink; p != &xl_heads[l] && total <= XL_NODES; p = p->Flink) {
            long k = p - xl_nodes;
            REQUIRE(k >= 0 && k < XL_NODES);
            seen[k]++;
            total++;
        }
    CHECK_EQ(total, XL_NODES);
    for (int i = 0; i < XL_NODES; i++) CHECK_EQ(seen[i], 1);
    CHECK_EQ(irpk_report_count(), 0);
}

/* ------------------------------------------------------------------ misuse reports */

static int quiet_prev;
static void misuse_begin(void)
{
    quiet_prev = irpk_reports_set_quiet(1);
    irpk_reports_clear();
    CHECK_EQ(irpk_verifier_get_mode(), IRPK_VERIFIER_REPORT);
}
static void misuse_end(void)
{
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(ke_self()->n_held, 0);
    irpk_reports_clear();
    irpk_reports_set_quiet(quiet_prev);
}

TEST(misuse_raise_to_lower_reports_c4_30)
{
    misuse_begin();
    KIRQL old, bad = 0xFF;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    KeRaiseIrql(PASSIVE_LEVEL, &bad);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(irpk_report_param(0, 0), 0x30);
    CHECK_EQ(irpk_report_param(0, 1), DISPATCH_LEVEL);
    CHECK_EQ(irpk_report_param(0, 2), PASSIVE_LEVEL);
    CHECK_STR(irpk_report_name(0), "DRIVER_VERIFIER_DETECTED_VIOLATION");
    CHECK_EQ(bad, DISPATCH_LEVEL);                /* OldIrql still written */
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL); /* unchanged */
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 1);
    misuse_end();
}

TEST(misuse_lower_to_higher_reports_c4_31)
{
    misuse_begin();
    KeLowerIrql(DISPATCH_LEVEL);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(irpk_report_param(0, 0), 0x31);
    CHECK_EQ(irpk_report_param(0, 1), PASSIVE_LEVEL);
    CHECK_EQ(irpk_report_param(0, 2), DISPATCH_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_CONTAINS(irpk_report_text(0), "BUGCHECK 0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION");
    misuse_end();
}

TEST(misuse_release_spinlock_below_dispatch_reports_c4_32)
{
    misuse_begin();
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    KIRQL old;
    KeAcquireSpinLock(&lock, &old);
    KeLowerIrql(PASSIVE_LEVEL); /* legal by itself: lowering */
    CHECK_EQ(irpk_report_count(), 0);
    KeReleaseSpinLock(&lock, old);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(irpk_report_param(0, 0), 0x32);
    CHECK_PTR(irpk_report_param(0, 1), &lock);
    CHECK_EQ(irpk_report_param(0, 2), PASSIVE_LEVEL);
    CHECK_EQ(lock, 0); /* still released: the program runs on */
    /* and the lock is usable again */
    KeAcquireSpinLock(&lock, &old);
    KeReleaseSpinLock(&lock, old);
    CHECK_EQ(irpk_report_count(), 1);
    misuse_end();
}

TEST(misuse_release_spinlock_to_above_dispatch_reports_c4_32)
{
    misuse_begin();
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    KIRQL old;
    KeAcquireSpinLock(&lock, &old);
    KeReleaseSpinLock(&lock, HIGH_LEVEL);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_param(0, 0), 0x32);
    CHECK_EQ(irpk_report_param(0, 3), HIGH_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL); /* not "lowered" upwards */
    CHECK_EQ(lock, 0);
    KeLowerIrql(old);
    misuse_end();
}

TEST(misuse_acquire_at_dpc_level_below_dispatch_reports_c4_40)
{
    misuse_begin();
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    KeAcquireSpinLockAtDpcLevel(&lock);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(irpk_report_param(0, 0), 0x40);
    CHECK_PTR(irpk_report_param(0, 1), &lock);
    CHECK_EQ(irpk_report_param(0, 2), PASSIVE_LEVEL);
    CHECK(lock != 0); /* acquired anyway */
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    KeReleaseSpinLockFromDpcLevel(&lock); /* correct release: no further report */
    KeLowerIrql(old);
    CHECK_EQ(irpk_report_count(), 1);
    CHECK_EQ(lock, 0);
    misuse_end();
}

TEST(misuse_wait_with_timeout_at_dispatch_reports_c4_3b)
{
    misuse_begin();
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, TRUE);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    LARGE_INTEGER zero = {.QuadPart = 0};
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &zero), STATUS_SUCCESS);
    CHECK_EQ(irpk_report_count(), 0); /* a zero-timeout poll is legal at DISPATCH */
    LARGE_INTEGER rel = {.QuadPart = -10};
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &rel), STATUS_SUCCESS);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(irpk_report_param(0, 0), 0x3B);
    CHECK_EQ(irpk_report_param(0, 1), DISPATCH_LEVEL);
    /* NULL (infinite) timeout at DISPATCH is also a blocking wait. */
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(irpk_report_count(), 2);
    CHECK_EQ(irpk_report_param(1, 0), 0x3B);
    KeLowerIrql(old);
    misuse_end();
}

TEST(misuse_delay_execution_at_dispatch_reports_c4_3b)
{
    misuse_begin();
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    LARGE_INTEGER rel = {.QuadPart = -10}; /* 1 µs */
    CHECK_EQ(KeDelayExecutionThread(KernelMode, FALSE, &rel), STATUS_SUCCESS);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(irpk_report_param(0, 0), 0x3B);
    CHECK_EQ(irpk_report_param(0, 1), DISPATCH_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(old);
    /* At PASSIVE it is legal. */
    CHECK_EQ(KeDelayExecutionThread(KernelMode, FALSE, &rel), STATUS_SUCCESS);
    CHECK_EQ(irpk_report_count(), 1);
    misuse_end();
}

TEST(misuse_leave_critical_region_unbalanced_reports)
{
    misuse_begin();
    KeLeaveCriticalRegion();
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(KeAreApcsDisabled(), FALSE); /* count not driven negative */
    misuse_end();
}

/* The hook sees every report with its code and parameters. */
static int hook_calls;
static irpk_bugcheck hook_last;
static void hook(const irpk_bugcheck *r, void *ctx)
{
    hook_calls++;
    hook_last.code = r->code;
    memcpy(hook_last.param, r->param, sizeof hook_last.param);
    CHECK_PTR(ctx, &hook_calls);
    CHECK_CONTAINS(r->text, "KeLowerIrql");
}

TEST(bugcheck_hook_and_kebugcheckex)
{
    misuse_begin();
    irpk_bugcheck_hook prev = irpk_bugcheck_set_hook(hook, &hook_calls);
    hook_calls = 0;
    KeLowerIrql(HIGH_LEVEL);
    CHECK_EQ(hook_calls, 1);
    CHECK_EQ(hook_last.code, 0xC4);
    CHECK_EQ(hook_last.param[0], 0x31);
    irpk_bugcheck_set_hook(prev, NULL);
    KeBugCheckEx(0x44, 1, 2, 3, 4);
    REQUIRE(irpk_report_count() == 2);
    CHECK_EQ(irpk_report_code(1), 0x44);
    CHECK_EQ(irpk_report_param(1, 3), 4);
    CHECK_STR(irpk_report_name(1), "MULTIPLE_IRP_COMPLETE_REQUESTS");
    CHECK_EQ(irpk_report_count_code(0x44), 1);
    CHECK_STR(irpk_bugcheck_name(0x12345), "UNKNOWN");
    CHECK_EQ(hook_calls, 1); /* hook removed */
    misuse_end();
}
