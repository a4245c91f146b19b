/*
 * sender: queue, backend health and attempts (see sender.h).
 *
 * Every delivery the sender holds is either in the ready queue (ordered by
 * the sequence number it was sealed with) or in flight. The backend's
 * health is one state for all of them:
 *
 *   UP       up to backend.max_in_flight requests at once
 *   BACKOFF  nothing is sent until the health timer fires (after
 *            consecutive failures: exponential with jitter, at least what a
 *            Retry-After asked for, bounded by backend.retry_after_max_ms;
 *            after 401/403/404/407: backend.misconfigured_retry_ms)
 *   PROBING  one request at a time, the oldest batch first; an answer
 *            that delivers it makes the backend UP again
 *
 * A failed batch goes back to its place in the queue, so batches keep their
 * order. A request that timed out makes the next ones wait twice as long
 * (up to backend.timeout_max_ms); answers bring the timeout back down
 * towards twice the time they took. A 413 halves the batch.
 */
#include "sender.h"

#include "account.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>

#define SENDER_ANSWER_CHARS 80 /* of a backend's answer, in the log and /status */
#define SENDER_LOUD_EVERY_MS 60000 /* a configuration error is logged this often */

/* One batch on its way: the batch and what the sender knows of it. */
struct delivery {
    TAILQ_ENTRY(delivery) entry;
    struct sender *sender;
    struct batch *batch;
    uint64_t seq;            /* order: sealed batch n has n << 32; a split hands its */
    uint64_t width;          /* second half seq + width / 2, and both halves half the width */
    uint32_t attempts;
    int64_t first_attempt_ms;
    int64_t sent_ms;         /* when the current attempt was posted */
    int64_t timeout_ms;      /* the timeout it was posted with */
    size_t body_charged;     /* bytes of the request body in flight */
};

TAILQ_HEAD(delivery_list, delivery);

enum backend_health { BACKEND_UP, BACKEND_BACKOFF, BACKEND_PROBING };

struct sender {
    struct event_base *base;
    const struct config *cfg;
    struct budget *budget;
    struct transport *transport;
    struct body_format *format;
    struct delivery_list ready;    /* waiting to be sent, by seq */
    struct delivery_list inflight; /* being sent */
    unsigned in_flight;            /* length of inflight */
    unsigned waiting;              /* length of ready */
    uint64_t next_seq;
    enum backend_health health;
    uint32_t failures;             /* consecutive failed answers */
    struct event *health_timer;    /* ends BACKOFF */
    int64_t timeout_ms;            /* the current request timeout */
    int64_t loud_logged_ms;        /* last configuration-error line */
    uint64_t random_state;
    void (*idle)(void *arg);
    void *idle_arg;
    int abandoning;
    struct log_limit retry_log, drop_log;
    char last_error[400];
    int64_t last_error_ms;
};

void sender_state(const struct sender *s, struct sender_state *out)
{
    static const char *const names[] = {"up", "backing_off", "probing"};
    out->in_flight = s->in_flight;
    out->waiting = s->waiting;
    out->health = names[s->health];
    out->failures = s->failures;
    snprintf(out->last_error, sizeof out->last_error, "%s", s->last_error);
    out->last_error_ms = s->last_error_ms;
}

static void sender_pump(struct sender *s);

unsigned sender_pending(const struct sender *s)
{
    return s->in_flight + s->waiting;
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

/* The batch leaves the sender: delivered, or dropped for reason. */
static void sender_finish(struct delivery *d, int delivered, enum drop_reason reason)
{
    batch_done(d->batch, d->sender->budget, delivered, reason);
    free(d);
}

/* Into the ready queue at its place by seq (seqs are all different). */
static void sender_queue(struct sender *s, struct delivery *d)
{
    struct delivery *after = TAILQ_LAST(&s->ready, delivery_list);
    if (after == NULL || after->seq <= d->seq) {
        TAILQ_INSERT_TAIL(&s->ready, d, entry);
    } else {
        struct delivery *before = TAILQ_FIRST(&s->ready);
        while (before->seq <= d->seq)
            before = TAILQ_NEXT(before, entry);
        TAILQ_INSERT_BEFORE(before, d, entry);
    }
    s->waiting++;
}

static uint64_t sender_random(struct sender *s)
{
    uint64_t x = s->random_state; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return s->random_state = x;
}

static void sender_health_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sender *s = arg;
    s->health = BACKEND_PROBING;
    sender_pump(s);
}

