/* The cancel-safe queue under the race explorer: the `own-queue` scenario of the built-in
 * mutants (two readers, a canceller, a device thread that dequeues and completes) with the
 * hand-rolled queue replaced by IoCsq*. Explored exhaustively to two preemptions and with PCT:
 * every IRP completed exactly once, never while listed, nothing left queued — where the
 * hand-rolled R3 and R4 mutants of the same scenario fail (tests/explore, docs/explorer.md).
 * A second variant inserts with IO_CSQ_IRP_CONTEXT and dequeues by context (IoCsqRemoveIrp).
 *
 * Registered as the `csq` scenario when the explorer's registration API is there. */
#include <ntddk.h>

#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "irpkit/verifier.h"
#include "test.h"

#define NIRPS 2

static struct {
    PDEVICE_OBJECT dev;
    IO_CSQ csq;
    KSPIN_LOCK lock;
    LIST_ENTRY list;
    bool by_context;
    bool mutant_dc3; /* Insert keeps its own pointer in DriverContext[3] (the library's) */
    PIRP irps[NIRPS];
    IO_CSQ_IRP_CONTEXT ctx[NIRPS];
    int32_t completions[NIRPS];
    int32_t listed_at_completion;
    int32_t sent;
} X;

/* Every simulated thread on its own virtual CPU (main keeps 0): the races are between CPUs. */
static void own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

static int index_of(PIRP irp)
{
    for (int i = 0; i < NIRPS; i++)
        if (X.irps[i] == irp) return i;
    return -1;
}

static VOID x_insert(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    InsertTailList(&X.list, &irp->Tail.Overlay.ListEntry);
    irp->Tail.Overlay.DriverContext[0] = (PVOID)1; /* listed */
    if (X.mutant_dc3) irp->Tail.Overlay.DriverContext[3] = &X.listed_at_completion; /* the bug */
}

static VOID x_remove(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
    irp->Tail.Overlay.DriverContext[0] = NULL;
}

static PIRP x_peek(PIO_CSQ csq, PIRP irp, PVOID context)
{
    UNREFERENCED_PARAMETER(csq);
    UNREFERENCED_PARAMETER(context);
    PLIST_ENTRY next = irp ? irp->Tail.Overlay.ListEntry.Flink : X.list.Flink;
    return next == &X.list ? NULL : CONTAINING_RECORD(next, IRP, Tail.Overlay.ListEntry);
}

static VOID x_acquire(PIO_CSQ csq, PKIRQL irql)
{
    UNREFERENCED_PARAMETER(csq);
    KeAcquireSpinLock(&X.lock, irql);
}

static VOID x_release(PIO_CSQ csq, KIRQL irql)
{
    UNREFERENCED_PARAMETER(csq);
    KeReleaseSpinLock(&X.lock, irql);
}

static void complete(PIRP irp, NTSTATUS status)
{
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

static VOID x_complete_canceled(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    complete(irp, STATUS_CANCELLED);
}

static NTSTATUS x_read(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    int i = index_of(irp);
    IoCsqInsertIrp(&X.csq, irp, X.by_context ? &X.ctx[i] : NULL);
    return STATUS_PENDING;
}

static NTSTATUS x_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->MajorFunction[IRP_MJ_READ] = x_read;
    NTSTATUS st = IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &X.dev);
    if (NT_SUCCESS(st)) X.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

/* The originator lets completion run to the top: a second completion would be 0x44. */
static NTSTATUS count_completion(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    if (irp->Tail.Overlay.DriverContext[0]) plat_store32(&X.listed_at_completion, 1);
    plat_fetch_add32(&X.completions[(intptr_t)ctx], 1);
    return STATUS_SUCCESS; /* STATUS_CONTINUE_COMPLETION */
}

static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    own_vcpu((uint8_t)(1 + i));
    IoCallDriver(X.dev, X.irps[i]);
    plat_fetch_add32(&X.sent, 1);
}

static void canceller(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 1);
    IoCancelIrp(X.irps[NIRPS - 1]);
}

/* Once both were sent, take each queued IRP and complete it. */
static void device(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 2);
    while (plat_load32(&X.sent) < NIRPS) plat_yield();
    if (X.by_context) {
        for (int i = 0; i < NIRPS; i++) {
            PIRP irp = IoCsqRemoveIrp(&X.csq, &X.ctx[i]);
            if (irp) complete(irp, STATUS_SUCCESS);
        }
        return;
    }
    PIRP irp;
    while ((irp = IoCsqRemoveNextIrp(&X.csq, NULL)) != NULL) complete(irp, STATUS_SUCCESS);
}

