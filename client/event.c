/*
 * event: the event builder (tlm_event_*, see telemetry.h).
 *
 * Properties are packed as they are added, straight into one buffer. A map
 * or array does not know its size when it is opened, so it gets a 5-byte
 * placeholder header; tlm_event_end counts what went in, writes the smallest
 * header and slides the contents down over the unused bytes. The properties
 * map itself is the bottom of that stack and stays open until the event is
 * encoded; tlm_event_encode then writes the event map around it.
 *
 * uuids come from the shared UUIDv7 generator (proto/uuid.c), which keeps
 * unlocked process-wide state: calls go through one lock. It seeds itself
 * afresh after fork(), so a child never repeats the ids its parent makes.
 */
#include "event.h"

#include "clock.h"
#include "pack.h"
#include "telemetry.h"
#include "uuid.h"
#include "wire.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TLM_EVENT_PLACEHOLDER 5 /* map32 / array32 header */

struct tlm_event_level {
    size_t start;   /* offset of the placeholder header */
    uint32_t count; /* elements (map: pairs) so far */
    int is_map;
};

struct tlm_event {
    char *name;
    size_t name_len;
    char uuid[TLM_UUID_LEN + 1]; /* "" when left out */
    int has_timestamp;
    int64_t timestamp_ms;
    char *distinct_id; /* NULL when not set */
    size_t distinct_id_len;
    struct buf props;
    /* open containers; [0] is the properties map. The event map around it
     * is one more level, so at most TLM_MAX_DEPTH - 1 entries. */
    struct tlm_event_level open[TLM_MAX_DEPTH - 1];
    int depth;
    tlm_status error; /* the first builder error, kept for tlm_send */
    struct buf out;
};

static pthread_mutex_t tlm_event_uuid_lock = PTHREAD_MUTEX_INITIALIZER;

void tlm_event_fork_prepare(void)
{
    pthread_mutex_lock(&tlm_event_uuid_lock);
}

void tlm_event_fork_release(void)
{
    pthread_mutex_unlock(&tlm_event_uuid_lock);
}

void tlm_event_new_uuid(int64_t ms, char out[TLM_UUID_LEN + 1])
{
    pthread_mutex_lock(&tlm_event_uuid_lock);
    uuid_v7(ms, out);
    pthread_mutex_unlock(&tlm_event_uuid_lock);
}

static void tlm_event_fail(tlm_event *ev, tlm_status st)
{
    if (ev->error == TLM_OK)
        ev->error = st;
}

/* Check and copy a protocol string (name, distinct_id) of 1..max bytes. */
static tlm_status tlm_event_copy_str(const char *s, size_t max, char **out, size_t *out_len)
{
    if (s == NULL || s[0] == '\0')
        return TLM_EINVAL;
    size_t len = strnlen(s, max + 1);
    if (len > max)
        return TLM_ETOOLONG;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return TLM_ENOMEM;
    memcpy(copy, s, len + 1);
    *out = copy;
    *out_len = len;
    return TLM_OK;
}

/* Open a container at the end of props, recorded as level ev->depth. */
static void tlm_event_push(tlm_event *ev, int is_map)
{
    static const unsigned char placeholder[TLM_EVENT_PLACEHOLDER] = {0xdf};
    struct tlm_event_level *l = &ev->open[ev->depth++];
    l->start = ev->props.len;
    l->count = 0;
    l->is_map = is_map;
    buf_append(&ev->props, placeholder, sizeof placeholder);
}

tlm_status tlm_event_new(tlm_event **out, const char *name)
{
    if (out == NULL)
        return TLM_EINVAL;
    *out = NULL;
    tlm_event *ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return TLM_ENOMEM;
    tlm_status st = tlm_event_copy_str(name, TLM_NAME_MAX, &ev->name, &ev->name_len);
    if (st != TLM_OK) {
        free(ev);
        return st;
    }
    ev->has_timestamp = 1;
    ev->timestamp_ms = clock_wall_ms();
    tlm_event_new_uuid(ev->timestamp_ms, ev->uuid);
    tlm_event_push(ev, 1);
    if (ev->props.failed) {
        tlm_event_free(ev);
        return TLM_ENOMEM;
    }
    *out = ev;
    return TLM_OK;
}

void tlm_event_free(tlm_event *ev)
{
    if (ev == NULL)
        return;
    free(ev->name);
    free(ev->distinct_id);
    buf_free(&ev->props);
    buf_free(&ev->out);
    free(ev);
}

