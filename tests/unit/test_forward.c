/*
 * forward_decode: every Fluent Forward mode (Message, Forward, PackedForward
 * as bin and as str, CompressedPackedForward with one or several gzip
 * members), every time form, the tag prefix, the record's event, uuid and
 * distinct_id (checked in the JSON encode_event writes), the option map,
 * and every way a message or an entry is refused. Last, the packed entries'
 * buffer is reused message after message, and a decoder that never
 * decompressed is destroyed cleanly (both under ASan in the sanitizer build).
 */
#include "check.h"
#include "encode.h"
#include "forward.h"
#include "metrics.h"
#include "mp.h"
#include "registry.h"
#include "support.h"
#include "timestamp.h"

#include <libdeflate.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct mp m;  /* the message */
static struct mp pe; /* packed entries, before they go into a message */

/* 2023-11-14T22:13:20Z */
#define T_SECS INT64_C(1700000000)
#define T_MS (T_SECS * 1000)
#define NOW_MS (T_MS + 3600000) /* the receive time, for what encode_event fills in */
#define MAX_UNPACKED (1 << 20)

static const char UUID_UPPER[] = "018BCFE5-6A00-7ABC-8DEF-0123456789AB";
static const char UUID_LOWER[] = "018bcfe5-6a00-7abc-8def-0123456789ab";

static struct forward_decoder fd; /* tag prefix "app." */
static struct encode_defaults defaults = {.distinct_id = "agent-host"};

/* ---- what forward_decode reported --------------------------------------- */

#define MAX_ENTRIES 16

struct entry {
    int ok;
    enum drop_reason reason;
    char detail[256];
    json_t *json; /* the event as encode_event writes it, when ok */
};

static struct entry entries[MAX_ENTRIES];
static int nentries, entries_lost;

static struct {
    int rc;
    const msgpack_object *chunk;
    struct refusal r;
} fw;

static void on_entry(void *arg, const struct analytics_event *ev, const struct refusal *r)
{
    (void)arg;
    if (nentries == MAX_ENTRIES) {
        entries_lost++;
        return;
    }
    struct entry *e = &entries[nentries++];
    e->ok = ev != NULL;
    e->reason = r != NULL ? r->reason : DROP_REASON_COUNT;
    snprintf(e->detail, sizeof e->detail, "%s", r != NULL ? r->detail : "");
    e->json = NULL;
    if (ev != NULL) {
        struct buf out = BUF_INIT;
        struct refusal er;
        if (CHECK_EQ_INT(encode_event(&out, ev, &defaults, NOW_MS, &er), 0))
            e->json = js_parse_buf(&out);
        buf_free(&out);
    }
}

static void clear_entries(void)
{
    for (int i = 0; i < nentries; i++)
        json_decref(entries[i].json);
    nentries = 0;
    entries_lost = 0;
}

/* Decode msg with decoder d, keeping what was reported in entries and fw. */
static int decode_with(struct forward_decoder *d, const msgpack_object *msg)
{
    clear_entries();
    fw.chunk = msg; /* anything but NULL: forward_decode must set it */
    fw.r.reason = DROP_REASON_COUNT;
    snprintf(fw.r.detail, sizeof fw.r.detail, "(unset)");
    fw.rc = forward_decode(d, msg, &fw.chunk, on_entry, NULL, &fw.r);
    CHECK_EQ_INT(entries_lost, 0);
    return fw.rc;
}

static int decode(const msgpack_object *msg)
{
    return decode_with(&fd, msg);
}

/* CHECK that the message was decoded into `count` entries. */
static void check_message_ok(int count)
{
    if (!CHECK_EQ_INT(fw.rc, 0))
        fprintf(stderr, "    refused as %s: %s\n", reason_name(fw.r.reason), fw.r.detail);
    CHECK_EQ_INT(nentries, count);
}

/* CHECK that the message was refused for `want`, after `count` entries. */
static void check_message_refused(enum drop_reason want, int count)
{
    CHECK_EQ_INT(fw.rc, -1);
    CHECK_STR_EQ(reason_name(fw.r.reason), reason_name(want));
    CHECK(fw.r.detail[0] != '\0' && strcmp(fw.r.detail, "(unset)") != 0);
    CHECK_EQ_INT(nentries, count);
}

/* CHECK that the message asked for acknowledgement `want` (NULL: none). */
static void check_chunk(const char *want)
{
    if (want == NULL) {
        CHECK(fw.chunk == NULL);
        return;
    }
    if (CHECK(fw.chunk != NULL) && CHECK(fw.chunk->type == MSGPACK_OBJECT_STR))
        CHECK_MEM_EQ(fw.chunk->via.str.ptr, fw.chunk->via.str.size, want, strlen(want));
}

/* Decode msg with the "app." decoder and CHECK that it gave `count` entries
 * and asked for acknowledgement `chunk` (NULL: none). */
static void decode_ok(const msgpack_object *msg, int count, const char *chunk)
{
    decode(msg);
    check_message_ok(count);
    check_chunk(chunk);
}

/* CHECK that entry i became event `name` at time `ms`; returns its JSON. */
static json_t *check_event(int i, const char *name, int64_t ms)
{
    char text[TIMESTAMP_TEXT_LEN + 1] = "";
    if (!CHECK_LT(i, nentries))
        return NULL;
    if (!CHECK(entries[i].ok)) {
        fprintf(stderr, "    entry %d refused as %s: %s\n", i,
                reason_name(entries[i].reason), entries[i].detail);
        return NULL;
    }
    json_t *v = entries[i].json;
    if (!CHECK(json_is_object(v)))
        return NULL;
    CHECK_EQ_UINT(json_object_size(v), 5);
    CHECK_STR_EQ(json_string_value(js_at(v, "event")), name);
    CHECK_EQ_INT(timestamp_format(ms, text), 0);
    CHECK_STR_EQ(json_string_value(js_at(v, "timestamp")), text);
    CHECK(json_is_object(js_at(v, "properties")));
    return v;
}

/* CHECK that entry i was refused for `want`, with a description. */
static void check_refused(int i, enum drop_reason want)
{
    if (!CHECK_LT(i, nentries))
        return;
    CHECK(!entries[i].ok);
    CHECK_STR_EQ(reason_name(entries[i].reason), reason_name(want));
    CHECK(entries[i].detail[0] != '\0');
}

