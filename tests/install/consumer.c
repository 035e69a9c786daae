/* A program outside the tree, built against an installed irpkit: loads a one-line driver. */
#include <ntddk.h>

#include <irpkit/runtime.h>

static NTSTATUS Entry(PDRIVER_OBJECT Driver, PUNICODE_STRING Registry)
{
    UNREFERENCED_PARAMETER(Registry);
    PDEVICE_OBJECT dev;
    return IoCreateDevice(Driver, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
}

int main(void)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\consumer");
    NTSTATUS st = IoCreateDriver(&name, Entry);
    irpk_runtime_shutdown();
    return NT_SUCCESS(st) ? 0 : 1;
}
