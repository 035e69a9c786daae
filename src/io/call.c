/* IoCallDriver, IoMarkIrpPending and IoCompleteRequest (NT_SEMANTICS.md §6.2–6.4). */
#include "io/io.h"
#include "trace/trace.h"
#include "verify/hooks.h"

static io_handoff_fn handoff;

void io_set_completion_handoff(io_handoff_fn fn) { plat_store_ptr((void *volatile *)&handoff, (void *)fn); }

static const char *major_name(UCHAR mj)
{
    static const char *const names[] = {
        [IRP_MJ_CREATE] = "IRP_MJ_CREATE", [IRP_MJ_CLOSE] = "IRP_MJ_CLOSE",
        [IRP_MJ_READ] = "IRP_MJ_READ", [IRP_MJ_WRITE] = "IRP_MJ_WRITE",
        [IRP_MJ_DEVICE_CONTROL] = "IRP_MJ_DEVICE_CONTROL",
        [IRP_MJ_INTERNAL_DEVICE_CONTROL] = "IRP_MJ_INTERNAL_DEVICE_CONTROL",
        [IRP_MJ_CLEANUP] = "IRP_MJ_CLEANUP", [IRP_MJ_PNP] = "IRP_MJ_PNP",
    };
    return mj < sizeof names / sizeof names[0] && names[mj] ? names[mj] : "IRP_MJ_?";
}

/* The device an IRP was first sent to is charged with it until completion passes its location
 * (the unload check's "IRPs still in flight"). */
static void charge_top_target(PIRP irp, PDEVICE_OBJECT dev)
{
    io_irp_priv *p = io_priv(irp);
    if (irp->CurrentLocation != irp->StackCount || p->target) return;
    p->target = dev;
    /* in_flight feeds the unload/IoDeleteDevice checks only: bookkeeping, no scheduling point. */
    plat_bk_fetch_add32(&io_dev_priv(dev)->in_flight, 1);
}

static void discharge_top_target(PIRP irp)
{
    io_irp_priv *p = io_priv(irp);
    if (!p->target) return;
    plat_bk_fetch_add32(&io_dev_priv(p->target)->in_flight, -1);
    p->target = NULL;
}