/* The entry's properties hold exactly `count` keys. */
static json_t *check_properties(json_t *v, size_t count)
{
    json_t *p = js_at(v, "properties");
    CHECK_EQ_UINT(json_object_size(p), count);
    return p;
}

/* ---- building packed and gzipped entries ------------------------------- */

static unsigned char gz[1 << 16];
static size_t gz_len;

/* Append one gzip member holding data[0..len) to gz. */
static void gzip_member(const void *data, size_t len)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
    size_t n = c ? libdeflate_gzip_compress(c, data, len, gz + gz_len, sizeof gz - gz_len) : 0;
    libdeflate_free_compressor(c);
    if (n == 0) {
        fprintf(stderr, "test: cannot gzip %zu bytes\n", len);
        exit(2);
    }
    gz_len += n;
}

/* gz = the packed entries in pe as one gzip member. */
static void gzip_entries(void)
{
    gz_len = 0;
    gzip_member(pe.sbuf.data, pe.sbuf.size);
}

/* Append to pe one entry [T_SECS + i, {"i": i}]. */
static void pack_entry(int i)
{
    mp_pack(&pe, "[I, {s:i}]", T_SECS + i, "i", i);
}

/* Append to pe an entry [T_SECS, {"k": "kkk..."}] of exactly `size` bytes
 * (43 to 266). */
static void pack_entry_of_size(size_t size)
{
    static char text[256];
    memset(text, 'k', sizeof text);
    mp_pack(&pe, "[I, {s:S}]", T_SECS, "k", text, size - 11);
}

/* CHECK that the entries are events i = first .. first+count-1 from
 * pack_entry, in order. */
static void check_entries_from(int first, int count)
{
    for (int i = 0; i < count; i++) {
        check_context("entry %d", i);
        json_t *v = check_event(i, "fluent", (T_SECS + first + i) * 1000);
        if (v != NULL)
            CHECK_EQ_INT(json_integer_value(js_at(v, "properties/i")), first + i);
    }
    check_context(NULL);
}

/* ---- the modes --------------------------------------------------------- */

/* A good entry, four that are not [time, record] (not an array, too short,
 * too long, a map), and another good one. */
#define BAD_ENTRIES "[I, {s:i}], i, [I], [I, {}, i], {}, [I, {s:i}]"
#define BAD_ENTRIES_ARGS T_SECS, "i", 0, 7, T_SECS, T_SECS, 9, T_SECS + 1, "i", 1

/* Each bad entry was refused alone; the good ones still count. */
static void check_bad_entries_alone(void)
{
    check_message_ok(6);
    check_event(0, "fluent", T_MS);
    for (int i = 1; i <= 4; i++) {
        check_context("entry %d", i);
        check_refused(i, DROP_BAD_FORWARD);
    }
    check_context(NULL);
    check_event(5, "fluent", T_MS + 1000);
}

static void test_message_mode(void)
{
    decode_ok(mp_build(&m, "[s, I, {s:s, s:i}]", "app.page_view", T_SECS, "path", "/", "n", 2), 1,
              NULL);
    json_t *v = check_event(0, "page_view", T_MS);
    if (v != NULL) {
        json_t *p = check_properties(v, 2);
        CHECK_STR_EQ(json_string_value(js_at(p, "path")), "/");
        CHECK_EQ_INT(json_integer_value(js_at(p, "n")), 2);
        CHECK_STR_EQ(json_string_value(js_at(v, "distinct_id")), "agent-host");
        CHECK_STR_EQ(uuid_v7_problem(json_string_value(js_at(v, "uuid")), NOW_MS), NULL);
    }

    decode_ok(mp_build(&m, "[s, I, {}, {s:s}]", "app.signup", T_SECS, "chunk", "c-1"), 1, "c-1");
    if ((v = check_event(0, "signup", T_MS)) != NULL)
        check_properties(v, 0);
}

static void test_forward_mode(void)
{
    decode_ok(mp_build(&m, "[s, [[I, {s:i}], [I, {s:i}], [I, {s:i}]], {s:s}]", "fluent", T_SECS,
                       "i", 0, T_SECS + 1, "i", 1, T_SECS + 2, "i", 2, "chunk", "abc"),
              3, "abc");
    check_entries_from(0, 3);

    decode_ok(mp_build(&m, "[s, []]", "fluent"), 0, NULL);

    /* entries that are not [time, record] are refused alone */
    decode(mp_build(&m, "[s, [" BAD_ENTRIES "]]", "fluent", BAD_ENTRIES_ARGS));
    check_bad_entries_alone();
}

/* PackedForward: the entries as bin (what the fluent-loggers send) or str
 * (msgpack's old raw type), with and without "compressed": "text". */
static void test_packed_forward(void)
{
    mp_reset(&pe);
    for (int i = 0; i < 4; i++)
        pack_entry(i);
    decode_ok(mp_build(&m, "[s, x, {s:s}]", "fluent", pe.sbuf.data, pe.sbuf.size, "chunk", "p1"), 4,
              "p1");
    check_entries_from(0, 4);

    decode_ok(mp_build(&m, "[s, S]", "fluent", pe.sbuf.data, pe.sbuf.size), 4, NULL);
    check_entries_from(0, 4);

    decode(mp_build(&m, "[s, x, {s:s, s:i}]", "fluent", pe.sbuf.data, pe.sbuf.size, "compressed",
                    "text", "size", 4));
    check_message_ok(4);
    check_entries_from(0, 4);

    decode(mp_build(&m, "[s, x]", "fluent", "", (size_t)0));
    check_message_ok(0);

    /* the same when packed */
    mp_reset(&pe);
    mp_pack(&pe, BAD_ENTRIES, BAD_ENTRIES_ARGS);
    decode(mp_build(&m, "[s, x]", "fluent", pe.sbuf.data, pe.sbuf.size));
    check_bad_entries_alone();
}

/* Regression: Fluent Bit 2.1 and later write each entry as [[time,
 * metadata], record]; all of them were refused as bad_timestamp. The
 * metadata map is not part of the event. Every mode, gzip and acks too. */
