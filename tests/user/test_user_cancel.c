/* CancelIo, CancelIoEx, CancelSynchronousIo and interrupted synchronous I/O:
 * NT_SEMANTICS.md §7.2, §7.3, §7.5 — cases T58, T59, T60, T61, T68, T69, T70. */
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"
#include "udriver.h"

#define RW (GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE)
#define SENTINEL ((NTSTATUS)0x7EADBEEF)

typedef struct req {
    HANDLE ev;
    IO_STATUS_BLOCK iosb;
    UCHAR buf[4];
} req;

static NTSTATUS issue(HANDLE file, req *r)
{
    if (!r->ev) r->ev = u_event();
    r->iosb.Status = SENTINEL;
    return NtReadFile(file, r->ev, NULL, NULL, &r->iosb, r->buf, sizeof r->buf, NULL, NULL);
}

static NTSTATUS status_of(req *r) { return plat_load32((volatile int32_t *)&r->iosb.Status); }

static bool n_queued(void *arg) { return udrv_queued() >= (int)(intptr_t)arg; }

/* The ids of the 'X' (cancel routine) entries, in log order. */
static int cancelled_ids(uint32_t *ids, int max)
{
    udrv_event evs[512];
    int n = udrv_log(evs, 512), k = 0;
    for (int i = 0; i < n && k < max; i++)
        if (evs[i].what == 'X') ids[k++] = evs[i].irp_id;
    return k;
}

static uint32_t read_id(int nth) /* the nth 'R' entry's IRP id (0-based) */
{
    udrv_event evs[512];
    int n = udrv_log(evs, 512);
    for (int i = 0; i < n; i++)
        if (evs[i].what == 'R' && nth-- == 0) return evs[i].irp_id;
    return 0;
}

/* T58: I1 then I2 on F; CancelIo(F) cancels I2 then I1 and returns once both completed. */
TEST(t58_cancelio_cancels_newest_first_and_waits_for_completion)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    HANDLE f;
    req r1 = {0}, r2 = {0};
    IO_STATUS_BLOCK io = {{SENTINEL}, 9};
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &f), STATUS_SUCCESS);
    CHECK_EQ(issue(f, &r1), STATUS_PENDING);
    CHECK_EQ(issue(f, &r2), STATUS_PENDING);
    CHECK_EQ(NtCancelIoFile(f, &io), STATUS_SUCCESS);
    CHECK_EQ(io.Status, STATUS_SUCCESS);
    CHECK_EQ(status_of(&r1), STATUS_CANCELLED); /* completed before CancelIo returned */
    CHECK_EQ(status_of(&r2), STATUS_CANCELLED);
    uint32_t ids[4];
    REQUIRE(cancelled_ids(ids, 4) == 2);
    CHECK_EQ(ids[0], read_id(1)); /* I2 first */
    CHECK_EQ(ids[1], read_id(0));
    NtClose(r1.ev);
    NtClose(r2.ev);
    NtClose(f);
    u_check_clean(handles);
    udrv_unload();
}

/* T59: nothing pending on F — success at once. */
TEST(t59_cancelio_with_nothing_pending_succeeds_at_once)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE f;
    IO_STATUS_BLOCK io;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &f), STATUS_SUCCESS);
    CHECK_EQ(NtCancelIoFile(f, &io), STATUS_SUCCESS);
    CHECK_EQ(io.Status, STATUS_SUCCESS);
    NtClose(f);
    u_check_clean(handles);
    udrv_unload();
}

typedef struct other {
    HANDLE file;
    req r;
    KEVENT go;
    volatile int32_t issued;
} other;

static void other_thread(void *arg)
{
    other *o = arg;
    issue(o->file, &o->r);
    plat_store32(&o->issued, 1);
    KeWaitForSingleObject(&o->go, Executive, KernelMode, FALSE, NULL);
}

/* T60: U's IRPs on F are untouched by T's CancelIo(F); a separate open of the same device is not
 * F; a duplicate handle of F is F. */
