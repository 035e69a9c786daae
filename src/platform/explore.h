/* Internal: the explore backend of the platform layer — run one execution of a scenario under a
 * deterministic scheduler.
 *
 * An execution runs entry(arg) as simulated thread 1 ("main") on a fiber. Every platform call
 * that synchronises (atomics, lock acquire, wait/wake, park/unpark, thread start/join/exit,
 * sleep, yield, plat_point) is a scheduling point: the running fiber stops before the
 * operation and the scheduler asks the chooser which enabled thread takes the next step. Only
 * one fiber runs at a time, all on the calling OS thread; time is virtual.
 *
 * Which threads are enabled at a point:
 *   - a thread about to do an ordinary operation;
 *   - a thread about to acquire a lock only while the lock is free (a waiter is disabled until
 *     the release — never a busy spin, so lock-heavy code cannot look like a livelock);
 *   - a thread blocked in plat_wait/plat_park once woken; while not woken, as a *timeout*
 *     choice if it has a deadline and that deadline is the earliest of all timed waiters
 *     (virtual time stays monotonic; choosing it advances time to the deadline);
 *   - a thread in plat_thread_join once the target has exited;
 *   - a thread that called plat_yield only after another thread has taken a step (or if nobody
 *     else can run) — yield means "let the others go first", which keeps polling loops finite;
 *   - virtual CPUs: while a thread on vCPU k holds its CPU at IRQL >= DISPATCH_LEVEL (running,
 *     or spinning for a lock), no other thread of vCPU k is enabled. Blocking waits give the
 *     CPU up.
 * Lock release is not a scheduling point: any step that could be ordered before it is
 * independent of it (every thread that wants the lock is disabled until it happens).
 *
 * The execution ends when every non-system thread has exited (system threads — DPC, timer,
 * worker — are discarded wherever they are), when no thread is enabled while a non-system
 * thread is still alive (deadlock), when the step bound is exceeded (livelock), when the
 * scenario or the verifier calls plat_explore_fail(), or when the chooser returns -1.
 * Memory from plat_alloc is per execution and released when it ends; every function
 * registered with plat_on_reset() runs before it starts.
 *
 * One explorer runs at a time per process. Not for use from native threads during a run. */
#ifndef IRPK_PLATFORM_EXPLORE_H
#define IRPK_PLATFORM_EXPLORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/platform.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PLAT_EXPLORE_MAX_THREADS 64

/* How a chosen thread proceeds. */
enum plat_explore_choice_kind {
    PLAT_EXC_RUN = 0, /* performs its pending operation */
    PLAT_EXC_TIMEOUT, /* a timed wait/park/sleep expires; virtual time advances */
};

typedef struct plat_explore_choice {
    uint32_t tid;    /* plat_thread.id */
    uint8_t kind;    /* enum plat_explore_choice_kind */
    const char *op;  /* the operation the thread is stopped before ("xchg", "lock_acquire", …) */
    const void *obj; /* the object it acts on (address), NULL if none */
} plat_explore_choice;

/* One decision: at least two choices. */
typedef struct plat_explore_decision {
    uint64_t step;                      /* steps taken so far in this execution */
    uint32_t current;                   /* thread that ran the last step (0 at the start) */
    bool current_enabled;               /* choosing another RUN thread is a preemption */
    unsigned n;                         /* number of choices, >= 2 */
    const plat_explore_choice *choices; /* ordered by tid */
} plat_explore_decision;

/* Whether taking choices[i] costs a preemption: the running thread could have continued, or a
 * timeout fires while some thread could still run (an early expiry is a context switch the
 * program did not ask for). */
static inline bool plat_explore_is_preemption(const plat_explore_decision *d, unsigned i)
{
    if (d->current_enabled && d->choices[i].tid != d->current) return true;
    if (d->choices[i].kind != PLAT_EXC_TIMEOUT) return false;
    for (unsigned j = 0; j < d->n; j++)
        if (d->choices[j].kind == PLAT_EXC_RUN) return true;
    return false;
}

