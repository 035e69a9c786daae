/* The in-process request driver (see requester.h). Threads and waits use irpkit's platform
 * layer; everything that touches IRPs uses the WDK routines. */
#include "requester.h"

#include <stdio.h>

#include "hello_startio.h"
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
    char buffer[32];
} slot;

typedef struct reader {
    plat_thread *thread;
    const hello_run_config *cfg;
    PDEVICE_OBJECT dev;
    slot slots[MAX_WINDOW];
    KSPIN_LOCK done_lock; /* guards `done`; completion routines push, the reader pops */
    LIST_ENTRY done;
    KEVENT wake;          /* synchronization event: something completed */
    long issued, succeeded, cancelled, other, completions;
} reader;

typedef struct run {
    const hello_run_config *cfg;
    reader readers[MAX_READERS];
    volatile int32_t readers_left;
    volatile int32_t cancel_calls, cancel_true;
    /* demo cancel injection */
    volatile int32_t startio_seen;
    void *volatile target;
    volatile uint32_t target_posted, target_done;
} run;

static run *the_run; /* the point hook has no context argument */

/* Completion routine of the originator (top of the stack): hand the slot back to its reader. */
static NTSTATUS on_complete(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    slot *s = ctx;
    s->status = irp->IoStatus.Status;
    ExInterlockedInsertTailList(&s->reader->done, &s->done_link, &s->reader->done_lock);
    KeSetEvent(&s->reader->wake, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the reader frees the IRP */
}

static void issue(reader *r, slot *s)
{
    PIRP irp = IoAllocateIrp(r->dev->StackSize, FALSE);
    if (!irp) plat_panic("requester: out of IRPs");
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->MajorFunction = IRP_MJ_READ;
    sp->Parameters.Read.Length = sizeof s->buffer;
    irp->AssociatedIrp.SystemBuffer = s->buffer; /* DO_BUFFERED_IO: the system buffer */
    IoSetCompletionRoutine(irp, on_complete, s, TRUE, TRUE, TRUE);
    s->irp = irp;
    io_irp_ref(irp); /* the published pointer's reference, for the canceller */
    plat_store_ptr(&s->published, irp);
    r->issued++;
    IoCallDriver(r->dev, irp);
}

/* Take back a completed slot: reclaim the published reference (unless the canceller took it),
 * count the result, free the IRP. */
static void reclaim(reader *r, slot *s)
{
    PIRP irp = plat_xchg_ptr(&s->published, NULL);
    if (irp) io_irp_unref(irp);
    r->completions++;
    if (s->status == STATUS_SUCCESS) r->succeeded++;
    else if (s->status == STATUS_CANCELLED) r->cancelled++;
    else r->other++;
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

static void reader_main(void *arg)
{
    reader *r = arg;
    const hello_run_config *cfg = r->cfg;
    int window = cfg->window < 1 ? 1 : cfg->window > MAX_WINDOW ? MAX_WINDOW : cfg->window;
    slot *free_slots[MAX_WINDOW];
    int n_free = 0;
    for (int i = window - 1; i >= 0; i--) free_slots[n_free++] = &r->slots[i];
    while (r->issued < cfg->irps_per_reader || n_free < window) {
        if (r->issued < cfg->irps_per_reader && n_free > 0) {
            issue(r, free_slots[--n_free]);
            if (cfg->issue_gap_us) plat_sleep_ns((int64_t)cfg->issue_gap_us * 1000);
        } else {
            KeWaitForSingleObject(&r->wake, Executive, KernelMode, FALSE, NULL);
        }
        n_free = drain_done(r, free_slots, n_free);
    }
    plat_fetch_add32(&the_run->readers_left, -1);
}

/* ---- cancellers */

static void cancel_published(run *rn, slot *s)
{
    PIRP irp = plat_xchg_ptr(&s->published, NULL);
    if (!irp) return;
    plat_fetch_add32(&rn->cancel_calls, 1);
    if (IoCancelIrp(irp)) plat_fetch_add32(&rn->cancel_true, 1);
    io_irp_unref(irp);
}

static void random_canceller(void *arg)
{
    run *rn = arg;
    uint64_t x = rn->cfg->seed | 1;
    while (plat_load32(&rn->readers_left) > 0) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        reader *r = &rn->readers[x % (uint64_t)rn->cfg->readers];
        cancel_published(rn, &r->slots[(x >> 8) % MAX_WINDOW]);
        plat_yield();
    }
}

/* Demo: the 3rd StartIo call is held at its entry point (after the I/O manager dropped the
 * cancel lock, before StartIo takes it) while the canceller cancels that IRP — the window the
 * seed's StartIo guards against — then the newest queued IRP is cancelled too. */
static void demo_point_hook(const char *op, const void *obj)
{
    run *rn = the_run;
    if (!rn || strcmp(op, "StartIo") || plat_fetch_add32(&rn->startio_seen, 1) != 2) return;
    plat_store_ptr(&rn->target, (void *)obj);
    plat_store32((volatile int32_t *)&rn->target_posted, 1);
    plat_wake(&rn->target_posted, INT32_MAX);
    int64_t deadline = plat_now_ns() + 5000000000LL;
    while (!plat_load32((volatile int32_t *)&rn->target_done) && plat_now_ns() < deadline)
        plat_wait(&rn->target_done, 0, deadline);
}

static slot *newest_published(run *rn, PIRP not_this)
{
    slot *best = NULL;
    for (int i = 0; i < rn->cfg->readers; i++)
        for (int j = 0; j < MAX_WINDOW; j++) {
            PIRP irp = plat_load_ptr(&rn->readers[i].slots[j].published);
            if (irp && irp != not_this && (!best || io_irp_id(irp) > io_irp_id(plat_load_ptr(&best->published))))
                best = &rn->readers[i].slots[j];
        }
    return best;
}

static void demo_canceller(void *arg)
{
    run *rn = arg;
    int64_t deadline = plat_now_ns() + 5000000000LL;
    while (!plat_load32((volatile int32_t *)&rn->target_posted) && plat_now_ns() < deadline)
        plat_wait(&rn->target_posted, 0, deadline);
    PIRP target = plat_load_ptr(&rn->target);
    if (target) { /* StartIo's caller holds a reference on it while the hook waits */
        plat_fetch_add32(&rn->cancel_calls, 1);
        if (IoCancelIrp(target)) plat_fetch_add32(&rn->cancel_true, 1);
        slot *s = newest_published(rn, target);
        if (s) cancel_published(rn, s);
    }
    plat_store32((volatile int32_t *)&rn->target_done, 1);
    plat_wake(&rn->target_done, INT32_MAX);
}

/* ---- the run */

static PDEVICE_OBJECT load_driver(const hello_run_config *cfg)
{
    HELLO_CONFIG hc = {(BOOLEAN)(cfg->as_written != 0), cfg->delay_ms};
    HelloSetConfig(&hc);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\HelloStartIo");
    if (!NT_SUCCESS(IoCreateDriver(&name, HelloDriverEntry))) return NULL;
    return io_lookup_device(HELLO_LINK_NAME);
}

static void start_readers(run *rn, PDEVICE_OBJECT dev)
{
    for (int i = 0; i < rn->cfg->readers; i++) {
        reader *r = &rn->readers[i];
        r->cfg = rn->cfg;
        r->dev = dev;
        KeInitializeSpinLock(&r->done_lock);
        InitializeListHead(&r->done);
        KeInitializeEvent(&r->wake, SynchronizationEvent, FALSE);
        for (int j = 0; j < MAX_WINDOW; j++) r->slots[j].reader = r;
    }
    for (int i = 0; i < rn->cfg->readers; i++) {
        char name[PLAT_NAME_MAX];
        snprintf(name, sizeof name, "reader-%d", i + 1);
        rn->readers[i].thread = plat_thread_start(reader_main, &rn->readers[i], name, 0);
        if (rn->cfg->issue_gap_us) plat_sleep_ns((int64_t)rn->cfg->issue_gap_us * 500); /* stagger */
    }
}

static void collect(run *rn, PDEVICE_OBJECT dev, hello_run_result *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < rn->cfg->readers; i++) {
        reader *r = &rn->readers[i];
        out->issued += r->issued;
        out->succeeded += r->succeeded;
        out->cancelled += r->cancelled;
        out->other += r->other;
        out->completions += r->completions;
    }
    out->cancel_calls = plat_load32(&rn->cancel_calls);
    out->cancel_true = plat_load32(&rn->cancel_true);
    out->max_startio_depth = io_startio_max_depth(dev);
    out->startio_calls = plat_load32(&io_dev_priv(dev)->startio_calls);
}

