/*
 * telemetry-send: send analytics events to telemetry-agent from the command
 * line or a shell script, through libtelemetry.
 *
 * SYNOPSIS
 *     telemetry-send [OPTIONS] EVENT [key=value | key:=JSON ...]
 *     telemetry-send [OPTIONS] --json '{"event": ..., "properties": {...}}'
 *     telemetry-send [OPTIONS] -            (or --json -: one JSON event a line on stdin)
 *
 * PROPERTIES
 *     key=value      the string "value"
 *     key:=JSON      a typed value: 42, -7, 18446744073709551615, 2.5, 1e-3, true,
 *                    false, null, "text", [1, "a"], {"k": "v"}
 *     a.b.c=x        dots nest: {"a": {"b": {"c": "x"}}}; siblings merge (a.b=1 a.c=2),
 *                    and so do objects given as JSON (a:={"b": 1} a.c=2). Setting one
 *                    key twice, or a key both to a value and to an object (a=1 a.b=2),
 *                    is an error that names both arguments.
 *     \. \= \: \\    escapes in a key: a literal dot, '=', ':' and backslash
 *                    (a\.b=1 is the key "a.b"; a\:=x is the key "a:" with the string
 *                    "x"). Any other backslash in a key is an error. Nothing after the
 *                    first unescaped '=' is interpreted: the value is taken as is.
 *
 * OPTIONS
 *     -s, --socket PATH     the agent's socket; else $TELEMETRY_SOCKET (if not empty),
 *                           else /run/telemetry/agent.sock
 *     --uuid UUID           the event's uuid (default: a fresh UUIDv7); one event only
 *     --timestamp T         RFC 3339 (2026-11-28T12:00:00.123Z, offsets allowed) or
 *                           milliseconds since the epoch; 1970 to 9999 (default: now)
 *     --distinct-id ID      1 to 200 bytes (default: the agent's agent.distinct_id)
 *     --json TEXT | -       the whole event as JSON: keys event (required),
 *                           properties, timestamp, uuid, distinct_id. With -, one event
 *                           a line from stdin (NDJSON; blank lines skipped); a bad line
 *                           is reported with its number and the rest are still sent.
 *                           --timestamp and --distinct-id fill in what an event lacks.
 *     -w, --wait            reliable mode: wait until the agent acknowledges every
 *                           event, and report the ones it rejects, with its reason
 *     -t, --timeout MS      the longest wait for the agent at any one point (an ack,
 *                           room in the queue, the final flush); default 10000 with
 *                           --wait, 2000 without
 *     -h, --help, -V, --version
 *
 * EXIT STATUS (when several problems occur, the largest code)
 *     0  every event was written to the agent (with --wait: acknowledged)
 *     1  an internal error: out of memory, reading stdin failed
 *     2  usage: an unknown option, a missing EVENT, an argument that is not
 *        key=value or key:=JSON, a bad escape or empty part in a key, a key set twice
 *     3  bad input: JSON that does not parse (:=, --json, a stdin line), a bad
 *        --uuid/--timestamp/--distinct-id/event field, an event too large or too deep
 *     4  the agent is unreachable: nothing listens at the socket (the first
 *        connection failed, or the agent went away and did not come back in time)
 *     5  not acknowledged (--wait) or not written (without) within --timeout:
 *        the agent is there but does not take events (its buffer is full)
 *     6  the agent rejected an event (--wait only: bad shape, unknown event name,
 *        too large, ...), or closed the connection on it over and over
 *
 * Without --wait an event counts as sent once it is written to the socket: the
 * agent's verdict is not known, so an event name missing from the agent's
 * registry is dropped silently there. With --wait the tool waits for each
 * event's acknowledgement before sending the next, so a rejection is reported
 * against the event (or stdin line) that caused it.
 *
 * LIMITS
 *     An event is at most 1 MiB as msgpack (libtelemetry's default, the agent's
 *     agent.max_message_bytes); the agent may refuse smaller ones
 *     (events.max_event_bytes, 32 KiB of JSON by default: --wait reports that).
 *     Nesting: 32 levels in all, the event and its properties counting as two.
 *     Integers: -9223372036854775808 to 18446744073709551615, exact; a number
 *     with a fraction or exponent is a double. Strings and keys are UTF-8;
 *     a key may not contain U+0000 (a string value may).
 */
#include "cli/value.h"
#include "telemetry.h"
#include "timestamp.h" /* proto/timestamp.c */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef TELEMETRY_SEND_VERSION
#define TELEMETRY_SEND_VERSION "unknown"
#endif

enum {
    EXIT_OK = 0,
    EXIT_INTERNAL = 1,
    EXIT_USAGE = 2,
    EXIT_DATA = 3,
    EXIT_UNREACHABLE = 4,
    EXIT_NOT_ACKED = 5,
    EXIT_REJECTED = 6,
};

#define DEFAULT_WAIT_TIMEOUT_MS 10000
#define DEFAULT_FLUSH_TIMEOUT_MS 2000
#define CONTACT_TIMEOUT_MS 1000           /* how long the first connection may take */
#define QUEUE_BYTES (4 * 1024 * 1024)     /* room for a few maximum-size events */

