/* bench_io: one IRP round trip through the classic StartIo path
 *   IoAllocateIrp -> IoCallDriver -> dispatch -> IoStartPacket -> StartIo -> IoCompleteRequest
 *   -> IoStartNextPacket -> IoFreeIrp
 * single-threaded and from 2 threads on one device, in ns/IRP and as a ratio to a baseline
 * measured in the same process: an uncontended spin lock (plat_lock) around an intrusive list
 * push/pop. Goal: <= 10x the baseline; the steady state must not allocate (lookaside).
 * The driver (non-cancelable; IoCompleteRequest, then IoStartNextPacket) and the sender's loop
 * come from bench/common/startio_driver.h. */
#include <ntddk.h>
#include <stdio.h>

#include "io/io.h"
#include "../common/lock_list_baseline.h"
#include "../common/startio_driver.h"

static bench_startio *sio;

/* Alone an IRP completes inside IoCallDriver; with two senders the other thread's StartIo chain
 * may complete it a little later: the sender waits for its completion routine's flag. */
static void round_trips(long n) { bench_read_round_trips(sio->dev, n, 1); }

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
    sio = bench_startio_load(L"\\Driver\\bench_io", BENCH_STARTIO_NOT_CANCELABLE,
                             BENCH_STARTIO_COMPLETE_THEN_NEXT, FALSE);
    if (!sio) return 1;
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