TEST(t60_cancelio_leaves_other_threads_and_other_opens_alone)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    other u = {0};
    HANDLE f2, dup;
    req mine = {0}, separate = {0};
    IO_STATUS_BLOCK io;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &u.file), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &f2), STATUS_SUCCESS);
    KeInitializeEvent(&u.go, NotificationEvent, FALSE);
    plat_thread *t = plat_thread_start(other_thread, &u, "U", 0);
    while (!plat_load32(&u.issued)) plat_sleep_ns(100000);
    CHECK_EQ(issue(u.file, &mine), STATUS_PENDING);
    CHECK_EQ(issue(f2, &separate), STATUS_PENDING);
    CHECK_EQ(NtDuplicateObject(NtCurrentProcess(), u.file, NtCurrentProcess(), &dup, 0, 0, DUPLICATE_SAME_ACCESS),
             STATUS_SUCCESS);
    CHECK_EQ(NtCancelIoFile(dup, &io), STATUS_SUCCESS); /* the duplicate names F */
    CHECK_EQ(status_of(&mine), STATUS_CANCELLED);
    CHECK_EQ(status_of(&u.r), SENTINEL);      /* U's request on F: untouched */
    CHECK_EQ(status_of(&separate), SENTINEL); /* our request on the other open: untouched */
    CHECK_EQ(udrv_queued(), 2);
    CHECK(udrv_complete_next(STATUS_SUCCESS, u_file(u.file)) != 0);
    CHECK(udrv_complete_next(STATUS_SUCCESS, u_file(f2)) != 0);
    CHECK_EQ(status_of(&u.r), STATUS_SUCCESS);
    CHECK_EQ(status_of(&separate), STATUS_SUCCESS);
    KeSetEvent(&u.go, IO_NO_INCREMENT, FALSE);
    plat_thread_join(t);
    NtClose(mine.ev);
    NtClose(separate.ev);
    NtClose(u.r.ev);
    NtClose(dup);
    NtClose(u.file);
    NtClose(f2);
    u_check_clean(handles);
    udrv_unload();
}

typedef struct hang {
    HANDLE file;
    req r;
    volatile int32_t returned;
} hang;

static void cancel_io_and_wait(void *arg)
{
    hang *h = arg;
    IO_STATUS_BLOCK io;
    issue(h->file, &h->r);
    NtCancelIoFile(h->file, &io);
    plat_store32(&h->returned, 1);
}

static bool hang_reported(void *arg)
{
    (void)arg;
    return irpk_report_count_name("CancelIoHang") >= 1;
}

/* T61: the driver never completes the cancelled IRP: CancelIo does not return; irpkit reports
 * the hang with the IRP's history and keeps waiting; the driver's late completion releases it. */
TEST(t61_cancelio_hangs_on_a_driver_that_ignores_cancel_and_reports_it)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_IGNORE_CANCEL);
    u_fast_timeouts(10000, 30);
    hang h = {0};
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &h.file), STATUS_SUCCESS);
    plat_thread *t = plat_thread_start(cancel_io_and_wait, &h, "T", 0);
    REQUIRE(udrv_wait_until(hang_reported, NULL));
    CHECK_EQ(plat_load32(&h.returned), 0); /* still waiting: the IRP is not completed */
    long i = irpk_report_find_name("CancelIoHang");
    REQUIRE(i >= 0);
    char idtag[32];
    snprintf(idtag, sizeof idtag, "IRP#%u", read_id(0));
    CHECK_CONTAINS(irpk_report_text((size_t)i), idtag);
    CHECK_CONTAINS(irpk_report_text((size_t)i), "Cancel := TRUE");
    CHECK_EQ(irpk_report_param((size_t)i, 0), IRPK_RULE_CANCEL_IO_HANG);
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0);
    plat_thread_join(t);
    CHECK_EQ(plat_load32(&h.returned), 1);
    CHECK_EQ(status_of(&h.r), STATUS_SUCCESS); /* the driver ignored the cancel */
    NtClose(h.r.ev);
    NtClose(h.file);
    u_fast_timeouts(10000, 10000);
    irpk_reports_clear();
    u_check_clean(handles);
    udrv_unload();
}

