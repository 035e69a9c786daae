/* NT_SEMANTICS.md §5: IoStartPacket / IoStartNextPacket(ByKey) / IoSetStartIoAttributes, cases
 * T20–T43. The fixture's StartIo records its context at entry. */
#include "fixture.h"
#include "irpkit/runtime.h"

static void free_all(PIRP *irps, int n)
{
    for (int i = 0; i < n; i++) IoFreeIrp(irps[i]);
}

/* Complete every started IRP until the device is idle (test cleanup). */
static void drain(void)
{
    while (fx.dev->CurrentIrp) fx_finish_current(FALSE);
}

TEST(t20_idle_startpacket_calls_startio_before_returning)
{
    fx_setup();
    PIRP i1 = fx_irp();
    CHECK_EQ(fx_send(i1, NULL, NULL), STATUS_PENDING);
    REQUIRE(fx.n_startio == 1);
    CHECK_PTR(fx.startio[0].irp, i1);
    CHECK_PTR(fx.startio[0].thread, plat_self()); /* the dispatch routine's own thread */
    CHECK_PTR(fx.dev->CurrentIrp, i1);
    CHECK(fx.dev->DeviceQueue.Busy);
    drain();
    IoFreeIrp(i1);
    fx_teardown();
}

TEST(t21_t22_busy_startpacket_queues_then_startnext_starts_it)
{
    fx_setup();
    PIRP i[2] = {fx_irp(), fx_irp()};
    fx_send(i[0], NULL, NULL);
    fx_send(i[1], NULL, NULL);
    CHECK_EQ(fx.n_startio, 1);
    PIRP q[4];
    CHECK_EQ(fx_queue(q, 4), 1);
    CHECK_PTR(q[0], i[1]);
    fx_finish_current(FALSE); /* T22 */
    CHECK_EQ(fx.n_startio, 2);
    CHECK_PTR(fx.startio[1].irp, i[1]);
    CHECK_PTR(fx.dev->CurrentIrp, i[1]);
    drain();
    free_all(i, 2);
    fx_teardown();
}

TEST(t23_startnext_on_empty_queue_goes_idle)
{
    fx_setup();
    PIRP i[2] = {fx_irp(), fx_irp()};
    fx_send(i[0], NULL, NULL);
    fx_finish_current(FALSE);
    CHECK_EQ(fx.n_startio, 1);
    CHECK_PTR(fx.dev->CurrentIrp, NULL);
    CHECK(!fx.dev->DeviceQueue.Busy);
    fx_send(i[1], NULL, NULL); /* starts at once */
    CHECK_EQ(fx.n_startio, 2);
    drain();
    free_all(i, 2);
    fx_teardown();
}

TEST(t24_null_key_is_tail_insert_pointer_to_zero_is_keyed)
{
    fx_setup();
    PIRP busy = fx_irp(), ia = fx_irp(), ib = fx_irp(), ic = fx_irp();
    ULONG k7 = 7, k0 = 0;
    ib->Tail.Overlay.DeviceQueueEntry.SortKey = 55; /* stale: the plain insert must keep it */
    ic->Tail.Overlay.DeviceQueueEntry.SortKey = 99; /* the keyed insert must overwrite it */
    fx_send(busy, NULL, NULL);
    fx_send(ia, &k7, NULL);
    fx_send(ib, NULL, NULL);
    fx_send(ic, &k0, NULL);
    PIRP q[4];
    REQUIRE(fx_queue(q, 4) == 3);
    CHECK_PTR(q[0], ic); /* keyed 0 goes before the first key > 0 (last key 55 > 0) */
    CHECK_PTR(q[1], ia);
    CHECK_PTR(q[2], ib);
    CHECK_EQ(ic->Tail.Overlay.DeviceQueueEntry.SortKey, 0);
    CHECK_EQ(ia->Tail.Overlay.DeviceQueueEntry.SortKey, 7);
    CHECK_EQ(ib->Tail.Overlay.DeviceQueueEntry.SortKey, 55);
    drain();
    PIRP all[] = {busy, ia, ib, ic};
    free_all(all, 4);
    fx_teardown();
}

