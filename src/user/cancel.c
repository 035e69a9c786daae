/* From user-mode actions to IoCancelIrp (NT_SEMANTICS.md §7): CancelIo (NtCancelIoFile),
 * CancelIoEx (NtCancelIoFileEx), CancelSynchronousIo (NtCancelSynchronousIoFile), thread exit
 * with its timeout and disassociation, and process rundown.
 *
 * Every IRP is cancelled the same way: found on a thread's pending list under that thread's
 * IrpListLock, referenced (io_irp_ref) while still on the list — the hand-off frees an IRP only
 * after taking it off — and cancelled after the lock is dropped, because IoCancelIrp runs the
 * driver's cancel routine, which may complete the IRP and so re-enter the hand-off, which takes
 * the same lock. The reference keeps the memory valid whatever happens meanwhile (§10). */
#include "trace/trace.h"
#include "user/user.h"
#include "verify/hooks.h"

/* ---- the threads that issued I/O (CancelIoEx and process rundown walk them) */

/* registry_lock guards io_threads and every ETHREAD.User.Link/Registered; it nests outside
 * IrpListLock (see user.h) and nothing else is taken under it. */
static plat_lockword registry_lock;
static LIST_ENTRY io_threads = {&io_threads, &io_threads};
/* Which backend's threads the list holds: set by the reset to the mode it starts. */
static plat_mode_kind registry_mode = PLAT_NATIVE;

/* Before each explorer execution and after the exploration (user_reset). An explorer
 * execution's ETHREADs lived in its arena, already released: the list is just forgotten. Native
 * threads (registered before the exploration, still alive) are unlinked and marked unregistered
 * so that their next request registers them again and their exit unlinks nothing stale. */
void user_cancel_reset(void)
{
    if (registry_mode == PLAT_NATIVE) {
        for (PLIST_ENTRY le = io_threads.Flink, next; le != &io_threads; le = next) {
            next = le->Flink;
            PETHREAD e = CONTAINING_RECORD(le, struct _ETHREAD, User.Link);
            InitializeListHead(&e->User.Link);
            e->User.Registered = FALSE;
        }
    }
    InitializeListHead(&io_threads);
    plat_lock_init(&registry_lock);
    registry_mode = plat_mode();
}

void user_register_thread(PETHREAD e)
{
    if (e->User.Registered) return; /* only this thread sets it, so a plain read is exact */
    plat_lock_acquire(&registry_lock);
    InsertTailList(&io_threads, &e->User.Link);
    e->User.Registered = TRUE;
    plat_lock_release(&registry_lock);
}

static void unregister_thread(PETHREAD e)
{
    if (!e->User.Registered) return;
    plat_lock_acquire(&registry_lock);
    RemoveEntryList(&e->User.Link);
    InitializeListHead(&e->User.Link);
    e->User.Registered = FALSE;
    plat_lock_release(&registry_lock);
}

/* ---- collecting IRPs to cancel */

typedef struct irp_set {
    PIRP *v;
    size_t n, cap;
    PIRP small[16];
} irp_set;

typedef struct match {
    PFILE_OBJECT file;       /* NULL: any file */
    PIO_STATUS_BLOCK iosb;   /* NULL: any request */
    bool sync_only;          /* only synchronous requests (CancelSynchronousIo) */
} match;

static bool matches(PIRP irp, const match *m)
{
    if (m->file && irp->Tail.Overlay.OriginalFileObject != m->file) return false;
    if (m->iosb && irp->UserIosb != m->iosb) return false;
    return !m->sync_only || (user_irp_flags(irp) & UIRP_SYNC);
}

/* An IRP whose hand-off has started is already complete: nothing to cancel, and it leaves the
 * list within microseconds. (In Windows the hand-off runs in the issuing thread itself, so that
 * thread never sees its own IRP in this state.) */
static bool completing(PIRP irp) { return (user_irp_flags(irp) & UIRP_HANDOFF) != 0; }

static void set_add(irp_set *s, PIRP irp)
{
    if (!s->v) s->v = s->small, s->cap = sizeof s->small / sizeof s->small[0];
    if (s->n == s->cap) {
        PIRP *bigger = plat_alloc(2 * s->cap * sizeof *bigger);
        if (!bigger) return; /* out of memory: that IRP is not cancelled by this call */
        memcpy(bigger, s->v, s->n * sizeof *bigger);
        if (s->v != s->small) plat_free(s->v);
        s->v = bigger;
        s->cap *= 2;
    }
    io_irp_ref(irp);
    s->v[s->n++] = irp;
}

