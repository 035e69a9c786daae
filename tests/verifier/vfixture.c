#include "vfixture.h"

vf_state vf;

/* ---- routing: one driver, two devices; each test plugs its routines into vf */

static NTSTATUS route_read(PDEVICE_OBJECT dev, PIRP irp)
{
    PDRIVER_DISPATCH fn = dev == vf.lower ? vf.lower_read : vf.read;
    if (fn) return fn(dev, irp);
    return vf_read_complete(dev, irp);
}

static VOID route_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    if (vf.startio) vf.startio(dev, irp);
}

static NTSTATUS entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\VfDev");
    drv->DriverStartIo = route_startio;
    drv->MajorFunction[IRP_MJ_READ] = route_read;
    NTSTATUS st = IoCreateDevice(drv, 16, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &vf.dev);
    if (NT_SUCCESS(st)) vf.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

void vf_setup(void)
{
    memset(&vf, 0, sizeof vf);
    InitializeListHead(&vf.queue);
    KeInitializeSpinLock(&vf.queue_lock);
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    irpk_verifier_set_mode(IRPK_VERIFIER_REPORT);
    irpk_verifier_reset_state();
    irpk_compat_reset();
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\vf");
    NTSTATUS st = IoCreateDriver(&name, entry);
    if (!NT_SUCCESS(st)) irpk_test_fail(__FILE__, __LINE__, "IoCreateDriver failed 0x%x", (unsigned)st);
}

void vf_setup_stack(void)
{
    vf_setup();
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\VfLower");
    PDRIVER_OBJECT drv = vf.dev->DriverObject;
    if (!NT_SUCCESS(IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &vf.lower))) {
        irpk_test_fail(__FILE__, __LINE__, "IoCreateDevice(lower) failed");
        return;
    }
    vf.lower->Flags &= ~DO_DEVICE_INITIALIZING;
    IoAttachDeviceToDeviceStack(vf.dev, vf.lower);
}

void vf_teardown(void)
{
    PDRIVER_OBJECT drv = io_lookup_driver(L"vf");
    if (!drv) return;
    KeFlushQueuedDpcs();
    if (irpk_report_count()) fprintf(stderr, "unexpected report:\n%s\n", irpk_report_text(0));
    CHECK_EQ(irpk_report_count(), 0); /* tests clear the reports they provoke */
    IoDeleteDevice(vf.dev);
    if (vf.lower) IoDeleteDevice(vf.lower);
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(irpk_report_count(), 0);
    CHECK_EQ(io_irps_live(), 0);
    irpk_reports_clear();
    irpk_compat_reset();
}

void vf_teardown_freeing(PIRP *irps, size_t n)
{
    for (size_t i = 0; i < n; i++) IoFreeIrp(irps[i]);
    vf_teardown();
}

/* ---- IRPs */

static NTSTATUS top_done(PDEVICE_OBJECT dev, PIRP irp, PVOID through)
{
    UNREFERENCED_PARAMETER(dev);
    plat_fetch_add32(&vf.completions, 1);
    vf.last_status = irp->IoStatus.Status;
    return through ? STATUS_SUCCESS : STATUS_MORE_PROCESSING_REQUIRED;
}

PIRP vf_irp(CCHAR stack, bool through)
{
    PIRP irp = IoAllocateIrp(stack, FALSE);
    IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
    IoSetCompletionRoutine(irp, top_done, (PVOID)(uintptr_t)through, TRUE, TRUE, TRUE);
    return irp;
}

/* Plug the test's routines into the driver object, so reports name them (a device stack needs
 * the router: both devices belong to one driver). Called before each send/start; tests change
 * routines only while no I/O runs. */
static void apply_routines(void)
{
    PDRIVER_OBJECT drv = vf.dev->DriverObject;
    drv->MajorFunction[IRP_MJ_READ] = vf.lower ? route_read : vf.read ? vf.read : vf_read_complete;
    drv->DriverStartIo = vf.startio ? vf.startio : route_startio;
}

NTSTATUS vf_send(PIRP irp)
{
    apply_routines();
    return IoCallDriver(vf.dev, irp);
}

PIRP vf_send_read(PDRIVER_DISPATCH read, bool through)
{
    vf.read = read;
    PIRP irp = vf_irp(vf.lower ? 2 : 1, through);
    vf.sent = vf_send(irp);
    return irp;
}

