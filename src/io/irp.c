/* IRP memory: lookaside-backed allocation, initialise/reuse/free, reference counts, ids, the
 * per-IRP history and io_describe. */
#include <stdarg.h>
#include <stdio.h>

#include "io/io.h"
#include "trace/trace.h"
#include "verify/hooks.h"

_Static_assert(sizeof(io_irp_priv) <= IRPK_IRP_PRIVATE_WORDS * sizeof(ULONG_PTR),
               "io_irp_priv must fit in IRP.IrpkPrivate");

#define LOOKASIDE_STACK 8   /* IRPs with at most this many locations come from the lookaside */
#define LOOKASIDE_DEPTH 256 /* blocks cached per virtual CPU */
#define MAX_VCPUS 64

/* One lookaside per virtual CPU, like Windows' per-processor lists. Each list's lock is a leaf
 * lock: nothing is called while it is held. Free blocks are linked through ThreadListEntry. */
typedef struct lookaside {
    plat_lockword lock;
    PIRP head;
    int32_t count;
    io_lookaside_stats stats;
} lookaside;

static lookaside lists[MAX_VCPUS];
static int32_t next_id;
static int32_t live_irps;
static int32_t pool_frees;

/* ---- registry of live io objects (explore mode only): io_describe is handed arbitrary
 * pointers there (every object a scheduling point names) and must only read memory it knows
 * is an IRP, device or driver. One simulated thread runs at a time, so plain accesses; a
 * short array (scenarios have few objects; when full, new objects are simply not described). */
#define REGISTRY_MAX 256
static const void *registry[REGISTRY_MAX];
static int registry_n;

void io_registry_add(const void *obj)
{
    if (plat_mode() != PLAT_EXPLORE) return;
    for (int i = 0; i < registry_n; i++)
        if (registry[i] == obj) return;
    if (registry_n < REGISTRY_MAX) registry[registry_n++] = obj;
}

void io_registry_remove(const void *obj)
{
    if (plat_mode() != PLAT_EXPLORE) return;
    for (int i = 0; i < registry_n; i++)
        if (registry[i] == obj) {
            registry[i] = registry[--registry_n];
            return;
        }
}

static bool registered(const void *obj)
{
    for (int i = 0; i < registry_n; i++)
        if (registry[i] == obj) return true;
    return false;
}

/* The parts of a registered device scheduling points name: its device queue and DPC. */
static const char *describe_device_part(const void *obj, char *buf, size_t n)
{
    for (int i = 0; i < registry_n; i++) {
        PDEVICE_OBJECT d = (PDEVICE_OBJECT)registry[i];
        if (d->Type != IO_TYPE_DEVICE) continue;
        const wchar_t *name = io_dev_priv(d)->name[0] ? io_dev_priv(d)->name : L"(unnamed device)";
        if (obj == (const void *)&d->DeviceQueue) return snprintf(buf, n, "%ls queue", name), buf;
        if (obj == (const void *)&d->Dpc) return snprintf(buf, n, "%ls DpcForIsr", name), buf;
    }
    return NULL;
}

static void irp_reset_globals(void)
{
    registry_n = 0;
    /* Explore mode: cached blocks were plat_alloc memory already released; forget them. */
    memset(lists, 0, sizeof lists);
    plat_bk_store32(&next_id, 0);
    plat_bk_store32(&live_irps, 0);
    plat_bk_store32(&pool_frees, 0);
}

__attribute__((constructor)) static void irp_register_reset(void) { plat_on_reset(irp_reset_globals); }

static lookaside *my_lookaside(void) { return &lists[plat_self()->vcpu % MAX_VCPUS]; }

static PIRP lookaside_pop(void)
{
    lookaside *l = my_lookaside();
    plat_lock_acquire(&l->lock);
    PIRP irp = l->head;
    l->stats.allocs++;
    if (irp) {
        l->head = (PIRP)irp->ThreadListEntry.Flink;
        l->count--;
        l->stats.hits++;
    }
    plat_lock_release(&l->lock);
    return irp;
}

