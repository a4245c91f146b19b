/*
 * conn: the client's connection to the agent (see client.h).
 *
 * Connecting is lazy (only with something to write) and paced: after a
 * failure the next attempt waits reconnect_min_ms doubled per failure up to
 * reconnect_max_ms, drawn between half that and all of it. A connection that
 * breaks is retried at once the first time, unless the agent's error was
 * about itself (max_connections, no_memory: try again later). Any progress
 * (an event written whole in fire-and-forget mode, an ack in reliable mode)
 * resets the pace.
 *
 * Writes gather up to TLM_CONN_IOV queued entries into one sendmsg() with
 * MSG_NOSIGNAL | MSG_DONTWAIT. When a connection breaks, a partly written
 * entry is written again from its start on the next connection (reliable:
 * every unacked entry is), so the agent, which drops the torn tail with the
 * old connection, never sees it.
 *
 * Giving an event up. Only the agent's word that a message was bad, its
 * last reply {"error": too_large | too_deep | not_msgpack}, counts against
 * the entry in flight; an entry it counted against TLM_CLIENT_MAX_LOSSES
 * times is dropped, so one event the agent keeps refusing cannot wedge the
 * queue. A close without an error reply (the agent restarted, or was
 * killed), or an error about the agent itself (max_connections, no_memory),
 * says nothing about the events: they wait and go again, however often that
 * happens. Reliable mode knows the culprit for sure: the agent answers the
 * messages before a fault, so after an error about a message the client
 * writes one entry at a time (the probe) until the agent answers one, and an
 * error with only one entry in flight is that entry's. Fire-and-forget mode
 * can only blame the entry half written when the connection ended.
 *
 * Replies are read whenever the connection is readable, in every mode (an
 * agent stops reading from a producer that leaves its replies unread), and
 * once more when a write finds the connection gone: what the agent wrote
 * before it closed, its error included, is still there to read.
 */
#include "client.h"
#include "scan.h"
#include "wire.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TLM_CONN_IOV 64
#define TLM_CONN_READS 16 /* recv()s per tlm_conn_read: 64 KiB, all an agent leaves unread */
#define TLM_CONN_READ_PAUSE_MS 2 /* then a breath for the senders (the clock ticks in ms) */
#define TLM_CONN_DEFER_MIN_MS 50   /* after {"deferred"}, writing pauses this long, */
#define TLM_CONN_DEFER_MAX_MS 1000 /* doubling up to this while the agent keeps deferring */

static uint64_t tlm_conn_random(struct tlm_client *c)
{
    /* xorshift64*: jitter only */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * UINT64_C(2685821657736338717);
}

static int64_t tlm_conn_backoff_ms(struct tlm_client *c)
{
    unsigned shift = c->attempts > 20 ? 20 : c->attempts;
    uint64_t nominal = (uint64_t)c->opt.reconnect_min_ms << shift;
    if (nominal > c->opt.reconnect_max_ms)
        nominal = c->opt.reconnect_max_ms;
    uint64_t half = nominal / 2;
    return (int64_t)(nominal - half + tlm_conn_random(c) % (half + 1));
}

static void tlm_conn_progress(struct tlm_client *c, int64_t now)
{
    c->attempts = 0;
    c->last_progress_ms = now;
}

void tlm_conn_forget(struct tlm_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->reply_len = 0;
    c->read_resume_ms = 0;
}

/* The entry an error about a message blames, or NULL when that cannot be
 * told. Reliable: the only entry written (whole or in part) and not answered
 * on this connection. Fire-and-forget: the entry written in part (the fault
 * may have been in one written whole and forgotten before it, which is why
 * an entry is given up only after TLM_CLIENT_MAX_LOSSES errors). */
