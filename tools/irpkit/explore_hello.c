/* The seed's sample under the explorer: examples/hello_startio/driver.c loaded as it is (DelayMs
 * 0, so the device "interrupts" at once and its DpcForIsr finishes each IRP), two readers that
 * each send one read and wait for it, and a canceller that cancels the second read.
 *
 * Oracles: the I/O manager's bug checks and the verifier (0x44 double completion, 0x48, cancel
 * lock misuse, IRQL rules, …), then at the end: each IRP completed exactly once, the first with
 * STATUS_SUCCESS, the second with success or STATUS_CANCELLED; the device idle; the driver
 * unloads cleanly (no IRP in flight, no DPC or timer left in the device). A lost IRP leaves its
 * reader waiting forever, which the explorer reports as a deadlock naming that reader.
 *
 * The completion routine lets completion continue (STATUS_SUCCESS): after
 * STATUS_MORE_PROCESSING_REQUIRED a second IoCompleteRequest would pass unnoticed. */
#include "explore_hello.h"

#include <ntifs.h>
#include <stdio.h>
#include <string.h>

#include "explore_driver.h"
#include "hello_startio.h"
#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "irpkit/user.h"
#include "ob/ob.h"
#include "platform/explore.h"
#include "platform/platform.h"

#define NIRPS 2

static PDEVICE_OBJECT dev;
static PIRP irps[NIRPS];
static KEVENT done[NIRPS];
static int32_t completions[NIRPS];
static NTSTATUS statuses[NIRPS];
static char buffers[NIRPS][32];

/* Every simulated thread on its own virtual CPU (main keeps 0, the others xdrv_own_vcpu): the
 * races are between processors, and a thread at DISPATCH_LEVEL would otherwise shut out its
 * vCPU's neighbours. */

static NTSTATUS on_complete(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    intptr_t i = (intptr_t)ctx;
    statuses[i] = irp->IoStatus.Status;
    plat_fetch_add32(&completions[i], 1);
    KeSetEvent(&done[i], IO_NO_INCREMENT, FALSE);
    return STATUS_SUCCESS; /* continue completion: a second one is then bug check 0x44 */
}

/* A synchronous read: send, then wait for the completion routine's event. */
static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    xdrv_own_vcpu((uint8_t)(1 + i));
    IoCallDriver(dev, irps[i]);
    KeWaitForSingleObject(&done[i], Executive, KernelMode, FALSE, NULL);
}

static void canceller(void *arg)
{
    (void)arg;
    xdrv_own_vcpu(NIRPS + 1);
    IoCancelIrp(irps[NIRPS - 1]); /* the IRP stays allocated for the whole execution */
}

/* The sample driver, as written or corrected, loaded for this execution. */
static void load_sample(BOOLEAN as_written)
{
    HELLO_CONFIG cfg = {as_written, 0};
    HelloSetConfig(&cfg);
    dev = xdrv_load(L"\\Driver\\HelloStartIo", HelloDriverEntry, HELLO_DEVICE_NAME);
}

/* The device has no current IRP and its device queue is not busy. */
static void check_idle(void)
{
    if (dev->CurrentIrp || dev->DeviceQueue.Busy)
        irpk_explore_fail("the device is not idle at the end: CurrentIrp IRP#%u, device queue %s",
                          io_irp_id(dev->CurrentIrp), dev->DeviceQueue.Busy ? "busy" : "idle");
}

