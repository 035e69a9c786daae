/* Internal: how the platform front end hands calls to the explore backend.
 *
 * Every public platform function first checks plat_explore_ops; when the explorer is running an
 * execution it points at the explore backend's table and the call is forwarded there, otherwise
 * the native implementation runs. The pointer is written only by plat_explore_begin/end, which
 * the explorer calls while no other runtime thread is running, so reading it unsynchronised is
 * safe. */
#ifndef IRPK_PLATFORM_BACKEND_H
#define IRPK_PLATFORM_BACKEND_H

#include "platform/platform.h"

typedef struct plat_ops {
    plat_thread *(*thread_start)(plat_thread_fn fn, void *arg, const char *name, unsigned flags);
    void (*thread_join)(plat_thread *t);
    void (*thread_exit)(void); /* must not return */
    plat_thread *(*self)(void);

    /* Every atomic goes through one entry: a scheduling point, then the operation (done by the
     * front end with plain memory accesses — one fiber runs at a time). */
    void (*atomic_point)(const char *op, const volatile void *addr);

    void (*lock_acquire)(volatile plat_lockword *w);
    bool (*lock_try)(volatile plat_lockword *w);
    void (*lock_release)(volatile plat_lockword *w);

    int (*wait)(volatile uint32_t *addr, uint32_t expected, int64_t deadline_ns);
    void (*wake)(volatile uint32_t *addr, int32_t n);
    int (*park)(int64_t deadline_ns);
    void (*unpark)(plat_thread *t);

    int64_t (*now_ns)(void);
    void (*sleep_ns)(int64_t ns);
    void (*yield)(void);
    void (*point)(const char *op, const void *obj);

    void *(*alloc)(size_t n);
    void (*free)(void *p);

    void (*label)(const char *op, const void *obj); /* names the thread's next point */
} plat_ops;

extern const plat_ops *plat_explore_ops;

/* Shared helpers the backends use. */
plat_thread *plat__thread_record_new(const char *name, unsigned flags);
void plat__thread_record_free(plat_thread *t);
void plat__run_exit_hooks(plat_thread *t);
bool plat__alloc_should_fail(void);
/* The wall-clock offset explore mode adds to virtual time for plat_system_time(). */
#define PLAT_EXPLORE_EPOCH_100NS 133000000000000000LL

#endif
