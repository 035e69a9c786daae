/* The cancel-safe queue a benchmark driver keeps: an IO_CSQ over a spin lock and a FIFO list
 * (the shape of the WDK's cancel-safe queue samples), shared by bench_csq and bench_queue's
 * IoCsq row. Header-only, like the other bench/common files. */
#ifndef IRPK_BENCH_CSQ_LIST_H
#define IRPK_BENCH_CSQ_LIST_H

#include <ntddk.h>

typedef struct bench_csq_list {
    IO_CSQ csq; /* first: the callbacks get back to the list from the IO_CSQ */
    KSPIN_LOCK lock;
    LIST_ENTRY list;
} bench_csq_list;

static inline bench_csq_list *bench_csq_of(PIO_CSQ csq) { return CONTAINING_RECORD(csq, bench_csq_list, csq); }

static inline VOID bench_csq_insert(PIO_CSQ csq, PIRP irp)
{
    InsertTailList(&bench_csq_of(csq)->list, &irp->Tail.Overlay.ListEntry);
}

static inline VOID bench_csq_remove(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
}

static inline PIRP bench_csq_peek(PIO_CSQ csq, PIRP irp, PVOID context)
{
    UNREFERENCED_PARAMETER(context);
    PLIST_ENTRY head = &bench_csq_of(csq)->list;
    PLIST_ENTRY next = irp ? irp->Tail.Overlay.ListEntry.Flink : head->Flink;
    return next == head ? NULL : CONTAINING_RECORD(next, IRP, Tail.Overlay.ListEntry);
}

static inline VOID bench_csq_acquire(PIO_CSQ csq, PKIRQL irql) { KeAcquireSpinLock(&bench_csq_of(csq)->lock, irql); }

static inline VOID bench_csq_release(PIO_CSQ csq, KIRQL irql) { KeReleaseSpinLock(&bench_csq_of(csq)->lock, irql); }

static inline VOID bench_csq_complete_canceled(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    irp->IoStatus.Status = STATUS_CANCELLED;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

static inline void bench_csq_list_init(bench_csq_list *l)
{
    KeInitializeSpinLock(&l->lock);
    InitializeListHead(&l->list);
    IoCsqInitialize(&l->csq, bench_csq_insert, bench_csq_remove, bench_csq_peek, bench_csq_acquire,
                    bench_csq_release, bench_csq_complete_canceled);
}

#endif
