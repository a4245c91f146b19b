/*
 * config: the agent's settings, from one table of keys.
 *
 * Each key is declared once in config.c with its type, default, bounds and a
 * one-line description. The same table fills in defaults, parses the INI file
 * (via inih), applies TELEMETRY_AGENT_<SECTION>_<KEY> environment overrides
 * and prints the documented default file (--print-default-config), so none of
 * them can drift from the others.
 */
#ifndef TA_CONFIG_H
#define TA_CONFIG_H

#include "log.h"
#include "props.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum backend_format { BACKEND_FORMAT_POSTHOG };
enum buffer_overflow { OVERFLOW_BLOCK, OVERFLOW_DROP_NEWEST };
enum spool_fsync { FSYNC_ALWAYS, FSYNC_INTERVAL, FSYNC_NEVER };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

struct config {
    /* [agent] */
    int enabled;
    char *socket;
    int64_t socket_mode;
    char *socket_group;
    char *distinct_id;
    int64_t log_level; /* enum log_level */
    int64_t log_format; /* enum log_format */
    int64_t shutdown_grace_ms;
    int64_t watch_config_ms;
    int64_t max_connections;
    int64_t max_message_bytes;
    int64_t idle_timeout_ms;
    int64_t max_pending_reply_bytes;
    int64_t write_timeout_ms;
    char *allowed_uids; /* normalized: numbers separated by commas */
    char *allowed_gids;
    int tag_peer;
    /* [events] */
    char *registry;
    int64_t max_event_bytes;
    /* [batch] */
    int64_t batch_max_events;
    int64_t batch_max_bytes;
    int64_t batch_max_age_ms;
    /* [buffer] */
    int64_t buffer_max_bytes;
    int64_t buffer_overflow; /* enum buffer_overflow */
    /* [spool] */
    char *spool_dir;
    int64_t spool_max_bytes;
    int64_t spool_segment_bytes;
    int64_t spool_fsync; /* enum spool_fsync */
    int64_t spool_fsync_interval_ms;
    /* [relay] */
    char *relay_listen;
    char *relay_path;
    int64_t relay_max_body_bytes;
    int64_t relay_rate_limit;
    int64_t relay_rate_burst;
    char *relay_cors_origins;
    int trust_distinct_id;
    int64_t relay_max_connections;
    int64_t relay_timeout_ms;
    /* [http] */
    char *http_listen;
    int64_t http_ready_max_backlog;
    int64_t http_max_connections;
    int64_t http_timeout_ms;
    /* [backend] */
    char *url;
    int64_t format; /* enum backend_format */
    char *api_key;
    char *api_key_file;
    int gzip;
    char *ca_file;
    int tls_insecure;
    char *proxy;
    int64_t max_in_flight;
    int64_t timeout_ms;
    int64_t timeout_max_ms;
    int64_t retry_initial_ms;
    int64_t retry_max_ms;
    int64_t retry_max_elapsed_ms;
    int64_t retry_after_max_ms;
    int64_t misconfigured_retry_ms;
    /* [privacy] */
    char *privacy_drop_keys;
    char *privacy_hash_keys;
    char *privacy_hash_key;
    char *privacy_hash_key_file;
    char *privacy_redact_values;
    char *privacy_redact_regex;
    /* [forward] */
    char *forward_tag_prefix;
    /* [properties], with $lib and $lib_version */
    struct props_node *properties;
};

#define CONFIG_ERR_LEN 512
#define CONFIG_ENV_PREFIX "TELEMETRY_AGENT_"
#define CONFIG_API_KEY_ENV "TELEMETRY_AGENT_API_KEY"
#define CONFIG_PROPERTY_ENV_PREFIX "TELEMETRY_AGENT_PROPERTY_"

/* Load defaults, then `path` (NULL: defaults only), then the environment
 * `envp` (NULL-terminated "NAME=value" list, or NULL), then check the whole.
 * Returns 0, or -1 with a message naming file, line, key, value and what is
 * allowed in err. On success the caller owns cfg and frees it with
 * config_free(). */
int config_load(struct config *cfg, const char *path, char *const *envp, char *err, size_t errlen);
void config_free(struct config *cfg);

/* One difference found by a reload: section and name of the key (name
 * NULL: the [properties]), its running and its new value as texts (secrets
 * masked; NULL for the properties), and whether it waits for a restart. */
typedef void (*config_change_fn)(void *arg, const char *section, const char *name,
                                 const char *from, const char *to, int needs_restart);

/* Reload: next was just loaded by config_load(). Keys that need a restart
 * keep their running value (fn hears of each that differs); the checks
 * across keys are made again with those values (-1 with a message in err:
 * nothing changed). Then every other changed key, and the properties, move
 * from next into running, and next gets the values they replace: free it
 * with config_free() once nothing points into them any more. Returns the
 * number of settings changed. */
int config_reconcile(struct config *running, struct config *next, config_change_fn fn, void *arg,
                     char *err, size_t errlen);
/* The effective settings of one section, "key=value key=value ...", with
 * secrets and the credentials in URLs shown as ***. Returns out. */
const char *config_describe_section(const struct config *cfg, const char *section, char *out,
                                    size_t outlen);
/* The sections of the key table, in order; NULL after the last. */
const char *config_section(size_t i);
/* url with any user:password@ shown as ***@. Returns out. */
const char *config_mask_url(const char *url, char *out, size_t outlen);

/* Log a warning for each setting that weakens the agent's defences
 * (backend.tls_insecure), at start and after a reload. */
void config_warn_risks(const struct config *cfg);

/* Write the documented default configuration file. */
void config_print_defaults(FILE *out);

#endif
