/* The single bug-check path, the report store and the modes (irpkit/bugcheck.h,
 * irpkit/verifier.h). Every report — ke's IRQL checks, io's bug checks, the verifier's own
 * checks — ends in vrf_emit(): stored, passed to the hook (the explorer's, a test's) or echoed
 * to stderr, and in fatal mode printed before the process aborts like a bug check.
 * Reports use the C heap directly, not plat_alloc: they must outlive an explorer execution
 * (whose arena is released when it ends) so the explorer can read them afterwards. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irpkit/verifier.h"
#include "verify/verify.h"

typedef struct report {
    uint32_t code;
    char *name;
    uintptr_t param[4];
    char *text;
} report;

/* store_lock guards the report array and the hook; a leaf lock (nothing is called while it is
 * held). Natively a real lock; in explore mode (one simulated thread at a time) none. */
static plat_lockword store_lock;
static report *reports;
static size_t n_reports, cap_reports;
static irpk_bugcheck_hook user_hook;
static void *user_hook_ctx;
static int32_t quiet;
static int32_t summary_registered;

volatile int32_t vrf_level = IRPK_VERIFIER_REPORT;

/* The mode is read from the environment before main() so the hot-path check is one load. */
__attribute__((constructor)) static void read_mode_from_environment(void)
{
    const char *e = getenv("IRPK_VERIFIER");
    int32_t m = IRPK_VERIFIER_REPORT;
    if (e && !strcmp(e, "off")) m = IRPK_VERIFIER_OFF;
    if (e && !strcmp(e, "fatal")) m = IRPK_VERIFIER_FATAL;
    vrf_level = m;
}

static const struct {
    uint32_t code;
    const char *name;
} names[] = {
    {0x03, "INVALID_AFFINITY_SET"},
    {0x09, "IRQL_NOT_GREATER_OR_EQUAL"},
    {0x0A, "IRQL_NOT_LESS_OR_EQUAL"},
    {0x0C, "MAXIMUM_WAIT_OBJECTS_EXCEEDED"},
    {0x18, "REFERENCE_BY_POINTER"},
    {0x1E, "KMODE_EXCEPTION_NOT_HANDLED"},
    {0x35, "NO_MORE_IRP_STACK_LOCATIONS"},
    {0x44, "MULTIPLE_IRP_COMPLETE_REQUESTS"},
    {0x48, "CANCEL_STATE_IN_COMPLETED_IRP"},
    {0xC2, "BAD_POOL_CALLER"},
    {0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION"},
    {0xC7, "TIMER_OR_DPC_INVALID"},
    {0xC8, "IRQL_UNEXPECTED_VALUE"},
    {0xC9, "DRIVER_VERIFIER_IOMANAGER_VIOLATION"},
    {0xCE, "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS"},
    {0x11B, "DRIVER_RETURNED_HOLDING_CANCEL_LOCK"},
    {0x1000, "ASSERTION_FAILURE"},
};

const char *irpk_bugcheck_name(uint32_t code)
{
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == code) return names[i].name;
    return "UNKNOWN";
}

irpk_verifier_mode irpk_verifier_get_mode(void) { return (irpk_verifier_mode)vrf_load32(&vrf_level); }

irpk_verifier_mode irpk_verifier_set_mode(irpk_verifier_mode m)
{
    irpk_verifier_mode old = irpk_verifier_get_mode();
    if (m < IRPK_VERIFIER_OFF || m > IRPK_VERIFIER_FATAL) m = IRPK_VERIFIER_REPORT;
    vrf_store32(&vrf_level, (int32_t)m);
    return old;
}

int irpk_reports_set_quiet(int q)
{
    int32_t old = vrf_load32(&quiet);
    vrf_store32(&quiet, q ? 1 : 0);
    return old;
}

irpk_bugcheck_hook irpk_bugcheck_set_hook(irpk_bugcheck_hook hook, void *context)
{
    vrf_lock(&store_lock);
    irpk_bugcheck_hook old = user_hook;
    user_hook = hook;
    user_hook_ctx = context;
    vrf_unlock(&store_lock);
    return old;
}

static void print_summary_at_exit(void)
{
    if (n_reports && !quiet) irpk_reports_print_summary(stderr);
}

static void store(const irpk_bugcheck *bc)
{
    report r = {bc->code, strdup(bc->name), {bc->param[0], bc->param[1], bc->param[2], bc->param[3]},
                strdup(bc->text)};
    if (!r.name || !r.text) {
        free(r.name);
        free(r.text);
        return;
    }
    vrf_lock(&store_lock);
    if (n_reports == cap_reports) {
        size_t cap = cap_reports ? cap_reports * 2 : 16;
        report *grown = realloc(reports, cap * sizeof *grown);
        if (grown) {
            reports = grown;
            cap_reports = cap;
        }
    }
    bool stored = n_reports < cap_reports;
    if (stored) reports[n_reports++] = r;
    /* Flipped under store_lock: exactly one report registers the exit summary. */
    bool first = !summary_registered;
    summary_registered = 1;
    vrf_unlock(&store_lock);
    if (!stored) {
        free(r.name);
        free(r.text);
    }
    if (first) atexit(print_summary_at_exit);
}

