/*
 * support: JSON checking with jansson, and temporary files, for the unit
 * tests. Failures are reported by return value (and a line on stderr saying
 * why), so the test that called decides what to CHECK.
 */
#ifndef UNIT_SUPPORT_H
#define UNIT_SUPPORT_H

#include "buf.h"
#include "config.h"

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* Parse text as one JSON value of any type, duplicate keys allowed. Returns
 * NULL (after printing jansson's error and the text) if it is not JSON. */
json_t *js_parse(const char *text, size_t len);
/* Same, with extra jansson decoding flags (JSON_REJECT_DUPLICATES, ...). */
json_t *js_parse_flags(const char *text, size_t len, size_t flags);
/* Parse the contents of a buf. */
json_t *js_parse_buf(const struct buf *b);
/* The value at a '/'-separated path of object keys and array indexes, e.g.
 * "properties/app/version" or "batch/0/uuid"; NULL if any step is missing. */
json_t *js_at(json_t *root, const char *path);
/* encode_value(obj) into a fresh buffer, then js_parse. NULL if encoding
 * failed or the output is not JSON. */
json_t *js_encode_value(const msgpack_object *obj);

/* NULL if text is a lower-case UUIDv7 (RFC 9562: version 7, variant 10)
 * whose first 48 bits are `ms`; otherwise what is wrong with it. */
const char *uuid_v7_problem(const char *text, int64_t ms);

/* Create a temporary file holding `contents`. Returns its path (free it with
 * tmp_file_remove), or NULL. */
char *tmp_file(const char *contents);
void tmp_file_remove(char *path);
/* Remove the directory dir and everything in it. Returns 0 when it is
 * gone, -1 otherwise: CHECK it. */
int tmp_dir_remove(const char *dir);
/* The default configuration with env (NULL-terminated "NAME=value") over
 * it, the counters zeroed. Returns 1, or 0 (saying why on stderr): CHECK it. */
int fresh_config(struct config *cfg, char **env);
/* A registry loaded from a temporary file holding `names` (one a line), or
 * NULL (after saying why on stderr). */
struct registry *registry_from_names(const char *names);

#endif