tlm_status tlm_event_set_uuid(tlm_event *ev, const char *uuid)
{
    if (ev == NULL || uuid == NULL || !uuid_is_valid(uuid, strnlen(uuid, TLM_UUID_LEN + 1)))
        return TLM_EINVAL;
    memcpy(ev->uuid, uuid, TLM_UUID_LEN + 1);
    return TLM_OK;
}

tlm_status tlm_event_clear_uuid(tlm_event *ev)
{
    if (ev == NULL)
        return TLM_EINVAL;
    ev->uuid[0] = '\0';
    return TLM_OK;
}

tlm_status tlm_event_set_timestamp_ms(tlm_event *ev, int64_t ms)
{
    if (ev == NULL || ms < 0 || ms > WIRE_TIMESTAMP_MAX_MS)
        return TLM_EINVAL;
    ev->has_timestamp = 1;
    ev->timestamp_ms = ms;
    return TLM_OK;
}

tlm_status tlm_event_clear_timestamp(tlm_event *ev)
{
    if (ev == NULL)
        return TLM_EINVAL;
    ev->has_timestamp = 0;
    return TLM_OK;
}

tlm_status tlm_event_set_distinct_id(tlm_event *ev, const char *distinct_id)
{
    if (ev == NULL)
        return TLM_EINVAL;
    char *copy;
    size_t len;
    tlm_status st = tlm_event_copy_str(distinct_id, TLM_DISTINCT_ID_MAX, &copy, &len);
    if (st != TLM_OK)
        return st;
    free(ev->distinct_id);
    ev->distinct_id = copy;
    ev->distinct_id_len = len;
    return TLM_OK;
}

/* Start a value: check the key against the innermost container, write the
 * key, count the element. On error the event keeps it and nothing is
 * written. */
static tlm_status tlm_event_key(tlm_event *ev, const char *key)
{
    if (ev == NULL)
        return TLM_EINVAL;
    struct tlm_event_level *l = &ev->open[ev->depth - 1];
    if ((key != NULL) != l->is_map || l->count == UINT32_MAX - 1) {
        tlm_event_fail(ev, TLM_EINVAL);
        return TLM_EINVAL;
    }
    if (key != NULL)
        pack_str(&ev->props, key, strlen(key));
    l->count++;
    return TLM_OK;
}

/* Finish a value: report a failed allocation. */
static tlm_status tlm_event_done(tlm_event *ev)
{
    if (!ev->props.failed)
        return TLM_OK;
    tlm_event_fail(ev, TLM_ENOMEM);
    return TLM_ENOMEM;
}

enum tlm_event_kind { TLM_EVENT_STR, TLM_EVENT_INT, TLM_EVENT_UINT, TLM_EVENT_DOUBLE,
                      TLM_EVENT_BOOL, TLM_EVENT_NIL };

struct tlm_event_value {
    enum tlm_event_kind kind;
    const char *s;
    size_t len;
    int64_t i;
    uint64_t u;
    double d;
};

static tlm_status tlm_event_add(tlm_event *ev, const char *key, struct tlm_event_value v)
{
    tlm_status st = tlm_event_key(ev, key);
    if (st != TLM_OK)
        return st;
    switch (v.kind) {
    case TLM_EVENT_STR: pack_str(&ev->props, v.s, v.len); break;
    case TLM_EVENT_INT: pack_int(&ev->props, v.i); break;
    case TLM_EVENT_UINT: pack_uint(&ev->props, v.u); break;
    case TLM_EVENT_DOUBLE: pack_double(&ev->props, v.d); break;
    case TLM_EVENT_BOOL: pack_bool(&ev->props, v.i != 0); break;
    case TLM_EVENT_NIL: pack_nil(&ev->props); break;
    }
    return tlm_event_done(ev);
}

tlm_status tlm_event_add_strn(tlm_event *ev, const char *key, const char *value, size_t len)
{
    if (value == NULL) {
        if (ev != NULL)
            tlm_event_fail(ev, TLM_EINVAL);
        return TLM_EINVAL;
    }
    return tlm_event_add(ev, key, (struct tlm_event_value){.kind = TLM_EVENT_STR, .s = value,
                                                           .len = len});
}

tlm_status tlm_event_add_str(tlm_event *ev, const char *key, const char *value)
{
    return tlm_event_add_strn(ev, key, value, value != NULL ? strlen(value) : 0);
}

