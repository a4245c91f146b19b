/*
 * config: one table of keys drives defaults, INI parsing, environment
 * overrides and the documented default file (see config.h).
 *
 * To add a setting: add a field to struct config and one row to config_keys.
 * Errors name the source (file and line, or environment variable), the key,
 * the value (never for secrets) and what is allowed.
 */
#include "config.h"

#include "httpd.h"
#include "peer.h"
#include "privacy.h"

#include "version.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum config_type { CT_BOOL, CT_INT, CT_BYTES, CT_MODE, CT_STRING, CT_CHOICE };

#define CK_SECRET 1u  /* never echo the value */
#define CK_RESTART 2u /* a reload keeps the running value: it takes effect at restart */

struct config_key {
    const char *section;
    const char *name;
    enum config_type type;
    size_t offset;
    const char *default_text;
    int64_t min, max;
    const char *const *choices; /* CT_CHOICE: NULL-terminated names, stored as the index */
    unsigned flags;             /* CK_SECRET, CK_RESTART */
    const char *doc;
};

static const char *const config_log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const config_formats[] = {"posthog", NULL};
static const char *const config_overflows[] = {"block", "drop_newest", NULL};
static const char *const config_fsyncs[] = {"always", "interval", "never", NULL};
static const char *const config_log_formats[] = {"text", "json", NULL};

#define KIB INT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define HOUR_MS INT64_C(3600000)
#define OFF(field) offsetof(struct config, field)

