/* The I/O system services: NtReadFile, NtWriteFile, NtDeviceIoControlFile and their Zw* twins.
 * Each builds an IRP, puts it at the head of the calling thread's pending list (§7.1) and sends
 * it to the top of the file's device stack. On a synchronous file object the service waits for
 * completion (STATUS_PENDING never reaches the caller; an interrupted wait follows §7.5); on an
 * asynchronous one it returns what the driver returned and the completion hand-off
 * (complete.c) sets the IO_STATUS_BLOCK, the event and the APC later. */
#include "trace/trace.h"
#include "user/user.h"

#define SYSBUF_TAG 0x62727355u /* "Usrb" */

typedef struct request {
    UCHAR major;
    HANDLE file, event;
    PIO_APC_ROUTINE apc;
    PVOID apc_context;
    PIO_STATUS_BLOCK iosb;
    PVOID buffer; /* read/write data; device control: output */
    ULONG length;
    PVOID input; /* device control */
    ULONG input_length, code;
    PLARGE_INTEGER offset;
    ULONG key;
    KPROCESSOR_MODE mode;
} request;

/* ---- buffers */

typedef struct sysbuf_header {
    ULONG capacity;
    ULONG out_length; /* bytes the caller's output buffer holds */
    ULONG64 align;
} sysbuf_header;

void *user_sysbuf_alloc(ULONG size, ULONG out_len)
{
    sysbuf_header *h = ExAllocatePoolWithTag(NonPagedPool, sizeof *h + size, SYSBUF_TAG);
    if (!h) return NULL;
    h->capacity = size;
    h->out_length = out_len;
    return h + 1;
}

void user_sysbuf_copy_back(PIRP irp, const IO_STATUS_BLOCK *ios)
{
    void *sb = irp->AssociatedIrp.SystemBuffer;
    if (!(irp->Flags & IRP_BUFFERED_IO) || !(irp->Flags & IRP_INPUT_OPERATION) || !sb || !irp->UserBuffer ||
        NT_ERROR(ios->Status))
        return;
    const sysbuf_header *h = (const sysbuf_header *)sb - 1;
    ULONG_PTR n = ios->Information;
    if (n > h->out_length) n = h->out_length;
    if (n > h->capacity) n = h->capacity;
    memcpy(irp->UserBuffer, sb, n);
}

void user_release_buffers(PIRP irp)
{
    if ((irp->Flags & IRP_DEALLOCATE_BUFFER) && irp->AssociatedIrp.SystemBuffer) {
        ExFreePoolWithTag((sysbuf_header *)irp->AssociatedIrp.SystemBuffer - 1, SYSBUF_TAG);
        irp->AssociatedIrp.SystemBuffer = NULL;
    }
    for (PMDL m = irp->MdlAddress, next; m; m = next) {
        next = m->Next;
        plat_free(m);
    }
    irp->MdlAddress = NULL;
    if (io_priv(irp)->user_apc) {
        plat_free(io_priv(irp)->user_apc);
        io_priv(irp)->user_apc = NULL;
    }
}

static PMDL new_mdl(PVOID va, ULONG length)
{
    PMDL m = plat_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->Size = sizeof *m;
    m->StartVa = m->MappedSystemVa = va;
    m->ByteCount = length;
    return m;
}

/* Buffered: a system buffer of `size` bytes, `in_len` of them copied from `in`. */
static bool buffered(PIRP irp, ULONG size, const void *in, ULONG in_len, ULONG out_len)
{
    if (!size) return true;
    void *sb = user_sysbuf_alloc(size, out_len);
    if (!sb) return false;
    if (in_len) memcpy(sb, in, in_len);
    irp->AssociatedIrp.SystemBuffer = sb;
    irp->Flags |= IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | (out_len ? IRP_INPUT_OPERATION : 0);
    return true;
}

/* Describe the caller's buffer the way the device asked for (DO_BUFFERED_IO, DO_DIRECT_IO or
 * neither) or, for device controls, the way the control code's method asks for. */
