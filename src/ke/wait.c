/* Dispatcher objects and waits: events, semaphores, mutexes, timers and thread objects, with
 * KeWaitForSingleObject / KeWaitForMultipleObjects and the NT timeout convention.
 *
 * One dispatcher lock (a platform lock word, like NT's dispatcher database lock, and like it
 * held at DISPATCH_LEVEL) guards every object's SignalState and wait list; waiters register
 * wait blocks under it, drop it (back at their own IRQL) and park;
 * a signaller satisfies waiters under it and unparks them. Because the satisfied flag is only
 * read and written under the lock and plat_park keeps a permit, no wake-up can be lost.
 *
 * Alertable waits ("Waits and APCs", learn.microsoft.com): the objects first — a wait they
 * satisfy at once returns their status; then the upper layer's alert hook (ke.h): an alerted
 * thread's wait returns STATUS_ALERTED in either WaitMode, a UserMode wait with a user APC
 * queued returns STATUS_USER_APC (the APC is not run here); then the thread blocks on its
 * objects plus the hook's wake object, whose signal sends it back to the hook. A non-alertable
 * wait never looks at any of this (its path is unchanged). */
#include "ke/ke.h"

struct _KIRPK_WAITER {
    plat_thread *thread;
    int32_t done; /* under dispatcher_lock */
    NTSTATUS status;
    WAIT_TYPE type;
    ULONG count;
    PKWAIT_BLOCK blocks;
    PKWAIT_BLOCK wake; /* alertable waits: the block on the thread's wake object, else NULL */
};
typedef struct _KIRPK_WAITER ke_waiter;

static plat_lockword dispatcher_lock;

/* Held at DISPATCH_LEVEL, as NT holds its dispatcher database lock (ke.h, ke_lock_raised): a
 * DPC of the holder's vCPU cannot preempt it inside — KeSetEvent holds the lock across its
 * waiters' wake-up, a scheduling point — and then spin on the lock. Safe to nest under
 * IrpListLock and timer_lock (both raised too), and no wait happens while it is held. */
static KIRQL lock_dispatcher(void) { return ke_lock_raised(&dispatcher_lock); }
static void unlock_dispatcher(KIRQL old) { ke_unlock_lowered(&dispatcher_lock, old); }

void ke_init_dispatcher_header(DISPATCHER_HEADER *h, UCHAR type, LONG state)
{
    h->Type = type;
    h->Absolute = 0;
    h->Size = 0;
    h->Inserted = 0;
    h->SignalState = state;
    InitializeListHead(&h->WaitListHead);
}

/* ---- object semantics (dispatcher lock held) */

static bool is_signaled(DISPATCHER_HEADER *h, plat_thread *t)
{
    if (h->Type == MutantObject) return h->SignalState > 0 || ((PKMUTANT)h)->OwnerThread == t;
    return h->SignalState > 0;
}

static void consume(DISPATCHER_HEADER *h, plat_thread *t)
{
    switch (h->Type) {
    case EventSynchronizationObject:
    case TimerSynchronizationObject:
        h->SignalState = 0;
        break;
    case SemaphoreObject:
        h->SignalState--;
        break;
    case MutantObject:
        h->SignalState--;
        ((PKMUTANT)h)->OwnerThread = t;
        break;
    default: /* notification events/timers and threads stay signalled */
        break;
    }
}

static void satisfy(ke_waiter *w, NTSTATUS status)
{
    for (ULONG i = 0; i < w->count; i++) RemoveEntryList(&w->blocks[i].WaitListEntry);
    if (w->wake) RemoveEntryList(&w->wake->WaitListEntry);
    w->status = status;
    w->done = 1;
    /* Under the dispatcher lock: the waiter reads done only under it, so w (on its stack) is
     * still alive here; an unpark that arrives before it parks is kept as the permit. */
    plat_unpark(w->thread);
}

static bool all_signaled(ke_waiter *w)
{
    for (ULONG i = 0; i < w->count; i++)
        if (!is_signaled(w->blocks[i].Object, w->thread)) return false;
    return true;
}

