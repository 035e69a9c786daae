/* Request queue introspection: request info, find/peek, statistics, the event log, the
 * "why is this stuck" dump, and error names. */
#include "queue/queue_internal.h"

#include <stdarg.h>
#include <stdio.h>

int irpk_req_info_get(irpk_queue *q, irpk_req_handle h, irpk_req_info *info)
{
    if (!info) return IRPK_QE_INVAL;
    int rc = q_enter(q);
    if (rc) return rc;
    bool gone;
    qreq *r = req_lookup(q, h, &gone);
    if (r) {
        irpk_req_state st = (irpk_req_state)(r->state - RS_RESERVED);
        if (st == IRPK_REQ_RUNNING && decided_or_done(r) && !r->decided) st = IRPK_REQ_DONE;
        *info = (irpk_req_info){st, r->cancel_req, r->ctx, r->key, r->owner, r->deadline,
                                q->timed ? plat_now_ns() - r->t_submit : -1};
    }
    /* No q_leave needed: see irpk_req_is_cancelled. */
    q_release(q);
    return r ? 0 : IRPK_QE_STALE;
}

int irpk_queue_find_owner(irpk_queue *q, uint64_t owner, irpk_req_handle *out, size_t max)
{
    if (!out && max) return IRPK_QE_INVAL;
    int rc = q_enter(q);
    if (rc) return rc;
    int n = 0;
    tnode *t = owner ? tn_find(q->owners, owner) : NULL;
    if (t) {
        qowner *og = QL_ENTRY(t, qowner, tn);
        for (qlink *p = og->reqs.next; p != &og->reqs && (size_t)n < max && n < INT32_MAX; p = p->next)
            out[n++] = req_handle(QL_ENTRY(p, qreq, olink));
    }
    q_release(q);
    return n;
}

int irpk_queue_peek(irpk_queue *q, irpk_req_handle *out)
{
    if (!out) return IRPK_QE_INVAL;
    int rc = q_enter(q);
    if (rc) return rc;
    qreq *r = pend_pick(q);
    if (r) *out = req_handle(r);
    q_release(q);
    return r ? 0 : IRPK_QE_EMPTY;
}

int irpk_queue_stats_get(irpk_queue *q, irpk_queue_stats *s)
{
    if (!q || !s) return IRPK_QE_INVAL;
    q_lock(q);
    *s = (irpk_queue_stats){q->accepting, q->dispatch_on, q->closed, q->queued, q->running_n,
                            q->live, q->n_submitted, q->n_completed, q->n_cancelled,
                            q->n_timed_out, q->n_dropped, q->n_rejected, q->n_fwd,
                            q->max_queued_seen};
    q_release(q);
    return 0;
}

int irpk_queue_events(irpk_queue *q, irpk_queue_event *out, size_t max)
{
    if (!q || (!out && max)) return IRPK_QE_INVAL;
    q_lock(q);
    size_t n = q->log_n < max ? q->log_n : max;
    size_t first = q->log_n - n; /* keep the newest n */
    for (size_t i = 0; i < n; i++) out[i] = q->log[(q->log_head + first + i) % q->cfg.log_capacity];
    q_release(q);
    return (int)n;
}

const char *irpk_queue_event_name(irpk_queue_event_type t)
{
    static const char *const names[] = {"?",      "submit",   "queue",   "dispatch",
                                        "cancel-request", "complete", "timeout", "requeue",
                                        "forward", "drop",    "reject"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* ------------------------------------------------------------------ dump */

typedef struct sbuf {
    char *buf;
    size_t cap, len;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->cap ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->buf + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
}

static const char *state_name(const qreq *r)
{
    static const char *const names[] = {"free", "reserved", "QUEUED", "RUNNING", "DONE"};
    if (r->state == RS_RUNNING && r->decided) return "RUNNING(timed out)";
    if (r->state == RS_RUNNING && decided_or_done(r)) return "DONE";
    return names[r->state];
}

static void dump_request(sbuf *b, const qreq *r, int64_t now, bool timed)
{
    sb_printf(b, "  req 0x%llx %s owner=%llu key=%llu", (unsigned long long)req_handle(r),
              state_name(r), (unsigned long long)r->owner, (unsigned long long)r->key);
    if (timed) sb_printf(b, " age=%.3fms", (double)(now - r->t_submit) / 1e6);
    sb_printf(b, " cancel=%d", r->cancel_req);
    if (r->deadline) sb_printf(b, " deadline=%+.3fms", (double)(r->deadline - now) / 1e6);
    if (r->pins) sb_printf(b, " notifying=%u", r->pins);
    sb_printf(b, "\n");
}

int irpk_queue_dump(irpk_queue *q, char *buf, size_t n)
{
    if (!q || (!buf && n)) return IRPK_QE_INVAL;
    static const char *const ops[] = {"none", "stop", "drain", "purge"};
    sbuf b = {buf, n, 0};
    if (n) buf[0] = 0;
    q_lock(q);
    int64_t now = plat_now_ns();
    sb_printf(&b, "queue \"%s\": accepting=%d dispatching=%d closed=%d pending-op=%s queued=%zu "
              "running=%zu (acknowledged %zu) live=%zu callbacks-running=%u\n",
              q->name, q->accepting, q->dispatch_on, q->closed, ops[q->op], q->queued,
              q->running_n, q->acked_n, q->live, q->cb_active);
    for (uint32_t c = 0; c < q->nchunks; c++)
        for (uint32_t i = 0; i < SLOT_CHUNK; i++) {
            const qreq *r = &q->chunks[c][i];
            if (r->state >= RS_QUEUED) dump_request(&b, r, now, q->timed);
        }
    q_release(q);
    return b.len > INT32_MAX ? INT32_MAX : (int)b.len;
}

const char *irpk_queue_strerror(int code)
{
    switch (code) {
    case IRPK_QE_OK: return "ok";
    case IRPK_QE_INVAL: return "invalid argument";
    case IRPK_QE_STALE: return "stale handle";
    case IRPK_QE_CLOSED: return "queue closed or not accepting";
    case IRPK_QE_FULL: return "queue full";
    case IRPK_QE_BUSY: return "blocking call from the queue's own callback";
    case IRPK_QE_NOTOWNER: return "request not owned by the caller";
    case IRPK_QE_MODE: return "wrong mode or ordering for this operation";
    case IRPK_QE_NOMEM: return "out of memory";
    case IRPK_QE_ALREADY: return "final status already decided";
    case IRPK_QE_STOPPED: return "queue stopped";
    case IRPK_QE_EMPTY: return "queue empty";
    case IRPK_QE_INPROGRESS: return "stop/drain/purge in progress";
    case IRPK_QS_CANCELLED: return "cancelled";
    case IRPK_QS_TIMEDOUT: return "timed out";
    case IRPK_QS_DROPPED: return "dropped";
    default: return "unknown";
    }
}
