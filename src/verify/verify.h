/* Internal interface between the verifier's files (src/verify/). The hooks ke and io call are
 * in verify/hooks.h; the public API in irpkit/verifier.h. */
#ifndef IRPK_VERIFY_H
#define IRPK_VERIFY_H

#include <stdio.h>

#include "io/io.h"
#include "ke/ke.h"
#include "verify/hooks.h"

#define VRF_FN(f) ((const void *)(uintptr_t)(f))

/* ---- per-IRP shadow state (io_irp_priv.vrf) */
enum vrf_irp_state {
    VRF_S_ALLOCATED = 0,
    VRF_S_DISPATCHED,  /* handed to a dispatch routine (again: forwarded) */
    VRF_S_QUEUED,      /* IoStartPacket: published to the device queue */
    VRF_S_IN_STARTIO,  /* handed to StartIo */
    VRF_S_COMPLETING,  /* IoCompleteRequest running */
    VRF_S_COMPLETED,
    VRF_S_FREED,
    VRF_STATE_MASK = 0xF,
};
enum vrf_irp_flags {
    VRF_WATCHED = 1 << 8,    /* on the cancelled-not-completed watch list */
    VRF_LOST_REPORTED = 1 << 9,
};
void vrf_irp_set_state(PIRP irp, int32_t state);
const char *vrf_irp_state_name(PIRP irp);
/* vrf_irp_hold / vrf_irp_drop: verify/hooks.h (io's verifier-only paths use them too). */
/* The IRP is owned by a driver (it sits at a stack location, not with its originator). */
static inline bool vrf_driver_owned(PIRP irp) { return irp->CurrentLocation <= irp->StackCount; }

/* ---- per-thread state (plat_thread.ext[PLAT_EXT_VERIFY]) */

#define VRF_FRAMES 32
#define VRF_CTX_CACHE 4

enum vrf_frame_flags {
    VRF_F_MARKED = 1 << 0,    /* IoMarkIrpPending for this frame's location */
    VRF_F_COMPLETED = 1 << 1, /* completed on this thread during the call */
    VRF_F_PUBLISHED = 1 << 2, /* IoStartPacket called for it during the call */
    VRF_F_FORWARDED = 1 << 3, /* IoCallDriver to a lower driver during the call */
    VRF_F_HELD = 1 << 4,      /* the frame holds a verifier reference on irp */
    VRF_F_MQ_REPORTED = 1 << 5,
    VRF_F_COMPLETED_LOCKED = 1 << 6, /* cancel routine completed its IRP under the cancel lock */
};

typedef struct vrf_frame {
    uint8_t kind;   /* enum vrf_routine_kind */
    uint8_t irql;   /* at entry */
    uint8_t flags;  /* VRF_F_* */
    int8_t location; /* dispatch: Irp->CurrentLocation during the call */
    int32_t n_held; /* spin locks held at entry */
    int32_t ctx;    /* interned (kind, routine), see vrf_ctx_* */
    NTSTATUS status; /* dispatch: IoStatus.Status when this thread completed the IRP */
    const void *routine;
    PDEVICE_OBJECT dev;
    PIRP irp;
    /* The device whose current IRP this routine completed (a counted reference), and the
     * cur_state word it wrote (done + VRF_CUR_FINISHING): the routine may still call
     * IoStartNextPacket. Its pop clears the bit (vrf_finishing_end). NULL: none. */
    struct vrf_device *finishing;
    int64_t finishing_state;
} vrf_frame;

typedef struct vrf_thread {
    int32_t depth;    /* frames pushed; frames[depth-1] is the innermost */
    int32_t overflow; /* pushes beyond VRF_FRAMES (not tracked) */
    vrf_frame frames[VRF_FRAMES];
    /* Spin-lock acquisitions refused as self-deadlocks: their releases are no-ops. */
    const void *refused[8];
    int32_t n_refused;
    /* vrf_push's cache of interned routine contexts */
    const void *cache_routine[VRF_CTX_CACHE];
    uint8_t cache_kind[VRF_CTX_CACHE];
    int32_t cache_ctx[VRF_CTX_CACHE];
    uint32_t cache_next;
} vrf_thread;

vrf_thread *vrf_self(void);
/* Push a frame; returns its index, or -2 when the stack is full (pop with the same value). */
int vrf_push(uint8_t kind, const void *routine, PDEVICE_OBJECT dev, PIRP irp);
vrf_frame *vrf_frame_at(int index);
void vrf_pop(int index);
/* Innermost frame of this thread for irp (any kind when kind == VRF_IN_NONE), or NULL. */
vrf_frame *vrf_find_frame(PIRP irp, uint8_t kind);
/* A frame that completed a device's current IRP is popped: the routine has returned, so it will
 * not start the next packet any more (clears VRF_CUR_FINISHING unless the state moved on). */
void vrf_finishing_end(vrf_frame *f);

/* ---- routine contexts: (kind, routine) interned to a small index for the history */
int32_t vrf_ctx_intern(uint8_t kind, const void *routine);
/* "StartIo fx_startio", "dispatch HelloRead", … (empty for 0). */
const char *vrf_ctx_describe(int32_t ctx, char *buf, size_t n);
const char *vrf_kind_name(uint8_t kind);