/* Satisfy as many waiters of h as its new state allows (dispatcher lock held). */
static void wake_waiters(DISPATCHER_HEADER *h)
{
    PLIST_ENTRY e = h->WaitListHead.Flink;
    while (e != &h->WaitListHead && is_signaled(h, NULL)) {
        PKWAIT_BLOCK wb = CONTAINING_RECORD(e, KWAIT_BLOCK, WaitListEntry);
        ke_waiter *w = wb->Waiter;
        e = e->Flink; /* satisfy() unlinks only w's own blocks */
        /* The block's own type: a WaitAll waiter's wake block is WaitAny (it alone ends the wait). */
        if (wb->WaitType == WaitAny) {
            consume(h, w->thread);
            satisfy(w, STATUS_WAIT_0 + wb->WaitKey);
        } else if (all_signaled(w)) {
            for (ULONG i = 0; i < w->count; i++) consume(w->blocks[i].Object, w->thread);
            satisfy(w, STATUS_SUCCESS);
        }
    }
}

void ke_signal_object(DISPATCHER_HEADER *h, LONG state)
{
    KIRQL old = lock_dispatcher();
    h->SignalState = state;
    wake_waiters(h);
    unlock_dispatcher(old);
}

/* ---- events */

VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State)
{
    ke_init_dispatcher_header(&Event->Header,
                              Type == NotificationEvent ? EventNotificationObject
                                                        : EventSynchronizationObject,
                              State ? 1 : 0);
}

LONG KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait)
{
    (void)Increment;
    (void)Wait;
    plat_point("KeSetEvent", Event);
    KIRQL old = lock_dispatcher();
    LONG prev = Event->Header.SignalState;
    Event->Header.SignalState = 1;
    wake_waiters(&Event->Header);
    unlock_dispatcher(old);
    return prev;
}

LONG KeResetEvent(PRKEVENT Event)
{
    KIRQL old = lock_dispatcher();
    LONG prev = Event->Header.SignalState;
    Event->Header.SignalState = 0;
    unlock_dispatcher(old);
    return prev;
}

VOID KeClearEvent(PRKEVENT Event) { (void)KeResetEvent(Event); }

static LONG read_state(DISPATCHER_HEADER *h)
{
    KIRQL old = lock_dispatcher();
    LONG s = h->SignalState;
    unlock_dispatcher(old);
    return s;
}

LONG KeReadStateEvent(PRKEVENT Event) { return read_state(&Event->Header); }

/* ---- semaphores */

VOID KeInitializeSemaphore(PRKSEMAPHORE Semaphore, LONG Count, LONG Limit)
{
    ke_init_dispatcher_header(&Semaphore->Header, SemaphoreObject, Count);
    Semaphore->Limit = Limit;
}

LONG KeReleaseSemaphore(PRKSEMAPHORE Semaphore, KPRIORITY Increment, LONG Adjustment, BOOLEAN Wait)
{
    (void)Increment;
    (void)Wait;
    KIRQL old = lock_dispatcher();
    LONG prev = Semaphore->Header.SignalState;
    bool ok = Adjustment > 0 && prev <= Semaphore->Limit - Adjustment;
    if (ok) {
        Semaphore->Header.SignalState = prev + Adjustment;
        wake_waiters(&Semaphore->Header);
    }
    unlock_dispatcher(old);
    if (!ok)
        ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x1, (uintptr_t)Semaphore,
                    (uintptr_t)prev, (uintptr_t)Adjustment,
                    "KeReleaseSemaphore would exceed the limit (count %d + %d > limit %d) — "
                    "STATUS_SEMAPHORE_LIMIT_EXCEEDED; the count is unchanged.",
                    (int)prev, (int)Adjustment, (int)Semaphore->Limit);
    return prev;
}

LONG KeReadStateSemaphore(PRKSEMAPHORE Semaphore) { return read_state(&Semaphore->Header); }

/* ---- mutexes */

VOID KeInitializeMutex(PRKMUTEX Mutex, ULONG Level)
{
    (void)Level;
    ke_init_dispatcher_header(&Mutex->Header, MutantObject, 1);
    Mutex->OwnerThread = NULL;
    Mutex->Abandoned = FALSE;
    Mutex->ApcDisable = 1;
    InitializeListHead(&Mutex->MutantListEntry);
}

