/* irpkit verifier: modes, checks, the report store.
 *
 * Every bug check and verifier finding becomes a report (see irpkit/bugcheck.h for the hook).
 * Modes: IRPK_VERIFIER=off|report|fatal in the environment (read at start-up), or
 * irpk_verifier_set_mode(). In report mode (the default) the offending operation is neutralised
 * (a second completion is ignored, a leaked cancel lock is released, …) and the report stored;
 * in fatal mode the report is printed and the process aborts like a bug check; off disables the
 * verifier's own checks (bug checks the real kernel always raises — double completion, no more
 * stack locations, … — are still reported).
 *
 * The first line of every report names the Windows bug check and its name, or the SDV rule:
 *   BUGCHECK 0x44 MULTIPLE_IRP_COMPLETE_REQUESTS (irp=#17; 0x…, 0x0, 0x0, 0x0)
 *   VERIFIER StartIoRecursion (irp=#3; 0xC4/0xA0001): StartIo re-entered …
 * followed by what happened, the IRP's recent history (thread, IRQL and routine of each step),
 * the device and driver, where it happened, and one sentence on the usual cause and fix.
 * docs/verifier.md lists every check. */
#ifndef IRPKIT_VERIFIER_H
#define IRPKIT_VERIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "irpkit/bugcheck.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum irpk_verifier_mode {
    IRPK_VERIFIER_OFF = 0,
    IRPK_VERIFIER_REPORT = 1,
    IRPK_VERIFIER_FATAL = 2,
} irpk_verifier_mode;

/* Current mode (first call reads IRPK_VERIFIER; unknown values mean report). */
irpk_verifier_mode irpk_verifier_get_mode(void);
/* Set the mode; returns the previous one. */
irpk_verifier_mode irpk_verifier_set_mode(irpk_verifier_mode mode);

/* Number of reports recorded since start or the last irpk_reports_clear(). */
size_t irpk_report_count(void);
/* Number of recorded reports with this code. */
size_t irpk_report_count_code(uint32_t code);
/* Code, name and full text of report i (0-based, oldest first); 0 / NULL when out of range.
 * The strings stay valid until irpk_reports_clear(). */
uint32_t irpk_report_code(size_t i);
const char *irpk_report_name(size_t i);
const char *irpk_report_text(size_t i);
uintptr_t irpk_report_param(size_t i, int n);
/* Number of recorded reports with this name (bug-check name or SDV rule). */
size_t irpk_report_count_name(const char *name);
/* Index of the first report with this code and first parameter / this name, or -1. */
long irpk_report_find(uint32_t code, uintptr_t p1);
long irpk_report_find_name(const char *name);
/* Forget all recorded reports. */
void irpk_reports_clear(void);
/* Silence the stderr echo of reports (tests that provoke them on purpose); returns previous. */
int irpk_reports_set_quiet(int quiet);
/* Print a summary of all recorded reports (the same summary is printed at process exit when any
 * report was made and reports are not quiet). */
void irpk_reports_print_summary(void *file /* FILE* */);

/* ---- checkpoints and limits */

/* Check every device now for a queue stall (device Busy, the IRP last handed to StartIo
 * completed, no IoStartNextPacket since, no StartIo running, no DPC queued, IRPs waiting):
 * "VERIFIER QueueStall". Also run at driver unload and by the watchdog. Returns the number of
 * stalls reported (each stall is reported once). */
int irpk_verifier_check_stalls(void);
/* Quiescence check (the caller knows nothing is running): stalls as above, plus every IRP
 * that was cancelled and never completed (0xC4/0x135), whatever its age. Returns the number of
 * reports made. The explorer runs the same check at the end of every execution. */
int irpk_verifier_check_quiescence(void);

/* How long a cancelled IRP may stay uncompleted before 0xC4/0x135 (default 5000 ms, env
 * IRPK_CANCEL_TIMEOUT_MS; 0 disables the timed check). Returns the previous value. */
long irpk_verifier_set_cancel_timeout_ms(long ms);
/* How long a queue stall must persist before the watchdog reports it (default 2000 ms, env
 * IRPK_STALL_TIMEOUT_MS; 0 disables the watchdog's stall check). Returns the previous value. */
long irpk_verifier_set_stall_timeout_ms(long ms);
/* StartIo nesting depth on one thread, for one device without DeferredStartIo, at which
 * StartIoRecursion is reported (default 8, env IRPK_STARTIO_DEPTH_LIMIT; 2 reports any
 * re-entry, as SDV's rule does statically). Returns the previous value. */
int irpk_verifier_set_startio_depth_limit(int depth);
/* Forget the verifier's learned state (lock-order graph, watched cancelled IRPs, reported-once
 * flags); reports are kept (irpk_reports_clear). For tests. */
void irpk_verifier_reset_state(void);

/* ---- report identifiers
 * P1 of 0xC4 reports for checks that Windows only has as SDV rules: irpkit's identifiers (the
 * report's name is the rule). The others use the Windows codes and subcodes. */
#define IRPK_RULE_STARTIO_RECURSION 0xA0001u       /* VERIFIER StartIoRecursion */
#define IRPK_RULE_QUEUE_STALL 0xA0002u             /* VERIFIER QueueStall */
#define IRPK_RULE_MARKING_QUEUED_IRPS 0xA0003u     /* VERIFIER MarkingQueuedIrps */
#define IRPK_RULE_PENDED_COMPLETED_REQUEST 0xA0004u /* VERIFIER PendedCompletedRequest */
#define IRPK_RULE_SPINLOCK_SAFE 0xA0005u           /* VERIFIER SpinLockSafe */
#define IRPK_RULE_SPINLOCK 0x40009u                /* VERIFIER SpinLock (Windows DDI rule id) */

#ifdef __cplusplus
}
#endif

#endif
