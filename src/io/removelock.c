/* Remove locks: IoInitializeRemoveLock, IoAcquireRemoveLock, IoReleaseRemoveLock,
 * IoReleaseRemoveLockAndWait, with tag tracking (what a checked build of Windows does).
 *
 * Common.IoCount is 1 (the lock's own bias) plus the outstanding acquisitions. Release-and-wait
 * marks the lock removed, releases the caller's acquisition and the bias, and waits for the
 * count to reach zero; an acquire that finds the lock removed backs out with
 * STATUS_DELETE_PENDING. The "removed" flag lives in an int32 word (Dbg.Reserved1[0]) so it can
 * be read and written atomically; Common.Removed mirrors it for drivers that look.
 *
 * Tracking: one block per acquisition (tag, file, line, time) in Dbg.LockList under Dbg.Spin,
 * a platform lock used as a leaf: nothing else is taken and nothing is called while it is held.
 * An acquisition whose block cannot be allocated is counted in LowMemoryCount and matched by
 * the next release of an unknown tag. */
#include <stdio.h>

#include "io/io.h"
#include "verify/hooks.h"

#define REMLOCK_SIGNATURE 0x4B4C4D52 /* "RMLK" */

struct _IO_REMOVE_LOCK_TRACKING_BLOCK {
    LIST_ENTRY Link;
    PVOID Tag;
    PCSTR File;
    ULONG Line;
    LONGLONG TimeLocked;
};
typedef struct _IO_REMOVE_LOCK_TRACKING_BLOCK rl_block;

static volatile int32_t *removed_word(PIO_REMOVE_LOCK l) { return (volatile int32_t *)&l->Dbg.Reserved1[0]; }
static volatile plat_lockword *spin_of(PIO_REMOVE_LOCK l) { return (volatile plat_lockword *)&l->Dbg.Spin; }

static void report_misuse(PIO_REMOVE_LOCK l, uintptr_t sub, PVOID tag, const char *cause_fix,
                          const char *what)
{
    vrf_report(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, sub, (uintptr_t)l, (uintptr_t)tag,
               0, NULL, NULL, NULL, cause_fix, "%s (remove lock %p, tag %p).", what, (void *)l, tag);
}

VOID IoInitializeRemoveLockEx(PIO_REMOVE_LOCK Lock, ULONG AllocateTag, ULONG MaxLockedMinutes,
                              ULONG HighWatermark, ULONG RemlockSize)
{
    UNREFERENCED_PARAMETER(RemlockSize); /* irpkit's IO_REMOVE_LOCK always has the Dbg block */
    if (Lock->Dbg.Signature == REMLOCK_SIGNATURE && plat_load32(removed_word(Lock)))
        report_misuse(Lock, 0xD7, NULL,
                      "a remove lock is initialised once, when its device object is created; "
                      "after IoReleaseRemoveLockAndWait the device is being deleted and the lock "
                      "must not be used again.",
                      "IoInitializeRemoveLock on a lock that IoReleaseRemoveLockAndWait already "
                      "released. It is re-initialised");
    Lock->Common.Removed = FALSE;
    plat_store32(removed_word(Lock), 0);
    plat_store32(&Lock->Common.IoCount, 1);
    KeInitializeEvent(&Lock->Common.RemoveEvent, NotificationEvent, FALSE);
    Lock->Dbg.Signature = REMLOCK_SIGNATURE;
    Lock->Dbg.HighWatermark = HighWatermark;
    Lock->Dbg.MaxLockedTicks = (LONGLONG)MaxLockedMinutes * 60 * 10000000;
    Lock->Dbg.AllocateTag = (LONG)AllocateTag;
    InitializeListHead(&Lock->Dbg.LockList);
    plat_lock_init(spin_of(Lock));
    plat_store32(&Lock->Dbg.LowMemoryCount, 0);
    Lock->Dbg.Blocks = NULL;
}

static void track(PIO_REMOVE_LOCK l, PVOID tag, PCSTR file, ULONG line)
{
    rl_block *b = plat_alloc(sizeof *b);
    if (!b) {
        plat_fetch_add32(&l->Dbg.LowMemoryCount, 1);
        return;
    }
    b->Tag = tag;
    b->File = file;
    b->Line = line;
    b->TimeLocked = plat_now_ns() / 100;
    plat_lock_acquire(spin_of(l));
    InsertTailList(&l->Dbg.LockList, &b->Link);
    plat_lock_release(spin_of(l));
}

/* Forget one acquisition with this tag. FALSE when none is tracked (and no untracked one is
 * left to match it): then, when `any` is set and acquisitions are outstanding, the newest one
 * is forgotten instead so the list keeps matching the count. */
