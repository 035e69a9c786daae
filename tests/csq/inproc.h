/* An in-process stand-in for the user-mode side, for the queuing examples' tests: handles are
 * simulated file objects (IRP_MJ_CREATE / CLEANUP / CLOSE sent by hand, CLOSE only when the
 * last request of the file object completed, as the I/O manager does), requests are IRPs built
 * with IoAllocateIrp and sent with IoCallDriver from several threads, each keeping a window of
 * them in flight ("overlapped"), with random IoCancelIrp of one request (CancelIoEx(h, ov)),
 * of all the thread's requests on a handle (CancelIo, which then waits for them), and a closer
 * thread that closes handles mid-flight (requests already past the handle check may still
 * reach the driver after its cleanup) and opens new ones.
 *
 * Every request is checked to complete exactly once with an accepted status; the run ends
 * with every file object closed. */
#ifndef IRPK_TEST_INPROC_H
#define IRPK_TEST_INPROC_H

#include <ntddk.h>

#include "io/io.h"

#define INPROC_MAX_THREADS 8
#define INPROC_MAX_WINDOW 16
#define INPROC_MAX_HANDLES 8

typedef struct inproc_request {
    PIRP irp;
    void *user;            /* the example's per-request data (prepare/finish) */
    unsigned char buffer[64]; /* the system buffer (METHOD_BUFFERED / DO_BUFFERED_IO) */
    NTSTATUS status;
    ULONG_PTR information;
    int handle;            /* index of the handle it was issued on */
    uint64_t seq;          /* issue order of its thread */
} inproc_request;

typedef struct inproc_config {
    PDEVICE_OBJECT device;
    int threads;           /* issuing threads */
    long requests;         /* per thread */
    int window;            /* per thread, ≤ INPROC_MAX_WINDOW */
    int handles;           /* open file objects, ≤ INPROC_MAX_HANDLES */
    unsigned cancel_one_pct;   /* per issue: IoCancelIrp of one random own request */
    unsigned cancel_all_pct;   /* per issue: cancel all own requests on a handle and wait */
    unsigned close_every;  /* the closer closes a random handle every N issues overall (0: never) */
    uint64_t seed;
    /* Build the request (major function, parameters, buffers) in the next stack location. */
    void (*prepare)(inproc_request *r, PIO_STACK_LOCATION next, void *ctx);
    /* Accept a final status (and look at the request); false counts as bad. */
    bool (*check)(const inproc_request *r, void *ctx);
    void *ctx;
} inproc_config;

typedef struct inproc_result {
    long issued, completed, succeeded, cancelled, other;
    long bad;              /* completed ≠ once, or status refused by check */
    long cancel_calls, cancel_true;
    long closes, opens;
    long irps_leaked;      /* io_irps_live() after the run */
} inproc_result;

/* Run the configured load against cfg->device; every handle is closed at the end. */
void inproc_run(const inproc_config *cfg, inproc_result *out);
void inproc_print(const char *what, const inproc_result *r);

/* One synchronous request on a fresh handle's file object (for stats ioctls in tests):
 * returns the status; out/out_len is the METHOD_BUFFERED output. */
NTSTATUS inproc_ioctl(PDEVICE_OBJECT dev, ULONG code, void *out, ULONG out_len);

/* ---- single requests, for deterministic tests */

typedef struct handle inproc_handle;
/* IRP_MJ_CREATE on a new file object. */
inproc_handle *inproc_open(PDEVICE_OBJECT dev);
PFILE_OBJECT inproc_file(inproc_handle *h);
/* Close the (only) handle: IRP_MJ_CLEANUP now; IRP_MJ_CLOSE once its last request completed. */
void inproc_close(inproc_handle *h);
/* An extra reference on the file object (a request that passed the handle check and has not
 * been sent yet): IRP_MJ_CLOSE waits for inproc_release. */
void inproc_hold(inproc_handle *h);
void inproc_release(inproc_handle *h);

typedef struct inproc_single {
    PIRP irp;
    KEVENT done;
    inproc_handle *h;
    unsigned char buffer[64];
    NTSTATUS status;
    ULONG_PTR information;
} inproc_single;

/* Send one buffered request on h (input copied into the system buffer); returns what
 * IoCallDriver returned. The request holds a reference on the file object until waited. */
NTSTATUS inproc_send(inproc_single *s, inproc_handle *h, UCHAR major, ULONG ioctl, const void *in,
                     ULONG in_len, ULONG out_len);
/* Wait for its completion, free the IRP, drop the reference; returns the final status. */
NTSTATUS inproc_wait(inproc_single *s);

#endif
