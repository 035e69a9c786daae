/* The user-mode layer (src/user) under the explorer: NtCreateFile, overlapped NtReadFile with
 * events and completion APCs, NtCancelIoFile, NtCancelIoFileEx and NtClose called inside
 * explored threads, against the seed's sample driver (examples/hello_startio), through the
 * scenarios the CLI registers (tools/irpkit/explore_hello.c): `sample-user` and
 * `sample-user-as-written`.
 *
 * What makes this possible is src/user's per-execution reset (plat_on_reset): every execution
 * starts with an empty thread registry, no I/O worker, zeroed counters and fresh locks. Without
 * it the second execution inherits the first one's registry (ETHREADs in released memory) and
 * counters, and the explorer reports nondeterminism or worse. The native runtime works before,
 * between and after explorations (the native I/O worker is quiesced first; a native thread that
 * issued I/O before an exploration is registered again afterwards). */
#include <string.h>

#include "hello_scenarios.h"
#include "hello_startio.h"
#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"
#include "test.h"
#include "user_program.h"

/* LeakSanitizer: the first exploration's reset of ob and io forgets memory the native runtime
 * allocated before it — ob's handle table and the IRPs cached in io's lookaside lists — which
 * native_user_io_works_before_and_after_explorations creates on purpose (src/user's own
 * reset frees or keeps nothing native). Those two, and only from this process, are not
 * reported; every scenario here still checks io_irps_live() and the handle count itself. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:ob_insert_handle\nleak:IoAllocateIrp\n"; }

/* The corrected sample passes every schedule with at most one preemption: tens of thousands
 * of executions of the whole user program, each from a fresh user layer (about 2 s natively;
 * the sanitizer runs, IRPK_STRESS_SCALE < 1, explore the first 2 000 of them: a TSan
 * execution costs ~6 ms). */
TEST(sample_user_corrected_is_exhaustive_to_bound_1)
{
    irpk_reports_set_quiet(1);
    const xscenario *sc = irpk_test_hello_scenario("sample-user");
    CHECK_EQ(sc->expect, IRPK_FAILURE_NONE);
    bool full = irpk_test_scale(100) >= 100;
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = 1;
    if (!full) o.max_executions = (uint64_t)irpk_test_scale(20000);
    irpk_explore_result r;
    int found = irpk_explore(sc->fn, NULL, &o, &r);
    printf("  sample-user: DFS bound %u, %llu executions, %llu schedules, %s, %.2f s\n", r.bound,
           (unsigned long long)r.executions, (unsigned long long)r.schedules,
           r.exhaustive ? "exhaustive" : "not exhaustive", r.seconds);
    if (found) fprintf(stderr, "  %s: %s\n%s\n%s\n", r.what, r.message, r.schedule ? r.schedule : "",
                       r.swimlane ? r.swimlane : "");
    CHECK_EQ(found, 0);
    CHECK_EQ(r.failure, IRPK_FAILURE_NONE);
    CHECK_EQ(r.bound, 1);
    if (full) {
        CHECK(r.exhaustive);
        CHECK(r.executions > 10000);
        CHECK(r.schedules > 5000);
    } else {
        CHECK_EQ(r.executions, o.max_executions);
    }
    CHECK_EQ(irpk_report_count(), 0); /* nothing reported, nothing piled up */
    irpk_explore_result_free(&r);
}

/* Executions are independent of what ran before them: the same search twice gives the same
 * counts, and PCT, which jumps between unrelated schedules, never meets a stale state. */
