/*
 * encode: events to JSON, with enrichment (see encode.h).
 *
 * msgpack -> JSON mapping: nil null; bool; integers as integers; floats as
 * numbers (NaN and infinities as null); str as strings (invalid UTF-8 becomes
 * U+FFFD); bin as base64 strings; timestamp exts (types 0 and -1) as ISO 8601
 * strings, other exts as base64 of their data; arrays; maps, whose keys are
 * written as strings (a non-string key as the text of its JSON).
 */
#include "encode.h"

#include "json.h"
#include "timestamp.h"
#include "uuid.h"

#include <ctype.h>
#include <string.h>

#define ENCODE_TRY(expr)                                                                           \
    do {                                                                                           \
        int encode_rc_ = (expr);                                                                   \
        if (encode_rc_ != 0)                                                                       \
            return encode_rc_ < -1 ? (enum encode_status)encode_rc_ : ENCODE_NOMEM;                \
    } while (0)

static enum encode_status encode_timestamp_text(struct buf *out, int64_t ms)
{
    char text[TIMESTAMP_TEXT_LEN + 1];
    if (timestamp_format(ms, text) < 0)
        return buf_append(out, "null", 4) ? ENCODE_NOMEM : ENCODE_OK;
    ENCODE_TRY(buf_append_char(out, '"'));
    ENCODE_TRY(buf_append(out, text, TIMESTAMP_TEXT_LEN));
    ENCODE_TRY(buf_append_char(out, '"'));
    return ENCODE_OK;
}

static enum encode_status encode_key(struct buf *out, const msgpack_object *key, int depth)
{
    switch (key->type) {
    case MSGPACK_OBJECT_STR:
        ENCODE_TRY(json_write_string(out, key->via.str.ptr, key->via.str.size));
        break;
    case MSGPACK_OBJECT_BIN:
    case MSGPACK_OBJECT_EXT:
        ENCODE_TRY(encode_value(out, key, depth));
        break;
    default: {
        /* the JSON text of the key, as a string */
        struct buf text = BUF_INIT;
        enum encode_status rc = encode_value(&text, key, depth);
        if (rc == ENCODE_OK)
            rc = json_write_string(out, text.data, text.len) ? ENCODE_NOMEM : ENCODE_OK;
        buf_free(&text);
        if (rc != ENCODE_OK)
            return rc;
        break;
    }
    }
    return buf_append_char(out, ':') ? ENCODE_NOMEM : ENCODE_OK;
}

static int encode_key_equals(const msgpack_object *key, const char *name, size_t len)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len &&
           memcmp(key->via.str.ptr, name, len) == 0;
}

/* The keys of a Forward record that are event fields, not properties. */
static int encode_is_record_field(const msgpack_object *key)
{
    return encode_key_equals(key, "event", 5) || encode_key_equals(key, "uuid", 4) ||
           encode_key_equals(key, "distinct_id", 11);
}

static int encode_map_has_key(const msgpack_object_map *map, const char *name, int record)
{
    size_t len = strlen(name);
    for (uint32_t i = 0; map != NULL && i < map->size; i++)
        if (encode_key_equals(&map->ptr[i].key, name, len) &&
            !(record && encode_is_record_field(&map->ptr[i].key)))
            return 1;
    return 0;
}

/* Write the added-properties subtree `node` as a JSON object. */
static enum encode_status encode_props_node(struct buf *out, const struct props_node *node)
{
    if (node->json != NULL)
        return buf_append_str(out, node->json) ? ENCODE_NOMEM : ENCODE_OK;
    ENCODE_TRY(buf_append_char(out, '{'));
    for (size_t i = 0; i < node->nchildren; i++) {
        if (i > 0)
            ENCODE_TRY(buf_append_char(out, ','));
        ENCODE_TRY(json_write_string(out, node->children[i].key, strlen(node->children[i].key)));
        ENCODE_TRY(buf_append_char(out, ':'));
        ENCODE_TRY(encode_props_node(out, &node->children[i]));
    }
    return buf_append_char(out, '}') ? ENCODE_NOMEM : ENCODE_OK;
}

/* Write `map` merged with the added properties `extra` (an inner node, or
 * NULL): the map's own keys first, nested maps merged recursively, then every
 * added key the map does not have. A Forward `record` leaves out its event
 * fields. */
