/*
 * encode_value and encode_event: the JSON they write is parsed with jansson
 * and the parsed values are checked, so every test also proves the output is
 * valid JSON (jansson rejects raw control characters and invalid UTF-8).
 */
#include "check.h"
#include "config.h"
#include "decode.h"
#include "encode.h"
#include "json.h"
#include "mp.h"
#include "peer.h"
#include "privacy.h"
#include "props.h"
#include "support.h"

#include <math.h>
#include <string.h>

static struct mp m;

/* 2023-11-14T22:13:20Z */
#define T_SECS INT64_C(1700000000)
#define T_MS (T_SECS * 1000)

/* ---- encode_value ---------------------------------------------------- */

static struct buf text_buf;

/* The raw JSON text encode_value writes for obj ("" if it fails), valid
 * until the next call. */
static const char *encode_text(const msgpack_object *obj)
{
    buf_rollback(&text_buf, 0);
    if (!CHECK_EQ_INT(encode_value(&text_buf, obj, 0), 0) ||
        buf_append_char(&text_buf, '\0') < 0)
        return "";
    return text_buf.data;
}

/* Encode a str of `len` bytes and CHECK it parses back as exactly `want`. */
static void check_string(const char *what, const char *in, size_t len, const char *want,
                         size_t want_len)
{
    check_context("%s", what);
    json_t *v = js_encode_value(mp_build(&m, "S", in, len));
    if (CHECK(json_is_string(v)))
        CHECK_MEM_EQ(json_string_value(v), json_string_length(v), want, want_len);
    json_decref(v);
    check_context(NULL);
}

static void test_string_escapes(void)
{
    static const char text[] = "q\"b\\s/c\x01n\nt\tr\rf\fb\b\x1f\x7f end";
    check_string("escapes", text, sizeof text - 1, text, sizeof text - 1);
    static const char nul[] = "a\0b";
    const char *text_nul = encode_text(mp_build(&m, "S", nul, (size_t)3));
    CHECK_STR_EQ(text_nul, "\"a\\u0000b\"");
    json_t *v = js_parse_flags(text_nul, strlen(text_nul), JSON_ALLOW_NUL);
    CHECK_MEM_EQ(json_string_value(v), json_string_length(v), nul, 3);
    json_decref(v);
    CHECK_STR_EQ(encode_text(mp_build(&m, "s", "\x01\n\t\"\\")), "\"\\u0001\\n\\t\\\"\\\\\"");
    check_string("empty", "", 0, "", 0);
    /* every byte that needs escaping, at every place in and around the
     * eight-byte words plain text is copied by */
    static const char specials[] = {'"', '\\', '\n', '\x01', '\x1f', '\x7f', ' ', '~'};
    for (size_t place = 0; place < 20; place++) {
        for (size_t k = 0; k < sizeof specials; k++) {
            char in[21];
            memset(in, 'x', sizeof in);
            in[place] = specials[k];
            check_string("a special byte among plain ones", in, sizeof in, in, sizeof in);
        }
        char bad[21]; /* a byte that is not UTF-8 there: U+FFFD in its place */
        memset(bad, 'x', sizeof bad);
        bad[place] = (char)0xff;
        char want[23];
        memcpy(want, bad, place);
        memcpy(want + place, "\xef\xbf\xbd", 3);
        memcpy(want + place + 3, bad + place + 1, sizeof bad - place - 1);
        check_string("an invalid byte among plain ones", bad, sizeof bad, want, sizeof want);
    }
}

/* Encode "a" + bad + "b": it must parse as "a", one or more U+FFFD, "b". */
static void check_replaced(const char *what, const char *bad, size_t bad_len)
{
    char in[16];
    in[0] = 'a';
    memcpy(in + 1, bad, bad_len);
    in[1 + bad_len] = 'b';
    check_context("%s", what);
    json_t *v = js_encode_value(mp_build(&m, "S", in, bad_len + 2));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (CHECK(s != NULL) && CHECK(len >= 5) && CHECK(s[0] == 'a') && CHECK(s[len - 1] == 'b')) {
        CHECK_EQ_UINT((len - 2) % 3, 0);
        for (size_t i = 1; i + 1 < len; i += 3)
            CHECK_MEM_EQ(s + i, 3, "\xef\xbf\xbd", 3);
    }
    json_decref(v);
    check_context(NULL);
}

static void test_invalid_utf8(void)
{
    check_replaced("lone 0xff", "\xff", 1);
    check_replaced("lone continuation byte", "\x80", 1);
    check_replaced("truncated 3-byte sequence", "\xe2\x82", 2);
    check_replaced("truncated 4-byte sequence", "\xf0\x9f\x98", 3);
    check_replaced("overlong 0xc0 0x80", "\xc0\x80", 2);
    check_replaced("overlong 3-byte slash", "\xe0\x80\xaf", 3);
    check_replaced("surrogate ed a0 80", "\xed\xa0\x80", 3);
    check_replaced("past U+10FFFF", "\xf4\x90\x80\x80", 4);
    check_replaced("0xf5 lead byte", "\xf5\x80\x80\x80", 4);
}

static void test_valid_utf8_unchanged(void)
{
    static const char *const texts[] = {
        "caf\xc3\xa9",             /* U+00E9 */
        "\xe2\x82\xac 5",          /* U+20AC */
        "\xef\xbf\xbf",            /* U+FFFF */
        "\xf0\x9f\x98\x80 smile",  /* U+1F600 */
        "\xf4\x8f\xbf\xbf",        /* U+10FFFF */
        "\xed\x9f\xbf",            /* U+D7FF, just below the surrogates */
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        check_string(texts[i], texts[i], strlen(texts[i]), texts[i], strlen(texts[i]));
}

/* json_utf8_is_valid reads eight ASCII bytes at a time: a bad byte or a
 * good sequence at any place of strings of every length up to 24. */
static void test_utf8_is_valid_everywhere(void)
{
    char text[32];
    for (size_t len = 0; len <= 24; len++) {
        memset(text, 'a', len);
        check_context("%zu bytes", len);
        CHECK(json_utf8_is_valid(text, len));
        for (size_t at = 0; at < len; at++) {
            memset(text, 'a', len);
            text[at] = (char)0xff;
            CHECK(!json_utf8_is_valid(text, len));
            if (at + 3 <= len) {
                memcpy(text + at, "\xe2\x82\xac", 3); /* U+20AC */
                CHECK(json_utf8_is_valid(text, len));
                CHECK(!json_utf8_is_valid(text, at + 2)); /* cut inside it */
            }
        }
    }
    check_context(NULL);
}

static void test_non_finite_is_null(void)
{
    json_t *v =
        js_encode_value(mp_build(&m, "[d, d, d, f]", NAN, INFINITY, -INFINITY, (double)NAN));
    if (CHECK(json_is_array(v)) && CHECK_EQ_UINT(json_array_size(v), 4))
        for (size_t i = 0; i < 4; i++)
            CHECK(json_is_null(json_array_get(v, i)));
    json_decref(v);
}

static void test_floats(void)
{
    const double values[] = {1.5, -0.25, 0.1, 1e300, -2.5e-300, 5e-324, 1.0 / 3.0, 123456789.125};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        check_context("%.17g", values[i]);
        json_t *v = js_encode_value(mp_build(&m, "d", values[i]));
        if (CHECK(json_is_number(v)))
            CHECK(json_number_value(v) == values[i]);
        json_decref(v);
    }
    check_context(NULL);
    CHECK_STR_EQ(encode_text(mp_build(&m, "f", 1.1)), "1.1");
    CHECK_STR_EQ(encode_text(mp_build(&m, "d", 0.1)), "0.1");
    CHECK_STR_EQ(encode_text(mp_build(&m, "d", 1.5)), "1.5");
}

