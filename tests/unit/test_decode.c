/*
 * decode_event: every accepted shape of a native event, and every reason an
 * event is rejected, with the drop reason it is counted under.
 */
#include "check.h"
#include "decode.h"
#include "mp.h"
#include "registry.h"
#include "support.h"
#include "timestamp.h"

#include <string.h>

static struct mp m;

/* 2023-11-14T22:13:20Z */
#define T_SECS INT64_C(1700000000)
#define T_MS (T_SECS * 1000)

static const char UUID_LOWER[] = "018bcfe5-6a00-7abc-8def-0123456789ab";
static const char UUID_UPPER[] = "018BCFE5-6A00-7ABC-8DEF-0123456789AB";

/* Decode obj and CHECK that it is accepted. Returns 1 if it was. */
static int decode_ok(const msgpack_object *obj, const struct registry *registry, struct analytics_event *ev)
{
    const msgpack_object *chunk;
    struct refusal r = {DROP_REASON_COUNT, ""};
    memset(ev, 0xa5, sizeof *ev); /* nothing may be left unset */
    int rc = decode_event(obj, registry, ev, &chunk, &r);
    if (!CHECK_EQ_INT(rc, 0))
        fprintf(stderr, "    rejected as %s: %s\n", reason_name(r.reason), r.detail);
    return rc == 0;
}

/* Decode obj and CHECK that it is rejected for `want`, with a description. */
static void reject(const char *what, enum drop_reason want, const msgpack_object *obj,
                   const struct registry *registry)
{
    struct analytics_event ev;
    const msgpack_object *chunk;
    struct refusal r = {DROP_REASON_COUNT, ""};
    check_context("%s", what);
    CHECK_EQ_INT(decode_event(obj, registry, &ev, &chunk, &r), -1);
    CHECK_STR_EQ(reason_name(r.reason), reason_name(want));
    CHECK(r.detail[0] != '\0');
    check_context(NULL);
}

static void check_name(const struct analytics_event *ev, const char *want)
{
    CHECK_MEM_EQ(ev->name, ev->name_len, want, strlen(want));
}

static void test_event_only(void)
{
    struct analytics_event ev;
    if (!decode_ok(mp_build(&m, "{s:s}", "event", "page_view"), NULL, &ev))
        return;
    check_name(&ev, "page_view");
    CHECK(ev.properties == NULL);
    CHECK_EQ_INT(ev.timestamp_ms, -1);
    CHECK(ev.uuid == NULL);
    CHECK(ev.distinct_id == NULL);
    CHECK_EQ_UINT(ev.distinct_id_len, 0);
}

static void test_properties_map(void)
{
    struct analytics_event ev;
    const msgpack_object *obj =
        mp_build(&m, "{s:s, s:{s:i, s:[i]}}", "event", "e", "properties", "a", 1, "b", 2);
    if (!decode_ok(obj, NULL, &ev))
        return;
    if (!CHECK(ev.properties != NULL))
        return;
    CHECK_EQ_UINT(ev.properties->size, 2);
    CHECK_MEM_EQ(ev.properties->ptr[0].key.via.str.ptr, ev.properties->ptr[0].key.via.str.size,
                 "a", 1);
    CHECK_EQ_UINT(ev.properties->ptr[0].val.via.u64, 1);

    if (decode_ok(mp_build(&m, "{s:s, s:{}}", "event", "e", "properties"), NULL, &ev) &&
        CHECK(ev.properties != NULL))
        CHECK_EQ_UINT(ev.properties->size, 0);
}

static void test_properties_nil(void)
{
    struct analytics_event ev;
    if (decode_ok(mp_build(&m, "{s:s, s:n}", "event", "e", "properties"), NULL, &ev))
        CHECK(ev.properties == NULL);
}

