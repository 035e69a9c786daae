/* Spin-lock checks (hooked into src/ke/spinlock.c): self-deadlock, release when not held or by
 * another thread, the IRQL a release restores, and a global lock-order graph.
 *
 * The graph is keyed by lock address: an edge A→B is added when a thread acquires B while
 * holding A. Adding an edge that closes a cycle is reported (0xC4/0x1001) before the acquire
 * blocks, so the report comes before any real deadlock — usually long before, as the two
 * orders need not ever overlap in time. KeInitializeSpinLock removes a lock's edges (a lock
 * re-initialised at a reused address is a new lock). */
#include <stdio.h>
#include <string.h>

#include "verify/verify.h"

static bool is_cancel_lock(const void *lock) { return lock == (const void *)&io_cancel_lock; }

static const char *describe_lock(const void *lock, char *buf, size_t n)
{
    if (is_cancel_lock(lock)) return snprintf(buf, n, "the cancel spin lock"), buf;
    char sym[64];
    vrf_symbol(lock, sym, sizeof sym);
    if (sym[0] != '0') snprintf(buf, n, "spin lock %s (%p)", sym, lock);
    else snprintf(buf, n, "spin lock %p", lock);
    return buf;
}

static int find_held(const ke_thread *k, const void *lock)
{
    int32_t n = k->n_held < 16 ? k->n_held : 16;
    for (int32_t i = n - 1; i >= 0; i--)
        if (k->held[i] == lock) return i;
    return -1;
}

/* ---- the lock-order graph */

#define EDGE_SLOTS 4096 /* open addressing; at most half used */
#define MAX_EDGES (EDGE_SLOTS / 2)

typedef struct edge {
    const void *from, *to;
    int32_t ctx;    /* driver routine of the thread that first acquired `to` holding `from` */
    char thread[PLAT_NAME_MAX]; /* that thread */
} edge;

/* graph_lock guards edges/n_edges; a leaf lock (reports are made after releasing it). */
static plat_lockword graph_lock;
static edge edges[EDGE_SLOTS];
static int32_t n_edges;

static void graph_reset(void)
{
    if (!n_edges) return; /* the common case between explorer executions: nothing to clear */
    memset(edges, 0, sizeof edges);
    n_edges = 0;
}

__attribute__((constructor)) static void graph_register_reset(void) { plat_on_reset(graph_reset); }

void vrf_locks_reset(void)
{
    vrf_lock(&graph_lock);
    graph_reset();
    vrf_unlock(&graph_lock);
}

static uint32_t edge_hash(const void *from, const void *to)
{
    uintptr_t h = ((uintptr_t)from >> 3) * 0x9E3779B97F4A7C15ull ^ ((uintptr_t)to >> 3);
    return (uint32_t)(h ^ (h >> 29)) % EDGE_SLOTS;
}

static edge *edge_slot(const void *from, const void *to)
{
    for (uint32_t i = edge_hash(from, to), probes = 0; probes < EDGE_SLOTS; i = (i + 1) % EDGE_SLOTS, probes++)
        if (!edges[i].from || (edges[i].from == from && edges[i].to == to)) return &edges[i];
    return NULL;
}

/* Path from → … → to through existing edges (breadth first); fills path (edges) and returns
 * its length, 0 when unreachable. graph_lock held. */
static int find_path(const void *from, const void *to, const edge **path, int max)
{
    enum { MAXN = 256 };
    const void *node[MAXN];
    const edge *via[MAXN];
    int parent[MAXN];
    int head = 0, tail = 0;
    node[tail] = from, via[tail] = NULL, parent[tail++] = -1;
    while (head < tail) {
        int cur = head++;
        for (int i = 0; i < EDGE_SLOTS; i++) {
            const edge *e = &edges[i];
            if (!e->from || e->from != node[cur]) continue;
            bool seen = false;
            for (int j = 0; j < tail && !seen; j++) seen = node[j] == e->to;
            if (seen) continue;
            if (tail == MAXN) return 0;
            node[tail] = e->to, via[tail] = e, parent[tail++] = cur;
            if (e->to != to) continue;
            int len = 0;
            for (int k = tail - 1; k > 0 && len < max; k = parent[k]) path[len++] = via[k];
            for (int a = 0, b = len - 1; a < b; a++, b--) { /* oldest first */
                const edge *t = path[a];
                path[a] = path[b];
                path[b] = t;
            }
            return len;
        }
    }
    return 0;
}

