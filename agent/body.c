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
    struct buf plain;  /* reused between attempts when gzipping */
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
    buf_free(&f->plain);
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

static void body_write_plain(const struct body_format *f, const struct batch *batch,
                             int64_t now_ms, struct buf *out)
{
    char sent_at[TIMESTAMP_TEXT_MAX + 1];
    size_t sent_at_len = timestamp_format_ms_any(now_ms, sent_at);
    buf_reserve(out, f->prefix.len + batch->events.len + body_envelope_bytes(f));
    buf_append(out, f->prefix.data, f->prefix.len);
    buf_append(out, batch->events.data, batch->events.len);
    buf_append_str(out, BODY_SENT_AT_PREFIX);
    buf_append(out, sent_at, sent_at_len);
    buf_append_str(out, BODY_SENT_AT_SUFFIX);
}

/* gzip plain into out (emptied first). Returns 0, or -1 when out of memory. */
static int body_gzip(struct body_format *f, const struct buf *plain, struct buf *out)
{
    if (f->compressor == NULL && (f->compressor = malloc(sizeof *f->compressor)) == NULL)
        return -1;
    struct isal_zstream *z = &f->compressor->stream;
    isal_deflate_init(z);
    z->level = BODY_GZIP_LEVEL;
    z->level_buf = f->compressor->level_buf;
    z->level_buf_size = sizeof f->compressor->level_buf;
    z->gzip_flag = IGZIP_GZIP;
    z->end_of_stream = 1;
    z->flush = NO_FLUSH;
    z->next_in = (uint8_t *)plain->data;
    z->avail_in = (uint32_t)plain->len;
    /* deflate's worst case, stored blocks, plus the gzip header and trailer */
    size_t room = plain->len + plain->len / 16 + 64;
    while (z->internal_state.state != ZSTATE_END) {
        if (buf_reserve(out, room) < 0)
            return -1;
        size_t avail = out->cap - out->len;
        z->next_out = (uint8_t *)out->data + out->len;
        z->avail_out = avail > UINT32_MAX ? UINT32_MAX : (uint32_t)avail;
        if (isal_deflate(z) != COMP_OK)
            return -1;
        out->len = (size_t)((char *)z->next_out - out->data);
        room = out->cap; /* not enough after all: double it */
    }
    return 0;
}

int body_build(struct body_format *f, const struct batch *batch, int64_t now_ms, struct buf *out)
{
    buf_rollback(out, 0);
    if (!f->gzip) {
        body_write_plain(f, batch, now_ms, out);
        f->last_plain = out->len;
        return out->failed ? -1 : 0;
    }
    buf_rollback(&f->plain, 0);
    body_write_plain(f, batch, now_ms, &f->plain);
    if (f->plain.failed || f->plain.len > UINT32_MAX)
        return -1;
    f->last_plain = f->plain.len;
    return body_gzip(f, &f->plain, out);
}

struct body_format *body_format_for(const struct config *cfg)
{
    int to_stdout = transport_is_stdout(cfg);
    return body_format_new(to_stdout ? NULL : cfg->api_key, !to_stdout && cfg->gzip);
}
