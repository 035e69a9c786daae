/* The classic races of VERIFIER.md §2 as buggy drivers, made deterministic by ordering the
 * threads with gates (R1, R3, R4, R5, R9, R11), each with its correct twin. The verifier must
 * report the bug every time, whatever the interleaving would normally have been. */
#include "vfixture.h"

static vf_gate in_window, cancelled, step_done;
static PIRP target;

static void gates_reset(void)
{
    memset(&in_window, 0, sizeof in_window);
    memset(&cancelled, 0, sizeof cancelled);
    memset(&step_done, 0, sizeof step_done);
    target = NULL;
}

/* Canceller thread: waits for the window, cancels `target`, says so. */
static void canceller(void *arg)
{
    (void)arg;
    vf_gate_wait(&in_window);
    io_irp_ref(target); /* IoCancelIrp callers keep the IRP alive */
    IoCancelIrp(target);
    io_irp_unref(target);
    vf_gate_open(&cancelled);
}

/* `target` (completion runs through) sent to the StartIo driver with `cancel` armed while the
 * canceller waits for the window; `hook` (unless NULL) runs at the scheduling points of the send. */
static void run_startio_race(PDRIVER_CANCEL cancel, PDRIVER_STARTIO startio, plat_point_hook hook)
{
    gates_reset();
    vf.read = vf_read_startpacket;
    vf.cancel = cancel;
    vf.startio = startio;
    target = vf_irp(1, true);
    plat_thread *t = plat_thread_start(canceller, NULL, "canceller", 0);
    if (hook) plat_set_point_hook(hook);
    vf_send(target);
    if (hook) plat_set_point_hook(NULL);
    plat_thread_join(t); /* (R5: the cancel comes strictly after the completion) */
}

/* ---- R1: cancel vs the StartIo window (IoStartPacket dropped the cancel lock, StartIo has
 * not taken it yet). The cancel routine finds the IRP current and completes it; a StartIo
 * that does not re-check `Irp != CurrentIrp || Irp->Cancel` completes it again. */

static VOID r1_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    if (irp == dev->CurrentIrp) { /* the seed's cancel routine */
        KIRQL old = irp->CancelIrql;
        IoReleaseCancelSpinLock(DISPATCH_LEVEL);
        IoStartNextPacket(dev, TRUE);
        KeLowerIrql(old);
    } else {
        KeRemoveEntryDeviceQueue(&dev->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
        IoReleaseCancelSpinLock(irp->CancelIrql);
    }
    vf_complete(irp, STATUS_CANCELLED);
}

static VOID r1_startio_buggy(PDEVICE_OBJECT dev, PIRP irp)
{
    IoSetCancelRoutine(irp, NULL); /* the bug: the result is ignored, no re-check */
    vf_complete(irp, STATUS_SUCCESS);
    IoStartNextPacket(dev, TRUE);
}

static VOID r1_startio_correct(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL old;
    IoAcquireCancelSpinLock(&old);
    if (irp != dev->CurrentIrp || irp->Cancel) { /* the cancel routine owns it */
        IoReleaseCancelSpinLock(old);
        return;
    }
    IoSetCancelRoutine(irp, NULL);
    IoReleaseCancelSpinLock(old);
    vf_complete(irp, STATUS_SUCCESS);
    IoStartNextPacket(dev, TRUE);
}

/* Holds StartIo at its entry (after the cancel lock was dropped) until the cancel ran. */
static void hold_startio(const char *op, const void *obj)
{
    if (strcmp(op, "StartIo") || obj != target) return;
    vf_gate_open(&in_window);
    vf_gate_wait(&cancelled);
}

TEST(r1_startio_without_recheck_double_completes_0x44)
{
    vf_setup();
    run_startio_race(r1_cancel, r1_startio_buggy, hold_startio);
    CHECK_EQ(vf.completions, 1); /* the cancel routine's; StartIo's second one was ignored */
    CHECK_EQ(vf.last_status, STATUS_CANCELLED);
    CHECK_CONTAINS(vf_text(), "cancel routine called");
    EXPECT_REPORT(0x44, (uintptr_t)target, "MULTIPLE_IRP_COMPLETE_REQUESTS", target);
    VF_TEARDOWN(target);
}

