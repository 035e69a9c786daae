/* Stress: 2 reader threads x 50 000 overlapped 10-byte reads through the corrected seed sample
 * (immediately-completing device: StartIo -> DpcForIsr -> IoCompleteRequest on the DPC thread),
 * with random CancelIo by the readers and random CancelIoEx (all, or one request) and CancelIo
 * from two other threads. Every IO_STATUS_BLOCK must end STATUS_SUCCESS (10 bytes, the data) or
 * STATUS_CANCELLED; every event must be signalled exactly once per request and every completion
 * APC run exactly once in its issuing thread; nothing may leak (IRPs, handles, file objects,
 * system buffers) and no bug check may be reported. IRPK_STRESS_SCALE scales the count. */
#include <ntifs.h>

#include "hello_startio.h"
#include "io/io.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ke/ke.h"
#include "ob/ob.h"
#include "test.h"

#define READERS 2
#define WINDOW 8
#define SENTINEL ((NTSTATUS)0x7EADBEEF)

typedef struct slot {
    HANDLE ev;
    IO_STATUS_BLOCK iosb;
    UCHAR buf[10];
    int busy;
    long apcs; /* completion APCs run for this slot (in the reader thread) */
} slot;

typedef struct reader {
    HANDLE file;
    long target, issued, done, succeeded, cancelled, bad, events_early, apcs, cancel_io_calls;
    uint64_t rng;
    plat_thread *thread;
    slot slots[WINDOW];
} reader;

static reader readers[READERS];
static volatile int32_t readers_left;
static volatile int32_t ex_calls, ex_found;

static VOID NTAPI on_done(PVOID ctx, PIO_STATUS_BLOCK iosb, ULONG reserved)
{
    (void)iosb;
    (void)reserved;
    ((slot *)ctx)->apcs++;
}

static void issue(reader *r, slot *s)
{
    LARGE_INTEGER zero = {.QuadPart = 0};
    /* The previous request's signal was consumed by the wait; another one would show here. */
    if (NtWaitForSingleObject(s->ev, FALSE, &zero) != STATUS_TIMEOUT) r->events_early++;
    s->iosb.Status = SENTINEL;
    s->iosb.Information = 99;
    memset(s->buf, 0, sizeof s->buf);
    NTSTATUS st = NtReadFile(r->file, s->ev, on_done, s, &s->iosb, s->buf, sizeof s->buf, &zero, NULL);
    if (st != STATUS_PENDING && st != STATUS_SUCCESS && st != STATUS_CANCELLED) r->bad++;
    s->busy = 1;
    r->issued++;
}

static void check_done(reader *r, slot *s)
{
    NTSTATUS st = plat_load32((volatile int32_t *)&s->iosb.Status);
    if (st == STATUS_SUCCESS && s->iosb.Information == 10 && !memcmp(s->buf, "hello from", 10)) r->succeeded++;
    else if (st == STATUS_CANCELLED && s->iosb.Information == 0) r->cancelled++;
    else r->bad++;
    s->busy = 0;
    r->done++;
}

static void reader_main(void *arg)
{
    reader *r = arg;
    HANDLE evs[WINDOW];
    for (int i = 0; i < WINDOW; i++) evs[i] = r->slots[i].ev;
    while (r->done < r->target) {
        for (int i = 0; i < WINDOW && r->issued < r->target; i++)
            if (!r->slots[i].busy) issue(r, &r->slots[i]);
        if (irpk_test_rand(&r->rng) % 64 == 0) {
            IO_STATUS_BLOCK io;
            NtCancelIoFile(r->file, &io); /* returns once this thread's requests completed */
            r->cancel_io_calls++;
        }
        NTSTATUS w = NtWaitForMultipleObjects(WINDOW, evs, WaitAny, TRUE, NULL);
        if (w >= STATUS_WAIT_0 && w < STATUS_WAIT_0 + WINDOW) {
            slot *s = &r->slots[w - STATUS_WAIT_0];
            if (s->busy) check_done(r, s);
            else r->events_early++; /* an event set for no request */
        }
    }
    /* Completion APCs are queued after the event is set: collect the last ones. */
    long want = r->issued;
    for (int spins = 0; spins < 200000; spins++) {
        long got = 0;
        for (int i = 0; i < WINDOW; i++) got += r->slots[i].apcs;
        if (got >= want) break;
        LARGE_INTEGER us = {.QuadPart = -10};
        NtDelayExecution(TRUE, &us);
    }
    for (int i = 0; i < WINDOW; i++) r->apcs += r->slots[i].apcs;
    plat_fetch_add32(&readers_left, -1);
}