TEST(t25_startnext_bykey_equal_to_last_wraps_to_head)
{
    fx_setup();
    PIRP busy = fx_irp(), k[3] = {fx_irp(), fx_irp(), fx_irp()};
    ULONG keys[3] = {1, 5, 9};
    fx_send(busy, NULL, NULL);
    for (int i = 0; i < 3; i++) fx_send(k[i], &keys[i], NULL);
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    IoStartNextPacketByKey(fx.dev, FALSE, 9);
    KeLowerIrql(old);
    REQUIRE(fx.n_startio == 2);
    CHECK_PTR(fx.startio[1].irp, k[0]); /* [DOC: 9] */
    IoCompleteRequest(busy, IO_NO_INCREMENT);
    drain();
    free_all(k, 3);
    IoFreeIrp(busy);
    fx_teardown();
}

TEST(t26_cancelable_startpacket_startio_sees_routine_lock_free)
{
    fx_setup();
    PIRP i = fx_irp();
    fx_send(i, NULL, fx_cancel);
    REQUIRE(fx.n_startio == 1);
    CHECK(fx.startio[0].cancel_routine == fx_cancel);
    CHECK(!fx.startio[0].cancel_lock_held);
    CHECK_PTR(fx.startio[0].current, i);
    IoSetCancelRoutine(i, NULL);
    drain();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t27_idle_precancelled_startpacket_calls_startio_not_cancel)
{
    fx_setup();
    PIRP i = fx_irp();
    i->Cancel = TRUE;
    fx_send(i, NULL, fx_cancel);
    CHECK_EQ(fx.n_startio, 1);
    CHECK_EQ(fx.n_cancel, 0);
    IoSetCancelRoutine(i, NULL);
    drain();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t28_t48_busy_precancelled_startpacket_calls_cancel_inside)
{
    fx_setup();
    PIRP busy = fx_irp(), i = fx_irp();
    fx_send(busy, NULL, NULL);
    i->Cancel = TRUE;
    fx_send(i, NULL, fx_cancel);
    REQUIRE(fx.n_cancel == 1);
    CHECK_PTR(fx.cancel[0].irp, i);
    CHECK(fx.cancel[0].cancel_lock_held);
    CHECK(fx.cancel[0].cancel_routine == NULL);
    CHECK(fx.cancel[0].removed);          /* KeRemoveEntryDeviceQueue → TRUE */
    CHECK_PTR(fx.cancel[0].dev, fx.dev);  /* T48: IoStartPacket passes its Dev argument */
    CHECK_EQ(fx.completions, 1);
    CHECK_EQ(fx.last_status, STATUS_CANCELLED);
    CHECK(!io_cancel_lock_held());
    drain();
    IoFreeIrp(i);
    IoFreeIrp(busy);
    fx_teardown();
}

TEST(t29_t30_t48_queued_cancelable_then_iocancelirp)
{
    fx_setup();
    PIRP busy = fx_irp(), i = fx_irp();
    fx_send(busy, NULL, NULL);
    fx_send(i, NULL, fx_cancel);
    CHECK(i->CancelRoutine == fx_cancel); /* T29 */
    CHECK(!io_cancel_lock_held());
    CHECK_EQ(fx.n_cancel, 0);
    CHECK_EQ(IoCancelIrp(i), TRUE); /* T30 */
    REQUIRE(fx.n_cancel == 1);
    CHECK(fx.cancel[0].cancel_lock_held);
    CHECK(fx.cancel[0].removed);
    CHECK_PTR(fx.cancel[0].dev, fx.dev); /* T48: the current stack location's DeviceObject */
    CHECK(i->Cancel);
    CHECK(i->CancelRoutine == NULL);
    CHECK_EQ(fx.last_status, STATUS_CANCELLED);
    drain();
    IoFreeIrp(i);
    IoFreeIrp(busy);
    fx_teardown();
}

