/*
 * scan: msgpack elements and object boundaries without decoding into a
 * tree (see scan.h).
 *
 * scan_item switches on the first byte. The scanner walks element headers
 * with a stack of "elements still to come" counts, one per open container:
 * a scalar completes one element of the innermost container, a container
 * pushes a level expecting its element count (maps: two per entry), and a
 * level whose count reaches zero completes one element of the level below.
 * Progress is saved only at element boundaries, so an element split across
 * reads is simply read again when more bytes come.
 */
#include "scan.h"

#include <string.h>

uint64_t scan_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Lengths of the fixed-size scalars 0xca..0xd3 and of fixext 0xd4..0xd8. */
static const unsigned char scan_fixed_len[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1, 2, 4, 8, 16};

/* How many length bytes follow the type byte b of a str/bin/ext/array/map
 * with an explicit length, and what it is. 0: not such a type. */
static int scan_length_bytes(unsigned char b, enum scan_type *type)
{
    switch (b) {
    case 0xc4: case 0xc5: case 0xc6:
        *type = SCAN_BIN;
        return 1 << (b - 0xc4);
    case 0xc7: case 0xc8: case 0xc9:
        *type = SCAN_EXT;
        return 1 << (b - 0xc7);
    case 0xd9: case 0xda: case 0xdb:
        *type = SCAN_STR;
        return 1 << (b - 0xd9);
    case 0xdc: case 0xdd:
        *type = SCAN_ARRAY;
        return 2 << (b - 0xdc);
    case 0xde: case 0xdf:
        *type = SCAN_MAP;
        return 2 << (b - 0xde);
    default:
        return 0;
    }
}

/* Numbers with a fixed size: 0xca..0xd3. */
static int scan_number(const unsigned char *p, size_t avail, struct scan_item *it)
{
    unsigned char b = p[0];
    size_t n = scan_fixed_len[b - 0xca];
    if (avail < n + 1)
        return 0;
    uint64_t v = scan_be(p + 1, n);
    it->size = n + 1;
    if (b == 0xca) {
        uint32_t bits = (uint32_t)v;
        float f;
        memcpy(&f, &bits, sizeof f);
        it->type = SCAN_FLOAT;
        it->d = f;
    } else if (b == 0xcb) {
        it->type = SCAN_FLOAT;
        memcpy(&it->d, &v, sizeof it->d);
    } else if (b <= 0xcf) {
        it->type = SCAN_UINT;
        it->u = v;
    } else {
        /* n bytes of two's complement (n is 1, 2, 4 or 8), sign-extended
         * without shifting a negative number */
        if (n >= 8) {
            memcpy(&it->i, &v, sizeof it->i);
        } else if (n > 0) {
            uint64_t sign = UINT64_C(1) << (8 * (unsigned)n - 1);
            it->i = (v & sign) ? (int64_t)v - (int64_t)(sign << 1) : (int64_t)v;
        }
        it->type = it->i < 0 ? SCAN_INT : SCAN_UINT;
        it->u = (uint64_t)it->i;
    }
    return 1;
}

int scan_item(const unsigned char *p, size_t avail, struct scan_item *it)
{
    memset(it, 0, sizeof *it);
    if (avail == 0)
        return 0;
    unsigned char b = p[0];
    it->size = 1;
    if (b <= 0x7f || b >= 0xe0) {
        it->i = (int8_t)b; /* NOLINT(bugprone-signed-char-misuse): a negative fixint */
        it->u = b <= 0x7f ? b : (uint64_t)it->i;
        it->type = b <= 0x7f ? SCAN_UINT : SCAN_INT;
        return 1;
    }
    if (b <= 0x9f) {
        it->type = b <= 0x8f ? SCAN_MAP : SCAN_ARRAY;
        it->len = b & 0x0f;
        return 1;
    }
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) {
        it->type = b == 0xc0 ? SCAN_NIL : SCAN_BOOL;
        it->boolean = b == 0xc3;
        return 1;
    }
    if (b == 0xc1)
        return -1;
    if (b >= 0xca && b <= 0xd3)
        return scan_number(p, avail, it);
    size_t header = 1;
    uint64_t payload;
    if (b >= 0xa0 && b <= 0xbf) {
        it->type = SCAN_STR;
        payload = b & 0x1f;
    } else if (b >= 0xd4 && b <= 0xd8) {
        it->type = SCAN_EXT;
        payload = scan_fixed_len[b - 0xca];
    } else {
        size_t n = (size_t)scan_length_bytes(b, &it->type);
        header += n;
        if (avail < header)
            return 0;
        payload = scan_be(p + 1, n);
    }
    if (it->type == SCAN_ARRAY || it->type == SCAN_MAP) {
        it->len = (uint32_t)payload;
        it->size = header;
        return 1;
    }
    if (it->type == SCAN_EXT) {
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

int scan_item_is_str(const struct scan_item *it, const char *s)
{
    size_t n = strlen(s);
    return it->type == SCAN_STR && it->len == n && memcmp(it->ptr, s, n) == 0;
}

void scanner_reset(struct scanner *s)
{
    s->pos = 0;
    s->depth = 0;
}

enum scan_status scanner_run(struct scanner *s, const unsigned char *data, size_t len,
                             size_t *object_len)
{
    while (s->pos < len) {
        struct scan_item it;
        int rc = scan_item(data + s->pos, len - s->pos, &it);
        if (rc < 0)
            return SCAN_INVALID;
        if (rc == 0)
            return SCAN_INCOMPLETE;
        s->pos += it.size;
        if (it.type == SCAN_ARRAY || it.type == SCAN_MAP) {
            if (s->depth == WIRE_MAX_DEPTH)
                return SCAN_TOO_DEEP; /* msgpack-c refuses even an empty one here */
            uint64_t elements = it.type == SCAN_MAP ? 2 * (uint64_t)it.len : it.len;
            if (elements > 0) {
                s->remaining[s->depth++] = elements;
                continue;
            }
        }
        /* one element done; close every level it completes */
        while (s->depth > 0 && --s->remaining[s->depth - 1] == 0)
            s->depth--;
        if (s->depth == 0) {
            *object_len = s->pos;
            scanner_reset(s);
            return SCAN_COMPLETE;
        }
    }
    return SCAN_INCOMPLETE;
}

enum scan_status scan_object(const unsigned char *data, size_t len, size_t *object_len)
{
    struct scanner s;
    scanner_reset(&s);
    return scanner_run(&s, data, len, object_len);
}
