/* Spin locks, queued spin locks, interlocked operations and interlocked lists.
 *
 * A KSPIN_LOCK hosts a platform lock word. Acquire raises to DISPATCH_LEVEL first (so the
 * holder cannot be "preempted" by same-CPU code in explore mode), release restores the caller's
 * IRQL. The per-thread held-lock set is kept here; the verifier reads it. */
#include "ke/ke.h"
#include "verify/hooks.h"

static void held_push(const void *lock, KIRQL old)
{
    ke_thread *k = ke_self();
    if (k->n_held < (int32_t)(sizeof k->held / sizeof k->held[0])) {
        k->held[k->n_held] = lock;
        k->held_irql[k->n_held] = old;
    }
    k->n_held++;
}

static bool held_pop(const void *lock)
{
    ke_thread *k = ke_self();
    int32_t n = k->n_held < 16 ? k->n_held : 16;
    for (int32_t i = n - 1; i >= 0; i--) {
        if (k->held[i] != lock) continue;
        for (int32_t j = i; j + 1 < n; j++) {
            k->held[j] = k->held[j + 1];
            k->held_irql[j] = k->held_irql[j + 1];
        }
        k->n_held--;
        return true;
    }
    /* More locks held than the set records: the untracked overflow entries are the newest, so
     * this release is one of them. Without this the count never came back down after nesting
     * more than 16 locks, and every later held-lock check saw locks that were long released. */
    if (k->n_held > n) {
        k->n_held--;
        return true;
    }
    /* A lock acquired on another thread (the cancel lock is released by the callee, which is
     * normally the same thread; anything else is reported by the verifier). */
    return false;
}

static void acquire_at_dpc(PKSPIN_LOCK lock, KIRQL old)
{
    /* Verifier: lock-order edges; a self-deadlock is reported and the acquire refused. */
    if (vrf_on() && !vrf_spin_acquire(lock)) return;
    plat_lock_acquire((volatile plat_lockword *)lock);
    held_push(lock, old);
}

static void release_at_dpc(PKSPIN_LOCK lock)
{
    /* Verifier: a release of a lock this thread does not hold is reported and refused. */
    if (vrf_on() && !vrf_spin_release(lock)) return;
    held_pop(lock);
    plat_lock_release((volatile plat_lockword *)lock);
}

void ke_spin_force_release(PKSPIN_LOCK lock) { release_at_dpc(lock); }

VOID KeInitializeSpinLock(PKSPIN_LOCK SpinLock)
{
    vrf_spin_init(SpinLock); /* a new lock for the verifier's lock-order graph */
    plat_lock_init((volatile plat_lockword *)SpinLock);
}

VOID KeAcquireSpinLock(PKSPIN_LOCK SpinLock, PKIRQL OldIrql)
{
    KeRaiseIrql(DISPATCH_LEVEL, OldIrql);
    acquire_at_dpc(SpinLock, *OldIrql);
}

KIRQL KeAcquireSpinLockRaiseToDpc(PKSPIN_LOCK SpinLock)
{
    KIRQL old;
    KeAcquireSpinLock(SpinLock, &old);
    return old;
}

static bool check_release_irql(PKSPIN_LOCK lock, KIRQL new_irql, const char *api)
{
    KIRQL cur = ke_irql();
    if (cur == DISPATCH_LEVEL && new_irql <= DISPATCH_LEVEL) return true;
    ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x32, (uintptr_t)lock, cur,
                new_irql,
                "%s at IRQL %u (must be DISPATCH_LEVEL) restoring IRQL %u.\nUsual cause: the "
                "IRQL was changed while the lock was held, or the wrong OldIrql is passed; release "
                "with the value the matching acquire returned.",
                api, cur, new_irql);
    return false;
}

VOID KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql)
{
    bool ok = check_release_irql(SpinLock, NewIrql, "KeReleaseSpinLock");
    if (ok && vrf_on()) NewIrql = vrf_spin_release_irql(SpinLock, NewIrql); /* vs. OldIrql */
    release_at_dpc(SpinLock);
    /* Report mode: still release, and only lower when lowering is legal. */
    if (ok || NewIrql <= ke_irql()) ke_set_irql(NewIrql);
}

static void check_at_dpc(PKSPIN_LOCK lock, const char *api)
{
    KIRQL cur = ke_irql();
    if (cur >= DISPATCH_LEVEL) return;
    ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x40, (uintptr_t)lock, cur, 0,
                "%s called at IRQL %u (must be >= DISPATCH_LEVEL).\nUsual cause: calling the "
                "AtDpcLevel form from passive code; use KeAcquireSpinLock instead.",
                api, cur);
}

VOID KeAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock)
{
    check_at_dpc(SpinLock, "KeAcquireSpinLockAtDpcLevel");
    acquire_at_dpc(SpinLock, ke_irql());
}

VOID KeReleaseSpinLockFromDpcLevel(PKSPIN_LOCK SpinLock)
{
    check_at_dpc(SpinLock, "KeReleaseSpinLockFromDpcLevel");
    release_at_dpc(SpinLock);
}

BOOLEAN KeTryToAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock)
{
    check_at_dpc(SpinLock, "KeTryToAcquireSpinLockAtDpcLevel");
    /* No lock-order edge for the verifier: a try never waits, so it cannot close a deadlock. */
    if (!plat_lock_try((volatile plat_lockword *)SpinLock)) return FALSE;
    held_push(SpinLock, ke_irql());
    return TRUE;
}

