/*
 * sender: queue, attempts, retries and the two transports (see sender.h).
 *
 * Every batch the sender holds is in exactly one place: the ready queue, a
 * request in flight (in_flight), or waiting on its retry timer (waiting).
 */
#include "sender.h"

#include "clock.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "retry.h"
#include "timestamp.h"
#include "version.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define SENDER_GZIP_LEVEL 1
#define SENDER_SENT_AT_PREFIX "],\"sent_at\":\""
#define SENDER_SENT_AT_SUFFIX "\"}"

struct sender {
    struct event_base *base;
    const struct config *cfg;
    struct batcher *batcher;
    struct http *http; /* NULL with url = stdout */
    struct libdeflate_compressor *gzip;
    struct buf prefix; /* the body up to the first event */
    struct batch_list ready;    /* waiting for a request slot */
    struct batch_list inflight; /* being sent */
    struct batch_list backoff;  /* waiting for their retry timer */
    unsigned in_flight;         /* length of inflight */
    uint64_t random_state;
    void (*idle)(void *arg);
    void *idle_arg;
    int abandoning;
    /* url = stdout */
    struct evbuffer *out;
    struct event *out_ev;
    int out_failed;
    struct log_limit retry_log, drop_log;
};

static void sender_pump(struct sender *s);

static int sender_to_stdout(const struct config *cfg)
{
    return strcmp(cfg->url, "stdout") == 0;
}

/* The body's opening: {"api_key":"...","batch":[ -- or, on stdout, where
 * the key must never be printed, {"batch":[ */
static int sender_build_prefix(const struct config *cfg, struct buf *out)
{
    if (buf_append_char(out, '{') < 0)
        return -1;
    if (!sender_to_stdout(cfg)) {
        if (buf_append_str(out, "\"api_key\":") < 0 ||
            json_write_string(out, cfg->api_key, strlen(cfg->api_key)) < 0 ||
            buf_append_char(out, ',') < 0)
            return -1;
    }
    return buf_append_str(out, "\"batch\":[");
}

size_t sender_envelope_bytes(const struct config *cfg)
{
    struct buf prefix = BUF_INIT;
    size_t n = sender_build_prefix(cfg, &prefix) < 0 ? 0 : prefix.len;
    buf_free(&prefix);
    return n + strlen(SENDER_SENT_AT_PREFIX) + TIMESTAMP_TEXT_LEN + strlen(SENDER_SENT_AT_SUFFIX);
}

unsigned sender_pending(const struct sender *s)
{
    unsigned n = s->in_flight;
    struct batch *b;
    TAILQ_FOREACH(b, &s->ready, entry)
        n++;
    TAILQ_FOREACH(b, &s->backoff, entry)
        n++;
    return n;
}

/* The attempt on batch ended: it leaves the in-flight list. */
static void sender_landed(struct sender *s, struct batch *batch)
{
    TAILQ_REMOVE(&s->inflight, batch, entry);
    s->in_flight--;
}

void sender_on_idle(struct sender *s, void (*idle)(void *arg), void *arg)
{
    s->idle = idle;
    s->idle_arg = arg;
}

static void sender_check_idle(struct sender *s)
{
    if (s->idle != NULL && sender_pending(s) == 0)
        s->idle(s->idle_arg);
}

/* The whole request body for one attempt, gzipped when configured. */
static int sender_build_body(struct sender *s, const struct batch *batch, struct buf *body)
{
    char sent_at[TIMESTAMP_TEXT_LEN + 1];
    timestamp_format(clock_wall_ms(), sent_at);
    struct buf plain = BUF_INIT;
    if (buf_reserve(&plain, s->prefix.len + batch->events.len + 64) < 0)
        return -1;
    buf_append(&plain, s->prefix.data, s->prefix.len);
    buf_append(&plain, batch->events.data, batch->events.len);
    buf_append_str(&plain, SENDER_SENT_AT_PREFIX);
    buf_append_str(&plain, sent_at);
    buf_append_str(&plain, SENDER_SENT_AT_SUFFIX);
    if (s->gzip == NULL) {
        *body = plain;
        return 0;
    }
    size_t bound = libdeflate_gzip_compress_bound(s->gzip, plain.len);
    if (buf_reserve(body, bound) < 0) {
        buf_free(&plain);
        return -1;
    }
    body->len = libdeflate_gzip_compress(s->gzip, plain.data, plain.len, body->data, bound);
    buf_free(&plain);
    return body->len > 0 ? 0 : -1;
}

static void sender_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct batch *batch = arg;
    struct sender *s = batch->owner;
    TAILQ_REMOVE(&s->backoff, batch, entry);
    TAILQ_INSERT_HEAD(&s->ready, batch, entry);
    sender_pump(s);
}