/* The backend failed to take a batch: the whole backend waits. */
static void sender_back_off(struct sender *s, const char *why, const char *retry_after,
                            int misconfigured)
{
    const struct config *cfg = s->cfg;
    if (s->health == BACKEND_BACKOFF)
        return; /* an answer to a request sent before the backoff began */
    s->failures++;
    event_base_update_cache_time(s->base); /* the pause counts from now, not the turn's start */
    int64_t delay = misconfigured ? cfg->misconfigured_retry_ms
                                  : retry_backoff_ms(s->failures, cfg->retry_initial_ms,
                                                     cfg->retry_max_ms, sender_random(s));
    int64_t asked;
    if (retry_after[0] != '\0' && retry_parse_after(retry_after, clock_wall_ms(), &asked) == 0) {
        if (asked > cfg->retry_after_max_ms)
            asked = cfg->retry_after_max_ms;
        if (asked > delay)
            delay = asked;
    }
    int64_t now = clock_monotonic_ms();
    if (misconfigured) {
        if (s->loud_logged_ms == 0 || now - s->loud_logged_ms >= SENDER_LOUD_EVERY_MS) {
            s->loud_logged_ms = now;
            log_error("backend %s: this is a configuration error ([backend] url or api_key); "
                      "%u batches are kept and retried every %lld ms until it is fixed",
                      why, sender_pending(s), (long long)delay);
        }
    } else {
        log_with(&s->retry_log, LOG_WARN,
                 LOG_FIELDS(LOG_NUMBER("pause_ms", delay), LOG_NUMBER("failures", s->failures),
                            LOG_NUMBER("batches_waiting", sender_pending(s))),
                 "backend: %s; pausing requests for %lld ms (%u failures in a row, %u batches "
                 "waiting)", why, (long long)delay, s->failures, sender_pending(s));
    }
    s->health = BACKEND_BACKOFF;
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    if (evtimer_add(s->health_timer, &tv) < 0) {
        log_limited(&s->retry_log, LOG_ERROR, "backend: cannot arm the backoff timer; "
                    "probing at once");
        s->health = BACKEND_PROBING;
    }
}

/* A batch the backend answered: it is now known to be well. */
static void sender_backend_well(struct sender *s)
{
    if (s->health == BACKEND_BACKOFF)
        return; /* an answer to a request sent before the backoff began */
    if (s->failures > 0)
        log_info("backend: taking batches again after %u failed attempts", s->failures);
    s->failures = 0;
    s->loud_logged_ms = 0;
    s->health = BACKEND_UP;
}

/* A failed attempt: back to the queue, or dropped if it has been failing
 * for longer than retry_max_elapsed_ms. Returns 1 if kept. */
static int sender_keep(struct sender *s, struct delivery *d, const char *why)
{
    const struct config *cfg = s->cfg;
    int64_t elapsed = clock_monotonic_ms() - d->first_attempt_ms;
    if (cfg->retry_max_elapsed_ms > 0 && elapsed >= cfg->retry_max_elapsed_ms) {
        log_limited(&s->drop_log, LOG_ERROR,
                    "backend: %s; giving up on a batch of %u events after %u attempts over %lld ms "
                    "(backend.retry_max_elapsed_ms = %lld)",
                    why, d->batch->count, d->attempts, (long long)elapsed,
                    (long long)cfg->retry_max_elapsed_ms);
        sender_finish(d, 0, DROP_RETRY_EXPIRED);
        return 0;
    }
    sender_queue(s, d);
    metrics_add(METRIC_BATCHES_RETRIED, 1);
    return 1;
}

/* 413: send each half on its own; a single event the backend will not take
 * is dropped. */
static void sender_split(struct sender *s, struct delivery *d, const char *why)
{
    struct batch *rest;
    struct delivery *second;
    if (d->batch->count < 2) {
        log_limited(&s->drop_log, LOG_ERROR, "backend %s for a single event; dropped it", why);
        sender_finish(d, 0, DROP_BACKEND_REJECTED);
        return;
    }
    if (d->width < 2 || (second = calloc(1, sizeof *second)) == NULL ||
        batch_split(d->batch, s->budget, &rest) < 0) {
        if (d->width >= 2)
            free(second);
        sender_queue(s, d);
        metrics_add(METRIC_BATCHES_RETRIED, 1);
        sender_back_off(s, "could not split a batch the backend found too large (out of "
                        "memory); it is retried whole", "", 0);
        return;
    }
    log_limited(&s->retry_log, LOG_WARN, "backend %s; sending the batch of %u events as two",
                why, d->batch->count + rest->count);
    metrics_add(METRIC_BATCHES_SPLIT, 1);
    d->width /= 2;
    *second = *d;
    second->batch = rest;
    second->seq = d->seq + d->width;
    sender_queue(s, d);
    sender_queue(s, second);
}

/* A request posted with `timeout_ms` timed out: the backend is slower than
 * that. Requests that timed out together double it once. */
