// The WDK face compiles as C++ (g++/clang++): a driver written in C++ includes <ntddk.h> and
// <wdm.h> and uses the I/O types and inline helpers.
#include <ntddk.h>
#include <wdm.h>

#include "test.h"

static NTSTATUS CxxDispatch(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(Irp);
    Irp->IoStatus.Information = sp->Parameters.Read.Length;
    Irp->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

static PDEVICE_OBJECT g_dev;

static NTSTATUS CxxEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNREFERENCED_PARAMETER(RegistryPath);
    DriverObject->MajorFunction[IRP_MJ_READ] = CxxDispatch;
    return IoCreateDevice(DriverObject, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &g_dev);
}

TEST(cxx_driver_builds_and_runs)
{
    static_assert(IRP_MJ_MAXIMUM_FUNCTION == 0x1b, "WDK value");
    static_assert(CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS) == 0x222000, "CTL_CODE");
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\cxx");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&name, CxxEntry)));
    PIRP irp = IoAllocateIrp(g_dev->StackSize, FALSE);
    PIO_STACK_LOCATION next = IoGetNextIrpStackLocation(irp);
    next->MajorFunction = IRP_MJ_READ;
    next->Parameters.Read.Length = 12;
    CHECK_EQ(IoCallDriver(g_dev, irp), STATUS_SUCCESS);
    CHECK_EQ(irp->IoStatus.Information, 12);
    IoFreeIrp(irp);
    IoDeleteDevice(g_dev);
}
