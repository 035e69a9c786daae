#include "csq_fixture.h"

#include <stdarg.h>

cfx_state cfx;

static char label_of(PIRP irp)
{
    if (!irp) return '-';
    cfx_irp *r = irp->Tail.Overlay.DriverContext[1];
    return r ? r->label : '?';
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (cfx.quiet_log) return;
    plat_lock_acquire(&cfx.log_lock);
    size_t len = strlen(cfx.log);
    if (len && len + 1 < CFX_LOG) cfx.log[len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfx.log + len, CFX_LOG - len, fmt, ap);
    va_end(ap);
    plat_lock_release(&cfx.log_lock);
}

static bool lock_is_mine(void) { return plat_load_ptr(&cfx.lock_owner) == plat_self(); }

/* Every callback: the cancel lock must not be held (NT_SEMANTICS.md §2). */
static void check_callback(void)
{
    if (io_cancel_lock_held_by_me()) plat_store32(&cfx.cancel_lock_in_callback, 1);
}

/* ---- the six callbacks */

static VOID cb_insert(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    check_callback();
    note("Insert");
    InsertTailList(&cfx.list, &irp->Tail.Overlay.ListEntry);
    irp->Tail.Overlay.DriverContext[2] = (PVOID)1;
    cfx.listed++;
    if (cfx.insert_hook) cfx.insert_hook(irp);
}

static NTSTATUS cb_insert_ex(PIO_CSQ csq, PIRP irp, PVOID insert_context)
{
    UNREFERENCED_PARAMETER(csq);
    check_callback();
    note("InsertEx");
    cfx.seen_insert_context = insert_context;
    /* Link exactly when the library will treat the status as "queued" (compat switch 5). */
    NTSTATUS st = cfx.insert_ex_status;
    if (irpk_compat_get(IRPK_COMPAT_CSQ_EX_NT_SUCCESS) ? NT_SUCCESS(st) : st == STATUS_SUCCESS) {
        InsertTailList(&cfx.list, &irp->Tail.Overlay.ListEntry);
        irp->Tail.Overlay.DriverContext[2] = (PVOID)1;
        cfx.listed++;
        if (cfx.insert_hook) cfx.insert_hook(irp);
    }
    return cfx.insert_ex_status;
}

static VOID cb_remove(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    check_callback();
    note("Remove(%c)", label_of(irp));
    RemoveEntryList(&irp->Tail.Overlay.ListEntry);
    irp->Tail.Overlay.DriverContext[2] = NULL;
    cfx.listed--;
    if (cfx.remove_hook) cfx.remove_hook(irp);
}

static PIRP cb_peek(PIO_CSQ csq, PIRP irp, PVOID peek_context)
{
    UNREFERENCED_PARAMETER(csq);
    check_callback();
    note("Peek(%c,%c)", label_of(irp), peek_context ? (char)(uintptr_t)peek_context : '-');
    PLIST_ENTRY e = irp ? irp->Tail.Overlay.ListEntry.Flink : cfx.list.Flink;
    PIRP found = NULL;
    for (; e != &cfx.list && !found; e = e->Flink) {
        PIRP c = CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry);
        if (!peek_context || c->Tail.Overlay.DriverContext[0] == peek_context) found = c;
    }
    if (cfx.peek_hook) cfx.peek_hook(found);
    return found;
}

static VOID cb_acquire(PIO_CSQ csq, PKIRQL irql)
{
    UNREFERENCED_PARAMETER(csq);
    check_callback();
    if (plat_self() != cfx.main_thread && plat_load32(&cfx.gate_armed) &&
        plat_cas32(&cfx.gate_armed, 1, 0) == 1) {
        cfx_post_word(&cfx.arrived);
        cfx_wait_word(&cfx.open);
        cfx_post_word(&cfx.acquiring);
    }
    KeAcquireSpinLock(&cfx.lock, irql);
    plat_store_ptr(&cfx.lock_owner, plat_self());
    note("Acquire");
}

static VOID cb_release(PIO_CSQ csq, KIRQL irql)
{
    UNREFERENCED_PARAMETER(csq);
    check_callback();
    note("Release");
    plat_store_ptr(&cfx.lock_owner, NULL);
    KeReleaseSpinLock(&cfx.lock, irql);
}

