/*
 * body: PostHog /batch bodies (see body.h).
 */
#include "body.h"

#include "json.h"
#include "timestamp.h"
#include "transport.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#define BODY_GZIP_LEVEL 1
#define BODY_SENT_AT_PREFIX "],\"sent_at\":\""
#define BODY_SENT_AT_SUFFIX "\"}"

struct body_format {
    struct buf prefix; /* the body up to the first event */
    struct libdeflate_compressor *gzip;
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
    if (f->prefix.failed ||
        (gzip && (f->gzip = libdeflate_alloc_compressor(BODY_GZIP_LEVEL)) == NULL)) {
        body_format_free(f);
        return NULL;
    }
    return f;
}

void body_format_free(struct body_format *f)
{
    if (f == NULL)
        return;
    buf_free(&f->prefix);
    buf_free(&f->plain);
    if (f->gzip != NULL)
        libdeflate_free_compressor(f->gzip);
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

int body_build(struct body_format *f, const struct batch *batch, int64_t now_ms, struct buf *out)
{
    buf_rollback(out, 0);
    if (f->gzip == NULL) {
        body_write_plain(f, batch, now_ms, out);
        f->last_plain = out->len;
        return out->failed ? -1 : 0;
    }
    buf_rollback(&f->plain, 0);
    body_write_plain(f, batch, now_ms, &f->plain);
    if (f->plain.failed)
        return -1;
    f->last_plain = f->plain.len;
    size_t bound = libdeflate_gzip_compress_bound(f->gzip, f->plain.len);
    if (buf_reserve(out, bound) < 0)
        return -1;
    out->len = libdeflate_gzip_compress(f->gzip, f->plain.data, f->plain.len, out->data, bound);
    return out->len > 0 ? 0 : -1;
}

struct body_format *body_format_for(const struct config *cfg)
{
    int to_stdout = transport_is_stdout(cfg);
    return body_format_new(to_stdout ? NULL : cfg->api_key, !to_stdout && cfg->gzip);
}
