#ifndef MY_DRIVER_H
#define MY_DRIVER_H
#include <ntddk.h>
#define MY_DEVICE_NAME L"\\Device\\MyDriver"
/* The device DriverEntry created (the scenario sends its IRPs there). */
extern PDEVICE_OBJECT MyDeviceObject;
NTSTATUS MyDriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath);
#endif
