/* Synchronous and overlapped requests, buffers, the completion hand-off (data, IOSB, event, APC),
 * waits, events, user APCs and alerts; a plain pthread as an I/O thread. */
#include <pthread.h> /* one test shows a thread irpkit did not start issuing I/O (tests are not src/) */

#include "irpkit/user.h"
#include "ob/ob.h"
#include "udriver.h"

#define RW (GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE)
#define SENTINEL ((NTSTATUS)0x7EADBEEF)

static bool one_queued(void *arg)
{
    (void)arg;
    return udrv_queued() >= 1;
}

static void complete_when_queued(void *arg)
{
    (void)arg;
    if (udrv_wait_until(one_queued, NULL)) udrv_complete_next(STATUS_SUCCESS, NULL);
}

TEST(synchronous_file_waits_and_never_returns_pending)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    HANDLE h;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, FILE_SYNCHRONOUS_IO_NONALERT, &h), STATUS_SUCCESS);
    UCHAR buf[10] = {0};
    IO_STATUS_BLOCK iosb = {{SENTINEL}, 0};
    for (int round = 1; round <= 2; round++) {
        plat_thread *t = plat_thread_start(complete_when_queued, NULL, "completer", 0);
        CHECK_EQ(NtReadFile(h, NULL, NULL, NULL, &iosb, buf, sizeof buf, NULL, NULL), STATUS_SUCCESS);
        plat_thread_join(t);
        CHECK_EQ(iosb.Status, STATUS_SUCCESS);
        CHECK_EQ(iosb.Information, 10);
        CHECK(!memcmp(buf, "abcdefghij", 10));
        CHECK_EQ(u_file(h)->CurrentByteOffset.QuadPart, 10 * round); /* the file pointer moves */
    }
    NtClose(h);
    u_check_clean(handles);
    udrv_unload();
}

