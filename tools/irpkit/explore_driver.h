/* What the scenarios that run an example driver itself under the explorer (explore_hello.c,
 * explore_csq.c) do around each execution: load the driver, open its device through the NT
 * services, and at the end check that nothing is left and that the driver unloads cleanly.
 * Every step that fails fails the execution (IRPK_EXPLORE_CHECK / irpk_explore_fail). */
#ifndef IRPK_EXPLORE_DRIVER_H
#define IRPK_EXPLORE_DRIVER_H

#include <ntifs.h>
#include <stdint.h>

/* Put the calling simulated thread on virtual CPU k. */
void xdrv_own_vcpu(uint8_t k);

/* Create the driver driver_name with entry as its DriverEntry; returns its device device_name. */
PDEVICE_OBJECT xdrv_load(PCWSTR driver_name, PDRIVER_INITIALIZE entry, PCWSTR device_name);

/* NtCreateFile on link for reading (GENERIC_READ | SYNCHRONIZE, FILE_OPEN) with create_options:
 * 0 for overlapped I/O, FILE_SYNCHRONOUS_IO_NONALERT for synchronous. */
NTSTATUS xdrv_open(PCWSTR link, ULONG create_options, HANDLE *h);

/* After irpk_user_flush: no file object (live or closing), pending, dropped or disassociated
 * request, and no open handle is left. */
void xdrv_check_user_leaks(void);

/* Unload dev's driver, which must succeed, and check that no IRP is still allocated. */
void xdrv_unload(PDEVICE_OBJECT dev);

#endif