static const struct config_key config_keys[] = {
    {"agent", "enabled", CT_BOOL, OFF(enabled), "true", 0, 0, NULL, 0,
     "false accepts and discards every event and never contacts the backend"},
    {"agent", "socket", CT_STRING, OFF(socket), "/run/telemetry/agent.sock", 0, 0, NULL, CK_RESTART,
     "Unix stream socket producers write msgpack events to; its directory is created"},
    {"agent", "socket_mode", CT_MODE, OFF(socket_mode), "0660", 0, 0777, NULL, CK_RESTART,
     "permissions of the socket file (octal)"},
    {"agent", "socket_group", CT_STRING, OFF(socket_group), "", 0, 0, NULL, CK_RESTART,
     "group owning the socket file (name or number); empty keeps the agent's group"},
    {"agent", "distinct_id", CT_STRING, OFF(distinct_id), "", 0, 0, NULL, 0,
     "distinct_id of events that carry none; empty means this host's name"},
    {"agent", "log_level", CT_CHOICE, OFF(log_level), "info", 0, 0, config_log_levels, 0,
     "least severe level logged to stderr"},
    {"agent", "log_format", CT_CHOICE, OFF(log_format), "text", 0, 0, config_log_formats, 0,
     "text lines, or json: one object a line ({\"ts\", \"level\", \"msg\"}) for log "
     "collectors"},
    {"agent", "shutdown_grace_ms", CT_INT, OFF(shutdown_grace_ms), "10000", 0, HOUR_MS, NULL, 0,
     "on SIGTERM/SIGINT, how long to keep delivering buffered events before exiting"},
    {"agent", "watch_config_ms", CT_INT, OFF(watch_config_ms), "0", 0, HOUR_MS, NULL, 0,
     "look at the config file, backend.api_key_file and events.registry this often and reload "
     "when one of them changed, as on SIGHUP (a mounted ConfigMap or Secret changes in place); "
     "0: reload only on SIGHUP"},
    {"agent", "max_connections", CT_INT, OFF(max_connections), "1024", 1, 65536, NULL, CK_RESTART,
     "producer connections served at once; more are closed on accept"},
    {"agent", "idle_timeout_ms", CT_INT, OFF(idle_timeout_ms), "30000", 100, HOUR_MS, NULL, 0,
     "a connection that holds part of a message and completes none for this long is closed "
     "(error timeout); one idle between messages stays open"},
    {"agent", "max_pending_reply_bytes", CT_BYTES, OFF(max_pending_reply_bytes), "65536", 1 * KIB,
     64 * MIB, NULL, 0, "acknowledgements a producer has not read yet; past this its connection "
     "is not read until it reads them"},
    {"agent", "write_timeout_ms", CT_INT, OFF(write_timeout_ms), "30000", 100, HOUR_MS, NULL, 0,
     "a producer that reads none of its pending acknowledgements for this long is closed"},
    {"agent", "allowed_uids", CT_STRING, OFF(allowed_uids), "", 0, 0, NULL, 0,
     "users (names or numbers, separated by commas) whose processes may write to the socket, "
     "checked with SO_PEERCRED on accept; with allowed_gids empty too, anyone who can open it"},
    {"agent", "allowed_gids", CT_STRING, OFF(allowed_gids), "", 0, 0, NULL, 0,
     "groups (names or numbers) whose members may write, by their group or a supplementary "
     "one; others are closed with error not_allowed and counted"},
    {"agent", "tag_peer", CT_BOOL, OFF(tag_peer), "false", 0, 0, NULL, 0,
     "add the producer's uid, gid and process name ($peer_uid, $peer_gid, $peer_comm) to each "
     "event's properties, over any the producer set"},
    {"agent", "max_message_bytes", CT_BYTES, OFF(max_message_bytes), "1048576", 1 * KIB, 64 * MIB,
     NULL,
     CK_RESTART, "largest single msgpack message; a connection sending a larger one is closed"},
    {"events", "registry", CT_STRING, OFF(registry), TELEMETRY_EVENTS_FILE, 0, 0, NULL, 0,
     "file of allowed event names, one a line; empty allows any name"},
    {"events", "max_event_bytes", CT_BYTES, OFF(max_event_bytes), "32768", 256, 16 * MIB, NULL, 0,
     "largest encoded (JSON) event accepted; larger ones are rejected"},
    {"forward", "tag_prefix", CT_STRING, OFF(forward_tag_prefix), "", 0, 0, NULL, 0,
     "Fluent Forward messages: stripped from the tag to name a record that has no 'event' key"},
    {"privacy", "drop_keys", CT_STRING, OFF(privacy_drop_keys),
     "*password*, *passwd*, *secret*, *token*, *api_key*, *apikey*, authorization, cookie, "
     "email", 0, 0, NULL, 0,
     "property keys left out of every event, at any depth (inside maps and arrays): glob "
     "patterns, case-insensitive, separated by commas; empty: none"},
    {"privacy", "hash_keys", CT_STRING, OFF(privacy_hash_keys), "", 0, 0, NULL, 0,
     "property keys (patterns as drop_keys) whose values are replaced by their HMAC-SHA256 "
     "under hash_key, in lowercase hex: joinable, unreadable"},
    {"privacy", "hash_key", CT_STRING, OFF(privacy_hash_key), "", 0, 0, NULL, CK_SECRET,
     "the HMAC key for hash_keys, at least 16 bytes; or hash_key_file"},
    {"privacy", "hash_key_file", CT_STRING, OFF(privacy_hash_key_file), "", 0, 0, NULL, 0,
     "file holding hash_key (surrounding whitespace ignored)"},
    {"privacy", "redact_values", CT_STRING, OFF(privacy_redact_values), "email, ipv4, ipv6", 0, 0,
     NULL, 0, "what is replaced by [redacted] inside string values: email, ipv4, ipv6 "
     "(separated by commas); empty: nothing"},
    {"privacy", "redact_regex", CT_STRING, OFF(privacy_redact_regex), "", 0, 0, NULL, 0,
     "and whatever this POSIX extended regular expression matches (alternatives with |)"},
    {"batch", "max_events", CT_INT, OFF(batch_max_events), "500", 1, 100000, NULL, 0,
     "a batch is sealed when it holds this many events"},
    {"batch", "max_bytes", CT_BYTES, OFF(batch_max_bytes), "524288", 1 * KIB, 64 * MIB, NULL, 0,
     "... or when its JSON body would exceed this many bytes"},
    {"batch", "max_age_ms", CT_INT, OFF(batch_max_age_ms), "1000", 1, HOUR_MS, NULL, 0,
     "... or this long after its first event arrived"},
    {"buffer", "max_bytes", CT_BYTES, OFF(buffer_max_bytes), "8388608", 64 * KIB, 64 * GIB, NULL,
     CK_RESTART, "memory for undelivered events: batches and the request bodies made of them"},
    {"buffer", "overflow", CT_CHOICE, OFF(buffer_overflow), "block", 0, 0, config_overflows,
     CK_RESTART,
     "when it is full: block stops reading producers until there is room again; drop_newest "
     "drops new events (counted as buffer_full)"},
    {"spool", "dir", CT_STRING, OFF(spool_dir), "", 0, 0, NULL, CK_RESTART,
     "directory of the disk spool (created, one agent each): accepted events are written "
     "there before they are acknowledged and kept until the backend confirms them; empty "
     "keeps them in memory only (to turn it on: dir = /var/lib/telemetry-agent/spool)"},
    {"spool", "max_bytes", CT_BYTES, OFF(spool_max_bytes), "1073741824", 1 * MIB, 1024 * GIB,
     NULL, CK_RESTART, "disk for undelivered events; when it is full buffer.overflow applies"},
    {"spool", "segment_bytes", CT_BYTES, OFF(spool_segment_bytes), "16777216", 64 * KIB,
     1 * GIB, NULL,
     CK_RESTART, "size of each spool file; a file is deleted once all of it is delivered"},
    {"spool", "fsync", CT_CHOICE, OFF(spool_fsync), "interval", 0, 0, config_fsyncs, CK_RESTART,
     "when acknowledged events are forced to disk: always (each write, before its acks), "
     "interval (every fsync_interval_ms, acks wait for it) or never (acks after the write: "
     "safe against a crash of the agent, not of the machine)"},
    {"spool", "fsync_interval_ms", CT_INT, OFF(spool_fsync_interval_ms), "50", 1, 60000, NULL,
     CK_RESTART,
     "with fsync = interval: the longest an acknowledgement waits for the disk"},
    {"relay", "listen", CT_STRING, OFF(relay_listen), "", 0, 0, NULL, CK_RESTART,
     "HOST:PORT where browsers POST events (the relay); empty turns it off"},
    {"relay", "path", CT_STRING, OFF(relay_path), "/analytics", 0, 0, NULL, CK_RESTART,
     "the relay's path"},
    {"relay", "max_body_bytes", CT_BYTES, OFF(relay_max_body_bytes), "65536", 1 * KIB, 16 * MIB,
     NULL,
     CK_RESTART, "largest request body (413 past it); a gzip body may inflate to 16 times this"},
    {"relay", "rate_limit", CT_INT, OFF(relay_rate_limit), "50", 0, 1000000, NULL, CK_RESTART,
     "events a second from one client address (429 past it); 0: no limit"},
    {"relay", "rate_burst", CT_INT, OFF(relay_rate_burst), "200", 1, 1000000, NULL, CK_RESTART,
     "events one client address may send at once before rate_limit applies"},
    {"relay", "cors_origins", CT_STRING, OFF(relay_cors_origins), "", 0, 0, NULL, CK_RESTART,
     "origins (scheme://host[:port], separated by spaces or commas) whose pages may send "
     "events; empty: only pages served from the relay's own origin"},
    {"relay", "trust_distinct_id", CT_BOOL, OFF(trust_distinct_id), "false", 0, 0, NULL, CK_RESTART,
     "take a browser's distinct_id; false gives its events the agent's"},
    {"relay", "max_connections", CT_INT, OFF(relay_max_connections), "256", 1, 65536, NULL,
     CK_RESTART,
     "browser connections at once; more wait until one closes"},
    {"relay", "timeout_ms", CT_INT, OFF(relay_timeout_ms), "10000", 100, HOUR_MS, NULL, CK_RESTART,
     "a browser connection that takes longer to send its request, or stays idle, is closed"},
    {"http", "listen", CT_STRING, OFF(http_listen), "0.0.0.0:9464", 0, 0, NULL, CK_RESTART,
     "HOST:PORT of the operator endpoints (/metrics, /healthz, /readyz, /status); empty "
     "turns them off"},
    {"http", "ready_max_backlog", CT_INT, OFF(http_ready_max_backlog), "0", 0, INT64_C(1) << 40,
     NULL, 0, "/readyz answers 503 while more events than this wait for the backend; 0: never"},
    {"http", "max_connections", CT_INT, OFF(http_max_connections), "64", 1, 4096, NULL, CK_RESTART,
     "connections to the operator endpoints at once; more wait until one closes"},
    {"http", "timeout_ms", CT_INT, OFF(http_timeout_ms), "10000", 100, HOUR_MS, NULL, CK_RESTART,
     "an operator connection that takes longer to send its request, or stays idle, is closed"},
    {"backend", "url", CT_STRING, OFF(url), "stdout", 0, 0, NULL, 0,
     "http:// or https:// URL batches are POSTed to; stdout prints each batch as a line"},
    {"backend", "format", CT_CHOICE, OFF(format), "posthog", 0, 0, config_formats, 0,
     "request body format: posthog (/batch API: api_key, batch, sent_at)"},
    {"backend", "api_key", CT_STRING, OFF(api_key), "", 0, 0, NULL, CK_SECRET,
     "project API key; or use api_key_file or the TELEMETRY_AGENT_API_KEY environment variable"},
    {"backend", "api_key_file", CT_STRING, OFF(api_key_file), "", 0, 0, NULL, 0,
     "file holding the API key (surrounding whitespace ignored)"},
    {"backend", "gzip", CT_BOOL, OFF(gzip), "true", 0, 0, NULL, 0,
     "gzip request bodies (Content-Encoding: gzip)"},
    {"backend", "ca_file", CT_STRING, OFF(ca_file), "", 0, 0, NULL, 0,
     "PEM file of the certificate authorities to trust for https:// (a private CA); empty: "
     "the system's"},
    {"backend", "tls_insecure", CT_BOOL, OFF(tls_insecure), "false", 0, 0, NULL, 0,
     "do not verify the backend's certificate or name (logged as a warning; for tests only)"},
    {"backend", "proxy", CT_STRING, OFF(proxy), "", 0, 0, NULL, 0,
     "proxy URL (http://, https://, socks5://; credentials are masked in logs); empty: "
     "curl's environment variables (https_proxy, HTTPS_PROXY, http_proxy, no_proxy)"},
    {"backend", "max_in_flight", CT_INT, OFF(max_in_flight), "4", 1, 64, NULL, 0,
     "requests to the backend at once"},
    {"backend", "timeout_ms", CT_INT, OFF(timeout_ms), "15000", 100, HOUR_MS, NULL, 0,
     "a request not answered within this time fails and is retried"},
    {"backend", "timeout_max_ms", CT_INT, OFF(timeout_max_ms), "120000", 100, HOUR_MS, NULL, 0,
     "after a timeout the next request may wait twice as long, up to this"},
    {"backend", "retry_initial_ms", CT_INT, OFF(retry_initial_ms), "500", 1, HOUR_MS, NULL, 0,
     "first retry delay; each later one may double, with full jitter"},
    {"backend", "retry_max_ms", CT_INT, OFF(retry_max_ms), "30000", 1, HOUR_MS, NULL, 0,
     "longest retry delay (a Retry-After header may ask for more)"},
    {"backend", "retry_max_elapsed_ms", CT_INT, OFF(retry_max_elapsed_ms), "0", 0, 30 * 24 * HOUR_MS,
     NULL, 0, "drop a batch still failing this long after its first attempt; 0 retries forever"},
    {"backend", "retry_after_max_ms", CT_INT, OFF(retry_after_max_ms), "300000", 0, HOUR_MS, NULL,
     0, "longest pause a Retry-After header may impose on the backend"},
    {"backend", "misconfigured_retry_ms", CT_INT, OFF(misconfigured_retry_ms), "30000", 100,
     HOUR_MS, NULL, 0, "after 401, 403, 404 or 407 (a wrong key or URL): batches are kept and "
     "retried this often"},
};

