/*
 * mp: msgpack test inputs (see mp.h).
 */
#include "mp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mp_die(const char *what, const char *fmt)
{
    fprintf(stderr, "mp: %s (format \"%s\")\n", what, fmt ? fmt : "");
    exit(2);
}

void mp_init(struct mp *m)
{
    msgpack_sbuffer_init(&m->sbuf);
    msgpack_packer_init(&m->pk, &m->sbuf, msgpack_sbuffer_write);
    msgpack_unpacked_init(&m->unpacked);
}

void mp_reset(struct mp *m)
{
    msgpack_sbuffer_clear(&m->sbuf);
    msgpack_unpacked_destroy(&m->unpacked);
    msgpack_unpacked_init(&m->unpacked);
}

void mp_free(struct mp *m)
{
    msgpack_sbuffer_destroy(&m->sbuf);
    msgpack_unpacked_destroy(&m->unpacked);
}

/* Number of items directly inside the container whose contents start at p,
 * up to its closing bracket. */
static uint32_t mp_count_items(const char *p, const char *fmt)
{
    uint32_t items = 0;
    int depth = 0;
    for (; *p; p++) {
        if (strchr(" :,", *p))
            continue;
        if (*p == '{' || *p == '[') {
            if (depth++ == 0)
                items++;
        } else if (*p == '}' || *p == ']') {
            if (depth-- == 0)
                return items;
        } else if (depth == 0) {
            items++;
        }
    }
    mp_die("unbalanced brackets", fmt);
    return 0;
}

static void mp_vpack(struct mp *m, const char *fmt, va_list ap)
{
    msgpack_packer *pk = &m->pk;
    for (const char *p = fmt; *p; p++) {
        switch (*p) {
        case ' ': case ':': case ',': case ']': case '}':
            break;
        case '{': {
            uint32_t items = mp_count_items(p + 1, fmt);
            if (items % 2 != 0)
                mp_die("a map needs an even number of items", fmt);
            msgpack_pack_map(pk, items / 2);
            break;
        }
        case '[':
            msgpack_pack_array(pk, mp_count_items(p + 1, fmt));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            msgpack_pack_str_with_body(pk, s, strlen(s));
            break;
        }
        case 'S': {
            const char *s = va_arg(ap, const char *);
            size_t len = va_arg(ap, size_t);
            msgpack_pack_str_with_body(pk, s, len);
            break;
        }
        case 'i': msgpack_pack_int64(pk, va_arg(ap, int)); break;
        case 'I': msgpack_pack_int64(pk, va_arg(ap, int64_t)); break;
        case 'U': msgpack_pack_uint64(pk, va_arg(ap, uint64_t)); break;
        case 'd': msgpack_pack_double(pk, va_arg(ap, double)); break;
        case 'f': msgpack_pack_float(pk, (float)va_arg(ap, double)); break;
        case 'b':
            if (va_arg(ap, int))
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
            break;
        case 'n': msgpack_pack_nil(pk); break;
        case 'x': {
            const void *data = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            msgpack_pack_bin_with_body(pk, data, len);
            break;
        }
        case 'e': {
            int type = va_arg(ap, int);
            const void *data = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            msgpack_pack_ext_with_body(pk, data, len, (int8_t)type);
            break;
        }
        case 'T': {
            msgpack_timestamp ts;
            ts.tv_sec = va_arg(ap, int64_t);
            ts.tv_nsec = va_arg(ap, unsigned);
            msgpack_pack_timestamp(pk, &ts);
            break;
        }
        default:
            mp_die("unknown format character", fmt);
        }
    }
}

void mp_pack(struct mp *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_vpack(m, fmt, ap);
    va_end(ap);
}

void mp_raw(struct mp *m, const void *data, size_t len)
{
    msgpack_sbuffer_write(&m->sbuf, data, len);
}

const msgpack_object *mp_unpack(struct mp *m)
{
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack_next(&m->unpacked, m->sbuf.data, m->sbuf.size, &off);
    if (rc != MSGPACK_UNPACK_SUCCESS)
        mp_die("msgpack_unpack_next refused the packed bytes", NULL);
    if (off != m->sbuf.size)
        mp_die("the packed bytes hold more than one object", NULL);
    return &m->unpacked.data;
}

const msgpack_object *mp_build(struct mp *m, const char *fmt, ...)
{
    mp_reset(m);
    va_list ap;
    va_start(ap, fmt);
    mp_vpack(m, fmt, ap);
    va_end(ap);
    return mp_unpack(m);
}

void mp_put_be(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}