static struct tlm_entry *tlm_conn_culprit(const struct tlm_client *c)
{
    const struct tlm_queue *q = &c->queue;
    struct tlm_entry *head = TAILQ_FIRST(&q->entries);
    if (!c->opt.reliable || head == q->next)
        return q->off > 0 ? q->next : NULL;
    return TAILQ_NEXT(head, link) == q->next && q->off == 0 ? head : NULL;
}

void tlm_conn_drop(struct tlm_client *c, int64_t now, enum tlm_conn_end why)
{
    struct tlm_queue *q = &c->queue;
    if (c->fd < 0)
        return;
    struct tlm_entry *culprit = why == TLM_CONN_BAD_MESSAGE ? tlm_conn_culprit(c) : NULL;
    tlm_conn_forget(c);
    c->stats.disconnects++;
    tlm_queue_rewind(q, c->opt.reliable);
    if (why == TLM_CONN_BAD_MESSAGE && c->opt.reliable)
        c->probe = 1;
    if (culprit != NULL && ++culprit->losses >= TLM_CLIENT_MAX_LOSSES) {
        c->stats.dropped_connection++;
        tlm_queue_remove(q, culprit);
    }
    int at_once = c->attempts == 0 && why != TLM_CONN_REFUSED;
    c->next_connect_ms = at_once ? now : now + tlm_conn_backoff_ms(c);
    c->attempts++;
}

int tlm_conn_open(struct tlm_client *c, int64_t now)
{
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, c->path, strlen(c->path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
        c->fd = fd;
        c->generation++;
        c->reply_len = 0;
        c->last_progress_ms = now;
        c->stats.connects++;
        tlm_queue_rewind(&c->queue, c->opt.reliable);
        return 0;
    }
    /* ENOENT, ECONNREFUSED (no agent), EAGAIN (its backlog is full), ... */
    if (fd >= 0)
        close(fd);
    c->stats.connect_failures++;
    c->next_connect_ms = now + tlm_conn_backoff_ms(c);
    c->attempts++;
    return -1;
}

/* Copy a str item (or "" for any other item) into dst, truncated to fit. */
static void tlm_conn_copy_str(char *dst, size_t cap, const struct scan_item *s)
{
    size_t n = s->type != SCAN_STR ? 0 : s->len < cap - 1 ? s->len : cap - 1;
    if (n > 0)
        memcpy(dst, s->ptr, n);
    dst[n] = '\0';
}

/* The agent's last reply on a connection, {"error": reason, "detail": text}:
 * note it, and say what it means for the events. */
static enum tlm_conn_end tlm_conn_error(struct tlm_client *c, const struct scan_item *error,
                                        const struct scan_item *detail)
{
    static const char *const about_a_message[] = {WIRE_ERROR_TOO_LARGE, WIRE_ERROR_TOO_DEEP,
                                                  WIRE_ERROR_NOT_MSGPACK};
    c->stats.agent_errors++;
    tlm_conn_copy_str(c->stats.last_error_reason, sizeof c->stats.last_error_reason, error);
    tlm_conn_copy_str(c->stats.last_error_detail, sizeof c->stats.last_error_detail, detail);
    for (size_t i = 0; i < sizeof about_a_message / sizeof about_a_message[0]; i++)
        if (scan_item_is_str(error, about_a_message[i]))
            return TLM_CONN_BAD_MESSAGE;
    return TLM_CONN_REFUSED; /* max_connections, no_memory, or news to us */
}

/* One reply: {"ack": chunk}, {"ack": chunk, "rejected": n, "reason": r},
 * {"deferred": chunk, "reason": "buffer_full"} (not taken: written again
 * after a pause), or the last one, {"error": reason, "detail": text}. Returns 1 for an error
 * (*why: what it means for the events), else 0. Anything else, and acks
 * for no entry in flight, are ignored. */
