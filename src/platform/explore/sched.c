/* The explore backend: a deterministic scheduler over fibers implementing plat_ops (backend.h).
 * Contract and scheduling rules: platform/explore.h.
 *
 * Why no locks or atomics appear here: every simulated thread is a fiber of the one OS thread
 * that called plat_explore_run(), and exactly one fiber (or the host context) runs at a time.
 * State changes only at the points below, between which no other fiber can run. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/backend.h"
#include "platform/explore.h"
#include "platform/explore/arena.h"
#include "platform/explore/fiber.h"

#define VTIME_START_NS 1000000000LL /* virtual clock starts at 1 s: 0 often means "unset" */
#define MAX_NAMED_OBJS 256
#define MAX_HOOKS 8

/* What a stopped thread is waiting to do; decides whether it is enabled. */
enum pend {
    P_RUN,    /* an ordinary operation: enabled */
    P_YIELD,  /* plat_yield: enabled after another thread's step, or if nobody else can run */
    P_LOCK,   /* lock acquire: enabled while the lock word (obj) is 0 */
    P_JOIN,   /* join: enabled once the target thread (obj) exited */
    P_WAIT,   /* blocked: enabled only as a timeout choice */
    P_WOKEN,  /* woken from a wait: enabled */
    P_EXITED, /* never enabled */
};

typedef struct xthread {
    plat_thread rec; /* rec.backend points back here */
    plat_fiber *fiber;
    plat_thread_fn fn;
    void *arg;
    uint8_t pend;
    bool parked; /* the P_WAIT is a plat_park */
    bool joined; /* plat_thread_join returned for it: a second join is a failure */
    int wait_result;
    const char *op;    /* the pending operation as shown (a plat_label, else the operation) */
    const void *obj;   /* … and its object as shown */
    const void *addr;  /* what the operation really acts on: lock word, atomic, thread */
    const char *label; /* plat_label for the next point, or NULL */
    const void *label_obj;
    const char *api;   /* the last labelled operation (plat_point/plat_label): deadlock text */
    const void *api_obj;
    volatile uint32_t *wait_addr; /* P_WAIT on a futex word; NULL for sleep/park-only */
    int64_t deadline;
    uint64_t wait_seq; /* FIFO order of wake-ups */
} xthread;

static struct xstate {
    const plat_explore_config *cfg;
    plat_explore_outcome *out;
    plat_fiber *host;
    xthread *threads[PLAT_EXPLORE_MAX_THREADS];
    unsigned nthreads;
    unsigned live; /* non-system threads not yet exited */
    xthread *cur;  /* running fiber; NULL while the host context runs */
    int nosched;   /* > 0: calls act directly (describers) */
    int64_t now;
    uint64_t steps, wait_seq, max_steps;
    unsigned vcpus;
    unsigned nobjs;
    /* Scratch (not cleared per execution): valid up to the counts above / per decision. */
    plat_explore_choice choices[PLAT_EXPLORE_MAX_THREADS];
    xthread *choice_thread[PLAT_EXPLORE_MAX_THREADS];
    const void *objs[MAX_NAMED_OBJS];
} ex;

static plat_explore_step *log_buf;
static size_t log_cap;
static plat_explore_describer describers[MAX_HOOKS];
static unsigned n_describers;
static plat_explore_end_check end_checks[MAX_HOOKS];
static unsigned n_end_checks;
static plat_thread host_record = {.name = "explorer"};

static inline bool in_fiber(void) { return ex.cur && !ex.nosched; }

/* ------------------------------------------------------------------ object names and log */

static void default_name(const void *obj, char *buf, size_t n)
{
    for (unsigned i = 0; i < ex.nthreads; i++)
        if (obj == &ex.threads[i]->rec) {
            snprintf(buf, n, "%s", ex.threads[i]->rec.name);
            return;
        }
    unsigned k = 0;
    while (k < ex.nobjs && ex.objs[k] != obj) k++;
    if (k == ex.nobjs && k < MAX_NAMED_OBJS) ex.objs[ex.nobjs++] = obj;
    if (k < MAX_NAMED_OBJS)
        snprintf(buf, n, "obj#%u", k + 1);
    else
        snprintf(buf, n, "obj@%p", obj);
}

