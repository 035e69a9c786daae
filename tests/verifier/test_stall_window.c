/* Regression: a queue-stall checkpoint (irpk_verifier_check_stalls) taken while a driver routine
 * is between completing the device's current IRP and its IoStartNextPacket is not a stall.
 *
 * The classic cancel routine for the current IRP of a StartIo driver releases the cancel lock,
 * completes the IRP STATUS_CANCELLED and then calls IoStartNextPacket; a DPC for the success path
 * completes and then starts the next packet the same way. In between the device is Busy, its
 * current IRP is completed, no StartIo runs, no DPC is queued (a running one is no longer
 * queued) and IRPs wait — everything the stall check looked at — and a checkpoint there used to
 * report "IoStartNextPacket missing" for a driver that was about to call it. The checkpoint is
 * taken inside that window — from the routine itself, or from the test thread while the routine
 * waits on a gate there (deterministic). Before the fix: QueueStall for the completed IRP at the
 * checkpoint in the window, in the cancel (both threads) and the DPC case.
 *
 * The other direction: the same routines without IoStartNextPacket are still reported, once
 * they have returned (a check that is simply disabled fails these). */
#include <ntddk.h>
#include <string.h>

#include "vfixture.h"

static PIRP parked[8];
static int n_parked;

/* "Hardware": StartIo keeps the IRP and leaves its cancel routine armed (the cancel routine
 * finishes the current IRP itself). */
static VOID parking_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    if (n_parked < 8) parked[n_parked++] = irp;
}

static volatile int32_t forget_start_next; /* the buggy twin: no IoStartNextPacket */
static volatile int32_t window_stalls = -1; /* what the checkpoint in the window returned */
static volatile int32_t window_reports = -1; /* reports stored after it */

static volatile int32_t hold_window; /* park in the window for another thread's checkpoint */
static vf_gate in_window, leave_window;

static void checkpoint_in_the_window(void)
{
    if (plat_load32(&hold_window)) { /* the checkpoint comes from the test thread */
        vf_gate_open(&in_window);
        vf_gate_wait(&leave_window);
        return;
    }
    plat_store32(&window_stalls, irpk_verifier_check_stalls());
    plat_store32(&window_reports, (int32_t)irpk_report_count());
}

