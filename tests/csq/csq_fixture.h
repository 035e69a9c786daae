/* Fixture for the CSQ tests (NT_SEMANTICS.md §8, cases 71–87): a recording cancel-safe queue
 * whose six callbacks log what they are called with (and whether the cancel lock or the CSQ
 * lock is held at that moment), a driver whose IRP_MJ_READ inserts into it, and IRPs whose
 * originator completion routine counts completions.
 *
 * IRPs carry their test record in Tail.Overlay.DriverContext[1] (set by the test before the
 * IRP is sent), the PeekNext key in DriverContext[0] and a "linked in the list" flag in
 * DriverContext[2] — driver scratch the CSQ library never touches (it owns [3]). */
#ifndef IRPK_TEST_CSQ_FIXTURE_H
#define IRPK_TEST_CSQ_FIXTURE_H

#include <ntddk.h>

#include "io/io.h"
#include "irpkit/runtime.h"
#include "irpkit/verifier.h"
#include "test.h"

/* One test IRP. */
typedef struct cfx_irp {
    PIRP irp;
    char label;                  /* 'A', 'B', … in the callback log */
    IO_CSQ_IRP_CONTEXT ctx;      /* used when use_ctx */
    bool use_ctx;
    NTSTATUS insert_status;      /* IoCsqInsertIrpEx's result, seen by the dispatch routine */
    bool refused_pending;        /* after a refused insert: pending bit, cancel routine */
    PDRIVER_CANCEL refused_routine;
    volatile int32_t completions; /* originator's completion routine calls */
    NTSTATUS status;             /* status at (last) completion */
    volatile int32_t listed_at_completion;
    volatile int32_t csq_lock_at_completion;
} cfx_irp;

#define CFX_LOG 512

typedef struct cfx_state {
    PDEVICE_OBJECT dev;
    IO_CSQ csq; /* the recording queue */
    KSPIN_LOCK lock;
    LIST_ENTRY list;
    int32_t listed;
    void *volatile lock_owner;   /* plat_thread holding `lock` (for the checks) */
    bool use_ex;                 /* IoCsqInitializeEx + InsertEx */
    NTSTATUS insert_ex_status;   /* what InsertEx returns (success: it links the IRP) */
    PVOID insert_context;        /* passed to IoCsqInsertIrpEx by the dispatch routine */
    PVOID seen_insert_context;
    bool complete_from_callback; /* CompleteCanceledIrp completes (default) */
    /* the log: "Acquire Insert Release …", peeks as Peek(<irp>,<ctx>) */
    plat_lockword log_lock;
    char log[CFX_LOG];
    volatile int32_t cancel_lock_in_callback; /* a callback ran with the cancel lock held */
    volatile int32_t completes_with_lock;     /* CompleteCanceledIrp ran with the CSQ lock held */
    volatile int32_t canceled_calls;
    bool quiet_log;              /* stress: do not log */
    /* A gate in AcquireLock: when armed, the first call from a thread other than the test's
     * main thread posts `arrived`, waits for `open`, and posts `acquiring` right before taking
     * the lock. */
    plat_thread *main_thread;
    volatile int32_t gate_armed;
    volatile uint32_t arrived, open, acquiring;
    /* Called from PeekNext (lock held) with the IRP it is about to return. */
    void (*peek_hook)(PIRP candidate);
    /* Called from Insert/InsertEx (lock held) after the IRP was linked, before the library
     * arms its cancel routine. */
    void (*insert_hook)(PIRP irp);
    /* Called from Remove (lock held) after the IRP was unlinked. */
    void (*remove_hook)(PIRP irp);
    BOOLEAN hook_cancel_result;  /* cfx_cancel_from_hook's IoCancelIrp (TRUE until it ran) */
} cfx_state;

extern cfx_state cfx;

/* Fresh driver (\Device\CsqFx) and queue. use_ex selects IoCsqInitializeEx. */
void cfx_setup(bool use_ex);
/* Unload; checks no report, no IRP left in flight or allocated. */
void cfx_teardown(void);
/* cfx_free each of the test's IRPs, then cfx_teardown: CFX_TEARDOWN(&a, &b). */
void cfx_teardown_freeing(cfx_irp **rs, size_t n);
#define CFX_TEARDOWN(...) \
    cfx_teardown_freeing((cfx_irp *[]){__VA_ARGS__}, sizeof((cfx_irp *[]){__VA_ARGS__}) / sizeof(cfx_irp *))
/* A READ IRP for the fixture driver with the counting completion routine. */
void cfx_new(cfx_irp *r, char label, PVOID key);
/* Send through IoCallDriver (the dispatch routine inserts into the queue). */
NTSTATUS cfx_send(cfx_irp *r);
/* cfx_new, use_ctx, cfx_send: returns what IoCallDriver returned. */
NTSTATUS cfx_send_new(cfx_irp *r, char label, PVOID key, bool use_ctx);
/* Free the IRP (after its completion). */
void cfx_free(cfx_irp *r);
/* Complete an IRP the test removed (success). */
void cfx_complete(PIRP irp, NTSTATUS status);
/* Remove whatever is still queued (IoCsqRemoveNextIrp) and complete it with success. */
void cfx_drain(void);
/* The log so far / clear it. */
const char *cfx_log(void);
void cfx_log_clear(void);
/* The IRPs in the list, head first (labels into out, NUL-terminated). */
const char *cfx_list(char *out, size_t n);
/* The IRP's current stack location has SL_PENDING_RETURNED (the driver's location). */
bool cfx_pending(PIRP irp);
/* Start a thread that calls IoCancelIrp(irp) (holding a reference) and records the result. */
typedef struct cfx_canceller {
    plat_thread *thread;
    PIRP irp;
    BOOLEAN result;
} cfx_canceller;
void cfx_cancel_async(cfx_canceller *c, PIRP irp, bool gated);
void cfx_cancel_join(cfx_canceller *c);
/* cfx_cancel_async gated, then wait until the canceller arrived at the gate: IoCancelIrp has
 * claimed the IRP (exchanged its routine) and the library's cancel routine waits for the lock
 * until cfx_post_word(&cfx.open). */
void cfx_cancel_gated(cfx_canceller *c, PIRP irp);
/* A hook (insert_hook, remove_hook) that calls IoCancelIrp on its IRP from inside the callback,
 * once: it unhooks itself; the result is in cfx.hook_cancel_result. */
void cfx_cancel_from_hook(PIRP irp);
/* Gate helpers (see cfx_state). */
void cfx_wait_word(volatile uint32_t *w);
void cfx_post_word(volatile uint32_t *w);

#endif
