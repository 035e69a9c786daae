/* Platform layer front end and native backend: pthreads, futexes, __atomic builtins.
 * See platform.h for the contract. Each public function forwards to the explore backend when
 * one is active (backend.h), else runs natively. */
#include "platform/backend.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

const plat_ops *plat_explore_ops;

#define EXPLORING() __builtin_expect(plat_explore_ops != NULL, 0)

plat_mode_kind plat_mode(void) { return plat_explore_ops ? PLAT_EXPLORE : PLAT_NATIVE; }

/* ------------------------------------------------------------------ atomics */

/* Explore mode: the atomic is a scheduling point; the operation itself then runs with the same
 * builtin (only one fiber runs at a time, so it is trivially atomic). */
#define POINT(op, p)                                                                         \
    do {                                                                                     \
        if (EXPLORING()) plat_explore_ops->atomic_point(op, p);                              \
    } while (0)

int32_t plat__load32(const volatile int32_t *p)
{
    POINT("load", p);
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
void plat__store32(volatile int32_t *p, int32_t v)
{
    POINT("store", p);
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
int32_t plat__xchg32(volatile int32_t *p, int32_t v)
{
    POINT("xchg", p);
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
int32_t plat__cas32(volatile int32_t *p, int32_t expected, int32_t desired)
{
    POINT("cas", p);
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
int32_t plat__fetch_add32(volatile int32_t *p, int32_t v)
{
    POINT("add", p);
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
int32_t plat__fetch_or32(volatile int32_t *p, int32_t v)
{
    POINT("or", p);
    return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
}
int32_t plat__fetch_and32(volatile int32_t *p, int32_t v)
{
    POINT("and", p);
    return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
}
int64_t plat__load64(const volatile int64_t *p)
{
    POINT("load", p);
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
void plat__store64(volatile int64_t *p, int64_t v)
{
    POINT("store", p);
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
int64_t plat__xchg64(volatile int64_t *p, int64_t v)
{
    POINT("xchg", p);
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
int64_t plat__cas64(volatile int64_t *p, int64_t expected, int64_t desired)
{
    POINT("cas", p);
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
int64_t plat__fetch_add64(volatile int64_t *p, int64_t v)
{
    POINT("add", p);
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
void *plat__load_ptr(void *const volatile *p)
{
    POINT("load", p);
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
void plat__store_ptr(void *volatile *p, void *v)
{
    POINT("store", p);
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
void *plat__xchg_ptr(void *volatile *p, void *v)
{
    POINT("xchg", p);
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
void *plat__cas_ptr(void *volatile *p, void *expected, void *desired)
{
    POINT("cas", p);
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
/* A seq_cst read-modify-write is a full barrier, and unlike a bare fence ThreadSanitizer
 * understands it. */
static int32_t fence_word;
void plat_fence(void)
{
    POINT("fence", NULL);
    __atomic_fetch_add(&fence_word, 0, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------ futex */

#ifdef __linux__
static int futex_wait_abs(volatile uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != PLAT_FOREVER) {
        if (deadline_ns < 0) deadline_ns = 0;
        ts.tv_sec = (time_t)(deadline_ns / 1000000000);
        ts.tv_nsec = (long)(deadline_ns % 1000000000);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, the clock of plat_now_ns. */
    long r = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == -1 && errno == ETIMEDOUT) return PLAT_TIMEDOUT;
    return PLAT_WOKEN;
}
static void futex_wake(volatile uint32_t *addr, int32_t n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}
#else
/* Portable fallback: a hashed table of mutex+condvar pairs. A waiter re-checks the word under
 * the bucket mutex, and wakers broadcast under it, so no wake-up between check and sleep is
 * lost. */
#define FUTEX_BUCKETS 64
static struct {
    pthread_mutex_t m;
    pthread_cond_t c;
} buckets[FUTEX_BUCKETS];
static pthread_once_t buckets_once = PTHREAD_ONCE_INIT;
static void buckets_init(void)
{
    for (int i = 0; i < FUTEX_BUCKETS; i++) {
        pthread_mutex_init(&buckets[i].m, NULL);
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&buckets[i].c, &a);
    }
}
static int futex_wait_abs(volatile uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    pthread_once(&buckets_once, buckets_init);
    size_t b = ((uintptr_t)addr >> 3) % FUTEX_BUCKETS;
    int rc = PLAT_WOKEN;
    pthread_mutex_lock(&buckets[b].m);
    if (__atomic_load_n(addr, __ATOMIC_SEQ_CST) == expected) {
        if (deadline_ns == PLAT_FOREVER) {
            pthread_cond_wait(&buckets[b].c, &buckets[b].m);
        } else {
            struct timespec ts = {(time_t)(deadline_ns / 1000000000), (long)(deadline_ns % 1000000000)};
            if (pthread_cond_timedwait(&buckets[b].c, &buckets[b].m, &ts) == ETIMEDOUT)
                rc = PLAT_TIMEDOUT;
        }
    }
    pthread_mutex_unlock(&buckets[b].m);
    return rc;
}
static void futex_wake(volatile uint32_t *addr, int32_t n)
{
    (void)n;
    pthread_once(&buckets_once, buckets_init);
    size_t b = ((uintptr_t)addr >> 3) % FUTEX_BUCKETS;
    pthread_mutex_lock(&buckets[b].m);
    pthread_cond_broadcast(&buckets[b].c);
    pthread_mutex_unlock(&buckets[b].m);
}
#endif

int plat_wait(volatile uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    if (EXPLORING()) return plat_explore_ops->wait(addr, expected, deadline_ns);
    if (deadline_ns != PLAT_FOREVER && plat_now_ns() >= deadline_ns)
        return __atomic_load_n(addr, __ATOMIC_SEQ_CST) == expected ? PLAT_TIMEDOUT : PLAT_WOKEN;
    return futex_wait_abs(addr, expected, deadline_ns);
}

void plat_wake(volatile uint32_t *addr, int32_t n)
{
    if (EXPLORING()) {
        plat_explore_ops->wake(addr, n);
        return;
    }
    futex_wake(addr, n);
}

/* ------------------------------------------------------------------ locks */

/* Lock word (platform.h): low 32 bits 0 free / 1 held (the futex word). Sleepers are counted in
 * plat__lock_sleepers[hash(lock address)], never in the word, so a release accesses the word
 * once (the store or exchange) and never again: after that the next owner may free it. The
 * wake-up that may follow is a futex_wake on the address, harmless if the memory was freed or
 * reused meanwhile (a spurious wake-up; every futex waiter here re-checks and waits again).
 *
 * The sleeper/releaser handshake is a Dekker pair: the releaser stores 0 to the lock and then
 * reads the sleeper count; a sleeper increments the count and then reads the lock (futex_wait
 * re-checks it in the kernel). One of them must see the other's write. The sleeper's increment
 * is a full fence; the releaser's store -> load order is provided either by an exchange (a full
 * fence on every release: the fallback) or, with lock_asym, by the sleeper issuing
 * membarrier(PRIVATE_EXPEDITED) after its increment, which runs a full barrier on every thread
 * of the process that is running at that moment (a descheduled thread had one at its context
 * switch). Wherever that barrier falls in the releaser's store; load sequence, either the
 * store is visible to the sleeper's later check, or the increment is visible to the load. So
 * the uncontended release costs a plain store, and only a thread about to sleep pays the
 * barrier (it is already about to make a futex system call). A shared counter only costs
 * spurious wake calls on other locks of the same bucket while someone sleeps. */
int plat__lock_asym;
volatile uint32_t plat__lock_sleepers[64];

#if defined(__linux__) && defined(__NR_membarrier)
#include <linux/membarrier.h>
/* Before main (and before any thread exists): lock_asym never changes while locks are in use. */
__attribute__((constructor)) static void lock_asym_init(void)
{
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
        plat__lock_asym = 1;
}
static void lock_sleeper_barrier(void)
{
    if (plat__lock_asym && syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
        plat_panic("membarrier failed after registration");
}
#else
static void lock_sleeper_barrier(void) {}
#endif

static volatile uint32_t *lock_futex(volatile plat_lockword *w) { return plat__lock_low(w); }

void plat_lock_init(volatile plat_lockword *w) { __atomic_store_n(w, 0, __ATOMIC_SEQ_CST); }

bool plat_lock_try(volatile plat_lockword *w)
{
    if (EXPLORING()) return plat_explore_ops->lock_try(w);
    uint32_t expected = 0;
    return __atomic_compare_exchange_n(lock_futex(w), &expected, 1, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static void native_lock_acquire(volatile plat_lockword *w);
static void native_lock_release(volatile plat_lockword *w);

void plat__lock_acquire(volatile plat_lockword *w)
{
    if (EXPLORING()) {
        plat_explore_ops->lock_acquire(w);
        return;
    }
    native_lock_acquire(w);
}

void plat__lock_release(volatile plat_lockword *w)
{
    if (EXPLORING()) {
        plat_explore_ops->lock_release(w);
        return;
    }
    native_lock_release(w);
}

void plat__lock_wake(volatile plat_lockword *w) { futex_wake(lock_futex(w), 1); }

static bool lock_cas(volatile plat_lockword *w)
{
    uint32_t expected = 0;
    return __atomic_compare_exchange_n(lock_futex(w), &expected, 1, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static void native_lock_acquire(volatile plat_lockword *w)
{
    if (lock_cas(w)) return;
    /* Brief spin: critical sections in the runtime are short. */
    for (int i = 0; i < 64; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (__atomic_load_n(lock_futex(w), __ATOMIC_RELAXED) == 0 && lock_cas(w)) return;
    }
    /* Sleep: count ourselves (a full fence), then the barrier that pairs with a plain-store
     * release (see above), then wait while the lock stays held. */
    volatile uint32_t *count = plat__lock_count(w);
    __atomic_fetch_add(count, 1, __ATOMIC_SEQ_CST);
    lock_sleeper_barrier();
    while (!lock_cas(w)) futex_wait_abs(lock_futex(w), 1, PLAT_FOREVER);
    __atomic_fetch_sub(count, 1, __ATOMIC_RELAXED);
}

static void native_lock_release(volatile plat_lockword *w)
{
    /* The fenced release (no asymmetric barrier available, or explore's bookkeeping locks):
     * the exchange orders the store before the count's load; w is not read again. */
    volatile uint32_t *count = plat__lock_count(w);
    __atomic_exchange_n(lock_futex(w), 0, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(count, __ATOMIC_SEQ_CST) != 0) futex_wake(lock_futex(w), 1);
}

/* Explore mode: one fiber runs at a time and the critical section has no scheduling point, so
 * the word is always 0 here; a 1 means some code switched fibers while holding it. */
void plat_bk_lock_acquire(volatile plat_lockword *w)
{
    if (EXPLORING()) {
        if (__atomic_exchange_n(w, 1, __ATOMIC_ACQUIRE) != 0)
            plat_panic("explore: a bookkeeping lock is held across a scheduling point");
        return;
    }
    native_lock_acquire(w);
}

void plat_bk_lock_release(volatile plat_lockword *w)
{
    if (EXPLORING()) {
        __atomic_store_n(w, 0, __ATOMIC_RELEASE);
        return;
    }
    native_lock_release(w);
}

bool plat_lock_is_held(const volatile plat_lockword *w)
{
    return __atomic_load_n(plat__lock_low((volatile plat_lockword *)w), __ATOMIC_RELAXED) != 0;
}

/* ------------------------------------------------------------------ threads */

#define MAX_EXIT_HOOKS 8
static plat_exit_hook exit_hooks[MAX_EXIT_HOOKS];
static int32_t n_exit_hooks;
/* Guards the hook and reset tables. Always the native lock, also in explore mode: it is
 * platform bookkeeping, not part of the program under test, so it must not add scheduling
 * points; no platform call (hence no fiber switch) happens while it is held, so in explore
 * mode it is always free when taken. */
static plat_lockword hooks_lock;
static int32_t next_thread_id;
static int32_t n_vcpus = 2;

__thread plat_thread *plat__tls_self;
static pthread_key_t self_key;
static pthread_once_t self_key_once = PTHREAD_ONCE_INIT;

typedef struct native_thread {
    pthread_t pt;
    plat_thread_fn fn;
    void *arg;
    bool started_by_runtime; /* record freed by join, not by the key destructor … */
    bool detached;           /* … unless nobody will join it */
} native_thread;

unsigned plat_vcpus(void) { return (unsigned)__atomic_load_n(&n_vcpus, __ATOMIC_RELAXED); }
void plat_set_vcpus(unsigned n)
{
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    __atomic_store_n(&n_vcpus, (int32_t)n, __ATOMIC_RELAXED);
}

plat_thread *plat__thread_record_new(const char *name, unsigned flags)
{
    plat_thread *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->id = (uint32_t)__atomic_add_fetch(&next_thread_id, 1, __ATOMIC_RELAXED);
    t->vcpu = (uint8_t)((t->id - 1) % plat_vcpus());
    t->system = (flags & PLAT_THREAD_SYSTEM) != 0;
    plat_thread_set_name(t, name);
    return t;
}

void plat__thread_record_free(plat_thread *t) { free(t); }

void plat_thread_set_name(plat_thread *t, const char *name)
{
    if (name)
        snprintf(t->name, sizeof t->name, "%s", name);
    else
        snprintf(t->name, sizeof t->name, "thread-%u", (unsigned)t->id);
}

void plat_on_thread_exit(plat_exit_hook hook)
{
    /* hooks_lock orders registrations; readers copy the array under it too. */
    native_lock_acquire(&hooks_lock);
    bool present = false;
    for (int i = 0; i < n_exit_hooks; i++) present |= exit_hooks[i] == hook;
    if (!present && n_exit_hooks < MAX_EXIT_HOOKS) exit_hooks[n_exit_hooks++] = hook;
    native_lock_release(&hooks_lock);
}

void plat__run_exit_hooks(plat_thread *t)
{
    plat_exit_hook copy[MAX_EXIT_HOOKS];
    native_lock_acquire(&hooks_lock);
    int n = n_exit_hooks;
    memcpy(copy, exit_hooks, sizeof copy);
    native_lock_release(&hooks_lock);
    t->exiting = 1;
    for (int i = n - 1; i >= 0; i--) copy[i](t);
}

static void self_key_destructor(void *p)
{
    plat_thread *t = p;
    /* The destructor may run before or after __thread storage is torn down: re-establish it so
     * hooks that call plat_self() see this record. */
    plat__tls_self = t;
    plat__run_exit_hooks(t);
    native_thread *nt = t->backend;
    plat__tls_self = NULL;
    if (!nt || !nt->started_by_runtime || nt->detached) {
        free(nt);
        plat__thread_record_free(t);
    }
}

static void self_key_init(void) { pthread_key_create(&self_key, self_key_destructor); }

plat_thread *plat__self(void)
{
    if (EXPLORING()) return plat_explore_ops->self();
    plat_thread *t = plat__tls_self;
    if (t) return t;
    pthread_once(&self_key_once, self_key_init);
    t = plat__thread_record_new(NULL, 0);
    if (!t) plat_panic("out of memory creating a thread record");
    plat__tls_self = t;
    pthread_setspecific(self_key, t);
    return t;
}

static void *native_trampoline(void *p)
{
    plat_thread *t = p;
    native_thread *nt = t->backend;
    pthread_once(&self_key_once, self_key_init);
    plat__tls_self = t;
    pthread_setspecific(self_key, t);
    nt->fn(nt->arg);
    /* The key destructor runs the exit hooks (also on pthread_exit). */
    return NULL;
}

plat_thread *plat_thread_start(plat_thread_fn fn, void *arg, const char *name, unsigned flags)
{
    if (EXPLORING()) return plat_explore_ops->thread_start(fn, arg, name, flags);
    plat_thread *t = plat__thread_record_new(name, flags);
    native_thread *nt = calloc(1, sizeof *nt);
    if (!t || !nt) {
        free(nt);
        if (t) plat__thread_record_free(t);
        return NULL;
    }
    nt->fn = fn;
    nt->arg = arg;
    nt->started_by_runtime = true;
    t->backend = nt;
    nt->detached = (flags & PLAT_THREAD_DETACHED) != 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Detached from birth: a detached thread may finish and free t before we return. */
    if (nt->detached) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t detached_id;
    int rc = pthread_create(nt->detached ? &detached_id : &nt->pt, &attr, native_trampoline, t);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(nt);
        plat__thread_record_free(t);
        return NULL;
    }
    return t;
}

_Noreturn void plat_thread_exit(void)
{
    if (EXPLORING()) {
        if (plat_explore_ops->thread_exit) plat_explore_ops->thread_exit();
        plat_panic("plat_thread_exit: the explore backend cannot end a thread early");
    }
    plat_self(); /* make sure the key destructor (exit hooks) is armed */
    pthread_exit(NULL);
}

void plat_thread_join(plat_thread *t)
{
    if (EXPLORING()) {
        plat_explore_ops->thread_join(t);
        return;
    }
    native_thread *nt = t->backend;
    pthread_join(nt->pt, NULL);
    free(nt);
    plat__thread_record_free(t);
}

/* ------------------------------------------------------------------ parking */

int plat_park(int64_t deadline_ns)
{
    if (EXPLORING()) return plat_explore_ops->park(deadline_ns);
    plat_thread *t = plat_self();
    for (;;) {
        if (__atomic_exchange_n(&t->park_word, 0, __ATOMIC_SEQ_CST) == 1) return PLAT_WOKEN;
        if (plat_wait(&t->park_word, 0, deadline_ns) == PLAT_TIMEDOUT)
            return __atomic_exchange_n(&t->park_word, 0, __ATOMIC_SEQ_CST) == 1 ? PLAT_WOKEN
                                                                                : PLAT_TIMEDOUT;
    }
}

void plat_unpark(plat_thread *t)
{
    if (EXPLORING()) {
        plat_explore_ops->unpark(t);
        return;
    }
    /* The permit is set before the wake, so a parker that has not slept yet sees it. */
    if (__atomic_exchange_n(&t->park_word, 1, __ATOMIC_SEQ_CST) == 0) futex_wake(&t->park_word, 1);
}

/* ------------------------------------------------------------------ time */

int64_t plat_now_ns(void)
{
    if (EXPLORING()) return plat_explore_ops->now_ns();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t plat_system_time(void)
{
    if (EXPLORING()) return PLAT_EXPLORE_EPOCH_100NS + plat_explore_ops->now_ns() / 100;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* 11644473600 s separate 1601-01-01 from 1970-01-01. */
    return ((int64_t)ts.tv_sec + 11644473600LL) * 10000000 + ts.tv_nsec / 100;
}

void plat_sleep_ns(int64_t ns)
{
    if (EXPLORING()) {
        plat_explore_ops->sleep_ns(ns);
        return;
    }
    if (ns <= 0) {
        sched_yield();
        return;
    }
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

void plat_yield(void)
{
    if (EXPLORING()) {
        plat_explore_ops->yield();
        return;
    }
    sched_yield();
}

void (*volatile plat__point_hook)(const char *op, const void *obj);

void plat__point(const char *op, const void *obj)
{
    if (EXPLORING()) {
        plat_explore_ops->point(op, obj);
        return;
    }
    plat_point_hook h = __atomic_load_n(&plat__point_hook, __ATOMIC_ACQUIRE);
    if (h) h(op, obj);
}

void plat__label(const char *op, const void *obj)
{
    if (EXPLORING()) {
        plat_explore_ops->label(op, obj);
        return;
    }
    plat_point_hook h = __atomic_load_n(&plat__point_hook, __ATOMIC_ACQUIRE);
    if (h) h(op, obj);
}

void plat_set_point_hook(plat_point_hook hook) { __atomic_store_n(&plat__point_hook, hook, __ATOMIC_RELEASE); }

/* ------------------------------------------------------------------ memory */

static int32_t fail_allocs;

bool plat__alloc_should_fail(void)
{
    int32_t n = __atomic_load_n(&fail_allocs, __ATOMIC_RELAXED);
    while (n > 0) {
        if (__atomic_compare_exchange_n(&fail_allocs, &n, n - 1, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return true;
    }
    return false;
}

void plat_fail_allocs(int n) { __atomic_store_n(&fail_allocs, n, __ATOMIC_RELAXED); }

void *plat_alloc(size_t n)
{
    if (plat__alloc_should_fail()) return NULL;
    if (EXPLORING()) return plat_explore_ops->alloc(n);
    return malloc(n ? n : 1);
}

void *plat_calloc(size_t count, size_t n)
{
    if (n && count > SIZE_MAX / n) return NULL;
    void *p = plat_alloc(count * n);
    if (p) memset(p, 0, count * n);
    return p;
}

void plat_free(void *p)
{
    if (!p) return;
    if (EXPLORING()) {
        plat_explore_ops->free(p);
        return;
    }
    free(p);
}

/* ------------------------------------------------------------------ resets */

#define MAX_RESETS 32
static plat_reset_fn resets[MAX_RESETS];
static int n_resets;

void plat_on_reset(plat_reset_fn fn)
{
    native_lock_acquire(&hooks_lock);
    bool present = false;
    for (int i = 0; i < n_resets; i++) present |= resets[i] == fn;
    if (!present && n_resets < MAX_RESETS) resets[n_resets++] = fn;
    native_lock_release(&hooks_lock);
}

#define MAX_QUIESCE 8
static plat_reset_fn quiescers[MAX_QUIESCE];
static int n_quiescers;

void plat_on_quiesce(plat_reset_fn fn)
{
    native_lock_acquire(&hooks_lock);
    bool present = false;
    for (int i = 0; i < n_quiescers; i++) present |= quiescers[i] == fn;
    if (!present && n_quiescers < MAX_QUIESCE) quiescers[n_quiescers++] = fn;
    native_lock_release(&hooks_lock);
}

void plat_quiesce_all(void)
{
    plat_reset_fn copy[MAX_QUIESCE];
    native_lock_acquire(&hooks_lock);
    int n = n_quiescers;
    memcpy(copy, quiescers, sizeof copy);
    native_lock_release(&hooks_lock);
    for (int i = 0; i < n; i++) copy[i]();
}

void plat_reset_all(void)
{
    plat_reset_fn copy[MAX_RESETS];
    native_lock_acquire(&hooks_lock);
    int n = n_resets;
    memcpy(copy, resets, sizeof copy);
    native_lock_release(&hooks_lock);
    for (int i = 0; i < n; i++) copy[i]();
}

_Noreturn void plat_panic(const char *msg)
{
    fprintf(stderr, "irpkit: internal error: %s\n", msg);
    fflush(stderr);
    abort();
}