static void test_entries_with_metadata(void)
{
    unsigned char et[8]; /* EventTime T_SECS + 0.25 s */
    mp_put_be(et, (uint64_t)T_SECS, 4);
    mp_put_be(et + 4, 250000000, 4);
    const char *fwd = "[s, [[[e, {}], {s:i}], [[I, {s:{s:s}}], {s:i}]], {s:s}]";
    decode_ok(mp_build(&m, fwd, "fluent", 0, et, sizeof et, "i", 0, T_SECS + 1, "otlp", "trace",
                       "x", "i", 1, "chunk", "fb1"),
              2, "fb1");
    json_t *v = check_event(0, "fluent", T_MS + 250);
    if (v != NULL)
        CHECK_EQ_INT(json_integer_value(js_at(check_properties(v, 1), "i")), 0);
    if ((v = check_event(1, "fluent", T_MS + 1000)) != NULL) {
        json_t *p = check_properties(v, 1); /* the metadata is not a property */
        CHECK(js_at(p, "otlp") == NULL);
    }

    /* PackedForward and CompressedPackedForward, as out_forward sends them */
    mp_reset(&pe);
    for (int i = 0; i < 3; i++)
        mp_pack(&pe, "[[I, {}], {s:i}]", T_SECS + i, "i", i);
    decode_ok(mp_build(&m, "[s, x, {s:i, s:s}]", "fluent", pe.sbuf.data, pe.sbuf.size, "size", 3,
                       "chunk", "fb2"),
              3, "fb2");
    check_entries_from(0, 3);
    gzip_entries();
    decode_ok(mp_build(&m, "[s, x, {s:s, s:s}]", "fluent", gz, gz_len, "compressed", "gzip",
                       "chunk", "fb3"),
              3, "fb3");
    check_entries_from(0, 3);

    /* Message mode: [tag, [time, metadata], record, option?] */
    decode_ok(mp_build(&m, "[s, [I, {}], {s:i}, {s:s}]", "fluent", T_SECS, "i", 0, "chunk",
                       "fb4"),
              1, "fb4");
    check_entries_from(0, 1);
    decode_ok(mp_build(&m, "[s, [I, n], {s:i}]", "fluent", T_SECS, "i", 0), 1, NULL);
    check_entries_from(0, 1);

    /* a time that is not a time is still refused, alone */
    decode(mp_build(&m, "[s, [[[s, {}], {s:i}], [[I, {}], {s:i}]]]", "fluent", "soon", "i", 0,
                    T_SECS + 1, "i", 1));
    check_message_ok(2);
    check_refused(0, DROP_BAD_TIMESTAMP);
    check_event(1, "fluent", T_MS + 1000);
    decode(mp_build(&m, "[s, [[[I, {}, i], {s:i}]]]", "fluent", T_SECS, 1, "i", 0));
    check_message_ok(1);
    check_refused(0, DROP_BAD_TIMESTAMP);

    /* group markers (start as an EventTime of -1 s, end as the integer -2)
     * frame the records: skipped and counted, not events, not refusals */
    static const unsigned char group_start[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    uint64_t markers = metrics_get(METRIC_FORWARD_GROUP_MARKERS);
    decode_ok(mp_build(&m, "[s, [[[e, {s:s}], {s:s}], [[I, {}], {s:i}], [[i, {}], {}]], {s:s}]",
                       "fluent", 0, group_start, sizeof group_start, "resource", "r", "scope",
                       "s", T_SECS, "i", 0, -2, "chunk", "fb5"),
              1, "fb5");
    check_entries_from(0, 1);
    CHECK_EQ_UINT(metrics_get(METRIC_FORWARD_GROUP_MARKERS), markers + 2);
    /* a negative time in the old [time, record] form is still no time */
    decode(mp_build(&m, "[s, [[i, {s:i}]]]", "fluent", -1, "i", 0));
    check_message_ok(1);
    check_refused(0, DROP_BAD_TIMESTAMP);
}

static void test_compressed_packed_forward(void)
{
    mp_reset(&pe);
    for (int i = 0; i < 5; i++)
        pack_entry(i);
    gzip_entries();
    decode_ok(mp_build(&m, "[s, x, {s:s, s:s}]", "fluent", gz, gz_len, "compressed", "gzip",
                       "chunk", "z1"),
              5, "z1");
    check_entries_from(0, 5);

    decode(mp_build(&m, "[s, S, {s:s}]", "fluent", gz, gz_len, "compressed", "gzip"));
    check_message_ok(5);
    check_entries_from(0, 5);
}

/* Several gzip members, as fluentd writes when it appends to a compressed
 * buffer chunk: cut anywhere, even inside an entry, and one of them empty. */
static void test_gzip_members(void)
{
    mp_reset(&pe);
    for (int i = 0; i < 6; i++)
        pack_entry(i);
    static const size_t cuts[][3] = {{0, 20, 21}, {5, 5, 40}, {1, 30, 59}};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        gz_len = 0;
        size_t from = 0;
        for (size_t k = 0; k < 3; k++) {
            gzip_member(pe.sbuf.data + from, cuts[c][k] - from);
            from = cuts[c][k];
        }
        gzip_member(pe.sbuf.data + from, pe.sbuf.size - from);
        check_context("members cut at %zu, %zu, %zu", cuts[c][0], cuts[c][1], cuts[c][2]);
        decode(mp_build(&m, "[s, x, {s:s}]", "fluent", gz, gz_len, "compressed", "gzip"));
        check_message_ok(6);
        check_entries_from(0, 6);
    }
    check_context(NULL);
}

/* Decode two entries of these sizes, gzipped as one member each, with d. */
static void decode_two_members(struct forward_decoder *d, size_t first, size_t second)
{
    mp_reset(&pe);
    pack_entry_of_size(first);
    pack_entry_of_size(second);
    gz_len = 0;
    gzip_member(pe.sbuf.data, first);
    gzip_member(pe.sbuf.data + first, second);
    decode_with(d, mp_build(&m, "[s, x, {s:s}]", "t", gz, gz_len, "compressed", "gzip"));
}

