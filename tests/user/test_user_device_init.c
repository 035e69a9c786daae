/* Regression: opening a device that is still initializing (DO_DEVICE_INITIALIZING).
 *
 * NtCreateFile used to read DEVICE_OBJECT.Flags as a plain field while the creating driver
 * could clear the flag on another thread: a DriverEntry that clears it after its \Device name
 * is visible races with an open by that name (ThreadSanitizer reports it). io now decides
 * "still initializing" under the namespace lock the lookup holds, from state io itself owns:
 * a device created in DriverEntry is initializing until DriverEntry returns, and then the I/O
 * manager clears the flag itself (Microsoft's documented behaviour: drivers clear it only for
 * devices created outside DriverEntry). Such an open fails with STATUS_NO_SUCH_DEVICE.
 *
 *   - A DriverEntry that never clears the flag: its device opens once DriverEntry returned.
 *     Before the fix: STATUS_NO_SUCH_DEVICE forever.
 *   - A DriverEntry that lets another thread open its \Device name and clears the flag at the
 *     same time (no ordering between the two): the open fails, deterministically. Before the
 *     fix: a data race on Flags (TSan), and the open's result depended on the timing.
 *   - A device created outside DriverEntry: the driver's flag decides (NT), read under the
 *     namespace lock. */
#include <stdio.h>
#include <string.h>

#include "io/io.h"
#include "irpkit/user.h"
#include "ob/ob.h"
#include "udriver.h"

static volatile int32_t creates;

static NTSTATUS init_dispatch(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    if (IoGetCurrentIrpStackLocation(irp)->MajorFunction == IRP_MJ_CREATE) plat_fetch_add32(&creates, 1);
    irp->IoStatus.Status = STATUS_SUCCESS;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

static VOID init_unload(PDRIVER_OBJECT drv)
{
    UNICODE_STRING link = RTL_CONSTANT_STRING(L"\\??\\UInit");
    IoDeleteSymbolicLink(&link);
    while (drv->DeviceObject) IoDeleteDevice(drv->DeviceObject);
}

static void set_routines(PDRIVER_OBJECT drv)
{
    drv->MajorFunction[IRP_MJ_CREATE] = init_dispatch;
    drv->MajorFunction[IRP_MJ_CLEANUP] = init_dispatch;
    drv->MajorFunction[IRP_MJ_CLOSE] = init_dispatch;
    drv->DriverUnload = init_unload;
}

static PDRIVER_OBJECT load(PDRIVER_INITIALIZE entry)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\UInit");
    NTSTATUS st = IoCreateDriver(&name, entry);
    return NT_SUCCESS(st) ? io_lookup_driver(L"UInit") : NULL;
}

static void open_close(const wchar_t *name, NTSTATUS expected)
{
    HANDLE h = NULL;
    NTSTATUS st = u_open(name, GENERIC_READ | SYNCHRONIZE, 0, &h);
    if (st != expected) irpk_test_fail(__FILE__, __LINE__, "open %ls: 0x%08x, expected 0x%08x", name, (unsigned)st, (unsigned)expected);
    if (NT_SUCCESS(st)) CHECK_EQ(NtClose(h), STATUS_SUCCESS);
}

/* ------------------------------------------------------------------ the I/O manager clears it */

static NTSTATUS entry_never_clears(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    set_routines(drv);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\UInit"), link = RTL_CONSTANT_STRING(L"\\??\\UInit");
    PDEVICE_OBJECT dev;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (!NT_SUCCESS(st)) return st;
    CHECK(dev->Flags & DO_DEVICE_INITIALIZING);
    open_close(L"\\Device\\UInit", STATUS_NO_SUCH_DEVICE); /* from DriverEntry itself: not yet */
    return IoCreateSymbolicLink(&link, &name);             /* and no clearing: io does it */
}

