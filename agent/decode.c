/*
 * decode: validate a producer's msgpack map as an event (see decode.h).
 *
 * Accepted timestamp forms: a non-negative integer of milliseconds since the
 * epoch; the Fluent EventTime ext (type 0: 32-bit seconds, 32-bit
 * nanoseconds, big-endian); the msgpack timestamp ext (type -1, 4, 8 or 12
 * bytes); an RFC 3339 string.
 */
#include "decode.h"

#include "timestamp.h"
#include "uuid.h"

#include <stdio.h>
#include <string.h>

static uint64_t decode_be(const char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

static int decode_seconds_nanos(uint64_t secs, uint64_t nanos, int64_t *ms)
{
    if (nanos >= 1000000000 || secs > (uint64_t)(TIMESTAMP_MAX_MS / 1000))
        return -1;
    *ms = (int64_t)secs * 1000 + (int64_t)(nanos / 1000000);
    return 0;
}

int decode_timestamp(const msgpack_object *obj, int64_t *ms)
{
    switch (obj->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (obj->via.u64 > (uint64_t)TIMESTAMP_MAX_MS)
            return -1;
        *ms = (int64_t)obj->via.u64;
        return 0;
    case MSGPACK_OBJECT_STR:
        return timestamp_parse_rfc3339(obj->via.str.ptr, obj->via.str.size, ms);
    case MSGPACK_OBJECT_EXT: {
        const char *p = obj->via.ext.ptr;
        uint32_t n = obj->via.ext.size;
        if (obj->via.ext.type == 0 && n == 8)
            return decode_seconds_nanos(decode_be(p, 4), decode_be(p + 4, 4), ms);
        if (obj->via.ext.type == -1 && n == 4)
            return decode_seconds_nanos(decode_be(p, 4), 0, ms);
        if (obj->via.ext.type == -1 && n == 8) {
            uint64_t v = decode_be(p, 8);
            return decode_seconds_nanos(v & UINT64_C(0x3ffffffff), v >> 34, ms);
        }
        if (obj->via.ext.type == -1 && n == 12) {
            uint64_t secs = decode_be(p + 4, 8);
            if (secs >> 63) /* before 1970 */
                return -1;
            return decode_seconds_nanos(secs, decode_be(p, 4), ms);
        }
        return -1;
    }
    default:
        return -1;
    }
}

int decode_str_is(const msgpack_object *obj, const char *name)
{
    size_t len = strlen(name);
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == len &&
           memcmp(obj->via.str.ptr, name, len) == 0;
}

int decode_chunk_is_valid(const msgpack_object *obj)
{
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size >= 1 &&
           obj->via.str.size <= EVENT_CHUNK_MAX;
}

#define DECODE_FAIL(r, ...)                                                                        \
    do {                                                                                           \
        *reason = (r);                                                                             \
        snprintf(detail, detail_len, __VA_ARGS__);                                                 \
        return -1;                                                                                 \
    } while (0)

int decode_event_name(const char *name, size_t len, const struct registry *registry,
                      enum drop_reason *reason, char *detail, size_t detail_len)
{
    if (len == 0 || len > EVENT_NAME_MAX)
        DECODE_FAIL(DROP_BAD_EVENT, "the event name is not a string of 1 to %d bytes",
                    EVENT_NAME_MAX);
    if (registry != NULL && !registry_contains(registry, name, len))
        DECODE_FAIL(DROP_UNKNOWN_EVENT, "event '%.*s' is not in the registry",
                    (int)(len > 64 ? 64 : len), name);
    return 0;
}

int decode_uuid(const msgpack_object *u, struct event *ev, enum drop_reason *reason, char *detail,
                size_t detail_len)
{
    ev->uuid = NULL;
    if (u == NULL)
        return 0;
    if (u->type != MSGPACK_OBJECT_STR || !uuid_is_valid(u->via.str.ptr, u->via.str.size))
        DECODE_FAIL(DROP_BAD_UUID, "'uuid' is not a UUID string (8-4-4-4-12 hex digits)");
    ev->uuid = u->via.str.ptr;
    return 0;
}

int decode_distinct_id(const msgpack_object *d, struct event *ev, enum drop_reason *reason,
                       char *detail, size_t detail_len)
{
    ev->distinct_id = NULL;
    ev->distinct_id_len = 0;
    if (d == NULL)
        return 0;
    if (d->type != MSGPACK_OBJECT_STR || d->via.str.size == 0 ||
        d->via.str.size > EVENT_DISTINCT_ID_MAX)
        DECODE_FAIL(DROP_BAD_DISTINCT_ID, "'distinct_id' is not a string of 1 to %d bytes",
                    EVENT_DISTINCT_ID_MAX);
    ev->distinct_id = d->via.str.ptr;
    ev->distinct_id_len = d->via.str.size;
    return 0;
}

enum decode_field { F_EVENT, F_PROPERTIES, F_TIMESTAMP, F_UUID, F_DISTINCT_ID, F_CHUNK, F_COUNT };
static const char *const decode_field_names[F_COUNT] = {"event", "properties", "timestamp", "uuid",
                                                        "distinct_id", "chunk"};

/* Find each known key of the map; a key seen twice or an unknown key fails. */
static int decode_fields(const msgpack_object *obj, const msgpack_object *field[F_COUNT],
                         enum drop_reason *reason, char *detail, size_t detail_len)
{
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];
        int f;
        for (f = 0; f < F_COUNT && !decode_str_is(&kv->key, decode_field_names[f]); f++)
            ;
        if (f == F_COUNT) {
            if (kv->key.type == MSGPACK_OBJECT_STR)
                DECODE_FAIL(DROP_UNKNOWN_KEY,
                            "unknown key '%.*s' (allowed: event, properties, timestamp, uuid, "
                            "distinct_id, chunk)",
                            (int)(kv->key.via.str.size > 64 ? 64 : kv->key.via.str.size),
                            kv->key.via.str.ptr);
            DECODE_FAIL(DROP_UNKNOWN_KEY, "a key is not a string (msgpack type %d)", kv->key.type);
        }
        if (field[f] != NULL)
            DECODE_FAIL(DROP_DUPLICATE_KEY, "key '%s' appears twice", decode_field_names[f]);
        field[f] = &kv->val;
    }
    return 0;
}

