/* Remove locks: IoInitializeRemoveLock, IoAcquireRemoveLock (STATUS_DELETE_PENDING after
 * release-and-wait), IoReleaseRemoveLock, IoReleaseRemoveLockAndWait, tag tracking and the
 * misuse reports of VERIFIER.md §1 "Teardown" (0xC4/0xD5, 0xD6, 0xD7). */
#include <ntddk.h>

#include "io/io.h"
#include "irpkit/verifier.h"
#include "test.h"

#define TAG_A ((PVOID)0xA)
#define TAG_B ((PVOID)0xB)

static void fresh(PIO_REMOVE_LOCK l)
{
    memset(l, 0, sizeof *l);
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    IoInitializeRemoveLock(l, 0x74736554, 1, 100);
}

static long tracked(PIO_REMOVE_LOCK l)
{
    long n = 0;
    for (PLIST_ENTRY e = l->Dbg.LockList.Flink; e != &l->Dbg.LockList; e = e->Flink) n++;
    return n;
}

TEST(initialize_sets_the_bias_and_clears_removed)
{
    IO_REMOVE_LOCK l;
    memset(&l, 0xCC, sizeof l);
    l.Dbg.Signature = 0; /* never initialised */
    irpk_reports_clear();
    IoInitializeRemoveLock(&l, 0x74736554, 0, 0);
    CHECK_EQ(l.Common.IoCount, 1);
    CHECK(!l.Common.Removed);
    CHECK_EQ(KeReadStateEvent(&l.Common.RemoveEvent), 0);
    CHECK_EQ(tracked(&l), 0);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(acquire_and_release_track_each_tag)
{
    IO_REMOVE_LOCK l;
    fresh(&l);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_A), STATUS_SUCCESS);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_B), STATUS_SUCCESS);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_A), STATUS_SUCCESS); /* tags need not be unique */
    CHECK_EQ(IoAcquireRemoveLock(&l, NULL), STATUS_SUCCESS);
    CHECK_EQ(l.Common.IoCount, 5);
    CHECK_EQ(tracked(&l), 4);
    IoReleaseRemoveLock(&l, TAG_A);
    IoReleaseRemoveLock(&l, NULL);
    IoReleaseRemoveLock(&l, TAG_B);
    IoReleaseRemoveLock(&l, TAG_A);
    CHECK_EQ(l.Common.IoCount, 1);
    CHECK_EQ(tracked(&l), 0);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(release_with_an_unknown_tag_is_0xd5_and_still_releases_one)
{
    IO_REMOVE_LOCK l;
    fresh(&l);
    IoAcquireRemoveLock(&l, TAG_A);
    IoReleaseRemoveLock(&l, TAG_B);
    CHECK_EQ(irpk_report_count(), 1);
    CHECK_EQ(irpk_report_code(0), IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION);
    CHECK_EQ(irpk_report_param(0, 0), 0xD5);
    CHECK_EQ(irpk_report_param(0, 2), (uintptr_t)TAG_B);
    CHECK_EQ(l.Common.IoCount, 1);
    CHECK_EQ(tracked(&l), 0);
    /* nothing outstanding: a further release is refused, the bias stays */
    IoReleaseRemoveLock(&l, TAG_A);
    CHECK_EQ(irpk_report_count(), 2);
    CHECK_EQ(l.Common.IoCount, 1);
    CHECK_EQ(KeReadStateEvent(&l.Common.RemoveEvent), 0);
    irpk_reports_clear();
}

TEST(release_and_wait_with_nothing_outstanding_returns_and_refuses_acquires)
{
    IO_REMOVE_LOCK l;
    fresh(&l);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_A), STATUS_SUCCESS);
    IoReleaseRemoveLockAndWait(&l, TAG_A);
    CHECK(l.Common.Removed);
    CHECK_EQ(l.Common.IoCount, 0);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_B), STATUS_DELETE_PENDING);
    CHECK_EQ(l.Common.IoCount, 0); /* the failed acquire backed out */
    CHECK_EQ(tracked(&l), 0);
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(release_and_wait_with_an_unknown_tag_is_0xd6)
{
    IO_REMOVE_LOCK l;
    fresh(&l);
    IoAcquireRemoveLock(&l, TAG_A);
    IoReleaseRemoveLockAndWait(&l, TAG_B);
    CHECK_EQ(irpk_report_count(), 1);
    CHECK_EQ(irpk_report_param(0, 0), 0xD6);
    CHECK_EQ(l.Common.IoCount, 0);
    irpk_reports_clear();
}

TEST(reinitialise_after_release_and_wait_is_0xd7)
{
    IO_REMOVE_LOCK l;
    fresh(&l);
    IoAcquireRemoveLock(&l, TAG_A);
    IoReleaseRemoveLockAndWait(&l, TAG_A);
    IoInitializeRemoveLock(&l, 0x74736554, 0, 0);
    CHECK_EQ(irpk_report_count(), 1);
    CHECK_EQ(irpk_report_param(0, 0), 0xD7);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_A), STATUS_SUCCESS); /* re-initialised anyway */
    IoReleaseRemoveLock(&l, TAG_A);
    irpk_reports_clear();
}

