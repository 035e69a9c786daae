/* Search strategies: iterative preemption-bounded DFS with sleep sets, PCT, uniform random,
 * and a portfolio that rotates them one execution at a time. */
#include <stdlib.h>
#include <string.h>

#include "explore/explore_int.h"
#include "platform/platform.h"

#define SPLIT_DEPTH 3 /* DFS job split: subtrees below this many decisions are dealt out */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(uint64_t *state) { return mix64(*state += 0x9e3779b97f4a7c15ull); }

/* ------------------------------------------------------------------ DFS */

typedef struct dfs_frame {
    uint32_t first; /* this frame's choices: pool[first .. first + n) */
    uint8_t n, chosen;
    uint32_t current; /* thread that ran the step before this decision */
    bool current_enabled;
    uint16_t pre;    /* preemptions taken before this decision */
    uint64_t done;   /* choice indices explored (or being explored) here */
    uint64_t sleep;  /* sleep set: bit tid-1 */
} dfs_frame;

typedef struct dfs {
    dfs_frame *frames;
    size_t nframes, fcap;
    plat_explore_choice *pool;
    size_t npool, pcap;
    size_t depth; /* decisions taken in the running execution */
    unsigned bound, max_bound;
    bool sleep_sets, diverged, exhausted;
    unsigned job_index, job_count;
} dfs;

static bool frame_preempts(const dfs *s, const dfs_frame *f, unsigned i)
{
    plat_explore_decision d = {0, f->current, f->current_enabled, f->n, s->pool + f->first};
    return plat_explore_is_preemption(&d, i);
}

static bool candidate(const dfs *s, const dfs_frame *f, unsigned i)
{
    const plat_explore_choice *c = &s->pool[f->first + i];
    return !(f->done >> i & 1) && !(f->sleep >> (c->tid - 1) & 1) &&
           (unsigned)f->pre + frame_preempts(s, f, i) <= s->bound;
}

/* Non-preemptive choices first (CHESS order), then the rest, each in thread order. */
static int first_candidate(const dfs *s, const dfs_frame *f)
{
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < f->n; i++)
            if (frame_preempts(s, f, i) == (pass == 1) && candidate(s, f, i)) return (int)i;
    return -1;
}

/* Two steps commute when both act on different, known objects and neither is a timeout. Sound
 * for data-race-free code: memory touched between points is guarded by locks or atomics, whose
 * operations are the points. (Unknown objects — NULL — conflict with everything.) */
static bool independent(const plat_explore_choice *a, const plat_explore_choice *b)
{
    return a->kind == PLAT_EXC_RUN && b->kind == PLAT_EXC_RUN && a->obj && b->obj && a->obj != b->obj;
}

/* Sleep set inherited by the child reached through parent p's chosen choice. */
static uint64_t child_sleep(const dfs *s, const dfs_frame *p)
{
    const plat_explore_choice *chosen = &s->pool[p->first + p->chosen];
    uint64_t sleep = 0;
    for (unsigned i = 0; i < p->n; i++) {
        const plat_explore_choice *c = &s->pool[p->first + i];
        bool asleep = (p->sleep >> (c->tid - 1) & 1) || (i != p->chosen && (p->done >> i & 1));
        if (asleep && independent(c, chosen)) sleep |= 1ull << (c->tid - 1);
    }
    return sleep;
}

static dfs_frame *push_frame(dfs *s, const plat_explore_decision *d)
{
    if (s->nframes == s->fcap) {
        s->fcap = s->fcap ? s->fcap * 2 : 256;
        s->frames = realloc(s->frames, s->fcap * sizeof *s->frames);
    }
    if (s->npool + d->n > s->pcap) {
        s->pcap = (s->pcap ? s->pcap : 1024) * 2 + d->n;
        s->pool = realloc(s->pool, s->pcap * sizeof *s->pool);
    }
    if (!s->frames || !s->pool) plat_panic("explore: out of memory for the DFS stack");
    dfs_frame *f = &s->frames[s->nframes++];
    memset(f, 0, sizeof *f);
    f->first = (uint32_t)s->npool;
    f->n = (uint8_t)d->n;
    f->current = d->current;
    f->current_enabled = d->current_enabled;
    memcpy(s->pool + s->npool, d->choices, d->n * sizeof *d->choices);
    s->npool += d->n;
    return f;
}

