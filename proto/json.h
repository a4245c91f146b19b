/*
 * json: primitives for writing JSON text into a buf.
 *
 * Every function produces valid JSON whatever its input: strings are escaped
 * and invalid UTF-8 becomes U+FFFD, non-finite numbers become null, binary
 * data becomes a base64 string. All return 0, or -1 if out of memory.
 */
#ifndef PROTO_JSON_H
#define PROTO_JSON_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

int json_write_string(struct buf *out, const char *s, size_t len);
/* json_write_string, telling in *seen whether s holds a byte whose low
 * seven bits are one of the three characters in watch (for a caller that
 * looks closer only then), in the same pass. */
int json_write_string_watching(struct buf *out, const char *s, size_t len, const char watch[3],
                               int *seen);
/* Whether json_write_string writes s[0..len) as it is, between quotes:
 * all printable ASCII but '"' and '\\'. */
int json_text_is_plain(const char *s, size_t len);
int json_write_base64(struct buf *out, const void *data, size_t len);
/* The shortest text that reads back as the same double (float32: as the
 * same float), always with a fraction or exponent so it stays a float. */
int json_write_double(struct buf *out, double v);
int json_write_float(struct buf *out, float v);
int json_write_int64(struct buf *out, int64_t v);
int json_write_uint64(struct buf *out, uint64_t v);

/* Where JSON text opens and closes objects and arrays (outside strings),
 * one character at a time: start from {0}. */
struct json_nesting {
    int depth, in_string, escaped;
};
/* +1 if c opens an object or array, -1 if it closes one, else 0; depth is
 * kept up to date. */
int json_nesting_step(struct json_nesting *n, char c);

/* Length of the valid UTF-8 sequence starting at s (1-4), or 0 if the bytes
 * at s do not start a valid, shortest-form, non-surrogate sequence. */
size_t json_utf8_sequence_length(const unsigned char *s, size_t avail);
/* Is s[0..len) all valid UTF-8 (written by json_write_string as it is)? */
int json_utf8_is_valid(const char *s, size_t len);

#endif