static void test_integer_extremes(void)
{
    json_t *v = js_encode_value(
        mp_build(&m, "[I, I, I, i]", INT64_MIN, INT64_MAX, (int64_t)-1, 0));
    if (CHECK(json_is_array(v)) && CHECK_EQ_UINT(json_array_size(v), 4)) {
        CHECK(json_integer_value(json_array_get(v, 0)) == INT64_MIN);
        CHECK(json_integer_value(json_array_get(v, 1)) == INT64_MAX);
        CHECK_EQ_INT(json_integer_value(json_array_get(v, 2)), -1);
        json_t *zero = json_array_get(v, 3);
        CHECK(json_is_integer(zero) && json_integer_value(zero) == 0);
    }
    json_decref(v);
    CHECK_STR_EQ(encode_text(mp_build(&m, "I", INT64_MIN)), "-9223372036854775808");

    /* Past jansson's int64 integers: check the text, then the value as a real. */
    static const struct {
        uint64_t value;
        const char *text;
    } big[] = {{UINT64_MAX, "18446744073709551615"},
               {(uint64_t)INT64_MAX + 1, "9223372036854775808"}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        const char *text = encode_text(mp_build(&m, "U", big[i].value));
        CHECK_STR_EQ(text, big[i].text);
        v = js_parse_flags(text, strlen(text), JSON_DECODE_INT_AS_REAL);
        if (CHECK(json_is_real(v)))
            CHECK(json_real_value(v) == (double)big[i].value);
        json_decref(v);
    }
}

static void test_nested(void)
{
    json_t *v = js_encode_value(mp_build(&m, "{s:{s:[i, {s:n}, []]}, s:{}, s:[[b]]}", "a", "b", 1,
                                         "c", "empty", "deep", 1));
    json_t *list = js_at(v, "a/b");
    if (CHECK(json_is_array(list)) && CHECK_EQ_UINT(json_array_size(list), 3)) {
        CHECK_EQ_INT(json_integer_value(json_array_get(list, 0)), 1);
        CHECK(json_is_null(js_at(json_array_get(list, 1), "c")));
        json_t *empty = json_array_get(list, 2);
        CHECK(json_is_array(empty) && json_array_size(empty) == 0);
    }
    CHECK(json_is_object(js_at(v, "empty")) && json_object_size(js_at(v, "empty")) == 0);
    CHECK(json_is_true(json_array_get(json_array_get(js_at(v, "deep"), 0), 0)));
    CHECK_EQ_UINT(json_object_size(v), 3);
    json_decref(v);
}

/* Strict base64 decoding, for checking json_write_base64. Returns -1 if the
 * text is not canonical padded base64. */
static int b64_decode(const char *s, size_t len, unsigned char *out, size_t *out_len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len % 4 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *c = s[i + k] ? strchr(alphabet, s[i + k]) : NULL;
            if (s[i + k] == '=' && i + 4 == len && k >= 2 && (pad || k == 2 || s[i + 3] == '='))
                pad++, c = alphabet;
            else if (c == NULL || pad)
                return -1;
            v = v << 6 | (uint32_t)(c - alphabet);
        }
        if (pad == 1 && s[i + 3] != '=')
            return -1;
        out[n++] = (unsigned char)(v >> 16);
        if (pad < 2)
            out[n++] = (unsigned char)(v >> 8);
        if (pad < 1)
            out[n++] = (unsigned char)v;
    }
    *out_len = n;
    return 0;
}

static void test_binary_base64(void)
{
    static const unsigned char data[4] = {0xfb, 0xff, 0xbf, 0x00};
    static const char *const expected[] = {"", "+w==", "+/8=", "+/+/", "+/+/AA=="};
    for (size_t len = 0; len <= 4; len++) {
        check_context("%zu bytes", len);
        json_t *v = js_encode_value(mp_build(&m, "x", data, len));
        unsigned char decoded[8];
        size_t decoded_len = 99;
        if (CHECK(json_is_string(v)) &&
            CHECK_EQ_INT(b64_decode(json_string_value(v), json_string_length(v), decoded,
                                    &decoded_len), 0))
            CHECK_MEM_EQ(decoded, decoded_len, data, len);
        CHECK_STR_EQ(json_string_value(v), expected[len]);
        json_decref(v);
    }
    check_context(NULL);
}

static void test_non_string_keys(void)
{
    static const unsigned char bin[2] = {'a', 'b'};
    json_t *v = js_encode_value(
        mp_build(&m, "{i:s, n:s, b:s, d:s, [i,i]:s, i:s, x:s, {s:i}:s, U:s}", 1, "int", "nil", 1,
                 "bool", 1.5, "float", 1, 2, "array", -3, "negative", bin, sizeof bin, "bin", "k",
                 1, "map", UINT64_MAX, "big"));
    static const struct {
        const char *key, *value;
    } want[] = {{"1", "int"},     {"null", "nil"},     {"true", "bool"},  {"1.5", "float"},
                {"[1,2]", "array"}, {"-3", "negative"}, {"YWI=", "bin"},  {"{\"k\":1}", "map"},
                {"18446744073709551615", "big"}};
    if (!CHECK(json_is_object(v)))
        return;
    CHECK_EQ_UINT(json_object_size(v), sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        check_context("key %s", want[i].key);
        CHECK_STR_EQ(json_string_value(json_object_get(v, want[i].key)), want[i].value);
    }
    json_decref(v);
}

