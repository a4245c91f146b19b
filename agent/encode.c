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
#include "log.h"

#include "hash.h"
#include "json.h"
#include "swar.h"
#include "timestamp.h"
#include "uuid.h"

#include <ctype.h>
#include <string.h>

/* Append a string literal's text (its length known when compiled). */
#define encode_literal(out, text) buf_append((out), "" text, sizeof(text) - 1)

/* Text that needs no escaping, as a JSON string. */
static void encode_quoted(struct buf *out, const char *text, size_t len)
{
    buf_append_char(out, '"');
    buf_append(out, text, len);
    buf_append_char(out, '"');
}

/* The JSON text of a key that is not a string, in text (a buffer of
 * ENCODE_MAX_KEY_BYTES). Each level of keys within keys escapes the one
 * below again, doubling its backslashes: the bound keeps a small message
 * from growing without end. Returns 0, ENCODE_KEY_TOO_LONG, or -1. */
static int encode_key_json(char *text, size_t *len, const msgpack_object *key, int depth)
{
    struct buf b = buf_borrow(text, ENCODE_MAX_KEY_BYTES);
    int rc = encode_value(&b, key, depth);
    *len = b.len;
    return rc < 0 ? rc : b.failed ? ENCODE_KEY_TOO_LONG : 0;
}

/* Copy a few bytes (a key) as words, the last one overlapping: no call. */
static inline void encode_copy_short(char *to, const char *from, size_t len)
{
    if (len >= 8) {
        for (size_t i = 0; i + 8 < len; i += 8)
            memcpy(to + i, from + i, 8);
        memcpy(to + len - 8, from + len - 8, 8);
    } else if (len >= 4) {
        memcpy(to, from, 4);
        memcpy(to + len - 4, from + len - 4, 4);
    } else {
        for (size_t i = 0; i < len; i++)
            to[i] = from[i];
    }
}

/* "key": for a key that needs no escaping, after a comma if `comma` (0 or
 * 1): one reserve for the whole. */
static void encode_plain_key(struct buf *out, const char *key, size_t len, int comma)
{
    if ((out->cap - out->len < len + 4 || out->failed) && buf_reserve(out, len + 4) < 0)
        return;
    char *o = out->data + out->len;
    o[0] = ',';
    o += comma;
    o[0] = '"';
    encode_copy_short(o + 1, key, len);
    o[len + 1] = '"';
    o[len + 2] = ':';
    out->len += len + 3 + (size_t)comma;
}

static int encode_key(struct buf *out, const msgpack_object *key, int depth)
{
    if (key->type == MSGPACK_OBJECT_STR) {
        json_write_string(out, key->via.str.ptr, key->via.str.size);
    } else if (key->type == MSGPACK_OBJECT_BIN || key->type == MSGPACK_OBJECT_EXT) {
        if (encode_value(out, key, depth) < 0) /* already a string */
            return -1;
    } else { /* the JSON text of the key, as a string */
        char text[ENCODE_MAX_KEY_BYTES];
        size_t len;
        int rc = encode_key_json(text, &len, key, depth);
        if (rc < 0)
            return rc;
        json_write_string(out, text, len);
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

static int encode_map_has_key(const msgpack_object_map *map, const char *name, size_t len,
                              int record)
{
    for (uint32_t i = 0; map != NULL && i < map->size; i++)
        if (encode_key_equals(&map->ptr[i].key, name, len) &&
            !(record && encode_is_record_field(&map->ptr[i].key)))
            return 1;
    return 0;
}

static int encode_any(struct buf *out, const msgpack_object *obj, int depth, struct privacy *pv);

/* A string value, through the value rules when there are any. */
static inline void encode_string_value(struct buf *out, const msgpack_object_str *str,
                                       struct privacy *pv)
{
    if (pv != NULL && privacy_redacts(pv))
        privacy_write_string(pv, out, str->ptr, str->size);
    else
        json_write_string(out, str->ptr, str->size);
}

/* An element of a map or array: the forms most are (a string, a small
 * integer) written in place, without a call; the rest through encode_any. */
static inline __attribute__((always_inline)) int
encode_element(struct buf *out, const msgpack_object *obj, int depth, struct privacy *pv)
{
    if (depth > ENCODE_MAX_DEPTH) /* refused there */
        return encode_any(out, obj, depth, pv);
    if (obj->type == MSGPACK_OBJECT_STR) {
        encode_string_value(out, &obj->via.str, pv);
        return 0;
    }
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        json_write_uint64(out, obj->via.u64);
        return 0;
    }
    return encode_any(out, obj, depth, pv);
}

/* Up to this many string keys, a map's keys are checked for repeats in a
 * table of twice as many slots (2^6) on the stack, by fingerprint. */
#define ENCODE_TABLED_KEYS 32

/* The key a map repeated, for the refusal's message. */
static _Thread_local char encode_repeated[140];

/* A key as the name it is written as: its text at off in a scratch
 * buffer (ptr, once the buffer is complete). */
struct encode_name {
    const char *ptr;
    size_t off, len;
};

static int encode_name_cmp(const void *a, const void *b)
{
    const struct encode_name *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->ptr, y->ptr, x->len);
}

