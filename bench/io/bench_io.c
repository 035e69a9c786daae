/* bench_io: one IRP round trip through the classic StartIo path
 *   IoAllocateIrp -> IoCallDriver -> dispatch -> IoStartPacket -> StartIo -> IoCompleteRequest
 *   -> IoStartNextPacket -> IoFreeIrp
 * single-threaded and from 2 threads on one device, in ns/IRP and as a ratio to a baseline
 * measured in the same process: an uncontended spin lock (plat_lock) around an intrusive list
 * push/pop. Goal: <= 10x the baseline; the steady state must not allocate (lookaside). */
#include <ntddk.h>
#include <stdio.h>

#include "io/io.h"
#include "../common/lock_list_baseline.h"

static PDEVICE_OBJECT dev;

static VOID bench_startio(PDEVICE_OBJECT d, PIRP irp)
{
    irp->IoStatus.Status = STATUS_SUCCESS;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    IoStartNextPacket(d, FALSE);
}

static NTSTATUS bench_read(PDEVICE_OBJECT d, PIRP irp)
{
    IoMarkIrpPending(irp);
    IoStartPacket(d, irp, NULL, NULL);
    return STATUS_PENDING;
}

static NTSTATUS bench_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->DriverStartIo = bench_startio;
    drv->MajorFunction[IRP_MJ_READ] = bench_read;
    return IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &dev);
}

/* The originator's completion routine: flag it done and keep the IRP (freed by its sender). */
static NTSTATUS bench_done(PDEVICE_OBJECT d, PIRP irp, PVOID ctx)
{
    UNREFERENCED_PARAMETER(d);
    UNREFERENCED_PARAMETER(irp);
    plat_store32(ctx, 1);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static void round_trips(long n)
{
    volatile int32_t done;
    for (long i = 0; i < n; i++) {
        PIRP irp = IoAllocateIrp(dev->StackSize, FALSE);
        IoGetNextIrpStackLocation(irp)->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(irp, bench_done, (PVOID)&done, TRUE, TRUE, TRUE);
        plat_store32(&done, 0);
        IoCallDriver(dev, irp);
        /* Alone it completes inside IoCallDriver; with two senders the other thread's StartIo
         * chain may complete it a little later. */
        while (!plat_load32(&done)) plat_yield();
        IoFreeIrp(irp);
    }
}


static void worker(void *arg) { round_trips((long)(intptr_t)arg); }

static double two_threads_ns(long n)
{
    int64_t t0 = plat_now_ns();
    plat_thread *a = plat_thread_start(worker, (void *)(intptr_t)n, "bench-1", 0);
    plat_thread *b = plat_thread_start(worker, (void *)(intptr_t)n, "bench-2", 0);
    plat_thread_join(a);
    plat_thread_join(b);
    return (double)(plat_now_ns() - t0) / (double)(2 * n);
}

int main(void)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\bench_io");
    if (!NT_SUCCESS(IoCreateDriver(&name, bench_entry))) return 1;
    const long n = 1000000;
    round_trips(10000); /* warm the lookaside */
    double base = lock_list_baseline_ns(n);
    io_lookaside_stats s0, s1;
    io_lookaside_get_stats(&s0);
    int64_t t0 = plat_now_ns();
    round_trips(n);
    double one = (double)(plat_now_ns() - t0) / (double)n;
    io_lookaside_get_stats(&s1);
    double two = two_threads_ns(n / 2);
    printf("baseline (spin lock + intrusive list push/pop): %8.1f ns/op\n", base);
    printf("IRP round trip, 1 thread:                       %8.1f ns/IRP  (%.1fx baseline)\n", one, one / base);
    printf("IRP round trip, 2 threads, one device:          %8.1f ns/IRP  (%.1fx baseline)\n", two, two / base);
    printf("steady state: %llu allocations, %llu from the pool (goal 0)\n",
           (unsigned long long)(s1.allocs - s0.allocs),
           (unsigned long long)((s1.allocs - s0.allocs) - (s1.hits - s0.hits)));
    return 0;
}
