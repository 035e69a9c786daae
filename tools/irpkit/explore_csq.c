/* examples/csq_startio under the explorer (`csq-startio`): the example driver itself,
 * unmodified, driven through the NT services (src/user) from explored threads. Main opens
 * \??\CsqStartIo for overlapped I/O; two readers each issue one NtReadFile on that handle, a
 * canceller calls CancelIoEx (NtCancelIoFileEx) on reader-2's request, and a closer closes the
 * handle at the same time — IRP_MJ_CLEANUP with its remove lock, the CSQ sweep by file object
 * and the abort of the current request. The device's poll DPC is scheduled like any other
 * thread; with no settling configured, no poll timer is armed.
 *
 * A read that passed NtReadFile's handle check before the close still reaches the driver after
 * the cleanup and gets STATUS_DELETE_PENDING; one that comes after the close gets
 * STATUS_INVALID_HANDLE without reaching it. Checks, after the threads are joined and
 * IRP_MJ_CLOSE was sent (irpk_user_flush): every read ended once with an accepted status (a
 * lost read leaves its reader waiting forever: the explorer reports a deadlock); cleanup left
 * nothing of its handle queued; every request the device started was transferred or
 * cancelled; the driver unloads cleanly; no handle, file object, request or IRP is left.
 *
 * The library cannot depend on examples/: the CLI registers this scenario at start-up
 * (irpk_explore_csq_register), as it does `sample`; the example's test uses it from here. */
#include "explore_csq.h"

#include <ntifs.h>
#include <string.h>

#include "csq_startio.h"
#include "explore_driver.h"
#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "irpkit/user.h"

#define NREADERS 2

static struct {
    PDEVICE_OBJECT dev;
    HANDLE file;
    HANDLE event[NREADERS];
    IO_STATUS_BLOCK iosb[NREADERS];
    ULONG data[NREADERS];
    NTSTATUS returned[NREADERS], final[NREADERS];
    NTSTATUS cancel_status, close_status;
} C;

/* vCPUs: the default two vCPUs' DPC threads run on 0 and 1; every thread here gets a vCPU of
 * its own above those (xdrv_own_vcpu), as in `sample-user` (tools/irpkit/explore_hello.c says
 * why). */

static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    xdrv_own_vcpu((uint8_t)(3 + i));
    C.returned[i] = NtReadFile(C.file, C.event[i], NULL, NULL, &C.iosb[i], &C.data[i], sizeof(ULONG), NULL, NULL);
    C.final[i] = C.returned[i];
    if (C.returned[i] == STATUS_PENDING) {
        NtWaitForSingleObject(C.event[i], FALSE, NULL); /* a lost read waits here: deadlock */
        C.final[i] = C.iosb[i].Status;
    }
}

static void canceller(void *arg)
{
    (void)arg;
    xdrv_own_vcpu(5);
    IO_STATUS_BLOCK iosb;
    C.cancel_status = NtCancelIoFileEx(C.file, &C.iosb[NREADERS - 1], &iosb);
}

static void closer(void *arg)
{
    (void)arg;
    xdrv_own_vcpu(6);
    C.close_status = NtClose(C.file); /* IRP_MJ_CLEANUP while the reads are in flight */
}

/* The driver's counters, through a second (synchronous) handle. */
static NTSTATUS read_stats(CSQ_STARTIO_STATS *s)
{
    IO_STATUS_BLOCK iosb;
    HANDLE h;
    NTSTATUS st = xdrv_open(CSQ_STARTIO_LINK_NAME, FILE_SYNCHRONOUS_IO_NONALERT, &h);
    if (!NT_SUCCESS(st)) return st;
    st = NtDeviceIoControlFile(h, NULL, NULL, NULL, &iosb, IOCTL_CSQ_STARTIO_STATS, NULL, 0, s, sizeof *s);
    NtClose(h);
    return st;
}

static void scenario(void *arg)
{
    (void)arg;
    memset(&C, 0, sizeof C);
    xdrv_own_vcpu(2);
    CSQ_STARTIO_CONFIG config = {0, 0, 1}; /* no settling: no poll timer */
    CsqStartIoSetConfig(&config);
    C.dev = xdrv_load(L"\\Driver\\CsqStartIo", CsqStartIoDriverEntry, CSQ_STARTIO_LINK_NAME);
    IRPK_EXPLORE_CHECK(xdrv_open(CSQ_STARTIO_LINK_NAME, 0 /* overlapped */, &C.file) == STATUS_SUCCESS);
    /* The events exist before the close: no handle is created while the file handle may be
     * closing, so a stale file handle is STATUS_INVALID_HANDLE, never another object's. */
    for (int i = 0; i < NREADERS; i++) {
        C.iosb[i].Status = -1;
        IRPK_EXPLORE_CHECK(NtCreateEvent(&C.event[i], EVENT_ALL_ACCESS, NULL, SynchronizationEvent, FALSE) ==
                           STATUS_SUCCESS);
    }
    irpk_thread *t[4] = {
        irpk_thread_start(reader, (void *)(intptr_t)0, "reader-1"),
        irpk_thread_start(reader, (void *)(intptr_t)1, "reader-2"),
        irpk_thread_start(canceller, NULL, "canceller"),
        irpk_thread_start(closer, NULL, "closer"),
    };
    for (int i = 0; i < 4; i++) irpk_thread_join(t[i]);
    for (int i = 0; i < NREADERS; i++) NtClose(C.event[i]);
    for (int i = 0; i < NREADERS; i++) {
        NTSTATUS st = C.final[i];
        if (!(st == STATUS_SUCCESS && C.iosb[i].Information == sizeof(ULONG)) && st != STATUS_CANCELLED &&
            st != STATUS_DELETE_PENDING && !(st == STATUS_INVALID_HANDLE && C.returned[i] == st))
            irpk_explore_fail("reader-%d: NtReadFile returned 0x%08X, the read ended 0x%08X (%lu bytes)", i + 1,
                              (unsigned)C.returned[i], (unsigned)st, (unsigned long)C.iosb[i].Information);
    }
    IRPK_EXPLORE_CHECK(C.cancel_status == STATUS_SUCCESS || C.cancel_status == STATUS_NOT_FOUND ||
                       C.cancel_status == STATUS_INVALID_HANDLE);
    IRPK_EXPLORE_CHECK(C.close_status == STATUS_SUCCESS);
    CSQ_STARTIO_STATS s;
    IRPK_EXPLORE_CHECK(read_stats(&s) == STATUS_SUCCESS);
    IRPK_EXPLORE_CHECK(s.CleanupLeftovers == 0);
    IRPK_EXPLORE_CHECK(s.MadeCurrent == s.Transferred + s.CurrentCancelled);
    IRPK_EXPLORE_CHECK(irpk_user_flush(-1) == 0);
    xdrv_check_user_leaks();
    xdrv_unload(C.dev);
}

void irpk_explore_csq_register(void)
{
    static const irpk_scenario s = {
        "csq-startio",
        "examples/csq_startio (NT services): 2 overlapped reads, CancelIoEx and NtClose racing on one handle",
        scenario, IRPK_FAILURE_NONE, NULL};
    irpk_explore_register_scenario(&s); /* -1 when already registered */
}