#define CONFIG_NKEYS (sizeof config_keys / sizeof config_keys[0])
#define CONFIG_PROPERTIES "properties"

static int64_t *config_int_field(struct config *cfg, const struct config_key *k)
{
    return (int64_t *)((char *)cfg + k->offset);
}

static char **config_string_field(struct config *cfg, const struct config_key *k)
{
    return (char **)((char *)cfg + k->offset);
}

/* Parse a whole decimal (or, for modes, octal) integer with an optional
 * binary size suffix, which may follow a space ("64MiB", "64 MiB").
 * Returns 0 or -1. */
static int config_parse_integer(const char *text, int base, int allow_suffix, int64_t *out)
{
    static const struct { const char *s; int64_t m; } suffixes[] = {
        {"KiB", KIB}, {"K", KIB}, {"k", KIB}, {"MiB", MIB}, {"M", MIB}, {"GiB", GIB}, {"G", GIB},
    };
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, base);
    if (end == text || errno != 0 || !isdigit((unsigned char)end[-1]))
        return -1;
    int64_t mult = 1;
    const char *suffix = end;
    while (allow_suffix && (*suffix == ' ' || *suffix == '\t'))
        suffix++;
    if (allow_suffix && *suffix != '\0') {
        size_t i;
        for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
            if (strcmp(suffix, suffixes[i].s) == 0)
                break;
        if (i == sizeof suffixes / sizeof suffixes[0])
            return -1;
        mult = suffixes[i].m;
        end = (char *)suffix + strlen(suffixes[i].s);
    }
    if (*end != '\0' || v > INT64_MAX / mult || v < INT64_MIN / mult)
        return -1;
    *out = (int64_t)v * mult;
    return 0;
}

