/* Checks that need time or a global view: cancelled IRPs that are never completed (0xC4/0x135),
 * queue stalls ("IoStartNextPacket missing"), and what devices leave behind when deleted
 * (0xC7: a queued DPC or a set timer inside the device's memory).
 *
 * Natively a runtime-owned watchdog thread ("verifier watchdog", started on demand, exiting
 * when there is nothing left to watch) checks them periodically. In explore mode time is
 * virtual and the watchdog never runs: the same checks run once at the end of each execution
 * (an explorer end check), when a cancelled, uncompleted IRP is lost for good. The checks can
 * also be run at any quiescent point through irpk_verifier_check_stalls/_quiescence(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/explore.h"
#include "verify/verify.h"

/* ---- limits */

static int32_t cancel_timeout_ms = 5000, stall_timeout_ms = 2000, startio_depth_limit = 8;

static int32_t env_or(const char *name, int32_t dflt)
{
    const char *e = getenv(name);
    if (!e || !*e) return dflt;
    long v = strtol(e, NULL, 10);
    return v < 0 ? dflt : (int32_t)v;
}

__attribute__((constructor)) static void read_limits_from_environment(void)
{
    cancel_timeout_ms = env_or("IRPK_CANCEL_TIMEOUT_MS", 5000);
    stall_timeout_ms = env_or("IRPK_STALL_TIMEOUT_MS", 2000);
    startio_depth_limit = env_or("IRPK_STARTIO_DEPTH_LIMIT", 8);
    if (startio_depth_limit < 2) startio_depth_limit = 2;
}

int64_t vrf_cancel_timeout_ns(void) { return (int64_t)vrf_load32(&cancel_timeout_ms) * 1000000; }
int64_t vrf_stall_timeout_ns(void) { return (int64_t)vrf_load32(&stall_timeout_ms) * 1000000; }
int vrf_startio_depth_limit(void) { return vrf_load32(&startio_depth_limit); }

long irpk_verifier_set_cancel_timeout_ms(long ms)
{
    long old = vrf_load32(&cancel_timeout_ms);
    vrf_store32(&cancel_timeout_ms, ms < 0 ? 0 : (int32_t)ms);
    vrf_watchdog_poke();
    return old;
}

long irpk_verifier_set_stall_timeout_ms(long ms)
{
    long old = vrf_load32(&stall_timeout_ms);
    vrf_store32(&stall_timeout_ms, ms < 0 ? 0 : (int32_t)ms);
    return old;
}

int irpk_verifier_set_startio_depth_limit(int depth)
{
    int old = vrf_load32(&startio_depth_limit);
    vrf_store32(&startio_depth_limit, depth < 2 ? 2 : depth);
    return old;
}

/* ---- device registry (lock order: devices_lock → a device queue's lock → DPC queue locks;
 * devices_lock is taken by report formatting only through these functions) */

static plat_lockword devices_lock;
static vrf_device *devices;

void vrf_device_created(PDEVICE_OBJECT dev)
{
    vrf_device *d = plat_calloc(1, sizeof *d);
    if (!d) return; /* the device simply goes unwatched */
    d->dev = dev;
    d->refs = 1; /* the registry's: dropped by vrf_device_deleting */
    vrf_lock(&devices_lock);
    d->next = devices;
    devices = d;
    vrf_unlock(&devices_lock);
    io_dev_priv(dev)->vrf = d;
}

