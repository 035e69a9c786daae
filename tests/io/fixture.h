/* Shared fixture for the io tests: one driver with a recording StartIo and cancel routine that
 * capture their context at entry (thread, IRQL, cancel lock held, CancelRoutine, CurrentIrp,
 * StartIo depth), a READ dispatch routine that marks pending and calls IoStartPacket, and IRPs
 * whose top-level completion routine records the result and keeps the IRP for the test. */
#ifndef IRPK_TEST_IO_FIXTURE_H
#define IRPK_TEST_IO_FIXTURE_H

#include <ntddk.h>

#include "io/io.h"
#include "irpkit/verifier.h"
#include "test.h"

#define FX_MAX 64

typedef struct fx_startio_rec {
    PIRP irp;
    plat_thread *thread;
    KIRQL irql;
    bool cancel_lock_held;
    PDRIVER_CANCEL cancel_routine;
    PIRP current;
    int depth;
} fx_startio_rec;

typedef struct fx_cancel_rec {
    PIRP irp;
    PDEVICE_OBJECT dev;
    bool cancel_lock_held;
    PDRIVER_CANCEL cancel_routine;
    bool was_current;
    BOOLEAN removed;
} fx_cancel_rec;

typedef struct fx_state {
    PDEVICE_OBJECT dev;
    fx_startio_rec startio[FX_MAX];
    int n_startio;
    int startio_returns[FX_MAX]; /* order in which StartIo calls returned (indices) */
    int n_returns;
    fx_cancel_rec cancel[FX_MAX];
    int n_cancel;
    int completions;
    NTSTATUS last_status;
    /* What StartIo does after recording (NULL: leave the IRP current). */
    void (*startio_action)(PDEVICE_OBJECT dev, PIRP irp);
    /* Dispatch-routine parameters for the next IoCallDriver. */
    PULONG key;
    PDRIVER_CANCEL cancel_fn;
} fx_state;

extern fx_state fx;

/* Fresh driver + device (\Device\FxDev) and empty records; quiet reports cleared. */
void fx_setup(void);
/* Unload the driver; checks no IRP is left in flight. */
void fx_teardown(void);
/* A 1-location IRP for IRP_MJ_READ with the recording completion routine. */
PIRP fx_irp(void);
/* Send through IoCallDriver → dispatch → IoMarkIrpPending + IoStartPacket(key, cancel_fn). */
NTSTATUS fx_send(PIRP irp, PULONG key, PDRIVER_CANCEL cancel_fn);
/* The recording cancel routine: §4.4 contract (current → release; queued → remove+complete). */
DRIVER_CANCEL fx_cancel;
DRIVER_CANCEL fx_cancel2;
/* StartIo actions. */
void fx_complete_and_next(PDEVICE_OBJECT dev, PIRP irp);
/* Complete the current IRP (success) and start the next, as a DPC would. */
void fx_finish_current(BOOLEAN cancelable);
/* The queue's entries, head first, as IRPs. */
int fx_queue(PIRP *out, int max);

#endif
