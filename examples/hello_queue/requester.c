/* The in-process request driver for hello_queue (see requester.h). Threads and waits use
 * irpkit's platform layer; everything that touches IRPs uses the WDK routines. */
#include "requester.h"

#include <stdio.h>
#include <string.h>

#include "hello_queue.h"
#include "io/io.h"

#define MAX_READERS 8
#define MAX_WINDOW 16

/* One in-flight slot. `published` holds a reference for the canceller (taken back by xchg). */
typedef struct slot {
    LIST_ENTRY done_link;
    struct reader *reader;
    PIRP irp;
    void *volatile published;
    NTSTATUS status;
    ULONG_PTR information;
    char buffer[32];
} slot;

typedef struct reader {
    plat_thread *thread;
    const helloq_run_config *cfg;
    PDEVICE_OBJECT dev;
    FILE_OBJECT file; /* this reader's "handle" (owner tag for cleanup) */
    slot slots[MAX_WINDOW];
    KSPIN_LOCK done_lock; /* guards `done`; completion routines push, the reader pops */
    LIST_ENTRY done;
    KEVENT wake;          /* synchronization event: something completed */
    long issued, succeeded, cancelled, other, completions, bytes_ok;
} reader;

typedef struct run {
    const helloq_run_config *cfg;
    reader readers[MAX_READERS];
    volatile int32_t readers_left;
    volatile int32_t cancel_calls, cancel_true;
} run;

/* Completion routine of the originator (top of the stack): hand the slot back to its reader. */
static NTSTATUS on_complete(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    slot *s = ctx;
    s->status = irp->IoStatus.Status;
    s->information = irp->IoStatus.Information;
    ExInterlockedInsertTailList(&s->reader->done, &s->done_link, &s->reader->done_lock);
    KeSetEvent(&s->reader->wake, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the reader frees the IRP */
}

static PIRP build(reader *r, UCHAR major, PVOID ctx)
{
    PIRP irp = IoAllocateIrp(r->dev->StackSize, FALSE);
    if (!irp) plat_panic("requester: out of IRPs");
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->MajorFunction = major;
    sp->FileObject = &r->file;
    if (ctx) IoSetCompletionRoutine(irp, on_complete, ctx, TRUE, TRUE, TRUE);
    return irp;
}

static void issue(reader *r, slot *s)
{
    PIRP irp = build(r, IRP_MJ_READ, s);
    IoGetNextIrpStackLocation(irp)->Parameters.Read.Length = sizeof s->buffer;
    irp->AssociatedIrp.SystemBuffer = s->buffer; /* DO_BUFFERED_IO: the system buffer */
    memset(s->buffer, 0, sizeof s->buffer);
    s->irp = irp;
    io_irp_ref(irp); /* the published pointer's reference, for the canceller */
    plat_store_ptr(&s->published, irp);
    r->issued++;
    IoCallDriver(r->dev, irp);
}

/* IRP_MJ_CLEANUP for this reader's file object: completed synchronously by the driver. */
static void cleanup(reader *r)
{
    PIRP irp = build(r, IRP_MJ_CLEANUP, NULL);
    if (IoCallDriver(r->dev, irp) != STATUS_SUCCESS) plat_panic("requester: cleanup failed");
    IoFreeIrp(irp);
}

/* Take back a completed slot: reclaim the published reference (unless the canceller took it),
 * count the result, free the IRP. */
static void reclaim(reader *r, slot *s)
{
    PIRP irp = plat_xchg_ptr(&s->published, NULL);
    if (irp) io_irp_unref(irp);
    r->completions++;
    if (s->status == STATUS_SUCCESS) {
        r->succeeded++;
        r->bytes_ok += s->information > 0 && !strncmp(s->buffer, "hello", 5);
    } else if (s->status == STATUS_CANCELLED) {
        r->cancelled++;
    } else {
        r->other++;
    }
    IoFreeIrp(s->irp);
    s->irp = NULL;
}

static int drain_done(reader *r, slot **free_slots, int n_free)
{
    PLIST_ENTRY e;
    while ((e = ExInterlockedRemoveHeadList(&r->done, &r->done_lock))) {
        slot *s = CONTAINING_RECORD(e, slot, done_link);
        reclaim(r, s);
        free_slots[n_free++] = s;
    }
    return n_free;
}

static run *the_run;

static void reader_main(void *arg)
{
    reader *r = arg;
    const helloq_run_config *cfg = r->cfg;
    int window = cfg->window < 1 ? 1 : cfg->window > MAX_WINDOW ? MAX_WINDOW : cfg->window;
    slot *free_slots[MAX_WINDOW];
    int n_free = 0;
    bool cleaned = false;
    for (int i = window - 1; i >= 0; i--) free_slots[n_free++] = &r->slots[i];
    while (r->issued < cfg->irps_per_reader || n_free < window) {
        if (r->issued < cfg->irps_per_reader && n_free > 0) {
            issue(r, free_slots[--n_free]);
        } else if (cfg->cancel == HELLOQ_CANCEL_CLEANUP && !cleaned) {
            cleanup(r); /* the "handle" closes with the last window still in flight */
            cleaned = true;
        } else {
            KeWaitForSingleObject(&r->wake, Executive, KernelMode, FALSE, NULL);
        }
        n_free = drain_done(r, free_slots, n_free);
    }
    plat_fetch_add32(&the_run->readers_left, -1);
}

static void random_canceller(void *arg)
{
    run *rn = arg;
    uint64_t x = rn->cfg->seed | 1;
    while (plat_load32(&rn->readers_left) > 0) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        reader *r = &rn->readers[x % (uint64_t)rn->cfg->readers];
        slot *s = &r->slots[(x >> 8) % MAX_WINDOW];
        PIRP irp = plat_xchg_ptr(&s->published, NULL);
        if (irp) {
            plat_fetch_add32(&rn->cancel_calls, 1);
            if (IoCancelIrp(irp)) plat_fetch_add32(&rn->cancel_true, 1);
            io_irp_unref(irp);
        }
        plat_yield();
    }
}

