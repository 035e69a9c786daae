/* Timers: one runtime-owned "timer" thread keeps the armed timers in due-time order; at expiry
 * it signals the timer object, queues its DPC and re-arms periodic timers. Due times are
 * plat_now_ns() instants (virtual in explore mode, so expiry there is a scheduling choice). */
#include "ke/ke.h"

/* timer_lock guards the armed list and every KTIMER's TimerListEntry/DueTime/Dpc/Period/
 * Header.Inserted.
 * Lock order: timer_lock → dispatcher lock, and timer_lock → DPC start_lock → DPC queue lock.
 *   - The signal state is changed under timer_lock, so "arm + reset" in KeSetTimerEx and
 *     "unlink + signal" at expiry are each atomic: an expiry can never be wiped out by the reset
 *     of the arming that caused it.
 *   - Expiry queues the timer's DPC before releasing timer_lock ("unlink + signal + queue the
 *     DPC" is one step, as in NT, where KeCancelTimer returning FALSE means the DPC has been
 *     queued). A KeCancelTimer that follows therefore sees the DPC queued, and the
 *     KeFlushQueuedDpcs after it waits for it: once both returned the DPC is neither queued,
 *     running nor about to be queued. Queueing after the release (as before) let "KeCancelTimer;
 *     KeFlushQueuedDpcs; free" finish first and the timer thread insert a freed KDPC.
 *   - Safe against deadlock: dpc.c's locks are leaves with respect to timer_lock — a DPC queue
 *     lock is held only around list/counter updates (no callout), start_lock only around
 *     starting a DPC thread and in ke_dpc_shutdown, which ke_stop_service_threads calls after
 *     ke_timer_shutdown, never under it. DPC routines run with no DPC lock held, so one that
 *     calls KeSetTimer/KeCancelTimer takes timer_lock with nothing else held. The dispatcher
 *     lock is likewise never held while taking timer_lock (wait.c calls no timer routine).
 * The observer's timer_fired is called under timer_lock too: it may read the KTIMER (its Dpc
 * and Period are stable, and the timer cannot be cancelled and freed meanwhile); it must not
 * call timer routines. The trace observer only takes its bookkeeping leaf locks. */
static plat_lockword timer_lock;

/* timer_lock is held at DISPATCH_LEVEL (ke.h, ke_lock_raised), as NT's timer table is only
 * touched at DISPATCH_LEVEL: DPC routines arm and cancel timers, and the timer thread (or a
 * PASSIVE_LEVEL caller) preempted inside an expiry or an arming — the dispatcher lock and the
 * DPC insert are scheduling points — by a DPC of its vCPU waiting for timer_lock was shut out
 * of that vCPU for good under the explorer. The expiry therefore runs at DISPATCH_LEVEL, as
 * NT's timer DPC does; the locks below it (dispatcher, DPC) are raised already. */
static KIRQL lock_timers(void) { return ke_lock_raised(&timer_lock); }
static void unlock_timers(KIRQL old) { ke_unlock_lowered(&timer_lock, old); }
static LIST_ENTRY armed = {&armed, &armed};
static uint32_t armed_seq; /* bumped when the earliest due time may have changed */
static int32_t n_armed;
static int32_t stop;
static plat_thread *timer_thread; /* set by the elected starter, cleared by the stopper */
/* The timer thread: 0 stopped, 1 being started (ensure_thread), 2 running, 3 being stopped
 * (ke_timer_shutdown). Each transition out of 0 and out of 2 is a compare-exchange, so one
 * starter and one stopper are elected; 1 -> 2 and 3 -> 0 are stores by the elected one. */
enum { TIMER_STOPPED = 0, TIMER_STARTING = 1, TIMER_RUNNING = 2, TIMER_STOPPING = 3 };
static int32_t initialized;
/* The timer thread was started at least once since the last reset (every arming starts it
 * first, so nothing can be armed while this is 0; cleared only by reset_timers). KeCancelTimer
 * and the leak checks gate on this, not on `initialized`: ke_timer_shutdown stops the thread
 * but leaves armed timers linked, and they must still be cancellable and counted afterwards. */
static int32_t ever_started;

static void reset_timers(void)
{
    plat_lock_init(&timer_lock);
    InitializeListHead(&armed);
    armed_seq = 0;
    n_armed = 0;
    stop = 0;
    timer_thread = NULL;
    initialized = 0;
    ever_started = 0;
}

static int64_t due_ns(PKTIMER t) { return (int64_t)t->DueTime.QuadPart; }

