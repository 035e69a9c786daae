/* The IRP adapter (irpkit/irpqueue.h): a WDM driver whose DispatchRead calls irpk_irpq_submit
 * and whose handler replaces StartIo. Every case checks what the originator sees (completion
 * routine calls, status, information), what the handler saw (IRQL, thread, order), that no
 * report or bug check was raised and that no IRP leaked. The stress cases check exactly-once
 * completion under concurrent IoCancelIrp; test_irp_adapter_explore runs the races under the
 * explorer (a separate process: no native thread may run while the explorer does). */
#include <ntddk.h>

#include "io/io.h"
#include "irpkit/irpqueue.h"
#include "irpkit/thread.h"
#include "irpkit/verifier.h"
#include "test.h"

#define MAXI 64

/* ------------------------------------------------------------------ the test driver */

static struct {
    PDEVICE_OBJECT dev;
    irpk_irpq *q;
    irpk_irpq_config cfg;
    /* handler records */
    int nhandled;
    PIRP handled[MAXI];
    KIRQL irql[MAXI];
    plat_thread *thread[MAXI];
    int depth, max_depth;
    int complete_inline;   /* handler completes with STATUS_SUCCESS, 7 bytes */
    int complete_twice;    /* ... and then tries again (must fail) */
    int second_rc;
    int ncancel_notify;
    PIRP notified[MAXI];
    volatile uint32_t handled_word; /* bumped per handler call (worker-thread cases wait on it) */
} T;

/* the originator's view, per IRP (index in DriverContext is the adapter's: use a side table) */
static struct {
    PIRP irp;
    volatile int32_t completions; /* atomic: a closer or worker thread may complete */
    NTSTATUS status;              /* written before the count, read after it */
    ULONG_PTR info;
    PIRP cancel_next; /* the completion routine cancels this IRP (nested cancel routines) */
} O[MAXI];
static int n_irps;

static VOID handler(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)ctx;
    if (++T.depth > T.max_depth) T.max_depth = T.depth;
    int i = T.nhandled++;
    T.handled[i] = irp;
    T.irql[i] = KeGetCurrentIrql();
    T.thread[i] = plat_self();
    if (T.complete_inline) {
        CHECK_EQ(irpk_irpq_complete(q, irp, STATUS_SUCCESS, 7), 0);
        if (T.complete_twice) T.second_rc = irpk_irpq_complete(q, irp, STATUS_SUCCESS, 9);
    }
    T.depth--;
    plat_fetch_add32((volatile int32_t *)&T.handled_word, 1);
    plat_wake(&T.handled_word, INT32_MAX);
}

static VOID on_cancel(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)q, (void)ctx;
    T.notified[T.ncancel_notify++] = irp;
}

static NTSTATUS dispatch_read(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    uint64_t key = IoGetCurrentIrpStackLocation(irp)->Parameters.Read.Key;
    return irpk_irpq_submit(T.q, irp, &key);
}

static NTSTATUS driver_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\IrpqTest");
    drv->MajorFunction[IRP_MJ_READ] = dispatch_read;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &T.dev);
    if (NT_SUCCESS(st)) T.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

static int irp_index(PIRP irp)
{
    for (int i = 0; i < n_irps; i++)
        if (O[i].irp == irp) return i;
    return -1;
}

static NTSTATUS originator_done(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    int i = (int)(intptr_t)ctx;
    O[i].status = irp->IoStatus.Status;
    O[i].info = irp->IoStatus.Information;
    plat_fetch_add32(&O[i].completions, 1);
    if (O[i].cancel_next) IoCancelIrp(O[i].cancel_next);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the test frees it at teardown */
}

static void setup_cfg(void)
{
    memset(&T, 0, sizeof T);
    memset(O, 0, sizeof O);
    n_irps = 0;
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    irpk_irpq_config_init(&T.cfg);
    T.cfg.handler = handler;
}

static void start(void)
{
    REQUIRE(irpk_irpq_create(&T.cfg, &T.q) == 0);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\IrpqTest");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&name, driver_entry)));
}

static void setup(void)
{
    setup_cfg();
    start();
}

