/* I/O-manager mutants: the classic races of VERIFIER.md §2 seeded into copies of real driver
 * code. The seed's sample itself (examples/hello_startio, corrected and as written) is explored
 * by the `sample` and `sample-as-written` scenarios, which run the example's own driver and are
 * registered from outside the library (tools/irpkit/explore_hello.c).
 *
 * Two drivers:
 *   - a StartIo driver that is hello_startio's corrected driver (DispatchRead → IoStartPacket
 *     with a cancel routine; StartIo decides ownership with IoSetCancelRoutine(NULL) under the
 *     cancel lock; the "device" finishes through its DpcForIsr, which starts the next packet and
 *     then completes) line for line, minus the timer and the buffer copy. `startio-base` runs
 *     it unmodified; R1, R5, R9 and R11 each change a few lines (docs/explorer.md shows the
 *     diffs);
 *   - a driver with its own spin-locked queue and the IoSetCancelRoutine disarm protocol
 *     (`own-queue`), and its mutants R3 and R4.
 * Two readers each send one IRP and wait for it (a synchronous read), one canceller cancels the
 * second IRP; the own-queue driver adds a device thread that dequeues and completes.
 *
 * Oracles: the I/O manager's bug checks (0x44 double completion, 0x48 cancel routine on a
 * completed IRP, 0x11B cancel lock held, …), the verifier's end-of-execution checks, and here:
 * every IRP completed exactly once, the device idle at the end. A lost IRP leaves its reader
 * waiting forever: the explorer reports a deadlock naming that reader.
 *
 * The completion routine returns STATUS_CONTINUE_COMPLETION (= STATUS_SUCCESS), never
 * STATUS_MORE_PROCESSING_REQUIRED: after MORE_PROCESSING the IRP legitimately belongs to the
 * routine's owner again, so a second IoCompleteRequest would pass silently (neither 0x44 nor a
 * second routine call) — that masked R4 and made R1 need two preemptions. */
#include <ntddk.h>
#include <stdio.h>

#include "explore/scenarios_int.h"
#include "io/io.h"
#include "irpkit/thread.h"
#include "platform/explore.h"

typedef enum variant {
    V_BASE,  /* hello_startio's corrected driver, unmodified */
    V_R1,    /* StartIo takes the IRP without deciding ownership under the cancel lock */
    V_R5,    /* StartIo never clears the cancel routine: completes with it set */
    V_R9,    /* cancel routine (queued branch) returns holding the cancel lock */
    V_R11,   /* the DPC's error path forgets IoStartNextPacket */
    V_QUEUE, /* own queue, correct */
    V_R3,    /* own queue: arms the cancel routine without re-checking Irp->Cancel */
    V_R4,    /* own queue: dequeuer ignores IoSetCancelRoutine(NULL) == NULL */
} variant;

#define NIRPS 2

typedef struct ext { /* HELLO_EXTENSION without the timer */
    PIRP ActiveIrp;
    NTSTATUS ActiveStatus;
} ext;

static variant var;
static PDEVICE_OBJECT dev;
static PIRP irps[NIRPS];
static KEVENT done[NIRPS];
static int32_t completions[NIRPS];
static int32_t sent;
static LIST_ENTRY queue;
static KSPIN_LOCK queue_lock;

/* Every simulated thread gets its own virtual CPU (main keeps 0): the R-races are between
 * processors, and a DISPATCH_LEVEL thread would otherwise shut out its vCPU's neighbours. */
static void own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

static void complete(PIRP irp, NTSTATUS status)
{
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* ------------------------------------------------------------------ the StartIo driver */

/* HelloDeviceDone: DPC context. */
static void device_done(PDEVICE_OBJECT fdo)
{
    ext *x = fdo->DeviceExtension;
    PIRP irp = x->ActiveIrp;
    NTSTATUS status = x->ActiveStatus;
    x->ActiveIrp = NULL;
    if (!irp) {
        /* A mutant can request the DpcForIsr twice for one IRP; in a kernel the second run
         * would dereference NULL — report it instead of crashing the explorer's process. */
        irpk_explore_fail("DpcForIsr ran with no active IRP (the device was finished twice)");
        return;
    }
    /* R11: the error path completes and returns; the device queue stays Busy forever. */
    if (var == V_R11 && status != STATUS_SUCCESS) {
        complete(irp, status);
        return;
    }
    IoStartNextPacket(fdo, TRUE); /* before completing: see HelloDeviceDone */
    complete(irp, status);
}

static VOID dpc_for_isr(PKDPC dpc, PDEVICE_OBJECT fdo, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dpc);
    UNREFERENCED_PARAMETER(irp);
    UNREFERENCED_PARAMETER(ctx);
    device_done(fdo);
}

