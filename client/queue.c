/*
 * queue: the FIFO of held events and its write cursor (see queue.h).
 */
#include "queue.h"

#include "pool.h"

#include <stdlib.h>

void tlm_queue_init(struct tlm_queue *q)
{
    TAILQ_INIT(&q->entries);
    q->next = NULL;
    q->off = 0;
    q->bytes = 0;
    q->count = 0;
    q->displaced = 0;
}

struct tlm_entry *tlm_queue_entry_new(struct tlm_pool *pool, size_t cap)
{
    struct tlm_slab *slab = NULL;
    struct tlm_entry *e = pool != NULL ? tlm_pool_alloc(pool, sizeof *e + cap, &slab) : NULL;
    if (e == NULL)
        e = malloc(sizeof *e + cap);
    if (e == NULL)
        return NULL;
    e->slab = slab;
    e->seq = 0;
    e->len = 0;
    e->written_ms = 0;
    e->losses = 0;
    e->written_once = 0;
    e->displaced = 0;
    e->chunk[0] = '\0';
    e->chunk_len = 0;
    return e;
}

int tlm_queue_reserve(struct tlm_queue *q, size_t len, size_t bound)
{
    if (len > bound || __atomic_load_n(&q->bytes, __ATOMIC_RELAXED) > bound - len)
        return -1;
    __atomic_add_fetch(&q->bytes, len, __ATOMIC_RELAXED);
    __atomic_add_fetch(&q->count, 1, __ATOMIC_RELAXED);
    return 0;
}

size_t tlm_queue_held_bytes(const struct tlm_queue *q)
{
    return __atomic_load_n(&q->bytes, __ATOMIC_RELAXED);
}

uint64_t tlm_queue_held_count(const struct tlm_queue *q)
{
    return __atomic_load_n(&q->count, __ATOMIC_RELAXED);
}

void tlm_queue_push(struct tlm_queue *q, struct tlm_entry *e)
{
    TAILQ_INSERT_TAIL(&q->entries, e, link);
    if (q->next == NULL) {
        q->next = e;
        q->off = 0;
    }
}

void tlm_queue_append(struct tlm_queue *q, struct tlm_entry_list *list)
{
    struct tlm_entry *first = TAILQ_FIRST(list);
    if (first == NULL)
        return;
    TAILQ_CONCAT(&q->entries, list, link);
    if (q->next == NULL) {
        q->next = first;
        q->off = 0;
    }
}

void tlm_queue_remove(struct tlm_queue *q, struct tlm_entry *e)
{
    if (q->next == e) {
        q->next = TAILQ_NEXT(e, link);
        q->off = 0;
    }
    TAILQ_REMOVE(&q->entries, e, link);
    __atomic_sub_fetch(&q->bytes, e->len, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&q->count, 1, __ATOMIC_RELAXED);
    q->displaced -= e->displaced != 0;
    tlm_queue_entry_free(e);
}

void tlm_queue_entry_free(struct tlm_entry *e)
{
    if (e == NULL)
        return;
    if (e->slab != NULL)
        tlm_pool_release(e->slab);
    else
        free(e);
}

void tlm_queue_rewind(struct tlm_queue *q, int to_head)
{
    if (to_head)
        q->next = TAILQ_FIRST(&q->entries);
    q->off = 0;
}

void tlm_queue_requeue(struct tlm_queue *q, struct tlm_entry *e)
{
    TAILQ_REMOVE(&q->entries, e, link);
    struct tlm_entry *at = q->next;
    if (at != NULL && q->off > 0)
        at = TAILQ_NEXT(at, link); /* a started entry is finished first */
    int at_cursor = at == q->next;
    while (at != NULL && at->seq < e->seq) {
        at = TAILQ_NEXT(at, link);
        at_cursor = 0;
    }
    if (at != NULL)
        TAILQ_INSERT_BEFORE(at, e, link);
    else
        TAILQ_INSERT_TAIL(&q->entries, e, link);
    if (q->next == NULL || (at_cursor && q->off == 0))
        q->next = e;
    if (!e->displaced) { /* the others keep the order they were sent in */
        e->displaced = 1;
        q->displaced++;
    }
}

int tlm_queue_done_before(const struct tlm_queue *q, uint64_t target)
{
    const struct tlm_entry *e = TAILQ_FIRST(&q->entries);
    if (q->displaced == 0) /* sorted: the head is the oldest */
        return e == NULL || e->seq >= target;
    for (; e != NULL; e = TAILQ_NEXT(e, link))
        if (e->seq < target)
            return 0;
    return 1;
}

void tlm_queue_clear(struct tlm_queue *q)
{
    struct tlm_entry *e;
    while ((e = TAILQ_FIRST(&q->entries)) != NULL) {
        TAILQ_REMOVE(&q->entries, e, link);
        tlm_queue_entry_free(e);
    }
    tlm_queue_init(q);
}
