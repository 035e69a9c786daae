/* event_timer, in process: the timer, cancel and cleanup paths one at a time, the event-handle
 * variant, then the user program's flow under stress (short timers racing cancels and
 * cleanups) with exactly-once checks, no leaks, no verifier report. */
#include "event_timer.h"
#include "example_test_util.h"
#include "ke/ke.h"
#include "ob/ob.h"
#include "test.h"

static PDEVICE_OBJECT load(void)
{
    return ex_load(L"\\Driver\\EventTimer", EventTimerDriverEntry, EVENT_TIMER_LINK_NAME);
}

static EVENT_TIMER_STATS stats(PDEVICE_OBJECT dev)
{
    EVENT_TIMER_STATS s;
    EX_STATS(dev, IOCTL_EVENT_TIMER_STATS, &s);
    return s;
}

/* The request contexts are freed by the last of owner and timer DPC: wait for it. */
static EVENT_TIMER_STATS settled(PDEVICE_OBJECT dev)
{
    EVENT_TIMER_STATS s = stats(dev);
    while (s.Live > 0) {
        plat_yield();
        s = stats(dev);
    }
    return s;
}

/* EX_UNLOAD, and every request context is freed. */
static void unload(PDEVICE_OBJECT dev)
{
    EX_UNLOAD(dev);
    CHECK_EQ(ke_pool_outstanding_tag(EVENT_TIMER_TAG), 0);
}

static NTSTATUS wait_for(inproc_single *s, inproc_handle *h, ULONG due_ms, HANDLE event)
{
    EVENT_TIMER_WAIT_INPUT in = {due_ms, 0, event};
    return inproc_send(s, h, IRP_MJ_DEVICE_CONTROL, IOCTL_EVENT_TIMER_WAIT, &in, sizeof in, 0);
}

/* An event object with a handle, as NtCreateEvent makes one. */
static HANDLE new_event(PKEVENT *object)
{
    PKEVENT ev = ob_create((const ob_type *)*ExEventObjectType, sizeof(KEVENT));
    KeInitializeEvent(ev, NotificationEvent, FALSE);
    HANDLE h = NULL;
    CHECK_EQ(ob_insert_handle(ev, EVENT_ALL_ACCESS, 0, &h), STATUS_SUCCESS);
    *object = ev;
    return h;
}

static void free_event(HANDLE h, PKEVENT ev)
{
    ZwClose(h);
    ObDereferenceObject(ev);
}

TEST(the_timer_completes_the_request)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    inproc_single s;
    CHECK_EQ(wait_for(&s, h, 1, NULL), STATUS_PENDING);
    CHECK_EQ(inproc_wait(&s), STATUS_SUCCESS);
    EVENT_TIMER_STATS st = settled(dev);
    CHECK_EQ(st.Armed, 1);
    CHECK_EQ(st.TimerCompleted, 1);
    CHECK_EQ(st.TimersCancelled, 0);
    inproc_close(h);
    unload(dev);
}

TEST(cancel_before_the_timer_fires_stops_the_timer)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    inproc_single s;
    wait_for(&s, h, 3600 * 1000, NULL);
    CHECK(IoCancelIrp(s.irp));
    CHECK_EQ(inproc_wait(&s), STATUS_CANCELLED);
    EVENT_TIMER_STATS st = stats(dev);
    CHECK_EQ(st.CancelCompleted, 1);
    CHECK_EQ(st.TimersCancelled, 1); /* KeCancelTimer TRUE: the DPC never runs */
    CHECK_EQ(st.Live, 0);            /* both references dropped by the cancel routine */
    CHECK_EQ(ke_timers_set(), 0);
    inproc_close(h);
    unload(dev);
}

TEST(a_request_cancelled_before_dispatch_completes_at_once)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    EVENT_TIMER_WAIT_INPUT in = {3600 * 1000, 0, NULL};
    /* sent by hand so IoCancelIrp can run before IoCallDriver */
    PIRP irp = IoAllocateIrp(dev->StackSize, FALSE);
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->MajorFunction = IRP_MJ_DEVICE_CONTROL;
    sp->FileObject = inproc_file(h);
    sp->Parameters.DeviceIoControl.IoControlCode = IOCTL_EVENT_TIMER_WAIT;
    sp->Parameters.DeviceIoControl.InputBufferLength = sizeof in;
    irp->AssociatedIrp.SystemBuffer = &in;
    IoCancelIrp(irp); /* Cancel := TRUE with no routine (R3's window) */
    CHECK_EQ(IoCallDriver(dev, irp), STATUS_PENDING);
    CHECK_EQ(irp->IoStatus.Status, STATUS_CANCELLED);
    IoFreeIrp(irp);
    EVENT_TIMER_STATS st = stats(dev);
    CHECK_EQ(st.EarlyCancelled, 1);
    CHECK_EQ(st.Armed, 0);
    CHECK_EQ(st.Live, 0);
    inproc_close(h);
    unload(dev);
}

TEST(cleanup_completes_only_its_handles_requests)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *a = inproc_open(dev), *b = inproc_open(dev);
    inproc_single a1, a2, b1;
    wait_for(&a1, a, 3600 * 1000, NULL);
    wait_for(&b1, b, 3600 * 1000, NULL);
    wait_for(&a2, a, 3600 * 1000, NULL);
    inproc_close(a);
    CHECK_EQ(inproc_wait(&a1), STATUS_CANCELLED);
    CHECK_EQ(inproc_wait(&a2), STATUS_CANCELLED);
    EVENT_TIMER_STATS st = stats(dev);
    CHECK_EQ(st.CleanupCompleted, 2);
    CHECK_EQ(st.TimersCancelled, 2);
    CHECK_EQ(st.Live, 1); /* b1 */
    CHECK(IoCancelIrp(b1.irp));
    CHECK_EQ(inproc_wait(&b1), STATUS_CANCELLED);
    inproc_close(b);
    unload(dev);
}

