/* What the examples' tests share (not the examples themselves: each driver and user program
 * stays readable on its own): load a sample driver in process, read its statistics through
 * its IOCTL, check a user-program run, and unload checking that nothing was left behind.
 * Checks report the caller's file and line. */
#ifndef IRPK_EXAMPLE_TEST_UTIL_H
#define IRPK_EXAMPLE_TEST_UTIL_H

#include <ntddk.h>

#include "inproc.h"
#include "ustress.h"

/* Quiet, cleared verifier reports, then IoCreateDriver(driver_name, entry): the device behind
 * `link` (NULL when the driver did not load or made no such device). */
PDEVICE_OBJECT ex_load(PCWSTR driver_name, PDRIVER_INITIALIZE entry, PCWSTR link);

/* The example's statistics: its METHOD_BUFFERED IOCTL on a fresh handle (inproc_ioctl), which
 * must succeed; *out is zeroed first. */
#define EX_STATS(dev, code, out) ex_stats_at(__FILE__, __LINE__, dev, code, out, sizeof *(out))
void ex_stats_at(const char *file, int line, PDEVICE_OBJECT dev, ULONG code, void *out, ULONG len);

/* Unload the driver: it unloads at once (returns 0), no verifier report was raised (the first
 * is printed), no IRP is left allocated. */
#define EX_UNLOAD(dev) ex_unload_at(__FILE__, __LINE__, dev)
void ex_unload_at(const char *file, int line, PDEVICE_OBJECT dev);

/* Run the example's user program (requests per thread) against the loaded driver, which must
 * succeed; print its result (as `what`); wait until every file object it opened got
 * IRP_MJ_CLOSE. */
#define EX_RUN_USER_PROGRAM(program, requests, what, r) \
    ex_run_user_program_at(__FILE__, __LINE__, program, requests, what, r)
void ex_run_user_program_at(const char *file, int line, NTSTATUS (*program)(long, ustress_result *),
                            long requests, const char *what, ustress_result *r);

/* After a user program's run (ustress): every accepted request completed exactly once
 * (bad 0, completed == issued, issued > 0) and the program closed every handle. */
#define EX_CHECK_USER_RUN(r) ex_check_user_run_at(__FILE__, __LINE__, r)
void ex_check_user_run_at(const char *file, int line, const ustress_result *r);

/* The end of a user-program test: the user-mode side holds no request and no file object,
 * then EX_UNLOAD, then the process has the `handles` it had before the driver was loaded. */
#define EX_UNLOAD_AFTER_USER(dev, handles) ex_unload_after_user_at(__FILE__, __LINE__, dev, handles)
void ex_unload_after_user_at(const char *file, int line, PDEVICE_OBJECT dev, LONG handles);

/* inproc_config.prepare for the readers' examples: IRP_MJ_READ of one ULONG. */
void ex_prepare_ulong_read(inproc_request *r, PIO_STACK_LOCATION next, void *ctx);

#endif
