/*
 * pack: msgpack encoding and reading (see pack.h).
 *
 * The reader is table-free: tlm_pack_item() switches on the first byte and
 * decodes one element; tlm_pack_scan() walks elements with a stack of
 * "elements still to come" counts, one per open container.
 */
#include "pack.h"

#include <stdlib.h>
#include <string.h>

int tlm_pack_reserve(struct tlm_pack_buf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra)
        cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void tlm_pack_append(struct tlm_pack_buf *b, const void *data, size_t len)
{
    if (len == 0 || tlm_pack_reserve(b, len) != 0)
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void tlm_pack_free(struct tlm_pack_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* A type byte followed by n big-endian bytes of v. */
static void tlm_pack_be(struct tlm_pack_buf *b, unsigned char type, uint64_t v, int n)
{
    unsigned char tmp[9];
    tmp[0] = type;
    for (int i = 0; i < n; i++)
        tmp[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    tlm_pack_append(b, tmp, (size_t)n + 1);
}

void tlm_pack_nil(struct tlm_pack_buf *b)
{
    tlm_pack_be(b, 0xc0, 0, 0);
}

void tlm_pack_bool(struct tlm_pack_buf *b, int value)
{
    tlm_pack_be(b, value ? 0xc3 : 0xc2, 0, 0);
}

void tlm_pack_uint(struct tlm_pack_buf *b, uint64_t v)
{
    if (v <= 0x7f)
        tlm_pack_be(b, (unsigned char)v, 0, 0);
    else if (v <= UINT8_MAX)
        tlm_pack_be(b, 0xcc, v, 1);
    else if (v <= UINT16_MAX)
        tlm_pack_be(b, 0xcd, v, 2);
    else if (v <= UINT32_MAX)
        tlm_pack_be(b, 0xce, v, 4);
    else
        tlm_pack_be(b, 0xcf, v, 8);
}

void tlm_pack_int(struct tlm_pack_buf *b, int64_t v)
{
    if (v >= 0)
        tlm_pack_uint(b, (uint64_t)v);
    else if (v >= -32)
        tlm_pack_be(b, (unsigned char)(int8_t)v, 0, 0);
    else if (v >= INT8_MIN)
        tlm_pack_be(b, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN)
        tlm_pack_be(b, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN)
        tlm_pack_be(b, 0xd2, (uint64_t)v, 4);
    else
        tlm_pack_be(b, 0xd3, (uint64_t)v, 8);
}

void tlm_pack_double(struct tlm_pack_buf *b, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    tlm_pack_be(b, 0xcb, bits, 8);
}

/* A length-prefixed header: the fix form when it fits, else 8/16/32-bit. */
static void tlm_pack_sized(struct tlm_pack_buf *b, size_t len, int fix_base, size_t fix_max,
                           unsigned char t8, unsigned char t16, unsigned char t32)
{
    if (fix_base >= 0 && len <= fix_max)
        tlm_pack_be(b, (unsigned char)(fix_base | (int)len), 0, 0);
    else if (t8 != 0 && len <= UINT8_MAX)
        tlm_pack_be(b, t8, len, 1);
    else if (len <= UINT16_MAX)
        tlm_pack_be(b, t16, len, 2);
    else
        tlm_pack_be(b, t32, len, 4);
}

void tlm_pack_str(struct tlm_pack_buf *b, const char *s, size_t len)
{
    if (len > UINT32_MAX) {
        b->failed = 1;
        return;
    }
    tlm_pack_sized(b, len, 0xa0, 31, 0xd9, 0xda, 0xdb);
    tlm_pack_append(b, s, len);
}

void tlm_pack_bin(struct tlm_pack_buf *b, const void *data, size_t len)
{
    if (len > UINT32_MAX) {
        b->failed = 1;
        return;
    }
    tlm_pack_sized(b, len, -1, 0, 0xc4, 0xc5, 0xc6);
    tlm_pack_append(b, data, len);
}

void tlm_pack_ext(struct tlm_pack_buf *b, int8_t type, const void *data, size_t len)
{
    static const unsigned char fixext[17] = {[1] = 0xd4, [2] = 0xd5, [4] = 0xd6, [8] = 0xd7,
                                             [16] = 0xd8};
    if (len > UINT32_MAX) {
        b->failed = 1;
        return;
    }
    if (len <= 16 && fixext[len] != 0)
        tlm_pack_be(b, fixext[len], 0, 0);
    else
        tlm_pack_sized(b, len, -1, 0, 0xc7, 0xc8, 0xc9);
    unsigned char t = (unsigned char)type;
    tlm_pack_append(b, &t, 1);
    tlm_pack_append(b, data, len);
}

void tlm_pack_array(struct tlm_pack_buf *b, uint32_t count)
{
    tlm_pack_sized(b, count, 0x90, 15, 0, 0xdc, 0xdd);
}

void tlm_pack_map(struct tlm_pack_buf *b, uint32_t count)
{
    tlm_pack_sized(b, count, 0x80, 15, 0, 0xde, 0xdf);
}

size_t tlm_pack_container_header_len(uint32_t count)
{
    return count <= 15 ? 1 : count <= UINT16_MAX ? 3 : 5;
}

void tlm_pack_put_container_header(unsigned char *p, uint32_t count, int is_map)
{
    struct tlm_pack_buf tmp = {p, 0, 5, 0}; /* writes in place, never grows */
    if (is_map)
        tlm_pack_map(&tmp, count);
    else
        tlm_pack_array(&tmp, count);
}

static uint64_t tlm_pack_read_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Lengths of the fixed-size scalars 0xca..0xd3 and of fixext 0xd4..0xd8. */
static const unsigned char tlm_pack_fixed_len[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8,
                                                   1, 2, 4, 8, 16};

/* How many length bytes follow the type byte b of a str/bin/ext/array/map
 * with an explicit length, and what it is. 0: not such a type. */
static int tlm_pack_length_bytes(unsigned char b, enum tlm_pack_type *type)
{
    switch (b) {
    case 0xc4: case 0xc5: case 0xc6:
        *type = TLM_PACK_BIN;
        return 1 << (b - 0xc4);
    case 0xc7: case 0xc8: case 0xc9:
        *type = TLM_PACK_EXT;
        return 1 << (b - 0xc7);
    case 0xd9: case 0xda: case 0xdb:
        *type = TLM_PACK_STR;
        return 1 << (b - 0xd9);
    case 0xdc: case 0xdd:
        *type = TLM_PACK_ARRAY;
        return 2 << (b - 0xdc);
    case 0xde: case 0xdf:
        *type = TLM_PACK_MAP;
        return 2 << (b - 0xde);
    default:
        return 0;
    }
}

/* Numbers and booleans with a fixed size: 0xca..0xd3 plus the fix forms. */
static int tlm_pack_number(const unsigned char *p, size_t avail, struct tlm_pack_item *it)
{
    unsigned char b = p[0];
    int n = tlm_pack_fixed_len[b - 0xca];
    if (avail < (size_t)n + 1)
        return 0;
    uint64_t v = tlm_pack_read_be(p + 1, n);
    it->size = (size_t)n + 1;
    if (b == 0xca || b == 0xcb) {
        it->type = TLM_PACK_FLOAT;
        if (b == 0xca) {
            uint32_t bits = (uint32_t)v;
            float f;
            memcpy(&f, &bits, sizeof f);
            it->d = f;
        } else {
            memcpy(&it->d, &v, sizeof it->d);
        }
    } else if (b <= 0xcf) {
        it->type = TLM_PACK_UINT;
        it->u = v;
    } else {
        int shift = 64 - 8 * n; /* sign-extend an n-byte two's complement value */
        it->i = (int64_t)(v << shift) >> shift;
        it->type = it->i < 0 ? TLM_PACK_INT : TLM_PACK_UINT;
        it->u = (uint64_t)it->i;
    }
    return 1;
}

int tlm_pack_item(const unsigned char *p, size_t avail, struct tlm_pack_item *it)
{
    memset(it, 0, sizeof *it);
    if (avail == 0)
        return 0;
    unsigned char b = p[0];
    it->size = 1;
    if (b <= 0x7f || b >= 0xe0) {
        it->i = (int8_t)b;
        it->u = b <= 0x7f ? b : (uint64_t)it->i;
        it->type = b <= 0x7f ? TLM_PACK_UINT : TLM_PACK_INT;
        return 1;
    }
    if (b <= 0x8f || (b >= 0x90 && b <= 0x9f)) {
        it->type = b <= 0x8f ? TLM_PACK_MAP : TLM_PACK_ARRAY;
        it->len = b & 0x0f;
        return 1;
    }
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) {
        it->type = b == 0xc0 ? TLM_PACK_NIL : TLM_PACK_BOOL;
        it->boolean = b == 0xc3;
        return 1;
    }
    if (b == 0xc1)
        return -1;
    if (b >= 0xca && b <= 0xd3)
        return tlm_pack_number(p, avail, it);
    size_t header = 1;
    uint64_t payload;
    if (b >= 0xa0 && b <= 0xbf) {
        it->type = TLM_PACK_STR;
        payload = b & 0x1f;
    } else if (b >= 0xd4 && b <= 0xd8) {
        it->type = TLM_PACK_EXT;
        payload = tlm_pack_fixed_len[b - 0xca];
    } else {
        int n = tlm_pack_length_bytes(b, &it->type);
        header += (size_t)n;
        if (avail < header)
            return 0;
        payload = tlm_pack_read_be(p + 1, n);
    }
    if (it->type == TLM_PACK_ARRAY || it->type == TLM_PACK_MAP) {
        it->len = (uint32_t)payload;
        it->size = header;
        return 1;
    }
    if (it->type == TLM_PACK_EXT) {
        if (avail < header + 1)
            return 0;
        it->ext_type = (int8_t)p[header];
        header++;
    }
    if (payload > avail - header)
        return 0;
    it->ptr = p + header;
    it->len = (uint32_t)payload;
    it->size = header + (size_t)payload;
    return 1;
}

enum tlm_pack_scan_status tlm_pack_scan(const unsigned char *p, size_t len, int max_depth,
                                        size_t *object_len)
{
    uint64_t left[64]; /* elements still to come in each open container */
    int depth = 0;
    size_t pos = 0;
    if (max_depth > 64)
        max_depth = 64;
    for (;;) {
        struct tlm_pack_item it;
        int rc = tlm_pack_item(p + pos, len - pos, &it);
        if (rc < 0)
            return TLM_PACK_INVALID;
        if (rc == 0)
            return TLM_PACK_INCOMPLETE;
        pos += it.size;
        if (it.type == TLM_PACK_ARRAY || it.type == TLM_PACK_MAP) {
            if (depth == max_depth)
                return TLM_PACK_TOO_DEEP;
            uint64_t n = it.type == TLM_PACK_MAP ? 2 * (uint64_t)it.len : it.len;
            if (n > 0) {
                left[depth++] = n;
                continue;
            }
        }
        while (depth > 0 && --left[depth - 1] == 0)
            depth--;
        if (depth == 0) {
            *object_len = pos;
            return TLM_PACK_COMPLETE;
        }
    }
}

int tlm_pack_item_is_str(const struct tlm_pack_item *it, const char *s)
{
    size_t n = strlen(s);
    return it->type == TLM_PACK_STR && it->len == n && memcmp(it->ptr, s, n) == 0;
}

int tlm_pack_map_add_chunk(struct tlm_pack_buf *out, const unsigned char *map, size_t mlen,
                           const char *chunk, size_t chunk_len)
{
    struct tlm_pack_item head;
    if (tlm_pack_item(map, mlen, &head) != 1 || head.type != TLM_PACK_MAP ||
        head.len == UINT32_MAX)
        return -1;
    size_t pos = head.size;
    for (uint32_t i = 0; i < 2 * head.len; i++) {
        struct tlm_pack_item key;
        size_t n;
        if (i % 2 == 0 && tlm_pack_item(map + pos, mlen - pos, &key) == 1 &&
            tlm_pack_item_is_str(&key, "chunk"))
            return -1;
        if (tlm_pack_scan(map + pos, mlen - pos, 64, &n) != TLM_PACK_COMPLETE)
            return -1;
        pos += n;
    }
    tlm_pack_map(out, head.len + 1);
    tlm_pack_append(out, map + head.size, mlen - head.size);
    tlm_pack_str(out, "chunk", 5);
    tlm_pack_str(out, chunk, chunk_len);
    return out->failed ? -1 : 0;
}
