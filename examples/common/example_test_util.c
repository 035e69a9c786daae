#include "example_test_util.h"

#include "io/io.h"
#include "irpkit/user.h"
#include "irpkit/verifier.h"
#include "ob/ob.h"
#include "test.h"

/* CHECK_EQ at the caller's file and line. */
#define EQ_AT(file, line, a, b)                                                                \
    do {                                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                                   \
        if (a_ != b_) irpk_test_fail(file, line, "%s == %s: %lld != %lld", #a, #b, a_, b_); \
    } while (0)

PDEVICE_OBJECT ex_load(PCWSTR driver_name, PDRIVER_INITIALIZE entry, PCWSTR link)
{
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    UNICODE_STRING name;
    RtlInitUnicodeString(&name, driver_name);
    if (!NT_SUCCESS(IoCreateDriver(&name, entry))) return NULL;
    return io_lookup_device(link);
}

void ex_stats_at(const char *file, int line, PDEVICE_OBJECT dev, ULONG code, void *out, ULONG len)
{
    memset(out, 0, len);
    EQ_AT(file, line, inproc_ioctl(dev, code, out, len), STATUS_SUCCESS);
}

void ex_unload_at(const char *file, int line, PDEVICE_OBJECT dev)
{
    EQ_AT(file, line, io_unload_driver(dev->DriverObject), 0);
    EQ_AT(file, line, irpk_report_count(), 0);
    if (irpk_report_count()) fprintf(stderr, "  first report: %s\n", irpk_report_text(0));
    irpk_reports_clear();
    EQ_AT(file, line, io_irps_live(), 0);
}

void ex_run_user_program_at(const char *file, int line, NTSTATUS (*program)(long, ustress_result *),
                            long requests, const char *what, ustress_result *r)
{
    EQ_AT(file, line, program(requests, r), STATUS_SUCCESS);
    ustress_print(what, r);
    EQ_AT(file, line, irpk_user_flush(-1), 0); /* every file object got IRP_MJ_CLOSE */
}

void ex_check_user_run_at(const char *file, int line, const ustress_result *r)
{
    EQ_AT(file, line, r->bad, 0);
    if (!(r->issued > 0)) irpk_test_fail(file, line, "no request was issued");
    EQ_AT(file, line, r->completed, r->issued);
    EQ_AT(file, line, r->handles_left, 0);
}

void ex_unload_after_user_at(const char *file, int line, PDEVICE_OBJECT dev, LONG handles)
{
    irpk_user_stats us;
    irpk_user_get_stats(&us);
    EQ_AT(file, line, us.irps_pending, 0);
    EQ_AT(file, line, us.files_live, 0);
    ex_unload_at(file, line, dev);
    EQ_AT(file, line, ob_open_handles(), handles);
}

void ex_prepare_ulong_read(inproc_request *r, PIO_STACK_LOCATION next, void *ctx)
{
    (void)r;
    (void)ctx;
    next->MajorFunction = IRP_MJ_READ;
    next->Parameters.Read.Length = sizeof(ULONG);
}
