/* irpkit WDK compatibility face: <ntddk.h> — everything in <wdm.h>. */
#ifndef IRPK_WDK_NTDDK_H
#define IRPK_WDK_NTDDK_H
#include "wdm.h"
#endif
