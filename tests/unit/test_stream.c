/*
 * stream: msgpack objects out of a byte stream however the bytes arrive
 * (split at every byte boundary, one byte per read, several objects in one
 * append), invalid bytes, the nesting limit, objects over max_object
 * (complete and still arriving), stream_clear, and the one zone and buffer
 * reused for every object.
 */
#include "check.h"
#include "mp.h"
#include "stream.h"

#include <stdlib.h>
#include <string.h>

static struct mp m;

/* Small, so that appends make the buffer grow and move. */
#define INITIAL_BUFFER 8
#define NO_LIMIT ((size_t)1 << 20)

/* A sample of every header form, as msgpack-c packs them, plus the 32-bit
 * length forms written by hand (the packer only uses them for big values). */
static void pack_sample(void)
{
    static const unsigned char ext4[4] = {0, 0, 0, 7}, ext16[16] = {1};
    mp_reset(&m);
    mp_pack(&m, "n b b i i i i i i", 1, 0, 5, -3, 200, -200, 70000, -70000);
    mp_pack(&m, "I U d f", INT64_MIN, UINT64_MAX, 1.5, 2.5);
    mp_pack(&m, "s S x", "page_view", "\xc1\x00z", (size_t)3, "\xc1", (size_t)1);
    mp_pack(&m, "e e e", 0, ext4, sizeof ext4, 5, ext16, sizeof ext16, 9, ext16, (size_t)3);
    mp_pack(&m, "{s:s, s:{s:[i, n, {}]}, s:[]}", "event", "e", "properties", "k", 1, "empty");
    mp_pack(&m, "[[[[i]]], {i:b}]", 1, 2, 1);
    static const unsigned char raw[] = {
        0xdb, 0, 0, 0, 3, 'a', 'b', 'c',       /* str32 */
        0xc6, 0, 0, 0, 2, 0xc1, 0xc1,          /* bin32 */
        0xc9, 0, 0, 0, 1, 0x7f, 0xc1,          /* ext32 */
        0xdd, 0, 0, 0, 2, 0x01, 0xc0,          /* array32 */
        0xdf, 0, 0, 0, 1, 0xa1, 'k', 0x90,     /* map32 */
        0xdc, 0, 0, 0xde, 0, 0,                /* array16 of 0, map16 of 0 */
    };
    mp_raw(&m, raw, sizeof raw);
}

/* The objects in m's bytes, as msgpack-c's one-shot unpacker reads them. */
struct reference {
    msgpack_unpacked objects[64];
    size_t count;
};

static void reference_init(struct reference *r)
{
    size_t off = 0;
    r->count = 0;
    while (off < m.sbuf.size && r->count < 64) {
        msgpack_unpacked_init(&r->objects[r->count]);
        if (msgpack_unpack_next(&r->objects[r->count], m.sbuf.data, m.sbuf.size, &off) !=
            MSGPACK_UNPACK_SUCCESS) {
            fprintf(stderr, "reference: msgpack-c refused the sample\n");
            exit(2);
        }
        r->count++;
    }
}

static void reference_free(struct reference *r)
{
    for (size_t i = 0; i < r->count; i++)
        msgpack_unpacked_destroy(&r->objects[i]);
}

/* Take every complete object out of s, CHECKing each against the reference;
 * *next counts them. Returns the status that stopped it. */
static enum stream_status drain(struct stream *s, const struct reference *r, size_t *next)
{
    msgpack_object obj;
    enum stream_status st;
    while ((st = stream_next(s, &obj)) == STREAM_OBJECT) {
        if (!CHECK_LT(*next, r->count))
            return st;
        if (!CHECK(msgpack_object_equal(obj, r->objects[*next].data)))
            fprintf(stderr, "    object %zu differs\n", *next);
        (*next)++;
    }
    return st;
}

