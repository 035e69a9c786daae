/* The IRP adapter under the race explorer: the built-in "hello-queue" scenario (the seed's
 * sample on the adapter) and three adapter races — a running IRP completed by its device while
 * IoCancelIrp and a second completer race it, submit racing IoCancelIrp (the R3 window), and
 * file-object cleanup racing completion, cancel and close. Each is explored exhaustively to
 * preemption bound 2 (bound 1 under the sanitizers): every IRP completed exactly once, the
 * cancel never lost, no report. */
#include <ntddk.h>

#include "explore/scenarios.h"
#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/irpqueue.h"
#include "irpkit/thread.h"
#include "irpkit/verifier.h"
#include "test.h"


static void explore_ok(irpk_scenario_fn fn, const char *what)
{
    irpk_reports_set_quiet(1);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    /* Bound 2 natively; the sanitizer runs (IRPK_STRESS_SCALE < 1) use bound 1. */
    o.bound = irpk_test_scale(10) >= 10 ? 2 : 1;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(fn, NULL, &o, &r), 0);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONE);
    if (r.failure) fprintf(stderr, "  %s: %s: %s\n%s\n", what, r.what, r.message, r.schedule);
    CHECK(r.exhaustive);
    printf("  %s: %llu executions, exhaustive to bound %u\n", what, (unsigned long long)r.executions,
           r.bound);
    irpk_explore_result_free(&r);
}

TEST(explore_hello_queue_scenario_is_race_free_to_bound_2)
{
    const xscenario *sc = xscenario_find("hello-queue");
    REQUIRE(sc != NULL);
    explore_ok(sc->fn, sc->name);
}

/* The explorer's own scenarios run the adapter in a fresh runtime per execution: a driver, one
 * running IRP, and racing threads. */
static struct {
    PDEVICE_OBJECT dev;
    irpk_irpq *q;
    PIRP irp[2];
    int32_t completions[2];
    NTSTATUS status[2];
    int rc_a, rc_b;
    PIRP volatile started;
} X;

static NTSTATUS x_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    X.status[(intptr_t)ctx] = irp->IoStatus.Status;
    plat_fetch_add32(&X.completions[(intptr_t)ctx], 1);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static VOID x_handler(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)q, (void)ctx;
    plat_store_ptr((void *volatile *)&X.started, irp);
}

static NTSTATUS x_read(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    return irpk_irpq_submit(X.q, irp, NULL);
}

static NTSTATUS x_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\IrpqX");
    drv->MajorFunction[IRP_MJ_READ] = x_read;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &X.dev);
    if (NT_SUCCESS(st)) X.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