static void describe(const void *obj, char *buf, size_t n)
{
    buf[0] = 0;
    if (!obj) return;
    ex.nosched++; /* describers read freely; any platform call they make must not switch */
    bool done = false;
    for (unsigned i = 0; i < n_describers && !done; i++) done = describers[i](obj, buf, n);
    ex.nosched--;
    if (!done) default_name(obj, buf, n);
}

static void log_step(const xthread *t, uint8_t kind, bool preempted)
{
    plat_explore_outcome *o = ex.out;
    if (o->nlog == log_cap) {
        size_t cap = log_cap ? log_cap * 2 : 1024;
        plat_explore_step *b = realloc(log_buf, cap * sizeof *b);
        if (!b) plat_panic("explore: out of memory for the step log");
        log_buf = b;
        log_cap = cap;
        o->log = log_buf;
    }
    plat_explore_step *s = &log_buf[o->nlog++];
    s->tid = t->rec.id;
    s->vcpu = t->rec.vcpu;
    s->irql = t->rec.irql;
    s->kind = kind;
    s->preempted = preempted;
    s->op = t->op;
    s->obj = t->obj;
    s->addr = t->addr;
    describe(t->obj, s->obj_name, sizeof s->obj_name);
    s->obj_after[0] = 0;
}

/* The previous step ends where the next scheduling decision (or the execution) begins. */
static void log_finish_step(void)
{
    if (!ex.cfg->log_steps || ex.out->nlog == 0) return;
    plat_explore_step *s = &log_buf[ex.out->nlog - 1];
    if (s->obj_after[0] == 0) describe(s->obj, s->obj_after, sizeof s->obj_after);
}

/* ------------------------------------------------------------------ ending an execution */

static _Noreturn void end_execution(plat_explore_status st, const char *what, const char *detail)
{
    log_finish_step();
    plat_explore_outcome *o = ex.out;
    o->status = st;
    snprintf(o->what, sizeof o->what, "%s", what);
    snprintf(o->detail, sizeof o->detail, "%s", detail);
    plat_fiber_switch(ex.cur->fiber, ex.host, 1);
    plat_panic("explore: an ended execution was resumed");
}

/* "acquiring obj#1 held by worker-2", "waiting on obj#3", "joining thread-4", … */
static void describe_blocked(const xthread *t, char *buf, size_t n)
{
    char obj[PLAT_EXPLORE_DESC];
    describe(t->pend == P_WAIT ? (const void *)t->wait_addr : t->addr, obj, sizeof obj);
    plat_lockword owner = t->pend == P_LOCK ? *(const volatile plat_lockword *)t->addr : 0;
    if (t->pend == P_LOCK && owner >= 1 && owner <= ex.nthreads)
        snprintf(buf, n, "acquiring %s held by %s", obj, ex.threads[owner - 1]->rec.name);
    else if (t->pend == P_JOIN)
        snprintf(buf, n, "joining %s", obj);
    else if (t->pend == P_WAIT && t->parked && t->api) {
        char api_obj[PLAT_EXPLORE_DESC];
        describe(t->api_obj, api_obj, sizeof api_obj);
        snprintf(buf, n, "parked in %s%s%s", t->api, api_obj[0] ? " " : "", api_obj);
    } else if (t->pend == P_WAIT)
        snprintf(buf, n, "%s%s", t->parked ? "parked" : t->wait_addr ? "waiting on " : "sleeping",
                 t->parked || !t->wait_addr ? "" : obj);
    else
        snprintf(buf, n, "stopped before %s %s (its vCPU is held)", t->op, obj);
}

static _Noreturn void end_deadlock(void)
{
    char msg[512], one[128];
    size_t len = (size_t)snprintf(msg, sizeof msg, "every thread is blocked:");
    for (unsigned i = 0; i < ex.nthreads && len < sizeof msg; i++) {
        const xthread *t = ex.threads[i];
        if (t->pend == P_EXITED) continue;
        describe_blocked(t, one, sizeof one);
        len += (size_t)snprintf(msg + len, sizeof msg - len, " %s %s;", t->rec.name, one);
    }
    end_execution(PLAT_EXO_DEADLOCK, "deadlock", msg);
}

/* ------------------------------------------------------------------ choosing */

/* The thread keeps its CPU while running or spinning for a lock; a blocking wait gives it up. */
static inline bool holds_dispatch(const xthread *t)
{
    return t->rec.irql >= 2 && (t->pend == P_RUN || t->pend == P_YIELD || t->pend == P_LOCK);
}