/* Describe what key k accepts, for error messages. */
static void config_describe_allowed(const struct config_key *k, char *out, size_t outlen)
{
    switch (k->type) {
    case CT_BOOL:
        snprintf(out, outlen, "true, false, yes, no, on, off, 1 or 0");
        break;
    case CT_INT:
        snprintf(out, outlen, "a whole number from %" PRId64 " to %" PRId64, k->min, k->max);
        break;
    case CT_BYTES:
        snprintf(out, outlen,
                 "a byte count from %" PRId64 " to %" PRId64 ", optionally followed by KiB, MiB "
                 "or GiB (or K, M, G: also powers of 1024), e.g. 64MiB or 64 MiB",
                 k->min, k->max);
        break;
    case CT_MODE:
        snprintf(out, outlen, "an octal mode from 0000 to 0777");
        break;
    case CT_STRING:
        snprintf(out, outlen, "text");
        break;
    case CT_CHOICE: {
        size_t n = 0;
        for (int i = 0; k->choices[i]; i++)
            n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%s%s", i ? ", " : "",
                                  k->choices[i]);
        break;
    }
    }
}

static int config_parse_bool(const char *text, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(text, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

/* Store `text` into the field of key k. Returns 0, or -1 if the value is not
 * allowed (nothing stored). */
static int config_set(struct config *cfg, const struct config_key *k, const char *text)
{
    int64_t v;
    switch (k->type) {
    case CT_BOOL:
        return config_parse_bool(text, (int *)((char *)cfg + k->offset));
    case CT_INT:
    case CT_BYTES:
    case CT_MODE:
        if (config_parse_integer(text, k->type == CT_MODE ? 8 : 10, k->type == CT_BYTES, &v) < 0 ||
            v < k->min || v > k->max)
            return -1;
        *config_int_field(cfg, k) = v;
        return 0;
    case CT_STRING: {
        char *copy = strdup(text);
        if (copy == NULL)
            return -1;
        free(*config_string_field(cfg, k));
        *config_string_field(cfg, k) = copy;
        return 0;
    }
    case CT_CHOICE:
        for (int i = 0; k->choices[i]; i++) {
            if (strcmp(text, k->choices[i]) == 0) {
                *config_int_field(cfg, k) = i;
                return 0;
            }
        }
        return -1;
    }
    return -1;
}

static const struct config_key *config_find(const char *section, const char *name)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].name, name) == 0)
            return &config_keys[i];
    return NULL;
}

static int config_is_section(const char *section)
{
    if (strcmp(section, CONFIG_PROPERTIES) == 0)
        return 1;
    for (size_t i = 0; i < CONFIG_NKEYS; i++)
        if (strcmp(config_keys[i].section, section) == 0)
            return 1;
    return 0;
}

/* "agent, events, batch, buffer, backend, properties" or the keys of a section. */
static void config_list(const char *section, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const char *item;
        if (section != NULL) {
            if (strcmp(config_keys[i].section, section) != 0)
                continue;
            item = config_keys[i].name;
        } else {
            if (i > 0 && strcmp(config_keys[i - 1].section, config_keys[i].section) == 0)
                continue;
            item = config_keys[i].section;
        }
        n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%s%s", n ? ", " : "", item);
    }
    if (section == NULL)
        snprintf(out + n, n < outlen ? outlen - n : 0, ", %s", CONFIG_PROPERTIES);
}

/* State shared by the inih callbacks while one file is parsed. */
struct config_parse {
    struct config *cfg;
    const char *path;
    FILE *file;
    int line;
    unsigned char seen[CONFIG_NKEYS];
    char *err;
    size_t errlen;
    int failed;
};

static void config_fail(struct config_parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void config_fail(struct config_parse *p, const char *fmt, ...)
{
    if (p->failed)
        return; /* keep the first error */
    p->failed = 1;
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->path, p->line);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->errlen)
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Reader for ini_parse_stream: counts lines and checks section headers, so
 * that an unknown section is an error even when it holds no keys. */
static char *config_read_line(char *line, int size, void *arg)
{
    struct config_parse *p = arg;
    if (fgets(line, size, p->file) == NULL)
        return NULL;
    p->line++;
    const char *s = line;
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(line);
    if (len > 0 && line[len - 1] != '\n' && !feof(p->file)) {
        /* longer than inih can hold: skip the rest, which is fine for a comment */
        int c;
        while ((c = fgetc(p->file)) != EOF && c != '\n')
            ;
        if (*s != ';' && *s != '#')
            config_fail(p, "line longer than %d bytes (allowed: at most %d bytes a line)",
                        size - 2, size - 2);
        line[0] = '\0';
        return line;
    }
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (end != NULL) {
            char section[64];
            snprintf(section, sizeof section, "%.*s", (int)(end - s - 1), s + 1);
            if (!config_is_section(section)) {
                char all[256];
                config_list(NULL, all, sizeof all);
                config_fail(p, "unknown section [%s] (allowed: %s)", section, all);
            }
        }
    }
    return line;
}

static void config_value_error(char *err, size_t errlen, const char *where,
                               const struct config_key *k, const char *value)
{
    char allowed[256];
    config_describe_allowed(k, allowed, sizeof allowed);
    snprintf(err, errlen, "%s[%s] %s = '%s' is not allowed (allowed: %s)", where, k->section,
             k->name, k->flags & CK_SECRET ? "(hidden)" : value, allowed);
}