static enum encode_status encode_map_merged(struct buf *out, const msgpack_object_map *map,
                                            const struct props_node *extra, int depth, int record)
{
    if (depth > ENCODE_MAX_DEPTH)
        return ENCODE_TOO_DEEP;
    ENCODE_TRY(buf_append_char(out, '{'));
    uint32_t size = map ? map->size : 0;
    int first = 1;
    for (uint32_t i = 0; i < size; i++) {
        const msgpack_object_kv *kv = &map->ptr[i];
        if (record && encode_is_record_field(&kv->key))
            continue;
        if (!first)
            ENCODE_TRY(buf_append_char(out, ','));
        first = 0;
        ENCODE_TRY(encode_key(out, &kv->key, depth + 1));
        const struct props_node *nested = NULL;
        if (extra != NULL && kv->key.type == MSGPACK_OBJECT_STR && kv->val.type == MSGPACK_OBJECT_MAP)
            nested = props_child(extra, kv->key.via.str.ptr, kv->key.via.str.size);
        if (nested != NULL && nested->json == NULL)
            ENCODE_TRY(encode_map_merged(out, &kv->val.via.map, nested, depth + 1, 0));
        else
            ENCODE_TRY(encode_value(out, &kv->val, depth + 1));
    }
    for (size_t i = 0; extra != NULL && i < extra->nchildren; i++) {
        const struct props_node *child = &extra->children[i];
        if (encode_map_has_key(map, child->key, record))
            continue;
        if (!first)
            ENCODE_TRY(buf_append_char(out, ','));
        first = 0;
        ENCODE_TRY(json_write_string(out, child->key, strlen(child->key)));
        ENCODE_TRY(buf_append_char(out, ':'));
        ENCODE_TRY(encode_props_node(out, child));
    }
    return buf_append_char(out, '}') ? ENCODE_NOMEM : ENCODE_OK;
}

enum encode_status encode_value(struct buf *out, const msgpack_object *obj, int depth)
{
    if (depth > ENCODE_MAX_DEPTH)
        return ENCODE_TOO_DEEP;
    switch (obj->type) {
    case MSGPACK_OBJECT_NIL:
        ENCODE_TRY(buf_append(out, "null", 4));
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        ENCODE_TRY(buf_append_str(out, obj->via.boolean ? "true" : "false"));
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        ENCODE_TRY(json_write_uint64(out, obj->via.u64));
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        ENCODE_TRY(json_write_int64(out, obj->via.i64));
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        ENCODE_TRY(json_write_double(out, obj->via.f64));
        break;
    case MSGPACK_OBJECT_STR:
        ENCODE_TRY(json_write_string(out, obj->via.str.ptr, obj->via.str.size));
        break;
    case MSGPACK_OBJECT_BIN:
        ENCODE_TRY(json_write_base64(out, obj->via.bin.ptr, obj->via.bin.size));
        break;
    case MSGPACK_OBJECT_EXT: {
        int64_t ms;
        if ((obj->via.ext.type == 0 || obj->via.ext.type == -1) && decode_timestamp(obj, &ms) == 0)
            return encode_timestamp_text(out, ms);
        ENCODE_TRY(json_write_base64(out, obj->via.ext.ptr, obj->via.ext.size));
        break;
    }
    case MSGPACK_OBJECT_ARRAY:
        ENCODE_TRY(buf_append_char(out, '['));
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            if (i > 0)
                ENCODE_TRY(buf_append_char(out, ','));
            ENCODE_TRY(encode_value(out, &obj->via.array.ptr[i], depth + 1));
        }
        ENCODE_TRY(buf_append_char(out, ']'));
        break;
    case MSGPACK_OBJECT_MAP:
        return encode_map_merged(out, &obj->via.map, NULL, depth, 0);
    default:
        ENCODE_TRY(buf_append(out, "null", 4));
    }
    return ENCODE_OK;
}

enum encode_status encode_event(struct buf *out, const struct event *ev,
                                const struct encode_defaults *defaults, int64_t now_ms)
{
    ENCODE_TRY(buf_append_str(out, "{\"event\":"));
    ENCODE_TRY(json_write_string(out, ev->name, ev->name_len));
    ENCODE_TRY(buf_append_str(out, ",\"properties\":"));
    ENCODE_TRY(encode_map_merged(out, ev->properties, defaults->properties, 1,
                                 ev->properties_are_record));
    ENCODE_TRY(buf_append_str(out, ",\"distinct_id\":"));
    if (ev->distinct_id != NULL)
        ENCODE_TRY(json_write_string(out, ev->distinct_id, ev->distinct_id_len));
    else
        ENCODE_TRY(json_write_string(out, defaults->distinct_id, strlen(defaults->distinct_id)));
    ENCODE_TRY(buf_append_str(out, ",\"timestamp\":"));
    ENCODE_TRY(encode_timestamp_text(out, ev->timestamp_ms >= 0 ? ev->timestamp_ms : now_ms));
    ENCODE_TRY(buf_append_str(out, ",\"uuid\":\""));
    char uuid[UUID_TEXT_LEN + 1];
    if (ev->uuid != NULL) {
        for (int i = 0; i < UUID_TEXT_LEN; i++)
            uuid[i] = (char)tolower((unsigned char)ev->uuid[i]);
        uuid[UUID_TEXT_LEN] = '\0';
    } else {
        uuid_v7(now_ms, uuid);
    }
    ENCODE_TRY(buf_append(out, uuid, UUID_TEXT_LEN));
    ENCODE_TRY(buf_append_str(out, "\"}"));
    return ENCODE_OK;
}