static int enabled_kind(const xthread *t, int64_t min_deadline)
{
    switch (t->pend) {
    case P_RUN:
    case P_WOKEN:
    case P_YIELD: return PLAT_EXC_RUN;
    case P_LOCK: return *(const volatile plat_lockword *)t->addr == 0 ? PLAT_EXC_RUN : -1;
    case P_JOIN: return ((const xthread *)t->addr)->pend == P_EXITED ? PLAT_EXC_RUN : -1;
    case P_WAIT:
        return t->deadline != PLAT_FOREVER && t->deadline == min_deadline ? PLAT_EXC_TIMEOUT : -1;
    default: return -1;
    }
}

static unsigned collect_choices(void)
{
    int64_t min_deadline = PLAT_FOREVER;
    uint64_t held_cpus = 0;
    for (unsigned i = 0; i < ex.nthreads; i++) {
        const xthread *t = ex.threads[i];
        if (t->pend == P_WAIT && t->deadline < min_deadline) min_deadline = t->deadline;
        if (holds_dispatch(t)) held_cpus |= 1ull << (t->rec.vcpu & 63);
    }
    unsigned n = 0, yielders = 0;
    for (int pass = 0; pass < 2 && n == 0; pass++) {
        for (unsigned i = 0; i < ex.nthreads; i++) {
            xthread *t = ex.threads[i];
            if ((held_cpus >> (t->rec.vcpu & 63) & 1) && !holds_dispatch(t)) continue;
            if ((t->pend == P_YIELD) != (pass == 1)) { /* yielders only if nobody else runs */
                yielders += t->pend == P_YIELD;
                continue;
            }
            int kind = enabled_kind(t, min_deadline);
            if (kind < 0) continue;
            ex.choices[n] = (plat_explore_choice){t->rec.id, (uint8_t)kind, t->op, t->addr};
            ex.choice_thread[n++] = t;
        }
        if (!yielders) break;
    }
    return n;
}

static inline uint64_t hash_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0x100000001b3ull;
}

/* Start a step of t: bookkeeping that must happen whichever fiber runs next. */
static void begin_step(xthread *t, uint8_t kind, bool preempted, unsigned nchoices)
{
    if (++ex.steps > ex.max_steps) {
        char msg[96];
        snprintf(msg, sizeof msg, "no end after %llu steps", (unsigned long long)ex.max_steps);
        end_execution(PLAT_EXO_LIVELOCK, "livelock", msg);
    }
    ex.out->hash = hash_mix(hash_mix(hash_mix(ex.out->hash, t->rec.id), (uintptr_t)t->op),
                            (uint64_t)kind << 32 | nchoices);
    if (ex.cfg->log_steps) log_step(t, kind, preempted);
    if (kind == PLAT_EXC_TIMEOUT) {
        if (t->deadline > ex.now) ex.now = t->deadline; /* earliest deadline: monotonic */
        t->wait_result = PLAT_TIMEDOUT;
        t->pend = P_WOKEN;
    }
    /* Another thread has now taken a step since each yielder yielded. */
    for (unsigned i = 0; i < ex.nthreads; i++)
        if (ex.threads[i]->pend == P_YIELD && ex.threads[i] != t) ex.threads[i]->pend = P_RUN;
}

/* Pick the thread for the next step. `c` is the thread that ran the last step (NULL at the
 * start); it may be disabled (blocked, exited). Does not return if the execution ends. */
static xthread *pick_next(xthread *c)
{
    unsigned n = collect_choices();
    if (n == 0) end_deadlock();
    int i = 0;
    plat_explore_decision d = {ex.steps, c ? c->rec.id : 0, false, n, ex.choices};
    for (unsigned k = 0; k < n && c; k++)
        d.current_enabled |= ex.choice_thread[k] == c && ex.choices[k].kind == PLAT_EXC_RUN;
    bool preempted = false;
    if (n > 1) {
        i = ex.cfg->choose(ex.cfg->choose_ctx, &d);
        ex.out->decisions++;
        if (i < 0 || (unsigned)i >= n) end_execution(PLAT_EXO_ABORTED, "aborted", "chooser stopped");
        preempted = plat_explore_is_preemption(&d, (unsigned)i);
        ex.out->preemptions += preempted;
    }
    xthread *t = ex.choice_thread[i];
    begin_step(t, ex.choices[i].kind, preempted, n);
    return t;
}

