/* Fixture for the verifier tests: a small driver whose routines each test sets (READ dispatch,
 * StartIo, an optional lower device to forward to), IRPs with a recording top-level completion
 * routine, gates to order threads deterministically, and report assertions. Each test pairs a
 * buggy driver (exactly the expected report) with its correct twin (no report). */
#ifndef IRPK_TEST_VFIXTURE_H
#define IRPK_TEST_VFIXTURE_H

#include <ntddk.h>

#include "io/io.h"
#include "irpkit/runtime.h"
#include "irpkit/verifier.h"
#include "test.h"

typedef struct vf_state {
    PDEVICE_OBJECT dev;   /* \Device\VfDev: the device the tests send to */
    PDEVICE_OBJECT lower; /* \Device\VfLower, attached below dev (vf_setup_stack) */
    PDRIVER_DISPATCH read;       /* IRP_MJ_READ on dev */
    PDRIVER_DISPATCH lower_read; /* IRP_MJ_READ on lower */
    PDRIVER_STARTIO startio;
    PDRIVER_CANCEL cancel;       /* what the stock dispatch routines arm */
    volatile int32_t completions; /* top-level completion routine calls */
    NTSTATUS last_status;
    LIST_ENTRY queue;            /* a driver-managed queue (own-queue drivers) */
    KSPIN_LOCK queue_lock;
    PIRP held;                   /* an IRP a routine parked for the test */
    NTSTATUS sent;               /* what vf_send_read's IoCallDriver returned */
} vf_state;

extern vf_state vf;

/* Fresh runtime state, driver \Driver\vf with \Device\VfDev (16-byte extension). */
void vf_setup(void);
/* vf_setup plus \Device\VfLower attached below VfDev (IRPs then need 2 locations). */
void vf_setup_stack(void);
/* Delete the devices, unload the driver; no report may be left and no IRP alive. */
void vf_teardown(void);
/* IoFreeIrp each of the test's IRPs, then vf_teardown: VF_TEARDOWN(irp, twin). */
void vf_teardown_freeing(PIRP *irps, size_t n);
#define VF_TEARDOWN(...) \
    vf_teardown_freeing((PIRP[]){__VA_ARGS__}, sizeof((PIRP[]){__VA_ARGS__}) / sizeof(PIRP))

/* An IRP_MJ_READ IRP whose top-level completion routine counts and returns
 * STATUS_MORE_PROCESSING_REQUIRED (the test keeps it), or, with `through`, STATUS_SUCCESS (the
 * completion runs to the top, so a second completion is a 0x44). Free with IoFreeIrp. */
PIRP vf_irp(CCHAR stack, bool through);
NTSTATUS vf_send(PIRP irp);
/* vf.read = read, then a fresh vf_irp (2 locations under vf_setup_stack, else 1) sent with
 * vf_send; returns the IRP (free it), IoCallDriver's result is in vf.sent. */
PIRP vf_send_read(PDRIVER_DISPATCH read, bool through);

/* Stock routines. */
DRIVER_DISPATCH vf_read_startpacket;  /* IoMarkIrpPending + IoStartPacket(vf.cancel) */
DRIVER_DISPATCH vf_read_complete;     /* completes with STATUS_SUCCESS at once */
DRIVER_DISPATCH vf_read_complete_at_dispatch; /* the same, raised to DISPATCH_LEVEL and back */
DRIVER_DISPATCH vf_read_pend_complete; /* IoMarkIrpPending, completes, returns STATUS_PENDING */
DRIVER_CANCEL vf_cancel_startio;      /* NT §4.4 contract for StartIo drivers */
void vf_complete(PIRP irp, NTSTATUS status);
/* Complete the device's current IRP (from a "DPC" at DISPATCH) and start the next. */
void vf_finish_current(void);
/* IoStartNextPacket at DISPATCH_LEVEL, leaving the current IRP alone. */
void vf_start_next(void);

/* Exactly one report with this code (and P1, unless VF_ANY_P1), name (unless NULL); its text
 * has the headline, the IRP's history (when irp is given: "IRP#<id>"), a Where line and the
 * cause; then the reports are cleared. IRPK_TEST_SHOW_REPORTS=1 prints each such report. */
#define VF_ANY_P1 ((uintptr_t)-1)
void vf_expect(const char *file, int line, uint32_t code, uintptr_t p1, const char *name, PIRP irp);
#define EXPECT_REPORT(code, p1, name, irp) vf_expect(__FILE__, __LINE__, code, p1, name, irp)
/* No report (printing any there is); the reports are left as they are. */
void vf_expect_none(const char *file, int line);
#define EXPECT_NO_REPORT() vf_expect_none(__FILE__, __LINE__)
/* The shape most checks share: an IRP through the buggy READ routine raises exactly the report
 * (EXPECT_REPORT with that IRP), then an IRP through its correct twin raises none; both are
 * freed. Between vf_setup and vf_teardown. */
void vf_expect_pair(const char *file, int line, PDRIVER_DISPATCH buggy, PDRIVER_DISPATCH twin,
                    uint32_t code, uintptr_t p1, const char *name);
#define EXPECT_BUGGY_AND_TWIN(buggy, twin, code, p1, name) \
    vf_expect_pair(__FILE__, __LINE__, buggy, twin, code, p1, name)
/* The text of the first report (for extra content checks before EXPECT_REPORT clears it). */
const char *vf_text(void);

/* Gates: one thread waits until another opens it. Built on plat_wait, so waiting is legal at
 * any IRQL (a KEVENT wait at DISPATCH_LEVEL would itself be a report). */
typedef struct vf_gate {
    volatile uint32_t open;
} vf_gate;
void vf_gate_open(vf_gate *g);
void vf_gate_wait(vf_gate *g);

/* Wait (up to ~20 s, polling) until at least n reports exist; for the watchdog's checks. */
bool vf_wait_reports(size_t n);

#endif