/* Every split of the sample into two appends gives the same objects. */
static void test_split_everywhere(void)
{
    struct reference r;
    pack_sample();
    reference_init(&r);
    CHECK_EQ_UINT(r.count, 28);
    for (size_t k = 0; k <= m.sbuf.size; k++) {
        struct stream s;
        size_t next = 0;
        check_context("split after byte %zu of %zu", k, m.sbuf.size);
        if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
            return;
        CHECK_EQ_INT(stream_append(&s, m.sbuf.data, k), 0);
        CHECK_EQ_INT(drain(&s, &r, &next), STREAM_NEED_MORE);
        CHECK_EQ_INT(stream_append(&s, m.sbuf.data + k, m.sbuf.size - k), 0);
        CHECK_EQ_INT(drain(&s, &r, &next), STREAM_NEED_MORE);
        CHECK_EQ_UINT(next, r.count);
        CHECK_EQ_UINT(stream_pending(&s), 0);
        stream_destroy(&s);
    }
    check_context(NULL);
    reference_free(&r);
}

/* One byte per read, written through stream_reserve as the listener does. */
static void test_byte_at_a_time(void)
{
    struct reference r;
    struct stream s;
    size_t next = 0;
    pack_sample();
    reference_init(&r);
    if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
        return;
    for (size_t i = 0; i < m.sbuf.size; i++) {
        size_t capacity = 0;
        char *space = stream_reserve(&s, 1, &capacity);
        if (!CHECK(space != NULL) || !CHECK_GE(capacity, 1))
            break;
        *space = m.sbuf.data[i];
        stream_consumed(&s, 1);
        check_context("after byte %zu", i);
        CHECK_EQ_INT(drain(&s, &r, &next), STREAM_NEED_MORE);
    }
    check_context(NULL);
    CHECK_EQ_UINT(next, r.count);
    CHECK_EQ_UINT(stream_pending(&s), 0);
    stream_destroy(&s);
    reference_free(&r);
}

/* All of them in one append; stream_pending says what is left after each. */
static void test_several_in_one_append(void)
{
    struct stream s;
    msgpack_object obj;
    mp_reset(&m);
    mp_pack(&m, "{s:s} [i, s] n i", "event", "a", 7, "x", 9);
    mp_raw(&m, "\x91\x01", 2); /* a fifth: an array of one, its element held back */
    if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
        return;
    CHECK_EQ_INT(stream_append(&s, m.sbuf.data, m.sbuf.size - 1), 0);
    CHECK_EQ_UINT(stream_pending(&s), m.sbuf.size - 1);
    if (CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT) && CHECK(obj.type == MSGPACK_OBJECT_MAP))
        CHECK_MEM_EQ(obj.via.map.ptr[0].val.via.str.ptr, obj.via.map.ptr[0].val.via.str.size,
                     "a", 1);
    CHECK_EQ_UINT(stream_pending(&s), m.sbuf.size - 1 - 9);
    if (CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT) &&
        CHECK(obj.type == MSGPACK_OBJECT_ARRAY) && CHECK_EQ_UINT(obj.via.array.size, 2))
        CHECK_EQ_UINT(obj.via.array.ptr[0].via.u64, 7);
    if (CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT))
        CHECK(obj.type == MSGPACK_OBJECT_NIL);
    if (CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT))
        CHECK_EQ_UINT(obj.via.u64, 9);
    CHECK_EQ_UINT(stream_pending(&s), 1);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE); /* asking again changes nothing */
    CHECK_EQ_INT(stream_append(&s, m.sbuf.data + m.sbuf.size - 1, 1), 0);
    if (CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT) &&
        CHECK(obj.type == MSGPACK_OBJECT_ARRAY) && CHECK_EQ_UINT(obj.via.array.size, 1))
        CHECK_EQ_UINT(obj.via.array.ptr[0].via.u64, 1);
    CHECK_EQ_UINT(stream_pending(&s), 0);
    stream_destroy(&s);
}

/* Feed `data` (in two appends, split after `split` bytes) and return the
 * status after all the objects before the fault. */
