/* A test driver for the user-mode layer, written against <ntddk.h> like any driver:
 *   \Device\UTest  (link \??\UTest)  DO_BUFFERED_IO
 *   \Device\UExcl  (link \??\UExcl)  exclusive, DO_BUFFERED_IO
 *   \Device\UDirect                  DO_DIRECT_IO
 *   \Device\UNeither                 neither buffered nor direct
 * Reads either complete at once (data 'a','b','c',… and Information = length) or wait in the
 * driver's own queue — with a cancel routine, or ignoring cancellation — until the test
 * completes them (udrv_complete_next). IRP_MJ_CLEANUP cancels the queued IRPs of its file
 * object unless told not to. Every dispatch, completion and cancel is logged in order. */
#ifndef IRPK_TEST_UDRIVER_H
#define IRPK_TEST_UDRIVER_H

#include <ntifs.h>
#include <stdbool.h>

#include "platform/platform.h"
#include "test.h"

typedef enum udrv_read_mode {
    UDRV_COMPLETE = 0,        /* complete in the dispatch routine */
    UDRV_QUEUE_CANCELABLE = 1, /* queue with a cancel routine */
    UDRV_QUEUE_IGNORE_CANCEL = 2, /* queue without one: IoCancelIrp finds nothing to call */
} udrv_read_mode;

/* Device-control codes. */
#define UIOCTL_ECHO CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)  /* out[i] = in[i] + 1 */
#define UIOCTL_NEEDS_WRITE CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_WRITE_ACCESS)
#define UIOCTL_NEITHER CTL_CODE(FILE_DEVICE_UNKNOWN, 0x802, METHOD_NEITHER, FILE_ANY_ACCESS) /* out[i] = in[i] + 1 */
#define UIOCTL_QUEUE CTL_CODE(FILE_DEVICE_UNKNOWN, 0x803, METHOD_BUFFERED, FILE_ANY_ACCESS) /* as a read */

typedef struct udrv_event {
    char what;         /* 'O' create, 'R' read/ioctl dispatched, 'W' write, 'U' cleanup, 'L' close,
                          'D' completed by udrv_complete_next, 'X' completed by the cancel
                          routine, 'K' completed by the cleanup routine */
    PFILE_OBJECT file;
    PIRP irp;
    uint32_t irp_id;
    int queued_at_cleanup; /* 'U': queued IRPs of that file when cleanup ran */
    int cancel_flag;       /* 'D': Irp->Cancel when the test completed it */
} udrv_event;

typedef struct udrv_state {
    volatile int32_t read_mode;   /* udrv_read_mode */
    volatile int32_t cleanup_cancels; /* default 1 */
    PDEVICE_OBJECT dev, excl, direct, neither;
    ULONG last_write_len;
    UCHAR last_write[64];
    PVOID last_fscontext;         /* FsContext seen by the last read */
    volatile int32_t creates, cleanups, closes;
} udrv_state;

extern udrv_state udrv;

/* Load / unload (unload checks nothing is queued). */
void udrv_load(void);
void udrv_unload(void);
/* Queued IRPs (all files). */
int udrv_queued(void);
/* Complete the oldest queued IRP (of `file` when non-NULL) that a cancel does not own, with
 * status; reads get data. Returns its id, or 0 when none. */
uint32_t udrv_complete_next(NTSTATUS status, PFILE_OBJECT file);
/* Irp->Cancel (read under the cancel lock) of the oldest queued IRP; -1 when none is queued. */
int udrv_oldest_cancel_flag(void);
/* A copy of the log; returns the number of entries. */
int udrv_log(udrv_event *out, int max);
/* Index of the first entry with `what` (and irp id when non-zero) at or after `from`, or -1. */
int udrv_find(char what, uint32_t irp_id, int from);
/* Wait (bounded, 20 s) until cond(arg) holds; false on timeout. */
bool udrv_wait_until(bool (*cond)(void *), void *arg);

/* ---- helpers for tests */
/* NtCreateFile on name with access and options; returns the status. */
NTSTATUS u_open(const wchar_t *name, ACCESS_MASK access, ULONG options, PHANDLE h);
/* A notification event handle, not signalled. */
HANDLE u_event(void);
/* The FILE_OBJECT behind a handle (no reference kept). */
PFILE_OBJECT u_file(HANDLE h);
/* TRUE when the event handle is signalled (zero-timeout wait; consumes a synchronization event). */
bool u_signalled(HANDLE ev);
/* Short timeouts for the thread-exit and CancelIo waits (tests). */
void u_fast_timeouts(long exit_timeout_ms, long hang_ms);
/* After a test: no IRP, handle or file object left. */
void u_check_clean(long handles_before);

#endif
