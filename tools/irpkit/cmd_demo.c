/* irpkit demo — run the seed's sample driver (examples/hello_startio) under the seed's user
 * program (NtCreateFile, two overlapped NtReadFile from two threads, CancelIo, NtClose) and print
 * the timeline: who runs StartIo, in which thread, at which IRQL; who cancels; when
 * IRP_MJ_CLEANUP and IRP_MJ_CLOSE come. --in-process keeps the earlier in-process requester. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "irpkit/runtime.h"
#include "irpkit/verifier.h"
#include "requester.h"
#include "trace/trace.h"
#include "user_program.h"

typedef struct demo_opts {
    int as_written, json, in_process;
    hello_user_flow flow;
    unsigned delay_ms;
} demo_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: irpkit demo [--cancel | --wait-first | --in-process] [--as-written] [--delay-ms N] [--json]\n"
               "  (default)      the seed's user program: two threads each issue an overlapped 10-byte\n"
               "                 read on \\??\\HelloDDK; main closes the handle while both are in flight:\n"
               "                 IRP_MJ_CLEANUP cancels the queued read, IRP_MJ_CLOSE follows the last one\n"
               "  --cancel       each thread calls CancelIo after its read (the seed's commented-out line)\n"
               "  --wait-first   the seed's program as written: wait for both reads, then close\n"
               "  --in-process   the earlier demo: reader threads call IoCallDriver directly, one cancel\n"
               "                 in the StartIo window, one of a queued IRP\n"
               "  --as-written   the seed's driver: StartIo waits on a KEVENT at DISPATCH_LEVEL\n"
               "                 (the verifier reports 0xC4/0x3B; the run still completes)\n"
               "  --delay-ms N   device time per read (default 40; the seed used ~3000)\n"
               "  --json         print the event stream as Chrome trace JSON instead\n");
}

static int parse(int argc, char **argv, demo_opts *o)
{
    *o = (demo_opts){0, 0, 0, HELLO_FLOW_CLOSE_EARLY, 40};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--as-written")) o->as_written = 1;
        else if (!strcmp(argv[i], "--json")) o->json = 1;
        else if (!strcmp(argv[i], "--cancel")) o->flow = HELLO_FLOW_CANCEL_IO;
        else if (!strcmp(argv[i], "--wait-first")) o->flow = HELLO_FLOW_WAIT_FIRST;
        else if (!strcmp(argv[i], "--in-process")) o->in_process = 1;
        else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc) o->delay_ms = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout), 1;
        else return usage(stderr), 2;
    }
    return 0;
}

static trace_event *snapshot(size_t *n)
{
    size_t cap = trace_count();
    trace_event *evs = calloc(cap ? cap : 1, sizeof *evs);
    *n = evs ? trace_snapshot(evs, cap) : 0;
    return evs;
}

/* The seed's first question, answered from the recorded StartIo entries. */
static void print_startio_contexts(const trace_event *evs, size_t n)
{
    printf("\nWho ran StartIo?\n");
    for (size_t i = 0; i < n; i++) {
        if (evs[i].phase != TRACE_BEGIN || strcmp(evs[i].routine, "StartIo")) continue;
        char irql[16];
        const char *why = !strncmp(evs[i].thread, "DPC", 3) ? "IoStartNextPacket from the device's DPC"
                          : !strcmp(evs[i].thread, "canceller") ? "a cancel routine called IoStartNextPacket"
                          : evs[i].depth > 1 ? "IoStartNextPacket inside StartIo (nested)"
                                             : "dispatch routine's IoStartPacket, device idle";
        printf("  IRP#%-3u in %-10s at %-8s depth %u  <- %s\n", evs[i].irp_id, evs[i].thread,
               trace_irql_name(evs[i].irql, irql, sizeof irql), evs[i].depth, why);
    }
}

