/* Teardown checks (VERIFIER.md §1 "Teardown"): a device left at unload (0xCE), a set timer or a
 * queued DPC inside a device's memory at IoDeleteDevice (0xC7, neutralised before the memory
 * goes). Buggy driver + correct twin each. */
#include "vfixture.h"

/* ---- 0xCE: DriverUnload forgets IoDeleteDevice */

static PDEVICE_OBJECT second_dev;
static bool unload_deletes;

static VOID second_unload(PDRIVER_OBJECT drv)
{
    if (unload_deletes) IoDeleteDevice(drv->DeviceObject); /* the twin */
}

static NTSTATUS second_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\VfSecond");
    drv->DriverUnload = second_unload;
    return IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &second_dev);
}

static int load_and_unload_second(bool deletes)
{
    unload_deletes = deletes;
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\vfsecond");
    if (!NT_SUCCESS(IoCreateDriver(&name, second_entry))) return -1;
    return io_unload_driver(io_lookup_driver(L"vfsecond"));
}

TEST(unload_leaving_a_device_reports_0xce)
{
    vf_setup();
    CHECK_EQ(load_and_unload_second(false), 1);
    CHECK_CONTAINS(vf_text(), "\\Device\\VfSecond");
    EXPECT_REPORT(0xCE, VF_ANY_P1, "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS", NULL);
    CHECK_EQ(load_and_unload_second(true), 0); /* twin */
    EXPECT_NO_REPORT();
    vf_teardown();
}

/* ---- 0xC7: timer / DPC inside the device's memory at IoDeleteDevice */

typedef struct ext {
    KTIMER timer;
    KDPC dpc;
} ext;

static volatile int32_t dpc_ran, release_blocker, blocker_running;

static VOID count_dpc(PKDPC d, PVOID c, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(c);
    UNREFERENCED_PARAMETER(a1);
    UNREFERENCED_PARAMETER(a2);
    plat_fetch_add32(&dpc_ran, 1);
}

/* Keeps its DPC thread busy (spinning is legal at DISPATCH_LEVEL; waiting is not). */
static VOID blocker_dpc(PKDPC d, PVOID c, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(c);
    UNREFERENCED_PARAMETER(a1);
    UNREFERENCED_PARAMETER(a2);
    plat_store32(&blocker_running, 1);
    while (!plat_load32(&release_blocker)) plat_yield();
}

/* \\Device\\VfExtra of the test driver, its extension's timer and DPC initialised. */
static ext *extra_device(PDEVICE_OBJECT *d)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\VfExtra");
    *d = NULL;
    IoCreateDevice(vf.dev->DriverObject, sizeof(ext), &name, FILE_DEVICE_UNKNOWN, 0, FALSE, d);
    ext *e = (*d)->DeviceExtension;
    KeInitializeTimer(&e->timer);
    KeInitializeDpc(&e->dpc, count_dpc, NULL);
    return e;
}

TEST(timer_set_in_a_deleted_device_reports_0xc7_and_is_cancelled)
{
    vf_setup();
    PDEVICE_OBJECT d;
    ext *e = extra_device(&d);
    LARGE_INTEGER due = {.QuadPart = -10LL * 1000 * 1000 * 10}; /* 10 s */
    KeSetTimer(&e->timer, due, NULL);
    CHECK_EQ(ke_timers_set(), 1);
    IoDeleteDevice(d); /* the bug: the timer still points into the device extension */
    CHECK_EQ(ke_timers_set(), 0);
    EXPECT_REPORT(0xC7, 0, "TIMER_OR_DPC_INVALID", NULL);
    e = extra_device(&d); /* twin */
    KeSetTimer(&e->timer, due, NULL);
    KeCancelTimer(&e->timer);
    IoDeleteDevice(d);
    EXPECT_NO_REPORT();
    vf_teardown();
}

TEST(dpc_queued_in_a_deleted_device_reports_0xc7_and_is_removed)
{
    vf_setup();
    plat_store32(&dpc_ran, 0);
    plat_store32(&release_blocker, 0);
    plat_store32(&blocker_running, 0);
    KDPC blocker;
    KeInitializeDpc(&blocker, blocker_dpc, NULL);
    KeSetTargetProcessorDpc(&blocker, 0);
    KeInsertQueueDpc(&blocker, NULL, NULL);
    while (!plat_load32(&blocker_running)) plat_yield();
    PDEVICE_OBJECT d;
    ext *e = extra_device(&d);
    KeSetTargetProcessorDpc(&e->dpc, 0); /* queued behind the blocker: cannot run yet */
    KeInsertQueueDpc(&e->dpc, NULL, NULL);
    IoDeleteDevice(d); /* the bug */
    EXPECT_REPORT(0xC7, 2, "TIMER_OR_DPC_INVALID", NULL);
    e = extra_device(&d); /* twin: removed before the delete */
    KeSetTargetProcessorDpc(&e->dpc, 0);
    KeInsertQueueDpc(&e->dpc, NULL, NULL);
    CHECK(KeRemoveQueueDpc(&e->dpc));
    IoDeleteDevice(d);
    EXPECT_NO_REPORT();
    plat_store32(&release_blocker, 1);
    KeFlushQueuedDpcs();
    CHECK_EQ(dpc_ran, 0); /* neither device DPC ran on freed memory */
    vf_teardown();
}