/* HelloCancel. */
static VOID on_cancel(PDEVICE_OBJECT fdo, PIRP irp)
{
    if (fdo->CurrentIrp == irp) {
        KIRQL old = irp->CancelIrql;
        IoReleaseCancelSpinLock(DISPATCH_LEVEL);
        IoStartNextPacket(fdo, TRUE);
        KeLowerIrql(old);
    } else {
        KeRemoveEntryDeviceQueue(&fdo->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
        if (var != V_R9) IoReleaseCancelSpinLock(irp->CancelIrql); /* R9 forgets this */
    }
    complete(irp, STATUS_CANCELLED);
}

/* HelloStartIoCorrected + HelloWorkCorrected with DelayMs 0 (the DpcForIsr finishes). */
static VOID start_io(PDEVICE_OBJECT fdo, PIRP irp)
{
    ext *x = fdo->DeviceExtension;
    KIRQL old;
    if (var == V_R1) { /* the bug: no ownership decision; a running cancel routine owns it too */
        IoSetCancelRoutine(irp, NULL);
        x->ActiveStatus = STATUS_SUCCESS;
    } else if (var == V_R5) { /* the bug: checks, but leaves the cancel routine armed */
        IoAcquireCancelSpinLock(&old);
        if (irp != fdo->CurrentIrp || irp->Cancel) {
            IoReleaseCancelSpinLock(old);
            return;
        }
        x->ActiveStatus = STATUS_SUCCESS;
        IoReleaseCancelSpinLock(old);
    } else {
        IoAcquireCancelSpinLock(&old);
        if (irp != fdo->CurrentIrp || IoSetCancelRoutine(irp, NULL) == NULL) {
            IoReleaseCancelSpinLock(old);
            return; /* the cancel routine completes it */
        }
        x->ActiveStatus = irp->Cancel ? STATUS_CANCELLED : STATUS_SUCCESS;
        IoReleaseCancelSpinLock(old);
    }
    /* R11: pretend the first request is malformed (the error path is the one under test). */
    if (var == V_R11 && irp == irps[0]) x->ActiveStatus = STATUS_INVALID_PARAMETER;
    x->ActiveIrp = irp;
    IoRequestDpc(fdo, irp, NULL);
}

/* HelloRead. */
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

/* The originator's routine: count, wake the reader, let completion continue (see the top). */
static NTSTATUS count_completion(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(irp);
    plat_fetch_add32(&completions[(intptr_t)ctx], 1);
    KeSetEvent(&done[(intptr_t)ctx], IO_NO_INCREMENT, FALSE);
    return STATUS_SUCCESS; /* STATUS_CONTINUE_COMPLETION */
}

static NTSTATUS driver_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\Explore");
    bool own_queue = var >= V_QUEUE;
    if (!own_queue) drv->DriverStartIo = start_io;
    drv->MajorFunction[IRP_MJ_READ] = own_queue ? read_queue : read_startio;
    NTSTATUS st = IoCreateDevice(drv, sizeof(ext), &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (!NT_SUCCESS(st)) return st;
    if (!own_queue) IoInitializeDpcRequest(dev, dpc_for_isr);
    dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

/* Send the IRP; with the StartIo driver also wait for it (the DPC completes it, and system
 * threads do not keep an execution alive). A lost IRP blocks here: deadlock. */
static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    own_vcpu((uint8_t)(1 + i));
    IoCallDriver(dev, irps[i]);
    plat_fetch_add32(&sent, 1);
    if (var < V_QUEUE) KeWaitForSingleObject(&done[i], Executive, KernelMode, FALSE, NULL);
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
    if (var < V_QUEUE && (dev->CurrentIrp || dev->DeviceQueue.Busy))
        irpk_explore_fail("the device is not idle at the end: CurrentIrp IRP#%u, device queue %s "
                          "(nobody started the next packet)",
                          io_irp_id(dev->CurrentIrp), dev->DeviceQueue.Busy ? "busy" : "idle");
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
        KeInitializeEvent(&done[i], NotificationEvent, FALSE);
        irps[i] = IoAllocateIrp(1, FALSE);
        IoGetNextIrpStackLocation(irps[i])->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(irps[i], count_completion, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
    irpk_thread *t[NIRPS + 2];
    int n = 0;
    static const char *const names[NIRPS] = {"reader-1", "reader-2"};
    for (int i = 0; i < readers; i++) {
        int k = v == V_R3 ? NIRPS - 1 : i;
        t[n++] = irpk_thread_start(reader, (void *)(intptr_t)k, names[k]);
    }
    t[n++] = irpk_thread_start(canceller, NULL, "canceller");
    if (v == V_QUEUE || v == V_R4) t[n++] = irpk_thread_start(device_thread, NULL, "device");
    for (int i = 0; i < n; i++) irpk_thread_join(t[i]);
    check_end_state();
}

static void base(void *a) { (void)a, run_variant(V_BASE); }
static void r1(void *a) { (void)a, run_variant(V_R1); }
static void r3(void *a) { (void)a, run_variant(V_R3); }
static void r4(void *a) { (void)a, run_variant(V_R4); }
static void r5(void *a) { (void)a, run_variant(V_R5); }
static void r9(void *a) { (void)a, run_variant(V_R9); }
static void r11(void *a) { (void)a, run_variant(V_R11); }
static void own_queue(void *a) { (void)a, run_variant(V_QUEUE); }

/* IRPs, devices, drivers and the cancel lock by name ("IRP#2 (queued)"); io_describe reads only
 * objects in io's registry, so any pointer may be asked about. Plus this file's events. */
static bool describe_io(const void *obj, char *buf, size_t n)
{
    for (int i = 0; i < NIRPS; i++)
        if (obj == (const void *)&done[i] && irps[i]) {
            snprintf(buf, n, "IRP#%u's done event", io_irp_id(irps[i]));
            return true;
        }
    return io_describe(obj, buf, n) != NULL;
}

void xscenarios_io_init(void) { plat_explore_add_describer(describe_io); }

const xscenario xscenarios_io[] = {
    {"startio-base", "hello_startio's corrected driver as the mutants' base (no seeded bug)", base,
     IRPK_FAILURE_NONE, NULL, 0},
    {"r1-mutant", "R1: StartIo does not decide ownership under the cancel lock (double completion)",
     r1, IRPK_FAILURE_REPORT, "MULTIPLE_IRP_COMPLETE_REQUESTS", 829},
    {"r5-mutant", "R5: StartIo completes with the cancel routine still set", r5, IRPK_FAILURE_REPORT,
     "DRIVER_VERIFIER_IOMANAGER_VIOLATION|CANCEL_STATE_IN_COMPLETED_IRP|MULTIPLE_IRP_COMPLETE_REQUESTS",
     829},
    {"r9-mutant", "R9: cancel routine returns holding the cancel lock", r9, IRPK_FAILURE_REPORT,
     "DRIVER_RETURNED_HOLDING_CANCEL_LOCK", 829},
    {"r11-mutant", "R11: the DPC's error path forgets IoStartNextPacket", r11, IRPK_FAILURE_ASSERT,
     "assert|deadlock|QueueStall", 829},
    {"own-queue", "a driver-managed queue with the IoSetCancelRoutine disarm protocol (correct)",
     own_queue, IRPK_FAILURE_NONE, NULL, 0},
    {"r3-mutant", "R3: cancel routine armed without re-checking Irp->Cancel (lost cancel)", r3,
     IRPK_FAILURE_ASSERT, "assert", 829},
    {"r4-mutant", "R4: dequeuer ignores a NULL from IoSetCancelRoutine(NULL) (double completion)", r4,
     IRPK_FAILURE_REPORT, "MULTIPLE_IRP_COMPLETE_REQUESTS", 829},
    {NULL, NULL, NULL, IRPK_FAILURE_NONE, NULL, 0},
};
