/* irpkit/user.h: the irpk_* convenience calls, each a few NT services. */
#include <stdio.h>

#include "user/user.h"

_Static_assert(offsetof(irpk_overlapped, u) == offsetof(IO_STATUS_BLOCK, Status) &&
                   offsetof(irpk_overlapped, information) == offsetof(IO_STATUS_BLOCK, Information),
               "irpk_overlapped starts with an IO_STATUS_BLOCK");

static PIO_STATUS_BLOCK iosb_of(irpk_overlapped *ov) { return (PIO_STATUS_BLOCK)(void *)ov; }

int32_t irpk_open(const char *path, unsigned flags, void **handle)
{
    wchar_t name[256];
    if (!path || !handle) return STATUS_INVALID_PARAMETER;
    int n = swprintf(name, sizeof name / sizeof name[0], L"%s", path);
    if (n <= 0) return STATUS_OBJECT_NAME_INVALID;
    UNICODE_STRING us = {(USHORT)(n * sizeof(WCHAR)), (USHORT)((n + 1) * sizeof(WCHAR)), name};
    OBJECT_ATTRIBUTES oa;
    InitializeObjectAttributes(&oa, &us, OBJ_CASE_INSENSITIVE, NULL, NULL);
    IO_STATUS_BLOCK iosb;
    ACCESS_MASK access = SYNCHRONIZE | ((flags & IRPK_OPEN_READ) ? GENERIC_READ : 0) |
                         ((flags & IRPK_OPEN_WRITE) ? GENERIC_WRITE : 0);
    ULONG options = (flags & IRPK_OPEN_OVERLAPPED) ? 0 : FILE_SYNCHRONOUS_IO_NONALERT;
    return NtCreateFile(handle, access, &oa, &iosb, NULL, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ | FILE_SHARE_WRITE,
                        FILE_OPEN, options, NULL, 0);
}

int32_t irpk_close(void *handle) { return NtClose(handle); }

int32_t irpk_overlapped_init(irpk_overlapped *ov)
{
    memset(ov, 0, sizeof *ov);
    return NtCreateEvent(&ov->event, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE);
}

void irpk_overlapped_dispose(irpk_overlapped *ov)
{
    if (ov->event) NtClose(ov->event);
    ov->event = NULL;
}

int32_t irpk_read_async(void *handle, void *buf, uint32_t len, irpk_overlapped *ov)
{
    return NtReadFile(handle, ov->event, NULL, NULL, iosb_of(ov), buf, len, NULL, NULL);
}

int32_t irpk_write_async(void *handle, const void *buf, uint32_t len, irpk_overlapped *ov)
{
    return NtWriteFile(handle, ov->event, NULL, NULL, iosb_of(ov), (PVOID)(uintptr_t)buf, len, NULL, NULL);
}

int32_t irpk_overlapped_wait(irpk_overlapped *ov, int64_t timeout_ms)
{
    LARGE_INTEGER t;
    t.QuadPart = -timeout_ms * 10000;
    NTSTATUS st = NtWaitForSingleObject(ov->event, FALSE, timeout_ms < 0 ? NULL : &t);
    if (st != STATUS_SUCCESS) return st;
    return plat_load32((volatile int32_t *)&ov->u.status); /* written before the event was set */
}

int32_t irpk_cancel(void *handle, irpk_overlapped *ov)
{
    IO_STATUS_BLOCK iosb;
    return NtCancelIoFileEx(handle, ov ? iosb_of(ov) : NULL, &iosb);
}

int32_t irpk_cancel_mine(void *handle)
{
    IO_STATUS_BLOCK iosb;
    return NtCancelIoFile(handle, &iosb);
}

/* A synchronous request on any handle: a private event, then wait when it pends. */
typedef NTSTATUS (*issue_fn)(HANDLE h, HANDLE ev, PIO_STATUS_BLOCK iosb, const void *ctx);

static int32_t synchronous(HANDLE h, issue_fn fn, const void *ctx, uint32_t *done)
{
    irpk_overlapped ov;
    if (done) *done = 0;
    NTSTATUS st = irpk_overlapped_init(&ov);
    if (!NT_SUCCESS(st)) return st;
    st = fn(h, ov.event, iosb_of(&ov), ctx);
    if (st == STATUS_PENDING) st = irpk_overlapped_wait(&ov, -1);
    if (!NT_ERROR(st) && done) *done = (uint32_t)ov.information;
    irpk_overlapped_dispose(&ov);
    return st;
}

typedef struct rw_args {
    void *buf;
    uint32_t len;
    uint32_t code;
    const void *in;
    uint32_t in_len;
} rw_args;

static NTSTATUS do_read(HANDLE h, HANDLE ev, PIO_STATUS_BLOCK iosb, const void *ctx)
{
    const rw_args *a = ctx;
    return NtReadFile(h, ev, NULL, NULL, iosb, a->buf, a->len, NULL, NULL);
}

static NTSTATUS do_write(HANDLE h, HANDLE ev, PIO_STATUS_BLOCK iosb, const void *ctx)
{
    const rw_args *a = ctx;
    return NtWriteFile(h, ev, NULL, NULL, iosb, a->buf, a->len, NULL, NULL);
}

static NTSTATUS do_ioctl(HANDLE h, HANDLE ev, PIO_STATUS_BLOCK iosb, const void *ctx)
{
    const rw_args *a = ctx;
    return NtDeviceIoControlFile(h, ev, NULL, NULL, iosb, a->code, (PVOID)(uintptr_t)a->in, a->in_len, a->buf,
                                 a->len);
}

int32_t irpk_read(void *handle, void *buf, uint32_t len, uint32_t *done)
{
    rw_args a = {buf, len, 0, NULL, 0};
    return synchronous(handle, do_read, &a, done);
}

int32_t irpk_write(void *handle, const void *buf, uint32_t len, uint32_t *done)
{
    rw_args a = {(void *)(uintptr_t)buf, len, 0, NULL, 0};
    return synchronous(handle, do_write, &a, done);
}

int32_t irpk_ioctl(void *handle, uint32_t code, const void *in, uint32_t in_len, void *out, uint32_t out_len,
                   uint32_t *done)
{
    rw_args a = {out, out_len, code, in, in_len};
    return synchronous(handle, do_ioctl, &a, done);
}
