/* Kernel device queues: NT_SEMANTICS.md §3 and semantic cases 1–18 of §11 (expected = WRK), plus
 * compatibility switches 1–2 of §10. Every Ke*DeviceQueue insert/remove runs at DISPATCH_LEVEL,
 * as the spec requires; each case also asserts that no verifier report was raised. */
#include <wdm.h>

#include "irpkit/runtime.h"
#include "irpkit/verifier.h"
#include "test.h"

static KDEVICE_QUEUE q;
static KDEVICE_QUEUE_ENTRY ent[8];
static KIRQL old_irql;

/* Fresh queue, entries with recognisable stale state, IRQL raised to DISPATCH. */
static void setup(void)
{
    irpk_compat_reset();
    irpk_reports_clear();
    memset(ent, 0, sizeof ent);
    for (int i = 0; i < 8; i++) ent[i].SortKey = 0xDEAD0000u + (ULONG)i;
    KeInitializeDeviceQueue(&q);
    KeRaiseIrql(DISPATCH_LEVEL, &old_irql);
}

static void teardown(void)
{
    KeLowerIrql(old_irql);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(irpk_report_count(), 0); /* correct usage: no verifier report */
    irpk_compat_reset();
}

/* The list, walked through DeviceListHead, must be exactly `want` (n entries), every one
 * Inserted, and the back links must be consistent. */
static void check_list(int line, PKDEVICE_QUEUE_ENTRY *want, int n)
{
    PLIST_ENTRY head = &q.DeviceListHead, p = head->Flink, prev = head;
    int i = 0;
    for (; p != head && i < n + 1; p = p->Flink, i++) {
        PKDEVICE_QUEUE_ENTRY e = CONTAINING_RECORD(p, KDEVICE_QUEUE_ENTRY, DeviceListEntry);
        if (i >= n || e != want[i])
            irpk_test_fail(__FILE__, line, "list position %d: got entry %d (key %u), want %d", i,
                           (int)(e - ent), (unsigned)e->SortKey, i < n ? (int)(want[i] - ent) : -1);
        if (!e->Inserted) irpk_test_fail(__FILE__, line, "queued entry %d has Inserted FALSE", i);
        if (p->Blink != prev) irpk_test_fail(__FILE__, line, "broken Blink at position %d", i);
        prev = p;
    }
    if (i != n) irpk_test_fail(__FILE__, line, "list length %d, want %d", i, n);
    if (head->Blink != prev) irpk_test_fail(__FILE__, line, "head Blink is not the last entry");
}
#define CHECK_LIST(...)                                                                       \
    do {                                                                                      \
        PKDEVICE_QUEUE_ENTRY want_[] = {__VA_ARGS__};                                         \
        check_list(__LINE__, want_, (int)(sizeof want_ / sizeof want_[0]));                  \
    } while (0)
#define CHECK_EMPTY() check_list(__LINE__, NULL, 0)

/* Busy queue holding entries 0..n-1 with the given keys (by-key inserts after one idle insert
 * of the "device owner" entry 7). */
static void make_busy_keyed(const ULONG *keys, int n)
{
    CHECK(!KeInsertDeviceQueue(&q, &ent[7]));
    for (int i = 0; i < n; i++) CHECK(KeInsertByKeyDeviceQueue(&q, &ent[i], keys[i]));
}

TEST(t01_initialize_not_busy_empty)
{
    memset(&q, 0xA5, sizeof q); /* garbage before init */
    setup();
    CHECK_EQ(q.Type, DeviceQueueObject);
    CHECK_EQ(q.Size, sizeof(KDEVICE_QUEUE));
    CHECK_EQ(q.Busy, FALSE);
    CHECK(IsListEmpty(&q.DeviceListHead));
    CHECK_EMPTY();
    /* An empty, idle queue: remove gives NULL and leaves Busy FALSE. */
    CHECK_PTR(KeRemoveDeviceQueue(&q), NULL);
    CHECK_EQ(q.Busy, FALSE);
    teardown();
}

