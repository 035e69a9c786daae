/* Swimlanes: one column per simulated thread, one row per step. A cell reads
 *   "D1 IoCancelIrp IRP#2 current -> cancelled"
 * — IRQL (P passive, A APC, D dispatch, H higher), virtual CPU, operation, the object as
 * described before the step and, if it changed, after it. '*' marks a preemption. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"

#define MAX_COL 44

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

static void column_widths(const plat_explore_outcome *o, size_t *w)
{
    char cell[160];
    for (unsigned t = 0; t < o->nthreads; t++) w[t] = strlen(o->names[t]) > 6 ? strlen(o->names[t]) : 6;
    for (size_t k = 0; k < o->nlog; k++) {
        unsigned t = o->log[k].tid - 1;
        cell_text(&o->log[k], cell, sizeof cell);
        if (strlen(cell) > w[t]) w[t] = strlen(cell);
    }
    for (unsigned t = 0; t < o->nthreads; t++) w[t] = w[t] > MAX_COL ? MAX_COL : w[t];
}

char *xswimlane_render(const plat_explore_outcome *o)
{
    size_t w[PLAT_EXPLORE_MAX_THREADS];
    char cell[160];
    buf b = {0};
    column_widths(o, w);
    put(&b, " step", 5);
    for (unsigned t = 0; t < o->nthreads; t++) {
        put(&b, " | ", 3);
        put_cell(&b, o->names[t], w[t]);
    }
    put(&b, "\n", 1);
    for (size_t k = 0; k < o->nlog; k++) {
        snprintf(cell, sizeof cell, "%5zu", k + 1);
        put(&b, cell, strlen(cell));
        for (unsigned t = 0; t < o->nthreads; t++) {
            put(&b, " | ", 3);
            if (o->log[k].tid == t + 1) cell_text(&o->log[k], cell, sizeof cell);
            else cell[0] = 0;
            put_cell(&b, cell, w[t]);
        }
        put(&b, "\n", 1);
    }
    const char *legend = "(* preemption; P/A/D = IRQL passive/APC/dispatch, digit = virtual CPU)\n";
    put(&b, legend, strlen(legend));
    return b.p;
}
