/*
 * decode: validate a producer's msgpack map as an event (see decode.h).
 *
 * Accepted timestamp forms: a non-negative integer of milliseconds since the
 * epoch; the Fluent EventTime ext (type 0: 32-bit seconds, 32-bit
 * nanoseconds, big-endian); the msgpack timestamp ext (type -1, 4, 8 or 12
 * bytes); an RFC 3339 string.
 */
#include "decode.h"

#include "log.h"
#include "timestamp.h"
#include "uuid.h"

#include <stdio.h>

#define DECODE_QUOTE_LEN (4 * 64 + 4) /* an escaped name or key of up to 64 characters */
#include <string.h>

int decode_timestamp(const msgpack_object *obj, int64_t *ms)
{
    int64_t secs;
    uint32_t nanos;
    switch (obj->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (obj->via.u64 > (uint64_t)TIMESTAMP_MAX_MS)
            return -1;
        *ms = (int64_t)obj->via.u64;
        return 0;
    case MSGPACK_OBJECT_STR:
        return timestamp_parse_rfc3339(obj->via.str.ptr, obj->via.str.size, ms);
    case MSGPACK_OBJECT_EXT:
        if (timestamp_from_ext(obj->via.ext.type, (const unsigned char *)obj->via.ext.ptr,
                               obj->via.ext.size, &secs, &nanos) < 0 ||
            secs < 0 || secs > TIMESTAMP_MAX_MS / 1000)
            return -1;
        *ms = secs * 1000 + nanos / 1000000;
        return 0;
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
           obj->via.str.size <= WIRE_CHUNK_MAX;
}

int decode_event_name(const char *name, size_t len, const struct registry *registry,
                      struct refusal *r)
{
    if (len == 0 || len > WIRE_NAME_MAX)
        return refuse(r, DROP_BAD_EVENT, "the event name is not a string of 1 to %d bytes",
                      WIRE_NAME_MAX);
    char text[DECODE_QUOTE_LEN];
    if (registry != NULL && !registry_contains(registry, name, len))
        return refuse(r, DROP_UNKNOWN_EVENT, "event '%s' is not in the registry",
                      log_escape(text, sizeof text, name, len, 64));
    return 0;
}

int decode_uuid(const msgpack_object *u, struct analytics_event *ev, struct refusal *r)
{
    ev->uuid = NULL;
    if (u == NULL)
        return 0;
    if (u->type != MSGPACK_OBJECT_STR || !uuid_is_valid(u->via.str.ptr, u->via.str.size))
        return refuse(r, DROP_BAD_UUID, "'uuid' is not a UUID string (8-4-4-4-12 hex digits)");
    ev->uuid = u->via.str.ptr;
    return 0;
}

int decode_distinct_id(const msgpack_object *d, struct analytics_event *ev, struct refusal *r)
{
    ev->distinct_id = NULL;
    ev->distinct_id_len = 0;
    if (d == NULL)
        return 0;
    if (d->type != MSGPACK_OBJECT_STR || d->via.str.size == 0 ||
        d->via.str.size > WIRE_DISTINCT_ID_MAX)
        return refuse(r, DROP_BAD_DISTINCT_ID, "'distinct_id' is not a string of 1 to %d bytes",
                      WIRE_DISTINCT_ID_MAX);
    ev->distinct_id = d->via.str.ptr;
    ev->distinct_id_len = d->via.str.size;
    return 0;
}

enum decode_field { F_EVENT, F_PROPERTIES, F_TIMESTAMP, F_UUID, F_DISTINCT_ID, F_CHUNK, F_COUNT };
static const char *const decode_field_names[F_COUNT] = {
    WIRE_KEY_EVENT, WIRE_KEY_PROPERTIES,  WIRE_KEY_TIMESTAMP,
    WIRE_KEY_UUID,  WIRE_KEY_DISTINCT_ID, WIRE_KEY_CHUNK};

/* Find each known key of the map; a key seen twice or an unknown key fails. */
static int decode_fields(const msgpack_object *obj, const msgpack_object *field[F_COUNT],
                         struct refusal *r)
{
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];
        int f;
        for (f = 0; f < F_COUNT && !decode_str_is(&kv->key, decode_field_names[f]); f++)
            ;
        char text[DECODE_QUOTE_LEN];
        if (f == F_COUNT && kv->key.type == MSGPACK_OBJECT_STR)
            return refuse(r, DROP_UNKNOWN_KEY,
                          "unknown key '%s' (allowed: event, properties, timestamp, uuid, "
                          "distinct_id, chunk)",
                          log_escape(text, sizeof text, kv->key.via.str.ptr,
                                     kv->key.via.str.size, 64));
        if (f == F_COUNT)
            return refuse(r, DROP_UNKNOWN_KEY, "a key is not a string (msgpack type %d)",
                          kv->key.type);
        if (field[f] != NULL)
            return refuse(r, DROP_DUPLICATE_KEY, "key '%s' appears twice", decode_field_names[f]);
        field[f] = &kv->val;
    }
    return 0;
}