static int config_ini_handler(void *arg, const char *section, const char *name, const char *value)
{
    struct config_parse *p = arg;
    if (p->failed)
        return 1;
    if (strcmp(section, CONFIG_PROPERTIES) == 0) {
        char msg[CONFIG_ERR_LEN];
        if (props_add(p->cfg->properties, name, value, msg, sizeof msg) < 0)
            config_fail(p, "[properties] %s", msg);
        return 1;
    }
    if (!config_is_section(section))
        return 1; /* already reported by config_read_line */
    const struct config_key *k = config_find(section, name);
    if (k == NULL) {
        char keys[512];
        config_list(section, keys, sizeof keys);
        config_fail(p, "unknown key '%s' in [%s] (allowed: %s)", name, section, keys);
        return 1;
    }
    size_t idx = (size_t)(k - config_keys);
    if (p->seen[idx]++) {
        config_fail(p, "[%s] %s is set twice (allowed: each key once; continuation lines are "
                    "not supported)", section, name);
        return 1;
    }
    if (config_set(p->cfg, k, value) < 0) {
        char where[300];
        snprintf(where, sizeof where, "%s:%d: ", p->path, p->line);
        p->failed = 1;
        config_value_error(p->err, p->errlen, where, k, value);
    }
    return 1;
}

static int config_parse_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    struct config_parse p = {.cfg = cfg, .path = path, .err = err, .errlen = errlen};
    p.file = fopen(path, "r");
    if (p.file == NULL) {
        snprintf(err, errlen, "%s: cannot open config file: %s", path, strerror(errno));
        return -1;
    }
    int rc = ini_parse_stream(config_read_line, &p, config_ini_handler, &p);
    fclose(p.file);
    if (!p.failed && rc > 0) {
        p.line = rc;
        config_fail(&p, "not an INI line (allowed: [section], key = value, or a ; comment)");
    }
    return p.failed ? -1 : 0;
}

/* Environment name of key k: TELEMETRY_AGENT_BATCH_MAX_EVENTS. */
static void config_env_name(const struct config_key *k, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s_%s", CONFIG_ENV_PREFIX, k->section, k->name);
    for (int i = 0; i < n && (size_t)i < outlen; i++)
        out[i] = (char)toupper((unsigned char)out[i]);
}

/* Variables Kubernetes sets for a Service whose name starts with
 * "telemetry-agent" (TELEMETRY_AGENT_SERVICE_HOST, TELEMETRY_AGENT_PORT,
 * TELEMETRY_AGENT_PORT_9464_TCP_ADDR, ...): not settings, and left alone. */
static int config_is_service_link(const char *name, size_t len)
{
    char text[160];
    snprintf(text, sizeof text, "%.*s", (int)len, name);
    if (strstr(text, "_SERVICE_HOST") != NULL || strstr(text, "_SERVICE_PORT") != NULL)
        return 1;
    if (len >= 5 && memcmp(name + len - 5, "_PORT", 5) == 0)
        return 1;
    const char *port = strstr(text, "_PORT_");
    if (port == NULL || !isdigit((unsigned char)port[6]))
        return 0;
    const char *p = port + 6;
    while (isdigit((unsigned char)*p))
        p++;
    return strncmp(p, "_TCP", 4) == 0 || strncmp(p, "_UDP", 4) == 0 || strncmp(p, "_SCTP", 5) == 0;
}

/* TELEMETRY_AGENT_PROPERTY_<NAME>=dotted.key=value: one [properties] entry. */
static int config_env_property(struct config *cfg, const char *var, size_t name_len,
                               const char *value, char *err, size_t errlen)
{
    const char *eq = strchr(value, '=');
    char key[256], msg[CONFIG_ERR_LEN];
    if (eq == NULL || eq == value || (size_t)(eq - value) >= sizeof key) {
        snprintf(err, errlen, "environment %.*s: '%s' is not allowed (allowed: key=value, the "
                 "key as in [properties], e.g. app_properties.version=v1)", (int)name_len, var,
                 value);
        return -1;
    }
    snprintf(key, sizeof key, "%.*s", (int)(eq - value), value);
    if (props_set(cfg->properties, key, eq + 1, msg, sizeof msg) < 0) {
        snprintf(err, errlen, "environment %.*s: %s", (int)name_len, var, msg);
        return -1;
    }
    return 0;
}

static int config_apply_env(struct config *cfg, char *const *envp, char *err, size_t errlen)
{
    const size_t prefix_len = strlen(CONFIG_ENV_PREFIX);
    const size_t property_len = strlen(CONFIG_PROPERTY_ENV_PREFIX);
    for (char *const *e = envp; e && *e; e++) {
        if (strncmp(*e, CONFIG_ENV_PREFIX, prefix_len) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t name_len = (size_t)(eq - *e);
        if (name_len > property_len &&
            strncmp(*e, CONFIG_PROPERTY_ENV_PREFIX, property_len) == 0) {
            if (config_env_property(cfg, *e, name_len, eq + 1, err, errlen) < 0)
                return -1;
            continue;
        }
        const struct config_key *k = NULL;
        char name[128];
        if (name_len == strlen(CONFIG_API_KEY_ENV) && strncmp(*e, CONFIG_API_KEY_ENV, name_len) == 0)
            k = config_find("backend", "api_key");
        for (size_t i = 0; k == NULL && i < CONFIG_NKEYS; i++) {
            config_env_name(&config_keys[i], name, sizeof name);
            if (strlen(name) == name_len && strncmp(*e, name, name_len) == 0)
                k = &config_keys[i];
        }
        if (k == NULL && config_is_service_link(*e, name_len))
            continue;
        if (k == NULL) {
            char sections[256];
            config_list(NULL, sections, sizeof sections);
            snprintf(err, errlen, "environment %.*s: no such setting (allowed: %s<SECTION>_<KEY> "
                     "for a key of a section (%s) as --print-default-config lists them, %s<NAME> "
                     "for a [properties] entry, %s)", (int)name_len, *e, CONFIG_ENV_PREFIX,
                     sections, CONFIG_PROPERTY_ENV_PREFIX, CONFIG_API_KEY_ENV);
            return -1;
        }
        if (config_set(cfg, k, eq + 1) < 0) {
            char where[160];
            snprintf(where, sizeof where, "environment %.*s: ", (int)name_len, *e);
            config_value_error(err, errlen, where, k, eq + 1);
            return -1;
        }
    }
    return 0;
}

/* A secret kept in a file (key = "[section] name_file"): its content
 * without surrounding whitespace, into *out. */
static int config_read_secret_file(const char *path, const char *key, char **out, char *err,
                                   size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s = '%s': cannot open: %s", key, path, strerror(errno));
        return -1;
    }
    char secret[1024];
    size_t n = fread(secret, 1, sizeof secret - 1, f);
    int too_long = fgetc(f) != EOF;
    fclose(f);
    secret[n] = '\0';
    char *start = secret;
    while (isspace((unsigned char)*start))
        start++;
    size_t len = strlen(start);
    while (len > 0 && isspace((unsigned char)start[len - 1]))
        start[--len] = '\0';
    if (too_long || len == 0) {
        snprintf(err, errlen, "%s = '%s': %s (allowed: one key of 1 to %zu bytes)", key, path,
                 too_long ? "file too large" : "file is empty", sizeof secret - 1);
        return -1;
    }
    char *copy = strdup(start);
    if (copy == NULL)
        return -1;
    free(*out);
    *out = copy;
    return 0;
}

