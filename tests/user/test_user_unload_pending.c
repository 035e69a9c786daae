/* Regression: unloading a driver whose devices are still open is deferred, as in NT.
 *
 * Microsoft's "Unload Routine Environment": at the start of the unloading sequence the I/O
 * manager marks the driver object and its device objects "Unload Pending"; from then on no
 * additional references can be made to its device objects; it calls the Unload routine once
 * no references remain to any of them ("no files associated with the underlying device can be
 * open"). DEVICE_OBJECT.ReferenceCount counts the open handles "to avoid unloading a driver
 * when there are outstanding handles for the driver's device(s)".
 *
 * io_unload_driver used to call DriverUnload at once, with files still open: the driver then
 * saw the CLEANUP and CLOSE of those files after its unload.
 *
 *   1. open, unload: DriverUnload has not run, a new open fails (STATUS_NO_SUCH_DEVICE), the
 *      open handle still reads; the last close runs DriverUnload, once; the devices are gone.
 *   2. unload with nothing open: DriverUnload at once, as before.
 *   3. a close racing the unload request (and an open racing both): DriverUnload exactly once,
 *      never while a file is open or an open is in progress — under the race explorer and as
 *      a native stress. */
#include <stdio.h>
#include <string.h>

#include "explore_check.h"
#include "io/io.h"
#include "irpkit/thread.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"
#include "udriver.h"

/* LeakSanitizer: the exploration's reset of ob and io forgets what the native tests before it
 * allocated — ob's handle table and the IRPs cached in io's lookaside lists (as in
 * tests/explore/test_explore_user.c). Those two are not reported from this process; every test
 * here checks io_irps_live() and the handle count itself. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:ob_insert_handle\nleak:IoAllocateIrp\n"; }

#define PEND_DEVICE L"\\Device\\UPend"
#define PEND_DEVICE2 L"\\Device\\UPend2"
#define PEND_LINK L"\\??\\UPend"
#define RW (GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE)

/* The driver's view: what it was sent, and the first thing it saw that NT never shows it. */
static struct {
    volatile int32_t creates, cleanups, closes, unloads;
    volatile int32_t unloaded; /* DriverUnload has started */
    const char *volatile violation;
} P;

static void violation(const char *what)
{
    plat_cas_ptr((void *volatile *)&P.violation, NULL, (void *)what);
}

