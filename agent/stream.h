/*
 * stream: a byte stream of msgpack objects -> one decoded object at a time.
 *
 * Used for a producer's connection and for the packed entries inside a
 * Fluent Forward message. Bytes go in (read straight into the reserved
 * space, or copied), and each whole object comes out as msgpack-c's object
 * tree, built here in one pass over its bytes: its strings point into the
 * stream's buffer, its arrays and maps live in one memory zone reused for
 * every object (no allocation per object once warmed up).
 *
 * A header claiming millions of elements cannot make the stream allocate
 * for them: a container is only built once the bytes left could hold its
 * elements. An object split across reads is followed by the resumable
 * scanner (proto/scan.c), which remembers how far it got, and built once
 * whole; one that arrives whole is read once.
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
    STREAM_NO_MEMORY, /* no memory for the object's tree */
};

struct stream {
    unsigned char *buf;  /* buf[start..end) is buffered, not yet returned as objects */
    size_t start, end, capacity;
    size_t initial_buffer;
    size_t max_object;
    struct scanner scanner; /* how far into an object split across reads */
    msgpack_zone zone;      /* the tree of the object last returned */
};

int stream_init(struct stream *s, size_t initial_buffer, size_t max_object);
void stream_destroy(struct stream *s);
/* Space for at least `size` more bytes: returns where to write them and
 * sets *capacity, or NULL when out of memory. Then call stream_consumed.
 * It may move the buffered bytes: call it only when no object returned by
 * stream_next is in use. */
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

/* One object from data[0..len), built in zone whether or not it is whole:
 * STREAM_OBJECT (*object_len bytes long), STREAM_NEED_MORE when the bytes
 * end inside it (or cannot hold what a header claims), STREAM_INVALID,
 * STREAM_TOO_DEEP or STREAM_NO_MEMORY. */
enum stream_status stream_unpack(const unsigned char *data, size_t len, msgpack_zone *zone,
                                 msgpack_object *obj, size_t *object_len);

#endif
