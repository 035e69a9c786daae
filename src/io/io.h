/* Internal interface of the io layer (driver/device/namespace, IRPs, StartIo, cancellation) for
 * the layers above it: verify, user, explore, trace exporters, the CLI and tests.
 *
 * Per-IRP state irpkit keeps lives in IRP.IrpkPrivate (so IoInitializeIrp on driver memory of
 * IoSizeOfIrp bytes works): a reference count, a small sequential id, a freed flag and the
 * IRP's recent history (the last IO_HISTORY_LEN steps, each with thread, IRQL and routine). */
#ifndef IRPK_IO_H
#define IRPK_IO_H

#include <wdm.h>

#include "ke/ke.h"
#include "platform/platform.h"
#include "trace/trace.h"

/* ---- per-IRP private state */

#define IO_HISTORY_LEN 16

/* One step of an IRP's life. The routine that performed it is implied by the step. */
typedef enum io_step {
    IO_STEP_NONE = 0,
    IO_STEP_ALLOC,          /* IoAllocateIrp / IoMakeAssociatedIrp */
    IO_STEP_INIT,           /* IoInitializeIrp on driver memory */
    IO_STEP_REUSE,          /* IoReuseIrp */
    IO_STEP_CALL,           /* IoCallDriver: handed to a dispatch routine */
    IO_STEP_MARK_PENDING,   /* IoMarkIrpPending */
    IO_STEP_QUEUED,         /* IoStartPacket: inserted into the device queue (device busy) */
    IO_STEP_STARTIO,        /* handed to StartIo (became CurrentIrp) */
    IO_STEP_DEQUEUED,       /* IoStartNextPacket*: removed from the device queue */
    IO_STEP_ARM_CANCEL,     /* a cancel routine was set */
    IO_STEP_DISARM_CANCEL,  /* a set cancel routine was cleared (caller owns the IRP) */
    IO_STEP_CANCEL,         /* IoCancelIrp called: Cancel := TRUE */
    IO_STEP_CANCEL_ROUTINE, /* the cancel routine was called */
    IO_STEP_COMPLETE,       /* IoCompleteRequest */
    IO_STEP_COMPLETION_ROUTINE, /* a completion routine ran */
    IO_STEP_FREE,           /* IoFreeIrp */
    IO_STEP_CSQ_INSERT,     /* IoCsqInsertIrp(Ex): linked into a cancel-safe queue */
    IO_STEP_CSQ_REMOVE,     /* left a cancel-safe queue (RemoveNext/RemoveIrp/cancel) */
    IO_STEP_COUNT
} io_step;

typedef struct io_irp_priv {
    volatile int32_t refs;     /* owner + IoCancelIrp callers + io_irp_ref holders */
    volatile int32_t freed;    /* IoFreeIrp was called (memory kept while refs remain) */
    uint32_t id;               /* small sequential number per runtime (reset by plat_reset_all) */
    uint32_t pflags;           /* IO_PF_* */
    volatile int32_t hist_next; /* total steps recorded */
    volatile int32_t vrf;      /* verifier shadow state (src/verify owns it) */
    volatile int64_t hist[IO_HISTORY_LEN]; /* packed steps, see io_irp_history */
    PDEVICE_OBJECT target;     /* last device IoCallDriver handed it to (for io_describe) */
    /* Verifier: routine context of each step (src/verify/hooks.h) and the device whose StartIo
     * last received the IRP. */
    volatile int32_t hist_ctx[IO_HISTORY_LEN];
    PDEVICE_OBJECT volatile vrf_dev;
    /* Irp->Cancel, mirrored atomically by IoCancelIrp (cleared by initialise/reuse): for code
     * that must read it without holding the cancel lock (the CSQ insert). */
    volatile int32_t cancel_requested;
    /* The user-mode layer's per-IRP state (src/user owns both): flags guarded by its
     * completion lock, and the completion APC record it preallocates. */
    int32_t user_flags;
    void *user_apc;
} io_irp_priv;