TEST(overlapped_read_returns_pending_then_data_iosb_event_in_order)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    HANDLE h, ev = u_event();
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &h), STATUS_SUCCESS);
    UCHAR buf[10] = {0};
    IO_STATUS_BLOCK iosb = {{SENTINEL}, 77};
    NtSetEvent(ev, NULL); /* the service clears it */
    CHECK_EQ(NtReadFile(h, ev, NULL, NULL, &iosb, buf, sizeof buf, NULL, NULL), STATUS_PENDING);
    CHECK_EQ(iosb.Status, SENTINEL);
    CHECK(!u_signalled(ev));
    irpk_user_stats s;
    irpk_user_get_stats(&s);
    CHECK_EQ(s.irps_pending, 1);
    CHECK(udrv_complete_next(STATUS_SUCCESS, NULL) != 0);
    CHECK(u_signalled(ev));
    CHECK_EQ(iosb.Status, STATUS_SUCCESS);
    CHECK_EQ(iosb.Information, 10);
    CHECK(!memcmp(buf, "abcdefghij", 10));
    /* A driver that completes at once: the service returns its status, IOSB and event are set. */
    plat_store32(&udrv.read_mode, UDRV_COMPLETE);
    iosb.Status = SENTINEL;
    memset(buf, 0, sizeof buf);
    CHECK_EQ(NtReadFile(h, ev, NULL, NULL, &iosb, buf, 4, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(iosb.Status, STATUS_SUCCESS);
    CHECK_EQ(iosb.Information, 4);
    CHECK(!memcmp(buf, "abcd\0", 5)); /* only Information bytes were copied back */
    CHECK(u_signalled(ev));
    NtClose(ev);
    NtClose(h);
    u_check_clean(handles);
    udrv_unload();
}

TEST(write_ioctl_direct_and_neither_buffers)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE h, d, n;
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, FILE_SYNCHRONOUS_IO_NONALERT, &h), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\Device\\UDirect", RW, FILE_SYNCHRONOUS_IO_NONALERT, &d), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\Device\\UNeither", RW, FILE_SYNCHRONOUS_IO_NONALERT, &n), STATUS_SUCCESS);
    char msg[] = "written";
    CHECK_EQ(NtWriteFile(h, NULL, NULL, NULL, &iosb, msg, 7, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(iosb.Information, 7);
    CHECK_EQ(udrv.last_write_len, 7);
    CHECK(!memcmp(udrv.last_write, "written", 7));
    UCHAR in[4] = {1, 2, 3, 4}, out[8] = {0};
    CHECK_EQ(NtDeviceIoControlFile(h, NULL, NULL, NULL, &iosb, UIOCTL_ECHO, in, 4, out, 8), STATUS_SUCCESS);
    CHECK_EQ(iosb.Information, 4);
    CHECK(out[0] == 2 && out[3] == 5 && out[4] == 0);
    CHECK(in[0] == 1); /* METHOD_BUFFERED: the caller's input buffer is untouched */
    memset(out, 0, sizeof out);
    CHECK_EQ(NtDeviceIoControlFile(h, NULL, NULL, NULL, &iosb, UIOCTL_NEITHER, in, 4, out, 2), STATUS_SUCCESS);
    CHECK(out[0] == 2 && out[1] == 3 && out[2] == 0);
    CHECK_EQ(NtDeviceIoControlFile(h, NULL, NULL, NULL, &iosb, 0x12345, in, 4, out, 2), STATUS_INVALID_DEVICE_REQUEST);
    UCHAR buf[6] = {0};
    CHECK_EQ(NtReadFile(d, NULL, NULL, NULL, &iosb, buf, 6, NULL, NULL), STATUS_SUCCESS); /* via an MDL */
    CHECK(!memcmp(buf, "abcdef", 6));
    memset(buf, 0, sizeof buf);
    CHECK_EQ(NtReadFile(n, NULL, NULL, NULL, &iosb, buf, 6, NULL, NULL), STATUS_SUCCESS); /* UserBuffer */
    CHECK(!memcmp(buf, "abcdef", 6));
    CHECK_EQ(NtWriteFile(d, NULL, NULL, NULL, &iosb, msg, 3, NULL, NULL), STATUS_SUCCESS);
    CHECK(!memcmp(udrv.last_write, "wri", 3));
    NtClose(h);
    NtClose(d);
    NtClose(n);
    u_check_clean(handles);
    udrv_unload();
}

TEST(a_file_without_an_event_is_waited_on_through_its_handle)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    HANDLE h;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &h), STATUS_SUCCESS);
    UCHAR buf[3];
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(NtReadFile(h, NULL, NULL, NULL, &iosb, buf, 3, NULL, NULL), STATUS_PENDING);
    LARGE_INTEGER zero = {.QuadPart = 0};
    CHECK_EQ(NtWaitForSingleObject(h, FALSE, &zero), STATUS_TIMEOUT);
    plat_thread *t = plat_thread_start(complete_when_queued, NULL, "completer", 0);
    CHECK_EQ(NtWaitForSingleObject(h, FALSE, NULL), STATUS_SUCCESS);
    plat_thread_join(t);
    CHECK_EQ(iosb.Status, STATUS_SUCCESS);
    NtClose(h);
    u_check_clean(handles);
    udrv_unload();
}

/* ---- completion APCs */

typedef struct apc_probe {
    HANDLE file, ev;
    IO_STATUS_BLOCK iosb;
    UCHAR buf[4];
    volatile int32_t issued, go;
    int apc_calls, apcs_before_alertable_wait;
    plat_thread *apc_thread;
    PVOID apc_context;
    PIO_STATUS_BLOCK apc_iosb;
    NTSTATUS status_seen, nonalertable_wait, alertable_wait;
} apc_probe;

static VOID NTAPI on_read_done(PVOID ApcContext, PIO_STATUS_BLOCK IoStatusBlock, ULONG Reserved)
{
    (void)Reserved;
    apc_probe *p = ApcContext;
    p->apc_calls++;
    p->apc_thread = plat_self();
    p->apc_context = ApcContext;
    p->apc_iosb = IoStatusBlock;
    p->status_seen = IoStatusBlock->Status;
}

static void apc_issuer(void *arg)
{
    apc_probe *p = arg;
    NtReadFile(p->file, p->ev, on_read_done, p, &p->iosb, p->buf, 4, NULL, NULL);
    plat_store32(&p->issued, 1);
    p->nonalertable_wait = NtWaitForSingleObject(p->ev, FALSE, NULL);
    p->apcs_before_alertable_wait = p->apc_calls;
    NtClearEvent(p->ev); /* signalled, the event would satisfy the wait and the APC stay queued */
    p->alertable_wait = NtWaitForSingleObject(p->ev, TRUE, NULL);
}