/* Append the name key is written as (its characters, before JSON
 * escaping). Returns 0, or -1 (too deep, or out of memory). */
static int encode_name_text(struct buf *texts, const msgpack_object *key, int depth)
{
    if (key->type == MSGPACK_OBJECT_STR) { /* invalid bytes as json_write_string has them */
        const unsigned char *p = (const unsigned char *)key->via.str.ptr;
        size_t len = key->via.str.size;
        for (size_t i = 0; i < len;) {
            size_t n = p[i] < 0x80 ? 1 : json_utf8_sequence_length(p + i, len - i);
            if (n == 0)
                buf_append(texts, "\xef\xbf\xbd", 3);
            else
                buf_append(texts, p + i, n);
            i += n == 0 ? 1 : n;
        }
        return texts->failed ? -1 : 0;
    }
    size_t start = texts->len;
    if (key->type == MSGPACK_OBJECT_BIN || key->type == MSGPACK_OBJECT_EXT) {
        if (encode_value(texts, key, depth) < 0 || texts->failed)
            return -1;
        /* written as a string already: its characters are inside the quotes */
        memmove(texts->data + start, texts->data + start + 1, texts->len - start - 2);
        buf_truncate(texts, texts->len - 2);
        return 0;
    }
    char text[ENCODE_MAX_KEY_BYTES];
    size_t len;
    int rc = encode_key_json(text, &len, key, depth);
    if (rc < 0)
        return rc;
    return buf_append(texts, text, len) < 0 ? -1 : 0;
}

/* The names of a map's keys as written, when they had to be worked out
 * (names NULL: the keys are exact strings, written as they are). */
struct encode_names {
    struct encode_name *names; /* by the key's place in the map */
    struct buf texts;
};

static void encode_names_free(struct encode_names *k)
{
    if (k->names == NULL && k->texts.data == NULL) /* most maps: none were worked out */
        return;
    free(k->names);
    buf_free(&k->texts);
}

/* A string key's fingerprint in *print (keys with different ones differ:
 * its length and its first and last eight bytes), and whether it is valid
 * UTF-8 (read as words; most keys are short ASCII). */
static int encode_key_fingerprint(const msgpack_object_str *key, uint64_t *print)
{
    const char *p = key->ptr;
    size_t len = key->size;
    uint64_t first, last, high = 0;
    hash_ends(p, len, &first, &last);
    for (size_t i = 8; i + 8 <= len; i += 8) { /* the words between, for UTF-8 only */
        uint64_t w;
        memcpy(&w, p + i, 8);
        high |= swar_high(w);
    }
    *print = (first ^ (last * UINT64_C(0x9e3779b97f4a7c15))) + len;
    high |= swar_high(first) | swar_high(last);
    return high == 0 || json_utf8_is_valid(p, len);
}

/* msgpack maps may repeat a key, JSON objects may not (the backend would
 * keep one of them, silently): does map (a Forward record without its event
 * fields) have two keys written as the same name? Returns 1 with the name
 * in dup, 0, or -1 when out of memory or nested too deep. The names worked
 * out are left in *k (free with encode_names_free), so that each key is
 * encoded once however deep maps nest as keys of maps. */
