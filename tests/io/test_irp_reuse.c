/* IoReuseIrp must not lose a reference another thread takes meanwhile (review finding): it used
 * to copy the IRP's private block, zero the whole IRP and write the copy back, so an
 * io_irp_ref / io_irp_unref (IoCancelIrp's try_ref does the same) landing in between was
 * undone — a leaked or early-released IRP. Now reuse zeroes everything but the private block.
 * A reader thread takes and drops references while the owner reuses the IRP in a loop; the
 * count must come back exact (ThreadSanitizer also flags the old whole-block copy at once). */
#include <ntddk.h>

#include "io/io.h"
#include "test.h"

static PIRP shared_irp;
static volatile int32_t stop_refs;

static void ref_taker(void *arg)
{
    (void)arg;
    while (!plat_load32(&stop_refs)) {
        io_irp_ref(shared_irp);
        io_irp_unref(shared_irp);
    }
}

TEST(reuse_keeps_references_taken_concurrently)
{
    shared_irp = IoAllocateIrp(2, FALSE);
    REQUIRE(shared_irp != NULL);
    io_irp_ref(shared_irp); /* a second holder, like a canceller's reference */
    int32_t before = plat_load32(&io_priv(shared_irp)->refs);
    stop_refs = 0;
    plat_thread *t = plat_thread_start(ref_taker, NULL, "ref-taker", 0);
    long n = irpk_test_scale(200000);
    for (long i = 0; i < n; i++) IoReuseIrp(shared_irp, STATUS_SUCCESS);
    plat_store32(&stop_refs, 1);
    plat_thread_join(t);
    CHECK_EQ(plat_load32(&io_priv(shared_irp)->refs), before);
    CHECK_EQ(shared_irp->IoStatus.Status, STATUS_SUCCESS);
    CHECK_EQ(shared_irp->CurrentLocation, 3); /* reformatted: stack of 2, none used */
    io_irp_unref(shared_irp);
    IoFreeIrp(shared_irp);
}
