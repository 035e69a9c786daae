/* csq_startio, in process: the current-request protocol step by step, then the full flow of
 * its user program (open, many overlapped reads from several threads, random cancels, handles
 * closed mid-flight) under stress with exactly-once checks, no leaks and no verifier report. */
#include "csq_startio.h"
#include "example_test_util.h"
#include "ke/ke.h"
#include "test.h"

static PDEVICE_OBJECT load(const CSQ_STARTIO_CONFIG *config)
{
    CsqStartIoSetConfig(config);
    return ex_load(L"\\Driver\\CsqStartIo", CsqStartIoDriverEntry, CSQ_STARTIO_LINK_NAME);
}

static CSQ_STARTIO_STATS stats(PDEVICE_OBJECT dev)
{
    CSQ_STARTIO_STATS s;
    EX_STATS(dev, IOCTL_CSQ_STARTIO_STATS, &s);
    return s;
}

/* EX_UNLOAD, and the driver's pool and its poll timer are gone too. */
static void unload(PDEVICE_OBJECT dev)
{
    EX_UNLOAD(dev);
    CHECK_EQ(ke_pool_outstanding_tag(CSQ_STARTIO_TAG), 0);
    CHECK_EQ(ke_timers_set(), 0);
}

static ULONG number_of(const inproc_single *s) { return *(const ULONG *)s->buffer; }

TEST(an_idle_device_starts_the_read_then_takes_the_queue_in_order)
{
    CSQ_STARTIO_CONFIG config = {0, 0, 1}; /* never settles */
    PDEVICE_OBJECT dev = load(&config);
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    inproc_single r[4];
    for (int i = 0; i < 4; i++) inproc_send(&r[i], h, IRP_MJ_READ, 0, NULL, 0, sizeof(ULONG));
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(inproc_wait(&r[i]), STATUS_SUCCESS);
        CHECK_EQ(r[i].information, sizeof(ULONG));
    }
    /* the device started them in issue order */
    for (int i = 1; i < 4; i++) CHECK(number_of(&r[i]) > number_of(&r[i - 1]));
    inproc_close(h);
    CSQ_STARTIO_STATS s = stats(dev);
    CHECK_EQ(s.MadeCurrent, 4);
    CHECK_EQ(s.Transferred, 4);
    CHECK_EQ(s.MadeCurrent, s.Transferred + s.CurrentCancelled);
    unload(dev);
}

/* The device settles "forever" so every request stays put until cancelled. */
TEST(cleanup_cancels_the_handles_requests_and_leaves_the_others)
{
    CSQ_STARTIO_CONFIG config = {1, 0x7FFFFFFF, 1};
    PDEVICE_OBJECT dev = load(&config);
    REQUIRE(dev);
    inproc_handle *a = inproc_open(dev), *b = inproc_open(dev);
    inproc_single r1, r2, r3, r4;
    CHECK_EQ(inproc_send(&r1, a, IRP_MJ_READ, 0, NULL, 0, 4), STATUS_PENDING); /* current */
    CHECK_EQ(inproc_send(&r2, a, IRP_MJ_READ, 0, NULL, 0, 4), STATUS_PENDING); /* queued */
    CHECK_EQ(inproc_send(&r3, b, IRP_MJ_READ, 0, NULL, 0, 4), STATUS_PENDING);
    CHECK_EQ(inproc_send(&r4, a, IRP_MJ_READ, 0, NULL, 0, 4), STATUS_PENDING);
    inproc_close(a); /* cleanup: r2 and r4 now, r1 (current) at the next poll */
    CHECK_EQ(inproc_wait(&r2), STATUS_CANCELLED);
    CHECK_EQ(inproc_wait(&r4), STATUS_CANCELLED);
    CHECK_EQ(inproc_wait(&r1), STATUS_CANCELLED);
    /* r3 (handle b) became current and settles until it is cancelled */
    while (stats(dev).MadeCurrent < 2) plat_yield();
    /* Let the settling device poll at least once before the cancel (under a slow sanitizer run
     * the cancel could otherwise beat the first poll). */
    LONG polls = stats(dev).Polls;
    while (stats(dev).Polls == polls) plat_yield();
    CHECK(IoCancelIrp(r3.irp) == FALSE); /* current: not in the queue, no cancel routine */
    CHECK_EQ(inproc_wait(&r3), STATUS_CANCELLED); /* the poll DPC saw Irp->Cancel */
    CSQ_STARTIO_STATS s = stats(dev);
    CHECK_EQ(s.CleanupCancelled, 2);
    CHECK_EQ(s.CurrentCancelled, 2);
    CHECK_EQ(s.CleanupLeftovers, 0);
    CHECK(s.Polls >= 1);
    inproc_close(b);
    unload(dev);
}