typedef struct issuer2 {
    HANDLE file;
    req a, b;
    KEVENT go;
    volatile int32_t issued;
} issuer2;

static void issue_two_and_wait(void *arg)
{
    issuer2 *s = arg;
    issue(s->file, &s->a);
    issue(s->file, &s->b);
    plat_store32(&s->issued, 1);
    KeWaitForSingleObject(&s->go, Executive, KernelMode, FALSE, NULL);
}

/* T70: CancelIoEx from U cancels T's I/O on the handle without waiting; with an IOSB only that
 * request; nothing left → STATUS_NOT_FOUND (ERROR_NOT_FOUND). */
TEST(t70_cancelioex_cancels_any_threads_io_one_request_or_all_and_does_not_wait)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    issuer2 s = {0};
    IO_STATUS_BLOCK io;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &s.file), STATUS_SUCCESS);
    KeInitializeEvent(&s.go, NotificationEvent, FALSE);
    plat_thread *t = plat_thread_start(issue_two_and_wait, &s, "T", 0);
    while (!plat_load32(&s.issued)) plat_sleep_ns(100000);
    CHECK_EQ(NtCancelIoFileEx(s.file, &s.b.iosb, &io), STATUS_SUCCESS);
    CHECK_EQ(io.Status, STATUS_SUCCESS);
    CHECK_EQ(status_of(&s.b), STATUS_CANCELLED);
    CHECK_EQ(status_of(&s.a), SENTINEL);
    CHECK_EQ(NtCancelIoFileEx(s.file, &s.b.iosb, &io), STATUS_NOT_FOUND); /* already gone */
    CHECK_EQ(io.Status, STATUS_NOT_FOUND);
    CHECK_EQ(NtCancelIoFileEx(s.file, NULL, &io), STATUS_SUCCESS);
    CHECK_EQ(status_of(&s.a), STATUS_CANCELLED);
    CHECK_EQ(NtCancelIoFileEx(s.file, NULL, &io), STATUS_NOT_FOUND);
    /* It does not wait: against a driver that ignores cancellation it returns at once. */
    plat_store32(&udrv.read_mode, UDRV_QUEUE_IGNORE_CANCEL);
    req late = {0};
    CHECK_EQ(issue(s.file, &late), STATUS_PENDING);
    CHECK_EQ(NtCancelIoFileEx(s.file, NULL, &io), STATUS_SUCCESS);
    CHECK_EQ(status_of(&late), SENTINEL);
    CHECK_EQ(udrv_oldest_cancel_flag(), 1); /* IoCancelIrp ran: Cancel is set */
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0);
    CHECK_EQ(status_of(&late), STATUS_SUCCESS);
    KeSetEvent(&s.go, IO_NO_INCREMENT, FALSE);
    plat_thread_join(t);
    NtClose(s.a.ev);
    NtClose(s.b.ev);
    NtClose(late.ev);
    NtClose(s.file);
    u_check_clean(handles);
    udrv_unload();
}

/* ---- synchronous requests: CancelSynchronousIo and interrupted waits (§7.5) */

typedef struct sync_reader {
    HANDLE file, self;
    IO_STATUS_BLOCK iosb;
    UCHAR buf[4];
    volatile int32_t ready, apc_ran, returned;
    NTSTATUS status;
} sync_reader;

static void sync_read(void *arg)
{
    sync_reader *s = arg;
    ObOpenObjectByPointer(PsGetCurrentThread(), 0, NULL, THREAD_ALL_ACCESS, *PsThreadType, KernelMode, &s->self);
    plat_store32(&s->ready, 1);
    s->status = NtReadFile(s->file, NULL, NULL, NULL, &s->iosb, s->buf, sizeof s->buf, NULL, NULL);
    plat_store32(&s->returned, 1);
}