static uint64_t sender_random(struct sender *s)
{
    uint64_t x = s->random_state; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return s->random_state = x;
}

/* The attempt failed in a way worth retrying: wait, or give up if the
 * batch has been failing for longer than retry_max_elapsed_ms. */
static void sender_schedule_retry(struct sender *s, struct batch *batch, const char *why,
                                  const char *retry_after)
{
    const struct config *cfg = s->cfg;
    int64_t elapsed = clock_monotonic_ms() - batch->first_attempt_ms;
    if (cfg->retry_max_elapsed_ms > 0 && elapsed >= cfg->retry_max_elapsed_ms) {
        log_limited(&s->drop_log, LOG_ERROR,
                    "backend: %s; giving up on a batch of %u events after %u attempts over %lld ms "
                    "(backend.retry_max_elapsed_ms = %lld)",
                    why, batch->count, batch->attempts, (long long)elapsed,
                    (long long)cfg->retry_max_elapsed_ms);
        batcher_release(s->batcher, batch, 0, DROP_RETRY_EXPIRED);
        return;
    }
    int64_t delay = retry_backoff_ms(batch->attempts, cfg->retry_initial_ms, cfg->retry_max_ms,
                                     sender_random(s));
    int64_t floor_ms;
    if (retry_after[0] != '\0' && retry_parse_after(retry_after, clock_wall_ms(), &floor_ms) == 0 &&
        floor_ms > delay)
        delay = floor_ms;
    log_limited(&s->retry_log, LOG_WARN,
                "backend: %s; retrying a batch of %u events in %lld ms (attempt %u)", why,
                batch->count, (long long)delay, batch->attempts + 1);
    if (batch->retry_timer == NULL)
        batch->retry_timer = evtimer_new(s->base, sender_retry_cb, batch);
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    if (batch->retry_timer == NULL || evtimer_add(batch->retry_timer, &tv) < 0) {
        TAILQ_INSERT_TAIL(&s->ready, batch, entry); /* cannot wait: queue it again */
        return;
    }
    TAILQ_INSERT_TAIL(&s->backoff, batch, entry);
}

static void sender_http_done(const struct http_result *result, void *arg)
{
    struct batch *batch = arg;
    struct sender *s = batch->owner;
    sender_landed(s, batch);
    char why[400];
    switch (retry_classify(result->transport_ok, result->status)) {
    case RETRY_DELIVERED:
        batcher_release(s->batcher, batch, 1, 0);
        break;
    case RETRY_DROP:
        log_limited(&s->drop_log, LOG_ERROR,
                    "backend answered %ld; dropped a batch of %u events; response: %.200s",
                    result->status, batch->count, result->body_start);
        batcher_release(s->batcher, batch, 0, DROP_BACKEND_REJECTED);
        break;
    case RETRY_AGAIN:
        metrics.requests_failed++;
        if (result->transport_ok)
            snprintf(why, sizeof why, "answered %ld: %.200s", result->status, result->body_start);
        else
            snprintf(why, sizeof why, "request failed: %s", result->error);
        sender_schedule_retry(s, batch, why, result->retry_after);
        break;
    }
    sender_pump(s);
    sender_check_idle(s);
}

/* evbuffer cleanup: the line of one batch was written out (or discarded). */
static void sender_stdout_written(const void *data, size_t len, void *arg)
{
    (void)len;
    struct batch *batch = arg;
    struct sender *s = batch->owner;
    free((void *)data);
    sender_landed(s, batch);
    if (s->out_failed || s->abandoning)
        batcher_release(s->batcher, batch, 0, s->out_failed ? DROP_BACKEND_REJECTED : DROP_SHUTDOWN);
    else
        batcher_release(s->batcher, batch, 1, 0);
}

static void sender_stdout_flush(struct sender *s)
{
    while (evbuffer_get_length(s->out) > 0) {
        if (evbuffer_write(s->out, STDOUT_FILENO) >= 0)
            continue;
        if (errno == EAGAIN || errno == EINTR) {
            event_add(s->out_ev, NULL);
            return;
        }
        log_error("backend: writing to standard output failed: %s; dropping what was queued",
                  strerror(errno));
        s->out_failed = 1;
        evbuffer_drain(s->out, evbuffer_get_length(s->out));
    }
}

static void sender_stdout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sender *s = arg;
    sender_stdout_flush(s);
    sender_pump(s);
    sender_check_idle(s);
}

