/* Queue scenarios: the seed's sample rewritten on irpkit's IRP adapter (examples/hello_queue).
 * Same shape as the "sample" scenario — two readers, a canceller cancelling the second IRP —
 * plus a device thread that finishes what the handler started (the DPC of the sample). The
 * driver has no cancel routine, no cancel-lock code and no IoStartNextPacket; the end-state
 * checks are the StartIo scenarios' ones: every IRP completed exactly once, with success or
 * STATUS_CANCELLED, the queue empty, and no report (double completion, cancel-lock misuse and
 * the like are the I/O manager's bug checks). */
#include <ntddk.h>

#include "explore/scenarios_int.h"
#include "io/io.h"
#include "irpkit/irpqueue.h"
#include "irpkit/thread.h"

#define NIRPS 2

static PDEVICE_OBJECT dev;
static irpk_irpq *queue;
static PIRP irps[NIRPS];
static int32_t completions[NIRPS];
static NTSTATUS statuses[NIRPS];
static void *volatile device_irp; /* the IRP the handler started on the device */
static KEVENT device_kick;         /* synchronization event: an IRP was started, or quit */
static int32_t device_quit;
static KEVENT all_done;            /* notification event: every IRP was completed */
static int32_t total_completions;

/* Every simulated thread gets its own virtual CPU (main keeps 0), as in scenarios_io.c. */
static void own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

static VOID start_device(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)q, (void)ctx;
    plat_store_ptr(&device_irp, irp);
    KeSetEvent(&device_kick, IO_NO_INCREMENT, FALSE);
}

static NTSTATUS dispatch_read(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    return irpk_irpq_submit(queue, irp, NULL);
}

/* The device: finish each started IRP (cancelled ones early, as a driver polling the flag).
 * It sleeps on an event between IRPs, so only real steps are interleaved. */
static void device_thread(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 2);
    for (;;) {
        KeWaitForSingleObject(&device_kick, Executive, KernelMode, FALSE, NULL);
        PIRP irp = plat_xchg_ptr(&device_irp, NULL);
        if (!irp) {
            if (plat_load32(&device_quit)) return;
            continue;
        }
        NTSTATUS st = irpk_irpq_is_cancelled(queue, irp) == 1 ? STATUS_CANCELLED : STATUS_SUCCESS;
        if (irpk_irpq_complete(queue, irp, st, 0) != 0)
            irpk_explore_fail("irpk_irpq_complete of the running IRP#%u failed", io_irp_id(irp));
    }
}

static NTSTATUS count_completion(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    statuses[(intptr_t)ctx] = irp->IoStatus.Status;
    plat_fetch_add32(&completions[(intptr_t)ctx], 1);
    if (plat_fetch_add32(&total_completions, 1) + 1 == NIRPS) KeSetEvent(&all_done, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the scenario keeps the IRP to inspect it */
}

static NTSTATUS driver_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\ExploreQueue");
    drv->MajorFunction[IRP_MJ_READ] = dispatch_read;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (NT_SUCCESS(st)) dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

static void reader(void *arg)
{
    own_vcpu((uint8_t)(1 + (intptr_t)arg));
    IoCallDriver(dev, irps[(intptr_t)arg]);
}

static void canceller(void *arg)
{
    (void)arg;
    own_vcpu(NIRPS + 1);
    IoCancelIrp(irps[NIRPS - 1]);
}

static void hello_queue(void *arg)
{
    (void)arg;
    dev = NULL;
    device_irp = NULL;
    irpk_irpq_config c;
    irpk_irpq_config_init(&c);
    c.handler = start_device;
    IRPK_EXPLORE_CHECK(irpk_irpq_create(&c, &queue) == 0);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\ExploreQueue");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, driver_entry)));
    for (int i = 0; i < NIRPS; i++) {
        completions[i] = 0;
        irps[i] = IoAllocateIrp(1, FALSE);
        IoGetNextIrpStackLocation(irps[i])->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(irps[i], count_completion, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
    device_quit = total_completions = 0;
    KeInitializeEvent(&device_kick, SynchronizationEvent, FALSE);
    KeInitializeEvent(&all_done, NotificationEvent, FALSE);
    irpk_thread *t[NIRPS + 1];
    int n = 0;
    for (int i = 0; i < NIRPS; i++) t[n++] = irpk_thread_start(reader, (void *)(intptr_t)i, "reader");
    t[n++] = irpk_thread_start(canceller, NULL, "canceller");
    irpk_thread *device = irpk_thread_start(device_thread, NULL, "device");
    for (int i = 0; i < n; i++) irpk_thread_join(t[i]);
    /* Everything was sent and cancelled; the device finishes what is left. */
    KeWaitForSingleObject(&all_done, Executive, KernelMode, FALSE, NULL);
    plat_store32(&device_quit, 1);
    KeSetEvent(&device_kick, IO_NO_INCREMENT, FALSE);
    irpk_thread_join(device);
    for (int i = 0; i < NIRPS; i++) {
        if (completions[i] != 1)
            irpk_explore_fail("IRP#%u completed %d times", io_irp_id(irps[i]), (int)completions[i]);
        IRPK_EXPLORE_CHECK(statuses[i] == STATUS_SUCCESS || statuses[i] == STATUS_CANCELLED);
    }
    IRPK_EXPLORE_CHECK(statuses[0] == STATUS_SUCCESS); /* nobody cancels the first IRP */
    irpk_queue_stats st;
    irpk_queue_stats_get(irpk_irpq_queue(queue), &st);
    IRPK_EXPLORE_CHECK(st.live == 0 && st.submitted == st.completed + st.cancelled);
    IRPK_EXPLORE_CHECK(irpk_irpq_free(queue) == 0);
}

const xscenario xscenarios_queue[] = {
    {"hello-queue", "the seed's sample on irpkit's IRP adapter: 2 readers + 1 canceller + device",
     hello_queue, IRPK_FAILURE_NONE, NULL, 0},
    {NULL, NULL, NULL, IRPK_FAILURE_NONE, NULL, 0},
};
