/* irpkit/thread.h over the platform layer: an irpk_thread is a plat_thread. */
#include "irpkit/thread.h"

#include "platform/platform.h"

irpk_thread *irpk_thread_start(irpk_thread_fn fn, void *arg, const char *name)
{
    return (irpk_thread *)plat_thread_start(fn, arg, name, 0);
}

void irpk_thread_join(irpk_thread *t) { plat_thread_join((plat_thread *)t); }

irpk_thread *irpk_thread_self(void) { return (irpk_thread *)plat_self(); }

const char *irpk_thread_name(const irpk_thread *t) { return ((const plat_thread *)t)->name; }

uint32_t irpk_thread_id(const irpk_thread *t) { return ((const plat_thread *)t)->id; }

void irpk_thread_yield(void) { plat_yield(); }