static void sender_slow_backend(struct sender *s, int64_t timeout_ms)
{
    metrics_add(METRIC_REQUESTS_TIMED_OUT, 1);
    if (timeout_ms < s->timeout_ms)
        return;
    int64_t longer = s->timeout_ms * 2;
    if (longer > s->cfg->timeout_max_ms)
        longer = s->cfg->timeout_max_ms;
    if (longer != s->timeout_ms)
        log_warn("backend: no answer within %lld ms: it is slower than that; the next requests "
                 "wait up to %lld ms (backend.timeout_max_ms = %lld)", (long long)s->timeout_ms,
                 (long long)longer, (long long)s->cfg->timeout_max_ms);
    s->timeout_ms = longer;
}

/* An answer that took `took` ms: bring a raised timeout back down towards
 * twice that, never below backend.timeout_ms. */
static void sender_answered_in(struct sender *s, int64_t took)
{
    int64_t enough = 2 * took;
    if (enough < s->timeout_ms)
        s->timeout_ms = enough > s->cfg->timeout_ms ? enough : s->cfg->timeout_ms;
}

/* What the backend answered, fit for the log and /status: escaped (it may
 * hold anything) and without the API key (a backend may echo it). */
static void sender_quote_answer(const struct sender *s, const char *body, char *out,
                                size_t outlen)
{
    char masked[TRANSPORT_TEXT_LEN];
    snprintf(masked, sizeof masked, "%s", body);
    const char *key = s->cfg->api_key;
    size_t key_len = strlen(key);
    for (char *at; key_len >= 3 && (at = strstr(masked, key)) != NULL;) {
        memcpy(at, "***", 3);
        memmove(at + 3, at + key_len, strlen(at + key_len) + 1);
    }
    log_escape(out, outlen, masked, strlen(masked), SENDER_ANSWER_CHARS);
}

static void sender_done(const struct transport_result *result, void *arg)
{
    struct delivery *d = arg;
    struct sender *s = d->sender;
    TAILQ_REMOVE(&s->inflight, d, entry);
    s->in_flight--;
    budget_release(s->budget, d->body_charged);
    d->body_charged = 0;
    metrics_backend_answer(result->transport_ok ? result->status : 0,
                           clock_monotonic_ms() - d->sent_ms);
    char why[400];
    if (result->transport_ok) {
        sender_answered_in(s, clock_monotonic_ms() - d->sent_ms);
        char answer[SENDER_ANSWER_CHARS * 4 + 4];
        sender_quote_answer(s, result->body_start, answer, sizeof answer);
        snprintf(why, sizeof why, "answered %ld (%s): %s", result->status,
                 http_status_text(result->status), answer);
    } else {
        if (result->timed_out)
            sender_slow_backend(s, d->timeout_ms);
        snprintf(why, sizeof why, "request failed: %s", result->error);
    }
    enum retry_verdict verdict =
        result->permanent ? RETRY_DROP : retry_classify(result->transport_ok, result->status);
    if (verdict != RETRY_DELIVERED) {
        metrics_request_failed(result->transport_ok ? result->status : 0);
        snprintf(s->last_error, sizeof s->last_error, "%s", why);
        s->last_error_ms = clock_wall_ms();
    }
    switch (verdict) {
    case RETRY_DELIVERED:
        sender_backend_well(s);
        sender_finish(d, 1, 0);
        break;
    case RETRY_DROP:
        log_with(&s->drop_log, LOG_ERROR,
                 LOG_FIELDS(LOG_NUMBER("status", result->status),
                            LOG_NUMBER("events", d->batch->count)),
                 "backend %s; dropped a batch of %u events", why, d->batch->count);
        sender_backend_well(s); /* it answered: the others may still pass */
        sender_finish(d, 0, DROP_BACKEND_REJECTED);
        break;
    case RETRY_SPLIT:
        sender_backend_well(s);
        sender_split(s, d, why);
        break;
    case RETRY_AGAIN:
    case RETRY_MISCONFIGURED:
        if (sender_keep(s, d, why))
            sender_back_off(s, why, result->retry_after, verdict == RETRY_MISCONFIGURED);
        break;
    }
    sender_pump(s);
    sender_check_idle(s);
}