static void test_uuid(void)
{
    const char *forms[] = {UUID_LOWER, UUID_UPPER, "018bCFe5-6A00-7aBc-8DeF-0123456789aB"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct analytics_event ev;
        check_context("uuid %s", forms[i]);
        if (decode_ok(mp_build(&m, "{s:s, s:s}", "event", "e", "uuid", forms[i]), NULL, &ev) &&
            CHECK(ev.uuid != NULL))
            CHECK_MEM_EQ(ev.uuid, 36, forms[i], 36);
    }
}

static void test_distinct_id(void)
{
    struct analytics_event ev;
    if (decode_ok(mp_build(&m, "{s:s, s:s}", "event", "e", "distinct_id", "host-7"), NULL, &ev))
        CHECK_MEM_EQ(ev.distinct_id, ev.distinct_id_len, "host-7", 6);
}

static void test_length_limits_inclusive(void)
{
    char long_text[WIRE_NAME_MAX + 1];
    memset(long_text, 'n', sizeof long_text);
    struct analytics_event ev;
    if (decode_ok(mp_build(&m, "{s:S}", "event", long_text, (size_t)WIRE_NAME_MAX), NULL, &ev))
        CHECK_EQ_UINT(ev.name_len, WIRE_NAME_MAX);
    if (decode_ok(mp_build(&m, "{s:s, s:S}", "event", "e", "distinct_id", long_text,
                        (size_t)WIRE_DISTINCT_ID_MAX),
               NULL, &ev))
        CHECK_EQ_UINT(ev.distinct_id_len, WIRE_DISTINCT_ID_MAX);
}

/* All five keys, in an order other than the documented one. */
static void test_all_fields(void)
{
    struct analytics_event ev;
    const msgpack_object *obj =
        mp_build(&m, "{s:s, s:I, s:{s:s}, s:s, s:s}", "distinct_id", "d", "timestamp", T_MS + 5,
                 "properties", "k", "v", "uuid", UUID_LOWER, "event", "signup");
    if (!decode_ok(obj, NULL, &ev))
        return;
    check_name(&ev, "signup");
    CHECK_MEM_EQ(ev.distinct_id, ev.distinct_id_len, "d", 1);
    CHECK_EQ_INT(ev.timestamp_ms, T_MS + 5);
    CHECK(ev.properties != NULL && ev.properties->size == 1);
    CHECK(ev.uuid != NULL && memcmp(ev.uuid, UUID_LOWER, 36) == 0);
}

/* Decode {"event":"e","timestamp":<what the caller packed>} and check the time. */
static void check_timestamp(const char *what, int64_t want)
{
    struct analytics_event ev;
    check_context("timestamp %s", what);
    if (decode_ok(mp_unpack(&m), NULL, &ev))
        CHECK_EQ_INT(ev.timestamp_ms, want);
    check_context(NULL);
}

/* Start {"event":"e","timestamp": ...; the caller packs the value. */
static void begin_timestamp_event(void)
{
    mp_reset(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_pack(&m, "s:s, s", "event", "e", "timestamp");
}

static void test_timestamp_integer(void)
{
    const int64_t values[] = {T_MS + 123, 0, TIMESTAMP_MAX_MS};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        begin_timestamp_event();
        mp_pack(&m, "I", values[i]);
        check_timestamp("integer", values[i]);
    }
}

static void test_timestamp_event_time(void)
{
    unsigned char data[8];
    mp_put_be(data, (uint64_t)T_SECS, 4);
    mp_put_be(data + 4, 123456789, 4);
    begin_timestamp_event();
    mp_pack(&m, "e", 0, data, sizeof data);
    check_timestamp("EventTime ext 0", T_MS + 123);
}