TEST(t31_cancel_of_current_irp_finds_it_current_not_queued)
{
    fx_setup();
    PIRP i = fx_irp();
    fx_send(i, NULL, fx_cancel);
    CHECK_EQ(IoCancelIrp(i), TRUE);
    REQUIRE(fx.n_cancel == 1);
    CHECK(fx.cancel[0].was_current);
    CHECK(!KeRemoveEntryDeviceQueue(&fx.dev->DeviceQueue, &i->Tail.Overlay.DeviceQueueEntry));
    CHECK_PTR(fx.dev->CurrentIrp, i);
    CHECK_EQ(fx.completions, 0); /* the fixture's routine leaves the current IRP to StartIo/DPC */
    drain();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t32_noncancelable_startpacket_clears_routine_before_startio)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, FALSE, TRUE);
    PIRP i = fx_irp();
    fx_send(i, NULL, fx_cancel);
    REQUIRE(fx.n_startio == 1);
    CHECK(fx.startio[0].cancel_routine == NULL);
    CHECK_EQ(IoCancelIrp(i), FALSE);
    CHECK(i->Cancel);
    CHECK_EQ(fx.n_cancel, 0);
    drain();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t33_noncancelable_noncancelable_startnext_keeps_routine)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, FALSE, TRUE);
    PIRP busy = fx_irp(), i = fx_irp();
    fx_send(busy, NULL, NULL);
    fx_send(i, NULL, fx_cancel);
    fx_finish_current(FALSE);
    REQUIRE(fx.n_startio == 2);
    CHECK(fx.startio[1].cancel_routine == fx_cancel);
    IoSetCancelRoutine(i, NULL);
    drain();
    IoFreeIrp(i);
    IoFreeIrp(busy);
    fx_teardown();
}

TEST(t34_noncancelable_without_cancel_function_keeps_preset_routine)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, FALSE, TRUE);
    PIRP i = fx_irp();
    IoSetCancelRoutine(i, fx_cancel2);
    fx_send(i, NULL, NULL);
    REQUIRE(fx.n_startio == 1);
    CHECK(fx.startio[0].cancel_routine == fx_cancel2);
    IoSetCancelRoutine(i, NULL);
    drain();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(t35_set_startio_attributes_false_never_clears)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, TRUE, TRUE);
    IoSetStartIoAttributes(fx.dev, FALSE, FALSE);
    ULONG f = fx.dev->DeviceObjectExtension->StartIoFlags;
    CHECK(f & DOE_STARTIO_DEFERRED);
    CHECK(f & DOE_STARTIO_NO_CANCEL);
    fx_teardown();
}

static int max_depth(void)
{
    int m = 0;
    for (int i = 0; i < fx.n_startio; i++) m = fx.startio[i].depth > m ? fx.startio[i].depth : m;
    return m;
}

/* I0 current (StartIo holds it), then n IRPs queued behind it (optionally keyed). */
static PIRP queue_behind_current(PIRP *irps, int n, const ULONG *keys, PDRIVER_CANCEL cf)
{
    PIRP i0 = fx_irp();
    fx_send(i0, NULL, NULL);
    for (int i = 0; i < n; i++) {
        irps[i] = fx_irp();
        ULONG k = keys ? keys[i] : 0;
        fx_send(irps[i], keys ? &k : NULL, cf);
    }
    fx.n_startio = fx.n_returns = 0;
    return i0;
}

TEST(t36_not_deferred_synchronous_chain_nests_to_queue_length)
{
    fx_setup();
    PIRP irps[5];
    PIRP i0 = queue_behind_current(irps, 5, NULL, NULL);
    fx.startio_action = fx_complete_and_next;
    fx_finish_current(FALSE);
    CHECK_EQ(fx.n_startio, 5);
    CHECK_EQ(max_depth(), 5);
    CHECK_EQ(io_startio_max_depth(fx.dev), 5);
    CHECK(!fx.dev->DeviceQueue.Busy);
    free_all(irps, 5);
    IoFreeIrp(i0);
    fx_teardown();
}

static PIRP chain_rest[4];

static void queue_rest_then_complete_and_next(PDEVICE_OBJECT dev, PIRP irp)
{
    if (fx.n_startio == 1)
        for (int i = 0; i < 4; i++) fx_send(chain_rest[i], NULL, NULL);
    fx_complete_and_next(dev, irp);
}

TEST(t37_deferred_chain_from_startpacket_nests_at_most_twice)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, TRUE, FALSE);
    PIRP i1 = fx_irp();
    for (int i = 0; i < 4; i++) chain_rest[i] = fx_irp();
    fx.startio_action = queue_rest_then_complete_and_next;
    fx_send(i1, NULL, NULL);
    REQUIRE(fx.n_startio == 5);
    CHECK_EQ(max_depth(), 2);
    CHECK_PTR(fx.startio[0].irp, i1);
    for (int i = 0; i < 4; i++) CHECK_PTR(fx.startio[i + 1].irp, chain_rest[i]); /* FIFO */
    CHECK_EQ(fx.startio_returns[4], 0);                                          /* I1 last */
    CHECK_EQ(fx.completions, 5);
    free_all(chain_rest, 4);
    IoFreeIrp(i1);
    fx_teardown();
}