static int encode_map_repeats_a_key(const msgpack_object_map *map, int depth, int record,
                                    char *dup, size_t duplen, struct encode_names *k)
{
    dup[0] = '\0';
    *k = (struct encode_names){NULL, BUF_INIT};
    if (map == NULL || map->size < 2)
        return 0;
    if (map->size <= ENCODE_TABLED_KEYS) { /* most maps: a few exact string keys */
        uint64_t print[ENCODE_TABLED_KEYS];
        uint8_t slots[2 * ENCODE_TABLED_KEYS] = {0}; /* by fingerprint: a key's place + 1 */
        int exact = 1;
        for (uint32_t i = 0; exact && i < map->size; i++)
            exact = map->ptr[i].key.type == MSGPACK_OBJECT_STR &&
                    encode_key_fingerprint(&map->ptr[i].key.via.str, &print[i]);
        for (uint32_t i = 0; exact && i < map->size; i++) {
            const msgpack_object_str *a = &map->ptr[i].key.via.str;
            size_t h = (size_t)((print[i] * UINT64_C(0x9e3779b97f4a7c15)) >> 58);
            for (; slots[h] != 0; h = (h + 1) % (2 * ENCODE_TABLED_KEYS)) {
                uint32_t j = slots[h] - 1u;
                const msgpack_object_str *b = &map->ptr[j].key.via.str;
                if (print[i] == print[j] && a->size == b->size &&
                    memcmp(a->ptr, b->ptr, a->size) == 0 &&
                    !(record && encode_is_record_field(&map->ptr[i].key))) {
                    log_escape(dup, duplen, a->ptr, a->size, 32);
                    return 1;
                }
            }
            slots[h] = (uint8_t)(i + 1);
        }
        if (exact)
            return 0;
    }
    k->names = calloc(map->size, sizeof *k->names);
    struct encode_name *sorted = calloc(map->size, sizeof *sorted);
    size_t n = 0;
    int rc = k->names == NULL || sorted == NULL ? -1 : 0;
    for (uint32_t i = 0; rc == 0 && i < map->size; i++) {
        const msgpack_object *key = &map->ptr[i].key;
        size_t start = k->texts.len;
        rc = encode_name_text(&k->texts, key, depth);
        if (rc == 0)
            k->names[i] = (struct encode_name){NULL, start, k->texts.len - start};
    }
    for (uint32_t i = 0; rc == 0 && i < map->size; i++) {
        k->names[i].ptr = k->texts.data ? k->texts.data + k->names[i].off : "";
        if (!(record && encode_is_record_field(&map->ptr[i].key)))
            sorted[n++] = k->names[i];
    }
    if (rc == 0)
        qsort(sorted, n, sizeof *sorted, encode_name_cmp);
    for (size_t i = 1; rc == 0 && i < n; i++) {
        if (encode_name_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            log_escape(dup, duplen, sorted[i].ptr, sorted[i].len, 32);
            rc = 1;
        }
    }
    free(sorted);
    if (rc != 0)
        encode_names_free(k);
    return rc;
}

/* Write the added-properties subtree `node` as a JSON object. */
static void encode_props_node(struct buf *out, const struct props_node *node)
{
    if (node->json != NULL) {
        buf_append(out, node->json, node->json_len);
        return;
    }
    buf_append_char(out, '{');
    for (size_t i = 0; i < node->nchildren; i++) {
        if (i > 0)
            buf_append_char(out, ',');
        buf_append(out, node->children[i].key_json, node->children[i].key_json_len);
        encode_props_node(out, &node->children[i]);
    }
    buf_append_char(out, '}');
}

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

/* Write `map` merged with the added properties `extra` (an inner node, or
 * NULL): the map's own keys first, nested maps merged recursively, then every
 * added key the map does not have. A Forward `record` leaves out its event
 * fields. With peer_tags (the top level only) keys named like them are left
 * out and they are written last. */
