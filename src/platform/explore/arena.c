/* Per-execution allocator (see arena.h). Under ASan, released and freed blocks are poisoned so
 * a use after free of runtime memory inside an execution is still reported. */
#include "platform/explore/arena.h"

#include <stdint.h>
#include <stdlib.h>

#include "platform/platform.h"

#if defined(IRPK_SANITIZER_ASAN)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CHUNK_BYTES (1u << 20)
#define HDR 16u
#define MIN_CLASS 5  /* 32-byte blocks, header included */
#define MAX_CLASS 16 /* 64 KiB blocks; larger requests go to malloc */
#define BIG_CLASS 0xFFu

typedef struct chunk {
    struct chunk *next;
    size_t used;
    _Alignas(16) char data[CHUNK_BYTES];
} chunk;

typedef struct hdr { /* 16 bytes in front of every block */
    uint32_t cls;
    uint32_t pad;
    void *next; /* free list link, or the big-block list link */
} hdr;

typedef struct big {
    struct big *prev, *next;
    hdr h; /* keeps the payload 16-byte aligned: sizeof(big) == 32 */
} big;

static chunk *chunks;  /* all chunks, the one being filled first */
static chunk *current; /* chunk being bump-allocated */
static hdr *free_lists[MAX_CLASS + 1];
static big *bigs;

static unsigned size_class(size_t n)
{
    unsigned c = MIN_CLASS;
    while (((size_t)1 << c) < n + HDR) c++;
    return c;
}

static chunk *next_chunk(void)
{
    chunk *c = current ? current->next : chunks;
    if (!c) {
        c = malloc(sizeof *c);
        if (!c) return NULL;
        c->next = NULL;
        /* Append so chunk order (and thus block addresses) repeats across executions. */
        chunk **tail = &chunks;
        while (*tail) tail = &(*tail)->next;
        *tail = c;
        POISON(c->data, CHUNK_BYTES);
    }
    c->used = 0;
    return c;
}

static void *bump(unsigned cls)
{
    size_t n = (size_t)1 << cls;
    if (!current || current->used + n > CHUNK_BYTES) {
        chunk *c = next_chunk();
        if (!c) return NULL;
        current = c;
    }
    hdr *h = (hdr *)(current->data + current->used);
    current->used += n;
    UNPOISON(h, HDR);
    h->cls = cls;
    return h;
}

static void *big_alloc(size_t n)
{
    big *b = malloc(sizeof *b + n);
    if (!b) return NULL;
    b->h.cls = BIG_CLASS;
    b->prev = NULL;
    b->next = bigs;
    if (bigs) bigs->prev = b;
    bigs = b;
    return b + 1;
}

void *arena_alloc(size_t n)
{
    if (n > ((size_t)1 << MAX_CLASS) - HDR) return big_alloc(n);
    unsigned cls = size_class(n);
    hdr *h = free_lists[cls];
    if (h)
        free_lists[cls] = h->next;
    else if (!(h = bump(cls)))
        return NULL;
    UNPOISON(h + 1, ((size_t)1 << cls) - HDR);
    return h + 1;
}

static int in_chunks(const void *p)
{
    /* Only chunks up to `current` hold live blocks in this execution. */
    for (chunk *c = chunks; c; c = c->next) {
        if ((const char *)p > c->data && (const char *)p < c->data + c->used) return 1;
        if (c == current) break;
    }
    return 0;
}

static int free_big(void *p)
{
    for (big *b = bigs; b; b = b->next) {
        if ((void *)(b + 1) != p) continue;
        if (b->prev) b->prev->next = b->next; else bigs = b->next;
        if (b->next) b->next->prev = b->prev;
        free(b);
        return 1;
    }
    return 0;
}

void arena_free(void *p)
{
    if (in_chunks(p)) {
        hdr *h = (hdr *)p - 1;
        POISON(p, ((size_t)1 << h->cls) - HDR);
        h->next = free_lists[h->cls];
        free_lists[h->cls] = h;
        return;
    }
    /* Not an execution block: a big block, or memory malloc'ed before the run. */
    if (!free_big(p)) free(p);
}

void arena_release_all(void)
{
    while (bigs) {
        big *b = bigs;
        bigs = b->next;
        free(b);
    }
    for (unsigned i = 0; i <= MAX_CLASS; i++) free_lists[i] = NULL;
    /* Poisoned until reused: a layer that keeps a pointer across executions is caught by ASan. */
    for (chunk *c = chunks; c && current; c = c->next) {
        POISON(c->data, c->used);
        if (c == current) break;
    }
    current = NULL;
}