static int sender_attempt(struct sender *s, struct batch *batch)
{
    struct buf body = BUF_INIT;
    if (batch->attempts++ == 0)
        batch->first_attempt_ms = clock_monotonic_ms();
    metrics.requests_sent++;
    if (sender_build_body(s, batch, &body) < 0) {
        buf_free(&body);
        return -1;
    }
    int rc;
    TAILQ_INSERT_TAIL(&s->inflight, batch, entry);
    s->in_flight++;
    if (s->http != NULL) {
        rc = http_post(s->http, s->cfg->url, &body, sender_http_done, batch);
    } else {
        rc = buf_append_char(&body, '\n') < 0 ||
                     evbuffer_add_reference(s->out, body.data, body.len, sender_stdout_written,
                                            batch) < 0
                 ? -1
                 : 0;
        if (rc < 0)
            buf_free(&body);
    }
    if (rc < 0)
        sender_landed(s, batch);
    return rc;
}

static void sender_pump(struct sender *s)
{
    struct batch *batch;
    while (!s->abandoning && s->in_flight < (unsigned)s->cfg->max_in_flight &&
           (batch = TAILQ_FIRST(&s->ready)) != NULL) {
        TAILQ_REMOVE(&s->ready, batch, entry);
        if (sender_attempt(s, batch) < 0) {
            /* out of memory building the request: try again after a backoff */
            sender_schedule_retry(s, batch, "could not build the request (out of memory)", "");
            break;
        }
    }
    if (s->out != NULL)
        sender_stdout_flush(s);
}

void sender_submit(struct batch *batch, void *arg)
{
    struct sender *s = arg;
    batch->owner = s;
    TAILQ_INSERT_TAIL(&s->ready, batch, entry);
    sender_pump(s);
}

struct sender *sender_new(struct event_base *base, const struct config *cfg,
                          struct batcher *batcher)
{
    struct sender *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->base = base;
    s->cfg = cfg;
    s->batcher = batcher;
    TAILQ_INIT(&s->ready);
    TAILQ_INIT(&s->inflight);
    TAILQ_INIT(&s->backoff);
    if (getrandom(&s->random_state, sizeof s->random_state, 0) != sizeof s->random_state)
        s->random_state = (uint64_t)clock_wall_ms();
    s->random_state |= 1;
    if (sender_build_prefix(cfg, &s->prefix) < 0)
        goto fail;
    if (sender_to_stdout(cfg)) {
        s->out = evbuffer_new();
        s->out_ev = event_new(base, STDOUT_FILENO, EV_WRITE, sender_stdout_cb, s);
        if (s->out == NULL || s->out_ev == NULL)
            goto fail;
        fcntl(STDOUT_FILENO, F_SETFL, fcntl(STDOUT_FILENO, F_GETFL) | O_NONBLOCK);
        return s;
    }
    const char *headers[] = {"Content-Type: application/json",
                             "User-Agent: " TELEMETRY_NAME "/" TELEMETRY_VERSION,
                             "Expect:", /* no 100-continue round trip */
                             cfg->gzip ? "Content-Encoding: gzip" : NULL, NULL};
    s->http = http_new(base, headers, (long)cfg->timeout_ms);
    if (s->http == NULL)
        goto fail;
    if (cfg->gzip && (s->gzip = libdeflate_alloc_compressor(SENDER_GZIP_LEVEL)) == NULL)
        goto fail;
    return s;
fail:
    sender_free(s);
    return NULL;
}

static void sender_drop_list(struct sender *s, struct batch_list *list)
{
    struct batch *batch;
    while ((batch = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, batch, entry);
        batcher_release(s->batcher, batch, 0, DROP_SHUTDOWN);
    }
}

uint64_t sender_abandon(struct sender *s)
{
    uint64_t before = metrics.events_dropped[DROP_SHUTDOWN];
    s->abandoning = 1;
    if (s->http != NULL) {
        http_free(s->http); /* aborts the requests without calling back */
        s->http = NULL;
    }
    if (s->out != NULL)
        evbuffer_drain(s->out, evbuffer_get_length(s->out)); /* cleanups drop the lines */
    sender_drop_list(s, &s->inflight);
    s->in_flight = 0;
    sender_drop_list(s, &s->ready);
    sender_drop_list(s, &s->backoff);
    return metrics.events_dropped[DROP_SHUTDOWN] - before;
}

void sender_free(struct sender *s)
{
    if (s == NULL)
        return;
    sender_abandon(s);
    if (s->out != NULL)
        evbuffer_free(s->out);
    if (s->out_ev != NULL)
        event_free(s->out_ev);
    if (s->gzip != NULL)
        libdeflate_free_compressor(s->gzip);
    buf_free(&s->prefix);
    free(s);
}