/* The request's life in one line per step, from the same event stream. */
static const char *step_of(const trace_event *e)
{
    if (e->phase == TRACE_BEGIN && !strcmp(e->routine, "Dispatch")) {
        if (!strcmp(e->what, "IRP_MJ_CREATE")) return "CREATE ";
        if (!strcmp(e->what, "IRP_MJ_READ")) return "READ   ";
        if (!strcmp(e->what, "IRP_MJ_CLEANUP")) return "CLEANUP";
        if (!strcmp(e->what, "IRP_MJ_CLOSE")) return "CLOSE  ";
    }
    if (e->phase == TRACE_BEGIN && !strcmp(e->routine, "StartIo")) return "StartIo";
    if (e->phase == TRACE_INSTANT && !strcmp(e->routine, "IoCancelIrp")) return "CANCEL ";
    if (e->phase == TRACE_INSTANT && !strcmp(e->routine, "IoCompleteRequest") && strstr(e->what, "0xC0000120"))
        return "CANCEL "; /* a driver completing a request as cancelled (its cleanup or cancel routine) */
    if (e->phase == TRACE_INSTANT && !strcmp(e->routine, "I/O completion")) return "DONE   ";
    return NULL;
}

static void print_steps(const trace_event *evs, size_t n)
{
    printf("\nSteps (CREATE, READ x2, StartIo, CANCEL, CLEANUP, CLOSE; DONE = IOSB and event set)\n");
    for (size_t i = 0; i < n; i++) {
        const char *s = step_of(&evs[i]);
        if (!s) continue;
        char irp[16] = "-";
        if (evs[i].irp_id) snprintf(irp, sizeof irp, "IRP#%u", evs[i].irp_id);
        printf("  %8.3f ms  %s  %-7s in %-12s %s\n", (double)evs[i].t_ns / 1e6, s, irp, evs[i].thread,
               !strcmp(evs[i].routine, "Dispatch") || !strcmp(evs[i].routine, "StartIo") ? "" : evs[i].what);
    }
}

static void print_reports(void)
{
    printf("  verifier findings %zu\n", irpk_report_count());
    for (size_t i = 0; i < irpk_report_count(); i++) {
        const char *t = irpk_report_text(i);
        const char *nl = strchr(t, '\n');
        printf("    #%zu %.*s\n", i + 1, nl ? (int)(nl - t) : (int)strlen(t), t);
    }
    if (irpk_report_count()) printf("\nFirst report in full:\n%s\n", irpk_report_text(0));
}

static const char *status_text(NTSTATUS st)
{
    return st == STATUS_SUCCESS ? "STATUS_SUCCESS" : st == STATUS_CANCELLED ? "STATUS_CANCELLED"
                                : st == STATUS_PENDING ? "STATUS_PENDING" : "";
}

static void print_user_summary(const hello_user_result *r)
{
    printf("\nSummary\n");
    printf("  NtCreateFile(\\??\\HelloDDK) 0x%08X, NtClose 0x%08X\n", (unsigned)r->open_status,
           (unsigned)r->close_status);
    for (int i = 0; i < 2; i++)
        printf("  reader-%d: NtReadFile returned 0x%08X %s; IOSB 0x%08X %s, %lu bytes \"%.*s\"\n", i + 1,
               (unsigned)r->read_returned[i], status_text(r->read_returned[i]), (unsigned)r->iosb[i].Status,
               status_text(r->iosb[i].Status), (unsigned long)r->iosb[i].Information,
               (int)(r->iosb[i].Information <= 10 ? r->iosb[i].Information : 0), (const char *)r->data[i]);
    printf("  leaked: IRPs %ld, handles %ld, file objects %ld\n", r->irps_leaked, r->handles_leaked,
           r->files_leaked);
    print_reports();
}

