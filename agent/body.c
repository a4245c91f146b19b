/*
 * body: PostHog /batch bodies (see body.h).
 */
#include "body.h"

#include "json.h"
#include "timestamp.h"
#include "transport.h"

#include <isa-l/igzip_lib.h>
#include <stdlib.h>
#include <string.h>

/* gzip with ISA-L's igzip at level 1: about four times faster than
 * libdeflate's level 1 on batch JSON, for output a few percent larger. */
#define BODY_GZIP_LEVEL 1
#define BODY_GZIP_LEVEL_BUF ISAL_DEF_LVL1_DEFAULT
#define BODY_SENT_AT_PREFIX "],\"sent_at\":\""
#define BODY_SENT_AT_SUFFIX "\"}"

struct body_gzip { /* allocated at the first body, kept for the next */
    struct isal_zstream stream;
    uint8_t level_buf[BODY_GZIP_LEVEL_BUF];
};

struct body_format {
    struct buf prefix; /* the body up to the first event */
    int gzip;
    struct body_gzip *compressor;
    size_t last_plain; /* bytes of the last body before compression */
};

struct body_format *body_format_new(const char *api_key, int gzip)
{
    struct body_format *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    buf_append_char(&f->prefix, '{');
    if (api_key != NULL) {
        buf_append_str(&f->prefix, "\"api_key\":");
        json_write_string(&f->prefix, api_key, strlen(api_key));
        buf_append_char(&f->prefix, ',');
    }
    buf_append_str(&f->prefix, "\"batch\":[");
    if (f->prefix.failed) {
        body_format_free(f);
        return NULL;
    }
    f->gzip = gzip;
    return f;
}

void body_format_free(struct body_format *f)
{
    if (f == NULL)
        return;
    buf_free(&f->prefix);
    free(f->compressor);
    free(f);
}

size_t body_last_plain_bytes(const struct body_format *f)
{
    return f->last_plain;
}

size_t body_envelope_bytes(const struct body_format *f)
{
    return f->prefix.len + strlen(BODY_SENT_AT_PREFIX) + TIMESTAMP_TEXT_MAX +
           strlen(BODY_SENT_AT_SUFFIX);
}

/* The body in three parts: the prefix, the batch's events as they are
 * stored, and the end with sent_at (written in end, of BODY_END_MAX). */
#define BODY_END_MAX (sizeof BODY_SENT_AT_PREFIX + TIMESTAMP_TEXT_MAX + sizeof BODY_SENT_AT_SUFFIX)

struct body_part {
    const char *data;
    size_t len;
};

static size_t body_parts(const struct body_format *f, const struct batch *batch, int64_t now_ms,
                         char *end, struct body_part parts[3])
{
    struct buf tail = buf_borrow(end, BODY_END_MAX);
    char sent_at[TIMESTAMP_TEXT_MAX + 1];
    size_t sent_at_len = timestamp_format_ms_any(now_ms, sent_at);
    buf_append_str(&tail, BODY_SENT_AT_PREFIX);
    buf_append(&tail, sent_at, sent_at_len);
    buf_append_str(&tail, BODY_SENT_AT_SUFFIX);
    parts[0] = (struct body_part){f->prefix.data, f->prefix.len};
    parts[1] = (struct body_part){batch->events.data, batch->events.len};
    parts[2] = (struct body_part){end, tail.len};
    return parts[0].len + parts[1].len + parts[2].len;
}

/* gzip the parts, one after the other, into out (emptied first): the
 * uncompressed body is never put together. Returns 0, or -1 when out of
 * memory. */