TEST(r1_twin_startio_rechecks_under_the_cancel_lock)
{
    vf_setup();
    run_startio_race(r1_cancel, r1_startio_correct, hold_startio);
    CHECK_EQ(vf.completions, 1);
    CHECK_EQ(vf.last_status, STATUS_CANCELLED);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(target);
}

/* ---- R3: the lost cancel. IoCancelIrp runs before the driver armed its cancel routine (it
 * only sets Cancel); a driver that arms and queues without re-checking Cancel keeps the IRP
 * forever. */

static bool r3_recheck;

static VOID queue_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old;
    IoReleaseCancelSpinLock(irp->CancelIrql);
    KeAcquireSpinLock(&vf.queue_lock, &old);
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
    InitializeListHead(&irp->Tail.Overlay.ListEntry); /* a second unlink is harmless */
    KeReleaseSpinLock(&vf.queue_lock, old);
    vf_complete(irp, STATUS_CANCELLED);
}

/* Link the IRP into vf.queue and arm queue_cancel; with `recheck` (the correct pattern) an IRP
 * cancelled before the routine was armed is taken out again and completed. */
static void queue_insert(PIRP irp, bool recheck)
{
    KIRQL old;
    KeAcquireSpinLock(&vf.queue_lock, &old);
    InsertTailList(&vf.queue, &irp->Tail.Overlay.ListEntry);
    IoSetCancelRoutine(irp, queue_cancel);
    if (recheck && irp->Cancel && IoSetCancelRoutine(irp, NULL)) {
        RemoveEntryList(&irp->Tail.Overlay.ListEntry);
        KeReleaseSpinLock(&vf.queue_lock, old);
        vf_complete(irp, STATUS_CANCELLED);
        return;
    }
    KeReleaseSpinLock(&vf.queue_lock, old);
}

static NTSTATUS r3_read(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf_gate_open(&in_window); /* the window: IoCancelIrp finds no cancel routine */
    vf_gate_wait(&cancelled);
    queue_insert(irp, r3_recheck); /* the bug: no re-check; the twin re-checks */
    return STATUS_PENDING;
}

static void run_r3(bool recheck)
{
    gates_reset();
    r3_recheck = recheck;
    vf.read = r3_read;
    target = vf_irp(1, false);
    plat_thread *t = plat_thread_start(canceller, NULL, "canceller", 0);
    vf_send(target);
    plat_thread_join(t);
}

TEST(r3_arming_without_recheck_loses_the_cancel_c4_135)
{
    vf_setup();
    run_r3(false);
    CHECK_EQ(vf.completions, 0);
    CHECK_EQ(irpk_verifier_check_quiescence(), 1);
    EXPECT_REPORT(0xC4, 0x135, NULL, target);
    IoSetCancelRoutine(target, NULL); /* clean up as the driver should have */
    RemoveEntryList(&target->Tail.Overlay.ListEntry);
    vf_complete(target, STATUS_CANCELLED);
    VF_TEARDOWN(target);
}

TEST(r3_twin_rechecks_cancel_after_arming)
{
    vf_setup();
    run_r3(true);
    CHECK_EQ(vf.completions, 1);
    CHECK_EQ(vf.last_status, STATUS_CANCELLED);
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(target);
}

/* ---- R4: a dequeuer ignores the NULL from IoSetCancelRoutine(NULL) while the cancel routine
 * runs: both complete the IRP. */

static NTSTATUS queue_read(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    queue_insert(irp, true);
    return STATUS_PENDING;
}

static void dequeue_and_complete(bool honour_null)
{
    KIRQL old;
    KeAcquireSpinLock(&vf.queue_lock, &old);
    PLIST_ENTRY e = RemoveHeadList(&vf.queue);
    InitializeListHead(e);
    KeReleaseSpinLock(&vf.queue_lock, old);
    PIRP irp = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
    vf_gate_open(&in_window); /* dequeued: now the cancel runs to its end */
    vf_gate_wait(&cancelled);
    if (IoSetCancelRoutine(irp, NULL) || !honour_null) vf_complete(irp, STATUS_SUCCESS);
}

