/* Regression: NtCreateFile racing a driver unload. create_file looked the device up by name and
 * got a bare pointer; an unload (DriverUnload → IoDeleteDevice) between the lookup and the
 * IRP_MJ_CREATE freed the device and then the driver object, and the open went on to touch both
 * (IoCallDriver's in-flight count, MajorFunction[]): a use after free, seen by ASan. The lookup
 * now takes a memory reference under the namespace lock (io_lookup_device_ref) that the open —
 * and the file object it makes — hold until the file is deleted.
 *
 *   - Deterministic: the point hook requests the unload on the opening thread at the
 *     IRP_MJ_CREATE's IoCallDriver point, i.e. after the lookup and the device claim, before
 *     the call. Before the fix: heap-use-after-free in IofCallDriver (ASan). Since unloads are
 *     deferred while an open holds a reference (NT; test_user_unload_pending.c), the request
 *     only marks the driver unload-pending there, and the open's close runs DriverUnload.
 *   - Native stress: one thread loads and unloads the driver, another opens and closes it. */
#include <stdio.h>
#include <string.h>

#include "io/io.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"
#include "udriver.h"

#define RACE_DEVICE L"\\Device\\URace"
#define RACE_LINK L"\\??\\URace"

static volatile int32_t creates, cleanups, closes;

