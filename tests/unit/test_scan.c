/*
 * scanner_run: object boundaries for every msgpack type, resumable scanning
 * one byte at a time, several objects in a buffer, invalid bytes, the
 * nesting limit, and headers claiming more than the bytes back.
 */
#include "check.h"
#include "scan.h"
#include "mp.h"

#include <stdlib.h>
#include <string.h>

static struct mp m;
static char filler[70000]; /* payload bytes for the 8/16/32-bit length forms */

/* Scan data[0..len) in one call with a fresh scanner. */
static enum scan_status scan_once(const void *data, size_t len, size_t *object_len)
{
    struct scanner s;
    scanner_reset(&s);
    *object_len = 0;
    return scanner_run(&s, data, len, object_len);
}

/* Feed data[0..len) one more byte per call, as reads would: every prefix
 * must be SCAN_INCOMPLETE and the whole object SCAN_COMPLETE. */
static void check_bytewise(const unsigned char *data, size_t len)
{
    struct scanner s;
    scanner_reset(&s);
    size_t object_len = 0;
    for (size_t k = 0; k < len; k++) {
        enum scan_status st = scanner_run(&s, data, k, &object_len);
        if (st != SCAN_INCOMPLETE) {
            CHECK_EQ_INT(st, SCAN_INCOMPLETE);
            fprintf(stderr, "    after %zu of %zu bytes\n", k, len);
            return;
        }
    }
    if (CHECK_EQ_INT(scanner_run(&s, data, len, &object_len), SCAN_COMPLETE))
        CHECK_EQ_UINT(object_len, len);
}

/* CHECK that the packed bytes in m, starting with `first_byte` (so the
 * packer chose the form under test), are one complete object, however they
 * arrive, and that msgpack-c agrees on where it ends. */
static void check_object(const char *what, int first_byte)
{
    const unsigned char *data = (const unsigned char *)m.sbuf.data;
    size_t len = m.sbuf.size;
    check_context("%s (%zu bytes)", what, len);
    CHECK_EQ_INT(data[0], first_byte);

    size_t object_len;
    if (CHECK_EQ_INT(scan_once(data, len, &object_len), SCAN_COMPLETE))
        CHECK_EQ_UINT(object_len, len);
    check_bytewise(data, len);

    /* whatever follows is the next object's business */
    unsigned char *more = malloc(len + 2);
    memcpy(more, data, len);
    more[len] = 0xc1;
    more[len + 1] = 0x92;
    if (CHECK_EQ_INT(scan_once(more, len + 2, &object_len), SCAN_COMPLETE))
        CHECK_EQ_UINT(object_len, len);
    free(more);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    CHECK_EQ_INT(msgpack_unpack_next(&up, m.sbuf.data, len, &off), MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_UINT(off, len);
    msgpack_unpacked_destroy(&up);
    check_context(NULL);
}

static void test_scalars(void)
{
    static const struct {
        const char *fmt;
        int64_t value;
        int first_byte;
    } ints[] = {
        {"I", 5, 0x05},          {"I", -3, 0xfd},           {"I", 200, 0xcc},
        {"I", 60000, 0xcd},      {"I", 4000000000, 0xce},   {"U", INT64_MAX, 0xcf},
        {"I", -100, 0xd0},       {"I", -1000, 0xd1},        {"I", -100000, 0xd2},
        {"I", INT64_MIN, 0xd3},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        mp_reset(&m);
        mp_pack(&m, ints[i].fmt, ints[i].value);
        check_object("integer", ints[i].first_byte);
    }
    mp_reset(&m), mp_pack(&m, "n"), check_object("nil", 0xc0);
    mp_reset(&m), mp_pack(&m, "b", 1), check_object("true", 0xc3);
    mp_reset(&m), mp_pack(&m, "b", 0), check_object("false", 0xc2);
    mp_reset(&m), mp_pack(&m, "f", 1.5), check_object("float32", 0xca);
    mp_reset(&m), mp_pack(&m, "d", 1.5), check_object("float64", 0xcb);
}

static void test_strings_and_binaries(void)
{
    static const struct {
        size_t len;
        int str_byte, bin_byte;
    } sizes[] = {{0, 0xa0, 0xc4}, {3, 0xa3, 0xc4},     {31, 0xbf, 0xc4},
                 {40, 0xd9, 0xc4}, {300, 0xda, 0xc5}, {70000, 0xdb, 0xc6}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "str of %zu", sizes[i].len);
        mp_reset(&m);
        mp_pack(&m, "S", filler, sizes[i].len);
        check_object(what, sizes[i].str_byte);
        snprintf(what, sizeof what, "bin of %zu", sizes[i].len);
        mp_reset(&m);
        mp_pack(&m, "x", filler, sizes[i].len);
        check_object(what, sizes[i].bin_byte);
    }
}

