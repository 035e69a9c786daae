/* Device queue objects, exactly NT_SEMANTICS.md §3 (and switches 1–2 of §10).
 *
 * The queue lock is the KDEVICE_QUEUE's own spin lock, taken at DISPATCH_LEVEL (callers are
 * there already; KeRemoveEntryDeviceQueue raises itself). No callouts happen under it. */
#include "irpkit/runtime.h"
#include "ke/ke.h"

static void check_dispatch(PKDEVICE_QUEUE q, const char *api)
{
    KIRQL irql = ke_irql();
    if (irql == DISPATCH_LEVEL) return;
    ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x20003, (uintptr_t)q, irql, 0,
                "VERIFIER IrqlDispatch: %s called at IRQL %u; it must be called at "
                "DISPATCH_LEVEL.\nUsual cause: calling the device-queue routine from passive "
                "code; raise with KeRaiseIrql or use IoStartPacket.",
                api, irql);
}

static void lock_q(PKDEVICE_QUEUE q) { plat_lock_acquire((volatile plat_lockword *)&q->Lock); }
static void unlock_q(PKDEVICE_QUEUE q) { plat_lock_release((volatile plat_lockword *)&q->Lock); }

static PKDEVICE_QUEUE_ENTRY entry_of(PLIST_ENTRY e)
{
    return CONTAINING_RECORD(e, KDEVICE_QUEUE_ENTRY, DeviceListEntry);
}

VOID KeInitializeDeviceQueue(PKDEVICE_QUEUE DeviceQueue)
{
    DeviceQueue->Type = DeviceQueueObject;
    DeviceQueue->Size = (CSHORT)sizeof(KDEVICE_QUEUE);
    InitializeListHead(&DeviceQueue->DeviceListHead);
    KeInitializeSpinLock(&DeviceQueue->Lock);
    DeviceQueue->Busy = FALSE;
}

/* Busy handling shared by both inserts: returns TRUE when the device was busy (caller queues). */
static BOOLEAN set_busy(PKDEVICE_QUEUE q)
{
    BOOLEAN was = q->Busy;
    q->Busy = TRUE;
    return was;
}

BOOLEAN KeInsertDeviceQueue(PKDEVICE_QUEUE q, PKDEVICE_QUEUE_ENTRY e)
{
    check_dispatch(q, "KeInsertDeviceQueue");
    plat_label("KeInsertDeviceQueue", q);
    lock_q(q);
    BOOLEAN queued = set_busy(q);
    if (queued) InsertTailList(&q->DeviceListHead, &e->DeviceListEntry);
    e->Inserted = queued;
    unlock_q(q);
    return queued;
}

BOOLEAN KeInsertByKeyDeviceQueue(PKDEVICE_QUEUE q, PKDEVICE_QUEUE_ENTRY e, ULONG SortKey)
{
    check_dispatch(q, "KeInsertByKeyDeviceQueue");
    plat_label("KeInsertByKeyDeviceQueue", q);
    lock_q(q);
    e->SortKey = SortKey; /* written even when the device is idle (T6) */
    BOOLEAN queued = set_busy(q);
    if (queued) {
        PLIST_ENTRY head = &q->DeviceListHead;
        if (IsListEmpty(head) || entry_of(head->Blink)->SortKey <= SortKey) {
            InsertTailList(head, &e->DeviceListEntry);
        } else {
            /* Before the first entry with a strictly greater key: equal keys stay FIFO. */
            PLIST_ENTRY pos = head->Flink;
            while (entry_of(pos)->SortKey <= SortKey) pos = pos->Flink;
            InsertTailList(pos, &e->DeviceListEntry);
        }
    }
    e->Inserted = queued;
    unlock_q(q);
    return queued;
}

/* Unlink and return the chosen entry (queue lock held). */
static PKDEVICE_QUEUE_ENTRY take(PLIST_ENTRY pos)
{
    PKDEVICE_QUEUE_ENTRY e = entry_of(pos);
    RemoveEntryList(pos);
    e->Inserted = FALSE;
    return e;
}

