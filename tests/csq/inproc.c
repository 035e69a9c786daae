/* The in-process requester (see inproc.h). Threads and waits: platform layer and KEVENTs;
 * everything that touches IRPs and file objects: the WDK routines. */
#include "inproc.h"

#include <stdio.h>

#include "test.h"

/* ---- file objects ("handles") */

typedef struct handle {
    FILE_OBJECT fo;
    volatile int32_t refs;   /* the open handle + one per request past the handle check */
    volatile int32_t closed; /* the handle was closed: no new request may take a reference */
} handle;

static NTSTATUS sync_done(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    UNREFERENCED_PARAMETER(irp);
    KeSetEvent((PKEVENT)ctx, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

/* A synchronous request on a file object (CREATE, CLEANUP, CLOSE, IOCTL): wait if pending. */
static NTSTATUS send_sync(PDEVICE_OBJECT dev, UCHAR major, PFILE_OBJECT fo, ULONG code, void *out,
                          ULONG out_len, ULONG_PTR *information)
{
    KEVENT done;
    KeInitializeEvent(&done, NotificationEvent, FALSE);
    PIRP irp = IoAllocateIrp(dev->StackSize, FALSE);
    if (!irp) return STATUS_INSUFFICIENT_RESOURCES;
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->MajorFunction = major;
    sp->FileObject = fo;
    if (major == IRP_MJ_DEVICE_CONTROL) {
        sp->Parameters.DeviceIoControl.IoControlCode = code;
        sp->Parameters.DeviceIoControl.OutputBufferLength = out_len;
        irp->AssociatedIrp.SystemBuffer = out;
    }
    irp->Tail.Overlay.OriginalFileObject = fo;
    IoSetCompletionRoutine(irp, sync_done, &done, TRUE, TRUE, TRUE);
    IoCallDriver(dev, irp);
    KeWaitForSingleObject(&done, Executive, KernelMode, FALSE, NULL); /* the routine always runs */
    NTSTATUS st = irp->IoStatus.Status;
    if (information) *information = irp->IoStatus.Information;
    IoFreeIrp(irp);
    return st;
}

static handle *open_handle(PDEVICE_OBJECT dev)
{
    handle *h = plat_calloc(1, sizeof *h);
    if (!h) plat_panic("inproc: out of memory");
    h->fo.Type = IO_TYPE_FILE;
    h->fo.Size = sizeof(FILE_OBJECT);
    h->fo.DeviceObject = dev;
    h->refs = 1;
    NTSTATUS st = send_sync(dev, IRP_MJ_CREATE, &h->fo, 0, NULL, 0, NULL);
    if (!NT_SUCCESS(st)) plat_panic("inproc: IRP_MJ_CREATE failed");
    return h;
}

/* The last reference: IRP_MJ_CLOSE (every request of the file object has completed). */
static void drop_handle(PDEVICE_OBJECT dev, handle *h)
{
    if (plat_fetch_add32(&h->refs, -1) != 1) return;
    send_sync(dev, IRP_MJ_CLOSE, &h->fo, 0, NULL, 0, NULL);
    plat_free(h);
}

/* NtClose of the last handle: IRP_MJ_CLEANUP, synchronously; the I/O manager cancels nothing. */
static void close_handle(PDEVICE_OBJECT dev, handle *h)
{
    send_sync(dev, IRP_MJ_CLEANUP, &h->fo, 0, NULL, 0, NULL);
    drop_handle(dev, h);
}

NTSTATUS inproc_ioctl(PDEVICE_OBJECT dev, ULONG code, void *out, ULONG out_len)
{
    handle *h = open_handle(dev);
    NTSTATUS st = send_sync(dev, IRP_MJ_DEVICE_CONTROL, &h->fo, code, out, out_len, NULL);
    close_handle(dev, h);
    return st;
}

inproc_handle *inproc_open(PDEVICE_OBJECT dev) { return open_handle(dev); }
PFILE_OBJECT inproc_file(inproc_handle *h) { return &h->fo; }

void inproc_close(inproc_handle *h)
{
    plat_store32(&h->closed, 1);
    close_handle(h->fo.DeviceObject, h);
}

void inproc_hold(inproc_handle *h) { plat_fetch_add32(&h->refs, 1); }
void inproc_release(inproc_handle *h) { drop_handle(h->fo.DeviceObject, h); }

static NTSTATUS single_done(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    inproc_single *s = ctx;
    s->status = irp->IoStatus.Status;
    s->information = irp->IoStatus.Information;
    KeSetEvent(&s->done, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

NTSTATUS inproc_send(inproc_single *s, inproc_handle *h, UCHAR major, ULONG ioctl, const void *in,
                     ULONG in_len, ULONG out_len)
{
    PDEVICE_OBJECT dev = h->fo.DeviceObject;
    memset(s, 0, sizeof *s);
    KeInitializeEvent(&s->done, NotificationEvent, FALSE);
    s->h = h;
    plat_fetch_add32(&h->refs, 1);
    s->irp = IoAllocateIrp(dev->StackSize, FALSE);
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(s->irp);
    sp->MajorFunction = major;
    sp->FileObject = &h->fo;
    if (major == IRP_MJ_DEVICE_CONTROL) {
        sp->Parameters.DeviceIoControl.IoControlCode = ioctl;
        sp->Parameters.DeviceIoControl.InputBufferLength = in_len;
        sp->Parameters.DeviceIoControl.OutputBufferLength = out_len;
    } else {
        sp->Parameters.Read.Length = out_len;
    }
    if (in && in_len) memcpy(s->buffer, in, in_len);
    s->irp->AssociatedIrp.SystemBuffer = s->buffer;
    s->irp->Tail.Overlay.OriginalFileObject = &h->fo;
    IoSetCompletionRoutine(s->irp, single_done, s, TRUE, TRUE, TRUE);
    return IoCallDriver(dev, s->irp);
}

NTSTATUS inproc_wait(inproc_single *s)
{
    KeWaitForSingleObject(&s->done, Executive, KernelMode, FALSE, NULL);
    IoFreeIrp(s->irp);
    s->irp = NULL;
    drop_handle(s->h->fo.DeviceObject, s->h);
    return s->status;
}

/* ---- the run */

typedef struct slot {
    inproc_request req;
    LIST_ENTRY done_link;
    struct issuer *owner;
    handle *h;
    volatile int32_t completions;
    bool in_flight;
} slot;

typedef struct issuer {
    struct run *run;
    plat_thread *thread;
    slot slots[INPROC_MAX_WINDOW];
    KSPIN_LOCK done_lock;
    LIST_ENTRY done;
    KEVENT wake;
    uint64_t rng;
    uint64_t seq;
    inproc_result res;
} issuer;

typedef struct run {
    const inproc_config *cfg;
    issuer issuers[INPROC_MAX_THREADS];
    plat_lockword table_lock; /* guards table[]: a handle is taken or replaced under it */
    handle *table[INPROC_MAX_HANDLES];
    volatile int32_t issued;
    volatile int32_t issuers_left;
    long closes, opens;
} run;

static NTSTATUS request_done(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    slot *s = ctx;
    s->req.status = irp->IoStatus.Status;
    s->req.information = irp->IoStatus.Information;
    plat_fetch_add32(&s->completions, 1);
    ExInterlockedInsertTailList(&s->owner->done, &s->done_link, &s->owner->done_lock);
    KeSetEvent(&s->owner->wake, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the issuer frees it */
}

/* A reference on a random open handle (CreateFile'd, not yet closed), or NULL. */
static handle *take_handle(run *rn, issuer *in, int *index)
{
    int n = rn->cfg->handles;
    int start = (int)(irpk_test_rand(&in->rng) % (uint64_t)n);
    handle *h = NULL;
    plat_lock_acquire(&rn->table_lock);
    for (int k = 0; k < n && !h; k++) {
        int i = (start + k) % n;
        if (rn->table[i] && !plat_load32(&rn->table[i]->closed)) {
            h = rn->table[i];
            *index = i;
            plat_fetch_add32(&h->refs, 1);
        }
    }
    plat_lock_release(&rn->table_lock);
    return h;
}

static bool issue(run *rn, issuer *in, slot *s)
{
    const inproc_config *cfg = rn->cfg;
    int index = 0;
    handle *h = take_handle(rn, in, &index);
    if (!h) return false;
    PIRP irp = IoAllocateIrp(cfg->device->StackSize, FALSE);
    if (!irp) plat_panic("inproc: out of IRPs");
    memset(&s->req, 0, sizeof s->req);
    s->req.irp = irp;
    s->req.handle = index;
    s->req.seq = ++in->seq;
    s->h = h;
    s->completions = 0;
    s->in_flight = true;
    PIO_STACK_LOCATION next = IoGetNextIrpStackLocation(irp);
    next->FileObject = &h->fo;
    irp->Tail.Overlay.OriginalFileObject = &h->fo;
    irp->AssociatedIrp.SystemBuffer = s->req.buffer;
    cfg->prepare(&s->req, next, cfg->ctx);
    IoSetCompletionRoutine(irp, request_done, s, TRUE, TRUE, TRUE);
    in->res.issued++;
    plat_fetch_add32(&rn->issued, 1);
    IoCallDriver(cfg->device, irp);
    return true;
}

static void reclaim(run *rn, issuer *in, slot *s)
{
    in->res.completed++;
    int32_t n = plat_load32(&s->completions);
    bool ok = n == 1 && rn->cfg->check(&s->req, rn->cfg->ctx);
    if (!ok) {
        in->res.bad++;
        fprintf(stderr, "  inproc: request seq %llu completed %d time(s), status 0x%08X\n",
                (unsigned long long)s->req.seq, (int)n, (unsigned)s->req.status);
    }
    if (s->req.status == STATUS_SUCCESS) in->res.succeeded++;
    else if (s->req.status == STATUS_CANCELLED) in->res.cancelled++;
    else in->res.other++;
    IoFreeIrp(s->req.irp);
    s->req.irp = NULL;
    s->in_flight = false;
    drop_handle(rn->cfg->device, s->h);
    s->h = NULL;
}

static int drain_done(run *rn, issuer *in, slot **free_slots, int n_free)
{
    PLIST_ENTRY e;
    while ((e = ExInterlockedRemoveHeadList(&in->done, &in->done_lock))) {
        slot *s = CONTAINING_RECORD(e, slot, done_link);
        reclaim(rn, in, s);
        free_slots[n_free++] = s;
    }
    return n_free;
}

static void cancel_one(issuer *in, int window)
{
    slot *s = &in->slots[irpk_test_rand(&in->rng) % (uint64_t)window];
    if (!s->in_flight) return; /* only this thread frees its IRPs: no reference needed */
    in->res.cancel_calls++;
    if (IoCancelIrp(s->req.irp)) in->res.cancel_true++;
}

/* CancelIo: every own request on one handle, newest first; then wait until they completed. */
static int cancel_all(run *rn, issuer *in, int window, slot **free_slots, int n_free)
{
    handle *target = in->slots[irpk_test_rand(&in->rng) % (uint64_t)window].h;
    if (!target) return n_free;
    for (int i = window - 1; i >= 0; i--) {
        slot *s = &in->slots[i];
        if (!s->in_flight || s->h != target) continue;
        in->res.cancel_calls++;
        if (IoCancelIrp(s->req.irp)) in->res.cancel_true++;
    }
    for (;;) {
        bool pending = false;
        for (int i = 0; i < window; i++) pending |= in->slots[i].in_flight && in->slots[i].h == target;
        if (!pending) return n_free;
        KeWaitForSingleObject(&in->wake, Executive, KernelMode, FALSE, NULL);
        n_free = drain_done(rn, in, free_slots, n_free);
    }
}

static void issuer_main(void *arg)
{
    issuer *in = arg;
    run *rn = in->run;
    const inproc_config *cfg = rn->cfg;
    int window = cfg->window < 1 ? 1 : cfg->window > INPROC_MAX_WINDOW ? INPROC_MAX_WINDOW : cfg->window;
    slot *free_slots[INPROC_MAX_WINDOW];
    int n_free = 0;
    for (int i = window - 1; i >= 0; i--) free_slots[n_free++] = &in->slots[i];
    long attempts = 0;
    while (in->res.issued < cfg->requests || n_free < window) {
        if (in->res.issued < cfg->requests && n_free > 0 && attempts < cfg->requests * 4) {
            attempts++;
            if (issue(rn, in, free_slots[n_free - 1])) n_free--;
            else plat_yield(); /* every handle is being closed right now */
            unsigned pick = (unsigned)(irpk_test_rand(&in->rng) % 100);
            if (pick < cfg->cancel_one_pct) cancel_one(in, window);
            else if (pick < cfg->cancel_one_pct + cfg->cancel_all_pct)
                n_free = cancel_all(rn, in, window, free_slots, n_free);
        } else if (n_free < window) {
            KeWaitForSingleObject(&in->wake, Executive, KernelMode, FALSE, NULL);
        } else {
            break; /* could not issue the rest (handles kept closing): give up on them */
        }
        n_free = drain_done(rn, in, free_slots, n_free);
    }
    plat_fetch_add32(&rn->issuers_left, -1);
}

/* Close a random handle mid-flight every close_every issues, and open a replacement. */
static void closer_main(void *arg)
{
    run *rn = arg;
    const inproc_config *cfg = rn->cfg;
    uint64_t rng = cfg->seed ^ 0xC105E;
    int32_t next = (int32_t)cfg->close_every;
    while (plat_load32(&rn->issuers_left) > 0) {
        if (plat_load32(&rn->issued) < next) {
            plat_sleep_ns(100000);
            continue;
        }
        next += (int32_t)cfg->close_every;
        int i = (int)(irpk_test_rand(&rng) % (uint64_t)cfg->handles);
        handle *fresh = open_handle(cfg->device);
        plat_lock_acquire(&rn->table_lock);
        handle *old = rn->table[i];
        plat_store32(&old->closed, 1);
        rn->table[i] = fresh;
        plat_lock_release(&rn->table_lock);
        rn->opens++;
        close_handle(cfg->device, old); /* requests on it may still be in dispatch */
        rn->closes++;
    }
}

void inproc_run(const inproc_config *cfg, inproc_result *out)
{
    run *rn = plat_calloc(1, sizeof *rn);
    rn->cfg = cfg;
    int threads = cfg->threads > INPROC_MAX_THREADS ? INPROC_MAX_THREADS : cfg->threads;
    for (int i = 0; i < cfg->handles && i < INPROC_MAX_HANDLES; i++) rn->table[i] = open_handle(cfg->device);
    rn->issuers_left = threads;
    for (int i = 0; i < threads; i++) {
        issuer *in = &rn->issuers[i];
        in->run = rn;
        in->rng = cfg->seed + 0x9E37 * (uint64_t)(i + 1);
        KeInitializeSpinLock(&in->done_lock);
        InitializeListHead(&in->done);
        KeInitializeEvent(&in->wake, SynchronizationEvent, FALSE);
        for (int j = 0; j < INPROC_MAX_WINDOW; j++) in->slots[j].owner = in;
    }
    plat_thread *closer = cfg->close_every ? plat_thread_start(closer_main, rn, "closer", 0) : NULL;
    for (int i = 0; i < threads; i++) {
        char name[PLAT_NAME_MAX];
        snprintf(name, sizeof name, "issuer-%d", i + 1);
        rn->issuers[i].thread = plat_thread_start(issuer_main, &rn->issuers[i], name, 0);
    }
    for (int i = 0; i < threads; i++) plat_thread_join(rn->issuers[i].thread);
    if (closer) plat_thread_join(closer);
    for (int i = 0; i < cfg->handles && i < INPROC_MAX_HANDLES; i++) close_handle(cfg->device, rn->table[i]);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < threads; i++) {
        inproc_result *r = &rn->issuers[i].res;
        out->issued += r->issued;
        out->completed += r->completed;
        out->succeeded += r->succeeded;
        out->cancelled += r->cancelled;
        out->other += r->other;
        out->bad += r->bad;
        out->cancel_calls += r->cancel_calls;
        out->cancel_true += r->cancel_true;
    }
    out->closes = rn->closes;
    out->opens = rn->opens;
    plat_free(rn);
    out->irps_leaked = io_irps_live();
}

void inproc_print(const char *what, const inproc_result *r)
{
    printf("  %s: issued %ld, completed %ld (ok %ld, cancelled %ld, other %ld), bad %ld, "
           "IoCancelIrp %ld (TRUE %ld), handles closed mid-flight %ld\n",
           what, r->issued, r->completed, r->succeeded, r->cancelled, r->other, r->bad,
           r->cancel_calls, r->cancel_true, r->closes);
}
