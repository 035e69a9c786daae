/* Internal interface of the ke layer for the layers above it (io, verify, user, trace). */
#ifndef IRPK_KE_H
#define IRPK_KE_H

#include <wdm.h>

#include "irpkit/bugcheck.h"
#include "platform/platform.h"

/* ---- per-thread ke state (plat_thread.ext[PLAT_EXT_KE]) */
typedef struct ke_thread {
    int32_t critical_region; /* KeEnterCriticalRegion nesting */
    /* Spin locks the thread holds, newest last (the verifier's held-lock set). */
    const void *held[16];
    uint8_t held_irql[16];
    int32_t n_held;
} ke_thread;

/* The calling thread's ke state (created on first use; freed by the thread-exit hook). */
ke_thread *ke_self(void);

static inline KIRQL ke_irql(void) { return plat_self()->irql; }

/* Set the IRQL without checks (runtime-internal transitions, e.g. DPC threads). A scheduling
 * point in explore mode. */
void ke_set_irql(KIRQL irql);

/* ---- the runtime's internal locks, held at DISPATCH_LEVEL
 *
 * Platform lock words that the runtime takes at any IRQL, DPC routines included — ke's
 * dispatcher lock (wait.c), the DPC queue locks and start_lock (dpc.c), timer_lock (timer.c),
 * src/user's IrpListLock, completion lock and I/O-worker lock — are held at DISPATCH_LEVEL (or
 * the caller's higher IRQL), as Windows holds their equivalents (the dispatcher database lock,
 * the per-processor DPC queue and timer table locks, IopCompletionLock; Windows needs no lock
 * for a thread's IRP list, which only that thread touches at APC_LEVEL, while irpkit's hand-off
 * touches it from the completing DPC). So nothing that runs at DISPATCH_LEVEL on the holder's CPU —
 * a DPC, a spin-lock holder — can preempt the holder there and spin on the lock. Under the
 * explorer a thread at DISPATCH_LEVEL keeps its vCPU while it runs or spins for a lock (its
 * neighbours are not scheduled), so a PASSIVE_LEVEL holder preempted at a scheduling point
 * inside the critical section (KeSetEvent's wake-up, an atomic, a thread start) by a DPC of
 * its vCPU that then waited for the lock was shut out for good: a deadlock no Windows machine
 * can have. Natively the raise only changes what KeGetCurrentIrql answers inside (nothing
 * under these locks asks).
 *
 * ke_lock_raised raises (never lowers) before the acquire and returns the previous IRQL;
 * ke_unlock_lowered releases, then goes back to it. Neither IRQL change is a scheduling point
 * (unlike ke_set_irql): the raise is followed at once by the acquire, itself a point, where
 * the thread already holds its vCPU; after the lower the thread's next point offers every
 * choice a point at the lower would have (the code in between touches nothing shared), so the
 * explored schedules only lose the false deadlocks. Not for waits: release the lock (and so
 * lower) before blocking. */
static inline KIRQL ke_lock_raised(volatile plat_lockword *lock)
{
    plat_thread *t = plat_self();
    KIRQL old = t->irql;
    if (old < DISPATCH_LEVEL) t->irql = DISPATCH_LEVEL;
    plat_lock_acquire(lock);
    return old;
}

static inline void ke_unlock_lowered(volatile plat_lockword *lock, KIRQL old)
{
    plat_lock_release(lock);
    if (old < DISPATCH_LEVEL) plat_self()->irql = old;
}

/* Convenience for reports raised by the runtime itself. */
#define ke_bugcheck irpk_bugcheck_raise

/* ---- dispatcher objects (events, semaphores, mutexes, timers, threads) */

/* Signal a dispatcher object whose state the caller defines (thread objects at exit): sets
 * SignalState to `state` and wakes the waiters it satisfies. */
