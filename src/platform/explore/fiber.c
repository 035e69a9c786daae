/* Fibers for the explore backend: pooled guarded stacks, the switch, sanitizer annotations.
 * One explorer runs at a time (the explore backend is process-global), so the pool needs no
 * lock: it is touched only by the OS thread running plat_explore_run(). */
#include "platform/explore/fiber.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "platform/platform.h"

#if defined(IRPK_SANITIZER_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define FIBER_STACK_SIZE (1024u * 1024u) /* ASan frames carry redzones */
#else
#define FIBER_STACK_SIZE (256u * 1024u)
#endif
#if defined(IRPK_SANITIZER_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

static plat_fiber *pool;
static __thread plat_fiber host;
static __thread int host_ready;

/* ------------------------------------------------------------------ sanitizer annotations */

static void san_before_switch(plat_fiber *from, plat_fiber *to, int leaving_for_good)
{
#if defined(IRPK_SANITIZER_ASAN)
    /* NULL save slot: ASan may free the fake stack of a fiber that never resumes. */
    __sanitizer_start_switch_fiber(leaving_for_good ? NULL : &from->asan_fake_stack, to->stack,
                                   to->size);
#else
    (void)from, (void)leaving_for_good;
#endif
#if defined(IRPK_SANITIZER_TSAN)
    /* flags 0: the switch synchronises, so TSan sees fibers as ordered, like the scheduler. */
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#else
    (void)to;
#endif
}

static void san_after_switch(plat_fiber *self)
{
#if defined(IRPK_SANITIZER_ASAN)
    __sanitizer_finish_switch_fiber(self ? self->asan_fake_stack : NULL, NULL, NULL);
#else
    (void)self;
#endif
}

static void san_fiber_created(plat_fiber *f)
{
#if defined(IRPK_SANITIZER_ASAN)
    /* A recycled stack may still carry redzones of frames that were abandoned mid-call. */
    __asan_unpoison_memory_region(f->stack, f->size);
#endif
#if defined(IRPK_SANITIZER_TSAN)
    /* A fresh TSan fiber per use: an abandoned one still holds its shadow call stack. */
    f->tsan_fiber = __tsan_create_fiber(0);
#else
    (void)f;
#endif
}

static void san_fiber_released(plat_fiber *f)
{
#if defined(IRPK_SANITIZER_TSAN)
    __tsan_destroy_fiber(f->tsan_fiber);
    f->tsan_fiber = NULL;
#else
    (void)f;
#endif
}

/* ------------------------------------------------------------------ host context */

plat_fiber *plat_fiber_host(void)
{
    if (host_ready) return &host;
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &addr, &size);
        pthread_attr_destroy(&a);
    }
    host.stack = addr;
    host.size = size;
#if defined(IRPK_SANITIZER_TSAN)
    host.tsan_fiber = __tsan_get_current_fiber();
#endif
    host_ready = 1;
    return &host;
}

/* ------------------------------------------------------------------ entry and switch */

static void fiber_boot(plat_fiber *f)
{
    san_after_switch(NULL);
    f->fn(f->arg);
    plat_panic("explore: a fiber function returned");
}

#ifdef IRPK_FIBER_UCONTEXT

/* makecontext passes int arguments: the fiber pointer travels as two 32-bit halves. */
static void fiber_boot_uc(unsigned hi, unsigned lo)
{
    fiber_boot((plat_fiber *)(((uintptr_t)hi << 16 << 16) | (uintptr_t)lo));
}

static void prepare_context(plat_fiber *f)
{
    uintptr_t p = (uintptr_t)f;
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = f->size;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, (void (*)(void))fiber_boot_uc, 2, (unsigned)(p >> 16 >> 16),
                (unsigned)(p & 0xffffffffu));
}

static void raw_switch(plat_fiber *from, plat_fiber *to) { swapcontext(&from->uc, &to->uc); }

#else

void irpk_fiber_switch_asm(void **save_sp, void *new_sp);
void irpk_fiber_entry_asm(void);

/* Lay out the frame irpk_fiber_switch_asm pops, returning into irpk_fiber_entry_asm, which
 * calls fiber_boot(f) with a 16-byte aligned stack. */
static void prepare_context(plat_fiber *f)
{
    uintptr_t top = ((uintptr_t)(f->stack + f->size) & ~(uintptr_t)15) - 16;
#if defined(__x86_64__)
    uint64_t *s = (uint64_t *)(top - 64);
    memset(s, 0, 64);
    s[0] = 0x1F80u | ((uint64_t)0x037Fu << 32); /* default MXCSR, x87 control word */
    s[3] = (uint64_t)(uintptr_t)f;              /* r13 */
    s[4] = (uint64_t)(uintptr_t)fiber_boot;     /* r12 */
    s[7] = (uint64_t)(uintptr_t)irpk_fiber_entry_asm;
#else /* aarch64 */
    uint64_t *s = (uint64_t *)(top - 160);
    memset(s, 0, 160);
    s[0] = (uint64_t)(uintptr_t)fiber_boot; /* x19 */
    s[1] = (uint64_t)(uintptr_t)f;          /* x20 */
    s[11] = (uint64_t)(uintptr_t)irpk_fiber_entry_asm; /* x30 */
#endif
    f->sp = s;
}

static void raw_switch(plat_fiber *from, plat_fiber *to) { irpk_fiber_switch_asm(&from->sp, to->sp); }

#endif

void plat_fiber_switch(plat_fiber *from, plat_fiber *to, int leaving_for_good)
{
    san_before_switch(from, to, leaving_for_good);
    raw_switch(from, to);
    san_after_switch(from);
}

/* ------------------------------------------------------------------ pool */

static plat_fiber *map_fiber(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t total = FIBER_STACK_SIZE + page;
    char *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    if (mprotect(base, page, PROT_NONE) != 0) { /* guard page below the stack */
        munmap(base, total);
        return NULL;
    }
    size_t rec = (sizeof(plat_fiber) + 63) & ~(size_t)63;
    plat_fiber *f = (plat_fiber *)(base + total - rec);
    memset(f, 0, sizeof *f);
    f->stack = base + page;
    f->size = total - page - rec;
    return f;
}

plat_fiber *plat_fiber_new(plat_fiber_fn fn, void *arg)
{
    plat_fiber *f = pool;
    if (f)
        pool = f->next_free;
    else if (!(f = map_fiber()))
        return NULL;
    f->next_free = NULL;
    f->fn = fn;
    f->arg = arg;
    f->asan_fake_stack = NULL;
    san_fiber_created(f);
    prepare_context(f);
    return f;
}

void plat_fiber_release(plat_fiber *f)
{
    san_fiber_released(f);
    f->next_free = pool;
    pool = f;
}
