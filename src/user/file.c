/* File objects: NtCreateFile/NtOpenFile (IRP_MJ_CREATE), the last handle's IRP_MJ_CLEANUP, the
 * last reference's IRP_MJ_CLOSE (NT_SEMANTICS.md §7.6), and the I/O worker that sends CLOSE when
 * the last reference is dropped above PASSIVE_LEVEL. */
#include <wchar.h>

#include "trace/trace.h"
#include "user/user.h"

static void file_last_handle_closed(void *body);
static void file_delete(void *body);

const ob_type user_file_type = {"File", file_last_handle_closed, file_delete};
static POBJECT_TYPE file_type_ptr = (POBJECT_TYPE)&user_file_type;
POBJECT_TYPE *IoFileObjectType = &file_type_ptr;

NTSTATUS user_ref_file(HANDLE h, ACCESS_MASK need, KPROCESSOR_MODE mode, user_file **out)
{
    PVOID body;
    NTSTATUS st = ObReferenceObjectByHandle(h, need, *IoFileObjectType, mode, &body, NULL);
    if (NT_SUCCESS(st)) *out = body;
    return st;
}

static ACCESS_MASK map_file_access(ACCESS_MASK a) { return user_map_generic(&user_file_type, a); }

/* ---- IRP_MJ_CREATE / CLEANUP / CLOSE: synchronous, on no thread list. io's own completion
 * step sets our IOSB and event; the caller frees the IRP after waiting. */

static PIRP alloc_irp_must_succeed(CCHAR stack)
{
    PIRP irp;
    /* CLEANUP and CLOSE cannot fail in Windows either (they use a reserve IRP): retry. */
    while (!(irp = IoAllocateIrp(stack, FALSE))) plat_sleep_ns(1000000);
    return irp;
}

static NTSTATUS send_file_irp(user_file *uf, PIRP irp, UCHAR major, ULONG flags, KPROCESSOR_MODE mode,
                              ULONG_PTR *info)
{
    KEVENT done;
    IO_STATUS_BLOCK iosb = {{STATUS_PENDING}, 0};
    KeInitializeEvent(&done, NotificationEvent, FALSE);
    irp->UserEvent = &done;
    irp->UserIosb = &iosb;
    irp->Tail.Overlay.Thread = PsGetCurrentThread();
    irp->Tail.Overlay.OriginalFileObject = &uf->fo;
    irp->RequestorMode = mode;
    irp->Flags = flags | IRP_SYNCHRONOUS_API;
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->MajorFunction = major;
    sp->FileObject = &uf->fo;
    NTSTATUS st = IoCallDriver(uf->top, irp);
    if (st == STATUS_PENDING) {
        KeWaitForSingleObject(&done, Executive, KernelMode, FALSE, NULL);
        st = iosb.Status;
    }
    if (info) *info = iosb.Information;
    IoFreeIrp(irp);
    return st;
}

static void send_cleanup_or_close(user_file *uf, UCHAR major)
{
    const char *name = major == IRP_MJ_CLEANUP ? "IRP_MJ_CLEANUP" : "IRP_MJ_CLOSE";
    PIRP irp = alloc_irp_must_succeed(uf->top->StackSize);
    user_trace(TRACE_INSTANT, "I/O manager", io_irp_id(irp), "sends %s", name);
    send_file_irp(uf, irp, major, IRP_CLOSE_OPERATION, KernelMode, NULL);
}

/* Last handle closed (ob calls this outside its table lock, in the NtClose thread, before
 * dropping the handle's reference): IRP_MJ_CLEANUP, synchronously. Pending IRPs are left to
 * the driver's cleanup routine (§7.6). */
static void file_last_handle_closed(void *body)
{
    user_file *uf = body;
    plat_store32(&uf->closing, 1);
    plat_fetch_add32(&user_files_closing, 1);
    if (uf->opened) send_cleanup_or_close(uf, IRP_MJ_CLEANUP);
}