TEST(a_queued_request_is_cancelled_by_the_csq)
{
    CSQ_STARTIO_CONFIG config = {1, 0x7FFFFFFF, 1};
    PDEVICE_OBJECT dev = load(&config);
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    inproc_single cur, queued;
    inproc_send(&cur, h, IRP_MJ_READ, 0, NULL, 0, 4);
    inproc_send(&queued, h, IRP_MJ_READ, 0, NULL, 0, 4);
    /* This thread's count: the settling poll DPC takes the lock concurrently on its own. */
    uint64_t locks = io_cancel_lock_acquisitions_by_me();
    CHECK(IoCancelIrp(queued.irp)); /* the CSQ's cancel routine */
    CHECK_EQ(io_cancel_lock_acquisitions_by_me() - locks, 1); /* IoCancelIrp's own, nothing else */
    CHECK_EQ(inproc_wait(&queued), STATUS_CANCELLED);
    IoCancelIrp(cur.irp);
    CHECK_EQ(inproc_wait(&cur), STATUS_CANCELLED);
    CHECK_EQ(stats(dev).QueueCancelled, 1);
    inproc_close(h);
    unload(dev);
}

TEST(a_read_after_the_handles_cleanup_is_delete_pending)
{
    CSQ_STARTIO_CONFIG config = {0, 0, 1};
    PDEVICE_OBJECT dev = load(&config);
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    inproc_single keep, late;
    inproc_send(&keep, h, IRP_MJ_READ, 0, NULL, 0, 4); /* holds the file object open */
    CHECK_EQ(inproc_wait(&keep), STATUS_SUCCESS);
    inproc_send(&keep, h, IRP_MJ_READ, 0, NULL, 0, 4);
    inproc_close(h); /* the file object lives on while `keep` holds its reference */
    CHECK_EQ(inproc_send(&late, h, IRP_MJ_READ, 0, NULL, 0, 4), STATUS_DELETE_PENDING);
    CHECK_EQ(inproc_wait(&late), STATUS_DELETE_PENDING);
    NTSTATUS st = inproc_wait(&keep);
    CHECK(st == STATUS_SUCCESS || st == STATUS_CANCELLED);
    CHECK_EQ(stats(dev).DeletePending, 1);
    unload(dev);
}

/* ---- the user program's flow, in process, under stress */

static bool check_read(const inproc_request *r, void *ctx)
{
    (void)ctx;
    if (r->status == STATUS_SUCCESS) return r->information == sizeof(ULONG) && *(const ULONG *)r->buffer > 0;
    return r->status == STATUS_CANCELLED || r->status == STATUS_DELETE_PENDING;
}

TEST(stress_overlapped_reads_cancels_and_closes)
{
    CSQ_STARTIO_CONFIG config = {8, 2, 1};
    PDEVICE_OBJECT dev = load(&config);
    REQUIRE(dev);
    inproc_config cfg = {
        .device = dev,
        .threads = 4,
        .requests = irpk_test_scale(4000),
        .window = 8,
        .handles = 3,
        .cancel_one_pct = 6,
        .cancel_all_pct = 1,
        .close_every = 150,
        .seed = 0xC5051,
        .prepare = ex_prepare_ulong_read,
        .check = check_read,
    };
    inproc_result res;
    inproc_run(&cfg, &res);
    inproc_print("csq_startio", &res);
    CSQ_STARTIO_STATS s = stats(dev);
    printf("  device: current %d, queued %d, polls %d, transferred %d, current cancelled %d, "
           "queue cancelled %d, cleanup cancelled %d, delete pending %d\n",
           (int)s.MadeCurrent, (int)s.Queued, (int)s.Polls, (int)s.Transferred, (int)s.CurrentCancelled,
           (int)s.QueueCancelled, (int)s.CleanupCancelled, (int)s.DeletePending);
    CHECK_EQ(res.bad, 0);
    CHECK_EQ(res.completed, res.issued);
    CHECK(res.issued > 0);
    CHECK_EQ(res.succeeded, s.Transferred);
    CHECK_EQ(res.cancelled, s.CurrentCancelled + s.QueueCancelled + s.CleanupCancelled);
    CHECK_EQ(res.other, s.DeletePending);
    CHECK_EQ(s.MadeCurrent, s.Transferred + s.CurrentCancelled);
    CHECK_EQ(s.CleanupLeftovers, 0);
    unload(dev);
}