tlm_status tlm_event_add_int(tlm_event *ev, const char *key, int64_t value)
{
    return tlm_event_add(ev, key, (struct tlm_event_value){.kind = TLM_EVENT_INT, .i = value});
}

tlm_status tlm_event_add_uint(tlm_event *ev, const char *key, uint64_t value)
{
    return tlm_event_add(ev, key, (struct tlm_event_value){.kind = TLM_EVENT_UINT, .u = value});
}

tlm_status tlm_event_add_double(tlm_event *ev, const char *key, double value)
{
    return tlm_event_add(ev, key, (struct tlm_event_value){.kind = TLM_EVENT_DOUBLE, .d = value});
}

tlm_status tlm_event_add_bool(tlm_event *ev, const char *key, int value)
{
    return tlm_event_add(ev, key,
                         (struct tlm_event_value){.kind = TLM_EVENT_BOOL, .i = value != 0});
}

tlm_status tlm_event_add_null(tlm_event *ev, const char *key)
{
    return tlm_event_add(ev, key, (struct tlm_event_value){.kind = TLM_EVENT_NIL});
}

static tlm_status tlm_event_begin(tlm_event *ev, const char *key, int is_map)
{
    if (ev != NULL && ev->depth == TLM_MAX_DEPTH - 1) {
        tlm_event_fail(ev, TLM_ETOODEEP);
        return TLM_ETOODEEP;
    }
    tlm_status st = tlm_event_key(ev, key);
    if (st != TLM_OK)
        return st;
    tlm_event_push(ev, is_map);
    return tlm_event_done(ev);
}

tlm_status tlm_event_begin_map(tlm_event *ev, const char *key)
{
    return tlm_event_begin(ev, key, 1);
}

tlm_status tlm_event_begin_array(tlm_event *ev, const char *key)
{
    return tlm_event_begin(ev, key, 0);
}

tlm_status tlm_event_end(tlm_event *ev)
{
    if (ev == NULL)
        return TLM_EINVAL;
    if (ev->depth <= 1) {
        tlm_event_fail(ev, TLM_ESTATE);
        return TLM_ESTATE;
    }
    if (ev->props.failed)
        return tlm_event_done(ev);
    struct tlm_event_level *l = &ev->open[--ev->depth];
    size_t hlen = pack_container_header_len(l->count);
    unsigned char *start = (unsigned char *)ev->props.data + l->start;
    size_t body = ev->props.len - l->start - TLM_EVENT_PLACEHOLDER;
    memmove(start + hlen, start + TLM_EVENT_PLACEHOLDER, body);
    pack_put_container_header(start, l->count, l->is_map);
    ev->props.len -= TLM_EVENT_PLACEHOLDER - hlen;
    return TLM_OK;
}

tlm_status tlm_event_encode(tlm_event *ev, const void **data, size_t *len)
{
    if (ev == NULL || data == NULL || len == NULL)
        return TLM_EINVAL;
    if (ev->error != TLM_OK)
        return ev->error;
    if (ev->depth != 1)
        return TLM_ESTATE;
    struct buf *o = &ev->out;
    buf_rollback(o, 0);
    pack_map(o, 2 + (ev->has_timestamp != 0) + (ev->uuid[0] != '\0') +
                        (ev->distinct_id != NULL));
    pack_cstr(o, WIRE_KEY_EVENT);
    pack_str(o, ev->name, ev->name_len);
    pack_cstr(o, WIRE_KEY_PROPERTIES);
    pack_map(o, ev->open[0].count);
    buf_append(o, ev->props.data + TLM_EVENT_PLACEHOLDER,
                    ev->props.len - TLM_EVENT_PLACEHOLDER);
    if (ev->has_timestamp) {
        pack_cstr(o, WIRE_KEY_TIMESTAMP);
        pack_uint(o, (uint64_t)ev->timestamp_ms);
    }
    if (ev->uuid[0] != '\0') {
        pack_cstr(o, WIRE_KEY_UUID);
        pack_str(o, ev->uuid, TLM_UUID_LEN);
    }
    if (ev->distinct_id != NULL) {
        pack_cstr(o, WIRE_KEY_DISTINCT_ID);
        pack_str(o, ev->distinct_id, ev->distinct_id_len);
    }
    if (o->failed)
        return TLM_ENOMEM;
    *data = o->data;
    *len = o->len;
    return TLM_OK;
}
