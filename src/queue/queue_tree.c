/* Ordered structures of the request queue: a treap keyed by (key, seq) and the deadline heap.
 * Callers hold the queue lock. */
#include "queue/queue_internal.h"

static bool tn_less(const tnode *a, const tnode *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static tnode *rotate_right(tnode *n)
{
    tnode *l = n->l;
    n->l = l->r;
    l->r = n;
    return l;
}

static tnode *rotate_left(tnode *n)
{
    tnode *r = n->r;
    n->r = r->l;
    r->l = n;
    return r;
}

static tnode *insert_at(tnode *root, tnode *n)
{
    if (!root) return n;
    if (tn_less(n, root)) {
        root->l = insert_at(root->l, n);
        if (root->l->prio > root->prio) root = rotate_right(root);
    } else {
        root->r = insert_at(root->r, n);
        if (root->r->prio > root->prio) root = rotate_left(root);
    }
    return root;
}

void tn_insert(tnode **root, tnode *n)
{
    n->l = n->r = NULL;
    *root = insert_at(*root, n);
}

static tnode *merge(tnode *a, tnode *b)
{
    if (!a) return b;
    if (!b) return a;
    if (a->prio > b->prio) {
        a->r = merge(a->r, b);
        return a;
    }
    b->l = merge(a, b->l);
    return b;
}

static tnode *remove_at(tnode *root, tnode *n)
{
    if (!root) plat_panic("queue: tree node not found");
    if (root == n) return merge(n->l, n->r);
    if (tn_less(n, root))
        root->l = remove_at(root->l, n);
    else
        root->r = remove_at(root->r, n);
    return root;
}

void tn_remove(tnode **root, tnode *n)
{
    *root = remove_at(*root, n);
    n->l = n->r = NULL;
}

tnode *tn_min(tnode *root)
{
    if (!root) return NULL;
    while (root->l) root = root->l;
    return root;
}

tnode *tn_lower_bound(tnode *root, uint64_t key)
{
    tnode *best = NULL;
    while (root) {
        if (root->key >= key) {
            best = root; /* candidate; a smaller (key, seq) may still be on the left */
            root = root->l;
        } else {
            root = root->r;
        }
    }
    return best;
}

tnode *tn_find(tnode *root, uint64_t key)
{
    while (root && root->key != key) root = key < root->key ? root->l : root->r;
    return root;
}

/* ------------------------------------------------------------------ deadline heap */

static void heap_set(irpk_queue *q, size_t i, qreq *r)
{
    q->heap[i] = r;
    r->heap_pos = i;
}

static void sift_up(irpk_queue *q, size_t i)
{
    qreq *r = q->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (q->heap[p]->deadline <= r->deadline) break;
        heap_set(q, i, q->heap[p]);
        i = p;
    }
    heap_set(q, i, r);
}

static void sift_down(irpk_queue *q, size_t i)
{
    qreq *r = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->heap_n) break;
        if (c + 1 < q->heap_n && q->heap[c + 1]->deadline < q->heap[c]->deadline) c++;
        if (r->deadline <= q->heap[c]->deadline) break;
        heap_set(q, i, q->heap[c]);
        i = c;
    }
    heap_set(q, i, r);
}

int heap_reserve(irpk_queue *q)
{
    if (q->heap_n < q->heap_cap) return 0;
    size_t cap = q->heap_cap ? q->heap_cap * 2 : 64;
    qreq **h = plat_alloc(cap * sizeof *h);
    if (!h) return IRPK_QE_NOMEM;
    for (size_t i = 0; i < q->heap_n; i++) h[i] = q->heap[i];
    plat_free(q->heap);
    q->heap = h;
    q->heap_cap = cap;
    return 0;
}

void heap_push(irpk_queue *q, qreq *r)
{
    /* heap_reserve() ran during reserve(), so there is room. */
    heap_set(q, q->heap_n++, r);
    sift_up(q, r->heap_pos);
    if (r->heap_pos == 0) {
        /* New earliest deadline: the timer thread sleeps until the old one, wake it. Waking
         * under the queue lock is safe: plat_wake never blocks. */
        plat_fetch_add32((volatile int32_t *)&q->timer_word, 1);
        plat_wake(&q->timer_word, 1);
    }
}

void heap_remove(irpk_queue *q, qreq *r)
{
    size_t i = r->heap_pos;
    if (i == NO_HEAP) return;
    r->heap_pos = NO_HEAP;
    qreq *last = q->heap[--q->heap_n];
    if (last == r) return;
    heap_set(q, i, last);
    sift_up(q, i);
    sift_down(q, last->heap_pos);
}