static void test_ext(void)
{
    unsigned char event_time[8];
    mp_put_be(event_time, (uint64_t)T_SECS, 4);
    mp_put_be(event_time + 4, 5000000, 4);
    static const unsigned char other[3] = {1, 2, 3};
    json_t *v = js_encode_value(mp_build(&m, "[T, e, e, e]", T_SECS, 123000000u, 0, event_time,
                                         sizeof event_time, 5, other, sizeof other, -1, other,
                                         sizeof other));
    if (CHECK(json_is_array(v))) {
        CHECK_STR_EQ(json_string_value(json_array_get(v, 0)), "2023-11-14T22:13:20.123Z");
        CHECK_STR_EQ(json_string_value(json_array_get(v, 1)), "2023-11-14T22:13:20.005Z");
        CHECK_STR_EQ(json_string_value(json_array_get(v, 2)), "AQID"); /* other ext: base64 */
        CHECK_STR_EQ(json_string_value(json_array_get(v, 3)), "AQID"); /* bad timestamp size */
    }
    json_decref(v);

    v = js_encode_value(mp_build(&m, "{T:i}", T_SECS, 0u, 1));
    CHECK_EQ_INT(json_integer_value(json_object_get(v, "2023-11-14T22:13:20.000Z")), 1);
    json_decref(v);
}

/* Hand-built nesting: msgpack-c will not unpack more than 32 levels. */
#define DEEP_MAX 64
static msgpack_object deep_nodes[DEEP_MAX + 1];
static msgpack_object_kv deep_kvs[DEEP_MAX];

/* `levels` nested containers (one-element arrays, or maps {"k": ...}) around
 * nil, so the nil sits at depth `levels`. */
static const msgpack_object *deep(int levels, int maps)
{
    deep_nodes[levels].type = MSGPACK_OBJECT_NIL;
    for (int i = levels - 1; i >= 0; i--) {
        if (maps) {
            deep_kvs[i].key.type = MSGPACK_OBJECT_STR;
            deep_kvs[i].key.via.str.ptr = "k";
            deep_kvs[i].key.via.str.size = 1;
            deep_kvs[i].val = deep_nodes[i + 1];
            deep_nodes[i].type = MSGPACK_OBJECT_MAP;
            deep_nodes[i].via.map.size = 1;
            deep_nodes[i].via.map.ptr = &deep_kvs[i];
        } else {
            deep_nodes[i].type = MSGPACK_OBJECT_ARRAY;
            deep_nodes[i].via.array.size = 1;
            deep_nodes[i].via.array.ptr = &deep_nodes[i + 1];
        }
    }
    return &deep_nodes[0];
}

static int encode_status_of(const msgpack_object *obj)
{
    struct buf out = BUF_INIT;
    int rc = encode_value(&out, obj, 0);
    buf_free(&out);
    return rc;
}

static void test_too_deep(void)
{
    for (int maps = 0; maps <= 1; maps++) {
        check_context("%s", maps ? "maps" : "arrays");
        json_t *v = js_encode_value(deep(ENCODE_MAX_DEPTH, maps));
        CHECK(v != NULL);
        json_decref(v);
        CHECK_EQ_INT(encode_status_of(deep(ENCODE_MAX_DEPTH + 1, maps)), -1);
        CHECK_EQ_INT(encode_status_of(deep(DEEP_MAX, maps)), -1);
    }
    check_context(NULL);

    /* a deep map key counts too */
    msgpack_object_kv kv = {*deep(DEEP_MAX, 0), {.type = MSGPACK_OBJECT_NIL}};
    msgpack_object map = {.type = MSGPACK_OBJECT_MAP, .via.map = {1, &kv}};
    CHECK_EQ_INT(encode_status_of(&map), -1);
}

/* ---- encode_event ---------------------------------------------------- */

/* Decode obj as an event, encode it and parse the JSON (NULL on failure,
 * and when a key is repeated in an object). */
static json_t *encode_event_json(const msgpack_object *obj, const struct encode_defaults *defaults,
                                 int64_t now_ms)
{
    struct analytics_event ev;
    const msgpack_object *chunk;
    struct refusal r;
    if (!CHECK_EQ_INT(decode_event(obj, NULL, &ev, &chunk, &r), 0))
        return NULL;
    struct buf out = BUF_INIT;
    json_t *root = NULL;
    if (CHECK_EQ_INT(encode_event(&out, &ev, defaults, now_ms, &r), 0))
        root = js_parse_flags(out.data, out.len, JSON_REJECT_DUPLICATES);
    buf_free(&out);
    return root;
}

static const struct encode_defaults plain_defaults = {.distinct_id = "default-host"};

static void test_event_filled_in(void)
{
    int64_t now = T_MS + 123;
    json_t *v = encode_event_json(mp_build(&m, "{s:s}", "event", "page \"view\""), &plain_defaults,
                                  now);
    if (!CHECK(json_is_object(v)))
        return;
    CHECK_EQ_UINT(json_object_size(v), 5);
    CHECK_STR_EQ(json_string_value(js_at(v, "event")), "page \"view\"");
    CHECK(json_is_object(js_at(v, "properties")) && json_object_size(js_at(v, "properties")) == 0);
    CHECK_STR_EQ(json_string_value(js_at(v, "distinct_id")), "default-host");
    CHECK_STR_EQ(json_string_value(js_at(v, "timestamp")), "2023-11-14T22:13:20.123Z");
    CHECK_STR_EQ(uuid_v7_problem(json_string_value(js_at(v, "uuid")), now), NULL);
    json_decref(v);
}

static void test_event_own_fields_kept(void)
{
    json_t *v = encode_event_json(
        mp_build(&m, "{s:s, s:s, s:s, s:s, s:{s:i}}", "event", "e", "uuid",
                 "018BCFE5-6A00-7ABC-8DEF-0123456789AB", "distinct_id", "user-1", "timestamp",
                 "2020-02-29T12:00:00.5+02:00", "properties", "n", 1),
        &plain_defaults, T_MS);
    CHECK_STR_EQ(json_string_value(js_at(v, "uuid")), "018bcfe5-6a00-7abc-8def-0123456789ab");
    CHECK_STR_EQ(json_string_value(js_at(v, "distinct_id")), "user-1");
    CHECK_STR_EQ(json_string_value(js_at(v, "timestamp")), "2020-02-29T10:00:00.500Z");
    CHECK_EQ_INT(json_integer_value(js_at(v, "properties/n")), 1);
    json_decref(v);

    /* a timestamp of 0 is a real time, not "missing" */
    v = encode_event_json(mp_build(&m, "{s:s, s:i}", "event", "e", "timestamp", 0), &plain_defaults,
                          T_MS);
    CHECK_STR_EQ(json_string_value(js_at(v, "timestamp")), "1970-01-01T00:00:00.000Z");
    json_decref(v);
}