static void run_r4(bool honour_null)
{
    gates_reset();
    target = vf_send_read(queue_read, true);
    plat_thread *t = plat_thread_start(canceller, NULL, "canceller", 0);
    dequeue_and_complete(honour_null);
    plat_thread_join(t);
}

TEST(r4_dequeuer_ignoring_null_double_completes_0x44)
{
    vf_setup();
    run_r4(false);
    CHECK_EQ(vf.completions, 1);
    CHECK_EQ(vf.last_status, STATUS_CANCELLED);
    EXPECT_REPORT(0x44, (uintptr_t)target, "MULTIPLE_IRP_COMPLETE_REQUESTS", target);
    VF_TEARDOWN(target);
}

TEST(r4_twin_dequeuer_honours_null)
{
    vf_setup();
    run_r4(true);
    CHECK_EQ(vf.completions, 1);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(target);
}

/* ---- R5: StartIo completes with the cancel routine still set; a later IoCancelIrp (another
 * thread) would call it on a completed IRP. */

static VOID r5_startio_buggy(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf_complete(irp, STATUS_SUCCESS); /* the bug: IoStartPacket armed vf.cancel */
    vf_gate_open(&in_window);
}

static VOID r5_startio_correct(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    if (IoSetCancelRoutine(irp, NULL)) vf_complete(irp, STATUS_SUCCESS);
    vf_gate_open(&in_window);
}

TEST(r5_complete_with_cancel_routine_set_reports_c9_07_at_completion)
{
    vf_setup();
    run_startio_race(vf_cancel_startio, r5_startio_buggy, NULL);
    EXPECT_REPORT(0xC9, 0x07, NULL, target); /* the later IoCancelIrp found nothing to call */
    VF_TEARDOWN(target);
}

TEST(r5_with_switch6_off_reports_0x48_when_the_cancel_comes)
{
    vf_setup();
    irpk_compat_set(IRPK_COMPAT_VERIFY_COMPLETE_WITH_CANCEL_ROUTINE, 0);
    run_startio_race(vf_cancel_startio, r5_startio_buggy, NULL);
    EXPECT_REPORT(0x48, (uintptr_t)target, "CANCEL_STATE_IN_COMPLETED_IRP", target);
    VF_TEARDOWN(target);
}

TEST(r5_twin_clears_the_cancel_routine_before_completing)
{
    vf_setup();
    run_startio_race(vf_cancel_startio, r5_startio_correct, NULL);
    CHECK_EQ(vf.completions, 1);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(target);
}

/* ---- R9: the cancel routine keeps the cancel lock: without the verifier every later cancel
 * (from any thread) spins forever; with it the lock is released and the next cancel works. */

static bool r9_release;

static VOID r9_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    KeRemoveEntryDeviceQueue(&dev->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
    if (r9_release) IoReleaseCancelSpinLock(irp->CancelIrql); /* the bug when missing */
    vf_complete(irp, STATUS_CANCELLED);
}

static VOID good_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    KeRemoveEntryDeviceQueue(&dev->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
    IoReleaseCancelSpinLock(irp->CancelIrql);
    vf_complete(irp, STATUS_CANCELLED);
}

static PIRP second;

static void second_canceller(void *arg)
{
    (void)arg;
    vf_gate_wait(&step_done);
    IoCancelIrp(second); /* would spin forever on a leaked cancel lock */
    vf_gate_open(&cancelled);
}