static bool lookaside_push(PIRP irp)
{
    lookaside *l = my_lookaside();
    plat_lock_acquire(&l->lock);
    bool cached = l->count < LOOKASIDE_DEPTH;
    if (cached) {
        irp->ThreadListEntry.Flink = (PLIST_ENTRY)l->head;
        l->head = irp;
        l->count++;
        l->stats.frees_cached++;
    }
    plat_lock_release(&l->lock);
    return cached;
}

void io_lookaside_get_stats(io_lookaside_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < MAX_VCPUS; i++) {
        plat_lock_acquire(&lists[i].lock);
        out->allocs += lists[i].stats.allocs;
        out->hits += lists[i].stats.hits;
        out->frees_cached += lists[i].stats.frees_cached;
        plat_lock_release(&lists[i].lock);
    }
    out->pool_allocs = out->allocs - out->hits;
    out->pool_frees = (uint64_t)plat_bk_load32(&pool_frees);
}

void io_lookaside_drain(void)
{
    for (int i = 0; i < MAX_VCPUS; i++) {
        plat_lock_acquire(&lists[i].lock);
        PIRP irp = lists[i].head;
        lists[i].head = NULL;
        lists[i].count = 0;
        plat_lock_release(&lists[i].lock);
        while (irp) {
            PIRP next = (PIRP)irp->ThreadListEntry.Flink;
            io_registry_remove(irp);
            plat_free(irp);
            irp = next;
        }
    }
}

long io_irps_live(void) { return plat_bk_load32(&live_irps); }

/* Zero the packet and set the fields IoInitializeIrp defines (NT_SEMANTICS.md §6.1). */
static void irp_format_fields(PIRP irp, USHORT size, CCHAR stack);

static void irp_format(PIRP irp, USHORT size, CCHAR stack)
{
    memset(irp, 0, size);
    irp_format_fields(irp, size, stack);
}

/* IoReuseIrp: zero everything but the private block, which other threads may be updating
 * atomically right now (references taken by IoCancelIrp / io_irp_ref, the history). */
static void irp_format_keep_private(PIRP irp, USHORT size, CCHAR stack)
{
    size_t from = offsetof(IRP, IrpkPrivate), to = from + sizeof irp->IrpkPrivate;
    memset(irp, 0, from);
    memset((char *)irp + to, 0, size - to);
    irp_format_fields(irp, size, stack);
}

static void irp_format_fields(PIRP irp, USHORT size, CCHAR stack)
{
    irp->Type = IO_TYPE_IRP;
    irp->Size = size;
    irp->StackCount = stack;
    irp->CurrentLocation = (CHAR)(stack + 1);
    irp->Tail.Overlay.CurrentStackLocation = (PIO_STACK_LOCATION)(irp + 1) + stack;
    InitializeListHead(&irp->ThreadListEntry);
}

static void irp_adopt(PIRP irp, uint32_t pflags)
{
    io_irp_priv *p = io_priv(irp);
    p->refs = 1;
    p->id = (uint32_t)plat_bk_fetch_add32(&next_id, 1) + 1; /* a name only: bookkeeping */
    p->pflags = pflags;
}

PIRP IoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota)
{
    UNREFERENCED_PARAMETER(ChargeQuota);
    if (StackSize < 1) StackSize = 1;
    bool small = StackSize <= LOOKASIDE_STACK;
    USHORT size = small ? IoSizeOfIrp(LOOKASIDE_STACK) : IoSizeOfIrp(StackSize);
    PIRP irp = small ? lookaside_pop() : NULL;
    if (!irp) irp = plat_alloc(size);
    if (!irp) return NULL;
    irp_format(irp, size, StackSize);
    irp_adopt(irp, 0);
    io_registry_add(irp); /* not IoInitializeIrp's: driver memory may go away unannounced */
    if (small) irp->AllocationFlags = IRP_LOOKASIDE_ALLOCATION | IRP_ALLOCATED_FIXED_SIZE;
    plat_bk_fetch_add32(&live_irps, 1);
    io_irp_step(irp, IO_STEP_ALLOC, " (%d stack locations%s)", StackSize,
                small ? ", lookaside" : "");
    return irp;
}

