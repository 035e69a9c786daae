/* The user-mode stress program (see ustress.h). Only NT native services, Interlocked* and
 * irpkit/thread.h: what a Windows program would use (Nt* = the Win32 calls they stand for). */
#include "ustress.h"

#include <stdio.h>
#include <string.h>

#include "irpkit/thread.h"

typedef struct uslot {
    ustress_request req;
    LONG apcs;     /* APCs delivered for the current request (written by its own thread) */
    bool in_flight;
} uslot;

typedef struct urun urun;

typedef struct uthread {
    urun *run;
    int index;
    irpk_thread *thread;
    uslot slots[USTRESS_MAX_WINDOW];
    HANDLE idle;   /* never signalled: the thread's alertable waits */
    uint64_t rng;
    uint64_t seq;
    ustress_result res;
} uthread;

struct urun {
    const ustress_config *cfg;
    uthread threads[USTRESS_MAX_THREADS];
    PVOID volatile table[USTRESS_MAX_HANDLES]; /* open handles; the closer swaps them */
    volatile LONG issued_total;
    volatile LONG issuers_left;
    long closes;
    NTSTATUS open_failure;
};

static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static NTSTATUS open_device(const wchar_t *path, HANDLE *file)
{
    UNICODE_STRING name;
    RtlInitUnicodeString(&name, path);
    OBJECT_ATTRIBUTES oa;
    InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    IO_STATUS_BLOCK iosb;
    return NtCreateFile(file, GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE, &oa, &iosb, NULL,
                        FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_OPEN,
                        0 /* overlapped */, NULL, 0);
}

static HANDLE handle_at(urun *rn, int i)
{
    return (HANDLE)InterlockedCompareExchangePointer(&rn->table[i], NULL, NULL);
}

/* The completion APC: runs in the issuing thread during its alertable wait. */
static VOID NTAPI request_done(PVOID context, PIO_STATUS_BLOCK iosb, ULONG reserved)
{
    UNREFERENCED_PARAMETER(iosb);
    UNREFERENCED_PARAMETER(reserved);
    ((uslot *)context)->apcs++;
}

static void issue(uthread *t, uslot *s)
{
    urun *rn = t->run;
    const ustress_config *cfg = rn->cfg;
    HANDLE file = handle_at(rn, (int)(next_rand(&t->rng) % (uint64_t)cfg->handles));
    memset(&s->req, 0, sizeof s->req);
    s->req.seq = ++t->seq;
    s->req.thread = t->index;
    s->req.file = file;
    s->req.iosb.Status = (NTSTATUS)0x7EEEEEEE; /* not written yet */
    s->apcs = 0;
    NTSTATUS st = cfg->issue(file, request_done, s, &s->req, cfg->ctx);
    InterlockedIncrement(&rn->issued_total);
    if (st == STATUS_INVALID_HANDLE || st == STATUS_OBJECT_TYPE_MISMATCH) {
        t->res.refused++; /* closed under us: no IRP, no APC */
        return;
    }
    s->in_flight = true;
    t->res.issued++;
}

static int reclaim(uthread *t)
{
    const ustress_config *cfg = t->run->cfg;
    int freed = 0;
    for (int i = 0; i < cfg->window; i++) {
        uslot *s = &t->slots[i];
        if (!s->in_flight || s->apcs == 0) continue;
        s->in_flight = false;
        freed++;
        t->res.completed++;
        if (s->apcs != 1 || !cfg->check(&s->req, cfg->ctx)) {
            t->res.bad++;
            fprintf(stderr, "  ustress: thread %d request %llu: %d APC(s), status 0x%08X\n", t->index,
                    (unsigned long long)s->req.seq, (int)s->apcs, (unsigned)s->req.iosb.Status);
        }
        if (s->req.iosb.Status == STATUS_SUCCESS) t->res.succeeded++;
        else if (s->req.iosb.Status == STATUS_CANCELLED) t->res.cancelled++;
        else t->res.other++;
    }
    return freed;
}

static uslot *random_in_flight(uthread *t)
{
    int w = t->run->cfg->window;
    int start = (int)(next_rand(&t->rng) % (uint64_t)w);
    for (int k = 0; k < w; k++)
        if (t->slots[(start + k) % w].in_flight) return &t->slots[(start + k) % w];
    return NULL;
}

static void maybe_cancel(uthread *t)
{
    const ustress_config *cfg = t->run->cfg;
    unsigned pick = (unsigned)(next_rand(&t->rng) % 100);
    uslot *s = random_in_flight(t);
    if (!s) return;
    IO_STATUS_BLOCK ciosb;
    if (pick < cfg->cancel_one_pct) {
        t->res.cancel_one++; /* CancelIoEx(h, ov): that request only, any thread's, no wait */
        if (NtCancelIoFileEx(s->req.file, &s->req.iosb, &ciosb) == STATUS_SUCCESS) t->res.cancel_one_found++;
    } else if (pick < cfg->cancel_one_pct + cfg->cancel_all_pct) {
        t->res.cancel_all++; /* CancelIo(h): this thread's requests on h; waits until done */
        NtCancelIoFile(s->req.file, &ciosb);
    }
}

static int in_flight(uthread *t)
{
    int n = 0;
    for (int i = 0; i < t->run->cfg->window; i++) n += t->slots[i].in_flight;
    return n;
}

