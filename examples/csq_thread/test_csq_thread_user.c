/* csq_thread driven by its user program (NT services: NtCreateFile, NtReadFile with APCs,
 * NtCancelIoFileEx, NtCancelIoFile, NtClose mid-flight) under stress: every accepted read
 * completes exactly once, nothing leaks (IRPs, handles, file objects, pool), no verifier report. */
#include "csq_thread.h"
#include "example_test_util.h"
#include "ob/ob.h"
#include "test.h"
#include "user_program.h"

TEST(user_program_stress)
{
    LONG handles = ob_open_handles();
    PDEVICE_OBJECT dev = ex_load(L"\\Driver\\CsqThread", CsqThreadDriverEntry, CSQ_THREAD_LINK_NAME);
    REQUIRE(dev);
    ustress_result r;
    EX_RUN_USER_PROGRAM(CsqThreadUserProgram, irpk_test_scale(3000), "csq_thread", &r);
    CSQ_THREAD_STATS s;
    EX_STATS(dev, IOCTL_CSQ_THREAD_STATS, &s);
    EX_CHECK_USER_RUN(&r);
    CHECK_EQ(r.succeeded, s.Served);
    CHECK_EQ(r.cancelled, s.QueueCancelled + s.CleanupCancelled);
    CHECK_EQ(r.other, 0);
    CHECK_EQ(s.Queued, r.issued);
    CHECK_EQ(s.OutOfOrder, 0);
    EX_UNLOAD_AFTER_USER(dev, handles);
}