static NTSTATUS pend_dispatch(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
    ULONG_PTR info = 0;
    if (plat_load32(&P.unloaded)) violation("an IRP reached the driver after DriverUnload");
    switch (sp->MajorFunction) {
    case IRP_MJ_CREATE: plat_fetch_add32(&P.creates, 1); break;
    case IRP_MJ_CLEANUP: plat_fetch_add32(&P.cleanups, 1); break;
    case IRP_MJ_CLOSE: plat_fetch_add32(&P.closes, 1); break;
    case IRP_MJ_READ:
        memset(irp->AssociatedIrp.SystemBuffer, 'p', sp->Parameters.Read.Length);
        info = sp->Parameters.Read.Length;
        break;
    }
    irp->IoStatus.Status = STATUS_SUCCESS;
    irp->IoStatus.Information = info;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

static VOID pend_unload(PDRIVER_OBJECT drv)
{
    plat_fetch_add32(&P.unloads, 1);
    /* Every CREATE it was sent has had its CLOSE: no file is open, none is being opened. */
    if (plat_load32(&P.creates) != plat_load32(&P.closes)) violation("DriverUnload while a file was open");
    if (plat_xchg32(&P.unloaded, 1)) violation("DriverUnload ran twice");
    UNICODE_STRING link = RTL_CONSTANT_STRING(PEND_LINK);
    IoDeleteSymbolicLink(&link);
    while (drv->DeviceObject) IoDeleteDevice(drv->DeviceObject);
}

static NTSTATUS make(PDRIVER_OBJECT drv, const wchar_t *name)
{
    UNICODE_STRING n;
    RtlInitUnicodeString(&n, name);
    PDEVICE_OBJECT dev;
    NTSTATUS st = IoCreateDevice(drv, 0, &n, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (NT_SUCCESS(st)) dev->Flags |= DO_BUFFERED_IO;
    return st;
}

static NTSTATUS pend_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->MajorFunction[IRP_MJ_CREATE] = pend_dispatch;
    drv->MajorFunction[IRP_MJ_CLEANUP] = pend_dispatch;
    drv->MajorFunction[IRP_MJ_CLOSE] = pend_dispatch;
    drv->MajorFunction[IRP_MJ_READ] = pend_dispatch;
    drv->DriverUnload = pend_unload;
    NTSTATUS st = make(drv, PEND_DEVICE);
    if (NT_SUCCESS(st)) st = make(drv, PEND_DEVICE2);
    UNICODE_STRING name = RTL_CONSTANT_STRING(PEND_DEVICE), link = RTL_CONSTANT_STRING(PEND_LINK);
    if (NT_SUCCESS(st)) st = IoCreateSymbolicLink(&link, &name);
    if (!NT_SUCCESS(st))
        while (drv->DeviceObject) IoDeleteDevice(drv->DeviceObject);
    return st;
}

static PDRIVER_OBJECT pend_load(void)
{
    memset((void *)&P, 0, sizeof P);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\UPend");
    return NT_SUCCESS(IoCreateDriver(&name, pend_entry)) ? io_lookup_driver(L"UPend") : NULL;
}

static NTSTATUS open_status(const wchar_t *name)
{
    HANDLE h = NULL;
    NTSTATUS st = u_open(name, RW, FILE_SYNCHRONOUS_IO_NONALERT, &h);
    if (NT_SUCCESS(st)) NtClose(h);
    return st;
}

/* ------------------------------------------------------------------ 1. deferred */

TEST(unload_with_open_files_waits_for_the_last_close)
{
    long handles = ob_open_handles();
    long irps = io_irps_live();
    size_t reports = irpk_report_count();
    PDRIVER_OBJECT drv = pend_load();
    REQUIRE(drv);
    HANDLE a = NULL, b = NULL;
    REQUIRE(u_open(PEND_LINK, RW, FILE_SYNCHRONOUS_IO_NONALERT, &a) == STATUS_SUCCESS);
    REQUIRE(u_open(PEND_DEVICE2, RW, FILE_SYNCHRONOUS_IO_NONALERT, &b) == STATUS_SUCCESS);

    /* The request succeeds (ZwUnloadDriver documents no error for open handles) and is
     * pending: DriverUnload has not run, the driver and its devices are still there. */
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(plat_load32(&P.unloads), 0); /* before the fix: 1 */
    CHECK_PTR(io_lookup_driver(L"UPend"), drv);
    CHECK(io_lookup_device(PEND_DEVICE) != NULL);
    /* No new reference to its devices: opens fail, by link or by name, on either device. */
    CHECK_EQ(open_status(PEND_LINK), STATUS_NO_SUCH_DEVICE);
    CHECK_EQ(open_status(PEND_DEVICE), STATUS_NO_SUCH_DEVICE);
    CHECK_EQ(open_status(PEND_DEVICE2), STATUS_NO_SUCH_DEVICE);
    CHECK_EQ(plat_load32(&P.creates), 2);
    /* A second request changes nothing. */
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(plat_load32(&P.unloads), 0);

    /* The open handles still work. */
    UCHAR buf[8] = {0};
    IO_STATUS_BLOCK iosb = {{STATUS_PENDING}, 0};
    CHECK_EQ(NtReadFile(a, NULL, NULL, NULL, &iosb, buf, sizeof buf, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(iosb.Information, sizeof buf);
    CHECK_EQ(buf[0], 'p');
    CHECK_EQ(NtReadFile(b, NULL, NULL, NULL, &iosb, buf, 4, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(iosb.Information, 4);

    /* One file left open on the other device: still pending. */
    CHECK_EQ(NtClose(a), STATUS_SUCCESS);
    CHECK_EQ(plat_load32(&P.closes), 1);
    CHECK_EQ(plat_load32(&P.unloads), 0);
    CHECK_EQ(open_status(PEND_DEVICE), STATUS_NO_SUCH_DEVICE);

    /* The last close: CLEANUP, CLOSE, then DriverUnload — once — and everything is gone. */
    CHECK_EQ(NtClose(b), STATUS_SUCCESS);
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK_EQ(plat_load32(&P.cleanups), 2);
    CHECK_EQ(plat_load32(&P.closes), 2);
    CHECK_EQ(plat_load32(&P.unloads), 1);
    CHECK(io_lookup_driver(L"UPend") == NULL);
    CHECK(io_lookup_device(PEND_DEVICE) == NULL);
    CHECK(io_lookup_device(PEND_DEVICE2) == NULL);
    CHECK_EQ(open_status(PEND_LINK), STATUS_OBJECT_NAME_NOT_FOUND);
    if (P.violation) irpk_test_fail(__FILE__, __LINE__, "%s", P.violation);
    CHECK_EQ(io_irps_live(), irps);
    CHECK_EQ(ob_open_handles(), handles);
    CHECK_EQ(irpk_report_count(), reports);
}

/* ------------------------------------------------------------------ 2. immediate */

TEST(unload_with_nothing_open_is_immediate)
{
    long handles = ob_open_handles();
    size_t reports = irpk_report_count();
    PDRIVER_OBJECT drv = pend_load();
    REQUIRE(drv);
    CHECK_EQ(open_status(PEND_LINK), STATUS_SUCCESS);
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(plat_load32(&P.unloads), 1);
    CHECK(io_lookup_driver(L"UPend") == NULL);
    CHECK(io_lookup_device(PEND_DEVICE) == NULL);
    CHECK_EQ(open_status(PEND_LINK), STATUS_OBJECT_NAME_NOT_FOUND);
    if (P.violation) irpk_test_fail(__FILE__, __LINE__, "%s", P.violation);
    CHECK_EQ(ob_open_handles(), handles);
    CHECK_EQ(irpk_report_count(), reports);
}

/* ------------------------------------------------------------------ 2b. attach refused */

/* IoAttachDeviceToDeviceStack "returns NULL if it could not attach the device object because,
 * for example, the target device was being unloaded" (Microsoft's page for the routine): a
 * filter cannot layer itself over a device whose driver's unload is pending. */
static PDEVICE_OBJECT filter_dev;
static VOID filter_unload(PDRIVER_OBJECT drv)
{
    while (drv->DeviceObject) IoDeleteDevice(drv->DeviceObject);
}
static NTSTATUS filter_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->DriverUnload = filter_unload;
    return IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &filter_dev);
}

TEST(attaching_to_a_device_whose_unload_is_pending_returns_null)
{
    long handles = ob_open_handles();
    PDRIVER_OBJECT drv = pend_load();
    REQUIRE(drv);
    UNICODE_STRING fname = RTL_CONSTANT_STRING(L"\\Driver\\UPendFilter");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&fname, filter_entry)));
    PDRIVER_OBJECT fdrv = io_lookup_driver(L"UPendFilter");
    REQUIRE(fdrv && filter_dev);
    PDEVICE_OBJECT target = io_lookup_device(PEND_DEVICE);
    REQUIRE(target);
    /* Loaded: the filter attaches, and detaches again. */
    CHECK_PTR(IoAttachDeviceToDeviceStack(filter_dev, target), target);
    CHECK_PTR(target->AttachedDevice, filter_dev);
    IoDetachDevice(target);
    CHECK(target->AttachedDevice == NULL);

    HANDLE a = NULL;
    REQUIRE(u_open(PEND_LINK, RW, FILE_SYNCHRONOUS_IO_NONALERT, &a) == STATUS_SUCCESS);
    CHECK_EQ(io_unload_driver(drv), 0); /* pending: a file is open */
    CHECK_EQ(plat_load32(&P.unloads), 0);
    /* Unload pending: refused, and nothing of the filter is linked (before: attached). */
    CHECK(IoAttachDeviceToDeviceStack(filter_dev, target) == NULL);
    CHECK(target->AttachedDevice == NULL);
    CHECK(filter_dev->DeviceObjectExtension->AttachedTo == NULL);

    CHECK_EQ(NtClose(a), STATUS_SUCCESS);
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK_EQ(plat_load32(&P.unloads), 1);
    CHECK_EQ(io_unload_driver(fdrv), 0);
    filter_dev = NULL;
    if (P.violation) irpk_test_fail(__FILE__, __LINE__, "%s", P.violation);
    CHECK_EQ(ob_open_handles(), handles);
}