static int config_refuse(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write the message and return -1, so a failed check is one statement. */
static int config_refuse(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A listen address: empty, or what httpd_parse_listen takes. */
static int config_check_listen(const char *section, const char *listen, char *err, size_t errlen)
{
    char why[200], host[64];
    int port;
    if (listen[0] == '\0' ||
        httpd_parse_listen(listen, host, sizeof host, &port, why, sizeof why) == 0)
        return 0;
    return config_refuse(err, errlen, "%s listen = %s (allowed: HOST:PORT, [IPv6]:PORT, or empty)",
                         section, why);
}

/* Checks across keys (which a reload repeats once the keys that need a
 * restart have their running values back). */
static int config_check_combination(const struct config *cfg, char *err, size_t errlen)
{
    int to_stdout = strcmp(cfg->url, "stdout") == 0;
    if (!to_stdout && strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0)
        return config_refuse(err, errlen, "[backend] url = '%s' is not allowed (allowed: an "
                             "http:// or https:// URL, or stdout)", cfg->url);
    if (cfg->socket[0] != '/')
        return config_refuse(err, errlen, "[agent] socket = '%s' is not allowed (allowed: an "
                             "absolute path)", cfg->socket);
    if (cfg->max_event_bytes > cfg->batch_max_bytes / 2)
        return config_refuse(err, errlen, "[events] max_event_bytes = %" PRId64 " is not allowed "
                             "(allowed: at most half of [batch] max_bytes = %" PRId64 ", so that "
                             "every event fits a batch)", cfg->max_event_bytes,
                             cfg->batch_max_bytes);
    if (cfg->buffer_max_bytes < cfg->batch_max_bytes)
        return config_refuse(err, errlen, "[buffer] max_bytes = %" PRId64 " is not allowed "
                             "(allowed: at least [batch] max_bytes = %" PRId64 ")",
                             cfg->buffer_max_bytes, cfg->batch_max_bytes);
    if (config_check_listen("[http]", cfg->http_listen, err, errlen) < 0 ||
        config_check_listen("[relay]", cfg->relay_listen, err, errlen) < 0)
        return -1;
    if (cfg->relay_path[0] != '/')
        return config_refuse(err, errlen, "[relay] path = '%s' is not allowed (allowed: a path "
                             "starting with /)", cfg->relay_path);
    if (cfg->spool_dir[0] != '\0' && cfg->spool_dir[0] != '/')
        return config_refuse(err, errlen, "[spool] dir = '%s' is not allowed (allowed: an "
                             "absolute path, or empty for no spool)", cfg->spool_dir);
    if (cfg->spool_dir[0] != '\0' && cfg->max_event_bytes > cfg->spool_max_bytes / 4)
        return config_refuse(err, errlen, "[spool] max_bytes = %" PRId64 " is not allowed "
                             "(allowed: at least four times [events] max_event_bytes = %" PRId64
                             ")", cfg->spool_max_bytes, cfg->max_event_bytes);
    if (cfg->spool_segment_bytes > cfg->spool_max_bytes / 4)
        return config_refuse(err, errlen, "[spool] segment_bytes = %" PRId64 " is not allowed "
                             "(allowed: at most a quarter of max_bytes = %" PRId64 ")",
                             cfg->spool_segment_bytes, cfg->spool_max_bytes);
    if (cfg->privacy_hash_keys[0] != '\0' && strlen(cfg->privacy_hash_key) < 16)
        return config_refuse(err, errlen, "[privacy] hash_keys = '%s' needs hash_key (allowed: a "
                             "key of at least 16 bytes, from hash_key or hash_key_file)",
                             cfg->privacy_hash_keys);
    if (privacy_check_redactions(cfg->privacy_redact_values, cfg->privacy_redact_regex, err,
                                 errlen) < 0)
        return -1;
    if (cfg->ca_file[0] != '\0' && access(cfg->ca_file, R_OK) < 0)
        return config_refuse(err, errlen, "[backend] ca_file = '%s': cannot read it: %s "
                             "(allowed: a readable PEM file, or empty)", cfg->ca_file,
                             strerror(errno));
    if (cfg->timeout_max_ms < cfg->timeout_ms)
        return config_refuse(err, errlen, "[backend] timeout_max_ms = %" PRId64 " is not allowed "
                             "(allowed: at least timeout_ms = %" PRId64 ")",
                             cfg->timeout_max_ms, cfg->timeout_ms);
    if (cfg->retry_max_ms < cfg->retry_initial_ms)
        return config_refuse(err, errlen, "[backend] retry_max_ms = %" PRId64 " is not allowed "
                             "(allowed: at least retry_initial_ms = %" PRId64 ")",
                             cfg->retry_max_ms, cfg->retry_initial_ms);
    if (cfg->enabled && !to_stdout && cfg->api_key[0] == '\0')
        return config_refuse(err, errlen, "[backend] api_key is empty (allowed: a key, from "
                             "api_key, api_key_file or %s; required when url is not stdout)",
                             CONFIG_API_KEY_ENV);
    return 0;
}

/* allowed_uids or allowed_gids as numbers, names looked up once here. */
static int config_normalize_ids(char **field, const char *name, int groups, char *err,
                                size_t errlen)
{
    char ids[1024], why[300];
    if (peer_ids_normalize(*field, groups, ids, sizeof ids, why, sizeof why) < 0)
        return config_refuse(err, errlen, "[agent] %s = '%s': %s (allowed: %s names or numbers, "
                             "separated by commas or spaces)", name, *field, why,
                             groups ? "group" : "user");
    char *copy = strdup(ids);
    if (copy == NULL)
        return config_refuse(err, errlen, "out of memory");
    free(*field);
    *field = copy;
    return 0;
}

/* Values derived from others, then the checks across keys. */
static int config_finish(struct config *cfg, char *err, size_t errlen)
{
    if (config_normalize_ids(&cfg->allowed_uids, "allowed_uids", 0, err, errlen) < 0 ||
        config_normalize_ids(&cfg->allowed_gids, "allowed_gids", 1, err, errlen) < 0)
        return -1;
    if (cfg->api_key_file[0] != '\0') {
        if (cfg->api_key[0] != '\0')
            return config_refuse(err, errlen, "[backend] api_key and api_key_file are both set "
                                 "(allowed: one of them)");
        if (config_read_secret_file(cfg->api_key_file, "[backend] api_key_file", &cfg->api_key,
                                    err, errlen) < 0)
            return -1;
    }
    if (cfg->privacy_hash_key_file[0] != '\0') {
        if (cfg->privacy_hash_key[0] != '\0')
            return config_refuse(err, errlen, "[privacy] hash_key and hash_key_file are both set "
                                 "(allowed: one of them)");
        if (config_read_secret_file(cfg->privacy_hash_key_file, "[privacy] hash_key_file",
                                    &cfg->privacy_hash_key, err, errlen) < 0)
            return -1;
    }
    if (cfg->distinct_id[0] == '\0') {
        char host[256] = "unknown-host";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        free(cfg->distinct_id);
        if ((cfg->distinct_id = strdup(host)) == NULL)
            return config_refuse(err, errlen, "out of memory");
    }
    static const char *const lib[][2] = {{"$lib", "\"" TELEMETRY_NAME "\""},
                                         {"$lib_version", "\"" TELEMETRY_VERSION "\""}};
    for (size_t i = 0; i < 2; i++)
        if (props_child(cfg->properties, lib[i][0], strlen(lib[i][0])) == NULL &&
            props_add(cfg->properties, lib[i][0], lib[i][1], err, errlen) < 0)
            return -1;
    return config_check_combination(cfg, err, errlen);
}

int config_load(struct config *cfg, const char *path, char *const *envp, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->properties = props_new();
    if (cfg->properties == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (config_set(cfg, &config_keys[i], config_keys[i].default_text) < 0) {
            snprintf(err, errlen, "built-in default of [%s] %s is invalid", config_keys[i].section,
                     config_keys[i].name);
            goto fail;
        }
    }
    if (path != NULL && config_parse_file(cfg, path, err, errlen) < 0)
        goto fail;
    if (config_apply_env(cfg, envp, err, errlen) < 0 || config_finish(cfg, err, errlen) < 0)
        goto fail;
    return 0;
fail:
    config_free(cfg);
    return -1;
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        if (config_keys[i].type == CT_STRING) {
            free(*config_string_field(cfg, &config_keys[i]));
            *config_string_field(cfg, &config_keys[i]) = NULL;
        }
    }
    props_free(cfg->properties);
    cfg->properties = NULL;
}

const char *config_mask_url(const char *url, char *out, size_t outlen)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    if (at != NULL && (slash == NULL || at < slash))
        snprintf(out, outlen, "%.*s***%s", (int)(scheme + 3 - url), url, at);
    else
        snprintf(out, outlen, "%s", url);
    return out;
}