TEST(an_untracked_acquisition_for_lack_of_memory_is_matched_silently)
{
    IO_REMOVE_LOCK l;
    fresh(&l);
    plat_fail_allocs(1);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_A), STATUS_SUCCESS);
    plat_fail_allocs(0);
    CHECK_EQ(l.Dbg.LowMemoryCount, 1);
    CHECK_EQ(tracked(&l), 0);
    IoReleaseRemoveLock(&l, TAG_A);
    CHECK_EQ(l.Dbg.LowMemoryCount, 0);
    CHECK_EQ(l.Common.IoCount, 1);
    CHECK_EQ(irpk_report_count(), 0);
}

/* ---- release-and-wait waits out the holders */

typedef struct waiter {
    PIO_REMOVE_LOCK lock;
    volatile int32_t returned;
} waiter;

static void release_and_wait_main(void *arg)
{
    waiter *w = arg;
    IoReleaseRemoveLockAndWait(w->lock, TAG_B);
    plat_store32(&w->returned, 1);
}

TEST(release_and_wait_returns_only_after_the_last_holder_released)
{
    IO_REMOVE_LOCK l;
    fresh(&l);
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_A), STATUS_SUCCESS); /* a dispatcher in flight */
    CHECK_EQ(IoAcquireRemoveLock(&l, TAG_B), STATUS_SUCCESS); /* the remove path's own */
    waiter w = {&l, 0};
    plat_thread *t = plat_thread_start(release_and_wait_main, &w, "remover", 0);
    /* Once acquires fail, the remover has marked the lock removed; it cannot have returned
     * while TAG_A is outstanding. */
    while (IoAcquireRemoveLock(&l, NULL) == STATUS_SUCCESS) {
        IoReleaseRemoveLock(&l, NULL);
        plat_yield();
    }
    CHECK_EQ(plat_load32(&w.returned), 0);
    CHECK(plat_load32(&l.Common.IoCount) >= 1);
    IoReleaseRemoveLock(&l, TAG_A);
    plat_thread_join(t);
    CHECK_EQ(w.returned, 1);
    CHECK_EQ(l.Common.IoCount, 0);
    CHECK_EQ(tracked(&l), 0);
    CHECK_EQ(irpk_report_count(), 0);
}

/* Many holders acquire and release while one thread removes: once release-and-wait returns,
 * nobody holds the lock and nobody gets it again. */
static struct {
    IO_REMOVE_LOCK lock;
    volatile int32_t inside;
    volatile int32_t after_return_successes;
    volatile int32_t removed_returned;
    volatile int32_t acquired, refused;
} rs;

static void holder_main(void *arg)
{
    long n = (long)(intptr_t)arg;
    int64_t tag = 0x100;
    for (long i = 0; i < n; i++) {
        PVOID t = (PVOID)(intptr_t)(tag + (i & 7));
        if (IoAcquireRemoveLock(&rs.lock, t) != STATUS_SUCCESS) {
            plat_fetch_add32(&rs.refused, 1);
            continue;
        }
        if (plat_load32(&rs.removed_returned)) plat_fetch_add32(&rs.after_return_successes, 1);
        plat_fetch_add32(&rs.acquired, 1);
        plat_fetch_add32(&rs.inside, 1);
        if ((i & 15) == 0) plat_yield();
        plat_fetch_add32(&rs.inside, -1);
        IoReleaseRemoveLock(&rs.lock, t);
    }
}

static void remover_main(void *arg)
{
    long n = (long)(intptr_t)arg;
    while (plat_load32(&rs.acquired) < n) plat_yield(); /* a third of the holders' work */
    if (IoAcquireRemoveLock(&rs.lock, TAG_B) != STATUS_SUCCESS) return;
    IoReleaseRemoveLockAndWait(&rs.lock, TAG_B);
    if (plat_load32(&rs.inside) != 0) plat_fetch_add32(&rs.after_return_successes, 1000000);
    plat_store32(&rs.removed_returned, 1);
}

TEST(stress_release_and_wait_against_holders)
{
    memset(&rs, 0, sizeof rs);
    fresh(&rs.lock);
    long n = irpk_test_scale(50000);
    plat_thread *h[3];
    for (int i = 0; i < 3; i++) h[i] = plat_thread_start(holder_main, (void *)(intptr_t)n, "holder", 0);
    plat_thread *r = plat_thread_start(remover_main, (void *)(intptr_t)n, "remover", 0);
    for (int i = 0; i < 3; i++) plat_thread_join(h[i]);
    plat_thread_join(r);
    printf("  acquired %d, refused after removal %d\n", (int)rs.acquired, (int)rs.refused);
    CHECK_EQ(rs.removed_returned, 1);
    CHECK_EQ(rs.after_return_successes, 0);
    CHECK_EQ(rs.lock.Common.IoCount, 0);
    CHECK_EQ(tracked(&rs.lock), 0);
    CHECK_EQ(irpk_report_count(), 0);
}