static PIRP new_irp(PFILE_OBJECT fo, ULONG key)
{
    PIRP irp = IoAllocateIrp(1, FALSE);
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->MajorFunction = IRP_MJ_READ;
    sp->FileObject = fo;
    sp->Parameters.Read.Key = key;
    int i = n_irps++;
    O[i].irp = irp;
    IoSetCompletionRoutine(irp, originator_done, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    return irp;
}

static PIRP send(PFILE_OBJECT fo)
{
    PIRP irp = new_irp(fo, 0);
    CHECK_EQ(IoCallDriver(T.dev, irp), STATUS_PENDING);
    return irp;
}

static int completions(PIRP irp) { return plat_load32(&O[irp_index(irp)].completions); }
static NTSTATUS status_of(PIRP irp) { return O[irp_index(irp)].status; }

static void teardown(void)
{
    CHECK_EQ(irpk_irpq_free(T.q), 0);
    PDRIVER_OBJECT drv = io_lookup_driver(L"IrpqTest");
    if (drv) {
        IoDeleteDevice(T.dev);
        CHECK_EQ(io_unload_driver(drv), 0);
    }
    for (int i = 0; i < n_irps; i++) {
        CHECK_EQ(plat_load32(&O[i].completions), 1); /* every IRP completed exactly once */
        IoFreeIrp(O[i].irp);
    }
    CHECK_EQ(irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "  first report: %s\n", irpk_report_text(0));
    CHECK_EQ(io_irps_live(), 0);
}

/* ------------------------------------------------------------------ submit / complete */

TEST(submit_on_idle_queue_runs_handler_inline_and_complete_finishes_the_irp)
{
    setup();
    PIRP a = send(NULL);
    CHECK_EQ(T.nhandled, 1);
    CHECK_PTR(T.handled[0], a);
    CHECK_PTR(T.thread[0], plat_self()); /* StartIo-like: on the submitting thread */
    CHECK_EQ(T.irql[0], PASSIVE_LEVEL);  /* CALLER mode: the dispatch routine's IRQL */
    CHECK(a->PendingReturned || (IoGetNextIrpStackLocation(a)->Control & SL_PENDING_RETURNED) ||
          completions(a) == 0);
    CHECK_EQ(completions(a), 0);
    CHECK_EQ(irpk_irpq_is_cancelled(T.q, a), 0);
    CHECK_EQ(irpk_irpq_complete(T.q, a, STATUS_SUCCESS, 11), 0);
    CHECK_EQ(completions(a), 1);
    CHECK_EQ(status_of(a), STATUS_SUCCESS);
    CHECK_EQ(O[0].info, 11);
    CHECK(a->PendingReturned); /* marked pending by the adapter */
    CHECK_EQ(irpk_irpq_is_cancelled(T.q, a), IRPK_QE_STALE);
    teardown();
}

TEST(busy_queue_dispatches_one_at_a_time_in_order)
{
    setup();
    PIRP a = send(NULL), b = send(NULL), c = send(NULL);
    CHECK_EQ(T.nhandled, 1);
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 0), IRPK_QE_NOTOWNER); /* still queued */
    CHECK_EQ(completions(b), 0);
    CHECK_EQ(irpk_irpq_complete(T.q, a, STATUS_SUCCESS, 0), 0);
    CHECK_EQ(T.nhandled, 2); /* completing a started b on this thread */
    CHECK_PTR(T.handled[1], b);
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_END_OF_FILE, 0), 0);
    CHECK_PTR(T.handled[2], c);
    CHECK_EQ(irpk_irpq_complete(T.q, c, STATUS_SUCCESS, 0), 0);
    CHECK_EQ(status_of(b), STATUS_END_OF_FILE);
    CHECK_EQ(T.max_depth, 1);
    teardown();
}