TEST(device_created_in_driver_entry_opens_once_it_returned)
{
    long handles = ob_open_handles();
    creates = 0;
    PDRIVER_OBJECT drv = load(entry_never_clears);
    REQUIRE(drv);
    PDEVICE_OBJECT dev = io_lookup_device(L"\\Device\\UInit");
    REQUIRE(dev);
    CHECK_EQ(dev->Flags & DO_DEVICE_INITIALIZING, 0); /* cleared by the I/O manager */
    open_close(L"\\??\\UInit", STATUS_SUCCESS);         /* before the fix: STATUS_NO_SUCH_DEVICE */
    open_close(L"\\Device\\UInit", STATUS_SUCCESS);
    CHECK_EQ(plat_load32(&creates), 2);
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(ob_open_handles(), handles);
}

/* ------------------------------------------------------------------ clear racing an open */

/* Gates on plat_wait (futex words): unlike a KEVENT (the dispatcher lock) they add no lock
 * the two threads share, so nothing but the gates orders their steps. */
static volatile uint32_t named, tried;
static NTSTATUS racing_status;

static void gate_open(volatile uint32_t *g)
{
    plat_store32((volatile int32_t *)g, 1);
    plat_wake(g, INT32_MAX);
}

static void gate_wait(volatile uint32_t *g)
{
    while (!plat_load32((volatile int32_t *)g)) plat_wait(g, 0, PLAT_FOREVER);
}

static void opener_thread(void *arg)
{
    (void)arg;
    gate_wait(&named);
    HANDLE h = NULL;
    racing_status = u_open(L"\\Device\\UInit", GENERIC_READ | SYNCHRONIZE, 0, &h);
    if (NT_SUCCESS(racing_status)) NtClose(h);
    gate_open(&tried);
}

static NTSTATUS entry_clears_while_opened(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    set_routines(drv);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\UInit");
    PDEVICE_OBJECT dev;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (!NT_SUCCESS(st)) return st;
    /* The name is visible: let the opener go, and clear the flag with nothing ordering the
     * two (the event is set before the clear, waited for after the open). */
    gate_open(&named);
    dev->Flags &= ~DO_DEVICE_INITIALIZING;
    gate_wait(&tried);
    return STATUS_SUCCESS;
}

TEST(open_during_driver_entry_fails_without_racing_the_flag)
{
    long handles = ob_open_handles();
    creates = 0;
    racing_status = STATUS_PENDING;
    named = tried = 0;
    plat_thread *t = plat_thread_start(opener_thread, NULL, "opener", 0);
    REQUIRE(t);
    PDRIVER_OBJECT drv = load(entry_clears_while_opened);
    plat_thread_join(t);
    REQUIRE(drv);
    /* Still in DriverEntry: initializing, whatever the driver did to its flag meanwhile. */
    CHECK_EQ(racing_status, STATUS_NO_SUCH_DEVICE);
    CHECK_EQ(plat_load32(&creates), 0);
    open_close(L"\\Device\\UInit", STATUS_SUCCESS); /* DriverEntry returned */
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(ob_open_handles(), handles);
}

/* ------------------------------------------------------------------ outside DriverEntry */

static NTSTATUS entry_no_device(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    set_routines(drv);
    return STATUS_SUCCESS;
}

TEST(device_created_later_opens_once_its_driver_clears_the_flag)
{
    long handles = ob_open_handles();
    PDRIVER_OBJECT drv = load(entry_no_device);
    REQUIRE(drv);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\UInit"), link = RTL_CONSTANT_STRING(L"\\??\\UInit");
    PDEVICE_OBJECT dev;
    REQUIRE(NT_SUCCESS(IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev)));
    REQUIRE(NT_SUCCESS(IoCreateSymbolicLink(&link, &name)));
    open_close(L"\\??\\UInit", STATUS_NO_SUCH_DEVICE); /* like an AddDevice that is not done */
    dev->Flags &= ~DO_DEVICE_INITIALIZING;               /* the driver's job outside DriverEntry */
    open_close(L"\\??\\UInit", STATUS_SUCCESS);
    open_close(L"\\Device\\UInit", STATUS_SUCCESS);
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(ob_open_handles(), handles);
}