TEST(t38_deferred_chain_from_startnext_outside_startio_never_nests)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, TRUE, FALSE);
    PIRP irps[4];
    PIRP i0 = queue_behind_current(irps, 4, NULL, NULL);
    fx.startio_action = fx_complete_and_next;
    fx_finish_current(FALSE);
    CHECK_EQ(fx.n_startio, 4);
    CHECK_EQ(max_depth(), 1);
    CHECK_EQ(fx.completions, 5);
    free_all(irps, 4);
    IoFreeIrp(i0);
    fx_teardown();
}

static void complete_and_next_twice(PDEVICE_OBJECT dev, PIRP irp)
{
    fx_complete_and_next(dev, irp);
    IoStartNextPacket(dev, FALSE);
}

TEST(t39_deferred_nested_startnext_calls_coalesce)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, TRUE, FALSE);
    PIRP irps[4];
    PIRP i0 = queue_behind_current(irps, 4, NULL, NULL);
    fx.startio_action = complete_and_next_twice;
    fx_finish_current(FALSE);
    REQUIRE(fx.n_startio == 4); /* one start per iteration, each IRP exactly once */
    for (int i = 0; i < 4; i++) CHECK_PTR(fx.startio[i].irp, irps[i]);
    CHECK_EQ(max_depth(), 1);
    CHECK_EQ(fx.completions, 5);
    free_all(irps, 4);
    IoFreeIrp(i0);
    fx_teardown();
}

static ULONG seen_flags;
static LONG seen_key;

static void plain_then_bykey7(PDEVICE_OBJECT dev, PIRP irp)
{
    if (fx.n_startio != 1) return;
    IoCompleteRequest(irp, IO_NO_INCREMENT); /* done with it: start others */
    IoStartNextPacket(dev, FALSE);
    IoStartNextPacketByKey(dev, FALSE, 7);
}

static void bykey7_then_plain(PDEVICE_OBJECT dev, PIRP irp)
{
    if (fx.n_startio != 1) return;
    IoCompleteRequest(irp, IO_NO_INCREMENT); /* done with it: start others */
    IoStartNextPacketByKey(dev, FALSE, 7);
    IoStartNextPacket(dev, FALSE);
    seen_flags = dev->DeviceObjectExtension->StartIoFlags;
    seen_key = dev->DeviceObjectExtension->StartIoKey;
}

static void run_keyed(void (*action)(PDEVICE_OBJECT, PIRP), PIRP *expect_second)
{
    static const ULONG keys[4] = {1, 3, 7, 9};
    PIRP irps[4];
    PIRP i0 = queue_behind_current(irps, 4, keys, NULL);
    fx.startio_action = action;
    fx_finish_current(FALSE);
    fx.startio_action = NULL;
    *expect_second = irps[1];
    if (action == plain_then_bykey7) *expect_second = irps[2];
    CHECK(fx.n_startio == 2 && fx.startio[1].irp == *expect_second);
    drain();
    free_all(irps, 4);
    IoFreeIrp(i0);
}

TEST(t40_deferred_bykey_wins_and_key_is_last_writer)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, TRUE, FALSE);
    PIRP second;
    run_keyed(plain_then_bykey7, &second); /* → by key 7 */
    run_keyed(bykey7_then_plain, &second); /* → by key 0: the head */
    CHECK(seen_flags & DOE_STARTIO_REQUESTED_BYKEY);
    CHECK_EQ(seen_key, 0);
    fx_teardown();
}

static void nested_false_then_true(PDEVICE_OBJECT dev, PIRP irp)
{
    if (fx.n_startio != 1) return;
    IoSetCancelRoutine(irp, NULL); /* started non-cancelable: our routine is still armed */
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    IoStartNextPacket(dev, FALSE);
    IoStartNextPacket(dev, TRUE);
}

