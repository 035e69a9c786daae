/* bench_verify: the cost of the verifier on the classic StartIo IRP round trip
 *   IoAllocateIrp -> IoCallDriver -> dispatch (IoMarkIrpPending, IoStartPacket) -> StartIo
 *   -> IoCompleteRequest -> IoStartNextPacket -> IoFreeIrp
 * with the verifier off and in report mode, in ns/IRP (best of 15 alternating runs), and the
 * ratio. Goal: report <= 2x off. Two shapes: without a cancel routine, and the seed's shape
 * (IoStartPacket arms a cancel routine; StartIo takes the cancel lock and disarms it). */
#include <ntddk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "irpkit/verifier.h"

static PDEVICE_OBJECT dev;
static PDRIVER_CANCEL cancel_fn;

static VOID bench_cancel(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    IoReleaseCancelSpinLock(irp->CancelIrql); /* never called: nothing is cancelled */
}

static VOID bench_startio(PDEVICE_OBJECT d, PIRP irp)
{
    if (cancel_fn) {
        KIRQL old;
        IoAcquireCancelSpinLock(&old);
        IoSetCancelRoutine(irp, NULL);
        IoReleaseCancelSpinLock(old);
    }
    irp->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    IoStartNextPacket(d, FALSE);
}

static NTSTATUS bench_read(PDEVICE_OBJECT d, PIRP irp)
{
    IoMarkIrpPending(irp);
    IoStartPacket(d, irp, NULL, cancel_fn);
    return STATUS_PENDING;
}

static NTSTATUS bench_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->DriverStartIo = bench_startio;
    drv->MajorFunction[IRP_MJ_READ] = bench_read;
    return IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
}

static NTSTATUS bench_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(irp);
    UNREFERENCED_PARAMETER(ctx);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the sender frees it */
}

static void round_trips(long n)
{
    for (long i = 0; i < n; i++) {
        PIRP irp = IoAllocateIrp(dev->StackSize, FALSE);
        IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(irp, bench_done, NULL, TRUE, TRUE, TRUE);
        IoCallDriver(dev, irp);
        IoFreeIrp(irp);
    }
}

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
static int row(const char *what, PDRIVER_CANCEL fn)
{
    cancel_fn = fn;
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
    cancel_fn = bench_cancel;
    irpk_verifier_set_mode(!strcmp(mode, "off") ? IRPK_VERIFIER_OFF : IRPK_VERIFIER_REPORT);
    round_trips(n);
    return 0;
}

int main(int argc, char **argv)
{
    irpk_reports_set_quiet(1);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\bench_verify");
    if (!NT_SUCCESS(IoCreateDriver(&name, bench_entry))) return 1;
    dev->Flags &= ~DO_DEVICE_INITIALIZING;
    if (argc == 3) return count_only(argv[1], atol(argv[2]));
    printf("bench_verify: IRP round trip through the StartIo path, ns/IRP (best of 15), goal <= 2x\n");
    printf("  %-48s %8s %8s %8s\n", "", "off", "report", "ratio");
    int over = row("no cancel routine", NULL);
    over += row("IoStartPacket with cancel routine (seed shape)", bench_cancel);
    if (irpk_report_count()) {
        fprintf(stderr, "bench_verify: unexpected report:\n%s\n", irpk_report_text(0));
        return 1;
    }
    IoDeleteDevice(dev);
    io_unload_driver(io_lookup_driver(L"bench_verify"));
    /* Over the goal is printed, not an error: wall-clock numbers on a loaded machine are noisy
     * (see docs/verifier.md for load-independent instruction counts). */
    if (over) printf("  (over the goal in this run)\n");
    return 0;
}