static void run(BOOLEAN as_written)
{
    load_sample(as_written);
    for (int i = 0; i < NIRPS; i++) {
        completions[i] = 0;
        statuses[i] = STATUS_PENDING;
        KeInitializeEvent(&done[i], NotificationEvent, FALSE);
        irps[i] = IoAllocateIrp(dev->StackSize, FALSE);
        IRPK_EXPLORE_CHECK(irps[i] != NULL);
        PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irps[i]);
        sp->MajorFunction = IRP_MJ_READ;
        sp->Parameters.Read.Length = sizeof buffers[i];
        irps[i]->AssociatedIrp.SystemBuffer = buffers[i];
        IoSetCompletionRoutine(irps[i], on_complete, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
    irpk_thread *t[NIRPS + 1];
    static const char *const names[NIRPS] = {"reader-1", "reader-2"};
    for (int i = 0; i < NIRPS; i++) t[i] = irpk_thread_start(reader, (void *)(intptr_t)i, names[i]);
    t[NIRPS] = irpk_thread_start(canceller, NULL, "canceller");
    for (int i = 0; i <= NIRPS; i++) irpk_thread_join(t[i]);
    for (int i = 0; i < NIRPS; i++)
        if (completions[i] != 1)
            irpk_explore_fail("IRP#%u completed %d times", io_irp_id(irps[i]), (int)completions[i]);
    IRPK_EXPLORE_CHECK(statuses[0] == STATUS_SUCCESS); /* nobody cancels the first read */
    IRPK_EXPLORE_CHECK(statuses[1] == STATUS_SUCCESS || statuses[1] == STATUS_CANCELLED);
    check_idle();
    IRPK_EXPLORE_CHECK(io_unload_driver(dev->DriverObject) == 0); /* the IRPs are the scenario's */
}

static void sample(void *arg) { (void)arg, run(FALSE); }
static void sample_as_written(void *arg) { (void)arg, run(TRUE); }

/* ---- the seed's user program under the explorer (`sample-user`, `sample-user-as-written`)
 *
 * The same driver, driven the way the seed's test program drives it, through the NT services
 * (src/user), every call of them inside explored threads: main opens \??\HelloDDK for
 * overlapped I/O and starts two readers and a canceller. Each reader creates an event, issues
 * one 10-byte NtReadFile with that event and a completion APC, says so, and waits alertably
 * until its APC ran; reader-1 first calls CancelIo (NtCancelIoFile — the line the seed left
 * commented out), which cancels its own read if it is still queued and otherwise waits until
 * the device has finished it. The canceller calls CancelIoEx (NtCancelIoFileEx) on reader-2's
 * request — racing its IoStartPacket, StartIo, the DPC that completes it and the DPC's
 * IoStartNextPacket. Once both reads were issued, main closes the handle (IRP_MJ_CLEANUP
 * cancels what is still queued) while they are in flight, joins, waits for IRP_MJ_CLOSE
 * (irpk_user_flush) and checks:
 *   - each NtReadFile returned STATUS_PENDING and its completion APC ran exactly once;
 *   - each IOSB is STATUS_SUCCESS with the 10 bytes of data, or STATUS_CANCELLED with none;
 *   - CancelIo returned STATUS_SUCCESS, CancelIoEx STATUS_SUCCESS or STATUS_NOT_FOUND (nothing
 *     to cancel, yet or any more), either STATUS_INVALID_HANDLE if main had closed the handle
 *     already; NtClose STATUS_SUCCESS;
 *   - nothing leaks: no handle, file object, pending or dropped request, IRP; the device is
 *     idle and the driver unloads cleanly.
 * The verifier watches every step (double completion, cancel-lock misuse, IRQL rules, …); a
 * lost read leaves its reader waiting forever, which the explorer reports as a deadlock. */

#define READ_SIZE 10

static struct {
    HANDLE file;
    HANDLE issued[NIRPS]; /* notification events: set once the reader's NtReadFile returned */
    IO_STATUS_BLOCK iosb[NIRPS];
    UCHAR data[NIRPS][READ_SIZE];
    NTSTATUS returned[NIRPS];
    int32_t apcs[NIRPS];
    NTSTATUS cancel_status, close_status, cancelio_status;
    const void *read_event[NIRPS]; /* the readers' event objects (swimlanes name them) */
} U;

static VOID NTAPI user_read_apc(PVOID ctx, PIO_STATUS_BLOCK iosb, ULONG reserved)
{
    UNREFERENCED_PARAMETER(iosb);
    UNREFERENCED_PARAMETER(reserved);
    U.apcs[(intptr_t)ctx]++; /* runs in the reader itself, at its alertable wait */
}

/* vCPUs: the default placement — two vCPUs, each thread on (id - 1) % 2: main and reader-2
 * share vCPU 0 with DPC cpu0, reader-1 and the canceller vCPU 1 with DPC cpu1 — so the DPCs
 * race the threads of their own vCPU too. (Scenarios used to give every thread a vCPU of its
 * own: ke's dispatcher lock and src/user's locks were held at PASSIVE_LEVEL, and a DPC of the
 * holder's vCPU could spin on one at DISPATCH_LEVEL while the holder was shut out — a false
 * deadlock. They are held at DISPATCH_LEVEL now, as in Windows.) */

static void user_reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    HANDLE event;
    LARGE_INTEGER offset;
    offset.QuadPart = 0;
    IRPK_EXPLORE_CHECK(NtCreateEvent(&event, EVENT_ALL_ACCESS, NULL, SynchronizationEvent, FALSE) == STATUS_SUCCESS);
    void *body;
    if (NT_SUCCESS(ob_reference_handle(event, NULL, &body, NULL))) {
        U.read_event[i] = body; /* alive while the handle is open */
        ObDereferenceObject(body);
    }
    U.returned[i] = NtReadFile(U.file, event, user_read_apc, (PVOID)i, &U.iosb[i], U.data[i], READ_SIZE, &offset,
                               NULL);
    NtSetEvent(U.issued[i], NULL);
    if (i == 0) { /* the seed's commented-out CancelIo: waits until the read completed */
        IO_STATUS_BLOCK ciosb;
        U.cancelio_status = NtCancelIoFile(U.file, &ciosb);
    }
    /* The hand-off sets the event and queues the APC in one hold of this thread's IRP-list
     * lock; an alertable wait that wakes for the event (auto-reset) returns before running
     * the APC, the next one runs it. */
    if (U.returned[i] == STATUS_PENDING)
        while (plat_load32(&U.apcs[i]) == 0) NtWaitForSingleObject(event, TRUE, NULL);
    U.read_event[i] = NULL;
    NtClose(event);
}

static void user_canceller(void *arg)
{
    (void)arg;
    IO_STATUS_BLOCK iosb;
    U.cancel_status = NtCancelIoFileEx(U.file, &U.iosb[NIRPS - 1], &iosb); /* CancelIoEx(h, &ov2) */
}

