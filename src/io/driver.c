/* Driver and device objects: IoCreateDriver, unload, IoCreateDevice/IoDeleteDevice, layering. */
#include <stdio.h>

#include "io/io.h"
#include "verify/hooks.h"


static int32_t unnamed_drivers;

/* Memory of one device: the object, its DEVOBJ_EXTENSION, irpkit's state, then the driver's
 * extension (16-byte aligned). */
typedef struct device_block {
    DEVICE_OBJECT dev;
    DEVOBJ_EXTENSION ext;
    io_device_priv priv;
    _Alignas(16) unsigned char extension[];
} device_block;

typedef struct driver_block {
    DRIVER_OBJECT drv;
    DRIVER_EXTENSION ext;
    wchar_t name[80];
    /* Memory references: 1 while loaded (dropped by a complete unload) + 1 per device block not
     * yet freed, so a device kept alive by io_lookup_device_ref never points at a freed driver. */
    volatile int32_t refs;
} driver_block;

static void driver_deref(PDRIVER_OBJECT drv)
{
    driver_block *b = CONTAINING_RECORD(drv, driver_block, drv);
    if (plat_fetch_add32(&b->refs, -1) == 1) plat_free(b); /* the last one: nobody can reach it */
}

static NTSTATUS invalid_device_request(PDEVICE_OBJECT DeviceObject, PIRP Irp)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    Irp->IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST;
    Irp->IoStatus.Information = 0;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    return STATUS_INVALID_DEVICE_REQUEST;
}

static driver_block *new_driver(PUNICODE_STRING name)
{
    driver_block *b = plat_calloc(1, sizeof *b);
    if (!b) return NULL;
    if (name) swprintf(b->name, 80, L"%.*ls", (int)(name->Length / sizeof(WCHAR)), name->Buffer);
    else swprintf(b->name, 80, L"\\Driver\\irpk%d", (int)plat_fetch_add32(&unnamed_drivers, 1) + 1);
    if (wcsncmp(b->name, L"\\Driver\\", 8)) {
        wchar_t tmp[80];
        wcscpy(tmp, b->name);
        swprintf(b->name, 80, L"\\Driver\\%ls", tmp);
    }
    b->refs = 1; /* unpublished until io_ns_add_driver */
    PDRIVER_OBJECT d = &b->drv;
    d->Type = IO_TYPE_DRIVER;
    d->Size = sizeof(DRIVER_OBJECT);
    d->DriverExtension = &b->ext;
    b->ext.DriverObject = d;
    RtlInitUnicodeString(&d->DriverName, b->name);
    for (int i = 0; i <= IRP_MJ_MAXIMUM_FUNCTION; i++) d->MajorFunction[i] = invalid_device_request;
    return b;
}

static void delete_all_devices(PDRIVER_OBJECT drv)
{
    while (drv->DeviceObject) IoDeleteDevice(drv->DeviceObject);
}