enum io_private_flags {
    IO_PF_DRIVER_MEMORY = 1u << 0, /* IoInitializeIrp on caller memory: never freed by io */
    IO_PF_THREADED = 1u << 1,      /* associated with a thread by the user-mode layer */
};

static inline io_irp_priv *io_priv(PIRP irp) { return (io_irp_priv *)irp->IrpkPrivate; }
static inline uint32_t io_irp_id(PIRP irp) { return irp ? io_priv(irp)->id : 0; }
/* TRUE once IoCancelIrp ran on the IRP: Irp->Cancel read without a data race (the plain field
 * is written under the cancel lock; this mirror is an atomic written just before it). */
static inline bool io_irp_cancel_requested(PIRP irp) { return plat_load32(&io_priv(irp)->cancel_requested) != 0; }

/* Record a step in the IRP's history (always on) and, when tracing, a timeline event. A macro:
 * with tracing off the detail's format arguments are not evaluated and no variadic call is
 * made (the history costs one atomic increment and a store per step). */
void io__irp_step(PIRP irp, io_step step);
void io__irp_step_trace(PIRP irp, io_step step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define io_irp_step(irp, step, ...)                                                          \
    do {                                                                                     \
        PIRP io_step_irp_ = (irp);                                                           \
        io_step io_step_step_ = (step);                                                      \
        io__irp_step(io_step_irp_, io_step_step_);                                           \
        if (trace_enabled()) io__irp_step_trace(io_step_irp_, io_step_step_, __VA_ARGS__);   \
    } while (0)
/* A step with no detail. */
static inline void io_irp_mark(PIRP irp, io_step step) { io_irp_step(irp, step, "%s", ""); }
/* Name of a step ("queued", "handed to StartIo", …) and the routine that performs it. */
const char *io_step_name(io_step step);
const char *io_step_routine(io_step step);
/* Render the IRP's recent history, oldest first, one line per step. Returns buf. */
const char *io_irp_history(PIRP irp, char *buf, size_t n);

/* Extra references keep an IRP's memory alive (IoFreeIrp only drops the owner's). Hold one
 * around any IoCancelIrp from a thread that does not own the IRP. */
void io_irp_ref(PIRP irp);
void io_irp_unref(PIRP irp);

/* ---- accounting */
long io_irps_live(void);          /* IRPs allocated by io and not yet released */
typedef struct io_lookaside_stats {
    uint64_t allocs, hits, frees_cached, pool_allocs, pool_frees;
} io_lookaside_stats;
void io_lookaside_get_stats(io_lookaside_stats *out);
/* Free every cached IRP block (leak checks at teardown). */
void io_lookaside_drain(void);

/* ---- devices and drivers */

/* irpkit's per-device state (DEVOBJ_EXTENSION.IrpkPrivate). */
typedef struct io_device_priv {
    wchar_t name[64];              /* "\Device\X" or empty */
    PIO_DPC_ROUTINE dpc_for_isr;   /* IoInitializeDpcRequest */
    volatile int32_t in_flight;    /* IRPs handed to this device and not completed past it */
    volatile int32_t max_startio_depth; /* deepest StartIo nesting seen on one thread */
    volatile int32_t startio_calls;
    volatile int32_t deleted;      /* IoDeleteDevice ran (the name is gone; memory may live on) */
    volatile int32_t refs;         /* memory references: 1 from IoCreateDevice until IoDeleteDevice,
                                      + 1 per io_lookup_device_ref holder (an opening/open file) */
    void *vrf;                     /* verifier per-device state (src/verify owns it) */
    /* May it be opened by name (IO_OPEN_*)? Read and written only under the namespace lock
     * (src/io/namespace.c), never from DEVICE_OBJECT.Flags while its driver may write them. */
    int32_t open_state;
} io_device_priv;

/* io_device_priv.open_state. */
enum {
    IO_OPEN_BY_FLAG = 0,     /* created outside DriverEntry: DO_DEVICE_INITIALIZING decides (the
                                driver clears it), read under the namespace lock */
    IO_OPEN_IN_DRIVER_ENTRY, /* created while its driver's DriverEntry runs: initializing until it
                                returns, whatever the driver does to its flag meanwhile */
    IO_OPEN_READY,           /* the flag is known clear: opens need not look at Flags again */
};

static inline io_device_priv *io_dev_priv(PDEVICE_OBJECT d)
{
    return (io_device_priv *)d->DeviceObjectExtension->IrpkPrivate;
}

/* Resolve "\Device\X", "\??\L", "\DosDevices\L" (links are followed); NULL if unknown.
 * Unreferenced: only for callers that control the driver's lifetime themselves (the in-process
 * requesters of the examples, which unload the driver they loaded). */
PDEVICE_OBJECT io_lookup_device(const wchar_t *path);
/* The same, with a memory reference taken under the namespace lock: the device object (and its
 * driver object) stay allocated until io_device_deref, even if the driver unloads and deletes
 * the device meanwhile (io_device_deleted then says so). */
PDEVICE_OBJECT io_lookup_device_ref(const wchar_t *path);
/* An open by name (NtCreateFile): in one namespace-lock hold, resolve the path and take an open
 * reference (DEVICE_OBJECT.ReferenceCount, which keeps the driver loaded) and a memory reference
 * (io_lookup_device_ref's). Fails, taking nothing, with STATUS_OBJECT_NAME_NOT_FOUND, with
 * STATUS_NO_SUCH_DEVICE when the device is still initializing or its driver's unload is
 * pending, or with STATUS_ACCESS_DENIED when the device is exclusive and already open. */
NTSTATUS io_open_device_ref(const wchar_t *path, PDEVICE_OBJECT *out);
/* Drop what io_open_device_ref took. The last open reference of a driver whose unload is
 * pending runs the unload (DriverUnload …) here, on this thread: PASSIVE_LEVEL, no lock held. */
void io_device_open_release(PDEVICE_OBJECT dev);
void io_device_deref(PDEVICE_OBJECT dev);
/* IoDeleteDevice has run on dev (a referenced device whose name is gone). */
static inline bool io_device_deleted(PDEVICE_OBJECT dev) { return plat_load32(&io_dev_priv(dev)->deleted) != 0; }
/* The driver object registered as "\Driver\<name>" (name without the prefix works too). */
PDRIVER_OBJECT io_lookup_driver(const wchar_t *name);
/* Unload (NtUnloadDriver's work; PASSIVE_LEVEL, no lock held). As in NT, the driver is first
 * marked "unload pending": opens of its devices fail from then on (STATUS_NO_SUCH_DEVICE). If
 * no open references its devices, the unload runs now: call DriverUnload, report (0xCE)
 * devices still present or IRPs still in flight on them, delete leftover devices that have no
 * IRP in flight, unregister and free the driver; returns the number of problems reported.
 * Otherwise it is deferred to the release of the last open reference (the last IRP_MJ_CLOSE
 * of a file on one of its devices), which runs it then, reporting any problem as it goes, and
 * this returns 0 — a pending unload is a successful request, as ZwUnloadDriver documents no
 * error for it. The driver stays registered (io_lookup_driver finds it) until the unload ran;
 * a request for a driver whose unload is already pending or done does nothing. */
int io_unload_driver(PDRIVER_OBJECT driver);

/* ---- StartIo observation */
/* Deepest StartIo nesting on one thread seen for the device (1 = never nested). */
int io_startio_max_depth(PDEVICE_OBJECT dev);
/* StartIo frames active on the calling thread. */
int io_startio_depth(void);

/* ---- cancel lock introspection */
/* TRUE when the calling thread holds the cancel spin lock. */
bool io_cancel_lock_held_by_me(void);
/* TRUE when anybody holds it (racy snapshot, diagnostics and tests). */
bool io_cancel_lock_held(void);
/* Acquisitions of the cancel spin lock since start (or plat_reset_all): benchmarks and tests
 * show which paths take the global lock. */
uint64_t io_cancel_lock_acquisitions(void);
/* The same, counting only the calling thread's acquisitions (tests that must not see the
 * acquisitions of concurrently running DPCs). */
uint64_t io_cancel_lock_acquisitions_by_me(void);

/* ---- completion hand-off for the user-mode layer */
/* Called at the end of IoCompleteRequest for IRPs flagged IO_PF_THREADED, instead of io's own
 * IOSB/event step: the user-mode layer copies data back, sets the IOSB and the event, queues
 * the APC, drops disassociated IRPs and frees the IRP (NT_SEMANTICS.md §6.4 step 5). */
typedef void (*io_handoff_fn)(PIRP irp);
void io_set_completion_handoff(io_handoff_fn fn);

/* ---- explorer / swimlanes */
/* Describe an object pointer: "IRP#3 (queued)" for IRPs, the device name for devices, "cancel
 * lock" for the cancel lock; NULL when the pointer is not an io object. Explore mode: any
 * pointer may be passed (interior pointers, lock words, stack addresses): only objects in the
 * registry below are read. Native mode: obj must be NULL, &io_cancel_lock or a live IRP,
 * device or driver object (the caller vouches; nothing is registered natively). */
const char *io_describe(const void *obj, char *buf, size_t n);
/* The registry of live io objects io_describe may read (explore mode only; no-ops natively):
 * IRPs from IoAllocateIrp (IoInitializeIrp's live in driver memory that may be freed without
 * io knowing, so they are not described), device and driver objects. Reset per execution. */
void io_registry_add(const void *obj);
void io_registry_remove(const void *obj);

/* ---- per-thread io state (plat_thread.ext[PLAT_EXT_IO]; the user-mode layer adds fields) */
typedef struct io_thread {
    int32_t startio_depth;
    uint64_t cancel_acquisitions; /* this thread's IoAcquireCancelSpinLock calls */
} io_thread;
io_thread *io_self(void);

/* Internal helpers shared between io files. */
void io_irp_release(PIRP irp);
bool io_irp_check_usable(PIRP irp, const char *api);
void io_call_cancel_routine(PDEVICE_OBJECT dev, PIRP irp, PDRIVER_CANCEL routine, const char *who);
void io_call_startio(PDEVICE_OBJECT dev, PIRP irp);
NTSTATUS io_ns_add_device(PDEVICE_OBJECT dev, PCUNICODE_STRING name, wchar_t *stored, size_t n);
void io_ns_remove_device(const wchar_t *name);
NTSTATUS io_ns_add_driver(PDRIVER_OBJECT drv);
/* DriverEntry returned successfully: as the I/O manager does, clear DO_DEVICE_INITIALIZING on
 * every device the driver has now, and let them be opened. On the thread that ran DriverEntry. */
void io_ns_driver_entry_done(PDRIVER_OBJECT drv);
void io_ns_remove_driver(PDRIVER_OBJECT drv);
/* Mark drv unload-pending (namespace lock). True when the caller must run the unload now (no
 * open reference left); false when the last io_ns_drop_open will, or the unload was already
 * requested (or drv is not a registered driver). Exactly one caller ever gets true. */
bool io_ns_request_unload(PDRIVER_OBJECT drv);
/* Whether drv's unload has been requested (pending or running): IoAttachDeviceToDeviceStack
 * refuses such a target. Decided under the namespace lock. */
bool io_ns_driver_unloading(PDRIVER_OBJECT drv);
/* Drop an open reference of dev (namespace lock). True when it was the last one of a driver
 * whose unload is pending: the caller must run the unload now. */
bool io_ns_drop_open(PDEVICE_OBJECT dev);
extern KSPIN_LOCK io_cancel_lock;

#endif
