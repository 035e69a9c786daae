/* Swimlanes: one column per simulated thread, one row per step. A cell reads
 *   "D1 IoCancelIrp IRP#2 (queued) -> IRP#2 (Cancel := TRUE)"
 * — IRQL (P passive, A APC, D dispatch, H higher), virtual CPU, operation, the object as
 * described before the step and, if it changed, after it. '*' marks a preemption.
 *
 * The default view is a slice: the steps that tell the story of the failure.
 *   - Focus IRPs: those the failure names ("IRP#2", "irp=#2"); for a deadlock, those the
 *     blocked threads last worked on; else those of the preempted steps and the last step.
 *     No IRP at all: every IRP is in focus.
 *   - A row is shown when it is a preemption, the last step, a thread's start or exit, or a
 *     labelled operation (IoCallDriver, StartIo, KeSetEvent, … — not a raw load/store/lock/
 *     IRQL step) on a focus IRP or on an object that is no IRP.
 *   - A thread is shown (its column, its start and exit) only if one of its rows is shown for
 *     another reason: threads that only worked on other IRPs disappear.
 * Step numbers stay those of the full run, so gaps show where steps were left out; the full
 * view (every step of every thread) is the other rendering. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"

#define MIN_COL 44  /* column width cap with many threads … */
#define LINE_BUDGET 200 /* … raised while the columns fit this many characters */
#define MAX_FOCUS 16

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
        char *p = realloc(b->p, cap);
        if (!p) return;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void put_cell(buf *b, const char *s, size_t width)
{
    size_t n = strlen(s);
    if (n > width) {
        put(b, s, width - 1);
        put(b, "~", 1);
        return;
    }
    put(b, s, n);
    for (; n < width; n++) put(b, " ", 1);
}

static void cell_text(const plat_explore_step *s, char *out, size_t n)
{
    static const char irql[] = "PAD";
    bool changed = s->obj_after[0] && strcmp(s->obj_name, s->obj_after) != 0;
    snprintf(out, n, "%s%c%u %s%s%s%s%s%s", s->preempted ? "*" : "", s->irql < 3 ? irql[s->irql] : 'H',
             (unsigned)s->vcpu, s->kind == PLAT_EXC_TIMEOUT ? "timeout:" : "", s->op,
             s->obj_name[0] ? " " : "", s->obj_name, changed ? " -> " : "", changed ? s->obj_after : "");
}

/* ------------------------------------------------------------------ the slice */

/* Operations of the platform layer itself (and ke's IRQL point); everything else is a label an
 * upper layer gave: an API call or a driver-visible event. */
static bool raw_op(const char *op)
{
    static const char *const raw[] = {"load", "store", "xchg", "cas", "add", "or", "and", "fence",
                                      "lock_acquire", "lock_try", "wait", "wake", "park", "unpark",
                                      "woken", "yield", "sleep", "join", "thread_start", "irql",
                                      NULL};
    for (int i = 0; raw[i]; i++)
        if (!strcmp(op, raw[i])) return true;
    return false;
}

/* The IRP id in a description ("IRP#12 (queued)") or 0. */
static unsigned irp_of(const char *desc)
{
    const char *p = strstr(desc, "IRP#");
    return p ? (unsigned)strtoul(p + 4, NULL, 10) : 0;
}

typedef struct focus {
    unsigned ids[MAX_FOCUS], n;
} focus;

static void focus_add(focus *f, unsigned id)
{
    if (!id) return;
    for (unsigned i = 0; i < f->n; i++)
        if (f->ids[i] == id) return;
    if (f->n < MAX_FOCUS) f->ids[f->n++] = id;
}

static bool in_focus(const focus *f, unsigned id)
{
    if (!f->n) return true;
    for (unsigned i = 0; i < f->n; i++)
        if (f->ids[i] == id) return true;
    return false;
}

/* "IRP#2" and "irp=#2" in a failure message. */
static void focus_from_text(focus *f, const char *text)
{
    for (const char *p = text; (p = strchr(p, '#')); p++) {
        bool irp = (p >= text + 3 && !strncmp(p - 3, "IRP", 3)) || (p >= text + 4 && !strncmp(p - 4, "irp=", 4));
        if (irp) focus_add(f, (unsigned)strtoul(p + 1, NULL, 10));
    }
}

static void find_focus(const plat_explore_outcome *o, focus *f)
{
    f->n = 0;
    focus_from_text(f, o->detail);
    if (!f->n && o->status == PLAT_EXO_DEADLOCK) { /* what the stuck threads last worked on */
        for (unsigned t = 0; t < o->nthreads; t++) {
            if (o->exited[t] || o->system[t]) continue;
            for (size_t k = o->nlog; k-- > 0;)
                if (o->log[k].tid == t + 1 && irp_of(o->log[k].obj_name)) {
                    focus_add(f, irp_of(o->log[k].obj_name));
                    break;
                }
        }
    }
    if (!f->n)
        for (size_t k = 0; k < o->nlog; k++)
            if (o->log[k].preempted || k + 1 == o->nlog) focus_add(f, irp_of(o->log[k].obj_name));
}

