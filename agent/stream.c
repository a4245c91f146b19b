/*
 * stream: msgpack objects out of a byte stream (see stream.h).
 *
 * msgpack-c 4 offers no call for two things done here by hand: where the
 * unparsed bytes start (its buffer ends at msgpack_unpacker_buffer(), so
 * they start `pending` bytes before), and discarding them (stream_clear).
 */
#include "stream.h"

#include <string.h>

int stream_init(struct stream *s, size_t initial_buffer, size_t max_object)
{
    scanner_reset(&s->scanner);
    s->max_object = max_object;
    s->pending = 0;
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
    s->pending += n;
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
    return s->pending;
}

/* Objects already handed out are done with: their memory can be reused. */
static void stream_reuse_zone(struct stream *s)
{
    msgpack_unpacker_reset(&s->unpacker);
    if (s->unpacker.z != NULL) /* msgpack-c 4 makes the zone on first use, and its
                                  reset_zone crashes without one */
        msgpack_unpacker_reset_zone(&s->unpacker);
}

enum stream_status stream_next(struct stream *s, msgpack_object *obj)
{
    msgpack_unpacker *u = &s->unpacker;
    const unsigned char *start =
        (const unsigned char *)msgpack_unpacker_buffer(u) - s->pending;
    size_t object_len;
    stream_reuse_zone(s);
    switch (scanner_run(&s->scanner, start, s->pending, &object_len)) {
    case SCAN_INCOMPLETE:
        return s->pending > s->max_object ? STREAM_TOO_LARGE : STREAM_NEED_MORE;
    case SCAN_INVALID:
        return STREAM_INVALID;
    case SCAN_TOO_DEEP:
        return STREAM_TOO_DEEP;
    case SCAN_COMPLETE:
        break;
    }
    if (object_len > s->max_object)
        return STREAM_TOO_LARGE;
    /* the scanner accepted it whole, so msgpack-c can only fail for memory */
    if (msgpack_unpacker_execute(u) != 1)
        return STREAM_NO_MEMORY;
    s->pending -= object_len;
    *obj = msgpack_unpacker_data(u);
    return STREAM_OBJECT;
}

void stream_clear(struct stream *s)
{
    stream_reuse_zone(s);
    s->unpacker.off = s->unpacker.used;
    s->pending = 0;
    scanner_reset(&s->scanner);
}