static int body_gzip(struct body_format *f, const struct body_part parts[3], size_t total,
                     struct buf *out)
{
    if (total > UINT32_MAX ||
        (f->compressor == NULL && (f->compressor = malloc(sizeof *f->compressor)) == NULL))
        return -1;
    struct isal_zstream *z = &f->compressor->stream;
    isal_deflate_init(z);
    z->level = BODY_GZIP_LEVEL;
    z->level_buf = f->compressor->level_buf;
    z->level_buf_size = sizeof f->compressor->level_buf;
    z->gzip_flag = IGZIP_GZIP;
    z->flush = NO_FLUSH;
    /* room for deflate's worst case, stored blocks, plus the gzip header
     * and trailer: the whole output, not more for each part */
    size_t capacity = total + total / 16 + 64;
    for (int i = 0; i < 3; i++) {
        z->next_in = (uint8_t *)parts[i].data;
        z->avail_in = (uint32_t)parts[i].len;
        z->end_of_stream = i == 2;
        while (z->avail_in > 0 || (i == 2 && z->internal_state.state != ZSTATE_END)) {
            if (out->len == out->cap && out->cap >= capacity)
                capacity = 2 * out->cap; /* not enough after all */
            if (out->len < capacity && buf_reserve(out, capacity - out->len) < 0)
                return -1;
            size_t avail = out->cap - out->len;
            z->next_out = (uint8_t *)out->data + out->len;
            z->avail_out = avail > UINT32_MAX ? UINT32_MAX : (uint32_t)avail;
            if (isal_deflate(z) != COMP_OK)
                return -1;
            out->len = (size_t)((char *)z->next_out - out->data);
        }
    }
    return 0;
}

int body_build(struct body_format *f, const struct batch *batch, int64_t now_ms,
               struct body *out)
{
    char end[BODY_END_MAX];
    struct body_part parts[3];
    size_t total = body_parts(f, batch, now_ms, end, parts);
    f->last_plain = total;
    buf_rollback(&out->own, 0);
    out->head_len = 0;
    out->events = NULL;
    out->events_len = 0;
    if (f->gzip)
        return body_gzip(f, parts, total, &out->own);
    buf_append(&out->own, parts[0].data, parts[0].len);
    buf_append(&out->own, parts[2].data, parts[2].len);
    out->head_len = parts[0].len;
    out->events = parts[1].len > 0 ? parts[1].data : "";
    out->events_len = parts[1].len;
    return out->own.failed ? -1 : 0;
}

/* The body in the order it is sent: the head, the events, the tail (or
 * all of it in the first part, when it is whole). */
static void body_pieces(const struct body *b, struct body_part parts[3])
{
    const char *own = b->own.data != NULL ? b->own.data : "";
    size_t head = b->events == NULL ? b->own.len : b->head_len;
    parts[0] = (struct body_part){own, head};
    parts[1] = (struct body_part){b->events, b->events_len};
    parts[2] = (struct body_part){own + head, b->own.len - head};
}

size_t body_len(const struct body *b)
{
    return b->own.len + b->events_len;
}

size_t body_read(const struct body *b, size_t offset, void *to, size_t n)
{
    struct body_part parts[3];
    body_pieces(b, parts);
    size_t done = 0;
    for (int i = 0; i < 3 && done < n; i++) {
        if (offset >= parts[i].len) {
            offset -= parts[i].len;
            continue;
        }
        size_t take = parts[i].len - offset < n - done ? parts[i].len - offset : n - done;
        memcpy((char *)to + done, parts[i].data + offset, take);
        done += take;
        offset = 0;
    }
    return done;
}

int body_flatten(struct body *b)
{
    if (b->events == NULL)
        return 0;
    struct buf whole = BUF_INIT;
    if (buf_reserve(&whole, body_len(b)) < 0)
        return -1;
    whole.len = body_read(b, 0, whole.data, body_len(b));
    buf_free(&b->own);
    *b = (struct body)BODY_INIT;
    b->own = whole;
    return 0;
}

void body_free(struct body *b)
{
    buf_free(&b->own);
    *b = (struct body)BODY_INIT;
}

struct body_format *body_format_for(const struct config *cfg)
{
    int to_stdout = transport_is_stdout(cfg);
    return body_format_new(to_stdout ? NULL : cfg->api_key, !to_stdout && cfg->gzip);
}