VOID IoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize)
{
    irp_format(Irp, PacketSize, StackSize);
    irp_adopt(Irp, IO_PF_DRIVER_MEMORY);
    io_irp_mark(Irp, IO_STEP_INIT);
}

VOID IoReuseIrp(PIRP Irp, NTSTATUS Iostatus)
{
    if (plat_load_ptr((void *const volatile *)&Irp->CancelRoutine) || !IsListEmpty(&Irp->ThreadListEntry))
        irpk_bugcheck_raise(IRPK_BUGCHECK_ASSERTION_FAILURE, (uintptr_t)Irp, 0, 0, 0,
                            "IoReuseIrp on IRP#%u with a cancel routine set or still on a thread "
                            "list: reuse only a completed, non-cancelable IRP.",
                            io_irp_id(Irp));
    /* The private block survives in place (references held by others, id, history): copying
     * it out and back would undo a reference taken meanwhile. */
    UCHAR flags = Irp->AllocationFlags;
    irp_format_keep_private(Irp, Irp->Size, Irp->StackCount);
    plat_store32(&io_priv(Irp)->cancel_requested, 0); /* Cancel is reset by reuse */
    Irp->AllocationFlags = flags;
    Irp->IoStatus.Status = Iostatus;
    io_irp_mark(Irp, IO_STEP_REUSE);
}

PIRP IoMakeAssociatedIrp(PIRP Irp, CCHAR StackSize)
{
    PIRP assoc = IoAllocateIrp(StackSize, FALSE);
    if (!assoc) return NULL;
    assoc->Flags |= IRP_ASSOCIATED_IRP;
    assoc->AssociatedIrp.MasterIrp = Irp;
    assoc->Tail.Overlay.Thread = Irp->Tail.Overlay.Thread;
    return assoc;
}

/* ---- references */

void io_irp_ref(PIRP irp) { plat_fetch_add32(&io_priv(irp)->refs, 1); }

void io_irp_unref(PIRP irp)
{
    /* Whoever drops the last reference is the only one left who can reach the IRP. */
    if (plat_fetch_add32(&io_priv(irp)->refs, -1) == 1) io_irp_release(irp);
}

/* The last reference went away: poison and recycle. Type := 0 makes any later use a report;
 * the history stays readable while the block sits in the lookaside. */
void io_irp_release(PIRP irp)
{
    io_irp_priv *p = io_priv(irp);
    irp->Type = 0;
    plat_store_ptr((void *volatile *)&irp->CancelRoutine, NULL);
    if (p->pflags & IO_PF_DRIVER_MEMORY) return;
    plat_bk_fetch_add32(&live_irps, -1);
    if ((irp->AllocationFlags & IRP_LOOKASIDE_ALLOCATION) && lookaside_push(irp)) return;
    plat_bk_fetch_add32(&pool_frees, 1);
    io_registry_remove(irp);
    plat_free(irp);
}

bool io_irp_check_usable(PIRP irp, const char *api)
{
    /* A misuse check right after the caller's own scheduling point: bookkeeping load (IoFreeIrp's
     * exchange of `freed` is the point that orders against it). */
    if (irp && irp->Type == IO_TYPE_IRP && !plat_bk_load32(&io_priv(irp)->freed)) return true;
    vrf_report(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS, (uintptr_t)irp, 0, 0, 0, irp, NULL, NULL,
               "do not touch an IRP after IoFreeIrp (or after completing one you do not own): "
               "keep what you need in locals before completing or freeing it.",
               "%s on IRP#%u, which was already freed (Type %d). The call is ignored.", api,
               irp ? io_irp_id(irp) : 0, irp ? irp->Type : 0);
    return false;
}

