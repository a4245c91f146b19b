/*
 * queue: the client's FIFO of events held in memory, with a write cursor.
 *
 * Every entry is one complete msgpack message (an event, plus its chunk id in
 * reliable mode). The cursor (next, off) is where writing resumes on the
 * current connection: entries before it are written whole and, in reliable
 * mode, wait for their acknowledgement; `next` may be partially written
 * (off bytes). A new connection starts again at an entry boundary
 * (tlm_queue_rewind), so a torn entry is always written again from its start.
 *
 * bytes and count cover every entry held: those in the list and those a
 * sender has handed over but the I/O thread has not yet taken in (the
 * client's inbox). They are counted when an entry is admitted
 * (tlm_queue_reserve, callers take turns) and uncounted when it leaves, both
 * atomically, so the bound holds without the lock that guards the list.
 */
#ifndef TLM_QUEUE_H
#define TLM_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct tlm_pool;
struct tlm_slab;

#define TLM_QUEUE_CHUNK_MAX 16 /* hex digits of a 64-bit sequence number */

struct tlm_entry {
    TAILQ_ENTRY(tlm_entry) link;
    uint64_t seq;        /* order of tlm_send calls; flush waits by it */
    size_t len;          /* bytes in data */
    int64_t written_ms;  /* when it was last written whole (monotonic) */
    unsigned losses;     /* agent errors about a message it was blamed for (conn.c) */
    int written_once;    /* counted in stats.sent */
    int displaced;       /* requeued: may be behind entries of a higher seq */
    char chunk[TLM_QUEUE_CHUNK_MAX + 1];
    size_t chunk_len;    /* 0: no chunk (fire-and-forget) */
    struct tlm_slab *slab; /* where it was carved from (pool.h); NULL: malloc'd */
    unsigned char data[];
};

TAILQ_HEAD(tlm_entry_list, tlm_entry);

struct tlm_queue {
    struct tlm_entry_list entries;
    struct tlm_entry *next; /* first entry not yet written whole; NULL: none */
    size_t off;             /* bytes of next already written */
    size_t bytes;           /* sum of len over entries held (atomic: see above) */
    uint64_t count;         /* entries held (atomic) */
    uint64_t displaced;     /* requeued entries held; while 0 the list is sorted by seq */
};

void tlm_queue_init(struct tlm_queue *q);
/* A new entry with room for cap bytes of data (len 0), or NULL: from pool
 * if it has room (pool may be NULL), else malloc'd. */
struct tlm_entry *tlm_queue_entry_new(struct tlm_pool *pool, size_t cap);
/* Free an entry that is in no list. */
void tlm_queue_entry_free(struct tlm_entry *e);
/* Count an entry of len bytes as held if it fits: 0, or -1 if bytes would
 * pass bound. Admissions must not run at the same time (removals may). */
int tlm_queue_reserve(struct tlm_queue *q, size_t len, size_t bound);
/* Bytes and entries held (a snapshot). */
size_t tlm_queue_held_bytes(const struct tlm_queue *q);
uint64_t tlm_queue_held_count(const struct tlm_queue *q);
/* Append e (its len set, reserved) at the end. */
void tlm_queue_push(struct tlm_queue *q, struct tlm_entry *e);
/* Append every entry of list (each reserved, in order), leaving it empty. */
void tlm_queue_append(struct tlm_queue *q, struct tlm_entry_list *list);
/* Unlink and free e; the cursor moves past it if it pointed at it. */
void tlm_queue_remove(struct tlm_queue *q, struct tlm_entry *e);
/* Move the cursor back to the first entry (reliable: everything unacked is
 * written again), or to the start of `next` (fire-and-forget). */
void tlm_queue_rewind(struct tlm_queue *q, int to_head);
/* Put e (written whole, before the cursor) back to be written again: at the
 * cursor, after entries put back before it with a lower seq, so that
 * several put back in a row keep their order. Entries written after it
 * now come first: it is counted as displaced until it leaves. */
void tlm_queue_requeue(struct tlm_queue *q, struct tlm_entry *e);
/* Is every entry of a seq below `target` gone? */
int tlm_queue_done_before(const struct tlm_queue *q, uint64_t target);
/* Free every entry in the list and count none held. */
void tlm_queue_clear(struct tlm_queue *q);

#endif