static void test_timestamp_ext_minus_one(void)
{
    unsigned char d4[4], d8[8], d12[12];
    mp_put_be(d4, (uint64_t)T_SECS, 4);
    begin_timestamp_event();
    mp_pack(&m, "e", -1, d4, sizeof d4);
    check_timestamp("ext -1, 4 bytes", T_MS);

    mp_put_be(d8, (UINT64_C(456000000) << 34) | (uint64_t)T_SECS, 8);
    begin_timestamp_event();
    mp_pack(&m, "e", -1, d8, sizeof d8);
    check_timestamp("ext -1, 8 bytes", T_MS + 456);

    mp_put_be(d12, 999999999, 4);
    mp_put_be(d12 + 4, (uint64_t)T_SECS, 8);
    begin_timestamp_event();
    mp_pack(&m, "e", -1, d12, sizeof d12);
    check_timestamp("ext -1, 12 bytes", T_MS + 999);

    /* the same three sizes as msgpack-c's own packer chooses them */
    begin_timestamp_event();
    mp_pack(&m, "T", T_SECS, 0u);
    check_timestamp("msgpack_pack_timestamp, 4 bytes", T_MS);
    begin_timestamp_event();
    mp_pack(&m, "T", T_SECS, 7000000u);
    check_timestamp("msgpack_pack_timestamp, 8 bytes", T_MS + 7);
    begin_timestamp_event();
    mp_pack(&m, "T", TIMESTAMP_MAX_MS / 1000, 999999999u);
    check_timestamp("msgpack_pack_timestamp, 12 bytes", TIMESTAMP_MAX_MS);
}

static void test_timestamp_rfc3339(void)
{
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"2023-11-14T22:13:20Z", T_MS},
        {"2023-11-14T22:13:20.123Z", T_MS + 123},
        {"2023-11-14T22:13:20.5Z", T_MS + 500},
        {"2023-11-14T22:13:20.123456789Z", T_MS + 123},
        {"2023-11-14T23:13:20+01:00", T_MS},
        {"2023-11-14T21:43:20.25-00:30", T_MS + 250},
        {"2023-11-15T03:13:20.001+05:00", T_MS + 1},
        {"2023-11-14 22:13:20Z", T_MS},
        {"2023-11-14t22:13:20z", T_MS},
        {"1970-01-01T00:00:00Z", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        begin_timestamp_event();
        mp_pack(&m, "s", cases[i].text);
        check_timestamp(cases[i].text, cases[i].ms);
    }
}

static void test_reject_shape(void)
{
    reject("array", DROP_UNSUPPORTED_SHAPE, mp_build(&m, "[s:s]", "event", "e"), NULL);
    reject("string", DROP_UNSUPPORTED_SHAPE, mp_build(&m, "s", "event"), NULL);
    reject("integer", DROP_UNSUPPORTED_SHAPE, mp_build(&m, "i", 1), NULL);
    reject("nil", DROP_UNSUPPORTED_SHAPE, mp_build(&m, "n"), NULL);
}

static void test_reject_event_name(void)
{
    char long_name[WIRE_NAME_MAX + 1];
    memset(long_name, 'n', sizeof long_name);
    reject("no event key", DROP_MISSING_EVENT, mp_build(&m, "{s:{}}", "properties"), NULL);
    reject("empty map", DROP_MISSING_EVENT, mp_build(&m, "{}"), NULL);
    reject("event is an integer", DROP_BAD_EVENT, mp_build(&m, "{s:i}", "event", 5), NULL);
    reject("event is binary", DROP_BAD_EVENT, mp_build(&m, "{s:x}", "event", "e", (size_t)1), NULL);
    reject("event is nil", DROP_BAD_EVENT, mp_build(&m, "{s:n}", "event"), NULL);
    reject("event is empty", DROP_BAD_EVENT, mp_build(&m, "{s:s}", "event", ""), NULL);
    reject("event is 201 bytes", DROP_BAD_EVENT,
           mp_build(&m, "{s:S}", "event", long_name, sizeof long_name), NULL);
}

