/* irpkit platform layer — the only code that touches OS threads, locks, atomics, thread-local
 * state and clocks.
 *
 * Everything above this layer (ke, io, verify, user, queue, trace) synchronises *only* through
 * the calls declared here. That is what lets the race explorer run the very same runtime code
 * under a deterministic scheduler: every call below that blocks or orders memory is one function,
 * and each such function is a scheduling point in explore mode.
 *
 * Two backends implement this interface:
 *   - native  (platform_native.c): pthreads, Linux futexes (hashed condvars elsewhere) and the
 *              compiler's __atomic builtins (the C11 memory model on plain-typed storage, which
 *              the WDK's `LONG volatile *` Interlocked* signatures require);
 *   - explore (src/platform/explore/): simulated threads are fibers run one at a time on one OS
 *              thread by a deterministic scheduler; time is virtual.
 * The backend is chosen per execution: plat_mode() says which one is active. Native is the
 * default; the explorer switches to explore mode for the duration of plat_explore_run().
 *
 * Conventions
 *   - All atomics are sequentially consistent (the cancel handshake of IoSetCancelRoutine vs
 *     IoCancelIrp is a Dekker pattern and needs it). Compare-exchange returns the *old* value,
 *     like InterlockedCompareExchange; fetch_add returns the old value.
 *   - Deadlines are absolute times on the plat_now_ns() clock; PLAT_FOREVER means no deadline.
 *   - Lock words are pointer-sized so a KSPIN_LOCK (ULONG_PTR) can host one. 0 = free.
 */
#ifndef IRPK_PLATFORM_H
#define IRPK_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The explore backend's table while an exploration runs, NULL otherwise (backend.h). Inline
 * fast paths below test it: native mode runs the builtin, explore mode calls out of line. */
struct plat_ops;
extern const struct plat_ops *plat_explore_ops /* backend.h; NULL = native */
    __attribute__((visibility("hidden"))); /* library-internal: a direct load, no GOT */
#define PLAT_NATIVE_NOW() __builtin_expect(plat_explore_ops == NULL, 1)

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ mode and lifecycle */

typedef enum plat_mode_kind { PLAT_NATIVE = 0, PLAT_EXPLORE = 1 } plat_mode_kind;

/* Which backend is running the calling code. */
plat_mode_kind plat_mode(void);

/* ------------------------------------------------------------------ threads */

/* Slots in the per-thread record owned by the layers above (each stores one pointer there). */
enum plat_ext_slot {
    PLAT_EXT_KE = 0,  /* ke: wait block, DPC/timer bookkeeping */
    PLAT_EXT_IO,      /* io/user: pending-IRP list, thread object */
    PLAT_EXT_VERIFY,  /* verifier: held-lock set */
    PLAT_EXT_TRACE,   /* trace: per-thread buffer */
    PLAT_EXT_QUEUE,   /* queue: callback-nesting record */
    PLAT_EXT_PS,      /* ps: the thread object (ETHREAD) with the pending-IRP list */
    PLAT_EXT_IRPQ,    /* queue's IRP adapter: the cancel routine this thread is inside */
    PLAT_EXT_USER3,
    PLAT_EXT_COUNT
};

#define PLAT_NAME_MAX 32

/* Per-thread record. One exists for every thread that has called into the runtime: threads
 * started with plat_thread_start() get one at birth, foreign threads (any pthread) on their
 * first call to plat_self(). Fields are read and written only by the owning thread unless a
 * comment says otherwise. */
typedef struct plat_thread {
    uint32_t id;                  /* 1, 2, 3 … in creation order (deterministic in explore) */
    char name[PLAT_NAME_MAX];     /* "reader-1", "DPC cpu0", "thread-7" … */
    uint8_t irql;                 /* emulated IRQL; ke gives it meaning; explore reads it */
    uint8_t vcpu;                 /* virtual CPU this thread runs on */
    uint8_t system;               /* runtime-owned service thread (DPC, timer, worker) */
    uint8_t exiting;              /* set while the exit hooks run */
    void *ext[PLAT_EXT_COUNT];    /* one pointer per upper layer, see enum plat_ext_slot */
    uint32_t park_word;           /* private to plat_park/plat_unpark */
    void *backend;                /* private to the backend */
} plat_thread;