/* decode_event without the chunk of a refused event. */
static int decode_native(const msgpack_object *obj, const struct registry *registry,
                         struct analytics_event *ev, const msgpack_object **chunk,
                         struct refusal *r)
{
    const msgpack_object *field[F_COUNT] = {NULL};
    if (obj->type != MSGPACK_OBJECT_MAP)
        return refuse(r, DROP_UNSUPPORTED_SHAPE, "message is not a map (msgpack type %d)",
                      obj->type);
    if (decode_fields(obj, field, r) < 0)
        return -1;
    if (field[F_CHUNK] != NULL && !decode_chunk_is_valid(field[F_CHUNK]))
        return refuse(r, DROP_BAD_CHUNK, "'chunk' is not a string of 1 to %d bytes",
                      WIRE_CHUNK_MAX);
    *chunk = field[F_CHUNK];

    const msgpack_object *name = field[F_EVENT];
    if (name == NULL)
        return refuse(r, DROP_MISSING_EVENT, "no 'event' key");
    if (name->type != MSGPACK_OBJECT_STR)
        return refuse(r, DROP_BAD_EVENT, "'event' is not a string of 1 to %d bytes",
                      WIRE_NAME_MAX);
    ev->name = name->via.str.ptr;
    ev->name_len = name->via.str.size;
    if (decode_event_name(ev->name, ev->name_len, registry, r) < 0)
        return -1;

    ev->properties = NULL;
    ev->properties_are_record = 0;
    const msgpack_object *props = field[F_PROPERTIES];
    if (props != NULL && props->type == MSGPACK_OBJECT_MAP)
        ev->properties = &props->via.map;
    else if (props != NULL && props->type != MSGPACK_OBJECT_NIL)
        return refuse(r, DROP_BAD_PROPERTIES, "'properties' is not a map (msgpack type %d)",
                      props->type);

    ev->timestamp_ms = -1;
    if (field[F_TIMESTAMP] != NULL && decode_timestamp(field[F_TIMESTAMP], &ev->timestamp_ms) < 0)
        return refuse(r, DROP_BAD_TIMESTAMP,
                      "'timestamp' is not milliseconds since the epoch, an EventTime or RFC "
                      "3339 string from 1970 to 9999");
    if (decode_uuid(field[F_UUID], ev, r) < 0)
        return -1;
    return decode_distinct_id(field[F_DISTINCT_ID], ev, r);
}

int decode_event(const msgpack_object *obj, const struct registry *registry,
                 struct analytics_event *ev, const msgpack_object **chunk, struct refusal *r)
{
    *chunk = NULL;
    if (decode_native(obj, registry, ev, chunk, r) == 0)
        return 0;
    /* Refused: look for a valid chunk anyway (the fault may come before it
     * in the map), so that the refusal can be acknowledged. Only here, off
     * the path of valid events. */
    for (uint32_t i = 0; obj->type == MSGPACK_OBJECT_MAP && i < obj->via.map.size; i++)
        if (decode_str_is(&obj->via.map.ptr[i].key, WIRE_KEY_CHUNK) &&
            decode_chunk_is_valid(&obj->via.map.ptr[i].val))
            *chunk = &obj->via.map.ptr[i].val;
    return -1;
}
