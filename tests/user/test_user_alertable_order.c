/* Alertable waits test the objects first (NT order): a wait that the objects satisfy at once
 * returns their status and leaves queued user APCs (and a pending alert) for the next alertable
 * wait; only a wait that would block delivers them — STATUS_USER_APC after running the APCs,
 * STATUS_ALERTED for an alert — also with a zero timeout, and NtDelayExecution (SleepEx) alike.
 * (KeWaitForSingleObject/ZwWaitForSingleObject "check the current state ... to determine if the
 * wait can be satisfied immediately"; WaitForSingleObjectEx returns for an APC only when the
 * thread "is in the waiting state".) All APCs here go to the test's own thread. */
#include "irpkit/user.h"
#include "ob/ob.h"
#include "udriver.h"

static volatile int32_t apcs;

static VOID NTAPI count_apc(PVOID a, PVOID b, PVOID c)
{
    (void)a;
    (void)b;
    (void)c;
    plat_fetch_add32(&apcs, 1);
}

static void queue_apc(void)
{
    CHECK_EQ(NtQueueApcThread(NtCurrentThread(), count_apc, NULL, NULL, NULL), STATUS_SUCCESS);
}

static HANDLE event(EVENT_TYPE type, BOOLEAN signalled)
{
    HANDLE h = NULL;
    CHECK_EQ(NtCreateEvent(&h, EVENT_ALL_ACCESS, NULL, type, signalled), STATUS_SUCCESS);
    return h;
}

static LARGE_INTEGER zero = {.QuadPart = 0};
static LARGE_INTEGER ten_ms = {.QuadPart = -100000};
static LARGE_INTEGER five_s = {.QuadPart = -50000000}; /* "would block": a bug shows as a timeout, not a hang */

TEST(signalled_object_wins_and_the_apc_waits_for_a_wait_that_would_block)
{
    long handles = ob_open_handles();
    plat_store32(&apcs, 0);
    HANDLE ev = event(NotificationEvent, TRUE);
    queue_apc();
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, NULL), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, &zero), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, &ten_ms), STATUS_SUCCESS);
    CHECK_EQ(plat_load32(&apcs), 0); /* still queued */
    CHECK_EQ(NtClearEvent(ev), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, &zero), STATUS_USER_APC); /* would block: deliver */
    CHECK_EQ(plat_load32(&apcs), 1);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, &zero), STATUS_TIMEOUT); /* nothing left */
    queue_apc();
    int64_t t0 = plat_now_ns();
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, &ten_ms), STATUS_USER_APC);
    CHECK(plat_now_ns() - t0 < 5 * 1000000000LL); /* delivered up front, not after the timeout */
    CHECK_EQ(plat_load32(&apcs), 2);
    NtClose(ev);
    CHECK_EQ(ob_open_handles(), handles);
}

TEST(a_synchronization_event_is_consumed_then_an_infinite_wait_delivers)
{
    long handles = ob_open_handles();
    plat_store32(&apcs, 0);
    HANDLE ev = event(SynchronizationEvent, TRUE);
    queue_apc();
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, NULL), STATUS_SUCCESS); /* takes the signal */
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, NULL), STATUS_USER_APC); /* would block forever */
    CHECK_EQ(plat_load32(&apcs), 1);
    CHECK_EQ(NtWaitForSingleObject(ev, FALSE, &zero), STATUS_TIMEOUT); /* the APC left it unsignalled */
    NtClose(ev);
    CHECK_EQ(ob_open_handles(), handles);
}

TEST(wait_any_returns_the_signalled_index_before_apcs)
{
    long handles = ob_open_handles();
    plat_store32(&apcs, 0);
    HANDLE h[3] = {event(NotificationEvent, FALSE), event(NotificationEvent, FALSE), event(NotificationEvent, TRUE)};
    queue_apc();
    queue_apc();
    CHECK_EQ(NtWaitForMultipleObjects(3, h, WaitAny, TRUE, NULL), STATUS_WAIT_0 + 2);
    CHECK_EQ(NtSetEvent(h[1], NULL), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForMultipleObjects(3, h, WaitAny, TRUE, &zero), STATUS_WAIT_0 + 1); /* the lowest */
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(NtClearEvent(h[1]), STATUS_SUCCESS);
    CHECK_EQ(NtClearEvent(h[2]), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForMultipleObjects(3, h, WaitAny, TRUE, &zero), STATUS_USER_APC);
    CHECK_EQ(plat_load32(&apcs), 2); /* both, in one delivery */
    CHECK_EQ(NtWaitForMultipleObjects(3, h, WaitAny, TRUE, &zero), STATUS_TIMEOUT);
    for (int i = 0; i < 3; i++) NtClose(h[i]);
    CHECK_EQ(ob_open_handles(), handles);
}