TEST(handler_completing_inline_is_iteration_not_recursion)
{
    setup_cfg();
    T.complete_inline = 1;
    start();
    /* Hold the queue busy with a stopped dispatcher, queue 40 IRPs, then let it run. */
    REQUIRE(irpk_queue_stop_sync(irpk_irpq_queue(T.q)) == 0);
    PIRP irps[40];
    for (int i = 0; i < 40; i++) irps[i] = send(NULL);
    CHECK_EQ(T.nhandled, 0);
    CHECK_EQ(irpk_queue_start(irpk_irpq_queue(T.q)), 0);
    CHECK_EQ(T.nhandled, 40);
    CHECK_EQ(T.max_depth, 1);
    for (int i = 0; i < 40; i++) {
        CHECK_PTR(T.handled[i], irps[i]);
        CHECK_EQ(completions(irps[i]), 1);
        CHECK_EQ(O[i].info, 7);
    }
    teardown();
}

TEST(complete_twice_is_an_error_not_a_bug_check)
{
    setup_cfg();
    T.complete_inline = 1;
    T.complete_twice = 1;
    start();
    PIRP a = send(NULL); /* the handler completes it, then tries again in the same call */
    CHECK(T.second_rc == IRPK_QE_ALREADY || T.second_rc == IRPK_QE_STALE);
    CHECK_EQ(completions(a), 1);
    CHECK_EQ(O[0].info, 7); /* the second call changed nothing */
    CHECK(irpk_irpq_complete(T.q, a, STATUS_SUCCESS, 5) == IRPK_QE_STALE); /* and afterwards */
    CHECK_EQ(completions(a), 1);
    CHECK_EQ(O[0].info, 7);
    T.complete_inline = 0;
    PIRP b = send(NULL); /* completed from "another context" (not its handler frame) */
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 1), 0);
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 2), IRPK_QE_STALE);
    CHECK_EQ(completions(b), 1);
    CHECK_EQ(O[1].info, 1);
    CHECK_EQ(irpk_report_count(), 0); /* no 0x44 */
    teardown();
}

/* ------------------------------------------------------------------ cancellation */

TEST(cancel_of_a_queued_irp_returns_true_and_completes_it_cancelled_once)
{
    setup();
    PIRP a = send(NULL), b = send(NULL), c = send(NULL);
    CHECK(IoCancelIrp(b));
    CHECK_EQ(completions(b), 1);
    CHECK_EQ(status_of(b), STATUS_CANCELLED);
    CHECK_EQ(O[1].info, 0);
    CHECK(IoCancelIrp(b) == FALSE); /* completed: no routine left to call */
    CHECK_EQ(completions(b), 1);
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 0), IRPK_QE_STALE);
    CHECK_EQ(irpk_irpq_complete(T.q, a, STATUS_SUCCESS, 0), 0);
    CHECK_EQ(T.nhandled, 2);
    CHECK_PTR(T.handled[1], c); /* b never reached the handler */
    CHECK_EQ(irpk_irpq_complete(T.q, c, STATUS_SUCCESS, 0), 0);
    teardown();
}

/* IoCancelIrp(b) completes b inside b's own cancel routine (the adapter skips its handshake
 * there); b's completion routine cancels c, whose cancel routine now runs nested in b's, and
 * whose completion is delivered after b's (not nested: the queue never nests its callbacks),
 * so c takes the handshake path. Both end exactly once, cancelled, before IoCancelIrp(b)
 * returns; close does not wait for a cancel routine that is not there (teardown). */
TEST(completion_routine_cancelling_another_queued_irp_from_inside_a_cancel_completes_both_once)
{
    setup();
    PIRP a = send(NULL), b = send(NULL), c = send(NULL), d = send(NULL);
    O[irp_index(b)].cancel_next = c;
    CHECK(IoCancelIrp(b));
    CHECK_EQ(completions(b), 1);
    CHECK_EQ(status_of(b), STATUS_CANCELLED);
    CHECK_EQ(completions(c), 1);
    CHECK_EQ(status_of(c), STATUS_CANCELLED);
    CHECK_EQ(completions(d), 0);
    CHECK_EQ(irpk_irpq_complete(T.q, a, STATUS_SUCCESS, 0), 0);
    CHECK_EQ(T.nhandled, 2);
    CHECK_PTR(T.handled[1], d); /* b and c never reached the handler */
    CHECK_EQ(irpk_irpq_complete(T.q, d, STATUS_SUCCESS, 0), 0);
    teardown();
}