static NTSTATUS race_dispatch(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    UCHAR mj = IoGetCurrentIrpStackLocation(irp)->MajorFunction;
    plat_fetch_add32(mj == IRP_MJ_CREATE ? &creates : mj == IRP_MJ_CLEANUP ? &cleanups : &closes, 1);
    irp->IoStatus.Status = STATUS_SUCCESS;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

static VOID race_unload(PDRIVER_OBJECT drv)
{
    UNICODE_STRING link = RTL_CONSTANT_STRING(RACE_LINK);
    IoDeleteSymbolicLink(&link);
    while (drv->DeviceObject) IoDeleteDevice(drv->DeviceObject);
}

static NTSTATUS race_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(RACE_DEVICE), link = RTL_CONSTANT_STRING(RACE_LINK);
    drv->MajorFunction[IRP_MJ_CREATE] = race_dispatch;
    drv->MajorFunction[IRP_MJ_CLEANUP] = race_dispatch;
    drv->MajorFunction[IRP_MJ_CLOSE] = race_dispatch;
    drv->DriverUnload = race_unload;
    PDEVICE_OBJECT dev;
    NTSTATUS st = IoCreateDevice(drv, 64, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
    if (!NT_SUCCESS(st)) return st;
    /* Redundant in DriverEntry (io clears it when DriverEntry returns; opens before that fail
     * with STATUS_NO_SUCH_DEVICE), kept as drivers write it. */
    dev->Flags &= ~DO_DEVICE_INITIALIZING;
    st = IoCreateSymbolicLink(&link, &name);
    if (!NT_SUCCESS(st)) IoDeleteDevice(dev);
    return st;
}

static PDRIVER_OBJECT race_load(void)
{
    UNICODE_STRING drv_name = RTL_CONSTANT_STRING(L"\\Driver\\URace");
    NTSTATUS st = IoCreateDriver(&drv_name, race_entry);
    return NT_SUCCESS(st) ? io_lookup_driver(L"URace") : NULL;
}

/* ------------------------------------------------------------------ deterministic */

static plat_thread *opener;
static volatile int32_t hook_armed;
static PDRIVER_OBJECT hooked_driver;
static int unload_problems = -1;
static int unload_ran_in_open = -1;

/* On the opener's thread, at the IRP_MJ_CREATE's IoCallDriver point (once): unload the driver
 * right there — after create_file's lookup and claim, before the call touches the device. */
static void unload_before_create(const char *op, const void *obj)
{
    if (strcmp(op, "IoCallDriver") || plat_self() != opener) return;
    PIRP irp = (PIRP)obj;
    if (IoGetNextIrpStackLocation(irp)->MajorFunction != IRP_MJ_CREATE) return;
    if (plat_cas32(&hook_armed, 1, 0) != 1) return;
    unload_problems = io_unload_driver(hooked_driver);
    unload_ran_in_open = io_lookup_driver(L"URace") == NULL;
}

TEST(open_survives_an_unload_between_lookup_and_create)
{
    long handles = ob_open_handles();
    long irps = io_irps_live();
    size_t reports = irpk_report_count();
    creates = cleanups = closes = 0;
    hooked_driver = race_load();
    REQUIRE(hooked_driver);
    opener = plat_self();
    plat_store32(&hook_armed, 1);
    plat_set_point_hook(unload_before_create);
    HANDLE h = NULL;
    NTSTATUS st = u_open(RACE_LINK, GENERIC_READ | SYNCHRONIZE, 0, &h);
    plat_set_point_hook(NULL);
    CHECK_EQ(plat_load32(&hook_armed), 0); /* the unload was requested inside the open */
    CHECK_EQ(unload_problems, 0);
    /* The open won the race (it held its reference when the unload came): the unload is
     * pending, the open completes on the live device, and its close runs DriverUnload. */
    CHECK_EQ(unload_ran_in_open, 0);
    CHECK_EQ(st, STATUS_SUCCESS);
    CHECK_EQ(plat_load32(&creates), 1);
    CHECK_PTR(io_lookup_driver(L"URace"), hooked_driver);
    CHECK_EQ(NtClose(h), STATUS_SUCCESS);
    CHECK_EQ(plat_load32(&cleanups), 1);
    CHECK_EQ(plat_load32(&closes), 1);
    /* The name is gone: a new open finds nothing. */
    CHECK_EQ(u_open(RACE_LINK, GENERIC_READ | SYNCHRONIZE, 0, &h), STATUS_OBJECT_NAME_NOT_FOUND);
    CHECK(io_lookup_driver(L"URace") == NULL);
    CHECK_EQ(io_irps_live(), irps);
    CHECK_EQ(ob_open_handles(), handles);
    CHECK_EQ(irpk_report_count(), reports);
}

/* ------------------------------------------------------------------ native stress */

static volatile int32_t loader_done;
static volatile int32_t opens_ok, opens_missed;

static void open_close_loop(void *arg)
{
    (void)arg;
    while (!plat_load32(&loader_done)) {
        HANDLE h;
        NTSTATUS st = u_open(RACE_LINK, GENERIC_READ | SYNCHRONIZE, 0, &h);
        if (st == STATUS_SUCCESS) {
            plat_fetch_add32(&opens_ok, 1);
            if (NtClose(h) != STATUS_SUCCESS) irpk_test_fail(__FILE__, __LINE__, "NtClose failed");
        } else if (st == STATUS_OBJECT_NAME_NOT_FOUND || st == STATUS_DELETE_PENDING ||
                   st == STATUS_NO_SUCH_DEVICE) {
            plat_fetch_add32(&opens_missed, 1);
        } else {
            irpk_test_fail(__FILE__, __LINE__, "NtCreateFile returned 0x%08x", (unsigned)st);
        }
    }
}

TEST(opens_racing_load_and_unload_touch_no_freed_memory)
{
    long handles = ob_open_handles();
    long irps = io_irps_live();
    creates = cleanups = closes = 0;
    loader_done = opens_ok = opens_missed = 0;
    irpk_reports_clear();
    int quiet = irpk_reports_set_quiet(1);
    plat_thread *t = plat_thread_start(open_close_loop, NULL, "opener", 0);
    REQUIRE(t);
    long rounds = irpk_test_scale(3000);
    for (long i = 0; i < rounds; i++) {
        PDRIVER_OBJECT drv = race_load();
        if (!drv) {
            irpk_test_fail(__FILE__, __LINE__, "load %ld failed", i);
            break;
        }
        /* Let the opener in for a moment without timing anything: yield a few times. */
        for (int k = 0; k < 3; k++) plat_yield();
        CHECK_EQ(io_unload_driver(drv), 0);
        /* An open holding the device defers the unload to its close (NT): the driver keeps
         * its name until then, so the next load waits for it. */
        while (io_lookup_driver(L"URace")) plat_yield();
    }
    plat_store32(&loader_done, 1);
    plat_thread_join(t);
    irpk_reports_set_quiet(quiet);
    /* No report: DriverUnload (IoDeleteDevice) never runs while an open's CREATE or CLOSE is
     * in the driver any more — the open's reference defers it. (When it did, that was 0xCE.) */
    CHECK_EQ(irpk_report_count(), 0);
    irpk_reports_clear();
    printf("  %ld load/unload rounds, %d opens succeeded, %d found no device\n", rounds, (int)opens_ok,
           (int)opens_missed);
    /* Every open that succeeded was cleaned up and closed. */
    CHECK_EQ(plat_load32(&creates), plat_load32(&opens_ok));
    CHECK_EQ(plat_load32(&cleanups), plat_load32(&opens_ok));
    CHECK_EQ(plat_load32(&closes), plat_load32(&opens_ok));
    CHECK_EQ(io_irps_live(), irps);
    CHECK_EQ(ob_open_handles(), handles);
}
