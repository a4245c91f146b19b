/*
 * buf: a growable byte buffer.
 *
 * Batches, JSON text, msgpack replies and request bodies are all built by
 * appending to a buf. Growth is geometric. A failed allocation is sticky:
 * the append returns -1, sets `failed`, and every later append does nothing
 * and returns -1 too, so a caller may append a whole object and check once;
 * the bytes before the failure are intact, and buf_rollback() returns to a
 * mark and clears the failure. A buf may also borrow a fixed block of memory
 * (buf_borrow): it then never grows past it and never frees it.
 */
#ifndef PROTO_BUF_H
#define PROTO_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;   /* an append could not be made: the contents are incomplete */
    int borrowed; /* data is the caller's: never reallocated or freed */
};

#define BUF_INIT {NULL, 0, 0, 0, 0}

/* A buf writing into the caller's `cap` bytes at mem. */
struct buf buf_borrow(void *mem, size_t cap);
/* Ensure room for `extra` more bytes. Returns 0, or -1 (and sets failed). */
int buf_reserve(struct buf *b, size_t extra);
/* The same, growing to exactly len + extra (for a size known ahead). */
int buf_reserve_exact(struct buf *b, size_t extra);
int buf_append_str(struct buf *b, const char *s);

/* Appends are inline: most find room and only copy. */
static inline int buf_append(struct buf *b, const void *data, size_t len)
{
    if (b->cap - b->len < len || b->failed) {
        if (buf_reserve(b, len) < 0)
            return -1;
    }
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static inline int buf_append_char(struct buf *b, char c)
{
    if ((b->len == b->cap || b->failed) && buf_reserve(b, 1) < 0)
        return -1;
    b->data[b->len++] = c;
    return 0;
}
/* Shrink to `len` bytes (no-op if already shorter). */
void buf_truncate(struct buf *b, size_t len);
/* Shrink to `mark` and forget a failed append after it. */
void buf_rollback(struct buf *b, size_t mark);
/* Give back the capacity beyond len (kept if the allocator cannot). */
void buf_shrink(struct buf *b);
void buf_free(struct buf *b);

#endif
