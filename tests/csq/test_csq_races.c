/* VERIFIER.md §2 races R3 (lost cancel) and R4 (dequeue vs running cancel routine), written as
 * deterministic tests: each forces the bad interleaving with a gate, first against a
 * hand-rolled queue that has the bug, then against a cancel-safe queue (the csq fixture), which
 * is immune by construction.
 *
 * The hand-rolled queue is what drivers wrote before IoCsq: a spin lock, a list, a cancel
 * routine that releases the cancel lock, takes the queue lock and unlinks. Its two mutants:
 *   R3 — insert arms the cancel routine without re-checking Irp->Cancel;
 *   R4 — dequeue ignores a NULL from IoSetCancelRoutine(Irp, NULL) and completes the IRP. */
#include "csq_fixture.h"

/* ---- the hand-rolled queue */

static struct {
    PDEVICE_OBJECT dev;
    KSPIN_LOCK lock;
    LIST_ENTRY list;
    volatile uint32_t arrived, open; /* gate in the cancel routine, before the queue lock */
    volatile int32_t gate_armed;
    BOOLEAN cancel_before_arm; /* the R3 window: IoCancelIrp inside dispatch, before arming */
    BOOLEAN cancel_result;
} hr;

typedef struct hr_irp {
    PIRP irp;
    volatile int32_t completions;
    NTSTATUS status;
} hr_irp;

static VOID hr_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoReleaseCancelSpinLock(irp->CancelIrql);
    if (plat_cas32(&hr.gate_armed, 1, 0) == 1) {
        cfx_post_word(&hr.arrived);
        cfx_wait_word(&hr.open);
    }
    KIRQL irql;
    KeAcquireSpinLock(&hr.lock, &irql);
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
    InitializeListHead(&irp->Tail.Overlay.ListEntry);
    KeReleaseSpinLock(&hr.lock, irql);
    irp->IoStatus.Status = STATUS_CANCELLED;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* R3 mutant: arms the routine and queues, never looks at Irp->Cancel. */
static NTSTATUS hr_read(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    if (hr.cancel_before_arm) hr.cancel_result = IoCancelIrp(irp); /* only sets Cancel */
    KIRQL irql;
    KeAcquireSpinLock(&hr.lock, &irql);
    InsertTailList(&hr.list, &irp->Tail.Overlay.ListEntry);
    IoSetCancelRoutine(irp, hr_cancel);
    KeReleaseSpinLock(&hr.lock, irql);
    return STATUS_PENDING;
}

/* R4 mutant: takes the head and completes it whatever IoSetCancelRoutine returned. */
static PIRP hr_dequeue(void)
{
    KIRQL irql;
    KeAcquireSpinLock(&hr.lock, &irql);
    PIRP irp = NULL;
    if (!IsListEmpty(&hr.list)) {
        irp = CONTAINING_RECORD(RemoveHeadList(&hr.list), IRP, Tail.Overlay.ListEntry);
        InitializeListHead(&irp->Tail.Overlay.ListEntry);
        (void)IoSetCancelRoutine(irp, NULL); /* the bug: a NULL result means "not yours" */
    }
    KeReleaseSpinLock(&hr.lock, irql);
    return irp;
}

static NTSTATUS hr_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->MajorFunction[IRP_MJ_READ] = hr_read;
    NTSTATUS st = IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &hr.dev);
    if (NT_SUCCESS(st)) hr.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

static void hr_setup(void)
{
    memset(&hr, 0, sizeof hr);
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    KeInitializeSpinLock(&hr.lock);
    InitializeListHead(&hr.list);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\handrolled");
    CHECK(NT_SUCCESS(IoCreateDriver(&name, hr_entry)));
}

static void hr_teardown(void)
{
    PDRIVER_OBJECT drv = io_lookup_driver(L"handrolled");
    IoDeleteDevice(hr.dev);
    io_unload_driver(drv);
    irpk_reports_clear();
    irpk_verifier_reset_state();
    CHECK_EQ(io_irps_live(), 0);
}

/* The originator lets completion run to the top, so a second completion is 0x44. */
static NTSTATUS hr_done(PDEVICE_OBJECT dev, PIRP irp, PVOID context)
{
    UNREFERENCED_PARAMETER(dev);
    hr_irp *r = context;
    r->status = irp->IoStatus.Status;
    plat_fetch_add32(&r->completions, 1);
    return STATUS_SUCCESS; /* STATUS_CONTINUE_COMPLETION */
}

static void hr_new(hr_irp *r)
{
    memset(r, 0, sizeof *r);
    r->irp = IoAllocateIrp(1, FALSE);
    IoGetNextIrpStackLocation(r->irp)->MajorFunction = IRP_MJ_READ;
    IoSetCompletionRoutine(r->irp, hr_done, r, TRUE, TRUE, TRUE);
}

