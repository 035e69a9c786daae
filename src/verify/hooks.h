/* The verifier's hooks into ke and io, and the report helper other layers reuse.
 *
 * Every hook site in ke/io is one predictable branch on vrf_on() (a cached mode word), so
 * IRPK_VERIFIER=off costs one load and a not-taken branch per site. The logic lives in
 * src/verify; ke and io only call in.
 *
 * Explore mode: verifier bookkeeping is instrumentation, not part of the program under test. It
 * uses the platform's bookkeeping atomics (vrf_load32 & co. below = plat_bk_*), which are never
 * scheduling points, and no locks in explore mode (exactly one simulated thread runs at a
 * time): it adds no steps and leaves the explorer's search space unchanged. */
#ifndef IRPK_VERIFY_HOOKS_H
#define IRPK_VERIFY_HOOKS_H

#include <stdarg.h>
#include <wdm.h>

#include "irpkit/verifier.h"
#include "platform/platform.h"

/* ---- verifier references */

/* A verifier reference: keeps the IRP's memory valid (like io_irp_ref, without adding
 * scheduling points in explore mode). For verifier-only paths in ke/io as well. */
void vrf_irp_hold(PIRP irp);
void vrf_irp_drop(PIRP irp);

/* ---- mode */

/* The active mode (irpk_verifier_mode), read from IRPK_VERIFIER before main() runs. */
extern volatile int32_t vrf_level;

static inline bool vrf_exploring(void) { return plat_mode() == PLAT_EXPLORE; }

/* The platform's bookkeeping atomics (platform.h): atomic in both modes, never a scheduling
 * point. */
static inline int32_t vrf_load32(const volatile int32_t *p) { return plat_bk_load32(p); }
static inline void vrf_store32(volatile int32_t *p, int32_t v) { plat_bk_store32(p, v); }
static inline int32_t vrf_add32(volatile int32_t *p, int32_t v) /* returns the old value */
{
    return plat_bk_fetch_add32(p, v);
}
static inline int32_t vrf_or32(volatile int32_t *p, int32_t v) /* returns the old value */
{
    return plat_bk_fetch_or32(p, v);
}
static inline int32_t vrf_cas32(volatile int32_t *p, int32_t expected, int32_t desired) /* old */
{
    return plat_bk_cas32(p, expected, desired);
}
static inline int64_t vrf_load64(const volatile int64_t *p) { return plat_bk_load64(p); }
static inline int64_t vrf_cas64(volatile int64_t *p, int64_t expected, int64_t desired) /* old */
{
    return plat_bk_cas64(p, expected, desired);
}
static inline void *vrf_load_ptr(void *const volatile *p) { return plat_bk_load_ptr(p); }
static inline void vrf_store_ptr(void *volatile *p, void *v) { plat_bk_store_ptr(p, v); }
static inline void *vrf_cas_ptr(void *volatile *p, void *expected, void *desired) /* returns old */
{
    return plat_bk_cas_ptr(p, expected, desired);
}
/* Verifier-internal leaf locks: real locks natively, nothing in explore mode (one simulated
 * thread runs at a time and no critical section below contains a scheduling point). Not
 * plat_bk_lock_*: should a report ever be raised inside a section, it would end the execution
 * there (the explorer's hook does not return) and leave a bookkeeping lock word set. */
static inline void vrf_lock(volatile plat_lockword *w)
{
    if (!vrf_exploring()) plat_lock_acquire(w);
}
static inline void vrf_unlock(volatile plat_lockword *w)
{
    if (!vrf_exploring()) plat_lock_release(w);
}

/* TRUE when the verifier's own checks run (report or fatal mode). */
static inline bool vrf_on(void) { return vrf_load32(&vrf_level) != IRPK_VERIFIER_OFF; }

/* ---- the report helper (for io, ke, and the user-mode and CSQ layers to come)
 *
 * Builds the standard report text and raises it through the single bug-check path:
 *   line 1   "BUGCHECK 0x<code> <NAME> (irp=#n; p1, p2, p3, p4)"   (rule == NULL)
 *            "VERIFIER <rule> (irp=#n; 0x<code>/0x<p1>): <summary>" (rule != NULL)
 *   then     what happened (fmt), the IRP's recent history (who allocated, queued, dequeued,
 *            armed/disarmed cancel, cancelled, completed — thread, IRQL, routine), the device
 *            and driver, where the violation happened (thread, IRQL, routine stack), and
 *            "Cause and fix: <cause_fix>".
 * irp and dev may be NULL (dev is then derived from the IRP). The IRP's memory must be valid
 * (callers hold a reference or own the IRP). In report mode this returns; in fatal mode the
 * process aborts after printing. */
