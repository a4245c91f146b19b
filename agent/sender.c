/*
 * sender: queue, attempts and retries (see sender.h).
 *
 * Every delivery the sender holds is in exactly one place: the ready queue,
 * a request in flight (inflight), or waiting on its retry timer (backoff).
 */
#include "sender.h"

#include "account.h"
#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/random.h>

/* One batch on its way: the batch and what the sender knows of it. */
struct delivery {
    TAILQ_ENTRY(delivery) entry;
    struct sender *sender;
    struct batch *batch;
    uint32_t attempts;
    int64_t first_attempt_ms;
    struct event *retry_timer;
};

TAILQ_HEAD(delivery_list, delivery);

struct sender {
    struct event_base *base;
    const struct config *cfg;
    struct budget *budget;
    struct transport *transport;
    struct body_format *format;
    struct delivery_list ready;    /* waiting for a request slot */
    struct delivery_list inflight; /* being sent */
    struct delivery_list backoff;  /* waiting for their retry timer */
    unsigned in_flight;            /* length of inflight */
    unsigned waiting;              /* length of ready + backoff */
    uint64_t random_state;
    void (*idle)(void *arg);
    void *idle_arg;
    int abandoning;
    struct log_limit retry_log, drop_log;
};

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
static void sender_finish(struct sender *s, struct delivery *d, int delivered,
                          enum drop_reason reason)
{
    batch_done(d->batch, s->budget, delivered, reason);
    if (d->retry_timer != NULL)
        event_free(d->retry_timer);
    free(d);
}

static void sender_queue(struct sender *s, struct delivery *d, int at_front)
{
    if (at_front)
        TAILQ_INSERT_HEAD(&s->ready, d, entry);
    else
        TAILQ_INSERT_TAIL(&s->ready, d, entry);
    s->waiting++;
}

static void sender_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct delivery *d = arg;
    struct sender *s = d->sender;
    TAILQ_REMOVE(&s->backoff, d, entry);
    s->waiting--;
    sender_queue(s, d, 1);
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
static void sender_schedule_retry(struct sender *s, struct delivery *d, const char *why,
                                  const char *retry_after)
{
    const struct config *cfg = s->cfg;
    int64_t elapsed = clock_monotonic_ms() - d->first_attempt_ms;
    if (cfg->retry_max_elapsed_ms > 0 && elapsed >= cfg->retry_max_elapsed_ms) {
        log_limited(&s->drop_log, LOG_ERROR,
                    "backend: %s; giving up on a batch of %u events after %u attempts over %lld ms "
                    "(backend.retry_max_elapsed_ms = %lld)",
                    why, d->batch->count, d->attempts, (long long)elapsed,
                    (long long)cfg->retry_max_elapsed_ms);
        sender_finish(s, d, 0, DROP_RETRY_EXPIRED);
        return;
    }
    int64_t delay = retry_backoff_ms(d->attempts, cfg->retry_initial_ms, cfg->retry_max_ms,
                                     sender_random(s));
    int64_t floor_ms;
    if (retry_after[0] != '\0' && retry_parse_after(retry_after, clock_wall_ms(), &floor_ms) == 0 &&
        floor_ms > delay)
        delay = floor_ms;
    log_limited(&s->retry_log, LOG_WARN,
                "backend: %s; retrying a batch of %u events in %lld ms (attempt %u)", why,
                d->batch->count, (long long)delay, d->attempts + 1);
    if (d->retry_timer == NULL)
        d->retry_timer = evtimer_new(s->base, sender_retry_cb, d);
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    if (d->retry_timer == NULL || evtimer_add(d->retry_timer, &tv) < 0) {
        log_limited(&s->retry_log, LOG_ERROR, "backend: cannot arm a retry timer; the batch "
                    "is queued again at once");
        sender_queue(s, d, 0);
        return;
    }
    TAILQ_INSERT_TAIL(&s->backoff, d, entry);
    s->waiting++;
}