static bool untrack(PIO_REMOVE_LOCK l, PVOID tag, bool any)
{
    rl_block *found = NULL;
    plat_lock_acquire(spin_of(l));
    PLIST_ENTRY head = &l->Dbg.LockList;
    for (PLIST_ENTRY e = head->Blink; e != head && !found; e = e->Blink) {
        rl_block *b = CONTAINING_RECORD(e, rl_block, Link);
        if (b->Tag == tag) found = b;
    }
    bool known = found != NULL;
    if (!found && any && !IsListEmpty(head)) found = CONTAINING_RECORD(head->Blink, rl_block, Link);
    if (found) RemoveEntryList(&found->Link);
    plat_lock_release(spin_of(l));
    plat_free(found);
    if (known) return true;
    /* An untracked acquisition (no memory for its block) may be this one. A CAS loop that stops
     * at zero: two releases racing for one untracked acquisition cannot both take it. */
    for (int32_t n = plat_load32(&l->Dbg.LowMemoryCount); n > 0; n = plat_load32(&l->Dbg.LowMemoryCount))
        if (plat_cas32(&l->Dbg.LowMemoryCount, n, n - 1) == n) return true;
    return false;
}

/* Drop one count; the last one signals release-and-wait. The lock may be freed by the waiter
 * as soon as the event is set: nothing touches it afterwards. */
static void drop_count(PIO_REMOVE_LOCK l)
{
    if (plat_fetch_add32(&l->Common.IoCount, -1) == 1) KeSetEvent(&l->Common.RemoveEvent, IO_NO_INCREMENT, FALSE);
}

NTSTATUS IoAcquireRemoveLockEx(PIO_REMOVE_LOCK RemoveLock, PVOID Tag, PCSTR File, ULONG Line,
                               ULONG RemlockSize)
{
    UNREFERENCED_PARAMETER(RemlockSize);
    plat_point("IoAcquireRemoveLock", RemoveLock);
    plat_fetch_add32(&RemoveLock->Common.IoCount, 1);
    /* Dekker with release-and-wait, which sets the flag before dropping its counts: if we miss
     * the flag, our increment is ordered before those drops, so the count cannot reach zero
     * until we release. If we see it, we back out (and may be the one to reach zero). */
    if (plat_load32(removed_word(RemoveLock))) {
        drop_count(RemoveLock);
        return STATUS_DELETE_PENDING;
    }
    track(RemoveLock, Tag, File, Line);
    return STATUS_SUCCESS;
}

/* Release the caller's acquisition; `sub` is the 0xC4 subcode for an unknown tag. */
static void release_one(PIO_REMOVE_LOCK l, PVOID tag, uintptr_t sub, const char *api)
{
    /* A snapshot that only matters for an unknown tag (the misuse path): a backing-out acquirer
     * may inflate it for a moment. */
    bool outstanding = plat_load32(&l->Common.IoCount) > 1;
    if (!untrack(l, tag, outstanding)) {
        char what[160];
        snprintf(what, sizeof what,
                 "%s with a tag no outstanding IoAcquireRemoveLock used%s", api,
                 outstanding ? "; one acquisition is released anyway"
                             : " and no acquisition outstanding; the release is ignored");
        report_misuse(l, sub, tag,
                      "release a remove lock with exactly the tag its IoAcquireRemoveLock used "
                      "(usually the IRP), once per acquisition.",
                      what);
        if (!outstanding) return;
    }
    drop_count(l);
}

VOID IoReleaseRemoveLockEx(PIO_REMOVE_LOCK RemoveLock, PVOID Tag, ULONG RemlockSize)
{
    UNREFERENCED_PARAMETER(RemlockSize);
    plat_point("IoReleaseRemoveLock", RemoveLock);
    release_one(RemoveLock, Tag, 0xD5, "IoReleaseRemoveLock");
}

VOID IoReleaseRemoveLockAndWaitEx(PIO_REMOVE_LOCK RemoveLock, PVOID Tag, ULONG RemlockSize)
{
    UNREFERENCED_PARAMETER(RemlockSize);
    plat_point("IoReleaseRemoveLockAndWait", RemoveLock);
    /* The flag first (see IoAcquireRemoveLockEx): from here on no acquire succeeds. */
    plat_store32(removed_word(RemoveLock), 1);
    RemoveLock->Common.Removed = TRUE;
    release_one(RemoveLock, Tag, 0xD6, "IoReleaseRemoveLockAndWait");
    /* Drop the bias; the count reaches zero when the last outstanding acquisition goes. */
    if (plat_fetch_add32(&RemoveLock->Common.IoCount, -1) != 1)
        KeWaitForSingleObject(&RemoveLock->Common.RemoveEvent, Executive, KernelMode, FALSE, NULL);
}