/* Last reference gone (PASSIVE_LEVEL, see user_file_release): IRP_MJ_CLOSE, then the device
 * references — the last open one of a driver whose unload is pending runs its DriverUnload
 * here (NT). ob frees the memory when this returns. */
static void file_delete(void *body)
{
    user_file *uf = body;
    if (uf->opened) send_cleanup_or_close(uf, IRP_MJ_CLOSE);
    /* After the CLOSE completed, so the driver is done with this file when its unload runs.
     * DriverUnload may run here for the same reason the CLOSE may: PASSIVE_LEVEL
     * (user_file_release) and no lock held (ob holds none around delete_body). */
    if (uf->device_counted) io_device_open_release(uf->fo.DeviceObject); /* last use of it */
    plat_fetch_add32(&user_files_live, -1); /* before `closing`: a flushed file is not live */
    if (plat_load32(&uf->closing)) {
        plat_fetch_add32(&user_files_closing, -1);
        plat_wake((volatile uint32_t *)&user_files_closing, INT32_MAX); /* irpk_user_flush */
    }
}

/* ---- deferred release: the I/O worker thread
 *
 * A file object is on the worker's list at most once: `deferred` counts the releases it owes;
 * whoever raises it from 0 links the file in. The worker unlinks the whole list, then per file
 * reads its link, takes the count (exchange with 0) and drops that many references. A release
 * deferred after that exchange links the file again — safely, the link was already read — and
 * its reference keeps the file alive through the worker's drops. */

/* defer_lock guards the list, the wake word and the stop flag; a leaf lock. */
static plat_lockword defer_lock;
static user_file *defer_head;
static volatile uint32_t defer_word; /* bumped on every push (the worker waits on it) */
static int32_t worker_stop;          /* quiesce: drain, then exit */
static volatile int32_t worker_started;
static plat_thread *volatile worker_thread; /* set by the starter once started */

static void io_worker(void *arg)
{
    (void)arg;
    for (;;) {
        KIRQL irql = user_lock(&defer_lock);
        user_file *list = defer_head;
        defer_head = NULL;
        uint32_t seen = defer_word;
        bool stop = worker_stop != 0;
        user_unlock(&defer_lock, irql);
        if (!list) {
            if (stop) return;
            /* A push after we read `seen` changes the word, so this wait cannot miss it. */
            plat_wait(&defer_word, seen, PLAT_FOREVER);
            continue;
        }
        while (list) {
            user_file *uf = list;
            list = uf->deferred_next;
            for (int32_t n = plat_xchg32(&uf->deferred, 0); n > 0; n--)
                ObDereferenceObject(&uf->fo); /* PASSIVE_LEVEL, no lock held: CLOSE may run */
        }
    }
}

/* plat_on_quiesce: stop the native I/O worker (after it sent every CLOSE it owes); it starts
 * again on demand. The explorer calls this before each exploration — a native worker woken
 * while fibers run would take the explorer's locks from a foreign OS thread — and so does
 * irpk_runtime_shutdown. ke's DPC and timer threads are stopped first: a DPC completing a
 * file's last request defers its release to this worker. */
static void worker_quiesce(void)
{
    if (!plat_load32(&worker_started)) return;
    ke_stop_service_threads();
    plat_thread *t;
    while (!(t = plat_load_ptr((void *const volatile *)&worker_thread))) plat_yield(); /* being started */
    KIRQL irql = user_lock(&defer_lock);
    worker_stop = 1;
    plat_fetch_add32((volatile int32_t *)&defer_word, 1);
    user_unlock(&defer_lock, irql);
    plat_wake(&defer_word, INT32_MAX);
    plat_thread_join(t);
    irql = user_lock(&defer_lock);
    worker_stop = 0;
    user_unlock(&defer_lock, irql);
    plat_store_ptr((void *volatile *)&worker_thread, NULL);
    plat_store32(&worker_started, 0);
}

/* Part of user_reset (init.c): an execution starts with no worker and nothing deferred. The
 * quiesce above stopped a native worker before the exploration; an explorer worker is a fiber
 * that ended with its execution. */