NTSTATUS IoCreateDriver(PUNICODE_STRING DriverName, PDRIVER_INITIALIZE InitializationFunction)
{
    driver_block *b = new_driver(DriverName);
    if (!b) return STATUS_INSUFFICIENT_RESOURCES;
    b->drv.DriverInit = InitializationFunction;
    NTSTATUS st = io_ns_add_driver(&b->drv);
    if (!NT_SUCCESS(st)) {
        plat_free(b);
        return st;
    }
    UNICODE_STRING registry = RTL_CONSTANT_STRING(L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\irpkit");
    st = InitializationFunction(&b->drv, &registry);
    if (NT_SUCCESS(st)) {
        io_ns_driver_entry_done(&b->drv); /* DO_DEVICE_INITIALIZING cleared, devices openable */
        io_registry_add(&b->drv);
        return st;
    }
    delete_all_devices(&b->drv);
    io_ns_remove_driver(&b->drv);
    driver_deref(&b->drv); /* freed now, or by the last referenced device of it */
    return st;
}

static int report_leftovers(PDRIVER_OBJECT drv)
{
    int problems = 0;
    for (PDEVICE_OBJECT d = drv->DeviceObject; d; d = d->NextDevice) {
        int32_t n = plat_bk_load32(&io_dev_priv(d)->in_flight);
        problems++;
        vrf_report(IRPK_BUGCHECK_DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, (uintptr_t)drv,
                   (uintptr_t)d, (uintptr_t)n, 0, NULL, d, NULL,
                   "DriverUnload must delete its devices, and only after every IRP they received "
                   "was completed (cancel or drain the queues first).",
                   "Driver %ls unloaded while device %ls still exists%s (%d IRP(s) in flight).",
                   drv->DriverName.Buffer, io_dev_priv(d)->name[0] ? io_dev_priv(d)->name : L"(unnamed)",
                   n ? " with I/O outstanding" : "", (int)n);
    }
    return problems;
}

/* The unload itself. Run by exactly one thread: the one io_ns_request_unload or io_ns_drop_open
 * told to (its namespace-lock decision), when no open references a device of the driver and
 * none can take one any more — so DriverUnload never runs beside an open in progress. */
static int unload_now(PDRIVER_OBJECT driver)
{
    if (vrf_on()) vrf_driver_unloading(driver); /* a stalled queue explains the leftovers */
    if (driver->DriverUnload) driver->DriverUnload(driver);
    int problems = report_leftovers(driver);
    /* A device with IRPs in flight is kept (and so is the driver object): freeing it would turn
     * the driver bug into a use-after-free. */
    for (PDEVICE_OBJECT d = driver->DeviceObject, next; d; d = next) {
        next = d->NextDevice;
        if (!plat_bk_load32(&io_dev_priv(d)->in_flight)) IoDeleteDevice(d);
    }
    io_ns_remove_driver(driver);
    if (!driver->DeviceObject) {
        io_registry_remove(driver);
        driver_deref(driver); /* freed now, or by the last referenced device of it */
    }
    return problems;
}

int io_unload_driver(PDRIVER_OBJECT driver)
{
    /* Open files on its devices: NT defers the unload ("Unload Pending") to the last close. */
    return io_ns_request_unload(driver) ? unload_now(driver) : 0;
}

void io_device_open_release(PDEVICE_OBJECT dev)
{
    PDRIVER_OBJECT drv = dev->DriverObject; /* alive: our memory reference holds the device block */
    /* Called with no lock held (file_delete, a failed open), so DriverUnload may run here. */
    if (io_ns_drop_open(dev)) unload_now(drv);
    /* After the unload: the reference kept dev (and through it drv) allocated across it. */
    io_device_deref(dev);
}

/* ---- devices */

static void init_device(device_block *b, PDRIVER_OBJECT drv, ULONG ext_size, DEVICE_TYPE type,
                        ULONG characteristics, BOOLEAN exclusive)
{
    PDEVICE_OBJECT d = &b->dev;
    d->Type = IO_TYPE_DEVICE;
    d->Size = (USHORT)(sizeof(DEVICE_OBJECT) + ext_size);
    d->ReferenceCount = 0;
    d->DriverObject = drv;
    d->Flags = DO_DEVICE_INITIALIZING | (exclusive ? DO_EXCLUSIVE : 0);
    d->Characteristics = characteristics;
    d->DeviceExtension = ext_size ? b->extension : NULL;
    d->DeviceType = type;
    d->StackSize = 1;
    d->SectorSize = 512;
    KeInitializeDeviceQueue(&d->DeviceQueue);
    d->DeviceObjectExtension = &b->ext;
    b->ext.Type = 13; /* IO_TYPE_DEVICE_OBJECT_EXTENSION */
    b->ext.Size = sizeof(DEVOBJ_EXTENSION);
    b->ext.DeviceObject = d;
    b->ext.IrpkPrivate = &b->priv;
    b->priv.refs = 1; /* the creation reference, dropped by IoDeleteDevice */
}

NTSTATUS IoCreateDevice(PDRIVER_OBJECT DriverObject, ULONG DeviceExtensionSize,
                        PUNICODE_STRING DeviceName, DEVICE_TYPE DeviceType,
                        ULONG DeviceCharacteristics, BOOLEAN Exclusive,
                        PDEVICE_OBJECT *DeviceObject)
{
    *DeviceObject = NULL;
    device_block *b = plat_calloc(1, sizeof *b + DeviceExtensionSize);
    if (!b) return STATUS_INSUFFICIENT_RESOURCES;
    init_device(b, DriverObject, DeviceExtensionSize, DeviceType, DeviceCharacteristics, Exclusive);
    if (DeviceName) {
        NTSTATUS st = io_ns_add_device(&b->dev, DeviceName, b->priv.name, 64);
        if (!NT_SUCCESS(st)) {
            plat_free(b);
            return st;
        }
        b->dev.Flags |= DO_DEVICE_HAS_NAME;
    }
    /* Newest first, like Windows. Drivers create devices from DriverEntry/AddDevice, which do
     * not run concurrently for one driver. */
    plat_fetch_add32(&CONTAINING_RECORD(DriverObject, driver_block, drv)->refs, 1); /* io_device_deref */
    b->dev.NextDevice = DriverObject->DeviceObject;
    DriverObject->DeviceObject = &b->dev;
    *DeviceObject = &b->dev;
    io_registry_add(&b->dev);
    vrf_device_created(&b->dev); /* verifier per-device state (stalls, recursion) */
    return STATUS_SUCCESS;
}

static void unlink_from_driver(PDEVICE_OBJECT dev)
{
    PDEVICE_OBJECT *pp = &dev->DriverObject->DeviceObject;
    while (*pp && *pp != dev) pp = &(*pp)->NextDevice;
    if (*pp) *pp = dev->NextDevice;
}

VOID IoDeleteDevice(PDEVICE_OBJECT DeviceObject)
{
    io_device_priv *p = io_dev_priv(DeviceObject);
    int32_t n = plat_bk_load32(&p->in_flight);
    if (n)
        vrf_report(IRPK_BUGCHECK_DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                   (uintptr_t)DeviceObject->DriverObject, (uintptr_t)DeviceObject, (uintptr_t)n, 0,
                   NULL, DeviceObject, NULL,
                   "complete or cancel every IRP the device received (and wait for them) before "
                   "IoDeleteDevice; a remove lock (IoReleaseRemoveLockAndWait) does exactly that.",
                   "IoDeleteDevice(%ls) with %d IRP(s) still in flight.",
                   p->name[0] ? p->name : L"(unnamed)", (int)n);
    vrf_device_deleting(DeviceObject); /* 0xC7: DPCs/timers left in its memory; state freed */
    io_ns_remove_device(p->name);
    unlink_from_driver(DeviceObject);
    if (DeviceObject->DeviceObjectExtension->AttachedTo) IoDetachDevice(DeviceObject->DeviceObjectExtension->AttachedTo);
    io_registry_remove(DeviceObject);
    /* After the name is gone (io_ns_remove_device above, under the namespace lock): no new
     * reference can be taken, so the opens that still hold one are the only ones left. */
    plat_store32(&p->deleted, 1);
    io_device_deref(DeviceObject); /* the creation reference */
}

void io_device_deref(PDEVICE_OBJECT dev)
{
    io_device_priv *p = io_dev_priv(dev);
    if (plat_fetch_add32(&p->refs, -1) != 1) return;
    /* The last reference: the device is deleted (the creation reference is dropped only by
     * IoDeleteDevice) and unnamed, so nobody else can reach it. */
    PDRIVER_OBJECT drv = dev->DriverObject;
    plat_free(CONTAINING_RECORD(dev, device_block, dev));
    driver_deref(drv);
}

/* ---- layering. Attach/detach happen from AddDevice/unload paths, not concurrently with I/O
 * on the same stack (as in Windows, where the database lock only orders these calls). */

PDEVICE_OBJECT IoGetAttachedDevice(PDEVICE_OBJECT DeviceObject)
{
    while (DeviceObject->AttachedDevice) DeviceObject = DeviceObject->AttachedDevice;
    return DeviceObject;
}

PDEVICE_OBJECT IoAttachDeviceToDeviceStack(PDEVICE_OBJECT SourceDevice, PDEVICE_OBJECT TargetDevice)
{
    PDEVICE_OBJECT top = IoGetAttachedDevice(TargetDevice);
    /* Documented: NULL when the target is being unloaded (its driver's unload is pending or
     * running: no new reference to its devices may be made). Decided under the namespace lock;
     * an unload requested after the check finds the attachment made, as in NT's order. */
    if (io_ns_driver_unloading(top->DriverObject) || io_ns_driver_unloading(TargetDevice->DriverObject))
        return NULL;
    top->AttachedDevice = SourceDevice;
    SourceDevice->StackSize = (CCHAR)(top->StackSize + 1);
    SourceDevice->AlignmentRequirement = top->AlignmentRequirement;
    SourceDevice->SectorSize = top->SectorSize;
    SourceDevice->DeviceObjectExtension->AttachedTo = top;
    return top;
}

VOID IoDetachDevice(PDEVICE_OBJECT TargetDevice)
{
    PDEVICE_OBJECT above = TargetDevice->AttachedDevice;
    if (!above) return;
    above->DeviceObjectExtension->AttachedTo = NULL;
    TargetDevice->AttachedDevice = NULL;
}