static void canceller_main(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    while (plat_load32(&readers_left) > 0) {
        reader *r = &readers[irpk_test_rand(&rng) % READERS];
        IO_STATUS_BLOCK io;
        uint64_t pick = irpk_test_rand(&rng);
        NTSTATUS st;
        if (pick % 8 == 0) st = NtCancelIoFileEx(r->file, NULL, &io);
        else if (pick % 8 == 1) st = NtCancelIoFile(r->file, &io); /* no I/O of ours: a no-op */
        else st = NtCancelIoFileEx(r->file, &r->slots[(pick >> 8) % WINDOW].iosb, &io);
        plat_fetch_add32(&ex_calls, 1);
        if (st == STATUS_SUCCESS) plat_fetch_add32(&ex_found, 1);
        else if (st != STATUS_NOT_FOUND) plat_panic("CancelIoEx: unexpected status");
        if (pick % 16 == 0) plat_sleep_ns(20000); /* leave the CPUs to the readers now and then */
        else plat_yield();
    }
}

TEST(two_readers_overlapped_reads_with_random_cancelio_and_cancelioex)
{
    long handles = ob_open_handles();
    long pool_before = ke_pool_outstanding();
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    HELLO_CONFIG hc = {FALSE, 0};
    HelloSetConfig(&hc);
    UNICODE_STRING drv = RTL_CONSTANT_STRING(L"\\Driver\\HelloStartIo");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&drv, HelloDriverEntry)));
    UNICODE_STRING name = RTL_CONSTANT_STRING(HELLO_DDK_LINK_NAME);
    OBJECT_ATTRIBUTES oa;
    IO_STATUS_BLOCK iosb;
    HANDLE file;
    InitializeObjectAttributes(&oa, &name, 0, NULL, NULL);
    REQUIRE(NtCreateFile(&file, GENERIC_READ | SYNCHRONIZE, &oa, &iosb, NULL, 0, 0, FILE_OPEN, 0, NULL, 0) ==
            STATUS_SUCCESS);
    long per_reader = irpk_test_scale(50000);
    memset(readers, 0, sizeof readers);
    plat_store32(&readers_left, READERS);
    for (int i = 0; i < READERS; i++) {
        readers[i].file = file;
        readers[i].target = per_reader;
        readers[i].rng = 1000 + (uint64_t)i;
        for (int j = 0; j < WINDOW; j++)
            REQUIRE(NtCreateEvent(&readers[i].slots[j].ev, EVENT_ALL_ACCESS, NULL, SynchronizationEvent, FALSE) ==
                    STATUS_SUCCESS);
    }
    char name_buf[2][16];
    for (int i = 0; i < READERS; i++) {
        snprintf(name_buf[i], sizeof name_buf[i], "reader-%d", i + 1);
        readers[i].thread = plat_thread_start(reader_main, &readers[i], name_buf[i], 0);
    }
    plat_thread *c1 = plat_thread_start(canceller_main, (void *)(uintptr_t)7, "canceller-1", 0);
    plat_thread *c2 = plat_thread_start(canceller_main, (void *)(uintptr_t)8, "canceller-2", 0);
    for (int i = 0; i < READERS; i++) plat_thread_join(readers[i].thread);
    plat_thread_join(c1);
    plat_thread_join(c2);
    long succeeded = 0, cancelled = 0;
    for (int i = 0; i < READERS; i++) {
        reader *r = &readers[i];
        CHECK_EQ(r->issued, per_reader);
        CHECK_EQ(r->done, per_reader);
        CHECK_EQ(r->bad, 0);
        CHECK_EQ(r->events_early, 0);
        CHECK_EQ(r->apcs, per_reader); /* one APC per request */
        LARGE_INTEGER zero = {.QuadPart = 0};
        for (int j = 0; j < WINDOW; j++) {
            CHECK_EQ(NtWaitForSingleObject(r->slots[j].ev, FALSE, &zero), STATUS_TIMEOUT); /* no extra signal */
            NtClose(r->slots[j].ev);
        }
        succeeded += r->succeeded;
        cancelled += r->cancelled;
    }
    printf("  %ld reads: %ld succeeded, %ld cancelled; CancelIoEx/CancelIo calls %d (%d found something)\n",
           succeeded + cancelled, succeeded, cancelled, (int)plat_load32(&ex_calls), (int)plat_load32(&ex_found));
    CHECK(succeeded > 0);
    CHECK_EQ(NtClose(file), STATUS_SUCCESS);
    CHECK_EQ(irpk_user_flush(30000), 0);
    KeFlushQueuedDpcs();
    CHECK_EQ(io_unload_driver(io_lookup_driver(L"HelloStartIo")), 0);
    irpk_user_stats s;
    irpk_user_get_stats(&s);
    CHECK_EQ(s.irps_pending, 0);
    CHECK_EQ(s.files_live, 0);
    CHECK_EQ(ob_open_handles(), handles);
    CHECK_EQ(io_irps_live(), 0);
    CHECK_EQ(ke_pool_outstanding(), pool_before); /* system buffers */
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "%s\n", irpk_report_text(0));
}
