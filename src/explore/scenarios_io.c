/* I/O-manager scenarios: the seed's StartIo sample (corrected and as written) and the classic
 * race mutants of VERIFIER.md §2 (R1, R3, R4, R5, R9, R11). Each runs two readers and one
 * canceller (R3: one reader) against a tiny driver and checks at the end that every IRP was
 * completed exactly once and the device is idle. Double completions, cancel-lock misuse and
 * the like are caught earlier by the I/O manager's own bug checks.
 *
 * The drivers are written in the style of the seed's sample: a StartIo driver (IoStartPacket,
 * StartIo that re-checks `Irp != CurrentIrp || Irp->Cancel` under the cancel lock, a cancel
 * routine that releases the lock and starts the next packet when the IRP is current), and a
 * driver with its own spin-locked queue (IoSetCancelRoutine disarm protocol). */
#include <ntddk.h>
#include <stdio.h>

#include "explore/scenarios_int.h"
#include "io/io.h"
#include "irpkit/thread.h"
#include "platform/explore.h"

typedef enum variant {
    V_SAMPLE,            /* the seed's sample, corrected: cancel lock released with CancelIrql */
    V_SAMPLE_AS_WRITTEN, /* releases the cancel lock with DISPATCH_LEVEL, not Irp->CancelIrql */
    V_R1,                /* StartIo does not re-check CurrentIrp / Cancel under the cancel lock */
    V_R5,                /* StartIo completes without clearing the cancel routine */
    V_R9,                /* cancel routine returns holding the cancel lock (queued branch) */
    V_R11,               /* StartIo error path forgets IoStartNextPacket */
    V_QUEUE,             /* own queue, correct */
    V_R3,                /* own queue: arms the cancel routine without re-checking Cancel */
    V_R4,                /* own queue: dequeuer ignores IoSetCancelRoutine(NULL) == NULL */
} variant;

#define NIRPS 2

static variant var;
static PDEVICE_OBJECT dev;
static PIRP irps[NIRPS];
static int32_t completions[NIRPS];
static int32_t sent;
static LIST_ENTRY queue;
static KSPIN_LOCK queue_lock;

/* Every simulated thread gets its own virtual CPU (main keeps 0): the R-races are between
 * processors, and a DISPATCH_LEVEL thread would otherwise shut out its vCPU's neighbours. */
static void own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

static int irp_index(PIRP irp) { return irp == irps[0] ? 0 : 1; }

