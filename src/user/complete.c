/* The completion hand-off (NT_SEMANTICS.md §6.4 step 5) for IRPs the I/O system services built.
 * io calls it at the end of IoCompleteRequest, on whatever thread completed the IRP — often a
 * DPC thread at DISPATCH_LEVEL. Windows runs this step as a kernel APC in the issuing thread;
 * irpkit runs it right here and queues only the caller's completion routine as a user APC.
 *
 * Order, as the caller may observe it: the data (system buffer copied to the caller's buffer),
 * then the IO_STATUS_BLOCK (Information before Status), then the event — so a thread woken by
 * the event sees both. The IOSB, the event(s), the APC and the IRP leaving the thread's list
 * (CancelIo's wait ends when its IRPs have left) happen in one hold of the issuing thread's
 * IrpListLock: in Windows the issuing thread runs this step itself, so by the time it sees
 * its request complete (IOSB or event) its completion APC is queued; here APC delivery takes
 * that lock, so a thread that saw the IOSB or the event and then tests for APCs
 * (SleepEx(0, TRUE), NtTestAlert, an alertable wait) finds the APC. Then the references are
 * dropped and the IRP is freed. */
#include "trace/trace.h"
#include "user/user.h"

/* Guards Irp->Tail.Overlay.Thread of in-flight IRPs and the UIRP_HANDOFF bit: the thread-exit
 * disassociation (cancel.c) and this hand-off decide under it who owns the IRP (T57, T64). A
 * leaf lock, held for a few instructions. */
plat_lockword user_completion_lock;

int32_t user_irp_flags(PIRP irp) { return plat_load32((volatile int32_t *)&io_priv(irp)->user_flags); }

/* Claim the IRP for the hand-off, or learn it was disassociated (Thread NULL). */
static PETHREAD claim(PIRP irp)
{
    KIRQL irql = user_lock(&user_completion_lock);
    PETHREAD e = irp->Tail.Overlay.Thread;
    if (e) plat_fetch_or32((volatile int32_t *)&io_priv(irp)->user_flags, UIRP_HANDOFF);
    user_unlock(&user_completion_lock, irql);
    return e;
}

static void release_references(PIRP irp, user_file *uf)
{
    PKEVENT ev = irp->UserEvent;
    IoFreeIrp(irp);
    if (ev) ObDereferenceObject(ev);
    plat_fetch_add32(&user_irps_pending, -1);
    user_file_release(uf); /* may send IRP_MJ_CLOSE, or hand that to the I/O worker */
}

/* A disassociated IRP completes after its thread is gone: nothing of the caller is touched
 * (its buffers, IOSB and event may be gone too); the IRP is dropped silently (T57, T63). */
static void drop(PIRP irp)
{
    user_file *uf = user_file_of(irp->Tail.Overlay.OriginalFileObject);
    user_trace(TRACE_INSTANT, "I/O completion", io_irp_id(irp), "dropped: status 0x%08X, thread gone",
               (unsigned)irp->IoStatus.Status);
    plat_fetch_add32(&user_dropped, 1);
    user_release_buffers(irp);
    release_references(irp, uf);
}

static void write_iosb(PIO_STATUS_BLOCK iosb, const IO_STATUS_BLOCK *ios)
{
    iosb->Information = ios->Information;
    /* Status last, with a release store: a caller polling Status sees Information too. */
    plat_store32((volatile int32_t *)&iosb->Status, ios->Status);
}

/* Sequential requests on a synchronous file: the file pointer and FinalStatus (the waiting
 * service reads FinalStatus after the event; requests on the file are serialised). */
static void update_sync_file(user_file *uf, PIRP irp, const IO_STATUS_BLOCK *ios)
{
    PIO_STACK_LOCATION top = (PIO_STACK_LOCATION)(irp + 1) + irp->StackCount - 1;
    if ((irp->Flags & (IRP_READ_OPERATION | IRP_WRITE_OPERATION)) && NT_SUCCESS(ios->Status))
        uf->fo.CurrentByteOffset.QuadPart = top->Parameters.Read.ByteOffset.QuadPart + (LONGLONG)ios->Information;
    uf->fo.FinalStatus = ios->Status;
}

void user_handoff(PIRP irp)
{
    PETHREAD e = claim(irp);
    if (!e) {
        drop(irp);
        return;
    }
    user_file *uf = user_file_of(irp->Tail.Overlay.OriginalFileObject);
    IO_STATUS_BLOCK ios = irp->IoStatus;
    uint32_t id = io_irp_id(irp);
    user_sysbuf_copy_back(irp, &ios);
    if (uf->sync) update_sync_file(uf, irp, &ios);
    user_trace(TRACE_INSTANT, "I/O completion", id, "IOSB 0x%08X %s, %lu bytes%s", (unsigned)ios.Status,
               user_status_name(ios.Status), (unsigned long)ios.Information,
               irp->UserEvent ? ", event set" : "");
    user_apc *apc = io_priv(irp)->user_apc;
    io_priv(irp)->user_apc = NULL;
    /* e stays valid while the IRP is on its list: its exit hook waits for the list to empty.
     * After the unlock we must not touch e again. IOSB, events and APC in one hold (see the
     * top): the issuer cannot see the first without the APC being queued, because its APC
     * delivery (user_apc_deliver) takes this lock after its read of the IOSB or the event.
     * IrpListLock -> dispatcher lock (KeSetEvent) is the order of user.h. The label names the
     * acquire in swimlanes and lets a native point hook stop a claimed hand-off before it
     * publishes anything (T64), adding no scheduling point. */
    plat_label("I/O completion", irp);
    KIRQL irql = user_lock(&e->IrpListLock);
    if (irp->UserIosb) write_iosb(irp->UserIosb, &ios);
    if (irp->UserEvent) KeSetEvent(irp->UserEvent, IO_NO_INCREMENT, FALSE);
    if (!irp->UserEvent || uf->sync) KeSetEvent(&uf->fo.Event, IO_NO_INCREMENT, FALSE);
    if (apc) user_apc_queue_locked(e, apc);
    RemoveEntryList(&irp->ThreadListEntry);
    InitializeListHead(&irp->ThreadListEntry);
    user_unlock(&e->IrpListLock, irql);
    user_release_buffers(irp);
    release_references(irp, uf);
}
