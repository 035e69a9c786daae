/* Regressions for the verifier's queue-stall tracking (src/verify): which IRP is the device's
 * "current" one, and when a stall counts as already reported.
 *
 *   - An IRP that a cancel routine completed before StartIo received it (cancelled in the
 *     window after IoStartNextPacket made it CurrentIrp and dropped the cancel lock; the cancel
 *     routine started the next IRP and completed this one) used to become the verifier's
 *     current IRP when its late StartIo call came in. The real current IRP — the one the
 *     cancel routine started — was forgotten, so when it completed without IoStartNextPacket
 *     the stall was not reported. The window is opened deterministically with the point hook
 *     at the "StartIo" point of the cancelled IRP (the cancel runs right there, on the same
 *     thread). Before the fix: no QueueStall for the real current IRP.
 *   - "Each stall is reported once" was keyed by the IRP id alone: an IRP reused (IoReuseIrp
 *     keeps its id) that stalled the queue a second time, after the queue had made progress
 *     in between, was not reported again. Before the fix: the second stall was silent. */
#include <ntddk.h>
#include <string.h>

#include "vfixture.h"

static PIRP parked[8];
static int n_parked;

/* "Hardware": StartIo keeps the IRP; the test completes it. */
static VOID parking_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    if (n_parked < 8) parked[n_parked++] = irp;
}

/* The classic StartIo check under the cancel lock: an IRP that is no longer CurrentIrp (its
 * cancel routine took it) is left alone; otherwise disarm and start the "hardware". */
static VOID checking_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL irql;
    IoAcquireCancelSpinLock(&irql);
    if (irp != dev->CurrentIrp || !IoSetCancelRoutine(irp, NULL)) {
        IoReleaseCancelSpinLock(irql);
        return;
    }
    IoReleaseCancelSpinLock(irql);
    parking_startio(dev, irp);
}

/* The seed's cancel routine: the current IRP is finished here and the next one started. */
static VOID cancel_starting_next(PDEVICE_OBJECT dev, PIRP irp)
{
    if (irp == dev->CurrentIrp) {
        IoReleaseCancelSpinLock(irp->CancelIrql);
        IoStartNextPacket(dev, TRUE);
    } else {
        KeRemoveEntryDeviceQueue(&dev->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
        IoReleaseCancelSpinLock(irp->CancelIrql);
    }
    vf_complete(irp, STATUS_CANCELLED);
}

static PIRP cancel_target;
static volatile int32_t hook_armed;

/* At the cancelled IRP's "StartIo" point — after IoStartNextPacket made it CurrentIrp and
 * dropped the cancel lock, before StartIo is called — cancel it (once). */
static void cancel_before_startio(const char *op, const void *obj)
{
    if (strcmp(op, "StartIo") || obj != cancel_target || plat_cas32(&hook_armed, 1, 0) != 1) return;
    IoCancelIrp(cancel_target);
}

TEST(irp_completed_before_its_startio_does_not_hide_a_stall)
{
    vf_setup();
    memset(parked, 0, sizeof parked);
    n_parked = 0;
    vf.startio = checking_startio;
    vf.cancel = cancel_starting_next;
    PIRP a = vf_send_read(vf_read_startpacket, false); /* current, in the hardware */
    PIRP b = vf_send_read(vf_read_startpacket, false); /* queued: cancelled in the window */
    PIRP c = vf_send_read(vf_read_startpacket, false); /* queued: started by b's cancel routine */
    PIRP d = vf_send_read(vf_read_startpacket, false); /* queued: waits */
    REQUIRE(n_parked == 1 && parked[0] == a);

    /* a finishes: IoStartNextPacket dequeues b; b is cancelled before its StartIo runs. */
    cancel_target = b;
    plat_store32(&hook_armed, 1);
    plat_set_point_hook(cancel_before_startio);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    IoStartNextPacket(vf.dev, TRUE);
    vf_complete(a, STATUS_SUCCESS);
    KeLowerIrql(old);
    plat_set_point_hook(NULL);
    CHECK_EQ(plat_load32(&hook_armed), 0);
    CHECK_EQ(vf.last_status, STATUS_SUCCESS);    /* a */
    CHECK_EQ(b->IoStatus.Status, STATUS_CANCELLED); /* by its cancel routine, before StartIo */
    CHECK_EQ(n_parked, 2);
    CHECK_PTR(parked[1], c); /* c is in the hardware; b's late StartIo left it alone */
    CHECK_PTR(vf.dev->CurrentIrp, c);

    /* No false stall: c is being worked on, d waits for it. */
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    EXPECT_NO_REPORT();

    /* c completes without IoStartNextPacket: a real stall (d waits forever), and it is seen.
     * Before the fix the verifier's current IRP was b (its late StartIo), so nothing. */
    vf_complete(c, STATUS_SUCCESS);
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", c);

    vf_start_next(); /* d */
    CHECK_EQ(n_parked, 3);
    CHECK_PTR(parked[2], d);
    vf_complete(d, STATUS_SUCCESS);
    vf_start_next(); /* empty: the device is idle */
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    VF_TEARDOWN(a, b, c, d);
}

/* IoReuseIrp keeps the id: make the IRP sendable again. */
static void resend(PIRP irp)
{
    IoReuseIrp(irp, STATUS_SUCCESS);
    IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
    PIRP fresh = vf_irp(1, false); /* borrow the fixture's completion routine and context */
    PIO_STACK_LOCATION from = IoGetNextIrpStackLocation(fresh);
    IoSetCompletionRoutine(irp, from->CompletionRoutine, from->Context, TRUE, TRUE, TRUE);
    IoFreeIrp(fresh);
    vf.read = vf_read_startpacket;
    vf.sent = vf_send(irp);
}

TEST(a_recycled_irp_that_stalls_again_is_reported_again)
{
    vf_setup();
    memset(parked, 0, sizeof parked);
    n_parked = 0;
    vf.startio = parking_startio;
    vf.cancel = NULL;
    PIRP a = vf_send_read(vf_read_startpacket, false); /* current */
    PIRP b = vf_send_read(vf_read_startpacket, false); /* waits */
    uint32_t id = io_irp_id(a);

    /* First stall: a completes, nobody starts b. Reported once, however often it is checked. */
    vf_complete(a, STATUS_SUCCESS);
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", a);
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    EXPECT_NO_REPORT();

    /* Progress: b runs and the queue drains; the device goes idle. */
    vf_start_next();
    CHECK_PTR(parked[1], b);
    vf_complete(b, STATUS_SUCCESS);
    vf_start_next();
    CHECK(!vf.dev->DeviceQueue.Busy);

    /* a is recycled (same id), becomes current again, and stalls the queue again behind c. */
    resend(a);
    CHECK_EQ(io_irp_id(a), id);
    CHECK_EQ(n_parked, 3);
    CHECK_PTR(parked[2], a);
    PIRP c = vf_send_read(vf_read_startpacket, false); /* waits */
    CHECK_EQ(irpk_verifier_check_stalls(), 0); /* a is in the hardware: no stall yet */
    vf_complete(a, STATUS_SUCCESS);
    /* A new stall: reported (before the fix: silent, its id had been reported already). */
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", a);
    CHECK_EQ(irpk_verifier_check_stalls(), 0); /* and still only once */
    EXPECT_NO_REPORT();

    vf_start_next(); /* c */
    CHECK_PTR(parked[3], c);
    vf_complete(c, STATUS_SUCCESS);
    vf_start_next();
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    VF_TEARDOWN(a, b, c);
}