/* The running thread c stops here; returns when c is chosen again. */
static void reschedule(xthread *c)
{
    log_finish_step();
    xthread *t = pick_next(c);
    if (t == c) return;
    ex.cur = t;
    plat_fiber_switch(c->fiber, t->fiber, 0);
}

/* The running thread stops before `op`, shown as acting on `obj`; `addr` is what it really
 * acts on (sleep-set independence, lock/join enabling). */
static inline void point_at(uint8_t pend, const char *op, const void *obj, const void *addr)
{
    xthread *c = ex.cur;
    c->pend = pend;
    c->addr = addr;
    c->op = c->label ? c->label : op;
    c->obj = c->label ? c->label_obj : obj;
    c->label = NULL;
    reschedule(c);
}

static inline void point(uint8_t pend, const char *op, const void *obj) { point_at(pend, op, obj, obj); }

/* Block c in a wait; returns PLAT_WOKEN or PLAT_TIMEDOUT. */
static int block(xthread *c, volatile uint32_t *addr, int64_t deadline, bool parked)
{
    c->pend = P_WAIT;
    c->op = "woken";
    c->wait_addr = addr;
    c->deadline = deadline;
    c->wait_seq = ++ex.wait_seq;
    c->parked = parked;
    reschedule(c);
    return c->wait_result;
}

/* ------------------------------------------------------------------ threads */

static _Noreturn void thread_exit(xthread *t)
{
    point_at(P_RUN, "exit", NULL, t); /* acts on the thread itself: a joiner waits for it */
    plat__run_exit_hooks(&t->rec);
    t->pend = P_EXITED;
    if (!t->rec.system && --ex.live == 0) end_execution(PLAT_EXO_OK, "", "");
    reschedule(t);
    plat_panic("explore: an exited thread was resumed");
}

static void thread_main(void *p)
{
    xthread *t = p;
    t->fn(t->arg);
    thread_exit(t);
}

