/* Regression: the queue-stall state of a device (src/verify) is one word — the id of the IRP
 * last handed to StartIo, "completed", and a generation — updated by compare-exchange. It used
 * to be two: IoCompleteRequest checked that its IRP was the device's current one, then stored
 * its id as "current IRP completed". An IoStartNextPacket + StartIo of the next IRP on another
 * thread in between was overwritten: the device read "current IRP completed, no
 * IoStartNextPacket since" while the next IRP was in the hardware and more waited — and the
 * stall check (a checkpoint here; the watchdog once it persisted) reported a QueueStall that
 * did not exist.
 *
 * The window is opened deterministically with the verifier's completion seam (a test hook
 * called between reading the state and publishing the completion): the completing thread
 * signals a second thread that runs IoStartNextPacket (StartIo parks the next IRP) and waits for
 * it. Before the fix: QueueStall reported for IRP#<first>. */
#include <ntddk.h>
#include <string.h>

#include "verify/verify.h"
#include "vfixture.h"

static PIRP parked[3];
static int n_parked;

/* "Hardware": StartIo keeps the IRP; the test completes it. */
static VOID parking_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    if (n_parked < 3) parked[n_parked++] = irp;
}

static PIRP first;
static volatile int32_t seam_armed, seam_ran;
static KEVENT go, done;

static void start_next_thread(void *arg)
{
    (void)arg;
    KeWaitForSingleObject(&go, Executive, KernelMode, FALSE, NULL);
    vf_start_next(); /* the next IRP becomes current and is parked by StartIo */
    KeSetEvent(&done, IO_NO_INCREMENT, FALSE);
}

/* In IoCompleteRequest(first), after the verifier read the device's state: let the other
 * thread start the next packet to the end, then go on. */
static void start_next_in_the_window(PIRP irp)
{
    if (irp != first || plat_cas32(&seam_armed, 1, 0) != 1) return;
    KeSetEvent(&go, IO_NO_INCREMENT, FALSE);
    KeWaitForSingleObject(&done, Executive, KernelMode, FALSE, NULL);
    plat_store32(&seam_ran, 1);
}

TEST(completion_racing_start_next_is_not_a_stall)
{
    vf_setup();
    memset(parked, 0, sizeof parked);
    n_parked = 0;
    vf.startio = parking_startio;
    vf.cancel = NULL;
    PIRP a = vf_send_read(vf_read_startpacket, false); /* current, parked */
    PIRP b = vf_send_read(vf_read_startpacket, false); /* queued */
    PIRP c = vf_send_read(vf_read_startpacket, false); /* queued */
    REQUIRE(n_parked == 1 && parked[0] == a);
    KeInitializeEvent(&go, NotificationEvent, FALSE);
    KeInitializeEvent(&done, NotificationEvent, FALSE);
    first = a;
    plat_store32(&seam_armed, 1);
    vrf_set_completion_seam(start_next_in_the_window);
    plat_thread *t = plat_thread_start(start_next_thread, NULL, "start-next", 0);
    REQUIRE(t);
    vf_complete(a, STATUS_SUCCESS); /* the other thread's IoStartNextPacket runs inside */
    plat_thread_join(t);
    vrf_set_completion_seam(NULL);
    CHECK_EQ(plat_load32(&seam_ran), 1);
    CHECK_EQ(n_parked, 2);
    CHECK_PTR(parked[1], b); /* b is in the hardware, c waits: no stall */
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    EXPECT_NO_REPORT();
    /* Now b completes without IoStartNextPacket: that is a stall, and it is still seen. */
    vf_complete(b, STATUS_SUCCESS);
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", b);
    vf_start_next(); /* c */
    CHECK_EQ(n_parked, 3);
    vf_complete(c, STATUS_SUCCESS);
    vf_start_next(); /* the queue is empty: not Busy any more */
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    VF_TEARDOWN(a, b, c);
}