VOID IoFreeIrp(PIRP Irp)
{
    if (!io_irp_check_usable(Irp, "IoFreeIrp")) return;
    if (plat_xchg32(&io_priv(Irp)->freed, 1)) return; /* lost a race with another IoFreeIrp */
    io_irp_mark(Irp, IO_STEP_FREE);
    if (vrf_on()) vrf_irp_freed(Irp);
    io_irp_unref(Irp);
}

/* ---- history: one 64-bit word per step (atomic, so racing recorders and readers are safe):
 * bits 0-7 step, 8-15 IRQL, 16-31 thread id, 32-63 time in µs (only while tracing).
 * Recording is instrumentation: bookkeeping atomics (plat_bk_*), never a scheduling point. */

static const struct {
    const char *name, *routine;
} steps[IO_STEP_COUNT] = {
    [IO_STEP_NONE] = {"?", "?"},
    [IO_STEP_ALLOC] = {"allocated", "IoAllocateIrp"},
    [IO_STEP_INIT] = {"initialised", "IoInitializeIrp"},
    [IO_STEP_REUSE] = {"reused", "IoReuseIrp"},
    [IO_STEP_CALL] = {"sent", "IoCallDriver"},
    [IO_STEP_MARK_PENDING] = {"marked pending", "IoMarkIrpPending"},
    [IO_STEP_QUEUED] = {"queued (device busy)", "IoStartPacket"},
    [IO_STEP_STARTIO] = {"handed to StartIo (CurrentIrp)", "StartIo"},
    [IO_STEP_DEQUEUED] = {"dequeued", "IoStartNextPacket"},
    [IO_STEP_ARM_CANCEL] = {"cancel routine armed", "IoSetCancelRoutine"},
    [IO_STEP_DISARM_CANCEL] = {"cancel routine cleared", "IoSetCancelRoutine"},
    [IO_STEP_CANCEL] = {"Cancel := TRUE", "IoCancelIrp"},
    [IO_STEP_CANCEL_ROUTINE] = {"cancel routine called", "cancel routine"},
    [IO_STEP_COMPLETE] = {"completed", "IoCompleteRequest"},
    [IO_STEP_COMPLETION_ROUTINE] = {"completion routine called", "completion"},
    [IO_STEP_FREE] = {"freed", "IoFreeIrp"},
    [IO_STEP_CSQ_INSERT] = {"inserted into a cancel-safe queue", "IoCsqInsertIrp"},
    [IO_STEP_CSQ_REMOVE] = {"removed from a cancel-safe queue", "IoCsqRemove"},
};

const char *io_step_name(io_step s) { return (unsigned)s < IO_STEP_COUNT ? steps[s].name : "?"; }
const char *io_step_routine(io_step s)
{
    return (unsigned)s < IO_STEP_COUNT ? steps[s].routine : "?";
}

void io__irp_step(PIRP irp, io_step step)
{
    plat_thread *t = plat_self();
    trace_note_thread(); /* the history names threads by id */
    uint64_t us = trace_enabled() ? (uint64_t)trace_now() / 1000u : 0;
    uint64_t word = (uint64_t)step | (uint64_t)t->irql << 8 | (uint64_t)(t->id & 0xFFFF) << 16 |
                    us << 32;
    io_irp_priv *p = io_priv(irp);
    /* The increment is atomic: two threads may step one IRP at once (a cancel racing its
     * completion), and each must get its own entry. The entry itself is a relaxed store: only
     * reports read it, and a report racing the step may show the older entry. */
    int32_t i = plat_bk_fetch_add32(&p->hist_next, 1);
    plat_bk_store64_relaxed(&p->hist[i % IO_HISTORY_LEN], (int64_t)word);
    /* Verifier: the driver routine this step happened in (threads it has state for). */
    if (t->ext[PLAT_EXT_VERIFY]) vrf_step_context(t, p, i);
}