void vrf_report(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4, PIRP irp,
                PDEVICE_OBJECT dev, const char *rule, const char *cause_fix, const char *fmt, ...)
    __attribute__((format(printf, 10, 11)));
void vrf_vreport(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4, PIRP irp,
                 PDEVICE_OBJECT dev, const char *rule, const char *cause_fix, const char *fmt,
                 va_list ap);

/* ---- ke hooks (src/ke/spinlock.c, dpc.c) */

/* KeInitializeSpinLock: a (re)initialised lock is a new lock for the lock-order graph. */
void vrf_spin_init(const void *lock);
/* Before acquiring: adds lock-order edges (a cycle is reported before any real deadlock);
 * FALSE = refused (self-deadlock reported; the caller must not acquire). */
bool vrf_spin_acquire(const void *lock);
/* Before KeReleaseSpinLock restores new_irql (lock still in the held set): checks it against
 * the IRQL the acquire saved; returns the IRQL to restore (the saved one when new_irql would
 * lower below it). */
KIRQL vrf_spin_release_irql(const void *lock, KIRQL new_irql);
/* TRUE when this thread's innermost acquisition of lock was refused (its release is a no-op:
 * IoReleaseCancelSpinLock must then keep the cancel lock's owner). */
bool vrf_spin_is_refused(const void *lock);
/* Before releasing: FALSE = refused (not held / held by another thread, reported, or the
 * matching acquire was refused). */
bool vrf_spin_release(const void *lock);

/* Runtime-called driver routines, for the "where" of every step and report and for the
 * checks on routine return (kind: VRF_IN_*). Returns the frame index to pass to the exit. */
enum vrf_routine_kind {
    VRF_IN_NONE = 0,
    VRF_IN_DISPATCH,
    VRF_IN_STARTIO,
    VRF_IN_CANCEL,
    VRF_IN_COMPLETION,
    VRF_IN_DPC,
};
int vrf_dpc_enter(const void *routine);
void vrf_dpc_exit(int frame);

/* ---- io hooks */

/* io_irp_step: remember the routine context of history step i (only called when the
 * thread has verifier state, t->ext[PLAT_EXT_VERIFY] != NULL). */
struct io_irp_priv;
void vrf_step_context(plat_thread *t, struct io_irp_priv *p, int32_t i);

/* IoCallDriver around the dispatch routine. */
int vrf_dispatch_enter(PDEVICE_OBJECT dev, PIRP irp, const void *routine);
void vrf_dispatch_exit(int frame, NTSTATUS returned);
/* IoMarkIrpPending. */
void vrf_mark_pending(PIRP irp);
/* IoCompleteRequest after the double-completion check: FALSE = refuse the completion. */
bool vrf_complete(PIRP irp);
/* Around a completion routine; exit gets the routine's result. */
int vrf_completion_enter(PIRP irp, PDEVICE_OBJECT dev, const void *routine);
void vrf_completion_exit(int frame, PIRP irp, NTSTATUS returned);
/* IoCancelIrp set Cancel := TRUE. */
void vrf_cancelled(PIRP irp);
/* Around a cancel routine (the cancel lock is held on entry). Exit runs the return checks
 * (0x11B, IRQL ≠ CancelIrql, spin locks left held) and neutralises them. */
int vrf_cancel_enter(PDEVICE_OBJECT dev, PIRP irp, const void *routine);
void vrf_cancel_exit(int frame, PIRP irp, KIRQL cancel_irql);
/* IoStartPacket entry (the IRP is about to be published). */
void vrf_start_packet(PDEVICE_OBJECT dev, PIRP irp);
/* IoStartNextPacket(ByKey) entry. */
void vrf_start_next(PDEVICE_OBJECT dev);
/* io made irp the device's CurrentIrp (under the cancel lock when cancelable): the queue-stall
 * state follows it. Returns the previous current IRP or NULL; the caller vrf_irp_drop()s it
 * once it released the cancel lock. */
PIRP vrf_current_irp(PDEVICE_OBJECT dev, PIRP irp);
/* Around the StartIo call. */
int vrf_startio_enter(PDEVICE_OBJECT dev, PIRP irp);
void vrf_startio_exit(int frame, PDEVICE_OBJECT dev);
/* IoFreeIrp (before the owner's reference is dropped). */
void vrf_irp_freed(PIRP irp);
/* Device lifetime: IoCreateDevice (after init), IoDeleteDevice (before the memory goes),
 * the driver's unload (before DriverUnload: from io_unload_driver, or from the last close when
 * the unload was deferred). */
void vrf_device_created(PDEVICE_OBJECT dev);
void vrf_device_deleting(PDEVICE_OBJECT dev);
void vrf_driver_unloading(PDRIVER_OBJECT drv);

#endif