static VOID NTAPI mark_apc(PVOID a, PVOID b, PVOID c)
{
    (void)b;
    (void)c;
    plat_store32(&((sync_reader *)a)->apc_ran, 1);
}

static bool oldest_cancelled(void *arg)
{
    (void)arg;
    return udrv_oldest_cancel_flag() == 1;
}

static plat_thread *start_sync_reader(sync_reader *s, ULONG options)
{
    CHECK_EQ(u_open(L"\\??\\UTest", RW, options, &s->file), STATUS_SUCCESS);
    plat_thread *t = plat_thread_start(sync_read, s, "T", 0);
    while (!plat_load32(&s->ready)) plat_sleep_ns(100000);
    udrv_wait_until(n_queued, (void *)(intptr_t)1);
    return t;
}

TEST(cancel_synchronous_io_cancels_the_target_threads_synchronous_request)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    sync_reader s = {0};
    IO_STATUS_BLOCK io;
    plat_thread *t = start_sync_reader(&s, FILE_SYNCHRONOUS_IO_NONALERT);
    CHECK_EQ(NtCancelSynchronousIoFile(s.self, NULL, &io), STATUS_SUCCESS);
    plat_thread_join(t);
    CHECK_EQ(s.status, STATUS_CANCELLED);
    CHECK_EQ(NtCancelSynchronousIoFile(s.self, NULL, &io), STATUS_NOT_FOUND);
    CHECK_EQ(io.Status, STATUS_NOT_FOUND);
    CHECK_EQ(NtCancelSynchronousIoFile(s.file, NULL, &io), STATUS_OBJECT_TYPE_MISMATCH);
    NtClose(s.self);
    NtClose(s.file);
    u_check_clean(handles);
    udrv_unload();
}

/* T68: an alert breaks the wait of a synchronous read whose IRP has a cancel routine:
 * IoCancelIrp → TRUE, the read ends STATUS_CANCELLED. */
TEST(t68_interrupted_synchronous_read_with_cancel_routine_is_cancelled)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    sync_reader s = {0};
    plat_thread *t = start_sync_reader(&s, FILE_SYNCHRONOUS_IO_ALERT);
    CHECK_EQ(NtAlertThread(s.self), STATUS_SUCCESS);
    plat_thread_join(t);
    CHECK_EQ(s.status, STATUS_CANCELLED);
    CHECK_EQ(s.iosb.Status, STATUS_CANCELLED);
    CHECK(udrv_find('X', 0, 0) >= 0); /* the driver's cancel routine completed it */
    NtClose(s.self);
    NtClose(s.file);
    u_check_clean(handles);
    udrv_unload();
}

/* T69: the same without a cancel routine: IoCancelIrp → FALSE and the read keeps waiting until
 * the driver completes it — a synchronous IRP is never abandoned. (Interrupted here by a user
 * APC, which runs first.) */
TEST(t69_interrupted_synchronous_read_without_cancel_routine_waits_for_the_driver)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_IGNORE_CANCEL);
    sync_reader s = {0};
    plat_thread *t = start_sync_reader(&s, FILE_SYNCHRONOUS_IO_ALERT);
    CHECK_EQ(NtQueueApcThread(s.self, mark_apc, &s, NULL, NULL), STATUS_SUCCESS);
    REQUIRE(udrv_wait_until(oldest_cancelled, NULL)); /* the service called IoCancelIrp */
    CHECK_EQ(plat_load32(&s.apc_ran), 1);
    CHECK_EQ(plat_load32(&s.returned), 0); /* not completed, so still waiting */
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0);
    plat_thread_join(t);
    CHECK_EQ(s.status, STATUS_SUCCESS);
    CHECK(!memcmp(s.buf, "abcd", 4));
    NtClose(s.self);
    NtClose(s.file);
    u_check_clean(handles);
    udrv_unload();
}
