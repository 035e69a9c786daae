/* An in-process "driver of requests" for hello_startio (until the user-mode layer lands):
 * reader threads build read IRPs with IoAllocateIrp and send them with IoCallDriver, keeping a
 * window of them in flight; a canceller thread cancels some with IoCancelIrp. Used by
 * `irpkit demo`, the stress test and the example's own test. */
#ifndef HELLO_REQUESTER_H
#define HELLO_REQUESTER_H

#include <stdint.h>

typedef enum hello_cancel_mode {
    HELLO_CANCEL_NONE = 0,
    HELLO_CANCEL_DEMO = 1,   /* cancel the 3rd IRP in the StartIo window, then the newest one */
    HELLO_CANCEL_RANDOM = 2, /* cancel random in-flight IRPs until the readers finish */
} hello_cancel_mode;

typedef struct hello_run_config {
    int as_written;         /* driver variant 1 */
    unsigned delay_ms;      /* device latency per read (0: immediate DpcForIsr) */
    int readers;            /* reader threads ("reader-1", …) */
    long irps_per_reader;
    int window;             /* IRPs each reader keeps in flight (≤ 16) */
    unsigned issue_gap_us;  /* pause between two issues of one reader (demo readability) */
    hello_cancel_mode cancel;
    uint64_t seed;
} hello_run_config;

typedef struct hello_run_result {
    long issued, succeeded, cancelled, other;
    long completions;       /* completion-routine calls (must equal issued) */
    long cancel_calls, cancel_true;
    int max_startio_depth;
    long startio_calls;
    long irps_leaked;       /* io_irps_live() after the run */
} hello_run_result;

/* Load the driver, run the readers (and canceller), unload. Returns 0, or -1 when the driver
 * could not be loaded. */
int hello_run(const hello_run_config *cfg, hello_run_result *out);

#endif