static struct props_node *make_defaults_tree(void)
{
    static const char *const pairs[][2] = {
        {"flag", "true"},        {"count", "4"},         {"ratio", "1.5"},
        {"nothing", "null"},     {"quoted", "\"quoted\""}, {"text", "plain text"},
        {"app.version", "v2"},   {"app.build", "7"},     {"app.deep.x", "1"},
        {"sys.gpu", "0"},        {"env", "prod"},
    };
    struct props_node *root = props_new();
    char err[256];
    for (size_t i = 0; root != NULL && i < sizeof pairs / sizeof pairs[0]; i++) {
        if (!CHECK_EQ_INT(props_add(root, pairs[i][0], pairs[i][1], err, sizeof err), 0))
            fprintf(stderr, "    %s\n", err);
    }
    return root;
}

static void check_merged(json_t *p)
{
    CHECK_STR_EQ(json_string_value(js_at(p, "count")), "mine");       /* event wins */
    CHECK_STR_EQ(json_string_value(js_at(p, "app/version")), "event-v");
    CHECK_EQ_INT(json_integer_value(js_at(p, "app/extra")), 1);
    CHECK_EQ_INT(json_integer_value(js_at(p, "app/build")), 7);      /* merged in */
    CHECK_EQ_INT(json_integer_value(js_at(p, "app/deep/x")), 1);
    CHECK_EQ_UINT(json_object_size(js_at(p, "app")), 4);
    CHECK_EQ_INT(json_integer_value(js_at(p, "sys")), 5);            /* non-map wins */
    CHECK_STR_EQ(json_string_value(js_at(p, "env/region")), "eu");   /* map beats a leaf */
    CHECK_EQ_UINT(json_object_size(js_at(p, "env")), 1);
    CHECK(json_is_true(js_at(p, "flag")));
    CHECK(json_is_real(js_at(p, "ratio")) && json_real_value(js_at(p, "ratio")) == 1.5);
    CHECK(js_at(p, "nothing") != NULL && json_is_null(js_at(p, "nothing")));
    CHECK_STR_EQ(json_string_value(js_at(p, "quoted")), "quoted");
    CHECK_STR_EQ(json_string_value(js_at(p, "text")), "plain text");
    CHECK_EQ_UINT(json_object_size(p), 9);
}

/* agent.tag_peer: the agent's $peer_* properties are written over the
 * producer's own, at the top level only, once each. */
static void test_peer_tags_written_over_the_producers(void)
{
    struct peer peer = {.known = 1, .pid = 7, .uid = 1000, .gid = 2000, .comm = "work\"er"};
    char tags[PEER_TAGS_LEN];
    peer_tags(&peer, tags, sizeof tags);
    CHECK_STR_EQ(tags, "\"$peer_uid\":1000,\"$peer_gid\":2000,\"$peer_comm\":\"work\\\"er\"");
    struct encode_defaults defaults = {.distinct_id = "h", .peer_tags = tags};
    const msgpack_object *obj =
        mp_build(&m, "{s:s, s:{s:i, s:s, s:{s:i}}}", "event", "e", "properties", "$peer_uid", 0,
                 "page", "home", "nested", "$peer_gid", 5);
    json_t *v = encode_event_json(obj, &defaults, T_MS);
    if (CHECK(v != NULL)) {
        CHECK_EQ_INT(json_integer_value(js_at(v, "properties/$peer_uid")), 1000);
        CHECK_EQ_INT(json_integer_value(js_at(v, "properties/$peer_gid")), 2000);
        CHECK_STR_EQ(json_string_value(js_at(v, "properties/$peer_comm")), "work\"er");
        CHECK_STR_EQ(json_string_value(js_at(v, "properties/page")), "home");
        CHECK_EQ_INT(json_integer_value(js_at(v, "properties/nested/$peer_gid")), 5);
    }
    json_decref(v);
    peer.known = 0; /* the kernel could not say: nothing added */
    peer_tags(&peer, tags, sizeof tags);
    CHECK_STR_EQ(tags, "");
}

struct counted {
    char text[1024];
};

static void note_count(void *arg, const char *rule, uint64_t count)
{
    struct counted *c = arg;
    size_t n = strlen(c->text);
    snprintf(c->text + n, sizeof c->text - n, "%s=%llu\n", rule, (unsigned long long)count);
}

/* [privacy]: the default drop_keys and redact_values, a hash key and a
 * regular expression, at every depth, inside maps and arrays. */
