/*
 * Builder and encoder: every value type and nesting shape is decoded back
 * with msgpack-c; limits (name and distinct_id length, nesting depth) and
 * misuse give the documented errors, and a builder error sticks to the
 * event so that tlm_send refuses it and counts it. Raw sends accept exactly
 * one complete msgpack object.
 */
#include "check.h"
#include "fake.h"
#include "telemetry.h"

#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* Encode ev and decode it with msgpack-c into u (exactly one object). */
static const msgpack_object *decode(tlm_event *ev, msgpack_unpacked *u)
{
    const void *data;
    size_t len, off = 0;
    if (!CHECK_EQ_INT(tlm_event_encode(ev, &data, &len), TLM_OK))
        return NULL;
    if (!CHECK_EQ_INT(msgpack_unpack_next(u, data, len, &off), MSGPACK_UNPACK_SUCCESS) ||
        !CHECK_EQ_UINT(off, len))
        return NULL;
    return &u->data;
}

static int str_is(const msgpack_object *o, const char *s)
{
    return o != NULL && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static void test_every_type(void)
{
    tlm_event *ev;
    if (!CHECK_EQ_INT(tlm_event_new(&ev, "project:created"), TLM_OK))
        return;
    static const int64_t ints[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL,
                                   4294967296LL, INT64_MAX, -1, -32, -33, -128, -129,
                                   -32768, -32769, -2147483648LL, -2147483649LL, INT64_MIN};
    char key[32];
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        snprintf(key, sizeof key, "int%zu", i);
        CHECK_EQ_INT(tlm_event_add_int(ev, key, ints[i]), TLM_OK);
    }
    CHECK_EQ_INT(tlm_event_add_uint(ev, "umax", UINT64_MAX), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_double(ev, "pi", 3.141592653589793), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_double(ev, "tiny", DBL_MIN), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_bool(ev, "yes", 7), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_bool(ev, "no", 0), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_null(ev, "nothing"), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_str(ev, "empty", ""), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_str(ev, "utf8", "h\xc3\xa9llo"), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_strn(ev, "nul", "a\0b", 3), TLM_OK);
    /* strings across every str header size */
    static const size_t lens[] = {31, 32, 255, 256, 65535, 65536};
    char *big = malloc(65536);
    memset(big, 'x', 65536);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        snprintf(key, sizeof key, "s%zu", lens[i]);
        CHECK_EQ_INT(tlm_event_add_strn(ev, key, big, lens[i]), TLM_OK);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *obj = decode(ev, &u);
    if (obj != NULL) {
        CHECK(str_is(fake_map_get(obj, "event"), "project:created"));
        const msgpack_object *p = fake_map_get(obj, "properties");
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
            snprintf(key, sizeof key, "int%zu", i);
            check_context("%s = %jd", key, (intmax_t)ints[i]);
            const msgpack_object *v = fake_map_get(p, key);
            if (!CHECK(v != NULL))
                continue;
            if (ints[i] >= 0) {
                CHECK_EQ_INT(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
                CHECK_EQ_UINT(v->via.u64, (uint64_t)ints[i]);
            } else {
                CHECK_EQ_INT(v->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
                CHECK_EQ_INT(v->via.i64, ints[i]);
            }
        }
        check_context(NULL);
        const msgpack_object *v = fake_map_get(p, "umax");
        CHECK(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == UINT64_MAX);
        v = fake_map_get(p, "pi");
        CHECK(v != NULL && v->type == MSGPACK_OBJECT_FLOAT64 && v->via.f64 == 3.141592653589793);
        v = fake_map_get(p, "tiny");
        CHECK(v != NULL && v->type == MSGPACK_OBJECT_FLOAT64 && v->via.f64 == DBL_MIN);
        v = fake_map_get(p, "yes");
        CHECK(v != NULL && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean);
        v = fake_map_get(p, "no");
        CHECK(v != NULL && v->type == MSGPACK_OBJECT_BOOLEAN && !v->via.boolean);
        v = fake_map_get(p, "nothing");
        CHECK(v != NULL && v->type == MSGPACK_OBJECT_NIL);
        CHECK(str_is(fake_map_get(p, "empty"), ""));
        CHECK(str_is(fake_map_get(p, "utf8"), "h\xc3\xa9llo"));
        v = fake_map_get(p, "nul");
        CHECK(v != NULL && v->type == MSGPACK_OBJECT_STR && v->via.str.size == 3 &&
              memcmp(v->via.str.ptr, "a\0b", 3) == 0);
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            snprintf(key, sizeof key, "s%zu", lens[i]);
            v = fake_map_get(p, key);
            CHECK(v != NULL && v->type == MSGPACK_OBJECT_STR && v->via.str.size == lens[i] &&
                  memcmp(v->via.str.ptr, big, lens[i]) == 0);
        }
        CHECK_EQ_UINT(p->via.map.size, sizeof ints / sizeof ints[0] + 9 + 6);
    }
    free(big);
    msgpack_unpacked_destroy(&u);
    tlm_event_free(ev);
}

