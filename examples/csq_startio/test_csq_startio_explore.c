/* csq_startio under the race explorer: the example driver itself, unmodified, with two readers
 * on one handle, a canceller and the handle closed at the same time (cleanup with its remove
 * lock, the CSQ sweep by file object and the abort of the current request), the device's DPC
 * scheduled like any other thread. Every read must complete exactly once with an accepted
 * status, cleanup must leave nothing of its handle queued, and nothing may be left pending
 * (a lost read deadlocks the scenario's final wait). */
#include "csq_startio.h"
#include "explore/scenarios.h"
#include "inproc.h"
#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "irpkit/verifier.h"
#include "test.h"

static struct {
    PDEVICE_OBJECT dev;
    inproc_handle *h;
    inproc_single r[2];
    NTSTATUS sent[2];
} S;

static void own_vcpu(uint8_t k) { plat_self()->vcpu = k; }

static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    own_vcpu((uint8_t)(1 + i));
    /* inproc_send fills r[i].irp before it calls the driver */
    S.sent[i] = inproc_send(&S.r[i], S.h, IRP_MJ_READ, 0, NULL, 0, sizeof(ULONG));
}

static void canceller(void *arg)
{
    (void)arg;
    own_vcpu(3);
    while (!plat_load_ptr((void *const volatile *)&S.r[1].irp)) plat_yield();
    IoCancelIrp(S.r[1].irp); /* alive until the scenario's final wait frees it */
}

static void closer(void *arg)
{
    (void)arg;
    own_vcpu(4);
    inproc_close(S.h); /* IRP_MJ_CLEANUP while the reads are in flight */
}

static void scenario(void *arg)
{
    (void)arg;
    memset(&S, 0, sizeof S);
    CSQ_STARTIO_CONFIG config = {0, 0, 1}; /* no settling: no poll timer */
    CsqStartIoSetConfig(&config);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\CsqStartIo");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, CsqStartIoDriverEntry)));
    S.dev = io_lookup_device(CSQ_STARTIO_LINK_NAME);
    S.h = inproc_open(S.dev);
    /* Each reader passed NtReadFile's handle check before the close (the file object stays
     * referenced): its read may still reach the driver after the cleanup. */
    inproc_hold(S.h);
    inproc_hold(S.h);
    irpk_thread *t[4] = {
        irpk_thread_start(reader, (void *)(intptr_t)0, "reader-1"),
        irpk_thread_start(reader, (void *)(intptr_t)1, "reader-2"),
        irpk_thread_start(canceller, NULL, "canceller"),
        irpk_thread_start(closer, NULL, "closer"),
    };
    for (int i = 0; i < 4; i++) irpk_thread_join(t[i]);
    inproc_release(S.h);
    inproc_release(S.h);
    for (int i = 0; i < 2; i++) {
        NTSTATUS st = inproc_wait(&S.r[i]); /* a lost read blocks here: deadlock */
        IRPK_EXPLORE_CHECK(st == STATUS_SUCCESS || st == STATUS_CANCELLED || st == STATUS_DELETE_PENDING);
    }
    CSQ_STARTIO_STATS s;
    IRPK_EXPLORE_CHECK(inproc_ioctl(S.dev, IOCTL_CSQ_STARTIO_STATS, &s, sizeof s) == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(s.CleanupLeftovers == 0);
    IRPK_EXPLORE_CHECK(s.MadeCurrent == s.Transferred + s.CurrentCancelled);
    IRPK_EXPLORE_CHECK(io_unload_driver(S.dev->DriverObject) == 0);
}

/* Registered like any scenario outside the library (`irpkit explore csq-startio` once a
 * program registers it at start-up, as the CLI does for the hello_startio sample). */
static const irpk_scenario csq_startio_scenario = {
    "csq-startio", "examples/csq_startio: 2 readers, a canceller and a closer on one handle", scenario,
    IRPK_FAILURE_NONE, NULL};

TEST(csq_startio_explored_with_cancel_and_close)
{
    irpk_reports_set_quiet(1);
    CHECK_EQ(irpk_explore_register_scenario(&csq_startio_scenario), 0);
    CHECK_EQ(irpk_explore_register_scenario(&csq_startio_scenario), -1); /* names are unique */
    const xscenario *sc = xscenario_find("csq-startio");
    REQUIRE(sc != NULL && sc->fn == scenario);
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_DFS;
    o.bound = 1; /* exhaustive in ~2 s; bound 2 is over a million executions */
    o.time_limit_s = irpk_test_scale(100) >= 100 ? 15 : 8;
    irpk_explore_result r;
    int found = irpk_explore(sc->fn, NULL, &o, &r);
    printf("  csq-startio: DFS bound %u, %llu executions, %s, %.2f s\n", r.bound,
           (unsigned long long)r.executions, r.exhaustive ? "exhaustive" : "time limit", r.seconds);
    if (found == 1) fprintf(stderr, "  %s: %s\n%s\n%s\n", r.what, r.message, r.schedule ? r.schedule : "",
                            r.swimlane ? r.swimlane : "");
    CHECK_EQ(found, 0);
    irpk_explore_result_free(&r);
    o.strategy = IRPK_STRATEGY_PCT;
    o.max_executions = (uint64_t)irpk_test_scale(20000);
    o.time_limit_s = 10;
    o.seed = 0xC5010;
    found = irpk_explore(sc->fn, NULL, &o, &r);
    printf("  csq-startio: PCT, %llu executions, %.2f s\n", (unsigned long long)r.executions, r.seconds);
    if (found == 1) fprintf(stderr, "  %s: %s\n%s\n", r.what, r.message, r.schedule ? r.schedule : "");
    CHECK_EQ(found, 0);
    irpk_explore_result_free(&r);
}
