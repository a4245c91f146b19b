/*
 * pool: memory for the client's queue entries, its pages touched ahead of
 * need by the I/O thread.
 *
 * The first write to a page the process has not used costs a page fault,
 * and on some virtual machines that is 10 us or more: with the agent absent
 * or stopped, one send in eight used to pay it (an event is ~500 bytes, a
 * page 4 KiB), on the caller's thread. Entries are carved instead from
 * 64 KiB slabs; a slab goes back to the pool, still touched, once every
 * entry carved from it is released, and the I/O thread keeps a few empty
 * slabs ready, writing to every page before a sender needs it (it is not
 * woken for that: while senders draw slabs it looks every few
 * milliseconds). When none is ready (or the entry is large), the caller
 * allocates as before.
 *
 * Thread-safe: carving and the ready list are under the pool's own lock (a
 * leaf: nothing else is taken under it; fork() handlers take it last); a
 * release that empties a slab takes it too.
 */
#ifndef TLM_POOL_H
#define TLM_POOL_H

#include <pthread.h>
#include <stddef.h>

#define TLM_POOL_SLAB_BYTES (64 * 1024) /* one allocation, header included */
#define TLM_POOL_READY 4                /* empty slabs kept touched: 256 KiB */

struct tlm_slab;

struct tlm_pool {
    pthread_mutex_t lock;
    struct tlm_slab *current; /* carving from; NULL: none yet */
    struct tlm_slab *ready;   /* empty, touched slabs */
    unsigned nready;
    unsigned long taken; /* ready slabs put to use, ever */
};

int tlm_pool_init(struct tlm_pool *p);
/* size bytes carved from a slab (16-byte aligned), *slab set to it; or
 * NULL if no slab has room and none is ready, or size is over a quarter of
 * a slab: then allocate elsewhere. */
void *tlm_pool_alloc(struct tlm_pool *p, size_t size, struct tlm_slab **slab);
/* Give back one carving of slab; the last one returns the slab to the
 * ready list (or frees it if enough are ready). */
void tlm_pool_release(struct tlm_slab *slab);
/* Make and touch slabs until TLM_POOL_READY are ready (the I/O thread,
 * holding no lock). Returns p->taken: while it changes between calls,
 * senders are drawing slabs. */
unsigned long tlm_pool_refill(struct tlm_pool *p);
/* Free what the pool holds (every carving released first). */
void tlm_pool_destroy(struct tlm_pool *p);

#endif