static void test_registry(void)
{
    char err[256] = "";
    char *path = tmp_file("# events we accept\npage_view\n\n  signup  \n");
    struct registry *registry = path ? registry_load(path, err, sizeof err) : NULL;
    if (!CHECK(registry != NULL)) {
        fprintf(stderr, "    %s\n", err);
        tmp_file_remove(path);
        return;
    }
    struct analytics_event ev;
    if (decode_ok(mp_build(&m, "{s:s}", "event", "signup"), registry, &ev))
        check_name(&ev, "signup");
    CHECK(decode_ok(mp_build(&m, "{s:s}", "event", "page_view"), registry, &ev));
    reject("not in the registry", DROP_UNKNOWN_EVENT, mp_build(&m, "{s:s}", "event", "purchase"),
           registry);
    reject("a prefix of a registered name", DROP_UNKNOWN_EVENT,
           mp_build(&m, "{s:s}", "event", "page"), registry);
    reject("a comment line is not a name", DROP_UNKNOWN_EVENT,
           mp_build(&m, "{s:s}", "event", "# events we accept"), registry);
    /* without a registry any name goes */
    CHECK(decode_ok(mp_build(&m, "{s:s}", "event", "purchase"), NULL, &ev));
    registry_free(registry);
    tmp_file_remove(path);
}

static void test_reject_properties(void)
{
    reject("properties is an array", DROP_BAD_PROPERTIES,
           mp_build(&m, "{s:s, s:[]}", "event", "e", "properties"), NULL);
    reject("properties is a string", DROP_BAD_PROPERTIES,
           mp_build(&m, "{s:s, s:s}", "event", "e", "properties", "a=1"), NULL);
    reject("properties is false", DROP_BAD_PROPERTIES,
           mp_build(&m, "{s:s, s:b}", "event", "e", "properties", 0), NULL);
}

/* The timestamp value is packed by the caller after begin_timestamp_event(). */
static void reject_timestamp(const char *what)
{
    char context[128];
    snprintf(context, sizeof context, "timestamp: %s", what);
    reject(context, DROP_BAD_TIMESTAMP, mp_unpack(&m), NULL);
}

static void test_reject_timestamp_scalars(void)
{
    static const char *const strings[] = {
        "yesterday", "", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20+0100", "2023-11-14T22:13:20Z ", " 2023-11-14T22:13:20Z",
        "2023-02-30T00:00:00Z", "2023-13-01T00:00:00Z", "2023-11-14T24:00:00Z",
        "1969-12-31T23:59:59.999Z", "1970-01-01T00:30:00+01:00",
        "9999-12-31T23:59:59.999-00:01",
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        begin_timestamp_event();
        mp_pack(&m, "s", strings[i]);
        reject_timestamp(strings[i]);
    }
    begin_timestamp_event();
    mp_pack(&m, "i", -1);
    reject_timestamp("negative integer");
    begin_timestamp_event();
    mp_pack(&m, "I", TIMESTAMP_MAX_MS + 1);
    reject_timestamp("integer past 9999");
    begin_timestamp_event();
    mp_pack(&m, "d", 1700000000000.0);
    reject_timestamp("float64");
    begin_timestamp_event();
    mp_pack(&m, "f", 1.0);
    reject_timestamp("float32");
    begin_timestamp_event();
    mp_pack(&m, "b", 1);
    reject_timestamp("boolean");
    begin_timestamp_event();
    mp_pack(&m, "n");
    reject_timestamp("nil");
    begin_timestamp_event();
    mp_pack(&m, "[I]", T_MS);
    reject_timestamp("array");
}

