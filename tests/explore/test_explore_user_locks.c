/* The user-mode layer's completion hand-off under the race explorer: what the issuing thread can
 * observe of its own completion, and src/user's internal locks against a DPC of the same
 * virtual CPU.
 *
 * The device is a few lines (below): reads are pended and completed by a DPC on vCPU 0, so the
 * hand-off (IOSB, event, completion APC, thread list) runs in DPC cpu0 at DISPATCH_LEVEL;
 * writes complete at once in the caller's thread.
 *
 * 1. Windows runs the hand-off in the issuing thread itself (a kernel APC), so once that thread
 *    sees its request complete — its event signalled, its IOSB written — its completion APC is
 *    already queued: `WaitForSingleObject(ev); SleepEx(0, TRUE);` always runs the routine.
 *    irpkit runs the hand-off on the completing thread; it used to set the event (and write
 *    the IOSB) and only then queue the APC, so the issuer could wake up, test for APCs and
 *    find none (the flaky `completion_apc_runs_in_the_issuing_thread_at_its_alertable_wait`
 *    of test_user_io, ~7 % with two copies in parallel).
 * 2. The per-thread IRP-list lock and the completion lock are taken by the hand-off in a DPC
 *    and, at PASSIVE_LEVEL, by the services (NtQueueApcThread, a write completing at once).
 *    They used to be held at the caller's IRQL: a DPC of the holder's vCPU preempting it
 *    inside (at KeSetEvent, at an atomic) spun on the lock at DISPATCH_LEVEL and shut the
 *    holder out of its vCPU — a deadlock Windows, which holds them at DISPATCH_LEVEL, cannot
 *    have. Scenarios had to give each thread a vCPU of its own. */
#include <ntifs.h>
#include <string.h>

#include "io/io.h"
#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"
#include "explore_check.h"
#include "test.h"

/* ------------------------------------------------------------------ the device */

static struct {
    PDEVICE_OBJECT dev;
    KDPC dpc;
    PIRP pending; /* the read the DPC completes (one at a time in these scenarios) */
} X;

static NTSTATUS complete_now(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    irp->IoStatus.Status = STATUS_SUCCESS;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

static VOID read_done_dpc(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc), UNREFERENCED_PARAMETER(ctx);
    UNREFERENCED_PARAMETER(a1), UNREFERENCED_PARAMETER(a2);
    PIRP irp = X.pending;
    X.pending = NULL;
    irp->IoStatus.Status = STATUS_SUCCESS;
    irp->IoStatus.Information = 1;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* Pended, no cancel routine (nobody cancels here); the DPC on vCPU 0 completes it. */
static NTSTATUS pend_read(PDEVICE_OBJECT d, PIRP irp)
{
    UNREFERENCED_PARAMETER(d);
    IoMarkIrpPending(irp);
    X.pending = irp; /* published to the DPC by the insert's queue lock */
    KeInsertQueueDpc(&X.dpc, NULL, NULL);
    return STATUS_PENDING;
}

static VOID unload(PDRIVER_OBJECT drv)
{
    UNREFERENCED_PARAMETER(drv);
    IoDeleteDevice(X.dev);
}

static NTSTATUS entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->MajorFunction[IRP_MJ_CREATE] = complete_now;
    drv->MajorFunction[IRP_MJ_CLEANUP] = complete_now;
    drv->MajorFunction[IRP_MJ_CLOSE] = complete_now;
    drv->MajorFunction[IRP_MJ_WRITE] = complete_now;
    drv->MajorFunction[IRP_MJ_READ] = pend_read;
    drv->DriverUnload = unload;
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\XLocks");
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &X.dev);
    if (!NT_SUCCESS(st)) return st;
    X.dev->Flags &= ~DO_DEVICE_INITIALIZING; /* neither buffered nor direct: UserBuffer */
    KeInitializeDpc(&X.dpc, read_done_dpc, NULL);
    KeSetTargetProcessorDpc(&X.dpc, 0);
    return STATUS_SUCCESS;
}