static int sender_attempt(struct sender *s, struct delivery *d)
{
    struct body body = BODY_INIT;
    if (d->attempts++ == 0)
        d->first_attempt_ms = clock_monotonic_ms();
    if (body_build(s->format, d->batch, clock_wall_ms(), &body) < 0) {
        body_free(&body);
        return -1;
    }
    metrics_add(METRIC_REQUESTS_SENT, 1);
    metrics_add(METRIC_BYTES_SENT, body_len(&body));
    metrics_add(METRIC_BYTES_SENT_UNCOMPRESSED, body_last_plain_bytes(s->format));
    d->body_charged = body.own.cap; /* the events in it are the batch's, charged already */
    budget_charge(s->budget, d->body_charged);
    d->sent_ms = clock_monotonic_ms();
    d->timeout_ms = s->timeout_ms;
    TAILQ_INSERT_TAIL(&s->inflight, d, entry);
    s->in_flight++;
    if (transport_post(s->transport, &body, (long)s->timeout_ms, sender_done, d) < 0) {
        TAILQ_REMOVE(&s->inflight, d, entry);
        s->in_flight--;
        budget_release(s->budget, d->body_charged);
        d->body_charged = 0;
        return -1;
    }
    return 0;
}

static void sender_pump(struct sender *s)
{
    struct delivery *d;
    for (;;) {
        unsigned slots = s->health == BACKEND_UP ? (unsigned)s->cfg->max_in_flight
                         : s->health == BACKEND_PROBING ? 1 : 0;
        if (s->abandoning || s->in_flight >= slots || (d = TAILQ_FIRST(&s->ready)) == NULL)
            return;
        TAILQ_REMOVE(&s->ready, d, entry);
        s->waiting--;
        if (sender_attempt(s, d) < 0) {
            sender_queue(s, d);
            sender_back_off(s, "could not build the request (out of memory)", "", 0);
            return;
        }
    }
}

void sender_submit(struct batch *batch, void *arg)
{
    struct sender *s = arg;
    struct delivery *d = calloc(1, sizeof *d);
    if (d == NULL) {
        log_error("backend: out of memory for a batch of %u events; dropped", batch->count);
        batch_done(batch, s->budget, 0, DROP_BUFFER_FULL);
        return;
    }
    d->sender = s;
    d->batch = batch;
    d->seq = s->next_seq++ << 32;
    d->width = UINT64_C(1) << 32;
    sender_queue(s, d);
    sender_pump(s);
}

void sender_hurry(struct sender *s)
{
    if (s->health == BACKEND_BACKOFF) {
        evtimer_del(s->health_timer);
        s->health = BACKEND_PROBING;
    }
    sender_pump(s);
}

int sender_reconfigure(struct sender *s, struct body_format *format)
{
    if (transport_retarget(s->transport, s->cfg) < 0) {
        body_format_free(format);
        return -1;
    }
    body_format_free(s->format);
    s->format = format;
    if (s->timeout_ms < s->cfg->timeout_ms || s->timeout_ms > s->cfg->timeout_max_ms)
        s->timeout_ms = s->timeout_ms < s->cfg->timeout_ms ? s->cfg->timeout_ms
                                                           : s->cfg->timeout_max_ms;
    sender_hurry(s); /* a fixed key or URL is tried at once */
    return 0;
}

struct sender *sender_new(struct event_base *base, const struct config *cfg,
                          struct budget *budget, struct transport *transport,
                          struct body_format *format)
{
    struct sender *s = calloc(1, sizeof *s);
    if (s == NULL || (s->health_timer = evtimer_new(base, sender_health_cb, s)) == NULL) {
        free(s);
        transport_free(transport);
        body_format_free(format);
        return NULL;
    }
    s->base = base;
    s->cfg = cfg;
    s->budget = budget;
    s->transport = transport;
    s->format = format;
    s->timeout_ms = cfg->timeout_ms;
    TAILQ_INIT(&s->ready);
    TAILQ_INIT(&s->inflight);
    if (getrandom(&s->random_state, sizeof s->random_state, 0) != sizeof s->random_state)
        s->random_state = (uint64_t)clock_wall_ms();
    s->random_state |= 1;
    return s;
}

static void sender_drop_list(struct sender *s, struct delivery_list *list)
{
    struct delivery *d;
    while ((d = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, d, entry);
        budget_release(s->budget, d->body_charged);
        if (d->batch->ticket != NULL) { /* it stays in the spool for the next start */
            batch_release(d->batch, s->budget);
            free(d);
        } else {
            sender_finish(d, 0, DROP_SHUTDOWN);
        }
    }
}

uint64_t sender_abandon(struct sender *s)
{
    uint64_t before = account_now()->dropped[DROP_SHUTDOWN];
    s->abandoning = 1;
    transport_free(s->transport); /* aborts the requests without calling back */
    s->transport = NULL;
    sender_drop_list(s, &s->inflight);
    sender_drop_list(s, &s->ready);
    s->in_flight = s->waiting = 0;
    return account_now()->dropped[DROP_SHUTDOWN] - before;
}

void sender_free(struct sender *s)
{
    if (s == NULL)
        return;
    sender_abandon(s);
    event_free(s->health_timer);
    body_format_free(s->format);
    free(s);
}
