/* Cancel-safe queues: NT_SEMANTICS.md §8, cases 71–86, compatibility switches 4–5 (§10) and
 * the CSQ checks of VERIFIER.md §1. Case 87 (stress) is test_csq_stress.c. */
#include "csq_fixture.h"

#define KEY_P ((PVOID)(uintptr_t)'P')
#define KEY_Q ((PVOID)(uintptr_t)'Q')

static PDRIVER_CANCEL routine_of(PIRP irp)
{
    return (PDRIVER_CANCEL)plat_load_ptr((void *const volatile *)&irp->CancelRoutine);
}

/* T71 */
TEST(t71_insert_logs_acquire_insert_release_and_arms_the_library_routine)
{
    cfx_setup(false);
    cfx_irp a;
    CHECK_EQ(cfx_send_new(&a, 'A', NULL, false), STATUS_PENDING);
    CHECK_STR(cfx_log(), "Acquire Insert Release");
    CHECK(cfx_pending(a.irp));
    CHECK(routine_of(a.irp) != NULL);
    CHECK_PTR(a.irp->Tail.Overlay.DriverContext[3], &cfx.csq);
    CHECK_EQ(a.completions, 0);
    char l[8];
    CHECK_STR(cfx_list(l, sizeof l), "A");
    cfx_drain();
    CHECK_EQ(a.completions, 1);
    CFX_TEARDOWN(&a);
}

/* T72 */
TEST(t72_insert_with_context_fills_it)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_new(&a, 'A', NULL);
    a.use_ctx = true;
    a.ctx.Type = 77; /* overwritten */
    cfx_send(&a);
    CHECK_EQ(a.ctx.Type, IO_TYPE_CSQ_IRP_CONTEXT);
    CHECK_PTR(a.ctx.Irp, a.irp);
    CHECK_PTR(a.ctx.Csq, &cfx.csq);
    CHECK_PTR(a.irp->Tail.Overlay.DriverContext[3], &a.ctx);
    cfx_drain();
    CHECK_PTR(a.ctx.Irp, NULL);
    CFX_TEARDOWN(&a);
}

/* T73, for both initialisations, with and without a context. */
static void insert_cancelled(bool ex, bool ctx)
{
    cfx_setup(ex);
    cfx.insert_ex_status = STATUS_SUCCESS;
    cfx_irp a;
    cfx_new(&a, 'A', NULL);
    a.use_ctx = ctx;
    CHECK(!IoCancelIrp(a.irp)); /* Cancel := TRUE, no routine yet */
    uint64_t locks = io_cancel_lock_acquisitions();
    CHECK_EQ(cfx_send(&a), STATUS_PENDING);
    CHECK_EQ(a.insert_status, STATUS_SUCCESS);
    CHECK_STR(cfx_log(), ex ? "Acquire InsertEx Remove(A) Release CompleteCanceled(A)"
                            : "Acquire Insert Remove(A) Release CompleteCanceled(A)");
    CHECK_EQ(a.completions, 1);
    CHECK_EQ(a.status, STATUS_CANCELLED);
    CHECK(a.irp->PendingReturned); /* marked pending before it was completed */
    CHECK_EQ(a.listed_at_completion, 0);
    CHECK_EQ(a.csq_lock_at_completion, 0);
    CHECK_PTR(routine_of(a.irp), NULL);
    CHECK_PTR(a.irp->Tail.Overlay.DriverContext[3], NULL);
    if (ctx) CHECK_PTR(a.ctx.Irp, NULL);
    CHECK_EQ(io_cancel_lock_acquisitions() - locks, 0); /* the CSQ never takes it */
    CFX_TEARDOWN(&a);
}

TEST(t73_insert_of_a_cancelled_irp_removes_and_completes_it_outside_the_lock)
{
    insert_cancelled(false, false);
    insert_cancelled(false, true);
    insert_cancelled(true, false);
    insert_cancelled(true, true);
}

/* §10 switch 4 off (ReactOS): CompleteCanceledIrp runs under the CSQ lock on that path — and
 * the completion then happens with a spin lock held, which the verifier reports. */
TEST(t73_switch4_off_completes_under_the_csq_lock)
{
    cfx_setup(false);
    CHECK_EQ(irpk_compat_set(IRPK_COMPAT_CSQ_COMPLETE_OUTSIDE_LOCK, 0), 1);
    cfx_irp a;
    cfx_new(&a, 'A', NULL);
    IoCancelIrp(a.irp);
    cfx_send(&a);
    CHECK_STR(cfx_log(), "Acquire Insert Remove(A) CompleteCanceled(A) Release");
    CHECK_EQ(cfx.completes_with_lock, 1);
    CHECK_EQ(a.csq_lock_at_completion, 1);
    CHECK_EQ(a.completions, 1);
    CHECK(irpk_report_count_name("SpinLockSafe") >= 1);
    irpk_reports_clear();
    CFX_TEARDOWN(&a);
}