LONG KeReleaseMutex(PRKMUTEX Mutex, BOOLEAN Wait)
{
    (void)Wait;
    plat_thread *self = plat_self();
    KIRQL old = lock_dispatcher();
    LONG prev = Mutex->Header.SignalState;
    bool owner = Mutex->OwnerThread == self && prev <= 0;
    if (owner) {
        Mutex->Header.SignalState = prev + 1;
        if (Mutex->Header.SignalState == 1) {
            Mutex->OwnerThread = NULL;
            wake_waiters(&Mutex->Header);
        }
    }
    unlock_dispatcher(old);
    if (!owner)
        ke_bugcheck(0x1E /* KMODE_EXCEPTION: STATUS_MUTANT_NOT_OWNED */, (uintptr_t)Mutex, 0, 0, 0,
                    "KeReleaseMutex by a thread that does not own the mutex; ignored.");
    return prev;
}

LONG KeReadStateMutex(PRKMUTEX Mutex) { return read_state(&Mutex->Header); }

/* ---- waits */

int64_t ke_timeout_to_deadline(const LARGE_INTEGER *timeout)
{
    if (!timeout) return PLAT_FOREVER;
    int64_t now = plat_now_ns();
    int64_t q = timeout->QuadPart;
    int64_t rel100 = q <= 0 ? -q : q - plat_system_time();
    if (rel100 < 0) rel100 = 0;
    if (rel100 > (PLAT_FOREVER - now) / 100) return PLAT_FOREVER;
    return now + rel100 * 100;
}

static void check_wait_irql(const LARGE_INTEGER *timeout, const char *api)
{
    KIRQL irql = ke_irql();
    if (irql < DISPATCH_LEVEL || (timeout && timeout->QuadPart == 0)) return;
    ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x3B, irql,
                timeout ? (uintptr_t)timeout->QuadPart : 0, 0,
                "%s with a non-zero timeout at IRQL %u (DISPATCH_LEVEL or above). The thread "
                "waits anyway so the program runs on.\nUsual cause: blocking inside StartIo, a "
                "DPC, or while holding a spin lock; start the work and finish it later from a "
                "timer/DPC instead of waiting.",
                api, irql);
}

/* Satisfiable right now? Consumes and returns the status, or STATUS_PENDING. */
static NTSTATUS try_satisfy(ULONG count, PVOID *objs, WAIT_TYPE type, plat_thread *self)
{
    if (type == WaitAny) {
        for (ULONG i = 0; i < count; i++) {
            if (is_signaled(objs[i], self)) {
                consume(objs[i], self);
                return STATUS_WAIT_0 + (NTSTATUS)i;
            }
        }
        return STATUS_PENDING;
    }
    for (ULONG i = 0; i < count; i++)
        if (!is_signaled(objs[i], self)) return STATUS_PENDING;
    for (ULONG i = 0; i < count; i++) consume(objs[i], self);
    return STATUS_SUCCESS;
}

/* The status a wait woken by its wake object returns: past every object's index. */
#define WAKE_STATUS(count) ((NTSTATUS)(STATUS_WAIT_0 + (count)))

/* Wait for the objects until deadline (poll: not at all); wake (with its block) only for
 * alertable waits, NULL otherwise — the common path, where the compiler folds it away. */