static bool lifecycle(const plat_explore_step *s) { return !strcmp(s->op, "start") || !strcmp(s->op, "exit"); }

/* Marks rows and threads to show. */
static void slice(const plat_explore_outcome *o, bool *row, bool *thread)
{
    focus f;
    find_focus(o, &f);
    memset(thread, 0, o->nthreads * sizeof *thread);
    for (size_t k = 0; k < o->nlog; k++) {
        const plat_explore_step *s = &o->log[k];
        unsigned id = irp_of(s->obj_name);
        bool story = !raw_op(s->op) && !lifecycle(s) && (id ? in_focus(&f, id) : true);
        row[k] = s->preempted || k + 1 == o->nlog || story;
        /* A thread earns its column through an IRP of the story, a preemption or the end;
         * labelled steps on other objects (events, DPCs, queues) alone do not. */
        if (s->preempted || k + 1 == o->nlog || (story && id)) thread[s->tid - 1] = true;
    }
    for (size_t k = 0; k < o->nlog; k++) {
        const plat_explore_step *s = &o->log[k];
        if (!thread[s->tid - 1]) row[k] = false;
        else if (lifecycle(s)) row[k] = true;
    }
}

/* ------------------------------------------------------------------ rendering */

static void column_widths(const plat_explore_outcome *o, const bool *row, const bool *show, size_t *w)
{
    char cell[160];
    for (unsigned t = 0; t < o->nthreads; t++) w[t] = strlen(o->names[t]) > 6 ? strlen(o->names[t]) : 6;
    for (size_t k = 0; k < o->nlog; k++) {
        if (!row[k]) continue;
        unsigned t = o->log[k].tid - 1;
        cell_text(&o->log[k], cell, sizeof cell);
        if (strlen(cell) > w[t]) w[t] = strlen(cell);
    }
    unsigned cols = 0;
    for (unsigned t = 0; t < o->nthreads; t++) cols += show[t];
    size_t cap = cols ? LINE_BUDGET / cols : MIN_COL;
    if (cap < MIN_COL) cap = MIN_COL;
    for (unsigned t = 0; t < o->nthreads; t++) w[t] = w[t] > cap ? cap : w[t];
}

char *xswimlane_render(const plat_explore_outcome *o, bool full)
{
    size_t w[PLAT_EXPLORE_MAX_THREADS];
    bool thread[PLAT_EXPLORE_MAX_THREADS];
    char cell[160];
    buf b = {0};
    bool *row = malloc((o->nlog ? o->nlog : 1) * sizeof *row);
    if (!row) return NULL;
    if (full) {
        for (size_t k = 0; k < o->nlog; k++) row[k] = true;
        for (unsigned t = 0; t < o->nthreads; t++) thread[t] = true;
    } else {
        slice(o, row, thread);
    }
    column_widths(o, row, thread, w);
    puts_(&b, " step");
    for (unsigned t = 0; t < o->nthreads; t++) {
        if (!thread[t]) continue;
        puts_(&b, " | ");
        put_cell(&b, o->names[t], w[t]);
    }
    puts_(&b, "\n");
    size_t shown = 0;
    for (size_t k = 0; k < o->nlog; k++) {
        if (!row[k]) continue;
        shown++;
        snprintf(cell, sizeof cell, "%5zu", k + 1);
        puts_(&b, cell);
        for (unsigned t = 0; t < o->nthreads; t++) {
            if (!thread[t]) continue;
            puts_(&b, " | ");
            if (o->log[k].tid == t + 1) cell_text(&o->log[k], cell, sizeof cell);
            else cell[0] = 0;
            put_cell(&b, cell, w[t]);
        }
        puts_(&b, "\n");
    }
    puts_(&b, "(* preemption; P/A/D = IRQL passive/APC/dispatch, digit = virtual CPU)\n");
    if (!full && shown < o->nlog) {
        char hidden[PLAT_EXPLORE_MAX_THREADS * (PLAT_NAME_MAX + 2)] = "";
        size_t len = 0;
        for (unsigned t = 0; t < o->nthreads; t++)
            if (!thread[t] && len + PLAT_NAME_MAX + 3 < sizeof hidden)
                len += (size_t)snprintf(hidden + len, sizeof hidden - len, "%s%s", len ? ", " : "", o->names[t]);
        snprintf(cell, sizeof cell, "(%zu of %zu steps shown", shown, o->nlog);
        puts_(&b, cell);
        if (len) {
            puts_(&b, "; threads not involved: ");
            puts_(&b, hidden);
        }
        puts_(&b, "; --full shows every step)\n");
    }
    free(row);
    return b.p;
}
