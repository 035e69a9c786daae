/* NT_SEMANTICS.md case 19: random sequences over all seven device-queue routines
 * (Initialize, Insert, InsertByKey, Remove, RemoveByKey, RemoveByKeyIfBusy, RemoveEntry) on a
 * small pool of entries, checked after every step against an independent reference model — a
 * plain array written from §3 of the spec, sharing no code with src/ke/devqueue.c.
 *
 * Fixed seeds: a failure prints the seed and step; rerun just that sequence with
 * IRPK_DQ_SEED=<seed>. Sequences also vary compatibility switches 1–2 (§10). */
#include <inttypes.h>
#include <wdm.h>

#include "irpkit/runtime.h"
#include "irpkit/verifier.h"
#include "test.h"

#define POOL 6

/* ---- reference model: §3 written out over an array (index 0 = head = next to dequeue) */
typedef struct model {
    int list[POOL]; /* entry indices */
    int n;
    int busy;
    int inserted[POOL];
    ULONG key[POOL];
    int bykey_wrap, ifbusy_wrap; /* switches 1 and 2 */
} model;

static void m_insert_at(model *m, int pos, int e)
{
    for (int i = m->n; i > pos; i--) m->list[i] = m->list[i - 1];
    m->list[pos] = e;
    m->n++;
}

static int m_unlink_at(model *m, int pos)
{
    int e = m->list[pos];
    for (int i = pos; i + 1 < m->n; i++) m->list[i] = m->list[i + 1];
    m->n--;
    m->inserted[e] = 0;
    return e;
}

/* §3.2: returns 1 if queued. */
static int m_insert(model *m, int e)
{
    int was = m->busy;
    m->busy = 1;
    if (was) m_insert_at(m, m->n, e);
    m->inserted[e] = was;
    return was;
}

/* §3.3 */
static int m_insert_by_key(model *m, int e, ULONG k)
{
    m->key[e] = k;
    int was = m->busy;
    m->busy = 1;
    if (was) {
        int pos;
        if (m->n == 0 || k >= m->key[m->list[m->n - 1]]) {
            pos = m->n;
        } else {
            pos = 0;
            while (m->key[m->list[pos]] <= k) pos++; /* first strictly greater */
        }
        m_insert_at(m, pos, e);
    }
    m->inserted[e] = was;
    return was;
}

/* §3.4: returns the entry index or -1. */
static int m_remove(model *m)
{
    if (m->n == 0) {
        m->busy = 0;
        return -1;
    }
    return m_unlink_at(m, 0);
}

static int m_select(const model *m, ULONG k, int wrap_on_equal)
{
    ULONG last = m->key[m->list[m->n - 1]];
    if (wrap_on_equal && last <= k) return 0;
    for (int i = 0; i < m->n; i++)
        if (m->key[m->list[i]] >= k) return i;
    return 0; /* none ≥ K: the head */
}

/* §3.5 */
static int m_remove_by_key(model *m, ULONG k)
{
    if (m->n == 0) {
        m->busy = 0;
        return -1;
    }
    return m_unlink_at(m, m_select(m, k, m->bykey_wrap));
}

/* §3.6 */
static int m_remove_if_busy(model *m, ULONG k)
{
    if (!m->busy) return -1;
    if (m->n == 0) {
        m->busy = 0;
        return -1;
    }
    return m_unlink_at(m, m_select(m, k, m->ifbusy_wrap));
}

/* §3.7 */
static int m_remove_entry(model *m, int e)
{
    if (!m->inserted[e]) return 0;
    for (int i = 0; i < m->n; i++)
        if (m->list[i] == e) {
            m_unlink_at(m, i);
            return 1;
        }
    return -99; /* model inconsistency: cannot happen */
}

/* ---- the system under test */
static KDEVICE_QUEUE q;
static KDEVICE_QUEUE_ENTRY ent[POOL];

static int idx(PKDEVICE_QUEUE_ENTRY e) { return e ? (int)(e - ent) : -1; }

static ULONG random_key(uint64_t *rs)
{
    uint64_t r = irpk_test_rand(rs);
    switch (r % 16) {
    case 0: return 0;
    case 1: return 0xFFFFFFFFu;
    case 2: return 0x80000000u;
    case 3: return 0x7FFFFFFFu;
    default: return (ULONG)((r >> 8) % 8); /* many equal keys */
    }
}