static int encode_map_merged(struct buf *out, const msgpack_object_map *map,
                             const struct props_node *extra, int depth, int record,
                             const char *peer_tags, struct privacy *pv)
{
    if (depth > ENCODE_MAX_DEPTH)
        return -1;
    struct encode_names known;
    int rc = encode_map_repeats_a_key(map, depth + 1, record, encode_repeated,
                                      sizeof encode_repeated, &known);
    if (rc != 0)
        return rc > 0 ? ENCODE_REPEATED_KEY : rc;
    buf_append_char(out, '{');
    uint32_t size = map ? map->size : 0;
    int first = 1;
    for (uint32_t i = 0; i < size && rc == 0; i++) {
        const msgpack_object_kv *kv = &map->ptr[i];
        if (record && encode_is_record_field(&kv->key))
            continue;
        int is_str = kv->key.type == MSGPACK_OBJECT_STR;
        if (peer_tags != NULL && is_str &&
            peer_is_tag_key(kv->key.via.str.ptr, kv->key.via.str.size))
            continue;
        int plain = 0; /* the key is JSON text as it is (known from privacy's cache) */
        enum privacy_action action =
            pv != NULL && is_str
                ? privacy_key(pv, kv->key.via.str.ptr, kv->key.via.str.size, &plain)
                : PRIVACY_KEEP;
        if (action == PRIVACY_DROP)
            continue;
        int comma = !first;
        first = 0;
        if (plain) {
            encode_plain_key(out, kv->key.via.str.ptr, kv->key.via.str.size, comma);
        } else {
            if (comma)
                buf_append_char(out, ',');
            if (known.names != NULL) { /* worked out already */
                json_write_string(out, known.names[i].ptr, known.names[i].len);
                buf_append_char(out, ':');
            } else if ((rc = encode_key(out, &kv->key, depth + 1)) < 0) {
                break;
            }
        }
        if (action == PRIVACY_HASH) {
            rc = encode_hashed(out, &kv->val, depth + 1, pv);
            continue;
        }
        const struct props_node *nested = NULL;
        if (extra != NULL && kv->key.type == MSGPACK_OBJECT_STR &&
            kv->val.type == MSGPACK_OBJECT_MAP)
            nested = props_child(extra, kv->key.via.str.ptr, kv->key.via.str.size);
        rc = nested != NULL && nested->json == NULL
                 ? encode_map_merged(out, &kv->val.via.map, nested, depth + 1, 0, NULL, pv)
                 : encode_element(out, &kv->val, depth + 1, pv);
    }
    encode_names_free(&known);
    if (rc < 0)
        return rc;
    for (size_t i = 0; extra != NULL && i < extra->nchildren; i++) {
        const struct props_node *child = &extra->children[i];
        if (encode_map_has_key(map, child->key, child->key_len, record) ||
            (peer_tags != NULL && peer_is_tag_key(child->key, child->key_len)))
            continue;
        if (!first)
            buf_append_char(out, ',');
        first = 0;
        buf_append(out, child->key_json, child->key_json_len);
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
                           &nanos) == 0) {
        size_t len = timestamp_format_any(secs, nanos / 1000000, text);
        encode_quoted(out, text, len);
    } else {
        json_write_base64(out, ext->ptr, ext->size);
    }
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
        if (obj->via.boolean)
            encode_literal(out, "true");
        else
            encode_literal(out, "false");
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
        encode_string_value(out, &obj->via.str, pv);
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
            int rc = encode_element(out, &obj->via.array.ptr[i], depth + 1, pv);
            if (rc < 0)
                return rc;
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
    int rc = encode_map_merged(out, ev->properties, defaults->properties, 1,
                               ev->properties_are_record, tags, defaults->privacy);
    if (rc == ENCODE_KEY_TOO_LONG)
        return refuse(r, DROP_BAD_PROPERTIES, "a key that is not a string is written as more "
                      "than %d bytes (allowed: keys within keys up to that)", ENCODE_MAX_KEY_BYTES);
    if (rc == ENCODE_REPEATED_KEY)
        return refuse(r, DROP_DUPLICATE_KEY, "a map in its properties has the key '%s' twice "
                      "(allowed: each key once, as in JSON)", encode_repeated);
    if (rc < 0)
        return refuse(r, DROP_TOO_LARGE, "properties nested more than %d levels deep",
                      ENCODE_MAX_DEPTH);
    encode_literal(out, ",\"distinct_id\":");
    if (ev->distinct_id != NULL)
        json_write_string(out, ev->distinct_id, ev->distinct_id_len);
    else
        json_write_string(out, defaults->distinct_id, strlen(defaults->distinct_id));
    encode_literal(out, ",\"timestamp\":");
    char text[TIMESTAMP_TEXT_MAX + 1];
    size_t text_len = timestamp_format_ms_any(ev->timestamp_ms >= 0 ? ev->timestamp_ms : now_ms, text);
    encode_quoted(out, text, text_len);
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