static enum stream_status feed(const void *data, size_t len, size_t split, size_t max_object,
                               int *objects)
{
    struct stream s;
    msgpack_object obj;
    enum stream_status st;
    *objects = 0;
    if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, max_object), 0))
        return STREAM_NEED_MORE;
    stream_append(&s, data, split);
    while ((st = stream_next(&s, &obj)) == STREAM_OBJECT)
        (*objects)++;
    if (st == STREAM_NEED_MORE) {
        stream_append(&s, (const char *)data + split, len - split);
        while ((st = stream_next(&s, &obj)) == STREAM_OBJECT)
            (*objects)++;
    }
    stream_destroy(&s);
    return st;
}

static void test_invalid_byte(void)
{
    static const struct {
        const char *what;
        const char *data;
        size_t len;
        int objects_before;
    } cases[] = {
        {"alone", "\xc1", 1, 0},
        {"after a complete object", "\x01\xa1x\xc1", 4, 2},
        {"inside an array", "\x93\x01\xc1\x02", 4, 0},
        {"as a map key", "\x81\xc1\x01", 3, 0},
        {"as a map value, nested", "\x91\x81\xa1k\xc1", 5, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t split = 0; split <= cases[i].len; split++) {
            int objects;
            check_context("0xc1 %s, split after %zu", cases[i].what, split);
            CHECK_EQ_INT(feed(cases[i].data, cases[i].len, split, NO_LIMIT, &objects),
                         STREAM_INVALID);
            CHECK_EQ_INT(objects, cases[i].objects_before);
        }
    }
}

static void test_too_deep(void)
{
    unsigned char data[2 * WIRE_MAX_DEPTH + 4];
    int objects;
    /* WIRE_MAX_DEPTH arrays, then an integer: fine */
    memset(data, 0x91, WIRE_MAX_DEPTH);
    data[WIRE_MAX_DEPTH] = 0x05;
    for (size_t split = 0; split <= WIRE_MAX_DEPTH + 1; split += 3) {
        check_context("%d levels, split after %zu", WIRE_MAX_DEPTH, split);
        CHECK_EQ_INT(feed(data, WIRE_MAX_DEPTH + 1, split, NO_LIMIT, &objects), STREAM_NEED_MORE);
        CHECK_EQ_INT(objects, 1);
    }
    /* one level more, by an array or by a map's value, however it arrives */
    memset(data, 0x91, WIRE_MAX_DEPTH + 1);
    data[WIRE_MAX_DEPTH + 1] = 0x05;
    for (size_t split = 0; split <= WIRE_MAX_DEPTH + 2; split++) {
        check_context("%d levels of arrays, split after %zu", WIRE_MAX_DEPTH + 1, split);
        CHECK_EQ_INT(feed(data, WIRE_MAX_DEPTH + 2, split, NO_LIMIT, &objects), STREAM_TOO_DEEP);
        CHECK_EQ_INT(objects, 0);
    }
    size_t n = 0;
    for (int level = 0; level <= WIRE_MAX_DEPTH; level++) {
        data[n++] = 0x81; /* {0: ... } */
        data[n++] = 0x00;
    }
    data[n++] = 0xc0;
    check_context("%d levels of maps", WIRE_MAX_DEPTH + 1);
    CHECK_EQ_INT(feed(data, n, n / 2, NO_LIMIT, &objects), STREAM_TOO_DEEP);
    /* a valid object first is still handed out */
    data[0] = 0x07;
    memset(data + 1, 0x91, WIRE_MAX_DEPTH + 1);
    check_context("too deep after a valid object");
    CHECK_EQ_INT(feed(data, WIRE_MAX_DEPTH + 2, WIRE_MAX_DEPTH + 2, NO_LIMIT, &objects),
                 STREAM_TOO_DEEP);
    CHECK_EQ_INT(objects, 1);
}

/* max_object 16: a complete object of 16 bytes passes, 17 does not; an
 * unfinished one fails as soon as more than 16 of its bytes are buffered. */
