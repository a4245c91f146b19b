/*
 * pack: msgpack encoding (see pack.h).
 */
#include "pack.h"

#include "scan.h"

#include <string.h>

/* A type byte followed by n big-endian bytes of v. */
static void pack_be(struct buf *b, unsigned char type, uint64_t v, int n)
{
    unsigned char tmp[9];
    tmp[0] = type;
    for (int i = 0; i < n; i++)
        tmp[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    buf_append(b, tmp, (size_t)n + 1);
}

void pack_nil(struct buf *b)
{
    pack_be(b, 0xc0, 0, 0);
}

void pack_bool(struct buf *b, int value)
{
    pack_be(b, value ? 0xc3 : 0xc2, 0, 0);
}

void pack_uint(struct buf *b, uint64_t v)
{
    if (v <= 0x7f)
        pack_be(b, (unsigned char)v, 0, 0);
    else if (v <= UINT8_MAX)
        pack_be(b, 0xcc, v, 1);
    else if (v <= UINT16_MAX)
        pack_be(b, 0xcd, v, 2);
    else if (v <= UINT32_MAX)
        pack_be(b, 0xce, v, 4);
    else
        pack_be(b, 0xcf, v, 8);
}

void pack_int(struct buf *b, int64_t v)
{
    if (v >= 0)
        pack_uint(b, (uint64_t)v);
    else if (v >= -32)
        pack_be(b, (unsigned char)(int8_t)v, 0, 0);
    else if (v >= INT8_MIN)
        pack_be(b, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN)
        pack_be(b, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN)
        pack_be(b, 0xd2, (uint64_t)v, 4);
    else
        pack_be(b, 0xd3, (uint64_t)v, 8);
}

void pack_double(struct buf *b, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    pack_be(b, 0xcb, bits, 8);
}

/* A length-prefixed header: the fix form when it fits, else 8/16/32-bit. */
static void pack_sized(struct buf *b, size_t len, int fix_base, size_t fix_max, unsigned char t8,
                       unsigned char t16, unsigned char t32)
{
    if (fix_base >= 0 && len <= fix_max)
        pack_be(b, (unsigned char)(fix_base | (int)len), 0, 0);
    else if (t8 != 0 && len <= UINT8_MAX)
        pack_be(b, t8, len, 1);
    else if (len <= UINT16_MAX)
        pack_be(b, t16, len, 2);
    else
        pack_be(b, t32, len, 4);
}

/* A payload too long for msgpack's 32-bit lengths fails the buffer. */
static int pack_length_ok(struct buf *b, size_t len)
{
    if (len <= UINT32_MAX)
        return 1;
    b->failed = 1;
    return 0;
}

void pack_str(struct buf *b, const char *s, size_t len)
{
    if (!pack_length_ok(b, len))
        return;
    pack_sized(b, len, 0xa0, 31, 0xd9, 0xda, 0xdb);
    buf_append(b, s, len);
}

void pack_cstr(struct buf *b, const char *s)
{
    pack_str(b, s, strlen(s));
}

void pack_bin(struct buf *b, const void *data, size_t len)
{
    if (!pack_length_ok(b, len))
        return;
    pack_sized(b, len, -1, 0, 0xc4, 0xc5, 0xc6);
    buf_append(b, data, len);
}

void pack_ext(struct buf *b, int8_t type, const void *data, size_t len)
{
    static const unsigned char fixext[17] = {[1] = 0xd4, [2] = 0xd5, [4] = 0xd6, [8] = 0xd7,
                                             [16] = 0xd8};
    if (!pack_length_ok(b, len))
        return;
    if (len <= 16 && fixext[len] != 0)
        pack_be(b, fixext[len], 0, 0);
    else
        pack_sized(b, len, -1, 0, 0xc7, 0xc8, 0xc9);
    unsigned char t = (unsigned char)type;
    buf_append(b, &t, 1);
    buf_append(b, data, len);
}

void pack_array(struct buf *b, uint32_t count)
{
    pack_sized(b, count, 0x90, 15, 0, 0xdc, 0xdd);
}

void pack_map(struct buf *b, uint32_t count)
{
    pack_sized(b, count, 0x80, 15, 0, 0xde, 0xdf);
}

size_t pack_container_header_len(uint32_t count)
{
    return count <= 15 ? 1 : count <= UINT16_MAX ? 3 : 5;
}

void pack_put_container_header(unsigned char *p, uint32_t count, int is_map)
{
    struct buf in_place = buf_borrow(p, 5);
    if (is_map)
        pack_map(&in_place, count);
    else
        pack_array(&in_place, count);
}

int pack_map_add_chunk(struct buf *out, const unsigned char *map, size_t mlen, const char *chunk,
                       size_t chunk_len)
{
    struct scan_item head;
    if (scan_item(map, mlen, &head) != 1 || head.type != SCAN_MAP || head.len == UINT32_MAX)
        return -1;
    size_t pos = head.size;
    for (uint32_t i = 0; i < 2 * head.len; i++) {
        struct scan_item key;
        size_t n;
        if (i % 2 == 0 && scan_item(map + pos, mlen - pos, &key) == 1 &&
            scan_item_is_str(&key, WIRE_KEY_CHUNK))
            return -1;
        if (scan_object(map + pos, mlen - pos, &n) != SCAN_COMPLETE)
            return -1;
        pos += n;
    }
    pack_map(out, head.len + 1);
    buf_append(out, map + head.size, mlen - head.size);
    pack_cstr(out, WIRE_KEY_CHUNK);
    pack_str(out, chunk, chunk_len);
    return out->failed ? -1 : 0;
}