/* Non-finite doubles are values like any other. */
static void test_non_finite_doubles(void)
{
    tlm_event *ev;
    if (!CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK))
        return;
    CHECK_EQ_INT(tlm_event_add_double(ev, "inf", INFINITY), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_double(ev, "nan", NAN), TLM_OK);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *obj = decode(ev, &u);
    if (obj != NULL) {
        const msgpack_object *p = fake_map_get(obj, "properties");
        CHECK(isinf(fake_map_get(p, "inf")->via.f64));
        CHECK(isnan(fake_map_get(p, "nan")->via.f64));
    }
    msgpack_unpacked_destroy(&u);
    tlm_event_free(ev);
}

static void test_nesting(void)
{
    tlm_event *ev;
    if (!CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK))
        return;
    CHECK_EQ_INT(tlm_event_add_str(ev, "plan", "pro"), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_map(ev, "gpu"), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_int(ev, "count", 2), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_array(ev, "models"), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_str(ev, NULL, "A100"), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_map(ev, NULL), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_bool(ev, "mig", 1), TLM_OK);
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_array(ev, NULL), TLM_OK); /* empty array in an array */
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_map(ev, "empty"), TLM_OK);
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    /* a container large enough for 16-bit and 32-bit headers */
    CHECK_EQ_INT(tlm_event_begin_array(ev, "many"), TLM_OK);
    for (int i = 0; i < 70000; i++)
        tlm_event_add_int(ev, NULL, i);
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_map(ev, "wide"), TLM_OK);
    char key[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "k%d", i);
        tlm_event_add_int(ev, key, i);
    }
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *obj = decode(ev, &u);
    if (obj != NULL) {
        const msgpack_object *p = fake_map_get(obj, "properties");
        CHECK_EQ_UINT(p->via.map.size, 4);
        CHECK(str_is(fake_map_get(p, "plan"), "pro"));
        const msgpack_object *gpu = fake_map_get(p, "gpu");
        CHECK_EQ_UINT(gpu->via.map.size, 3);
        CHECK_EQ_UINT(fake_map_get(gpu, "count")->via.u64, 2);
        const msgpack_object *models = fake_map_get(gpu, "models");
        if (CHECK(models != NULL && models->type == MSGPACK_OBJECT_ARRAY &&
                  models->via.array.size == 3)) {
            CHECK(str_is(&models->via.array.ptr[0], "A100"));
            CHECK(fake_map_get(&models->via.array.ptr[1], "mig")->via.boolean);
            CHECK(models->via.array.ptr[2].type == MSGPACK_OBJECT_ARRAY &&
                  models->via.array.ptr[2].via.array.size == 0);
        }
        const msgpack_object *empty = fake_map_get(gpu, "empty");
        CHECK(empty != NULL && empty->type == MSGPACK_OBJECT_MAP && empty->via.map.size == 0);
        const msgpack_object *many = fake_map_get(p, "many");
        if (CHECK(many != NULL && many->via.array.size == 70000))
            CHECK_EQ_UINT(many->via.array.ptr[69999].via.u64, 69999);
        CHECK_EQ_UINT(fake_map_get(p, "wide")->via.map.size, 20);
        CHECK_EQ_UINT(fake_map_get(fake_map_get(p, "wide"), "k19")->via.u64, 19);
    }
    msgpack_unpacked_destroy(&u);
    tlm_event_free(ev);
}