static bool attach_buffers(PIRP irp, PDEVICE_OBJECT top, const request *r)
{
    irp->UserBuffer = r->buffer;
    if (r->major == IRP_MJ_DEVICE_CONTROL) {
        switch (METHOD_FROM_CTL_CODE(r->code)) {
        case METHOD_BUFFERED: {
            ULONG size = r->input_length > r->length ? r->input_length : r->length;
            return buffered(irp, size, r->input, r->input_length, r->length);
        }
        case METHOD_IN_DIRECT:
        case METHOD_OUT_DIRECT:
            if (!buffered(irp, r->input_length, r->input, r->input_length, 0)) return false;
            return !r->length || (irp->MdlAddress = new_mdl(r->buffer, r->length)) != NULL;
        default: /* METHOD_NEITHER: the driver gets the caller's pointers */
            return true;
        }
    }
    if (!r->length) return true;
    bool read = r->major == IRP_MJ_READ;
    if (top->Flags & DO_BUFFERED_IO)
        return buffered(irp, r->length, read ? NULL : r->buffer, read ? 0 : r->length, read ? r->length : 0);
    if (top->Flags & DO_DIRECT_IO) return (irp->MdlAddress = new_mdl(r->buffer, r->length)) != NULL;
    return true;
}

/* ---- parameters */

static ACCESS_MASK needed_access(const request *r)
{
    if (r->major == IRP_MJ_READ) return FILE_READ_DATA;
    if (r->major == IRP_MJ_WRITE) return FILE_WRITE_DATA;
    ULONG a = (r->code >> 14) & 3;
    return ((a & FILE_READ_ACCESS) ? FILE_READ_DATA : 0) | ((a & FILE_WRITE_ACCESS) ? FILE_WRITE_DATA : 0);
}

/* What a user-mode probe would fault on (Windows: STATUS_ACCESS_VIOLATION from the probe). */
static NTSTATUS check_pointers(const request *r)
{
    if (!r->iosb) return STATUS_ACCESS_VIOLATION;
    if (!r->buffer && r->length) return STATUS_ACCESS_VIOLATION;
    if (!r->input && r->input_length) return STATUS_ACCESS_VIOLATION;
    return STATUS_SUCCESS;
}

static LARGE_INTEGER effective_offset(const user_file *uf, const request *r)
{
    LARGE_INTEGER off;
    off.QuadPart = 0;
    bool use_pointer = !r->offset || (r->offset->u.HighPart == -1 &&
                                      r->offset->u.LowPart == FILE_USE_FILE_POINTER_POSITION);
    if (use_pointer && uf->sync) return uf->fo.CurrentByteOffset; /* file lock held */
    if (!use_pointer) off = *r->offset;
    return off;
}

static void fill_stack(PIRP irp, user_file *uf, const request *r)
{
    PIO_STACK_LOCATION sp = IoGetNextIrpStackLocation(irp);
    sp->MajorFunction = r->major;
    sp->FileObject = &uf->fo;
    if (r->major == IRP_MJ_DEVICE_CONTROL) {
        sp->Parameters.DeviceIoControl.OutputBufferLength = r->length;
        sp->Parameters.DeviceIoControl.InputBufferLength = r->input_length;
        sp->Parameters.DeviceIoControl.IoControlCode = r->code;
        sp->Parameters.DeviceIoControl.Type3InputBuffer = r->input;
    } else { /* Read and Write have the same layout */
        sp->Parameters.Read.Length = r->length;
        sp->Parameters.Read.Key = r->key;
        sp->Parameters.Read.ByteOffset = effective_offset(uf, r);
    }
}

static const char *service_name(UCHAR major)
{
    return major == IRP_MJ_READ ? "NtReadFile" : major == IRP_MJ_WRITE ? "NtWriteFile" : "NtDeviceIoControlFile";
}

/* ---- the pending list (§7.1) */

static void queue_to_thread(PETHREAD e, PIRP irp)
{
    user_register_thread(e);
    plat_fetch_add32(&user_irps_pending, 1);
    /* Head insertion: walks see the newest first. The lock, not thread ownership, guards the
     * list: the hand-off removes IRPs from any thread and cancellers walk it (a leaf here). */
    KIRQL irql = user_lock(&e->IrpListLock);
    InsertHeadList(&e->IrpList, &irp->ThreadListEntry);
    user_unlock(&e->IrpListLock, irql);
}

/* ---- synchronous file objects */

/* Requests on a synchronous file object are serialised by its Lock event (FileObject->Lock,
 * a synchronization event that starts signalled). */
static NTSTATUS lock_file(user_file *uf)
{
    PVOID lock = &uf->fo.Lock;
    return user_wait(1, &lock, WaitAny, uf->alertable, NULL);
}

static void unlock_file(user_file *uf) { KeSetEvent(&uf->fo.Lock, IO_NO_INCREMENT, FALSE); }

