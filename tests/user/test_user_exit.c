/* Thread exit, disassociation, last-handle close with I/O pending, process rundown:
 * NT_SEMANTICS.md §7.4, §7.6, §6.4 step 5 — cases T57, T62, T63, T64, T66, T67. */
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"
#include "udriver.h"

#define RW (GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE)
#define SENTINEL ((NTSTATUS)0x7EADBEEF)

/* Requests whose IOSBs and buffers outlive the thread that issued them. */
typedef struct exiter {
    HANDLE file, file2; /* file2: request 1 goes there when set */
    HANDLE ev[2];
    IO_STATUS_BLOCK iosb[2];
    UCHAR buf[2][4];
    int n;
    volatile int32_t issued;
    KEVENT *hold; /* wait on it before exiting (NULL: exit at once) */
} exiter;

static void issue_and_exit(void *arg)
{
    exiter *x = arg;
    for (int i = 0; i < x->n; i++) {
        x->iosb[i].Status = SENTINEL;
        HANDLE f = i == 1 && x->file2 ? x->file2 : x->file;
        NtReadFile(f, x->ev[i], NULL, NULL, &x->iosb[i], x->buf[i], 4, NULL, NULL);
    }
    plat_store32(&x->issued, 1);
    if (x->hold) KeWaitForSingleObject(x->hold, Executive, KernelMode, FALSE, NULL);
}

static NTSTATUS status_of(exiter *x, int i) { return plat_load32((volatile int32_t *)&x->iosb[i].Status); }

static uint32_t read_id(int nth)
{
    udrv_event evs[512];
    int n = udrv_log(evs, 512);
    for (int i = 0; i < n; i++)
        if (evs[i].what == 'R' && nth-- == 0) return evs[i].irp_id;
    return 0;
}

static void setup_exiter(exiter *x, int n)
{
    memset(x, 0, sizeof *x);
    x->n = n;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &x->file), STATUS_SUCCESS);
    for (int i = 0; i < n; i++) x->ev[i] = u_event();
}

static void close_exiter(exiter *x)
{
    for (int i = 0; i < x->n; i++) NtClose(x->ev[i]);
    NtClose(x->file);
    if (x->file2) NtClose(x->file2);
}

/* T62: a thread exits with I1, I2 pending: both are cancelled, newest first, and the exit
 * completes only after they have completed. */
TEST(t62_thread_exit_cancels_its_irps_newest_first_and_waits)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    exiter x;
    setup_exiter(&x, 2);
    plat_thread *t = plat_thread_start(issue_and_exit, &x, "T", 0);
    plat_thread_join(t);
    CHECK_EQ(status_of(&x, 0), STATUS_CANCELLED);
    CHECK_EQ(status_of(&x, 1), STATUS_CANCELLED);
    CHECK(u_signalled(x.ev[0]) && u_signalled(x.ev[1]));
    int x2 = udrv_find('X', read_id(1), 0), x1 = udrv_find('X', read_id(0), 0);
    CHECK(x2 >= 0 && x1 > x2); /* I2 cancelled before I1 */
    close_exiter(&x);
    u_check_clean(handles);
    udrv_unload();
}

static bool timeout_reported(void *arg) { return irpk_report_count_name("IO_DRIVER_CANCEL_TIMEOUT") >= (size_t)(intptr_t)arg; }

/* T63 (and T57): the driver ignores the cancel: after the exit timeout the IRP is disassociated
 * (IO_DRIVER_CANCEL_TIMEOUT, one per poll) and the thread's exit proceeds; the driver's later
 * completion is dropped — no IOSB, no event — and the IRP freed. */
TEST(t63_exit_timeout_disassociates_and_a_later_completion_is_dropped)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_IGNORE_CANCEL);
    u_fast_timeouts(40, 10000);
    irpk_user_stats before, after;
    irpk_user_get_stats(&before);
    exiter x;
    setup_exiter(&x, 2);
    plat_thread *t = plat_thread_start(issue_and_exit, &x, "T", 0);
    plat_thread_join(t); /* returns: both IRPs were given up on */
    CHECK_EQ(irpk_report_count_name("IO_DRIVER_CANCEL_TIMEOUT"), 2);
    long r = irpk_report_find_name("IO_DRIVER_CANCEL_TIMEOUT");
    REQUIRE(r >= 0);
    CHECK_EQ(irpk_report_code((size_t)r), IRPK_IO_DRIVER_CANCEL_TIMEOUT);
    CHECK_CONTAINS(irpk_report_text((size_t)r), "disassociated");
    irpk_user_get_stats(&after);
    CHECK_EQ(after.disassociated - before.disassociated, 2);
    CHECK_EQ(udrv_queued(), 2);
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0);
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0);
    CHECK_EQ(status_of(&x, 0), SENTINEL); /* dropped: the thread's memory is not touched */
    CHECK_EQ(status_of(&x, 1), SENTINEL);
    CHECK(!u_signalled(x.ev[0]) && !u_signalled(x.ev[1]));
    irpk_user_get_stats(&after);
    CHECK_EQ(after.dropped - before.dropped, 2);
    close_exiter(&x);
    u_fast_timeouts(10000, 10000);
    irpk_reports_clear();
    u_check_clean(handles);
    udrv_unload();
}

