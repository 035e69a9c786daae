/* irpkit threads: start, join and name threads that use the runtime. Natively these are OS
 * threads; inside an exploration (irpkit/explore.h) they are simulated threads run by the
 * deterministic scheduler. Scenario code uses this API so the same function runs both ways.
 * PsCreateSystemThread maps onto it. */
#ifndef IRPKIT_THREAD_H
#define IRPKIT_THREAD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct irpk_thread irpk_thread;
typedef void (*irpk_thread_fn)(void *arg);

/* Start fn(arg) on a new thread; name (may be NULL) shows in traces and swimlanes. Returns
 * NULL if the thread cannot be created. Every started thread is joined exactly once. */
irpk_thread *irpk_thread_start(irpk_thread_fn fn, void *arg, const char *name);

/* Wait for t to finish and release it. */
void irpk_thread_join(irpk_thread *t);

/* The calling thread (any thread, including ones irpkit did not start). */
irpk_thread *irpk_thread_self(void);

/* Name and id (1, 2, 3 … in creation order; deterministic inside an exploration). */
const char *irpk_thread_name(const irpk_thread *t);
uint32_t irpk_thread_id(const irpk_thread *t);

/* Let other threads run (a scheduling point inside an exploration). */
void irpk_thread_yield(void);

#ifdef __cplusplus
}
#endif

#endif
