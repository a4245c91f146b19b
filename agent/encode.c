/*
 * encode: events to JSON, with enrichment (see encode.h).
 *
 * msgpack -> JSON mapping: nil null; bool; integers as integers; floats as
 * numbers, float32 as the shortest text that reads back as the same float32
 * (NaN and infinities as null); str as strings (invalid UTF-8 becomes
 * U+FFFD); bin as base64 strings; timestamp exts (types 0 and -1) as ISO
 * 8601 strings, before 1970 or after 9999 too; other exts as base64 of their
 * data; arrays; maps, whose keys are written as strings (a non-string key as
 * the text of its JSON).
 *
 * Appends rely on buf's sticky failure: the encoder writes on and the caller
 * checks out->failed once. Only the depth limit stops it early.
 */
#include "encode.h"

#include "peer.h"
#include "privacy.h"

#include "json.h"
#include "timestamp.h"
#include "uuid.h"

#include <ctype.h>
#include <string.h>

static void encode_literal(struct buf *out, const char *text)
{
    buf_append_str(out, text);
}

/* Text that needs no escaping, as a JSON string. */
static void encode_quoted(struct buf *out, const char *text, size_t len)
{
    buf_append_char(out, '"');
    buf_append(out, text, len);
    buf_append_char(out, '"');
}

static int encode_key(struct buf *out, const msgpack_object *key, int depth)
{
    if (key->type == MSGPACK_OBJECT_STR) {
        json_write_string(out, key->via.str.ptr, key->via.str.size);
    } else if (key->type == MSGPACK_OBJECT_BIN || key->type == MSGPACK_OBJECT_EXT) {
        if (encode_value(out, key, depth) < 0) /* already a string */
            return -1;
    } else {
        /* the JSON text of the key, as a string */
        struct buf text = BUF_INIT;
        int rc = encode_value(&text, key, depth);
        if (text.failed)
            out->failed = 1;
        else if (rc == 0)
            json_write_string(out, text.data, text.len);
        buf_free(&text);
        if (rc < 0)
            return -1;
    }
    buf_append_char(out, ':');
    return 0;
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

static int encode_any(struct buf *out, const msgpack_object *obj, int depth, struct privacy *pv);

/* Write the added-properties subtree `node` as a JSON object. */
static void encode_props_node(struct buf *out, const struct props_node *node)
{
    if (node->json != NULL) {
        encode_literal(out, node->json);
        return;
    }
    buf_append_char(out, '{');
    for (size_t i = 0; i < node->nchildren; i++) {
        if (i > 0)
            buf_append_char(out, ',');
        json_write_string(out, node->children[i].key, strlen(node->children[i].key));
        buf_append_char(out, ':');
        encode_props_node(out, &node->children[i]);
    }
    buf_append_char(out, '}');
}

/* Write `map` merged with the added properties `extra` (an inner node, or
 * NULL): the map's own keys first, nested maps merged recursively, then every
 * added key the map does not have. A Forward `record` leaves out its event
 * fields. With peer_tags (the top level only) keys named like them are left
 * out and they are written last. */
/* The value of a key privacy.hash_keys names: its HMAC (of a string's
 * bytes, of anything else's JSON). */
static int encode_hashed(struct buf *out, const msgpack_object *val, int depth,
                         const struct privacy *pv)
{
    if (val->type == MSGPACK_OBJECT_STR) {
        privacy_write_hash(pv, out, val->via.str.ptr, val->via.str.size);
        return 0;
    }
    struct buf text = BUF_INIT;
    int rc = encode_any(&text, val, depth, NULL);
    if (text.failed)
        out->failed = 1;
    else if (rc == 0)
        privacy_write_hash(pv, out, text.data, text.len);
    buf_free(&text);
    return rc;
}

static int encode_map_merged(struct buf *out, const msgpack_object_map *map,
                             const struct props_node *extra, int depth, int record,
                             const char *peer_tags, struct privacy *pv)
{
    if (depth > ENCODE_MAX_DEPTH)
        return -1;
    buf_append_char(out, '{');
    uint32_t size = map ? map->size : 0;
    int first = 1;
    for (uint32_t i = 0; i < size; i++) {
        const msgpack_object_kv *kv = &map->ptr[i];
        if (record && encode_is_record_field(&kv->key))
            continue;
        int is_str = kv->key.type == MSGPACK_OBJECT_STR;
        if (peer_tags != NULL && is_str &&
            peer_is_tag_key(kv->key.via.str.ptr, kv->key.via.str.size))
            continue;
        enum privacy_action action = pv != NULL && is_str
                                         ? privacy_key(pv, kv->key.via.str.ptr, kv->key.via.str.size)
                                         : PRIVACY_KEEP;
        if (action == PRIVACY_DROP)
            continue;
        if (!first)
            buf_append_char(out, ',');
        first = 0;
        if (encode_key(out, &kv->key, depth + 1) < 0)
            return -1;
        if (action == PRIVACY_HASH) {
            if (encode_hashed(out, &kv->val, depth + 1, pv) < 0)
                return -1;
            continue;
        }
        const struct props_node *nested = NULL;
        if (extra != NULL && kv->key.type == MSGPACK_OBJECT_STR &&
            kv->val.type == MSGPACK_OBJECT_MAP)
            nested = props_child(extra, kv->key.via.str.ptr, kv->key.via.str.size);
        int rc = nested != NULL && nested->json == NULL
                     ? encode_map_merged(out, &kv->val.via.map, nested, depth + 1, 0, NULL, pv)
                     : encode_any(out, &kv->val, depth + 1, pv);
        if (rc < 0)
            return -1;
    }
    for (size_t i = 0; extra != NULL && i < extra->nchildren; i++) {
        const struct props_node *child = &extra->children[i];
        if (encode_map_has_key(map, child->key, record) ||
            (peer_tags != NULL && peer_is_tag_key(child->key, strlen(child->key))))
            continue;
        if (!first)
            buf_append_char(out, ',');
        first = 0;
        json_write_string(out, child->key, strlen(child->key));
        buf_append_char(out, ':');
        encode_props_node(out, child);
    }
    if (peer_tags != NULL) {
        if (!first)
            buf_append_char(out, ',');
        buf_append_str(out, peer_tags);
    }
    buf_append_char(out, '}');
    return 0;
}

static void encode_ext(struct buf *out, const msgpack_object_ext *ext)
{
    int64_t secs;
    uint32_t nanos;
    char text[TIMESTAMP_TEXT_MAX + 1];
    if (timestamp_from_ext(ext->type, (const unsigned char *)ext->ptr, ext->size, &secs,
                           &nanos) == 0)
        encode_quoted(out, text, timestamp_format_any(secs, nanos / 1000000, text));
    else
        json_write_base64(out, ext->ptr, ext->size);
}

int encode_value(struct buf *out, const msgpack_object *obj, int depth)
{
    return encode_any(out, obj, depth, NULL);
}

/* encode_value, with the [privacy] rules pv (NULL: none). */
static int encode_any(struct buf *out, const msgpack_object *obj, int depth, struct privacy *pv)
{
    if (depth > ENCODE_MAX_DEPTH)
        return -1;
    switch (obj->type) {
    case MSGPACK_OBJECT_BOOLEAN:
        encode_literal(out, obj->via.boolean ? "true" : "false");
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        json_write_uint64(out, obj->via.u64);
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        json_write_int64(out, obj->via.i64);
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
        json_write_float(out, (float)obj->via.f64);
        return 0;
    case MSGPACK_OBJECT_FLOAT64:
        json_write_double(out, obj->via.f64);
        return 0;
    case MSGPACK_OBJECT_STR:
        if (pv != NULL && privacy_redacts(pv))
            privacy_write_string(pv, out, obj->via.str.ptr, obj->via.str.size);
        else
            json_write_string(out, obj->via.str.ptr, obj->via.str.size);
        return 0;
    case MSGPACK_OBJECT_BIN:
        json_write_base64(out, obj->via.bin.ptr, obj->via.bin.size);
        return 0;
    case MSGPACK_OBJECT_EXT:
        encode_ext(out, &obj->via.ext);
        return 0;
    case MSGPACK_OBJECT_ARRAY:
        buf_append_char(out, '[');
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            if (i > 0)
                buf_append_char(out, ',');
            if (encode_any(out, &obj->via.array.ptr[i], depth + 1, pv) < 0)
                return -1;
        }
        buf_append_char(out, ']');
        return 0;
    case MSGPACK_OBJECT_MAP:
        return encode_map_merged(out, &obj->via.map, NULL, depth, 0, NULL, pv);
    case MSGPACK_OBJECT_NIL:
    default:
        encode_literal(out, "null");
        return 0;
    }
}