TEST(completion_apc_runs_in_the_issuing_thread_at_its_alertable_wait)
{
    long handles = ob_open_handles();
    udrv_load();
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    apc_probe p = {0};
    p.ev = u_event();
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &p.file), STATUS_SUCCESS);
    plat_thread *t = plat_thread_start(apc_issuer, &p, "issuer", 0);
    while (!plat_load32(&p.issued) || !udrv_queued()) plat_sleep_ns(100000);
    udrv_complete_next(STATUS_SUCCESS, NULL); /* completes here, in the test thread */
    plat_thread_join(t);
    CHECK_EQ(p.nonalertable_wait, STATUS_SUCCESS);
    CHECK_EQ(p.alertable_wait, STATUS_USER_APC); /* the APC ran, then the wait returned */
    CHECK_EQ(p.apcs_before_alertable_wait, 0); /* not in the completing thread, not before */
    CHECK_EQ(p.apc_calls, 1);
    CHECK_PTR(p.apc_thread, t);
    CHECK_PTR(p.apc_context, &p);
    CHECK_PTR(p.apc_iosb, &p.iosb);
    CHECK_EQ(p.status_seen, STATUS_SUCCESS);
    NtClose(p.ev);
    NtClose(p.file);
    u_check_clean(handles);
    udrv_unload();
}

typedef struct waiter {
    HANDLE self, ev;
    volatile int32_t ready, apcs;
    NTSTATUS first, second, third;
} waiter;

static VOID NTAPI count_apc(PVOID a, PVOID b, PVOID c)
{
    (void)b;
    (void)c;
    plat_fetch_add32(&((waiter *)a)->apcs, 1);
}

static void alertable_waiter(void *arg)
{
    waiter *w = arg;
    ObOpenObjectByPointer(PsGetCurrentThread(), 0, NULL, THREAD_ALL_ACCESS, *PsThreadType, KernelMode, &w->self);
    plat_store32(&w->ready, 1);
    w->first = NtWaitForSingleObject(w->ev, TRUE, NULL);  /* broken by an APC */
    w->second = NtWaitForSingleObject(w->ev, TRUE, NULL); /* broken by an alert */
    LARGE_INTEGER ms = {.QuadPart = -10000};
    w->third = NtDelayExecution(TRUE, &ms); /* nothing pending: sleeps its 1 ms */
}

