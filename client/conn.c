/*
 * conn: the client's connection to the agent (see client.h).
 *
 * Connecting is lazy (only with something to write) and paced: after a
 * failure the next attempt waits reconnect_min_ms doubled per failure up to
 * reconnect_max_ms, drawn between half that and all of it. A connection that
 * breaks is retried at once the first time. Any progress (an event written
 * whole in fire-and-forget mode, an ack in reliable mode) resets the pace.
 *
 * Writes gather up to TLM_CONN_IOV queued entries into one sendmsg() with
 * MSG_NOSIGNAL | MSG_DONTWAIT. When a connection breaks, a partly written
 * entry is written again from its start on the next connection (reliable:
 * every unacked entry is), so the agent, which drops the torn tail with the
 * old connection, never sees it. An entry under which connections keep
 * breaking (TLM_CLIENT_MAX_LOSSES) is dropped, so one event the agent keeps
 * refusing cannot wedge the queue.
 *
 * Replies are read whenever the connection is readable, in every mode (an
 * agent stops reading from a producer that leaves its replies unread).
 */
#include "client.h"
#include "pack.h"

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

/* Give up on the connection. A peer fault (closed, error, garbage) counts
 * against the entry that was in flight; an ack timeout does not, since the
 * agent may only be busy. */
void tlm_conn_drop(struct tlm_client *c, int64_t now, int peer_fault)
{
    struct tlm_queue *q = &c->queue;
    if (c->fd < 0)
        return;
    tlm_conn_forget(c);
    c->stats.disconnects++;
    struct tlm_entry *victim = NULL;
    if (c->opt.reliable && tlm_queue_head_in_flight(q))
        victim = TAILQ_FIRST(&q->entries);
    else if (!c->opt.reliable && q->next != NULL && q->off > 0)
        victim = q->next;
    tlm_queue_rewind(q, c->opt.reliable);
    if (victim != NULL && peer_fault && ++victim->losses >= TLM_CLIENT_MAX_LOSSES) {
        c->stats.dropped_connection++;
        tlm_queue_remove(q, victim);
    }
    c->next_connect_ms = c->attempts == 0 ? now : now + tlm_conn_backoff_ms(c);
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

/* One reply: {"ack": chunk} or {"ack": chunk, "rejected": n, "reason": r}.
 * Anything else, and acks for no entry in flight, are ignored. */
static void tlm_conn_reply(struct tlm_client *c, const unsigned char *p, size_t len, int64_t now)
{
    struct tlm_pack_item it, key, val, ack = {0}, reason = {0};
    uint64_t rejected = 0;
    if (tlm_pack_item(p, len, &it) != 1 || it.type != TLM_PACK_MAP)
        return;
    size_t pos = it.size;
    for (uint32_t i = 0; i < it.len; i++) {
        if (tlm_pack_item(p + pos, len - pos, &key) != 1)
            return;
        pos += key.size;
        size_t vlen;
        if (tlm_pack_item(p + pos, len - pos, &val) != 1 ||
            tlm_pack_scan(p + pos, len - pos, 64, &vlen) != TLM_PACK_COMPLETE)
            return;
        pos += vlen;
        if (tlm_pack_item_is_str(&key, "ack") && val.type == TLM_PACK_STR)
            ack = val;
        else if (tlm_pack_item_is_str(&key, "rejected") && val.type == TLM_PACK_UINT)
            rejected = val.u;
        else if (tlm_pack_item_is_str(&key, "reason") && val.type == TLM_PACK_STR)
            reason = val;
    }
    if (ack.type != TLM_PACK_STR)
        return;
    struct tlm_queue *q = &c->queue;
    struct tlm_entry *e;
    TAILQ_FOREACH(e, &q->entries, link)
    {
        if (e == q->next)
            return; /* not written whole on this connection: not for it */
        if (e->chunk_len == ack.len && memcmp(e->chunk, ack.ptr, ack.len) == 0)
            break;
    }
    if (e == NULL)
        return;
    if (rejected > 0) {
        c->stats.dropped_rejected++;
        size_t n = reason.len < sizeof c->stats.last_reject_reason - 1
                       ? reason.len
                       : sizeof c->stats.last_reject_reason - 1;
        if (n > 0)
            memcpy(c->stats.last_reject_reason, reason.ptr, n);
        c->stats.last_reject_reason[n] = '\0';
    } else {
        c->stats.acked++;
    }
    tlm_queue_remove(q, e);
    tlm_conn_progress(c, now);
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
        ssize_t n = recv(c->fd, c->reply + c->reply_len, sizeof c->reply - c->reply_len,
                         MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            tlm_conn_drop(c, now, 1);
            return;
        }
        c->reply_len += (size_t)n;
        size_t used = 0, objlen;
        enum tlm_pack_scan_status st;
        while ((st = tlm_pack_scan(c->reply + used, c->reply_len - used, 32, &objlen)) ==
               TLM_PACK_COMPLETE) {
            tlm_conn_reply(c, c->reply + used, objlen, now);
            used += objlen;
            if (used == c->reply_len)
                break;
        }
        if (c->fd < 0)
            return;
        if (used < c->reply_len &&
            (st != TLM_PACK_INCOMPLETE || (used == 0 && c->reply_len == sizeof c->reply))) {
            tlm_conn_drop(c, now, 1); /* not msgpack, or a reply too long to be one */
            return;
        }
        memmove(c->reply, c->reply + used, c->reply_len - used);
        c->reply_len -= used;
    }
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
    while (c->fd >= 0 && q->next != NULL) {
        struct iovec iov[TLM_CONN_IOV];
        int cnt = 0;
        size_t off = q->off;
        for (struct tlm_entry *e = q->next; e != NULL && cnt < TLM_CONN_IOV;
             e = TAILQ_NEXT(e, link)) {
            iov[cnt].iov_base = e->data + off;
            iov[cnt].iov_len = e->len - off;
            cnt++;
            off = 0;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (tlm_conn_broken(n)) {
            tlm_conn_drop(c, now, 1);
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
        tlm_conn_drop(c, now, 1);
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

void tlm_conn_plan(struct tlm_client *c, int64_t now, int *fd, short *events,
                   int64_t *deadline)
{
    *fd = c->fd;
    *events = 0;
    *deadline = TLM_CLIENT_NEVER;
    if (c->fd >= 0) {
        *events = now >= c->read_resume_ms ? POLLIN : 0;
        if (c->queue.next != NULL)
            *events |= POLLOUT;
        *deadline = tlm_conn_ack_deadline(c);
        if (now < c->read_resume_ms && c->read_resume_ms < *deadline)
            *deadline = c->read_resume_ms;
    } else if (c->queue.next != NULL) {
        *deadline = c->next_connect_ms;
    }
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
            tlm_conn_drop(c, now, 0);
        if (c->fd >= 0)
            return;
    }
}
