/* Schedule strings: "irpk1:<strategy>:s=<seed>:b=<bound>:v=<vcpus>[:m=<steps>]:c=<choices>",
 * choices run-length encoded as "<tid>[x<count>]" joined by '.'. Shell-safe characters only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"
#include "platform/platform.h"

void xsched_init(xsched *s, const char *strategy, uint64_t seed, unsigned bound, unsigned vcpus,
                 uint64_t max_steps)
{
    memset(s, 0, sizeof *s);
    snprintf(s->strategy, sizeof s->strategy, "%s", strategy);
    s->seed = seed;
    s->bound = bound;
    s->vcpus = vcpus;
    s->max_steps = max_steps;
}

void xsched_push(xsched *s, uint8_t tid)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        uint8_t *t = realloc(s->tids, cap);
        if (!t) plat_panic("explore: out of memory recording a schedule");
        s->tids = t;
        s->cap = cap;
    }
    s->tids[s->n++] = tid;
}

void xsched_copy_choices(xsched *dst, const xsched *src)
{
    dst->n = 0;
    for (size_t i = 0; i < src->n; i++) xsched_push(dst, src->tids[i]);
}

void xsched_free(xsched *s)
{
    free(s->tids);
    s->tids = NULL;
    s->n = s->cap = 0;
}

char *xsched_format(const xsched *s)
{
    size_t cap = 96 + s->n * 4, len;
    char *out = malloc(cap);
    if (!out) return NULL;
    len = (size_t)snprintf(out, cap, "irpk1:%s:s=%" PRIu64 ":b=%u:v=%u", s->strategy, s->seed,
                           s->bound, s->vcpus);
    if (s->max_steps) len += (size_t)snprintf(out + len, cap - len, ":m=%" PRIu64, s->max_steps);
    len += (size_t)snprintf(out + len, cap - len, ":c=");
    for (size_t i = 0; i < s->n;) {
        size_t run = 1;
        while (i + run < s->n && s->tids[i + run] == s->tids[i]) run++;
        if (cap - len < 32) {
            cap *= 2;
            char *g = realloc(out, cap);
            if (!g) {
                free(out);
                return NULL;
            }
            out = g;
        }
        len += (size_t)snprintf(out + len, cap - len, "%s%u", i ? "." : "", s->tids[i]);
        if (run > 1) len += (size_t)snprintf(out + len, cap - len, "x%zu", run);
        i += run;
    }
    return out;
}

/* Parse "key=value" number fields; returns the character after the number. */
static const char *parse_u64(const char *p, uint64_t *v)
{
    char *end;
    if (*p < '0' || *p > '9') return NULL;
    *v = strtoull(p, &end, 10);
    return end;
}

static int parse_choices(const char *p, xsched *s)
{
    while (*p) {
        uint64_t tid, run = 1;
        if (!(p = parse_u64(p, &tid)) || tid == 0 || tid > PLAT_EXPLORE_MAX_THREADS) return -1;
        if (*p == 'x' && (!(p = parse_u64(p + 1, &run)) || run == 0)) return -1;
        while (run--) xsched_push(s, (uint8_t)tid);
        if (*p == '.') p++;
        else if (*p) return -1;
    }
    return 0;
}

static int parse_fields(const char *p, xsched *s)
{
    const char *colon = strchr(p, ':');
    if (!colon || (size_t)(colon - p) >= sizeof s->strategy) return -1;
    memcpy(s->strategy, p, (size_t)(colon - p));
    s->strategy[colon - p] = 0;
    p = colon + 1;
    while (*p && strncmp(p, "c=", 2) != 0) {
        char key = p[0];
        uint64_t v;
        if (p[1] != '=' || !(p = parse_u64(p + 2, &v)) || *p != ':') return -1;
        p++;
        if (key == 's') s->seed = v;
        else if (key == 'b') s->bound = (unsigned)v;
        else if (key == 'v') s->vcpus = (unsigned)v;
        else if (key == 'm') s->max_steps = v;
        else return -1;
    }
    if (strncmp(p, "c=", 2) != 0 || s->vcpus < 1 || s->vcpus > 64) return -1;
    return parse_choices(p + 2, s);
}

int xsched_parse(const char *str, xsched *s)
{
    xsched_init(s, "", 0, 0, 0, 0);
    if (!str || strncmp(str, "irpk1:", 6) != 0 || parse_fields(str + 6, s) != 0) {
        xsched_free(s);
        return -1;
    }
    return 0;
}
