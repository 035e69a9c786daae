/* Thread and process objects (internal). Every runtime thread gets an ETHREAD on first use
 * (plat_thread.ext[PLAT_EXT_PS]); it is a waitable dispatcher object signalled at thread exit
 * and holds the thread's pending-IRP list used by CancelIo and thread-exit cancellation. */
#ifndef IRPK_PS_H
#define IRPK_PS_H

#include <wdm.h>

#include "ob/ob.h"
#include "platform/platform.h"

struct _KTHREAD {
    DISPATCHER_HEADER Header; /* ThreadObject; SignalState 1 once the thread has exited */
};

struct _ETHREAD {
    struct _KTHREAD Tcb;  /* first, so PKTHREAD and PETHREAD name the same object */
    plat_thread *Thread;  /* NULL once the thread has exited */
    CLIENT_ID Cid;
    NTSTATUS ExitStatus;
    BOOLEAN SystemThread; /* created by PsCreateSystemThread */
    KSPIN_LOCK IrpListLock; /* guards IrpList: completion may run on any thread */
    LIST_ENTRY IrpList;     /* IRPs issued by this thread, newest first (Irp->ThreadListEntry) */
    PKSTART_ROUTINE StartRoutine;
    PVOID StartContext;
    /* The user-mode layer's per-thread state (src/user owns it; guarded by IrpListLock unless
     * noted): queued user APCs, the event that breaks this thread's alertable waits, the
     * alerted flag, and the link in the list of threads that issued I/O (CancelIoEx). */
    struct {
        LIST_ENTRY ApcList;
        KEVENT ApcEvent; /* synchronization event; set when an APC is queued or on an alert */
        BOOLEAN Alerted;
        BOOLEAN RunDown;    /* the thread exited: no APC is queued any more */
        BOOLEAN Registered; /* on the I/O threads list (guarded by src/user's registry lock) */
        LIST_ENTRY Link;
    } User;
};

struct _KPROCESS {
    DISPATCHER_HEADER Header;
};
struct _EPROCESS {
    struct _KPROCESS Pcb;
    ULONG UniqueProcessId;
};

extern const ob_type ps_thread_type;

/* The ETHREAD of a runtime thread (created on first use; NULL only on allocation failure). */
PETHREAD ps_thread_of(plat_thread *t);

#endif