static void run(bool by_context, bool mutant_dc3)
{
    memset(&X, 0, sizeof X);
    X.by_context = by_context;
    X.mutant_dc3 = mutant_dc3;
    KeInitializeSpinLock(&X.lock);
    InitializeListHead(&X.list);
    IoCsqInitialize(&X.csq, x_insert, x_remove, x_peek, x_acquire, x_release, x_complete_canceled);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\ExploreCsq");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, x_entry)));
    for (int i = 0; i < NIRPS; i++) {
        X.irps[i] = IoAllocateIrp(1, FALSE);
        IoGetNextIrpStackLocation(X.irps[i])->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(X.irps[i], count_completion, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
    irpk_thread *t[NIRPS + 2];
    int n = 0;
    t[n++] = irpk_thread_start(reader, (void *)(intptr_t)0, "reader-1");
    t[n++] = irpk_thread_start(reader, (void *)(intptr_t)1, "reader-2");
    t[n++] = irpk_thread_start(canceller, NULL, "canceller");
    t[n++] = irpk_thread_start(device, NULL, "device");
    for (int i = 0; i < n; i++) irpk_thread_join(t[i]);
    for (int i = 0; i < NIRPS; i++)
        if (X.completions[i] != 1)
            irpk_explore_fail("IRP#%u completed %d times (%s)", io_irp_id(X.irps[i]), (int)X.completions[i],
                              X.completions[i] ? "double completion" : "lost: never completed");
    IRPK_EXPLORE_CHECK(!X.listed_at_completion);
    IRPK_EXPLORE_CHECK(IsListEmpty(&X.list));
}

static void scenario_csq(void *arg) { (void)arg, run(false, false); }
static void scenario_csq_context(void *arg) { (void)arg, run(true, false); }
static void scenario_csq_dc3_mutant(void *arg) { (void)arg, run(false, true); }

static void explore_and_expect_none(irpk_scenario_fn fn, const char *what)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_DFS;
    o.bound = irpk_test_scale(100) >= 100 ? 3 : 2; /* sanitizer runs scale down */
    o.time_limit_s = 8; /* exhausts bound 3 in ~5 s natively; sanitizer builds stop early */
    irpk_explore_result r;
    int found = irpk_explore(fn, NULL, &o, &r);
    printf("  %s: DFS bound %u, %llu executions, %s, %.2f s\n", what, r.bound,
           (unsigned long long)r.executions, r.exhaustive ? "exhaustive" : "time limit", r.seconds);
    if (found == 1) fprintf(stderr, "  %s: %s\n%s\n", r.what, r.message, r.swimlane ? r.swimlane : "");
    CHECK_EQ(found, 0);
    irpk_explore_result_free(&r);
    o.strategy = IRPK_STRATEGY_PCT;
    o.max_executions = (uint64_t)irpk_test_scale(1000);
    o.seed = 0xC50;
    found = irpk_explore(fn, NULL, &o, &r);
    printf("  %s: PCT, %llu executions\n", what, (unsigned long long)r.executions);
    if (found == 1) fprintf(stderr, "  %s: %s\n", r.what, r.message);
    CHECK_EQ(found, 0);
    irpk_explore_result_free(&r);
}

TEST(csq_insert_cancel_remove_next_is_race_free)
{
    irpk_reports_set_quiet(1);
    explore_and_expect_none(scenario_csq, "csq");
}

TEST(csq_insert_cancel_remove_by_context_is_race_free)
{
    irpk_reports_set_quiet(1);
    explore_and_expect_none(scenario_csq_context, "csq-context");
}

/* The explorer finds the CSQ-usage bug: an Insert callback that keeps its own data in
 * DriverContext[3] makes the library's cancel routine leave a cancelled IRP alone (T86). */
TEST(csq_mutant_overwriting_driver_context_3_is_found)
{
    irpk_reports_set_quiet(1);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_DFS;
    o.bound = 2;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(scenario_csq_dc3_mutant, NULL, &o, &r), 1);
    printf("  csq-dc3-mutant: %s after %llu executions, %u preemptions: %s\n", r.what,
           (unsigned long long)r.found_at, r.preemptions, r.message);
    CHECK(r.failure == IRPK_FAILURE_REPORT || r.failure == IRPK_FAILURE_ASSERT);
    irpk_explore_result_free(&r);
}