/* The event map counts as level 1 and properties as 2: 30 more fit, and
 * the result is exactly as deep as the agent allows (msgpack-c decodes it). */
static void test_depth_limit(void)
{
    tlm_event *ev;
    if (!CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK))
        return;
    for (int d = 0; d < TLM_MAX_DEPTH - 2; d++)
        if (!CHECK_EQ_INT(tlm_event_begin_array(ev, d == 0 ? "deep" : NULL), TLM_OK))
            break;
    CHECK_EQ_INT(tlm_event_add_int(ev, NULL, 1), TLM_OK);
    for (int d = 0; d < TLM_MAX_DEPTH - 2; d++)
        CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK(decode(ev, &u) != NULL);
    msgpack_unpacked_destroy(&u);
    tlm_event_free(ev);

    CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK);
    for (int d = 0; d < TLM_MAX_DEPTH - 2; d++)
        tlm_event_begin_map(ev, "m");
    CHECK_EQ_INT(tlm_event_begin_map(ev, "m"), TLM_ETOODEEP);
    CHECK_EQ_INT(tlm_event_begin_array(ev, "a"), TLM_ETOODEEP);
    CHECK_EQ_INT(tlm_event_add_int(ev, "ok", 1), TLM_OK); /* scalars still fit */
    for (int d = 0; d < TLM_MAX_DEPTH - 2; d++)
        tlm_event_end(ev);
    const void *data;
    size_t len;
    CHECK_EQ_INT(tlm_event_encode(ev, &data, &len), TLM_ETOODEEP); /* the error sticks */
    tlm_event_free(ev);
}

static void test_names_and_ids(void)
{
    char name[TLM_NAME_MAX + 2];
    memset(name, 'n', sizeof name);
    name[TLM_NAME_MAX] = '\0';
    tlm_event *ev = NULL;
    CHECK_EQ_INT(tlm_event_new(&ev, name), TLM_OK);
    tlm_event_free(ev);
    name[TLM_NAME_MAX] = 'n';
    name[TLM_NAME_MAX + 1] = '\0';
    CHECK_EQ_INT(tlm_event_new(&ev, name), TLM_ETOOLONG);
    CHECK(ev == NULL);
    CHECK_EQ_INT(tlm_event_new(&ev, ""), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_new(&ev, NULL), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_new(NULL, "x"), TLM_EINVAL);

    if (!CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK))
        return;
    CHECK_EQ_INT(tlm_event_set_distinct_id(ev, name), TLM_ETOOLONG);
    CHECK_EQ_INT(tlm_event_set_distinct_id(ev, ""), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_set_distinct_id(ev, NULL), TLM_EINVAL);
    name[TLM_DISTINCT_ID_MAX] = '\0';
    CHECK_EQ_INT(tlm_event_set_distinct_id(ev, name), TLM_OK);
    CHECK_EQ_INT(tlm_event_set_distinct_id(ev, "instance-1"), TLM_OK);
    CHECK_EQ_INT(tlm_event_set_uuid(ev, "not-a-uuid"), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_set_uuid(ev, "0190b6e2-7c4a-7d2e-9c1a-2b3c4d5e6f7"), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_set_uuid(ev, "0190b6e2-7c4a-7d2e-9c1a-2b3c4d5e6f701"), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_set_uuid(ev, "0190B6E2-7C4A-7D2E-9C1A-2B3C4D5E6F70"), TLM_OK);
    CHECK_EQ_INT(tlm_event_set_timestamp_ms(ev, -1), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_set_timestamp_ms(ev, INT64_C(253402300800000)), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_set_timestamp_ms(ev, INT64_C(1700000000123)), TLM_OK);
    /* setter errors are not kept: the event is still good */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *obj = decode(ev, &u);
    if (obj != NULL) {
        CHECK_EQ_UINT(obj->via.map.size, 5);
        CHECK(str_is(fake_map_get(obj, "distinct_id"), "instance-1"));
        CHECK(str_is(fake_map_get(obj, "uuid"), "0190B6E2-7C4A-7D2E-9C1A-2B3C4D5E6F70"));
        CHECK_EQ_UINT(fake_map_get(obj, "timestamp")->via.u64, INT64_C(1700000000123));
    }
    CHECK_EQ_INT(tlm_event_clear_uuid(ev), TLM_OK);
    CHECK_EQ_INT(tlm_event_clear_timestamp(ev), TLM_OK);
    obj = decode(ev, &u);
    if (obj != NULL) {
        CHECK_EQ_UINT(obj->via.map.size, 3);
        CHECK(fake_map_get(obj, "uuid") == NULL);
        CHECK(fake_map_get(obj, "timestamp") == NULL);
    }
    msgpack_unpacked_destroy(&u);
    tlm_event_free(ev);
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Default uuid: a canonical, lower-case UUIDv7 of the event's timestamp;
 * ids increase and never repeat. */