static void test_too_large(void)
{
    char text[64];
    int objects;
    memset(text, 't', sizeof text);
    mp_reset(&m);
    mp_pack(&m, "S", text, (size_t)15); /* 16 bytes with its header */
    check_context("complete, exactly max_object");
    CHECK_EQ_INT(feed(m.sbuf.data, m.sbuf.size, m.sbuf.size, 16, &objects), STREAM_NEED_MORE);
    CHECK_EQ_INT(objects, 1);
    mp_reset(&m);
    mp_pack(&m, "S", text, (size_t)16); /* 17 bytes */
    for (size_t split = 0; split <= m.sbuf.size; split++) {
        check_context("complete, one byte over, split after %zu", split);
        CHECK_EQ_INT(feed(m.sbuf.data, m.sbuf.size, split, 16, &objects), STREAM_TOO_LARGE);
        CHECK_EQ_INT(objects, 0);
    }
    /* a header promising 40 bytes: waiting while 16 or fewer are here */
    mp_reset(&m);
    mp_pack(&m, "i S", 1, text, (size_t)40);
    check_context("unfinished, 16 bytes of it");
    CHECK_EQ_INT(feed(m.sbuf.data, 1 + 16, 1 + 16, 16, &objects), STREAM_NEED_MORE);
    CHECK_EQ_INT(objects, 1);
    check_context("unfinished, 17 bytes of it");
    CHECK_EQ_INT(feed(m.sbuf.data, 1 + 17, 1 + 16, 16, &objects), STREAM_TOO_LARGE);
    CHECK_EQ_INT(objects, 1);
    /* a 32-bit length claiming 4 GiB allocates nothing and is caught by size */
    static const unsigned char huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8,
                                         9, 10, 11, 12, 13};
    check_context("array32 claiming 2^32-1 elements");
    CHECK_EQ_INT(feed(huge, 16, 16, 16, &objects), STREAM_NEED_MORE);
    CHECK_EQ_INT(feed(huge, sizeof huge, 16, 16, &objects), STREAM_TOO_LARGE);
    check_context(NULL);
    /* the limit is per object, not for all that is buffered */
    mp_reset(&m);
    for (int i = 0; i < 10; i++)
        mp_pack(&m, "S", text, (size_t)14);
    CHECK_EQ_INT(feed(m.sbuf.data, m.sbuf.size, m.sbuf.size, 16, &objects), STREAM_NEED_MORE);
    CHECK_EQ_INT(objects, 10);
}

/* stream_clear forgets buffered bytes and a half-scanned object. */
static void test_clear(void)
{
    struct stream s;
    msgpack_object obj;
    if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
        return;
    stream_clear(&s); /* on a fresh stream: nothing happens */
    CHECK_EQ_UINT(stream_pending(&s), 0);
    /* [[1, ... : the scanner is two levels down */
    CHECK_EQ_INT(stream_append(&s, "\x92\x92\x01", 3), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE);
    stream_clear(&s);
    CHECK_EQ_UINT(stream_pending(&s), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE);
    CHECK_EQ_INT(stream_append(&s, "\x05\x06", 2), 0);
    if (CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT))
        CHECK(obj.type == MSGPACK_OBJECT_POSITIVE_INTEGER && obj.via.u64 == 5);
    /* complete objects still buffered are dropped too */
    CHECK_EQ_INT(stream_append(&s, "\x07\x08", 2), 0);
    CHECK_EQ_UINT(stream_pending(&s), 3);
    stream_clear(&s);
    CHECK_EQ_UINT(stream_pending(&s), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE);
    /* after a fault, clear makes the stream usable again */
    CHECK_EQ_INT(stream_append(&s, "\x91\xc1", 2), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_INVALID);
    stream_clear(&s);
    CHECK_EQ_INT(stream_append(&s, "\xa2ok", 3), 0);
    if (CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT))
        CHECK_MEM_EQ(obj.via.str.ptr, obj.via.str.size, "ok", 2);
    stream_destroy(&s);
}