/* T74 */
TEST(t74_insert_ex_refusal_returns_its_status_and_leaves_the_irp_alone)
{
    cfx_setup(true);
    cfx.insert_ex_status = STATUS_INSUFFICIENT_RESOURCES;
    cfx_irp a;
    CHECK_EQ(cfx_send_new(&a, 'A', NULL, true), STATUS_INSUFFICIENT_RESOURCES);
    CHECK_EQ(a.insert_status, STATUS_INSUFFICIENT_RESOURCES);
    CHECK_STR(cfx_log(), "Acquire InsertEx Release");
    CHECK(!a.refused_pending);
    CHECK_PTR(a.refused_routine, NULL);
    CHECK_PTR(a.ctx.Irp, NULL); /* irpkit drops its claims on a refused IRP */
    CHECK_EQ(a.completions, 1);
    CHECK_EQ(a.status, STATUS_INSUFFICIENT_RESOURCES);
    CHECK_EQ(cfx.listed, 0);
    CFX_TEARDOWN(&a);
}

/* T75 and §10 switch 5 */
TEST(t75_insert_ex_returning_pending_counts_as_success)
{
    cfx_setup(true);
    cfx.insert_ex_status = STATUS_PENDING;
    cfx.insert_context = (PVOID)0x1234;
    cfx_irp a;
    CHECK_EQ(cfx_send_new(&a, 'A', NULL, false), STATUS_PENDING);
    CHECK_EQ(a.insert_status, STATUS_PENDING); /* 0x103 returned as the Ex status */
    CHECK_PTR(cfx.seen_insert_context, (PVOID)0x1234);
    CHECK(cfx_pending(a.irp));
    CHECK(routine_of(a.irp) != NULL);
    CHECK_EQ(cfx.listed, 1);
    cfx_drain();
    CHECK_EQ(a.completions, 1);
    CFX_TEARDOWN(&a);
}

TEST(t75_switch5_off_only_status_success_queues)
{
    cfx_setup(true);
    CHECK_EQ(irpk_compat_set(IRPK_COMPAT_CSQ_EX_NT_SUCCESS, 0), 1);
    cfx.insert_ex_status = STATUS_PENDING;
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, false);
    CHECK_EQ(a.insert_status, STATUS_PENDING);
    CHECK_STR(cfx_log(), "Acquire InsertEx Release");
    CHECK(!a.refused_pending);
    CHECK_PTR(a.refused_routine, NULL);
    CHECK_EQ(cfx.listed, 0);
    CHECK_EQ(a.completions, 1); /* the dispatch routine completed the refused IRP */
    /* and STATUS_SUCCESS still queues */
    cfx_irp b;
    cfx.insert_ex_status = STATUS_SUCCESS;
    cfx_send_new(&b, 'B', NULL, false);
    CHECK_EQ(cfx.listed, 1);
    cfx_drain();
    CHECK_EQ(b.completions, 1);
    CFX_TEARDOWN(&a, &b);
}

/* T76 */
TEST(t76_remove_next_on_empty)
{
    cfx_setup(false);
    CHECK_PTR(IoCsqRemoveNextIrp(&cfx.csq, NULL), NULL);
    CHECK_STR(cfx_log(), "Acquire Peek(-,-) Release");
    cfx_teardown();
}

/* T77: A is claimed by IoCancelIrp whose routine waits for the lock RemoveNext holds. */
static void open_gate_and_wait_for_canceller(PIRP candidate)
{
    if (!candidate || ((cfx_irp *)candidate->Tail.Overlay.DriverContext[1])->label != 'A') return;
    cfx.peek_hook = NULL;
    cfx_post_word(&cfx.open);
    cfx_wait_word(&cfx.acquiring); /* the canceller now blocks on the lock we hold */
}

