/* Hand-written baselines (benchmark code: bench/ may use pthreads directly). */
#include "baseline.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct mcq {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    bnode head; /* circular sentinel */
    int sorted;
};

static void unlink_node(bnode *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static void insert_before(bnode *pos, bnode *n)
{
    n->prev = pos->prev;
    n->next = pos;
    pos->prev->next = n;
    pos->prev = n;
}

static bnode *first_at_or_above(bnode *head, uint64_t k)
{
    for (bnode *p = head->next; p != head; p = p->next)
        if (p->key >= k) return p;
    return head->next != head ? head->next : NULL; /* wrap to the smallest */
}

static void sorted_insert(bnode *head, bnode *n)
{
    bnode *p = head->next;
    while (p != head && p->key <= n->key) p = p->next; /* FIFO among equal keys */
    insert_before(p, n);
}

mcq *mcq_new(int sorted)
{
    mcq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->nonempty, NULL);
    q->head.prev = q->head.next = &q->head;
    q->sorted = sorted;
    return q;
}

void mcq_free(mcq *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->nonempty);
    free(q);
}

void mcq_push(mcq *q, bnode *n)
{
    pthread_mutex_lock(&q->lock);
    if (q->sorted)
        sorted_insert(&q->head, n);
    else
        insert_before(&q->head, n);
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
}

bnode *mcq_pop(mcq *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->head.next == &q->head) pthread_cond_wait(&q->nonempty, &q->lock);
    bnode *n = q->head.next;
    unlink_node(n);
    pthread_mutex_unlock(&q->lock);
    return n;
}

bnode *mcq_pop_key(mcq *q, uint64_t k)
{
    pthread_mutex_lock(&q->lock);
    bnode *n = first_at_or_above(&q->head, k);
    if (n) unlink_node(n);
    pthread_mutex_unlock(&q->lock);
    return n;
}

int mcq_cancel(mcq *q, bnode *n)
{
    pthread_mutex_lock(&q->lock);
    int queued = n->next != n;
    if (queued) {
        unlink_node(n);
        n->cancelled = 1;
    }
    pthread_mutex_unlock(&q->lock);
    return queued;
}

bnode *mcq_head(mcq *q) { return &q->head; }

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

double mcq_cancel_loop_ns(long n, void (*done)(bnode *))
{
    mcq *m = mcq_new(0);
    if (!m) abort();
    bnode node = {0};
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        mcq_push(m, &node);
        if (mcq_cancel(m, &node)) done(&node); /* an indirect call, as the queues' callbacks */
    }
    double ns = (now_ns() - t0) / (double)n;
    mcq_free(m);
    return ns;
}

double mcq_keyed_loop_ns(mcq *m, bnode *spare, long ops, unsigned range, uint64_t (*next)(void),
                         void (*done)(bnode *))
{
    double t0 = now_ns();
    for (long i = 0; i < ops; i++) {
        spare->key = next() % range;
        mcq_push(m, spare);
        spare = mcq_pop_key(m, next() % range);
        done(spare); /* an indirect call, as the queues' callbacks */
    }
    return (now_ns() - t0) / (double)ops;
}

void slist_init(slist *l) { l->head.prev = l->head.next = &l->head; }
void slist_insert(slist *l, bnode *n) { sorted_insert(&l->head, n); }

bnode *slist_pop_key(slist *l, uint64_t k)
{
    bnode *n = first_at_or_above(&l->head, k);
    if (n) unlink_node(n);
    return n;
}