void user_file_reset(void)
{
    plat_lock_init(&defer_lock);
    defer_head = NULL;
    plat_bk_store32((volatile int32_t *)&defer_word, 0);
    worker_stop = 0;
    plat_bk_store32(&worker_started, 0);
    plat_bk_store_ptr((void *volatile *)&worker_thread, NULL);
}

void user_file_release(user_file *uf)
{
    /* At PASSIVE_LEVEL this thread may run the driver's CLOSE itself. Raised IRQL is how a DPC
     * or a spin-lock holder shows here: whether this is the last reference cannot be known
     * without racing other holders, so every raised-IRQL release goes to the worker. */
    if (KeGetCurrentIrql() == PASSIVE_LEVEL) {
        ObDereferenceObject(&uf->fo);
        return;
    }
    if (plat_fetch_add32(&uf->deferred, 1) == 0) {
        KIRQL irql = user_lock(&defer_lock);
        uf->deferred_next = defer_head;
        defer_head = uf;
        plat_fetch_add32((volatile int32_t *)&defer_word, 1);
        user_unlock(&defer_lock, irql);
    }
    if (!plat_load32(&worker_started) && plat_cas32(&worker_started, 0, 1) == 0) {
        if (plat_mode() == PLAT_NATIVE) plat_on_quiesce(worker_quiesce);
        /* Joined by worker_quiesce (natively); under the explorer a system fiber that ends with
         * its execution. */
        plat_thread *t = plat_thread_start(io_worker, NULL, "I/O worker", PLAT_THREAD_SYSTEM);
        if (!t) plat_panic("user: cannot start the I/O worker thread");
        plat_store_ptr((void *volatile *)&worker_thread, t);
    }
    plat_wake(&defer_word, 1);
}

int irpk_user_flush(long timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? PLAT_FOREVER : plat_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int32_t n = plat_load32(&user_files_closing);
        if (n == 0) return 0;
        if (plat_now_ns() >= deadline) return -1;
        plat_wait((volatile uint32_t *)&user_files_closing, (uint32_t)n, deadline);
    }
}

/* ---- create */

typedef struct create_args {
    ACCESS_MASK access;
    POBJECT_ATTRIBUTES oa;
    PIO_STATUS_BLOCK iosb;
    ULONG attributes, share, disposition, options;
    KPROCESSOR_MODE mode;
} create_args;

static NTSTATUS check_create_args(const create_args *a)
{
    if (!a->oa || !a->iosb) return STATUS_ACCESS_VIOLATION;
    if (a->oa->Length != sizeof(OBJECT_ATTRIBUTES)) return STATUS_INVALID_PARAMETER;
    PUNICODE_STRING n = a->oa->ObjectName;
    if (!n || !n->Buffer || n->Length == 0 || n->Length % sizeof(WCHAR)) return STATUS_OBJECT_NAME_INVALID;
    if (a->oa->RootDirectory) return STATUS_NOT_SUPPORTED; /* relative opens: not implemented */
    ULONG sync = a->options & (FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT);
    if (a->disposition > FILE_MAXIMUM_DISPOSITION || (a->options & ~FILE_VALID_OPTION_FLAGS) ||
        (a->share & ~FILE_SHARE_VALID_FLAGS) ||
        sync == (FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT) ||
        (sync && !(a->access & (SYNCHRONIZE | GENERIC_ALL | MAXIMUM_ALLOWED))))
        return STATUS_INVALID_PARAMETER;
    return STATUS_SUCCESS;
}

/* FileName stays empty: it holds the path after the device's name, and irpkit resolves whole
 * device names only. */