static const char *op_names[] = {"Initialize", "Insert", "InsertByKey", "Remove",
                                 "RemoveByKey", "RemoveByKeyIfBusy", "RemoveEntry"};

/* Compare everything observable; returns 0 when equal. */
static int compare(const model *m, char *why, size_t whylen)
{
    if (!!q.Busy != m->busy) return snprintf(why, whylen, "Busy %d, model %d", q.Busy, m->busy), 1;
    PLIST_ENTRY head = &q.DeviceListHead, p = head->Flink, prev = head;
    int i = 0;
    for (; p != head; p = p->Flink, i++) {
        if (i >= m->n) return snprintf(why, whylen, "list longer than model (%d)", m->n), 1;
        int e = idx(CONTAINING_RECORD(p, KDEVICE_QUEUE_ENTRY, DeviceListEntry));
        if (e != m->list[i])
            return snprintf(why, whylen, "list[%d] = entry %d, model %d", i, e, m->list[i]), 1;
        if (p->Blink != prev) return snprintf(why, whylen, "broken Blink at %d", i), 1;
        prev = p;
    }
    if (i != m->n) return snprintf(why, whylen, "list length %d, model %d", i, m->n), 1;
    if (head->Blink != prev) return snprintf(why, whylen, "head Blink wrong"), 1;
    for (int e = 0; e < POOL; e++) {
        if (!!ent[e].Inserted != m->inserted[e])
            return snprintf(why, whylen, "entry %d Inserted %d, model %d", e, ent[e].Inserted,
                            m->inserted[e]), 1;
        if (ent[e].SortKey != m->key[e])
            return snprintf(why, whylen, "entry %d SortKey %u, model %u", e,
                            (unsigned)ent[e].SortKey, (unsigned)m->key[e]), 1;
    }
    return 0;
}

/* One random sequence. Returns 0 on success, or prints the seed/step and returns 1. */
static int run_sequence(uint64_t seed, int steps, long *ops_by_kind)
{
    uint64_t rs = seed;
    model m;
    memset(&m, 0, sizeof m);
    m.bykey_wrap = (irpk_test_rand(&rs) % 4) != 0; /* mostly the defaults */
    m.ifbusy_wrap = (irpk_test_rand(&rs) % 4) == 0;
    irpk_compat_set(IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL, m.bykey_wrap);
    irpk_compat_set(IRPK_COMPAT_IFBUSY_WRAP_ON_EQUAL, m.ifbusy_wrap);
    for (int e = 0; e < POOL; e++) {
        m.key[e] = ent[e].SortKey = (ULONG)irpk_test_rand(&rs); /* stale keys */
        ent[e].Inserted = FALSE;
    }
    KeInitializeDeviceQueue(&q);
    char why[160];
    for (int step = 0; step < steps; step++) {
        uint64_t r = irpk_test_rand(&rs);
        int op = (int)(r % 64);
        /* Weights: Initialize rare, the others roughly even. */
        op = op == 0 ? 0 : 1 + (op - 1) % 6;
        int e = (int)((r >> 8) % POOL);
        ULONG k = random_key(&rs);
        int want = 0, got = 0;
        /* Inserting an entry that is linked is a driver bug (list corruption in Windows too):
         * pick a free entry instead, or turn the step into a remove when none is free. */
        if (op == 1 || op == 2) {
            int tries = 0;
            while (m.inserted[e] && tries++ < POOL) e = (e + 1) % POOL;
            if (m.inserted[e]) op = 3;
        }
        ops_by_kind[op]++;
        KIRQL old;
        KeRaiseIrql(DISPATCH_LEVEL, &old);
        switch (op) {
        case 0:
            /* A driver re-initialising its queue also re-initialises its entries. */
            KeInitializeDeviceQueue(&q);
            m.n = 0;
            m.busy = 0;
            for (int j = 0; j < POOL; j++) ent[j].Inserted = FALSE, m.inserted[j] = 0;
            break;
        case 1:
            got = KeInsertDeviceQueue(&q, &ent[e]);
            want = m_insert(&m, e);
            break;
        case 2:
            got = KeInsertByKeyDeviceQueue(&q, &ent[e], k);
            want = m_insert_by_key(&m, e, k);
            break;
        case 3:
            got = idx(KeRemoveDeviceQueue(&q));
            want = m_remove(&m);
            break;
        case 4:
            got = idx(KeRemoveByKeyDeviceQueue(&q, k));
            want = m_remove_by_key(&m, k);
            break;
        case 5:
            got = idx(KeRemoveByKeyDeviceQueueIfBusy(&q, k));
            want = m_remove_if_busy(&m, k);
            break;
        case 6:
            /* Half the time from PASSIVE (it raises itself; ≤ DISPATCH is legal). */
            if (r & (1ull << 40)) KeLowerIrql(old);
            got = KeRemoveEntryDeviceQueue(&q, &ent[e]);
            want = m_remove_entry(&m, e);
            if (r & (1ull << 40)) KeRaiseIrql(DISPATCH_LEVEL, &old);
            break;
        }
        KeLowerIrql(old);
        int bad = got != want;
        if (bad) snprintf(why, sizeof why, "returned %d, model %d", got, want);
        else bad = compare(&m, why, sizeof why);
        if (bad) {
            irpk_test_fail(__FILE__, __LINE__,
                           "seed 0x%016" PRIx64 " step %d: %s(entry %d, key %u) [switches %d,%d]: %s",
                           seed, step, op_names[op], e, (unsigned)k, m.bykey_wrap, m.ifbusy_wrap,
                           why);
            return 1;
        }
    }
    return 0;
}

