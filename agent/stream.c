/*
 * stream: msgpack objects out of a byte stream (see stream.h).
 */
#include "stream.h"

#include <string.h>

int stream_init(struct stream *s, size_t initial_buffer, size_t max_object)
{
    frame_reset(&s->scanner);
    s->max_object = max_object;
    return msgpack_unpacker_init(&s->unpacker, initial_buffer) ? 0 : -1;
}

void stream_destroy(struct stream *s)
{
    msgpack_unpacker_destroy(&s->unpacker);
}

char *stream_reserve(struct stream *s, size_t size, size_t *capacity)
{
    if (!msgpack_unpacker_reserve_buffer(&s->unpacker, size))
        return NULL;
    *capacity = msgpack_unpacker_buffer_capacity(&s->unpacker);
    return msgpack_unpacker_buffer(&s->unpacker);
}

void stream_consumed(struct stream *s, size_t n)
{
    msgpack_unpacker_buffer_consumed(&s->unpacker, n);
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
    return s->unpacker.used - s->unpacker.off;
}

/* Objects already handed out are done with: their memory can be reused. */
static void stream_reuse_zone(struct stream *s)
{
    msgpack_unpacker_reset(&s->unpacker);
    if (s->unpacker.z != NULL) /* msgpack-c 4 makes the zone on first use */
        msgpack_unpacker_reset_zone(&s->unpacker);
}

enum stream_status stream_next(struct stream *s, msgpack_object *obj)
{
    msgpack_unpacker *u = &s->unpacker;
    const unsigned char *start = (const unsigned char *)u->buffer + u->off;
    size_t avail = u->used - u->off, object_len;
    stream_reuse_zone(s);
    switch (frame_scan(&s->scanner, start, avail, &object_len)) {
    case FRAME_INCOMPLETE:
        return avail > s->max_object ? STREAM_TOO_LARGE : STREAM_NEED_MORE;
    case FRAME_INVALID:
        return STREAM_INVALID;
    case FRAME_TOO_DEEP:
        return STREAM_TOO_DEEP;
    case FRAME_COMPLETE:
        break;
    }
    if (object_len > s->max_object)
        return STREAM_TOO_LARGE;
    /* frame.c accepted it whole, so msgpack-c can only fail for memory */
    if (msgpack_unpacker_execute(u) != 1)
        return STREAM_INVALID;
    *obj = msgpack_unpacker_data(u);
    return STREAM_OBJECT;
}

void stream_clear(struct stream *s)
{
    stream_reuse_zone(s);
    s->unpacker.off = s->unpacker.used;
    frame_reset(&s->scanner);
}