static user_file *new_file(PDEVICE_OBJECT dev, const create_args *a)
{
    user_file *uf = ob_create(&user_file_type, sizeof *uf);
    if (!uf) return NULL;
    plat_fetch_add32(&user_files_live, 1);
    PFILE_OBJECT fo = &uf->fo;
    fo->Type = IO_TYPE_FILE;
    fo->Size = sizeof(FILE_OBJECT);
    fo->DeviceObject = dev;
    fo->IrpkPrivate = uf;
    ACCESS_MASK granted = map_file_access(a->access);
    fo->ReadAccess = (granted & FILE_READ_DATA) != 0;
    fo->WriteAccess = (granted & (FILE_WRITE_DATA | FILE_APPEND_DATA)) != 0;
    fo->DeleteAccess = (granted & DELETE) != 0;
    fo->SharedRead = (a->share & FILE_SHARE_READ) != 0;
    fo->SharedWrite = (a->share & FILE_SHARE_WRITE) != 0;
    fo->SharedDelete = (a->share & FILE_SHARE_DELETE) != 0;
    uf->sync = (a->options & (FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT)) != 0;
    uf->alertable = (a->options & FILE_SYNCHRONOUS_IO_ALERT) != 0;
    fo->Flags = (uf->sync ? FO_SYNCHRONOUS_IO : 0) | (uf->alertable ? FO_ALERTABLE_IO : 0);
    KeInitializeEvent(&fo->Lock, SynchronizationEvent, TRUE); /* serialises synchronous I/O */
    KeInitializeEvent(&fo->Event, NotificationEvent, FALSE);
    uf->top = IoGetAttachedDevice(dev);
    return uf;
}

static NTSTATUS send_create(user_file *uf, const create_args *a, ULONG_PTR *info)
{
    PIRP irp = IoAllocateIrp(uf->top->StackSize, FALSE);
    if (!irp) return STATUS_INSUFFICIENT_RESOURCES;
    IO_SECURITY_CONTEXT sec = {NULL, NULL, map_file_access(a->access), a->options};
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->Parameters.Create.SecurityContext = &sec;
    sp->Parameters.Create.Options = (a->disposition << 24) | (a->options & FILE_VALID_OPTION_FLAGS);
    sp->Parameters.Create.FileAttributes = (USHORT)a->attributes;
    sp->Parameters.Create.ShareAccess = (USHORT)a->share;
    sp->Parameters.Create.EaLength = 0;
    user_trace(TRACE_INSTANT, "I/O manager", io_irp_id(irp), "sends IRP_MJ_CREATE");
    return send_file_irp(uf, irp, IRP_MJ_CREATE, IRP_CREATE_OPERATION, a->mode, info);
}

static NTSTATUS create_file(PHANDLE handle, const create_args *a)
{
    user_init_once();
    if (!handle) return STATUS_ACCESS_VIOLATION;
    NTSTATUS st = check_create_args(a);
    if (!NT_SUCCESS(st)) return st;
    PUNICODE_STRING n = a->oa->ObjectName;
    size_t chars = n->Length / sizeof(WCHAR);
    wchar_t name[256];
    if (chars >= sizeof name / sizeof name[0] || n->Buffer[0] != L'\\') return STATUS_OBJECT_NAME_INVALID;
    wmemcpy(name, n->Buffer, chars);
    name[chars] = 0;
    /* The open reference (ReferenceCount), taken with the lookup under the namespace lock, keeps
     * the driver loaded until this open, or the file it makes, drops it: an unload requested
     * meanwhile is deferred (NT), so DriverUnload never runs while this open is in progress.
     * Initializing devices, drivers whose unload is pending and exclusive devices already open
     * are refused there (STATUS_NO_SUCH_DEVICE / STATUS_ACCESS_DENIED). */
    PDEVICE_OBJECT dev;
    st = io_open_device_ref(name, &dev);
    if (!NT_SUCCESS(st)) return st;
    /* Deleted since the lookup by its own driver (an IoDeleteDevice outside an unload): a
     * courtesy, not the safety — an IoDeleteDevice right after it leaves an open on a deleted
     * device, which the memory reference keeps safe. */
    if (io_device_deleted(dev)) st = STATUS_DELETE_PENDING;
    user_file *uf = NT_SUCCESS(st) ? new_file(dev, a) : NULL;
    if (!uf) {
        io_device_open_release(dev); /* may run a pending unload: no lock held here */
        return NT_SUCCESS(st) ? STATUS_INSUFFICIENT_RESOURCES : st;
    }
    uf->device_counted = TRUE; /* holds both references until file_delete */
    ULONG_PTR info = 0;
    st = send_create(uf, a, &info);
    if (NT_SUCCESS(st)) {
        uf->opened = TRUE;
        uf->fo.Flags |= FO_FILE_OPEN | FO_HANDLE_CREATED;
        st = ob_insert_handle(&uf->fo, map_file_access(a->access), a->oa->Attributes, handle);
    }
    /* The driver accepted the open but no handle could be made: undo it as a close would. */
    if (!NT_SUCCESS(st) && uf->opened) send_cleanup_or_close(uf, IRP_MJ_CLEANUP);
    ObDereferenceObject(&uf->fo); /* the creation reference; the handle keeps its own */
    a->iosb->Status = st;
    a->iosb->Information = NT_SUCCESS(st) ? info : 0;
    return st;
}