/* max_unpacked bounds the gunzipped entries: all members together. */
static void test_gzip_too_large(void)
{
    struct forward_decoder small;
    if (!CHECK_EQ_INT(forward_init(&small, "", NULL, 256), 0))
        return;
    mp_reset(&pe);
    pack_entry_of_size(256);
    CHECK_EQ_UINT(pe.sbuf.size, 256);
    gzip_entries();
    decode_with(&small, mp_build(&m, "[s, x, {s:s}]", "t", gz, gz_len, "compressed", "gzip"));
    check_message_ok(1);

    mp_reset(&pe);
    pack_entry_of_size(257);
    gzip_entries();
    decode_with(&small, mp_build(&m, "[s, x, {s:s, s:s}]", "t", gz, gz_len, "compressed", "gzip",
                                 "chunk", "big"));
    check_message_refused(DROP_TOO_LARGE, 0);
    check_chunk("big");

    /* two members of 200 and 100 bytes: each fits, together they do not */
    decode_two_members(&small, 200, 100);
    check_message_refused(DROP_TOO_LARGE, 0);
    decode_two_members(&small, 156, 100); /* exactly the bound */
    check_message_ok(2);

    /* a megabyte of zeros gzips to about a kilobyte */
    static char zeros[1 << 20];
    gz_len = 0;
    gzip_member(zeros, sizeof zeros);
    CHECK_LT(gz_len, 4096);
    decode_with(&small, mp_build(&m, "[s, x, {s:s}]", "t", gz, gz_len, "compressed", "gzip"));
    check_message_refused(DROP_TOO_LARGE, 0);
    forward_destroy(&small);
}

static void test_gzip_corrupt(void)
{
    mp_reset(&pe);
    for (int i = 0; i < 3; i++)
        pack_entry(i);
    static const char *const what[] = {"flipped byte in the deflate data", "flipped CRC",
                                       "wrong length", "cut short", "trailing garbage",
                                       "not gzip at all"};
    for (int k = 0; k < 6; k++) {
        gzip_entries();
        switch (k) {
        case 0: gz[gz_len / 2] ^= 0x55; break;
        case 1: gz[gz_len - 8] ^= 1; break;
        case 2: gz[gz_len - 4] ^= 1; break;
        case 3: gz_len -= 3; break;
        case 4: memcpy(gz + gz_len, "\x1f\x8b\x08", 3), gz_len += 3; break;
        case 5: memcpy(gz, pe.sbuf.data, pe.sbuf.size), gz_len = pe.sbuf.size; break;
        }
        check_context("%s", what[k]);
        decode(mp_build(&m, "[s, x, {s:s, s:s}]", "fluent", gz, gz_len, "compressed", "gzip",
                        "chunk", "cc"));
        check_message_refused(DROP_BAD_FORWARD, 0);
        check_chunk("cc");
    }
    check_context(NULL);
}

/* Decode data[0..len) as packed entries: as they are ("compressed": "text"),
 * or gzipped. */
static void decode_packed(const char *data, size_t len, int gzipped)
{
    if (gzipped) {
        gz_len = 0;
        gzip_member(data, len);
        decode(mp_build(&m, "[s, x, {s:s}]", "fluent", gz, gz_len, "compressed", "gzip"));
    } else {
        decode(mp_build(&m, "[s, x, {s:s}]", "fluent", data, len, "compressed", "text"));
    }
}

/* Packed entries that stop being msgpack: the entries before the fault are
 * reported, then the message is refused. */
static void test_packed_faults(void)
{
    for (int gzipped = 0; gzipped <= 1; gzipped++) {
        const char *how = gzipped ? "gzipped" : "plain";
        mp_reset(&pe);
        for (int i = 0; i < 3; i++)
            pack_entry(i);
        check_context("cut inside the third entry, %s", how);
        decode_packed(pe.sbuf.data, pe.sbuf.size - 1, gzipped);
        check_message_refused(DROP_BAD_FORWARD, 2);
        check_entries_from(0, 2);
        CHECK_CONTAINS(fw.r.detail, "entry 3");

        mp_reset(&pe);
        pack_entry(0);
        mp_raw(&pe, "\x92\xc1", 2);
        pack_entry(2);
        check_context("an invalid byte in the second entry, %s", how);
        decode_packed(pe.sbuf.data, pe.sbuf.size, gzipped);
        check_message_refused(DROP_BAD_FORWARD, 1);
        check_entries_from(0, 1);
        CHECK_CONTAINS(fw.r.detail, "entry 2");

        mp_reset(&pe);
        pack_entry(0);
        pack_entry(1);
        for (int level = 0; level <= WIRE_MAX_DEPTH; level++)
            mp_raw(&pe, "\x91", 1);
        mp_raw(&pe, "\x01", 1);
        check_context("the third entry nested too deep, %s", how);
        decode_packed(pe.sbuf.data, pe.sbuf.size, gzipped);
        check_message_refused(DROP_BAD_FORWARD, 2);
    }
    check_context(NULL);

    /* the next message on the same decoder is not affected */
    mp_reset(&pe);
    pack_entry(0);
    decode_packed(pe.sbuf.data, pe.sbuf.size, 0);
    check_message_ok(1);
    check_entries_from(0, 1);
}

/* ---- time -------------------------------------------------------------- */

/* Start [tag, [[ ... : the caller packs the time, then end_time_entry(). */
static void begin_time_entry(void)
{
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 2);
    mp_pack(&m, "s", "fluent");
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_array(&m.pk, 2);
}

/* Finish the entry with an empty record and decode it. */
static void end_time_entry(void)
{
    mp_pack(&m, "{}");
    decode(mp_unpack(&m));
}

static void check_time(const char *what, int64_t want_ms)
{
    check_context("time: %s", what);
    end_time_entry();
    check_message_ok(1);
    check_event(0, "fluent", want_ms);
    check_context(NULL);
}

static void check_bad_time(const char *what)
{
    check_context("time: %s", what);
    end_time_entry();
    check_message_ok(1);
    check_refused(0, DROP_BAD_TIMESTAMP);
    check_context(NULL);
}

static void pack_event_time(int type, uint64_t secs, uint64_t nanos, size_t size)
{
    unsigned char data[12] = {0};
    mp_put_be(data, secs, 4);
    mp_put_be(data + 4, nanos, 4);
    mp_pack(&m, "e", type, data, size);
}

