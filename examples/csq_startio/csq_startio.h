/* csq_startio — a StartIo-like "current request" built on a cancel-safe queue (see driver.c).
 * Shared by the driver, its tests and its user-mode program. */
#ifndef CSQ_STARTIO_H
#define CSQ_STARTIO_H

#include <ntddk.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CSQ_STARTIO_DEVICE_NAME L"\\Device\\CsqStartIo"
#define CSQ_STARTIO_LINK_NAME L"\\??\\CsqStartIo"
#define CSQ_STARTIO_TAG 0x4F495343 /* "CSIO" */

/* The simulated device: every SettleEvery-th request (0: none) makes the device "settle" for
 * SettlePolls polls of PollMs each before it transfers; the others transfer at once. */
typedef struct _CSQ_STARTIO_CONFIG {
    ULONG SettleEvery;
    ULONG SettlePolls;
    ULONG PollMs;
} CSQ_STARTIO_CONFIG;

/* Set before IoCreateDriver(..., CsqStartIoDriverEntry). */
VOID CsqStartIoSetConfig(const CSQ_STARTIO_CONFIG *Config);
DRIVER_INITIALIZE CsqStartIoDriverEntry;

/* IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED, output CSQ_STARTIO_STATS. */
#define IOCTL_CSQ_STARTIO_STATS CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS)

typedef struct _CSQ_STARTIO_STATS {
    LONG MadeCurrent;      /* requests the device started (idle device or next in line) */
    LONG Queued;           /* requests inserted into the cancel-safe queue */
    LONG Polls;            /* poll-timer DPC runs that found the device still settling */
    LONG Transferred;      /* completed with data */
    LONG CurrentCancelled; /* current request completed STATUS_CANCELLED (cancel or cleanup) */
    LONG QueueCancelled;   /* completed by the CSQ's CompleteCanceledIrp (IoCancelIrp) */
    LONG CleanupCancelled; /* removed by cleanup (RemoveNext with the file object) */
    LONG DeletePending;    /* refused: the handle's cleanup had begun */
    LONG CleanupLeftovers; /* the handle's requests still queued after cleanup (must stay 0) */
} CSQ_STARTIO_STATS;

/* A successful read returns one ULONG: the order in which the device started the request
 * (1, 2, …); Information = sizeof(ULONG). */

#ifdef __cplusplus
}
#endif

#endif
