/* Timers: one runtime-owned "timer" thread keeps the armed timers in due-time order; at expiry
 * it signals the timer object, queues its DPC and re-arms periodic timers. Due times are
 * plat_now_ns() instants (virtual in explore mode, so expiry there is a scheduling choice). */
#include "ke/ke.h"

/* timer_lock guards the armed list and every KTIMER's TimerListEntry/DueTime/Header.Inserted.
 * Lock order: timer_lock → dispatcher lock (the signal state is changed under timer_lock, so
 * "arm + reset" in KeSetTimerEx and "unlink + signal" at expiry are each atomic: an expiry can
 * never be wiped out by the reset of the arming that caused it). timer_lock is never held while
 * taking a DPC queue lock or calling the observer: expiry queues the DPC after releasing it. */
static plat_lockword timer_lock;
static LIST_ENTRY armed = {&armed, &armed};
static uint32_t armed_seq; /* bumped when the earliest due time may have changed */
static int32_t n_armed;
static int32_t stop;
static plat_thread *timer_thread;
static int32_t initialized;

static void reset_timers(void)
{
    plat_lock_init(&timer_lock);
    InitializeListHead(&armed);
    armed_seq = 0;
    n_armed = 0;
    stop = 0;
    timer_thread = NULL;
    initialized = 0;
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

/* After the expiry was signalled under timer_lock: observer and DPC, with no lock held. */
static void fire(PKTIMER t, PKDPC dpc)
{
    const ke_observer *obs = plat_bk_load_ptr((void *const volatile *)&ke_observer_current);
    if (obs && obs->timer_fired) obs->timer_fired(t);
    if (dpc) KeInsertQueueDpc(dpc, (PVOID)(uintptr_t)plat_system_time(), NULL);
}

static void timer_main(void *arg)
{
    (void)arg;
    plat_lock_acquire(&timer_lock);
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
                plat_lock_release(&timer_lock);
                fire(t, dpc);
                plat_lock_acquire(&timer_lock);
                continue;
            }
        }
        int64_t deadline = IsListEmpty(&armed)
                               ? PLAT_FOREVER
                               : due_ns(CONTAINING_RECORD(armed.Flink, KTIMER, TimerListEntry));
        uint32_t seq = armed_seq;
        plat_lock_release(&timer_lock);
        plat_wait(&armed_seq, seq, deadline); /* re-arming bumps armed_seq and wakes us */
        plat_lock_acquire(&timer_lock);
    }
    plat_lock_release(&timer_lock);
}

static void ensure_thread(void)
{
    if (plat_load32(&initialized) == 2) return;
    /* 0 -> 1 elects one starter; 2 is stored only after timer_thread is set, so a caller that
     * reads 2 (or waits for it below) sees the thread. */
    if (plat_cas32(&initialized, 0, 1) == 0) {
        plat_on_reset(reset_timers);
        plat_on_quiesce(ke_stop_service_threads);
        timer_thread = plat_thread_start(timer_main, NULL, "timer", PLAT_THREAD_SYSTEM);
        if (!timer_thread) plat_panic("cannot start the timer thread");
        plat_store32(&initialized, 2);
        return;
    }
    while (plat_load32(&initialized) != 2) plat_yield(); /* another thread is starting it */
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
    plat_lock_acquire(&timer_lock);
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
    plat_lock_release(&timer_lock);
    plat_wake(&armed_seq, 1);
    return was;
}

BOOLEAN KeSetTimer(PKTIMER Timer, LARGE_INTEGER DueTime, PKDPC Dpc)
{
    return KeSetTimerEx(Timer, DueTime, 0, Dpc);
}

BOOLEAN KeCancelTimer(PKTIMER Timer)
{
    if (plat_load32(&initialized) != 2) return FALSE; /* nothing was ever armed */
    plat_point("KeCancelTimer", Timer);
    plat_lock_acquire(&timer_lock);
    BOOLEAN was = Timer->Header.Inserted;
    if (was) unlink_timer(Timer);
    plat_lock_release(&timer_lock);
    return was;
}

BOOLEAN KeReadStateTimer(PKTIMER Timer)
{
    /* Read, never wait: a zero-timeout wait would consume a synchronization timer. */
    return (BOOLEAN)(KeReadStateEvent((PRKEVENT)Timer) > 0);
}

int ke_timers_set(void)
{
    if (plat_load32(&initialized) != 2) return 0;
    plat_lock_acquire(&timer_lock);
    int n = n_armed;
    plat_lock_release(&timer_lock);
    return n;
}

PKTIMER ke_timer_set_in(const void *lo, const void *hi)
{
    if (plat_load32(&initialized) != 2) return NULL;
    PKTIMER found = NULL;
    plat_lock_acquire(&timer_lock);
    for (PLIST_ENTRY e = armed.Flink; e != &armed && !found; e = e->Flink) {
        PKTIMER t = CONTAINING_RECORD(e, KTIMER, TimerListEntry);
        if ((const char *)t >= (const char *)lo && (const char *)t < (const char *)hi) found = t;
    }
    plat_lock_release(&timer_lock);
    return found;
}

void ke_timer_shutdown(void)
{
    if (plat_load32(&initialized) != 2) return;
    plat_lock_acquire(&timer_lock);
    stop = 1;
    plat_fetch_add32((volatile int32_t *)&armed_seq, 1); /* read by plat_wait without the lock */
    plat_lock_release(&timer_lock);
    plat_wake(&armed_seq, INT32_MAX);
    plat_thread_join(timer_thread);
    plat_lock_acquire(&timer_lock);
    stop = 0;
    timer_thread = NULL;
    plat_lock_release(&timer_lock);
    plat_store32(&initialized, 0);
}
