/*
 * buf: a growable byte buffer.
 *
 * Batches, JSON output and request bodies are all built by appending to a
 * buf. Growth is geometric; allocation failure is reported by return value and
 * leaves the buffer unchanged, so callers can roll back with buf_truncate().
 */
#ifndef TA_BUF_H
#define TA_BUF_H

#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

/* Ensure room for `extra` more bytes. Returns 0, or -1 if out of memory. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_append_char(struct buf *b, char c);
/* printf-style append. Returns 0 or -1. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Shrink to `len` bytes (no-op if already shorter). */
void buf_truncate(struct buf *b, size_t len);
void buf_free(struct buf *b);

#endif