/* Release the lock, complete, then start the next packet (the current IRP's path). */
static VOID cancel_completing_then_starting_next(PDEVICE_OBJECT dev, PIRP irp)
{
    if (irp != dev->CurrentIrp) {
        KeRemoveEntryDeviceQueue(&dev->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
        IoReleaseCancelSpinLock(irp->CancelIrql);
        vf_complete(irp, STATUS_CANCELLED);
        return;
    }
    IoReleaseCancelSpinLock(irp->CancelIrql);
    vf_complete(irp, STATUS_CANCELLED);
    checkpoint_in_the_window(); /* completed, the next packet not started yet */
    if (plat_load32(&forget_start_next)) return;
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    IoStartNextPacket(dev, TRUE);
    KeLowerIrql(old);
}

static void reset_window(bool forget)
{
    plat_store32(&forget_start_next, forget);
    plat_store32(&window_stalls, -1);
    plat_store32(&window_reports, -1);
}

/* Finish what is left: the current IRP (disarmed, the next started first), until idle. */
static void drain(void)
{
    while (vf.dev->CurrentIrp) vf_finish_current();
    CHECK(!vf.dev->DeviceQueue.Busy);
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
}

TEST(checkpoint_inside_a_cancel_routine_before_its_start_next_is_not_a_stall)
{
    vf_setup();
    memset(parked, 0, sizeof parked);
    n_parked = 0;
    vf.startio = parking_startio;
    vf.cancel = cancel_completing_then_starting_next;
    PIRP a = vf_send_read(vf_read_startpacket, false); /* current, in the hardware */
    PIRP b = vf_send_read(vf_read_startpacket, false); /* queued */
    PIRP c = vf_send_read(vf_read_startpacket, false); /* queued */
    REQUIRE(n_parked == 1 && parked[0] == a);

    reset_window(false);
    IoCancelIrp(a);
    /* Before the fix: 1 (QueueStall for a) — the cancel routine was about to start b. */
    CHECK_EQ(plat_load32(&window_stalls), 0);
    CHECK_EQ(plat_load32(&window_reports), 0);
    EXPECT_NO_REPORT();
    CHECK_EQ(vf.last_status, STATUS_CANCELLED);
    CHECK_EQ(n_parked, 2);
    CHECK_PTR(parked[1], b); /* the cancel routine started it */
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    EXPECT_NO_REPORT();

    drain();
    EXPECT_NO_REPORT();
    VF_TEARDOWN(a, b, c);
}

TEST(a_cancel_routine_that_forgets_start_next_is_still_a_stall)
{
    vf_setup();
    memset(parked, 0, sizeof parked);
    n_parked = 0;
    vf.startio = parking_startio;
    vf.cancel = cancel_completing_then_starting_next;
    PIRP a = vf_send_read(vf_read_startpacket, false); /* current */
    PIRP b = vf_send_read(vf_read_startpacket, false); /* waits, forever */
    REQUIRE(n_parked == 1 && parked[0] == a);

    reset_window(true);
    IoCancelIrp(a);
    /* Inside the routine it cannot be told from the correct one yet. */
    CHECK_EQ(plat_load32(&window_stalls), 0);
    CHECK_EQ(vf.last_status, STATUS_CANCELLED);
    CHECK_EQ(n_parked, 1);
    /* It returned without IoStartNextPacket: b waits forever, and that is reported. */
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", a);
    CHECK_EQ(irpk_verifier_check_stalls(), 0); /* once */
    EXPECT_NO_REPORT();

    vf_start_next(); /* b */
    CHECK_PTR(parked[1], b);
    drain();
    EXPECT_NO_REPORT();
    VF_TEARDOWN(a, b);
}

static void cancel_thread(void *irp)
{
    IoCancelIrp(irp);
}

/* The same window seen from another thread: the cancel routine runs on its own thread and waits
 * in the window while the test thread takes the checkpoint. */
TEST(checkpoint_on_another_thread_during_the_cancel_routine_window_is_not_a_stall)
{
    vf_setup();
    memset(parked, 0, sizeof parked);
    n_parked = 0;
    vf.startio = parking_startio;
    vf.cancel = cancel_completing_then_starting_next;
    PIRP a = vf_send_read(vf_read_startpacket, false); /* current */
    PIRP b = vf_send_read(vf_read_startpacket, false); /* queued */
    REQUIRE(n_parked == 1 && parked[0] == a);

    reset_window(false);
    memset(&in_window, 0, sizeof in_window);
    memset(&leave_window, 0, sizeof leave_window);
    plat_store32(&hold_window, 1);
    plat_thread *t = plat_thread_start(cancel_thread, a, "canceller", 0);
    REQUIRE(t);
    vf_gate_wait(&in_window); /* a is completed, b not started yet */
    CHECK_EQ(vf.last_status, STATUS_CANCELLED);
    CHECK_EQ(n_parked, 1);
    CHECK_EQ(irpk_verifier_check_stalls(), 0); /* before the fix: 1 */
    EXPECT_NO_REPORT();
    vf_gate_open(&leave_window);
    plat_thread_join(t);
    plat_store32(&hold_window, 0);
    CHECK_EQ(n_parked, 2);
    CHECK_PTR(parked[1], b);
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    EXPECT_NO_REPORT();

    drain();
    EXPECT_NO_REPORT();
    VF_TEARDOWN(a, b);
}

/* ---- the success path: a DPC completes the current IRP, then starts the next */

static KDPC dpc;

static VOID dpc_completing_then_starting_next(PKDPC d, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(a1);
    UNREFERENCED_PARAMETER(a2);
    PDEVICE_OBJECT dev = ctx;
    PIRP irp = dev->CurrentIrp;
    if (!irp) return;
    if (!IoSetCancelRoutine(irp, NULL)) return; /* being cancelled: its cancel routine owns it */
    vf_complete(irp, STATUS_SUCCESS);
    checkpoint_in_the_window();
    if (!plat_load32(&forget_start_next)) IoStartNextPacket(dev, TRUE);
}

/* Cancel routines are armed by IoStartPacket; the DPC disarms the current IRP's. */
static VOID cancel_queued_only(PDEVICE_OBJECT dev, PIRP irp)
{
    vf_cancel_startio(dev, irp);
}

static void run_dpc(bool forget)
{
    reset_window(forget);
    KeInitializeDpc(&dpc, dpc_completing_then_starting_next, vf.dev);
    REQUIRE(KeInsertQueueDpc(&dpc, NULL, NULL));
    KeFlushQueuedDpcs();
    CHECK(plat_load32(&window_stalls) >= 0); /* the DPC ran its checkpoint */
}

TEST(checkpoint_inside_a_dpc_before_its_start_next_is_not_a_stall)
{
    vf_setup();
    memset(parked, 0, sizeof parked);
    n_parked = 0;
    vf.startio = parking_startio;
    vf.cancel = cancel_queued_only;
    PIRP a = vf_send_read(vf_read_startpacket, false); /* current */
    PIRP b = vf_send_read(vf_read_startpacket, false); /* queued */
    PIRP c = vf_send_read(vf_read_startpacket, false); /* queued */
    REQUIRE(n_parked == 1 && parked[0] == a);

    run_dpc(false);
    /* Before the fix: 1 (a running DPC is no longer "queued"). */
    CHECK_EQ(plat_load32(&window_stalls), 0);
    CHECK_EQ(plat_load32(&window_reports), 0);
    EXPECT_NO_REPORT();
    CHECK_EQ(n_parked, 2);
    CHECK_PTR(parked[1], b);

    /* The buggy twin: b completed by the DPC, c never started. */
    run_dpc(true);
    CHECK_EQ(plat_load32(&window_stalls), 0);
    CHECK_EQ(n_parked, 2);
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", b);

    vf_start_next(); /* c */
    CHECK_PTR(parked[2], c);
    drain();
    EXPECT_NO_REPORT();
    VF_TEARDOWN(a, b, c);
}
