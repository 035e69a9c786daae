/* DPCs: one queue and one runtime-owned thread ("DPC cpu<N>") per virtual CPU. The thread runs
 * each DPC at DISPATCH_LEVEL. Threads start on first use and stop in ke_shutdown(). */
#include <stdio.h>

#include "ke/ke.h"
#include "verify/hooks.h"

#define MAX_VCPUS 64

/* KeFlushQueuedDpcs links one of these at the tail of a queue and waits until the queue's
 * thread reaches it: a KDPC with this Type (never a real one's: DpcObject is 19) and no
 * routine, on the flusher's stack. SystemArgument1 turns non-NULL when it was reached. */
#define DPC_FLUSH_MARKER 0xFF

typedef struct dpc_queue {
    plat_lockword lock; /* guards list, counters, stop, flush markers; leaf lock, no callouts */
    LIST_ENTRY list;    /* queued DPCs and flush markers, in run order */
    /* The seq words are waited on with plat_wait, which reads them without the lock: every
     * update is a plat_* atomic (made under the lock), so a waiter's read never races with a
     * plain write. Reads under the lock may be plain (no write can run concurrently). */
    uint32_t work_seq;  /* bumped on insert/stop/flush marker; the DPC thread waits on it */
    uint32_t done_seq;  /* bumped when a flush marker is reached; flushers wait on it */
    int32_t stop;
    int32_t queued;     /* DPCs currently queued (markers not counted) */
    int32_t running;    /* a DPC routine of this queue is running (the lock is dropped) */
    /* The queue's thread has decided to exit (stop set, list empty) and no new thread has been
     * started since: whatever is linked now has nobody to run it. Set by the thread, cleared
     * by start_thread_locked, both under q->lock; read under q->lock by inserts. */
    int32_t exited;
    /* Under start_lock: a thread was started for this queue since the last reset, and how many
     * (ke_dpc_shutdown clears `thread` only if no insert restarted the queue meanwhile). */
    int32_t started;
    uint32_t generation;
    /* Under start_lock: a ke_dpc_shutdown is stopping and joining `thread` (claimed by the
     * first one; a concurrent shutdown waits for it on stop_seq instead of joining the thread
     * a second time). stop_seq is waited on without the lock: updated with plat_* atomics under
     * start_lock, and only when stop_waiters says someone waits. */
    int32_t stopping;
    int32_t stop_waiters;
    uint32_t stop_seq;
    plat_thread *thread; /* written under start_lock; read unlocked by queue_for's fast path */
} dpc_queue;

static dpc_queue queues[MAX_VCPUS];
static plat_lockword start_lock; /* serialises thread start/stop; taken before a queue lock */

/* Both kinds of lock are held at DISPATCH_LEVEL (ke.h, ke_lock_raised), as NT holds its
 * per-processor DPC queue lock with interrupts off: KeInsertQueueDpc is called at any IRQL, by
 * DPC routines and spin-lock holders too, and a holder preempted inside (the insert's atomics,
 * queue_for's thread start are scheduling points) by DISPATCH_LEVEL code of its vCPU waiting
 * for the same lock was shut out of that vCPU for good under the explorer. Nested start_lock ->
 * queue lock (and under timer_lock) the inner raise changes nothing. */
static KIRQL lock_raised(plat_lockword *w) { return ke_lock_raised(w); }
static void unlock_lowered(plat_lockword *w, KIRQL old) { ke_unlock_lowered(w, old); }
static int32_t initialized;
const ke_observer *ke_observer_current;

/* The observer only feeds the trace: bookkeeping, never a scheduling point. */
void ke_set_observer(const ke_observer *observer)
{
    plat_bk_store_ptr((void *volatile *)&ke_observer_current, (void *)observer);
}

static void reset_dpcs(void)
{
    memset(queues, 0, sizeof queues);
    plat_lock_init(&start_lock);
    initialized = 0;
}

