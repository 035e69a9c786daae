/* irpkit WDK compatibility face: the I/O manager part of <wdm.h> (IRPs, stack locations, driver,
 * device and file objects, IoXxx routines). Included by wdm.h. */
#ifndef IRPK_WDK_WDM_IO_H
#define IRPK_WDK_WDM_IO_H

#include "wdm.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