void vrf_emit(uint32_t code, const char *name, const uintptr_t param[4], const char *text)
{
    irpk_bugcheck bc = {code, name, {param[0], param[1], param[2], param[3]}, text};
    store(&bc);
    vrf_lock(&store_lock);
    irpk_bugcheck_hook hook = user_hook;
    void *ctx = user_hook_ctx;
    vrf_unlock(&store_lock);
    if (hook) hook(&bc, ctx); /* the explorer's hook does not return: it fails the execution */
    else if (!vrf_load32(&quiet)) fprintf(stderr, "%s\n", text);
    if (irpk_verifier_get_mode() == IRPK_VERIFIER_FATAL) {
        if (hook || vrf_load32(&quiet)) fprintf(stderr, "%s\n", text);
        fprintf(stderr, "irpkit: fatal verifier mode: stopping like a bug check\n");
        fflush(stderr);
        abort();
    }
}

size_t irpk_report_count(void)
{
    vrf_lock(&store_lock);
    size_t n = n_reports;
    vrf_unlock(&store_lock);
    return n;
}

size_t irpk_report_count_code(uint32_t code)
{
    size_t n = 0;
    vrf_lock(&store_lock);
    for (size_t i = 0; i < n_reports; i++) n += reports[i].code == code;
    vrf_unlock(&store_lock);
    return n;
}

size_t irpk_report_count_name(const char *name)
{
    size_t n = 0;
    vrf_lock(&store_lock);
    for (size_t i = 0; i < n_reports; i++) n += name && !strcmp(reports[i].name, name);
    vrf_unlock(&store_lock);
    return n;
}

long irpk_report_find(uint32_t code, uintptr_t p1)
{
    long found = -1;
    vrf_lock(&store_lock);
    for (size_t i = 0; i < n_reports && found < 0; i++)
        if (reports[i].code == code && reports[i].param[0] == p1) found = (long)i;
    vrf_unlock(&store_lock);
    return found;
}

long irpk_report_find_name(const char *name)
{
    long found = -1;
    vrf_lock(&store_lock);
    for (size_t i = 0; i < n_reports && found < 0; i++)
        if (name && !strcmp(reports[i].name, name)) found = (long)i;
    vrf_unlock(&store_lock);
    return found;
}

uint32_t irpk_report_code(size_t i)
{
    vrf_lock(&store_lock);
    uint32_t c = i < n_reports ? reports[i].code : 0;
    vrf_unlock(&store_lock);
    return c;
}

/* The strings outlive store_lock: only an explicit irpk_reports_clear / vrf_reports_truncate
 * frees them, and growing the array moves the pointers, not the strings. */
const char *irpk_report_name(size_t i)
{
    vrf_lock(&store_lock);
    const char *s = i < n_reports ? reports[i].name : NULL;
    vrf_unlock(&store_lock);
    return s;
}

const char *irpk_report_text(size_t i)
{
    vrf_lock(&store_lock);
    const char *s = i < n_reports ? reports[i].text : NULL;
    vrf_unlock(&store_lock);
    return s;
}

uintptr_t irpk_report_param(size_t i, int n)
{
    vrf_lock(&store_lock);
    uintptr_t v = (i < n_reports && n >= 0 && n < 4) ? reports[i].param[n] : 0;
    vrf_unlock(&store_lock);
    return v;
}

void vrf_reports_truncate(size_t keep)
{
    vrf_lock(&store_lock);
    for (size_t i = keep; i < n_reports; i++) {
        free(reports[i].name);
        free(reports[i].text);
    }
    if (keep < n_reports) n_reports = keep;
    vrf_unlock(&store_lock);
}

void irpk_reports_clear(void)
{
    vrf_lock(&store_lock);
    for (size_t i = 0; i < n_reports; i++) {
        free(reports[i].name);
        free(reports[i].text);
    }
    n_reports = 0;
    vrf_unlock(&store_lock);
}

void irpk_reports_print_summary(void *file)
{
    FILE *f = file;
    vrf_lock(&store_lock);
    fprintf(f, "irpkit verifier: %zu report(s)\n", n_reports);
    for (size_t i = 0; i < n_reports; i++) {
        const char *nl = strchr(reports[i].text, '\n');
        int len = nl ? (int)(nl - reports[i].text) : (int)strlen(reports[i].text);
        fprintf(f, "  #%zu %.*s\n", i + 1, len, reports[i].text);
    }
    vrf_unlock(&store_lock);
}
