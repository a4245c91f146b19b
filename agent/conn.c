/*
 * conn: per-connection reading, replies and closing (see conn.h).
 *
 * A connection is read while its unsent replies stay under
 * agent.max_pending_reply_bytes; one whose producer reads none of them for
 * agent.write_timeout_ms is closed, and so is one that holds part of a
 * message and completes none for agent.idle_timeout_ms. Each wakeup handles at most CONN_READS_PER_WAKEUP
 * reads and CONN_WORK_PER_WAKEUP messages and events (a few kilobytes of
 * gzip can carry a million events), then lets the others have a turn: what
 * is left in the buffer is taken up by more_ev, a timer that fires after
 * the next poll. Once there is no more input (end of stream, or bad bytes)
 * the connection only writes the replies it owes, then closes. A producer
 * that can no longer take replies (it closed, or shut down its reading
 * side) is still read to the end: what it sent is delivered, unacknowledged.
 */
#include "conn.h"

#include "metrics.h"
#include "pack.h"
#include "stream.h"
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_INITIAL_BUFFER (8 * 1024)
#define CONN_READ_SIZE (32 * 1024)     /* what one read asks for, with few connections */
#define CONN_READ_SIZE_MIN (4 * 1024)  /* ... and at least, however many there are */
#define CONN_READ_BUDGET (512 * 1024)  /* what the reads of all connections ask for together */
#define CONN_READS_PER_WAKEUP 16 /* then let other connections have a turn */
#define CONN_READS_TO_DRAIN 256  /* at shutdown: a socket buffer's worth, not forever */
#define CONN_WORK_PER_WAKEUP 16384 /* messages + events; kilobytes of gzip can hold millions */
#define CONN_WORK_TO_DRAIN (16 * CONN_WORK_PER_WAKEUP) /* at shutdown */
#define CONN_DRAIN_SYNC_MS 5000  /* at shutdown: how long acks may wait for the spool */

/* Replies in held[..end) wait until the spool is durable before index. */
struct conn_hold {
    uint64_t index;
    size_t end;
};

struct conn {
    TAILQ_ENTRY(conn) entry;
    TAILQ_ENTRY(conn) wait_entry; /* in set->waiting while paused */
    struct conn_set *set;
    int fd;
    struct event *read_ev, *write_ev, *more_ev;
    struct event *idle_ev; /* runs while part of a message waits for the rest */
    struct stream in;
    struct buf replies;  /* acknowledgements not yet written */
    size_t replies_sent; /* of replies.len */
    struct buf held;     /* replies waiting for the spool (they go after `replies`) */
    struct conn_hold *holds;
    size_t nholds, holds_cap;
    TAILQ_ENTRY(conn) hold_entry; /* in set->holding while nholds > 0 */
    int reading;         /* read_ev is added */
    int backlog;         /* complete messages may still wait in `in` */
    int closing;         /* no more input: close once the replies are written */
    int paused;          /* waiting for room in the budget */
    int unheard;         /* its producer takes no more replies: none are kept */
    char name[64];       /* "connection 7 (pid 1234)" */
    char peer_tags[PEER_TAGS_LEN]; /* what agent.tag_peer adds (peer.h) */
};

int conn_reply_ack(const struct pipeline_result *res, struct buf *out)
{
    int deferred = res->deferred > 0;
    if (res->chunk == NULL || (deferred && res->forward))
        return 0;
    size_t mark = out->len;
    pack_map(out, deferred ? 2 : res->rejected > 0 ? 3 : 1);
    pack_cstr(out, deferred ? WIRE_KEY_DEFERRED : WIRE_KEY_ACK);
    pack_str(out, res->chunk->via.str.ptr, res->chunk->via.str.size);
    if (deferred) {
        pack_cstr(out, WIRE_KEY_REASON);
        pack_cstr(out, reason_name(DROP_BUFFER_FULL));
    } else if (res->rejected > 0) {
        pack_cstr(out, WIRE_KEY_REJECTED);
        pack_uint(out, res->rejected);
        pack_cstr(out, WIRE_KEY_REASON);
        pack_cstr(out, reason_name(res->reason));
    }
    if (out->failed) {
        buf_rollback(out, mark);
        return -1;
    }
    if (!deferred)
        metrics_add(METRIC_ACKS_SENT, 1);
    return 1;
}

