/*
 * privacy: a last line of defence for personal data in event properties,
 * the [privacy] rules applied while each event is encoded:
 *
 *   drop_keys      keys matching a glob pattern (any depth, inside maps and
 *                  arrays, case-insensitive) are left out
 *   hash_keys      values of matching keys are replaced by their
 *                  HMAC-SHA256 under privacy.hash_key, in lowercase hex:
 *                  joinable across events, unreadable
 *   redact_values  e-mail addresses, IPv4 and IPv6 addresses inside string
 *                  values are replaced by "[redacted]"
 *   redact_regex   so is whatever a POSIX extended regular expression
 *                  matches
 *
 * Every action is counted per rule. Without rules there is no privacy
 * object and the encoder does no work for it.
 */
#ifndef TA_PRIVACY_H
#define TA_PRIVACY_H

#include "buf.h"
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#define PRIVACY_REDACTED "[redacted]"

enum privacy_action { PRIVACY_KEEP, PRIVACY_DROP, PRIVACY_HASH };

struct privacy;

/* The rules cfg sets; NULL when there are none (err "") or on failure
 * (err says why: only out of memory, as config_load checked the rest).
 * Counts of rules that were in `previous` carry on. */
struct privacy *privacy_new(const struct config *cfg, const struct privacy *previous, char *err,
                            size_t errlen);
void privacy_free(struct privacy *p);

/* What to do with the value of key (len bytes). *plain is 1 when key is
 * known to be JSON text as it is (json_text_is_plain: a key seen before,
 * kept with what its rule is), else 0. */
enum privacy_action privacy_key(struct privacy *p, const char *key, size_t len, int *plain);
/* Append the JSON string of the HMAC of data. */
void privacy_write_hash(const struct privacy *p, struct buf *out, const void *data, size_t len);
/* Append s as a JSON string with what the redaction rules match replaced. */
void privacy_write_string(struct privacy *p, struct buf *out, const char *s, size_t len);
/* Whether strings need privacy_write_string (any redaction rule). */
int privacy_redacts(const struct privacy *p);

/* Each rule ("drop_keys *password*", "redact_values email", ...) and how
 * often it acted. */
void privacy_each_count(const struct privacy *p,
                        void (*fn)(void *arg, const char *rule, uint64_t count), void *arg);

/* Checks for config_load: the value names of redact_values (allowed: email,
 * ipv4, ipv6) and the regular expression. Returns 0, or -1 with a message. */
int privacy_check_redactions(const char *values, const char *regex, char *err, size_t errlen);

#endif
