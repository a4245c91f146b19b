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
/* Build the body for batch at wall-clock time now_ms into out (emptied
 * first). Returns 0, or -1 when out of memory. */
int body_build(struct body_format *f, const struct batch *batch, int64_t now_ms, struct buf *out);

#endif
