/* The seed's sample driver, in two variants (see driver.c). */
#ifndef HELLO_STARTIO_H
#define HELLO_STARTIO_H

#include <ntddk.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HELLO_DEVICE_NAME L"\\Device\\HelloStartIo"
#define HELLO_LINK_NAME L"\\??\\HelloStartIo"
#define HELLO_DDK_LINK_NAME L"\\??\\HelloDDK" /* the name the seed's test program opens */

typedef struct _HELLO_CONFIG {
    BOOLEAN AsWritten; /* variant 1: StartIo waits on a KEVENT (illegal at DISPATCH_LEVEL) */
    ULONG DelayMs;     /* how long the "device" takes per read; 0 = finish via IoRequestDpc */
} HELLO_CONFIG;

/* Set before IoCreateDriver(..., HelloDriverEntry). */
VOID HelloSetConfig(const HELLO_CONFIG *Config);
DRIVER_INITIALIZE HelloDriverEntry;

#ifdef __cplusplus
}
#endif

#endif