int conn_reply_error(struct buf *out, const char *reason, const char *detail)
{
    size_t mark = out->len;
    pack_map(out, 2);
    pack_cstr(out, WIRE_KEY_ERROR);
    pack_cstr(out, reason);
    pack_cstr(out, WIRE_KEY_DETAIL);
    pack_cstr(out, detail);
    if (out->failed) {
        buf_rollback(out, mark);
        return -1;
    }
    return 0;
}

/* Where the next reply goes: behind those held for the spool, while
 * anything staged is not durable yet; otherwise straight to the replies;
 * nowhere (NULL) once the producer takes no more. */
static struct buf *conn_reply_buf(struct conn *c)
{
    struct spooler *sp = c->set->spooler;
    if (c->unheard)
        return NULL;
    if (sp == NULL || (c->nholds == 0 && spooler_durable(sp) >= spooler_staged(sp)))
        return &c->replies;
    return &c->held;
}

/* The reply just appended to c->held from `mark` on waits for what is
 * staged now. Returns 0, or -1 when out of memory (the reply taken back). */
static int conn_hold(struct conn *c, size_t mark)
{
    uint64_t index = spooler_staged(c->set->spooler);
    if (c->nholds > 0 && c->holds[c->nholds - 1].index == index) {
        c->holds[c->nholds - 1].end = c->held.len;
        return 0;
    }
    if (c->nholds == c->holds_cap) {
        size_t cap = c->holds_cap ? c->holds_cap * 2 : 8;
        struct conn_hold *more = realloc(c->holds, cap * sizeof *more);
        if (more == NULL) {
            buf_rollback(&c->held, mark);
            return -1;
        }
        c->holds = more;
        c->holds_cap = cap;
    }
    if (c->nholds == 0)
        TAILQ_INSERT_TAIL(&c->set->holding, c, hold_entry);
    c->holds[c->nholds++] = (struct conn_hold){index, c->held.len};
    return 0;
}

/* Move the held replies whose events are now durable to the replies. */
static void conn_release_held(struct conn *c, uint64_t durable)
{
    size_t k = 0;
    while (k < c->nholds && c->holds[k].index <= durable)
        k++;
    if (k == 0)
        return;
    size_t bytes = c->holds[k - 1].end;
    if (buf_append(&c->replies, c->held.data, bytes) < 0)
        return; /* out of memory: tried again when more is durable */
    memmove(c->held.data, c->held.data + bytes, c->held.len - bytes);
    buf_truncate(&c->held, c->held.len - bytes);
    memmove(c->holds, c->holds + k, (c->nholds - k) * sizeof *c->holds);
    c->nholds -= k;
    for (size_t i = 0; i < c->nholds; i++)
        c->holds[i].end -= bytes;
    if (c->nholds == 0)
        TAILQ_REMOVE(&c->set->holding, c, hold_entry);
}

static void conn_close(struct conn *c)
{
    struct conn_set *set = c->set;
    TAILQ_REMOVE(&set->open, c, entry);
    if (c->nholds > 0)
        TAILQ_REMOVE(&set->holding, c, hold_entry);
    if (c->paused)
        TAILQ_REMOVE(&set->waiting, c, wait_entry);
    set->count--;
    event_free(c->read_ev);
    event_free(c->write_ev);
    event_free(c->more_ev);
    event_free(c->idle_ev);
    stream_destroy(&c->in);
    buf_free(&c->replies);
    buf_free(&c->held);
    free(c->holds);
    close(c->fd);
    log_debug("%s: closed", c->name);
    free(c);
}

static void conn_set_reading(struct conn *c, int on)
{
    if (on == c->reading)
        return;
    if (on ? event_add(c->read_ev, NULL) : event_del(c->read_ev)) {
        log_limited(&c->set->log, LOG_ERROR, "%s: cannot %s reading", c->name,
                    on ? "resume" : "pause");
        return;
    }
    c->reading = on;
}

