/* NT_SEMANTICS.md case 87: N inserters, M RemoveNext callers and K cancellers at random on one
 * cancel-safe queue → every IRP completed exactly once, none completed while still listed, no
 * callback with the cancel lock held, and the hot path never takes the cancel lock except
 * through IoCancelIrp. */
#include "csq_fixture.h"

#define INSERTERS 3
#define REMOVERS 2
#define CANCELLERS 2
#define WINDOW 8

typedef struct slot {
    cfx_irp rec; /* first: the record the fixture's callbacks see */
    LIST_ENTRY done_link;
    struct inserter *owner;
    void *volatile published; /* holds a reference for the cancellers */
} slot;

typedef struct inserter {
    plat_thread *thread;
    slot slots[WINDOW];
    KSPIN_LOCK done_lock;
    LIST_ENTRY done;
    KEVENT wake;
    long issued, completed, cancelled, succeeded, bad;
} inserter;

static struct {
    inserter ins[INSERTERS];
    long per_inserter;
    volatile int32_t inserters_left;
    volatile int32_t outstanding;
    volatile int32_t cancel_calls, cancel_true;
} st;

static NTSTATUS stress_done(PDEVICE_OBJECT dev, PIRP irp, PVOID context)
{
    UNREFERENCED_PARAMETER(dev);
    slot *s = context;
    s->rec.status = irp->IoStatus.Status;
    if (irp->Tail.Overlay.DriverContext[2]) plat_store32(&s->rec.listed_at_completion, 1);
    plat_fetch_add32(&s->rec.completions, 1);
    ExInterlockedInsertTailList(&s->owner->done, &s->done_link, &s->owner->done_lock);
    KeSetEvent(&s->owner->wake, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static void issue(inserter *in, slot *s)
{
    cfx_new(&s->rec, 's', NULL);
    s->rec.use_ctx = (in->issued & 3) == 0; /* some with a context */
    IoSetCompletionRoutine(s->rec.irp, stress_done, s, TRUE, TRUE, TRUE);
    io_irp_ref(s->rec.irp);
    plat_store_ptr(&s->published, s->rec.irp);
    in->issued++;
    plat_fetch_add32(&st.outstanding, 1);
    cfx_send(&s->rec);
}

static void reclaim(inserter *in, slot *s)
{
    PIRP irp = plat_xchg_ptr(&s->published, NULL);
    if (irp) io_irp_unref(irp);
    if (s->rec.completions != 1 || s->rec.listed_at_completion) in->bad++;
    if (s->rec.status == STATUS_CANCELLED) in->cancelled++;
    else if (s->rec.status == STATUS_SUCCESS) in->succeeded++;
    else in->bad++;
    in->completed++;
    cfx_free(&s->rec);
    plat_fetch_add32(&st.outstanding, -1);
}

static void inserter_main(void *arg)
{
    inserter *in = arg;
    slot *free_slots[WINDOW];
    int n_free = 0;
    for (int i = 0; i < WINDOW; i++) free_slots[n_free++] = &in->slots[i];
    while (in->issued < st.per_inserter || n_free < WINDOW) {
        if (in->issued < st.per_inserter && n_free > 0) issue(in, free_slots[--n_free]);
        else KeWaitForSingleObject(&in->wake, Executive, KernelMode, FALSE, NULL);
        PLIST_ENTRY e;
        while ((e = ExInterlockedRemoveHeadList(&in->done, &in->done_lock))) {
            slot *s = CONTAINING_RECORD(e, slot, done_link);
            reclaim(in, s);
            free_slots[n_free++] = s;
        }
    }
    plat_fetch_add32(&st.inserters_left, -1);
}

static void remover_main(void *arg)
{
    (void)arg;
    long n = 0;
    for (;;) {
        PIRP irp = IoCsqRemoveNextIrp(&cfx.csq, NULL);
        if (irp) {
            if ((++n & 7) == 0) plat_yield(); /* let cancels land on queued IRPs */
            cfx_complete(irp, STATUS_SUCCESS);
            continue;
        }
        if (!plat_load32(&st.inserters_left) && !plat_load32(&st.outstanding)) return;
        plat_yield();
    }
}

static void canceller_main(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    while (plat_load32(&st.inserters_left)) {
        uint64_t x = irpk_test_rand(&seed);
        slot *s = &st.ins[x % INSERTERS].slots[(x >> 8) % WINDOW];
        PIRP irp = plat_xchg_ptr(&s->published, NULL);
        if (!irp) {
            plat_yield();
            continue;
        }
        plat_fetch_add32(&st.cancel_calls, 1);
        if (IoCancelIrp(irp)) plat_fetch_add32(&st.cancel_true, 1);
        io_irp_unref(irp);
    }
}

static void run(bool ex)
{
    cfx_setup(ex);
    cfx.quiet_log = true;
    cfx.insert_ex_status = STATUS_SUCCESS;
    memset(&st, 0, sizeof st);
    st.per_inserter = irpk_test_scale(20000);
    st.inserters_left = INSERTERS;
    for (int i = 0; i < INSERTERS; i++) {
        inserter *in = &st.ins[i];
        KeInitializeSpinLock(&in->done_lock);
        InitializeListHead(&in->done);
        KeInitializeEvent(&in->wake, SynchronizationEvent, FALSE);
        for (int j = 0; j < WINDOW; j++) in->slots[j].owner = in;
    }
    uint64_t locks = io_cancel_lock_acquisitions();
    plat_thread *t[INSERTERS + REMOVERS + CANCELLERS];
    int n = 0;
    for (int i = 0; i < INSERTERS; i++) t[n++] = plat_thread_start(inserter_main, &st.ins[i], "inserter", 0);
    for (int i = 0; i < REMOVERS; i++) t[n++] = plat_thread_start(remover_main, NULL, "remover", 0);
    for (int i = 0; i < CANCELLERS; i++)
        t[n++] = plat_thread_start(canceller_main, (void *)(uintptr_t)(0x5eed + i), "canceller", 0);
    for (int i = 0; i < n; i++) plat_thread_join(t[i]);

    long issued = 0, completed = 0, cancelled = 0, succeeded = 0, bad = 0;
    for (int i = 0; i < INSERTERS; i++) {
        issued += st.ins[i].issued;
        completed += st.ins[i].completed;
        cancelled += st.ins[i].cancelled;
        succeeded += st.ins[i].succeeded;
        bad += st.ins[i].bad;
    }
    printf("  %s: issued %ld, completed %ld (succeeded %ld, cancelled %ld), IoCancelIrp %d "
           "(TRUE %d), CompleteCanceledIrp %d\n",
           ex ? "Ex" : "plain", issued, completed, succeeded, cancelled, (int)st.cancel_calls,
           (int)st.cancel_true, (int)cfx.canceled_calls);
    CHECK_EQ(issued, INSERTERS * st.per_inserter);
    CHECK_EQ(completed, issued);
    CHECK_EQ(succeeded + cancelled, issued);
    CHECK_EQ(bad, 0); /* exactly once, never while listed */
    CHECK_EQ(cfx.listed, 0);
    CHECK_EQ(cfx.cancel_lock_in_callback, 0);
    CHECK_EQ(cfx.completes_with_lock, 0);
    CHECK_EQ(cancelled, cfx.canceled_calls); /* every cancelled IRP went through the callback */
    CHECK(st.cancel_true <= cfx.canceled_calls);
    /* Only IoCancelIrp took the global lock: never an insert, a RemoveNext or a completion. */
    CHECK(io_cancel_lock_acquisitions() - locks <= (uint64_t)st.cancel_calls);
    cfx_teardown();
}

TEST(t87_stress_plain) { run(false); }
TEST(t87_stress_ex) { run(true); }
