/* The user-mode side (internal): file objects and handles, the I/O system services, the
 * completion hand-off, CancelIo/CancelIoEx/CancelSynchronousIo, thread exit, events, waits and
 * user APCs. Public faces: <ntifs.h> (Nt*), <wdm.h> (Zw*, wdm_zw.h), irpkit/user.h (irpk_*).
 *
 * Locks of this layer, in the only order they nest:
 *   registry_lock (cancel.c) -> ETHREAD.IrpListLock -> user_completion_lock (complete.c)
 *                               ETHREAD.IrpListLock -> the ke dispatcher lock (KeSetEvent)
 *   defer_lock (file.c): a leaf
 * All are platform lock words used as leaf locks: nothing calls a driver, IoCancelIrp or any
 * blocking routine while holding one, so they can never take part in a cycle with the cancel
 * lock or a driver's locks. The hand-off takes IrpListLock and the completion lock in DPCs
 * (a DPC completing an IRP), a raised-IRQL file release takes defer_lock: those three are held
 * at DISPATCH_LEVEL whoever takes them (user_lock / user_unlock below, ke.h's ke_lock_raised),
 * so no DPC of the holder's vCPU can preempt a PASSIVE_LEVEL holder inside — KeSetEvent under
 * IrpListLock, the atomics under the completion lock are scheduling points — and spin on the
 * lock while the holder is shut out (a false deadlock under the explorer). registry_lock is
 * only taken at PASSIVE_LEVEL by services and exiting threads, never in a DPC: it keeps the
 * caller's IRQL, and what nests under it raises for itself. */
#ifndef IRPK_USER_INTERNAL_H
#define IRPK_USER_INTERNAL_H

#include <ntifs.h>

#include "io/io.h"
#include "irpkit/user.h"
#include "ob/ob.h"
#include "ps/ps.h"

/* The layer's DPC-level locks (above): raise to DISPATCH_LEVEL, acquire; release, lower back. */
static inline KIRQL user_lock(volatile void *lock) { return ke_lock_raised((volatile plat_lockword *)lock); }
static inline void user_unlock(volatile void *lock, KIRQL old) { ke_unlock_lowered((volatile plat_lockword *)lock, old); }

/* ---- configuration (irpk_user_config; environment read once at first use) */
int64_t user_cfg_exit_poll_ms(void);
int64_t user_cfg_exit_timeout_ms(void);
int64_t user_cfg_cancel_poll_ms(void);
int64_t user_cfg_hang_report_ms(void);

/* First use of the layer (any service calls it): installs the completion hand-off and the
 * thread-exit hook. */
void user_init_once(void);

/* ---- per-open state. The FILE_OBJECT comes first: ObReferenceObjectByHandle(...,
 * *IoFileObjectType, ...) returns &file->fo, which is what drivers see. */
typedef struct user_file {
    FILE_OBJECT fo;
    PDEVICE_OBJECT top;      /* top of the device stack at open time (IRPs go here) */
    BOOLEAN sync;            /* FO_SYNCHRONOUS_IO, immutable after create (read by the hand-off) */
    BOOLEAN alertable;       /* FO_ALERTABLE_IO */
    BOOLEAN opened;          /* IRP_MJ_CREATE succeeded: CLEANUP and CLOSE are owed */
    BOOLEAN device_counted;  /* holds io_open_device_ref's references (ReferenceCount + memory) */
    volatile int32_t closing; /* last handle closed (CLEANUP sent), CLOSE not yet sent */
    volatile int32_t deferred; /* releases handed to the I/O worker and not yet done */
    struct user_file *deferred_next; /* on the worker's list while deferred > 0 */
} user_file;

extern const ob_type user_file_type;

static inline user_file *user_file_of(PFILE_OBJECT fo) { return (user_file *)fo; }

/* Reference the file object behind a handle, checking `need` for user-mode callers:
 * STATUS_INVALID_HANDLE, STATUS_OBJECT_TYPE_MISMATCH or STATUS_ACCESS_DENIED. */