TEST(t19_random_sequences_match_reference_model)
{
    irpk_reports_clear();
    long ops[7] = {0};
    long sequences = irpk_test_scale(4000);
    const char *only = getenv("IRPK_DQ_SEED");
    int failures = 0;
    if (only) {
        failures += run_sequence(strtoull(only, NULL, 0), 400, ops);
    } else {
        for (long s = 0; s < sequences && failures < 3; s++)
            failures += run_sequence(0x1234567ull * (uint64_t)(s + 1), 20 + (int)(s % 380), ops);
    }
    irpk_compat_reset();
    CHECK_EQ(failures, 0);
    CHECK_EQ(irpk_report_count(), 0); /* always at the right IRQL */
    /* Every routine was exercised (guards against a generator that silently skips one). */
    for (int i = 0; i < 7; i++) {
        if (ops[i] == 0) irpk_test_fail(__FILE__, __LINE__, "%s never exercised", op_names[i]);
    }
    printf("  %ld sequences; ops: init %ld ins %ld inskey %ld rem %ld remkey %ld ifbusy %ld "
           "rement %ld\n",
           only ? 1 : sequences, ops[0], ops[1], ops[2], ops[3], ops[4], ops[5], ops[6]);
}

/* The model itself must reproduce the spec's worked examples (so a model bug cannot hide a
 * matching implementation bug). */
TEST(t19_reference_model_matches_spec_examples)
{
    model m;
    memset(&m, 0, sizeof m);
    m.bykey_wrap = 1;
    CHECK_EQ(m_insert(&m, 5), 0); /* idle */
    static const ULONG keys[] = {5, 3, 5, 9, 3};
    for (int i = 0; i < 5; i++) CHECK_EQ(m_insert_by_key(&m, i, keys[i]), 1);
    /* B3, E3, A5, C5, D9 = 1, 4, 0, 2, 3 */
    int want[] = {1, 4, 0, 2, 3};
    CHECK_EQ(m.n, 5);
    for (int i = 0; i < 5; i++) CHECK_EQ(m.list[i], want[i]);
    CHECK_EQ(m_remove_by_key(&m, 9), 1);      /* case 9: last == K → head */
    CHECK_EQ(m_remove_if_busy(&m, 9), 3);     /* case 14: no wrap */
    CHECK_EQ(m_remove_by_key(&m, 4), 0);      /* case 7 */
    CHECK_EQ(m_remove_entry(&m, 4), 1);       /* case 16 */
    CHECK_EQ(m_remove_entry(&m, 4), 0);
    CHECK_EQ(m_remove(&m), 2);
    CHECK_EQ(m_remove(&m), -1);
    CHECK_EQ(m.busy, 0);
    CHECK_EQ(m_remove_if_busy(&m, 1), -1);    /* case 13 */
}