static const char usage_text[] =
    "Usage: telemetry-send [OPTIONS] EVENT [key=value | key:=JSON ...]\n"
    "       telemetry-send [OPTIONS] --json '{\"event\": ..., \"properties\": {...}}'\n"
    "       telemetry-send [OPTIONS] -        (one JSON event a line on stdin)\n"
    "Send analytics events to telemetry-agent over its Unix socket.\n"
    "\n"
    "Properties:\n"
    "  key=value           a string\n"
    "  key:=JSON           a typed value: 42, 2.5, true, false, null, \"s\", [..], {..}\n"
    "  a.b.c=x             dots nest ({\"a\":{\"b\":{\"c\":\"x\"}}}); siblings merge\n"
    "  a\\.b=x  a\\==x  a\\:=x  a\\\\b=x\n"
    "                      a literal '.', '=', ':' or '\\' in a key\n"
    "\n"
    "Options:\n"
    "  -s, --socket PATH   agent socket (default: $TELEMETRY_SOCKET, else\n"
    "                      " TLM_DEFAULT_SOCKET ")\n"
    "      --uuid UUID     the event's uuid (default: a new UUIDv7)\n"
    "      --timestamp T   RFC 3339 time or milliseconds since the epoch (default: now)\n"
    "      --distinct-id D the event's distinct_id (default: the agent's)\n"
    "      --json TEXT     the whole event as a JSON object (keys: event, properties,\n"
    "                      timestamp, uuid, distinct_id); --json - reads stdin\n"
    "  -w, --wait          wait for the agent to acknowledge every event; report\n"
    "                      rejected ones with the agent's reason\n"
    "  -t, --timeout MS    longest wait for the agent at any point (default 10000\n"
    "                      with --wait, else 2000)\n"
    "  -h, --help          this text\n"
    "  -V, --version       the versions of telemetry-send and libtelemetry\n"
    "\n"
    "Exit status:\n"
    "  0 sent (--wait: acknowledged)     4 the agent is unreachable\n"
    "  1 internal error                  5 not acknowledged / not written in time\n"
    "  2 usage error                     6 rejected by the agent (--wait)\n"
    "  3 bad input (JSON, uuid, timestamp, ...)\n"
    "\n"
    "Examples:\n"
    "  telemetry-send project:created projects_count:=7 plan=pro\n"
    "  telemetry-send --wait project:created app.version=v2 app.gpus:='[\"A100\"]'\n"
    "  telemetry-send --uuid 0190f3a0-7c1e-7b3a-9c1d-2f4e5a6b7c8d \\\n"
    "      --timestamp 2026-11-28T12:00:00Z --distinct-id host-1 debug-ping\n"
    "  telemetry-send --json '{\"event\": \"debug-ping\", \"properties\": {\"n\": 1}}'\n"
    "  telemetry-send --wait - < events.ndjson\n";

struct options {
    const char *socket;
    const char *event;       /* EVENT, or "-" */
    char **props;            /* the key=value arguments */
    int nprops;
    const char *json;        /* --json */
    const char *uuid;
    const char *distinct_id;
    int has_timestamp;
    int64_t timestamp_ms;
    int wait;
    int timeout_ms;
};

/* Event fields given apart from the name and properties. */
struct fields {
    const char *uuid;
    const char *distinct_id;
    size_t distinct_id_len;
    int has_timestamp;
    int64_t timestamp_ms;
};

/* The client and what has been learnt from it so far. */
struct sender {
    tlm_client *client;
    const char *path;
    int wait;
    int timeout_ms;
    int contacted;   /* a connection has been made */
    tlm_stats seen;  /* counters as of the last check */
    int status;      /* the exit status so far */
    unsigned sent;   /* events handed to the client */
    unsigned failed; /* events or lines that were not sent, or rejected */
};