typedef void (*plat_thread_fn)(void *arg);

enum plat_thread_flags {
    PLAT_THREAD_SYSTEM = 1u << 0,   /* runtime-owned service thread: the explorer does not wait
                                       for it to exit before ending an execution */
    PLAT_THREAD_DETACHED = 1u << 1, /* never joined: the record is freed when the thread ends
                                       (plat_thread_start's result is only valid until then) */
};

/* Start a thread running fn(arg). name may be NULL ("thread-<id>"). Returns NULL when the OS
 * refuses (never aborts). The record stays valid until plat_thread_join(). */
plat_thread *plat_thread_start(plat_thread_fn fn, void *arg, const char *name, unsigned flags);

/* Wait for t to finish, then free its record. Each started thread is joined exactly once. */
void plat_thread_join(plat_thread *t);

/* End the calling thread now (its exit hooks run, a joiner is released). Does not return. */
_Noreturn void plat_thread_exit(void);

/* The calling thread's record, created on first use for threads the runtime did not start. */
plat_thread *plat__self(void); /* first call on a thread, or explore mode */
extern __thread plat_thread *plat__tls_self __attribute__((tls_model("initial-exec")));
static inline plat_thread *plat_self(void)
{
    plat_thread *t = plat__tls_self; /* native: this thread's record, once created */
    return PLAT_NATIVE_NOW() && t ? t : plat__self();
}

/* Rename the calling thread (trace and swimlane output). */
void plat_thread_set_name(plat_thread *t, const char *name);

/* Number of virtual CPUs (DPC queues). Default 2; plat_set_vcpus() before the runtime starts
 * threads. New threads are spread round-robin over them. */
unsigned plat_vcpus(void);
void plat_set_vcpus(unsigned n);

/* Exit hooks run, newest-registered first, on a thread that used the runtime when it exits
 * (pthread key destructor for foreign threads, return of fn for started threads), with
 * plat_self() still valid. Later issues use this to cancel a dying thread's I/O. Hooks may
 * block. At most 8 hooks; registering the same function twice is a no-op. */
typedef void (*plat_exit_hook)(plat_thread *t);
void plat_on_thread_exit(plat_exit_hook hook);

/* ------------------------------------------------------------------ atomics (all seq_cst) */

/* Each atomic is inline: when no exploration runs (plat_explore_ops == NULL, the common case)
 * it is the __atomic builtin itself, so hot paths pay no call; under the explorer the
 * out-of-line plat__* form makes it a scheduling point first (platform_native.c). */

int32_t plat__load32(const volatile int32_t *p);
static inline int32_t plat_load32(const volatile int32_t *p)
{
    return PLAT_NATIVE_NOW() ? __atomic_load_n(p, __ATOMIC_SEQ_CST) : plat__load32(p);
}
void plat__store32(volatile int32_t *p, int32_t v);
static inline void plat_store32(volatile int32_t *p, int32_t v)
{
    if (PLAT_NATIVE_NOW())
        __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
    else
        plat__store32(p, v);
}
int32_t plat__xchg32(volatile int32_t *p, int32_t v);
static inline int32_t plat_xchg32(volatile int32_t *p, int32_t v)
{
    return PLAT_NATIVE_NOW() ? __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST) : plat__xchg32(p, v);
}
int32_t plat__cas32(volatile int32_t *p, int32_t expected, int32_t desired);
static inline int32_t plat_cas32(volatile int32_t *p, int32_t expected, int32_t desired) /* returns old */
{
    if (!PLAT_NATIVE_NOW()) return plat__cas32(p, expected, desired);
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
int32_t plat__fetch_add32(volatile int32_t *p, int32_t v);
static inline int32_t plat_fetch_add32(volatile int32_t *p, int32_t v) /* returns old */
{
    return PLAT_NATIVE_NOW() ? __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST) : plat__fetch_add32(p, v);
}
int32_t plat__fetch_or32(volatile int32_t *p, int32_t v);
static inline int32_t plat_fetch_or32(volatile int32_t *p, int32_t v) /* returns old */
{
    return PLAT_NATIVE_NOW() ? __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST) : plat__fetch_or32(p, v);
}
int32_t plat__fetch_and32(volatile int32_t *p, int32_t v);
static inline int32_t plat_fetch_and32(volatile int32_t *p, int32_t v) /* returns old */
{
    return PLAT_NATIVE_NOW() ? __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST) : plat__fetch_and32(p, v);
}