/* ------------------------------------------------------------------ 3. races, explored */

static NTSTATUS explored_open;

static void closer(void *arg) { IRPK_EXPLORE_CHECK(NtClose((HANDLE)arg) == STATUS_SUCCESS); }

static void opener(void *arg)
{
    (void)arg;
    explored_open = open_status(PEND_LINK);
}

/* main asks for the unload while one thread closes the only open file and another opens the
 * device: whoever drops the last reference runs DriverUnload, once, after every open. */
static void unload_close_open_scenario(void *arg)
{
    (void)arg;
    explored_open = STATUS_PENDING;
    PDRIVER_OBJECT drv = pend_load();
    IRPK_EXPLORE_CHECK(drv != NULL);
    HANDLE h = NULL;
    IRPK_EXPLORE_CHECK(u_open(PEND_LINK, RW, FILE_SYNCHRONOUS_IO_NONALERT, &h) == STATUS_SUCCESS);
    irpk_thread *c = irpk_thread_start(closer, h, "closer");
    irpk_thread *o = irpk_thread_start(opener, NULL, "opener");
    IRPK_EXPLORE_CHECK(io_unload_driver(drv) == 0);
    irpk_thread_join(c);
    irpk_thread_join(o);
    IRPK_EXPLORE_CHECK(irpk_user_flush(-1) == 0);
    if (P.violation) irpk_explore_fail("%s", P.violation);
    if (plat_load32(&P.unloads) != 1) irpk_explore_fail("DriverUnload ran %d times, not once", (int)P.unloads);
    IRPK_EXPLORE_CHECK(io_lookup_driver(L"UPend") == NULL);
    if (explored_open != STATUS_SUCCESS && explored_open != STATUS_NO_SUCH_DEVICE &&
        explored_open != STATUS_OBJECT_NAME_NOT_FOUND)
        irpk_explore_fail("the racing open returned 0x%08x", (unsigned)explored_open);
    IRPK_EXPLORE_CHECK(ob_open_handles() == 0);
}