/* The matching IRPs of e, newest first (list order), each referenced. */
static void collect(PETHREAD e, const match *m, irp_set *s)
{
    KIRQL irql = user_lock(&e->IrpListLock);
    for (PLIST_ENTRY le = e->IrpList.Flink; le != &e->IrpList; le = le->Flink) {
        PIRP irp = CONTAINING_RECORD(le, IRP, ThreadListEntry);
        if (matches(irp, m) && !completing(irp)) set_add(s, irp);
    }
    user_unlock(&e->IrpListLock, irql);
}

/* IoCancelIrp on each, in order; drops the references. */
static void cancel_set(irp_set *s, const char *who)
{
    for (size_t i = 0; i < s->n; i++) {
        BOOLEAN called = IoCancelIrp(s->v[i]);
        user_trace(TRACE_INSTANT, who, io_irp_id(s->v[i]), "IoCancelIrp -> %s",
                   called ? "TRUE (cancel routine ran)" : "FALSE (no cancel routine)");
        io_irp_unref(s->v[i]);
    }
    if (s->v != s->small) plat_free(s->v);
    *s = (irp_set){0};
}

typedef enum remaining { NONE_LEFT, ONLY_COMPLETING, PENDING_LEFT } remaining;

static remaining irps_left(PETHREAD e, PFILE_OBJECT file)
{
    match m = {file, NULL, false};
    remaining r = NONE_LEFT;
    KIRQL irql = user_lock(&e->IrpListLock);
    for (PLIST_ENTRY le = e->IrpList.Flink; le != &e->IrpList && r != PENDING_LEFT; le = le->Flink) {
        PIRP irp = CONTAINING_RECORD(le, IRP, ThreadListEntry);
        if (matches(irp, &m)) r = completing(irp) ? ONLY_COMPLETING : PENDING_LEFT;
    }
    user_unlock(&e->IrpListLock, irql);
    return r;
}

bool user_thread_has_irps(PETHREAD e, PFILE_OBJECT file) { return irps_left(e, file) != NONE_LEFT; }

/* Sleep until e has no IRP on file (NULL: any) left, polling every poll_ms while a driver still
 * holds one (Windows' 10 ms / 100 ms polls) and briefly while only hand-offs are finishing.
 * on_poll runs after each full poll with the time waited so far. */
static void wait_gone(PETHREAD e, PFILE_OBJECT file, int64_t (*poll_ms)(void),
                      void (*on_poll)(PETHREAD e, PFILE_OBJECT file, int64_t waited_ms, void *ctx), void *ctx)
{
    int64_t start = plat_now_ns();
    for (remaining r; (r = irps_left(e, file)) != NONE_LEFT;) {
        if (r == ONLY_COMPLETING) {
            plat_sleep_ns(20000);
            continue;
        }
        plat_sleep_ns(poll_ms() * 1000000);
        on_poll(e, file, (plat_now_ns() - start) / 1000000, ctx);
    }
}

/* The oldest remaining IRP of e on file, referenced (for the hang report), or NULL. */
static PIRP first_remaining(PETHREAD e, PFILE_OBJECT file)
{
    match m = {file, NULL, false};
    PIRP found = NULL;
    KIRQL irql = user_lock(&e->IrpListLock);
    for (PLIST_ENTRY le = e->IrpList.Blink; le != &e->IrpList && !found; le = le->Blink) {
        PIRP irp = CONTAINING_RECORD(le, IRP, ThreadListEntry);
        if (matches(irp, &m)) {
            io_irp_ref(irp);
            found = irp;
        }
    }
    user_unlock(&e->IrpListLock, irql);
    return found;
}

/* ---- CancelIo (§7.2) */

static void report_cancel_hang(PETHREAD e, PFILE_OBJECT file, int64_t waited_ms)
{
    PIRP irp = first_remaining(e, file);
    if (!irp) return;
    vrf_report(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, IRPK_RULE_CANCEL_IO_HANG, (uintptr_t)irp, 0, 0, irp,
               user_file_of(file)->top, "CancelIoHang",
               "a cancel routine (or the driver's own cancellation path) must complete the IRP with "
               "STATUS_CANCELLED; an IRP that is not cancelable must finish soon. CancelIo has no "
               "timeout: in Windows this thread would hang for good (T61).",
               "CancelIo has waited %lld ms for IRP#%u, which it cancelled and which the driver has "
               "not completed. CancelIo keeps waiting.",
               (long long)waited_ms, io_irp_id(irp));
    io_irp_unref(irp);
}