TEST(t02_insert_idle_returns_false_sets_busy_not_linked)
{
    setup();
    ent[0].Inserted = TRUE; /* stale: the idle insert must clear it */
    CHECK_EQ(KeInsertDeviceQueue(&q, &ent[0]), FALSE);
    CHECK_EQ(q.Busy, TRUE);
    CHECK_EQ(ent[0].Inserted, FALSE);
    CHECK_EQ(ent[0].SortKey, 0xDEAD0000u); /* plain insert never writes SortKey */
    CHECK_EMPTY();
    teardown();
}

TEST(t03_insert_busy_appends_and_marks_inserted)
{
    setup();
    CHECK_EQ(KeInsertDeviceQueue(&q, &ent[0]), FALSE);
    CHECK_EQ(KeInsertDeviceQueue(&q, &ent[1]), TRUE);
    CHECK_EQ(KeInsertDeviceQueue(&q, &ent[2]), TRUE);
    CHECK_LIST(&ent[1], &ent[2]);
    CHECK_EQ(ent[1].Inserted, TRUE);
    CHECK_EQ(ent[2].Inserted, TRUE);
    CHECK_EQ(ent[1].SortKey, 0xDEAD0001u); /* untouched */
    CHECK_EQ(ent[2].SortKey, 0xDEAD0002u);
    CHECK_EQ(q.Busy, TRUE);
    teardown();
}

TEST(t04_remove_fifo_then_null_clears_busy)
{
    setup();
    KeInsertDeviceQueue(&q, &ent[0]);
    KeInsertDeviceQueue(&q, &ent[1]);
    KeInsertDeviceQueue(&q, &ent[2]);
    CHECK_PTR(KeRemoveDeviceQueue(&q), &ent[1]);
    CHECK_EQ(ent[1].Inserted, FALSE);
    CHECK_EQ(q.Busy, TRUE);
    CHECK_LIST(&ent[2]);
    CHECK_PTR(KeRemoveDeviceQueue(&q), &ent[2]);
    CHECK_EQ(ent[2].Inserted, FALSE);
    CHECK_EQ(q.Busy, TRUE); /* Busy stays TRUE while something was removed */
    CHECK_EMPTY();
    CHECK_PTR(KeRemoveDeviceQueue(&q), NULL);
    CHECK_EQ(q.Busy, FALSE);
    /* Idle again: the next insert owns the device. */
    CHECK_EQ(KeInsertDeviceQueue(&q, &ent[3]), FALSE);
    teardown();
}

TEST(t05_insert_by_key_orders_equal_keys_fifo)
{
    setup();
    CHECK(!KeInsertDeviceQueue(&q, &ent[7])); /* make it busy */
    /* A5, B3, C5, D9, E3, F0 */
    static const ULONG keys[] = {5, 3, 5, 9, 3, 0};
    for (int i = 0; i < 6; i++) CHECK_EQ(KeInsertByKeyDeviceQueue(&q, &ent[i], keys[i]), TRUE);
    /* F0, B3, E3, A5, C5, D9 */
    CHECK_LIST(&ent[5], &ent[1], &ent[4], &ent[0], &ent[2], &ent[3]);
    for (int i = 0; i < 6; i++) CHECK_EQ(ent[i].SortKey, keys[i]);
    teardown();
}

TEST(t05b_insert_by_key_unsigned_compare)
{
    setup();
    CHECK(!KeInsertDeviceQueue(&q, &ent[7]));
    CHECK(KeInsertByKeyDeviceQueue(&q, &ent[0], 0x80000000u)); /* negative as a signed LONG */
    CHECK(KeInsertByKeyDeviceQueue(&q, &ent[1], 1));
    CHECK(KeInsertByKeyDeviceQueue(&q, &ent[2], 0xFFFFFFFFu));
    CHECK_LIST(&ent[1], &ent[0], &ent[2]);
    teardown();
}

