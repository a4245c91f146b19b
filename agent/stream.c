/*
 * stream: msgpack objects out of a byte stream (see stream.h): the buffer,
 * and the one-pass builder of msgpack-c's object tree.
 */
#include "stream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_ZONE_CHUNK 8192 /* the zone's first chunk, kept across objects */

int stream_init(struct stream *s, size_t initial_buffer, size_t max_object)
{
    memset(s, 0, sizeof *s);
    scanner_reset(&s->scanner);
    s->initial_buffer = initial_buffer > 0 ? initial_buffer : 1;
    s->max_object = max_object;
    return msgpack_zone_init(&s->zone, STREAM_ZONE_CHUNK) ? 0 : -1;
}

void stream_destroy(struct stream *s)
{
    msgpack_zone_destroy(&s->zone);
    free(s->buf);
    s->buf = NULL;
}

char *stream_reserve(struct stream *s, size_t size, size_t *capacity)
{
    size_t pending = s->end - s->start;
    if (s->capacity - s->end < size && s->start > 0) {
        memmove(s->buf, s->buf + s->start, pending);
        s->start = 0;
        s->end = pending;
    }
    if (s->buf == NULL || s->capacity - s->end < size) {
        size_t grown = s->capacity > 0 ? s->capacity : s->initial_buffer;
        while (grown - pending < size) {
            if (grown > SIZE_MAX / 2)
                return NULL;
            grown *= 2;
        }
        unsigned char *bigger = realloc(s->buf, grown);
        if (bigger == NULL)
            return NULL;
        s->buf = bigger;
        s->capacity = grown;
    }
    *capacity = s->capacity - s->end;
    return (char *)s->buf + s->end;
}

void stream_consumed(struct stream *s, size_t n)
{
    s->end += n;
}

int stream_append(struct stream *s, const void *data, size_t len)
{
    size_t capacity;
    char *space = stream_reserve(s, len, &capacity);
    if (space == NULL)
        return -1;
    memcpy(space, data, len);
    stream_consumed(s, len);
    return 0;
}

size_t stream_pending(const struct stream *s)
{
    return s->end - s->start;
}

/* The bytes of one object being built. */
struct unpacking {
    const unsigned char *data;
    size_t len, pos;
    msgpack_zone *zone;
};

static enum stream_status unpack_item(struct unpacking *u, int depth, msgpack_object *o);

/* A str of n bytes whose header takes `header` bytes. */
static enum stream_status unpack_str(struct unpacking *u, size_t header, size_t n,
                                     msgpack_object *o)
{
    if (n > u->len - u->pos - header)
        return STREAM_NEED_MORE;
    o->type = MSGPACK_OBJECT_STR;
    o->via.str.size = (uint32_t)n;
    o->via.str.ptr = (const char *)u->data + u->pos + header;
    u->pos += header + n;
    return STREAM_OBJECT;
}

/* The forms most elements take (a string of up to 255 bytes, a small
 * integer), read in place: 1 with *st set, or 0 for any other form. */
static inline __attribute__((always_inline)) int
unpack_common(struct unpacking *u, msgpack_object *o, enum stream_status *st)
{
    if (u->pos >= u->len)
        return 0;
    const unsigned char *p = u->data + u->pos;
    unsigned char b = p[0];
    if (b >= 0xa0 && b <= 0xbf) {
        *st = unpack_str(u, 1, b & 0x1f, o);
    } else if (b == 0xd9 && u->len - u->pos >= 2) {
        *st = unpack_str(u, 2, p[1], o);
    } else if (b <= 0x7f) {
        o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        o->via.u64 = b;
        u->pos++;
        *st = STREAM_OBJECT;
    } else {
        return 0;
    }
    return 1;
}

/* An element of a container: its common forms read in place, without a
 * call (a call costs as much as reading one); the rest through
 * unpack_item. */
static inline __attribute__((always_inline)) enum stream_status
unpack_element(struct unpacking *u, int depth, msgpack_object *o)
{
    enum stream_status st;
    return unpack_common(u, o, &st) ? st : unpack_item(u, depth, o);
}

/* The n elements of an array or map whose header was just read. */
static enum stream_status unpack_container(struct unpacking *u, int depth, int is_map,
                                           uint32_t n, msgpack_object *o)
{
    o->type = is_map ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY;
    o->via.array.size = n; /* the same place as via.map.size */
    o->via.array.ptr = NULL;
    o->via.map.ptr = NULL;
    if (depth == WIRE_MAX_DEPTH)
        return STREAM_TOO_DEEP; /* as the scanner: even an empty one */
    if (n == 0)
        return STREAM_OBJECT;
    /* every element takes a byte at least: claims the bytes cannot back
     * are not allocated for (the scanner then says how the object ends) */
    if ((uint64_t)n * (is_map ? 2 : 1) > u->len - u->pos)
        return STREAM_NEED_MORE;
    if (is_map) {
        msgpack_object_kv *kv = msgpack_zone_malloc(u->zone, (size_t)n * sizeof *kv);
        if (kv == NULL)
            return STREAM_NO_MEMORY;
        o->via.map.ptr = kv;
        for (uint32_t i = 0; i < n; i++) {
            enum stream_status st = unpack_element(u, depth + 1, &kv[i].key);
            if (st == STREAM_OBJECT)
                st = unpack_element(u, depth + 1, &kv[i].val);
            if (st != STREAM_OBJECT)
                return st;
        }
        return STREAM_OBJECT;
    }
    msgpack_object *elements = msgpack_zone_malloc(u->zone, (size_t)n * sizeof *elements);
    if (elements == NULL)
        return STREAM_NO_MEMORY;
    o->via.array.ptr = elements;
    for (uint32_t i = 0; i < n; i++) {
        enum stream_status st = unpack_element(u, depth + 1, &elements[i]);
        if (st != STREAM_OBJECT)
            return st;
    }
    return STREAM_OBJECT;
}

