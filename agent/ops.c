/*
 * ops: /metrics, /healthz, /readyz, /status (see ops.h).
 */
#include "ops.h"

#include "account.h"
#include "clock.h"
#include "httpd.h"
#include "json.h"
#include "metrics.h"
#include "timestamp.h"
#include "version.h"

#include <curl/curl.h>
#include <dirent.h>
#include <event2/http.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPS_RATE_SECONDS 60 /* the delivery rate is over the last minute */
/* The endpoints take no body; a small one is read all the same, so that a
 * POST or PUT with one is told 405 (and Allow), not 413. */
#define OPS_MAX_BODY_BYTES 4096

struct ops {
    struct ops_sources src;
    struct httpd *httpd;
    struct event *tick;
    int64_t started_ms;                       /* wall clock */
    uint64_t delivered[OPS_RATE_SECONDS + 1]; /* a second apart, the newest last */
    unsigned samples;
};

/* ---- figures ---- */

static size_t ops_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    size_t n = 0;
    if (d == NULL)
        return 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n > 3 ? n - 3 : 0; /* ., .. and the one opendir holds */
}

static uint64_t ops_rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Events delivered a second over the last minute (or since the start). */
static double ops_delivery_rate(const struct ops *o)
{
    if (o->samples < 2)
        return 0.0;
    return (double)(o->delivered[o->samples - 1] - o->delivered[0]) / (double)(o->samples - 1);
}

static void ops_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ops *o = arg;
    if (o->samples == OPS_RATE_SECONDS + 1) {
        memmove(o->delivered, o->delivered + 1, OPS_RATE_SECONDS * sizeof o->delivered[0]);
        o->samples--;
    }
    o->delivered[o->samples++] = account_now()->delivered;
}

/* Why the agent is not ready, or NULL when it is. */
static const char *ops_not_ready(const struct ops *o, char *why, size_t len)
{
    const struct listener *l = *o->src.listener;
    if (*o->src.stopping)
        return "shutting down";
    if (l == NULL || !listener_accepting(l))
        return "the socket is not listening yet";
    int64_t max = o->src.cfg->http_ready_max_backlog;
    uint64_t backlog = account_now()->buffered;
    if (max > 0 && backlog > (uint64_t)max) {
        snprintf(why, len, "the backlog of %" PRIu64 " undelivered events is above "
                 "http.ready_max_backlog = %" PRId64, backlog, max);
        return why;
    }
    return NULL;
}

/* ---- /metrics ---- */