/* Wait for the hand-off to signal FileObject->Event. An alert or APC that breaks the wait
 * (FILE_SYNCHRONOUS_IO_ALERT) cancels the IRP and waits for it anyway — polling when a cancel
 * routine ran, without timeout otherwise: a synchronous IRP is never abandoned (§7.5). We hold
 * a reference on irp, so IoCancelIrp is safe even if it completes meanwhile. */
static NTSTATUS wait_synchronous(user_file *uf, PIRP irp)
{
    PVOID event = &uf->fo.Event;
    NTSTATUS w = user_wait(1, &event, WaitAny, uf->alertable, NULL);
    if (w == STATUS_ALERTED || w == STATUS_USER_APC) {
        BOOLEAN cancelled = IoCancelIrp(irp);
        user_trace(TRACE_INSTANT, "I/O manager", io_irp_id(irp), "wait interrupted (%s): IoCancelIrp -> %s",
                   user_status_name(w), cancelled ? "TRUE" : "FALSE");
        if (cancelled) {
            LARGE_INTEGER poll;
            poll.QuadPart = -user_cfg_cancel_poll_ms() * 10000;
            while (KeWaitForSingleObject(event, Executive, UserMode, FALSE, &poll) == STATUS_TIMEOUT) {}
        } else {
            KeWaitForSingleObject(event, Executive, UserMode, FALSE, NULL);
        }
    }
    return uf->fo.FinalStatus; /* written by the hand-off before it set the event */
}

/* ---- the service */

static NTSTATUS reference_event(const request *r, PKEVENT *out)
{
    *out = NULL;
    if (!r->event) return STATUS_SUCCESS;
    PVOID ev;
    NTSTATUS st = ObReferenceObjectByHandle(r->event, EVENT_MODIFY_STATE, *ExEventObjectType, r->mode, &ev, NULL);
    if (NT_SUCCESS(st)) *out = ev;
    return st;
}

static PIRP build_irp(user_file *uf, PKEVENT ev, const request *r, NTSTATUS *st)
{
    PIRP irp = IoAllocateIrp(uf->top->StackSize, FALSE);
    user_apc *apc = r->apc ? plat_calloc(1, sizeof *apc) : NULL;
    if (!irp || (r->apc && !apc)) {
        if (irp) IoFreeIrp(irp);
        plat_free(apc);
        *st = STATUS_INSUFFICIENT_RESOURCES;
        return NULL;
    }
    if (apc) *apc = (user_apc){{NULL, NULL}, true, (void (*)(void))r->apc, r->apc_context, r->iosb, NULL};
    io_priv(irp)->pflags |= IO_PF_THREADED; /* not yet published: a plain write is safe */
    io_priv(irp)->user_flags = uf->sync ? UIRP_SYNC : 0;
    io_priv(irp)->user_apc = apc;
    if (!attach_buffers(irp, uf->top, r)) {
        user_release_buffers(irp);
        IoFreeIrp(irp);
        *st = STATUS_INSUFFICIENT_RESOURCES;
        return NULL;
    }
    irp->RequestorMode = r->mode;
    irp->UserIosb = r->iosb;
    irp->UserEvent = ev;
    irp->Overlay.AsynchronousParameters.UserApcRoutine = (PVOID)(uintptr_t)r->apc;
    irp->Overlay.AsynchronousParameters.UserApcContext = r->apc_context;
    irp->Tail.Overlay.OriginalFileObject = &uf->fo;
    irp->Tail.Overlay.Thread = PsGetCurrentThread();
    irp->Flags |= (r->major == IRP_MJ_READ ? IRP_READ_OPERATION : r->major == IRP_MJ_WRITE ? IRP_WRITE_OPERATION : 0) |
                  (uf->sync ? IRP_SYNCHRONOUS_API : 0);
    fill_stack(irp, uf, r);
    return irp;
}

