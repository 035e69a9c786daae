/* Report formatting: one layout for every report (irpk_bugcheck_raise from any layer, and
 * vrf_report for checks about an IRP):
 *
 *   <headline: BUGCHECK code NAME (irp=#n; params) | VERIFIER Rule (irp=#n; code/P1): …>
 *   <what happened>
 *   IRP#n history (oldest first):
 *     <step  routine-API  what  IRQL  thread  in <driver routine>>
 *   Device: \Device\X (driver \Driver\Y)
 *   Where: thread T at IRQL, in <innermost driver routine> <- <caller routine> …
 *   Cause and fix: <one sentence>
 *
 * Formatting happens only when a report is made (the cold path); buffers are on the stack. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "trace/trace.h"
#include "verify/verify.h"

#define TEXT_MAX 8192

typedef struct sbuf {
    char *p;
    size_t n, len;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    if (b->len + 1 >= b->n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->len, b->n - b->len, fmt, ap);
    va_end(ap);
    if (k > 0) b->len = b->len + (size_t)k < b->n ? b->len + (size_t)k : b->n - 1;
}

/* ---- history */

const char *vrf_format_history(PIRP irp, char *buf, size_t n)
{
    sbuf b = {buf, n, 0};
    buf[0] = 0;
    io_irp_priv *p = io_priv(irp);
    int32_t total = vrf_load32(&p->hist_next);
    int32_t first = total > IO_HISTORY_LEN ? total - IO_HISTORY_LEN : 0;
    if (first) put(&b, "  (%d older steps not kept)\n", first);
    for (int32_t i = first; i < total; i++) {
        uint64_t w = (uint64_t)(vrf_exploring() ? p->hist[i % IO_HISTORY_LEN]
                                                : plat_load64(&p->hist[i % IO_HISTORY_LEN]));
        int32_t ctx = vrf_load32(&p->hist_ctx[i % IO_HISTORY_LEN]);
        io_step step = (io_step)(w & 0xFF);
        char name[PLAT_NAME_MAX], irql[16], where[96];
        /* The context belongs to this step only if its sequence tag matches (a thread without
         * verifier state leaves an older step's context in the slot). */
        where[0] = 0;
        if ((ctx & 0xFFFF) == (i & 0xFFFF) && (ctx >> 16)) {
            char d[80];
            snprintf(where, sizeof where, "  in %s", vrf_ctx_describe(ctx, d, sizeof d));
        }
        put(&b, "  %2d. %-18s %-32s %-8s %-12s%s", i + 1, io_step_routine(step), io_step_name(step),
            trace_irql_name((uint8_t)(w >> 8), irql, sizeof irql),
            trace_thread_name((uint32_t)(w >> 16) & 0xFFFF, name, sizeof name), where);
        if (w >> 32) put(&b, " @%.3fms", (double)(w >> 32) / 1000.0);
        put(&b, "\n");
    }
    return buf;
}

const char *vrf_format_device(PDEVICE_OBJECT dev, char *buf, size_t n)
{
    if (!dev) return snprintf(buf, n, "(none)"), buf;
    const wchar_t *name = io_dev_priv(dev)->name;
    const DRIVER_OBJECT *drv = dev->DriverObject;
    if (name[0]) snprintf(buf, n, "%ls", name);
    else snprintf(buf, n, "(unnamed device %p)", (void *)dev);
    size_t len = strlen(buf);
    if (drv && drv->DriverName.Buffer && len + 1 < n)
        snprintf(buf + len, n - len, " (driver %.*ls)", (int)(drv->DriverName.Length / sizeof(WCHAR)),
                 drv->DriverName.Buffer);
    return buf;
}

/* The device an IRP belongs to: the StartIo device, else the current stack location's. */
static PDEVICE_OBJECT device_of(PIRP irp)
{
    PDEVICE_OBJECT d = (PDEVICE_OBJECT)vrf_load_ptr((void *const volatile *)&io_priv(irp)->vrf_dev);
    if (d) return d;
    if (irp->CurrentLocation >= 1 && irp->CurrentLocation <= irp->StackCount)
        return IoGetCurrentIrpStackLocation(irp)->DeviceObject;
    if (io_priv(irp)->target) return io_priv(irp)->target;
    /* Completed already: the device of a routine on this thread that is handling it. */
    vrf_frame *f = vrf_find_frame(irp, VRF_IN_NONE);
    return f ? f->dev : NULL;
}

/* "thread reader-1 at DISPATCH, in StartIo HelloStartIo (IRP#2) <- dispatch HelloRead (IRP#2)" */
static void put_where(sbuf *b)
{
    plat_thread *t = plat_self();
    char irql[16];
    put(b, "Where: thread %s at %s", t->name, trace_irql_name(t->irql, irql, sizeof irql));
    vrf_thread *v = t->ext[PLAT_EXT_VERIFY];
    int depth = v ? (v->depth < VRF_FRAMES ? v->depth : VRF_FRAMES) : 0;
    if (!depth) put(b, ", outside any driver routine the runtime called");
    for (int i = depth - 1, shown = 0; i >= 0 && shown < 4; i--, shown++) {
        const vrf_frame *f = &v->frames[i];
        char d[80];
        put(b, "%s%s", shown ? " <- " : ", in ", vrf_ctx_describe(f->ctx, d, sizeof d));
        if (f->irp) put(b, " (IRP#%u)", io_irp_id(f->irp));
    }
    if (depth > 4) put(b, " <- …");
    put(b, "\n");
}

/* The IRP the innermost runtime-called routine is processing (reports raised by ke). Frames
 * keep their IRP valid: StartIo/cancel callers hold io references, dispatch frames a verifier
 * one; a completion routine may free its IRP, so completion frames are skipped. */