TEST(t77_remove_next_skips_an_irp_whose_cancel_routine_waits_for_the_lock)
{
    cfx_setup(false);
    cfx_irp a, b;
    cfx_send_new(&a, 'A', NULL, false);
    cfx_send_new(&b, 'B', NULL, false);
    cfx_log_clear();
    cfx_canceller c;
    cfx_cancel_gated(&c, a.irp); /* IoCancelIrp exchanged A's routine and entered it */
    CHECK_PTR(routine_of(a.irp), NULL);
    cfx.peek_hook = open_gate_and_wait_for_canceller;
    PIRP got = IoCsqRemoveNextIrp(&cfx.csq, NULL);
    CHECK_PTR(got, b.irp);
    cfx_cancel_join(&c);
    CHECK(c.result);
    /* RemoveNext: Peek A, lose the exchange, Peek past A, take B; then the cancel routine. */
    CHECK_STR(cfx_log(), "Acquire Peek(-,-) Peek(A,-) Remove(B) Release Acquire Remove(A) Release "
                         "CompleteCanceled(A)");
    CHECK_EQ(a.completions, 1);
    CHECK_EQ(a.status, STATUS_CANCELLED);
    CHECK_EQ(a.listed_at_completion, 0);
    CHECK_EQ(b.completions, 0);
    cfx_complete(got, STATUS_SUCCESS);
    CHECK_EQ(b.completions, 1);
    CFX_TEARDOWN(&a, &b);
}

/* T78 */
TEST(t78_remove_next_peeks_with_its_context_past_skipped_candidates)
{
    cfx_setup(false);
    cfx_irp x, a, b;
    cfx_send_new(&x, 'X', KEY_Q, false);
    cfx_send_new(&a, 'A', KEY_P, false);
    cfx_send_new(&b, 'B', KEY_P, false);
    cfx_log_clear();
    cfx_canceller c;
    cfx_cancel_gated(&c, a.irp); /* A claimed by the cancel, not yet removed */
    PIRP got = IoCsqRemoveNextIrp(&cfx.csq, KEY_P);
    CHECK_PTR(got, b.irp);
    CHECK_STR(cfx_log(), "Acquire Peek(-,P) Peek(A,P) Remove(B) Release");
    cfx_post_word(&cfx.open);
    cfx_cancel_join(&c);
    CHECK_EQ(a.completions, 1);
    cfx_complete(got, STATUS_SUCCESS);
    cfx_drain();
    CHECK_EQ(x.completions, 1);
    CHECK_EQ(b.completions, 1);
    CFX_TEARDOWN(&x, &a, &b);
}

/* T79 */
TEST(t79_remove_irp_by_context)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, true);
    cfx_log_clear();
    PIRP got = IoCsqRemoveIrp(&cfx.csq, &a.ctx);
    CHECK_PTR(got, a.irp);
    CHECK_STR(cfx_log(), "Acquire Remove(A) Release");
    CHECK_PTR(routine_of(a.irp), NULL);
    CHECK_PTR(a.ctx.Irp, NULL);
    CHECK_PTR(a.irp->Tail.Overlay.DriverContext[3], NULL);
    CHECK_PTR(IoCsqRemoveIrp(&cfx.csq, &a.ctx), NULL);
    CHECK(!IoCancelIrp(a.irp)); /* non-cancelable now */
    cfx_complete(got, STATUS_SUCCESS);
    CHECK_EQ(a.completions, 1);
    CFX_TEARDOWN(&a);
}

/* T80 */
TEST(t80_remove_irp_after_remove_next_took_it)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, true);
    PIRP got = IoCsqRemoveNextIrp(&cfx.csq, NULL);
    CHECK_PTR(got, a.irp);
    CHECK_PTR(a.ctx.Irp, NULL);
    CHECK_PTR(IoCsqRemoveIrp(&cfx.csq, &a.ctx), NULL);
    cfx_complete(got, STATUS_SUCCESS);
    CFX_TEARDOWN(&a);
}

/* T81 */
TEST(t81_remove_irp_while_its_cancel_is_in_progress)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, true);
    cfx_log_clear();
    cfx_canceller c;
    cfx_cancel_gated(&c, a.irp);
    CHECK_PTR(IoCsqRemoveIrp(&cfx.csq, &a.ctx), NULL);
    CHECK_STR(cfx_log(), "Acquire Release");
    CHECK_EQ(a.completions, 0);
    cfx_post_word(&cfx.open);
    cfx_cancel_join(&c);
    CHECK(c.result);
    CHECK_STR(cfx_log(), "Acquire Release Acquire Remove(A) Release CompleteCanceled(A)");
    CHECK_EQ(a.completions, 1);
    CHECK_EQ(a.status, STATUS_CANCELLED);
    CHECK_PTR(a.ctx.Irp, NULL);
    CFX_TEARDOWN(&a);
}