/* Insert in due order; equal due times keep arming order (timer_lock held). */
static void insert_sorted(PKTIMER t)
{
    PLIST_ENTRY e = armed.Blink;
    while (e != &armed && due_ns(CONTAINING_RECORD(e, KTIMER, TimerListEntry)) > due_ns(t)) e = e->Blink;
    InsertHeadList(e, &t->TimerListEntry);
    t->Header.Inserted = TRUE;
    n_armed++;
}

static void unlink_timer(PKTIMER t)
{
    RemoveEntryList(&t->TimerListEntry);
    t->Header.Inserted = FALSE;
    n_armed--;
}

/* The expiry of t, with timer_lock held (see the lock order above): the observer, then the
 * DPC. Both under the lock, so a KeCancelTimer that follows finds the DPC already queued. */
static void fire(PKTIMER t, PKDPC dpc)
{
    const ke_observer *obs = plat_bk_load_ptr((void *const volatile *)&ke_observer_current);
    if (obs && obs->timer_fired) obs->timer_fired(t);
    if (dpc) KeInsertQueueDpc(dpc, (PVOID)(uintptr_t)plat_system_time(), NULL);
}

static void timer_main(void *arg)
{
    (void)arg;
    KIRQL old = lock_timers();
    while (!stop) {
        int64_t now = plat_now_ns();
        if (!IsListEmpty(&armed)) {
            PKTIMER t = CONTAINING_RECORD(armed.Flink, KTIMER, TimerListEntry);
            if (due_ns(t) <= now) {
                unlink_timer(t);
                PKDPC dpc = t->Dpc;
                if (t->Period > 0) {
                    t->DueTime.QuadPart = (ULONGLONG)(due_ns(t) + (int64_t)t->Period * 1000000);
                    insert_sorted(t);
                }
                ke_signal_object(&t->Header, 1);
                fire(t, dpc); /* still under timer_lock: one step with the unlink + signal */
                continue;
            }
        }
        int64_t deadline = IsListEmpty(&armed)
                               ? PLAT_FOREVER
                               : due_ns(CONTAINING_RECORD(armed.Flink, KTIMER, TimerListEntry));
        uint32_t seq = armed_seq;
        unlock_timers(old); /* the wait gives the vCPU up at the thread's own IRQL */
        plat_wait(&armed_seq, seq, deadline); /* re-arming bumps armed_seq and wakes us */
        old = lock_timers();
    }
    unlock_timers(old);
}

static void ensure_thread(void)
{
    for (;;) {
        int32_t state = plat_load32(&initialized);
        if (state == TIMER_RUNNING) return;
        /* Being stopped: this arming is ordered before the shutdown, which leaves armed timers
         * armed (they fire once a later KeSetTimer restarts the thread). Not waited for: a DPC
         * routine may be the caller, and the shutdown's join does not need it. */
        if (state == TIMER_STOPPING) return;
        if (state == TIMER_STARTING) { /* another thread is starting it */
            plat_yield();
            continue;
        }
        /* 0 -> 1 elects one starter; 2 is stored only after timer_thread is set, so a caller
         * that reads 2 (or waits for it above) sees the thread. */
        if (plat_cas32(&initialized, TIMER_STOPPED, TIMER_STARTING) != TIMER_STOPPED) continue;
        plat_on_reset(reset_timers);
        plat_on_quiesce(ke_stop_service_threads);
        /* Before any timer can be linked (every arming calls ensure_thread first), and before
         * `initialized` reads 2: whoever sees a timer armed sees ever_started set. */
        plat_store32(&ever_started, 1);
        plat_thread *t = plat_thread_start(timer_main, NULL, "timer", PLAT_THREAD_SYSTEM);
        if (!t) plat_panic("cannot start the timer thread");
        timer_thread = t; /* plain: published by the seq_cst store of 2 below */
        plat_store32(&initialized, TIMER_RUNNING); /* a shutdown waiting in state 1 stops it now */
        return;
    }
}

VOID KeInitializeTimerEx(PKTIMER Timer, TIMER_TYPE Type)
{
    ke_init_dispatcher_header(&Timer->Header,
                              Type == NotificationTimer ? TimerNotificationObject
                                                        : TimerSynchronizationObject,
                              0);
    Timer->DueTime.QuadPart = 0;
    Timer->Dpc = NULL;
    Timer->Period = 0;
    InitializeListHead(&Timer->TimerListEntry);
}