/* ---- symbols */
/* Name of the function containing addr ("HelloStartIo", "fx_cancel+0x1c"), or its address. */
const char *vrf_symbol(const void *addr, char *buf, size_t n);

/* ---- per-device state (io_device_priv.vrf) */
typedef struct vrf_device {
    PDEVICE_OBJECT dev;
    struct vrf_device *next;
    /* The registry's reference (until IoDeleteDevice) and one per routine frame that still
     * marks its state as finishing (vrf_frame.finishing): a routine may delete the device before
     * it returns, and its pop then still clears the bit in this memory. vrf_device_drop. */
    volatile int32_t refs;
    volatile int32_t startio_active; /* StartIo calls running for this device (all threads) */
    /* The StartIo state the stall check reads, in one word so that a completion and a change of
     * current IRP can never overwrite each other (VRF_CUR_*): the id of the IRP last handed to
     * StartIo (0 after IoStartNextPacket), whether it was completed since (and whether the
     * routine that completed it is still running), and a generation bumped at every change of
     * current IRP (the watchdog's "no progress" test). Completion sets the done bit by
     * compare-exchange only while the word still names its IRP. */
    volatile int64_t cur_state;
    PIRP volatile current;           /* IRP last handed to StartIo (NULL after IoStartNextPacket);
                                        for reports (its history), not for the stall decision */
    volatile int32_t recursion_reported;
    /* stall tracking, under the device registry's lock */
    int64_t stall_state;        /* cur_state when the stall was first seen */
    /* cur_state of the last stall reported (0: none): the whole word, not the IRP id — a
     * recycled IRP (IoReuseIrp keeps its id) that stalls the queue again after progress is in a
     * new generation, so that stall is reported too. */
    int64_t stall_reported_state;
    int64_t stall_since;
} vrf_device;

#define VRF_CUR_DONE ((int64_t)1 << 32)
/* With DONE: the completion came from a driver routine that is still running (a cancel routine,
 * a DPC, …) and may yet call IoStartNextPacket — not a stall until it returns. */
#define VRF_CUR_FINISHING ((int64_t)1 << 33)
#define VRF_CUR_GEN ((int64_t)1 << 34)
static inline uint32_t vrf_cur_id(int64_t s) { return (uint32_t)s; }
/* The completed IRP's id when the word says "current IRP completed", else 0. */
static inline uint32_t vrf_cur_done_id(int64_t s) { return (s & VRF_CUR_DONE) ? vrf_cur_id(s) : 0; }

/* Test seam (NULL unless a test sets it): called by the completion of a device's current IRP
 * after it read cur_state and before it publishes "completed" — the window in which a
 * concurrent IoStartNextPacket + StartIo used to be overwritten (tests/verifier). */
typedef void (*vrf_completion_seam_fn)(PIRP irp);
void vrf_set_completion_seam(vrf_completion_seam_fn fn);

static inline vrf_device *vrf_dev_of(PDEVICE_OBJECT dev)
{
    return dev ? (vrf_device *)io_dev_priv(dev)->vrf : NULL;
}
/* Drop a reference on the device state (the last one frees it). */
void vrf_device_drop(vrf_device *d);

/* ---- checks with state shared between files */
/* Check one device for the "IoStartNextPacket missing" stall; persist_ns > 0 requires the
 * stall to have lasted that long without progress (watchdog). Returns 1 if reported. */
int vrf_check_device_stall(vrf_device *d, int64_t persist_ns);
/* Report cancelled IRPs older than limit_ns (0: all of them, at quiescence). */
int vrf_check_cancel_watch(int64_t limit_ns);
void vrf_watch_add(PIRP irp);
void vrf_watch_remove(PIRP irp);
/* Start the watchdog if it is not running (native mode). */
void vrf_watchdog_poke(void);
extern int32_t vrf_watchdog_running;
/* Tests only: start the watchdog thread with fn instead of plat_thread_start (NULL restores it),
 * e.g. to make the start fail. */
typedef plat_thread *(*vrf_thread_start_fn)(plat_thread_fn fn, void *arg, const char *name, unsigned flags);
void vrf_watchdog_set_thread_start(vrf_thread_start_fn fn);
int64_t vrf_cancel_timeout_ns(void);
int64_t vrf_stall_timeout_ns(void);
int vrf_startio_depth_limit(void);
/* Forget the lock-order graph. */
void vrf_locks_reset(void);

/* ---- report pieces */
/* Render the IRP's recent history with the routine context of each step into buf. */
const char *vrf_format_history(PIRP irp, char *buf, size_t n);
/* "\Device\X (driver \Driver\Y)". */
const char *vrf_format_device(PDEVICE_OBJECT dev, char *buf, size_t n);
/* Forget every stored report after the first n (the explorer: reports raised inside an
 * execution fail it and are then dropped, so they do not pile up across executions). */
void vrf_reports_truncate(size_t n);
/* Raise an already formatted report through the single bug-check path. */
void vrf_emit(uint32_t code, const char *name, const uintptr_t param[4], const char *text);

/* Release spin locks this thread acquired beyond `keep` held entries (neutralising a routine
 * that returned holding locks); returns how many. `names` receives a description. */
int vrf_release_leaked(int32_t keep, char *names, size_t n);

#endif
