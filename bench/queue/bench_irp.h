/* The IRP contenders of bench_queue: three in-process drivers that queue IRPs the classic
 * StartIo way, with a cancel-safe queue (IoCsq) and with irpkit's IRP adapter. Each IRP row
 * pays the same IoAllocateIrp / IoCallDriver / IoCompleteRequest / IoFreeIrp around it. The
 * StartIo driver and that sender loop are bench/common/startio_driver.h's (shared with bench_io,
 * bench_verify and bench_csq). */
#ifndef BENCH_QUEUE_IRP_H
#define BENCH_QUEUE_IRP_H

typedef enum irp_kind { IRP_ADAPTER = 0, IRP_STARTIO = 1, IRP_CSQ = 2, IRP_KINDS = 3 } irp_kind;

/* Load the three drivers (verifier off: its bookkeeping would dominate every IRP row).
 * Returns 0, or -1 on failure. */
int irp_bench_init(void);
/* Whether kind is available in this build (IoCsq: when src/io/csq.c exists). */
int irp_kind_available(irp_kind k);
const char *irp_kind_name(irp_kind k);

/* submit -> dispatch -> complete: one read IRP per iteration, completed by the handler /
 * StartIo / CSQ dispatcher on the submitting thread; `threads` senders on one device. */
double irp_roundtrip_ns(irp_kind k, int threads, long n);
/* Cancel of a queued IRP: send a read that queues behind a running one, IoCancelIrp it (the
 * driver's or the library's cancel routine completes it with STATUS_CANCELLED), free it. */
double irp_cancel_ns(irp_kind k, long n);
/* Keyed insert + "next with key >= k, wrapping" at a steady depth: StartIo's device queue
 * (KeInsertByKeyDeviceQueue / KeRemoveByKeyDeviceQueue, what IoStartPacket(Key) and
 * IoStartNextPacketByKey use) and a CSQ whose driver keeps its list sorted. */
double irp_keyed_ns(irp_kind k, long depth, long ops, unsigned key_range, unsigned long long *rng);

#endif