static PIRP context_irp(void)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    if (!v) return NULL;
    for (int i = (v->depth < VRF_FRAMES ? v->depth : VRF_FRAMES) - 1; i >= 0; i--)
        if (v->frames[i].irp && v->frames[i].kind != VRF_IN_COMPLETION) return v->frames[i].irp;
    return NULL;
}

/* Body, history, device, where, cause. `summary` may hold several lines; a trailing
 * "Usual cause: …" paragraph in it (ke's reports) becomes the cause line. */
static void put_details(sbuf *b, const char *summary, PIRP irp, PDEVICE_OBJECT dev, const char *cause)
{
    char moved[1024] = "";
    const char *uc = summary ? strstr(summary, "Usual cause") : NULL;
    if (uc && !cause) {
        const char *s = uc + strlen("Usual cause");
        while (*s == ':' || *s == ' ') s++;
        snprintf(moved, sizeof moved, "%s", s);
        cause = moved;
    }
    if (summary && *summary) {
        size_t len = uc ? (size_t)(uc - summary) : strlen(summary);
        while (len && summary[len - 1] == '\n') len--;
        if (len) put(b, "%.*s\n", (int)len, summary);
    }
    bool own_irp = irp != NULL;
    if (!irp) irp = context_irp();
    if (irp) {
        char local[4096];
        put(b, "IRP#%u history (oldest first)%s:\n%s", io_irp_id(irp),
            own_irp ? "" : ", the IRP the current routine is processing",
            vrf_format_history(irp, local, sizeof local));
        put(b, "IRP#%u shadow state: %s\n", io_irp_id(irp), vrf_irp_state_name(irp));
    }
    if (!dev && irp) dev = device_of(irp);
    if (dev) {
        char d[160];
        put(b, "Device: %s\n", vrf_format_device(dev, d, sizeof d));
    }
    put_where(b);
    if (cause && *cause) put(b, "Cause and fix: %s\n", cause);
    while (b->len && b->p[b->len - 1] == '\n') b->p[--b->len] = 0;
}

/* ---- the two entry points */

void vrf_vreport(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4, PIRP irp,
                 PDEVICE_OBJECT dev, const char *rule, const char *cause_fix, const char *fmt,
                 va_list ap)
{
    char summary[2048];
    if (fmt) vsnprintf(summary, sizeof summary, fmt, ap);
    else summary[0] = 0;
    char text[TEXT_MAX];
    sbuf b = {text, sizeof text, 0};
    char irp_tag[32] = "";
    if (irp) snprintf(irp_tag, sizeof irp_tag, "irp=#%u; ", io_irp_id(irp));
    const char *body = summary;
    if (rule) {
        /* "VERIFIER Rule (irp=#n; 0xC4/0xA0001): first line of the summary" */
        const char *nl = strchr(summary, '\n');
        int first = nl ? (int)(nl - summary) : (int)strlen(summary);
        put(&b, "VERIFIER %s (%s0x%X/0x%llX): %.*s\n", rule, irp_tag, code, (unsigned long long)p1,
            first, summary);
        body = nl ? nl + 1 : "";
    } else {
        put(&b, "BUGCHECK 0x%X %s (%s0x%llX, 0x%llX, 0x%llX, 0x%llX)\n", code, irpk_bugcheck_name(code),
            irp_tag, (unsigned long long)p1, (unsigned long long)p2, (unsigned long long)p3,
            (unsigned long long)p4);
    }
    put_details(&b, body, irp, dev, cause_fix);
    uintptr_t params[4] = {p1, p2, p3, p4};
    vrf_emit(code, rule ? rule : irpk_bugcheck_name(code), params, text);
}

void vrf_report(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4, PIRP irp,
                PDEVICE_OBJECT dev, const char *rule, const char *cause_fix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrf_vreport(code, p1, p2, p3, p4, irp, dev, rule, cause_fix, fmt, ap);
    va_end(ap);
}

/* The public path (ke and other layers): a free-form explanation; a body that starts with
 * "VERIFIER <Rule>: …" is a rule report named by its rule. */
void irpk_bugcheck_raise(uint32_t code, uintptr_t p1, uintptr_t p2, uintptr_t p3, uintptr_t p4,
                         const char *fmt, ...)
{
    char body[3072];
    va_list ap;
    va_start(ap, fmt);
    if (fmt) vsnprintf(body, sizeof body, fmt, ap);
    else body[0] = 0; /* (not vsnprintf with "": clang -Wformat-zero-length) */
    va_end(ap);
    char text[TEXT_MAX];
    sbuf b = {text, sizeof text, 0};
    char rule[64] = "";
    const char *rest = body;
    if (!strncmp(body, "VERIFIER ", 9) && sscanf(body + 9, "%63[^: \t\n]", rule) == 1) {
        /* "VERIFIER IrqlDispatch: …" is named "IrqlDispatch" */
        const char *nl = strchr(body, '\n');
        put(&b, "%.*s\n", nl ? (int)(nl - body) : (int)strlen(body), body);
        rest = nl ? nl + 1 : "";
    } else {
        put(&b, "BUGCHECK 0x%X %s (0x%llX, 0x%llX, 0x%llX, 0x%llX)\n", code, irpk_bugcheck_name(code),
            (unsigned long long)p1, (unsigned long long)p2, (unsigned long long)p3,
            (unsigned long long)p4);
        rule[0] = 0;
    }
    put_details(&b, rest, NULL, NULL, NULL);
    uintptr_t params[4] = {p1, p2, p3, p4};
    vrf_emit(code, rule[0] ? rule : irpk_bugcheck_name(code), params, text);
}