static void test_privacy_rules(void)
{
    char *env[] = {"TELEMETRY_AGENT_PRIVACY_HASH_KEYS=user_id",
                   "TELEMETRY_AGENT_PRIVACY_HASH_KEY=0123456789abcdef",
                   "TELEMETRY_AGENT_PRIVACY_REDACT_REGEX=sk-[a-z0-9]+", NULL};
    struct config cfg;
    char err[200];
    if (!fresh_config(&cfg, env))
        return;
    struct privacy *pv = privacy_new(&cfg, NULL, err, sizeof err);
    if (!CHECK(pv != NULL)) {
        config_free(&cfg);
        return;
    }
    struct encode_defaults defaults = {.distinct_id = "h", .privacy = pv};
    const msgpack_object *obj = mp_build(
        &m, "{s:s, s:{s:s, s:s, s:i, s:{s:[{s:s, s:s}, s]}, s:s, s:s, s:s}}", "event", "e",
        "properties", "Password", "hunter2", "user_id", "u-1", "count", 3, "nested", "list",
        "api_key", "k", "note",
        "mail a.b@example.com from 10.0.0.1 or fe80::1, key sk-abc123; 1.2.3.4.5", "plain",
        "version", "v2023.06.1", "time", "2023-06-01T12:30:45.123Z", "host", "::");
    json_t *v = encode_event_json(obj, &defaults, T_MS);
    if (CHECK(v != NULL)) {
        json_t *props = js_at(v, "properties");
        CHECK(json_object_get(props, "Password") == NULL);
        const char *hashed = json_string_value(json_object_get(props, "user_id"));
        CHECK(hashed != NULL && strlen(hashed) == 64 && strspn(hashed, "0123456789abcdef") == 64);
        CHECK_EQ_INT(json_integer_value(json_object_get(props, "count")), 3);
        CHECK(js_at(v, "properties/nested/list/0/api_key") == NULL);
        CHECK_STR_EQ(json_string_value(js_at(v, "properties/nested/list/0/note")),
                     "mail [redacted] from [redacted] or [redacted], key [redacted]; 1.2.3.4.5");
        CHECK_STR_EQ(json_string_value(js_at(v, "properties/nested/list/1")), "plain");
        CHECK_STR_EQ(json_string_value(json_object_get(props, "version")), "v2023.06.1");
        CHECK_STR_EQ(json_string_value(json_object_get(props, "time")),
                     "2023-06-01T12:30:45.123Z");
        CHECK_STR_EQ(json_string_value(json_object_get(props, "host")), "[redacted]"); /* :: */
    }
    json_decref(v);
    struct counted c = {""};
    privacy_each_count(pv, note_count, &c);
    CHECK_CONTAINS(c.text, "drop_keys *password*=1\n");
    CHECK_CONTAINS(c.text, "drop_keys *api_key*=1\n");
    CHECK_CONTAINS(c.text, "drop_keys *secret*=0\n");
    CHECK_CONTAINS(c.text, "hash_keys user_id=1\n");
    CHECK_CONTAINS(c.text, "redact_values email=1\n");
    CHECK_CONTAINS(c.text, "redact_values ipv4=1\n");
    CHECK_CONTAINS(c.text, "redact_values ipv6=2\n");
    CHECK_CONTAINS(c.text, "redact_regex sk-[a-z0-9]+=1\n");
    /* rebuilt (a reload): the counts of the same rules carry on */
    struct privacy *again = privacy_new(&cfg, pv, err, sizeof err);
    struct counted c2 = {""};
    privacy_each_count(again, note_count, &c2);
    CHECK_STR_EQ(c2.text, c.text);
    privacy_free(again);
    privacy_free(pv);
    config_free(&cfg);
    /* without rules there is nothing to do */
    char *none[] = {"TELEMETRY_AGENT_PRIVACY_DROP_KEYS=", "TELEMETRY_AGENT_PRIVACY_REDACT_VALUES=",
                    NULL};
    if (fresh_config(&cfg, none)) {
        CHECK(privacy_new(&cfg, NULL, err, sizeof err) == NULL);
        CHECK_STR_EQ(err, "");
        config_free(&cfg);
    }
}

/* The default [privacy] rules in *pv, from a configuration in cfg (to free
 * after); 0 if it did not load. */
static int default_privacy(struct config *cfg, struct privacy **pv)
{
    char err[200];
    if (!fresh_config(cfg, NULL))
        return 0;
    *pv = privacy_new(cfg, NULL, err, sizeof err);
    return 1;
}

/* With key rules on, a key seen before is written from what the rules
 * cache knows of it: keys that need escaping are still escaped, however
 * often they come. */
static void test_cached_keys_are_escaped(void)
{
    struct config cfg;
    struct privacy *pv;
    if (!default_privacy(&cfg, &pv))
        return;
    struct encode_defaults defaults = {.distinct_id = "h", .privacy = pv};
    for (int round = 0; pv != NULL && round < 3; round++) {
        const msgpack_object *obj = mp_build(
            &m, "{s:s, s:{s:i, s:i, s:i, s:i, s:{s:i}}}", "event", "e", "properties", "plain", 1,
            "quo\"te", 2, "caf\xc3\xa9", 3, "back\\slash", 4, "nested", "new\nline", 5);
        json_t *v = encode_event_json(obj, &defaults, T_MS);
        check_context("round %d", round);
        if (CHECK(v != NULL)) {
            json_t *props = js_at(v, "properties");
            CHECK_EQ_INT(json_integer_value(json_object_get(props, "plain")), 1);
            CHECK_EQ_INT(json_integer_value(json_object_get(props, "quo\"te")), 2);
            CHECK_EQ_INT(json_integer_value(json_object_get(props, "caf\xc3\xa9")), 3);
            CHECK_EQ_INT(json_integer_value(json_object_get(props, "back\\slash")), 4);
            CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(props, "nested"),
                                                            "new\nline")), 5);
        }
        json_decref(v);
    }
    check_context(NULL);
    privacy_free(pv);
    config_free(&cfg);
}

/* Every form an IPv6 or IPv4 address is written in is redacted, and text
 * that only looks like one (times, versions, too many groups) is not:
 * inet_pton is asked only about runs that can be an address at all. */