/* Consumes the event reference (it goes to the IRP, or is dropped on failure). */
static NTSTATUS send(user_file *uf, PKEVENT ev, const request *r)
{
    NTSTATUS st;
    PIRP irp = build_irp(uf, ev, r, &st);
    if (!irp) {
        if (ev) ObDereferenceObject(ev);
        return st;
    }
    uint32_t id = io_irp_id(irp);
    ObReferenceObject(&uf->fo); /* the IRP's reference: IRP_MJ_CLOSE waits for its completion */
    if (ev) KeClearEvent(ev);
    if (!ev || uf->sync) KeClearEvent(&uf->fo.Event);
    if (uf->sync) io_irp_ref(irp); /* keeps it valid for the §7.5 IoCancelIrp */
    queue_to_thread(PsGetCurrentThread(), irp);
    user_trace(TRACE_BEGIN, service_name(r->major), id, "%u bytes, %s file", (unsigned)r->length,
               uf->sync ? "synchronous" : "overlapped");
    st = IoCallDriver(uf->top, irp);
    if (uf->sync) {
        if (st == STATUS_PENDING) st = wait_synchronous(uf, irp);
        io_irp_unref(irp);
    }
    user_trace(TRACE_END, service_name(r->major), id, "returns 0x%08X %s", (unsigned)st, user_status_name(st));
    return st;
}

static NTSTATUS issue(const request *r)
{
    user_init_once();
    user_file *uf;
    NTSTATUS st = user_ref_file(r->file, needed_access(r), r->mode, &uf);
    if (!NT_SUCCESS(st)) return st;
    PKEVENT ev = NULL;
    st = check_pointers(r);
    if (st == STATUS_SUCCESS) st = reference_event(r, &ev);
    if (st == STATUS_SUCCESS && uf->sync) st = lock_file(uf); /* STATUS_USER_APC / ALERTED: not issued */
    if (st == STATUS_SUCCESS) {
        st = send(uf, ev, r);
        if (uf->sync) unlock_file(uf);
    } else if (ev) {
        ObDereferenceObject(ev);
    }
    user_file_release(uf);
    return st;
}

/* ---- entry points (Nt*: user-mode caller, access checked; Zw*: kernel-mode caller) */

static NTSTATUS read_write(UCHAR major, KPROCESSOR_MODE mode, HANDLE FileHandle, HANDLE Event,
                           PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext, PIO_STATUS_BLOCK IoStatusBlock,
                           PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset, PULONG Key)
{
    request r = {major, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer, Length,
                 NULL, 0, 0, ByteOffset, Key ? *Key : 0, mode};
    return issue(&r);
}

static NTSTATUS device_control(KPROCESSOR_MODE mode, HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine,
                               PVOID ApcContext, PIO_STATUS_BLOCK IoStatusBlock, ULONG IoControlCode,
                               PVOID InputBuffer, ULONG InputBufferLength, PVOID OutputBuffer,
                               ULONG OutputBufferLength)
{
    request r = {IRP_MJ_DEVICE_CONTROL, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, OutputBuffer,
                 OutputBufferLength, InputBuffer, InputBufferLength, IoControlCode, NULL, 0, mode};
    return issue(&r);
}

NTSTATUS NtReadFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                    PIO_STATUS_BLOCK IoStatusBlock, PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset,
                    PULONG Key)
{
    return read_write(IRP_MJ_READ, UserMode, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer,
                      Length, ByteOffset, Key);
}

NTSTATUS ZwReadFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                    PIO_STATUS_BLOCK IoStatusBlock, PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset,
                    PULONG Key)
{
    return read_write(IRP_MJ_READ, KernelMode, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer,
                      Length, ByteOffset, Key);
}

NTSTATUS NtWriteFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                     PIO_STATUS_BLOCK IoStatusBlock, PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset,
                     PULONG Key)
{
    return read_write(IRP_MJ_WRITE, UserMode, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer,
                      Length, ByteOffset, Key);
}

NTSTATUS ZwWriteFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                     PIO_STATUS_BLOCK IoStatusBlock, PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset,
                     PULONG Key)
{
    return read_write(IRP_MJ_WRITE, KernelMode, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer,
                      Length, ByteOffset, Key);
}

NTSTATUS NtDeviceIoControlFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                               PIO_STATUS_BLOCK IoStatusBlock, ULONG IoControlCode, PVOID InputBuffer,
                               ULONG InputBufferLength, PVOID OutputBuffer, ULONG OutputBufferLength)
{
    return device_control(UserMode, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, IoControlCode,
                          InputBuffer, InputBufferLength, OutputBuffer, OutputBufferLength);
}

NTSTATUS ZwDeviceIoControlFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                               PIO_STATUS_BLOCK IoStatusBlock, ULONG IoControlCode, PVOID InputBuffer,
                               ULONG InputBufferLength, PVOID OutputBuffer, ULONG OutputBufferLength)
{
    return device_control(KernelMode, FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, IoControlCode,
                          InputBuffer, InputBufferLength, OutputBuffer, OutputBufferLength);
}