static void ensure_init(void)
{
    /* Double-checked: the seq_cst store below publishes the flag after the lists are set up,
     * and the re-check under start_lock keeps a second caller from initialising them again. */
    if (plat_load32(&initialized)) return;
    KIRQL old = lock_raised(&start_lock);
    if (!initialized) {
        for (int i = 0; i < MAX_VCPUS; i++) InitializeListHead(&queues[i].list);
        plat_on_reset(reset_dpcs);
        plat_store32(&initialized, 1);
    }
    unlock_lowered(&start_lock, old);
}

/* q->lock is held, raised from `irql` (the DPC thread's own, PASSIVE_LEVEL). */
static void run_one(dpc_queue *q, KIRQL irql)
{
    PLIST_ENTRY e = RemoveHeadList(&q->list);
    PKDPC dpc = CONTAINING_RECORD(e, KDPC, DpcListEntry);
    if (dpc->Type == DPC_FLUSH_MARKER) {
        /* Everything linked before the marker has left the list (run or removed), and the last
         * routine this thread ran has returned (one at a time): the flush is done. Marked under
         * q->lock, which the flusher re-checks it under, so the flusher's stack (the marker)
         * is not touched after the release. */
        dpc->SystemArgument1 = (PVOID)1;
        plat_fetch_add32((volatile int32_t *)&q->done_seq, 1);
        plat_wake(&q->done_seq, INT32_MAX);
        return; /* q->lock still held */
    }
    /* Capture everything before the call: the routine may free or requeue the DPC. */
    PKDEFERRED_ROUTINE routine = dpc->DeferredRoutine;
    PVOID ctx = dpc->DeferredContext, a1 = dpc->SystemArgument1, a2 = dpc->SystemArgument2;
    /* Unclaimed under q->lock, before the routine runs: KeRemoveQueueDpc now answers FALSE and
     * the DPC may be queued again (also by its own routine). */
    plat_store_ptr((void *volatile *)&dpc->DpcData, NULL);
    q->queued--;
    q->running = 1; /* a flush that comes now waits for this routine too */
    /* Back to the thread's IRQL, then up again for the routine with a scheduling point, as
     * before the queue lock was raised: the explored steps of a DPC stay the same. */
    unlock_lowered(&q->lock, irql);

    const ke_observer *obs = plat_bk_load_ptr((void *const volatile *)&ke_observer_current);
    ke_set_irql(DISPATCH_LEVEL);
    if (obs && obs->dpc_begin) obs->dpc_begin(dpc, routine);
    plat_point("DPC", dpc);
    int vf = vrf_on() ? vrf_dpc_enter((const void *)(uintptr_t)routine) : -1; /* verifier frame */
    routine(dpc, ctx, a1, a2);
    if (vf != -1) vrf_dpc_exit(vf);
    if (obs && obs->dpc_end) obs->dpc_end(routine);
    KIRQL after = ke_irql();
    if (after != DISPATCH_LEVEL)
        ke_bugcheck(IRPK_BUGCHECK_IRQL_NOT_LESS_OR_EQUAL, (uintptr_t)routine, after, 0, 0,
                    "DPC routine %p returned at IRQL %u (entered at DISPATCH_LEVEL).\nUsual "
                    "cause: an unmatched KeRaiseIrql/KeLowerIrql or spin lock in the DPC.",
                    (void *)(uintptr_t)routine, after);
    ke_set_irql(irql);

    (void)lock_raised(&q->lock); /* from `irql` again */
    q->running = 0;
}