/* ---- T64: hold I2's hand-off, claimed but not yet published, while the exit times out */

static PVOID held_event;
static volatile uint32_t hold_released;
static volatile int32_t hold_entered;

/* "I/O completion" labels the hand-off's step after the claim (UIRP_HANDOFF set) and before it
 * takes the thread's IrpListLock to publish IOSB, event and APC. (It used to hold the hand-off
 * inside KeSetEvent of the event; the event is now set under IrpListLock, which the exiting
 * thread's polls take.) */
static void hold_hook(const char *op, const void *obj)
{
    if (strcmp(op, "I/O completion") || ((PIRP)obj)->UserEvent != held_event) return;
    plat_store32(&hold_entered, 1);
    int64_t deadline = plat_now_ns() + 20000000000LL;
    while (!plat_load32((volatile int32_t *)&hold_released) && plat_now_ns() < deadline)
        plat_wait(&hold_released, 0, deadline);
}

static void complete_one(void *arg)
{
    udrv_complete_next(STATUS_SUCCESS, arg); /* I2: its hand-off blocks in the hook */
}

static bool entered(void *arg)
{
    (void)arg;
    return plat_load32(&hold_entered) != 0;
}

/* I2, the newest — first on the thread's list — is completing (its hand-off held after its
 * claim) when the exit times out: the disassociation passes over it and takes I1. */
TEST(t64_disassociation_skips_an_irp_whose_completion_is_under_way)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_IGNORE_CANCEL);
    u_fast_timeouts(40, 10000);
    exiter x;
    setup_exiter(&x, 2);
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &x.file2), STATUS_SUCCESS);
    KEVENT hold;
    KeInitializeEvent(&hold, NotificationEvent, FALSE);
    x.hold = &hold;
    REQUIRE(NT_SUCCESS(ObReferenceObjectByHandle(x.ev[1], 0, *ExEventObjectType, KernelMode, &held_event, NULL)));
    ObDereferenceObject(held_event); /* the handle keeps it alive */
    plat_store32(&hold_entered, 0);
    plat_store32((volatile int32_t *)&hold_released, 0);
    plat_set_point_hook(hold_hook);
    plat_thread *t = plat_thread_start(issue_and_exit, &x, "T", 0);
    while (!plat_load32(&x.issued)) plat_sleep_ns(100000);
    plat_thread *c = plat_thread_start(complete_one, u_file(x.file2), "completer", 0);
    REQUIRE(udrv_wait_until(entered, NULL)); /* I2's hand-off claimed it: IOSB, event, APC next */
    CHECK_EQ(status_of(&x, 1), SENTINEL);
    KeSetEvent(&hold, IO_NO_INCREMENT, FALSE); /* T exits: cancels, waits, times out */
    REQUIRE(udrv_wait_until(timeout_reported, (void *)(intptr_t)1));
    CHECK_EQ(udrv_queued(), 1); /* I1, given up on */
    plat_sleep_ns(100000000);   /* ~10 more polls while I2 is still completing */
    plat_store32((volatile int32_t *)&hold_released, 1);
    plat_wake(&hold_released, INT32_MAX);
    plat_thread_join(c);
    plat_thread_join(t);
    plat_set_point_hook(NULL);
    CHECK_EQ(irpk_report_count_name("IO_DRIVER_CANCEL_TIMEOUT"), 1); /* only I1 */
    long r = irpk_report_find_name("IO_DRIVER_CANCEL_TIMEOUT");
    char idtag[40];
    snprintf(idtag, sizeof idtag, "cancelled IRP#%u ", read_id(0));
    CHECK_CONTAINS(irpk_report_text((size_t)r), idtag);
    CHECK(u_signalled(x.ev[1])); /* I2 delivered normally */
    CHECK_EQ(status_of(&x, 1), STATUS_SUCCESS);
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0); /* I1: dropped */
    CHECK_EQ(status_of(&x, 0), SENTINEL);
    CHECK(!u_signalled(x.ev[0]));
    close_exiter(&x);
    u_fast_timeouts(10000, 10000);
    irpk_reports_clear();
    u_check_clean(handles);
    udrv_unload();
}

/* T66: closing the last handle with I pending sends IRP_MJ_CLEANUP; the I/O manager does not
 * cancel I (this driver's cleanup leaves it alone); IRP_MJ_CLOSE comes only after I completes. */