TEST(cancel_of_a_running_irp_sets_the_flag_and_notifies_the_handler)
{
    setup_cfg();
    T.cfg.on_cancel = on_cancel;
    start();
    PIRP a = send(NULL);
    CHECK(IoCancelIrp(a)); /* the adapter's routine ran: TRUE, as for any cancelable IRP */
    CHECK_EQ(completions(a), 0); /* running: the handler decides */
    CHECK_EQ(irpk_irpq_is_cancelled(T.q, a), 1);
    CHECK_EQ(T.ncancel_notify, 1);
    CHECK_PTR(T.notified[0], a);
    CHECK(IoCancelIrp(a) == FALSE); /* the routine is gone: cancelled once */
    CHECK_EQ(T.ncancel_notify, 1);
    CHECK_EQ(irpk_irpq_complete(T.q, a, STATUS_CANCELLED, 0), 0);
    CHECK_EQ(completions(a), 1);
    CHECK_EQ(status_of(a), STATUS_CANCELLED);
    teardown();
}

TEST(irp_cancelled_before_submit_is_completed_cancelled_not_lost)
{
    setup();
    PIRP a = new_irp(NULL, 0);
    CHECK(IoCancelIrp(a) == FALSE); /* no cancel routine yet: only Irp->Cancel is set (R3) */
    CHECK_EQ(IoCallDriver(T.dev, a), STATUS_PENDING);
    CHECK_EQ(completions(a), 1);
    CHECK_EQ(status_of(a), STATUS_CANCELLED);
    CHECK_EQ(T.nhandled, 0);
    PIRP b = send(NULL); /* the queue is not affected */
    CHECK_EQ(T.nhandled, 1);
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 0), 0);
    teardown();
}

TEST(cleanup_cancels_exactly_the_irps_of_one_file_object)
{
    setup_cfg();
    T.cfg.on_cancel = on_cancel;
    start();
    FILE_OBJECT fa = {.Type = IO_TYPE_FILE}, fb = {.Type = IO_TYPE_FILE};
    PIRP a0 = send(&fa), b0 = send(&fb), a1 = send(&fa), b1 = send(&fb), a2 = send(&fa);
    size_t removed = 99, requested = 99;
    CHECK_EQ(irpk_irpq_cancel_file(T.q, &fa, &removed, &requested), 0);
    CHECK_EQ(removed, 2);   /* a1, a2 queued */
    CHECK_EQ(requested, 1); /* a0 running */
    CHECK_EQ(completions(a1), 1);
    CHECK_EQ(status_of(a1), STATUS_CANCELLED);
    CHECK_EQ(completions(a2), 1);
    CHECK_EQ(completions(a0), 0);
    CHECK_EQ(irpk_irpq_is_cancelled(T.q, a0), 1);
    CHECK_EQ(T.ncancel_notify, 1);
    CHECK_EQ(completions(b0) + completions(b1), 0);
    CHECK_EQ(irpk_irpq_cancel_file(T.q, NULL, NULL, NULL), IRPK_QE_INVAL);
    CHECK_EQ(irpk_irpq_complete(T.q, a0, STATUS_CANCELLED, 0), 0);
    CHECK_PTR(T.handled[1], b0);
    CHECK_EQ(irpk_irpq_complete(T.q, b0, STATUS_SUCCESS, 0), 0);
    CHECK_PTR(T.handled[2], b1);
    CHECK_EQ(irpk_irpq_complete(T.q, b1, STATUS_SUCCESS, 0), 0);
    teardown();
}

static volatile int32_t close_returned;
static void closer(void *arg)
{
    CHECK_EQ(irpk_irpq_close(arg), 0);
    plat_store32(&close_returned, 1);
}