static void complete(PIRP irp, NTSTATUS status)
{
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* ------------------------------------------------------------------ the StartIo driver */

static VOID on_cancel(PDEVICE_OBJECT fdo, PIRP irp)
{
    if (plat_load32(&completions[irp_index(irp)])) /* what bug check 0x48 catches */
        irpk_explore_fail("cancel routine called for the completed IRP#%u", io_irp_id(irp));
    if (fdo->CurrentIrp == irp) { /* StartIo has not claimed it yet: it will see Cancel */
        KIRQL old = irp->CancelIrql;
        if (var == V_SAMPLE_AS_WRITTEN) {
            IoReleaseCancelSpinLock(DISPATCH_LEVEL); /* as written: stays at DISPATCH */
            IoStartNextPacket(fdo, TRUE);
            KeLowerIrql(old);
        } else {
            KIRQL d;
            IoReleaseCancelSpinLock(old);
            KeRaiseIrql(DISPATCH_LEVEL, &d);
            IoStartNextPacket(fdo, TRUE);
            KeLowerIrql(d);
        }
    } else {
        KeRemoveEntryDeviceQueue(&fdo->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
        if (var != V_R9) IoReleaseCancelSpinLock(irp->CancelIrql);
    }
    complete(irp, STATUS_CANCELLED);
}

/* Claim the IRP from its cancel routine; false if cancellation got there first. */
static bool startio_claim(PDEVICE_OBJECT fdo, PIRP irp)
{
    KIRQL old;
    if (var == V_R1) { /* the bug: no re-check, the cancel routine may already own the IRP */
        IoSetCancelRoutine(irp, NULL);
        return true;
    }
    if (var == V_R5) return true; /* the bug: the cancel routine stays armed */
    IoAcquireCancelSpinLock(&old);
    if (irp != fdo->CurrentIrp || (irp->Cancel && var == V_SAMPLE_AS_WRITTEN)) {
        IoReleaseCancelSpinLock(old); /* the cancel routine owns it (as written: assumes so) */
        return false;
    }
    /* Cancelled before IoStartPacket armed the routine: IoCancelIrp called nobody, so the
     * routine is still set and StartIo must finish the IRP (the sample as written loses it). */
    bool cancelled = irp->Cancel;
    PDRIVER_CANCEL armed = IoSetCancelRoutine(irp, NULL);
    IoReleaseCancelSpinLock(old);
    if (!cancelled) return true;
    if (armed) {
        complete(irp, STATUS_CANCELLED);
        IoStartNextPacket(fdo, TRUE);
    }
    return false; /* armed == NULL: the cancel routine is running and owns the IRP */
}

static VOID start_io(PDEVICE_OBJECT fdo, PIRP irp)
{
    if (!startio_claim(fdo, irp)) return;
    plat_point("device transfer", irp);
    bool error = var == V_R11 && irp == irps[0]; /* pretend the first request is malformed */
    complete(irp, error ? STATUS_INVALID_PARAMETER : STATUS_SUCCESS);
    if (!error) IoStartNextPacket(fdo, TRUE); /* R11: the error path forgets this */
}

static NTSTATUS read_startio(PDEVICE_OBJECT fdo, PIRP irp)
{
    IoMarkIrpPending(irp);
    IoStartPacket(fdo, irp, NULL, on_cancel);
    return STATUS_PENDING;
}

/* ------------------------------------------------------------------ the own-queue driver */

static VOID queue_cancel(PDEVICE_OBJECT fdo, PIRP irp)
{
    UNREFERENCED_PARAMETER(fdo);
    KIRQL old;
    IoReleaseCancelSpinLock(irp->CancelIrql);
    KeAcquireSpinLock(&queue_lock, &old);
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
    InitializeListHead(&irp->Tail.Overlay.ListEntry); /* a second unlink is harmless */
    KeReleaseSpinLock(&queue_lock, old);
    complete(irp, STATUS_CANCELLED);
}

static NTSTATUS read_queue(PDEVICE_OBJECT fdo, PIRP irp)
{
    UNREFERENCED_PARAMETER(fdo);
    KIRQL old;
    IoMarkIrpPending(irp);
    KeAcquireSpinLock(&queue_lock, &old);
    InsertTailList(&queue, &irp->Tail.Overlay.ListEntry);
    IoSetCancelRoutine(irp, queue_cancel);
    /* Cancelled before the routine was armed? Then IoCancelIrp found nothing to call. */
    if (var != V_R3 && irp->Cancel && IoSetCancelRoutine(irp, NULL)) {
        RemoveEntryList(&irp->Tail.Overlay.ListEntry);
        KeReleaseSpinLock(&queue_lock, old);
        complete(irp, STATUS_CANCELLED);
        return STATUS_PENDING;
    }
    KeReleaseSpinLock(&queue_lock, old);
    return STATUS_PENDING;
}

/* The device: once both requests were sent, take each queued IRP and complete it. */
static void device_thread(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 2);
    while (plat_load32(&sent) < NIRPS) plat_yield();
    for (;;) {
        KIRQL old;
        KeAcquireSpinLock(&queue_lock, &old);
        PLIST_ENTRY e = IsListEmpty(&queue) ? NULL : RemoveHeadList(&queue);
        if (e) InitializeListHead(e);
        KeReleaseSpinLock(&queue_lock, old);
        if (!e) return;
        PIRP irp = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
        /* NULL: the cancel routine is running and owns the IRP (R4 ignores that). */
        if (IoSetCancelRoutine(irp, NULL) || var == V_R4) complete(irp, STATUS_SUCCESS);
    }
}

/* ------------------------------------------------------------------ the scenario */

static NTSTATUS count_completion(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(irp);
    plat_fetch_add32(&completions[(intptr_t)ctx], 1);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the scenario keeps the IRP to inspect it */
}

static NTSTATUS driver_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\Explore");
    bool own_queue = var >= V_QUEUE;
    if (!own_queue) drv->DriverStartIo = start_io;
    drv->MajorFunction[IRP_MJ_READ] = own_queue ? read_queue : read_startio;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (NT_SUCCESS(st)) dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

static void reader(void *arg)
{
    own_vcpu((uint8_t)(1 + (intptr_t)arg));
    IoCallDriver(dev, irps[(intptr_t)arg]);
    plat_fetch_add32(&sent, 1);
}

static void canceller(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 1);
    IoCancelIrp(irps[NIRPS - 1]);
}