static struct timeval conn_ms(int64_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Write what replies the socket takes now. Returns -1 if it failed for good
 * (errno says why), else whether anything was written. */
static int conn_send_replies(struct conn *c)
{
    int wrote = 0;
    while (c->replies_sent < c->replies.len) {
        ssize_t n = send(c->fd, c->replies.data + c->replies_sent,
                         c->replies.len - c->replies_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0)
            return -1;
        c->replies_sent += (size_t)n;
        wrote = 1;
    }
    /* Move what is left to the front once most of the buffer is sent, so a
     * producer that always lags a little cannot make it grow without end. */
    if (c->replies_sent > 0 && c->replies_sent >= c->replies.len / 2) {
        size_t unsent = c->replies.len - c->replies_sent;
        memmove(c->replies.data, c->replies.data + c->replies_sent, unsent);
        buf_truncate(&c->replies, unsent);
        c->replies_sent = 0;
    }
    return wrote;
}

/* The producer takes no more replies (it closed, or shut down its reading
 * side): those owed are dropped and no more are made, but what it sent
 * before is still read and handled, to the end of its stream. */
static void conn_stop_replying(struct conn *c, const char *why)
{
    log_limited(&c->set->log, LOG_INFO, "%s: takes no acknowledgements any more (%s): its "
                "events are still read and delivered", c->name, why);
    c->unheard = 1;
    buf_truncate(&c->replies, 0);
    c->replies_sent = 0;
    buf_truncate(&c->held, 0);
    if (c->nholds > 0)
        TAILQ_REMOVE(&c->set->holding, c, hold_entry);
    c->nholds = 0;
}

/* Write what replies the socket takes now and wait for it to drain
 * otherwise; read on, or close once a closing connection owes nothing.
 * Returns -1 if the connection was closed. */
static int conn_flush_replies(struct conn *c)
{
    static const struct timeval now = {0, 0};
    int wrote = conn_send_replies(c);
    if (wrote < 0 && c->closing) { /* the producer left without reading them */
        log_debug("%s: closed with acknowledgements unsent: %s", c->name, strerror(errno));
        conn_close(c);
        return -1;
    }
    if (wrote < 0)
        conn_stop_replying(c, strerror(errno));
    size_t unsent = c->replies.len - c->replies_sent;
    if (c->closing && unsent == 0 && c->held.len == 0) {
        conn_close(c);
        return -1;
    }
    /* the producer has agent.write_timeout_ms to read some of them */
    struct timeval limit = conn_ms(c->set->cfg->write_timeout_ms);
    if (unsent == 0) {
        event_del(c->write_ev);
    } else if ((wrote || !event_pending(c->write_ev, EV_WRITE, NULL)) &&
               event_add(c->write_ev, &limit) < 0) {
        log_limited(&c->set->log, LOG_ERROR, "%s: closing: cannot wait to write its "
                    "acknowledgements", c->name);
        conn_close(c);
        return -1;
    }
    conn_set_reading(c, !c->closing && !c->paused &&
                            unsent + c->held.len < (size_t)c->set->cfg->max_pending_reply_bytes);
    if (c->reading && c->backlog && evtimer_add(c->more_ev, &now) < 0)
        log_limited(&c->set->log, LOG_ERROR, "%s: cannot schedule its next turn; it goes on "
                    "when it next sends", c->name);
    return 0;
}

/* No more input from this connection: it closes once the replies it owes
 * are written (the producer may still be reading them). Returns -1 if it
 * was closed at once. */
static int conn_finish(struct conn *c)
{
    c->closing = 1;
    c->backlog = 0;
    return conn_flush_replies(c);
}

/* Stop reading a connection. The acknowledgements of the messages before
 * are still written, then {"error": reason, "detail": why}, then it is
 * closed. */
static int conn_end_with_error(struct conn *c, const char *reason, const char *why)
{
    log_with(&c->set->log, LOG_WARN,
             LOG_FIELDS(LOG_TEXT("peer", c->name), LOG_TEXT("reason", reason)), "%s: closing: %s",
             c->name, why);
    struct buf *out = conn_reply_buf(c);
    size_t mark = out ? out->len : 0;
    if (out != NULL && conn_reply_error(out, reason, why) == 0 && out == &c->held)
        conn_hold(c, mark); /* out of memory: closed without it */
    return conn_finish(c);
}

/* Bad input: what was sent breaks the framing or a limit. */
static int conn_reject(struct conn *c, const char *reason, const char *why)
{
    metrics_add(METRIC_CONNECTIONS_CLOSED_BAD_INPUT, 1);
    return conn_end_with_error(c, reason, why);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct conn *c = arg;
    if (what & EV_TIMEOUT) { /* nothing could be written for write_timeout_ms */
        metrics_add(METRIC_CONNECTIONS_CLOSED_UNREAD, 1);
        log_with(&c->set->log, LOG_WARN, LOG_FIELDS(LOG_TEXT("peer", c->name)),
                 "%s: closing: it read none of its acknowledgements (%zu bytes) for %lld ms "
                 "(agent.write_timeout_ms)", c->name, c->replies.len - c->replies_sent,
                 (long long)c->set->cfg->write_timeout_ms);
        conn_close(c);
        return;
    }
    conn_flush_replies(c);
}

/* Part of a message waits: the producer has agent.idle_timeout_ms to
 * complete a message (the clock restarts with each one). */
static void conn_watch_partial(struct conn *c, int completed)
{
    if (stream_pending(&c->in) == 0) {
        evtimer_del(c->idle_ev);
        return;
    }
    struct timeval limit = conn_ms(c->set->cfg->idle_timeout_ms);
    if ((completed || !evtimer_pending(c->idle_ev, NULL)) && evtimer_add(c->idle_ev, &limit) < 0)
        log_limited(&c->set->log, LOG_ERROR, "%s: cannot time its partial message", c->name);
}

static void conn_idle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->closing)
        return;
    if (c->paused || c->backlog || !c->reading) { /* the agent is not reading it: not idle */
        conn_watch_partial(c, 1);
        return;
    }
    char why[160];
    metrics_add(METRIC_CONNECTIONS_CLOSED_IDLE, 1);
    snprintf(why, sizeof why, "%zu bytes of a message and no message completed for %lld ms "
             "(agent.idle_timeout_ms)", stream_pending(&c->in),
             (long long)c->set->cfg->idle_timeout_ms);
    conn_end_with_error(c, WIRE_ERROR_TIMEOUT, why);
}