static void test_reject_timestamp_ext(void)
{
    unsigned char data[16] = {0};
    static const struct {
        int type;
        size_t size;
    } bad_sizes[] = {{-1, 0}, {-1, 1}, {-1, 5}, {-1, 16}, {0, 4}, {0, 12}, {1, 8}, {-2, 8}};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "ext type %d of %zu bytes", bad_sizes[i].type,
                 bad_sizes[i].size);
        begin_timestamp_event();
        mp_pack(&m, "e", bad_sizes[i].type, data, bad_sizes[i].size);
        reject_timestamp(what);
    }

    mp_put_be(data, 1000000000, 4); /* nanoseconds must be < 10^9 */
    mp_put_be(data + 4, (uint64_t)T_SECS, 8);
    begin_timestamp_event();
    mp_pack(&m, "e", -1, data, (size_t)12);
    reject_timestamp("ext -1, 12 bytes, nanoseconds 10^9");

    mp_put_be(data, 0, 4);
    mp_put_be(data + 4, (uint64_t)-1, 8); /* one second before 1970 */
    begin_timestamp_event();
    mp_pack(&m, "e", -1, data, (size_t)12);
    reject_timestamp("ext -1, 12 bytes, negative seconds");

    mp_put_be(data + 4, (uint64_t)(TIMESTAMP_MAX_MS / 1000 + 1), 8);
    begin_timestamp_event();
    mp_pack(&m, "e", -1, data, (size_t)12);
    reject_timestamp("ext -1, 12 bytes, year 10000");

    mp_put_be(data, (UINT64_C(1000000000) << 34) | (uint64_t)T_SECS, 8);
    begin_timestamp_event();
    mp_pack(&m, "e", -1, data, (size_t)8);
    reject_timestamp("ext -1, 8 bytes, nanoseconds 10^9");

    mp_put_be(data, (uint64_t)T_SECS, 4);
    mp_put_be(data + 4, 1000000000, 4);
    begin_timestamp_event();
    mp_pack(&m, "e", 0, data, (size_t)8);
    reject_timestamp("EventTime, nanoseconds 10^9");
}

static void test_reject_uuid(void)
{
    static const char *const bad[] = {
        "not-a-uuid",
        "",
        "018bcfe5-6a00-7abc-8def-0123456789a",    /* 35 characters */
        "018bcfe5-6a00-7abc-8def-0123456789abc",  /* 37 */
        "018bcfe56a007abc8def0123456789ab",       /* no dashes */
        "018bcfe5-6a007-abc-8def-0123456789ab",   /* dash moved */
        "018bcfe5-6a00-7abc-8def-0123456789ag",   /* not hex */
        "{18bcfe5-6a00-7abc-8def-0123456789ab",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[80];
        snprintf(what, sizeof what, "uuid '%s'", bad[i]);
        reject(what, DROP_BAD_UUID, mp_build(&m, "{s:s, s:s}", "event", "e", "uuid", bad[i]), NULL);
    }
    reject("uuid is an integer", DROP_BAD_UUID,
           mp_build(&m, "{s:s, s:i}", "event", "e", "uuid", 7), NULL);
    reject("uuid is 16 bytes of binary", DROP_BAD_UUID,
           mp_build(&m, "{s:s, s:x}", "event", "e", "uuid", "0123456789abcdef", (size_t)16), NULL);
}

static void test_reject_distinct_id(void)
{
    char long_id[WIRE_DISTINCT_ID_MAX + 1];
    memset(long_id, 'd', sizeof long_id);
    reject("distinct_id is an integer", DROP_BAD_DISTINCT_ID,
           mp_build(&m, "{s:s, s:i}", "event", "e", "distinct_id", 42), NULL);
    reject("distinct_id is empty", DROP_BAD_DISTINCT_ID,
           mp_build(&m, "{s:s, s:s}", "event", "e", "distinct_id", ""), NULL);
    reject("distinct_id is nil", DROP_BAD_DISTINCT_ID,
           mp_build(&m, "{s:s, s:n}", "event", "e", "distinct_id"), NULL);
    reject("distinct_id is 201 bytes", DROP_BAD_DISTINCT_ID,
           mp_build(&m, "{s:s, s:S}", "event", "e", "distinct_id", long_id, sizeof long_id), NULL);
}

