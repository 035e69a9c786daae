/* csq_startio driven by its user program (NT services: NtCreateFile, NtReadFile with APCs,
 * NtCancelIoFileEx, NtCancelIoFile, NtClose mid-flight) under stress: every accepted read
 * completes exactly once, nothing leaks (IRPs, handles, file objects, pool), no verifier report. */
#include "csq_startio.h"
#include "inproc.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ke/ke.h"
#include "ob/ob.h"
#include "test.h"
#include "user_program.h"
#include "ustress.h"

TEST(user_program_stress)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    LONG handles = ob_open_handles();
    CSQ_STARTIO_CONFIG config = {8, 2, 1};
    CsqStartIoSetConfig(&config);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\CsqStartIo");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&name, CsqStartIoDriverEntry)));
    PDEVICE_OBJECT dev = io_lookup_device(CSQ_STARTIO_LINK_NAME);
    ustress_result r;
    CHECK_EQ(CsqStartIoUserProgram(irpk_test_scale(3000), &r), STATUS_SUCCESS);
    ustress_print("csq_startio", &r);
    CHECK_EQ(irpk_user_flush(-1), 0); /* every file object got IRP_MJ_CLOSE */
    CSQ_STARTIO_STATS s;
    CHECK_EQ(inproc_ioctl(dev, IOCTL_CSQ_STARTIO_STATS, &s, sizeof s), STATUS_SUCCESS);
    CHECK_EQ(r.bad, 0);
    CHECK(r.issued > 0);
    CHECK_EQ(r.completed, r.issued);
    CHECK_EQ(r.handles_left, 0);
    CHECK_EQ(r.succeeded, s.Transferred);
    CHECK_EQ(r.cancelled, s.CurrentCancelled + s.QueueCancelled + s.CleanupCancelled);
    CHECK_EQ(r.other, s.DeletePending);
    CHECK_EQ(s.CleanupLeftovers, 0);
    irpk_user_stats us;
    irpk_user_get_stats(&us);
    CHECK_EQ(us.irps_pending, 0);
    CHECK_EQ(us.files_live, 0);
    CHECK_EQ(io_unload_driver(dev->DriverObject), 0);
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "  first report: %s\n", irpk_report_text(0));
    irpk_reports_clear();
    CHECK_EQ(io_irps_live(), 0);
    CHECK_EQ(ob_open_handles(), handles);
    CHECK_EQ(ke_pool_outstanding_tag(CSQ_STARTIO_TAG), 0);
}