static int tlm_conn_reply(struct tlm_client *c, const unsigned char *p, size_t len, int64_t now,
                          enum tlm_conn_end *why)
{
    struct scan_item it, key, val, ack = {0}, reason = {0}, error = {0}, detail = {0};
    struct scan_item deferred = {0};
    uint64_t rejected = 0;
    if (scan_item(p, len, &it) != 1 || it.type != SCAN_MAP)
        return 0;
    size_t pos = it.size;
    for (uint32_t i = 0; i < it.len; i++) {
        if (scan_item(p + pos, len - pos, &key) != 1)
            return 0;
        pos += key.size;
        size_t vlen;
        if (scan_item(p + pos, len - pos, &val) != 1 ||
            scan_object(p + pos, len - pos, &vlen) != SCAN_COMPLETE)
            return 0;
        pos += vlen;
        if (scan_item_is_str(&key, WIRE_KEY_ACK) && val.type == SCAN_STR)
            ack = val;
        else if (scan_item_is_str(&key, WIRE_KEY_DEFERRED) && val.type == SCAN_STR)
            deferred = val;
        else if (scan_item_is_str(&key, WIRE_KEY_REJECTED) && val.type == SCAN_UINT)
            rejected = val.u;
        else if (scan_item_is_str(&key, WIRE_KEY_REASON) && val.type == SCAN_STR)
            reason = val;
        else if (scan_item_is_str(&key, WIRE_KEY_ERROR) && val.type == SCAN_STR)
            error = val;
        else if (scan_item_is_str(&key, WIRE_KEY_DETAIL) && val.type == SCAN_STR)
            detail = val;
    }
    if (error.type == SCAN_STR) {
        *why = tlm_conn_error(c, &error, &detail);
        return 1;
    }
    if (ack.type != SCAN_STR && deferred.type != SCAN_STR)
        return 0;
    if (ack.type != SCAN_STR)
        ack = deferred;
    struct tlm_queue *q = &c->queue;
    struct tlm_entry *e;
    TAILQ_FOREACH(e, &q->entries, link)
    {
        if (e == q->next)
            return 0; /* not written whole on this connection: not for it */
        if (e->chunk_len == ack.len && memcmp(e->chunk, ack.ptr, ack.len) == 0)
            break;
    }
    if (e == NULL)
        return 0;
    if (deferred.type == SCAN_STR) {
        c->stats.deferred++;
        tlm_queue_requeue(q, e);
        if (c->defer_delay_ms < TLM_CONN_DEFER_MIN_MS)
            c->defer_delay_ms = TLM_CONN_DEFER_MIN_MS;
        c->write_resume_ms = now + c->defer_delay_ms;
        c->defer_delay_ms = c->defer_delay_ms * 2 > TLM_CONN_DEFER_MAX_MS ? TLM_CONN_DEFER_MAX_MS
                                                                          : c->defer_delay_ms * 2;
        return 0;
    }
    c->defer_delay_ms = TLM_CONN_DEFER_MIN_MS;
    if (rejected > 0) {
        c->stats.dropped_rejected++;
        tlm_conn_copy_str(c->stats.last_reject_reason, sizeof c->stats.last_reject_reason, &reason);
    } else {
        c->stats.acked++;
    }
    tlm_queue_remove(q, e);
    tlm_conn_progress(c, now);
    c->probe = 0; /* the agent answers again: full speed */
    return 0;
}

/* The I/O thread reads and writes without the lock, so that sends never
 * wait for a system call: while the thread runs it alone does I/O (on the
 * connection and the reply buffer), and senders only add entries behind the
 * ones being written. Returns whether the lock was let go (on the I/O
 * thread), for tlm_conn_relock. */
static int tlm_conn_unlock_for_io(struct tlm_client *c)
{
    int unlocked = c->thread_running && pthread_equal(pthread_self(), c->thread);
    if (unlocked)
        pthread_mutex_unlock(&c->lock);
    return unlocked;
}

static void tlm_conn_relock(struct tlm_client *c, int unlocked)
{
    if (unlocked)
        pthread_mutex_lock(&c->lock);
}