const char *config_section(size_t i)
{
    const char *last = NULL;
    for (size_t k = 0; k < CONFIG_NKEYS; k++) {
        if (last != NULL && strcmp(last, config_keys[k].section) == 0)
            continue;
        last = config_keys[k].section;
        if (i-- == 0)
            return last;
    }
    return NULL;
}

/* The value of key k in cfg as a person reads it, secrets and URL
 * credentials masked. */
static void config_value_text(const struct config *cfg, const struct config_key *k, char *out,
                              size_t outlen)
{
    const char *base = (const char *)cfg + k->offset;
    if (k->flags & CK_SECRET)
        snprintf(out, outlen, "%s", (*(char *const *)base)[0] ? "***" : "");
    else if (k->type == CT_STRING)
        config_mask_url(*(char *const *)base, out, outlen);
    else if (k->type == CT_BOOL)
        snprintf(out, outlen, "%s", *(const int *)base ? "true" : "false");
    else if (k->type == CT_CHOICE)
        snprintf(out, outlen, "%s", k->choices[*(const int64_t *)base]);
    else if (k->type == CT_MODE)
        snprintf(out, outlen, "%04llo", (unsigned long long)*(const int64_t *)base);
    else
        snprintf(out, outlen, "%lld", (long long)*(const int64_t *)base);
}

const char *config_describe_section(const struct config *cfg, const char *section, char *out,
                                    size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < CONFIG_NKEYS && n < outlen; i++) {
        const struct config_key *k = &config_keys[i];
        if (strcmp(k->section, section) != 0)
            continue;
        char value[512];
        config_value_text(cfg, k, value, sizeof value);
        n += (size_t)snprintf(out + n, outlen - n, "%s%s=%s", n ? " " : "", k->name, value);
    }
    return out;
}

