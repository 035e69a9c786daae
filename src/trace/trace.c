/* The event ring and the thread-name table (see trace.h). */
#include "trace/trace.h"

#include <stdarg.h>
#include <string.h>

#define TRACE_CAP 16384u
#define NAME_SLOTS 256u

/* Recording is instrumentation: every atomic and lock here is a bookkeeping one (plat_bk_*,
 * platform.h), never a scheduling point, so tracing does not change what the explorer explores. */
int32_t trace__on;
static int64_t epoch_ns = -1;
/* ring_lock guards the ring; a leaf lock (only memcpy under it). */
static plat_lockword ring_lock;
static trace_event *ring;
static uint32_t next_seq;
static uint64_t dropped;
/* names_lock guards the name table; a leaf lock. */
static plat_lockword names_lock;
static struct {
    uint32_t tid;
    char name[PLAT_NAME_MAX];
} names[NAME_SLOTS];

static void trace_reset(void)
{
    /* Explore mode: plat_alloc memory was released before reset, so only forget pointers. */
    ring = NULL;
    next_seq = 0;
    dropped = 0;
    plat_bk_store64(&epoch_ns, -1);
    memset(names, 0, sizeof names);
}

__attribute__((constructor)) static void trace_register_reset(void) { plat_on_reset(trace_reset); }

void trace_enable(bool on) { plat_bk_store32(&trace__on, on ? 1 : 0); }

int64_t trace_now(void)
{
    int64_t e = plat_bk_load64(&epoch_ns);
    if (e < 0) {
        /* Racing first calls: the first CAS wins and everybody uses its value. */
        plat_bk_cas64(&epoch_ns, -1, plat_now_ns());
        e = plat_bk_load64(&epoch_ns);
    }
    return plat_now_ns() - e;
}

/* The slow half of trace_note_thread (trace.h): ext[PLAT_EXT_TRACE] is this thread's own, so
 * the inline "already noted" check needs no lock. */
void trace__note_thread(plat_thread *t)
{
    plat_bk_lock_acquire(&names_lock);
    names[t->id % NAME_SLOTS].tid = t->id;
    memcpy(names[t->id % NAME_SLOTS].name, t->name, PLAT_NAME_MAX);
    plat_bk_lock_release(&names_lock);
    t->ext[PLAT_EXT_TRACE] = (void *)&names[t->id % NAME_SLOTS];
}

const char *trace_thread_name(uint32_t tid, char *buf, size_t n)
{
    plat_bk_lock_acquire(&names_lock);
    if (names[tid % NAME_SLOTS].tid == tid && tid)
        snprintf(buf, n, "%s", names[tid % NAME_SLOTS].name);
    else
        snprintf(buf, n, "thread-%u", tid);
    plat_bk_lock_release(&names_lock);
    return buf;
}

const char *trace_irql_name(uint8_t irql, char *buf, size_t n)
{
    static const char *const known[] = {"PASSIVE", "APC", "DISPATCH"};
    if (irql < 3) snprintf(buf, n, "%s", known[irql]);
    else snprintf(buf, n, "%u", irql);
    return buf;
}

static void ring_push(const trace_event *ev)
{
    plat_bk_lock_acquire(&ring_lock);
    /* Allocated under ring_lock, so racing first events allocate it once (no scheduling point:
     * plat_calloc never is one). */
    if (!ring) ring = plat_calloc(TRACE_CAP, sizeof *ring);
    if (ring) {
        trace_event *slot = &ring[next_seq % TRACE_CAP];
        *slot = *ev;
        slot->seq = next_seq++;
        if (next_seq > TRACE_CAP) dropped++;
    }
    plat_bk_lock_release(&ring_lock);
}

void trace__emit(trace_phase phase, const char *routine, uint32_t irp_id, uint8_t depth,
                 const char *fmt, ...)
{
    plat_thread *t = plat_self();
    trace_note_thread();
    trace_event ev = {.t_ns = trace_now(), .tid = t->id, .irp_id = irp_id, .irql = t->irql,
                      .phase = (uint8_t)phase, .depth = depth, .routine = routine};
    memcpy(ev.thread, t->name, PLAT_NAME_MAX);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev.what, sizeof ev.what, fmt, ap);
    va_end(ap);
    ring_push(&ev);
}

size_t trace_count(void)
{
    plat_bk_lock_acquire(&ring_lock);
    size_t n = next_seq < TRACE_CAP ? next_seq : TRACE_CAP;
    plat_bk_lock_release(&ring_lock);
    return n;
}

uint64_t trace_dropped(void)
{
    plat_bk_lock_acquire(&ring_lock);
    uint64_t d = dropped;
    plat_bk_lock_release(&ring_lock);
    return d;
}

size_t trace_snapshot(trace_event *out, size_t max)
{
    plat_bk_lock_acquire(&ring_lock);
    uint32_t n = next_seq < TRACE_CAP ? next_seq : TRACE_CAP;
    uint32_t first = next_seq - n;
    size_t k = 0;
    for (uint32_t s = first; ring && s < next_seq && k < max; s++) out[k++] = ring[s % TRACE_CAP];
    plat_bk_lock_release(&ring_lock);
    return k;
}

void trace_clear(void)
{
    plat_bk_lock_acquire(&ring_lock);
    next_seq = 0;
    dropped = 0;
    plat_bk_lock_release(&ring_lock);
    plat_bk_store64(&epoch_ns, plat_now_ns());
}

/* ---- ke observer: DPCs and timers on the timeline */

#include "ke/ke.h"

static void on_dpc_begin(PKDPC dpc, PKDEFERRED_ROUTINE routine)
{
    (void)routine;
    (void)dpc;
    trace_emit(TRACE_BEGIN, "DPC", 0, 0, "runs at DISPATCH_LEVEL");
}

static void on_dpc_end(PKDEFERRED_ROUTINE routine)
{
    (void)routine;
    trace_emit(TRACE_END, "DPC", 0, 0, "returns");
}

static void on_timer(PKTIMER timer)
{
    trace_emit(TRACE_INSTANT, "timer", 0, 0, "expired%s", timer->Dpc ? ": DPC queued" : "");
}

void trace_observe_ke(bool on)
{
    static const ke_observer observer = {on_dpc_begin, on_dpc_end, on_timer};
    ke_set_observer(on ? &observer : NULL);
}
