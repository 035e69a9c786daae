/* A user-mode stress program, written only against <ntifs.h> (the NT native API) and
 * irpkit/thread.h: the engine of the queuing examples' user programs.
 *
 * It opens H handles to a device (NtCreateFile, overlapped), starts T threads that each keep a
 * window of W requests in flight (NtReadFile or NtDeviceIoControlFile with a completion APC and
 * an IO_STATUS_BLOCK per request), cancels at random — one request with
 * NtCancelIoFileEx(handle, &iosb) (CancelIoEx(h, ov)), or all of the thread's requests on a
 * handle with NtCancelIoFile (CancelIo, which waits for them) — while a closer thread closes
 * handles mid-flight (NtClose → IRP_MJ_CLEANUP) and opens new ones.
 *
 * Exactly once: every request the system service accepted (it built an IRP) delivers its APC
 * exactly once, with a final status the example accepts; requests refused before an IRP existed
 * (the handle was closed under the thread: STATUS_INVALID_HANDLE / OBJECT_TYPE_MISMATCH) deliver
 * none. At the end every handle is closed and every file object sent IRP_MJ_CLOSE. */
#ifndef IRPK_TEST_USTRESS_H
#define IRPK_TEST_USTRESS_H

#include <ntifs.h>
#include <stdbool.h>
#include <stdint.h>

#define USTRESS_MAX_THREADS 8
#define USTRESS_MAX_WINDOW 16
#define USTRESS_MAX_HANDLES 8

typedef struct ustress_request {
    IO_STATUS_BLOCK iosb;
    unsigned char buffer[64];
    uint64_t seq;      /* issue order of its thread (1, 2, …) */
    int thread;        /* issuing thread index */
    HANDLE file;       /* the handle it was issued on */
} ustress_request;

typedef struct ustress_config {
    const wchar_t *path; /* "\\??\\CsqStartIo" */
    int threads, window, handles;
    long requests;       /* per thread */
    unsigned cancel_one_pct, cancel_all_pct;
    unsigned close_every; /* the closer closes a random handle every N issues (0: never) */
    uint64_t seed;
    /* Issue the request on `file` with the given APC (NtReadFile / NtDeviceIoControlFile). */
    NTSTATUS (*issue)(HANDLE file, PIO_APC_ROUTINE apc, PVOID apc_context, ustress_request *r, void *ctx);
    /* Accept the final IOSB (r->iosb) of a request. */
    bool (*check)(const ustress_request *r, void *ctx);
    void *ctx;
} ustress_config;

typedef struct ustress_result {
    long issued;        /* accepted by the service (an IRP was built) */
    long refused;       /* the handle was gone (no IRP) */
    long completed;     /* APCs delivered */
    long succeeded, cancelled, other;
    long bad;           /* an APC count other than one, or a status check refused */
    long cancel_one, cancel_one_found, cancel_all;
    long closes;
    long handles_left;  /* handles of the program still open at the end (must be 0) */
} ustress_result;

/* Run the program against an already loaded driver; returns 0, or the NTSTATUS of a failed
 * NtCreateFile. Every handle is closed at return; the caller waits for IRP_MJ_CLOSE with
 * irpk_user_flush() before unloading. */
NTSTATUS ustress_run(const ustress_config *cfg, ustress_result *out);
void ustress_print(const char *what, const ustress_result *r);

#endif