TEST(t06_insert_by_key_idle_writes_key_not_linked)
{
    setup();
    ent[0].Inserted = TRUE;
    CHECK_EQ(KeInsertByKeyDeviceQueue(&q, &ent[0], 42), FALSE);
    CHECK_EQ(ent[0].SortKey, 42);
    CHECK_EQ(q.Busy, TRUE);
    CHECK_EQ(ent[0].Inserted, FALSE);
    CHECK_EMPTY();
    teardown();
}

static const ULONG k159[] = {1, 5, 9};

TEST(t07_remove_by_key_first_at_least_key)
{
    setup();
    make_busy_keyed(k159, 3);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 4), &ent[1]);
    CHECK_EQ(ent[1].Inserted, FALSE);
    CHECK_LIST(&ent[0], &ent[2]);
    CHECK_EQ(q.Busy, TRUE);
    teardown();
}

TEST(t08_remove_by_key_above_all_wraps_to_head)
{
    setup();
    make_busy_keyed(k159, 3);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 10), &ent[0]);
    CHECK_LIST(&ent[1], &ent[2]);
    teardown();
}

TEST(t09_remove_by_key_equal_to_last_wraps_to_head)
{
    setup();
    make_busy_keyed(k159, 3);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 9), &ent[0]); /* WRK quirk; docs imply 9 */
    CHECK_EQ(ent[0].Inserted, FALSE);
    CHECK_LIST(&ent[1], &ent[2]);
    teardown();
}

TEST(t09b_remove_by_key_quirk_two_entries)
{
    setup();
    static const ULONG k15[] = {1, 5};
    make_busy_keyed(k15, 2);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 5), &ent[0]); /* §3.5: [1,5], K=5 → 1 */
    CHECK_LIST(&ent[1]);
    teardown();
}

TEST(t10_remove_by_key_equal_keys_fifo)
{
    setup();
    static const ULONG k1559[] = {1, 5, 5, 9};
    make_busy_keyed(k1559, 4);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 5), &ent[1]); /* 5a */
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 5), &ent[2]); /* 5b */
    CHECK_LIST(&ent[0], &ent[3]);
    teardown();
}

TEST(t11_remove_by_key_below_all_takes_head)
{
    setup();
    static const ULONG k37[] = {3, 7};
    make_busy_keyed(k37, 2);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 0), &ent[0]);
    CHECK_LIST(&ent[1]);
    teardown();
}

TEST(t12_remove_by_key_busy_empty_clears_busy)
{
    setup();
    CHECK(!KeInsertDeviceQueue(&q, &ent[0]));
    CHECK_EQ(q.Busy, TRUE);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 7), NULL);
    CHECK_EQ(q.Busy, FALSE);
    CHECK_EMPTY();
    teardown();
}

TEST(t13_remove_if_busy_idle_no_change)
{
    setup();
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 7), NULL);
    CHECK_EQ(q.Busy, FALSE);
    CHECK_EMPTY();
    teardown();
}

TEST(t14_remove_if_busy_no_wrap_on_equal)
{
    setup();
    make_busy_keyed(k159, 3);
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 9), &ent[2]); /* 9 (ReactOS: 1) */
    CHECK_EQ(ent[2].Inserted, FALSE);
    CHECK_LIST(&ent[0], &ent[1]);
    /* Above every key: the head. */
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 100), &ent[0]);
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 3), &ent[1]);
    CHECK_EQ(q.Busy, TRUE);
    CHECK_EMPTY();
    teardown();
}

TEST(t15_remove_if_busy_busy_empty_clears_busy)
{
    setup();
    CHECK(!KeInsertByKeyDeviceQueue(&q, &ent[0], 3));
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 1), NULL);
    CHECK_EQ(q.Busy, FALSE);
    /* and again: now idle, still NULL, still not busy */
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 1), NULL);
    CHECK_EQ(q.Busy, FALSE);
    teardown();
}

