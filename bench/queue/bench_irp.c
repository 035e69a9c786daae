/* The IRP contenders of bench_queue (see bench_irp.h): a StartIo driver written like the
 * corrected hello_startio (cancelable IRPs: IoStartPacket with a cancel routine, StartIo
 * claiming its IRP under the cancel spin lock, IoStartNextPacket(TRUE) before completing), a
 * cancel-safe-queue driver (IoCsqInsertIrp + a dispatcher draining IoCsqRemoveNextIrp), and
 * irpkit's IRP adapter (irpk_irpq_submit, a handler completing with irpk_irpq_complete).
 * The StartIo driver (BENCH_STARTIO_CLAIM, _NEXT_THEN_COMPLETE) and the IRP / sender loop all
 * three rows use come from bench/common/startio_driver.h. */
#include "bench_irp.h"

#include <ntddk.h>
#include <stdlib.h>

#include "io/io.h"
#include "irpkit/irpqueue.h"
#include "irpkit/verifier.h"
#include "../common/csq_list.h"
#include "../common/startio_driver.h"

static PDEVICE_OBJECT devs[IRP_KINDS];
static int hold_next;              /* cancel rows: the next IRP a driver starts is kept running */
static PIRP held;                  /* ... this one (the StartIo driver keeps its own: sio) */

static void complete_irp(PIRP irp, NTSTATUS st)
{
    irp->IoStatus.Status = st;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* ------------------------------------------------------------------ irpkit's IRP adapter */

static irpk_irpq *aq;

static VOID a_handler(irpk_irpq *q, PIRP irp, PVOID ctx)
{
    (void)ctx;
    if (hold_next) {
        hold_next = 0;
        held = irp;
        return;
    }
    irpk_irpq_complete(q, irp, STATUS_SUCCESS, 0);
}

static NTSTATUS a_read(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    return irpk_irpq_submit(aq, irp, NULL);
}

/* ------------------------------------------------------------------ StartIo */

static bench_startio *sio; /* loaded by bench_startio_load: reads[] only marks it available */

/* ------------------------------------------------------------------ cancel-safe queue */

#ifdef IRPK_HAVE_CSQ
static struct {
    bench_csq_list l; /* bench/common/csq_list.h */
    volatile LONG pending; /* IRPs inserted and not yet drained; 1 -> 0 ends a dispatcher */
} c;

/* Insert; the thread that takes `pending` from 0 to 1 is the dispatcher and drains the queue
 * (one IRP at a time, like StartIo) until `pending` falls back to 0. */
static NTSTATUS c_read(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    IoCsqInsertIrp(&c.l.csq, irp, NULL);
    if (InterlockedIncrement(&c.pending) != 1) return STATUS_PENDING;
    do {
        PIRP next = IoCsqRemoveNextIrp(&c.l.csq, NULL); /* NULL: it was cancelled meanwhile */
        if (next && hold_next) {
            hold_next = 0;
            held = next;
            return STATUS_PENDING; /* `pending` stays > 0: later IRPs only queue */
        }
        if (next) complete_irp(next, STATUS_SUCCESS);
    } while (InterlockedDecrement(&c.pending) != 0);
    return STATUS_PENDING;
}
#endif

/* ------------------------------------------------------------------ loading */

static PDRIVER_DISPATCH reads[IRP_KINDS] = {a_read, bench_startio_read_cl,
#ifdef IRPK_HAVE_CSQ
                                            c_read
#else
                                            NULL
#endif
};
static int loading;

static NTSTATUS entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->MajorFunction[IRP_MJ_READ] = reads[loading];
    return IoCreateDevice(drv, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &devs[loading]);
}

int irp_kind_available(irp_kind k) { return reads[k] != NULL; }

const char *irp_kind_name(irp_kind k)
{
    static const char *const names[] = {"irpkit IRP adapter", "StartIo", "IoCsq"};
    return names[k];
}

