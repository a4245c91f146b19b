/*
 * relay: the browser relay (see relay.h).
 *
 * A request's body is parsed with jansson (which refuses invalid UTF-8,
 * and nesting past its own bound), each event is turned into the msgpack
 * map a socket producer would have sent, and handed to the pipeline one
 * at a time, so that each gets its own verdict.
 */
#include "relay.h"

#include "account.h"
#include "clock.h"
#include "httpd.h"
#include "json.h"
#include "pack.h"
#include "ratelimit.h"
#include "wire.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RELAY_INFLATE_FACTOR 16     /* a gzip body may inflate to this many times the bound */
#define RELAY_INFLATE_MAX (16 * 1024 * 1024) /* ... and never past this */
#define RELAY_PREFLIGHT_MAX_AGE "86400"
#define RELAY_MAX_NESTING (WIRE_MAX_DEPTH + 2) /* the events' own, inside an array or a batch */
/* A body up to the browsers' own bound for keepalive requests and beacons
 * is read even past relay.max_body_bytes, so that its 413 comes from the
 * relay, with the CORS headers a page needs to read it; libevent answers a
 * larger one from its headers, with none. */
#define RELAY_BROWSER_BODY_MAX (64 * 1024)

struct relay {
    const struct config *cfg;
    struct pipeline *pipeline;
    struct budget *memory;
    struct spooler *spooler; /* NULL without a spool */
    struct httpd *httpd;
    struct libdeflate_decompressor *gunzip;
    struct buf inflated, packed;
    struct ratelimit rate;
    int stopping;
};

/* ---- answers ---- */

static void relay_json_error(struct evhttp_request *req, int code, const char *message)
{
    struct buf out = BUF_INIT;
    buf_append_str(&out, "{\"error\":");
    json_write_string(&out, message, strlen(message));
    buf_append_str(&out, "}\n");
    if (out.failed)
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
    else
        httpd_reply(req, code, "application/json", out.data, out.len);
    buf_free(&out);
}

static void relay_header(struct evhttp_request *req, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), name, value);
}

/* ---- CORS ---- */

/* Where a request comes from, as CORS sees it. */
enum relay_origin {
    ORIGIN_ABSENT,  /* no Origin header: not a browser page's request */
    ORIGIN_OWN,     /* a page of the relay's own origin: it needs no CORS headers */
    ORIGIN_LISTED,  /* one of relay.cors_origins ("*": any): answered with CORS headers */
    ORIGIN_REFUSED, /* any other */
};

/* Is origin one of relay.cors_origins? */
static int relay_origin_listed(const struct relay *r, const char *origin)
{
    size_t olen = strlen(origin);
    for (const char *p = r->cfg->relay_cors_origins; *p;) {
        size_t n = strcspn(p, " ,\t");
        if ((n == 1 && p[0] == '*') || (n == olen && strncmp(p, origin, n) == 0))
            return 1;
        p += n;
        p += strspn(p, " ,\t");
    }
    return 0;
}

/* Is origin the relay's own (scheme://Host of the request)? */
static int relay_origin_own(struct evhttp_request *req, const char *origin)
{
    const char *host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
    const char *rest = strncmp(origin, "http://", 7) == 0    ? origin + 7
                       : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                             : NULL;
    return host != NULL && rest != NULL && strcmp(rest, host) == 0;
}

static enum relay_origin relay_origin_of(const struct relay *r, struct evhttp_request *req)
{
    const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
    if (origin == NULL)
        return ORIGIN_ABSENT;
    if (relay_origin_listed(r, origin))
        return ORIGIN_LISTED;
    return relay_origin_own(req, origin) ? ORIGIN_OWN : ORIGIN_REFUSED;
}

/* ---- the body ---- */

/* The body, inflated if it is gzip. Returns it in *text, or NULL after
 * answering. */