static void dpc_thread(void *arg)
{
    dpc_queue *q = arg;
    KIRQL irql = lock_raised(&q->lock);
    for (;;) {
        if (!IsListEmpty(&q->list)) {
            run_one(q, irql); /* a DPC or a flush marker; returns with q->lock held again */
            continue;
        }
        if (q->stop) {
            /* Decided under q->lock with the list empty: an insert that takes q->lock after us
             * sees `exited` and starts a new thread itself (KeInsertQueueDpc), so nothing
             * linked from now on is left without one. */
            q->exited = 1;
            break;
        }
        uint32_t seq = q->work_seq;
        unlock_lowered(&q->lock, irql); /* the wait gives the vCPU up at the thread's IRQL */
        plat_wait(&q->work_seq, seq, PLAT_FOREVER); /* seq re-checked atomically by the wait */
        irql = lock_raised(&q->lock);
    }
    unlock_lowered(&q->lock, irql);
}

/* Start a thread for q if it has none that will reach its list: never started, or the last
 * one exited (ke_dpc_shutdown). start_lock is held, so one caller starts it. */
static void start_thread_locked(dpc_queue *q)
{
    if (q->started) {
        /* Lock order start_lock -> q->lock, as everywhere. The first start of a queue skips
         * this (nothing can have exited), so its explored steps are what they were. */
        KIRQL inner = lock_raised(&q->lock);
        bool dead = q->exited;
        if (dead) {
            q->exited = 0; /* inserts that come now leave their DPC to the thread started below */
            q->stop = 0;   /* the exited thread's stop request is spent */
        }
        unlock_lowered(&q->lock, inner);
        if (!dead) return; /* a live thread (maybe stopping: it drains the list before exiting) */
    }
    char name[PLAT_NAME_MAX];
    snprintf(name, sizeof name, "DPC cpu%u", (unsigned)(q - queues));
    plat_on_quiesce(ke_stop_service_threads);
    plat_thread *t = plat_thread_start(dpc_thread, q, name, PLAT_THREAD_SYSTEM);
    if (!t) plat_panic("cannot start a DPC thread");
    /* Before q->thread is published: DPCs reach the thread only through inserts that follow
     * queue_for, and q->lock orders them after this store. */
    t->vcpu = (uint8_t)(q - queues);
    q->started = 1;
    q->generation++;
    plat_store_ptr((void *volatile *)&q->thread, t);
}

static dpc_queue *queue_for(unsigned cpu)
{
    ensure_init();
    unsigned n = plat_vcpus();
    if (n > MAX_VCPUS) n = MAX_VCPUS;
    dpc_queue *q = &queues[cpu % n];
    /* Unlocked fast check; a miss is re-checked under start_lock, so one thread starts it. A
     * thread seen here may be exiting (ke_dpc_shutdown): KeInsertQueueDpc checks under q->lock. */
    if (plat_load_ptr((void *const volatile *)&q->thread)) return q;
    KIRQL old = lock_raised(&start_lock);
    if (!q->thread) start_thread_locked(q);
    unlock_lowered(&start_lock, old);
    return q;
}

VOID KeInitializeDpc(PRKDPC Dpc, PKDEFERRED_ROUTINE DeferredRoutine, PVOID DeferredContext)
{
    memset(Dpc, 0, sizeof *Dpc);
    Dpc->Type = DpcObject;
    Dpc->Importance = MediumImportance;
    Dpc->DeferredRoutine = DeferredRoutine;
    Dpc->DeferredContext = DeferredContext;
    InitializeListHead(&Dpc->DpcListEntry);
}

VOID KeSetTargetProcessorDpc(PRKDPC Dpc, CCHAR Number)
{
    Dpc->Number = (USHORT)(UCHAR)Number;
    Dpc->IrpkTargeted = 1;
}

VOID KeSetImportanceDpc(PRKDPC Dpc, KDPC_IMPORTANCE Importance) { Dpc->Importance = (UCHAR)Importance; }