/* Jobs split the tree: each owns the subtrees whose first SPLIT_DEPTH choices hash to it. */
static bool owned_by_this_job(const dfs *s)
{
    uint64_t h = 0;
    for (size_t i = 0; i < SPLIT_DEPTH; i++) h = mix64(h ^ s->frames[i].chosen);
    return h % s->job_count == s->job_index;
}

static int dfs_choose(dfs *s, const plat_explore_decision *d)
{
    size_t k = s->depth++;
    if (k < s->nframes) { /* replaying the prefix chosen by backtracking */
        const dfs_frame *f = &s->frames[k];
        bool same = f->n == d->n;
        for (unsigned i = 0; same && i < d->n; i++) same = s->pool[f->first + i].tid == d->choices[i].tid;
        if (!same) s->diverged = true;
        return same ? f->chosen : -1;
    }
    if (s->job_count > 1 && k == SPLIT_DEPTH && !owned_by_this_job(s)) return -1;
    dfs_frame *f = push_frame(s, d);
    if (k > 0) {
        const dfs_frame *p = &s->frames[k - 1];
        f->pre = (uint16_t)(p->pre + frame_preempts(s, p, p->chosen));
        if (s->sleep_sets) f->sleep = child_sleep(s, p);
    }
    int i = first_candidate(s, f);
    if (i < 0) { /* everything here is asleep or over the bound: nothing new below */
        f->done = ~0ull;
        return -1;
    }
    f->chosen = (uint8_t)i;
    f->done |= 1ull << i;
    return i;
}

/* Move to the next unexplored branch; false when this bound is exhausted. */
static bool dfs_backtrack(dfs *s)
{
    while (s->nframes > 0) {
        dfs_frame *f = &s->frames[s->nframes - 1];
        int i = first_candidate(s, f);
        if (i >= 0) {
            f->chosen = (uint8_t)i;
            f->done |= 1ull << i;
            s->npool = f->first + f->n;
            return true;
        }
        s->npool = f->first;
        s->nframes--;
    }
    return false;
}

static void dfs_end(dfs *s)
{
    s->depth = 0;
    if (s->diverged || dfs_backtrack(s)) return;
    if (s->bound < s->max_bound) {
        s->bound++; /* iterative bounding: start over with one more preemption allowed */
        return;
    }
    s->exhausted = true;
}

/* ------------------------------------------------------------------ PCT and random */

typedef struct pct {
    uint64_t seed, rng;
    unsigned depth, fixed_depth;
    uint64_t prio[PLAT_EXPLORE_MAX_THREADS + 1]; /* 0: not yet assigned */
    uint64_t change[3];                          /* decision numbers of priority changes */
    uint64_t decisions, k_estimate;
} pct;

static void pct_begin(pct *s, uint64_t exec)
{
    s->rng = mix64(s->seed ^ mix64(exec + 1));
    s->depth = s->fixed_depth ? s->fixed_depth : 1 + (unsigned)(exec % 3);
    memset(s->prio, 0, sizeof s->prio);
    for (unsigned j = 0; j + 1 < s->depth; j++) s->change[j] = 1 + rng_next(&s->rng) % s->k_estimate;
    s->decisions = 0;
}

/* Highest priority wins; initial priorities are above 2^61, change points drop to 1..d-1.
 * A timeout (a timed wait expiring: virtual time jumps to its deadline) is taken only when no
 * thread can run: otherwise a high-priority thread polling with timed sleeps — CancelIo's
 * 10 ms poll, a thread-exit drain — would have its timeout chosen over and over while the
 * thread it waits for (a DPC finishing the IRP) never runs, until its hang report fires after
 * 10 virtual seconds: a schedule no fair system produces. DFS and random still fire timeouts
 * early (for DFS that costs a preemption). */
static int pct_best(pct *s, const plat_explore_decision *d)
{
    bool can_run = false;
    for (unsigned i = 0; i < d->n; i++) can_run |= d->choices[i].kind == PLAT_EXC_RUN;
    int best = -1;
    for (unsigned i = 0; i < d->n; i++) {
        uint32_t t = d->choices[i].tid;
        if (!s->prio[t]) s->prio[t] = (rng_next(&s->rng) >> 3) | (1ull << 61);
        if (can_run && d->choices[i].kind != PLAT_EXC_RUN) continue;
        if (best < 0 || s->prio[t] > s->prio[d->choices[best].tid]) best = (int)i;
    }
    return best;
}

