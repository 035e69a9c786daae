/* csq_startio driven by its user program (NT services: NtCreateFile, NtReadFile with APCs,
 * NtCancelIoFileEx, NtCancelIoFile, NtClose mid-flight) under stress: every accepted read
 * completes exactly once, nothing leaks (IRPs, handles, file objects, pool), no verifier report. */
#include "csq_startio.h"
#include "example_test_util.h"
#include "ke/ke.h"
#include "ob/ob.h"
#include "test.h"
#include "user_program.h"

TEST(user_program_stress)
{
    LONG handles = ob_open_handles();
    CSQ_STARTIO_CONFIG config = {8, 2, 1};
    CsqStartIoSetConfig(&config);
    PDEVICE_OBJECT dev = ex_load(L"\\Driver\\CsqStartIo", CsqStartIoDriverEntry, CSQ_STARTIO_LINK_NAME);
    REQUIRE(dev);
    ustress_result r;
    EX_RUN_USER_PROGRAM(CsqStartIoUserProgram, irpk_test_scale(3000), "csq_startio", &r);
    CSQ_STARTIO_STATS s;
    EX_STATS(dev, IOCTL_CSQ_STARTIO_STATS, &s);
    EX_CHECK_USER_RUN(&r);
    CHECK_EQ(r.succeeded, s.Transferred);
    CHECK_EQ(r.cancelled, s.CurrentCancelled + s.QueueCancelled + s.CleanupCancelled);
    CHECK_EQ(r.other, s.DeletePending);
    CHECK_EQ(s.CleanupLeftovers, 0);
    EX_UNLOAD_AFTER_USER(dev, handles);
    CHECK_EQ(ke_pool_outstanding_tag(CSQ_STARTIO_TAG), 0);
}