static void complete(PIRP irp, NTSTATUS status)
{
    irp->IoStatus.Status = status;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* ---- R3: IoCancelIrp runs before the cancel routine is armed */

TEST(r3_handrolled_queue_loses_a_cancel_that_came_before_arming)
{
    hr_setup();
    hr_irp a;
    hr_new(&a);
    hr.cancel_before_arm = TRUE;
    CHECK_EQ(IoCallDriver(hr.dev, a.irp), STATUS_PENDING);
    CHECK(!hr.cancel_result); /* nothing armed yet: IoCancelIrp only set Cancel */
    /* Queued, cancelled, with a routine nobody will call: CancelIo cancels each IRP once. */
    CHECK_EQ(a.completions, 0);
    CHECK(a.irp->Cancel);
    CHECK(plat_load_ptr((void *const volatile *)&a.irp->CancelRoutine) != NULL);
    CHECK_EQ(irpk_verifier_check_quiescence(), 1);
    CHECK(irpk_report_find(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x135) >= 0);
    /* clean up as an unload would */
    PIRP got = hr_dequeue();
    CHECK_PTR(got, a.irp);
    complete(got, STATUS_CANCELLED);
    IoFreeIrp(a.irp);
    hr_teardown();
}

TEST(r3_csq_completes_an_irp_cancelled_before_insert)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_new(&a, 'A', NULL);
    CHECK(!IoCancelIrp(a.irp));
    cfx_send(&a);
    CHECK_EQ(a.completions, 1);
    CHECK_EQ(a.status, STATUS_CANCELLED);
    CHECK_EQ(cfx.listed, 0);
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    CFX_TEARDOWN(&a);
}

/* The other half of the R3 window: the cancel lands after the IRP is linked but before the
 * library arms its routine (IoCancelIrp called from inside the Insert callback). */
TEST(r3_csq_completes_an_irp_cancelled_between_link_and_arm)
{
    cfx_setup(false);
    cfx_irp a;
    cfx.insert_hook = cfx_cancel_from_hook;
    CHECK_EQ(cfx_send_new(&a, 'A', NULL, false), STATUS_PENDING);
    CHECK(!cfx.hook_cancel_result); /* no routine yet */
    CHECK_STR(cfx_log(), "Acquire Insert Remove(A) Release CompleteCanceled(A)");
    CHECK_EQ(a.completions, 1);
    CHECK_EQ(a.status, STATUS_CANCELLED);
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    CFX_TEARDOWN(&a);
}

/* ---- R4: a dequeuer meets an IRP whose cancel routine is already running */

TEST(r4_handrolled_dequeue_completes_an_irp_its_cancel_routine_owns)
{
    hr_setup();
    hr_irp a, b;
    hr_new(&a);
    hr_new(&b);
    IoCallDriver(hr.dev, a.irp);
    IoCallDriver(hr.dev, b.irp);
    plat_store32(&hr.gate_armed, 1);
    cfx_canceller c; /* (not gated: the gate is the hand-rolled cancel routine's) */
    cfx_cancel_async(&c, a.irp, false);
    cfx_wait_word(&hr.arrived); /* the cancel routine owns A and waits for the queue lock */
    PIRP got = hr_dequeue();    /* the bug: takes A anyway */
    CHECK_PTR(got, a.irp);
    complete(got, STATUS_SUCCESS);
    cfx_post_word(&hr.open); /* the cancel routine unlinks and completes A again */
    cfx_cancel_join(&c);
    CHECK(c.result);
    CHECK_EQ(a.completions, 1); /* the second completion was refused … */
    CHECK_EQ(irpk_report_count_code(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS), 1); /* … as 0x44 */
    got = hr_dequeue();
    CHECK_PTR(got, b.irp);
    complete(got, STATUS_SUCCESS);
    IoFreeIrp(a.irp);
    IoFreeIrp(b.irp);
    hr_teardown();
}

TEST(r4_csq_dequeue_skips_an_irp_whose_cancel_routine_is_running)
{
    cfx_setup(false);
    cfx_irp a, b;
    cfx_send_new(&a, 'A', NULL, true);
    cfx_send_new(&b, 'B', NULL, false);
    cfx_canceller c;
    cfx_cancel_gated(&c, a.irp); /* the library's cancel routine owns A, waits for the lock */
    CHECK_PTR(IoCsqRemoveIrp(&cfx.csq, &a.ctx), NULL);
    PIRP got = IoCsqRemoveNextIrp(&cfx.csq, NULL);
    CHECK_PTR(got, b.irp); /* A is skipped, not taken */
    cfx_complete(got, STATUS_SUCCESS);
    cfx_post_word(&cfx.open);
    cfx_cancel_join(&c);
    CHECK(c.result);
    CHECK_EQ(a.completions, 1);
    CHECK_EQ(a.status, STATUS_CANCELLED);
    CHECK_EQ(b.completions, 1);
    CHECK_EQ(irpk_report_count(), 0);
    CHECK_EQ(irpk_verifier_check_quiescence(), 0);
    CFX_TEARDOWN(&a, &b);
}