/* Many objects through one stream: each one's containers land at the same
 * place in the zone (cleared, not replaced), the buffer stays small and no
 * finalizers pile up; ASan's leak check covers the rest. */
static void test_zone_reused(void)
{
    struct stream s;
    msgpack_object obj;
    if (!CHECK_EQ_INT(stream_init(&s, 1024, NO_LIMIT), 0))
        return;
    const void *first_ptr = NULL;
    int objects = 0, same_place = 0;
    size_t max_capacity = 0, max_finalizers = 0;
    for (int round = 0; round < 2000; round++) {
        mp_reset(&m);
        for (int i = 0; i < 10; i++)
            mp_pack(&m, "{s:s, s:{s:[i, s, x]}, s:I}", "event", "page_view", "properties", "list",
                    round, "text", "\x01\x02", (size_t)2, "n", (int64_t)i);
        /* the round's bytes in three reads, cutting objects */
        size_t third = m.sbuf.size / 3;
        for (int part = 0; part < 3; part++) {
            size_t from = third * (size_t)part, to = part == 2 ? m.sbuf.size : from + third;
            if (!CHECK_EQ_INT(stream_append(&s, m.sbuf.data + from, to - from), 0))
                goto out;
            while (stream_next(&s, &obj) == STREAM_OBJECT) {
                if (!CHECK(obj.type == MSGPACK_OBJECT_MAP) || !CHECK_EQ_UINT(obj.via.map.size, 3))
                    goto out;
                const msgpack_object *props = &obj.via.map.ptr[1].val;
                CHECK_EQ_UINT(props->via.map.ptr[0].val.via.array.ptr[0].via.u64, round);
                if (first_ptr == NULL)
                    first_ptr = obj.via.map.ptr;
                same_place += obj.via.map.ptr == first_ptr;
                objects++;
                const msgpack_zone *z = &s.zone;
                size_t finalizers = (size_t)(z->finalizer_array.tail - z->finalizer_array.array);
                if (finalizers > max_finalizers)
                    max_finalizers = finalizers;
            }
            size_t capacity = s.capacity;
            if (capacity > max_capacity)
                max_capacity = capacity;
        }
    }
out:
    CHECK_EQ_INT(objects, 20000);
    CHECK_EQ_INT(same_place, objects);
    CHECK_LE(max_capacity, 8192);
    CHECK_LE(max_finalizers, 1);
    CHECK_EQ_UINT(stream_pending(&s), 0);
    stream_destroy(&s);
}

/* A header that claims more elements than the bytes could hold is not
 * allocated for (4 billion elements would be about 100 GB of tree): the
 * stream waits for more, and still sees a bad byte after it. */
