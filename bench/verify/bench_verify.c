/* bench_verify: the cost of the verifier on the classic StartIo IRP round trip
 *   IoAllocateIrp -> IoCallDriver -> dispatch (IoMarkIrpPending, IoStartPacket) -> StartIo
 *   -> IoCompleteRequest -> IoStartNextPacket -> IoFreeIrp
 * with the verifier off and in report mode, in ns/IRP (best of 15 alternating runs), and the
 * ratio. Goal: report <= 2x off. Two shapes: without a cancel routine, and the seed's shape
 * (IoStartPacket arms a cancel routine; StartIo takes the cancel lock and disarms it). The driver
 * (IoCompleteRequest, then IoStartNextPacket(FALSE); BENCH_STARTIO_NOT_CANCELABLE and _DISARM)
 * and the sender's loop come from bench/common/startio_driver.h. */
#include <ntddk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "irpkit/verifier.h"
#include "../common/startio_driver.h"

static bench_startio *sio; /* IoCompleteRequest, then IoStartNextPacket; the cancel shape per row */

/* One sender: each IRP completes inside IoCallDriver, no completion flag to wait for. */
static void round_trips(long n) { bench_read_round_trips(sio->dev, n, 0); }

/* One time-boxed run (~60 ms) in the given mode: ns per round trip. */
static double run_once(irpk_verifier_mode mode)
{
    irpk_verifier_set_mode(mode);
    round_trips(2000); /* warm the lookaside and the caches */
    long n = 0;
    int64_t t0 = plat_now_ns(), t;
    do {
        round_trips(2000);
        n += 2000;
        t = plat_now_ns();
    } while (t - t0 < 60000000);
    return (double)(t - t0) / (double)n;
}

/* Off and report runs alternate (15 of each) and the best of each is kept: short runs and the
 * minimum filter out preemption by other processes, and alternating exposes both modes to the
 * same machine load. */
static int row(const char *what, bench_startio_cancel cancel)
{
    bench_startio_set_cancel(sio, cancel);
    double off = 1e30, on = 1e30;
    for (int i = 0; i < 15; i++) {
        double a = run_once(IRPK_VERIFIER_OFF), b = run_once(IRPK_VERIFIER_REPORT);
        if (a < off) off = a;
        if (b < on) on = b;
    }
    double ratio = on / off;
    printf("  %-48s %8.1f %8.1f %7.2fx  %s\n", what, off, on, ratio, ratio <= 2.0 ? "ok" : "OVER GOAL");
    return ratio <= 2.0 ? 0 : 1;
}

/* `bench_verify off|report N`: only N round trips in that mode (seed shape), no timing — for
 * counting instructions with `perf stat -e instructions:u`, which machine load does not skew. */
static int count_only(const char *mode, long n)
{
    bench_startio_set_cancel(sio, BENCH_STARTIO_DISARM);
    irpk_verifier_set_mode(!strcmp(mode, "off") ? IRPK_VERIFIER_OFF : IRPK_VERIFIER_REPORT);
    round_trips(n);
    return 0;
}

int main(int argc, char **argv)
{
    irpk_reports_set_quiet(1);
    sio = bench_startio_load(L"\\Driver\\bench_verify", BENCH_STARTIO_NOT_CANCELABLE,
                             BENCH_STARTIO_COMPLETE_THEN_NEXT, FALSE);
    if (!sio) return 1;
    if (argc == 3) return count_only(argv[1], atol(argv[2]));
    printf("bench_verify: IRP round trip through the StartIo path, ns/IRP (best of 15), goal <= 2x\n");
    printf("  %-48s %8s %8s %8s\n", "", "off", "report", "ratio");
    int over = row("no cancel routine", BENCH_STARTIO_NOT_CANCELABLE);
    over += row("IoStartPacket with cancel routine (seed shape)", BENCH_STARTIO_DISARM);
    if (irpk_report_count()) {
        fprintf(stderr, "bench_verify: unexpected report:\n%s\n", irpk_report_text(0));
        return 1;
    }
    IoDeleteDevice(sio->dev);
    io_unload_driver(io_lookup_driver(L"bench_verify"));
    /* Over the goal is printed, not an error: wall-clock numbers on a loaded machine are noisy
     * (see docs/verifier.md for load-independent instruction counts). */
    if (over) printf("  (over the goal in this run)\n");
    return 0;
}
