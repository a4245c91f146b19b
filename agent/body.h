/*
 * body: the request body for one attempt at a batch, in the backend's
 * format: PostHog's /batch, {"api_key": ..., "batch": [events],
 * "sent_at": ...}, gzipped when asked.
 *
 * The batch's events are stored already encoded; only sent_at changes
 * between attempts. The format is separate from the transport that carries
 * it (transport.h).
 */
#ifndef TA_BODY_H
#define TA_BODY_H

#include "batch.h"
#include "buf.h"
#include "config.h"

#include <stdint.h>

struct body_format;

/* api_key NULL leaves the key out (a body that is printed, not sent). */
struct body_format *body_format_new(const char *api_key, int gzip);
/* The format cfg asks for: its API key and gzip, except for printed
 * bodies (backend.url = stdout), which show neither. */
struct body_format *body_format_for(const struct config *cfg);
void body_format_free(struct body_format *f);
/* Bytes of an uncompressed body besides the events, at most. */
size_t body_envelope_bytes(const struct body_format *f);
/* The size before compression of the body body_build() made last. */
size_t body_last_plain_bytes(const struct body_format *f);

/* One attempt's request body. Gzipped, it is whole in `own`. Otherwise
 * `own` holds the format's head and the sent_at tail, and the batch's
 * events between them are borrowed, not copied: the batch must outlive
 * the body. */
struct body {
    struct buf own;
    size_t head_len;    /* of own: what goes before the events */
    const char *events; /* NULL: own is the whole body */
    size_t events_len;
};
#define BODY_INIT {BUF_INIT, 0, NULL, 0}

/* Build the body for batch at wall-clock time now_ms into out (emptied
 * first). Returns 0, or -1 when out of memory. */
int body_build(struct body_format *f, const struct batch *batch, int64_t now_ms,
               struct body *out);
size_t body_len(const struct body *b);
/* Copy up to n bytes of the body from offset on into to; returns how many
 * (0 at its end). */
size_t body_read(const struct body *b, size_t offset, void *to, size_t n);
/* Make the body whole, in b->own (the events copied in). Returns 0, or -1
 * when out of memory (b unchanged). */
int body_flatten(struct body *b);
void body_free(struct body *b);

#endif