NTSTATUS user_ref_file(HANDLE h, ACCESS_MASK need, KPROCESSOR_MODE mode, user_file **out);
/* GENERIC_* and MAXIMUM_ALLOWED mapped to the type's specific rights. */
ACCESS_MASK user_map_generic(const ob_type *type, ACCESS_MASK access);
/* Drop a reference. The last one sends IRP_MJ_CLOSE, which must happen at PASSIVE_LEVEL in a
 * thread that holds no lock: above PASSIVE (a DPC completing the file's last IRP) the release
 * is handed to the I/O worker thread, as Windows defers object deletion. */
void user_file_release(user_file *uf);

/* ---- per-IRP state (io_irp_priv.user_flags, accessed atomically) */
enum user_irp_flags {
    UIRP_HANDOFF = 1 << 0, /* completion hand-off started: never disassociate (T64) */
    UIRP_SYNC = 1 << 1,    /* synchronous request (CancelSynchronousIo's target) */
};
int32_t user_irp_flags(PIRP irp);

/* The global completion lock of NT_SEMANTICS.md §2: guards Irp->Tail.Overlay.Thread of IRPs
 * in flight against the thread-exit disassociation. */
extern plat_lockword user_completion_lock;

/* The hand-off io calls at the end of IoCompleteRequest (installed by user_init_once). */
void user_handoff(PIRP irp);

/* Buffers of a request: the system buffer carries its own size so the hand-off copies back at
 * most what it can hold. */
void *user_sysbuf_alloc(ULONG size, ULONG out_len);
void user_sysbuf_copy_back(PIRP irp, const IO_STATUS_BLOCK *ios);
void user_release_buffers(PIRP irp);

/* ---- user APCs (queued on ETHREAD.User.ApcList) */
typedef struct user_apc {
    LIST_ENTRY link;
    bool io;         /* an I/O completion APC (PIO_APC_ROUTINE), else NtQueueApcThread's */
    void (*routine)(void);
    PVOID arg1, arg2, arg3;
} user_apc;
/* Queue to e (IrpListLock held by the caller) and break its alertable wait. */
void user_apc_queue_locked(PETHREAD e, user_apc *apc);
/* Run what is queued for the calling thread: STATUS_USER_APC if any APC ran, STATUS_ALERTED if
 * the thread was alerted (flag cleared), else STATUS_SUCCESS. */
NTSTATUS user_apc_deliver(PETHREAD self);
/* Thread exit: no more APCs; free what is queued. */
void user_apc_rundown(PETHREAD e);

/* Reference the thread object behind a handle (NtCurrentThread() included). */
#define THREAD_TERMINATE 0x0001
#define THREAD_ALERT 0x0004
#define THREAD_SET_CONTEXT 0x0010
NTSTATUS user_ref_thread(HANDLE h, ACCESS_MASK need, KPROCESSOR_MODE mode, PETHREAD *out);

/* Wait on dispatcher objects; alertable waits also wake for user APCs and alerts. */
NTSTATUS user_wait(ULONG count, PVOID objects[], WAIT_TYPE type, BOOLEAN alertable,
                   PLARGE_INTEGER timeout);

/* ---- thread lists */
/* Put the calling thread on the list CancelIoEx and process rundown walk (once). */
void user_register_thread(PETHREAD e);
/* TRUE when e still has an IRP on its list matching file (NULL: any IRP). */
bool user_thread_has_irps(PETHREAD e, PFILE_OBJECT file);
/* The thread-exit hook (§7.4) and process rundown (§7.4 last sentence). */
void user_thread_exit(plat_thread *t);
/* Cancel every IRP of e newest first, then poll until they are gone; after the exit timeout,
 * disassociate one per poll (IO_DRIVER_CANCEL_TIMEOUT). */
void user_drain_thread(PETHREAD e);

/* ---- per-execution reset (init.c registers user_reset with plat_on_reset) */
void user_cancel_reset(void); /* the registry of threads that issued I/O, its lock */
void user_file_reset(void);   /* the I/O worker: its list, wake word, lock, thread */

/* ---- statistics (irpk_user_stats) */
extern volatile int32_t user_files_live, user_files_closing, user_irps_pending;
extern volatile int32_t user_disassociated, user_dropped;

/* ---- misc */
/* Timeline events from the services ("NtReadFile", "NtClose", …). */
void user_trace(int phase, const char *routine, uint32_t irp_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *user_status_name(NTSTATUS st);

#endif