/* CancelIo waits without timeout; past the hang threshold it reports once and waits on. */
static void hang_check(PETHREAD e, PFILE_OBJECT file, int64_t waited_ms, void *ctx)
{
    bool *reported = ctx;
    int64_t hang_ms = user_cfg_hang_report_ms();
    if (!*reported && hang_ms > 0 && waited_ms >= hang_ms) {
        report_cancel_hang(e, file, waited_ms);
        *reported = true;
    }
}

NTSTATUS NtCancelIoFile(HANDLE FileHandle, PIO_STATUS_BLOCK IoStatusBlock)
{
    user_init_once();
    user_file *uf;
    NTSTATUS st = user_ref_file(FileHandle, 0, UserMode, &uf);
    if (!NT_SUCCESS(st)) return st;
    if (!IoStatusBlock) {
        user_file_release(uf);
        return STATUS_ACCESS_VIOLATION;
    }
    PETHREAD self = PsGetCurrentThread();
    match m = {&uf->fo, NULL, false};
    irp_set s = {0};
    user_trace(TRACE_BEGIN, "NtCancelIoFile", 0, "CancelIo: this thread's IRPs on the file, newest first");
    collect(self, &m, &s);
    cancel_set(&s, "NtCancelIoFile");
    bool reported = false;
    wait_gone(self, &uf->fo, user_cfg_cancel_poll_ms, hang_check, &reported);
    user_trace(TRACE_END, "NtCancelIoFile", 0, "returns STATUS_SUCCESS (all completed)");
    user_file_release(uf);
    IoStatusBlock->Information = 0;
    IoStatusBlock->Status = STATUS_SUCCESS;
    return STATUS_SUCCESS;
}

/* ---- CancelIoEx (§7.3) */

static void collect_all_threads(const match *m, irp_set *s)
{
    plat_lock_acquire(&registry_lock);
    for (PLIST_ENTRY le = io_threads.Flink; le != &io_threads; le = le->Flink)
        collect(CONTAINING_RECORD(le, struct _ETHREAD, User.Link), m, s);
    plat_lock_release(&registry_lock);
}

NTSTATUS NtCancelIoFileEx(HANDLE FileHandle, PIO_STATUS_BLOCK IoRequestToCancel, PIO_STATUS_BLOCK IoStatusBlock)
{
    user_init_once();
    user_file *uf;
    NTSTATUS st = user_ref_file(FileHandle, 0, UserMode, &uf);
    if (!NT_SUCCESS(st)) return st;
    if (!IoStatusBlock) {
        user_file_release(uf);
        return STATUS_ACCESS_VIOLATION;
    }
    match m = {&uf->fo, IoRequestToCancel, false};
    irp_set s = {0};
    collect_all_threads(&m, &s);
    user_trace(TRACE_BEGIN, "NtCancelIoFileEx", 0, "CancelIoEx: %zu IRP(s) of any thread%s", s.n,
               IoRequestToCancel ? " (one request)" : "");
    st = s.n ? STATUS_SUCCESS : STATUS_NOT_FOUND;
    cancel_set(&s, "NtCancelIoFileEx");
    user_trace(TRACE_END, "NtCancelIoFileEx", 0, "returns 0x%08X %s (does not wait)", (unsigned)st,
               user_status_name(st));
    user_file_release(uf);
    IoStatusBlock->Information = 0;
    IoStatusBlock->Status = st;
    return st;
}

/* ---- CancelSynchronousIo (§7.3) */

NTSTATUS NtCancelSynchronousIoFile(HANDLE ThreadHandle, PIO_STATUS_BLOCK IoRequestToCancel,
                                   PIO_STATUS_BLOCK IoStatusBlock)
{
    user_init_once();
    PETHREAD e;
    NTSTATUS st = user_ref_thread(ThreadHandle, THREAD_TERMINATE, UserMode, &e);
    if (!NT_SUCCESS(st)) return st;
    if (!IoStatusBlock) {
        ObDereferenceObject(e);
        return STATUS_ACCESS_VIOLATION;
    }
    match m = {NULL, IoRequestToCancel, true};
    irp_set s = {0};
    collect(e, &m, &s);
    st = s.n ? STATUS_SUCCESS : STATUS_NOT_FOUND;
    cancel_set(&s, "NtCancelSynchronousIoFile");
    ObDereferenceObject(e);
    IoStatusBlock->Information = 0;
    IoStatusBlock->Status = st;
    return st;
}

/* ---- thread exit (§7.4) */

/* Give up on one IRP the driver will not complete: it leaves the thread (Thread := NULL under
 * the completion lock, off the list) and its eventual completion is dropped. An IRP whose
 * hand-off already started is skipped: that completion is under way (T64). Returns false when
 * every remaining IRP is completing. */