int64_t plat__load64(const volatile int64_t *p);
static inline int64_t plat_load64(const volatile int64_t *p)
{
    return PLAT_NATIVE_NOW() ? __atomic_load_n(p, __ATOMIC_SEQ_CST) : plat__load64(p);
}
void plat__store64(volatile int64_t *p, int64_t v);
static inline void plat_store64(volatile int64_t *p, int64_t v)
{
    if (PLAT_NATIVE_NOW())
        __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
    else
        plat__store64(p, v);
}
int64_t plat__xchg64(volatile int64_t *p, int64_t v);
static inline int64_t plat_xchg64(volatile int64_t *p, int64_t v)
{
    return PLAT_NATIVE_NOW() ? __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST) : plat__xchg64(p, v);
}
int64_t plat__cas64(volatile int64_t *p, int64_t expected, int64_t desired);
static inline int64_t plat_cas64(volatile int64_t *p, int64_t expected, int64_t desired)
{
    if (!PLAT_NATIVE_NOW()) return plat__cas64(p, expected, desired);
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
int64_t plat__fetch_add64(volatile int64_t *p, int64_t v);
static inline int64_t plat_fetch_add64(volatile int64_t *p, int64_t v)
{
    return PLAT_NATIVE_NOW() ? __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST) : plat__fetch_add64(p, v);
}

void *plat__load_ptr(void *const volatile *p);
static inline void *plat_load_ptr(void *const volatile *p)
{
    return PLAT_NATIVE_NOW() ? __atomic_load_n(p, __ATOMIC_SEQ_CST) : plat__load_ptr(p);
}
void plat__store_ptr(void *volatile *p, void *v);
static inline void plat_store_ptr(void *volatile *p, void *v)
{
    if (PLAT_NATIVE_NOW())
        __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
    else
        plat__store_ptr(p, v);
}
void *plat__xchg_ptr(void *volatile *p, void *v);
static inline void *plat_xchg_ptr(void *volatile *p, void *v)
{
    return PLAT_NATIVE_NOW() ? __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST) : plat__xchg_ptr(p, v);
}
void *plat__cas_ptr(void *volatile *p, void *expected, void *desired);
static inline void *plat_cas_ptr(void *volatile *p, void *expected, void *desired)
{
    if (!PLAT_NATIVE_NOW()) return plat__cas_ptr(p, expected, desired);
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}

/* A full memory barrier (KeMemoryBarrier). */
void plat_fence(void);

/* ------------------------------------------------------------------ bookkeeping atomics
 *
 * Atomic (seq_cst, exactly like the functions above), but NEVER a scheduling point: only for
 * instrumentation that does not affect program behaviour — the per-IRP history, the trace
 * ring, statistics counters, diagnostic owner fields, the verifier's shadow state. Native mode:
 * the same __atomic operation as plat_*. Explore mode: the same operation without a point (one
 * fiber runs at a time, so it is trivially atomic) — instrumentation then adds no steps and
 * leaves the explorer's search space unchanged.
 *
 * Rule: if any thread's control flow or any value the driver/runtime acts on depends on the
 * word, it is not bookkeeping — use the plat_* forms. (Reading bookkeeping to *report* is fine.)
 * Defined inline: on the hot paths they cost what the builtin costs. */
