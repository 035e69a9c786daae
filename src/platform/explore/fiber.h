/* Internal to the explore backend: fibers (user-level stacks) and the switch between them.
 *
 * The switch is a small hand-written routine for x86-64 and aarch64 (switch_*.S); every other
 * target, or a build with -DIRPK_FIBER_UCONTEXT, uses swapcontext(). Stacks come from mmap
 * with a PROT_NONE guard page below them and are pooled: an execution takes fibers from the
 * pool and returns all of them when it ends, so steady-state exploration never calls mmap.
 * Switches are annotated for ASan and TSan when those sanitizers are on. */
#ifndef IRPK_PLATFORM_EXPLORE_FIBER_H
#define IRPK_PLATFORM_EXPLORE_FIBER_H

#include <stddef.h>

#if !defined(IRPK_FIBER_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define IRPK_FIBER_UCONTEXT 1
#endif
#ifdef IRPK_FIBER_UCONTEXT
#include <ucontext.h>
#endif

typedef void (*plat_fiber_fn)(void *arg);

typedef struct plat_fiber {
#ifdef IRPK_FIBER_UCONTEXT
    ucontext_t uc;
#else
    void *sp; /* saved stack pointer while switched out */
#endif
    char *stack; /* usable stack: [stack, stack + size) */
    size_t size;
    plat_fiber_fn fn;
    void *arg;
    void *asan_fake_stack; /* ASan: fake-stack handle saved across a switch */
    void *tsan_fiber;      /* TSan: the sanitizer's fiber object */
    struct plat_fiber *next_free;
} plat_fiber;

/* The calling OS thread's own context, to switch back to at the end of an execution. */
plat_fiber *plat_fiber_host(void);

/* A fiber that will run fn(arg) when first switched to. fn must never return: a fiber ends by
 * switching away for good. Returns NULL if no stack can be mapped. */
plat_fiber *plat_fiber_new(plat_fiber_fn fn, void *arg);

/* Give a fiber that is not running back to the pool (its stack contents are discarded). */
void plat_fiber_release(plat_fiber *f);

/* Save the current context into `from` and resume `to`. `from` must be the running fiber.
 * `leaving_for_good` says `from` will never be resumed (lets ASan drop its fake stack). */
void plat_fiber_switch(plat_fiber *from, plat_fiber *to, int leaving_for_good);

#endif