static void sender_done(const struct transport_result *result, void *arg)
{
    struct delivery *d = arg;
    struct sender *s = d->sender;
    TAILQ_REMOVE(&s->inflight, d, entry);
    s->in_flight--;
    char why[400];
    enum retry_verdict verdict = result->permanent ? RETRY_DROP
                                                   : retry_classify(result->transport_ok,
                                                                    result->status);
    switch (verdict) {
    case RETRY_DELIVERED:
        sender_finish(s, d, 1, 0);
        break;
    case RETRY_DROP:
        if (result->transport_ok)
            log_limited(&s->drop_log, LOG_ERROR,
                        "backend answered %ld (%s); dropped a batch of %u events; response: "
                        "%.200s",
                        result->status, http_status_text(result->status), d->batch->count,
                        result->body_start);
        else
            log_limited(&s->drop_log, LOG_ERROR, "backend: %s; dropped a batch of %u events",
                        result->error, d->batch->count);
        sender_finish(s, d, 0, DROP_BACKEND_REJECTED);
        break;
    case RETRY_AGAIN:
        metrics_add(METRIC_REQUESTS_FAILED, 1);
        if (result->transport_ok)
            snprintf(why, sizeof why, "answered %ld (%s): %.200s", result->status,
                     http_status_text(result->status), result->body_start);
        else
            snprintf(why, sizeof why, "request failed: %s", result->error);
        sender_schedule_retry(s, d, why, result->retry_after);
        break;
    }
    sender_pump(s);
    sender_check_idle(s);
}

static int sender_attempt(struct sender *s, struct delivery *d)
{
    struct buf body = BUF_INIT;
    if (d->attempts++ == 0)
        d->first_attempt_ms = clock_monotonic_ms();
    metrics_add(METRIC_REQUESTS_SENT, 1);
    if (body_build(s->format, d->batch, clock_wall_ms(), &body) < 0) {
        buf_free(&body);
        return -1;
    }
    TAILQ_INSERT_TAIL(&s->inflight, d, entry);
    s->in_flight++;
    if (transport_post(s->transport, &body, sender_done, d) < 0) {
        TAILQ_REMOVE(&s->inflight, d, entry);
        s->in_flight--;
        return -1;
    }
    return 0;
}

static void sender_pump(struct sender *s)
{
    struct delivery *d;
    while (!s->abandoning && s->in_flight < (unsigned)s->cfg->max_in_flight &&
           (d = TAILQ_FIRST(&s->ready)) != NULL) {
        TAILQ_REMOVE(&s->ready, d, entry);
        s->waiting--;
        if (sender_attempt(s, d) < 0) {
            /* out of memory building the request: try again after a backoff */
            sender_schedule_retry(s, d, "could not build the request (out of memory)", "");
            break;
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
    sender_queue(s, d, 0);
    sender_pump(s);
}

struct sender *sender_new(struct event_base *base, const struct config *cfg,
                          struct budget *budget, struct transport *transport,
                          struct body_format *format)
{
    struct sender *s = calloc(1, sizeof *s);
    if (s == NULL) {
        transport_free(transport);
        body_format_free(format);
        return NULL;
    }
    s->base = base;
    s->cfg = cfg;
    s->budget = budget;
    s->transport = transport;
    s->format = format;
    TAILQ_INIT(&s->ready);
    TAILQ_INIT(&s->inflight);
    TAILQ_INIT(&s->backoff);
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
        sender_finish(s, d, 0, DROP_SHUTDOWN);
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
    sender_drop_list(s, &s->backoff);
    s->in_flight = s->waiting = 0;
    return account_now()->dropped[DROP_SHUTDOWN] - before;
}

void sender_free(struct sender *s)
{
    if (s == NULL)
        return;
    sender_abandon(s);
    body_format_free(s->format);
    free(s);
}
