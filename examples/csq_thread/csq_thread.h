/* csq_thread — a cancel-safe queue drained in order by a dedicated system thread (see
 * driver.c). Shared by the driver, its tests and its user-mode program. */
#ifndef CSQ_THREAD_H
#define CSQ_THREAD_H

#include <ntddk.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CSQ_THREAD_DEVICE_NAME L"\\Device\\CsqThread"
#define CSQ_THREAD_LINK_NAME L"\\??\\CsqThread"
#define CSQ_THREAD_TAG 0x52485451 /* "QTHR" */

DRIVER_INITIALIZE CsqThreadDriverEntry;

/* IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED, output CSQ_THREAD_STATS. */
#define IOCTL_CSQ_THREAD_STATS CTL_CODE(FILE_DEVICE_UNKNOWN, 0x811, METHOD_BUFFERED, FILE_ANY_ACCESS)

/* IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED, input one ULONG: 1 pauses the worker before it takes
 * its next read (reads stay queued), 0 resumes it. Pausing while the worker is already past
 * that point lets it finish the read it is taking. */
#define IOCTL_CSQ_THREAD_PAUSE CTL_CODE(FILE_DEVICE_UNKNOWN, 0x812, METHOD_BUFFERED, FILE_ANY_ACCESS)

typedef struct _CSQ_THREAD_STATS {
    LONG Queued;           /* reads inserted into the queue */
    LONG Served;           /* completed with data by the worker thread */
    LONG Wakeups;          /* semaphore wake-ups of the worker */
    LONG EmptyWakeups;     /* wake-ups that found nothing (its read was cancelled) */
    LONG QueueCancelled;   /* completed by the CSQ's CompleteCanceledIrp (IoCancelIrp) */
    LONG CleanupCancelled; /* removed by cleanup (RemoveNext with the file object) */
    LONG OutOfOrder;       /* served before an earlier-queued read that was still queued */
} CSQ_THREAD_STATS;

/* A successful read returns one ULONG: the order in which the worker served it (1, 2, …). */

#ifdef __cplusplus
}
#endif

#endif