static inline NTSTATUS wait_blocks(ULONG count, PVOID *objs, WAIT_TYPE type, int64_t deadline, bool poll,
                                   PKWAIT_BLOCK blocks, DISPATCHER_HEADER *wake, PKWAIT_BLOCK wake_block)
{
    plat_thread *self = plat_self();
    ke_waiter w = {self, 0, STATUS_PENDING, type, count, blocks, NULL};
    plat_point("KeWait", count ? objs[0] : (PVOID)wake);
    KIRQL old = lock_dispatcher();
    NTSTATUS st = try_satisfy(count, objs, type, self);
    /* After the objects: a wake object already signalled (an APC queued or an alert since the
     * hook answered, or an old signal) sends the caller back to the hook instead of blocking. */
    if (wake && st == STATUS_PENDING && is_signaled(wake, self)) {
        consume(wake, self);
        st = WAKE_STATUS(count);
    }
    if (st != STATUS_PENDING || poll) {
        unlock_dispatcher(old);
        return st == STATUS_PENDING ? STATUS_TIMEOUT : st;
    }
    for (ULONG i = 0; i < count; i++) {
        blocks[i].Waiter = &w;
        blocks[i].Object = objs[i];
        blocks[i].WaitKey = (USHORT)i;
        blocks[i].WaitType = (UCHAR)type;
        InsertTailList(&((DISPATCHER_HEADER *)objs[i])->WaitListHead, &blocks[i].WaitListEntry);
    }
    if (wake) {
        /* Registered under the same lock hold that found wake unsignalled: its next signal
         * satisfies us (wake_waiters), so no APC queued from now on can be missed. */
        w.wake = wake_block;
        wake_block->Waiter = &w;
        wake_block->Object = wake;
        wake_block->WaitKey = (USHORT)count;
        wake_block->WaitType = WaitAny;
        InsertTailList(&wake->WaitListHead, &wake_block->WaitListEntry);
    }
    unlock_dispatcher(old);
    for (;;) {
        int r = plat_park(deadline);
        old = lock_dispatcher();
        if (w.done) {
            unlock_dispatcher(old);
            return w.status;
        }
        /* done was read under the lock first: a signaller that got here before us wins over
         * the timeout, and after our unlink below no signaller can find us. */
        if (r == PLAT_TIMEDOUT || plat_now_ns() >= deadline) {
            for (ULONG i = 0; i < count; i++) RemoveEntryList(&blocks[i].WaitListEntry);
            if (w.wake) RemoveEntryList(&w.wake->WaitListEntry);
            unlock_dispatcher(old);
            return STATUS_TIMEOUT;
        }
        unlock_dispatcher(old); /* spurious wake-up: park again */
    }
}

static NTSTATUS wait_objects(ULONG count, PVOID *objs, WAIT_TYPE type, PLARGE_INTEGER timeout,
                             PKWAIT_BLOCK blocks)
{
    int64_t deadline = ke_timeout_to_deadline(timeout);
    return wait_blocks(count, objs, type, deadline, timeout && timeout->QuadPart == 0, blocks, NULL, NULL);
}

/* Installed before main by the layer that keeps user APCs (ke.h); read-only afterwards. */
static ke_alert_hook alert_hook;

void ke_set_alert_hook(ke_alert_hook hook) { alert_hook = hook; }

/* An alertable wait (count may be 0: KeDelayExecutionThread). Without a hook it is a plain
 * wait. */
static NTSTATUS wait_alertable(ULONG count, PVOID *objs, WAIT_TYPE type, KPROCESSOR_MODE mode,
                               PLARGE_INTEGER timeout, PKWAIT_BLOCK blocks)
{
    int64_t deadline = ke_timeout_to_deadline(timeout);
    bool poll = timeout && timeout->QuadPart == 0;
    if (!alert_hook) return wait_blocks(count, objs, type, deadline, poll, blocks, NULL, NULL);
    KWAIT_BLOCK wake_block;
    for (;;) {
        /* The objects first: a wait they satisfy at once leaves the APCs and the alert alone. */
        NTSTATUS st = count ? wait_blocks(count, objs, type, 0, true, blocks, NULL, NULL) : STATUS_TIMEOUT;
        if (st != STATUS_TIMEOUT) return st;
        /* No ke lock held: the hook takes the thread's IrpListLock, which nests outside the
         * dispatcher lock (user.h). An object signalled between the test above and the hook is
         * the same as one signalled just after it (the wait below still finds it). */
        DISPATCHER_HEADER *wake = NULL;
        st = alert_hook(mode, &wake);
        if (st != STATUS_SUCCESS) return st;
        /* An APC queued or an alert after the hook answered signals wake (the upper layer
         * sets it after changing the state the hook reads), which this wait includes. */
        st = wait_blocks(count, objs, type, deadline, poll, blocks, wake, &wake_block);
        if (!wake || st != WAKE_STATUS(count)) return st;
        /* Woken by wake: ask the hook again (a KernelMode wait goes back to sleep for an APC). */
    }
}