TEST(sample_user_explorations_repeat_exactly)
{
    irpk_reports_set_quiet(1);
    const xscenario *sc = irpk_test_hello_scenario("sample-user");
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.bound = 0;
    irpk_explore_result a, b;
    CHECK_EQ(irpk_explore(sc->fn, NULL, &o, &a), 0);
    CHECK_EQ(irpk_explore(sc->fn, NULL, &o, &b), 0);
    CHECK(a.exhaustive && b.exhaustive);
    CHECK(a.executions > 10);
    CHECK_EQ(a.executions, b.executions);
    CHECK_EQ(a.schedules, b.schedules);
    irpk_explore_result_free(&a);
    irpk_explore_result_free(&b);
    o.strategy = IRPK_STRATEGY_PCT;
    o.max_executions = (uint64_t)irpk_test_scale(2000);
    o.seed = 0x5EED;
    irpk_explore_result p;
    int found = irpk_explore(sc->fn, NULL, &o, &p);
    if (found) fprintf(stderr, "  %s: %s\n%s\n", p.what, p.message, p.schedule ? p.schedule : "");
    CHECK_EQ(found, 0);
    CHECK_EQ(p.executions, o.max_executions);
    irpk_explore_result_free(&p);
}

/* The driver as written loses a read that CancelIoEx cancelled before IoStartPacket armed the
 * cancel routine: StartIo sees Cancel and leaves it to a cancel routine that never runs, and
 * its reader waits forever. One preemption (the canceller between NtReadFile's IRP going on
 * the thread's list and IoStartPacket) finds it; the counterexample replays exactly. */
TEST(sample_user_as_written_loses_the_read_and_the_counterexample_replays)
{
    irpk_reports_set_quiet(1);
    const xscenario *sc = irpk_test_hello_scenario("sample-user-as-written");
    CHECK_EQ(sc->expect, IRPK_FAILURE_DEADLOCK);
    for (int s = IRPK_STRATEGY_DFS; s <= IRPK_STRATEGY_PCT; s++) {
        irpk_explore_options o;
        irpk_explore_options_init(&o);
        o.strategy = (irpk_strategy)s;
        o.max_executions = s == IRPK_STRATEGY_PCT ? 829 : 0;
        irpk_explore_result r;
        REQUIRE(irpk_explore(sc->fn, NULL, &o, &r) == 1);
        printf("  sample-user-as-written: %s found it at execution %llu, %u preemption(s), %llu steps\n",
               irpk_strategy_name((irpk_strategy)s), (unsigned long long)r.found_at, r.preemptions,
               (unsigned long long)r.steps);
        CHECK_EQ(r.failure, IRPK_FAILURE_DEADLOCK);
        CHECK_CONTAINS(r.message, "reader-2 parked in KeWait reader-2's read event");
        /* The IRP the canceller hit is the one StartIo got. Its number depends on which reader
         * the strategy let go first (PCT's pick moves with the step count of opens and closes),
         * so it is read from the swimlane, not assumed. */
        const char *hit = r.swimlane ? strstr(r.swimlane, "IoCancelIrp IRP#") : NULL;
        REQUIRE(hit);
        char started[32];
        snprintf(started, sizeof started, "StartIo IRP#%u ", (unsigned)strtoul(hit + strlen("IoCancelIrp IRP#"), NULL, 10));
        CHECK_CONTAINS(r.swimlane, started);
        if (s == IRPK_STRATEGY_DFS) {
            CHECK_EQ(r.preemptions, 1);
            CHECK(r.found_at < 1000);
        }
        irpk_explore_result again;
        CHECK_EQ(irpk_replay(sc->fn, NULL, r.schedule, &again), 1);
        CHECK_EQ(again.failure, IRPK_FAILURE_DEADLOCK);
        CHECK_STR(again.message, r.message);
        CHECK_EQ(again.steps, r.steps);
        CHECK_EQ(again.preemptions, r.preemptions);
        irpk_explore_result_free(&again);
        irpk_explore_result_free(&r);
    }
    CHECK_EQ(irpk_report_count(), 0);
}

/* ---- the native runtime around explorations */

static NTSTATUS open_hello(HANDLE *h)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(HELLO_DDK_LINK_NAME);
    OBJECT_ATTRIBUTES oa;
    IO_STATUS_BLOCK iosb;
    InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    return NtCreateFile(h, GENERIC_READ | SYNCHRONIZE, &oa, &iosb, NULL, FILE_ATTRIBUTE_NORMAL, 0, FILE_OPEN, 0,
                        NULL, 0);
}