TEST(the_timer_dpc_sets_the_callers_event)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    PKEVENT ev;
    HANDLE eh = new_event(&ev);
    LONG refs = ob_refcount(ev);
    inproc_single s, c;
    CHECK_EQ(wait_for(&s, h, 1, eh), STATUS_PENDING);
    CHECK_EQ(KeWaitForSingleObject(ev, Executive, KernelMode, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(inproc_wait(&s), STATUS_SUCCESS);
    /* a cancelled request does not set it */
    KeClearEvent(ev);
    wait_for(&c, h, 3600 * 1000, eh);
    CHECK(IoCancelIrp(c.irp));
    CHECK_EQ(inproc_wait(&c), STATUS_CANCELLED);
    CHECK_EQ(KeReadStateEvent(ev), 0);
    EVENT_TIMER_STATS st = settled(dev);
    CHECK_EQ(st.EventsSignalled, 1);
    CHECK_EQ(ob_refcount(ev), refs); /* the driver dropped its references */
    free_event(eh, ev);
    inproc_close(h);
    unload(dev);
}

static VOID nothing(PVOID context) { UNREFERENCED_PARAMETER(context); }

TEST(a_bad_event_handle_fails_the_request_at_once)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    inproc_handle *h = inproc_open(dev);
    inproc_single s;
    CHECK_EQ(wait_for(&s, h, 1, (HANDLE)(uintptr_t)0x7FF0), STATUS_INVALID_HANDLE);
    CHECK_EQ(inproc_wait(&s), STATUS_INVALID_HANDLE);
    HANDLE thread;
    PsCreateSystemThread(&thread, 0, NULL, NULL, NULL, nothing, NULL);
    CHECK_EQ(wait_for(&s, h, 1, thread), STATUS_OBJECT_TYPE_MISMATCH);
    CHECK_EQ(inproc_wait(&s), STATUS_OBJECT_TYPE_MISMATCH);
    ZwClose(thread);
    CHECK_EQ(stats(dev).Live, 0);
    inproc_close(h);
    unload(dev);
}

/* ---- the user program's flow, in process, under stress */

typedef struct stress_ctx {
    HANDLE event;
    volatile int32_t with_event_ok;
} stress_ctx;

static void prepare_wait(inproc_request *r, PIO_STACK_LOCATION next, void *ctx)
{
    stress_ctx *sc = ctx;
    EVENT_TIMER_WAIT_INPUT in = {(ULONG)(r->seq % 3), 0, (r->seq & 1) ? sc->event : NULL};
    memcpy(r->buffer, &in, sizeof in);
    next->MajorFunction = IRP_MJ_DEVICE_CONTROL;
    next->Parameters.DeviceIoControl.IoControlCode = IOCTL_EVENT_TIMER_WAIT;
    next->Parameters.DeviceIoControl.InputBufferLength = sizeof in;
}

static bool check_wait(const inproc_request *r, void *ctx)
{
    stress_ctx *sc = ctx;
    if (r->status == STATUS_SUCCESS && (r->seq & 1)) plat_fetch_add32(&sc->with_event_ok, 1);
    return r->status == STATUS_SUCCESS || r->status == STATUS_CANCELLED;
}

TEST(stress_short_timers_race_cancels_and_cleanups)
{
    PDEVICE_OBJECT dev = load();
    REQUIRE(dev);
    PKEVENT ev;
    stress_ctx sc = {new_event(&ev), 0};
    inproc_config cfg = {
        .device = dev,
        .threads = 4,
        .requests = irpk_test_scale(3000),
        .window = 8,
        .handles = 3,
        .cancel_one_pct = 10,
        .cancel_all_pct = 1,
        .close_every = 100,
        .seed = 0xC5053,
        .prepare = prepare_wait,
        .check = check_wait,
        .ctx = &sc,
    };
    inproc_result res;
    inproc_run(&cfg, &res);
    inproc_print("event_timer", &res);
    EVENT_TIMER_STATS s = settled(dev);
    printf("  driver: armed %d, early cancelled %d, by timer %d, by cancel %d, by cleanup %d, DPC "
           "lost %d, timers cancelled %d, events set %d\n",
           (int)s.Armed, (int)s.EarlyCancelled, (int)s.TimerCompleted, (int)s.CancelCompleted,
           (int)s.CleanupCompleted, (int)s.DpcLost, (int)s.TimersCancelled, (int)s.EventsSignalled);
    CHECK_EQ(res.bad, 0);
    CHECK_EQ(res.completed, res.issued);
    CHECK_EQ(res.other, 0);
    CHECK_EQ(res.succeeded, s.TimerCompleted);
    CHECK_EQ(res.cancelled, s.EarlyCancelled + s.CancelCompleted + s.CleanupCompleted);
    CHECK_EQ(s.Armed, s.TimerCompleted + s.CancelCompleted + s.CleanupCompleted);
    /* every armed timer either ran its DPC once or was cancelled in time, never both */
    CHECK_EQ(s.Armed, s.TimerCompleted + s.DpcLost + s.TimersCancelled);
    CHECK_EQ(s.EventsSignalled, sc.with_event_ok);
    free_event(sc.event, ev);
    unload(dev);
}
