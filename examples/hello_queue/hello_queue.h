/* The seed's sample driver rewritten on irpkit's IRP adapter (see driver.c). */
#ifndef HELLO_QUEUE_H
#define HELLO_QUEUE_H

#include <ntddk.h>

#include "irpkit/irpqueue.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HELLOQ_DEVICE_NAME L"\\Device\\HelloQueue"
#define HELLOQ_LINK_NAME L"\\??\\HelloQueue"

typedef struct _HELLOQ_CONFIG {
    ULONG DelayMs;               /* how long the "device" takes per read; 0 = finish via IoRequestDpc */
    irpk_irpq_irql HandlerIrql;  /* where the read handler runs (the sample uses PASSIVE_LEVEL) */
} HELLOQ_CONFIG;

/* Set before IoCreateDriver(..., HelloQueueDriverEntry). */
VOID HelloQueueSetConfig(const HELLOQ_CONFIG *Config);
DRIVER_INITIALIZE HelloQueueDriverEntry;

/* What the driver observed (for the test and the docs): handler calls, the highest IRQL a
 * handler ran at, running reads cut short by HelloCancelRunning. */
typedef struct _HELLOQ_STATS {
    LONG HandlerCalls;
    KIRQL MaxHandlerIrql;
    volatile LONG CancelledWhileRunning;
} HELLOQ_STATS;
VOID HelloQueueGetStats(HELLOQ_STATS *Stats);

#ifdef __cplusplus
}
#endif

#endif