static void test_time_forms(void)
{
    const int64_t max_secs = TIMESTAMP_MAX_MS / 1000;
    begin_time_entry();
    mp_pack(&m, "I", T_SECS);
    check_time("integer seconds", T_MS);
    begin_time_entry();
    mp_pack(&m, "i", 0);
    check_time("zero", 0);
    begin_time_entry();
    mp_pack(&m, "I", max_secs);
    check_time("integer, the last second of 9999", max_secs * 1000);
    begin_time_entry();
    mp_pack(&m, "d", (double)max_secs + 0.5);
    check_time("float, within the last second of 9999", max_secs * 1000 + 500);
    begin_time_entry();
    mp_pack(&m, "d", (double)T_SECS + 0.25);
    check_time("float64 seconds", T_MS + 250);
    begin_time_entry();
    mp_pack(&m, "d", (double)T_SECS + 0.123);
    check_time("float64 seconds, .123", T_MS + 123);
    begin_time_entry();
    mp_pack(&m, "d", 1.001); /* 1000.9999999999999 ms as a double */
    check_time("float64 1.001 seconds", 1001);
    begin_time_entry();
    mp_pack(&m, "f", 1.5);
    check_time("float32 seconds", 1500);
    begin_time_entry();
    pack_event_time(0, (uint64_t)T_SECS, 123456789, 8);
    check_time("EventTime", T_MS + 123);
    begin_time_entry();
    pack_event_time(0, (uint64_t)T_SECS, 999999999, 8);
    check_time("EventTime, 999999999 ns", T_MS + 999);
    begin_time_entry();
    pack_event_time(0, 0xffffffffu, 0, 8); /* 2106: EventTime's seconds are unsigned */
    check_time("EventTime, 2^32-1 seconds", INT64_C(0xffffffff) * 1000);
}

static void test_bad_times(void)
{
    const int64_t max_secs = TIMESTAMP_MAX_MS / 1000;
    begin_time_entry();
    mp_pack(&m, "i", -1);
    check_bad_time("negative integer");
    begin_time_entry();
    mp_pack(&m, "I", max_secs + 1);
    check_bad_time("integer, year 10000");
    begin_time_entry();
    mp_pack(&m, "U", UINT64_MAX);
    check_bad_time("integer 2^64-1");
    begin_time_entry();
    mp_pack(&m, "d", -0.5);
    check_bad_time("negative float");
    begin_time_entry();
    mp_pack(&m, "d", (double)NAN);
    check_bad_time("NaN");
    begin_time_entry();
    mp_pack(&m, "f", (double)NAN);
    check_bad_time("float32 NaN");
    begin_time_entry();
    mp_pack(&m, "d", (double)INFINITY);
    check_bad_time("infinity");
    begin_time_entry();
    mp_pack(&m, "d", (double)(max_secs + 1));
    check_bad_time("float, year 10000");
    begin_time_entry();
    mp_pack(&m, "d", 1e300);
    check_bad_time("float 1e300");
    begin_time_entry();
    pack_event_time(0, (uint64_t)T_SECS, 1000000000, 8);
    check_bad_time("EventTime, 10^9 ns");
    begin_time_entry();
    pack_event_time(0, (uint64_t)T_SECS, 0, 4);
    check_bad_time("ext 0 of 4 bytes");
    begin_time_entry();
    pack_event_time(0, (uint64_t)T_SECS, 0, 12);
    check_bad_time("ext 0 of 12 bytes");
    begin_time_entry();
    pack_event_time(-1, (uint64_t)T_SECS, 0, 4);
    check_bad_time("msgpack timestamp ext -1, 4 bytes");
    begin_time_entry();
    mp_pack(&m, "T", T_SECS, 5000000u);
    check_bad_time("msgpack timestamp ext -1, 8 bytes");
    begin_time_entry();
    pack_event_time(1, (uint64_t)T_SECS, 0, 8);
    check_bad_time("ext type 1");
    begin_time_entry();
    mp_pack(&m, "s", "2023-11-14T22:13:20Z");
    check_bad_time("RFC 3339 string");
    begin_time_entry();
    mp_pack(&m, "n");
    check_bad_time("nil");
    begin_time_entry();
    mp_pack(&m, "b", 1);
    check_bad_time("boolean");
    begin_time_entry();
    mp_pack(&m, "[I]", T_SECS);
    check_bad_time("array");

    /* Message mode: the time decides nothing about the mode but is checked */
    decode(mp_build(&m, "[s, i, {}]", "fluent", -5));
    check_message_ok(1);
    check_refused(0, DROP_BAD_TIMESTAMP);
    decode(mp_build(&m, "[s, n, {}]", "fluent"));
    check_message_ok(1);
    check_refused(0, DROP_BAD_TIMESTAMP);
}

/* ---- names, records ---------------------------------------------------- */

static void check_name_from_tag(struct forward_decoder *d, const char *tag, const char *want)
{
    check_context("tag '%s'", tag);
    decode_with(d, mp_build(&m, "[s, I, {s:i}]", tag, T_SECS, "k", 1));
    check_message_ok(1);
    if (want == NULL) {
        check_refused(0, DROP_BAD_EVENT);
    } else {
        json_t *v = check_event(0, want, T_MS);
        if (v != NULL)
            CHECK_EQ_INT(json_integer_value(js_at(check_properties(v, 1), "k")), 1);
    }
    check_context(NULL);
}

static void test_tag_prefix(void)
{
    check_name_from_tag(&fd, "app.page_view", "page_view");
    check_name_from_tag(&fd, "other.page_view", "other.page_view");
    check_name_from_tag(&fd, "app", "app");
    check_name_from_tag(&fd, "xapp.y", "xapp.y");
    check_name_from_tag(&fd, "app.app.x", "app.x"); /* stripped once */
    check_name_from_tag(&fd, "App.x", "App.x");
    check_name_from_tag(&fd, "app.", NULL); /* nothing left */

    char tag[4 + WIRE_NAME_MAX + 2];
    memcpy(tag, "app.", 4);
    memset(tag + 4, 'n', WIRE_NAME_MAX + 1);
    tag[4 + WIRE_NAME_MAX] = '\0';
    check_name_from_tag(&fd, tag, tag + 4); /* 200 bytes once stripped */
    tag[4 + WIRE_NAME_MAX] = 'n';
    tag[4 + WIRE_NAME_MAX + 1] = '\0';
    check_name_from_tag(&fd, tag, NULL); /* 201 */

    struct forward_decoder none;
    if (CHECK_EQ_INT(forward_init(&none, "", NULL, MAX_UNPACKED), 0)) {
        check_name_from_tag(&none, "app.page_view", "app.page_view");
        check_name_from_tag(&none, "a", "a");
        forward_destroy(&none);
    }
}