/* Read what the agent wrote and handle every complete reply. A peer that
 * writes without end must not keep the lock, and so every sender, to
 * itself: after TLM_CONN_READS reads that all found bytes, reading pauses
 * (an agent leaves at most 64 KiB of replies unread, so only a peer that
 * floods the socket meets the pause). */
static void tlm_conn_read(struct tlm_client *c, int64_t now)
{
    if (now < c->read_resume_ms)
        return;
    for (int reads = 0; c->fd >= 0; reads++) {
        if (reads == TLM_CONN_READS) {
            c->read_resume_ms = now + TLM_CONN_READ_PAUSE_MS;
            return;
        }
        int unlocked = tlm_conn_unlock_for_io(c);
        ssize_t n = recv(c->fd, c->reply + c->reply_len, sizeof c->reply - c->reply_len,
                         MSG_DONTWAIT);
        tlm_conn_relock(c, unlocked);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            tlm_conn_drop(c, now, TLM_CONN_BROKEN); /* closed without a word */
            return;
        }
        c->reply_len += (size_t)n;
        size_t used = 0, objlen;
        enum scan_status st;
        while ((st = scan_object(c->reply + used, c->reply_len - used, &objlen)) ==
               SCAN_COMPLETE) {
            enum tlm_conn_end why;
            if (tlm_conn_reply(c, c->reply + used, objlen, now, &why)) {
                tlm_conn_drop(c, now, why); /* the last reply: the agent closes it */
                return;
            }
            used += objlen;
            if (used == c->reply_len)
                break;
        }
        if (used < c->reply_len &&
            (st != SCAN_INCOMPLETE || (used == 0 && c->reply_len == sizeof c->reply))) {
            tlm_conn_drop(c, now, TLM_CONN_BROKEN); /* not msgpack, or too long to be a reply */
            return;
        }
        memmove(c->reply, c->reply + used, c->reply_len - used);
        c->reply_len -= used;
    }
}

/* A write found the connection gone. What the agent wrote before it closed
 * (the acks it owed, then perhaps its error) is still there to read: read
 * it, as much as one turn of reading takes, so that the agent's last word
 * decides what the close means; then drop the connection. */
static void tlm_conn_fail(struct tlm_client *c, int64_t now)
{
    c->read_resume_ms = 0;
    tlm_conn_read(c, now);
    tlm_conn_drop(c, now, TLM_CONN_BROKEN); /* unless the read did */
}

/* Is there something to write now? While probing, only the first entry,
 * and only while it is the one entry on the connection. */
static int tlm_conn_writable(const struct tlm_client *c, int64_t now)
{
    const struct tlm_queue *q = &c->queue;
    return q->next != NULL && (q->off > 0 || now >= c->write_resume_ms) &&
           (!c->probe || q->next == TAILQ_FIRST(&q->entries));
}

/* Account for n bytes written from the cursor on. */
static void tlm_conn_advance(struct tlm_client *c, size_t n, int64_t now)
{
    struct tlm_queue *q = &c->queue;
    if (n > 0)
        c->last_progress_ms = now;
    while (q->next != NULL && n >= q->next->len - q->off) {
        struct tlm_entry *e = q->next;
        n -= e->len - q->off;
        if (e->written_once) {
            c->stats.resent++;
        } else {
            e->written_once = 1;
            c->stats.sent++;
        }
        e->written_ms = now;
        q->next = TAILQ_NEXT(e, link);
        q->off = 0;
        if (!c->opt.reliable) {
            tlm_queue_remove(q, e);
            tlm_conn_progress(c, now);
        }
    }
    q->off += n;
}

/* Is err a sign that the connection is gone (and not a passing condition)? */
static int tlm_conn_broken(ssize_t n)
{
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ENOBUFS;
}

