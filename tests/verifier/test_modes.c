/* Modes (off / report / fatal by API), the report format every report shares, the read-back API
 * and the summary. Fatal mode aborts the process: test_fatal.c. */
#include <stdio.h>

#include "vfixture.h"

static NTSTATUS read_pending_status(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoMarkIrpPending(irp);
    vf_complete(irp, STATUS_PENDING); /* 0xC9/0x06: a verifier-only check */
    return STATUS_PENDING;
}

static NTSTATUS read_complete_twice(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    vf_complete(irp, STATUS_SUCCESS);
    vf_complete(irp, STATUS_SUCCESS); /* 0x44: a bug check the kernel always raises */
    return STATUS_SUCCESS;
}

TEST(report_mode_is_the_default_and_the_api_switches_modes)
{
    vf_setup();
    CHECK_EQ(irpk_verifier_set_mode(IRPK_VERIFIER_OFF), IRPK_VERIFIER_REPORT);
    CHECK_EQ(irpk_verifier_get_mode(), IRPK_VERIFIER_OFF);
    PIRP a = vf_send_read(read_pending_status, false);
    EXPECT_NO_REPORT(); /* off: the verifier's own checks are skipped */
    PIRP b = vf_send_read(read_complete_twice, true);
    EXPECT_REPORT(0x44, (uintptr_t)b, "MULTIPLE_IRP_COMPLETE_REQUESTS", b); /* still reported */
    CHECK_EQ(irpk_verifier_set_mode(IRPK_VERIFIER_REPORT), IRPK_VERIFIER_OFF);
    PIRP c = vf_send_read(read_pending_status, false);
    EXPECT_REPORT(0xC9, 0x06, NULL, c);
    VF_TEARDOWN(a, b, c);
}

TEST(every_report_has_headline_history_device_where_and_cause)
{
    vf_setup();
    PIRP irp = vf_send_read(read_complete_twice, true);
    const char *t = vf_text();
    char head[64];
    snprintf(head, sizeof head, "BUGCHECK 0x44 MULTIPLE_IRP_COMPLETE_REQUESTS (irp=#%u; ", io_irp_id(irp));
    CHECK(!strncmp(t, head, strlen(head)));
    CHECK_CONTAINS(t, "history (oldest first):\n   1. IoAllocateIrp      allocated");
    CHECK_CONTAINS(t, "IoCallDriver       sent");
    CHECK_CONTAINS(t, "IoCompleteRequest  completed");
    CHECK_CONTAINS(t, "in dispatch read_complete_twice");
    CHECK_CONTAINS(t, "shadow state: completed");
    CHECK_CONTAINS(t, "\nDevice: \\Device\\VfDev (driver \\Driver\\vf)\n");
    CHECK_CONTAINS(t, "\nWhere: thread ");
    CHECK_CONTAINS(t, ", in dispatch read_complete_twice (IRP#");
    CHECK_CONTAINS(t, "\nCause and fix: ");
    EXPECT_REPORT(0x44, (uintptr_t)irp, "MULTIPLE_IRP_COMPLETE_REQUESTS", irp);
    VF_TEARDOWN(irp);
}

/* A ke report (no IRP argument) raised inside StartIo carries that IRP's history. */
static VOID startio_bad_raise(PDEVICE_OBJECT dev, PIRP irp)
{
    KIRQL old;
    KeRaiseIrql(PASSIVE_LEVEL, &old); /* 0xC4/0x30: raising to a lower IRQL */
    IoSetCancelRoutine(irp, NULL);
    vf_complete(irp, STATUS_SUCCESS);
    IoStartNextPacket(dev, FALSE);
}

TEST(ke_reports_get_the_same_layout_and_the_current_irp)
{
    vf_setup();
    vf.startio = startio_bad_raise;
    PIRP irp = vf_send_read(vf_read_startpacket, false);
    REQUIRE(irpk_report_count() == 1);
    const char *t = vf_text();
    CHECK(!strncmp(t, "BUGCHECK 0xC4 DRIVER_VERIFIER_DETECTED_VIOLATION (0x30, ", 55));
    char hist[64];
    snprintf(hist, sizeof hist, "IRP#%u history (oldest first), the IRP the current routine", io_irp_id(irp));
    CHECK_CONTAINS(t, hist);
    CHECK_CONTAINS(t, "in StartIo startio_bad_raise (IRP#");
    CHECK_CONTAINS(t, "\nCause and fix: raising with a saved OldIrql");
    CHECK(!strstr(t, "Usual cause"));
    EXPECT_REPORT(0xC4, 0x30, NULL, NULL);
    VF_TEARDOWN(irp);
}

static int hook_calls;
static uint32_t hook_code;

static void hook(const irpk_bugcheck *bc, void *ctx)
{
    (void)ctx;
    hook_calls++;
    hook_code = bc->code;
}

TEST(read_back_api_hook_and_summary)
{
    vf_setup();
    vf.read = read_pending_status;
    PIRP a = vf_irp(1, false), b = vf_irp(1, false);
    vf_send(a);
    irpk_bugcheck_hook old = irpk_bugcheck_set_hook(hook, NULL);
    hook_calls = 0;
    vf.read = read_complete_twice;
    IoFreeIrp(b);
    b = vf_irp(1, true);
    vf_send(b);
    irpk_bugcheck_set_hook(old, NULL);
    CHECK_EQ(hook_calls, 1);
    CHECK_EQ(hook_code, 0x44);
    CHECK_EQ(irpk_report_count(), 2);
    CHECK_EQ(irpk_report_count_code(0xC9), 1);
    CHECK_EQ(irpk_report_count_name("MULTIPLE_IRP_COMPLETE_REQUESTS"), 1);
    CHECK_EQ(irpk_report_find(0xC9, 0x06), 0);
    CHECK_EQ(irpk_report_find(0x44, (uintptr_t)b), 1);
    CHECK_EQ(irpk_report_find(0xC9, 0x07), -1);
    CHECK_EQ(irpk_report_find_name("MULTIPLE_IRP_COMPLETE_REQUESTS"), 1);
    FILE *f = tmpfile();
    REQUIRE(f != NULL);
    irpk_reports_print_summary(f);
    char buf[512] = "";
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    CHECK_CONTAINS(buf, "irpkit verifier: 2 report(s)");
    CHECK_CONTAINS(buf, "#1 BUGCHECK 0xC9 DRIVER_VERIFIER_IOMANAGER_VIOLATION (irp=#");
    CHECK_CONTAINS(buf, "#2 BUGCHECK 0x44 MULTIPLE_IRP_COMPLETE_REQUESTS");
    irpk_reports_clear();
    VF_TEARDOWN(a, b);
}
