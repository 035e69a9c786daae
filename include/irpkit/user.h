/* irpkit user-mode side: a thin native convenience layer over the NT I/O system services, plus
 * the knobs and counters of the user-mode layer.
 *
 * The contract is the NT API in <ntifs.h> (NtCreateFile, NtReadFile, NtCancelIoFile, …) with
 * its Windows names, structures and status codes; this header needs no WDK header and offers
 * the common cases in a few calls:
 *
 *     void *h;
 *     int32_t st = irpk_open("\\??\\HelloDDK", IRPK_OPEN_READ | IRPK_OPEN_OVERLAPPED, &h);
 *     irpk_overlapped ov;
 *     irpk_overlapped_init(&ov);
 *     char buf[10];
 *     st = irpk_read_async(h, buf, sizeof buf, &ov);     // 0x103 STATUS_PENDING
 *     st = irpk_overlapped_wait(&ov, -1);                // final status, ov.information bytes
 *     irpk_overlapped_dispose(&ov);
 *     irpk_close(h);                                     // IRP_MJ_CLEANUP, then IRP_MJ_CLOSE
 *
 * Every function returns an NTSTATUS value (0 = STATUS_SUCCESS; negative = an error such as
 * 0xC0000008 STATUS_INVALID_HANDLE). Handles are the NT handles of <ntifs.h>. docs/user.md
 * describes the model, every call and every status. */
#ifndef IRPKIT_USER_H
#define IRPKIT_USER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- files */

enum irpk_open_flags {
    IRPK_OPEN_READ = 1u << 0,       /* GENERIC_READ */
    IRPK_OPEN_WRITE = 1u << 1,      /* GENERIC_WRITE */
    IRPK_OPEN_OVERLAPPED = 1u << 2, /* asynchronous file object; else synchronous (nonalert) */
};

/* Open a device by NT path ("\\??\\HelloDDK", "\\Device\\X"; ASCII). */
int32_t irpk_open(const char *path, unsigned flags, void **handle);
/* NtClose. */
int32_t irpk_close(void *handle);

/* Synchronous requests on any handle: on an overlapped handle they issue with a private event
 * and wait. *done (may be NULL) receives IoStatus.Information. */
int32_t irpk_read(void *handle, void *buf, uint32_t len, uint32_t *done);
int32_t irpk_write(void *handle, const void *buf, uint32_t len, uint32_t *done);
int32_t irpk_ioctl(void *handle, uint32_t code, const void *in, uint32_t in_len, void *out,
                   uint32_t out_len, uint32_t *done);

/* ---- overlapped requests. The first two members have the layout of IO_STATUS_BLOCK; `event`
 * is an event handle (created by irpk_overlapped_init). */
typedef struct irpk_overlapped {
    union {
        int32_t status;
        void *pointer;
    } u;
    uintptr_t information;
    void *event;
} irpk_overlapped;

/* Create the event (notification type, i.e. manual reset; each request clears it when it is
 * issued); STATUS_SUCCESS or STATUS_INSUFFICIENT_RESOURCES. */
int32_t irpk_overlapped_init(irpk_overlapped *ov);
/* Close the event. The request must have completed. */
void irpk_overlapped_dispose(irpk_overlapped *ov);
/* Issue; returns STATUS_PENDING while in progress (or the completion status when the driver
 * finished at once). ov->u.status / ov->information are set on completion, then ov->event. */
int32_t irpk_read_async(void *handle, void *buf, uint32_t len, irpk_overlapped *ov);
int32_t irpk_write_async(void *handle, const void *buf, uint32_t len, irpk_overlapped *ov);
/* Wait for completion (timeout_ms < 0: forever); returns the request's final status, or
 * STATUS_TIMEOUT (0x102). */
int32_t irpk_overlapped_wait(irpk_overlapped *ov, int64_t timeout_ms);
/* CancelIoEx(handle, ov) — ov NULL cancels every request on the handle; STATUS_NOT_FOUND
 * (0xC0000225) when nothing matched. Does not wait. */
int32_t irpk_cancel(void *handle, irpk_overlapped *ov);
/* CancelIo(handle): the calling thread's requests on the handle; waits until they completed. */
int32_t irpk_cancel_mine(void *handle);

/* ---- the user-mode layer's knobs */

typedef struct irpk_user_config {
    /* Thread exit (§7.4): poll period while the exiting thread's cancelled IRPs are still
     * pending (Windows: 100 ms; env IRPK_THREAD_EXIT_POLL_MS) and how long before IRPs a driver
     * never completes are disassociated and reported as IO_DRIVER_CANCEL_TIMEOUT (Windows:
     * about 5 minutes; default 10000 ms; env IRPK_THREAD_EXIT_TIMEOUT_MS). */
    long thread_exit_poll_ms;
    long thread_exit_timeout_ms;
    /* CancelIo and interrupted synchronous I/O (§7.2, §7.5): poll period (Windows: 10 ms; env
     * IRPK_CANCEL_POLL_MS) and how long CancelIo waits before reporting "VERIFIER CancelIoHang"
     * with the IRP's history (default 10000 ms, 0 = never; env IRPK_CANCEL_HANG_MS). CancelIo
     * keeps waiting after the report, as Windows does. */
    long cancel_poll_ms;
    long cancel_hang_report_ms;
} irpk_user_config;

void irpk_user_get_config(irpk_user_config *out);
/* Values <= 0 keep the current setting (cancel_hang_report_ms: < 0 keeps, 0 disables). */
void irpk_user_set_config(const irpk_user_config *config);

/* Report identifiers (irpk_report_*): P1 of the CancelIoHang rule report, and the error-log
 * code of a disassociated IRP (the report's name is "IO_DRIVER_CANCEL_TIMEOUT"). */
#define IRPK_RULE_CANCEL_IO_HANG 0xA0101u
#define IRPK_IO_DRIVER_CANCEL_TIMEOUT 0x80040036u

typedef struct irpk_user_stats {
    long files_live;       /* file objects not yet deleted */
    long files_closing;    /* last handle closed, IRP_MJ_CLOSE not yet sent */
    long irps_pending;     /* requests issued and not yet handed back */
    long disassociated;    /* IRPs disassociated from an exiting thread (since start) */
    long dropped;          /* completions of disassociated IRPs dropped (since start) */
} irpk_user_stats;
void irpk_user_get_stats(irpk_user_stats *out);

/* Wait until every file object whose last handle was closed has been sent IRP_MJ_CLOSE (its
 * pending IRPs completed). Use before unloading a driver. timeout_ms < 0: forever. Returns 0,
 * or -1 on timeout. */
int irpk_user_flush(long timeout_ms);

/* What process exit does to I/O (§7.4, T67): cancel and drain every thread's pending IRPs
 * (thread-exit rules: poll, timeout, disassociation), then close every handle in the table —
 * so IRP_MJ_CLEANUP comes only after the threads' I/O was cancelled and drained. Call it from
 * one thread while the others are idle (they stay alive; only their I/O is run down). */
void irpk_user_process_rundown(void);

#ifdef __cplusplus
}
#endif

#endif