static void check_end_state(void)
{
    for (int i = 0; i < NIRPS; i++)
        if (completions[i] != 1)
            irpk_explore_fail("IRP#%u completed %d times (%s)", io_irp_id(irps[i]), (int)completions[i],
                              completions[i] ? "double completion" : "lost: never completed");
    if (var < V_QUEUE) IRPK_EXPLORE_CHECK(dev->CurrentIrp == NULL && !dev->DeviceQueue.Busy);
}

static void run_variant(variant v)
{
    var = v;
    dev = NULL;
    sent = 0;
    InitializeListHead(&queue);
    KeInitializeSpinLock(&queue_lock);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\Explore");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, driver_entry)));
    int readers = v == V_R3 ? 1 : NIRPS;
    for (int i = 0; i < NIRPS; i++) {
        completions[i] = v == V_R3 && i == 0; /* R3 sends only the IRP it cancels */
        irps[i] = IoAllocateIrp(1, FALSE);
        IoGetNextIrpStackLocation(irps[i])->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(irps[i], count_completion, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
    irpk_thread *t[NIRPS + 2];
    int n = 0;
    for (int i = 0; i < readers; i++)
        t[n++] = irpk_thread_start(reader, (void *)(intptr_t)(v == V_R3 ? NIRPS - 1 : i), "reader");
    t[n++] = irpk_thread_start(canceller, NULL, "canceller");
    if (v == V_QUEUE || v == V_R4) t[n++] = irpk_thread_start(device_thread, NULL, "device");
    for (int i = 0; i < n; i++) irpk_thread_join(t[i]);
    check_end_state();
}

static void sample(void *a) { (void)a, run_variant(V_SAMPLE); }
static void sample_as_written(void *a) { (void)a, run_variant(V_SAMPLE_AS_WRITTEN); }
static void r1(void *a) { (void)a, run_variant(V_R1); }
static void r3(void *a) { (void)a, run_variant(V_R3); }
static void r4(void *a) { (void)a, run_variant(V_R4); }
static void r5(void *a) { (void)a, run_variant(V_R5); }
static void r9(void *a) { (void)a, run_variant(V_R9); }
static void r11(void *a) { (void)a, run_variant(V_R11); }
static void own_queue(void *a) { (void)a, run_variant(V_QUEUE); }

/* io_describe guesses from the pointer's contents: ask it only about this scenario's objects. */
static bool describe_io(const void *obj, char *buf, size_t n)
{
    bool known = obj == dev || obj == (const void *)&io_cancel_lock;
    for (int i = 0; i < NIRPS; i++) known |= obj == irps[i];
    return known && io_describe(obj, buf, n) != NULL;
}

void xscenarios_io_init(void) { plat_explore_add_describer(describe_io); }

const xscenario xscenarios_io[] = {
    {"sample", "the seed's StartIo sample (corrected): 2 readers + 1 canceller", sample,
     IRPK_FAILURE_NONE, NULL, 0},
    {"sample-as-written", "the seed's sample as written: an IRP cancelled before IoStartPacket is lost",
     sample_as_written, IRPK_FAILURE_ASSERT, "assert", 829},
    {"own-queue", "a driver-managed queue with the IoSetCancelRoutine disarm protocol (correct)",
     own_queue, IRPK_FAILURE_NONE, NULL, 0},
    {"r1-mutant", "R1: StartIo does not re-check CurrentIrp/Cancel under the cancel lock", r1,
     IRPK_FAILURE_ASSERT, "assert", 829},
    {"r3-mutant", "R3: cancel routine armed without re-checking Irp->Cancel (lost cancel)", r3,
     IRPK_FAILURE_ASSERT, "assert", 829},
    {"r4-mutant", "R4: dequeuer ignores a NULL from IoSetCancelRoutine(NULL)", r4,
     IRPK_FAILURE_REPORT, "MULTIPLE_IRP_COMPLETE_REQUESTS", 829},
    {"r5-mutant", "R5: StartIo completes with the cancel routine still set", r5,
     IRPK_FAILURE_ASSERT, "assert", 829},
    {"r9-mutant", "R9: cancel routine returns holding the cancel lock", r9, IRPK_FAILURE_REPORT,
     "DRIVER_RETURNED_HOLDING_CANCEL_LOCK", 829},
    {"r11-mutant", "R11: StartIo's error path forgets IoStartNextPacket", r11, IRPK_FAILURE_ASSERT,
     "assert", 829},
    {NULL, NULL, NULL, IRPK_FAILURE_NONE, NULL, 0},
};