static void test_record_fields(void)
{
    decode(mp_build(&m, "[s, I, {s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:{s:i}}]", "app.tag", T_SECS,
                    "plan", "pro", "event", "app.signup", "uuid", UUID_UPPER, "distinct_id",
                    "user-1", "n", 3, "timestamp", 5, "chunk", "x", "properties", "a", 1));
    check_message_ok(1);
    json_t *v = check_event(0, "app.signup", T_MS); /* the record's name, not stripped */
    if (v != NULL) {
        CHECK_STR_EQ(json_string_value(js_at(v, "uuid")), UUID_LOWER);
        CHECK_STR_EQ(json_string_value(js_at(v, "distinct_id")), "user-1");
        /* everything but event, uuid and distinct_id, in the record's order */
        json_t *p = check_properties(v, 5);
        CHECK_STR_EQ(json_string_value(js_at(p, "plan")), "pro");
        CHECK_EQ_INT(json_integer_value(js_at(p, "n")), 3);
        CHECK_EQ_INT(json_integer_value(js_at(p, "timestamp")), 5);
        CHECK_STR_EQ(json_string_value(js_at(p, "chunk")), "x");
        CHECK_EQ_INT(json_integer_value(js_at(p, "properties/a")), 1);
        CHECK(js_at(p, "event") == NULL && js_at(p, "uuid") == NULL &&
              js_at(p, "distinct_id") == NULL);
        const char *first_key = json_object_iter_key(json_object_iter(p));
        CHECK_STR_EQ(first_key, "plan");
    }

    /* only event fields: empty properties */
    decode(mp_build(&m, "[s, I, {s:s, s:s, s:s}]", "app.tag", T_SECS, "distinct_id", "d",
                    "uuid", UUID_LOWER, "event", "e"));
    check_message_ok(1);
    if ((v = check_event(0, "e", T_MS)) != NULL) {
        check_properties(v, 0);
        CHECK_STR_EQ(json_string_value(js_at(v, "uuid")), UUID_LOWER);
    }

    /* only the record's own keys are event fields, not those of maps inside it */
    decode(mp_build(&m, "[s, I, {s:{s:s, s:s}}]", "app.tag", T_SECS, "meta", "event", "inner",
                    "uuid", "u"));
    check_message_ok(1);
    if ((v = check_event(0, "tag", T_MS)) != NULL) {
        json_t *p = check_properties(v, 1);
        CHECK_STR_EQ(json_string_value(js_at(p, "meta/event")), "inner");
        CHECK_STR_EQ(json_string_value(js_at(p, "meta/uuid")), "u");
    }

    /* the encoded text has no leftover comma where a field was left out */
    decode(mp_build(&m, "[s, I, {s:s, s:i, s:s}]", "app.tag", T_SECS, "event", "e", "k", 1,
                    "uuid", UUID_LOWER));
    check_message_ok(1);
    if ((v = check_event(0, "e", T_MS)) != NULL)
        CHECK_EQ_INT(json_integer_value(js_at(check_properties(v, 1), "k")), 1);
}

/* A record's event fields are not properties, so [properties] of the same
 * name are still added; the record's other keys win and nested maps merge. */
static void test_record_with_added_properties(void)
{
    char err[256];
    struct props_node *root = props_new();
    if (!CHECK(root != NULL))
        return;
    CHECK_EQ_INT(props_add(root, "$lib", "telemetry-agent", err, sizeof err), 0);
    CHECK_EQ_INT(props_add(root, "app.version", "1.2", err, sizeof err), 0);
    CHECK_EQ_INT(props_add(root, "distinct_id", "from-config", err, sizeof err), 0);
    defaults.properties = root;
    decode(mp_build(&m, "[s, I, {s:s, s:s, s:s, s:{s:s}}]", "app.tag", T_SECS, "event", "e",
                    "distinct_id", "user-1", "$lib", "mine", "app", "name", "x"));
    check_message_ok(1);
    json_t *v = check_event(0, "e", T_MS);
    if (v != NULL) {
        CHECK_STR_EQ(json_string_value(js_at(v, "distinct_id")), "user-1");
        json_t *p = check_properties(v, 3);
        CHECK_STR_EQ(json_string_value(js_at(p, "$lib")), "mine");
        CHECK_STR_EQ(json_string_value(js_at(p, "app/name")), "x");
        CHECK(json_number_value(js_at(p, "app/version")) == 1.2);
        CHECK_STR_EQ(json_string_value(js_at(p, "distinct_id")), "from-config");
    }
    defaults.properties = NULL;
    clear_entries();
    props_free(root);
}

static void check_bad_record(const char *what, enum drop_reason want)
{
    check_context("%s", what);
    decode(mp_unpack(&m));
    check_message_ok(1);
    check_refused(0, want);
    check_context(NULL);
}

