/* The seed's test program against the NT native API (see user_program.h).
 *
 * In the seed (Win32):
 *     hDevice = CreateFile("\\\\.\\HelloDDK", ..., FILE_FLAG_OVERLAPPED, NULL);
 *     two threads:  OVERLAPPED ov = {0}; ov.hEvent = CreateEvent(NULL, FALSE, FALSE, NULL);
 *                   ReadFile(hDevice, buffer, 10, &n, &ov);
 *                   // CancelIo(hDevice);
 *                   WaitForSingleObject(ov.hEvent, INFINITE);
 *     main:         WaitForMultipleObjects(2, threads, TRUE, INFINITE); CloseHandle(hDevice);
 * Here each Win32 call is the NT service it stands for: CreateFile = NtCreateFile on \??\HelloDDK
 * without FILE_SYNCHRONOUS_IO_* (overlapped), CreateEvent = NtCreateEvent, ReadFile with an
 * OVERLAPPED = NtReadFile with an event, an IO_STATUS_BLOCK and a byte offset, CancelIo =
 * NtCancelIoFile, CloseHandle = NtClose. Threads come from irpkit/thread.h (_beginthreadex). */
#include "user_program.h"

#include <string.h>

#include "hello_startio.h"
#include "io/io.h"
#include "irpkit/thread.h"
#include "irpkit/user.h"
#include "ob/ob.h"

#define READ_SIZE 10

typedef struct reader_ctx {
    int index;
    HANDLE file;
    HANDLE issued; /* set once NtReadFile returned */
    const hello_user_config *cfg;
    hello_user_result *out;
} reader_ctx;

static void reader(void *arg)
{
    reader_ctx *c = arg;
    HANDLE event;
    LARGE_INTEGER offset;
    offset.QuadPart = 0;
    NtCreateEvent(&event, EVENT_ALL_ACCESS, NULL, SynchronizationEvent, FALSE);
    c->out->read_returned[c->index] = NtReadFile(c->file, event, NULL, NULL, &c->out->iosb[c->index],
                                                 c->out->data[c->index], READ_SIZE, &offset, NULL);
    NtSetEvent(c->issued, NULL);
    if (c->cfg->flow == HELLO_FLOW_CANCEL_IO) {
        IO_STATUS_BLOCK cancel_iosb;
        NtCancelIoFile(c->file, &cancel_iosb);
    }
    NtWaitForSingleObject(event, FALSE, NULL);
    NtClose(event);
}

int hello_user_main(const hello_user_config *cfg, hello_user_result *out)
{
    UNICODE_STRING name = RTL_CONSTANT_STRING(HELLO_DDK_LINK_NAME);
    OBJECT_ATTRIBUTES oa;
    IO_STATUS_BLOCK iosb;
    HANDLE file;
    InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    out->open_status = NtCreateFile(&file, GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE, &oa, &iosb, NULL,
                                    FILE_ATTRIBUTE_NORMAL, 0, FILE_OPEN, 0 /* overlapped */, NULL, 0);
    if (!NT_SUCCESS(out->open_status)) return -1;
    reader_ctx ctx[2];
    irpk_thread *threads[2];
    for (int i = 0; i < 2; i++) {
        out->iosb[i].Status = -1; /* not yet written by any completion */
        ctx[i] = (reader_ctx){i, file, NULL, cfg, out};
        NtCreateEvent(&ctx[i].issued, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE);
    }
    /* The second thread starts once the first one's read is issued, so the first read is the
     * one StartIo runs and the second waits in the device queue — the seed's threads race for
     * this, which makes its output differ from run to run. */
    threads[0] = irpk_thread_start(reader, &ctx[0], "reader-1");
    NtWaitForSingleObject(ctx[0].issued, FALSE, NULL);
    threads[1] = irpk_thread_start(reader, &ctx[1], "reader-2");
    if (cfg->flow == HELLO_FLOW_CLOSE_EARLY) {
        HANDLE both[2] = {ctx[0].issued, ctx[1].issued};
        NtWaitForMultipleObjects(2, both, WaitAll, FALSE, NULL);
        out->close_status = NtClose(file); /* IRP_MJ_CLEANUP now; IRP_MJ_CLOSE after the last read */
    }
    for (int i = 0; i < 2; i++) irpk_thread_join(threads[i]);
    if (cfg->flow != HELLO_FLOW_CLOSE_EARLY) out->close_status = NtClose(file);
    for (int i = 0; i < 2; i++) NtClose(ctx[i].issued);
    return 0;
}

int hello_user_run(const hello_user_config *cfg, hello_user_result *out)
{
    memset(out, 0, sizeof *out);
    HELLO_CONFIG hc = {(BOOLEAN)(cfg->as_written != 0), cfg->delay_ms};
    HelloSetConfig(&hc);
    UNICODE_STRING driver_name = RTL_CONSTANT_STRING(L"\\Driver\\HelloStartIo");
    if (!NT_SUCCESS(IoCreateDriver(&driver_name, HelloDriverEntry))) return -1;
    int rc = hello_user_main(cfg, out);
    irpk_user_flush(30000); /* IRP_MJ_CLOSE may still be on its way (from the I/O worker) */
    KeFlushQueuedDpcs();
    io_unload_driver(io_lookup_driver(L"HelloStartIo"));
    irpk_user_stats stats;
    irpk_user_get_stats(&stats);
    out->files_leaked = stats.files_live;
    out->handles_leaked = ob_open_handles();
    out->irps_leaked = io_irps_live();
    return rc;
}