BOOLEAN KeInsertQueueDpc(PRKDPC Dpc, PVOID SystemArgument1, PVOID SystemArgument2)
{
    unsigned cpu = Dpc->IrpkTargeted ? Dpc->Number : plat_self()->vcpu;
    dpc_queue *q = queue_for(cpu);
    plat_point("KeInsertQueueDpc", Dpc);
    KIRQL old = lock_raised(&q->lock);
    /* DpcData is claimed by compare-exchange while holding this queue's lock: two inserters on
     * different CPUs (different queue locks) cannot both queue the DPC, and a remover that
     * finds DpcData == q and takes q's lock sees the insertion complete. */
    if (plat_cas_ptr((void *volatile *)&Dpc->DpcData, NULL, q) != NULL) {
        unlock_lowered(&q->lock, old);
        return FALSE;
    }
    Dpc->SystemArgument1 = SystemArgument1;
    Dpc->SystemArgument2 = SystemArgument2;
    if (Dpc->Importance == HighImportance) InsertHeadList(&q->list, &Dpc->DpcListEntry);
    else InsertTailList(&q->list, &Dpc->DpcListEntry);
    q->queued++;
    plat_fetch_add32((volatile int32_t *)&q->work_seq, 1); /* under q->lock: see dpc_queue */
    /* The queue's thread exited after queue_for saw it (a ke_dpc_shutdown in between): it will
     * not come back for this DPC, so start one. Read under q->lock, where the thread decides to
     * exit (with the list empty) and where a restart clears it: if it reads 0 here, the live
     * thread runs the list before it can exit. */
    bool orphaned = q->exited;
    unlock_lowered(&q->lock, old);
    plat_wake(&q->work_seq, 1);
    if (orphaned) {
        KIRQL s = lock_raised(&start_lock); /* not under q->lock: start_lock comes first */
        start_thread_locked(q);             /* no-op if another insert restarted it already */
        unlock_lowered(&start_lock, s);
    }
    return TRUE;
}

BOOLEAN KeRemoveQueueDpc(PRKDPC Dpc)
{
    /* Unlocked: NULL means not queued at this instant; a queue found here is re-checked under
     * its own lock (the DPC may have been picked, or moved to another CPU's queue, meanwhile). */
    dpc_queue *q = (dpc_queue *)plat_load_ptr((void *const volatile *)&Dpc->DpcData);
    if (!q) return FALSE;
    KIRQL old = lock_raised(&q->lock);
    bool queued = Dpc->DpcData == q; /* still on this queue: not yet picked by its thread */
    if (queued) {
        RemoveEntryList(&Dpc->DpcListEntry);
        plat_store_ptr((void *volatile *)&Dpc->DpcData, NULL);
        q->queued--; /* a flush marker behind it is reached when the thread gets to it */
    }
    unlock_lowered(&q->lock, old);
    return queued;
}

VOID KeFlushQueuedDpcs(VOID)
{
    ensure_init();
    for (int i = 0; i < MAX_VCPUS; i++) {
        dpc_queue *q = &queues[i];
        KIRQL old = lock_raised(&q->lock);
        if (!q->queued && !q->running) { /* nothing queued before this call, nothing running */
            unlock_lowered(&q->lock, old);
            continue;
        }
        /* A marker at the tail: the thread reaches it once every DPC queued before it has been
         * run or removed and the running routine has returned. DPCs queued later go behind it
         * (HighImportance ones in front: waited for too, which the contract allows). Counting
         * "finished" against "inserted" (as before) was fooled by a later DPC that was removed
         * or overtook the queue. */
        KDPC marker;
        memset(&marker, 0, sizeof marker);
        marker.Type = DPC_FLUSH_MARKER;
        InsertTailList(&q->list, &marker.DpcListEntry);
        plat_fetch_add32((volatile int32_t *)&q->work_seq, 1);
        unlock_lowered(&q->lock, old);
        plat_wake(&q->work_seq, 1);
        old = lock_raised(&q->lock);
        while (!marker.SystemArgument1) {
            /* Sampled under q->lock, which the marker is reached under: no wake-up is lost. */
            uint32_t seq = q->done_seq;
            unlock_lowered(&q->lock, old); /* never wait holding it (or raised) */
            plat_wait(&q->done_seq, seq, PLAT_FOREVER);
            old = lock_raised(&q->lock);
        }
        unlock_lowered(&q->lock, old);
    }
}