TEST(t66_last_close_with_io_pending_cleanup_now_close_after_completion)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    plat_store32(&udrv.cleanup_cancels, 0);
    HANDLE f, ev = u_event();
    IO_STATUS_BLOCK iosb = {{SENTINEL}, 0};
    UCHAR buf[4];
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &f), STATUS_SUCCESS);
    CHECK_EQ(NtReadFile(f, ev, NULL, NULL, &iosb, buf, 4, NULL, NULL), STATUS_PENDING);
    CHECK_EQ(NtClose(f), STATUS_SUCCESS);
    int u = udrv_find('U', 0, 0);
    REQUIRE(u >= 0);
    udrv_event evs[32];
    udrv_log(evs, 32);
    CHECK_EQ(evs[u].queued_at_cleanup, 1);
    CHECK_EQ(iosb.Status, SENTINEL); /* not cancelled by the close */
    CHECK_EQ(udrv_find('X', 0, 0), -1);
    CHECK_EQ(udrv.closes, 0);        /* the IRP holds the file object */
    irpk_user_stats s;
    irpk_user_get_stats(&s);
    CHECK_EQ(s.files_closing, 1);
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0);
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK_EQ(udrv.closes, 1);
    CHECK(udrv_find('L', 0, 0) > udrv_find('D', 0, 0));
    CHECK_EQ(iosb.Status, STATUS_SUCCESS); /* delivered: the thread is alive */
    CHECK(u_signalled(ev));
    NtClose(ev);
    u_check_clean(handles);
    udrv_unload();
}

/* The seed driver's way: cleanup cancels the file's queued IRPs; then CLOSE. */
TEST(last_close_with_a_driver_that_cancels_in_cleanup)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    HANDLE f, other, ev = u_event(), ev2 = u_event();
    IO_STATUS_BLOCK iosb = {{SENTINEL}, 0}, iosb2 = {{SENTINEL}, 0};
    UCHAR buf[4], buf2[4];
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &f), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &other), STATUS_SUCCESS);
    CHECK_EQ(NtReadFile(f, ev, NULL, NULL, &iosb, buf, 4, NULL, NULL), STATUS_PENDING);
    CHECK_EQ(NtReadFile(other, ev2, NULL, NULL, &iosb2, buf2, 4, NULL, NULL), STATUS_PENDING);
    CHECK_EQ(NtClose(f), STATUS_SUCCESS);
    CHECK_EQ(iosb.Status, STATUS_CANCELLED); /* by the driver's cleanup, inside NtClose */
    CHECK_EQ(iosb2.Status, SENTINEL);        /* the other file object's request stays */
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK(udrv_find('L', 0, 0) > udrv_find('K', 0, 0));
    CHECK_EQ(NtClose(other), STATUS_SUCCESS);
    CHECK_EQ(iosb2.Status, STATUS_CANCELLED);
    NtClose(ev);
    NtClose(ev2);
    u_check_clean(handles);
    udrv_unload();
}

/* T67: process exit: every thread's I/O is cancelled and drained before any handle is closed
 * (so every cancel comes before the first CLEANUP). */
TEST(t67_process_rundown_drains_thread_io_before_any_cleanup)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    plat_store32(&udrv.cleanup_cancels, 0); /* a cancel seen must come from the rundown */
    exiter a, b;
    KEVENT hold;
    KeInitializeEvent(&hold, NotificationEvent, FALSE);
    setup_exiter(&a, 2);
    setup_exiter(&b, 1);
    a.hold = b.hold = &hold;
    plat_thread *ta = plat_thread_start(issue_and_exit, &a, "A", 0);
    plat_thread *tb = plat_thread_start(issue_and_exit, &b, "B", 0);
    while (!plat_load32(&a.issued) || !plat_load32(&b.issued)) plat_sleep_ns(100000);
    irpk_user_process_rundown();
    CHECK_EQ(ob_open_handles(), 0);
    CHECK_EQ(status_of(&a, 0), STATUS_CANCELLED);
    CHECK_EQ(status_of(&a, 1), STATUS_CANCELLED);
    CHECK_EQ(status_of(&b, 0), STATUS_CANCELLED);
    udrv_event evs[64];
    int n = udrv_log(evs, 64), last_cancel = -1, first_cleanup = -1, cleanups = 0;
    for (int i = 0; i < n; i++) {
        if (evs[i].what == 'X') last_cancel = i;
        if (evs[i].what == 'U') {
            cleanups++;
            if (first_cleanup < 0) first_cleanup = i;
        }
    }
    CHECK_EQ(cleanups, 2);
    CHECK(last_cancel >= 0 && first_cleanup > last_cancel);
    KeSetEvent(&hold, IO_NO_INCREMENT, FALSE);
    plat_thread_join(ta);
    plat_thread_join(tb);
    u_check_clean(handles);
    udrv_unload();
}