static void issuer_main(void *arg)
{
    uthread *t = arg;
    const ustress_config *cfg = t->run->cfg;
    long attempts = 0;
    for (;;) {
        bool more = attempts < cfg->requests;
        uslot *free_slot = NULL;
        for (int i = 0; i < cfg->window && !free_slot && more; i++)
            if (!t->slots[i].in_flight) free_slot = &t->slots[i];
        if (free_slot) {
            attempts++;
            issue(t, free_slot);
            maybe_cancel(t);
            NtTestAlert(); /* deliver completions that are already in */
        } else if (in_flight(t)) {
            NtWaitForSingleObject(t->idle, TRUE, NULL); /* STATUS_USER_APC once APCs ran */
        } else {
            break;
        }
        reclaim(t);
    }
    NtTestAlert(); /* a duplicate APC would show on the reclaimed slots' counts */
    for (int i = 0; i < cfg->window; i++)
        if (t->slots[i].apcs > 1) t->res.bad++;
    InterlockedDecrement(&t->run->issuers_left);
}

static void closer_main(void *arg)
{
    urun *rn = arg;
    const ustress_config *cfg = rn->cfg;
    uint64_t rng = cfg->seed ^ 0xC105E;
    LONG next = (LONG)cfg->close_every;
    LARGE_INTEGER nap = {.QuadPart = -1000}; /* 100 µs */
    while (InterlockedCompareExchange(&rn->issuers_left, 0, 0) > 0) {
        if (InterlockedCompareExchange(&rn->issued_total, 0, 0) < next) {
            NtDelayExecution(FALSE, &nap);
            continue;
        }
        next += (LONG)cfg->close_every;
        int i = (int)(next_rand(&rng) % (uint64_t)cfg->handles);
        HANDLE fresh;
        if (!NT_SUCCESS(open_device(cfg->path, &fresh))) continue;
        HANDLE old = (HANDLE)InterlockedExchangePointer(&rn->table[i], fresh);
        NtClose(old); /* IRP_MJ_CLEANUP with requests in flight on it */
        rn->closes++;
    }
}

NTSTATUS ustress_run(const ustress_config *cfg, ustress_result *out)
{
    memset(out, 0, sizeof *out);
    urun *rn = ExAllocatePoolZero(NonPagedPoolNx, sizeof *rn, 0x54535355 /* "USST" */);
    if (!rn) return STATUS_INSUFFICIENT_RESOURCES;
    rn->cfg = cfg;
    NTSTATUS st = STATUS_SUCCESS;
    int opened = 0;
    for (; opened < cfg->handles && NT_SUCCESS(st); opened++) {
        HANDLE h;
        st = open_device(cfg->path, &h);
        if (NT_SUCCESS(st)) rn->table[opened] = h;
    }
    int threads = cfg->threads > USTRESS_MAX_THREADS ? USTRESS_MAX_THREADS : cfg->threads;
    if (NT_SUCCESS(st)) {
        rn->issuers_left = threads;
        for (int i = 0; i < threads; i++) {
            uthread *t = &rn->threads[i];
            t->run = rn;
            t->index = i;
            t->rng = (cfg->seed + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)) | 1;
            NtCreateEvent(&t->idle, EVENT_ALL_ACCESS, NULL, NotificationEvent, FALSE);
        }
        irpk_thread *closer = cfg->close_every ? irpk_thread_start(closer_main, rn, "closer") : NULL;
        for (int i = 0; i < threads; i++) {
            char name[32];
            snprintf(name, sizeof name, "user-%d", i + 1);
            rn->threads[i].thread = irpk_thread_start(issuer_main, &rn->threads[i], name);
        }
        for (int i = 0; i < threads; i++) irpk_thread_join(rn->threads[i].thread);
        if (closer) irpk_thread_join(closer);
        for (int i = 0; i < threads; i++) {
            const ustress_result *r = &rn->threads[i].res;
            out->issued += r->issued;
            out->refused += r->refused;
            out->completed += r->completed;
            out->succeeded += r->succeeded;
            out->cancelled += r->cancelled;
            out->other += r->other;
            out->bad += r->bad;
            out->cancel_one += r->cancel_one;
            out->cancel_one_found += r->cancel_one_found;
            out->cancel_all += r->cancel_all;
            NtClose(rn->threads[i].idle);
        }
        out->closes = rn->closes;
    }
    for (int i = 0; i < USTRESS_MAX_HANDLES; i++)
        if (rn->table[i] && NtClose((HANDLE)rn->table[i]) != STATUS_SUCCESS) out->handles_left++;
    ExFreePoolWithTag(rn, 0x54535355);
    return st;
}

void ustress_print(const char *what, const ustress_result *r)
{
    printf("  %s (user mode): issued %ld (+%ld refused: handle closed), completed %ld (ok %ld, "
           "cancelled %ld, other %ld), bad %ld, CancelIoEx %ld (found %ld), CancelIo %ld, handles "
           "closed mid-flight %ld\n",
           what, r->issued, r->refused, r->completed, r->succeeded, r->cancelled, r->other, r->bad,
           r->cancel_one, r->cancel_one_found, r->cancel_all, r->closes);
}