static void test_default_uuid_and_timestamp(void)
{
    char prev[TLM_UUID_LEN + 1] = "";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t before = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    for (int n = 0; n < 5000; n++) {
        tlm_event *ev;
        if (!CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK))
            break;
        const msgpack_object *obj = decode(ev, &u);
        const msgpack_object *id = fake_map_get(obj, "uuid");
        const msgpack_object *t = fake_map_get(obj, "timestamp");
        if (!CHECK(id != NULL && id->type == MSGPACK_OBJECT_STR && id->via.str.size == 36) ||
            !CHECK(t != NULL && t->type == MSGPACK_OBJECT_POSITIVE_INTEGER)) {
            tlm_event_free(ev);
            break;
        }
        char s[TLM_UUID_LEN + 1];
        memcpy(s, id->via.str.ptr, 36);
        s[36] = '\0';
        check_context("uuid %s", s);
        int ok = 1;
        for (int i = 0; i < 36; i++)
            ok &= (i == 8 || i == 13 || i == 18 || i == 23) ? s[i] == '-' : is_hex(s[i]);
        CHECK(ok);
        CHECK(s[14] == '7');
        CHECK(strchr("89ab", s[19]) != NULL);
        /* the first 48 bits are the timestamp, or just ahead of it */
        uint64_t ms = strtoull((char[13]){s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[9],
                                          s[10], s[11], s[12], 0},
                               NULL, 16);
        CHECK_GE((int64_t)ms, (int64_t)t->via.u64);
        CHECK_GE((int64_t)t->via.u64, before);
        CHECK_LT(strcmp(prev, s), 0);
        memcpy(prev, s, sizeof s);
        tlm_event_free(ev);
        if (check_failures_ > 0)
            break;
    }
    check_context(NULL);
    msgpack_unpacked_destroy(&u);
}

static void test_misuse_sticks(void)
{
    tlm_event *ev;
    if (!CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK))
        return;
    CHECK_EQ_INT(tlm_event_add_int(ev, NULL, 1), TLM_EINVAL); /* a map needs keys */
    CHECK_EQ_INT(tlm_event_add_int(ev, "fine", 1), TLM_OK);
    const void *data;
    size_t len;
    CHECK_EQ_INT(tlm_event_encode(ev, &data, &len), TLM_EINVAL);
    tlm_event_free(ev);

    CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_array(ev, "a"), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_int(ev, "k", 1), TLM_EINVAL); /* an array takes no keys */
    tlm_event_free(ev);

    CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK);
    CHECK_EQ_INT(tlm_event_end(ev), TLM_ESTATE);
    CHECK_EQ_INT(tlm_event_encode(ev, &data, &len), TLM_ESTATE);
    tlm_event_free(ev);

    CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK);
    CHECK_EQ_INT(tlm_event_add_str(ev, "s", NULL), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_encode(ev, &data, &len), TLM_EINVAL);
    tlm_event_free(ev);

    CHECK_EQ_INT(tlm_event_new(&ev, "x"), TLM_OK);
    CHECK_EQ_INT(tlm_event_begin_map(ev, "open"), TLM_OK);
    CHECK_EQ_INT(tlm_event_encode(ev, &data, &len), TLM_ESTATE); /* still open */
    CHECK_EQ_INT(tlm_event_end(ev), TLM_OK);
    CHECK_EQ_INT(tlm_event_encode(ev, &data, &len), TLM_OK);
    tlm_event_free(ev);

    CHECK_EQ_INT(tlm_event_add_int(NULL, "k", 1), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_begin_map(NULL, "k"), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_end(NULL), TLM_EINVAL);
    CHECK_EQ_INT(tlm_event_encode(NULL, &data, &len), TLM_EINVAL);
    tlm_event_free(NULL);
}

