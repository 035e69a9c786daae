/* csq_startio's user program: what a Windows program does with the device — CreateFile
 * (overlapped), many ReadFile calls in flight from several threads, CancelIoEx / CancelIo at
 * random, CloseHandle while reads are in flight — written with the NT services those Win32 calls
 * stand for (<ntifs.h>) on the shared user-mode stress engine (tests/csq/ustress.c). */
#include "csq_startio.h"

#include <ntifs.h>

#include "user_program.h"
#include "ustress.h"

static NTSTATUS issue_read(HANDLE file, PIO_APC_ROUTINE apc, PVOID apc_context, ustress_request *r, void *ctx)
{
    UNREFERENCED_PARAMETER(ctx);
    LARGE_INTEGER offset = {.QuadPart = 0};
    return NtReadFile(file, NULL, apc, apc_context, &r->iosb, r->buffer, sizeof(ULONG), &offset, NULL);
}

/* A read transfers its start number; cancelled (IoCancelIrp, CancelIo, cleanup) or refused
 * after its handle's cleanup began (STATUS_DELETE_PENDING) are the other outcomes. */
static bool check_read(const ustress_request *r, void *ctx)
{
    UNREFERENCED_PARAMETER(ctx);
    if (r->iosb.Status == STATUS_SUCCESS) return r->iosb.Information == sizeof(ULONG) && *(const ULONG *)r->buffer > 0;
    return r->iosb.Status == STATUS_CANCELLED || r->iosb.Status == STATUS_DELETE_PENDING;
}

NTSTATUS CsqStartIoUserProgram(long requests_per_thread, ustress_result *out)
{
    ustress_config cfg = {
        .path = CSQ_STARTIO_LINK_NAME,
        .threads = 4,
        .window = 8,
        .handles = 3,
        .requests = requests_per_thread,
        .cancel_one_pct = 6,
        .cancel_all_pct = 1,
        .close_every = 150,
        .seed = 0x5EED5,
        .issue = issue_read,
        .check = check_read,
    };
    return ustress_run(&cfg, out);
}