int ke_dpcs_queued(void)
{
    if (!plat_load32(&initialized)) return 0;
    int n = 0;
    /* One queue lock at a time (never two held): a snapshot, exact once inserts have stopped. */
    for (int i = 0; i < MAX_VCPUS; i++) {
        KIRQL old = lock_raised(&queues[i].lock);
        n += queues[i].queued;
        unlock_lowered(&queues[i].lock, old);
    }
    return n;
}

PKDPC ke_dpc_queued_in(const void *lo, const void *hi)
{
    if (!plat_load32(&initialized)) return NULL;
    PKDPC found = NULL;
    for (int i = 0; i < MAX_VCPUS && !found; i++) {
        KIRQL old = lock_raised(&queues[i].lock);
        for (PLIST_ENTRY e = queues[i].list.Flink; e && e != &queues[i].list && !found; e = e->Flink) {
            PKDPC d = CONTAINING_RECORD(e, KDPC, DpcListEntry);
            if (d->Type == DPC_FLUSH_MARKER) continue; /* a flusher's, on its stack */
            if ((const char *)d >= (const char *)lo && (const char *)d < (const char *)hi) found = d;
        }
        unlock_lowered(&queues[i].lock, old);
    }
    return found;
}

void ke_dpc_shutdown(void)
{
    if (!plat_load32(&initialized)) return;
    for (int i = 0; i < MAX_VCPUS; i++) {
        dpc_queue *q = &queues[i];
        /* Join outside start_lock: a draining DPC may insert DPCs that start other threads. */
        KIRQL old = lock_raised(&start_lock);
        /* Another shutdown is stopping this queue's thread: wait until it has joined it (its
         * record is freed by that join, so it must not be joined again), then go on — as if
         * this shutdown had come after it. stop_seq is sampled under start_lock, where the
         * stopper bumps it, so the wake-up cannot be missed. */
        while (q->stopping) {
            uint32_t seq = q->stop_seq;
            q->stop_waiters++;
            unlock_lowered(&start_lock, old); /* never wait holding it (or raised) */
            plat_wait(&q->stop_seq, seq, PLAT_FOREVER);
            old = lock_raised(&start_lock);
            q->stop_waiters--;
        }
        plat_thread *t = q->thread;
        uint32_t gen = q->generation;
        q->stopping = t != NULL; /* claimed under start_lock: one shutdown joins t */
        unlock_lowered(&start_lock, old);
        if (!t) continue;
        old = lock_raised(&q->lock);
        q->stop = 1;
        plat_fetch_add32((volatile int32_t *)&q->work_seq, 1); /* see dpc_queue */
        unlock_lowered(&q->lock, old);
        plat_wake(&q->work_seq, INT32_MAX);
        /* It drains the queue, then exits with q->exited set. A DPC inserted after that starts
         * a new thread (KeInsertQueueDpc): the insert is ordered after this shutdown. */
        plat_thread_join(t);
        old = lock_raised(&start_lock);
        /* Unpublish t only if no insert restarted the queue since (generation, not the pointer:
         * t's record is freed and a new thread's may reuse its address). q->exited stays set
         * and q->stop too: the next start_thread_locked clears both. */
        if (q->generation == gen) plat_store_ptr((void *volatile *)&q->thread, NULL);
        q->stopping = 0;
        bool waiters = q->stop_waiters > 0;
        if (waiters) plat_fetch_add32((volatile int32_t *)&q->stop_seq, 1); /* under start_lock */
        unlock_lowered(&start_lock, old);
        if (waiters) plat_wake(&q->stop_seq, INT32_MAX);
    }
}