/* A bad event is refused by tlm_send with its error and counted invalid. */
static void test_send_refuses_bad_events(void)
{
    struct fake_socket s;
    CHECK_EQ_INT(fake_socket_init(&s), 0); /* nobody listens: events queue */
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, s.path, NULL), TLM_OK))
        return;
    tlm_event *ev;
    tlm_event_new(&ev, "x");
    tlm_event_begin_array(ev, "a");
    CHECK_EQ_INT(tlm_send(c, ev), TLM_ESTATE);
    tlm_event_add_int(ev, "k", 1);
    CHECK_EQ_INT(tlm_send(c, ev), TLM_EINVAL);
    tlm_event_free(ev);
    tlm_event_new(&ev, "x");
    CHECK_EQ_INT(tlm_send(c, ev), TLM_OK);
    CHECK_EQ_INT(tlm_send(c, NULL), TLM_EINVAL);
    CHECK_EQ_INT(tlm_send(NULL, ev), TLM_EINVAL);
    tlm_event_free(ev);
    tlm_stats st;
    CHECK_EQ_INT(tlm_get_stats(c, &st), TLM_OK);
    CHECK_EQ_UINT(st.attempted, 3);
    CHECK_EQ_UINT(st.dropped_invalid, 2);
    CHECK_EQ_UINT(st.queued, 1);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

static void test_raw_validation(void)
{
    struct fake_socket s;
    CHECK_EQ_INT(fake_socket_init(&s), 0);
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, s.path, NULL), TLM_OK))
        return;
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
        tlm_status want;
    } cases[] = {
        {"fixmap", "\x81\xa5" "event\xa1x", 9, TLM_OK},
        {"nil", "\xc0", 1, TLM_OK},
        {"empty", "", 0, TLM_EINVALID},
        {"truncated map", "\x81\xa5" "event\xa1", 8, TLM_EINVALID},
        {"two objects", "\xc0\xc0", 2, TLM_EINVALID},
        {"never msgpack", "\xc1", 1, TLM_EINVALID},
        {"str past the end", "\xd9\x10" "abc", 5, TLM_EINVALID},
        {"huge array header", "\xdd\xff\xff\xff\xff", 5, TLM_EINVALID},
    };
    int ok = 0, bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_context("%s", cases[i].what);
        CHECK_EQ_INT(tlm_send_raw(c, cases[i].bytes, cases[i].len), cases[i].want);
        cases[i].want == TLM_OK ? ok++ : bad++;
    }
    check_context(NULL);
    /* nesting: 32 levels are fine, 33 are not (even empty) */
    unsigned char deep[40];
    memset(deep, 0x91, sizeof deep);
    deep[31] = 0x90;
    CHECK_EQ_INT(tlm_send_raw(c, deep, 32), TLM_OK);
    deep[32] = 0x90;
    deep[31] = 0x91;
    CHECK_EQ_INT(tlm_send_raw(c, deep, 33), TLM_EINVALID);
    CHECK_EQ_INT(tlm_send_raw(c, NULL, 1), TLM_EINVAL);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.attempted, (uint64_t)(ok + bad + 2));
    CHECK_EQ_UINT(st.dropped_invalid, (uint64_t)(bad + 1));
    CHECK_EQ_UINT(st.queued, (uint64_t)(ok + 1));
    tlm_close(c);

    /* reliable mode needs a map without a chunk of its own */
    tlm_options o;
    tlm_options_init(&o);
    o.reliable = 1;
    if (CHECK_EQ_INT(tlm_open(&c, s.path, &o), TLM_OK)) {
        CHECK_EQ_INT(tlm_send_raw(c, "\xc0", 1), TLM_EINVALID);
        CHECK_EQ_INT(tlm_send_raw(c, "\x81\xa5" "chunk\xa1x", 9), TLM_EINVALID);
        CHECK_EQ_INT(tlm_send_raw(c, "\x81\xa5" "event\xa1x", 9), TLM_OK);
        tlm_get_stats(c, &st);
        CHECK_EQ_UINT(st.dropped_invalid, 2);
        CHECK_EQ_UINT(st.queued, 1);
        tlm_close(c);
    }
    fake_socket_cleanup(&s);
}