static HANDLE load_and_open(void)
{
    memset(&X, 0, sizeof X);
    plat_self()->vcpu = 0; /* main shares vCPU 0 with the DPC that completes the reads */
    UNICODE_STRING drv = RTL_CONSTANT_STRING(L"\\Driver\\XLocks");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&drv, entry)));
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\XLocks");
    OBJECT_ATTRIBUTES oa;
    IO_STATUS_BLOCK iosb;
    HANDLE h = NULL;
    InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    IRPK_EXPLORE_CHECK(NtCreateFile(&h, GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE, &oa, &iosb, NULL,
                                    FILE_ATTRIBUTE_NORMAL, 0, FILE_OPEN, 0 /* overlapped */, NULL, 0) ==
                       STATUS_SUCCESS);
    return h;
}

/* Close, let the DPC return, wait for IRP_MJ_CLOSE (a DPC may have dropped the file's last
 * reference: the I/O worker sends it then), check that nothing is left and unload. */
static void close_and_unload(HANDLE h)
{
    IRPK_EXPLORE_CHECK(NtClose(h) == STATUS_SUCCESS);
    KeFlushQueuedDpcs();
    IRPK_EXPLORE_CHECK(irpk_user_flush(-1) == 0);
    irpk_user_stats us;
    irpk_user_get_stats(&us);
    IRPK_EXPLORE_CHECK(us.files_live == 0 && us.files_closing == 0 && us.irps_pending == 0 && us.dropped == 0);
    IRPK_EXPLORE_CHECK(ob_open_handles() == 0);
    IRPK_EXPLORE_CHECK(io_unload_driver(io_lookup_driver(L"XLocks")) == 0);
}

static void expect_clean(const char *what, irpk_scenario_fn fn)
{
    irpk_reports_set_quiet(1);
    irpk_test_explore_clean(what, fn, 2, 0); /* each failure here needed one preemption */
    CHECK_EQ(irpk_report_count(), 0);
}

/* ------------------------------------------------------------------ 1. the issuer's view */

static struct {
    HANDLE file;
    IO_STATUS_BLOCK iosb[2];
    UCHAR buf[2];
    int apcs[2]; /* run in the issuer only */
} A;

static VOID NTAPI read_apc(PVOID ctx, PIO_STATUS_BLOCK iosb, ULONG reserved)
{
    UNREFERENCED_PARAMETER(iosb);
    UNREFERENCED_PARAMETER(reserved);
    A.apcs[(intptr_t)ctx]++;
}

/* Read 0 is waited for through its event, read 1 by polling its IOSB; right after seeing the
 * completion the issuer tests for APCs (SleepEx(0, TRUE) / NtTestAlert): the routine must run
 * there and then, exactly once. */