NTSTATUS KeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode,
                               BOOLEAN Alertable, PLARGE_INTEGER Timeout)
{
    (void)WaitReason;
    check_wait_irql(Timeout, "KeWaitForSingleObject");
    KWAIT_BLOCK block;
    PVOID objs[1] = {Object};
    if (Alertable) return wait_alertable(1, objs, WaitAny, WaitMode, Timeout, &block);
    return wait_objects(1, objs, WaitAny, Timeout, &block);
}

NTSTATUS KeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
                                  KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode,
                                  BOOLEAN Alertable, PLARGE_INTEGER Timeout,
                                  PKWAIT_BLOCK WaitBlockArray)
{
    (void)WaitReason;
    KWAIT_BLOCK local[THREAD_WAIT_OBJECTS];
    if (Count == 0 || Count > MAXIMUM_WAIT_OBJECTS ||
        (!WaitBlockArray && Count > THREAD_WAIT_OBJECTS) ||
        (WaitType != WaitAny && WaitType != WaitAll)) {
        ke_bugcheck(IRPK_BUGCHECK_MAXIMUM_WAIT_OBJECTS_EXCEEDED, Count, (uintptr_t)WaitBlockArray,
                    WaitType, 0,
                    "KeWaitForMultipleObjects with %u objects (at most %u without a "
                    "WaitBlockArray, %u with one) or an unsupported wait type; returns "
                    "STATUS_INVALID_PARAMETER.",
                    (unsigned)Count, THREAD_WAIT_OBJECTS, MAXIMUM_WAIT_OBJECTS);
        return STATUS_INVALID_PARAMETER;
    }
    check_wait_irql(Timeout, "KeWaitForMultipleObjects");
    if (Alertable)
        return wait_alertable(Count, Object, WaitType, WaitMode, Timeout, WaitBlockArray ? WaitBlockArray : local);
    return wait_objects(Count, Object, WaitType, Timeout, WaitBlockArray ? WaitBlockArray : local);
}

NTSTATUS KeDelayExecutionThread(KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Interval)
{
    if (!Interval) return STATUS_INVALID_PARAMETER;
    KIRQL irql = ke_irql();
    if (irql >= DISPATCH_LEVEL)
        ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x3B, irql,
                    (uintptr_t)Interval->QuadPart, 0,
                    "KeDelayExecutionThread at IRQL %u (DISPATCH_LEVEL or above): sleeping is "
                    "illegal here. The thread sleeps anyway so the program runs on.",
                    irql);
    if (Alertable && alert_hook) {
        /* A wait on no object: only the alert hook's answer or wake object ends it early. */
        NTSTATUS st = wait_alertable(0, NULL, WaitAny, WaitMode, Interval, NULL);
        return st == STATUS_TIMEOUT ? STATUS_SUCCESS : st;
    }
    int64_t deadline = ke_timeout_to_deadline(Interval);
    plat_sleep_ns(deadline - plat_now_ns());
    return STATUS_SUCCESS;
}

VOID KeStallExecutionProcessor(ULONG MicroSeconds) { plat_sleep_ns((int64_t)MicroSeconds * 1000); }

VOID KeQuerySystemTime(PLARGE_INTEGER CurrentTime) { CurrentTime->QuadPart = plat_system_time(); }

ULONGLONG KeQueryInterruptTime(VOID) { return (ULONGLONG)(plat_now_ns() / 100); }

#define TIME_INCREMENT 156250 /* 15.625 ms in 100 ns units, the usual NT clock tick */

VOID KeQueryTickCount(PLARGE_INTEGER CurrentCount)
{
    CurrentCount->QuadPart = (LONGLONG)(KeQueryInterruptTime() / TIME_INCREMENT);
}

ULONG KeQueryTimeIncrement(VOID) { return TIME_INCREMENT; }

static void reset_dispatcher(void) { plat_lock_init(&dispatcher_lock); }

__attribute__((constructor)) static void register_dispatcher_reset(void)
{
    plat_on_reset(reset_dispatcher);
}
