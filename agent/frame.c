/*
 * frame: msgpack object boundaries without decoding (see frame.h).
 *
 * The scanner walks element headers. A scalar completes one element of the
 * innermost open container; a container pushes a level expecting its element
 * count (maps: two per entry). A level whose count reaches zero completes one
 * element of the level below. Progress is only saved at element boundaries,
 * so a header split across reads is simply read again when more bytes come.
 */
#include "frame.h"

void frame_reset(struct frame_scanner *s)
{
    s->pos = 0;
    s->depth = 0;
}

static uint64_t frame_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Size of the header at p and what follows it: a payload of *payload bytes
 * (strings, binaries, exts) or a container of *elements elements. Returns the
 * header length, 0 if more bytes are needed, or -1 if the byte is invalid. */
static int frame_header(const unsigned char *p, size_t avail, uint64_t *payload,
                        uint64_t *elements, int *is_container)
{
    unsigned char b = p[0];
    size_t need = 1;
    *payload = 0;
    *elements = 0;
    *is_container = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 1;
    if (b >= 0x80 && b <= 0x8f)
        return *is_container = 1, *elements = 2 * (uint64_t)(b & 0x0f), 1;
    if (b >= 0x90 && b <= 0x9f)
        return *is_container = 1, *elements = b & 0x0f, 1;
    if (b >= 0xa0 && b <= 0xbf)
        return *payload = b & 0x1f, 1;
    if (b == 0xc1)
        return -1;
    /* fixed-size scalars: 0xca float32 .. 0xd3 int64 */
    static const unsigned char fixed[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
    if (b >= 0xca && b <= 0xd3)
        return *payload = fixed[b - 0xca], 1;
    /* fixext 1, 2, 4, 8, 16: type byte + data */
    if (b >= 0xd4 && b <= 0xd8)
        return *payload = 1 + ((uint64_t)1 << (b - 0xd4)), 1;
    size_t lenbytes;
    switch (b) {
    case 0xc4: case 0xc7: case 0xd9: lenbytes = 1; break;
    case 0xc5: case 0xc8: case 0xda: case 0xdc: case 0xde: lenbytes = 2; break;
    default: lenbytes = 4; break; /* 0xc6 0xc9 0xdb 0xdd 0xdf */
    }
    need = 1 + lenbytes;
    if (avail < need)
        return 0;
    uint64_t n = frame_be(p + 1, lenbytes);
    switch (b) {
    case 0xc7: case 0xc8: case 0xc9: /* ext: length + type byte + data */
        *payload = n + 1;
        break;
    case 0xdc: case 0xdd:
        *is_container = 1;
        *elements = n;
        break;
    case 0xde: case 0xdf:
        *is_container = 1;
        *elements = 2 * n;
        break;
    default:
        *payload = n;
    }
    return (int)need;
}

enum frame_status frame_scan(struct frame_scanner *s, const unsigned char *data, size_t len,
                             size_t *object_len)
{
    while (s->pos < len) {
        uint64_t payload, elements;
        int is_container;
        int h = frame_header(data + s->pos, len - s->pos, &payload, &elements, &is_container);
        if (h < 0)
            return FRAME_INVALID;
        if (h == 0 || payload > len - s->pos - (size_t)h)
            return FRAME_INCOMPLETE;
        s->pos += (size_t)h + payload;
        if (is_container && s->depth == FRAME_MAX_DEPTH)
            return FRAME_TOO_DEEP; /* msgpack-c refuses even an empty one here */
        if (is_container && elements > 0) {
            s->remaining[s->depth++] = elements;
            continue;
        }
        /* one element done; close every level it completes */
        while (s->depth > 0 && --s->remaining[s->depth - 1] == 0)
            s->depth--;
        if (s->depth == 0) {
            *object_len = s->pos;
            frame_reset(s);
            return FRAME_COMPLETE;
        }
    }
    return FRAME_INCOMPLETE;
}