int irp_bench_init(void)
{
    irpk_verifier_set_mode(IRPK_VERIFIER_OFF);
    irpk_irpq_config qc;
    irpk_irpq_config_init(&qc);
    qc.handler = a_handler;
    if (irpk_irpq_create(&qc, &aq) != 0) return -1;
#ifdef IRPK_HAVE_CSQ
    bench_csq_list_init(&c.l);
#endif
    static const wchar_t *names[] = {L"\\Driver\\bq_adapter", L"\\Driver\\bq_startio",
                                     L"\\Driver\\bq_csq"};
    for (loading = 0; loading < IRP_KINDS; loading++) {
        if (!reads[loading]) continue;
        if (loading == IRP_STARTIO) {
            sio = bench_startio_load(names[loading], BENCH_STARTIO_CLAIM,
                                     BENCH_STARTIO_NEXT_THEN_COMPLETE, TRUE);
            if (!sio) return -1;
            devs[loading] = sio->dev;
            continue;
        }
        UNICODE_STRING n;
        RtlInitUnicodeString(&n, names[loading]);
        if (!NT_SUCCESS(IoCreateDriver(&n, entry))) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ round trips */

typedef struct rt_arg {
    irp_kind k;
    long n;
} rt_arg;

/* Alone an IRP completes inside IoCallDriver; with two senders the other thread's dispatcher
 * may complete it a little later: the sender waits for its completion flag. */
static void round_trips(void *p)
{
    rt_arg *a = p;
    bench_read_round_trips(devs[a->k], a->n, 1);
}

double irp_roundtrip_ns(irp_kind k, int threads, long n)
{
    rt_arg a = {k, n / threads};
    int64_t t0 = plat_now_ns();
    plat_thread *t[2];
    for (int i = 0; i < threads; i++) t[i] = plat_thread_start(round_trips, &a, NULL, 0);
    for (int i = 0; i < threads; i++) plat_thread_join(t[i]);
    return (double)(plat_now_ns() - t0) / (double)(a.n * threads);
}

/* ------------------------------------------------------------------ cancel */

/* Finish the held IRP as its driver's device would (and let the driver go idle). */
static void release_held(irp_kind k)
{
    if (k == IRP_STARTIO) {
        bench_startio_release_held(sio);
        return;
    }
    PIRP irp = held;
    held = NULL;
    if (k == IRP_ADAPTER) {
        irpk_irpq_complete(aq, irp, STATUS_SUCCESS, 0);
    } else {
#ifdef IRPK_HAVE_CSQ
        complete_irp(irp, STATUS_SUCCESS);
        while (InterlockedDecrement(&c.pending) != 0) { /* drain what queued meanwhile */
            PIRP next = IoCsqRemoveNextIrp(&c.l.csq, NULL);
            if (next) complete_irp(next, STATUS_SUCCESS);
        }
#endif
    }
}

double irp_cancel_ns(irp_kind k, long n)
{
    PDEVICE_OBJECT d = devs[k];
    volatile int32_t held_done, done;
    if (k == IRP_STARTIO)
        sio->hold_next = 1;
    else
        hold_next = 1;
    PIRP first = bench_read_irp(d, &held_done);
    IoCallDriver(d, first); /* started and held: every later IRP queues behind it */
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < n; i++) {
        PIRP irp = bench_read_irp(d, &done);
        IoCallDriver(d, irp);
        IoCancelIrp(irp); /* queued: removed and completed STATUS_CANCELLED */
        if (!plat_load32(&done)) abort();
        IoFreeIrp(irp);
    }
    double r = (double)(plat_now_ns() - t0) / (double)n;
    release_held(k);
    if (!plat_load32(&held_done)) abort();
    IoFreeIrp(first);
    return r;
}

/* ------------------------------------------------------------------ keyed */

/* Prefill order: entries get random keys in allocation order and are linked in key order, so
 * the list is scattered in memory as in a real queue (the same as the baselines' lists). */
typedef struct kidx {
    ULONG key;
    long i;
} kidx;

static int by_key(const void *a, const void *b)
{
    ULONG x = ((const kidx *)a)->key, y = ((const kidx *)b)->key;
    return x < y ? -1 : x > y;
}

static kidx *sorted_keys(long depth, unsigned range, unsigned long long *rng);

static unsigned long long next_rnd(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static kidx *sorted_keys(long depth, unsigned range, unsigned long long *rng)
{
    kidx *k = calloc((size_t)depth, sizeof *k);
    if (!k) abort();
    for (long i = 0; i < depth; i++) k[i] = (kidx){(ULONG)(next_rnd(rng) % range), i};
    qsort(k, (size_t)depth, sizeof *k, by_key);
    return k;
}

/* StartIo's keyed structure: the device queue, at DISPATCH_LEVEL as IoStartPacket uses it. */
static double startio_keyed(long depth, long ops, unsigned range, unsigned long long *rng)
{
    KDEVICE_QUEUE dq;
    KDEVICE_QUEUE_ENTRY busy;
    KDEVICE_QUEUE_ENTRY *e = calloc((size_t)depth + 1, sizeof *e);
    if (!e) abort();
    kidx *keys = sorted_keys(depth, range, rng); /* ascending: each prefill insert is O(1) */
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    KeInitializeDeviceQueue(&dq);
    KeInsertByKeyDeviceQueue(&dq, &busy, 0); /* an idle queue only becomes busy */
    for (long i = 0; i < depth; i++) KeInsertByKeyDeviceQueue(&dq, &e[keys[i].i], keys[i].key);
    KDEVICE_QUEUE_ENTRY *spare = &e[depth];
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < ops; i++) {
        KeInsertByKeyDeviceQueue(&dq, spare, (ULONG)(next_rnd(rng) % range));
        spare = KeRemoveByKeyDeviceQueue(&dq, (ULONG)(next_rnd(rng) % range));
    }
    double r = (double)(plat_now_ns() - t0) / (double)ops;
    while (KeRemoveDeviceQueue(&dq)) {
    }
    KeLowerIrql(old);
    free(e);
    free(keys);
    return r;
}

#ifdef IRPK_HAVE_CSQ
/* A CSQ driver's keyed list: IoCsq gives no ordering, so the driver keeps its list sorted in
 * CsqInsertIrp and finds "first key >= k, wrapping" in CsqPeekNextIrp, under its spin lock.
 * Measured at that level (the callbacks as IoCsqInsertIrp / IoCsqRemoveNextIrp call them),
 * without the IRP path around them: the cheapest a CSQ keyed queue can be. */
typedef struct knode {
    LIST_ENTRY link;
    ULONG key;
} knode;

static double csq_keyed(long depth, long ops, unsigned range, unsigned long long *rng)
{
    KSPIN_LOCK lock;
    LIST_ENTRY list;
    KeInitializeSpinLock(&lock);
    InitializeListHead(&list);
    knode *v = calloc((size_t)depth + 1, sizeof *v);
    if (!v) abort();
    kidx *keys = sorted_keys(depth, range, rng);
    for (long i = 0; i < depth; i++) {
        v[keys[i].i].key = keys[i].key;
        InsertTailList(&list, &v[keys[i].i].link);
    }
    knode *spare = &v[depth];
    int64_t t0 = plat_now_ns();
    for (long i = 0; i < ops; i++) {
        KIRQL irql;
        spare->key = (ULONG)(next_rnd(rng) % range);
        KeAcquireSpinLock(&lock, &irql); /* CsqInsertIrp: sorted, FIFO among equal keys */
        PLIST_ENTRY p = list.Flink;
        while (p != &list && CONTAINING_RECORD(p, knode, link)->key <= spare->key) p = p->Flink;
        InsertTailList(p, &spare->link);
        KeReleaseSpinLock(&lock, irql);
        ULONG k = (ULONG)(next_rnd(rng) % range);
        KeAcquireSpinLock(&lock, &irql); /* CsqPeekNextIrp(key >= k, wrapping) + CsqRemoveIrp */
        p = list.Flink;
        while (p != &list && CONTAINING_RECORD(p, knode, link)->key < k) p = p->Flink;
        if (p == &list) p = list.Flink;
        RemoveEntryList(p);
        KeReleaseSpinLock(&lock, irql);
        spare = CONTAINING_RECORD(p, knode, link);
    }
    double r = (double)(plat_now_ns() - t0) / (double)ops;
    free(v);
    free(keys);
    return r;
}
#endif

double irp_keyed_ns(irp_kind k, long depth, long ops, unsigned key_range, unsigned long long *rng)
{
    if (k == IRP_STARTIO) return startio_keyed(depth, ops, key_range, rng);
#ifdef IRPK_HAVE_CSQ
    if (k == IRP_CSQ) return csq_keyed(depth, ops, key_range, rng);
#endif
    return -1;
}
