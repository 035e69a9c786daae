/* irpkit IRP queue adapter: a WDM driver queues IRPs in an irpkit request queue instead of
 * using StartIo (or hand-written IoCsq code).
 *
 *     NTSTATUS DispatchRead(PDEVICE_OBJECT Dev, PIRP Irp)
 *     {
 *         return irpk_irpq_submit(Ext(Dev)->Queue, Irp, NULL);   // STATUS_PENDING
 *     }
 *     VOID ReadHandler(irpk_irpq *Q, PIRP Irp, PVOID Ctx)         // replaces StartIo
 *     {
 *         start the device; later, from its DPC:
 *         irpk_irpq_complete(Q, Irp, STATUS_SUCCESS, bytes);
 *     }
 *
 * The adapter marks the IRP pending, installs and removes its own cancel routine, and takes
 * care of every cancel race: IoCancelIrp on a queued IRP removes it and completes it with
 * STATUS_CANCELLED exactly once; on a running IRP it sets a flag the handler polls
 * (irpk_irpq_is_cancelled) and calls the optional on_cancel; an IRP cancelled before it was
 * submitted is completed as cancelled at once. The driver never touches the cancel spin lock
 * or a cancel routine, never calls IoStartNextPacket, and can never complete an IRP twice:
 * irpk_irpq_complete on an IRP that is not running in this queue returns an error instead.
 *
 * Where the handler runs (config.handler_irql):
 *   IRPK_IRPQ_IRQL_CALLER   at the IRQL of the thread that dispatches it: the submitting
 *                           dispatch routine (usually PASSIVE_LEVEL) when the queue was idle,
 *                           or the thread that completed the previous IRP (DISPATCH_LEVEL
 *                           from a DPC). Cheapest; the handler must be written for DISPATCH.
 *   IRPK_IRPQ_IRQL_DISPATCH always at DISPATCH_LEVEL, raised if needed: what StartIo gets.
 *   IRPK_IRPQ_IRQL_PASSIVE  always at PASSIVE_LEVEL: inline when the dispatching thread is at
 *                           PASSIVE_LEVEL, otherwise on the adapter's own worker thread. The
 *                           handler may wait, allocate paged memory, call PASSIVE-only
 *                           routines — something StartIo can never do.
 * The handler is never entered recursively: an IRP completed from inside the handler starts
 * the next one after the handler returns (the queue's dispatch loop), not from inside it.
 *
 * While the adapter owns an IRP it uses Irp->Tail.Overlay.DriverContext[0..3]; the driver must
 * not touch them between irpk_irpq_submit and the IRP's completion. The file object of the
 * IRP's current stack location is its owner tag (irpk_irpq_cancel_file). */
#ifndef IRPKIT_IRPQUEUE_H
#define IRPKIT_IRPQUEUE_H

#include <wdm.h>

#include "irpkit/queue.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct irpk_irpq irpk_irpq;

typedef enum irpk_irpq_irql {
    IRPK_IRPQ_IRQL_CALLER = 0,
    IRPK_IRPQ_IRQL_DISPATCH = 1,
    IRPK_IRPQ_IRQL_PASSIVE = 2
} irpk_irpq_irql;

/* The handler owns the IRP until it calls irpk_irpq_complete (from any thread, at any IRQL
 * <= DISPATCH_LEVEL). */
typedef VOID IRPK_IRPQ_HANDLER(irpk_irpq *Queue, PIRP Irp, PVOID Context);
/* A running IRP was cancelled (IoCancelIrp, irpk_irpq_cancel_file, close). The IRP stays
 * valid until this returns; the handler still decides how it completes. Called at the IRQL of
 * the canceller, outside the cancel spin lock. */
typedef VOID IRPK_IRPQ_CANCEL(irpk_irpq *Queue, PIRP Irp, PVOID Context);