static void test_exts(void)
{
    static const struct {
        size_t len;
        int first_byte;
    } sizes[] = {{1, 0xd4},  {2, 0xd5},   {4, 0xd6},   {8, 0xd7},     {16, 0xd8},
                 {0, 0xc7},  {3, 0xc7},   {17, 0xc7},  {300, 0xc8},   {70000, 0xc9}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "ext of %zu", sizes[i].len);
        mp_reset(&m);
        mp_pack(&m, "e", 42, filler, sizes[i].len);
        check_object(what, sizes[i].first_byte);
    }
    mp_reset(&m), mp_pack(&m, "T", INT64_C(1700000000), 0u), check_object("timestamp 32", 0xd6);
    mp_reset(&m), mp_pack(&m, "T", INT64_C(1700000000), 5u), check_object("timestamp 64", 0xd7);
    mp_reset(&m), mp_pack(&m, "T", INT64_C(1) << 40, 5u), check_object("timestamp 96", 0xc7);
}

/* An array (or map) of n nils (nil: nil pairs). */
static void pack_container(uint32_t n, int map)
{
    mp_reset(&m);
    if (map)
        msgpack_pack_map(&m.pk, n);
    else
        msgpack_pack_array(&m.pk, n);
    for (uint32_t i = 0; i < (map ? 2 * n : n); i++)
        msgpack_pack_nil(&m.pk);
}

static void test_containers(void)
{
    static const struct {
        uint32_t n;
        int array_byte, map_byte;
    } sizes[] = {{0, 0x90, 0x80}, {1, 0x91, 0x81}, {15, 0x9f, 0x8f},
                 {16, 0xdc, 0xde}, {300, 0xdc, 0xde}, {70000, 0xdd, 0xdf}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[48];
        snprintf(what, sizeof what, "array of %u", sizes[i].n);
        pack_container(sizes[i].n, 0);
        check_object(what, sizes[i].array_byte);
        snprintf(what, sizeof what, "map of %u", sizes[i].n);
        pack_container(sizes[i].n, 1);
        check_object(what, sizes[i].map_byte);
    }
}

static void test_nested(void)
{
    mp_reset(&m);
    mp_pack(&m, "{s:[i, {s:[[], {}, [n]]}], s:s, i:{}}", "a", 1, "b", "c", "x", 7);
    check_object("nested maps and arrays", 0x83);
    mp_reset(&m);
    mp_pack(&m, "[[[[]]], {}, [{s:x}], e]", "k", filler, (size_t)300, 1, filler, (size_t)5);
    check_object("containers ending together", 0x94);
}

/* A big event-like map: every kind of value, some nested, 2000 entries. */
static void test_big_map(void)
{
    mp_reset(&m);
    msgpack_pack_map(&m.pk, 2000);
    for (int i = 0; i < 2000; i++) {
        char key[16];
        snprintf(key, sizeof key, "key%d", i);
        mp_pack(&m, "s", key);
        switch (i % 5) {
        case 0: mp_pack(&m, "S", filler, (size_t)(i % 300)); break;
        case 1: mp_pack(&m, "[i, d, n]", i, 0.5); break;
        case 2: mp_pack(&m, "{s:{s:I}}", "x", "y", (int64_t)i * 1000000007); break;
        case 3: mp_pack(&m, "x", filler, (size_t)(i % 70)); break;
        default: mp_pack(&m, "T", (int64_t)i, 1u); break;
        }
    }
    check_object("map of 2000 mixed entries", 0xde);
}