static int relay_body(struct relay *r, struct evhttp_request *req, const char **text,
                      size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t raw_len = evbuffer_get_length(in);
    const char *raw = raw_len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
    const char *enc =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Encoding");
    if (enc == NULL || strcasecmp(enc, "identity") == 0) {
        *text = raw;
        *len = raw_len;
        return 0;
    }
    if (strcasecmp(enc, "gzip") != 0) {
        relay_json_error(req, 415, "Content-Encoding must be gzip or none");
        return -1;
    }
    size_t max = (size_t)r->cfg->relay_max_body_bytes * RELAY_INFLATE_FACTOR, out_len = 0;
    if (max > RELAY_INFLATE_MAX)
        max = RELAY_INFLATE_MAX;
    buf_rollback(&r->inflated, 0);
    if (buf_reserve(&r->inflated, max) < 0) {
        relay_json_error(req, HTTP_INTERNAL, "out of memory");
        return -1;
    }
    enum libdeflate_result res = libdeflate_gzip_decompress(r->gunzip, raw, raw_len,
                                                            r->inflated.data, max, &out_len);
    if (res == LIBDEFLATE_INSUFFICIENT_SPACE) {
        char msg[128];
        snprintf(msg, sizeof msg, "the gzip body inflates to more than %zu bytes", max);
        relay_json_error(req, 413, msg);
        return -1;
    }
    if (res != LIBDEFLATE_SUCCESS) {
        relay_json_error(req, HTTP_BADREQUEST, "the body is not valid gzip");
        return -1;
    }
    *text = r->inflated.data;
    *len = out_len;
    return 0;
}

/* Does JSON text nest deeper than limit? A linear look before the parser
 * is asked to build anything. */
static int relay_too_deep(const char *text, size_t len, int limit)
{
    struct json_nesting n = {0};
    for (size_t i = 0; i < len; i++)
        if (json_nesting_step(&n, text[i]) > 0 && n.depth > limit)
            return 1;
    return 0;
}

/* The msgpack of a JSON value, at most WIRE_MAX_DEPTH deep. Returns 0 or -1. */
static int relay_pack(struct buf *out, json_t *v, int depth)
{
    if (depth > WIRE_MAX_DEPTH)
        return -1;
    const char *key;
    json_t *item;
    size_t i;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        pack_map(out, (uint32_t)json_object_size(v));
        json_object_foreach(v, key, item) {
            pack_str(out, key, strlen(key));
            if (relay_pack(out, item, depth + 1) < 0)
                return -1;
        }
        return 0;
    case JSON_ARRAY:
        pack_array(out, (uint32_t)json_array_size(v));
        json_array_foreach(v, i, item)
            if (relay_pack(out, item, depth + 1) < 0)
                return -1;
        return 0;
    case JSON_STRING:
        pack_str(out, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        pack_int(out, (int64_t)json_integer_value(v));
        return 0;
    case JSON_REAL:
        pack_double(out, json_real_value(v));
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        pack_bool(out, json_is_true(v));
        return 0;
    case JSON_NULL:
        pack_nil(out);
        return 0;
    }
    return -1;
}

/* An event refused before the pipeline saw it: counted all the same. */
static const char *relay_refuse(enum drop_reason reason)
{
    account_received(SOURCE_HTTP);
    account_refused(SOURCE_HTTP, reason);
    return reason_name(reason);
}

/* Hand one event to the pipeline. Returns NULL if it was taken, or the
 * reason it was not. */
static const char *relay_event(struct relay *r, json_t *event, const char *peer)
{
    if (!json_is_object(event))
        return relay_refuse(DROP_UNSUPPORTED_SHAPE);
    if (!r->cfg->trust_distinct_id)
        json_object_del(event, "distinct_id"); /* the agent's own applies */
    buf_rollback(&r->packed, 0);
    if (relay_pack(&r->packed, event, 1) < 0 || r->packed.failed)
        return relay_refuse(DROP_BAD_PROPERTIES); /* nested too deep, or out of memory */
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    size_t off = 0;
    const char *why = NULL;
    if (msgpack_unpack_next(&unpacked, r->packed.data, r->packed.len, &off) !=
        MSGPACK_UNPACK_SUCCESS) {
        why = relay_refuse(DROP_UNSUPPORTED_SHAPE);
    } else {
        struct pipeline_result res;
        pipeline_handle_event(r->pipeline, &unpacked.data, SOURCE_HTTP, peer, &res);
        if (res.accepted == 0)
            why = reason_name(res.deferred > 0 ? DROP_BUFFER_FULL : res.reason);
    }
    msgpack_unpacked_destroy(&unpacked);
    return why;
}

/* The events of a body: one event, an array, or {"batch": [...]}. Returns
 * an array (a new reference), or NULL. */
static json_t *relay_events(json_t *root)
{
    if (json_is_array(root))
        return json_incref(root);
    if (json_is_object(root) && json_object_get(root, "event") != NULL) {
        json_t *one = json_array();
        json_array_append(one, root);
        return one;
    }
    json_t *batch = json_is_object(root) ? json_object_get(root, "batch") : NULL;
    return json_is_array(batch) && json_object_size(root) == 1 ? json_incref(batch) : NULL;
}