static void x_setup(PFILE_OBJECT fo)
{
    memset(&X, 0, sizeof X);
    irpk_irpq_config c;
    irpk_irpq_config_init(&c);
    c.handler = x_handler;
    IRPK_EXPLORE_CHECK(irpk_irpq_create(&c, &X.q) == 0);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\IrpqX");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, x_entry)));
    for (int i = 0; i < 2; i++) {
        X.irp[i] = IoAllocateIrp(1, FALSE);
        IoGetNextIrpStackLocation(X.irp[i])->MajorFunction = IRP_MJ_READ;
        IoGetNextIrpStackLocation(X.irp[i])->FileObject = fo;
        IoSetCompletionRoutine(X.irp[i], x_done, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
}

static void x_check_end(void)
{
    for (int i = 0; i < 2; i++)
        if (X.completions[i] != 1)
            irpk_explore_fail("IRP %d completed %d times", i, (int)X.completions[i]);
    irpk_queue_stats st;
    irpk_queue_stats_get(irpk_irpq_queue(X.q), &st);
    IRPK_EXPLORE_CHECK(st.live == 0);
    IRPK_EXPLORE_CHECK(irpk_irpq_free(X.q) == 0);
}

static void x_join2(irpk_thread_fn a, irpk_thread_fn b)
{
    irpk_thread *t[2] = {irpk_thread_start(a, NULL, "a"), irpk_thread_start(b, NULL, "b")};
    irpk_thread_join(t[0]);
    irpk_thread_join(t[1]);
}

/* 1. A running IRP: its device completes it while another thread calls IoCancelIrp and a
 *    buggy second completer completes it too. Exactly one completion, one error. */
static void x_device_complete(void *a)
{
    (void)a;
    X.rc_a = irpk_irpq_complete(X.q, X.irp[0], STATUS_SUCCESS, 0);
}
static void x_cancel_and_complete_again(void *a)
{
    (void)a;
    IoCancelIrp(X.irp[0]);
    X.rc_b = irpk_irpq_complete(X.q, X.irp[0], STATUS_CANCELLED, 0);
}
static void running_complete_cancel_double(void *arg)
{
    (void)arg;
    x_setup(NULL);
    IoCallDriver(X.dev, X.irp[0]);
    IoCallDriver(X.dev, X.irp[1]); /* queued behind it */
    x_join2(x_device_complete, x_cancel_and_complete_again);
    IRPK_EXPLORE_CHECK((X.rc_a == 0) != (X.rc_b == 0)); /* exactly one completer won */
    IRPK_EXPLORE_CHECK(X.rc_a == 0 || X.rc_a == IRPK_QE_STALE || X.rc_a == IRPK_QE_ALREADY);
    IRPK_EXPLORE_CHECK(X.rc_b == 0 || X.rc_b == IRPK_QE_STALE || X.rc_b == IRPK_QE_ALREADY);
    IRPK_EXPLORE_CHECK(X.status[0] == (X.rc_a == 0 ? STATUS_SUCCESS : STATUS_CANCELLED));
    /* the second IRP was dispatched by whoever completed the first */
    PIRP next = plat_load_ptr((void *const volatile *)&X.started);
    IRPK_EXPLORE_CHECK(next == X.irp[1]);
    IRPK_EXPLORE_CHECK(irpk_irpq_complete(X.q, X.irp[1], STATUS_SUCCESS, 0) == 0);
    x_check_end();
}

/* 2. Submit races IoCancelIrp (the R3 window) while the first IRP completes. */
static void x_submit_second(void *a)
{
    (void)a;
    IoCallDriver(X.dev, X.irp[1]);
}
static void x_cancel_second_complete_first(void *a)
{
    (void)a;
    IoCancelIrp(X.irp[1]);
    X.rc_a = irpk_irpq_complete(X.q, X.irp[0], STATUS_SUCCESS, 0);
}
static void submit_races_cancel(void *arg)
{
    (void)arg;
    x_setup(NULL);
    IoCallDriver(X.dev, X.irp[0]);
    x_join2(x_submit_second, x_cancel_second_complete_first);
    IRPK_EXPLORE_CHECK(X.rc_a == 0);
    /* Either cancelled (queued, or before submit) or started and now running. */
    if (!X.completions[1]) {
        IRPK_EXPLORE_CHECK(plat_load_ptr((void *const volatile *)&X.started) == X.irp[1]);
        IRPK_EXPLORE_CHECK(irpk_irpq_is_cancelled(X.q, X.irp[1]) == 1); /* cancel not lost */
        IRPK_EXPLORE_CHECK(irpk_irpq_complete(X.q, X.irp[1], STATUS_CANCELLED, 0) == 0);
    }
    IRPK_EXPLORE_CHECK(X.status[1] == STATUS_CANCELLED);
    x_check_end();
}

/* 3. Cleanup of a file object races the device completing its running IRP and IoCancelIrp of
 *    the queued one; close follows. */
static FILE_OBJECT x_file;
static void x_cleanup(void *a)
{
    (void)a;
    irpk_irpq_cancel_file(X.q, &x_file, NULL, NULL);
}
static void x_complete_first_cancel_second(void *a)
{
    (void)a;
    X.rc_a = irpk_irpq_complete(X.q, X.irp[0], STATUS_SUCCESS, 0);
    IoCancelIrp(X.irp[1]);
}
static void x_closer(void *a)
{
    (void)a;
    IRPK_EXPLORE_CHECK(irpk_irpq_close(X.q) == 0);
}
static void cleanup_races_completion_and_close(void *arg)
{
    (void)arg;
    x_setup(&x_file);
    IoCallDriver(X.dev, X.irp[0]);
    IoCallDriver(X.dev, X.irp[1]);
    x_join2(x_cleanup, x_complete_first_cancel_second);
    IRPK_EXPLORE_CHECK(X.rc_a == 0);
    if (!X.completions[1]) { /* started before the cleanup reached it: finish it */
        irpk_thread *t = irpk_thread_start(x_closer, NULL, "closer");
        IRPK_EXPLORE_CHECK(irpk_irpq_complete(X.q, X.irp[1], STATUS_CANCELLED, 0) == 0);
        irpk_thread_join(t);
    }
    IRPK_EXPLORE_CHECK(X.status[1] == STATUS_CANCELLED);
    x_check_end();
}

TEST(explore_running_irp_complete_vs_iocancelirp_vs_second_completion)
{
    explore_ok(running_complete_cancel_double, "complete/cancel/double");
}

TEST(explore_submit_vs_iocancelirp_never_loses_the_cancel)
{
    explore_ok(submit_races_cancel, "submit/cancel");
}

TEST(explore_cleanup_vs_completion_vs_cancel_vs_close)
{
    explore_ok(cleanup_races_completion_and_close, "cleanup/complete/cancel/close");
}