static VOID cb_complete_canceled(PIO_CSQ csq, PIRP irp)
{
    UNREFERENCED_PARAMETER(csq);
    check_callback();
    if (lock_is_mine()) plat_store32(&cfx.completes_with_lock, 1);
    note("CompleteCanceled(%c)", label_of(irp));
    plat_fetch_add32(&cfx.canceled_calls, 1);
    if (!cfx.complete_from_callback) return;
    irp->IoStatus.Status = STATUS_CANCELLED;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

/* ---- the driver */

static NTSTATUS cfx_read(PDEVICE_OBJECT dev, PIRP irp)
{
    UNREFERENCED_PARAMETER(dev);
    cfx_irp *r = irp->Tail.Overlay.DriverContext[1];
    PIO_CSQ_IRP_CONTEXT ctx = r->use_ctx ? &r->ctx : NULL;
    NTSTATUS st;
    if (cfx.use_ex) {
        st = IoCsqInsertIrpEx(&cfx.csq, irp, ctx, cfx.insert_context);
    } else {
        IoCsqInsertIrp(&cfx.csq, irp, ctx);
        st = STATUS_SUCCESS;
    }
    r->insert_status = st;
    /* Refused (compat switch 5 decides what counts as success): the IRP is still ours and
     * untouched by the library; record what it looks like, then complete it. */
    bool accepted = !cfx.use_ex || (irpk_compat_get(IRPK_COMPAT_CSQ_EX_NT_SUCCESS) ? NT_SUCCESS(st)
                                                                               : st == STATUS_SUCCESS);
    if (!accepted) {
        r->refused_pending = (IoGetCurrentIrpStackLocation(irp)->Control & SL_PENDING_RETURNED) != 0;
        r->refused_routine = (PDRIVER_CANCEL)plat_load_ptr((void *const volatile *)&irp->CancelRoutine);
        NTSTATUS done = NT_SUCCESS(st) ? STATUS_UNSUCCESSFUL : st;
        irp->IoStatus.Status = done;
        IoCompleteRequest(irp, IO_NO_INCREMENT);
        return done;
    }
    return STATUS_PENDING;
}

static NTSTATUS cfx_entry(PDRIVER_OBJECT drv, PUNICODE_STRING reg)
{
    UNREFERENCED_PARAMETER(reg);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Device\\CsqFx");
    drv->MajorFunction[IRP_MJ_READ] = cfx_read;
    NTSTATUS st = IoCreateDevice(drv, 0, &name, FILE_DEVICE_UNKNOWN, 0, FALSE, &cfx.dev);
    if (NT_SUCCESS(st)) cfx.dev->Flags &= ~DO_DEVICE_INITIALIZING;
    return st;
}

void cfx_setup(bool use_ex)
{
    memset(&cfx, 0, sizeof cfx);
    irpk_compat_reset();
    irpk_reports_set_quiet(1);
    irpk_reports_clear();
    cfx.use_ex = use_ex;
    cfx.main_thread = plat_self();
    cfx.complete_from_callback = true;
    cfx.hook_cancel_result = TRUE;
    KeInitializeSpinLock(&cfx.lock);
    InitializeListHead(&cfx.list);
    if (use_ex)
        IoCsqInitializeEx(&cfx.csq, cb_insert_ex, cb_remove, cb_peek, cb_acquire, cb_release,
                          cb_complete_canceled);
    else
        IoCsqInitialize(&cfx.csq, cb_insert, cb_remove, cb_peek, cb_acquire, cb_release,
                        cb_complete_canceled);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\csqfx");
    NTSTATUS st = IoCreateDriver(&name, cfx_entry);
    if (!NT_SUCCESS(st)) irpk_test_fail(__FILE__, __LINE__, "IoCreateDriver failed 0x%x", (unsigned)st);
}

void cfx_teardown(void)
{
    irpk_compat_reset();
    PDRIVER_OBJECT drv = io_lookup_driver(L"csqfx");
    if (!drv) return;
    IoDeleteDevice(cfx.dev);
    CHECK_EQ(io_unload_driver(drv), 0);
    CHECK_EQ(irpk_report_count(), 0); /* tests that provoke reports clear them */
    if (irpk_report_count()) fprintf(stderr, "  first report: %s\n", irpk_report_text(0));
    irpk_reports_clear();
    CHECK_EQ(io_irps_live(), 0);
    CHECK_EQ(cfx.cancel_lock_in_callback, 0);
}

void cfx_teardown_freeing(cfx_irp **rs, size_t n)
{
    for (size_t i = 0; i < n; i++) cfx_free(rs[i]);
    cfx_teardown();
}

static NTSTATUS cfx_done(PDEVICE_OBJECT dev, PIRP irp, PVOID context)
{
    UNREFERENCED_PARAMETER(dev);
    cfx_irp *r = context;
    r->status = irp->IoStatus.Status;
    if (irp->Tail.Overlay.DriverContext[2]) plat_store32(&r->listed_at_completion, 1);
    if (lock_is_mine()) plat_store32(&r->csq_lock_at_completion, 1);
    plat_fetch_add32(&r->completions, 1);
    return STATUS_MORE_PROCESSING_REQUIRED; /* the test frees it */
}

void cfx_new(cfx_irp *r, char label, PVOID key)
{
    memset(r, 0, sizeof *r);
    r->label = label;
    r->irp = IoAllocateIrp(1, FALSE);
    IoGetNextIrpStackLocation(r->irp)->MajorFunction = IRP_MJ_READ;
    IoSetCompletionRoutine(r->irp, cfx_done, r, TRUE, TRUE, TRUE);
    r->irp->Tail.Overlay.DriverContext[0] = key;
    r->irp->Tail.Overlay.DriverContext[1] = r;
}

NTSTATUS cfx_send(cfx_irp *r) { return IoCallDriver(cfx.dev, r->irp); }

NTSTATUS cfx_send_new(cfx_irp *r, char label, PVOID key, bool use_ctx)
{
    cfx_new(r, label, key);
    r->use_ctx = use_ctx;
    return cfx_send(r);
}

void cfx_free(cfx_irp *r)
{
    if (r->irp) IoFreeIrp(r->irp);
    r->irp = NULL;
}

void cfx_complete(PIRP irp, NTSTATUS status)
{
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = 0;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
}

void cfx_drain(void)
{
    PIRP irp;
    while ((irp = IoCsqRemoveNextIrp(&cfx.csq, NULL))) cfx_complete(irp, STATUS_SUCCESS);
}

const char *cfx_log(void) { return cfx.log; }
void cfx_log_clear(void) { cfx.log[0] = 0; }

const char *cfx_list(char *out, size_t n)
{
    size_t i = 0;
    for (PLIST_ENTRY e = cfx.list.Flink; e != &cfx.list && i + 1 < n; e = e->Flink)
        out[i++] = label_of(CONTAINING_RECORD(e, IRP, Tail.Overlay.ListEntry));
    out[i] = 0;
    return out;
}

bool cfx_pending(PIRP irp)
{
    /* The driver's location is the only one (1-location IRPs). */
    PIO_STACK_LOCATION sl = (PIO_STACK_LOCATION)(irp + 1);
    return (sl->Control & SL_PENDING_RETURNED) != 0;
}

void cfx_wait_word(volatile uint32_t *w)
{
    while (!plat_load32((volatile int32_t *)w)) plat_wait(w, 0, PLAT_FOREVER);
}

void cfx_post_word(volatile uint32_t *w)
{
    plat_store32((volatile int32_t *)w, 1);
    plat_wake(w, INT32_MAX);
}

static void canceller_main(void *arg)
{
    cfx_canceller *c = arg;
    c->result = IoCancelIrp(c->irp);
    io_irp_unref(c->irp);
}

void cfx_cancel_async(cfx_canceller *c, PIRP irp, bool gated)
{
    c->irp = irp;
    c->result = FALSE;
    io_irp_ref(irp); /* a canceller that does not own the IRP holds a reference */
    if (gated) plat_store32(&cfx.gate_armed, 1); /* before the thread exists: no race */
    c->thread = plat_thread_start(canceller_main, c, "canceller", 0);
}

void cfx_cancel_join(cfx_canceller *c)
{
    plat_thread_join(c->thread);
    c->thread = NULL;
}

void cfx_cancel_gated(cfx_canceller *c, PIRP irp)
{
    cfx_cancel_async(c, irp, true);
    cfx_wait_word(&cfx.arrived);
}

void cfx_cancel_from_hook(PIRP irp)
{
    if (cfx.insert_hook == cfx_cancel_from_hook) cfx.insert_hook = NULL;
    if (cfx.remove_hook == cfx_cancel_from_hook) cfx.remove_hook = NULL;
    cfx.hook_cancel_result = IoCancelIrp(irp);
}