static int pct_choose(pct *s, const plat_explore_decision *d)
{
    int best = pct_best(s, d);
    s->decisions++;
    for (unsigned j = 0; j + 1 < s->depth; j++)
        if (s->change[j] == s->decisions) {
            s->prio[d->choices[best].tid] = s->depth - 1 - j;
            best = pct_best(s, d);
        }
    return best;
}

static void pct_end(pct *s)
{
    if (s->decisions > s->k_estimate) s->k_estimate = s->decisions;
}

/* ------------------------------------------------------------------ the strategy object */

enum { S_DFS, S_PCT, S_RANDOM, S_COUNT };

struct xstrategy {
    irpk_strategy kind;
    uint64_t seed, random_rng;
    dfs dfs;
    pct pct;
    int active; /* S_DFS / S_PCT / S_RANDOM used for the current execution */
    uint64_t turn;
};

xstrategy *xstrategy_new(irpk_strategy kind, const irpk_explore_options *opt)
{
    xstrategy *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->kind = kind;
    s->dfs.max_bound = opt->bound;
    s->dfs.sleep_sets = opt->sleep_sets;
    s->dfs.job_index = opt->job_index;
    s->dfs.job_count = opt->job_count ? opt->job_count : 1;
    s->pct.seed = mix64(opt->seed ^ 0x5043540000000000ull ^ opt->job_index);
    s->pct.fixed_depth = opt->pct_depth;
    s->pct.k_estimate = 50;
    s->seed = mix64(opt->seed ^ 0x52414e44ull ^ ((uint64_t)opt->job_index << 32));
    return s;
}

void xstrategy_free(xstrategy *s)
{
    if (!s) return;
    free(s->dfs.frames);
    free(s->dfs.pool);
    free(s);
}

static int pick_active(xstrategy *s)
{
    if (s->kind == IRPK_STRATEGY_DFS) return S_DFS;
    if (s->kind == IRPK_STRATEGY_PCT) return S_PCT;
    if (s->kind == IRPK_STRATEGY_RANDOM) return S_RANDOM;
    /* Portfolio: DFS, PCT (depth rotating 1..3), random in turn; DFS drops out when done. */
    static const int order[] = {S_DFS, S_PCT, S_PCT, S_PCT, S_RANDOM};
    int a;
    do a = order[s->turn++ % 5];
    while (a == S_DFS && (s->dfs.exhausted || s->dfs.diverged));
    return a;
}

bool xstrategy_begin(xstrategy *s, uint64_t exec)
{
    if (s->kind == IRPK_STRATEGY_DFS && (s->dfs.exhausted || s->dfs.diverged)) return false;
    s->active = pick_active(s);
    if (s->active == S_PCT) pct_begin(&s->pct, exec);
    if (s->active == S_RANDOM) s->random_rng = mix64(s->seed ^ mix64(exec + 1));
    return true;
}

int xstrategy_choose(xstrategy *s, const plat_explore_decision *d)
{
    switch (s->active) {
    case S_DFS: return dfs_choose(&s->dfs, d);
    case S_PCT: return pct_choose(&s->pct, d);
    default: return (int)(rng_next(&s->random_rng) % d->n);
    }
}

void xstrategy_end(xstrategy *s, const plat_explore_outcome *o)
{
    (void)o;
    if (s->active == S_DFS) dfs_end(&s->dfs);
    if (s->active == S_PCT) pct_end(&s->pct);
}

const char *xstrategy_label(const xstrategy *s, unsigned *bound)
{
    static const char *pct_names[] = {"pct0", "pct1", "pct2", "pct3"};
    switch (s->active) {
    case S_DFS: *bound = s->dfs.bound; return "dfs";
    case S_PCT: *bound = s->pct.depth; return pct_names[s->pct.depth <= 3 ? s->pct.depth : 0];
    default: *bound = 0; return "random";
    }
}

bool xstrategy_diverged(const xstrategy *s) { return s->dfs.diverged; }

bool xstrategy_exhaustive(const xstrategy *s, unsigned *bound)
{
    *bound = s->dfs.bound;
    return s->dfs.exhausted;
}