static void test_privacy_address_forms(void)
{
    struct config cfg;
    struct privacy *pv;
    if (!default_privacy(&cfg, &pv))
        return;
    static const char *const addresses[] = {
        "1:2:3:4:5:6:7:8", "2001:db8::1", "::", "::1", "1::", "fe80::1:2",
        "::ffff:10.1.2.3", "1:2:3:4:5:6:10.1.2.3", "1:2:3:4:5::10.1.2.3",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", "0.0.0.0", "255.255.255.255",
        "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789"};
    static const char *const not_addresses[] = {
        "12:34:56", "2023-06-01T12:30:45.123Z", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:1.2.3", "v2023.06.1", "1.2.3", "256.1.1.1", "1.2.3.4.5", "a:b",
        "1:::2", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555"};
    struct buf out = BUF_INIT;
    size_t n_in = sizeof addresses / sizeof addresses[0];
    size_t n_out = sizeof not_addresses / sizeof not_addresses[0];
    for (size_t i = 0; pv != NULL && i < n_in + n_out; i++) {
        const char *value = i < n_in ? addresses[i] : not_addresses[i - n_in];
        char text[96], want[100];
        snprintf(text, sizeof text, "at %s now", value);
        snprintf(want, sizeof want, "\"%s\"", i < n_in ? "at [redacted] now" : text);
        buf_truncate(&out, 0);
        privacy_write_string(pv, &out, text, strlen(text));
        buf_append_char(&out, '\0');
        check_context("%s", text);
        CHECK_STR_EQ(out.data, want);
    }
    check_context(NULL);
    buf_free(&out);
    privacy_free(pv);
    config_free(&cfg);
}

/* A string no rule redacts is written exactly as without [privacy]: with
 * and without the characters that make the rules look, escapes, UTF-8 and
 * bytes that are not, at every length up to 24. */
static void test_privacy_leaves_other_strings_as_json_writes_them(void)
{
    struct config cfg;
    struct privacy *pv;
    if (!default_privacy(&cfg, &pv))
        return;
    static const char *const texts[] = {
        "plain words", "v1.2.3 at 12:30", "q\"uote. and\\ @", "caf\xc3\xa9: \xff\x01",
        "line\nbreak:tab\t.", "a@b", "x:y", "v1.2"};
    struct buf got = BUF_INIT, want = BUF_INIT;
    for (size_t t = 0; pv != NULL && t < sizeof texts / sizeof texts[0]; t++) {
        for (size_t len = 0; len <= 24; len++) {
            char text[24];
            for (size_t i = 0; i < len; i++) /* the text repeated to the length */
                text[i] = texts[t][i % strlen(texts[t])];
            buf_truncate(&got, 0);
            buf_truncate(&want, 0);
            privacy_write_string(pv, &got, text, len);
            json_write_string(&want, text, len);
            check_context("%s to %zu bytes", texts[t], len);
            CHECK_MEM_EQ(got.data, got.len, want.data, want.len);
        }
    }
    check_context(NULL);
    buf_free(&got);
    buf_free(&want);
    privacy_free(pv);
    config_free(&cfg);
}

/* Each built-in value kind is found at every place of strings of every
 * length up to 30: the characters that let a kind look ('@', '.', ':')
 * are found eight bytes at a time as the string is written, so each place
 * in a word is tried, with a non-ASCII byte before the value, or a
 * character JSON escapes before it and after it (where the writing leaves
 * its fast path). */
static void test_privacy_values_at_every_place(void)
{
    struct config cfg;
    struct privacy *pv;
    if (!default_privacy(&cfg, &pv))
        return;
    static const char *const values[] = {"a@b.io", "10.1.2.3", "fe80::1"};
    for (size_t v = 0; pv != NULL && v < sizeof values / sizeof values[0] * 2; v++) {
        int escapes = v % 2;
        size_t n = strlen(values[v / 2]);
        for (size_t len = n; len <= 30; len++) {
            for (size_t at = 0; at + n <= len; at++) {
                char text[32];
                memset(text, 'x', len);
                text[len] = '\0';
                memcpy(text + at, values[v / 2], n);
                if (at >= 3 && !escapes) { /* an e-acute and a space */
                    text[at - 3] = (char)0xc3;
                    text[at - 2] = (char)0xa9;
                    text[at - 1] = ' ';
                } else if (at >= 2) { /* a quote and a space */
                    text[at - 2] = '"';
                    text[at - 1] = ' ';
                }
                if (at + n < len)
                    text[at + n] = ' ';
                if (escapes && at + n + 1 < len)
                    text[at + n + 1] = '\n';
                struct buf out = BUF_INIT;
                privacy_write_string(pv, &out, text, len);
                buf_append_char(&out, '\0');
                check_context("%s at %zu of %zu%s", values[v / 2], at, len,
                              escapes ? " among escapes" : "");
                CHECK(!out.failed && strstr(out.data, "[redacted]") != NULL &&
                      strstr(out.data, values[v / 2]) == NULL);
                buf_free(&out);
            }
        }
    }
    check_context(NULL);
    CHECK(pv != NULL);
    privacy_free(pv);
    config_free(&cfg);
}

/* Key rules of every shape, case-insensitive, matched the same whether a
 * key is met for the first time or again (the recent keys kept), and
 * counted each time. */
static void test_privacy_key_shapes(void)
{
    char *env[] = {"TELEMETRY_AGENT_PRIVACY_DROP_KEYS=email, tok*, *_ip, *secret*, pa?s[wW]d, *",
                   "TELEMETRY_AGENT_PRIVACY_REDACT_VALUES=", NULL};
    char *env_no_star[] = {"TELEMETRY_AGENT_PRIVACY_DROP_KEYS=email, tok*, *_ip, *secret*, "
                           "pa?s[wW]d",
                           "TELEMETRY_AGENT_PRIVACY_REDACT_VALUES=", NULL};
    struct {
        const char *key;
        enum privacy_action want;
    } cases[] = {
        {"email", PRIVACY_DROP},     {"EMAIL", PRIVACY_DROP},     {"emails", PRIVACY_KEEP},
        {"my_email", PRIVACY_KEEP},  {"token", PRIVACY_DROP},     {"ToKeN_id", PRIVACY_DROP},
        {"a_token", PRIVACY_KEEP},   {"client_ip", PRIVACY_DROP}, {"CLIENT_IP", PRIVACY_DROP},
        {"ip_client", PRIVACY_KEEP}, {"secret", PRIVACY_DROP},    {"MySecretKey", PRIVACY_DROP},
        {"secre", PRIVACY_KEEP},     {"passwd", PRIVACY_DROP},    {"PAXSWD", PRIVACY_DROP},
        {"passwdx", PRIVACY_KEEP},   {"", PRIVACY_KEEP},
    };
    struct config cfg;
    char err[200];
    int plain;
    if (!fresh_config(&cfg, env_no_star))
        return;
    struct privacy *pv = privacy_new(&cfg, NULL, err, sizeof err);
    for (int round = 0; pv != NULL && round < 3; round++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            if (!CHECK_EQ_INT(privacy_key(pv, cases[i].key, strlen(cases[i].key), &plain),
                              cases[i].want))
                fprintf(stderr, "  key '%s', round %d\n", cases[i].key, round);
    /* whether a key needs no JSON escaping is kept with its rule */
    static const struct {
        const char *key;
        int plain;
    } texts[] = {{"ok_key", 1}, {"with space", 1}, {"quote\"d", 0}, {"back\\slash", 0},
                 {"caf\xc3\xa9", 0}, {"tab\there", 0}, {"a-very-long-key-of-forty-bytes-or-so-ok", 1}};
    for (int round = 0; pv != NULL && round < 2; round++)
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            privacy_key(pv, texts[i].key, strlen(texts[i].key), &plain);
            check_context("key '%s', round %d", texts[i].key, round);
            CHECK_EQ_INT(plain, texts[i].plain);
        }
    check_context(NULL);
    /* a key is matched up to a NUL in it, as fnmatch() reads it */
    if (pv != NULL) {
        CHECK_EQ_INT(privacy_key(pv, "email\0zz", 8, &plain), PRIVACY_DROP);
        CHECK_EQ_INT(privacy_key(pv, "tok\0", 4, &plain), PRIVACY_DROP);
    }
    /* many distinct keys: the kept ones are replaced, never confused */
    char key[40];
    for (int i = 0; pv != NULL && i < 5000; i++) {
        snprintf(key, sizeof key, i % 2 ? "token%d" : "field%d", i);
        CHECK_EQ_INT(privacy_key(pv, key, strlen(key), &plain),
                     i % 2 ? PRIVACY_DROP : PRIVACY_KEEP);
    }
    struct counted c = {""};
    privacy_each_count(pv, note_count, &c);
    CHECK_CONTAINS(c.text, "drop_keys email=7\n");
    CHECK_CONTAINS(c.text, "drop_keys tok*=2507\n");
    CHECK_CONTAINS(c.text, "drop_keys pa?s[wW]d=6\n");
    privacy_free(pv);
    config_free(&cfg);
    /* a lone '*' takes every key, the empty one too */
    if (!fresh_config(&cfg, env))
        return;
    pv = privacy_new(&cfg, NULL, err, sizeof err);
    if (CHECK(pv != NULL)) {
        CHECK_EQ_INT(privacy_key(pv, "anything", 8, &plain), PRIVACY_DROP);
        CHECK_EQ_INT(privacy_key(pv, "", 0, &plain), PRIVACY_DROP);
    }
    privacy_free(pv);
    config_free(&cfg);
}

static void test_properties_merged(void)
{
    struct props_node *tree = make_defaults_tree();
    struct encode_defaults defaults = {.properties = tree, .distinct_id = "h"};
    const msgpack_object *obj = mp_build(
        &m, "{s:s, s:{s:s, s:{s:s, s:i}, s:i, s:{s:s}}}", "event", "e", "properties", "count",
        "mine", "app", "version", "event-v", "extra", 1, "sys", 5, "env", "region", "eu");
    struct analytics_event ev;
    const msgpack_object *chunk;
    struct refusal r;
    struct buf out = BUF_INIT;
    if (CHECK_EQ_INT(decode_event(obj, NULL, &ev, &chunk, &r), 0) &&
        CHECK_EQ_INT(encode_event(&out, &ev, &defaults, T_MS, &r), 0)) {
        json_t *v = js_parse_buf(&out);
        check_merged(js_at(v, "properties"));
        json_decref(v);
        /* merging must not repeat a key the event already has */
        v = js_parse_flags(out.data, out.len, JSON_REJECT_DUPLICATES);
        CHECK(v != NULL);
        json_decref(v);
    }
    buf_free(&out);

    /* an event without properties gets the whole tree */
    json_t *v = encode_event_json(mp_build(&m, "{s:s, s:n}", "event", "e", "properties"),
                                  &defaults, T_MS);
    CHECK_EQ_INT(json_integer_value(js_at(v, "properties/count")), 4);
    CHECK_STR_EQ(json_string_value(js_at(v, "properties/app/version")), "v2");
    CHECK_STR_EQ(json_string_value(js_at(v, "properties/env")), "prod");
    CHECK_EQ_UINT(json_object_size(js_at(v, "properties")), 9);
    json_decref(v);
    props_free(tree);
}

/* The configured defaults always carry $lib and $lib_version. */
static void test_lib_properties(void)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    char *env[] = {NULL};
    if (!CHECK_EQ_INT(config_load(&cfg, NULL, env, err, sizeof err), 0))
        return;
    struct encode_defaults defaults = {.properties = cfg.properties,
                                       .distinct_id = cfg.distinct_id};
    json_t *v = encode_event_json(mp_build(&m, "{s:s}", "event", "e"), &defaults, T_MS);
    CHECK_STR_EQ(json_string_value(js_at(v, "properties/$lib")), "telemetry-agent");
    const char *version = json_string_value(js_at(v, "properties/$lib_version"));
    CHECK(version != NULL && version[0] != '\0');
    CHECK_STR_EQ(json_string_value(js_at(v, "distinct_id")), cfg.distinct_id);
    json_decref(v);

    v = encode_event_json(mp_build(&m, "{s:s, s:{s:s}}", "event", "e", "properties", "$lib", "py"),
                          &defaults, T_MS);
    CHECK_STR_EQ(json_string_value(js_at(v, "properties/$lib")), "py");
    CHECK(json_is_string(js_at(v, "properties/$lib_version")));
    json_decref(v);
    config_free(&cfg);
}

