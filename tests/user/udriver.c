#include "udriver.h"

#include "io/io.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"

udrv_state udrv;

/* qlock guards the queue; log_lock the log. Lock order: cancel lock -> qlock (the insert takes
 * qlock under the cancel lock; the cancel routine releases the cancel lock before qlock). */
static KSPIN_LOCK qlock, log_lock;
static LIST_ENTRY queue;
static int nqueued;
#define LOG_MAX 512
static udrv_event log_entries[LOG_MAX];
static int nlog;

static void log_event2(char what, PFILE_OBJECT file, PIRP irp, int queued, int cancel_flag)
{
    KIRQL old;
    KeAcquireSpinLock(&log_lock, &old);
    if (nlog < LOG_MAX) log_entries[nlog++] = (udrv_event){what, file, irp, io_irp_id(irp), queued, cancel_flag};
    KeReleaseSpinLock(&log_lock, old);
}

static void log_event(char what, PFILE_OBJECT file, PIRP irp, int queued) { log_event2(what, file, irp, queued, 0); }

/* Irp->Cancel is written under the cancel lock: read it there. */
static int cancel_flag_of(PIRP irp)
{
    KIRQL old;
    IoAcquireCancelSpinLock(&old);
    int c = irp->Cancel;
    IoReleaseCancelSpinLock(old);
    return c;
}

int udrv_oldest_cancel_flag(void)
{
    KIRQL old;
    int flag = -1;
    KeAcquireSpinLock(&qlock, &old);
    PIRP irp = IsListEmpty(&queue) ? NULL : CONTAINING_RECORD(queue.Flink, IRP, Tail.Overlay.ListEntry);
    if (irp) io_irp_ref(irp); /* a cancel routine may complete it once we drop qlock */
    KeReleaseSpinLock(&qlock, old);
    if (irp) {
        flag = cancel_flag_of(irp);
        io_irp_unref(irp);
    }
    return flag;
}

int udrv_log(udrv_event *out, int max)
{
    KIRQL old;
    KeAcquireSpinLock(&log_lock, &old);
    int n = nlog < max ? nlog : max;
    memcpy(out, log_entries, (size_t)n * sizeof *out);
    KeReleaseSpinLock(&log_lock, old);
    return n;
}

int udrv_find(char what, uint32_t irp_id, int from)
{
    udrv_event evs[LOG_MAX];
    int n = udrv_log(evs, LOG_MAX);
    for (int i = from < 0 ? 0 : from; i < n; i++)
        if (evs[i].what == what && (!irp_id || evs[i].irp_id == irp_id)) return i;
    return -1;
}

int udrv_queued(void)
{
    KIRQL old;
    KeAcquireSpinLock(&qlock, &old);
    int n = nqueued;
    KeReleaseSpinLock(&qlock, old);
    return n;
}

static void fill_read(PIRP irp)
{
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
    ULONG n = sp->MajorFunction == IRP_MJ_READ ? sp->Parameters.Read.Length
                                                : sp->Parameters.DeviceIoControl.OutputBufferLength;
    PUCHAR p = irp->MdlAddress ? (PUCHAR)MmGetSystemAddressForMdlSafe(irp->MdlAddress, NormalPagePriority)
               : irp->AssociatedIrp.SystemBuffer ? (PUCHAR)irp->AssociatedIrp.SystemBuffer
                                                 : (PUCHAR)irp->UserBuffer;
    for (ULONG i = 0; i < n && p; i++) p[i] = (UCHAR)('a' + i % 26);
    irp->IoStatus.Information = n;
}