static void test_several_objects(void)
{
    mp_reset(&m);
    size_t ends[4];
    mp_pack(&m, "{s:s}", "event", "a");
    ends[0] = m.sbuf.size;
    mp_pack(&m, "i", 7);
    ends[1] = m.sbuf.size;
    mp_pack(&m, "[S, {}]", filler, (size_t)300);
    ends[2] = m.sbuf.size;
    mp_pack(&m, "{s:s, s:[i]}", "event", "b", "properties", 1);
    ends[3] = m.sbuf.size;

    const unsigned char *data = (const unsigned char *)m.sbuf.data;
    struct scanner s;
    scanner_reset(&s);
    size_t off = 0, object_len;
    for (int i = 0; i < 4; i++) {
        check_context("object %d", i);
        if (!CHECK_EQ_INT(scanner_run(&s, data + off, ends[3] - off, &object_len), SCAN_COMPLETE))
            return;
        CHECK_EQ_UINT(off + object_len, ends[i]);
        off += object_len;
    }
    check_context(NULL);
    CHECK_EQ_INT(scanner_run(&s, data + off, 0, &object_len), SCAN_INCOMPLETE);

    /* the last object arriving in two parts, after the others */
    scanner_reset(&s);
    CHECK_EQ_INT(scanner_run(&s, data + ends[2], 3, &object_len), SCAN_INCOMPLETE);
    if (CHECK_EQ_INT(scanner_run(&s, data + ends[2], ends[3] - ends[2], &object_len),
                     SCAN_COMPLETE))
        CHECK_EQ_UINT(object_len, ends[3] - ends[2]);
}

static void test_invalid_byte(void)
{
    static const struct {
        const char *what;
        unsigned char bytes[4];
        size_t len;
    } cases[] = {
        {"0xc1 alone", {0xc1}, 1},
        {"0xc1 in an array", {0x92, 0x01, 0xc1}, 3},
        {"0xc1 as a map key", {0x81, 0xc1, 0x01}, 3},
        {"0xc1 as a map value", {0x81, 0xa1, 'k', 0xc1}, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t object_len;
        check_context("%s", cases[i].what);
        CHECK_EQ_INT(scan_once(cases[i].bytes, cases[i].len, &object_len), SCAN_INVALID);
    }
    check_context(NULL);
    /* a scanner reset after an error reads the next object normally */
    struct scanner s;
    size_t object_len;
    scanner_reset(&s);
    CHECK_EQ_INT(scanner_run(&s, (const unsigned char *)"\x92\x01\xc1", 3, &object_len),
                 SCAN_INVALID);
    scanner_reset(&s);
    CHECK_EQ_INT(scanner_run(&s, (const unsigned char *)"\x91\x01", 2, &object_len),
                 SCAN_COMPLETE);
}

/* `levels` nested one-element arrays (or maps {"k": ...}) around the
 * one-byte object `inner`: 0xc0 nil, 0x90 [] or 0x80 {}. */
static void pack_nested(int levels, int maps, unsigned char inner)
{
    mp_reset(&m);
    for (int i = 0; i < levels; i++) {
        if (maps)
            mp_raw(&m, "\x81\xa1k", 3);
        else
            mp_raw(&m, "\x91", 1);
    }
    mp_raw(&m, &inner, 1);
}

/* CHECK that the scanner refuses m's bytes as too deep, as soon as the
 * 33rd container header is there, and that msgpack-c refuses them too. */
static void check_too_deep(const char *what, int maps)
{
    const unsigned char *data = (const unsigned char *)m.sbuf.data;
    size_t header_end = (size_t)WIRE_MAX_DEPTH * (maps ? 3 : 1) + 1;
    size_t object_len;
    struct scanner s;
    check_context("%s", what);
    scanner_reset(&s);
    CHECK_EQ_INT(scanner_run(&s, data, header_end - 1, &object_len), SCAN_INCOMPLETE);
    CHECK_EQ_INT(scanner_run(&s, data, header_end, &object_len), SCAN_TOO_DEEP);
    CHECK_EQ_INT(scan_once(data, m.sbuf.size, &object_len), SCAN_TOO_DEEP);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&up, m.sbuf.data, m.sbuf.size, &off) != MSGPACK_UNPACK_SUCCESS);
    msgpack_unpacked_destroy(&up);
    check_context(NULL);
}