static void report(const char *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(const char *where, const char *fmt, ...)
{
    va_list ap;
    fputs("telemetry-send: ", stderr);
    if (where != NULL)
        fprintf(stderr, "%s: ", where);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("telemetry-send: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'telemetry-send --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

static int worst(int a, int b)
{
    return a > b ? a : b;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ timestamps */

/* RFC 3339 (proto/timestamp.c: "2026-11-28T12:00:00.123+01:00"; 't', 'z'
 * and a space for the 'T' allowed, digits past milliseconds truncated, a
 * leap second taken as :59.999) or decimal milliseconds, to milliseconds
 * since the epoch. The range (1970..9999) is checked by libtelemetry. */
static int timestamp_parse(const char *s, size_t len, int64_t *ms)
{
    if (len > 0 && strspn(s, "0123456789") == len) {
        if (len > 18)
            return -1;
        *ms = strtoll(s, NULL, 10);
        return 0;
    }
    return timestamp_parse_rfc3339_unbounded(s, len, ms);
}

/* ------------------------------------------------------------ building events */

/* Add v under key (NULL inside an array). The event keeps the first error. */
static tlm_status event_add_value(tlm_event *ev, const char *key, const struct value *v)
{
    tlm_status st;
    switch (v->type) {
    case VALUE_NULL:
        return tlm_event_add_null(ev, key);
    case VALUE_BOOL:
        return tlm_event_add_bool(ev, key, v->as.boolean);
    case VALUE_INT:
        return tlm_event_add_int(ev, key, v->as.i);
    case VALUE_UINT:
        return tlm_event_add_uint(ev, key, v->as.u);
    case VALUE_DOUBLE:
        return tlm_event_add_double(ev, key, v->as.d);
    case VALUE_STRING:
        return tlm_event_add_strn(ev, key, v->as.str.ptr, v->as.str.len);
    case VALUE_ARRAY:
        st = tlm_event_begin_array(ev, key);
        for (size_t i = 0; i < v->as.array.len && st == TLM_OK; i++)
            st = event_add_value(ev, NULL, &v->as.array.items[i]);
        return st != TLM_OK ? st : tlm_event_end(ev);
    case VALUE_OBJECT:
        st = tlm_event_begin_map(ev, key);
        for (size_t i = 0; i < v->as.object.len && st == TLM_OK; i++)
            st = event_add_value(ev, v->as.object.members[i].key, &v->as.object.members[i].value);
        return st != TLM_OK ? st : tlm_event_end(ev);
    }
    return TLM_EINVAL;
}

static int status_exit(tlm_status st)
{
    return st == TLM_ENOMEM || st == TLM_ESYS ? EXIT_INTERNAL : EXIT_DATA;
}

/* Make the event: name, properties (an object, or NULL) and fields. Returns 0,
 * or an exit status with the reason reported against where. The names in
 * messages are those of the JSON form: options were checked when parsed. */
static int event_build(const char *name, size_t name_len, const struct value *props,
                       const struct fields *f, const char *where, tlm_event **out)
{
    tlm_event *ev = NULL;
    tlm_status st;
    if (memchr(name, '\0', name_len) != NULL) {
        report(where, "the event name contains \\u0000 (not allowed)");
        return EXIT_DATA;
    }
    if ((st = tlm_event_new(&ev, name)) != TLM_OK) {
        if (st == TLM_ETOOLONG)
            report(where, "event name '%.40s...' is %zu bytes; at most %d are allowed", name,
                   name_len, TLM_NAME_MAX);
        else
            report(where, "event name '%s': %s", name,
                   st == TLM_EINVAL ? "must not be empty" : tlm_strerror(st));
        return status_exit(st);
    }
    if (f->uuid != NULL && tlm_event_set_uuid(ev, f->uuid) != TLM_OK) {
        report(where, "\"uuid\" \"%.60s\" is not a UUID (expected 8-4-4-4-12 hex digits, "
                      "e.g. 0190f3a0-7c1e-7b3a-9c1d-2f4e5a6b7c8d)", f->uuid);
        goto data_error;
    }
    if (f->has_timestamp && tlm_event_set_timestamp_ms(ev, f->timestamp_ms) != TLM_OK) {
        report(where, "\"timestamp\" %lld ms is outside 1970-01-01 to 9999-12-31",
               (long long)f->timestamp_ms);
        goto data_error;
    }
    if (f->distinct_id != NULL) {
        if (memchr(f->distinct_id, '\0', f->distinct_id_len) != NULL || f->distinct_id_len == 0 ||
            f->distinct_id_len > TLM_DISTINCT_ID_MAX) {
            report(where, "\"distinct_id\" must be 1 to %d bytes without \\u0000 (it is %zu "
                          "bytes)", TLM_DISTINCT_ID_MAX, f->distinct_id_len);
            goto data_error;
        }
        if ((st = tlm_event_set_distinct_id(ev, f->distinct_id)) != TLM_OK) {
            report(where, "\"distinct_id\": %s", tlm_strerror(st));
            tlm_event_free(ev);
            return status_exit(st);
        }
    }
    for (size_t i = 0; props != NULL && i < props->as.object.len; i++) {
        const struct value_member *m = &props->as.object.members[i];
        if ((st = event_add_value(ev, m->key, &m->value)) != TLM_OK) {
            if (st == TLM_ETOODEEP)
                report(where, "property '%s' nests deeper than %d levels in all (the event and "
                              "its properties count as two)", m->key, TLM_MAX_DEPTH);
            else
                report(where, "property '%s': %s", m->key, tlm_strerror(st));
            tlm_event_free(ev);
            return status_exit(st);
        }
    }
    *out = ev;
    return 0;
data_error:
    tlm_event_free(ev);
    return EXIT_DATA;
}

/* ------------------------------------------------------------ key=value arguments */

/* A property argument split up: the key's parts, unescaped, and the value. */
struct prop_key {
    char buf[4096];               /* the parts, each NUL-terminated */
    const char *part[VALUE_MAX_DEPTH];
    size_t part_len[VALUE_MAX_DEPTH];
    size_t part_end[VALUE_MAX_DEPTH]; /* where each part ends in the argument */
    size_t nparts;
    const char *value;
    int typed;                    /* key:=JSON */
};

/* Split `arg` (see the top of the file for the syntax). Returns 0 or EXIT_USAGE. */
static int prop_key_parse(const char *arg, struct prop_key *k)
{
    size_t used = 0, start = 0, i = 0;
    k->nparts = 0;
    for (;; i++) {
        char c = arg[i];
        int end_key = c == '=' || (c == ':' && arg[i + 1] == '=');
        if (c == '\0')
            return usage_error("argument '%s': expected key=value (a string) or key:=JSON (a "
                               "typed value)", arg);
        if (c == '.' || end_key) {
            if (used == start)
                return usage_error("argument '%s': part %zu of the key is empty (write a "
                                   "literal dot as \\.)", arg, k->nparts + 1);
            if (k->nparts == VALUE_MAX_DEPTH)
                return usage_error("argument '%s': the key has more than %d parts (the "
                                   "protocol nests %d levels at most)", arg, VALUE_MAX_DEPTH,
                                   TLM_MAX_DEPTH);
            k->part[k->nparts] = k->buf + start;
            k->part_len[k->nparts] = used - start;
            k->part_end[k->nparts++] = i;
            k->buf[used++] = '\0';
            start = used;
            if (end_key)
                break;
            continue;
        }
        if (c == '\\') {
            c = arg[++i];
            if (c == '\0')
                return usage_error("argument '%s': a lone '\\' ends it (expected key=value)",
                                   arg);
            if (strchr(".=:\\", c) == NULL)
                return usage_error("argument '%s': '\\%c' is not an escape in a key (use \\. "
                                   "\\= \\: or \\\\)", arg, c);
        }
        if (used + 2 >= sizeof k->buf)
            return usage_error("argument '%.40s...': the key is longer than %zu bytes", arg,
                               sizeof k->buf - 2);
        k->buf[used++] = c;
    }
    k->typed = arg[i] == ':';
    k->value = arg + i + (k->typed ? 2 : 1);
    return 0;
}

/* The argument that set a member: its own tag, else the nearest ancestor's. */
static const char *prop_origin(char **argv, const struct value_member *m, int inherited)
{
    return argv[m->tag >= 0 ? m->tag : inherited];
}

/* Put v at key `name` of obj, merging objects. argi is v's argument; path
 * names obj for messages; inherited is the argument that made obj. */
static int prop_put(struct value *obj, const char *name, size_t len, struct value v, char **argv,
                    int argi, const char *path, int inherited)
{
    struct value_member *m = value_find(obj, name, len);
    char sub[512];
    snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", name);
    if (m == NULL) {
        if (value_add(obj, name, len, v, argi) == NULL) {
            report(NULL, "out of memory");
            return EXIT_INTERNAL;
        }
        return 0;
    }
    if (m->value.type != VALUE_OBJECT || v.type != VALUE_OBJECT) {
        report(NULL, "conflicting properties: '%s' sets '%s' to %s, but '%s' already set it to "
                     "%s", argv[argi], sub, value_type_name(v.type),
               prop_origin(argv, m, inherited), value_type_name(m->value.type));
        value_free(&v);
        return EXIT_USAGE;
    }
    int origin = m->tag >= 0 ? m->tag : inherited, rc = 0;
    for (size_t i = 0; i < v.as.object.len && rc == 0; i++) {
        struct value_member *vm = &v.as.object.members[i];
        rc = prop_put(&m->value, vm->key, vm->key_len, vm->value, argv, argi, sub, origin);
        vm->value.type = VALUE_NULL; /* moved */
    }
    value_free(&v);
    return rc;
}

/* Add argv[argi] (key=value or key:=JSON) to the properties object. */
static int prop_add(struct value *props, char **argv, int argi)
{
    struct prop_key k = {0};
    struct value v, *obj = props;
    struct value_error err;
    int rc = prop_key_parse(argv[argi], &k), inherited = argi;
    if (rc != 0)
        return rc;
    if (k.value == NULL) { /* prop_key_parse sets it whenever it succeeds */
        report(NULL, "argument '%s': no value", argv[argi]);
        return EXIT_INTERNAL;
    }
    if (!k.typed) {
        v.type = VALUE_STRING;
        v.as.str.len = strlen(k.value);
        if ((v.as.str.ptr = strdup(k.value)) == NULL) {
            report(NULL, "out of memory");
            return EXIT_INTERNAL;
        }
    } else if (value_parse(k.value, strlen(k.value), &v, &err) < 0) {
        int word = err.offset == 0 && strncmp(err.message, "expected a JSON value", 21) == 0;
        report(NULL, "argument '%s': bad JSON after ':=', at column %zu: %s%s", argv[argi],
               err.offset + 1, err.message,
               word ? " (for a string, use key=value or quote it: key:='\"...\"')" : "");
        return EXIT_DATA;
    }
    for (size_t i = 0; i + 1 < k.nparts; i++) {
        struct value_member *m = value_find(obj, k.part[i], k.part_len[i]);
        if (m == NULL)
            m = value_add(obj, k.part[i], k.part_len[i], value_object(), argi);
        if (m == NULL) {
            value_free(&v);
            report(NULL, "out of memory");
            return EXIT_INTERNAL;
        }
        if (m->value.type != VALUE_OBJECT) {
            report(NULL, "conflicting properties: '%s' needs '%.*s' to be an object, but '%s' "
                         "already set it to %s", argv[argi], (int)k.part_end[i], argv[argi],
                   prop_origin(argv, m, inherited), value_type_name(m->value.type));
            value_free(&v);
            return EXIT_USAGE;
        }
        inherited = m->tag >= 0 ? m->tag : inherited;
        obj = &m->value;
    }
    char path[512];
    size_t last = k.nparts - 1;
    snprintf(path, sizeof path, "%.*s", last ? (int)k.part_end[last - 1] : 0, argv[argi]);
    return prop_put(obj, k.part[last], k.part_len[last], v, argv, argi, path, inherited);
}

/* ------------------------------------------------------------ JSON events */

static const char *where_in(char *buf, size_t len, const char *prefix, const char *text,
                            size_t offset)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < offset; i++, col++)
        if (text[i] == '\n')
            line++, col = 0;
    if (line > 1)
        snprintf(buf, len, "%s, line %zu, column %zu", prefix, line, col);
    else
        snprintf(buf, len, "%s, column %zu", prefix, col);
    return buf;
}

/* Build an event from one JSON document text[0..len); defaults fill in the
 * fields it lacks. where names the input ("--json", "line 3"). */
static int event_from_json(const char *text, size_t len, const struct fields *defaults,
                           const char *where, tlm_event **out, char *name_out, size_t name_cap)
{
    static const char *const keys[] = {"event", "properties", "timestamp", "uuid", "distinct_id"};
    struct value doc, *field[5] = {0};
    struct value_error err;
    struct fields f = *defaults;
    char at[128];
    int rc = EXIT_DATA;
    if (value_parse(text, len, &doc, &err) < 0) {
        report(where_in(at, sizeof at, where, text, err.offset), "bad JSON: %s", err.message);
        return EXIT_DATA;
    }
    if (doc.type != VALUE_OBJECT) {
        report(where, "expected a JSON object {\"event\": ...}, found %s", value_type_name(doc.type));
        goto done;
    }
    for (size_t i = 0; i < doc.as.object.len; i++) {
        struct value_member *m = &doc.as.object.members[i];
        size_t k = 0;
        while (k < 5 && strcmp(m->key, keys[k]) != 0)
            k++;
        if (k == 5) {
            report(where, "unknown key \"%.60s\" (allowed: event, properties, timestamp, uuid, "
                          "distinct_id)", m->key);
            goto done;
        }
        field[k] = &m->value;
    }
    if (field[0] == NULL || field[0]->type != VALUE_STRING) {
        if (field[0] == NULL)
            report(where, "\"event\" (the event's name) is missing");
        else
            report(where, "\"event\" must be a string, found %s", value_type_name(field[0]->type));
        goto done;
    }
    if (field[1] != NULL && field[1]->type != VALUE_OBJECT && field[1]->type != VALUE_NULL) {
        report(where, "\"properties\" must be an object, found %s", value_type_name(field[1]->type));
        goto done;
    }
    if (field[2] != NULL) {
        struct value *t = field[2];
        f.has_timestamp = 1;
        if (t->type == VALUE_UINT || t->type == VALUE_INT) { /* the range is checked later */
            f.timestamp_ms = t->type == VALUE_INT ? t->as.i
                             : t->as.u > INT64_MAX ? INT64_MAX
                                                   : (int64_t)t->as.u;
        } else if (t->type != VALUE_STRING ||
                   timestamp_parse(t->as.str.ptr, t->as.str.len, &f.timestamp_ms) < 0) {
            report(where, "\"timestamp\" must be milliseconds since the epoch or an RFC 3339 "
                          "string like \"2026-11-28T12:00:00.123Z\", found %s%s%.60s%s",
                   value_type_name(t->type), t->type == VALUE_STRING ? " \"" : "",
                   t->type == VALUE_STRING ? t->as.str.ptr : "", t->type == VALUE_STRING ? "\"" : "");
            goto done;
        }
    }
    for (int k = 3; k < 5; k++) {
        if (field[k] != NULL && field[k]->type != VALUE_STRING) {
            report(where, "\"%s\" must be a string, found %s", keys[k],
                   value_type_name(field[k]->type));
            goto done;
        }
    }
    if (field[3] != NULL)
        f.uuid = field[3]->as.str.ptr;
    if (field[4] != NULL) {
        f.distinct_id = field[4]->as.str.ptr;
        f.distinct_id_len = field[4]->as.str.len;
    }
    snprintf(name_out, name_cap, "%s", field[0]->as.str.ptr);
    rc = event_build(field[0]->as.str.ptr, field[0]->as.str.len,
                     field[1] && field[1]->type == VALUE_OBJECT ? field[1] : NULL, &f, where, out);
done:
    value_free(&doc);
    return rc;
}

/* ------------------------------------------------------------ sending */

/* Returns 0 if something accepts connections at path, else -1 with the
 * reason in why: a connect() of our own, as libtelemetry counts failed
 * connections but does not say why they failed. */
static int agent_probe(const char *path, char *why, size_t len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = -1;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0) {
        snprintf(why, len, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        snprintf(why, len, "%s%s", strerror(e),
                 e == ENOENT || e == ECONNREFUSED
                     ? " (is telemetry-agent running? the socket is -s, else $TELEMETRY_SOCKET, "
                       "else " TLM_DEFAULT_SOCKET ")"
                 : e == EACCES ? " (this user may not use the socket: see the agent's "
                                 "agent.socket_mode and agent.socket_group)"
                               : "");
    } else {
        snprintf(why, len, "it did not accept a connection in time");
        rc = 0;
    }
    close(fd);
    return rc;
}

/* what: what it means for the events ("not acknowledged: "), or "". */
static int sender_unreachable(struct sender *s, const char *where, const char *what)
{
    char why[256];
    if (agent_probe(s->path, why, sizeof why) == 0) /* it is back: say what happened */
        snprintf(why, sizeof why, "the connection failed");
    report(where, "%sthe agent at %s is unreachable: %s", what, s->path, why);
    s->status = worst(s->status, EXIT_UNREACHABLE);
    return -1;
}

/* After the first send: did the first connection work? */
static int sender_contact(struct sender *s)
{
    int64_t deadline = now_ms() + CONTACT_TIMEOUT_MS;
    for (;;) {
        tlm_stats st;
        tlm_get_stats(s->client, &st);
        if (st.connects > 0) {
            s->contacted = 1;
            return 0;
        }
        if (st.connect_failures > 0 || now_ms() >= deadline)
            return sender_unreachable(s, NULL, "");
        tlm_flush(s->client, 10);
    }
}

static const char *reject_reason_meaning(const char *reason)
{
    static const char *const meanings[][2] = {
        {"unknown_event", "the event name is not in the agent's registry (events.registry)"},
        {"too_large", "the event is larger than the agent takes (events.max_event_bytes)"},
        {"bad_event", "the event name is empty or too long"},
        {"duplicate_key", "a key appears twice in the event"},
        {"bad_properties", "the properties are not a map"},
    };
    for (size_t i = 0; i < sizeof meanings / sizeof meanings[0]; i++)
        if (strcmp(reason, meanings[i][0]) == 0)
            return meanings[i][1];
    return NULL;
}

/* Compare the counters with the last look: report rejections and events
 * given up on since then. */
static void sender_check(struct sender *s, const char *where)
{
    tlm_stats st;
    tlm_get_stats(s->client, &st);
    uint64_t rejected = st.dropped_rejected - s->seen.dropped_rejected;
    uint64_t given_up = st.dropped_connection - s->seen.dropped_connection;
    if (rejected > 0) {
        const char *meaning = reject_reason_meaning(st.last_reject_reason);
        report(where, "rejected by the agent: %s%s%s", st.last_reject_reason,
               meaning ? ": " : "", meaning ? meaning : "");
    }
    if (given_up > 0)
        report(where,
               "%llu event(s) given up: the agent closed the connection on them again and "
               "again, saying %s (%s)",
               (unsigned long long)given_up, st.last_error_reason, st.last_error_detail);
    if (rejected + given_up > 0) {
        s->failed += (unsigned)(rejected + given_up);
        s->status = worst(s->status, EXIT_REJECTED);
    }
    s->seen = st;
}

/* Send one event. Returns 0 to go on, -1 when there is no point going on
 * (the agent is unreachable or does not answer). */
static int sender_send(struct sender *s, tlm_event *ev, const char *where)
{
    tlm_status st = tlm_send(s->client, ev);
    if (st == TLM_EQUEUE_FULL && tlm_flush(s->client, s->timeout_ms) == TLM_OK)
        st = tlm_send(s->client, ev);
    if (st == TLM_EQUEUE_FULL) {
        report(where, "not sent: the agent at %s took no events for %d ms (--timeout)", s->path,
               s->timeout_ms);
        s->status = worst(s->status, EXIT_NOT_ACKED);
        return -1;
    }
    if (st != TLM_OK) {
        const void *data;
        size_t len = 0;
        if (st == TLM_ETOOLARGE && tlm_event_encode(ev, &data, &len) == TLM_OK)
            report(where, "not sent: the event is %zu bytes as msgpack, more than the %d an event "
                          "may have", len, TLM_DEFAULT_MAX_EVENT_BYTES);
        else
            report(where, "not sent: %s", tlm_strerror(st));
        s->failed++;
        s->status = worst(s->status, status_exit(st));
        return 0;
    }
    s->sent++;
    if (!s->contacted && sender_contact(s) < 0)
        return -1;
    if (!s->wait)
        return 0;
    if (tlm_flush(s->client, s->timeout_ms) == TLM_ETIMEOUT) {
        char why[256];
        if (agent_probe(s->path, why, sizeof why) < 0)
            return sender_unreachable(s, where, "not acknowledged: ");
        report(where, "not acknowledged by the agent at %s within %d ms: it did not answer (its "
                      "buffer may be full, or it is shutting down)", s->path, s->timeout_ms);
        s->status = worst(s->status, EXIT_NOT_ACKED);
        return -1;
    }
    sender_check(s, where);
    return 0;
}

/* Without --wait: give what is still queued a last chance to be written. */
static void sender_finish(struct sender *s)
{
    if (s->wait || s->status >= EXIT_UNREACHABLE || s->sent == 0)
        return;
    if (tlm_flush(s->client, s->timeout_ms) == TLM_ETIMEOUT) {
        tlm_stats st;
        char what[64], why[256];
        tlm_get_stats(s->client, &st);
        snprintf(what, sizeof what, "%llu event(s) not sent: ", (unsigned long long)st.queued);
        if (agent_probe(s->path, why, sizeof why) < 0)
            sender_unreachable(s, NULL, what);
        else {
            report(NULL, "%llu event(s) not written to the agent at %s within %d ms (--timeout)",
                   (unsigned long long)st.queued, s->path, s->timeout_ms);
            s->status = worst(s->status, EXIT_NOT_ACKED);
        }
    }
    sender_check(s, NULL);
}

/* One JSON event a line from stdin. */
static void send_stdin(struct sender *s, const struct fields *defaults)
{
    unsigned events = 0;
    char *line = NULL, where[64], name[64];
    size_t cap = 0;
    ssize_t n;
    for (unsigned long lineno = 1; (n = getline(&line, &cap, stdin)) >= 0; lineno++) {
        tlm_event *ev = NULL;
        if (strspn(line, " \t\r\n") == (size_t)n)
            continue;
        events++;
        snprintf(where, sizeof where, "line %lu", lineno);
        int rc = event_from_json(line, (size_t)n, defaults, where, &ev, name, sizeof name);
        if (rc != 0) {
            s->failed++;
            s->status = worst(s->status, rc);
            continue;
        }
        snprintf(where, sizeof where, "line %lu (event '%.24s')", lineno, name);
        rc = sender_send(s, ev, where);
        tlm_event_free(ev);
        if (rc < 0)
            break;
    }
    if (ferror(stdin)) {
        report(NULL, "reading stdin: %s", strerror(errno));
        s->status = worst(s->status, EXIT_INTERNAL);
    }
    free(line);
    if (s->failed > 0)
        report(NULL, "stdin: %u of %u event(s) failed (see above)", s->failed, events);
}

/* ------------------------------------------------------------ command line */

/* Parse argv into *o. Returns -1 to go on, else the exit status. */
static int options_parse(int argc, char **argv, struct options *o)
{
    enum { OPT_UUID = 256, OPT_TIMESTAMP, OPT_DISTINCT_ID, OPT_JSON };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},
        {"uuid", required_argument, NULL, OPT_UUID},
        {"timestamp", required_argument, NULL, OPT_TIMESTAMP},
        {"distinct-id", required_argument, NULL, OPT_DISTINCT_ID},
        {"json", required_argument, NULL, OPT_JSON},
        {"wait", no_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *timeout = NULL, *timestamp = NULL;
    int c;
    memset(o, 0, sizeof *o);
    while ((c = getopt_long(argc, argv, "s:wt:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            o->socket = optarg;
            break;
        case OPT_UUID:
            o->uuid = optarg;
            break;
        case OPT_TIMESTAMP:
            timestamp = optarg;
            break;
        case OPT_DISTINCT_ID:
            o->distinct_id = optarg;
            break;
        case OPT_JSON:
            o->json = optarg;
            break;
        case 'w':
            o->wait = 1;
            break;
        case 't':
            timeout = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_OK;
        case 'V':
            printf("telemetry-send %s (libtelemetry %s)\n", TELEMETRY_SEND_VERSION, tlm_version());
            return EXIT_OK;
        default:
            fputs("Try 'telemetry-send --help' for more information.\n", stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        o->event = argv[optind++];
    o->props = argv + optind;
    o->nprops = argc - optind;

    int from_stdin = (o->event && strcmp(o->event, "-") == 0) || (o->json && !strcmp(o->json, "-"));
    if (o->json != NULL && o->event != NULL)
        return usage_error("--json gives the whole event: no EVENT ('%s') or key=value arguments "
                           "go with it", o->event);
    if (o->json == NULL && o->event == NULL)
        return usage_error("missing EVENT (the event's name), --json or - (events from stdin)");
    if (from_stdin && o->nprops > 0)
        return usage_error("'%s': key=value arguments do not go with - (events from stdin)",
                           o->props[0]);
    if (from_stdin && o->uuid != NULL)
        return usage_error("--uuid names one event; with - (stdin) every event needs its own");
    if (o->socket != NULL && *o->socket == '\0')
        return usage_error("-s/--socket: the path is empty");
    if (timeout != NULL) {
        char *end;
        errno = 0;
        long v = strtol(timeout, &end, 10);
        if (*timeout < '0' || *timeout > '9' || *end != '\0' || errno != 0 || v > INT_MAX)
            return usage_error("--timeout: '%s' is not a number of milliseconds (expected a whole "
                               "number from 0 to %d)", timeout, INT_MAX);
        o->timeout_ms = (int)v;
    } else {
        o->timeout_ms = o->wait ? DEFAULT_WAIT_TIMEOUT_MS : DEFAULT_FLUSH_TIMEOUT_MS;
    }
    if (timestamp != NULL) {
        if (timestamp_parse(timestamp, strlen(timestamp), &o->timestamp_ms) < 0) {
            report(NULL, "--timestamp: '%s' is neither an RFC 3339 time (like "
                         "2026-11-28T12:00:00.123Z or 2026-11-28T13:00:00+01:00) nor "
                         "milliseconds since the epoch", timestamp);
            return EXIT_DATA;
        }
        o->has_timestamp = 1;
    }
    return -1;
}

/* The options' event fields, checked now so a bad one names the option. */
static int options_fields(const struct options *o, struct fields *f)
{
    tlm_event *probe;
    int rc = EXIT_OK;
    memset(f, 0, sizeof *f);
    f->uuid = o->uuid;
    f->distinct_id = o->distinct_id;
    f->distinct_id_len = o->distinct_id ? strlen(o->distinct_id) : 0;
    f->has_timestamp = o->has_timestamp;
    f->timestamp_ms = o->timestamp_ms;
    if (tlm_event_new(&probe, "probe") != TLM_OK) {
        report(NULL, "out of memory");
        return EXIT_INTERNAL;
    }
    if (o->uuid && tlm_event_set_uuid(probe, o->uuid) != TLM_OK) {
        report(NULL, "--uuid: '%s' is not a UUID (expected 8-4-4-4-12 hex digits, e.g. "
                     "0190f3a0-7c1e-7b3a-9c1d-2f4e5a6b7c8d)", o->uuid);
        rc = EXIT_DATA;
    } else if (o->has_timestamp && tlm_event_set_timestamp_ms(probe, o->timestamp_ms) != TLM_OK) {
        report(NULL, "--timestamp: %lld ms is outside 1970-01-01 to 9999-12-31",
               (long long)o->timestamp_ms);
        rc = EXIT_DATA;
    } else if (o->distinct_id && (f->distinct_id_len == 0 || f->distinct_id_len > TLM_DISTINCT_ID_MAX)) {
        report(NULL, "--distinct-id: must be 1 to %d bytes (it is %zu)", TLM_DISTINCT_ID_MAX,
               f->distinct_id_len);
        rc = EXIT_DATA;
    }
    tlm_event_free(probe);
    return rc;
}

/* The single event of the command line (EVENT key=value... or --json TEXT). */
static int build_one(const struct options *o, char **argv, const struct fields *f,
                     tlm_event **ev, char *name, size_t name_cap)
{
    if (o->json != NULL)
        return event_from_json(o->json, strlen(o->json), f, "--json", ev, name, name_cap);
    if (o->event == NULL) { /* options_parse asks for one of the two */
        report(NULL, "no event name");
        return EXIT_INTERNAL;
    }
    struct value props = value_object();
    int rc = 0;
    for (int i = 0; i < o->nprops && rc == 0; i++)
        rc = prop_add(&props, argv, (int)(o->props - argv) + i);
    snprintf(name, name_cap, "%s", o->event);
    if (rc == 0)
        rc = event_build(o->event, strlen(o->event), &props, f, NULL, ev);
    value_free(&props);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    struct fields f;
    tlm_options opts;
    tlm_event *ev = NULL;
    char name[64], where[96];
    int rc = options_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if ((rc = options_fields(&o, &f)) != EXIT_OK)
        return rc;
    const char *source = o.json ? o.json : o.event;
    int from_stdin = source != NULL && strcmp(source, "-") == 0;
    if (!from_stdin && (rc = build_one(&o, argv, &f, &ev, name, sizeof name)) != 0)
        return rc;

    const char *env = getenv("TELEMETRY_SOCKET");
    const char *path = o.socket ? o.socket : env && *env ? env : TLM_DEFAULT_SOCKET;
    struct sender s = {.wait = o.wait, .timeout_ms = o.timeout_ms};
    tlm_options_init(&opts);
    opts.reliable = o.wait;
    opts.queue_bytes = QUEUE_BYTES;
    /* resend an unanswered event a few times within --timeout */
    opts.ack_timeout_ms = (unsigned)(o.timeout_ms / 4 < 200    ? 200
                                     : o.timeout_ms / 4 > 5000 ? 5000
                                                               : o.timeout_ms / 4);
    tlm_status st = tlm_open(&s.client, path, &opts);
    if (st != TLM_OK) {
        if (st == TLM_ETOOLONG)
            report(NULL, "socket path '%s' is %zu bytes; a Unix socket address holds at most %zu",
                   path, strlen(path), sizeof ((struct sockaddr_un *)0)->sun_path - 1);
        else
            report(NULL, "cannot make a client for %s: %s", path, tlm_strerror(st));
        tlm_event_free(ev);
        return st == TLM_ETOOLONG ? EXIT_DATA : EXIT_INTERNAL;
    }
    s.path = tlm_socket_path(s.client);
    if (from_stdin) {
        send_stdin(&s, &f);
    } else {
        snprintf(where, sizeof where, "event '%.60s'", name);
        sender_send(&s, ev, where);
        tlm_event_free(ev);
    }
    sender_finish(&s);
    tlm_close(s.client);
    return s.status;
}