static void issuer(void *arg)
{
    (void)arg;
    plat_self()->vcpu = 1;
    HANDLE ev;
    LARGE_INTEGER offset = {.QuadPart = 0};
    IRPK_EXPLORE_CHECK(NtCreateEvent(&ev, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE) == STATUS_SUCCESS);
    A.iosb[0].Status = A.iosb[1].Status = STATUS_PENDING;
    IRPK_EXPLORE_CHECK(NtReadFile(A.file, ev, read_apc, (PVOID)0, &A.iosb[0], &A.buf[0], 1, &offset, NULL) ==
                       STATUS_PENDING);
    IRPK_EXPLORE_CHECK(NtWaitForSingleObject(ev, FALSE, NULL) == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(A.iosb[0].Status == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(NtTestAlert() == STATUS_SUCCESS);
    if (A.apcs[0] != 1) irpk_explore_fail("event signalled, then NtTestAlert ran %d completion APCs, not 1", A.apcs[0]);

    IRPK_EXPLORE_CHECK(NtReadFile(A.file, NULL, read_apc, (PVOID)1, &A.iosb[1], &A.buf[1], 1, &offset, NULL) ==
                       STATUS_PENDING);
    while (plat_load32((volatile int32_t *)&A.iosb[1].Status) == STATUS_PENDING) irpk_thread_yield();
    LARGE_INTEGER zero = {.QuadPart = 0};
    IRPK_EXPLORE_CHECK(NtDelayExecution(TRUE, &zero) == STATUS_USER_APC);
    if (A.apcs[1] != 1) irpk_explore_fail("IOSB written, then SleepEx(0, TRUE) ran %d completion APCs, not 1", A.apcs[1]);
    NtClose(ev);
}

static void issuer_view_scenario(void *arg)
{
    (void)arg;
    memset(&A, 0, sizeof A);
    A.file = load_and_open();
    irpk_thread *t = irpk_thread_start(issuer, NULL, "issuer");
    irpk_thread_join(t);
    IRPK_EXPLORE_CHECK(A.apcs[0] == 1 && A.apcs[1] == 1);
    close_and_unload(A.file);
}

TEST(completion_apc_is_queued_once_the_issuer_sees_its_request_complete)
{
    expect_clean("event / IOSB seen, then the APC", issuer_view_scenario);
}

/* ------------------------------------------------------------------ 2. locks vs a DPC of the same vCPU */

static struct {
    HANDLE file, reader, issued;
    IO_STATUS_BLOCK read_iosb, write_iosb;
    UCHAR buf, out;
    int read_apcs;
    volatile int32_t queued_apcs;
} L;

static VOID NTAPI lock_read_apc(PVOID ctx, PIO_STATUS_BLOCK iosb, ULONG reserved)
{
    UNREFERENCED_PARAMETER(ctx), UNREFERENCED_PARAMETER(iosb), UNREFERENCED_PARAMETER(reserved);
    L.read_apcs++;
}

static VOID NTAPI queued_apc(PVOID a, PVOID b, PVOID c)
{
    UNREFERENCED_PARAMETER(a), UNREFERENCED_PARAMETER(b), UNREFERENCED_PARAMETER(c);
    plat_fetch_add32(&L.queued_apcs, 1);
}

/* vCPU 1: a handle to itself for main, one read (completed by DPC cpu0), then alertable waits until both its completion APC
 * and main's NtQueueApcThread APC ran. */
static void lock_reader(void *arg)
{
    (void)arg;
    plat_self()->vcpu = 1;
    HANDLE ev;
    LARGE_INTEGER offset = {.QuadPart = 0};
    IRPK_EXPLORE_CHECK(ObOpenObjectByPointer(PsGetCurrentThread(), 0, NULL, THREAD_ALL_ACCESS, *PsThreadType,
                                             KernelMode, &L.reader) == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(NtCreateEvent(&ev, EVENT_ALL_ACCESS, NULL, SynchronizationEvent, FALSE) == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(NtReadFile(L.file, ev, lock_read_apc, NULL, &L.read_iosb, &L.buf, 1, &offset, NULL) ==
                       STATUS_PENDING);
    NtSetEvent(L.issued, NULL);
    while (L.read_apcs == 0 || plat_load32(&L.queued_apcs) == 0) NtWaitForSingleObject(ev, TRUE, NULL);
    NtClose(ev);
}

/* main, vCPU 0, PASSIVE_LEVEL, while DPC cpu0 completes the reader's read (its hand-off takes
 * the completion lock and the reader's IRP-list lock at DISPATCH_LEVEL):
 *   - NtQueueApcThread to the reader holds the reader's IRP-list lock across KeSetEvent;
 *   - a write that completes at once runs the hand-off here: the completion lock across an
 *     atomic, then main's own IRP-list lock across KeSetEvent of the file object. */
static void user_locks_scenario(void *arg)
{
    (void)arg;
    memset(&L, 0, sizeof L);
    L.file = load_and_open();
    IRPK_EXPLORE_CHECK(NtCreateEvent(&L.issued, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE) == STATUS_SUCCESS);
    irpk_thread *t = irpk_thread_start(lock_reader, NULL, "reader");
    NtWaitForSingleObject(L.issued, FALSE, NULL);
    IRPK_EXPLORE_CHECK(NtQueueApcThread(L.reader, queued_apc, NULL, NULL, NULL) == STATUS_SUCCESS);
    LARGE_INTEGER offset = {.QuadPart = 0};
    IRPK_EXPLORE_CHECK(NtWriteFile(L.file, NULL, NULL, NULL, &L.write_iosb, &L.out, 1, &offset, NULL) ==
                       STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);
    irpk_thread_join(t);
    IRPK_EXPLORE_CHECK(L.read_apcs == 1 && L.queued_apcs == 1);
    IRPK_EXPLORE_CHECK(L.read_iosb.Status == STATUS_SUCCESS && L.read_iosb.Information == 1);
    IRPK_EXPLORE_CHECK(L.write_iosb.Status == STATUS_SUCCESS);
    NtClose(L.reader);
    NtClose(L.issued);
    close_and_unload(L.file);
}

TEST(user_locks_holder_is_not_preempted_by_a_dpc_of_its_vcpu)
{
    expect_clean("NtQueueApcThread and an inline completion vs a DPC's hand-off, one vCPU", user_locks_scenario);
}