static void test_bad_records(void)
{
    char long_text[WIRE_NAME_MAX + 2];
    memset(long_text, 'x', sizeof long_text);
    mp_build(&m, "[s, I, [i]]", "app.t", T_SECS, 1);
    check_bad_record("record is an array", DROP_BAD_PROPERTIES);
    mp_build(&m, "[s, I, s]", "app.t", T_SECS, "text");
    check_bad_record("record is a string", DROP_BAD_PROPERTIES);
    mp_build(&m, "[s, I, n]", "app.t", T_SECS);
    check_bad_record("record is nil", DROP_BAD_PROPERTIES);
    mp_build(&m, "[s, I, i]", "app.t", T_SECS, 4);
    check_bad_record("record is an integer", DROP_BAD_PROPERTIES);
    mp_build(&m, "[s, I, {s:i}]", "app.t", T_SECS, "event", 1);
    check_bad_record("event is an integer", DROP_BAD_EVENT);
    mp_build(&m, "[s, I, {s:n}]", "app.t", T_SECS, "event");
    check_bad_record("event is nil", DROP_BAD_EVENT);
    mp_build(&m, "[s, I, {s:s}]", "app.t", T_SECS, "event", "");
    check_bad_record("event is empty", DROP_BAD_EVENT);
    mp_build(&m, "[s, I, {s:S}]", "app.t", T_SECS, "event", long_text, (size_t)WIRE_NAME_MAX + 1);
    check_bad_record("event is 201 bytes", DROP_BAD_EVENT);
    mp_build(&m, "[s, I, {s:s}]", "app.t", T_SECS, "uuid", "not-a-uuid");
    check_bad_record("uuid is not a UUID", DROP_BAD_UUID);
    mp_build(&m, "[s, I, {s:i}]", "app.t", T_SECS, "uuid", 1);
    check_bad_record("uuid is an integer", DROP_BAD_UUID);
    mp_build(&m, "[s, I, {s:s}]", "app.t", T_SECS, "distinct_id", "");
    check_bad_record("distinct_id is empty", DROP_BAD_DISTINCT_ID);
    mp_build(&m, "[s, I, {s:S}]", "app.t", T_SECS, "distinct_id", long_text,
             (size_t)WIRE_DISTINCT_ID_MAX + 1);
    check_bad_record("distinct_id is 201 bytes", DROP_BAD_DISTINCT_ID);
    mp_build(&m, "[s, I, {s:i}]", "app.t", T_SECS, "distinct_id", 9);
    check_bad_record("distinct_id is an integer", DROP_BAD_DISTINCT_ID);

    /* good and bad records in one Forward message */
    decode(mp_build(&m, "[s, [[I, {}], [I, [] ], [I, {s:s}], [I, {s:s}]]]", "app.t", T_SECS,
                    T_SECS, T_SECS, "uuid", "x", T_SECS, "event", "ok"));
    check_message_ok(4);
    check_event(0, "t", T_MS);
    check_refused(1, DROP_BAD_PROPERTIES);
    check_refused(2, DROP_BAD_UUID);
    check_event(3, "ok", T_MS);
}

static void test_registry(void)
{
    char err[256] = "";
    char *path = tmp_file("page_view\nsignup\n");
    struct registry *registry = path ? registry_load(path, err, sizeof err) : NULL;
    struct forward_decoder d;
    if (!CHECK(registry != NULL) ||
        !CHECK_EQ_INT(forward_init(&d, "app.", registry, MAX_UNPACKED), 0)) {
        registry_free(registry);
        tmp_file_remove(path);
        return;
    }
    decode_with(&d, mp_build(&m, "[s, [[I, {}], [I, {s:s}], [I, {s:s}]]]", "app.page_view",
                             T_SECS, T_SECS, "event", "signup", T_SECS, "event", "purchase"));
    check_message_ok(3);
    check_event(0, "page_view", T_MS);
    check_event(1, "signup", T_MS);
    check_refused(2, DROP_UNKNOWN_EVENT);
    decode_with(&d, mp_build(&m, "[s, I, {}]", "app.purchase", T_SECS));
    check_message_ok(1);
    check_refused(0, DROP_UNKNOWN_EVENT);
    decode_with(&d, mp_build(&m, "[s, I, {}]", "page_view", T_SECS)); /* no prefix: not stripped */
    check_message_ok(1);
    check_event(0, "page_view", T_MS);
    forward_destroy(&d);
    registry_free(registry);
    tmp_file_remove(path);
}

/* ---- the option, and malformed messages -------------------------------- */

static void test_option(void)
{
    char chunk[WIRE_CHUNK_MAX + 2];
    memset(chunk, 'c', sizeof chunk);
    chunk[WIRE_CHUNK_MAX] = '\0';

    decode_ok(mp_build(&m, "[s, I, {}, n]", "app.e", T_SECS), 1, NULL);
    decode_ok(mp_build(&m, "[s, [], n]", "app.e"), 0, NULL);
    decode_ok(mp_build(&m, "[s, [], {}]", "app.e"), 0, NULL);
    decode_ok(mp_build(&m, "[s, [], {s:i, s:s}]", "app.e", "size", 0, "other", "ignored"), 0, NULL);
    decode_ok(mp_build(&m, "[s, [[I, {}]], {s:s}]", "app.e", T_SECS, "chunk", "c"), 1, "c");
    decode_ok(mp_build(&m, "[s, [[I, {}]], {s:s}]", "app.e", T_SECS, "chunk", chunk), 1,
              chunk); /* 64 bytes */

    static const struct {
        const char *what, *fmt;
    } not_maps[] = {{"an integer", "[s, I, {}, i]"},
                    {"an array", "[s, I, {}, [i]]"},
                    {"a string", "[s, I, {}, s]"}};
    for (size_t i = 0; i < sizeof not_maps / sizeof not_maps[0]; i++) {
        check_context("option is %s", not_maps[i].what);
        if (i == 2)
            decode(mp_build(&m, not_maps[i].fmt, "app.e", T_SECS, "chunk"));
        else
            decode(mp_build(&m, not_maps[i].fmt, "app.e", T_SECS, 1));
        check_message_refused(DROP_BAD_FORWARD, 0);
        check_chunk(NULL);
    }
    check_context(NULL);
    decode(mp_build(&m, "[s, [[I, {}]], i]", "app.e", T_SECS, 3));
    check_message_refused(DROP_BAD_FORWARD, 0);

    /* a chunk that cannot be echoed: refused, and nothing to acknowledge */
    check_context("chunk of 65 bytes");
    decode(mp_build(&m, "[s, I, {}, {s:S}]", "app.e", T_SECS, "chunk", chunk,
                    (size_t)WIRE_CHUNK_MAX + 1));
    check_message_refused(DROP_BAD_CHUNK, 0);
    check_chunk(NULL);
    check_context("empty chunk");
    decode(mp_build(&m, "[s, [[I, {}]], {s:s}]", "app.e", T_SECS, "chunk", ""));
    check_message_refused(DROP_BAD_CHUNK, 0);
    check_chunk(NULL);
    check_context("chunk is an integer");
    decode(mp_build(&m, "[s, [[I, {}]], {s:i}]", "app.e", T_SECS, "chunk", 7));
    check_message_refused(DROP_BAD_CHUNK, 0);
    check_chunk(NULL);
    check_context("chunk is binary");
    decode(mp_build(&m, "[s, [[I, {}]], {s:x}]", "app.e", T_SECS, "chunk", "c", (size_t)1));
    check_message_refused(DROP_BAD_CHUNK, 0);
    check_chunk(NULL);

    /* compressed: gzip and text are known; anything else refuses the
     * message, which can still be acknowledged */
    mp_reset(&pe);
    pack_entry(0);
    decode_ok(mp_build(&m, "[s, x, {s:s, s:s}]", "fluent", pe.sbuf.data, pe.sbuf.size, "compressed",
                       "text", "chunk", "t"),
              1, "t");
    static const char *const unknown[] = {"zstd", "GZIP", "", "gzip "};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        check_context("compressed '%s'", unknown[i]);
        decode(mp_build(&m, "[s, x, {s:s, s:s}]", "fluent", pe.sbuf.data, pe.sbuf.size,
                        "compressed", unknown[i], "chunk", "k"));
        check_message_refused(DROP_BAD_FORWARD, 0);
        check_chunk("k");
    }
    check_context("compressed is an integer");
    decode(mp_build(&m, "[s, x, {s:i}]", "fluent", pe.sbuf.data, pe.sbuf.size, "compressed", 1));
    check_message_refused(DROP_BAD_FORWARD, 0);
    check_context(NULL);
}