VOID KeAcquireInStackQueuedSpinLock(PKSPIN_LOCK SpinLock, PKLOCK_QUEUE_HANDLE LockHandle)
{
    LockHandle->LockQueue.Next = NULL;
    LockHandle->LockQueue.Lock = SpinLock;
    KeAcquireSpinLock(SpinLock, &LockHandle->OldIrql);
}

VOID KeReleaseInStackQueuedSpinLock(PKLOCK_QUEUE_HANDLE LockHandle)
{
    KeReleaseSpinLock(LockHandle->LockQueue.Lock, LockHandle->OldIrql);
}

VOID KeAcquireInStackQueuedSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock, PKLOCK_QUEUE_HANDLE LockHandle)
{
    LockHandle->LockQueue.Next = NULL;
    LockHandle->LockQueue.Lock = SpinLock;
    LockHandle->OldIrql = ke_irql();
    KeAcquireSpinLockAtDpcLevel(SpinLock);
}

VOID KeReleaseInStackQueuedSpinLockFromDpcLevel(PKLOCK_QUEUE_HANDLE LockHandle)
{
    KeReleaseSpinLockFromDpcLevel(LockHandle->LockQueue.Lock);
}

/* ---- interlocked: thin over the platform (each is one scheduling point in explore mode) */

/* The new value is computed in unsigned arithmetic: like Windows, 0x7FFFFFFF + 1 wraps to
 * 0x80000000 (signed overflow here was undefined behaviour). */
LONG InterlockedIncrement(LONG volatile *a) { return (LONG)((ULONG)plat_fetch_add32(a, 1) + 1u); }
LONG InterlockedDecrement(LONG volatile *a) { return (LONG)((ULONG)plat_fetch_add32(a, -1) - 1u); }
LONG InterlockedExchange(LONG volatile *t, LONG v) { return plat_xchg32(t, v); }
LONG InterlockedExchangeAdd(LONG volatile *a, LONG v) { return plat_fetch_add32(a, v); }
LONG InterlockedCompareExchange(LONG volatile *d, LONG x, LONG c) { return plat_cas32(d, c, x); }
LONG InterlockedOr(LONG volatile *d, LONG v) { return plat_fetch_or32(d, v); }
LONG InterlockedAnd(LONG volatile *d, LONG v) { return plat_fetch_and32(d, v); }
LONG64 InterlockedIncrement64(LONG64 volatile *a) { return (LONG64)((ULONG64)plat_fetch_add64(a, 1) + 1u); }
LONG64 InterlockedDecrement64(LONG64 volatile *a) { return (LONG64)((ULONG64)plat_fetch_add64(a, -1) - 1u); }
LONG64 InterlockedExchange64(LONG64 volatile *t, LONG64 v) { return plat_xchg64(t, v); }
LONG64 InterlockedCompareExchange64(LONG64 volatile *d, LONG64 x, LONG64 c) { return plat_cas64(d, c, x); }
PVOID InterlockedExchangePointer(PVOID volatile *t, PVOID v) { return plat_xchg_ptr(t, v); }
PVOID InterlockedCompareExchangePointer(PVOID volatile *d, PVOID x, PVOID c) { return plat_cas_ptr(d, c, x); }
VOID KeMemoryBarrier(VOID) { plat_fence(); }

/* ---- interlocked lists: the list is only touched with the lock held */

PLIST_ENTRY ExInterlockedInsertHeadList(PLIST_ENTRY head, PLIST_ENTRY entry, PKSPIN_LOCK lock)
{
    KIRQL old;
    KeAcquireSpinLock(lock, &old);
    PLIST_ENTRY first = IsListEmpty(head) ? NULL : head->Flink;
    InsertHeadList(head, entry);
    KeReleaseSpinLock(lock, old);
    return first;
}

PLIST_ENTRY ExInterlockedInsertTailList(PLIST_ENTRY head, PLIST_ENTRY entry, PKSPIN_LOCK lock)
{
    KIRQL old;
    KeAcquireSpinLock(lock, &old);
    PLIST_ENTRY first = IsListEmpty(head) ? NULL : head->Flink;
    InsertTailList(head, entry);
    KeReleaseSpinLock(lock, old);
    return first;
}

PLIST_ENTRY ExInterlockedRemoveHeadList(PLIST_ENTRY head, PKSPIN_LOCK lock)
{
    KIRQL old;
    KeAcquireSpinLock(lock, &old);
    PLIST_ENTRY e = IsListEmpty(head) ? NULL : RemoveHeadList(head);
    KeReleaseSpinLock(lock, old);
    return e;
}

PSINGLE_LIST_ENTRY ExInterlockedPushEntryList(PSINGLE_LIST_ENTRY head, PSINGLE_LIST_ENTRY entry,
                                              PKSPIN_LOCK lock)
{
    KIRQL old;
    KeAcquireSpinLock(lock, &old);
    PSINGLE_LIST_ENTRY first = head->Next;
    PushEntryList(head, entry);
    KeReleaseSpinLock(lock, old);
    return first;
}

PSINGLE_LIST_ENTRY ExInterlockedPopEntryList(PSINGLE_LIST_ENTRY head, PKSPIN_LOCK lock)
{
    KIRQL old;
    KeAcquireSpinLock(lock, &old);
    PSINGLE_LIST_ENTRY e = PopEntryList(head);
    KeReleaseSpinLock(lock, old);
    return e;
}