static void test_event_too_deep(void)
{
    msgpack_object_kv kv = {{.type = MSGPACK_OBJECT_STR, .via.str = {4, "deep"}},
                            *deep(DEEP_MAX, 1)};
    struct analytics_event ev = {.name = "e", .name_len = 1,
                                 .properties = &(msgpack_object_map){1, &kv},
                                 .timestamp_ms = -1};
    struct buf out = BUF_INIT;
    struct refusal r;
    CHECK_EQ_INT(encode_event(&out, &ev, &plain_defaults, T_MS, &r), -1);
    CHECK_STR_EQ(reason_name(r.reason), "too_large");
    buf_free(&out);

    kv.val = *deep(20, 1);
    CHECK_EQ_INT(encode_event(&out, &ev, &plain_defaults, T_MS, &r), 0);
    json_t *v = js_parse_buf(&out);
    CHECK(json_is_object(js_at(v, "properties/deep/k/k/k")));
    json_decref(v);
    buf_free(&out);
}

/* msgpack maps may repeat a key, JSON objects may not: such an event is
 * refused, whatever the depth, the map's size or the keys' types (the
 * number 1 and the string "1" become the same name). Found by fuzzing. */
static void test_repeated_keys_refused(void)
{
    struct {
        const char *what;
        const msgpack_object *obj;
    } cases[4];
    struct mp m2, m3, m4;
    mp_init(&m2);
    mp_init(&m3);
    mp_init(&m4);
    cases[0].what = "top level";
    cases[0].obj = mp_build(&m, "{s:s, s:{s:i, s:i, s:i}}", "event", "e", "properties", "a", 1,
                            "b", 2, "a", 3);
    cases[1].what = "nested, a number and a string";
    cases[1].obj = mp_build(&m2, "{s:s, s:{s:[{i:i, s:i}]}}", "event", "e", "properties", "l",
                            1, 1, "1", 2);
    mp_reset(&m3); /* 40 keys: sorted, not compared pairwise */
    msgpack_pack_map(&m3.pk, 2);
    const char *fixed[] = {"event", "e", "properties"};
    for (int i = 0; i < 3; i++)
        msgpack_pack_str_with_body(&m3.pk, fixed[i], strlen(fixed[i]));
    msgpack_pack_map(&m3.pk, 40);
    for (int i = 0; i < 40; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i == 39 ? 7 : i);
        msgpack_pack_str_with_body(&m3.pk, key, strlen(key));
        msgpack_pack_int(&m3.pk, i);
    }
    cases[2].what = "40 keys";
    cases[2].obj = mp_unpack(&m3);
    cases[3].what = "two invalid UTF-8 keys, both written as U+FFFD";
    cases[3].obj = mp_build(&m4, "{s:s, s:{s:i, s:i}}", "event", "e", "properties", "\xb8", 1,
                            "\xb9", 2);
    for (size_t i = 0; i < 4; i++) {
        check_context("%s", cases[i].what);
        struct analytics_event ev;
        const msgpack_object *chunk;
        struct refusal r;
        struct buf out = BUF_INIT;
        if (CHECK_EQ_INT(decode_event(cases[i].obj, NULL, &ev, &chunk, &r), 0)) {
            CHECK_EQ_INT(encode_event(&out, &ev, &plain_defaults, T_MS, &r), -1);
            CHECK_STR_EQ(reason_name(r.reason), "duplicate_key");
            static const char *const named[] = {"the key 'a' twice", "the key '1' twice",
                                                "the key 'k7' twice", "the key '\xef\xbf\xbd' twice"};
            CHECK_CONTAINS(r.detail, named[i]);
        }
        buf_free(&out);
    }
    check_context(NULL);
    mp_free(&m2);
    mp_free(&m3);
    mp_free(&m4);
}

