/* The seed's test program, written against the NT native API (<ntifs.h>): open \??\HelloDDK
 * for overlapped I/O, start two threads that each issue a 10-byte read and wait on its event,
 * optionally call CancelIo, then close the handle (IRP_MJ_CLEANUP, later IRP_MJ_CLOSE).
 * `irpkit demo` and the tests run it against the sample driver (driver.c). */
#ifndef HELLO_USER_PROGRAM_H
#define HELLO_USER_PROGRAM_H

#include <ntifs.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hello_user_flow {
    /* Main closes the handle while both reads are in flight: the driver's IRP_MJ_CLEANUP
     * cancels the queued one, the one in progress finishes, IRP_MJ_CLOSE comes after it. */
    HELLO_FLOW_CLOSE_EARLY = 0,
    /* Each thread calls CancelIo right after its read (the line the seed left commented out):
     * the queued read is cancelled; the one StartIo already owns cannot be, and CancelIo
     * waits for it. Then main closes. */
    HELLO_FLOW_CANCEL_IO = 1,
    /* The seed's program exactly: both threads wait for their reads, main waits for the
     * threads, then closes. Nothing is cancelled. */
    HELLO_FLOW_WAIT_FIRST = 2,
} hello_user_flow;

typedef struct hello_user_config {
    hello_user_flow flow;
    int as_written;    /* the seed's driver variant (StartIo blocks at DISPATCH_LEVEL) */
    unsigned delay_ms; /* device time per read */
} hello_user_config;

typedef struct hello_user_result {
    NTSTATUS open_status, close_status;
    NTSTATUS read_returned[2]; /* what NtReadFile returned in thread i */
    IO_STATUS_BLOCK iosb[2];   /* how each read ended */
    UCHAR data[2][10];
    long irps_leaked, handles_leaked, files_leaked;
} hello_user_result;

/* The program itself (its main): the driver must be loaded. Returns 0, or -1 when the device
 * could not be opened. */
int hello_user_main(const hello_user_config *cfg, hello_user_result *out);

/* Load the sample driver, run hello_user_main, wait for IRP_MJ_CLOSE, unload; fills the leak
 * counters. Returns 0, or -1 when the driver could not be loaded or the device opened. */
int hello_user_run(const hello_user_config *cfg, hello_user_result *out);

#ifdef __cplusplus
}
#endif

#endif