static int config_values_differ(const struct config *a, const struct config *b,
                                const struct config_key *k)
{
    const char *x = (const char *)a + k->offset, *y = (const char *)b + k->offset;
    if (k->type == CT_STRING)
        return strcmp(*(char *const *)x, *(char *const *)y) != 0;
    if (k->type == CT_BOOL)
        return *(const int *)x != *(const int *)y;
    return *(const int64_t *)x != *(const int64_t *)y;
}

/* The bytes of key k's field (a string's pointer, not a copy). */
static size_t config_field_size(const struct config_key *k)
{
    return k->type == CT_STRING ? sizeof(char *) : k->type == CT_BOOL ? sizeof(int)
                                                                       : sizeof(int64_t);
}

/* Exchange the values of key k between a and b. */
static void config_swap_value(struct config *a, struct config *b, const struct config_key *k)
{
    char tmp[sizeof(int64_t) > sizeof(char *) ? sizeof(int64_t) : sizeof(char *)];
    size_t size = config_field_size(k);
    char *x = (char *)a + k->offset, *y = (char *)b + k->offset;
    memcpy(tmp, x, size);
    memcpy(x, y, size);
    memcpy(y, tmp, size);
}

/* A key whose change needs a restart; so is a switch between printing
 * batches and sending them, which changes the transport. */
static int config_needs_restart(const struct config *running, const struct config *next,
                                const struct config_key *k)
{
    if (k->flags & CK_RESTART)
        return 1;
    return k->offset == OFF(url) &&
           (strcmp(running->url, "stdout") == 0) != (strcmp(next->url, "stdout") == 0);
}

static void config_report(const struct config *running, const struct config *next,
                          const struct config_key *k, int restart, config_change_fn fn, void *arg)
{
    char from[512], to[512];
    config_value_text(running, k, from, sizeof from);
    config_value_text(next, k, to, sizeof to);
    fn(arg, k->section, k->name, from, to, restart);
}

int config_reconcile(struct config *running, struct config *next, config_change_fn fn, void *arg,
                     char *err, size_t errlen)
{
    /* The check sees next with the running values of what needs a restart:
     * a copy made with those fields borrowed (running itself is never
     * written but for what changes: other threads read the rest). */
    unsigned char restart[CONFIG_NKEYS] = {0};
    struct config merged = *next;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        if (config_values_differ(running, next, k) && config_needs_restart(running, next, k)) {
            restart[i] = 1;
            memcpy((char *)&merged + k->offset, (const char *)running + k->offset,
                   config_field_size(k));
        }
    }
    int rc = config_check_combination(&merged, err, errlen);
    if (rc < 0) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (with the running values of the settings that change "
                 "only at restart)");
        return -1;
    }
    int changed = 0;
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        if (restart[i]) {
            config_report(running, next, k, 1, fn, arg);
        } else if (config_values_differ(running, next, k)) {
            config_report(running, next, k, 0, fn, arg);
            config_swap_value(running, next, k);
            changed++;
        }
    }
    if (!props_equal(running->properties, next->properties)) {
        fn(arg, CONFIG_PROPERTIES, NULL, NULL, NULL, 0);
        changed++;
    }
    struct props_node *properties = running->properties;
    running->properties = next->properties;
    next->properties = properties;
    return changed;
}

void config_warn_risks(const struct config *cfg)
{
    if (cfg->tls_insecure && strncmp(cfg->url, "https://", 8) == 0)
        log_warn("backend.tls_insecure = true: the backend's certificate and name are not "
                 "verified, so anyone on the way can pose as it and read the API key and the "
                 "events; use backend.ca_file for a private certificate authority instead");
}

void config_print_defaults(FILE *out)
{
    fprintf(out, "; telemetry-agent configuration. Every key is shown with its default.\n"
                 "; Any key can also be set from the environment as\n"
                 "; TELEMETRY_AGENT_<SECTION>_<KEY>, e.g. TELEMETRY_AGENT_BATCH_MAX_EVENTS=1000;\n"
                 "; the environment wins over this file. A TELEMETRY_AGENT_ variable that\n"
                 "; names no setting stops start-up (Kubernetes' service variables, such as\n"
                 "; TELEMETRY_AGENT_SERVICE_HOST, are left alone).\n"
                 ";\n"
                 "; Values: booleans are true/false, yes/no, on/off or 1/0. Byte counts are a\n"
                 "; whole number of bytes, optionally followed (with or without a space) by\n"
                 "; KiB, MiB or GiB, or K, M, G, which mean the same powers of 1024: 65536,\n"
                 "; 64KiB, 64 KiB and 64K are equal. Durations are whole milliseconds (keys\n"
                 "; ending in _ms). Modes are octal.\n");
    for (size_t i = 0; i < CONFIG_NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        if (i == 0 || strcmp(config_keys[i - 1].section, k->section) != 0)
            fprintf(out, "\n[%s]\n", k->section);
        fprintf(out, "; %s%s\n%s =%s%s\n", k->doc,
                k->flags & CK_RESTART ? " (a change needs a restart)" : "", k->name,
                k->default_text[0] ? " " : "", k->default_text);
    }
    fprintf(out,
            "\n[properties]\n"
            "; Added to every event's properties unless the event has the key already.\n"
            "; Dotted keys nest; true, false, null, numbers and \"quoted strings\" keep\n"
            "; their JSON type, anything else is a string. $lib and $lib_version are\n"
            "; always added. For example:\n"
            "; app_properties.orchest_version = v2023.06.1\n"
            "; system_properties.gpu_count = 0\n"
            "; From the environment, one entry a variable, named TELEMETRY_AGENT_PROPERTY_\n"
            "; and anything, holding key=value (it replaces the same key of this file):\n"
            "; TELEMETRY_AGENT_PROPERTY_VERSION=app_properties.orchest_version=v2023.06.1\n");
}
