/* The single bug-check path and the report store (irpkit/bugcheck.h, irpkit/verifier.h).
 * Reports use the C heap directly, not plat_alloc: they must outlive an explorer execution
 * (whose arena is released when it ends) so the explorer can read them afterwards. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irpkit/verifier.h"
#include "platform/platform.h"

typedef struct report {
    uint32_t code;
    char *name;
    uintptr_t param[4];
    char *text;
} report;

/* store_lock guards the report array; it is a leaf lock (nothing is called while holding it). */
static plat_lockword store_lock;
static report *reports;
static size_t n_reports, cap_reports;
static irpk_bugcheck_hook user_hook;
static void *user_hook_ctx;
static int32_t mode = -1;
static int32_t quiet;
static int32_t summary_registered;

static const struct {
    uint32_t code;
    const char *name;
} names[] = {
    {0x03, "INVALID_AFFINITY_SET"},
    {0x09, "IRQL_NOT_GREATER_OR_EQUAL"},
    {0x0A, "IRQL_NOT_LESS_OR_EQUAL"},
    {0x0C, "MAXIMUM_WAIT_OBJECTS_EXCEEDED"},
    {0x35, "NO_MORE_IRP_STACK_LOCATIONS"},
    {0x44, "MULTIPLE_IRP_COMPLETE_REQUESTS"},
    {0x48, "CANCEL_STATE_IN_COMPLETED_IRP"},
    {0xC2, "BAD_POOL_CALLER"},
    {0xC4, "DRIVER_VERIFIER_DETECTED_VIOLATION"},
    {0xC7, "TIMER_OR_DPC_INVALID"},
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

irpk_verifier_mode irpk_verifier_get_mode(void)
{
    int32_t m = plat_load32(&mode);
    if (m >= 0) return (irpk_verifier_mode)m;
    const char *e = getenv("IRPK_VERIFIER");
    m = IRPK_VERIFIER_REPORT;
    if (e && !strcmp(e, "off")) m = IRPK_VERIFIER_OFF;
    if (e && !strcmp(e, "fatal")) m = IRPK_VERIFIER_FATAL;
    /* Racing first calls compute the same value from the same environment. */
    plat_cas32(&mode, -1, m);
    return (irpk_verifier_mode)plat_load32(&mode);
}

irpk_verifier_mode irpk_verifier_set_mode(irpk_verifier_mode m)
{
    irpk_verifier_mode old = irpk_verifier_get_mode();
    plat_store32(&mode, (int32_t)m);
    return old;
}

int irpk_reports_set_quiet(int q) { return plat_xchg32(&quiet, q ? 1 : 0); }

irpk_bugcheck_hook irpk_bugcheck_set_hook(irpk_bugcheck_hook hook, void *context)
{
    plat_lock_acquire(&store_lock);
    irpk_bugcheck_hook old = user_hook;
    user_hook = hook;
    user_hook_ctx = context;
    plat_lock_release(&store_lock);
    return old;
}

static void print_summary_at_exit(void)
{
    if (n_reports && !plat_load32(&quiet)) irpk_reports_print_summary(stderr);
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
    plat_lock_acquire(&store_lock);
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
    plat_lock_release(&store_lock);
    if (!stored) {
        free(r.name);
        free(r.text);
    }
    if (plat_cas32(&summary_registered, 0, 1) == 0) atexit(print_summary_at_exit);
}

void irpk_bugcheck_raise(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4,
                         const char *fmt, ...)
{
    char body[3072];
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    if (fmt) vsnprintf(body, sizeof body, fmt, ap);
    else body[0] = 0; /* (not vsnprintf with "": clang -Wformat-zero-length) */
    va_end(ap);
    const char *name = irpk_bugcheck_name(code);
    /* A body that already starts with its own headline ("VERIFIER …") keeps it. */
    if (!strncmp(body, "VERIFIER ", 9) || !strncmp(body, "BUGCHECK ", 9))
        snprintf(text, sizeof text, "%s", body);
    else
        snprintf(text, sizeof text, "BUGCHECK 0x%X %s (0x%llX, 0x%llX, 0x%llX, 0x%llX)%s%s", code,
                 name, (unsigned long long)p1, (unsigned long long)p2, (unsigned long long)p3,
                 (unsigned long long)p4, body[0] ? "\n" : "", body);
    irpk_bugcheck bc = {code, name, {p1, p2, p3, p4}, text};
    /* "VERIFIER <Rule> …" reports are named by their rule. */
    char rule[64];
    if (!strncmp(text, "VERIFIER ", 9) && sscanf(text + 9, "%63[^: \t\n]", rule) == 1)
        bc.name = rule; /* "VERIFIER IrqlDispatch: …" is named "IrqlDispatch" */
    store(&bc);
    plat_lock_acquire(&store_lock);
    irpk_bugcheck_hook hook = user_hook;
    void *ctx = user_hook_ctx;
    plat_lock_release(&store_lock);
    if (hook) hook(&bc, ctx);
    else if (!plat_load32(&quiet)) fprintf(stderr, "%s\n", text);
    if (irpk_verifier_get_mode() == IRPK_VERIFIER_FATAL) {
        if (hook || plat_load32(&quiet)) fprintf(stderr, "%s\n", text);
        fprintf(stderr, "irpkit: fatal verifier mode: stopping like a bug check\n");
        fflush(stderr);
        abort();
    }
}

size_t irpk_report_count(void)
{
    plat_lock_acquire(&store_lock);
    size_t n = n_reports;
    plat_lock_release(&store_lock);
    return n;
}

size_t irpk_report_count_code(uint32_t code)
{
    size_t n = 0;
    plat_lock_acquire(&store_lock);
    for (size_t i = 0; i < n_reports; i++) n += reports[i].code == code;
    plat_lock_release(&store_lock);
    return n;
}

uint32_t irpk_report_code(size_t i)
{
    plat_lock_acquire(&store_lock);
    uint32_t c = i < n_reports ? reports[i].code : 0;
    plat_lock_release(&store_lock);
    return c;
}

const char *irpk_report_name(size_t i)
{
    plat_lock_acquire(&store_lock);
    const char *s = i < n_reports ? reports[i].name : NULL;
    plat_lock_release(&store_lock);
    return s;
}

const char *irpk_report_text(size_t i)
{
    plat_lock_acquire(&store_lock);
    const char *s = i < n_reports ? reports[i].text : NULL;
    plat_lock_release(&store_lock);
    return s;
}

uintptr_t irpk_report_param(size_t i, int n)
{
    plat_lock_acquire(&store_lock);
    uintptr_t v = (i < n_reports && n >= 0 && n < 4) ? reports[i].param[n] : 0;
    plat_lock_release(&store_lock);
    return v;
}

void irpk_reports_clear(void)
{
    plat_lock_acquire(&store_lock);
    for (size_t i = 0; i < n_reports; i++) {
        free(reports[i].name);
        free(reports[i].text);
    }
    n_reports = 0;
    plat_lock_release(&store_lock);
}

void irpk_reports_print_summary(void *file)
{
    FILE *f = file;
    plat_lock_acquire(&store_lock);
    fprintf(f, "irpkit verifier: %zu report(s)\n", n_reports);
    for (size_t i = 0; i < n_reports; i++) {
        const char *nl = strchr(reports[i].text, '\n');
        int len = nl ? (int)(nl - reports[i].text) : (int)strlen(reports[i].text);
        fprintf(f, "  #%zu %.*s\n", i + 1, len, reports[i].text);
    }
    plat_lock_release(&store_lock);
}
