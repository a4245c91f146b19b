/*
 * pool: queue entries carved from slabs touched ahead of need (see pool.h).
 */
#include "pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* what is not carved out stays poisoned: an overrun into the next entry
 * is caught as with separate allocations */
#define TLM_POOL_POISON(a, n) ASAN_POISON_MEMORY_REGION((a), (n))
#define TLM_POOL_UNPOISON(a, n) ASAN_UNPOISON_MEMORY_REGION((a), (n))
#else
#define TLM_POOL_POISON(a, n) ((void)(a), (void)(n))
#define TLM_POOL_UNPOISON(a, n) ((void)(a), (void)(n))
#endif

struct tlm_slab {
    struct tlm_pool *pool;
    struct tlm_slab *next; /* in the ready list */
    size_t used;           /* bytes carved (under the pool's lock, while current) */
    unsigned refs;         /* carvings not yet released, +1 while current (atomic) */
    _Alignas(16) unsigned char mem[];
};

#define TLM_POOL_ROOM (TLM_POOL_SLAB_BYTES - offsetof(struct tlm_slab, mem))

int tlm_pool_init(struct tlm_pool *p)
{
    p->current = p->ready = NULL;
    p->nready = 0;
    p->taken = 0;
    return pthread_mutex_init(&p->lock, NULL) == 0 ? 0 : -1;
}

/* An empty slab back to the ready list, or freed if enough are ready
 * (the pool's lock held). */
static void tlm_pool_recycle_locked(struct tlm_pool *p, struct tlm_slab *s)
{
    if (p->nready >= TLM_POOL_READY) {
        TLM_POOL_UNPOISON(s->mem, TLM_POOL_ROOM);
        free(s);
        return;
    }
    TLM_POOL_POISON(s->mem, TLM_POOL_ROOM);
    s->next = p->ready;
    p->ready = s;
    p->nready++;
}

/* Stop carving from the current slab (the pool's lock held). */
static void tlm_pool_retire_locked(struct tlm_pool *p)
{
    struct tlm_slab *s = p->current;
    p->current = NULL;
    if (s != NULL && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        tlm_pool_recycle_locked(p, s);
}

void *tlm_pool_alloc(struct tlm_pool *p, size_t size, struct tlm_slab **slab)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0 || size > TLM_POOL_ROOM / 4)
        return NULL;
    pthread_mutex_lock(&p->lock);
    struct tlm_slab *s = p->current;
    if (s == NULL || TLM_POOL_ROOM - s->used < size) {
        tlm_pool_retire_locked(p);
        s = p->ready;
        if (s != NULL) {
            p->ready = s->next;
            p->nready--;
            p->taken++;
            s->used = 0;
            s->refs = 1;
            p->current = s;
        }
    }
    void *mem = NULL;
    if (s != NULL) {
        mem = s->mem + s->used;
        s->used += size;
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
        TLM_POOL_UNPOISON(mem, size);
        *slab = s;
    }
    pthread_mutex_unlock(&p->lock);
    return mem;
}

void tlm_pool_release(struct tlm_slab *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    struct tlm_pool *p = s->pool;
    pthread_mutex_lock(&p->lock);
    tlm_pool_recycle_locked(p, s);
    pthread_mutex_unlock(&p->lock);
}

unsigned long tlm_pool_refill(struct tlm_pool *p)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        unsigned ready = p->nready;
        unsigned long taken = p->taken;
        pthread_mutex_unlock(&p->lock);
        if (ready >= TLM_POOL_READY)
            return taken;
        struct tlm_slab *s = malloc(TLM_POOL_SLAB_BYTES);
        if (s == NULL)
            return taken;
        s->pool = p;
        memset(s->mem, 0, TLM_POOL_ROOM); /* every page written: faulted in here */
        pthread_mutex_lock(&p->lock);
        tlm_pool_recycle_locked(p, s);
        pthread_mutex_unlock(&p->lock);
    }
}

void tlm_pool_destroy(struct tlm_pool *p)
{
    tlm_pool_retire_locked(p);
    while (p->ready != NULL) {
        struct tlm_slab *s = p->ready;
        p->ready = s->next;
        TLM_POOL_UNPOISON(s->mem, TLM_POOL_ROOM);
        free(s);
    }
    p->nready = 0;
    pthread_mutex_destroy(&p->lock);
}