void vf_complete(PIRP irp, NTSTATUS status)
{
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* ---- stock routines */

NTSTATUS vf_read_startpacket(PDEVICE_OBJECT dev, PIRP irp)
{
    IoMarkIrpPending(irp);
    IoStartPacket(dev, irp, NULL, vf.cancel);
    return STATUS_PENDING;
}

NTSTATUS vf_read_complete(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf_complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

NTSTATUS vf_read_complete_at_dispatch(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    vf_complete(irp, STATUS_SUCCESS);
    KeLowerIrql(old);
    return STATUS_SUCCESS;
}

NTSTATUS vf_read_pend_complete(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf_complete(irp, STATUS_SUCCESS); /* legal: marked pending, returns STATUS_PENDING */
    return STATUS_PENDING;
}

VOID vf_cancel_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    if (irp == dev->CurrentIrp) { /* StartIo or the "DPC" finishes it */
        IoReleaseCancelSpinLock(irp->CancelIrql);
        return;
    }
    BOOLEAN removed = KeRemoveEntryDeviceQueue(&dev->DeviceQueue, &irp->Tail.Overlay.DeviceQueueEntry);
    IoReleaseCancelSpinLock(irp->CancelIrql);
    if (removed) vf_complete(irp, STATUS_CANCELLED);
}

void vf_finish_current(void)
{
    apply_routines();
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    PIRP irp = vf.dev->CurrentIrp;
    /* vf_cancel_startio leaves the current IRP to us, cancelled or not. */
    if (irp) IoSetCancelRoutine(irp, NULL);
    IoStartNextPacket(vf.dev, TRUE);
    if (irp) vf_complete(irp, irp->Cancel ? STATUS_CANCELLED : STATUS_SUCCESS);
    KeLowerIrql(old);
}

void vf_start_next(void)
{
    apply_routines();
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    IoStartNextPacket(vf.dev, FALSE);
    KeLowerIrql(old);
}

/* ---- reports */

const char *vf_text(void) { return irpk_report_text(0); }

void vf_expect(const char *file, int line, uint32_t code, uintptr_t p1, const char *name, PIRP irp)
{
    size_t n = irpk_report_count();
    if (n != 1) {
        irpk_test_fail(file, line, "expected exactly 1 report (0x%X), got %zu", code, n);
        for (size_t i = 0; i < n; i++) fprintf(stderr, "--- report %zu:\n%s\n", i, irpk_report_text(i));
    }
    if (n >= 1) {
        const char *t = irpk_report_text(0);
        if (getenv("IRPK_TEST_SHOW_REPORTS")) printf("----- %s:%d\n%s\n", file, line, t);
        if (irpk_report_code(0) != code)
            irpk_test_fail(file, line, "code 0x%X, expected 0x%X:\n%s", irpk_report_code(0), code, t);
        if (p1 != VF_ANY_P1 && irpk_report_param(0, 0) != p1)
            irpk_test_fail(file, line, "P1 0x%llX, expected 0x%llX", (unsigned long long)irpk_report_param(0, 0),
                           (unsigned long long)p1);
        if (name && strcmp(irpk_report_name(0), name))
            irpk_test_fail(file, line, "name %s, expected %s", irpk_report_name(0), name);
        const char *headline = strcmp(irpk_report_name(0), irpk_bugcheck_name(code)) ? "VERIFIER " : "BUGCHECK ";
        if (strncmp(t, headline, 9)) irpk_test_fail(file, line, "headline: %.80s", t);
        if (!strstr(t, "\nWhere: thread ")) irpk_test_fail(file, line, "no Where line:\n%s", t);
        if (!strstr(t, "\nCause and fix: ")) irpk_test_fail(file, line, "no cause/fix line:\n%s", t);
        if (irp) {
            char tag[48];
            snprintf(tag, sizeof tag, "irp=#%u", io_irp_id(irp));
            if (!strstr(t, tag)) irpk_test_fail(file, line, "headline lacks %s:\n%s", tag, t);
            snprintf(tag, sizeof tag, "IRP#%u history", io_irp_id(irp));
            if (!strstr(t, tag) || !strstr(t, "IoAllocateIrp"))
                irpk_test_fail(file, line, "no history of IRP#%u:\n%s", io_irp_id(irp), t);
        }
    }
    irpk_reports_clear();
}

void vf_expect_none(const char *file, int line)
{
    size_t n = irpk_report_count();
    if (n == 0) return;
    irpk_test_fail(file, line, "expected no report, got %zu", n);
    for (size_t i = 0; i < n; i++) fprintf(stderr, "--- report %zu:\n%s\n", i, irpk_report_text(i));
}

void vf_expect_pair(const char *file, int line, PDRIVER_DISPATCH buggy, PDRIVER_DISPATCH twin,
                    uint32_t code, uintptr_t p1, const char *name)
{
    PIRP irp = vf_send_read(buggy, false);
    vf_expect(file, line, code, p1, name, irp);
    PIRP good = vf_send_read(twin, false);
    vf_expect_none(file, line);
    IoFreeIrp(irp);
    IoFreeIrp(good);
}

/* ---- gates */

void vf_gate_open(vf_gate *g)
{
    plat_store32((volatile int32_t *)&g->open, 1);
    plat_wake(&g->open, INT32_MAX);
}

void vf_gate_wait(vf_gate *g)
{
    while (!plat_load32((volatile int32_t *)&g->open)) plat_wait(&g->open, 0, PLAT_FOREVER);
}

bool vf_wait_reports(size_t n)
{
    for (int i = 0; i < 2000 && irpk_report_count() < n; i++) plat_sleep_ns(10 * 1000000);
    return irpk_report_count() >= n;
}
