/* event_timer driven by its user program (NT services: NtCreateFile, NtDeviceIoControlFile with
 * APCs and an event handle, NtCancelIoFileEx, NtCancelIoFile, NtClose mid-flight) under stress:
 * short timers race cancels and cleanups; every accepted request completes exactly once, nothing
 * leaks (IRPs, handles, file objects, request contexts, event references), no verifier report. */
#include "event_timer.h"
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
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\EventTimer");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&name, EventTimerDriverEntry)));
    PDEVICE_OBJECT dev = io_lookup_device(EVENT_TIMER_LINK_NAME);
    ustress_result r;
    CHECK_EQ(EventTimerUserProgram(irpk_test_scale(2000), &r), STATUS_SUCCESS);
    ustress_print("event_timer", &r);
    CHECK_EQ(irpk_user_flush(-1), 0);
    EVENT_TIMER_STATS s;
    do CHECK_EQ(inproc_ioctl(dev, IOCTL_EVENT_TIMER_STATS, &s, sizeof s), STATUS_SUCCESS);
    while (s.Live > 0); /* a cancelled request's DPC may still be on its way */
    CHECK_EQ(r.bad, 0);
    CHECK(r.issued > 0);
    CHECK_EQ(r.completed, r.issued);
    CHECK_EQ(r.handles_left, 0);
    CHECK_EQ(r.other, 0);
    CHECK_EQ(r.succeeded, s.TimerCompleted);
    CHECK_EQ(r.cancelled, s.EarlyCancelled + s.CancelCompleted + s.CleanupCompleted);
    CHECK_EQ(s.Armed, s.TimerCompleted + s.DpcLost + s.TimersCancelled);
    CHECK(s.EventsSignalled > 0);
    irpk_user_stats us;
    irpk_user_get_stats(&us);
    CHECK_EQ(us.irps_pending, 0);
    CHECK_EQ(us.files_live, 0);
    CHECK_EQ(io_unload_driver(dev->DriverObject), 0);
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "  first report: %s\n", irpk_report_text(0));
    irpk_reports_clear();
    CHECK_EQ(io_irps_live(), 0);
    CHECK_EQ(ob_open_handles(), handles); /* the program's event too: the driver dropped its references */
    CHECK_EQ(ke_pool_outstanding_tag(EVENT_TIMER_TAG), 0);
}