static void complete(PIRP irp, NTSTATUS st)
{
    irp->IoStatus.Status = st;
    if (st != STATUS_SUCCESS) irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

static VOID udrv_cancel(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    IoReleaseCancelSpinLock(irp->CancelIrql);
    KIRQL old;
    KeAcquireSpinLock(&qlock, &old);
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
    nqueued--;
    KeReleaseSpinLock(&qlock, old);
    log_event('X', IoGetCurrentIrpStackLocation(irp)->FileObject, irp, 0);
    complete(irp, STATUS_CANCELLED);
}

/* Queue with the classic protocol: under the cancel lock, either it was already cancelled, or
 * it goes on the queue with its cancel routine armed. */
static NTSTATUS queue_irp(PIRP irp, bool cancelable)
{
    KIRQL cirql;
    IoMarkIrpPending(irp);
    irp->Tail.Overlay.DriverContext[0] = (PVOID)(uintptr_t)cancelable;
    IoAcquireCancelSpinLock(&cirql);
    if (cancelable && irp->Cancel) {
        IoReleaseCancelSpinLock(cirql);
        log_event('X', IoGetCurrentIrpStackLocation(irp)->FileObject, irp, 0);
        complete(irp, STATUS_CANCELLED);
        return STATUS_PENDING;
    }
    /* Armed before it is visible in the queue: a dequeuer that finds it must be able to claim
     * it with IoSetCancelRoutine(NULL). */
    KeAcquireSpinLockAtDpcLevel(&qlock);
    if (cancelable) IoSetCancelRoutine(irp, udrv_cancel);
    InsertTailList(&queue, &irp->Tail.Overlay.ListEntry);
    nqueued++;
    KeReleaseSpinLockFromDpcLevel(&qlock);
    IoReleaseCancelSpinLock(cirql);
    return STATUS_PENDING;
}

/* Take irp off the queue if no cancel owns it (qlock held). */
static bool claim_locked(PIRP irp)
{
    if (irp->Tail.Overlay.DriverContext[0] && IoSetCancelRoutine(irp, NULL) == NULL) return false;
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
    nqueued--;
    return true;
}

uint32_t udrv_complete_next(NTSTATUS status, PFILE_OBJECT file)
{
    KIRQL old;
    PIRP found = NULL;
    KeAcquireSpinLock(&qlock, &old);
    for (PLIST_ENTRY e = queue.Flink; e != &queue && !found; e = e->Flink) {
        PIRP irp = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
        if (file && IoGetCurrentIrpStackLocation(irp)->FileObject != file) continue;
        if (claim_locked(irp)) found = irp;
    }
    KeReleaseSpinLock(&qlock, old);
    if (!found) return 0;
    uint32_t id = io_irp_id(found);
    log_event2('D', IoGetCurrentIrpStackLocation(found)->FileObject, found, 0, cancel_flag_of(found));
    if (status == STATUS_SUCCESS) fill_read(found);
    complete(found, status);
    return id;
}

/* ---- dispatch routines */

static NTSTATUS udrv_create(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
    plat_fetch_add32(&udrv.creates, 1);
    sp->FileObject->FsContext = (PVOID)(uintptr_t)(0x1000 + udrv.creates); /* per-open context */
    log_event('O', sp->FileObject, irp, 0);
    complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

static NTSTATUS udrv_close(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    plat_fetch_add32(&udrv.closes, 1);
    log_event('L', IoGetCurrentIrpStackLocation(irp)->FileObject, irp, 0);
    complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

static NTSTATUS udrv_cleanup(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    PFILE_OBJECT file = IoGetCurrentIrpStackLocation(irp)->FileObject;
    LIST_ENTRY mine;
    InitializeListHead(&mine);
    int queued = 0;
    KIRQL old;
    KeAcquireSpinLock(&qlock, &old);
    for (PLIST_ENTRY e = queue.Flink; e != &queue;) {
        PIRP q = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
        e = e->Flink;
        if (IoGetCurrentIrpStackLocation(q)->FileObject != file) continue;
        queued++;
        if (plat_load32(&udrv.cleanup_cancels) && claim_locked(q)) InsertTailList(&mine, &q->Tail.Overlay.ListEntry);
    }
    KeReleaseSpinLock(&qlock, old);
    plat_fetch_add32(&udrv.cleanups, 1);
    log_event('U', file, irp, queued);
    while (!IsListEmpty(&mine)) {
        PIRP q = CONTAINING_RECORD(RemoveHeadList(&mine), IRP, Tail.Overlay.ListEntry);
        log_event('K', file, q, 0);
        complete(q, STATUS_CANCELLED);
    }
    complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

static NTSTATUS udrv_read(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    PFILE_OBJECT file = IoGetCurrentIrpStackLocation(irp)->FileObject;
    /* Reads may be dispatched on several threads at once (T67's issuers): interlocked. */
    InterlockedExchangePointer((PVOID volatile *)&udrv.last_fscontext, file->FsContext);
    log_event('R', file, irp, 0);
    int mode = plat_load32(&udrv.read_mode);
    if (mode == UDRV_COMPLETE) {
        fill_read(irp);
        complete(irp, STATUS_SUCCESS);
        return STATUS_SUCCESS;
    }
    return queue_irp(irp, mode == UDRV_QUEUE_CANCELABLE);
}

static NTSTATUS udrv_write(PDEVICE_OBJECT dev, PIRP irp)
{
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
    ULONG n = sp->Parameters.Write.Length;
    const void *src = dev->Flags & DO_BUFFERED_IO ? irp->AssociatedIrp.SystemBuffer
                      : irp->MdlAddress ? MmGetSystemAddressForMdlSafe(irp->MdlAddress, NormalPagePriority)
                                        : irp->UserBuffer;
    udrv.last_write_len = n;
    memcpy(udrv.last_write, src, n < sizeof udrv.last_write ? n : sizeof udrv.last_write);
    log_event('W', sp->FileObject, irp, 0);
    irp->IoStatus.Information = n;
    complete(irp, STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

static NTSTATUS udrv_ioctl(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    PIO_STACK_LOCATION sp = IoGetCurrentIrpStackLocation(irp);
    ULONG in = sp->Parameters.DeviceIoControl.InputBufferLength;
    ULONG out = sp->Parameters.DeviceIoControl.OutputBufferLength;
    ULONG n = in < out ? in : out;
    log_event('R', sp->FileObject, irp, 0);
    switch (sp->Parameters.DeviceIoControl.IoControlCode) {
    case UIOCTL_ECHO:
    case UIOCTL_NEEDS_WRITE: {
        PUCHAR b = irp->AssociatedIrp.SystemBuffer; /* input and output share it */
        for (ULONG i = 0; i < n; i++) b[i] = (UCHAR)(b[i] + 1);
        irp->IoStatus.Information = n;
        complete(irp, STATUS_SUCCESS);
        return STATUS_SUCCESS;
    }
    case UIOCTL_NEITHER: {
        const UCHAR *src = sp->Parameters.DeviceIoControl.Type3InputBuffer;
        PUCHAR dst = irp->UserBuffer;
        for (ULONG i = 0; i < n; i++) dst[i] = (UCHAR)(src[i] + 1);
        irp->IoStatus.Information = n;
        complete(irp, STATUS_SUCCESS);
        return STATUS_SUCCESS;
    }
    case UIOCTL_QUEUE:
        return queue_irp(irp, plat_load32(&udrv.read_mode) != UDRV_QUEUE_IGNORE_CANCEL);
    default:
        complete(irp, STATUS_INVALID_DEVICE_REQUEST);
        return STATUS_INVALID_DEVICE_REQUEST;
    }
}

/* ---- load / unload */

static NTSTATUS make_device(PDRIVER_OBJECT drv, const wchar_t *name, const wchar_t *link, ULONG flags,
                            BOOLEAN exclusive, PDEVICE_OBJECT *out)
{
    UNICODE_STRING n, l;
    RtlInitUnicodeString(&n, name);
    NTSTATUS st = IoCreateDevice(drv, 0, &n, FILE_DEVICE_UNKNOWN, 0, exclusive, out);
    if (!NT_SUCCESS(st)) return st;
    if (link) {
        RtlInitUnicodeString(&l, link);
        IoCreateSymbolicLink(&l, &n);
    }
    (*out)->Flags |= flags;
    (*out)->Flags &= ~DO_DEVICE_INITIALIZING;
    return STATUS_SUCCESS;
}

static VOID udrv_unload_routine(PDRIVER_OBJECT drv)
{
    UNICODE_STRING l;
    RtlInitUnicodeString(&l, L"\\??\\UTest");
    IoDeleteSymbolicLink(&l);
    RtlInitUnicodeString(&l, L"\\??\\UExcl");
    IoDeleteSymbolicLink(&l);
    while (drv->DeviceObject) IoDeleteDevice(drv->DeviceObject);
}

static NTSTATUS udrv_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    drv->MajorFunction[IRP_MJ_CREATE] = udrv_create;
    drv->MajorFunction[IRP_MJ_CLOSE] = udrv_close;
    drv->MajorFunction[IRP_MJ_CLEANUP] = udrv_cleanup;
    drv->MajorFunction[IRP_MJ_READ] = udrv_read;
    drv->MajorFunction[IRP_MJ_WRITE] = udrv_write;
    drv->MajorFunction[IRP_MJ_DEVICE_CONTROL] = udrv_ioctl;
    drv->DriverUnload = udrv_unload_routine;
    NTSTATUS st = make_device(drv, L"\\Device\\UTest", L"\\??\\UTest", DO_BUFFERED_IO, FALSE, &udrv.dev);
    if (NT_SUCCESS(st)) st = make_device(drv, L"\\Device\\UExcl", L"\\??\\UExcl", DO_BUFFERED_IO, TRUE, &udrv.excl);
    if (NT_SUCCESS(st)) st = make_device(drv, L"\\Device\\UDirect", NULL, DO_DIRECT_IO, FALSE, &udrv.direct);
    if (NT_SUCCESS(st)) st = make_device(drv, L"\\Device\\UNeither", NULL, 0, FALSE, &udrv.neither);
    return st;
}

void udrv_load(void)
{
    memset(&udrv, 0, sizeof udrv);
    udrv.cleanup_cancels = 1;
    KeInitializeSpinLock(&qlock);
    KeInitializeSpinLock(&log_lock);
    InitializeListHead(&queue);
    nqueued = 0;
    nlog = 0;
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\utest");
    NTSTATUS st = IoCreateDriver(&name, udrv_entry);
    if (!NT_SUCCESS(st)) irpk_test_fail(__FILE__, __LINE__, "IoCreateDriver failed 0x%x", (unsigned)st);
}

void udrv_unload(void)
{
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK_EQ(udrv_queued(), 0);
    PDRIVER_OBJECT drv = io_lookup_driver(L"utest");
    if (drv) CHECK_EQ(io_unload_driver(drv), 0);
}

bool udrv_wait_until(bool (*cond)(void *), void *arg)
{
    int64_t deadline = plat_now_ns() + 20000000000LL;
    while (!cond(arg)) {
        if (plat_now_ns() > deadline) return false;
        plat_sleep_ns(200000);
    }
    return true;
}

/* ---- helpers */

NTSTATUS u_open(const wchar_t *name, ACCESS_MASK access, ULONG options, PHANDLE h)
{
    UNICODE_STRING us;
    OBJECT_ATTRIBUTES oa;
    IO_STATUS_BLOCK iosb;
    RtlInitUnicodeString(&us, name);
    InitializeObjectAttributes(&oa, &us, OBJ_CASE_INSENSITIVE, NULL, NULL);
    return NtCreateFile(h, access, &oa, &iosb, NULL, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ | FILE_SHARE_WRITE,
                        FILE_OPEN, options, NULL, 0);
}

HANDLE u_event(void)
{
    HANDLE h = NULL;
    NTSTATUS st = NtCreateEvent(&h, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE);
    if (!NT_SUCCESS(st)) irpk_test_fail(__FILE__, __LINE__, "NtCreateEvent 0x%x", (unsigned)st);
    return h;
}

PFILE_OBJECT u_file(HANDLE h)
{
    PVOID fo = NULL;
    if (NT_SUCCESS(ObReferenceObjectByHandle(h, 0, *IoFileObjectType, KernelMode, &fo, NULL))) ObDereferenceObject(fo);
    return fo;
}

bool u_signalled(HANDLE ev)
{
    LARGE_INTEGER zero;
    zero.QuadPart = 0;
    return NtWaitForSingleObject(ev, FALSE, &zero) == STATUS_SUCCESS;
}

void u_fast_timeouts(long exit_timeout_ms, long hang_ms)
{
    irpk_user_config c = {10, exit_timeout_ms, 2, hang_ms};
    irpk_user_set_config(&c);
}

void u_check_clean(long handles_before)
{
    CHECK_EQ(irpk_user_flush(20000), 0);
    irpk_user_stats s;
    irpk_user_get_stats(&s);
    CHECK_EQ(s.irps_pending, 0);
    CHECK_EQ(s.files_live, 0);
    CHECK_EQ(ob_open_handles(), handles_before);
    CHECK_EQ(io_irps_live(), 0);
}
