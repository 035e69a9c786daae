/* The in-process request driver for hello_queue (the same flow as hello_startio's): reader
 * threads build read IRPs with IoAllocateIrp and send them with IoCallDriver, keeping a window
 * of them in flight, each reader with its own file object; a canceller thread calls
 * IoCancelIrp on random in-flight IRPs, or each reader ends with IRP_MJ_CLEANUP of its file
 * object while its reads are still in flight. */
#ifndef HELLOQ_REQUESTER_H
#define HELLOQ_REQUESTER_H

#include <stdint.h>

#include "irpkit/irpqueue.h"

typedef enum helloq_cancel_mode {
    HELLOQ_CANCEL_NONE = 0,
    HELLOQ_CANCEL_RANDOM = 1,  /* IoCancelIrp on random in-flight IRPs until the readers finish */
    HELLOQ_CANCEL_CLEANUP = 2, /* each reader sends IRP_MJ_CLEANUP with its last window in flight */
} helloq_cancel_mode;

typedef struct helloq_run_config {
    unsigned delay_ms;          /* device time per read (0: immediate DpcForIsr) */
    irpk_irpq_irql handler_irql;
    int readers;                /* reader threads (<= 8) */
    long irps_per_reader;
    int window;                 /* IRPs each reader keeps in flight (<= 16) */
    helloq_cancel_mode cancel;
    uint64_t seed;
} helloq_run_config;

typedef struct helloq_run_result {
    long issued, succeeded, cancelled, other;
    long completions;            /* completion-routine calls (must equal issued) */
    long bytes_ok;               /* successful reads that returned the device's message */
    long cancel_calls, cancel_true;
    long handler_calls, cancelled_while_running;
    int max_handler_irql;
    long irps_leaked;            /* io_irps_live() after the run */
} helloq_run_result;

/* Load the driver, run the readers (and canceller), unload. Returns 0, or -1 when the driver
 * could not be loaded. */
int helloq_run(const helloq_run_config *cfg, helloq_run_result *out);

#endif
