/* event_timer's user program: timed waits (DeviceIoControl) from several threads on several
 * handles — every other one passing an event handle the timer DPC sets — with random
 * CancelIoEx / CancelIo and handles closed mid-flight, so the timer DPC, the cancel routine
 * and cleanup race; the NT services (<ntifs.h>) the Win32 calls stand for, on the shared
 * user-mode stress engine (tests/csq/ustress.c). */
#include "event_timer.h"

#include <ntifs.h>

#include "user_program.h"
#include "ustress.h"

typedef struct program {
    HANDLE event; /* set by the driver's timer DPC for the requests that pass it */
} program;

static NTSTATUS issue_wait(HANDLE file, PIO_APC_ROUTINE apc, PVOID apc_context, ustress_request *r, void *ctx)
{
    program *p = ctx;
    EVENT_TIMER_WAIT_INPUT in = {(ULONG)(r->seq % 3), 0, (r->seq & 1) ? p->event : NULL};
    return NtDeviceIoControlFile(file, NULL, apc, apc_context, &r->iosb, IOCTL_EVENT_TIMER_WAIT, &in,
                                 sizeof in, NULL, 0);
}

static bool check_wait(const ustress_request *r, void *ctx)
{
    UNREFERENCED_PARAMETER(ctx);
    return r->iosb.Status == STATUS_SUCCESS || r->iosb.Status == STATUS_CANCELLED;
}

NTSTATUS EventTimerUserProgram(long requests_per_thread, ustress_result *out)
{
    program p;
    NTSTATUS st = NtCreateEvent(&p.event, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE);
    if (!NT_SUCCESS(st)) return st;
    ustress_config cfg = {
        .path = EVENT_TIMER_LINK_NAME,
        .threads = 4,
        .window = 8,
        .handles = 3,
        .requests = requests_per_thread,
        .cancel_one_pct = 10,
        .cancel_all_pct = 1,
        .close_every = 100,
        .seed = 0x5EED7,
        .issue = issue_wait,
        .check = check_wait,
        .ctx = &p,
    };
    st = ustress_run(&cfg, out);
    NtClose(p.event);
    return st;
}
