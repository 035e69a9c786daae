/* irpkit WDK compatibility face: <ntifs.h> — <ntddk.h> plus the Nt* native services. */
#ifndef IRPK_WDK_NTIFS_H
#define IRPK_WDK_NTIFS_H
#include "ntddk.h"
#endif