static void load_hello(ULONG delay_ms)
{
    HELLO_CONFIG cfg = {FALSE, delay_ms};
    HelloSetConfig(&cfg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\HelloStartIo");
    REQUIRE(NT_SUCCESS(IoCreateDriver(&name, HelloDriverEntry)));
}

static void unload_hello(void)
{
    CHECK_EQ(irpk_user_flush(20000), 0);
    KeFlushQueuedDpcs();
    CHECK_EQ(io_unload_driver(io_lookup_driver(L"HelloStartIo")), 0);
}

/* This thread reads twice and cancels the second read with CancelIoEx, which finds requests
 * through the registry of threads that issued I/O: STATUS_NOT_FOUND here would mean this
 * thread, registered before an exploration, was not registered again after it. */
static void native_reads_with_cancel_ex(void)
{
    load_hello(200); /* the first read keeps the device busy; the second waits in the queue */
    HANDLE file, ev[2];
    REQUIRE(open_hello(&file) == STATUS_SUCCESS);
    IO_STATUS_BLOCK iosb[2];
    char data[2][10];
    for (int i = 0; i < 2; i++) {
        REQUIRE(NtCreateEvent(&ev[i], EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE) == STATUS_SUCCESS);
        CHECK_EQ(NtReadFile(file, ev[i], NULL, NULL, &iosb[i], data[i], 10, NULL, NULL), STATUS_PENDING);
    }
    IO_STATUS_BLOCK ciosb;
    CHECK_EQ(NtCancelIoFileEx(file, &iosb[1], &ciosb), STATUS_SUCCESS);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(NtWaitForSingleObject(ev[i], FALSE, NULL), STATUS_SUCCESS);
        NtClose(ev[i]);
    }
    CHECK_EQ(iosb[0].Status, STATUS_SUCCESS);
    CHECK_EQ(iosb[0].Information, 10);
    CHECK_EQ(iosb[1].Status, STATUS_CANCELLED);
    CHECK_EQ(NtClose(file), STATUS_SUCCESS);
    unload_hello();
}

TEST(native_user_io_works_before_and_after_explorations)
{
    irpk_reports_set_quiet(1);
    /* Before: the seed's program natively (a DPC completes the last read, so its file's
     * release goes to the native I/O worker), and this thread registered by its own reads. */
    hello_user_config cfg = {HELLO_FLOW_CLOSE_EARLY, 0, 5};
    hello_user_result res;
    REQUIRE(hello_user_run(&cfg, &res) == 0);
    CHECK_EQ(res.irps_leaked + res.handles_leaked + res.files_leaked, 0);
    native_reads_with_cancel_ex();

    /* The exploration quiesces the native I/O worker, then resets the layer per execution. */
    irpk_explore_options o;
    irpk_explore_options_init(&o);
    o.strategy = IRPK_STRATEGY_RANDOM;
    o.max_executions = 200;
    irpk_explore_result r;
    CHECK_EQ(irpk_explore(irpk_test_hello_scenario("sample-user")->fn, NULL, &o, &r), 0);
    CHECK_EQ(r.executions, 200);
    irpk_explore_result_free(&r);

    /* After: a fresh native user layer; the same thread registers again. */
    irpk_user_stats st;
    irpk_user_get_stats(&st);
    CHECK_EQ(st.files_live + st.files_closing + st.irps_pending + st.dropped + st.disassociated, 0);
    native_reads_with_cancel_ex();
    REQUIRE(hello_user_run(&cfg, &res) == 0);
    CHECK_EQ(res.iosb[0].Status, STATUS_SUCCESS);
    CHECK(res.iosb[1].Status == STATUS_SUCCESS || res.iosb[1].Status == STATUS_CANCELLED);
    CHECK_EQ(res.irps_leaked + res.handles_leaked + res.files_leaked, 0);
    irpk_user_get_stats(&st);
    CHECK_EQ(st.files_live + st.files_closing + st.irps_pending + st.dropped + st.disassociated, 0);
    CHECK_EQ(irpk_report_count(), 0);
}
