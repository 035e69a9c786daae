/* Renderers for the event ring: a text timeline and Chrome trace-event JSON. */
#include <string.h>

#include "platform/platform.h"
#include "trace/trace.h"

static trace_event *snapshot_all(size_t *n)
{
    size_t cap = trace_count();
    trace_event *evs = plat_calloc(cap ? cap : 1, sizeof *evs);
    *n = evs ? trace_snapshot(evs, cap) : 0;
    return evs;
}

static const char *phase_mark(uint8_t phase)
{
    return phase == TRACE_BEGIN ? "-> " : phase == TRACE_END ? "<- " : "   ";
}

void trace_render_text(FILE *f)
{
    size_t n;
    trace_event *evs = snapshot_all(&n);
    fprintf(f, "%10s  %-12s %-8s %-22s %-6s %s\n", "time(ms)", "thread", "IRQL", "routine", "IRP",
            "event");
    for (size_t i = 0; i < n; i++) {
        const trace_event *e = &evs[i];
        char irql[16], irp[16] = "-";
        if (e->irp_id) snprintf(irp, sizeof irp, "#%u", e->irp_id);
        fprintf(f, "%10.3f  %-12s %-8s %s%-19s %-6s %s\n", (double)e->t_ns / 1e6, e->thread,
                trace_irql_name(e->irql, irql, sizeof irql), phase_mark(e->phase), e->routine,
                irp, e->what);
    }
    if (trace_dropped())
        fprintf(f, "(%llu older events dropped: ring full)\n", (unsigned long long)trace_dropped());
    plat_free(evs);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void json_event(FILE *f, const trace_event *e, bool first)
{
    static const char ph[] = {'i', 'B', 'E'};
    char irql[16];
    fprintf(f, "%s\n  {\"name\":", first ? "" : ",");
    json_string(f, e->routine);
    fprintf(f, ",\"cat\":\"irpkit\",\"ph\":\"%c\",\"ts\":%.3f,\"pid\":1,\"tid\":%u%s,\"args\":{",
            ph[e->phase % 3], (double)e->t_ns / 1e3, e->tid,
            e->phase == TRACE_INSTANT ? ",\"s\":\"t\"" : "");
    fprintf(f, "\"irp\":%u,\"irql\":", e->irp_id);
    json_string(f, trace_irql_name(e->irql, irql, sizeof irql));
    fprintf(f, ",\"what\":");
    json_string(f, e->what);
    fprintf(f, "}}");
}

void trace_render_json(FILE *f)
{
    size_t n;
    trace_event *evs = snapshot_all(&n);
    fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
    bool first = true;
    /* Thread-name metadata, once per thread id. */
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = evs[j].tid == evs[i].tid;
        if (seen) continue;
        fprintf(f, "%s\n  {\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"args\":{\"name\":",
                first ? "" : ",", evs[i].tid);
        json_string(f, evs[i].thread);
        fprintf(f, "}}");
        first = false;
    }
    for (size_t i = 0; i < n; i++, first = false) json_event(f, &evs[i], first);
    fprintf(f, "\n]}\n");
    plat_free(evs);
}