static void test_malformed(void)
{
    static const struct {
        const char *what, *fmt;
    } cases[] = {
        {"empty array", "[]"},
        {"tag alone", "[s]"},
        {"five elements", "[s, I, {}, {}, n]"},
        {"Message mode without a record", "[s, I]"},
        {"Forward mode with four elements", "[s, [], {}, n]"},
        {"PackedForward with four elements", "[s, x, {}, n]"},
        {"tag is an integer", "[i, I, {}]"},
        {"tag is nil", "[n, I, {}]"},
        {"tag is binary", "[x, I, {}]"},
        {"tag is empty", "[s, I, {}]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_context("%s", cases[i].what);
        const char *tag = i == 9 ? "" : "app.e";
        switch (i) {
        case 0: mp_build(&m, cases[i].fmt); break;
        case 1: mp_build(&m, cases[i].fmt, tag); break;
        case 4: mp_build(&m, cases[i].fmt, tag); break;
        case 5: mp_build(&m, cases[i].fmt, tag, "", (size_t)0); break;
        case 6: mp_build(&m, cases[i].fmt, 1, T_SECS); break;
        case 7: mp_build(&m, cases[i].fmt, T_SECS); break;
        case 8: mp_build(&m, cases[i].fmt, "app.e", (size_t)5, T_SECS); break;
        default: mp_build(&m, cases[i].fmt, tag, T_SECS); break;
        }
        decode(mp_unpack(&m));
        check_message_refused(DROP_BAD_FORWARD, 0);
        check_chunk(NULL);
    }
    check_context(NULL);
}

/* ---- the decoder's own memory ------------------------------------------- */

/* One decoder, many messages: the packed entries' stream keeps one buffer of
 * bounded size (the sanitizer build checks nothing leaks or is reused after
 * being freed). */
static void test_packed_buffer_reused(void)
{
    struct forward_decoder d;
    if (!CHECK_EQ_INT(forward_init(&d, "app.", NULL, MAX_UNPACKED), 0))
        return;
    size_t max_capacity = 0;
    int wrong = 0;
    for (int round = 0; round < 600; round++) {
        mp_reset(&pe);
        for (int i = 0; i < 3; i++)
            pack_entry(round + i);
        switch (round % 3) {
        case 0:
            decode_with(&d, mp_build(&m, "[s, x]", "fluent", pe.sbuf.data, pe.sbuf.size));
            break;
        case 1:
            gzip_entries();
            decode_with(&d, mp_build(&m, "[s, x, {s:s}]", "fluent", gz, gz_len, "compressed",
                                     "gzip"));
            break;
        case 2: /* cut short: refused after two entries, leaving a partial one */
            decode_with(&d, mp_build(&m, "[s, x]", "fluent", pe.sbuf.data, pe.sbuf.size - 2));
            break;
        }
        int want = round % 3 == 2 ? 2 : 3;
        if (fw.rc != (round % 3 == 2 ? -1 : 0) || nentries != want)
            wrong++;
        for (int i = 0; i < nentries; i++)
            wrong += !entries[i].ok ||
                     json_integer_value(js_at(entries[i].json, "properties/i")) != round + i;
        size_t capacity = d.packed.capacity;
        if (capacity > max_capacity)
            max_capacity = capacity;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_LE(max_capacity, 64 * 1024);
    CHECK(d.inflater != NULL);
    clear_entries();
    forward_destroy(&d);
}

static void test_destroy_without_decompressing(void)
{
    struct forward_decoder d;
    if (CHECK_EQ_INT(forward_init(&d, "p.", NULL, MAX_UNPACKED), 0)) {
        CHECK(d.inflater == NULL);
        forward_destroy(&d);
    }
    /* used for plain packed entries only: still no decompressor */
    if (!CHECK_EQ_INT(forward_init(&d, "p.", NULL, MAX_UNPACKED), 0))
        return;
    mp_reset(&pe);
    pack_entry(0);
    decode_with(&d, mp_build(&m, "[s, x]", "fluent", pe.sbuf.data, pe.sbuf.size));
    check_message_ok(1);
    CHECK(d.inflater == NULL);
    clear_entries();
    forward_destroy(&d);
}

int main(void)
{
    mp_init(&m);
    mp_init(&pe);
    if (forward_init(&fd, "app.", NULL, MAX_UNPACKED) < 0)
        return 2;
    RUN(test_message_mode);
    RUN(test_forward_mode);
    RUN(test_packed_forward);
    RUN(test_compressed_packed_forward);
    RUN(test_entries_with_metadata);
    RUN(test_gzip_members);
    RUN(test_gzip_too_large);
    RUN(test_gzip_corrupt);
    RUN(test_packed_faults);
    RUN(test_time_forms);
    RUN(test_bad_times);
    RUN(test_tag_prefix);
    RUN(test_record_fields);
    RUN(test_record_with_added_properties);
    RUN(test_bad_records);
    RUN(test_registry);
    RUN(test_option);
    RUN(test_malformed);
    RUN(test_packed_buffer_reused);
    RUN(test_destroy_without_decompressing);
    clear_entries();
    forward_destroy(&fd);
    mp_free(&pe);
    mp_free(&m);
    return check_finish();
}