static void run_r9(bool release)
{
    gates_reset();
    r9_release = release;
    vf.read = vf_read_startpacket;
    vf.cancel = r9_cancel;
    vf.startio = NULL; /* the first IRP stays current, the others queue */
    PIRP current = vf_irp(1, false);
    target = vf_irp(1, false);
    second = vf_irp(1, false);
    vf_send(current);
    vf_send(target);
    vf.cancel = good_cancel; /* the next cancel shows whether the cancel lock is usable */
    vf_send(second);
    plat_thread *t1 = plat_thread_start(canceller, NULL, "canceller-1", 0);
    plat_thread *t2 = plat_thread_start(second_canceller, NULL, "canceller-2", 0);
    vf_gate_open(&in_window);
    vf_gate_wait(&cancelled); /* canceller-1 done */
    memset(&cancelled, 0, sizeof cancelled);
    vf_gate_open(&step_done);
    vf_gate_wait(&cancelled); /* canceller-2 done */
    plat_thread_join(t1);
    plat_thread_join(t2);
    CHECK_EQ(vf.completions, 2); /* both queued IRPs cancelled */
    vf_finish_current();
    IoFreeIrp(current);
    IoFreeIrp(second);
}

TEST(r9_cancel_lock_kept_reports_0x11b_then_spinlocksafe_and_the_next_cancel_works)
{
    vf_setup();
    run_r9(false);
    CHECK_EQ(irpk_report_count(), 2);
    CHECK_EQ(irpk_report_code(0), 0x11B); /* the root cause first */
    CHECK_STR(irpk_report_name(1), "SpinLockSafe");
    irpk_reports_clear();
    VF_TEARDOWN(target);
}

TEST(r9_twin_releases_the_cancel_lock)
{
    vf_setup();
    run_r9(true);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(target);
}

/* ---- R11: the error path forgets IoStartNextPacket; two readers' IRPs wait forever. */

static bool r11_correct;

static VOID r11_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    bool malformed = irp == target;
    vf_complete(irp, malformed ? STATUS_INVALID_PARAMETER : STATUS_SUCCESS);
    if (!malformed || r11_correct) IoStartNextPacket(dev, FALSE); /* the bug: not on error */
}

static PIRP reader_irps[2];

static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    vf_gate_wait(&in_window); /* after the malformed IRP became current */
    reader_irps[i] = vf_irp(1, false);
    vf_send(reader_irps[i]);
    if (i == 0) vf_gate_open(&step_done);
}

static void run_r11(bool correct)
{
    gates_reset();
    r11_correct = correct;
    vf.read = vf_read_startpacket;
    vf.startio = NULL;
    PIRP busy = vf_irp(1, false);
    vf_send(busy); /* current, so the next IRPs queue */
    target = vf_irp(1, false);
    vf_send(target);
    vf.startio = r11_startio;
    plat_thread *r0 = plat_thread_start(reader, (void *)0, "reader-1", 0);
    vf_gate_open(&in_window);
    vf_gate_wait(&step_done);
    plat_thread *r1 = plat_thread_start(reader, (void *)1, "reader-2", 0);
    plat_thread_join(r0);
    plat_thread_join(r1);
    vf_finish_current(); /* busy done: the malformed one starts, then the readers' (or not) */
    IoFreeIrp(busy);
}

TEST(r11_error_path_without_iostartnextpacket_is_a_queue_stall)
{
    vf_setup();
    run_r11(false);
    CHECK_EQ(vf.completions, 2); /* busy + the malformed one; the readers' wait */
    CHECK_EQ(irpk_verifier_check_stalls(), 1);
    CHECK_CONTAINS(vf_text(), "2 IRP(s) wait");
    EXPECT_REPORT(0xC4, IRPK_RULE_QUEUE_STALL, "QueueStall", target);
    r11_correct = true; /* unstick: the readers' IRPs run */
    vf_start_next();
    CHECK_EQ(vf.completions, 4);
    VF_TEARDOWN(target, reader_irps[0], reader_irps[1]);
}

TEST(r11_twin_starts_the_next_packet_on_every_path)
{
    vf_setup();
    run_r11(true);
    CHECK_EQ(vf.completions, 4);
    CHECK_EQ(irpk_verifier_check_stalls(), 0);
    EXPECT_NO_REPORT();
    VF_TEARDOWN(target, reader_irps[0], reader_irps[1]);
}