TEST(wait_all_satisfied_at_once_leaves_the_apc_queued)
{
    long handles = ob_open_handles();
    plat_store32(&apcs, 0);
    HANDLE h[2] = {event(NotificationEvent, TRUE), event(NotificationEvent, TRUE)};
    queue_apc();
    CHECK_EQ(NtWaitForMultipleObjects(2, h, WaitAll, TRUE, NULL), STATUS_SUCCESS);
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(NtClearEvent(h[0]), STATUS_SUCCESS); /* one short: the WaitAll would block */
    CHECK_EQ(NtWaitForMultipleObjects(2, h, WaitAll, TRUE, &ten_ms), STATUS_USER_APC);
    CHECK_EQ(plat_load32(&apcs), 1);
    CHECK_EQ(NtWaitForMultipleObjects(2, h, WaitAll, TRUE, &zero), STATUS_TIMEOUT);
    for (int i = 0; i < 2; i++) NtClose(h[i]);
    CHECK_EQ(ob_open_handles(), handles);
}

TEST(a_pending_alert_also_waits_for_a_wait_that_would_block_and_still_wins_over_apcs)
{
    long handles = ob_open_handles();
    plat_store32(&apcs, 0);
    HANDLE ev = event(NotificationEvent, TRUE);
    queue_apc();
    CHECK_EQ(NtAlertThread(NtCurrentThread()), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, NULL), STATUS_SUCCESS);
    CHECK_EQ(NtClearEvent(ev), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, &five_s), STATUS_ALERTED); /* the alert first ... */
    CHECK_EQ(plat_load32(&apcs), 0);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, &five_s), STATUS_USER_APC); /* ... then the APC */
    CHECK_EQ(plat_load32(&apcs), 1);
    NtClose(ev);
    CHECK_EQ(ob_open_handles(), handles);
}

TEST(alertable_delay_delivers_queued_apcs_even_with_a_zero_interval)
{
    plat_store32(&apcs, 0);
    queue_apc();
    CHECK_EQ(NtDelayExecution(TRUE, &zero), STATUS_USER_APC); /* SleepEx(0, TRUE) */
    CHECK_EQ(plat_load32(&apcs), 1);
    CHECK_EQ(NtDelayExecution(TRUE, &zero), STATUS_SUCCESS);
    queue_apc();
    CHECK_EQ(NtDelayExecution(TRUE, &ten_ms), STATUS_USER_APC);
    CHECK_EQ(plat_load32(&apcs), 2);
}

typedef struct read_probe {
    int calls;
    NTSTATUS status_seen;
} read_probe;

static VOID NTAPI on_read_done(PVOID ApcContext, PIO_STATUS_BLOCK IoStatusBlock, ULONG Reserved)
{
    (void)Reserved;
    read_probe *p = ApcContext;
    p->calls++;
    p->status_seen = IoStatusBlock->Status;
}

/* A read that completes at once: its event is set and its completion routine queued before
 * NtReadFile returns; waiting alertably on the (signalled) event returns at once and leaves the
 * routine for the next alertable wait that would block (here SleepEx(0, TRUE)). */
TEST(completion_routine_of_a_finished_read_stays_queued_past_a_satisfied_wait)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE file, ev = u_event();
    CHECK_EQ(u_open(L"\\??\\UTest", GENERIC_READ | SYNCHRONIZE, 0, &file), STATUS_SUCCESS);
    read_probe p = {0, STATUS_PENDING};
    IO_STATUS_BLOCK iosb;
    UCHAR buf[4];
    LARGE_INTEGER offset = {.QuadPart = 0};
    CHECK_EQ(NtReadFile(file, ev, on_read_done, &p, &iosb, buf, sizeof buf, &offset, NULL), STATUS_SUCCESS);
    CHECK_EQ(iosb.Status, STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(ev, TRUE, NULL), STATUS_SUCCESS);
    CHECK_EQ(p.calls, 0);
    CHECK_EQ(NtDelayExecution(TRUE, &zero), STATUS_USER_APC);
    CHECK_EQ(p.calls, 1);
    CHECK_EQ(p.status_seen, STATUS_SUCCESS);
    NtClose(ev);
    NtClose(file);
    u_check_clean(handles);
    udrv_unload();
}