static PDEVICE_OBJECT load_driver(const helloq_run_config *cfg)
{
    HELLOQ_CONFIG hc = {cfg->delay_ms, cfg->handler_irql};
    HelloQueueSetConfig(&hc);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\HelloQueue");
    if (!NT_SUCCESS(IoCreateDriver(&name, HelloQueueDriverEntry))) return NULL;
    return io_lookup_device(HELLOQ_LINK_NAME);
}

int helloq_run(const helloq_run_config *cfg, helloq_run_result *out)
{
    if (cfg->readers < 1 || cfg->readers > MAX_READERS) return -1;
    PDEVICE_OBJECT dev = load_driver(cfg);
    if (!dev) return -1;
    run *rn = plat_calloc(1, sizeof *rn);
    rn->cfg = cfg;
    rn->readers_left = cfg->readers;
    the_run = rn;
    for (int i = 0; i < cfg->readers; i++) {
        reader *r = &rn->readers[i];
        r->cfg = cfg;
        r->dev = dev;
        r->file.Type = IO_TYPE_FILE;
        r->file.DeviceObject = dev;
        KeInitializeSpinLock(&r->done_lock);
        InitializeListHead(&r->done);
        KeInitializeEvent(&r->wake, SynchronizationEvent, FALSE);
        for (int j = 0; j < MAX_WINDOW; j++) r->slots[j].reader = r;
    }
    for (int i = 0; i < cfg->readers; i++) {
        char name[PLAT_NAME_MAX];
        snprintf(name, sizeof name, "reader-%d", i + 1);
        rn->readers[i].thread = plat_thread_start(reader_main, &rn->readers[i], name, 0);
    }
    plat_thread *canceller = NULL;
    if (cfg->cancel == HELLOQ_CANCEL_RANDOM)
        canceller = plat_thread_start(random_canceller, rn, "canceller", 0);
    for (int i = 0; i < cfg->readers; i++) plat_thread_join(rn->readers[i].thread);
    if (canceller) plat_thread_join(canceller);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < cfg->readers; i++) {
        reader *r = &rn->readers[i];
        out->issued += r->issued;
        out->succeeded += r->succeeded;
        out->cancelled += r->cancelled;
        out->other += r->other;
        out->completions += r->completions;
        out->bytes_ok += r->bytes_ok;
    }
    out->cancel_calls = plat_load32(&rn->cancel_calls);
    out->cancel_true = plat_load32(&rn->cancel_true);
    KeFlushQueuedDpcs();
    io_unload_driver(dev->DriverObject);
    HELLOQ_STATS st;
    HelloQueueGetStats(&st);
    out->handler_calls = st.HandlerCalls;
    out->max_handler_irql = st.MaxHandlerIrql;
    out->cancelled_while_running = st.CancelledWhileRunning;
    the_run = NULL;
    plat_free(rn);
    out->irps_leaked = io_irps_live();
    return 0;
}