/* T82 */
TEST(t82_cancel_of_a_queued_irp)
{
    cfx_setup(false);
    cfx_irp a, b;
    cfx_send_new(&a, 'A', NULL, false);
    cfx_send_new(&b, 'B', NULL, false);
    cfx_log_clear();
    uint64_t locks = io_cancel_lock_acquisitions();
    CHECK(IoCancelIrp(b.irp));
    CHECK_EQ(io_cancel_lock_acquisitions() - locks, 1); /* IoCancelIrp's own */
    CHECK_STR(cfx_log(), "Acquire Remove(B) Release CompleteCanceled(B)");
    CHECK_EQ(cfx.cancel_lock_in_callback, 0);
    CHECK_EQ(cfx.completes_with_lock, 0);
    CHECK_EQ(b.completions, 1);
    CHECK_EQ(b.status, STATUS_CANCELLED);
    CHECK(b.irp->Cancel);
    char l[8];
    CHECK_STR(cfx_list(l, sizeof l), "A");
    cfx_drain();
    CFX_TEARDOWN(&a, &b);
}

/* T83 */
static void poison(void) { cfx.csq.ReservePointer = (PVOID)0x5A5A; }

TEST(t83_every_csq_routine_clears_reserve_pointer)
{
    cfx_setup(false);
    cfx_irp a, b;
    cfx_new(&a, 'A', NULL);
    cfx_new(&b, 'B', NULL);
    a.use_ctx = true;
    poison();
    cfx_send(&a); /* IoCsqInsertIrp */
    CHECK_PTR(cfx.csq.ReservePointer, NULL);
    cfx_send(&b);
    poison();
    CHECK(IoCancelIrp(a.irp)); /* the library's cancel routine */
    CHECK_PTR(cfx.csq.ReservePointer, NULL);
    poison();
    CHECK_PTR(IoCsqRemoveIrp(&cfx.csq, &a.ctx), NULL);
    CHECK_PTR(cfx.csq.ReservePointer, NULL);
    poison();
    PIRP got = IoCsqRemoveNextIrp(&cfx.csq, NULL);
    CHECK_PTR(cfx.csq.ReservePointer, NULL);
    CHECK_PTR(got, b.irp);
    cfx_complete(got, STATUS_SUCCESS);
    CFX_TEARDOWN(&a, &b);

    cfx_setup(true);
    cfx.insert_ex_status = STATUS_SUCCESS;
    cfx_irp c;
    cfx_new(&c, 'C', NULL);
    poison();
    cfx_send(&c); /* IoCsqInsertIrpEx */
    CHECK_PTR(cfx.csq.ReservePointer, NULL);
    poison();
    cfx.insert_ex_status = STATUS_UNSUCCESSFUL; /* a refused insert too */
    cfx_irp d;
    cfx_new(&d, 'D', NULL);
    cfx_send(&d);
    CHECK_PTR(cfx.csq.ReservePointer, NULL);
    cfx_drain();
    CFX_TEARDOWN(&c, &d);
}

/* T84 */
TEST(t84_initialize_sets_the_type)
{
    IO_CSQ q;
    memset(&q, 0xFF, sizeof q);
    CHECK_EQ(IoCsqInitialize(&q, NULL, NULL, NULL, NULL, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(q.Type, IO_TYPE_CSQ);
    CHECK_EQ(q.Type, 2);
    CHECK_PTR(q.ReservePointer, NULL);
    memset(&q, 0xFF, sizeof q);
    CHECK_EQ(IoCsqInitializeEx(&q, NULL, NULL, NULL, NULL, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(q.Type, IO_TYPE_CSQ_EX);
    CHECK_EQ(q.Type, 3);
    CHECK_EQ(offsetof(IO_CSQ, Type), 0);
    CHECK_EQ(offsetof(IO_CSQ_IRP_CONTEXT, Type), 0);
}

/* T85: IoCancelIrp runs after RemoveNext's exchange (from the Remove callback, lock held). */
TEST(t85_remove_next_wins_the_exchange_against_a_late_cancel)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, false);
    cfx.remove_hook = cfx_cancel_from_hook;
    PIRP got = IoCsqRemoveNextIrp(&cfx.csq, NULL);
    CHECK_PTR(got, a.irp);
    CHECK(!cfx.hook_cancel_result);
    CHECK(got->Cancel);
    CHECK_PTR(routine_of(got), NULL);
    CHECK_EQ(a.completions, 0);
    cfx_complete(got, STATUS_CANCELLED);
    CHECK_EQ(a.completions, 1);
    CFX_TEARDOWN(&a);
}

/* T86 */
TEST(t86_unknown_owner_type_leaves_the_irp_alone)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, false);
    struct {
        ULONG Type;
        PVOID pad[2];
    } bogus = {99, {NULL, NULL}};
    a.irp->Tail.Overlay.DriverContext[3] = &bogus;
    cfx_log_clear();
    CHECK(IoCancelIrp(a.irp));
    CHECK_STR(cfx_log(), ""); /* no callback */
    CHECK_EQ(a.completions, 0);
    CHECK_EQ(cfx.listed, 1);
    CHECK_EQ(io_cancel_lock_held(), false); /* released first thing */
    CHECK_EQ(irpk_report_count_name("CsqContextOverwritten"), 1);
    irpk_reports_clear();
    /* The test, playing the driver, finishes it. */
    KIRQL irql;
    KeAcquireSpinLock(&cfx.lock, &irql);
    RemoveEntryList(&a.irp->Tail.Overlay.ListEntry);
    a.irp->Tail.Overlay.DriverContext[2] = NULL;
    cfx.listed--;
    KeReleaseSpinLock(&cfx.lock, irql);
    cfx_complete(a.irp, STATUS_CANCELLED);
    CHECK_EQ(a.completions, 1);
    CFX_TEARDOWN(&a);
}