static int32_t current_ctx(void)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    return v && v->depth > 0 && v->depth <= VRF_FRAMES ? v->frames[v->depth - 1].ctx : 0;
}

static void put_edge(char *buf, size_t n, size_t *len, const edge *e)
{
    char a[96], b[96], c[96] = "";
    vrf_ctx_describe(e->ctx, c, sizeof c);
    if (*len + 1 >= n) return;
    *len += (size_t)snprintf(buf + *len, n - *len, "  %s -> %s: thread %s%s%s\n",
                             describe_lock(e->from, a, sizeof a), describe_lock(e->to, b, sizeof b),
                             e->thread, c[0] ? " in " : "", c);
    if (*len >= n) *len = n - 1;
}

/* Acquiring `to` while holding `from`. */
static void add_edge(const void *from, const void *to)
{
    const edge *path[16];
    int len = 0;
    vrf_lock(&graph_lock);
    edge *e = edge_slot(from, to);
    if (!e || e->from || n_edges >= MAX_EDGES) { /* known edge (or the graph is full) */
        vrf_unlock(&graph_lock);
        return;
    }
    len = find_path(to, from, path, 16); /* to → … → from closes a cycle with from → to */
    *e = (edge){.from = from, .to = to, .ctx = current_ctx()};
    memcpy(e->thread, plat_self()->name, PLAT_NAME_MAX);
    vrf_store32(&n_edges, n_edges + 1); /* atomic: vrf_spin_init reads it without graph_lock */
    char cycle[1536];
    size_t clen = 0;
    cycle[0] = 0;
    for (int i = 0; i < len; i++) put_edge(cycle, sizeof cycle, &clen, path[i]);
    put_edge(cycle, sizeof cycle, &clen, e);
    vrf_unlock(&graph_lock);
    if (!len) return;
    char a[96], b[96];
    vrf_report(0xC4, 0x1001, (uintptr_t)to, (uintptr_t)from, (uintptr_t)(len + 1), NULL, NULL, NULL,
               "take spin locks in one global order everywhere (document it next to the locks); "
               "if one path needs them the other way round, release the first lock before taking "
               "the second.",
               "Lock-order cycle: acquiring %s while holding %s closes a cycle of %d lock(s). No "
               "deadlock has happened yet; it happens when these paths run at the same time.\n"
               "Acquisition orders seen (oldest first):\n%.*s",
               describe_lock(to, a, sizeof a), describe_lock(from, b, sizeof b), len + 1,
               (int)(clen && cycle[clen - 1] == '\n' ? clen - 1 : clen), cycle);
}

void vrf_spin_init(const void *lock)
{
    /* Unlocked fast path: a lock being (re)initialised is not in use, so no edge of it can be
     * added meanwhile; an edge of another lock added concurrently is not ours to drop. */
    if (!vrf_load32(&n_edges)) return;
    vrf_lock(&graph_lock);
    bool any = false;
    for (int i = 0; i < EDGE_SLOTS && !any; i++) any = edges[i].from == lock || edges[i].to == lock;
    if (any) { /* rebuild without the lock's edges (open addressing has no cheap delete) */
        static edge keep[MAX_EDGES]; /* graph_lock held */
        int n = 0;
        for (int i = 0; i < EDGE_SLOTS; i++)
            if (edges[i].from && edges[i].from != lock && edges[i].to != lock) keep[n++] = edges[i];
        memset(edges, 0, sizeof edges);
        for (int i = 0; i < n; i++) *edge_slot(keep[i].from, keep[i].to) = keep[i];
        vrf_store32(&n_edges, n);
    }
    vrf_unlock(&graph_lock);
}

/* ---- acquire / release */

bool vrf_spin_acquire(const void *lock)
{
    ke_thread *k = ke_self();
    if (find_held(k, lock) >= 0) {
        vrf_thread *v = vrf_self();
        if (v->n_refused < (int32_t)(sizeof v->refused / sizeof v->refused[0])) v->refused[v->n_refused++] = lock;
        char d[96];
        bool cancel = is_cancel_lock(lock);
        vrf_report(0xC4, 0x1000, (uintptr_t)lock, ke_irql(), 0, NULL, NULL,
                   cancel ? "CancelSpinlockRelease" : "SpinLock",
                   cancel ? "never call IoAcquireCancelSpinLock, IoStartPacket with a cancel "
                            "routine or IoStartNextPacket(…, TRUE) while holding the cancel lock "
                            "(cancel routines are entered holding it: release it first)."
                          : "spin locks are not recursive: release the lock before the nested "
                            "path takes it again, or pass down that it is already held.",
                   "%s acquired again by the thread that already holds it: a self-deadlock. "
                   "irpkit refused this acquire (and will ignore its release).",
                   describe_lock(lock, d, sizeof d));
        return false;
    }
    int32_t n = k->n_held < 16 ? k->n_held : 16;
    for (int32_t i = 0; i < n; i++) add_edge(k->held[i], lock);
    return true;
}

