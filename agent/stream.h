/*
 * stream: a byte stream of msgpack objects -> one decoded object at a time.
 *
 * Used for a producer's connection and for the packed entries inside a
 * Fluent Forward message. Bytes go in (read straight into the reserved
 * space, or copied); the scanner (proto/scan.c) finds where each object
 * ends, and only a complete object reaches msgpack-c's unpacker, so a
 * header claiming millions of elements cannot make it allocate for them.
 * One memory zone is reused for every object: no allocation per object once
 * warmed up.
 */
#ifndef TA_STREAM_H
#define TA_STREAM_H

#include "scan.h"

#include <msgpack.h>
#include <stddef.h>

enum stream_status {
    STREAM_OBJECT,    /* *obj is valid until stream_next is called again */
    STREAM_NEED_MORE, /* no complete object buffered */
    STREAM_INVALID,   /* bytes that are not msgpack */
    STREAM_TOO_DEEP,  /* nested deeper than WIRE_MAX_DEPTH */
    STREAM_TOO_LARGE, /* an object (or an unfinished one) is over max_object */
    STREAM_NO_MEMORY, /* msgpack-c could not allocate the object's tree */
};

struct stream {
    msgpack_unpacker unpacker;
    struct scanner scanner;
    size_t max_object;
    size_t pending; /* bytes in the unpacker's buffer not yet returned as objects */
};

int stream_init(struct stream *s, size_t initial_buffer, size_t max_object);
void stream_destroy(struct stream *s);
/* Space for at least `size` more bytes: returns where to write them and
 * sets *capacity, or NULL when out of memory. Then call stream_consumed. */
char *stream_reserve(struct stream *s, size_t size, size_t *capacity);
void stream_consumed(struct stream *s, size_t n);
/* Copy bytes in. Returns 0, or -1 when out of memory. */
int stream_append(struct stream *s, const void *data, size_t len);
/* Bytes buffered that are not yet a returned object. */
size_t stream_pending(const struct stream *s);
/* The next complete object. */
enum stream_status stream_next(struct stream *s, msgpack_object *obj);
/* Forget everything buffered (the zone and buffer are kept for reuse). */
void stream_clear(struct stream *s);

#endif
