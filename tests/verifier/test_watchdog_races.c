/* Races in the verifier's watchdog (regression tests for the review of src/verify/watchdog.c).
 *
 *   - The queue-stall report copied the waiting IRPs' pointers under the device queue's lock and
 *     read their ids after dropping it: a late IoStartNextPacket could complete and free one in
 *     between, and the report named whatever the freed block had become. Explored: every
 *     interleaving of the stall check with the late IoStartNextPacket within the bound.
 *   - A failed watchdog thread start left the quiesce function waiting forever for a thread
 *     that was never published. The start is failed through the verifier's test seam and the
 *     quiescer is ordered into the window with the point hook (no sleeps decide anything). */
#include <ntddk.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "irpkit/explore.h"
#include "irpkit/runtime.h"
#include "irpkit/thread.h"
#include "irpkit/verifier.h"
#include "verify/verify.h"
#include "test.h"

/* ------------------------------------------------------------------ stall report vs a late IoStartNextPacket */

static PDEVICE_OBJECT sdev;
static uint32_t queued_ids[2];    /* the IRPs waiting when the stall was set up */
static char stall_text[4096];     /* the stall report raised inside the execution, if any */
static irpk_bugcheck_hook explorer_hook;
static int reports_seen;          /* executions that raised the stall report (not vacuous) */

static VOID forgetful_startio(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    irp->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(irp, IO_NO_INCREMENT); /* the bug under watch: no IoStartNextPacket */
}

static NTSTATUS startpacket_read(PDEVICE_OBJECT dev, PIRP irp)
{
    IoMarkIrpPending(irp);
    IoStartPacket(dev, irp, NULL, NULL);
    return STATUS_PENDING;
}

static NTSTATUS stall_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\StallDev");
    drv->DriverStartIo = forgetful_startio;
    drv->MajorFunction[IRP_MJ_READ] = startpacket_read;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &sdev);
    if (NT_SUCCESS(st)) sdev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

/* The originator frees its IRP once completed (its memory goes back to the lookaside). */
static NTSTATUS free_on_completion(PDEVICE_OBJECT dev, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(dev), UNREFERENCED_PARAMETER(ctx);
    IoFreeIrp(irp);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static PIRP send_read(void)
{
    PIRP irp = IoAllocateIrp(1, FALSE);
    IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
    IoSetCompletionRoutine(irp, free_on_completion, NULL, TRUE, TRUE, TRUE);
    IoCallDriver(sdev, irp);
    return irp;
}

/* Keep the stall report raised inside the execution (it is expected: the driver forgot
 * IoStartNextPacket); anything else fails the execution as usual. */
static void keep_stall_report(const irpk_bugcheck *bc, void *ctx)
{
    if (bc->name && !strcmp(bc->name, "QueueStall") && !stall_text[0]) {
        snprintf(stall_text, sizeof stall_text, "%s", bc->text ? bc->text : "");
        return;
    }
    if (explorer_hook) explorer_hook(bc, ctx);
}

static void start_next_at_dispatch(void)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    IoStartNextPacket(sdev, FALSE);
    KeLowerIrql(old);
}

static void checker(void *arg)
{
    (void)arg;
    irpk_verifier_check_stalls();
}

/* The driver's late IoStartNextPacket, twice: both waiting IRPs run and are completed and
 * freed (the verifier keeps the current one alive until the next IoStartNextPacket, so it
 * takes the second to release the first), and a new IRP takes over the first one's memory
 * (same lookaside, same CPU) under a new id. */
static void late_start_next(void *arg)
{
    (void)arg;
    start_next_at_dispatch();
    start_next_at_dispatch();
    PIRP reused = IoAllocateIrp(1, FALSE);
    IoFreeIrp(reused);
}

/* The ids the report lists after "wait in its queue (": each must be one that waited. */
static void check_listed_ids(const char *text)
{
    const char *p = strstr(text, "wait in its queue (");
    IRPK_EXPLORE_CHECK(p != NULL);
    if (!p) return;
    const char *end = strchr(p, ')');
    for (p = strstr(p, "IRP#"); p && p < end; p = strstr(p + 1, "IRP#")) {
        unsigned id = (unsigned)strtoul(p + 4, NULL, 10);
        if (id != queued_ids[0] && id != queued_ids[1])
            irpk_explore_fail("the stall report lists IRP#%u, which never waited in the queue "
                              "(IRP#%u and IRP#%u did): it read a freed IRP", id, queued_ids[0],
                              queued_ids[1]);
    }
}

