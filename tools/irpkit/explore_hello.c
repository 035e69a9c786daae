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

#include <ntddk.h>
#include <stdio.h>

#include "hello_startio.h"
#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "platform/explore.h"
#include "platform/platform.h"

#define NIRPS 2

static PDEVICE_OBJECT dev;
static PIRP irps[NIRPS];
static KEVENT done[NIRPS];
static int32_t completions[NIRPS];
static NTSTATUS statuses[NIRPS];
static char buffers[NIRPS][32];

/* Every simulated thread on its own virtual CPU (main keeps 0): the races are between
 * processors, and a thread at DISPATCH_LEVEL would otherwise shut out its vCPU's neighbours. */
static void own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

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
    own_vcpu((uint8_t)(1 + i));
    IoCallDriver(dev, irps[i]);
    KeWaitForSingleObject(&done[i], Executive, KernelMode, FALSE, NULL);
}

static void canceller(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 1);
    IoCancelIrp(irps[NIRPS - 1]); /* the IRP stays allocated for the whole execution */
}

static void run(BOOLEAN as_written)
{
    HELLO_CONFIG cfg = {as_written, 0};
    HelloSetConfig(&cfg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\HelloStartIo");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, HelloDriverEntry)));
    dev = io_lookup_device(HELLO_DEVICE_NAME);
    IRPK_EXPLORE_CHECK(dev != NULL);
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
    if (dev->CurrentIrp || dev->DeviceQueue.Busy)
        irpk_explore_fail("the device is not idle at the end: CurrentIrp IRP#%u, device queue %s",
                          io_irp_id(dev->CurrentIrp), dev->DeviceQueue.Busy ? "busy" : "idle");
    IRPK_EXPLORE_CHECK(io_unload_driver(dev->DriverObject) == 0);
}

static void sample(void *arg) { (void)arg, run(FALSE); }
static void sample_as_written(void *arg) { (void)arg, run(TRUE); }

/* Swimlanes: "IRP#2's done event" instead of "obj#7". */
static bool describe_events(const void *obj, char *buf, size_t n)
{
    for (int i = 0; i < NIRPS; i++)
        if (obj == (const void *)&done[i] && irps[i]) {
            snprintf(buf, n, "IRP#%u's done event", io_irp_id(irps[i]));
            return true;
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
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) irpk_explore_register_scenario(&s[i]);
}