PKDEVICE_QUEUE_ENTRY KeRemoveDeviceQueue(PKDEVICE_QUEUE q)
{
    check_dispatch(q, "KeRemoveDeviceQueue");
    plat_label("KeRemoveDeviceQueue", q);
    lock_q(q);
    PKDEVICE_QUEUE_ENTRY e = NULL;
    if (IsListEmpty(&q->DeviceListHead)) q->Busy = FALSE;
    else e = take(q->DeviceListHead.Flink);
    unlock_q(q);
    return e;
}

/* First entry with key >= k, or NULL (queue lock held). */
static PLIST_ENTRY first_at_least(PKDEVICE_QUEUE q, ULONG k)
{
    PLIST_ENTRY head = &q->DeviceListHead;
    for (PLIST_ENTRY p = head->Flink; p != head; p = p->Flink)
        if (entry_of(p)->SortKey >= k) return p;
    return NULL;
}

/* The keyed selection of §3.5/§3.6. With the "last <= K" shortcut (WRK RemoveByKey, ReactOS
 * IfBusy) the head is taken when the last entry's key is <= K; without it (WRK IfBusy, docs) the
 * first entry with key >= K, else the head. The two differ not only when the last key equals K
 * but also whenever the list is not sorted (plain inserts mixed with keyed ones): [1,9,3], K=5
 * gives 1 with the shortcut and 9 without it. */
static PKDEVICE_QUEUE_ENTRY remove_by_key(PKDEVICE_QUEUE q, ULONG k, bool wrap_on_equal)
{
    PLIST_ENTRY head = &q->DeviceListHead;
    ULONG last = entry_of(head->Blink)->SortKey;
    PLIST_ENTRY pos;
    if (wrap_on_equal && last <= k) pos = head->Flink;
    else pos = first_at_least(q, k);
    if (!pos) pos = head->Flink;
    return take(pos);
}

PKDEVICE_QUEUE_ENTRY KeRemoveByKeyDeviceQueue(PKDEVICE_QUEUE q, ULONG SortKey)
{
    check_dispatch(q, "KeRemoveByKeyDeviceQueue");
    plat_label("KeRemoveByKeyDeviceQueue", q);
    lock_q(q);
    PKDEVICE_QUEUE_ENTRY e = NULL;
    if (IsListEmpty(&q->DeviceListHead)) q->Busy = FALSE;
    else e = remove_by_key(q, SortKey, irpk_compat_get(IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL));
    unlock_q(q);
    return e;
}

PKDEVICE_QUEUE_ENTRY KeRemoveByKeyDeviceQueueIfBusy(PKDEVICE_QUEUE q, ULONG SortKey)
{
    check_dispatch(q, "KeRemoveByKeyDeviceQueueIfBusy");
    plat_label("KeRemoveByKeyDeviceQueueIfBusy", q);
    lock_q(q);
    PKDEVICE_QUEUE_ENTRY e = NULL;
    if (!q->Busy) {
        /* not busy: nothing changes */
    } else if (IsListEmpty(&q->DeviceListHead)) {
        q->Busy = FALSE;
    } else {
        e = remove_by_key(q, SortKey, irpk_compat_get(IRPK_COMPAT_IFBUSY_WRAP_ON_EQUAL));
    }
    unlock_q(q);
    return e;
}

BOOLEAN KeRemoveEntryDeviceQueue(PKDEVICE_QUEUE q, PKDEVICE_QUEUE_ENTRY e)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    plat_label("KeRemoveEntryDeviceQueue", q);
    lock_q(q);
    BOOLEAN was = e->Inserted;
    if (was) {
        RemoveEntryList(&e->DeviceListEntry);
        e->Inserted = FALSE; /* Busy never changes here (T16) */
    }
    unlock_q(q);
    KeLowerIrql(old);
    return was;
}