static void print_in_process_summary(const hello_run_result *r)
{
    printf("\nSummary\n");
    printf("  issued %ld, completed %ld (succeeded %ld, cancelled %ld, other %ld)\n", r->issued,
           r->completions, r->succeeded, r->cancelled, r->other);
    printf("  IoCancelIrp calls %ld (%ld found a cancel routine)\n", r->cancel_calls, r->cancel_true);
    printf("  StartIo calls %ld, max StartIo nesting on one thread %d\n", r->startio_calls,
           r->max_startio_depth);
    printf("  IRPs leaked %ld\n", r->irps_leaked);
    print_reports();
}

static const char *flow_text(const demo_opts *o)
{
    if (o->in_process) return "in-process requester: 2 readers x 3 reads, one cancel in the StartIo window, one of a queued IRP";
    switch (o->flow) {
    case HELLO_FLOW_CANCEL_IO: return "the seed's program with CancelIo: each thread cancels its own read";
    case HELLO_FLOW_WAIT_FIRST: return "the seed's program as written: wait for both reads, then close";
    default: return "the seed's program, closing the handle while both reads are in flight";
    }
}

/* The seed's first question needs more requests than its two reads: run the in-process
 * requester (2 readers x 3 reads, one cancel landing in the StartIo window) and show where
 * StartIo ran — dispatch thread, DPC thread, cancelling thread. Returns false on failure. */
static bool print_three_contexts(const demo_opts *o)
{
    hello_run_config cfg = {.as_written = o->as_written, .delay_ms = o->delay_ms, .readers = 2,
                            .irps_per_reader = 3, .window = 3, .issue_gap_us = 10000,
                            .cancel = HELLO_CANCEL_DEMO, .seed = 1};
    hello_run_result res;
    trace_clear();
    trace_observe_ke(true);
    trace_enable(true);
    int failed = hello_run(&cfg, &res);
    trace_enable(false);
    trace_observe_ke(false);
    if (failed) return false;
    size_t n;
    trace_event *evs = snapshot(&n);
    printf("\nThe seed's first question - who runs StartIo, in which context? Six more reads\n"
           "from two threads, one cancelled in the StartIo window (timeline: irpkit demo --in-process):");
    print_startio_contexts(evs, n);
    free(evs);
    return true;
}

int irpk_cmd_demo(int argc, char **argv)
{
    demo_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    irpk_verifier_set_mode(IRPK_VERIFIER_REPORT);
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    plat_thread_set_name(plat_self(), "main");
    trace_observe_ke(true);
    trace_clear();
    trace_enable(true);
    hello_user_result ures;
    hello_run_result res;
    int failed;
    if (o.in_process) {
        hello_run_config cfg = {.as_written = o.as_written, .delay_ms = o.delay_ms, .readers = 2,
                                .irps_per_reader = 3, .window = 3, .issue_gap_us = 10000,
                                .cancel = HELLO_CANCEL_DEMO, .seed = 1};
        failed = hello_run(&cfg, &res);
    } else {
        hello_user_config cfg = {o.flow, o.as_written, o.delay_ms};
        failed = hello_user_run(&cfg, &ures);
    }
    trace_enable(false);
    trace_observe_ke(false);
    if (failed) {
        fprintf(stderr, "irpkit demo: could not load the sample driver or open its device\n");
        return 1;
    }
    if (o.json) {
        trace_render_json(stdout);
        return 0;
    }
    printf("hello_startio (%s driver), device time %u ms: %s\n\n", o.as_written ? "as-written" : "corrected",
           o.delay_ms, flow_text(&o));
    trace_render_text(stdout);
    size_t n;
    trace_event *evs = snapshot(&n);
    print_startio_contexts(evs, n);
    if (!o.in_process) print_steps(evs, n);
    free(evs);
    if (o.in_process) print_in_process_summary(&res);
    else print_user_summary(&ures);
    if (!o.in_process && !print_three_contexts(&o)) failed = 1;
    irpk_runtime_shutdown();
    if (failed) return 1;
    return irpk_report_count() ? 1 : 0;
}
