/* irpkit verifier: modes and the report store.
 *
 * Every bug check and verifier finding becomes a report (see irpkit/bugcheck.h for the hook).
 * Modes: IRPK_VERIFIER=off|report|fatal in the environment (read on first use), or
 * irpk_verifier_set_mode(). In report mode (the default) the offending operation is neutralised
 * and the report stored; in fatal mode the report is printed and the process aborts like a bug
 * check; off disables the verifier's own checks (bug checks the real kernel always raises —
 * double completion, no more stack locations, … — are still reported). */
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
/* Forget all recorded reports. */
void irpk_reports_clear(void);
/* Silence the stderr echo of reports (tests that provoke them on purpose); returns previous. */
int irpk_reports_set_quiet(int quiet);
/* Print a summary of all recorded reports (the same summary is printed at process exit when any
 * report was made and reports are not quiet). */
void irpk_reports_print_summary(void *file /* FILE* */);

#ifdef __cplusplus
}
#endif

#endif
