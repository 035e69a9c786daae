/* Cancel-safe queue scenarios: the `own-queue` shape of scenarios_io.c (two readers, a
 * canceller cancelling the second IRP, a device thread that dequeues and completes) with the
 * hand-rolled queue replaced by IoCsq*. `csq` dequeues with IoCsqRemoveNextIrp, `csq-context`
 * inserts with IO_CSQ_IRP_CONTEXT and dequeues each IRP with IoCsqRemoveIrp; both are race-free
 * (every IRP completed exactly once, never while listed, nothing left queued) where the
 * hand-rolled r3/r4 mutants fail. `csq-dc3-mutant` is a driver whose Insert callback keeps its
 * own pointer in DriverContext[3], which belongs to the library while the IRP is queued: the
 * library's cancel routine cannot find the queue and the verifier says why. */
#include <ntddk.h>

#include "explore/scenarios_int.h"
#include "io/io.h"
#include "irpkit/thread.h"

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
} cs;

/* Every simulated thread on its own virtual CPU (main keeps 0): the races are between CPUs. */
static void own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

static int index_of(PIRP irp)
{
    for (int i = 0; i < NIRPS; i++)
        if (cs.irps[i] == irp) return i;
    return -1;
}

static VOID x_insert(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    InsertTailList(&cs.list, &irp->Tail.Overlay.ListEntry);
    irp->Tail.Overlay.DriverContext[0] = (PVOID)1; /* listed */
    if (cs.mutant_dc3) irp->Tail.Overlay.DriverContext[3] = &cs.listed_at_completion; /* the bug */
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
    PLIST_ENTRY next = irp ? irp->Tail.Overlay.ListEntry.Flink : cs.list.Flink;
    return next == &cs.list ? NULL : CONTAINING_RECORD(next, IRP, Tail.Overlay.ListEntry);
}

static VOID x_acquire(PIO_CSQ csq, PKIRQL irql)
{
    UNREFERENCED_PARAMETER(csq);
    KeAcquireSpinLock(&cs.lock, irql);
}

static VOID x_release(PIO_CSQ csq, KIRQL irql)
{
    UNREFERENCED_PARAMETER(csq);
    KeReleaseSpinLock(&cs.lock, irql);
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
    IoCsqInsertIrp(&cs.csq, irp, cs.by_context ? &cs.ctx[i] : NULL);
    return STATUS_PENDING;
}

static NTSTATUS x_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->MajorFunction[IRP_MJ_READ] = x_read;
    NTSTATUS st = IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &cs.dev);
    if (NT_SUCCESS(st)) cs.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

/* The originator lets completion run to the top: a second completion would be 0x44. */
static NTSTATUS count_completion(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    if (irp->Tail.Overlay.DriverContext[0]) plat_store32(&cs.listed_at_completion, 1);
    plat_fetch_add32(&cs.completions[(intptr_t)ctx], 1);
    return STATUS_SUCCESS; /* STATUS_CONTINUE_COMPLETION */
}

static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    own_vcpu((uint8_t)(1 + i));
    IoCallDriver(cs.dev, cs.irps[i]);
    plat_fetch_add32(&cs.sent, 1);
}

static void canceller(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 1);
    IoCancelIrp(cs.irps[NIRPS - 1]);
}

/* Once both were sent, take each queued IRP and complete it. */
static void device(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 2);
    while (plat_load32(&cs.sent) < NIRPS) plat_yield();
    if (cs.by_context) {
        for (int i = 0; i < NIRPS; i++) {
            PIRP irp = IoCsqRemoveIrp(&cs.csq, &cs.ctx[i]);
            if (irp) complete(irp, STATUS_SUCCESS);
        }
        return;
    }
    PIRP irp;
    while ((irp = IoCsqRemoveNextIrp(&cs.csq, NULL)) != NULL) complete(irp, STATUS_SUCCESS);
}

static void run(bool by_context, bool mutant_dc3)
{
    memset(&cs, 0, sizeof cs);
    cs.by_context = by_context;
    cs.mutant_dc3 = mutant_dc3;
    KeInitializeSpinLock(&cs.lock);
    InitializeListHead(&cs.list);
    IoCsqInitialize(&cs.csq, x_insert, x_remove, x_peek, x_acquire, x_release, x_complete_canceled);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\ExploreCsq");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, x_entry)));
    for (int i = 0; i < NIRPS; i++) {
        cs.irps[i] = IoAllocateIrp(1, FALSE);
        IoGetNextIrpStackLocation(cs.irps[i])->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(cs.irps[i], count_completion, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
    irpk_thread *t[NIRPS + 2];
    int n = 0;
    t[n++] = irpk_thread_start(reader, (void *)(intptr_t)0, "reader-1");
    t[n++] = irpk_thread_start(reader, (void *)(intptr_t)1, "reader-2");
    t[n++] = irpk_thread_start(canceller, NULL, "canceller");
    t[n++] = irpk_thread_start(device, NULL, "device");
    for (int i = 0; i < n; i++) irpk_thread_join(t[i]);
    for (int i = 0; i < NIRPS; i++)
        if (cs.completions[i] != 1)
            irpk_explore_fail("IRP#%u completed %d times (%s)", io_irp_id(cs.irps[i]), (int)cs.completions[i],
                              cs.completions[i] ? "double completion" : "lost: never completed");
    IRPK_EXPLORE_CHECK(!cs.listed_at_completion);
    IRPK_EXPLORE_CHECK(IsListEmpty(&cs.list));
}

static void scenario_csq(void *arg) { (void)arg, run(false, false); }
static void scenario_csq_context(void *arg) { (void)arg, run(true, false); }
static void scenario_csq_dc3_mutant(void *arg) { (void)arg, run(false, true); }

const xscenario xscenarios_csq[] = {
    {"csq", "a cancel-safe queue: 2 readers insert, a canceller, a device thread takes RemoveNext",
     scenario_csq, IRPK_FAILURE_NONE, NULL, 0},
    {"csq-context", "the csq scenario inserting with IO_CSQ_IRP_CONTEXT, dequeuing with IoCsqRemoveIrp",
     scenario_csq_context, IRPK_FAILURE_NONE, NULL, 0},
    {"csq-dc3-mutant", "the Insert callback keeps its own pointer in DriverContext[3] (the library's)",
     scenario_csq_dc3_mutant, IRPK_FAILURE_REPORT, "CsqContextOverwritten", 829},
    {NULL, NULL, NULL, IRPK_FAILURE_NONE, NULL, 0},
};