/* Room for n more events from this client, and in the buffer? Answers 429
 * if not. */
static int relay_admit(struct relay *r, struct evhttp_request *req, const char *peer, unsigned n)
{
    int wait = 1;
    char after[16], msg[200];
    if (n > 0 && ratelimit_take(&r->rate, peer, n, clock_monotonic_ms(), &wait) < 0) {
        snprintf(msg, sizeof msg, "more than relay.rate_limit = %lld events a second from %s",
                 (long long)r->cfg->relay_rate_limit, peer);
    } else if (budget_full(r->memory) || (r->spooler != NULL && spooler_full(r->spooler))) {
        snprintf(msg, sizeof msg, "the agent's buffer is full: try again shortly");
        wait = 1;
    } else {
        return 0;
    }
    snprintf(after, sizeof after, "%d", wait);
    relay_header(req, "Retry-After", after);
    relay_json_error(req, 429, msg);
    return -1;
}

/* The client's address as the rate knows it: an IPv6 address by its /64,
 * the block one host is usually given. */
static void relay_peer(struct evhttp_request *req, char *out, size_t len)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    unsigned char v6[16];
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    snprintf(out, len, "%s", addr ? addr : "?");
    if (addr != NULL && inet_pton(AF_INET6, addr, v6) == 1) {
        memset(v6 + 8, 0, 8);
        size_t n;
        if (inet_ntop(AF_INET6, v6, out, (socklen_t)len) != NULL && (n = strlen(out)) + 4 < len)
            memcpy(out + n, "/64", 4);
    }
}

static void relay_post(struct relay *r, struct evhttp_request *req)
{
    char peer[RATELIMIT_ADDR_LEN];
    size_t body_len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (body_len > (size_t)r->cfg->relay_max_body_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than relay.max_body_bytes = %lld",
                 (long long)r->cfg->relay_max_body_bytes);
        relay_json_error(req, 413, msg);
        return;
    }
    relay_peer(req, peer, sizeof peer);
    /* a request costs one event of its client's rate before any work */
    if (relay_admit(r, req, peer, 1) < 0)
        return;
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    size_t tlen = type ? strcspn(type, "; ") : 0;
    if (type == NULL || !((tlen == 16 && strncasecmp(type, "application/json", 16) == 0) ||
                          (tlen == 10 && strncasecmp(type, "text/plain", 10) == 0))) {
        relay_json_error(req, 415, "Content-Type must be application/json (or text/plain, as "
                         "navigator.sendBeacon sends)");
        return;
    }
    const char *text;
    size_t len;
    if (relay_body(r, req, &text, &len) < 0)
        return;
    if (relay_too_deep(text, len, RELAY_MAX_NESTING)) {
        char msg[96];
        snprintf(msg, sizeof msg, "the body nests deeper than %d levels", RELAY_MAX_NESTING);
        relay_json_error(req, HTTP_BADREQUEST, msg);
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        char msg[300];
        snprintf(msg, sizeof msg, "the body is not JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        relay_json_error(req, HTTP_BADREQUEST, msg);
        return;
    }
    json_t *events = relay_events(root);
    if (events == NULL) {
        relay_json_error(req, HTTP_BADREQUEST, "the body is not an event {\"event\": ..., "
                         "\"properties\": {...}}, an array of them, or {\"batch\": [...]}");
        json_decref(root);
        return;
    }
    size_t n = json_array_size(events);
    if (r->cfg->relay_rate_limit > 0 && n > (size_t)r->cfg->relay_rate_burst) {
        char msg[160]; /* it could never pass the rate */
        snprintf(msg, sizeof msg, "more than relay.rate_burst = %lld events in one request "
                 "(send them in smaller requests)", (long long)r->cfg->relay_rate_burst);
        relay_json_error(req, 413, msg);
    } else if (relay_admit(r, req, peer, n > 1 ? (unsigned)n - 1 : 0) == 0) {
        struct buf rejected = BUF_INIT, out = BUF_INIT;
        size_t i, accepted = 0;
        json_t *event;
        char who[RATELIMIT_ADDR_LEN + 32];
        snprintf(who, sizeof who, "relay client %s", peer);
        json_array_foreach(events, i, event) {
            const char *why = relay_event(r, event, who);
            if (why == NULL) {
                accepted++;
                continue;
            }
            buf_append_str(&rejected, rejected.len == 0 ? "{\"index\":" : ",{\"index\":");
            json_write_uint64(&rejected, i);
            buf_append_str(&rejected, ",\"reason\":");
            json_write_string(&rejected, why, strlen(why));
            buf_append_char(&rejected, '}');
        }
        buf_append_str(&out, "{\"accepted\":");
        json_write_uint64(&out, accepted);
        buf_append_str(&out, ",\"rejected\":[");
        buf_append(&out, rejected.data, rejected.len);
        buf_append_str(&out, "]}\n");
        if (out.failed || rejected.failed)
            evhttp_send_error(req, HTTP_INTERNAL, NULL);
        else
            httpd_reply(req, 202, "application/json", out.data, out.len);
        buf_free(&rejected);
        buf_free(&out);
    }
    json_decref(events);
    json_decref(root);
}