static void test_claims_not_allocated_for(void)
{
    struct stream s;
    msgpack_object obj;
    if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
        return;
    static const unsigned char huge_array[] = {0x92, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
    static const unsigned char huge_map[] = {0x91, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'k', 0xc0};
    /* a zone that grows puts a new chunk at the head of its list */
    const msgpack_zone_chunk *first_chunk = s.zone.chunk_list.head;
    CHECK_EQ_INT(stream_append(&s, huge_array, sizeof huge_array), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE);
    CHECK(s.zone.chunk_list.head == first_chunk);
    CHECK_EQ_INT(stream_append(&s, "\xc1", 1), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_INVALID);
    stream_clear(&s);
    CHECK_EQ_INT(stream_append(&s, huge_map, sizeof huge_map), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE);
    CHECK(s.zone.chunk_list.head == first_chunk);
    CHECK_EQ_UINT(stream_pending(&s), sizeof huge_map);
    stream_destroy(&s);
}

/* Random objects of every type, nested, whole and split at a random byte:
 * each built exactly as msgpack-c's own unpacker builds it. */
static void test_random_objects_as_msgpack_c(void)
{
    struct stream s;
    if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
        return;
    srand(7);
    static const char *const shapes[] = {
        "{s:[i, I, U, d, f, n, b], s:{s:S, s:x, s:e}}",
        "[[i, [I, [U, {s:d}]]], f, {i:s}]",
        "{s:s, s:{s:i, s:[s, s], s:{s:b}}, s:U, s:s}",
    };
    static const unsigned char ext[5] = {1, 2, 3, 4, 5};
    for (int round = 0; round < 3000; round++) {
        int r1 = rand(), r2 = rand();
        int64_t wide = ((int64_t)r1 << 31 | r2) * (r1 % 2 ? 1 : -1);
        uint64_t big = (uint64_t)r1 << 33 ^ (uint64_t)r2;
        mp_reset(&m);
        switch (round % 3) {
        case 0:
            mp_pack(&m, shapes[0], "a", r1 % 300 - 150, wide, big, r2 / 7.0, (float)r1 / 3.0f,
                    r1 % 2, "b", "c", "x\0y", (size_t)3, "d", "\xff\x00", (size_t)(r2 % 3),
                    "e", r1 % 128, ext, (size_t)(r2 % 6));
            break;
        case 1:
            mp_pack(&m, shapes[1], r1 % 70000 - 35000, wide, big, "k", -r2 / 3.0,
                    (float)r2, r1, "v");
            break;
        default:
            mp_pack(&m, shapes[2], "event", "project:created", "properties", "n", r1, "l", "a",
                    "bb", "m", "k", r2 % 2, "u", big, "t", "2026-12-03T10:00:00Z");
        }
        msgpack_unpacked want;
        msgpack_unpacked_init(&want);
        size_t off = 0;
        if (!CHECK_EQ_INT(msgpack_unpack_next(&want, m.sbuf.data, m.sbuf.size, &off),
                          MSGPACK_UNPACK_SUCCESS))
            break;
        size_t split = (size_t)r2 % (m.sbuf.size + 1);
        msgpack_object got;
        check_context("round %d, split at %zu of %zu", round, split, m.sbuf.size);
        CHECK_EQ_INT(stream_append(&s, m.sbuf.data, split), 0);
        if (split < m.sbuf.size) {
            CHECK_EQ_INT(stream_next(&s, &got), STREAM_NEED_MORE);
            CHECK_EQ_INT(stream_append(&s, m.sbuf.data + split, m.sbuf.size - split), 0);
        }
        if (CHECK_EQ_INT(stream_next(&s, &got), STREAM_OBJECT))
            CHECK(msgpack_object_equal(got, want.data));
        CHECK_EQ_UINT(stream_pending(&s), 0);
        msgpack_unpacked_destroy(&want);
    }
    check_context(NULL);
    stream_destroy(&s);
}

/* Destroying a stream that holds an unfinished object, or one never used. */
static void test_destroy_any_time(void)
{
    struct stream s;
    msgpack_object obj;
    if (CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
        stream_destroy(&s);
    if (!CHECK_EQ_INT(stream_init(&s, INITIAL_BUFFER, NO_LIMIT), 0))
        return;
    CHECK_EQ_INT(stream_append(&s, "\xa1x\x93\xa3" "abc", 7), 0);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_OBJECT);
    CHECK_EQ_INT(stream_next(&s, &obj), STREAM_NEED_MORE);
    stream_destroy(&s);
}

int main(void)
{
    mp_init(&m);
    RUN(test_split_everywhere);
    RUN(test_byte_at_a_time);
    RUN(test_several_in_one_append);
    RUN(test_invalid_byte);
    RUN(test_too_deep);
    RUN(test_too_large);
    RUN(test_clear);
    RUN(test_zone_reused);
    RUN(test_claims_not_allocated_for);
    RUN(test_random_objects_as_msgpack_c);
    RUN(test_destroy_any_time);
    mp_free(&m);
    return check_finish();
}