static NTSTATUS create_entry(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                             PIO_STATUS_BLOCK IoStatusBlock, ULONG FileAttributes, ULONG ShareAccess,
                             ULONG CreateDisposition, ULONG CreateOptions, KPROCESSOR_MODE mode)
{
    create_args a = {DesiredAccess, ObjectAttributes, IoStatusBlock, FileAttributes, ShareAccess,
                     CreateDisposition, CreateOptions, mode};
    wchar_t shown[64] = L"?";
    if (ObjectAttributes && ObjectAttributes->ObjectName && ObjectAttributes->ObjectName->Buffer)
        swprintf(shown, 64, L"%.*ls", (int)(ObjectAttributes->ObjectName->Length / sizeof(WCHAR)),
                 ObjectAttributes->ObjectName->Buffer);
    user_trace(TRACE_BEGIN, "NtCreateFile", 0, "%ls%s", shown,
               CreateOptions & (FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT) ? " (synchronous)"
                                                                                         : " (overlapped)");
    NTSTATUS st = create_file(FileHandle, &a);
    user_trace(TRACE_END, "NtCreateFile", 0, "returns 0x%08X %s", (unsigned)st, user_status_name(st));
    return st;
}

NTSTATUS NtCreateFile(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                      PIO_STATUS_BLOCK IoStatusBlock, PLARGE_INTEGER AllocationSize, ULONG FileAttributes,
                      ULONG ShareAccess, ULONG CreateDisposition, ULONG CreateOptions, PVOID EaBuffer,
                      ULONG EaLength)
{
    (void)AllocationSize;
    (void)EaBuffer;
    (void)EaLength;
    return create_entry(FileHandle, DesiredAccess, ObjectAttributes, IoStatusBlock, FileAttributes,
                        ShareAccess, CreateDisposition, CreateOptions, UserMode);
}

NTSTATUS ZwCreateFile(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                      PIO_STATUS_BLOCK IoStatusBlock, PLARGE_INTEGER AllocationSize, ULONG FileAttributes,
                      ULONG ShareAccess, ULONG CreateDisposition, ULONG CreateOptions, PVOID EaBuffer,
                      ULONG EaLength)
{
    (void)AllocationSize;
    (void)EaBuffer;
    (void)EaLength;
    return create_entry(FileHandle, DesiredAccess, ObjectAttributes, IoStatusBlock, FileAttributes,
                        ShareAccess, CreateDisposition, CreateOptions, KernelMode);
}

NTSTATUS NtOpenFile(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                    PIO_STATUS_BLOCK IoStatusBlock, ULONG ShareAccess, ULONG OpenOptions)
{
    return create_entry(FileHandle, DesiredAccess, ObjectAttributes, IoStatusBlock, 0, ShareAccess, FILE_OPEN,
                        OpenOptions, UserMode);
}

NTSTATUS ZwOpenFile(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                    PIO_STATUS_BLOCK IoStatusBlock, ULONG ShareAccess, ULONG OpenOptions)
{
    return create_entry(FileHandle, DesiredAccess, ObjectAttributes, IoStatusBlock, 0, ShareAccess, FILE_OPEN,
                        OpenOptions, KernelMode);
}