TEST(close_completes_queued_irps_cancelled_and_waits_for_running_ones)
{
    setup();
    PIRP a = send(NULL), b = send(NULL);
    close_returned = 0;
    plat_thread *t = plat_thread_start(closer, T.q, "closer", 0);
    /* b is completed as cancelled by the close; a is running and keeps the close waiting. */
    int64_t deadline = plat_now_ns() + 5000000000LL;
    while (!completions(b) && plat_now_ns() < deadline) plat_sleep_ns(100000);
    CHECK_EQ(completions(b), 1);
    CHECK_EQ(status_of(b), STATUS_CANCELLED);
    CHECK_EQ(plat_load32(&close_returned), 0);
    CHECK_EQ(irpk_irpq_is_cancelled(T.q, a), 1); /* the close told the running IRP */
    CHECK_EQ(irpk_irpq_complete(T.q, a, STATUS_CANCELLED, 0), 0);
    plat_thread_join(t);
    CHECK_EQ(plat_load32(&close_returned), 1);
    CHECK_EQ(completions(a), 1);
    PIRP c = send(NULL); /* after close: refused, completed at once */
    CHECK_EQ(completions(c), 1);
    CHECK_EQ(status_of(c), STATUS_DEVICE_NOT_READY);
    CHECK_EQ(T.nhandled, 1);
    teardown();
}

/* ------------------------------------------------------------------ where handlers run */

static void wait_handled(int n)
{
    int64_t deadline = plat_now_ns() + 5000000000LL;
    for (;;) {
        uint32_t seen = (uint32_t)plat_load32((volatile int32_t *)&T.handled_word);
        if ((int)seen >= n || plat_now_ns() >= deadline) return;
        plat_wait(&T.handled_word, seen, deadline);
    }
}

/* Complete an IRP the way a DPC does: at DISPATCH_LEVEL. */
static void complete_at_dispatch(PIRP irp)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    CHECK_EQ(irpk_irpq_complete(T.q, irp, STATUS_SUCCESS, 0), 0);
    KeLowerIrql(old);
}

TEST(handler_irql_caller_runs_at_the_dispatching_threads_irql)
{
    setup();
    PIRP a = send(NULL), b = send(NULL);
    complete_at_dispatch(a); /* b is dispatched by the completing "DPC": at DISPATCH_LEVEL */
    CHECK_EQ(T.nhandled, 2);
    CHECK_EQ(T.irql[0], PASSIVE_LEVEL);
    CHECK_EQ(T.irql[1], DISPATCH_LEVEL);
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 0), 0);
    teardown();
}

TEST(handler_irql_dispatch_always_runs_at_dispatch_level_like_startio)
{
    setup_cfg();
    T.cfg.handler_irql = IRPK_IRPQ_IRQL_DISPATCH;
    start();
    PIRP a = send(NULL), b = send(NULL);
    complete_at_dispatch(a);
    CHECK_EQ(T.irql[0], DISPATCH_LEVEL);
    CHECK_EQ(T.irql[1], DISPATCH_LEVEL);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL); /* restored */
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 0), 0);
    teardown();
}

TEST(handler_irql_passive_defers_to_a_worker_when_dispatched_from_dispatch_level)
{
    setup_cfg();
    T.cfg.handler_irql = IRPK_IRPQ_IRQL_PASSIVE;
    start();
    PIRP a = send(NULL), b = send(NULL);
    CHECK_EQ(T.irql[0], PASSIVE_LEVEL);
    CHECK_PTR(T.thread[0], plat_self()); /* PASSIVE already: inline */
    complete_at_dispatch(a);             /* b's dispatch happens at DISPATCH_LEVEL ... */
    wait_handled(2);
    REQUIRE(T.nhandled == 2);
    CHECK_PTR(T.handled[1], b);
    CHECK_EQ(T.irql[1], PASSIVE_LEVEL); /* ... so it ran on the worker, at PASSIVE_LEVEL */
    CHECK(T.thread[1] != plat_self());
    CHECK_EQ(irpk_irpq_complete(T.q, b, STATUS_SUCCESS, 3), 0); /* from another thread */
    CHECK_EQ(completions(b), 1);
    CHECK_EQ(O[1].info, 3);
    teardown();
}