/* Full, or others wait for room in it: a new message waits behind them. */
static int conn_budget_short(const struct budget *b)
{
    return b != NULL && (budget_full(b) || b->wanted);
}

static int conn_gates_short(const struct conn_set *set)
{
    for (unsigned i = 0; i < set->ngates; i++)
        if (conn_budget_short(set->gates[i]))
            return 1;
    return 0;
}

/* No room in the budget: stop reading until there is (conn_resume_cb);
 * what is buffered waits. */
static void conn_pause(struct conn *c)
{
    struct conn_set *set = c->set;
    if (c->paused)
        return;
    c->paused = 1;
    c->backlog = 1;
    TAILQ_INSERT_TAIL(&set->waiting, c, wait_entry);
    /* wait on the budgets that are short: the disk's frees only as the
     * backend takes events, the others as the disk takes them */
    for (unsigned i = 0; i < set->ngates; i++)
        if (conn_budget_short(set->gates[i]))
            budget_wait(set->gates[i]);
    metrics_add(METRIC_CONNECTIONS_PAUSED, 1);
}

/* Decode and hand on the complete objects in the buffer while *work (one
 * per message and per event) is under max_work, then write the
 * acknowledgements they call for. Objects left over set c->backlog.
 * Returns 0, or -1 if the connection was closed. */
static int conn_process(struct conn *c, size_t *work, size_t max_work)
{
    char why[128];
    msgpack_object obj;
    struct pipeline_result result;
    size_t had_replies = c->replies.len;
    int completed = 0;
    c->backlog = 0;
    pipeline_begin_pass(c->set->pipeline);
    for (;;) {
        if (*work >= max_work) {
            c->backlog = 1;
            return conn_flush_replies(c);
        }
        if (c->set->cfg->buffer_overflow == OVERFLOW_BLOCK && !c->set->draining &&
            conn_gates_short(c->set)) {
            /* full, or others wait for room: wait behind them */
            conn_pause(c);
            return conn_flush_replies(c);
        }
        switch (stream_next(&c->in, &obj)) {
        case STREAM_OBJECT:
            pipeline_handle(c->set->pipeline, &obj, c->name, c->peer_tags, &result);
            completed = 1;
            *work += 1 + (size_t)result.accepted + result.rejected + result.deferred;
            struct buf *out = conn_reply_buf(c);
            if (out == NULL)
                continue;
            size_t mark = out->len;
            int wrote = conn_reply_ack(&result, out);
            if (wrote < 0 || (wrote > 0 && out == &c->held && conn_hold(c, mark) < 0))
                return conn_reject(c, WIRE_ERROR_NO_MEMORY,
                                   "out of memory for its acknowledgements");
            continue;
        case STREAM_NEED_MORE:
            conn_watch_partial(c, completed);
            return c->replies.len > had_replies ? conn_flush_replies(c) : 0;
        case STREAM_INVALID:
            return conn_reject(c, WIRE_ERROR_NOT_MSGPACK, "bytes that are not msgpack");
        case STREAM_NO_MEMORY:
            return conn_reject(c, WIRE_ERROR_NO_MEMORY, "out of memory unpacking a message");
        case STREAM_TOO_DEEP:
            snprintf(why, sizeof why, "msgpack nested deeper than %d levels", WIRE_MAX_DEPTH);
            return conn_reject(c, WIRE_ERROR_TOO_DEEP, why);
        case STREAM_TOO_LARGE:
            snprintf(why, sizeof why, "message larger than agent.max_message_bytes = %lld",
                     (long long)c->set->cfg->max_message_bytes);
            return conn_reject(c, WIRE_ERROR_TOO_LARGE, why);
        }
    }
}