/* A queued DPC or a set timer inside the memory about to be freed would run on freed memory. */
static void check_device_memory(PDEVICE_OBJECT dev)
{
    const char *lo = (const char *)dev;
    const char *hi = dev->DeviceExtension ? (const char *)dev->DeviceExtension + (dev->Size - sizeof(DEVICE_OBJECT))
                                          : (const char *)(dev + 1);
    char d[160];
    vrf_format_device(dev, d, sizeof d);
    for (PKTIMER t; (t = ke_timer_set_in(lo, hi));) {
        vrf_report(0xC7, 0, (uintptr_t)t, (uintptr_t)lo, (uintptr_t)hi, NULL, dev, NULL,
                   "cancel timers (KeCancelTimer) and flush or remove DPCs (KeRemoveQueueDpc, "
                   "KeFlushQueuedDpcs) in the unload/remove path before IoDeleteDevice.",
                   "IoDeleteDevice(%s) while the timer at %p in its extension is still set. irpkit "
                   "cancelled it.",
                   d, (void *)t);
        KeCancelTimer(t);
    }
    for (PKDPC p; (p = ke_dpc_queued_in(lo, hi));) {
        vrf_report(0xC7, 2, (uintptr_t)p, (uintptr_t)lo, (uintptr_t)hi, NULL, dev, NULL,
                   "flush or remove DPCs (KeRemoveQueueDpc, KeFlushQueuedDpcs) before "
                   "IoDeleteDevice; a DPC that is running already cannot be detected here.",
                   "IoDeleteDevice(%s) while the DPC at %p in the device object or its extension "
                   "is still queued. irpkit removed it from its queue.",
                   d, (void *)p);
        if (!KeRemoveQueueDpc(p)) break; /* picked up by its thread meanwhile */
    }
}