static void run_user(BOOLEAN as_written)
{
    memset(&U, 0, sizeof U);
    load_sample(as_written);
    IRPK_EXPLORE_CHECK(xdrv_open(HELLO_DDK_LINK_NAME, 0 /* overlapped */, &U.file) == STATUS_SUCCESS);
    for (int i = 0; i < NIRPS; i++) {
        U.iosb[i].Status = -1; /* not written by any completion yet */
        IRPK_EXPLORE_CHECK(NtCreateEvent(&U.issued[i], EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE) ==
                           STATUS_SUCCESS);
    }
    irpk_thread *t[NIRPS + 1];
    static const char *const names[NIRPS] = {"reader-1", "reader-2"};
    for (int i = 0; i < NIRPS; i++) t[i] = irpk_thread_start(user_reader, (void *)(intptr_t)i, names[i]);
    t[NIRPS] = irpk_thread_start(user_canceller, NULL, "canceller");
    NtWaitForMultipleObjects(NIRPS, U.issued, WaitAll, FALSE, NULL);
    U.close_status = NtClose(U.file); /* IRP_MJ_CLEANUP now, IRP_MJ_CLOSE after the last read */
    for (int i = 0; i <= NIRPS; i++) irpk_thread_join(t[i]);
    for (int i = 0; i < NIRPS; i++) NtClose(U.issued[i]);
    IRPK_EXPLORE_CHECK(irpk_user_flush(-1) == 0);
    for (int i = 0; i < NIRPS; i++) {
        if (U.returned[i] != STATUS_PENDING)
            irpk_explore_fail("reader-%d: NtReadFile returned 0x%08X, not STATUS_PENDING", i + 1,
                              (unsigned)U.returned[i]);
        if (U.apcs[i] != 1)
            irpk_explore_fail("reader-%d: the read's completion APC ran %d times", i + 1, (int)U.apcs[i]);
        NTSTATUS st = U.iosb[i].Status;
        ULONG_PTR n = U.iosb[i].Information;
        if (!(st == STATUS_SUCCESS && n == READ_SIZE && !memcmp(U.data[i], "hello from", READ_SIZE)) &&
            !(st == STATUS_CANCELLED && n == 0))
            irpk_explore_fail("reader-%d: the read ended with IOSB 0x%08X, %lu bytes", i + 1, (unsigned)st,
                              (unsigned long)n);
    }
    IRPK_EXPLORE_CHECK(U.cancel_status == STATUS_SUCCESS || U.cancel_status == STATUS_NOT_FOUND ||
                       U.cancel_status == STATUS_INVALID_HANDLE); /* after main's NtClose */
    IRPK_EXPLORE_CHECK(U.cancelio_status == STATUS_SUCCESS || U.cancelio_status == STATUS_INVALID_HANDLE);
    IRPK_EXPLORE_CHECK(U.close_status == STATUS_SUCCESS);
    xdrv_check_user_leaks();
    check_idle();
    /* No IRP left after the unload: the verifier keeps a reference on the IRP StartIo last saw
     * as current until the device's next StartIo or IoStartNextPacket, or its deletion — when a
     * cancel routine's IoStartNextPacket ran before a late StartIo call, that is the deletion. */
    xdrv_unload(dev);
}

static void sample_user(void *arg) { (void)arg, run_user(FALSE); }
static void sample_user_as_written(void *arg) { (void)arg, run_user(TRUE); }

/* Swimlanes: "IRP#2's done event" instead of "obj#7"; "reader-2's read event". */
static bool describe_events(const void *obj, char *buf, size_t n)
{
    for (int i = 0; i < NIRPS; i++) {
        if (obj == (const void *)&done[i] && irps[i]) {
            snprintf(buf, n, "IRP#%u's done event", io_irp_id(irps[i]));
            return true;
        }
        if (obj && obj == U.read_event[i]) {
            snprintf(buf, n, "reader-%d's read event", i + 1);
            return true;
        }
    }
    return false;
}

void irpk_explore_hello_register(void)
{
    plat_explore_add_describer(describe_events);
    static const irpk_scenario s[] = {
        {"sample", "the seed's sample driver (examples/hello_startio, corrected): 2 readers + 1 canceller",
         sample, IRPK_FAILURE_NONE, NULL},
        {"sample-as-written",
         "the seed's sample as written: an IRP cancelled before IoStartPacket is lost (its reader waits forever)",
         sample_as_written, IRPK_FAILURE_DEADLOCK, "deadlock"},
        {"sample-user",
         "the seed's user program (NT services) on the corrected sample: 2 overlapped reads, CancelIo, CancelIoEx, NtClose",
         sample_user, IRPK_FAILURE_NONE, NULL},
        {"sample-user-as-written",
         "the seed's user program on the sample as written: a read CancelIoEx hits before IoStartPacket is lost",
         sample_user_as_written, IRPK_FAILURE_DEADLOCK, "deadlock"},
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) irpk_explore_register_scenario(&s[i]);
}