TEST(bad_configurations_are_rejected)
{
    irpk_irpq_config c;
    irpk_irpq *q;
    irpk_irpq_config_init(&c);
    CHECK_EQ(irpk_irpq_create(&c, &q), IRPK_QE_INVAL); /* no handler */
    c.handler = handler;
    c.mode = IRPK_QUEUE_MANUAL;
    CHECK_EQ(irpk_irpq_create(&c, &q), IRPK_QE_INVAL);
    c.mode = IRPK_QUEUE_SEQUENTIAL;
    c.handler_irql = (irpk_irpq_irql)7;
    CHECK_EQ(irpk_irpq_create(&c, &q), IRPK_QE_INVAL);
    CHECK_EQ(irpk_irpq_create(NULL, &q), IRPK_QE_INVAL);
    CHECK_EQ(irpk_irpq_complete(NULL, NULL, 0, 0), IRPK_QE_INVAL);
    CHECK_EQ(irpk_irpq_free(NULL), IRPK_QE_INVAL);
}

/* ------------------------------------------------------------------ stress */

#define S_READERS 4
#define S_WINDOW 8

/* The stress driver: the handler completes some IRPs inline, hands the rest to a device
 * thread that completes them (with STATUS_CANCELLED when the flag is set). */
static struct {
    volatile plat_lockword lock;
    PIRP ring[S_READERS * S_WINDOW + 1];
    int head, tail;
    volatile uint32_t word;
    volatile int32_t quit;
    volatile int32_t ncompl, ncancelled_status, ncancel_true, ncancel_calls;
    struct slot {
        PIRP irp;
        void *volatile published;
        volatile int32_t completions;
        volatile int32_t done;
    } slots[S_READERS][S_WINDOW];
    volatile int32_t readers_left;
    long per_reader;
} S;

static VOID stress_handler(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)ctx;
    if ((((uintptr_t)irp >> 4) ^ (uintptr_t)plat_self()) % 3 == 0) {
        irpk_irpq_complete(q, irp, irpk_irpq_is_cancelled(q, irp) == 1 ? STATUS_CANCELLED : STATUS_SUCCESS, 1);
        return;
    }
    plat_lock_acquire(&S.lock);
    S.ring[S.tail] = irp;
    S.tail = (S.tail + 1) % (S_READERS * S_WINDOW + 1);
    plat_lock_release(&S.lock);
    plat_fetch_add32((volatile int32_t *)&S.word, 1);
    plat_wake(&S.word, 1);
}

static void device_main(void *arg)
{
    (void)arg;
    for (;;) {
        uint32_t seen = (uint32_t)plat_load32((volatile int32_t *)&S.word);
        plat_lock_acquire(&S.lock);
        PIRP irp = S.head != S.tail ? S.ring[S.head] : NULL;
        if (irp) S.head = (S.head + 1) % (S_READERS * S_WINDOW + 1);
        plat_lock_release(&S.lock);
        if (irp) {
            KIRQL old;
            KeRaiseIrql(DISPATCH_LEVEL, &old); /* as a DPC would */
            int c = irpk_irpq_is_cancelled(T.q, irp);
            CHECK_EQ(irpk_irpq_complete(T.q, irp, c == 1 ? STATUS_CANCELLED : STATUS_SUCCESS, 2), 0);
            KeLowerIrql(old);
            continue;
        }
        if (plat_load32(&S.quit)) return;
        plat_wait(&S.word, seen, PLAT_FOREVER);
    }
}