static void test_reject_keys(void)
{
    reject("unknown key", DROP_UNKNOWN_KEY,
           mp_build(&m, "{s:s, s:i}", "event", "e", "extra", 1), NULL);
    reject("key differs in case", DROP_UNKNOWN_KEY,
           mp_build(&m, "{s:s, s:s}", "event", "e", "Event", "e"), NULL);
    reject("integer key", DROP_UNKNOWN_KEY, mp_build(&m, "{s:s, i:i}", "event", "e", 1, 2), NULL);
    reject("nil key", DROP_UNKNOWN_KEY, mp_build(&m, "{n:s, s:s}", "e", "event", "e"), NULL);
    reject("binary key 'event'", DROP_UNKNOWN_KEY,
           mp_build(&m, "{x:s}", "event", (size_t)5, "e"), NULL);
    reject("event twice", DROP_DUPLICATE_KEY,
           mp_build(&m, "{s:s, s:s}", "event", "a", "event", "b"), NULL);
    reject("properties twice", DROP_DUPLICATE_KEY,
           mp_build(&m, "{s:s, s:{}, s:{}}", "event", "e", "properties", "properties"), NULL);
    reject("uuid twice", DROP_DUPLICATE_KEY,
           mp_build(&m, "{s:s, s:s, s:s}", "event", "e", "uuid", UUID_LOWER, "uuid", UUID_LOWER),
           NULL);
}

/* The unknown key's name is in the detail, and a long one is cut short
 * (AddressSanitizer would catch an overrun). */
static void test_detail(void)
{
    struct analytics_event ev;
    const msgpack_object *chunk;
    struct refusal r;
    const msgpack_object *obj = mp_build(&m, "{s:s, s:i}", "event", "e", "colour", 1);
    CHECK_EQ_INT(decode_event(obj, NULL, &ev, &chunk, &r), -1);
    CHECK_CONTAINS(r.detail, "colour");
    char key[1000];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    obj = mp_build(&m, "{s:s, s:i}", "event", "e", key, 1);
    CHECK_EQ_INT(decode_event(obj, NULL, &ev, &chunk, &r), -1);
    CHECK(strlen(r.detail) < sizeof r.detail);
    CHECK_CONTAINS(r.detail, "kkk...");
}

/* Regression: names and keys from producers reached the log raw, so a
 * producer could forge log lines or write escape sequences to a terminal.
 * Control characters, backslashes and bytes that are not UTF-8 are
 * written as \xNN; valid UTF-8 stays as it is. */
static void test_detail_escapes_producer_text(void)
{
    struct analytics_event ev;
    const msgpack_object *chunk;
    struct refusal r;
    const msgpack_object *obj =
        mp_build(&m, "{s:s, s:i}", "event", "e", "a\nfake: line\x1b[31m\\\xff\xc3\xa9", 1);
    CHECK_EQ_INT(decode_event(obj, NULL, &ev, &chunk, &r), -1);
    CHECK_CONTAINS(r.detail, "a\\x0afake: line\\x1b[31m\\x5c\\xff\xc3\xa9");
    CHECK(strchr(r.detail, '\n') == NULL && strchr(r.detail, 0x1b) == NULL);
    struct registry *reg = registry_from_names("known\n");
    obj = mp_build(&m, "{s:s}", "event", "evil\r\nerror: forged");
    CHECK_EQ_INT(decode_event(obj, reg, &ev, &chunk, &r), -1);
    CHECK_STR_EQ(reason_name(r.reason), "unknown_event");
    CHECK_CONTAINS(r.detail, "evil\\x0d\\x0aerror: forged");
    registry_free(reg);
}

int main(void)
{
    mp_init(&m);
    RUN(test_event_only);
    RUN(test_properties_map);
    RUN(test_properties_nil);
    RUN(test_uuid);
    RUN(test_distinct_id);
    RUN(test_length_limits_inclusive);
    RUN(test_all_fields);
    RUN(test_timestamp_integer);
    RUN(test_timestamp_event_time);
    RUN(test_timestamp_ext_minus_one);
    RUN(test_timestamp_rfc3339);
    RUN(test_reject_shape);
    RUN(test_reject_event_name);
    RUN(test_registry);
    RUN(test_reject_properties);
    RUN(test_reject_timestamp_scalars);
    RUN(test_reject_timestamp_ext);
    RUN(test_reject_uuid);
    RUN(test_reject_distinct_id);
    RUN(test_reject_keys);
    RUN(test_detail);
    RUN(test_detail_escapes_producer_text);
    mp_free(&m);
    return check_finish();
}