void io__irp_step_trace(PIRP irp, io_step step, const char *fmt, ...)
{
    io_irp_priv *p = io_priv(irp);
    char detail[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    trace_emit(TRACE_INSTANT, io_step_routine(step), p->id, (uint8_t)io_startio_depth(), "%s%s",
               io_step_name(step), detail);
}

const char *io_irp_history(PIRP irp, char *buf, size_t n)
{
    io_irp_priv *p = io_priv(irp);
    int32_t total = plat_bk_load32(&p->hist_next);
    int32_t first = total > IO_HISTORY_LEN ? total - IO_HISTORY_LEN : 0;
    size_t len = 0;
    buf[0] = 0;
    for (int32_t i = first; i < total && len + 1 < n; i++) {
        uint64_t w = (uint64_t)plat_bk_load64(&p->hist[i % IO_HISTORY_LEN]);
        char name[PLAT_NAME_MAX], irql[16];
        int k = snprintf(buf + len, n - len, "  %2d. %-18s %-46s %-10s %s", i + 1,
                         io_step_routine((io_step)(w & 0xFF)), io_step_name((io_step)(w & 0xFF)),
                         trace_irql_name((uint8_t)(w >> 8), irql, sizeof irql),
                         trace_thread_name((uint32_t)(w >> 16) & 0xFFFF, name, sizeof name));
        if (k < 0) break;
        len += (size_t)k;
        if ((w >> 32) && len + 1 < n)
            len += (size_t)snprintf(buf + len, n - len, " @%.3fms", (double)(w >> 32) / 1000.0);
        if (len + 1 < n) len += (size_t)snprintf(buf + len, n - len, "\n");
    }
    if (first && len + 1 < n) snprintf(buf + len, n - len, "  (%d older steps not kept)\n", first);
    return buf;
}

/* ---- describing objects for swimlanes */

static const char *describe_irp(PIRP irp, char *buf, size_t n)
{
    io_irp_priv *p = io_priv(irp);
    int32_t total = plat_bk_load32(&p->hist_next);
    uint64_t last = total ? (uint64_t)plat_bk_load64(&p->hist[(total - 1) % IO_HISTORY_LEN]) : 0;
    snprintf(buf, n, "IRP#%u (%s)", p->id, io_step_name((io_step)(last & 0xFF)));
    return buf;
}

const char *io_describe(const void *obj, char *buf, size_t n)
{
    if (!obj) return NULL;
    if (obj == (const void *)&io_cancel_lock) return snprintf(buf, n, "cancel lock"), buf;
    if (plat_mode() == PLAT_EXPLORE && !registered(obj)) /* unknown: never read it */
        return describe_device_part(obj, buf, n);
    const CSHORT type = *(const CSHORT *)obj;
    if (type == 0 && plat_mode() == PLAT_EXPLORE) /* a registered IRP resting in the lookaside */
        return snprintf(buf, n, "IRP#%u (released)", io_priv((PIRP)obj)->id), buf;
    if (type == IO_TYPE_IRP && ((const IRP *)obj)->Size >= sizeof(IRP))
        return describe_irp((PIRP)obj, buf, n);
    if (type == IO_TYPE_DEVICE) {
        PDEVICE_OBJECT d = (PDEVICE_OBJECT)obj;
        const wchar_t *name = io_dev_priv(d)->name;
        snprintf(buf, n, "%ls", name[0] ? name : L"(unnamed device)");
        return buf;
    }
    if (type == IO_TYPE_DRIVER) {
        snprintf(buf, n, "%ls", ((const DRIVER_OBJECT *)obj)->DriverName.Buffer);
        return buf;
    }
    return NULL;
}
