/* Baselines for bench_queue: what people write by hand — a pthread mutex + condvar queue
 * (FIFO, or keyed with a sorted insert) — and a bare sorted linked list. */
#ifndef BENCH_QUEUE_BASELINE_H
#define BENCH_QUEUE_BASELINE_H

#include <stdint.h>

typedef struct bnode {
    struct bnode *prev, *next;
    uint64_t key;
    void *ctx;
    int cancelled;
} bnode;

typedef struct mcq mcq; /* mutex + condvar queue */
mcq *mcq_new(int sorted);
void mcq_free(mcq *q);
void mcq_push(mcq *q, bnode *n);          /* FIFO, or sorted by key (linear insert) */
bnode *mcq_pop(mcq *q);                   /* blocks while empty */
bnode *mcq_pop_key(mcq *q, uint64_t k);   /* first with key >= k, wrapping; NULL if empty */
int mcq_cancel(mcq *q, bnode *n);         /* unlink a queued node; 0 if it was not queued */
bnode *mcq_head(mcq *q);                  /* the list sentinel, for prefilling before use */
/* The cancel row's baseline (bench_queue, bench_floor): n times push a node into a new FIFO
 * queue, cancel it and call done for it; nanoseconds per request. */
double mcq_cancel_loop_ns(long n, void (*done)(bnode *));
/* The keyed rows' baseline (bench_queue, bench_floor): ops times push spare with a random key
 * (next() % range) into the sorted queue m, take the first key >= a random k (wrapping) as the
 * next spare and call done for it; nanoseconds per operation. */
double mcq_keyed_loop_ns(mcq *m, bnode *spare, long ops, unsigned range, uint64_t (*next)(void),
                         void (*done)(bnode *));

/* Sorted doubly linked list without any lock (the StartIo device-queue data structure). */
typedef struct slist {
    bnode head;
} slist;
void slist_init(slist *l);
void slist_insert(slist *l, bnode *n);
bnode *slist_pop_key(slist *l, uint64_t k);

#endif
