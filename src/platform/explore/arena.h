/* Internal to the explore backend: the per-execution allocator behind plat_alloc.
 * Blocks come from pooled 1 MiB chunks (size classes with free lists, 16-byte aligned); larger
 * requests use malloc and are tracked. arena_release_all() drops every block of the execution
 * at once and keeps the chunks for the next one, so a discarded schedule leaks nothing and
 * steady-state exploration does no system allocation. Only the explorer's OS thread uses it. */
#ifndef IRPK_PLATFORM_EXPLORE_ARENA_H
#define IRPK_PLATFORM_EXPLORE_ARENA_H

#include <stddef.h>

void *arena_alloc(size_t n);
void arena_free(void *p);
void arena_release_all(void);

#endif