/* Handle what is buffered, then read what is available, up to max_reads
 * reads and max_work messages and events. Returns -1 if the connection was
 * closed. */
static int conn_read(struct conn *c, int max_reads, size_t max_work)
{
    size_t work = 0;
    if (c->backlog && conn_process(c, &work, max_work) < 0)
        return -1;
    /* each connection's buffer grows to what its reads ask for: with many
     * connections open, each asks for less, so their buffers stay small */
    size_t read_size = CONN_READ_BUDGET / (c->set->count ? c->set->count : 1);
    read_size = read_size > CONN_READ_SIZE       ? CONN_READ_SIZE
                : read_size < CONN_READ_SIZE_MIN ? CONN_READ_SIZE_MIN
                                                 : read_size;
    for (int i = 0; i < max_reads && c->reading && !c->backlog; i++) {
        size_t capacity;
        char *space = stream_reserve(&c->in, read_size, &capacity);
        if (space == NULL)
            return conn_reject(c, WIRE_ERROR_NO_MEMORY, "out of memory for its buffer");
        ssize_t n = read(c->fd, space, capacity);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            if (n < 0)
                log_debug("%s: read failed: %s", c->name, strerror(errno));
            if (stream_pending(&c->in) > 0)
                log_limited(&c->set->log, LOG_WARN,
                            "%s: closed in the middle of a message (%zu bytes discarded)", c->name,
                            stream_pending(&c->in));
            return conn_finish(c);
        }
        stream_consumed(&c->in, (size_t)n);
        metrics_add(METRIC_BYTES_RECEIVED, (uint64_t)n);
        if (conn_process(c, &work, max_work) < 0)
            return -1;
    }
    return 0;
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_read(arg, CONN_READS_PER_WAKEUP, CONN_WORK_PER_WAKEUP);
}

/* The messages left in the buffer by the last turn. */
static void conn_more_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->reading)
        conn_read(c, CONN_READS_PER_WAKEUP, CONN_WORK_PER_WAKEUP);
}

/* The budget has room again: every waiting connection resumes, oldest
 * first; one that finds the budget full again waits at the back. */
static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn_set *set = arg;
    struct conn *c;
    while ((c = TAILQ_FIRST(&set->waiting)) != NULL) {
        TAILQ_REMOVE(&set->waiting, c, wait_entry);
        c->paused = 0;
        conn_flush_replies(c); /* reads again and takes up its backlog on the next turn */
    }
}

static void conn_room_cb(void *arg)
{
    struct conn_set *set = arg;
    event_active(set->resume_ev, 0, 0);
}

/* More of the spool is durable: the acknowledgements that waited for it go. */
static void conn_durable_cb(void *arg)
{
    struct conn_set *set = arg;
    uint64_t durable = spooler_durable(set->spooler);
    struct conn *c, *next;
    for (c = TAILQ_FIRST(&set->holding); c != NULL; c = next) {
        next = TAILQ_NEXT(c, hold_entry);
        conn_release_held(c, durable);
        conn_flush_replies(c);
    }
}