typedef struct irpk_irpq_config {
    irpk_queue_mode mode;        /* SEQUENTIAL (default: one IRP at a time, like StartIo),
                                    PARALLEL or KEYED_SERIAL; MANUAL is not supported */
    unsigned max_parallel;       /* PARALLEL / KEYED_SERIAL */
    irpk_queue_order order;      /* FIFO (default), PRIORITY or ELEVATOR by the submit key */
    irpk_irpq_irql handler_irql; /* default IRPK_IRPQ_IRQL_CALLER */
    IRPK_IRPQ_HANDLER *handler;  /* required */
    IRPK_IRPQ_CANCEL *on_cancel; /* optional */
    PVOID context;               /* passed to handler and on_cancel */
    const char *name;            /* irpk_queue_dump */
} irpk_irpq_config;

/* Defaults: SEQUENTIAL, FIFO, handler at the caller's IRQL, no callbacks. */
void irpk_irpq_config_init(irpk_irpq_config *c);

/* Errors (irpk_queue codes): INVAL (NULL, no handler, MANUAL mode, bad IRQL mode), NOMEM,
 * and the queue's own configuration errors. */
int irpk_irpq_create(const irpk_irpq_config *c, irpk_irpq **out);

/* From a dispatch routine (IRQL <= DISPATCH_LEVEL): mark the IRP pending and queue it (key:
 * NULL = 0; the sort key for PRIORITY/ELEVATOR, the serialization key for KEYED_SERIAL). The
 * handler may run on this thread before this returns. Always returns STATUS_PENDING — return
 * it from the dispatch routine. An IRP that cannot be queued is completed at once: with
 * STATUS_CANCELLED if it was cancelled before (Irp->Cancel), STATUS_DEVICE_NOT_READY if the
 * queue is closed, stopped for drain/purge or refuses it, STATUS_INSUFFICIENT_RESOURCES when
 * memory runs out. */
NTSTATUS irpk_irpq_submit(irpk_irpq *q, PIRP Irp, const uint64_t *Key);

/* Complete a running IRP: Irp->IoStatus = {Status, Information}, its cancel routine removed,
 * IoCompleteRequest — exactly once. Returns 0; IRPK_QE_STALE when the IRP is not (or no
 * longer) running in q — e.g. completed twice — and IRPK_QE_NOTOWNER while it is still
 * queued; the IRP is then not touched (no bug check 0x44). The IRP may be completed before
 * this returns — or, when called from inside the handler the queue dispatched on this thread,
 * right after the handler returns: do not touch it afterwards. Not for IRPs the adapter
 * already completed and the originator reused: an IRP is identified by its address. */
int irpk_irpq_complete(irpk_irpq *q, PIRP Irp, NTSTATUS Status, ULONG_PTR Information);

/* 1 if the running IRP was cancelled (the handler should finish it early, typically with
 * STATUS_CANCELLED), 0 if not; IRPK_QE_STALE if it is not in q. */
int irpk_irpq_is_cancelled(irpk_irpq *q, PIRP Irp);

/* IRP_MJ_CLEANUP helper: cancel every IRP of this file object in O(k) — queued ones are
 * completed with STATUS_CANCELLED, running ones are told (flag + on_cancel). *removed and
 * *requested (may be NULL) receive the counts. Errors: INVAL, CLOSED. */
int irpk_irpq_cancel_file(irpk_irpq *q, PFILE_OBJECT FileObject, size_t *removed,
                          size_t *requested);

/* The underlying request queue, for stop/start/drain/purge, statistics and the dump. Its
 * request-level calls (irpk_req_*) must not be used on the adapter's requests. */
irpk_queue *irpk_irpq_queue(irpk_irpq *q);

/* Unload: complete every queued IRP with STATUS_CANCELLED, tell running ones, wait until the
 * handlers have completed them and every IRP the adapter took has been completed, then stop
 * the worker thread. Errors: INVAL, BUSY (from a handler or callback of q), CLOSED. */
int irpk_irpq_close(irpk_irpq *q);

/* Close if needed and release q. Errors: INVAL, BUSY (from a handler or callback of q). */
int irpk_irpq_free(irpk_irpq *q);

#ifdef __cplusplus
}
#endif

#endif