bool vrf_spin_is_refused(const void *lock)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    return v && v->n_refused > 0 && v->refused[v->n_refused - 1] == lock;
}

bool vrf_spin_release(const void *lock)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    if (v) /* the release matching a refused acquire */
        for (int32_t i = v->n_refused - 1; i >= 0; i--)
            if (v->refused[i] == lock) {
                memmove(&v->refused[i], &v->refused[i + 1], (size_t)(v->n_refused - 1 - i) * sizeof v->refused[0]);
                v->n_refused--;
                return false;
            }
    ke_thread *k = ke_self();
    if (find_held(k, lock) >= 0 || k->n_held > 16) return true; /* (beyond 16 nested: untracked) */
    /* Racy snapshot: it only chooses the report's wording. */
    bool owned_elsewhere = plat_lock_is_held((const volatile plat_lockword *)lock);
    bool cancel = is_cancel_lock(lock);
    char d[96];
    vrf_report(0xC4, owned_elsewhere ? 0x1003 : 0x1002, (uintptr_t)lock, ke_irql(), 0, NULL, NULL,
               cancel ? "CancelSpinlockRelease" : "SpinlockRelease",
               "release a spin lock exactly once, on the thread that acquired it (each "
               "KeReleaseSpinLock pairs with one KeAcquireSpinLock on the same path).",
               owned_elsewhere ? "%s released by a thread that does not hold it (another thread "
                                 "does). irpkit ignored the release."
                               : "%s released, but it is not held. irpkit ignored the release.",
               describe_lock(lock, d, sizeof d));
    return false;
}

KIRQL vrf_spin_release_irql(const void *lock, KIRQL new_irql)
{
    ke_thread *k = ke_self();
    int i = find_held(k, lock);
    if (i < 0) return new_irql;
    KIRQL saved = k->held_irql[i];
    bool others = k->n_held > 1;
    char d[96];
    if (others && new_irql < DISPATCH_LEVEL) {
        vrf_report(0xC4, 0x32, (uintptr_t)lock, saved, new_irql, NULL, NULL, "IrqlKeReleaseSpinLock",
                   "when spin locks are released out of order, pass the later acquire's OldIrql to "
                   "the first release and the earliest OldIrql to the last one.",
                   "KeReleaseSpinLock(%s, %u) lowers the IRQL below DISPATCH_LEVEL while this thread "
                   "still holds %d other spin lock(s). irpkit kept DISPATCH_LEVEL.",
                   describe_lock(lock, d, sizeof d), new_irql, (int)k->n_held - 1);
        /* The other lock inherits the level owed to the caller. */
        for (int32_t j = (k->n_held < 16 ? k->n_held : 16) - 1; j >= 0; j--)
            if (j != i && k->held_irql[j] >= DISPATCH_LEVEL) {
                k->held_irql[j] = new_irql;
                break;
            }
        return DISPATCH_LEVEL;
    }
    if (new_irql > saved) {
        /* Keeping a raised IRQL (the seed's cancel routine releases with DISPATCH_LEVEL and
         * lowers later) or hand-over-hand release: another held lock that saved new_irql now
         * owes the caller `saved` instead. */
        for (int32_t j = (k->n_held < 16 ? k->n_held : 16) - 1; j >= 0; j--)
            if (j != i && k->held_irql[j] == new_irql) {
                k->held_irql[j] = saved;
                break;
            }
        return new_irql;
    }
    if (new_irql == saved) return new_irql;
    vrf_report(0xC4, 0x32, (uintptr_t)lock, saved, new_irql, NULL, NULL, "IrqlKeReleaseSpinLock",
               "pass KeReleaseSpinLock the OldIrql its KeAcquireSpinLock returned.",
               "KeReleaseSpinLock(%s, %u) lowers the IRQL below %u, the IRQL the lock was acquired "
               "at. irpkit restored IRQL %u.",
               describe_lock(lock, d, sizeof d), new_irql, saved, saved);
    return saved;
}