/* decode_event without the chunk of a refused event. */
static int decode_native(const msgpack_object *obj, const struct registry *registry,
                         struct event *ev, const msgpack_object **chunk, enum drop_reason *reason,
                         char *detail, size_t detail_len)
{
    const msgpack_object *field[F_COUNT] = {NULL};
    if (obj->type != MSGPACK_OBJECT_MAP)
        DECODE_FAIL(DROP_UNSUPPORTED_SHAPE, "message is not a map (msgpack type %d)", obj->type);
    if (decode_fields(obj, field, reason, detail, detail_len) < 0)
        return -1;
    if (field[F_CHUNK] != NULL && !decode_chunk_is_valid(field[F_CHUNK]))
        DECODE_FAIL(DROP_BAD_CHUNK, "'chunk' is not a string of 1 to %d bytes", EVENT_CHUNK_MAX);
    *chunk = field[F_CHUNK];

    const msgpack_object *name = field[F_EVENT];
    if (name == NULL)
        DECODE_FAIL(DROP_MISSING_EVENT, "no 'event' key");
    if (name->type != MSGPACK_OBJECT_STR)
        DECODE_FAIL(DROP_BAD_EVENT, "'event' is not a string of 1 to %d bytes", EVENT_NAME_MAX);
    ev->name = name->via.str.ptr;
    ev->name_len = name->via.str.size;
    if (decode_event_name(ev->name, ev->name_len, registry, reason, detail, detail_len) < 0)
        return -1;

    ev->properties = NULL;
    ev->properties_are_record = 0;
    if (field[F_PROPERTIES] != NULL) {
        if (field[F_PROPERTIES]->type == MSGPACK_OBJECT_MAP)
            ev->properties = &field[F_PROPERTIES]->via.map;
        else if (field[F_PROPERTIES]->type != MSGPACK_OBJECT_NIL)
            DECODE_FAIL(DROP_BAD_PROPERTIES, "'properties' is not a map (msgpack type %d)",
                        field[F_PROPERTIES]->type);
    }

    ev->timestamp_ms = -1;
    if (field[F_TIMESTAMP] != NULL && decode_timestamp(field[F_TIMESTAMP], &ev->timestamp_ms) < 0)
        DECODE_FAIL(DROP_BAD_TIMESTAMP,
                    "'timestamp' is not milliseconds since the epoch, an EventTime or RFC 3339 "
                    "string from 1970 to 9999");
    if (decode_uuid(field[F_UUID], ev, reason, detail, detail_len) < 0)
        return -1;
    return decode_distinct_id(field[F_DISTINCT_ID], ev, reason, detail, detail_len);
}

int decode_event(const msgpack_object *obj, const struct registry *registry, struct event *ev,
                 const msgpack_object **chunk, enum drop_reason *reason, char *detail,
                 size_t detail_len)
{
    *chunk = NULL;
    if (decode_native(obj, registry, ev, chunk, reason, detail, detail_len) == 0)
        return 0;
    /* Refused: look for a valid chunk anyway (the fault may come before it
     * in the map), so that the refusal can be acknowledged. Only here, off
     * the path of valid events. */
    for (uint32_t i = 0; obj->type == MSGPACK_OBJECT_MAP && i < obj->via.map.size; i++)
        if (decode_str_is(&obj->via.map.ptr[i].key, "chunk") &&
            decode_chunk_is_valid(&obj->via.map.ptr[i].val))
            *chunk = &obj->via.map.ptr[i].val;
    return -1;
}