static NTSTATUS stress_done(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev);
    struct slot *s = ctx;
    plat_fetch_add32(&s->completions, 1);
    if (irp->IoStatus.Status == STATUS_CANCELLED) plat_fetch_add32(&S.ncancelled_status, 1);
    plat_fetch_add32(&S.ncompl, 1);
    plat_store32(&s->done, 1);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static void stress_reader(void *arg)
{
    int me = (int)(intptr_t)arg;
    long issued = 0;
    while (issued < S.per_reader) {
        for (int j = 0; j < S_WINDOW && issued < S.per_reader; j++) {
            struct slot *s = &S.slots[me][j];
            if (s->irp) {
                if (!plat_load32(&s->done)) continue;
                /* Reclaim: take the published reference back unless the canceller has it. */
                PIRP p = plat_xchg_ptr(&s->published, NULL);
                if (p) io_irp_unref(p);
                CHECK_EQ(plat_load32(&s->completions), 1);
                IoFreeIrp(s->irp);
                s->irp = NULL;
            }
            PIRP irp = IoAllocateIrp(1, FALSE);
            PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
            sp->MajorFunction = IRP_MJ_READ;
            IoSetCompletionRoutine(irp, stress_done, s, TRUE, TRUE, TRUE);
            s->irp = irp;
            s->completions = 0;
            plat_store32(&s->done, 0);
            io_irp_ref(irp); /* the canceller's reference */
            plat_store_ptr(&s->published, irp);
            issued++;
            IoCallDriver(T.dev, irp);
        }
        plat_yield();
    }
    for (int j = 0; j < S_WINDOW; j++) {
        struct slot *s = &S.slots[me][j];
        if (!s->irp) continue;
        while (!plat_load32(&s->done)) plat_yield();
        PIRP p = plat_xchg_ptr(&s->published, NULL);
        if (p) io_irp_unref(p);
        CHECK_EQ(plat_load32(&s->completions), 1);
        IoFreeIrp(s->irp);
        s->irp = NULL;
    }
    plat_fetch_add32(&S.readers_left, -1);
}

static void stress_canceller(void *arg)
{
    uint64_t x = 0x5eed;
    (void)arg;
    while (plat_load32(&S.readers_left) > 0) {
        uint64_t r = irpk_test_rand(&x);
        struct slot *s = &S.slots[r % S_READERS][(r >> 8) % S_WINDOW];
        PIRP irp = plat_xchg_ptr(&s->published, NULL);
        if (!irp) continue;
        plat_fetch_add32(&S.ncancel_calls, 1);
        if (IoCancelIrp(irp)) plat_fetch_add32(&S.ncancel_true, 1);
        io_irp_unref(irp);
        if (r & 1) plat_yield();
    }
}

static void run_stress(irpk_irpq_irql irql)
{
    setup_cfg();
    T.cfg.handler = stress_handler;
    T.cfg.handler_irql = irql;
    start();
    memset(&S, 0, sizeof S);
    plat_lock_init(&S.lock);
    S.per_reader = irpk_test_scale(25000);
    S.readers_left = S_READERS;
    plat_thread *dev = plat_thread_start(device_main, NULL, "device", 0);
    plat_thread *r[S_READERS];
    for (int i = 0; i < S_READERS; i++)
        r[i] = plat_thread_start(stress_reader, (void *)(intptr_t)i, "reader", 0);
    plat_thread *c = plat_thread_start(stress_canceller, NULL, "canceller", 0);
    for (int i = 0; i < S_READERS; i++) plat_thread_join(r[i]);
    plat_thread_join(c);
    plat_store32(&S.quit, 1);
    plat_fetch_add32((volatile int32_t *)&S.word, 1);
    plat_wake(&S.word, 1);
    plat_thread_join(dev);
    long total = S_READERS * S.per_reader;
    CHECK_EQ(plat_load32(&S.ncompl), total); /* each completion routine ran exactly once */
    irpk_queue_stats st;
    irpk_queue_stats_get(irpk_irpq_queue(T.q), &st);
    CHECK_EQ(st.submitted, st.completed + st.cancelled);
    CHECK_EQ(st.live, 0);
    printf("  %ld IRPs, %d IoCancelIrp (%d TRUE), %d completed STATUS_CANCELLED (%llu removed "
           "while queued)\n",
           total, (int)S.ncancel_calls, (int)S.ncancel_true, (int)S.ncancelled_status,
           (unsigned long long)st.cancelled);
    teardown();
}

TEST(stress_4_readers_random_iocancelirp_every_irp_completed_exactly_once)
{
    run_stress(IRPK_IRPQ_IRQL_CALLER);
}

TEST(stress_passive_handlers_random_iocancelirp_every_irp_completed_exactly_once)
{
    run_stress(IRPK_IRPQ_IRQL_PASSIVE);
}