int hello_run(const hello_run_config *cfg, hello_run_result *out)
{
    PDEVICE_OBJECT dev = load_driver(cfg);
    if (!dev) return -1;
    run *rn = plat_calloc(1, sizeof *rn);
    rn->cfg = cfg;
    rn->readers_left = cfg->readers;
    the_run = rn;
    plat_thread *canceller = NULL;
    if (cfg->cancel == HELLO_CANCEL_DEMO) {
        plat_set_point_hook(demo_point_hook);
        canceller = plat_thread_start(demo_canceller, rn, "canceller", 0);
    }
    start_readers(rn, dev);
    if (cfg->cancel == HELLO_CANCEL_RANDOM) canceller = plat_thread_start(random_canceller, rn, "canceller", 0);
    for (int i = 0; i < cfg->readers; i++) plat_thread_join(rn->readers[i].thread);
    if (cfg->cancel == HELLO_CANCEL_DEMO) { /* release the canceller if the window never came */
        plat_store32((volatile int32_t *)&rn->target_posted, 1);
        plat_wake(&rn->target_posted, INT32_MAX);
    }
    if (canceller) plat_thread_join(canceller);
    plat_set_point_hook(NULL);
    collect(rn, dev, out);
    KeFlushQueuedDpcs();
    io_unload_driver(dev->DriverObject);
    the_run = NULL;
    plat_free(rn);
    out->irps_leaked = io_irps_live();
    return 0;
}