static inline int32_t plat_bk_load32(const volatile int32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void plat_bk_store32(volatile int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline int32_t plat_bk_fetch_add32(volatile int32_t *p, int32_t v) /* returns old */
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline int32_t plat_bk_fetch_or32(volatile int32_t *p, int32_t v) /* returns old */
{
    return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);
}
static inline int32_t plat_bk_cas32(volatile int32_t *p, int32_t expected, int32_t desired) /* old */
{
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
static inline int64_t plat_bk_load64(const volatile int64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void plat_bk_store64(volatile int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
/* Relaxed: for records only reports read (a plain store on x86, no fence). */
static inline void plat_bk_store64_relaxed(volatile int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline int64_t plat_bk_fetch_add64(volatile int64_t *p, int64_t v) /* returns old */
{
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline int64_t plat_bk_cas64(volatile int64_t *p, int64_t expected, int64_t desired) /* old */
{
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
static inline void *plat_bk_load_ptr(void *const volatile *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void plat_bk_store_ptr(void *volatile *p, void *v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline void *plat_bk_cas_ptr(void *volatile *p, void *expected, void *desired) /* old */
{
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}

/* ------------------------------------------------------------------ locks */

/* A mutual-exclusion lock living in a pointer-sized word (0 = free). Acquire blocks (the
 * native backend spins briefly, then sleeps on a futex; explore disables the waiter until the
 * release — never a busy spin, so spin-lock-heavy code cannot look like a livelock).
 * Not recursive. Release may happen on a different thread than the acquire (the cancel lock is
 * released by the callee). */
typedef uintptr_t plat_lockword;
void plat_lock_init(volatile plat_lockword *w);
void plat__lock_acquire(volatile plat_lockword *w); /* contended or explore: out of line */
void plat__lock_release(volatile plat_lockword *w);
void plat__lock_wake(volatile plat_lockword *w);
/* Native lock word: its low 32 bits are the lock (0 free, 1 held) and the futex word. Sleepers
 * are counted outside the word, in a table of counters hashed by the lock's address, so a
 * release touches the word exactly once: the thread that takes the lock next may free it at
 * once (an object freed right after its lock is dropped). Release is a plain release-store
 * when the process could register for asymmetric fences (membarrier, decided once before
 * main): a sleeper pays a process-wide barrier after counting itself, so the releaser's load
 * of the count needs no fence of its own (see platform_native.c). Otherwise release exchanges,
 * which is a full fence. */
extern int plat__lock_asym __attribute__((visibility("hidden")));
extern volatile uint32_t plat__lock_sleepers[64] __attribute__((visibility("hidden")));
static inline volatile uint32_t *plat__lock_low(volatile plat_lockword *w)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (volatile uint32_t *)w + (sizeof(plat_lockword) / 4 - 1);
#else
    return (volatile uint32_t *)w;
#endif
}
/* The sleeper counter of the lock at w (never freed: safe to read after the release). */
static inline volatile uint32_t *plat__lock_count(const volatile plat_lockword *w)
{
    return &plat__lock_sleepers[((uint64_t)(uintptr_t)w * 0x9E3779B97F4A7C15ull) >> 58];
}
static inline void plat_lock_acquire(volatile plat_lockword *w)
{
    uint32_t free_ = 0; /* inline uncontended native acquire: one CAS 0 -> 1 */
    if (!PLAT_NATIVE_NOW() || !__atomic_compare_exchange_n(plat__lock_low(w), &free_, 1, false,
                                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        plat__lock_acquire(w);
}
static inline void plat_lock_release(volatile plat_lockword *w)
{
    if (!PLAT_NATIVE_NOW() || !plat__lock_asym) {
        plat__lock_release(w);
        return;
    }
    volatile uint32_t *count = plat__lock_count(w); /* computed before w may be freed */
    __atomic_store_n(plat__lock_low(w), 0, __ATOMIC_RELEASE);
    /* Compiler-only barrier: a sleeper's membarrier orders this load after the store. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(__atomic_load_n(count, __ATOMIC_RELAXED) != 0, 0)) plat__lock_wake(w);
}
bool plat_lock_try(volatile plat_lockword *w);
/* A lock taken both by threads at a low emulated IRQL and by DPCs (the IRP adapter's queue: a
 * dispatch routine at PASSIVE_LEVEL, a DPC completing or cancelling). Under the explorer a DPC
 * runs on the virtual CPU of the thread it preempts, so if that thread held such a lock at
 * PASSIVE_LEVEL the DPC would wait for it forever: a deadlock no NT machine can have (NT holds
 * spin locks at DISPATCH_LEVEL, which keeps DPCs off the CPU). In explore mode these raise the
 * holder's irql to 2 (DISPATCH_LEVEL: the explorer keeps its vCPU while it holds) for the hold,
 * keeping the previous value in *saved (owned by the holder: a field next to the lock, written
 * after the acquire, read before the release); the raise is not a scheduling point (the
 * acquire is). Natively they are plat_lock_acquire/release and neither the irql nor *saved is
 * touched: DPCs run on their own threads there, and nothing inside these holds asks for the
 * IRQL. *saved == PLAT_LOCK_NO_RAISE (set once, before the lock is used): never raise — a lock
 * of plain threads, whose preemption while holding it the explorer must keep exploring (a
 * raising lock's *saved only ever holds IRQLs below 2). */
#define PLAT_LOCK_NO_RAISE 0xFF
static inline void plat_lock_acquire_cpu(volatile plat_lockword *w, uint8_t *saved)
{
    if (PLAT_NATIVE_NOW()) {
        plat_lock_acquire(w);
        return;
    }
    if (*saved == PLAT_LOCK_NO_RAISE) {
        plat_lock_acquire(w);
        return;
    }
    plat_thread *t = plat_self();
    uint8_t old = t->irql;
    if (old < 2) t->irql = 2;
    plat_lock_acquire(w);
    *saved = old;
}
static inline void plat_lock_release_cpu(volatile plat_lockword *w, const uint8_t *saved)
{
    if (PLAT_NATIVE_NOW()) {
        plat_lock_release(w);
        return;
    }
    uint8_t old = *saved; /* read while still holding (PLAT_LOCK_NO_RAISE: nothing to lower) */
    plat_lock_release(w);
    if (old < 2) plat_self()->irql = old;
}
bool plat_lock_is_held(const volatile plat_lockword *w); /* racy snapshot, diagnostics only */

/* Bookkeeping lock (see "bookkeeping atomics" above): a leaf lock that guards instrumentation
 * only (trace ring, name tables, report store) and is never a scheduling point. Native mode:
 * the same lock as plat_lock_*. Explore mode: a plain flag — nothing inside the critical
 * section may be a scheduling point (no plat_* atomic, lock, wait or point), so it is always
 * free when taken; finding it held is an internal error (plat_panic). */
void plat_bk_lock_acquire(volatile plat_lockword *w);
void plat_bk_lock_release(volatile plat_lockword *w);

/* ------------------------------------------------------------------ wait / wake (futex-like) */

#define PLAT_FOREVER INT64_MAX

enum plat_wait_result { PLAT_WOKEN = 0, PLAT_TIMEDOUT = 1 };

/* If *addr == expected, block until plat_wake(addr) or the deadline; returns PLAT_WOKEN (also
 * when *addr differed or on a spurious wake-up: callers re-check their condition) or
 * PLAT_TIMEDOUT. The check and the block are atomic with respect to plat_wake. */
int plat_wait(volatile uint32_t *addr, uint32_t expected, int64_t deadline_ns);

/* Wake up to n waiters blocked on addr (n = INT32_MAX: all). */
void plat_wake(volatile uint32_t *addr, int32_t n);

/* Per-thread parking with a permit (no lost wake-ups): plat_unpark(t) before plat_park()
 * makes the next park return at once. Returns PLAT_WOKEN or PLAT_TIMEDOUT. */
int plat_park(int64_t deadline_ns);
void plat_unpark(plat_thread *t);

/* ------------------------------------------------------------------ time and yielding */

/* Monotonic nanoseconds (virtual in explore mode: advances only when a timed wait expires or
 * a thread sleeps). */
int64_t plat_now_ns(void);

/* Wall clock as NT system time: 100 ns units since 1601-01-01 (virtual in explore mode). */
int64_t plat_system_time(void);

/* Sleep for ns (explore: advances virtual time). A scheduling point. */
void plat_sleep_ns(int64_t ns);

/* Give other threads a chance to run. A scheduling point. */
void plat_yield(void);

/* A labelled scheduling point. Upper layers call it at the operations the explorer must be
 * able to interleave that are not already a lock, atomic or wait (IoCompleteRequest,
 * IoMarkIrpPending, StartIo entry, …). `op` is a static string naming the operation, `obj`
 * the object it acts on (for swimlanes and for the explorer's independence of steps: steps on
 * different objects commute). obj NULL means it acts on no shared object (ke's IRQL change):
 * such a step commutes with every other thread's step. Native mode: a no-op unless an
 * injection hook is set (the verifier's delay injection). */
void plat__point(const char *op, const void *obj);
/* Set by plat_set_point_hook (below); read inline so a native point costs a load and a branch. */
extern void (*volatile plat__point_hook)(const char *op, const void *obj)
    __attribute__((visibility("hidden")));
static inline void plat_point(const char *op, const void *obj)
{
    if (PLAT_NATIVE_NOW() && !__atomic_load_n(&plat__point_hook, __ATOMIC_RELAXED)) return;
    plat__point(op, obj); /* explore mode, or the injection hook is set */
}

/* Name the calling thread's *next* scheduling point without adding one: in explore mode the next
 * plat_* atomic, lock, wait or point of this thread appears in swimlanes as `op obj` (the
 * scheduler still treats it as the operation on its real address). For an API whose first
 * synchronising step is an atomic ("IoSetCancelRoutine" = one exchange): a separate plat_point
 * in front of it would be a second, redundant point. Native mode: the same as plat_point (the
 * injection hook sees it). */
void plat__label(const char *op, const void *obj);
static inline void plat_label(const char *op, const void *obj)
{
    if (PLAT_NATIVE_NOW() && !__atomic_load_n(&plat__point_hook, __ATOMIC_RELAXED)) return;
    plat__label(op, obj);
}

/* Native-mode hook called by plat_point and plat_label (NULL = none). The explorer ignores it. */
typedef void (*plat_point_hook)(const char *op, const void *obj);
void plat_set_point_hook(plat_point_hook hook);

/* ------------------------------------------------------------------ memory */

/* Runtime allocations. In explore mode allocations are tracked per execution and released when
 * the execution ends, so a discarded schedule leaks nothing. plat_fail_allocs(n) makes the
 * next n allocations fail (returns NULL), for testing out-of-memory paths. */
void *plat_alloc(size_t n);
void *plat_calloc(size_t count, size_t n);
void plat_free(void *p);
void plat_fail_allocs(int n);

/* ------------------------------------------------------------------ per-execution state */

/* Layers with process-global state register a reset function. The explore backend calls every
 * registered function (in registration order) before each execution starts, after the
 * previous execution's memory has been released, so each schedule starts from a fresh runtime.
 * Native mode calls them from plat_reset_all() (tests that want a fresh runtime). */
typedef void (*plat_reset_fn)(void);
void plat_on_reset(plat_reset_fn fn);
void plat_reset_all(void);

/* Layers that own native service threads (DPC and timer threads, the verifier's watchdog)
 * register a function that stops them and waits until they have ended; it must be idempotent
 * and cheap when nothing runs. plat_quiesce_all() runs them in registration order: the runtime
 * shutdown calls it, and so does the explorer before every execution — a native thread still
 * running while fibers execute would act on the explorer's state from a foreign OS thread.
 * The threads restart on demand. */
void plat_on_quiesce(plat_reset_fn fn);
void plat_quiesce_all(void);

/* ------------------------------------------------------------------ diagnostics */

/* Abort the process after printing msg (internal invariant broken; never used for driver
 * bugs, which are reports). */
_Noreturn void plat_panic(const char *msg);

#ifdef __cplusplus
}
#endif

#endif