static void tlm_conn_write(struct tlm_client *c, int64_t now)
{
    struct tlm_queue *q = &c->queue;
    /* probing, or finishing a started entry during a deferral pause: one */
    int most = c->probe || now < c->write_resume_ms ? 1 : TLM_CONN_IOV;
    while (c->fd >= 0 && tlm_conn_writable(c, now)) {
        struct iovec iov[TLM_CONN_IOV];
        int cnt = 0;
        size_t off = q->off;
        for (struct tlm_entry *e = q->next; e != NULL && cnt < most; e = TAILQ_NEXT(e, link)) {
            iov[cnt].iov_base = e->data + off;
            iov[cnt].iov_len = e->len - off;
            cnt++;
            off = 0;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        int unlocked = tlm_conn_unlock_for_io(c);
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        tlm_conn_relock(c, unlocked);
        if (tlm_conn_broken(n)) {
            tlm_conn_fail(c, now);
            return;
        }
        if (n <= 0)
            return; /* full: the thread waits for POLLOUT */
        tlm_conn_advance(c, (size_t)n, now);
    }
}

long tlm_conn_write_direct(struct tlm_client *c, const unsigned char *data, size_t len,
                           int64_t now)
{
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (tlm_conn_broken(n)) {
        tlm_conn_fail(c, now);
        return -1;
    }
    if (n > 0)
        c->last_progress_ms = now;
    if (n == (ssize_t)len) {
        c->stats.sent++;
        tlm_conn_progress(c, now);
    }
    return n < 0 ? 0 : (long)n;
}

/* When the connection must be given up for want of an ack: the oldest
 * entry, written whole, unacknowledged for ack_timeout_ms; or, while an
 * entry is half written, no bytes moved for as long. */
static int64_t tlm_conn_ack_deadline(const struct tlm_client *c)
{
    const struct tlm_queue *q = &c->queue;
    struct tlm_entry *head = TAILQ_FIRST(&q->entries);
    if (!c->opt.reliable || c->fd < 0 || head == NULL)
        return TLM_CLIENT_NEVER;
    if (head != q->next)
        return head->written_ms + c->opt.ack_timeout_ms;
    if (q->off > 0)
        return c->last_progress_ms + c->opt.ack_timeout_ms;
    return TLM_CLIENT_NEVER;
}

void tlm_conn_plan(struct tlm_client *c, int64_t now, struct tlm_plan *plan)
{
    plan->fd = c->fd;
    plan->generation = c->generation;
    plan->events = 0;
    plan->deadline = TLM_CLIENT_NEVER;
    if (c->fd >= 0) {
        plan->events = now >= c->read_resume_ms ? POLLIN : 0;
        if (tlm_conn_writable(c, now))
            plan->events |= POLLOUT;
        plan->deadline = tlm_conn_ack_deadline(c);
        if (c->queue.next != NULL && now < c->write_resume_ms &&
            c->write_resume_ms < plan->deadline)
            plan->deadline = c->write_resume_ms;
        if (now < c->read_resume_ms && c->read_resume_ms < plan->deadline)
            plan->deadline = c->read_resume_ms;
    } else if (c->queue.next != NULL) {
        plan->deadline = c->next_connect_ms;
    }
}

int tlm_plan_changed(const struct tlm_plan *old, const struct tlm_plan *now)
{
    return now->fd != old->fd || now->generation != old->generation ||
           (now->events & ~old->events) != 0 || now->deadline < old->deadline;
}

void tlm_conn_io(struct tlm_client *c, int64_t now)
{
    /* twice at most: a connection found broken is retried at once */
    for (int round = 0; round < 2; round++) {
        if (c->fd < 0) {
            if (c->queue.next == NULL || now < c->next_connect_ms || tlm_conn_open(c, now) != 0)
                return;
        }
        tlm_conn_read(c, now);
        tlm_conn_write(c, now);
        if (c->fd >= 0 && now >= tlm_conn_ack_deadline(c))
            tlm_conn_drop(c, now, TLM_CONN_BROKEN); /* the agent may only be busy */
        if (c->fd >= 0)
            return;
    }
}