static void stall_vs_late_start_next(void *arg)
{
    (void)arg;
    irpk_bugcheck_hook prev = irpk_bugcheck_set_hook(keep_stall_report, NULL);
    if (prev != keep_stall_report) explorer_hook = prev; /* (a failed execution left ours set) */
    stall_text[0] = 0;
    sdev = NULL;
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\StallDrv");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, stall_entry)));
    send_read();                              /* runs, completed: the device stays Busy */
    queued_ids[0] = io_irp_id(send_read());   /* these two wait, and nothing starts them */
    queued_ids[1] = io_irp_id(send_read());
    irpk_thread *c = irpk_thread_start(checker, NULL, "checker");
    irpk_thread *l = irpk_thread_start(late_start_next, NULL, "late");
    irpk_thread_join(c);
    irpk_thread_join(l);
    if (stall_text[0]) {
        reports_seen++;
        check_listed_ids(stall_text);
    }
    /* Drain, so the end-of-execution check finds an idle device. */
    while (sdev->DeviceQueue.Busy) start_next_at_dispatch();
    irpk_bugcheck_set_hook(explorer_hook, NULL);
}

TEST(stall_report_names_only_irps_that_waited)
{
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = 2;
    /* No sleep sets: the bug is a data race (plain reads of an IRP another thread frees), and
     * sleep-set reduction assumes race-free steps — it would treat "the late IoStartNextPacket
     * runs between the snapshot and the report" as equivalent to "after the report". */
    o.sleep_sets = false;
    irpk_explore_result r;
    reports_seen = 0;
    int found = irpk_explore(stall_vs_late_start_next, NULL, &o, &r);
    if (found) fprintf(stderr, "%s: %s\nschedule %s\n%s\n", irpk_failure_name(r.failure), r.message,
                       r.schedule ? r.schedule : "-", r.swimlane ? r.swimlane : "");
    CHECK_EQ(found, 0);
    CHECK(r.exhaustive);
    CHECK(r.schedules > 1);
    CHECK(reports_seen > 0);
    irpk_explore_result_free(&r);
    irpk_reports_clear(); /* the kept stall reports */
}

/* ------------------------------------------------------------------ quiesce vs a failed watchdog start */

static volatile int32_t quiescer_waiting, quiescer_done;
static plat_thread *quiescer;

/* The quiesce function's wait for the watchdog thread announces itself here. */
static void on_point(const char *op, const void *obj)
{
    (void)obj;
    if (!strcmp(op, "watchdog quiesce wait")) plat_store32(&quiescer_waiting, 1);
}

static void run_quiesce(void *arg)
{
    (void)arg;
    irpk_runtime_shutdown(); /* plat_quiesce_all: stops the watchdog among others */
    plat_store32(&quiescer_done, 1);
}

/* Poll a flag (the answer never depends on how long this takes: `limit` only turns a hang into
 * a failure). */
static bool wait_flag(volatile int32_t *flag, int64_t limit_ns)
{
    for (int64_t waited = 0; !plat_load32(flag); waited += 100000) {
        if (waited >= limit_ns) return false;
        plat_sleep_ns(100000);
    }
    return true;
}

/* Called by the poke that won the start election (vrf_watchdog_running is 1 now and no thread
 * is published): start a quiescer, let it reach its wait for the thread, then fail like an OS
 * that refuses a new thread. */
static plat_thread *failing_thread_start(plat_thread_fn fn, void *arg, const char *name, unsigned flags)
{
    (void)fn, (void)arg, (void)name, (void)flags;
    quiescer = plat_thread_start(run_quiesce, NULL, "quiescer", 0);
    /* With the fix the quiescer always announces its wait. (Before it, the loop had no point:
     * the bound then only lets it start spinning before the start fails.) */
    wait_flag(&quiescer_waiting, 2000000000LL);
    return NULL;
}

TEST(quiesce_returns_when_the_watchdog_start_fails)
{
    irpk_runtime_shutdown(); /* no watchdog running */
    REQUIRE(plat_load32(&vrf_watchdog_running) == 0);
    quiescer_waiting = quiescer_done = 0;
    plat_set_point_hook(on_point);
    vrf_watchdog_set_thread_start(failing_thread_start);
    long old = irpk_verifier_set_cancel_timeout_ms(5000); /* pokes the watchdog: start fails */
    vrf_watchdog_set_thread_start(NULL);
    REQUIRE(quiescer != NULL);
    CHECK(plat_load32(&quiescer_waiting)); /* it did wait for the thread the start never made */
    bool done = wait_flag(&quiescer_done, 20000000000LL);
    plat_set_point_hook(NULL);
    if (!done) {
        /* Joining would hang: the quiescer spins on a thread that will never be published. */
        fprintf(stderr, "FAIL: the quiesce function still waits for a watchdog thread whose start "
                        "failed\n");
        fflush(stderr);
        _exit(1);
    }
    plat_thread_join(quiescer);
    CHECK_EQ(plat_load32(&vrf_watchdog_running), 0);
    /* A later poke starts a real watchdog, and quiesce stops it. */
    irpk_verifier_set_cancel_timeout_ms(old);
    CHECK_EQ(plat_load32(&vrf_watchdog_running), 1);
    irpk_runtime_shutdown();
    CHECK_EQ(plat_load32(&vrf_watchdog_running), 0);
}