static void relay_request_cb(struct evhttp_request *req, void *arg)
{
    struct relay *r = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_CONNECT && (path == NULL || strcmp(path, r->cfg->relay_path) != 0)) {
        relay_json_error(req, HTTP_NOTFOUND, "not found"); /* (CONNECT names a host, no path) */
        return;
    }
    enum relay_origin from = relay_origin_of(r, req);
    if (from == ORIGIN_LISTED) { /* only a listed origin is told anything of CORS */
        relay_header(req, "Access-Control-Allow-Origin",
                     evhttp_find_header(evhttp_request_get_input_headers(req), "Origin"));
        relay_header(req, "Access-Control-Expose-Headers", "Retry-After");
        relay_header(req, "Vary", "Origin");
    }
    if (r->stopping) {
        relay_header(req, "Connection", "close");
        relay_header(req, "Retry-After", "1");
        relay_json_error(req, 503, "the agent is shutting down");
        return;
    }
    if (cmd != EVHTTP_REQ_POST && cmd != EVHTTP_REQ_OPTIONS) {
        relay_header(req, "Allow", "POST, OPTIONS");
        relay_json_error(req, 405, "method not allowed: POST events here");
    } else if (from == ORIGIN_REFUSED) {
        relay_json_error(req, 403, "this origin may not send events here (relay.cors_origins)");
    } else if (cmd == EVHTTP_REQ_OPTIONS) {
        if (from == ORIGIN_LISTED) { /* a preflight */
            relay_header(req, "Access-Control-Allow-Methods", "POST, OPTIONS");
            relay_header(req, "Access-Control-Allow-Headers", "Content-Type, Content-Encoding");
            relay_header(req, "Access-Control-Max-Age", RELAY_PREFLIGHT_MAX_AGE);
        }
        relay_header(req, "Allow", "POST, OPTIONS");
        httpd_reply(req, 204, NULL, "", 0);
    } else {
        relay_post(r, req);
    }
}

struct relay *relay_open(struct event_base *base, const struct config *cfg,
                         struct pipeline *pipeline, char *err, size_t errlen)
{
    struct relay *r = calloc(1, sizeof *r);
    if (r == NULL || (r->gunzip = libdeflate_alloc_decompressor()) == NULL) {
        free(r);
        snprintf(err, errlen, "[relay] listen: out of memory");
        return NULL;
    }
    r->cfg = cfg;
    r->pipeline = pipeline;
    r->memory = pipeline->batcher->budget;
    r->spooler = pipeline->spooler;
    ratelimit_init(&r->rate, (double)cfg->relay_rate_limit, (double)cfg->relay_rate_burst);
    struct httpd_limits limits = {
        .max_connections = (unsigned)cfg->relay_max_connections,
        .max_headers_bytes = 8192,
        .max_body_bytes = cfg->relay_max_body_bytes > RELAY_BROWSER_BODY_MAX
                              ? (size_t)cfg->relay_max_body_bytes
                              : RELAY_BROWSER_BODY_MAX,
        .timeout_ms = (int)cfg->relay_timeout_ms,
    };
    r->httpd = httpd_open(base, "[relay] listen", cfg->relay_listen, &limits, relay_request_cb, r,
                          err, errlen);
    if (r->httpd == NULL) {
        relay_free(r);
        return NULL;
    }
    return r;
}

void relay_stop(struct relay *r)
{
    if (r == NULL)
        return;
    r->stopping = 1;
    httpd_stop(r->httpd);
}

const char *relay_address(const struct relay *r)
{
    return httpd_address(r->httpd);
}

void relay_free(struct relay *r)
{
    if (r == NULL)
        return;
    httpd_free(r->httpd);
    libdeflate_free_decompressor(r->gunzip);
    buf_free(&r->inflated);
    buf_free(&r->packed);
    free(r);
}
