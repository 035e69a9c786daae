/* csq_thread, in process: FIFO service by the worker thread, cancel and cleanup of queued
 * reads (the worker paused), unload stopping the worker, then the user program's flow under
 * stress with exactly-once checks, no leaks and no verifier report. */
#include "csq_thread.h"
#include "example_test_util.h"
#include "ob/ob.h"
#include "test.h"

static PDEVICE_OBJECT load(void)
{
    return ex_load(L"\\Driver\\CsqThread", CsqThreadDriverEntry, CSQ_THREAD_LINK_NAME);
}

static CSQ_THREAD_STATS stats(PDEVICE_OBJECT dev)
{
    CSQ_THREAD_STATS s;
    EX_STATS(dev, IOCTL_CSQ_THREAD_STATS, &s);
    return s;
}

static void pause_worker(inproc_handle *h, ULONG on)
{
    inproc_single s;
    inproc_send(&s, h, IRP_MJ_DEVICE_CONTROL, IOCTL_CSQ_THREAD_PAUSE, &on, sizeof on, 0);
    CHECK_EQ(inproc_wait(&s), STATUS_SUCCESS);
}

static ULONG served_as(const inproc_single *s) { return *(const ULONG *)s->buffer; }

TEST(the_worker_serves_reads_in_queue_order)
{
    LONG handles = ob_open_handles();
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    CHECK_EQ(ob_open_handles(), handles); /* the driver closed its thread handle */
    inproc_handle *h = inproc_open(dev);
    pause_worker(h, 1); /* queue them all first */
    inproc_single r[6];
    for (int i = 0; i < 6; i++) CHECK_EQ(inproc_send(&r[i], h, IRP_MJ_READ, 0, NULL, 0, 4), STATUS_PENDING);
    pause_worker(h, 0);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ(inproc_wait(&r[i]), STATUS_SUCCESS);
        CHECK_EQ(served_as(&r[i]), (ULONG)(i + 1));
    }
    inproc_close(h);
    CSQ_THREAD_STATS s = stats(dev);
    CHECK_EQ(s.Served, 6);
    CHECK_EQ(s.OutOfOrder, 0);
    EX_UNLOAD(dev);
}

TEST(queued_reads_are_cancelled_by_the_csq_and_by_cleanup)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *a = inproc_open(dev), *b = inproc_open(dev);
    pause_worker(b, 1);
    inproc_single a1, a2, b1, b2;
    inproc_send(&a1, a, IRP_MJ_READ, 0, NULL, 0, 4);
    inproc_send(&b1, b, IRP_MJ_READ, 0, NULL, 0, 4);
    inproc_send(&a2, a, IRP_MJ_READ, 0, NULL, 0, 4);
    inproc_send(&b2, b, IRP_MJ_READ, 0, NULL, 0, 4);
    CHECK(IoCancelIrp(b1.irp));
    CHECK_EQ(inproc_wait(&b1), STATUS_CANCELLED);
    inproc_close(a); /* cleanup takes a1 and a2 out of the queue */
    CHECK_EQ(inproc_wait(&a1), STATUS_CANCELLED);
    CHECK_EQ(inproc_wait(&a2), STATUS_CANCELLED);
    pause_worker(b, 0);
    CHECK_EQ(inproc_wait(&b2), STATUS_SUCCESS);
    CHECK_EQ(served_as(&b2), 1);
    /* every queued read consumed one wake-up: three of them found nothing */
    CSQ_THREAD_STATS s;
    do s = stats(dev);
    while (s.Wakeups < 4);
    CHECK_EQ(s.Queued, 4);
    CHECK_EQ(s.Served, 1);
    CHECK_EQ(s.QueueCancelled, 1);
    CHECK_EQ(s.CleanupCancelled, 2);
    CHECK_EQ(s.EmptyWakeups, 3);
    inproc_close(b);
    EX_UNLOAD(dev);
}

TEST(unload_stops_a_paused_worker)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    pause_worker(h, 1);
    inproc_close(h);
    EX_UNLOAD(dev); /* io_unload_driver returns once the worker has terminated */
    dev = load(); /* and the driver loads again with a fresh worker */
    REQUIRE(dev);
    h = inproc_open(dev);
    inproc_single r;
    inproc_send(&r, h, IRP_MJ_READ, 0, NULL, 0, 4);
    CHECK_EQ(inproc_wait(&r), STATUS_SUCCESS);
    inproc_close(h);
    EX_UNLOAD(dev);
}

/* ---- the user program's flow, in process, under stress */

static bool check_read(const inproc_request *r, void *ctx)
{
    (void)ctx;
    if (r->status == STATUS_SUCCESS) return r->information == sizeof(ULONG) && *(const ULONG *)r->buffer > 0;
    return r->status == STATUS_CANCELLED;
}

TEST(stress_overlapped_reads_cancels_and_closes)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_config cfg = {
        .device = dev,
        .threads = 4,
        .requests = irpk_test_scale(6000),
        .window = 8,
        .handles = 3,
        .cancel_one_pct = 6,
        .cancel_all_pct = 1,
        .close_every = 150,
        .seed = 0xC5052,
        .prepare = ex_prepare_ulong_read,
        .check = check_read,
    };
    inproc_result res;
    inproc_run(&cfg, &res);
    inproc_print("csq_thread", &res);
    CSQ_THREAD_STATS s;
    do s = stats(dev);
    while (s.Wakeups < s.Queued); /* the worker consumes the units of cancelled reads too */
    printf("  worker: queued %d, served %d, wake-ups %d (empty %d), queue cancelled %d, cleanup "
           "cancelled %d, out of order %d\n",
           (int)s.Queued, (int)s.Served, (int)s.Wakeups, (int)s.EmptyWakeups, (int)s.QueueCancelled,
           (int)s.CleanupCancelled, (int)s.OutOfOrder);
    CHECK_EQ(res.bad, 0);
    CHECK_EQ(res.completed, res.issued);
    CHECK_EQ(res.other, 0);
    CHECK_EQ(res.succeeded, s.Served);
    CHECK_EQ(res.cancelled, s.QueueCancelled + s.CleanupCancelled);
    CHECK_EQ(s.Queued, res.issued);
    CHECK_EQ(s.EmptyWakeups, s.QueueCancelled + s.CleanupCancelled);
    CHECK_EQ(s.OutOfOrder, 0);
    EX_UNLOAD(dev);
}