TEST(close_racing_the_unload_runs_driver_unload_once_explored)
{
    irpk_reports_set_quiet(1);
    size_t reports = irpk_report_count();
    irpk_test_explore_clean("unload request vs last close vs open", unload_close_open_scenario, 2, 0);
    CHECK_EQ(irpk_report_count(), reports);
}

/* ------------------------------------------------------------------ 3. races, native */

/* The closer and main spin at a start line (no futex wake-up latency between them), then race. */
static volatile int32_t ready, go, stop_opening, opens_ok, opens_refused;

static void native_closer(void *arg)
{
    plat_store32(&ready, 1);
    while (!plat_load32(&go)) plat_yield();
    if (NtClose((HANDLE)arg) != STATUS_SUCCESS) irpk_test_fail(__FILE__, __LINE__, "NtClose failed");
}

/* Opens and closes until refused: from then on every open is (the unload is pending or done). */
static void native_opener(void *arg)
{
    (void)arg;
    while (!plat_load32(&go)) plat_yield();
    while (!plat_load32(&stop_opening)) {
        NTSTATUS st = open_status(PEND_LINK);
        if (st == STATUS_SUCCESS) {
            plat_fetch_add32(&opens_ok, 1);
            continue;
        }
        if (st == STATUS_NO_SUCH_DEVICE || st == STATUS_OBJECT_NAME_NOT_FOUND) plat_fetch_add32(&opens_refused, 1);
        else irpk_test_fail(__FILE__, __LINE__, "NtCreateFile returned 0x%08x", (unsigned)st);
        break;
    }
}

TEST(close_racing_the_unload_runs_driver_unload_once_stress)
{
    long handles = ob_open_handles();
    long irps = io_irps_live();
    size_t reports = irpk_report_count();
    opens_ok = opens_refused = 0;
    long rounds = irpk_test_scale(1000), deferred = 0;
    uint64_t seed = 0x5eed;
    for (long i = 0; i < rounds && !irpk_test_failed_in_case(); i++) {
        PDRIVER_OBJECT drv = pend_load();
        REQUIRE(drv);
        HANDLE h = NULL;
        REQUIRE(u_open(PEND_LINK, RW, FILE_SYNCHRONOUS_IO_NONALERT, &h) == STATUS_SUCCESS);
        ready = go = stop_opening = 0;
        plat_thread *c = plat_thread_start(native_closer, h, "closer", 0);
        plat_thread *o = plat_thread_start(native_opener, NULL, "opener", 0);
        REQUIRE(c && o);
        while (!plat_load32(&ready)) plat_yield();
        plat_store32(&go, 1);
        /* A random head start for the close (it has CLEANUP and CLOSE to send), so either side
         * may come first. */
        for (uint64_t k = irpk_test_rand(&seed) % 200000; k; k--) (void)plat_load32(&go);
        CHECK_EQ(io_unload_driver(drv), 0);
        if (!plat_load32(&P.unloads)) deferred++;
        plat_thread_join(c);
        plat_store32(&stop_opening, 1);
        plat_thread_join(o);
        CHECK_EQ(irpk_user_flush(20000), 0);
        CHECK_EQ(plat_load32(&P.unloads), 1);
        CHECK(io_lookup_driver(L"UPend") == NULL);
        if (P.violation) irpk_test_fail(__FILE__, __LINE__, "round %ld: %s", i, P.violation);
    }
    printf("  %ld rounds, %ld unloads deferred to a close, %d racing opens succeeded, %d refused\n", rounds,
           deferred, (int)opens_ok, (int)opens_refused);
    CHECK_EQ(io_irps_live(), irps);
    CHECK_EQ(ob_open_handles(), handles);
    CHECK_EQ(irpk_report_count(), reports);
}
