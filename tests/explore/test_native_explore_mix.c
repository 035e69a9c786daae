/* Regression: native service threads (DPC, timer, verifier watchdog) started before an
 * exploration are stopped first (plat_quiesce_all) and the runtime is usable natively again
 * afterwards. Before the fix a native timer thread kept running while fibers executed, and
 * after the exploration ke's state pointed into the released execution arena. */
#include <wdm.h>

#include "irpkit/explore.h"
#include "irpkit/verifier.h"
#include "test.h"

static LONG dpc_runs;
static VOID count_dpc(PKDPC Dpc, PVOID Ctx, PVOID A1, PVOID A2)
{
    UNREFERENCED_PARAMETER(Dpc);
    UNREFERENCED_PARAMETER(A1);
    UNREFERENCED_PARAMETER(A2);
    InterlockedIncrement(&dpc_runs);
    KeSetEvent((PKEVENT)Ctx, IO_NO_INCREMENT, FALSE);
}

/* One timer with a DPC, waited for: starts the timer thread and a DPC thread. */
static void timer_round(void)
{
    KTIMER timer;
    KDPC dpc;
    KEVENT ran;
    KeInitializeTimer(&timer);
    KeInitializeEvent(&ran, NotificationEvent, FALSE);
    KeInitializeDpc(&dpc, count_dpc, &ran);
    LARGE_INTEGER due = {.QuadPart = -10000}; /* 1 ms */
    KeSetTimer(&timer, due, &dpc);
    KeWaitForSingleObject(&ran, Executive, KernelMode, FALSE, NULL);
}

static void scenario(void *arg)
{
    (void)arg;
    timer_round(); /* in explore mode: a timer fiber and a DPC fiber */
}

TEST(native_timers_work_before_during_and_after_an_exploration)
{
    dpc_runs = 0;
    timer_round();
    CHECK_EQ(dpc_runs, 1);

    irpk_explore_options opt;
    irpk_explore_options_init(&opt);
    opt.bound = 1;
    irpk_explore_result res;
    CHECK_EQ(irpk_explore(scenario, NULL, &opt, &res), 0);
    CHECK_EQ(res.failure, IRPK_FAILURE_NONE);
    CHECK(res.executions > 1);
    irpk_explore_result_free(&res);

    LONG before = dpc_runs;
    timer_round(); /* fresh native service threads after the exploration */
    CHECK_EQ(dpc_runs, before + 1);
    CHECK_EQ(irpk_report_count(), 0);
}