NTSTATUS IofCallDriver(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    plat_point("IoCallDriver", Irp);
    if (!io_irp_check_usable(Irp, "IoCallDriver")) return STATUS_INVALID_PARAMETER;
    if (Irp->CurrentLocation <= 1) {
        vrf_report(IRPK_BUGCHECK_NO_MORE_IRP_STACK_LOCATIONS, (uintptr_t)Irp, 0, 0, 0, Irp, DeviceObject,
                   NULL,
                   "allocate IRPs with at least DeviceObject->StackSize locations (plus one for "
                   "your own completion routine when you reuse the IRP above the target).",
                   "IoCallDriver on IRP#%u with no stack location left (StackCount %d): the IRP "
                   "was allocated with too few locations for this device stack. The call is "
                   "refused.",
                   io_irp_id(Irp), Irp->StackCount);
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    IoSetNextIrpStackLocation(Irp);
    PIO_STACK_LOCATION sl = IoGetCurrentIrpStackLocation(Irp);
    sl->DeviceObject = DeviceObject;
    charge_top_target(Irp, DeviceObject);
    uint32_t id = io_irp_id(Irp);
    UCHAR mj = sl->MajorFunction;
    io_irp_step(Irp, IO_STEP_CALL, " %s to %ls", major_name(mj), io_dev_priv(DeviceObject)->name);
    PDRIVER_DISPATCH fn = mj <= IRP_MJ_MAXIMUM_FUNCTION ? DeviceObject->DriverObject->MajorFunction[mj] : NULL;
    if (!fn) {
        Irp->IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST;
        IoCompleteRequest(Irp, IO_NO_INCREMENT);
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    trace_emit(TRACE_BEGIN, "Dispatch", id, (uint8_t)io_startio_depth(), "%s", major_name(mj));
    /* Verifier: the dispatch frame collects what the routine does with the IRP; its return
     * checks pending flag vs status vs completion, IRQL and held locks. */
    int vf = vrf_on() ? vrf_dispatch_enter(DeviceObject, Irp, (const void *)(uintptr_t)fn) : -1;
    NTSTATUS st = fn(DeviceObject, Irp);
    if (vf != -1) vrf_dispatch_exit(vf, st);
    /* The IRP may be gone now: only the saved id is used. */
    trace_emit(TRACE_END, "Dispatch", id, (uint8_t)io_startio_depth(), "returns 0x%08X%s",
               (unsigned)st, st == STATUS_PENDING ? " (STATUS_PENDING)" : "");
    return st;
}

VOID IoMarkIrpPending(PIRP Irp)
{
    plat_point("IoMarkIrpPending", Irp);
    IoGetCurrentIrpStackLocation(Irp)->Control |= SL_PENDING_RETURNED;
    io_irp_mark(Irp, IO_STEP_MARK_PENDING);
    if (vrf_on()) vrf_mark_pending(Irp); /* MarkingQueuedIrps, and for the return checks */
}

/* ---- completion */

static bool completion_allowed(PIRP irp)
{
    if (!io_irp_check_usable(irp, "IoCompleteRequest")) return false;
    if (irp->CurrentLocation <= irp->StackCount + 1) return true;
    vrf_report(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS, (uintptr_t)irp, 0, 0, 0, irp, NULL, NULL,
               "exactly one path may complete an IRP: whoever wins IoSetCancelRoutine(Irp, NULL) "
               "(non-NULL result) or the cancel routine, never both; the history shows the first "
               "completion, the Where line the second.",
               "IoCompleteRequest on IRP#%u, which was already completed (CurrentLocation %d > "
               "StackCount+1 = %d). The second completion is ignored.",
               io_irp_id(irp), irp->CurrentLocation, irp->StackCount + 1);
    return false;
}

/* Irp->Cancel is read only when the decision depends on it: IoCancelIrp may set it concurrently
 * on an IRP that is being completed (harmless in NT; skipping the read keeps TSan quiet). */
static bool should_invoke(PIRP irp, const IO_STACK_LOCATION *sl)
{
    if (!sl->CompletionRoutine) return false;
    bool ok = NT_SUCCESS(irp->IoStatus.Status);
    if ((ok && (sl->Control & SL_INVOKE_ON_SUCCESS)) || (!ok && (sl->Control & SL_INVOKE_ON_ERROR)))
        return true;
    return (sl->Control & SL_INVOKE_ON_CANCEL) && irp->Cancel;
}

/* Returns false when a routine returned STATUS_MORE_PROCESSING_REQUIRED: the IRP then belongs
 * to that routine's driver and must not be touched again here. */
static bool invoke_completion(PIRP irp, PIO_STACK_LOCATION sl)
{
    PDEVICE_OBJECT dev = irp->CurrentLocation == irp->StackCount + 1
                             ? NULL
                             : IoGetCurrentIrpStackLocation(irp)->DeviceObject;
    uint32_t id = io_irp_id(irp);
    io_irp_mark(irp, IO_STEP_COMPLETION_ROUTINE);
    trace_emit(TRACE_BEGIN, "completion", id, (uint8_t)io_startio_depth(), "routine for %ls",
               dev ? io_dev_priv(dev)->name : L"the originator");
    int vf = vrf_on() ? vrf_completion_enter(irp, dev, (const void *)(uintptr_t)sl->CompletionRoutine) : -1;
    NTSTATUS st = sl->CompletionRoutine(dev, irp, sl->Context);
    if (vf != -1) vrf_completion_exit(vf, irp, st); /* 0x228: PendingReturned not propagated */
    bool more = st == STATUS_MORE_PROCESSING_REQUIRED;
    trace_emit(TRACE_END, "completion", id, (uint8_t)io_startio_depth(), "%s",
               more ? "returns STATUS_MORE_PROCESSING_REQUIRED" : "returns");
    return !more;
}

static bool unwind_stack(PIRP irp)
{
    PIO_STACK_LOCATION sl = IoGetCurrentIrpStackLocation(irp);
    for (IoSkipCurrentIrpStackLocation(irp); irp->CurrentLocation <= irp->StackCount + 1;
         sl++, IoSkipCurrentIrpStackLocation(irp)) {
        irp->PendingReturned = (sl->Control & SL_PENDING_RETURNED) != 0;
        if (irp->CurrentLocation == irp->StackCount + 1) discharge_top_target(irp);
        if (should_invoke(irp, sl)) {
            if (!invoke_completion(irp, sl)) return false;
        } else if (irp->PendingReturned && irp->CurrentLocation <= irp->StackCount) {
            IoGetCurrentIrpStackLocation(irp)->Control |= SL_PENDING_RETURNED;
        }
    }
    return true;
}

static void complete_associated(PIRP irp, CCHAR boost)
{
    PIRP master = irp->AssociatedIrp.MasterIrp;
    IoFreeIrp(irp);
    /* The last associated IRP to finish completes the master (interlocked count). */
    if (plat_fetch_add32(&master->AssociatedIrp.IrpCount, -1) == 1) IoCompleteRequest(master, boost);
}

/* Hand the result to the originator (NT §6.4 step 5). IRPs of the user-mode layer go to its
 * hand-off, which copies data, sets IOSB and event in that order, drops disassociated IRPs (T57)
 * under its completion lock and frees the IRP; others get the IOSB and event here. */
static void final_handoff(PIRP irp, CCHAR boost)
{
    bool threaded = (io_priv(irp)->pflags & IO_PF_THREADED) != 0;
    io_handoff_fn fn = threaded ? (io_handoff_fn)plat_load_ptr((void *const volatile *)&handoff) : NULL;
    if (fn) {
        fn(irp);
        return;
    }
    if (threaded && !irp->Tail.Overlay.Thread && irp->Cancel) { /* disassociated: drop (T57) */
        IoFreeIrp(irp);
        return;
    }
    if (irp->UserIosb) *irp->UserIosb = irp->IoStatus;
    if (irp->UserEvent) KeSetEvent(irp->UserEvent, boost, FALSE);
}

VOID IofCompleteRequest(PIRP Irp, CCHAR PriorityBoost)
{
    plat_point("IoCompleteRequest", Irp);
    if (!completion_allowed(Irp)) return;
    /* Verifier: completion checks (status, IRQL, spin locks, cancel routine, owner); FALSE
     * means the completion is refused (the IRP is still owned by a lower driver). */
    if (vrf_on() && !vrf_complete(Irp)) return;
    io_irp_step(Irp, IO_STEP_COMPLETE, " status 0x%08X", (unsigned)Irp->IoStatus.Status);
    if (!unwind_stack(Irp)) return;
    if (Irp->Flags & IRP_ASSOCIATED_IRP) {
        complete_associated(Irp, PriorityBoost);
        return;
    }
    final_handoff(Irp, PriorityBoost);
}