static xthread *new_thread(plat_thread_fn fn, void *arg, const char *name, unsigned flags)
{
    if (ex.nthreads == PLAT_EXPLORE_MAX_THREADS) return NULL;
    xthread *t = arena_alloc(sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->fiber = plat_fiber_new(thread_main, t);
    if (!t->fiber) return NULL;
    t->rec.id = ex.nthreads + 1;
    t->rec.vcpu = (uint8_t)((t->rec.id - 1) % ex.vcpus);
    t->rec.system = (flags & PLAT_THREAD_SYSTEM) != 0;
    t->rec.backend = t;
    plat_thread_set_name(&t->rec, name);
    t->fn = fn;
    t->arg = arg;
    t->pend = P_RUN;
    t->op = "start";
    t->addr = t; /* the first step runs the thread's own code up to its first point */
    ex.threads[ex.nthreads++] = t;
    ex.live += !t->rec.system;
    return t;
}

static plat_thread *x_thread_start(plat_thread_fn fn, void *arg, const char *name, unsigned flags)
{
    if (in_fiber()) point(P_RUN, "thread_start", NULL);
    xthread *t = new_thread(fn, arg, name, flags);
    return t ? &t->rec : NULL;
}

static void x_thread_join(plat_thread *pt)
{
    xthread *t = pt->backend;
    if (in_fiber())
        point(P_JOIN, "join", t); /* enabled only once t has exited */
    else if (t->pend != P_EXITED)
        plat_panic("explore: join of a live thread outside a simulated thread");
    /* Natively the first join frees the thread (pthread_join, its record): a second one is a use
     * after free. Here the record lives on, so say it. Checked after the point, when this
     * fiber runs alone: two joiners waiting at once are told apart by who got here first. */
    if (t->joined)
        plat_explore_fail("double join", "plat_thread_join on a thread already joined (natively: "
                                         "pthread_join twice, its record used after free)");
    t->joined = true;
    /* The record lives in the execution's arena: nothing to free (detached threads too). */
}

static _Noreturn void x_thread_exit(void)
{
    if (!in_fiber()) plat_panic("explore: plat_thread_exit outside a simulated thread");
    thread_exit(ex.cur); /* the fiber is abandoned mid-call; its stack returns to the pool */
}

static plat_thread *x_self(void) { return ex.cur ? &ex.cur->rec : &host_record; }

/* ------------------------------------------------------------------ atomics and locks */

static void x_atomic_point(const char *op, const volatile void *addr)
{
    if (in_fiber()) point(P_RUN, op, (const void *)addr);
}

static void x_lock_acquire(volatile plat_lockword *w)
{
    if (!in_fiber()) {
        if (*w) plat_panic("explore: lock held while the scheduler itself runs");
        *w = 1;
        return;
    }
    point(P_LOCK, "lock_acquire", (const void *)w);
    *w = ex.cur->rec.id; /* enabled only while free, and nothing ran since the choice */
}

static bool x_lock_try(volatile plat_lockword *w)
{
    if (in_fiber()) point(P_RUN, "lock_try", (const void *)w);
    if (*w) return false;
    *w = ex.cur ? ex.cur->rec.id : 1;
    return true;
}

static void x_lock_release(volatile plat_lockword *w) { *w = 0; }

/* ------------------------------------------------------------------ waiting */

static int x_wait(volatile uint32_t *addr, uint32_t expected, int64_t deadline)
{
    if (in_fiber()) point(P_RUN, "wait", (const void *)addr);
    if (*addr != expected) return PLAT_WOKEN;
    if (deadline <= ex.now) return PLAT_TIMEDOUT;
    if (!in_fiber()) return PLAT_WOKEN; /* cannot block here; callers re-check (spurious) */
    return block(ex.cur, addr, deadline, false);
}

static void x_wake(volatile uint32_t *addr, int32_t n)
{
    if (in_fiber()) point(P_RUN, "wake", (const void *)addr);
    for (int32_t k = 0; k < n; k++) { /* oldest waiter first */
        xthread *first = NULL;
        for (unsigned i = 0; i < ex.nthreads; i++) {
            xthread *t = ex.threads[i];
            if (t->pend == P_WAIT && t->wait_addr == addr && (!first || t->wait_seq < first->wait_seq))
                first = t;
        }
        if (!first) return;
        first->pend = P_WOKEN;
        first->wait_result = PLAT_WOKEN;
    }
}

static int x_park(int64_t deadline)
{
    if (!in_fiber()) return PLAT_WOKEN; /* spurious wake-up: callers re-check */
    xthread *c = ex.cur;
    point_at(P_RUN, "park", NULL, c); /* conflicts with an unpark of c */
    int r = c->rec.park_word ? PLAT_WOKEN
            : deadline <= ex.now ? PLAT_TIMEDOUT
                                 : block(c, &c->rec.park_word, deadline, true);
    if (c->rec.park_word) r = PLAT_WOKEN; /* consume the permit */
    c->rec.park_word = 0;
    return r;
}

static void x_unpark(plat_thread *pt)
{
    xthread *t = pt->backend;
    if (in_fiber()) point(P_RUN, "unpark", t);
    t->rec.park_word = 1;
    if (t->pend == P_WAIT && t->parked) {
        t->pend = P_WOKEN;
        t->wait_result = PLAT_WOKEN;
    }
}

/* ------------------------------------------------------------------ time, points, memory */

static int64_t x_now(void) { return ex.now; }

static void x_yield(void)
{
    if (in_fiber()) point(P_YIELD, "yield", NULL);
}

static void x_sleep(int64_t ns)
{
    if (!in_fiber()) return;
    if (ns <= 0) {
        x_yield();
        return;
    }
    point(P_RUN, "sleep", NULL);
    block(ex.cur, NULL, ex.now + ns, false);
}

/* A labelled point on no object (ke's IRQL change) acts on nothing shared: it is a chance for
 * others to run, so for sleep sets it acts on the thread itself (independent of other threads'
 * steps). It is still shown without an object. */
static void x_point(const char *op, const void *obj)
{
    if (!in_fiber()) return;
    if (obj) { /* an IRQL change is not what a thread is "in" */
        ex.cur->api = op;
        ex.cur->api_obj = obj;
    }
    point_at(P_RUN, op, obj, obj ? obj : (const void *)ex.cur);
}

static void x_label(const char *op, const void *obj)
{
    if (!in_fiber()) return;
    ex.cur->label = ex.cur->api = op;
    ex.cur->label_obj = ex.cur->api_obj = obj;
}

static const plat_ops explore_ops = {
    .thread_start = x_thread_start,
    .thread_join = x_thread_join,
    .thread_exit = x_thread_exit,
    .self = x_self,
    .atomic_point = x_atomic_point,
    .lock_acquire = x_lock_acquire,
    .lock_try = x_lock_try,
    .lock_release = x_lock_release,
    .wait = x_wait,
    .wake = x_wake,
    .park = x_park,
    .unpark = x_unpark,
    .now_ns = x_now,
    .sleep_ns = x_sleep,
    .yield = x_yield,
    .point = x_point,
    .alloc = arena_alloc,
    .free = arena_free,
    .label = x_label,
};

/* ------------------------------------------------------------------ running an execution */

static void start_execution(const plat_explore_config *cfg, plat_explore_outcome *out)
{
    memset(&ex, 0, offsetof(struct xstate, choices)); /* the scratch arrays need no zeroing */
    memset(out, 0, offsetof(plat_explore_outcome, names)); /* names: filled at the end */
    out->log = log_buf;
    out->nlog = 0;
    ex.cfg = cfg;
    ex.out = out;
    ex.host = plat_fiber_host();
    ex.now = VTIME_START_NS;
    ex.vcpus = cfg->vcpus ? cfg->vcpus : 2;
    ex.max_steps = cfg->max_steps ? cfg->max_steps : 100000;
    plat_explore_ops = &explore_ops; /* no other runtime thread runs during exploration */
    plat_reset_all();                /* host context: platform calls act directly */
}

static void finish_execution(plat_explore_outcome *out)
{
    ex.cur = NULL;
    for (unsigned i = 0; i < n_end_checks && out->status == PLAT_EXO_OK; i++) end_checks[i]();
    out->steps = ex.steps;
    out->vtime_ns = ex.now;
    out->nthreads = ex.nthreads;
    for (unsigned i = 0; i < ex.nthreads; i++) {
        memcpy(out->names[i], ex.threads[i]->rec.name, PLAT_NAME_MAX);
        out->system[i] = ex.threads[i]->rec.system != 0;
        out->exited[i] = ex.threads[i]->pend == P_EXITED;
        plat_fiber_release(ex.threads[i]->fiber);
    }
    arena_release_all();
    plat_explore_ops = NULL;
    /* Native code after the exploration must not see state pointing into released memory. */
    plat_reset_all();
}

void plat_explore_run(const plat_explore_config *cfg, plat_explore_outcome *out)
{
    if (plat_explore_ops) plat_panic("explore: plat_explore_run called inside an execution");
    unsigned saved_vcpus = plat_vcpus();
    plat_quiesce_all(); /* native service threads must not run while fibers do */
    start_execution(cfg, out);
    plat_set_vcpus(ex.vcpus);
    xthread *m = new_thread(cfg->entry, cfg->arg, "main", 0);
    if (!m) plat_panic("explore: cannot create the main fiber");
    begin_step(m, PLAT_EXC_RUN, false, 1);
    ex.cur = m;
    plat_fiber_switch(ex.host, m->fiber, 0);
    finish_execution(out);
    plat_set_vcpus(saved_vcpus);
}

/* ------------------------------------------------------------------ hooks for upper layers */

void plat_explore_fail(const char *what, const char *detail)
{
    if (!plat_explore_ops) {
        fprintf(stderr, "irpkit: %s: %s\n", what, detail ? detail : "");
        fflush(stderr);
        abort();
    }
    if (in_fiber()) end_execution(PLAT_EXO_FAILED, what, detail ? detail : "");
    if (ex.out->status != PLAT_EXO_OK) return; /* keep the first failure */
    ex.out->status = PLAT_EXO_FAILED;
    snprintf(ex.out->what, sizeof ex.out->what, "%s", what);
    snprintf(ex.out->detail, sizeof ex.out->detail, "%s", detail ? detail : "");
}

/* Registration happens while layers initialise, before any exploration, on one thread. */
void plat_explore_add_describer(plat_explore_describer fn)
{
    for (unsigned i = 0; i < n_describers; i++)
        if (describers[i] == fn) return;
    if (n_describers < MAX_HOOKS) describers[n_describers++] = fn;
}

void plat_explore_add_end_check(plat_explore_end_check fn)
{
    for (unsigned i = 0; i < n_end_checks; i++)
        if (end_checks[i] == fn) return;
    if (n_end_checks < MAX_HOOKS) end_checks[n_end_checks++] = fn;
}