/* Returns the index of the choice to take, or -1 to abandon the execution (outcome ABORTED).
 * Called on a fiber stack (keep it small: no deep recursion, no large locals). */
typedef int (*plat_explore_chooser)(void *ctx, const plat_explore_decision *d);

typedef struct plat_explore_config {
    plat_thread_fn entry;
    void *arg;
    plat_explore_chooser choose;
    void *choose_ctx;
    unsigned vcpus;     /* 0: 2 */
    uint64_t max_steps; /* livelock bound; 0: 100 000 */
    bool log_steps;     /* record every step with object descriptions (swimlanes) */
} plat_explore_config;

typedef enum plat_explore_status {
    PLAT_EXO_OK = 0,   /* every non-system thread exited, no failure */
    PLAT_EXO_FAILED,   /* plat_explore_fail(): a scenario assertion or a verifier report */
    PLAT_EXO_DEADLOCK, /* no thread enabled, some non-system thread alive */
    PLAT_EXO_LIVELOCK, /* step bound exceeded */
    PLAT_EXO_ABORTED,  /* the chooser returned -1 */
} plat_explore_status;

#define PLAT_EXPLORE_DESC 48

/* One step of a logged execution. */
typedef struct plat_explore_step {
    uint32_t tid;
    uint8_t vcpu, irql, kind; /* kind: enum plat_explore_choice_kind */
    bool preempted;           /* this step was a preemption */
    const char *op;           /* as shown: a plat_label, else the operation */
    const void *obj;          /* its object as shown */
    const void *addr;         /* what the operation really acts on (lock word, atomic, …) */
    char obj_name[PLAT_EXPLORE_DESC]; /* describer output before the step ("IRP#3 queued") */
    char obj_after[PLAT_EXPLORE_DESC]; /* … and after it */
} plat_explore_step;

typedef struct plat_explore_outcome {
    plat_explore_status status;
    char what[64];     /* failure kind: "assert", a verifier check id, "deadlock", "livelock" */
    char detail[512];  /* human-readable message */
    uint64_t steps;
    uint64_t decisions;   /* points with >= 2 choices */
    unsigned preemptions; /* by plat_explore_is_preemption */
    uint64_t hash;        /* trace hash: thread, operation and choice count of every step */
    int64_t vtime_ns;     /* virtual time at the end */
    unsigned nthreads;
    char names[PLAT_EXPLORE_MAX_THREADS][PLAT_NAME_MAX]; /* by tid - 1 */
    bool system[PLAT_EXPLORE_MAX_THREADS];                /* by tid - 1: a system thread */
    bool exited[PLAT_EXPLORE_MAX_THREADS];                /* by tid - 1: ran to its end */
    const plat_explore_step *log; /* log_steps only; valid until the next run */
    size_t nlog;
} plat_explore_outcome;

/* Run one execution. Must be called from a native thread, never from inside an execution. */
void plat_explore_run(const plat_explore_config *cfg, plat_explore_outcome *out);

/* Fail the current execution (called by scenarios and the verifier). From a simulated thread
 * the execution stops at once and this does not return; from elsewhere in explore mode (end
 * checks) the failure is recorded and the call returns. `what` names the failure kind. In
 * native mode it prints the failure to stderr and aborts. */
void plat_explore_fail(const char *what, const char *detail);

/* Object describers for swimlanes: fill buf with a short description of obj ("IRP#3 queued")
 * and return true, or return false if obj is not theirs. Called with scheduling suspended, so
 * they may read the object freely but must not block. Objects nobody describes are named
 * "obj#N" in order of first appearance. At most 8; registering the same one twice is a no-op. */
typedef bool (*plat_explore_describer)(const void *obj, char *buf, size_t n);
void plat_explore_add_describer(plat_explore_describer fn);

/* Checks run when an execution ends with every non-system thread exited, in registration
 * order, in explore mode but outside any simulated thread (no scheduling). They call
 * plat_explore_fail() to report e.g. a lost IRP. At most 8. */
typedef void (*plat_explore_end_check)(void);
void plat_explore_add_end_check(plat_explore_end_check fn);

#ifdef __cplusplus
}
#endif

#endif