TEST(t16_remove_entry_never_changes_busy)
{
    setup();
    CHECK(!KeInsertDeviceQueue(&q, &ent[7]));
    CHECK(KeInsertDeviceQueue(&q, &ent[0])); /* A */
    CHECK(KeInsertDeviceQueue(&q, &ent[1])); /* B */
    CHECK_EQ(KeRemoveEntryDeviceQueue(&q, &ent[0]), TRUE);
    CHECK_EQ(ent[0].Inserted, FALSE);
    CHECK_LIST(&ent[1]);
    CHECK_EQ(KeRemoveEntryDeviceQueue(&q, &ent[0]), FALSE);
    CHECK_LIST(&ent[1]);
    CHECK_EQ(KeRemoveEntryDeviceQueue(&q, &ent[1]), TRUE);
    CHECK_EMPTY();
    CHECK_EQ(q.Busy, TRUE); /* still TRUE */
    /* The next remove finds the list empty and clears it. */
    CHECK_PTR(KeRemoveDeviceQueue(&q), NULL);
    CHECK_EQ(q.Busy, FALSE);
    teardown();
}

TEST(t16b_remove_entry_from_passive_raises_itself)
{
    irpk_reports_clear();
    KeInitializeDeviceQueue(&q);
    KIRQL o;
    KeRaiseIrql(DISPATCH_LEVEL, &o);
    KeInsertDeviceQueue(&q, &ent[7]);
    KeInsertDeviceQueue(&q, &ent[0]);
    KeLowerIrql(o);
    CHECK_EQ(KeRemoveEntryDeviceQueue(&q, &ent[0]), TRUE); /* at PASSIVE: legal (≤ DISPATCH) */
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);           /* restored */
    CHECK_EQ(irpk_report_count(), 0);
}

TEST(t17_remove_entry_of_idle_inserted_entry_false)
{
    setup();
    CHECK_EQ(KeInsertDeviceQueue(&q, &ent[0]), FALSE);
    CHECK_EQ(KeRemoveEntryDeviceQueue(&q, &ent[0]), FALSE);
    CHECK_EQ(q.Busy, TRUE);
    CHECK_EMPTY();
    teardown();
}

TEST(t18_insert_by_key_sets_inserted)
{
    setup();
    CHECK(!KeInsertDeviceQueue(&q, &ent[7]));
    ent[0].Inserted = FALSE;
    CHECK_EQ(KeInsertByKeyDeviceQueue(&q, &ent[0], 4), TRUE);
    CHECK_EQ(ent[0].Inserted, TRUE);
    CHECK_EQ(KeRemoveEntryDeviceQueue(&q, &ent[0]), TRUE); /* ReactOS: FALSE */
    CHECK_EMPTY();
    teardown();
}

TEST(compat1_bykey_wrap_off_follows_docs)
{
    setup();
    CHECK_EQ(irpk_compat_get(IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL), 1); /* default on */
    CHECK_EQ(irpk_compat_set(IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL, 0), 1);
    make_busy_keyed(k159, 3);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 9), &ent[2]); /* docs: 9 */
    CHECK_LIST(&ent[0], &ent[1]);
    /* Still wraps when K is above every key. */
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 10), &ent[0]);
    irpk_compat_reset();
    CHECK_EQ(irpk_compat_get(IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL), 1);
    teardown();
}

TEST(compat2_ifbusy_wrap_on_follows_reactos)
{
    setup();
    CHECK_EQ(irpk_compat_get(IRPK_COMPAT_IFBUSY_WRAP_ON_EQUAL), 0); /* default off */
    CHECK_EQ(irpk_compat_set(IRPK_COMPAT_IFBUSY_WRAP_ON_EQUAL, 1), 0);
    make_busy_keyed(k159, 3);
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 9), &ent[0]); /* ReactOS: 1 */
    CHECK_LIST(&ent[1], &ent[2]);
    /* The plain by-key remove is governed by switch 1 only. */
    irpk_compat_reset();
    CHECK_EQ(irpk_compat_get(IRPK_COMPAT_IFBUSY_WRAP_ON_EQUAL), 0);
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 9), &ent[2]);
    teardown();
}

TEST(compat_set_unknown_switch_returns_minus_one)
{
    CHECK_EQ(irpk_compat_set((irpk_compat_switch)99, 1), -1);
    CHECK_EQ(irpk_compat_get((irpk_compat_switch)99), 0);
}