/* Any element, through scan_item. */
static enum stream_status unpack_scanned(struct unpacking *u, int depth, msgpack_object *o)
{
    struct scan_item it;
    const unsigned char *p = u->data + u->pos;
    int rc = scan_item(p, u->len - u->pos, &it);
    if (rc <= 0)
        return rc < 0 ? STREAM_INVALID : STREAM_NEED_MORE;
    u->pos += it.size;
    switch (it.type) {
    case SCAN_NIL:
        o->type = MSGPACK_OBJECT_NIL;
        break;
    case SCAN_BOOL:
        o->type = MSGPACK_OBJECT_BOOLEAN;
        o->via.boolean = it.boolean != 0;
        break;
    case SCAN_UINT:
        o->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        o->via.u64 = it.u;
        break;
    case SCAN_INT:
        o->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
        o->via.i64 = it.i;
        break;
    case SCAN_FLOAT:
        o->type = p[0] == 0xca ? MSGPACK_OBJECT_FLOAT32 : MSGPACK_OBJECT_FLOAT64;
        o->via.f64 = it.d;
        break;
    case SCAN_STR:
    case SCAN_BIN:
        o->type = it.type == SCAN_STR ? MSGPACK_OBJECT_STR : MSGPACK_OBJECT_BIN;
        o->via.str.size = it.len; /* the same place as via.bin */
        o->via.str.ptr = (const char *)it.ptr;
        break;
    case SCAN_EXT:
        o->type = MSGPACK_OBJECT_EXT;
        o->via.ext.type = it.ext_type;
        o->via.ext.size = it.len;
        o->via.ext.ptr = (const char *)it.ptr;
        break;
    case SCAN_ARRAY:
    case SCAN_MAP:
        return unpack_container(u, depth, it.type == SCAN_MAP, it.len, o);
    }
    return STREAM_OBJECT;
}

/* One element at u->pos, as msgpack-c would have made it; depth is the
 * number of containers around it. The forms events are mostly made of
 * (small integers, strings, small maps and arrays) are read here, the
 * rest by unpack_scanned. */
static enum stream_status unpack_item(struct unpacking *u, int depth, msgpack_object *o)
{
    enum stream_status st;
    if (unpack_common(u, o, &st))
        return st;
    if (u->pos >= u->len)
        return STREAM_NEED_MORE;
    unsigned char b = u->data[u->pos];
    if (b <= 0x9f) { /* 0x80 to 0x9f: fixmap, fixarray */
        u->pos++;
        return unpack_container(u, depth, b <= 0x8f, b & 0x0f, o);
    }
    return unpack_scanned(u, depth, o);
}

enum stream_status stream_unpack(const unsigned char *data, size_t len, msgpack_zone *zone,
                                 msgpack_object *obj, size_t *object_len)
{
    struct unpacking u = {.data = data, .len = len, .pos = 0, .zone = zone};
    enum stream_status st = unpack_item(&u, 0, obj);
    *object_len = u.pos;
    return st;
}

/* Hand out the object built from the first object_len buffered bytes. */
static enum stream_status stream_take(struct stream *s, enum stream_status st,
                                      size_t object_len)
{
    if (st != STREAM_OBJECT)
        return st;
    if (object_len > s->max_object)
        return STREAM_TOO_LARGE;
    s->start += object_len;
    return STREAM_OBJECT;
}

enum stream_status stream_next(struct stream *s, msgpack_object *obj)
{
    msgpack_zone_clear(&s->zone); /* the object handed out before is done with */
    size_t pending = s->end - s->start, object_len;
    if (pending == 0) {
        s->start = s->end = 0;
        return STREAM_NEED_MORE;
    }
    const unsigned char *data = s->buf + s->start;
    if (s->scanner.pos == 0) {
        /* a new object: if it is all here, this one pass reads it */
        enum stream_status st = stream_unpack(data, pending, &s->zone, obj, &object_len);
        if (st != STREAM_NEED_MORE)
            return stream_take(s, st, object_len);
        msgpack_zone_clear(&s->zone);
    }
    switch (scanner_run(&s->scanner, data, pending, &object_len)) {
    case SCAN_INCOMPLETE:
        return pending > s->max_object ? STREAM_TOO_LARGE : STREAM_NEED_MORE;
    case SCAN_INVALID:
        return STREAM_INVALID;
    case SCAN_TOO_DEEP:
        return STREAM_TOO_DEEP;
    case SCAN_COMPLETE:
        break;
    }
    if (object_len > s->max_object)
        return STREAM_TOO_LARGE;
    /* whole now, so the build can only fail for memory */
    enum stream_status st = stream_unpack(data, object_len, &s->zone, obj, &object_len);
    return stream_take(s, st == STREAM_OBJECT ? st : STREAM_NO_MEMORY, object_len);
}

void stream_clear(struct stream *s)
{
    msgpack_zone_clear(&s->zone);
    s->start = s->end = 0;
    scanner_reset(&s->scanner);
}
