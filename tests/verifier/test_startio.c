/* StartIo and queue checks (VERIFIER.md §1 "StartIo and queues"): StartIo recursion without
 * DeferredStartIo (with its depth), the "IoStartNextPacket missing" queue stall (R11), and
 * IoStartNextPacket while holding a spin lock. Buggy driver + correct twin each. */
#include "vfixture.h"

#define QUEUED 10

static PIRP irps[QUEUED + 1];

/* StartIo that finishes synchronously and starts the next packet (R2's shape). */
static VOID startio_sync_next(PDEVICE_OBJECT dev, PIRP irp)
{
    vf_complete(irp, STATUS_SUCCESS);
    IoStartNextPacket(dev, FALSE);
}

/* The first IRP stays current (StartIo does nothing), QUEUED more wait behind it. */
static void queue_behind_first(void)
{
    vf.startio = NULL;
    for (int i = 0; i <= QUEUED; i++) irps[i] = vf_send_read(vf_read_startpacket, false);
}

TEST(startio_recursion_without_deferred_reports_depth_once)
{
    vf_setup();
    queue_behind_first();
    vf.startio = startio_sync_next;
    vf_finish_current(); /* starts the chain: StartIo nests once per queued IRP */
    CHECK_EQ(vf.completions, QUEUED + 1);
    CHECK_EQ(io_startio_max_depth(vf.dev), QUEUED);
    CHECK_CONTAINS(vf_text(), "nesting depth 8");
    CHECK_CONTAINS(vf_text(), "startio_sync_next");
    CHECK_EQ(irpk_report_param(0, 2), 8); /* P3: the depth */
    EXPECT_REPORT(0xC4, IRPK_RULE_STARTIO_RECURSION, "StartIoRecursion", irps[8]);
    vf_teardown_freeing(irps, QUEUED + 1);
}

TEST(startio_recursion_twin_with_deferred_startio_reports_nothing)
{
    vf_setup();
    IoSetStartIoAttributes(vf.dev, TRUE, FALSE);
    queue_behind_first();
    vf.startio = startio_sync_next;
    vf_finish_current();
    CHECK_EQ(vf.completions, QUEUED + 1);
    CHECK(io_startio_max_depth(vf.dev) <= 2);
    EXPECT_NO_REPORT();
    vf_teardown_freeing(irps, QUEUED + 1);
}

TEST(startio_recursion_limit_2_reports_any_reentry_like_sdv)
{
    vf_setup();
    int old = irpk_verifier_set_startio_depth_limit(2);
    queue_behind_first();
    vf.startio = startio_sync_next;
    vf_finish_current();
    CHECK_EQ(irpk_report_count(), 1);
    CHECK_EQ(irpk_report_param(0, 2), 2); /* P3: the depth */
    EXPECT_REPORT(0xC4, IRPK_RULE_STARTIO_RECURSION, "StartIoRecursion", irps[2]);
    irpk_verifier_set_startio_depth_limit(old);
    vf_teardown_freeing(irps, QUEUED + 1);
}

/* ---- QueueStall: the error path forgets IoStartNextPacket (R11) */

static VOID startio_error_path_forgets_next(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf_complete(irp, STATUS_INVALID_PARAMETER); /* the bug: no IoStartNextPacket */
}

static VOID startio_error_path_starts_next(PDEVICE_OBJECT dev, PIRP irp)
{
    vf_complete(irp, STATUS_INVALID_PARAMETER);
    IoStartNextPacket(dev, FALSE);
}

static void send_three(PIRP *three)
{
    /* The first IRP is handed to StartIo at once (device idle); StartIo completes it; the
     * other two find the device Busy and wait in its queue. */
    for (int i = 0; i < 3; i++) three[i] = vf_send_read(vf_read_startpacket, false);
}

TEST(forgotten_iostartnextpacket_is_a_queue_stall_at_a_checkpoint)
{
    vf_setup();
    vf.startio = startio_error_path_forgets_next;
    PIRP three[3];
    send_three(three);
    CHECK_EQ(vf.completions, 1);
    EXPECT_NO_REPORT();
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    CHECK_CONTAINS(vf_text(), "IoStartNextPacket missing");
    CHECK_CONTAINS(vf_text(), "2 IRP(s) wait");
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", three[0]);
    CHECK_EQ(irpk_verifier_check_stalls(), 0); /* once per stall */
    vf.startio = startio_error_path_starts_next;
    vf_start_next(); /* unstick: the rest run */
    CHECK_EQ(vf.completions, 3);
    vf_teardown_freeing(three, 3);
}

TEST(queue_stall_twin_starts_the_next_packet_and_reports_nothing)
{
    vf_setup();
    vf.startio = startio_error_path_starts_next;
    PIRP three[3];
    send_three(three);
    CHECK_EQ(vf.completions, 3);
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    EXPECT_NO_REPORT();
    vf_teardown_freeing(three, 3);
}

TEST(queue_stall_is_reported_by_the_watchdog)
{
    vf_setup();
    long old = irpk_verifier_set_stall_timeout_ms(30);
    vf.startio = startio_error_path_forgets_next;
    PIRP three[3];
    send_three(three);
    REQUIRE(vf_wait_reports(1));
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", three[0]);
    irpk_verifier_set_stall_timeout_ms(old);
    vf.startio = startio_error_path_starts_next;
    vf_start_next();
    CHECK_EQ(vf.completions, 3);
    vf_teardown_freeing(three, 3);
}

/* ---- SpinLockSafe: IoStartNextPacket while holding a spin lock */

static VOID startio_next_under_lock(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL old;
    KeAcquireSpinLock(&vf.queue_lock, &old);
    vf_complete(irp, STATUS_SUCCESS);   /* (also SpinLockSafe: reported separately) */
    IoStartNextPacket(dev, FALSE);      /* the bug */
    KeReleaseSpinLock(&vf.queue_lock, old);
}

static VOID startio_next_after_unlock(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL old;
    KeAcquireSpinLock(&vf.queue_lock, &old);
    KeReleaseSpinLock(&vf.queue_lock, old);
    vf_complete(irp, STATUS_SUCCESS);
    IoStartNextPacket(dev, FALSE);
}

TEST(iostartnextpacket_holding_a_spin_lock_reports_spinlocksafe)
{
    vf_setup();
    vf.startio = startio_next_under_lock;
    PIRP irp = vf_send_read(vf_read_startpacket, false);
    CHECK_EQ(irpk_report_count(), 2);
    CHECK_EQ(irpk_report_count_name("SpinLockSafe"), 2);
    CHECK_CONTAINS(irpk_report_text(1), "IoStartNextPacket while holding");
    irpk_reports_clear();
    vf.startio = startio_next_after_unlock;
    PIRP twin = vf_send_read(vf_read_startpacket, false);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(irp, twin);
}