TEST(t41_deferred_cancelable_accumulates)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, TRUE, TRUE);
    PIRP irps[2];
    PIRP i0 = queue_behind_current(irps, 2, NULL, fx_cancel);
    fx.startio_action = nested_false_then_true;
    fx_finish_current(FALSE);
    REQUIRE(fx.n_startio == 2);
    CHECK(fx.startio[0].cancel_routine == fx_cancel); /* outer call not cancelable */
    CHECK(fx.startio[1].cancel_routine == NULL);      /* dequeued under the cancel lock */
    fx.startio_action = NULL;
    drain();
    free_all(irps, 2);
    IoFreeIrp(i0);
    fx_teardown();
}

static void bykey7_noncancelable(PDEVICE_OBJECT dev, PIRP irp)
{
    if (fx.n_startio != 1) return;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    IoStartNextPacketByKey(dev, FALSE, 7);
}

static KEVENT dpc_done;

static VOID dpc_start_next(PKDPC dpc, PVOID ctx, PVOID a1, PVOID a2)
{
    UNREFERENCED_PARAMETER(dpc);
    UNREFERENCED_PARAMETER(a1);
    UNREFERENCED_PARAMETER(a2);
    PIRP current = fx.dev->CurrentIrp;
    IoStartNextPacket(fx.dev, TRUE);
    IoCompleteRequest(current, IO_NO_INCREMENT);
    KeSetEvent(ctx, IO_NO_INCREMENT, FALSE);
}

TEST(t42_deferred_outer_cancelable_from_dpc_nested_bykey_noncancelable)
{
    fx_setup();
    IoSetStartIoAttributes(fx.dev, TRUE, TRUE);
    static const ULONG keys[4] = {1, 3, 7, 9}; /* 9 last: no wrap for key 7 */
    PIRP irps[4];
    PIRP i0 = queue_behind_current(irps, 4, keys, fx_cancel);
    fx.startio_action = bykey7_noncancelable;
    KDPC dpc;
    KeInitializeEvent(&dpc_done, NotificationEvent, FALSE);
    KeInitializeDpc(&dpc, dpc_start_next, &dpc_done);
    KeInsertQueueDpc(&dpc, NULL, NULL);
    KeWaitForSingleObject(&dpc_done, Executive, KernelMode, FALSE, NULL);
    REQUIRE(fx.n_startio == 2);
    CHECK_PTR(fx.startio[0].irp, irps[0]);
    CHECK(fx.startio[0].cancel_routine == NULL);      /* outer: cancelable + NonCancelable */
    CHECK_PTR(fx.startio[1].irp, irps[2]);            /* by key 7 [RX: head] */
    CHECK(fx.startio[1].cancel_routine == fx_cancel); /* non-cancelable start [RX: cleared] */
    CHECK(fx.startio[0].thread != plat_self());       /* ran on the DPC thread */
    CHECK_PTR(fx.startio[1].thread, fx.startio[0].thread);
    CHECK_EQ(max_depth(), 1);
    fx.startio_action = NULL;
    for (int i = 1; i < 4; i++) IoSetCancelRoutine(irps[i], NULL);
    drain();
    free_all(irps, 4);
    IoFreeIrp(i0);
    fx_teardown();
}

TEST(t43_startpacket_from_passive_runs_startio_at_dispatch)
{
    fx_setup();
    REQUIRE(KeGetCurrentIrql() == PASSIVE_LEVEL);
    PIRP i = fx_irp();
    fx_send(i, NULL, fx_cancel);
    REQUIRE(fx.n_startio == 1);
    CHECK_EQ(fx.startio[0].irql, DISPATCH_LEVEL);
    CHECK(!fx.startio[0].cancel_lock_held); /* no I/O-manager lock held in StartIo */
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    IoSetCancelRoutine(i, NULL);
    drain();
    IoFreeIrp(i);
    fx_teardown();
}

TEST(switch3_deferred_covers_startpacket_never_nests)
{
    fx_setup();
    irpk_compat_set(IRPK_COMPAT_DEFERRED_COVERS_STARTPACKET, 1);
    IoSetStartIoAttributes(fx.dev, TRUE, FALSE);
    PIRP i1 = fx_irp();
    for (int i = 0; i < 4; i++) chain_rest[i] = fx_irp();
    fx.startio_action = queue_rest_then_complete_and_next;
    fx_send(i1, NULL, NULL);
    CHECK_EQ(fx.n_startio, 5);
    CHECK_EQ(max_depth(), 1);
    irpk_compat_reset();
    free_all(chain_rest, 4);
    IoFreeIrp(i1);
    fx_teardown();
}
