/* csq_thread's user program: overlapped reads from several threads on several handles, random
 * CancelIoEx / CancelIo, handles closed mid-flight — the NT services (<ntifs.h>) the Win32
 * calls stand for, on the shared user-mode stress engine (tests/csq/ustress.c). */
#include "csq_thread.h"

#include <ntifs.h>

#include "user_program.h"
#include "ustress.h"

static NTSTATUS issue_read(HANDLE file, PIO_APC_ROUTINE apc, PVOID apc_context, ustress_request *r, void *ctx)
{
    UNREFERENCED_PARAMETER(ctx);
    LARGE_INTEGER offset = {.QuadPart = 0};
    return NtReadFile(file, NULL, apc, apc_context, &r->iosb, r->buffer, sizeof(ULONG), &offset, NULL);
}

/* Served (its position in the worker's order) or cancelled (IoCancelIrp, CancelIo, cleanup). */
static bool check_read(const ustress_request *r, void *ctx)
{
    UNREFERENCED_PARAMETER(ctx);
    if (r->iosb.Status == STATUS_SUCCESS) return r->iosb.Information == sizeof(ULONG) && *(const ULONG *)r->buffer > 0;
    return r->iosb.Status == STATUS_CANCELLED;
}

NTSTATUS CsqThreadUserProgram(long requests_per_thread, ustress_result *out)
{
    ustress_config cfg = {
        .path = CSQ_THREAD_LINK_NAME,
        .threads = 4,
        .window = 8,
        .handles = 3,
        .requests = requests_per_thread,
        .cancel_one_pct = 6,
        .cancel_all_pct = 1,
        .close_every = 150,
        .seed = 0x5EED6,
        .issue = issue_read,
        .check = check_read,
    };
    return ustress_run(&cfg, out);
}