int conn_set_init(struct conn_set *set, struct event_base *base, const struct config *cfg,
                  struct pipeline *pipeline)
{
    memset(set, 0, sizeof *set);
    set->base = base;
    set->cfg = cfg;
    set->pipeline = pipeline;
    set->budget = pipeline->batcher->budget;
    set->spooler = pipeline->spooler;
    TAILQ_INIT(&set->open);
    TAILQ_INIT(&set->waiting);
    TAILQ_INIT(&set->holding);
    set->resume_ev = event_new(base, -1, 0, conn_resume_cb, set);
    if (set->resume_ev == NULL)
        return -1;
    set->gates[set->ngates++] = set->budget;
    if (set->spooler != NULL) {
        set->gates[set->ngates++] = spooler_staging(set->spooler);
        set->gates[set->ngates++] = spooler_disk(set->spooler);
        spooler_on_durable(set->spooler, conn_durable_cb, set);
    }
    for (unsigned i = 0; i < set->ngates; i++) {
        set->gates[i]->on_room = conn_room_cb;
        set->gates[i]->room_arg = set;
    }
    return 0;
}

void conn_set_destroy(struct conn_set *set)
{
    for (unsigned i = 0; i < set->ngates; i++)
        if (set->gates[i]->on_room == conn_room_cb)
            set->gates[i]->on_room = NULL;
    if (set->spooler != NULL)
        spooler_on_durable(set->spooler, NULL, NULL);
    if (set->resume_ev != NULL)
        event_free(set->resume_ev);
    set->resume_ev = NULL;
}

/* "connection 7 (pid 1234)" */
static void conn_name(struct conn *c, uint64_t id, const struct peer *peer)
{
    if (peer->known)
        snprintf(c->name, sizeof c->name, "connection %llu (pid %d)", (unsigned long long)id,
                 (int)peer->pid);
    else
        snprintf(c->name, sizeof c->name, "connection %llu", (unsigned long long)id);
}

int conn_open(struct conn_set *set, int fd, const struct peer *peer)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL ||
        stream_init(&c->in, CONN_INITIAL_BUFFER, (size_t)set->cfg->max_message_bytes) < 0) {
        free(c);
        close(fd);
        return -1;
    }
    c->set = set;
    c->fd = fd;
    conn_name(c, ++set->next_id, peer);
    peer_tags(peer, c->peer_tags, sizeof c->peer_tags);
    c->read_ev = event_new(set->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->write_ev = event_new(set->base, fd, EV_WRITE, conn_write_cb, c);
    c->more_ev = evtimer_new(set->base, conn_more_cb, c);
    c->idle_ev = evtimer_new(set->base, conn_idle_cb, c);
    if (c->read_ev == NULL || c->write_ev == NULL || c->more_ev == NULL || c->idle_ev == NULL ||
        event_add(c->read_ev, NULL) < 0) {
        struct event *made[] = {c->read_ev, c->write_ev, c->more_ev, c->idle_ev};
        for (size_t i = 0; i < sizeof made / sizeof made[0]; i++)
            if (made[i] != NULL)
                event_free(made[i]);
        stream_destroy(&c->in);
        free(c);
        close(fd);
        return -1;
    }
    c->reading = 1;
    TAILQ_INSERT_TAIL(&set->open, c, entry);
    set->count++;
    metrics_add(METRIC_CONNECTIONS_ACCEPTED, 1);
    log_debug("%s: accepted", c->name);
    return 0;
}

void conn_set_drain(struct conn_set *set)
{
    struct conn *c;
    set->draining = 1;
    while ((c = TAILQ_FIRST(&set->waiting)) != NULL) {
        TAILQ_REMOVE(&set->waiting, c, wait_entry);
        c->paused = 0;
    }
    struct conn *next;
    for (c = TAILQ_FIRST(&set->open); c != NULL; c = next) {
        next = TAILQ_NEXT(c, entry);
        if (!c->closing)
            c->reading = 1; /* drain even a connection paused for unread replies */
        conn_read(c, CONN_READS_TO_DRAIN, CONN_WORK_TO_DRAIN);
    }
    /* acknowledgements held for the spool go once it has what they cover,
     * within the shutdown grace */
    int64_t wait_ms = set->cfg->shutdown_grace_ms < CONN_DRAIN_SYNC_MS ? set->cfg->shutdown_grace_ms
                                                                       : CONN_DRAIN_SYNC_MS;
    if (!TAILQ_EMPTY(&set->holding) && spooler_flush(set->spooler, (int)wait_ms) < 0)
        log_error("spool: not everything producers sent before the shutdown could be made "
                  "durable; those events are not acknowledged");
    while ((c = TAILQ_FIRST(&set->open)) != NULL)
        if (conn_flush_replies(c) == 0)
            conn_close(c); /* replies the socket could not take are lost: the producer resends */
}