TEST(queued_apcs_and_alerts_break_alertable_waits)
{
    long handles = ob_open_handles();
    waiter w = {0};
    w.ev = u_event();
    plat_thread *t = plat_thread_start(alertable_waiter, &w, "waiter", 0);
    while (!plat_load32(&w.ready)) plat_sleep_ns(100000);
    CHECK_EQ(NtQueueApcThread(w.self, count_apc, &w, NULL, NULL), STATUS_SUCCESS);
    while (!plat_load32(&w.apcs)) plat_sleep_ns(100000);
    CHECK_EQ(NtAlertThread(w.self), STATUS_SUCCESS);
    plat_thread_join(t);
    CHECK_EQ(w.first, STATUS_USER_APC);
    CHECK_EQ(w.second, STATUS_ALERTED);
    CHECK_EQ(w.third, STATUS_SUCCESS);
    CHECK_EQ(w.apcs, 1);
    /* The thread is gone: its object is signalled and no APC can be queued to it. */
    CHECK_EQ(NtWaitForSingleObject(w.self, FALSE, NULL), STATUS_SUCCESS);
    CHECK_EQ(NtQueueApcThread(w.self, count_apc, &w, NULL, NULL), STATUS_THREAD_IS_TERMINATING);
    CHECK_EQ(NtQueueApcThread(NtCurrentThread(), NULL, NULL, NULL, NULL), STATUS_INVALID_PARAMETER);
    /* Our own queue: NtTestAlert runs it. */
    CHECK_EQ(NtQueueApcThread(NtCurrentThread(), count_apc, &w, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(w.apcs, 1);
    CHECK_EQ(NtTestAlert(), STATUS_SUCCESS);
    CHECK_EQ(w.apcs, 2);
    NtClose(w.self);
    NtClose(w.ev);
    CHECK_EQ(ob_open_handles(), handles);
}

TEST(event_services)
{
    long handles = ob_open_handles();
    HANDLE n, s;
    LONG prev = -1;
    LARGE_INTEGER zero = {.QuadPart = 0};
    CHECK_EQ(NtCreateEvent(&n, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE), STATUS_SUCCESS);
    CHECK_EQ(NtCreateEvent(&s, GENERIC_ALL, NULL, SynchronizationEvent, TRUE), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(n, FALSE, &zero), STATUS_TIMEOUT);
    CHECK_EQ(NtSetEvent(n, &prev), STATUS_SUCCESS);
    CHECK_EQ(prev, 0);
    CHECK_EQ(NtSetEvent(n, &prev), STATUS_SUCCESS);
    CHECK_EQ(prev, 1);
    CHECK_EQ(NtWaitForSingleObject(n, FALSE, &zero), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(n, FALSE, &zero), STATUS_SUCCESS); /* notification: stays set */
    CHECK_EQ(NtResetEvent(n, &prev), STATUS_SUCCESS);
    CHECK_EQ(prev, 1);
    CHECK_EQ(NtWaitForSingleObject(s, FALSE, &zero), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(s, FALSE, &zero), STATUS_TIMEOUT); /* synchronization: consumed */
    HANDLE both[2] = {n, s};
    NtSetEvent(s, NULL);
    CHECK_EQ(NtWaitForMultipleObjects(2, both, WaitAny, FALSE, &zero), STATUS_WAIT_1);
    CHECK_EQ(NtWaitForMultipleObjects(2, both, WaitAll, FALSE, &zero), STATUS_TIMEOUT);
    NtSetEvent(n, NULL);
    NtSetEvent(s, NULL);
    CHECK_EQ(NtWaitForMultipleObjects(2, both, WaitAll, FALSE, &zero), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForMultipleObjects(0, both, WaitAny, FALSE, &zero), STATUS_INVALID_PARAMETER_1);
    CHECK_EQ(NtClearEvent(n), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(n, FALSE, &zero), STATUS_TIMEOUT);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\BaseNamedObjects\\x");
    OBJECT_ATTRIBUTES oa;
    HANDLE named;
    InitializeObjectAttributes(&oa, &name, 0, NULL, NULL);
    CHECK_EQ(NtCreateEvent(&named, EVENT_ALL_ACCESS, &oa, NotificationEvent, FALSE), STATUS_NOT_SUPPORTED);
    CHECK_EQ(NtCreateEvent(&named, EVENT_ALL_ACCESS, NULL, (EVENT_TYPE)7, FALSE), STATUS_INVALID_PARAMETER);
    NtClose(n);
    NtClose(s);
    CHECK_EQ(ob_open_handles(), handles);
}

/* ---- a thread irpkit did not start */

typedef struct foreign {
    HANDLE file;
    IO_STATUS_BLOCK done, left;
    UCHAR buf[5], buf2[5];
    NTSTATUS read, wait;
} foreign;

static void *foreign_thread(void *arg)
{
    foreign *f = arg;
    HANDLE ev = u_event();
    plat_store32(&udrv.read_mode, UDRV_COMPLETE);
    f->read = NtReadFile(f->file, ev, NULL, NULL, &f->done, f->buf, 5, NULL, NULL);
    f->wait = NtWaitForSingleObject(ev, FALSE, NULL);
    NtClose(ev);
    /* Leave a request pending: this thread's exit must cancel it and wait (T62). */
    plat_store32(&udrv.read_mode, UDRV_QUEUE_CANCELABLE);
    NtReadFile(f->file, NULL, NULL, NULL, &f->left, f->buf2, 5, NULL, NULL);
    return NULL;
}

TEST(a_plain_pthread_issues_io_and_its_exit_cancels_what_it_left)
{
    long handles = ob_open_handles();
    udrv_load();
    foreign f = {0};
    f.left.Status = SENTINEL;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &f.file), STATUS_SUCCESS);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, foreign_thread, &f) == 0);
    pthread_join(t, NULL);
    CHECK_EQ(f.read, STATUS_SUCCESS);
    CHECK_EQ(f.wait, STATUS_SUCCESS);
    CHECK_EQ(f.done.Status, STATUS_SUCCESS);
    CHECK(!memcmp(f.buf, "abcde", 5));
    CHECK_EQ(f.left.Status, STATUS_CANCELLED); /* cancelled and completed before the thread ended */
    CHECK_EQ(udrv_queued(), 0);
    NtClose(f.file);
    u_check_clean(handles);
    udrv_unload();
}