/* ---- the hot path never takes the global cancel lock */

TEST(insert_remove_next_and_complete_take_no_cancel_lock)
{
    cfx_setup(true);
    cfx_irp r[16];
    uint64_t locks = io_cancel_lock_acquisitions();
    for (int i = 0; i < 16; i++) cfx_send_new(&r[i], (char)('a' + i), NULL, i & 1);
    for (int i = 0; i < 16; i += 2) {
        PIRP got = IoCsqRemoveNextIrp(&cfx.csq, NULL);
        CHECK_PTR(got, r[i].irp);
        cfx_complete(got, STATUS_SUCCESS);
        got = IoCsqRemoveIrp(&cfx.csq, &r[i + 1].ctx);
        CHECK_PTR(got, r[i + 1].irp);
        cfx_complete(got, STATUS_SUCCESS);
    }
    CHECK_EQ(io_cancel_lock_acquisitions() - locks, 0);
    for (int i = 0; i < 16; i++) {
        CHECK_EQ(r[i].completions, 1);
        cfx_free(&r[i]);
    }
    cfx_teardown();
}

/* ---- verifier checks (VERIFIER.md §1 "StartIo and queues") */

TEST(verifier_reports_complete_canceled_that_does_not_complete)
{
    cfx_setup(false);
    cfx.complete_from_callback = false;
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, false);
    CHECK(IoCancelIrp(a.irp));
    CHECK_EQ(cfx.canceled_calls, 1);
    CHECK_EQ(a.completions, 0);
    CHECK_EQ(irpk_report_count_name("CsqCanceledIrpNotCompleted"), 1);
    irpk_reports_clear();
    cfx_complete(a.irp, STATUS_CANCELLED);
    CFX_TEARDOWN(&a);
}

TEST(verifier_reports_driver_context_3_overwritten_while_queued)
{
    cfx_setup(false);
    cfx_irp a;
    cfx_send_new(&a, 'A', NULL, true);
    a.irp->Tail.Overlay.DriverContext[3] = (PVOID)&cfx.csq; /* not its context */
    PIRP got = IoCsqRemoveNextIrp(&cfx.csq, NULL);
    CHECK_PTR(got, a.irp); /* still removed */
    CHECK_EQ(irpk_report_count_name("CsqContextOverwritten"), 0); /* the queue itself is valid */
    a.irp->Tail.Overlay.DriverContext[3] = NULL;
    cfx_complete(got, STATUS_SUCCESS);
    cfx_irp b;
    cfx_send_new(&b, 'B', NULL, true);
    b.irp->Tail.Overlay.DriverContext[3] = &a.ctx; /* another IRP's context */
    got = IoCsqRemoveIrp(&cfx.csq, &b.ctx);
    CHECK_PTR(got, b.irp);
    CHECK_EQ(irpk_report_count_name("CsqContextOverwritten"), 1);
    irpk_reports_clear();
    cfx_complete(got, STATUS_SUCCESS);
    CFX_TEARDOWN(&a, &b);
}

TEST(verifier_reports_insert_with_a_spin_lock_held)
{
    cfx_setup(false);
    KSPIN_LOCK mine;
    KeInitializeSpinLock(&mine);
    cfx_irp a;
    cfx_new(&a, 'A', NULL);
    KIRQL irql;
    KeAcquireSpinLock(&mine, &irql);
    cfx_send(&a);
    KeReleaseSpinLock(&mine, irql);
    CHECK_EQ(irpk_report_count_name("CsqInsertWithLockHeld"), 1);
    irpk_reports_clear();
    cfx_drain();
    CHECK_EQ(a.completions, 1);
    CFX_TEARDOWN(&a);
}
