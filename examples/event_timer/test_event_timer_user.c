/* event_timer driven by its user program (NT services: NtCreateFile, NtDeviceIoControlFile with
 * APCs and an event handle, NtCancelIoFileEx, NtCancelIoFile, NtClose mid-flight) under stress:
 * short timers race cancels and cleanups; every accepted request completes exactly once, nothing
 * leaks (IRPs, handles, file objects, request contexts, event references), no verifier report. */
#include "event_timer.h"
#include "example_test_util.h"
#include "ke/ke.h"
#include "ob/ob.h"
#include "test.h"
#include "user_program.h"

TEST(user_program_stress)
{
    LONG handles = ob_open_handles();
    PDEVICE_OBJECT dev = ex_load(L"\\Driver\\EventTimer", EventTimerDriverEntry, EVENT_TIMER_LINK_NAME);
    REQUIRE(dev);
    ustress_result r;
    EX_RUN_USER_PROGRAM(EventTimerUserProgram, irpk_test_scale(2000), "event_timer", &r);
    EVENT_TIMER_STATS s;
    do EX_STATS(dev, IOCTL_EVENT_TIMER_STATS, &s);
    while (s.Live > 0); /* a cancelled request's DPC may still be on its way */
    EX_CHECK_USER_RUN(&r);
    CHECK_EQ(r.other, 0);
    CHECK_EQ(r.succeeded, s.TimerCompleted);
    CHECK_EQ(r.cancelled, s.EarlyCancelled + s.CancelCompleted + s.CleanupCompleted);
    CHECK_EQ(s.Armed, s.TimerCompleted + s.DpcLost + s.TimersCancelled);
    CHECK(s.EventsSignalled > 0);
    /* the program's event too: the driver dropped its references */
    EX_UNLOAD_AFTER_USER(dev, handles);
    CHECK_EQ(ke_pool_outstanding_tag(EVENT_TIMER_TAG), 0);
}
