/* The IRP adapter against DPCs of the submitter's own virtual CPU, under the race explorer.
 *
 * The adapter is called at PASSIVE_LEVEL (a dispatch routine's irpk_irpq_submit, a worker
 * running a PASSIVE handler) and at DISPATCH_LEVEL (a DPC finishing the request with
 * irpk_irpq_complete, IoCancelIrp from a DPC running the adapter's cancel routine, a DPC's
 * completion dispatching the next IRP to a PASSIVE handler). Under the explorer a thread at
 * DISPATCH_LEVEL keeps its vCPU while it runs or waits for a lock, so a DPC that preempts a
 * PASSIVE holder of one of the adapter's locks on the holder's own vCPU and then waits for that
 * lock shuts the holder out for good: a deadlock report for a schedule no Windows machine can
 * run, where the equivalent lock would be held at DISPATCH_LEVEL (tests/ke/
 * test_internal_lock_irql.c does the same for ke's internal locks).
 *
 * Three scenarios, each with the default placement (no thread picks its vCPU; every DPC is
 * queued from, and runs on, the vCPU of the thread it races) and each explored exhaustively to
 * two preemptions (one in sanitizer runs), expecting no failure:
 *
 *  1. dpc-complete: main submits three IRPs at PASSIVE_LEVEL; the handler (caller's IRQL) starts
 *     the device by queueing a DPC on main's vCPU, the DPC completes the running IRP with
 *     irpk_irpq_complete (which dispatches the next IRP on the DPC). Races: main's submits hold
 *     the queue lock across the adapter's arm hook (atomics: scheduling points) vs the DPC's
 *     irpk_irpq_complete taking the same lock.
 *  2. dpc-cancel: main submits a running and a queued IRP, queues a DPC on its vCPU that calls
 *     IoCancelIrp on the queued one (the adapter's cancel routine runs at DISPATCH_LEVEL and
 *     calls irpk_req_cancel), and submits a third IRP meanwhile.
 *  3. dpc-passive-worker: as 1 with handler_irql PASSIVE. An IRP the DPC's completion dispatches
 *     goes to the adapter's PASSIVE worker (defer_to_worker takes the adapter's worker lock at
 *     DISPATCH_LEVEL); the handler, running on the worker, queues the DPC on the worker's vCPU,
 *     and the worker holds the same lock at PASSIVE_LEVEL between IRPs.
 *
 * Outcome checked in every schedule: each IRP's completion routine ran exactly once, in
 * submission order, with the expected status; the DPC really ran on the racing thread's vCPU;
 * the queue is empty at the end and the adapter closes; the submitter is back at PASSIVE_LEVEL.
 *
 * Both locks — the queue's (irpk_queue.lock, 1 and 2) and the adapter's worker lock
 * (irpk_irpq.lock, 3) — are held at DISPATCH_LEVEL under the explorer (plat_lock_acquire_cpu).
 * Before that each scenario was reported as a deadlock at its first preemption: the holder at
 * PASSIVE_LEVEL inside arm_cancel / the worker loop, the DPC of its vCPU at DISPATCH_LEVEL
 * waiting for the lock. Run it alone: build/tests/queue/test_irp_adapter_dpc_explore [case]. */
#include <ntddk.h>
#include <string.h>

#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/irpqueue.h"
#include "irpkit/queue.h"
#include "irpkit/thread.h"
#include "irpkit/verifier.h"
#include "explore_check.h"
#include "test.h"

#define NIRPS 3

static struct {
    PDEVICE_OBJECT dev;
    irpk_irpq *q;
    PIRP irp[NIRPS];
    int32_t completions[NIRPS];
    NTSTATUS status[NIRPS];
    int32_t order[NIRPS]; /* order[k]: index of the k-th IRP completed */
    volatile int32_t ncompleted;
    KEVENT all_done;  /* notification: every IRP completed */
    KEVENT dpc_done;  /* notification: the cancelling DPC returned */
    KDPC dpc;         /* the device's "interrupt": finishes the running IRP */
    PIRP volatile active;      /* the IRP the handler started */
    volatile int32_t dpc_vcpu; /* vCPU the thread that queued the DPC ran on (+1; 0 unset) */
    volatile int32_t wrong_vcpu;
    BOOLEAN cancel_rc;
} X;

/* ------------------------------------------------------------------ the driver */

static NTSTATUS x_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    intptr_t i = (intptr_t)ctx;
    X.status[i] = irp->IoStatus.Status;
    plat_fetch_add32(&X.completions[i], 1);
    int32_t k = plat_fetch_add32(&X.ncompleted, 1);
    if (k < NIRPS) X.order[k] = (int32_t)i;
    if (k + 1 == NIRPS) KeSetEvent(&X.all_done, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the scenario keeps the IRPs to inspect them */
}