int encode_event(struct buf *out, const struct analytics_event *ev,
                 const struct encode_defaults *defaults, int64_t now_ms, struct refusal *r)
{
    encode_literal(out, "{\"event\":");
    json_write_string(out, ev->name, ev->name_len);
    encode_literal(out, ",\"properties\":");
    const char *tags = defaults->peer_tags && defaults->peer_tags[0] ? defaults->peer_tags : NULL;
    if (encode_map_merged(out, ev->properties, defaults->properties, 1,
                          ev->properties_are_record, tags, defaults->privacy) < 0)
        return refuse(r, DROP_TOO_LARGE, "properties nested more than %d levels deep",
                      ENCODE_MAX_DEPTH);
    encode_literal(out, ",\"distinct_id\":");
    if (ev->distinct_id != NULL)
        json_write_string(out, ev->distinct_id, ev->distinct_id_len);
    else
        json_write_string(out, defaults->distinct_id, strlen(defaults->distinct_id));
    encode_literal(out, ",\"timestamp\":");
    char text[TIMESTAMP_TEXT_MAX + 1];
    encode_quoted(out, text,
                  timestamp_format_ms_any(ev->timestamp_ms >= 0 ? ev->timestamp_ms : now_ms, text));
    encode_literal(out, ",\"uuid\":\"");
    char uuid[UUID_TEXT_LEN + 1];
    if (ev->uuid != NULL) {
        for (int i = 0; i < UUID_TEXT_LEN; i++)
            uuid[i] = (char)tolower((unsigned char)ev->uuid[i]);
    } else {
        uuid_v7(now_ms, uuid);
    }
    buf_append(out, uuid, UUID_TEXT_LEN);
    encode_literal(out, "\"}");
    if (out->failed)
        return refuse(r, DROP_BUFFER_FULL, "out of memory");
    return 0;
}