static void test_status_and_options(void)
{
    for (int i = 0; i < TLM_STATUS_COUNT_; i++) {
        check_context("status %d", i);
        CHECK(strcmp(tlm_strerror((tlm_status)i), "unknown status") != 0);
    }
    check_context(NULL);
    CHECK_STR_EQ(tlm_strerror(TLM_EQUEUE_FULL), "queue full");
    CHECK_STR_EQ(tlm_strerror((tlm_status)999), "unknown status");
    CHECK_STR_EQ(tlm_version(), TELEMETRY_PROJECT_VERSION);
    tlm_client *c;
    CHECK_EQ_INT(tlm_open(NULL, "/x", NULL), TLM_EINVAL);
    CHECK_EQ_INT(tlm_open(&c, "", NULL), TLM_EINVAL);
    char longpath[200];
    memset(longpath, 'p', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    CHECK_EQ_INT(tlm_open(&c, longpath, NULL), TLM_ETOOLONG);
    tlm_options o;
    tlm_options_init(&o);
    o.reconnect_min_ms = 500;
    o.reconnect_max_ms = 100;
    CHECK_EQ_INT(tlm_open(&c, "/x", &o), TLM_EINVAL);
    /* the path: explicit, else $TELEMETRY_SOCKET, else the default */
    setenv("TELEMETRY_SOCKET", "/tmp/from-env.sock", 1);
    if (CHECK_EQ_INT(tlm_open(&c, NULL, NULL), TLM_OK)) {
        CHECK_STR_EQ(tlm_socket_path(c), "/tmp/from-env.sock");
        tlm_close(c);
    }
    if (CHECK_EQ_INT(tlm_open(&c, "/tmp/explicit.sock", NULL), TLM_OK)) {
        CHECK_STR_EQ(tlm_socket_path(c), "/tmp/explicit.sock");
        tlm_close(c);
    }
    unsetenv("TELEMETRY_SOCKET");
    if (CHECK_EQ_INT(tlm_open(&c, NULL, NULL), TLM_OK)) {
        CHECK_STR_EQ(tlm_socket_path(c), TLM_DEFAULT_SOCKET);
        tlm_close(c);
    }
    tlm_close(NULL);
    CHECK_EQ_INT(tlm_flush(NULL, 0), TLM_EINVAL);
    CHECK_EQ_INT(tlm_poll(NULL), TLM_EINVAL);
    CHECK_EQ_INT(tlm_get_stats(NULL, NULL), TLM_EINVAL);
}

int main(void)
{
    RUN(test_every_type);
    RUN(test_non_finite_doubles);
    RUN(test_nesting);
    RUN(test_depth_limit);
    RUN(test_names_and_ids);
    RUN(test_default_uuid_and_timestamp);
    RUN(test_misuse_sticks);
    RUN(test_send_refuses_bad_events);
    RUN(test_raw_validation);
    RUN(test_status_and_options);
    return check_finish();
}