void vrf_device_deleting(PDEVICE_OBJECT dev)
{
    vrf_device *d = vrf_dev_of(dev);
    if (vrf_on()) check_device_memory(dev);
    if (!d) return;
    vrf_lock(&devices_lock);
    for (vrf_device **pp = &devices; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    vrf_unlock(&devices_lock);
    io_dev_priv(dev)->vrf = NULL;
    PIRP current = (PIRP)vrf_load_ptr((void *const volatile *)&d->current);
    if (current) vrf_irp_drop(current);
    /* A routine still running that completed the current IRP keeps d until it returns (its pop
     * writes cur_state); nothing else can reach d now: it left the registry and the device. */
    vrf_device_drop(d);
}

void vrf_device_drop(vrf_device *d)
{
    if (vrf_add32(&d->refs, -1) == 1) plat_free(d);
}

/* ---- queue stalls */

/* Under the queue's own lock: Busy, the number of waiting IRPs and the ids of up to `max` of
 * them. Ids, not pointers: once the lock is dropped a late IoStartNextPacket may dequeue,
 * complete and free any of them (the report used to read the id through a freed IRP). */
static int waiting_irps(PDEVICE_OBJECT dev, uint32_t *ids, int max, bool *busy)
{
    PKDEVICE_QUEUE q = &dev->DeviceQueue;
    int n = 0;
    vrf_lock((volatile plat_lockword *)&q->Lock);
    *busy = q->Busy;
    for (PLIST_ENTRY e = q->DeviceListHead.Flink; e != &q->DeviceListHead; e = e->Flink, n++)
        if (n < max) ids[n] = io_irp_id(CONTAINING_RECORD(e, IRP, Tail.Overlay.DeviceQueueEntry.DeviceListEntry));
    vrf_unlock((volatile plat_lockword *)&q->Lock);
    return n;
}

int vrf_check_device_stall(vrf_device *d, int64_t persist_ns)
{
    int64_t state = vrf_load64(&d->cur_state); /* one word: id, completed, generation */
    uint32_t done = vrf_cur_done_id(state);
    /* FINISHING: the routine that completed the current IRP (a cancel routine, a DPC) has not
     * returned yet and may still call IoStartNextPacket — the window between its
     * IoCompleteRequest and IoStartNextPacket is no stall. Its return clears the bit, and the
     * next check sees the stall if it did not start the next packet. */
    if (!done || (state & VRF_CUR_FINISHING) || vrf_load32(&d->startio_active)) {
        d->stall_since = 0;
        return 0;
    }
    uint32_t waiting[8]; /* ids: the IRPs themselves may be gone once the queue lock is dropped */
    bool busy;
    int n = waiting_irps(d->dev, waiting, 8, &busy);
    if (!busy || !n || ke_dpcs_queued()) {
        d->stall_since = 0;
        return 0;
    }
    if (persist_ns > 0) { /* the watchdog: the same state, with no progress, for persist_ns */
        int64_t now = plat_now_ns();
        /* The whole word, generation included: any change of current IRP since the last round
         * is progress, even one that came back to an IRP with the same id (IoReuseIrp). */
        if (!d->stall_since || d->stall_state != state) { /* a new stall candidate */
            d->stall_since = now;
            d->stall_state = state;
            return 0;
        }
        if (now - d->stall_since < persist_ns) return 0;
    }
    /* Each stall once (devices_lock held), keyed by the whole state word: the same IRP id in a
     * later generation (a recycled IRP, or ids restarting after a reset) is a new stall. */
    if (d->stall_reported_state == state) return 0;
    d->stall_reported_state = state;
    char ids[96] = "";
    size_t len = 0;
    for (int i = 0; i < n && i < 8 && len + 1 < sizeof ids; i++)
        len += (size_t)snprintf(ids + len, sizeof ids - len, "%sIRP#%u", i ? ", " : "", (unsigned)waiting[i]);
    PIRP current = (PIRP)vrf_load_ptr((void *const volatile *)&d->current);
    char dev[160];
    /* Reported with devices_lock held (callers): formatting takes only leaf locks under it
     * (symbols, report store); a bug-check hook must not call back into these checks. */
    vrf_report(0xC4, IRPK_RULE_QUEUE_STALL, (uintptr_t)d->dev, (uintptr_t)current, (uintptr_t)n, current,
               d->dev, "QueueStall",
               "every path that finishes the current IRP of a StartIo driver — success, error and "
               "cancel paths alike — must call IoStartNextPacket (R11); look for the path in the "
               "history above that completed the IRP without it.",
               "IoStartNextPacket missing: %s is Busy, its current IRP#%u was completed, no StartIo "
               "is running and no DPC is queued, but %d IRP(s) wait in its queue (%s%s). Nothing "
               "will ever start them.",
               vrf_format_device(d->dev, dev, sizeof dev), (unsigned)done, n, ids, n > 8 ? ", …" : "");
    return 1;
}

static int check_all_stalls(int64_t persist_ns, bool *any_candidate)
{
    int reported = 0;
    vrf_lock(&devices_lock);
    for (vrf_device *d = devices; d; d = d->next) {
        if (any_candidate && vrf_cur_done_id(vrf_load64(&d->cur_state))) *any_candidate = true;
        reported += vrf_check_device_stall(d, persist_ns);
    }
    vrf_unlock(&devices_lock);
    return reported;
}

int irpk_verifier_check_stalls(void) { return check_all_stalls(0, NULL); }

void vrf_driver_unloading(PDRIVER_OBJECT drv)
{
    vrf_lock(&devices_lock);
    for (vrf_device *d = devices; d; d = d->next)
        if (d->dev->DriverObject == drv) vrf_check_device_stall(d, 0);
    vrf_unlock(&devices_lock);
}

/* ---- cancelled IRPs that are never completed */

#define WATCH_MAX 256

typedef struct watched {
    PIRP irp;
    int64_t since;
} watched;

/* watch_lock guards watch/n_watch; a leaf lock (reports are made after releasing it). */
static plat_lockword watch_lock;
static watched watch[WATCH_MAX];
static int32_t n_watch;

void vrf_watch_add(PIRP irp)
{
    int64_t now = vrf_exploring() ? 0 : plat_now_ns();
    bool added = false;
    vrf_lock(&watch_lock);
    if (!(vrf_or32(&io_priv(irp)->vrf, VRF_WATCHED) & VRF_WATCHED) && n_watch < WATCH_MAX) {
        vrf_irp_hold(irp); /* a report may need its history after its owner freed it */
        watch[n_watch++] = (watched){irp, now};
        added = true;
    }
    vrf_unlock(&watch_lock);
    if (added) vrf_watchdog_poke();
}

void vrf_watch_remove(PIRP irp)
{
    bool found = false;
    vrf_lock(&watch_lock);
    for (int32_t i = 0; i < n_watch; i++)
        if (watch[i].irp == irp) {
            watch[i] = watch[--n_watch];
            found = true;
            break;
        }
    vrf_unlock(&watch_lock);
    if (!found) return;
    /* Clear the flag (a compare-exchange: the state bits may change concurrently). */
    volatile int32_t *w = &io_priv(irp)->vrf;
    for (int32_t old = vrf_load32(w), seen; (seen = vrf_cas32(w, old, old & ~VRF_WATCHED)) != old;) old = seen;
    vrf_irp_drop(irp);
}

int vrf_check_cancel_watch(int64_t limit_ns)
{
    PIRP lost[WATCH_MAX];
    int64_t age[WATCH_MAX];
    int n = 0;
    int64_t now = vrf_exploring() ? 0 : plat_now_ns();
    vrf_lock(&watch_lock);
    for (int32_t i = 0; i < n_watch; i++) {
        int32_t s = vrf_load32(&io_priv(watch[i].irp)->vrf);
        if ((s & VRF_LOST_REPORTED) || now - watch[i].since < limit_ns) continue;
        vrf_or32(&io_priv(watch[i].irp)->vrf, VRF_LOST_REPORTED);
        vrf_irp_hold(watch[i].irp); /* for the report, outside the lock */
        age[n] = now - watch[i].since;
        lost[n++] = watch[i].irp;
    }
    vrf_unlock(&watch_lock);
    for (int i = 0; i < n; i++) {
        PIRP irp = lost[i];
        char when[64] = "";
        if (!vrf_exploring())
            snprintf(when, sizeof when, " %lld ms ago", (long long)(age[i] / 1000000));
        vrf_report(0xC4, 0x135, (uintptr_t)irp, (uintptr_t)(age[i] / 1000000), 0, irp, NULL, NULL,
                   "a cancelled IRP must be completed (STATUS_CANCELLED) promptly: either the "
                   "cancel routine completes it, or the code that disarms the cancel routine "
                   "re-checks Irp->Cancel and completes it itself (R3: a routine armed after "
                   "IoCancelIrp ran is never called).",
                   "IRP#%u was cancelled%s and has not been completed%s (the lost cancel).",
                   io_irp_id(irp), when, vrf_exploring() ? " when every thread had finished" : "");
        vrf_irp_drop(irp);
    }
    return n;
}

int irpk_verifier_check_quiescence(void) { return check_all_stalls(0, NULL) + vrf_check_cancel_watch(0); }

/* ---- the watchdog thread (native mode only) */

int32_t vrf_watchdog_running;

static int64_t tick_ns(void)
{
    int64_t t = vrf_cancel_timeout_ns();
    int64_t s = vrf_stall_timeout_ns();
    if (!t || (s && s < t)) t = s;
    t /= 4;
    if (t < 10000000) t = 10000000;   /* 10 ms */
    if (t > 500000000) t = 500000000; /* 500 ms */
    return t;
}

/* One round; returns true while something is still being watched. */
static bool watchdog_round(void)
{
    if (vrf_cancel_timeout_ns() && vrf_on()) vrf_check_cancel_watch(vrf_cancel_timeout_ns());
    bool candidate = false;
    /* One lock at a time: watch_lock and devices_lock are never held together. */
    if (vrf_stall_timeout_ns() && vrf_on()) check_all_stalls(vrf_stall_timeout_ns(), &candidate);
    vrf_lock(&watch_lock);
    bool watching = n_watch > 0;
    vrf_unlock(&watch_lock);
    return watching || candidate;
}

/* The watchdog lives from the first poke until the runtime quiesces (shutdown, or the explorer
 * starting: a native thread must never run while fibers do). It sleeps on watchdog_wake so the
 * quiesce function can wake it and join it. */
static plat_thread *watchdog_thread;
static uint32_t watchdog_wake;
static int32_t watchdog_stop;
static void *watchdog_start; /* a vrf_thread_start_fn set by tests; NULL: plat_thread_start */

static void watchdog_main(void *arg)
{
    (void)arg;
    while (!plat_load32(&watchdog_stop)) {
        uint32_t seq = (uint32_t)plat_load32((volatile int32_t *)&watchdog_wake);
        /* The stop flag is set before the wake word is bumped, so no stop is missed here. */
        if (plat_load32(&watchdog_stop)) break;
        plat_wait(&watchdog_wake, seq, plat_now_ns() + tick_ns());
        if (!plat_load32(&watchdog_stop)) watchdog_round();
    }
}

static void watchdog_quiesce(void)
{
    if (!plat_load32(&vrf_watchdog_running)) return;
    plat_thread *t;
    /* A poke that won the start race publishes the thread right after starting it — or, when
     * the start failed, sets running back to 0 and publishes nothing: stop waiting then (this
     * loop used to wait for the thread only, forever after a failed start). A later poke may
     * win again meanwhile; its thread is then published and stopped here. */
    while (!(t = plat_load_ptr((void *const volatile *)&watchdog_thread))) {
        if (!plat_load32(&vrf_watchdog_running)) return;
        plat_point("watchdog quiesce wait", &watchdog_thread); /* visible to injection hooks */
        plat_yield();
    }
    plat_store32(&watchdog_stop, 1);
    plat_fetch_add32((volatile int32_t *)&watchdog_wake, 1);
    plat_wake(&watchdog_wake, INT32_MAX);
    plat_thread_join(t);
    plat_store_ptr((void *volatile *)&watchdog_thread, NULL);
    plat_store32(&watchdog_stop, 0);
    plat_store32(&vrf_watchdog_running, 0); /* last: a new poke may start a new watchdog */
}

void vrf_watchdog_poke(void)
{
    if (vrf_exploring() || plat_load32(&vrf_watchdog_running)) return;
    if (!vrf_cancel_timeout_ns() && !vrf_stall_timeout_ns()) return;
    /* 0 -> 1 elects one starter among racing pokes; the others see a watchdog running. */
    if (plat_cas32(&vrf_watchdog_running, 0, 1) != 0) return;
    plat_on_quiesce(watchdog_quiesce);
    vrf_thread_start_fn start = (vrf_thread_start_fn)(uintptr_t)plat_load_ptr((void *const volatile *)&watchdog_start);
    plat_thread *t = (start ? start : plat_thread_start)(watchdog_main, NULL, "verifier watchdog", PLAT_THREAD_SYSTEM);
    if (t) plat_store_ptr((void *volatile *)&watchdog_thread, t);
    else plat_store32(&vrf_watchdog_running, 0); /* a quiescer waiting for the thread gives up */
}

void vrf_watchdog_set_thread_start(vrf_thread_start_fn fn)
{
    plat_store_ptr((void *volatile *)&watchdog_start, (void *)(uintptr_t)fn);
}

/* ---- explore: the end-of-execution check, and per-execution reset */

static void end_of_execution_check(void)
{
    if (vrf_on()) irpk_verifier_check_quiescence();
}

static void watch_reset(void)
{
    /* Explore mode: the memory these pointed to was released with the previous execution. */
    n_watch = 0;
    devices = NULL;
}

__attribute__((constructor)) static void watchdog_register(void)
{
    plat_on_reset(watch_reset);
    plat_explore_add_end_check(end_of_execution_check);
}

void irpk_verifier_reset_state(void)
{
    vrf_lock(&watch_lock);
    int32_t n = n_watch;
    watched copy[WATCH_MAX];
    memcpy(copy, watch, (size_t)n * sizeof copy[0]);
    n_watch = 0;
    vrf_unlock(&watch_lock);
    for (int32_t i = 0; i < n; i++) {
        volatile int32_t *w = &io_priv(copy[i].irp)->vrf;
        for (int32_t old = vrf_load32(w), seen; (seen = vrf_cas32(w, old, old & ~(VRF_WATCHED | VRF_LOST_REPORTED))) != old;)
            old = seen;
        vrf_irp_drop(copy[i].irp);
    }
    vrf_lock(&devices_lock);
    for (vrf_device *d = devices; d; d = d->next) {
        vrf_store32(&d->recursion_reported, 0);
        d->stall_reported_state = 0;
        d->stall_since = 0;
    }
    vrf_unlock(&devices_lock);
    vrf_locks_reset();
}