static bool disassociate_one(PETHREAD e)
{
    PIRP victim = NULL;
    KIRQL irql = user_lock(&e->IrpListLock);
    for (PLIST_ENTRY le = e->IrpList.Flink; le != &e->IrpList && !victim; le = le->Flink) {
        PIRP irp = CONTAINING_RECORD(le, IRP, ThreadListEntry);
        KIRQL inner = user_lock(&user_completion_lock); /* IrpListLock -> completion lock (user.h) */
        if (!(user_irp_flags(irp) & UIRP_HANDOFF)) {
            irp->Tail.Overlay.Thread = NULL;
            victim = irp;
        }
        user_unlock(&user_completion_lock, inner);
    }
    if (victim) {
        RemoveEntryList(&victim->ThreadListEntry);
        InitializeListHead(&victim->ThreadListEntry);
        io_irp_ref(victim); /* for the report: its completion may now free it any time */
    }
    user_unlock(&e->IrpListLock, irql);
    if (!victim) return false;
    plat_fetch_add32(&user_disassociated, 1);
    user_file *uf = user_file_of(victim->Tail.Overlay.OriginalFileObject);
    vrf_report(IRPK_IO_DRIVER_CANCEL_TIMEOUT, (uintptr_t)uf->top, (uintptr_t)victim, 0, 0, victim, uf->top,
               "IO_DRIVER_CANCEL_TIMEOUT",
               "the driver must complete every IRP it was asked to cancel; give each queued IRP a "
               "cancel routine, and finish the one in progress promptly when Irp->Cancel is set.",
               "Thread exit: the driver did not complete cancelled IRP#%u within %lld ms. The IRP is "
               "disassociated from the exiting thread (error-log entry IO_DRIVER_CANCEL_TIMEOUT); its "
               "completion, if it ever comes, is dropped.",
               io_irp_id(victim), (long long)user_cfg_exit_timeout_ms());
    io_irp_unref(victim);
    return true;
}

/* Past the exit timeout, one IRP per poll is given up on. */
static void exit_poll(PETHREAD e, PFILE_OBJECT file, int64_t waited_ms, void *ctx)
{
    (void)file;
    (void)ctx;
    if (waited_ms >= user_cfg_exit_timeout_ms()) disassociate_one(e);
}

void user_drain_thread(PETHREAD e)
{
    match any = {NULL, NULL, false};
    irp_set s = {0};
    collect(e, &any, &s);
    if (s.n) user_trace(TRACE_INSTANT, "thread exit", 0, "cancels %zu pending IRP(s), newest first", s.n);
    cancel_set(&s, "thread exit");
    /* Also when nothing needed cancelling: a completion may still be handing an IRP back, and
     * it needs this ETHREAD until the IRP is off its list. */
    wait_gone(e, NULL, user_cfg_exit_poll_ms, exit_poll, NULL);
}

void user_thread_exit(plat_thread *t)
{
    PETHREAD e = t->ext[PLAT_EXT_PS];
    if (!e) return;
    user_drain_thread(e);
    user_apc_rundown(e);
    unregister_thread(e);
}

/* ---- process rundown (T67) */

static PETHREAD next_thread_with_irps(void)
{
    PETHREAD found = NULL;
    plat_lock_acquire(&registry_lock);
    for (PLIST_ENTRY le = io_threads.Flink; le != &io_threads && !found; le = le->Flink) {
        PETHREAD e = CONTAINING_RECORD(le, struct _ETHREAD, User.Link);
        if (user_thread_has_irps(e, NULL)) { /* registry -> IrpListLock (user.h) */
            ObReferenceObject(e);
            found = e;
        }
    }
    plat_lock_release(&registry_lock);
    return found;
}

void irpk_user_process_rundown(void)
{
    user_init_once();
    user_trace(TRACE_BEGIN, "process exit", 0, "cancel and drain every thread's I/O, then close handles");
    /* One thread at a time, as the exiting threads of a dying process each run down their
     * own I/O; a thread that issues new I/O meanwhile is the caller's problem (see user.h). */
    for (PETHREAD e; (e = next_thread_with_irps()) != NULL;) {
        user_drain_thread(e);
        ObDereferenceObject(e);
    }
    LONG open = ob_open_handles();
    for (uintptr_t h = 4; open > 0 && h < ((uintptr_t)1 << 26); h += 4)
        if (NT_SUCCESS(ob_close_handle((HANDLE)h))) open--;
    user_trace(TRACE_END, "process exit", 0, "done");
}
