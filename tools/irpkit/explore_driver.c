/* Loading, opening and the end-of-execution checks shared by the example-driver scenarios. */
#include "explore_driver.h"

#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/user.h"
#include "ob/ob.h"
#include "platform/platform.h"

void xdrv_own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

PDEVICE_OBJECT xdrv_load(PCWSTR driver_name, PDRIVER_INITIALIZE entry, PCWSTR device_name)
{
    UNICODE_STRING name;
    RtlInitUnicodeString(&name, driver_name);
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, entry)));
    PDEVICE_OBJECT dev = io_lookup_device(device_name);
    IRPK_EXPLORE_CHECK(dev != NULL);
    return dev;
}

NTSTATUS xdrv_open(PCWSTR link, ULONG create_options, HANDLE *h)
{
    UNICODE_STRING name;
    RtlInitUnicodeString(&name, link);
    OBJECT_ATTRIBUTES oa;
    IO_STATUS_BLOCK iosb;
    InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    return NtCreateFile(h, GENERIC_READ | SYNCHRONIZE, &oa, &iosb, NULL, FILE_ATTRIBUTE_NORMAL, 0, FILE_OPEN,
                        create_options, NULL, 0);
}

void xdrv_check_user_leaks(void)
{
    irpk_user_stats us;
    irpk_user_get_stats(&us);
    if (us.files_live || us.files_closing || us.irps_pending || us.dropped || us.disassociated ||
        ob_open_handles())
        irpk_explore_fail("leak: %ld file objects (%ld closing), %ld requests pending, %ld dropped, %ld "
                          "disassociated, %ld handles",
                          us.files_live, us.files_closing, us.irps_pending, us.dropped, us.disassociated,
                          (long)ob_open_handles());
}

void xdrv_unload(PDEVICE_OBJECT dev)
{
    IRPK_EXPLORE_CHECK(io_unload_driver(dev->DriverObject) == 0);
    if (io_irps_live()) irpk_explore_fail("leak: %ld IRPs still allocated after the unload", io_irps_live());
}