VOID KeInitializeTimer(PKTIMER Timer) { KeInitializeTimerEx(Timer, NotificationTimer); }

BOOLEAN KeSetTimerEx(PKTIMER Timer, LARGE_INTEGER DueTime, LONG Period, PKDPC Dpc)
{
    ensure_thread();
    int64_t due = ke_timeout_to_deadline(&DueTime);
    plat_point("KeSetTimer", Timer);
    KIRQL old = lock_timers();
    BOOLEAN was = Timer->Header.Inserted;
    if (was) unlink_timer(Timer);
    Timer->Dpc = Dpc;
    Timer->Period = Period < 0 ? 0 : Period;
    Timer->DueTime.QuadPart = (ULONGLONG)due;
    insert_sorted(Timer);
    /* Atomic: the timer thread's plat_wait reads the word without timer_lock. */
    plat_fetch_add32((volatile int32_t *)&armed_seq, 1);
    /* Reset the signal state before the timer thread can see the new arming: resetting after
     * releasing timer_lock (as before) could erase an expiry that already happened. */
    ke_signal_object(&Timer->Header, 0);
    unlock_timers(old);
    plat_wake(&armed_seq, 1);
    return was;
}

BOOLEAN KeSetTimer(PKTIMER Timer, LARGE_INTEGER DueTime, PKDPC Dpc)
{
    return KeSetTimerEx(Timer, DueTime, 0, Dpc);
}

BOOLEAN KeCancelTimer(PKTIMER Timer)
{
    /* Not `initialized`: a timer armed before irpk_runtime_shutdown stays linked after the
     * thread stopped, and must still be unlinked here (its owner frees it next). */
    if (!plat_load32(&ever_started)) return FALSE; /* nothing was ever armed */
    plat_point("KeCancelTimer", Timer);
    KIRQL old = lock_timers();
    BOOLEAN was = Timer->Header.Inserted;
    if (was) unlink_timer(Timer);
    unlock_timers(old);
    return was;
}

BOOLEAN KeReadStateTimer(PKTIMER Timer)
{
    /* Read, never wait: a zero-timeout wait would consume a synchronization timer. */
    return (BOOLEAN)(KeReadStateEvent((PRKEVENT)Timer) > 0);
}

int ke_timers_set(void)
{
    if (!plat_load32(&ever_started)) return 0; /* also counts timers left armed by a shutdown */
    KIRQL old = lock_timers();
    int n = n_armed;
    unlock_timers(old);
    return n;
}

PKTIMER ke_timer_set_in(const void *lo, const void *hi)
{
    if (!plat_load32(&ever_started)) return NULL; /* also finds timers left armed by a shutdown */
    PKTIMER found = NULL;
    KIRQL old = lock_timers();
    for (PLIST_ENTRY e = armed.Flink; e != &armed && !found; e = e->Flink) {
        PKTIMER t = CONTAINING_RECORD(e, KTIMER, TimerListEntry);
        if ((const char *)t >= (const char *)lo && (const char *)t < (const char *)hi) found = t;
    }
    unlock_timers(old);
    return found;
}

int ke_timer_thread_state(void) { return plat_load32(&initialized); }

void ke_timer_shutdown(void)
{
    /* Elect this call the stopper (2 -> 3). A start in progress (1) is waited for and then
     * stopped: returning at once (as before) let the thread it was starting run on after the
     * shutdown — and after a plat_reset_all or into an exploration that followed it. Another
     * shutdown stopping it (3) is waited for, so this one too returns with the thread gone. */
    for (;;) {
        int32_t state = plat_load32(&initialized);
        if (state == TIMER_STOPPED) return;
        if (state == TIMER_RUNNING &&
            plat_cas32(&initialized, TIMER_RUNNING, TIMER_STOPPING) == TIMER_RUNNING)
            break;
        if (state != TIMER_RUNNING) plat_yield(); /* 1 or 3: the elected thread finishes without us */
    }
    plat_thread *t = timer_thread; /* plain: the starter wrote it before storing 2, which we read */
    KIRQL old = lock_timers();
    stop = 1;
    plat_fetch_add32((volatile int32_t *)&armed_seq, 1); /* read by plat_wait without the lock */
    unlock_timers(old);
    plat_wake(&armed_seq, INT32_MAX);
    plat_thread_join(t);
    old = lock_timers();
    stop = 0;
    timer_thread = NULL; /* no starter can run before the store of 0 below */
    unlock_timers(old);
    plat_store32(&initialized, TIMER_STOPPED); /* last: a new arming may start a new thread */
}