/* VERIFIER.md: KeInsert/Remove*DeviceQueue at the wrong IRQL → 0xC4/0x20003 (IrqlDispatch). The
 * operation still happens (report mode), so the queue stays consistent. */
TEST(verifier_devqueue_at_passive_reports_irql_dispatch)
{
    int quiet = irpk_reports_set_quiet(1);
    irpk_reports_clear();
    KeInitializeDeviceQueue(&q);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    CHECK_EQ(KeInsertDeviceQueue(&q, &ent[0]), FALSE);
    REQUIRE(irpk_report_count() == 1);
    CHECK_EQ(irpk_report_code(0), 0xC4);
    CHECK_EQ(irpk_report_param(0, 0), 0x20003);
    CHECK_PTR(irpk_report_param(0, 1), &q);
    CHECK_EQ(irpk_report_param(0, 2), PASSIVE_LEVEL);
    CHECK_STR(irpk_report_name(0), "IrqlDispatch");
    CHECK_CONTAINS(irpk_report_text(0), "KeInsertDeviceQueue");
    KeInsertByKeyDeviceQueue(&q, &ent[1], 1);
    KeRemoveDeviceQueue(&q);
    KeRemoveByKeyDeviceQueue(&q, 1);
    KeRemoveByKeyDeviceQueueIfBusy(&q, 1);
    CHECK_EQ(irpk_report_count(), 5);
    CHECK_EQ(irpk_report_count_code(0xC4), 5);
    CHECK_EQ(q.Busy, FALSE);
    irpk_reports_clear();
    irpk_reports_set_quiet(quiet);
}

/* Regression (found by case 19): plain inserts mixed with keyed ones leave the list unsorted.
 * §3.6 (IfBusy, WRK) and the docs' RemoveByKey have no "last <= K" shortcut at all: they take the
 * first entry with key >= K. src/ke used "last < K → head" for them, which differs here. */
static void make_unsorted_1_9_3(void)
{
    CHECK(!KeInsertDeviceQueue(&q, &ent[7]));
    CHECK(KeInsertByKeyDeviceQueue(&q, &ent[0], 1));
    CHECK(KeInsertByKeyDeviceQueue(&q, &ent[1], 9));
    ent[2].SortKey = 3; /* a plain insert keeps whatever key the entry carries */
    CHECK(KeInsertDeviceQueue(&q, &ent[2]));
    CHECK_LIST(&ent[0], &ent[1], &ent[2]);
}

TEST(regress_unsorted_list_if_busy_takes_first_at_least_key)
{
    setup();
    make_unsorted_1_9_3();
    CHECK_PTR(KeRemoveByKeyDeviceQueueIfBusy(&q, 5), &ent[1]); /* first key ≥ 5: 9 */
    CHECK_LIST(&ent[0], &ent[2]);
    teardown();
}

TEST(regress_unsorted_list_remove_by_key_wrap_rule)
{
    setup();
    make_unsorted_1_9_3();
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 5), &ent[0]); /* WRK: last 3 ≤ 5 → head */
    irpk_compat_set(IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL, 0);
    CHECK(KeInsertByKeyDeviceQueue(&q, &ent[3], 0));     /* [0, 9, 3] */
    CHECK_LIST(&ent[3], &ent[1], &ent[2]);
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 5), &ent[1]); /* docs: first key ≥ 5 → 9 */
    CHECK_PTR(KeRemoveByKeyDeviceQueue(&q, 50), &ent[3]); /* none ≥ 50 → head */
    teardown();
}

/* Regression: report names of "VERIFIER <Rule>: …" reports were "<Rule>:" (colon included). */
TEST(regress_verifier_report_name_has_no_colon)
{
    int quiet = irpk_reports_set_quiet(1);
    irpk_reports_clear();
    KeInitializeDeviceQueue(&q);
    KeRemoveDeviceQueue(&q); /* at PASSIVE */
    REQUIRE(irpk_report_count() == 1);
    CHECK_STR(irpk_report_name(0), "IrqlDispatch");
    irpk_reports_clear();
    irpk_reports_set_quiet(quiet);
}
