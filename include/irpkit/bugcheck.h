/* irpkit bug checks: every "bug check" (KeBugCheckEx, IRQL misuse, double completion, …) is a
 * report with the Windows code, its name and four parameters, routed through one hook so tests
 * can capture it and the CLI can print it. The verifier (irpkit/verifier.h) builds its reports
 * on top of this path. */
#ifndef IRPKIT_BUGCHECK_H
#define IRPKIT_BUGCHECK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Codes irpkit raises (Windows values). */
#define IRPK_BUGCHECK_IRQL_NOT_LESS_OR_EQUAL 0x0Au
#define IRPK_BUGCHECK_INVALID_AFFINITY_SET 0x03u
#define IRPK_BUGCHECK_MAXIMUM_WAIT_OBJECTS_EXCEEDED 0x0Cu
#define IRPK_BUGCHECK_NO_MORE_IRP_STACK_LOCATIONS 0x35u
#define IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS 0x44u
#define IRPK_BUGCHECK_CANCEL_STATE_IN_COMPLETED_IRP 0x48u
#define IRPK_BUGCHECK_IRQL_NOT_GREATER_OR_EQUAL 0x09u
#define IRPK_BUGCHECK_BAD_POOL_CALLER 0xC2u
#define IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION 0xC4u
#define IRPK_BUGCHECK_DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS 0xCEu
#define IRPK_BUGCHECK_TIMER_OR_DPC_INVALID 0xC7u
#define IRPK_BUGCHECK_DRIVER_VERIFIER_IOMANAGER_VIOLATION 0xC9u
#define IRPK_BUGCHECK_DRIVER_RETURNED_HOLDING_CANCEL_LOCK 0x11Bu
#define IRPK_BUGCHECK_ASSERTION_FAILURE 0x1000u /* irpkit: ASSERT() in driver code */

/* One report as delivered to the hook. `text` is the full multi-line report; its first line
 * names the code and its Windows name (or the SDV rule). */
typedef struct irpk_bugcheck {
    uint32_t code;
    const char *name;    /* "MULTIPLE_IRP_COMPLETE_REQUESTS", "StartIoRecursion", … */
    uintptr_t param[4];
    const char *text;
} irpk_bugcheck;

typedef void (*irpk_bugcheck_hook)(const irpk_bugcheck *report, void *context);

/* Install a hook called for every report (NULL restores the default, which records the report
 * and prints it to stderr). Returns the previous hook. */
irpk_bugcheck_hook irpk_bugcheck_set_hook(irpk_bugcheck_hook hook, void *context);

/* The Windows name of a bug-check code ("MULTIPLE_IRP_COMPLETE_REQUESTS"), or "UNKNOWN". */
const char *irpk_bugcheck_name(uint32_t code);

/* Raise a bug check with a free-form explanation (printf format). In report mode this returns
 * after recording; in fatal mode the process aborts after printing. */
void irpk_bugcheck_raise(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4,
                         const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

#ifdef __cplusplus
}
#endif

#endif