/* The device's DPC: complete the IRP the handler started. It must run on the vCPU of the
 * thread that queued it (that is the whole point of the scenario). */
static VOID x_complete_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx), UNREFERENCED_PARAMETER(a2);
    if ((int32_t)plat_self()->vcpu + 1 != plat_load32(&X.dpc_vcpu)) plat_store32(&X.wrong_vcpu, 1);
    PIRP irp = a1;
    int rc = irpk_irpq_complete(X.q, irp, STATUS_SUCCESS, 0);
    if (rc != 0) irpk_explore_fail("DPC: irpk_irpq_complete of the running IRP#%u: %d", io_irp_id(irp), rc);
}

/* Handler: start the "device", which interrupts on the current vCPU (KeInsertQueueDpc without
 * a target: the DPC runs on the inserting thread's vCPU). */
static VOID x_start_device(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)q, (void)ctx;
    plat_store_ptr((void *volatile *)&X.active, irp);
    plat_store32(&X.dpc_vcpu, (int32_t)plat_self()->vcpu + 1);
    KeInsertQueueDpc(&X.dpc, irp, NULL);
}

/* Handler for the cancel scenario: record the IRP, the test finishes it. */
static VOID x_record(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)q, (void)ctx;
    plat_store_ptr((void *volatile *)&X.active, irp);
}

static NTSTATUS x_read(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    return irpk_irpq_submit(X.q, irp, NULL);
}

static NTSTATUS x_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\IrpqDpc");
    drv->MajorFunction[IRP_MJ_READ] = x_read;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &X.dev);
    if (NT_SUCCESS(st)) X.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

static void x_setup(IRPK_IRPQ_HANDLER *handler, irpk_irpq_irql irql)
{
    memset(&X, 0, sizeof X);
    KeInitializeEvent(&X.all_done, NotificationEvent, FALSE);
    KeInitializeEvent(&X.dpc_done, NotificationEvent, FALSE);
    KeInitializeDpc(&X.dpc, x_complete_dpc, NULL);
    irpk_irpq_config c;
    irpk_irpq_config_init(&c);
    c.handler = handler;
    c.handler_irql = irql;
    IRPK_EXPLORE_CHECK(irpk_irpq_create(&c, &X.q) == 0);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\IrpqDpc");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, x_entry)));
    for (int i = 0; i < NIRPS; i++) {
        X.irp[i] = IoAllocateIrp(1, FALSE);
        IoGetNextIrpStackLocation(X.irp[i])->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(X.irp[i], x_done, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
}

static void x_check_end(const NTSTATUS *expect)
{
    for (int i = 0; i < NIRPS; i++) {
        if (X.completions[i] != 1)
            irpk_explore_fail("IRP %d completed %d times", i, (int)X.completions[i]);
        if (X.status[i] != expect[i])
            irpk_explore_fail("IRP %d completed with 0x%08x, expected 0x%08x", i,
                              (unsigned)X.status[i], (unsigned)expect[i]);
    }
    IRPK_EXPLORE_CHECK(plat_load32(&X.wrong_vcpu) == 0);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    irpk_queue_stats st;
    irpk_queue_stats_get(irpk_irpq_queue(X.q), &st);
    IRPK_EXPLORE_CHECK(st.live == 0);
    IRPK_EXPLORE_CHECK(st.submitted == NIRPS);
    IRPK_EXPLORE_CHECK(irpk_irpq_free(X.q) == 0);
}

/* ------------------------------------------------------------------ 1. DPC completes */

static void dpc_complete_scenario(void *arg)
{
    (void)arg;
    x_setup(x_start_device, IRPK_IRPQ_IRQL_CALLER);
    /* IRP 0 starts at once (its DPC is queued on main's vCPU); 1 and 2 are submitted while the
     * DPC may complete 0 — and then 1, which its own completion dispatched on the DPC. */
    for (int i = 0; i < NIRPS; i++) {
        IRPK_EXPLORE_CHECK(IoCallDriver(X.dev, X.irp[i]) == STATUS_PENDING);
        IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    }
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&X.all_done, Executive, KernelMode, FALSE, NULL) ==
                       STATUS_SUCCESS);
    for (int k = 0; k < NIRPS; k++)
        if (X.order[k] != k) irpk_explore_fail("completion %d was IRP %d (FIFO broken)", k, (int)X.order[k]);
    static const NTSTATUS expect[NIRPS] = {STATUS_SUCCESS, STATUS_SUCCESS, STATUS_SUCCESS};
    x_check_end(expect);
}