static void ops_printf(struct buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ops_printf(struct buf *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(out, (size_t)n + 1) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(out->data + out->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    out->len += (size_t)n;
}

static void prom_head(struct buf *out, const char *name, const char *type, const char *help)
{
    ops_printf(out, "# HELP telemetry_agent_%s %s\n# TYPE telemetry_agent_%s %s\n", name, help,
               name, type);
}

/* One sample; labels is "" or `key="value"` (values here never need escaping). */
static void prom_u64(struct buf *out, const char *name, const char *labels, uint64_t v)
{
    ops_printf(out, "telemetry_agent_%s%s%s%s %" PRIu64 "\n", name, labels[0] ? "{" : "", labels,
               labels[0] ? "}" : "", v);
}

static void prom_one(struct buf *out, const char *name, const char *type, const char *help,
                     uint64_t v)
{
    prom_head(out, name, type, help);
    prom_u64(out, name, "", v);
}

/* Counters shown as they are in metrics.c. */
static const struct {
    const char *name;
    enum metric metric;
    const char *help;
} ops_counters[] = {
    {"batches_sent_total", METRIC_REQUESTS_SENT,
     "Requests sent to the backend: one each time a batch (or a half of one, after a 413) is "
     "sent, retries included."},
    {"batches_delivered_total", METRIC_BATCHES_DELIVERED,
     "Batches (or halves of one) the backend confirmed with a 2xx answer."},
    {"batches_retried_total", METRIC_BATCHES_RETRIED,
     "Times a batch was put back in the queue to be sent again after a failed request (no "
     "answer, 3xx, 401, 403, 404, 407, 408, 429 or 5xx)."},
    {"batches_split_total", METRIC_BATCHES_SPLIT,
     "Batches halved after a 413 answer, each half then sent on its own."},
    {"batches_dropped_total", METRIC_BATCHES_DROPPED,
     "Batches given up on undelivered: refused for good by the backend (a 4xx not retried, or "
     "a 413 for a single event), failing past backend.retry_max_elapsed_ms, or still held at "
     "shutdown without a spool; events_dropped_total counts their events by reason."},
    {"requests_timed_out_total", METRIC_REQUESTS_TIMED_OUT,
     "Requests the backend did not answer within the request timeout (also counted in "
     "batches_failed_total{class=\"none\"})."},
    {"connections_accepted_total", METRIC_CONNECTIONS_ACCEPTED, "Producer connections accepted."},
    {"connections_refused_total", METRIC_CONNECTIONS_REFUSED,
     "Producer connections refused (over agent.max_connections)."},
    {"connections_paused_total", METRIC_CONNECTIONS_PAUSED,
     "Times a producer waited for room in the buffer."},
    {"bytes_received_total", METRIC_BYTES_RECEIVED, "Bytes read from producers."},
    {"connections_denied_total", METRIC_CONNECTIONS_DENIED,
     "Producer connections refused: their user and groups are not in agent.allowed_uids or "
     "agent.allowed_gids."},
    {"connections_closed_idle_total", METRIC_CONNECTIONS_CLOSED_IDLE,
     "Producer connections closed for holding part of a message past agent.idle_timeout_ms."},
    {"connections_closed_unread_total", METRIC_CONNECTIONS_CLOSED_UNREAD,
     "Producer connections closed for not reading their acknowledgements within "
     "agent.write_timeout_ms."},
    {"config_reloads_total", METRIC_CONFIG_RELOADS,
     "Configurations reloaded (SIGHUP or agent.watch_config_ms)."},
    {"config_reload_failures_total", METRIC_CONFIG_RELOAD_FAILURES,
     "Reloads refused for a configuration error; the running configuration stayed."},
};

static void ops_metrics_counters(struct buf *out)
{
    for (size_t i = 0; i < sizeof ops_counters / sizeof ops_counters[0]; i++)
        prom_one(out, ops_counters[i].name, "counter", ops_counters[i].help,
                 metrics_get(ops_counters[i].metric));
}

static void ops_metrics_events(struct buf *out)
{
    const struct account *acc = account_now();
    char label[96];
    prom_head(out, "events_received_total", "counter", "Events that arrived, by source.");
    for (int i = 0; i < SOURCE_COUNT; i++) {
        snprintf(label, sizeof label, "source=\"%s\"", account_source_name((enum event_source)i));
        prom_u64(out, "events_received_total", label, acc->received[i]);
    }
    prom_head(out, "events_refused_total", "counter",
              "Events refused on arrival (rejected, or dropped for want of room) since the agent "
              "started, by source.");
    for (int i = 0; i < SOURCE_COUNT; i++) {
        snprintf(label, sizeof label, "source=\"%s\"", account_source_name((enum event_source)i));
        prom_u64(out, "events_refused_total", label, acc->refused[i]);
    }
    prom_one(out, "events_accepted_total", "counter",
             "Events taken into the buffer (or the spool) since the agent started.",
             acc->accepted);
    prom_head(out, "events_rejected_total", "counter",
              "Events refused for good on arrival (the producer is told), by reason.");
    for (int i = 0; i < DROP_DISABLED; i++) {
        snprintf(label, sizeof label, "reason=\"%s\"", reason_name((enum drop_reason)i));
        prom_u64(out, "events_rejected_total", label, acc->dropped[i]);
    }
    prom_head(out, "events_dropped_total", "counter",
              "Events the agent let go of without delivering them, by reason.");
    for (int i = DROP_DISABLED; i < DROP_REASON_COUNT; i++) {
        snprintf(label, sizeof label, "reason=\"%s\"", reason_name((enum drop_reason)i));
        prom_u64(out, "events_dropped_total", label, acc->dropped[i]);
    }
    prom_one(out, "events_delivered_total", "counter", "Events the backend confirmed.",
             acc->delivered);
    prom_one(out, "events_buffered", "gauge",
             "Events accepted and not yet delivered or dropped (in memory or in the spool).",
             acc->buffered);
}

static void ops_metrics_backend(const struct ops *o, struct buf *out)
{
    struct sender_state st;
    sender_state(o->src.sender, &st);
    prom_head(out, "batches_failed_total", "counter",
              "Requests that did not deliver their batch, by the status class of the backend's "
              "answer (none: no answer: the connection was refused or reset, or the request "
              "timed out). A 2xx answer delivers and is never counted here.");
    static const struct { const char *label; enum metric m; } failed[] = {
        {"class=\"3xx\"", METRIC_FAILED_3XX}, {"class=\"4xx\"", METRIC_FAILED_4XX},
        {"class=\"5xx\"", METRIC_FAILED_5XX}, {"class=\"none\"", METRIC_FAILED_NONE}};
    for (size_t i = 0; i < sizeof failed / sizeof failed[0]; i++)
        prom_u64(out, "batches_failed_total", failed[i].label, metrics_get(failed[i].m));
    prom_head(out, "backend_answers_total", "counter",
              "Every request to the backend, delivered or not, by the status class of its answer "
              "(none: no answer: refused, reset or timed out).");
    static const struct { const char *label; enum metric m; } answers[] = {
        {"class=\"2xx\"", METRIC_ANSWERS_2XX}, {"class=\"3xx\"", METRIC_ANSWERS_3XX},
        {"class=\"4xx\"", METRIC_ANSWERS_4XX}, {"class=\"5xx\"", METRIC_ANSWERS_5XX},
        {"class=\"none\"", METRIC_ANSWERS_NONE}};
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++)
        prom_u64(out, "backend_answers_total", answers[i].label, metrics_get(answers[i].m));
    prom_head(out, "bytes_sent_total", "counter", "Request body bytes sent, as sent and before "
              "compression.");
    prom_u64(out, "bytes_sent_total", "encoding=\"wire\"", metrics_get(METRIC_BYTES_SENT));
    prom_u64(out, "bytes_sent_total", "encoding=\"identity\"",
             metrics_get(METRIC_BYTES_SENT_UNCOMPRESSED));
    prom_one(out, "requests_in_flight", "gauge", "Requests to the backend not yet answered.",
             st.in_flight);
    prom_one(out, "backend_up", "gauge", "1 while the backend takes batches, 0 while the agent "
             "backs off or probes it.", strcmp(st.health, "up") == 0);
    const struct metrics_histogram *h = metrics_latency();
    prom_head(out, "backend_request_duration_seconds", "histogram",
              "Time from sending a request to its answer (or failure).");
    for (int i = 0; i <= METRICS_LATENCY_BUCKETS; i++) {
        char le[48];
        if (i < METRICS_LATENCY_BUCKETS)
            snprintf(le, sizeof le, "le=\"%g\"", (double)metrics_latency_bounds_ms[i] / 1000.0);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        prom_u64(out, "backend_request_duration_seconds_bucket", le, h->le[i]);
    }
    ops_printf(out, "telemetry_agent_backend_request_duration_seconds_sum %.3f\n",
               (double)h->sum_ms / 1000.0);
    prom_u64(out, "backend_request_duration_seconds_count", "", h->count);
}

static void ops_metrics_process(const struct ops *o, struct buf *out)
{
    const struct listener *l = *o->src.listener;
    prom_one(out, "buffer_bytes", "gauge", "Memory held for undelivered events (buffer.max_bytes "
             "bounds it).", o->src.budget->used);
    prom_one(out, "buffer_max_bytes", "gauge", "buffer.max_bytes.", o->src.budget->max);
    if (o->src.spooler != NULL) {
        struct spooler_state sp;
        spooler_state(o->src.spooler, &sp);
        prom_one(out, "spool_bytes", "gauge", "Bytes of spool files not yet wholly delivered.",
                 sp.bytes);
        prom_one(out, "spool_segments", "gauge", "Spool files kept.", sp.segments);
        int64_t age = sp.oldest_ms > 0 ? clock_wall_ms() - sp.oldest_ms : 0;
        prom_head(out, "spool_oldest_undelivered_age_seconds", "gauge",
                  "At most how long ago the oldest undelivered event was accepted (0: none).");
        ops_printf(out, "telemetry_agent_spool_oldest_undelivered_age_seconds %.3f\n",
                   age > 0 ? (double)age / 1000.0 : 0.0);
        prom_one(out, "spool_write_failing", "gauge", "1 while writes to the spool fail.",
                 (uint64_t)sp.failing);
    }
    prom_one(out, "connections_open", "gauge", "Producer connections open.",
             l != NULL ? listener_connections(l) : 0);
    prom_head(out, "build_info", "gauge", "The agent's version and its libraries'.");
    char labels[256];
    snprintf(labels, sizeof labels,
             "version=\"%s\",libevent=\"%s\",libcurl=\"%s\",msgpack=\"%s\"", TELEMETRY_VERSION,
             event_get_version(), curl_version_info(CURLVERSION_NOW)->version, msgpack_version());
    prom_u64(out, "build_info", labels, 1);
    prom_head(out, "process_start_time_seconds", "gauge", "When the agent started (Unix time).");
    ops_printf(out, "telemetry_agent_process_start_time_seconds %.3f\n",
               (double)o->started_ms / 1000.0);
    prom_one(out, "process_open_fds", "gauge", "Open file descriptors.", ops_open_fds());
    prom_one(out, "process_resident_memory_bytes", "gauge", "Resident memory (RSS).",
             ops_rss_bytes());
}

/* One sample of the privacy rules' counter: the rule as a label value
 * (escaped: a regular expression may hold anything). */
static void ops_privacy_rule(void *arg, const char *rule, uint64_t count)
{
    struct buf *out = arg;
    char label[600];
    size_t n = 0;
    for (const char *c = rule; *c != '\0' && n + 3 < sizeof label; c++) {
        if (*c == '\\' || *c == '"' || *c == '\n')
            label[n++] = '\\';
        label[n++] = *c == '\n' ? 'n' : *c;
    }
    label[n] = '\0';
    ops_printf(out, "telemetry_agent_privacy_actions_total{rule=\"%s\"} %" PRIu64 "\n", label,
               count);
}

static void ops_metrics_privacy(const struct ops *o, struct buf *out)
{
    const struct privacy *p = pipeline_privacy(o->src.pipeline);
    if (p == NULL)
        return;
    prom_head(out, "privacy_actions_total", "counter",
              "Keys dropped, values hashed and matches redacted, by [privacy] rule.");
    privacy_each_count(p, ops_privacy_rule, out);
}

static void ops_metrics(struct ops *o, struct evhttp_request *req)
{
    struct buf out = BUF_INIT;
    ops_metrics_events(&out);
    ops_metrics_counters(&out);
    ops_metrics_backend(o, &out);
    ops_metrics_process(o, &out);
    ops_metrics_privacy(o, &out);
    if (out.failed)
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    else
        httpd_reply(req, HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    buf_free(&out);
}

/* ---- /status ---- */

static void json_key(struct buf *out, int *first, const char *key)
{
    if (!*first)
        buf_append_char(out, ',');
    *first = 0;
    json_write_string(out, key, strlen(key));
    buf_append_char(out, ':');
}

static void json_u64(struct buf *out, int *first, const char *key, uint64_t v)
{
    json_key(out, first, key);
    json_write_uint64(out, v);
}

static void json_str(struct buf *out, int *first, const char *key, const char *v)
{
    json_key(out, first, key);
    if (v == NULL)
        buf_append_str(out, "null");
    else
        json_write_string(out, v, strlen(v));
}

static void json_time(struct buf *out, int *first, const char *key, int64_t ms)
{
    char text[TIMESTAMP_TEXT_MAX + 1];
    if (ms > 0)
        timestamp_format_ms_any(ms, text);
    json_str(out, first, key, ms > 0 ? text : NULL);
}

static void ops_status_events(struct buf *out)
{
    const struct account *acc = account_now();
    int first = 1, inner;
    buf_append_char(out, '{');
    json_u64(out, &first, "received", account_received_total());
    json_key(out, &first, "received_by_source");
    buf_append_char(out, '{');
    inner = 1;
    for (int i = 0; i < SOURCE_COUNT; i++)
        json_u64(out, &inner, account_source_name((enum event_source)i), acc->received[i]);
    buf_append_char(out, '}');
    json_u64(out, &first, "accepted", acc->accepted);
    json_u64(out, &first, "delivered", acc->delivered);
    json_u64(out, &first, "buffered", acc->buffered);
    json_u64(out, &first, "dropped", account_dropped_total());
    json_key(out, &first, "dropped_by_reason");
    buf_append_char(out, '{');
    inner = 1;
    for (int i = 0; i < DROP_REASON_COUNT; i++)
        if (acc->dropped[i] > 0)
            json_u64(out, &inner, reason_name((enum drop_reason)i), acc->dropped[i]);
    buf_append_str(out, "}}");
}

static void ops_status_backend(const struct ops *o, struct buf *out)
{
    struct sender_state st;
    char url[512];
    sender_state(o->src.sender, &st);
    config_mask_url(o->src.cfg->url, url, sizeof url);
    int first = 1;
    buf_append_char(out, '{');
    json_str(out, &first, "url", url);
    json_str(out, &first, "state", st.health);
    json_u64(out, &first, "failures_in_a_row", st.failures);
    json_u64(out, &first, "requests_in_flight", st.in_flight);
    json_u64(out, &first, "batches_waiting", st.waiting);
    json_str(out, &first, "last_error", st.last_error[0] ? st.last_error : NULL);
    json_time(out, &first, "last_error_at", st.last_error_ms);
    buf_append_char(out, '}');
}

static void ops_status_spool(const struct ops *o, struct buf *out)
{
    if (o->src.spooler == NULL) {
        buf_append_str(out, "null");
        return;
    }
    struct spooler_state sp;
    spooler_state(o->src.spooler, &sp);
    int first = 1;
    buf_append_char(out, '{');
    json_str(out, &first, "dir", o->src.cfg->spool_dir);
    json_u64(out, &first, "bytes", sp.bytes);
    json_u64(out, &first, "max_bytes", (uint64_t)o->src.cfg->spool_max_bytes);
    json_u64(out, &first, "segments", sp.segments);
    json_u64(out, &first, "undelivered", sp.undelivered);
    json_time(out, &first, "oldest_undelivered_at", sp.oldest_ms);
    json_key(out, &first, "failing");
    buf_append_str(out, sp.failing ? "true" : "false");
    buf_append_char(out, '}');
}

static void ops_status(struct ops *o, struct evhttp_request *req)
{
    struct buf out = BUF_INIT;
    char why[256];
    const char *not_ready = ops_not_ready(o, why, sizeof why);
    const struct listener *l = *o->src.listener;
    int first = 1, inner = 1;
    buf_append_char(&out, '{');
    json_str(&out, &first, "version", TELEMETRY_VERSION);
    json_time(&out, &first, "started_at", o->started_ms);
    json_u64(&out, &first, "uptime_seconds", (uint64_t)(clock_wall_ms() - o->started_ms) / 1000);
    json_key(&out, &first, "ready");
    buf_append_str(&out, not_ready ? "false" : "true");
    json_str(&out, &first, "not_ready_because", not_ready);
    json_key(&out, &first, "events");
    ops_status_events(&out);
    json_key(&out, &first, "delivered_per_second");
    json_write_double(&out, ops_delivery_rate(o));
    json_key(&out, &first, "buffer");
    buf_append_char(&out, '{');
    json_u64(&out, &inner, "bytes", o->src.budget->used);
    json_u64(&out, &inner, "max_bytes", o->src.budget->max);
    buf_append_char(&out, '}');
    json_key(&out, &first, "backend");
    ops_status_backend(o, &out);
    json_key(&out, &first, "spool");
    ops_status_spool(o, &out);
    json_key(&out, &first, "connections");
    inner = 1;
    buf_append_char(&out, '{');
    json_u64(&out, &inner, "open", l != NULL ? listener_connections(l) : 0);
    json_u64(&out, &inner, "refused", metrics_get(METRIC_CONNECTIONS_REFUSED));
    buf_append_str(&out, "}}\n");
    if (out.failed)
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
    else
        httpd_reply(req, HTTP_OK, "application/json", out.data, out.len);
    buf_free(&out);
}

/* ---- routing ---- */

static void ops_text(struct evhttp_request *req, int code, const char *text)
{
    httpd_reply(req, code, "text/plain; charset=utf-8", text, strlen(text));
}

static void ops_request_cb(struct evhttp_request *req, void *arg)
{
    struct ops *o = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char why[256], line[300];
    const char *not_ready;
    int known = path != NULL && (strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 ||
                                 strcmp(path, "/readyz") == 0 || strcmp(path, "/status") == 0);
    if (!known && cmd != EVHTTP_REQ_CONNECT) { /* (CONNECT names a host, no path) */
        ops_text(req, HTTP_NOTFOUND, "not found: the endpoints are /metrics, /healthz, /readyz "
                 "and /status\n");
    } else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        ops_text(req, 405, "method not allowed: GET or HEAD\n");
    } else if (strcmp(path, "/metrics") == 0) {
        ops_metrics(o, req);
    } else if (strcmp(path, "/healthz") == 0) {
        ops_text(req, HTTP_OK, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        not_ready = ops_not_ready(o, why, sizeof why);
        snprintf(line, sizeof line, "%s\n", not_ready ? not_ready : "ready");
        ops_text(req, not_ready ? 503 : HTTP_OK, line);
    } else {
        ops_status(o, req);
    }
}

struct ops *ops_open(struct event_base *base, const struct ops_sources *src, char *err,
                     size_t errlen)
{
    struct ops *o = calloc(1, sizeof *o);
    if (o == NULL) {
        snprintf(err, errlen, "[http] listen: out of memory");
        return NULL;
    }
    o->src = *src;
    o->started_ms = clock_wall_ms();
    struct httpd_limits limits = {
        .max_connections = (unsigned)src->cfg->http_max_connections,
        .max_headers_bytes = 8192,
        .max_body_bytes = OPS_MAX_BODY_BYTES,
        .timeout_ms = (int)src->cfg->http_timeout_ms,
    };
    struct timeval second = {1, 0};
    o->tick = event_new(base, -1, EV_PERSIST, ops_tick_cb, o);
    if (o->tick == NULL || event_add(o->tick, &second) < 0) {
        snprintf(err, errlen, "[http] listen: cannot start its timer");
        ops_free(o);
        return NULL;
    }
    o->httpd = httpd_open(base, "[http] listen", src->cfg->http_listen, &limits, ops_request_cb,
                          o, err, errlen);
    if (o->httpd == NULL) {
        ops_free(o);
        return NULL;
    }
    ops_tick_cb(-1, 0, o);
    return o;
}

const char *ops_address(const struct ops *o)
{
    return httpd_address(o->httpd);
}

void ops_free(struct ops *o)
{
    if (o == NULL)
        return;
    httpd_free(o->httpd);
    if (o->tick != NULL)
        event_free(o->tick);
    free(o);
}
