/*
 * buf: a growable byte buffer (see buf.h).
 */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUF_FIRST_CAP 256

struct buf buf_borrow(void *mem, size_t cap)
{
    return (struct buf){mem, 0, cap, 0, 1};
}

/* Make the capacity at least len + extra: doubling from the current one
 * (or BUF_FIRST_CAP) if `doubling`, else exactly that. */
static int buf_grow(struct buf *b, size_t extra, int doubling)
{
    if (b->failed)
        return -1;
    if (b->cap - b->len >= extra)
        return 0;
    if (b->borrowed || extra > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t want = b->len + extra;
    size_t cap = want;
    if (doubling) {
        cap = b->cap ? b->cap : BUF_FIRST_CAP;
        while (cap < want)
            cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
    return buf_grow(b, extra, 1);
}

int buf_reserve_exact(struct buf *b, size_t extra)
{
    return buf_grow(b, extra, 0);
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

void buf_truncate(struct buf *b, size_t len)
{
    if (len < b->len)
        b->len = len;
}

void buf_rollback(struct buf *b, size_t mark)
{
    buf_truncate(b, mark);
    b->failed = 0;
}

void buf_shrink(struct buf *b)
{
    if (b->borrowed || b->len == 0 || b->len == b->cap)
        return;
    char *smaller = realloc(b->data, b->len);
    if (smaller != NULL) {
        b->data = smaller;
        b->cap = b->len;
    }
}

void buf_free(struct buf *b)
{
    if (!b->borrowed)
        free(b->data);
    *b = (struct buf)BUF_INIT;
}
