/* Event recording for the timeline: a bounded per-runtime ring of events (time, thread, IRQL,
 * routine, IRP id, state change) and a per-thread name table the per-IRP history uses.
 *
 * Recording is off by default (one atomic load per call site when off); `irpkit demo` and
 * `irpkit trace` switch it on. The record is self-contained (thread names are copied) so an
 * exporter can run after the threads are gone; trace_render_json writes the Chrome trace-event
 * format (Perfetto, chrome://tracing). */
#ifndef IRPK_TRACE_H
#define IRPK_TRACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "platform/platform.h"

typedef enum trace_phase {
    TRACE_INSTANT = 0, /* a state change */
    TRACE_BEGIN = 1,   /* a routine is entered (Dispatch, StartIo, cancel routine, DPC, …) */
    TRACE_END = 2,     /* …and returns */
} trace_phase;

typedef struct trace_event {
    int64_t t_ns;       /* since the trace epoch */
    uint32_t seq;       /* global order of recording */
    uint32_t tid;       /* plat_thread id */
    uint32_t irp_id;    /* 0 = no IRP */
    uint8_t irql;
    uint8_t phase;      /* trace_phase */
    uint8_t depth;      /* StartIo nesting depth on this thread at the time */
    const char *routine; /* static string: "Dispatch", "StartIo", "cancel routine", "DPC", … */
    char thread[PLAT_NAME_MAX];
    char what[72];      /* state change, e.g. "queued (device busy)" */
} trace_event;

/* Switch recording on/off (does not clear). */
void trace_enable(bool on);
extern int32_t trace__on __attribute__((visibility("hidden"))); /* trace_enable's switch */
/* Inline: with recording off, every trace point costs a load and a branch. */
static inline bool trace_enabled(void) { return plat_bk_load32(&trace__on) != 0; }

/* Record one event from the calling thread. A macro, so that with recording off neither the
 * call nor its arguments (formatting, depth lookups) are evaluated. */
void trace__emit(trace_phase phase, const char *routine, uint32_t irp_id, uint8_t depth,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define trace_emit(...)                                                                      \
    do {                                                                                     \
        if (trace_enabled()) trace__emit(__VA_ARGS__);                                       \
    } while (0)

/* Nanoseconds since the trace epoch (first use or last trace_clear / reset). */
int64_t trace_now(void);

/* Copy up to max events, oldest first; returns how many. trace_dropped(): events overwritten
 * because the ring was full. */
size_t trace_snapshot(trace_event *out, size_t max);
size_t trace_count(void);
uint64_t trace_dropped(void);
/* Forget all events and restart the clock. */
void trace_clear(void);

/* Remember the calling thread's name for later lookups by id (inline check after the first
 * call: the thread record points at its name slot once noted). */
void trace__note_thread(plat_thread *t);
static inline void trace_note_thread(void)
{
    plat_thread *t = plat_self();
    if (!t->ext[PLAT_EXT_TRACE]) trace__note_thread(t);
}
/* The name recorded for a thread id ("thread-<id>" when unknown); writes into buf. */
const char *trace_thread_name(uint32_t tid, char *buf, size_t n);

/* "PASSIVE", "APC", "DISPATCH", or the number. */
const char *trace_irql_name(uint8_t irql, char *buf, size_t n);

/* Text timeline: one line per event. */
void trace_render_text(FILE *f);
/* Chrome trace-event JSON (B/E duration events and instant events, one track per thread). */
void trace_render_json(FILE *f);

#endif

/* Record DPC begin/end and timer expiry from the ke layer (on) or stop (off). */
void trace_observe_ke(bool on);