/* ------------------------------------------------------------------ 2. DPC cancels */

static VOID x_cancel_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx), UNREFERENCED_PARAMETER(a2);
    if ((int32_t)plat_self()->vcpu + 1 != plat_load32(&X.dpc_vcpu)) plat_store32(&X.wrong_vcpu, 1);
    X.cancel_rc = IoCancelIrp((PIRP)a1); /* the adapter's cancel routine, at DISPATCH_LEVEL */
    KeSetEvent(&X.dpc_done, IO_NO_INCREMENT, FALSE);
}

static void dpc_cancel_scenario(void *arg)
{
    (void)arg;
    x_setup(x_record, IRPK_IRPQ_IRQL_CALLER);
    KeInitializeDpc(&X.dpc, x_cancel_dpc, NULL);
    IRPK_EXPLORE_CHECK(IoCallDriver(X.dev, X.irp[0]) == STATUS_PENDING); /* running */
    IRPK_EXPLORE_CHECK(IoCallDriver(X.dev, X.irp[1]) == STATUS_PENDING); /* queued behind it */
    plat_store32(&X.dpc_vcpu, (int32_t)plat_self()->vcpu + 1);
    KeInsertQueueDpc(&X.dpc, X.irp[1], NULL); /* on main's vCPU */
    IRPK_EXPLORE_CHECK(IoCallDriver(X.dev, X.irp[2]) == STATUS_PENDING); /* races the DPC */
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&X.dpc_done, Executive, KernelMode, FALSE, NULL) ==
                       STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(X.cancel_rc == TRUE);
    /* IRP 1 was queued until IRP 0 completes, which only happens now: cancelled while queued. */
    IRPK_EXPLORE_CHECK(plat_load_ptr((void *const volatile *)&X.active) == X.irp[0]);
    IRPK_EXPLORE_CHECK(irpk_irpq_complete(X.q, X.irp[0], STATUS_SUCCESS, 0) == 0);
    IRPK_EXPLORE_CHECK(plat_load_ptr((void *const volatile *)&X.active) == X.irp[2]);
    IRPK_EXPLORE_CHECK(irpk_irpq_complete(X.q, X.irp[2], STATUS_SUCCESS, 0) == 0);
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&X.all_done, Executive, KernelMode, FALSE, NULL) ==
                       STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(X.order[0] == 1); /* the cancelled one first */
    static const NTSTATUS expect[NIRPS] = {STATUS_SUCCESS, STATUS_CANCELLED, STATUS_SUCCESS};
    x_check_end(expect);
}

/* ------------------------------------------------------------------ 3. PASSIVE handler */

/* The same device, handler at PASSIVE_LEVEL: IRP 0 runs inline on main, IRPs dispatched by the
 * DPC's completion go to the adapter's worker thread, which queues the next DPC on its own
 * vCPU. */
static void dpc_passive_worker_scenario(void *arg)
{
    (void)arg;
    x_setup(x_start_device, IRPK_IRPQ_IRQL_PASSIVE);
    for (int i = 0; i < NIRPS; i++)
        IRPK_EXPLORE_CHECK(IoCallDriver(X.dev, X.irp[i]) == STATUS_PENDING);
    IRPK_EXPLORE_CHECK(KeWaitForSingleObject(&X.all_done, Executive, KernelMode, FALSE, NULL) ==
                       STATUS_SUCCESS);
    for (int k = 0; k < NIRPS; k++)
        if (X.order[k] != k) irpk_explore_fail("completion %d was IRP %d (FIFO broken)", k, (int)X.order[k]);
    static const NTSTATUS expect[NIRPS] = {STATUS_SUCCESS, STATUS_SUCCESS, STATUS_SUCCESS};
    x_check_end(expect);
}

/* ------------------------------------------------------------------ the tests */

static void expect_clean(const char *what, irpk_scenario_fn fn)
{
    irpk_reports_set_quiet(1);
    irpk_test_explore_clean(what, fn, 2, 0); /* default vCPUs and placement */
}

TEST(dpc_completing_on_the_submitters_vcpu_is_no_deadlock)
{
    expect_clean("dpc-complete", dpc_complete_scenario);
}

TEST(dpc_cancelling_on_the_submitters_vcpu_is_no_deadlock)
{
    expect_clean("dpc-cancel", dpc_cancel_scenario);
}

TEST(dpc_dispatching_to_the_passive_worker_on_its_vcpu_is_no_deadlock)
{
    expect_clean("dpc-passive-worker", dpc_passive_worker_scenario);
}