/* The repeat check of maps up to 32 keys goes by fingerprint (length,
 * first and last eight bytes): keys that differ only in the middle share
 * one and must still be told apart, and a real repeat among them found. */
static void test_repeats_among_keys_with_one_fingerprint(void)
{
    for (int repeat = 0; repeat < 2; repeat++) {
        mp_reset(&m);
        msgpack_pack_map(&m.pk, 2);
        msgpack_pack_str_with_body(&m.pk, "event", 5);
        msgpack_pack_str_with_body(&m.pk, "e", 1);
        msgpack_pack_str_with_body(&m.pk, "properties", 10);
        msgpack_pack_map(&m.pk, 32);
        for (int i = 0; i < 32; i++) {
            char key[32];
            snprintf(key, sizeof key, "abcdefgh-%02d-stuvwxyz", repeat && i == 31 ? 5 : i);
            msgpack_pack_str_with_body(&m.pk, key, strlen(key));
            msgpack_pack_int(&m.pk, i);
        }
        const msgpack_object *obj = mp_unpack(&m);
        struct analytics_event ev;
        const msgpack_object *chunk;
        struct refusal r;
        struct buf out = BUF_INIT;
        check_context("repeat %d", repeat);
        if (CHECK_EQ_INT(decode_event(obj, NULL, &ev, &chunk, &r), 0)) {
            int rc = encode_event(&out, &ev, &plain_defaults, T_MS, &r);
            if (repeat) {
                CHECK_EQ_INT(rc, -1);
                CHECK_CONTAINS(r.detail, "the key 'abcdefgh-05-stuvwxyz' twice");
            } else {
                CHECK_EQ_INT(rc, 0);
            }
        }
        buf_free(&out);
    }
    check_context(NULL);
}

/* Keys within keys: each level escapes the text of the one below again,
 * so 25 levels in a few dozen bytes would write gigabytes. Refused past
 * ENCODE_MAX_KEY_BYTES instead, at once. Found by fuzzing. */
static void test_keys_within_keys_are_bounded(void)
{
    enum { LEVELS = 25 };
    mp_reset(&m);
    msgpack_pack_map(&m.pk, 2);
    msgpack_pack_str_with_body(&m.pk, "event", 5);
    msgpack_pack_str_with_body(&m.pk, "e", 1);
    msgpack_pack_str_with_body(&m.pk, "properties", 10);
    msgpack_pack_map(&m.pk, 1); /* {M: 1}, M = {{...{"a": 1}...}: 1} */
    for (int i = 0; i < LEVELS; i++)
        msgpack_pack_map(&m.pk, 1);
    msgpack_pack_str_with_body(&m.pk, "a\"", 2);
    for (int i = 0; i <= LEVELS; i++)
        msgpack_pack_int(&m.pk, 1);
    const msgpack_object *obj = mp_unpack(&m);
    struct analytics_event ev;
    const msgpack_object *chunk;
    struct refusal r;
    struct buf out = BUF_INIT;
    if (CHECK_EQ_INT(decode_event(obj, NULL, &ev, &chunk, &r), 0)) {
        CHECK_EQ_INT(encode_event(&out, &ev, &plain_defaults, T_MS, &r), -1);
        CHECK_STR_EQ(reason_name(r.reason), "bad_properties");
        CHECK_CONTAINS(r.detail, "written as more than 4096 bytes");
    }
    buf_free(&out);
}

int main(void)
{
    mp_init(&m);
    RUN(test_string_escapes);
    RUN(test_invalid_utf8);
    RUN(test_valid_utf8_unchanged);
    RUN(test_utf8_is_valid_everywhere);
    RUN(test_non_finite_is_null);
    RUN(test_floats);
    RUN(test_integer_extremes);
    RUN(test_nested);
    RUN(test_binary_base64);
    RUN(test_non_string_keys);
    RUN(test_ext);
    RUN(test_too_deep);
    RUN(test_event_filled_in);
    RUN(test_event_own_fields_kept);
    RUN(test_properties_merged);
    RUN(test_peer_tags_written_over_the_producers);
    RUN(test_privacy_rules);
    RUN(test_privacy_key_shapes);
    RUN(test_privacy_leaves_other_strings_as_json_writes_them);
    RUN(test_privacy_values_at_every_place);
    RUN(test_privacy_address_forms);
    RUN(test_cached_keys_are_escaped);
    RUN(test_repeated_keys_refused);
    RUN(test_repeats_among_keys_with_one_fingerprint);
    RUN(test_keys_within_keys_are_bounded);
    RUN(test_lib_properties);
    RUN(test_event_too_deep);
    buf_free(&text_buf);
    mp_free(&m);
    return check_finish();
}