void ke_signal_object(DISPATCHER_HEADER *header, LONG state);
/* Initialise a header of the given type (waitable by KeWaitForSingleObject). */
void ke_init_dispatcher_header(DISPATCHER_HEADER *header, UCHAR type, LONG state);
/* Convert an NT timeout (NULL / relative negative / absolute positive, 100 ns) to a
 * plat_now_ns deadline; PLAT_FOREVER for NULL. */
int64_t ke_timeout_to_deadline(const LARGE_INTEGER *timeout);

/* ---- alertable waits (KeWaitForSingleObject / KeWaitForMultipleObjects /
 * KeDelayExecutionThread with Alertable = TRUE)
 *
 * ke keeps no user APCs and no alert flag: the layer that does (src/user, per ETHREAD) installs
 * this hook. It reports, for the calling thread, what breaks an alertable wait in `mode`:
 * STATUS_ALERTED if the thread is alerted (any mode; the alert is consumed), STATUS_USER_APC if
 * mode is UserMode and a user APC is queued (the APC stays queued: it runs at the thread's
 * next alertable user-mode wait), else STATUS_SUCCESS. *wake is set to the dispatcher object
 * the layer signals after queuing an APC to the thread or alerting it (the thread's ApcEvent),
 * or NULL for a thread that can get neither; ke includes it in the wait, so an APC queued
 * after the hook answered still breaks the wait. Called with no ke lock held (it takes the
 * thread's IrpListLock, which nests outside the dispatcher lock). Installed once, before main
 * (a constructor), and never changed: ke reads it without synchronisation. No hook: alertable
 * waits are plain waits. */
typedef NTSTATUS (*ke_alert_hook)(KPROCESSOR_MODE mode, DISPATCHER_HEADER **wake);
void ke_set_alert_hook(ke_alert_hook hook);

/* ---- DPC and timer observers (trace / timeline), all optional. dpc_begin/dpc_end run on the
 * DPC thread around the routine, with no lock held. timer_fired runs on the timer thread
 * inside the expiry, with the timer lock held: the KTIMER is live and its fields stable, but
 * the callback must not call timer routines (it would self-deadlock) and should take only
 * leaf locks (the trace's bookkeeping locks). */
typedef struct ke_observer {
    void (*dpc_begin)(PKDPC dpc, PKDEFERRED_ROUTINE routine);
    void (*dpc_end)(PKDEFERRED_ROUTINE routine);
    void (*timer_fired)(PKTIMER timer);
} ke_observer;
void ke_set_observer(const ke_observer *observer);
extern const ke_observer *ke_observer_current;

/* ---- runtime lifetime */
/* Stop the DPC and timer threads (native mode), after letting queued DPCs run. Idempotent;
 * the threads restart on demand. */
void ke_shutdown(void);
/* Stop the timer thread, then the DPC threads (the quiesce function of ke). */
void ke_stop_service_threads(void);
/* Each half of it. ke_dpc_shutdown lets every queue's thread drain its queue and exit; a DPC
 * inserted after a thread decided to exit starts a new one (docs/ke.md). ke_timer_shutdown
 * also stops a timer thread whose first start it overlaps. */
void ke_dpc_shutdown(void);
void ke_timer_shutdown(void);
/* The timer thread's state: 0 stopped, 1 being started, 2 running, 3 being stopped (tests). */
int ke_timer_thread_state(void);
/* Number of DPCs queued and timers set right now (leak checks at teardown). */
int ke_dpcs_queued(void);
int ke_timers_set(void);

/* Teardown checks (verifier): a queued DPC / a set timer whose object lies in [lo, hi), or
 * NULL. */
PKDPC ke_dpc_queued_in(const void *lo, const void *hi);
PKTIMER ke_timer_set_in(const void *lo, const void *hi);
/* Release a spin lock this thread holds without touching IRQL (the verifier neutralising a
 * routine that returned holding it). */
void ke_spin_force_release(PKSPIN_LOCK lock);

/* Pool accounting: live allocations (all tags / one tag). */
long ke_pool_outstanding(void);
long ke_pool_outstanding_tag(ULONG tag);

#endif