/* 32 levels of containers are fine, 33 are not, whether the innermost is a
 * container holding a scalar or an empty one. */
static void test_depth(void)
{
    static const struct {
        unsigned char byte;
        const char *name;
    } inner[] = {{0xc0, "nil"}, {0x90, "[]"}, {0x80, "{}"}};
    for (int maps = 0; maps <= 1; maps++) {
        for (size_t i = 0; i < sizeof inner / sizeof inner[0]; i++) {
            int wrappers = WIRE_MAX_DEPTH - (inner[i].byte != 0xc0);
            char what[64];
            snprintf(what, sizeof what, "%s around %s, 32 levels", maps ? "maps" : "arrays",
                     inner[i].name);
            pack_nested(wrappers, maps, inner[i].byte);
            check_object(what, maps ? 0x81 : 0x91);
            snprintf(what, sizeof what, "%s around %s, 33 levels", maps ? "maps" : "arrays",
                     inner[i].name);
            pack_nested(wrappers + 1, maps, inner[i].byte);
            check_too_deep(what, maps);
        }
    }
}

/* Headers whose counts no bytes back are only ever incomplete: the scanner
 * holds a count, not memory. */
static void test_huge_headers(void)
{
    static const struct {
        const char *what;
        unsigned char bytes[6];
        size_t len;
    } cases[] = {
        {"map32 of 2^32-1 entries", {0xdf, 0xff, 0xff, 0xff, 0xff}, 5},
        {"array32 of 2^32-1 elements", {0xdd, 0xff, 0xff, 0xff, 0xff}, 5},
        {"str32 of 2^32-1 bytes", {0xdb, 0xff, 0xff, 0xff, 0xff}, 5},
        {"bin32 of 2^32-1 bytes", {0xc6, 0xff, 0xff, 0xff, 0xff}, 5},
        {"ext32 of 2^32-1 bytes", {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, 6},
        {"half a map16 header", {0xde, 0xff}, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t object_len;
        check_context("%s", cases[i].what);
        CHECK_EQ_INT(scan_once(cases[i].bytes, cases[i].len, &object_len), SCAN_INCOMPLETE);
    }
    check_context(NULL);

    /* and stay incomplete as entries arrive */
    mp_reset(&m);
    mp_raw(&m, "\xdf\xff\xff\xff\xff", 5);
    for (int i = 0; i < 5000; i++)
        mp_pack(&m, "i:n", i);
    struct scanner s;
    size_t object_len;
    scanner_reset(&s);
    CHECK_EQ_INT(scanner_run(&s, (const unsigned char *)m.sbuf.data, m.sbuf.size, &object_len),
                 SCAN_INCOMPLETE);
    CHECK_EQ_INT(s.depth, 1);
    CHECK_EQ_UINT(s.remaining[0], UINT64_C(2) * 0xffffffff - 10000);
}

int main(void)
{
    memset(filler, 'x', sizeof filler);
    mp_init(&m);
    RUN(test_scalars);
    RUN(test_strings_and_binaries);
    RUN(test_exts);
    RUN(test_containers);
    RUN(test_nested);
    RUN(test_big_map);
    RUN(test_several_objects);
    RUN(test_invalid_byte);
    RUN(test_depth);
    RUN(test_huge_headers);
    mp_free(&m);
    return check_finish();
}
