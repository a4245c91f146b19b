/*
 * client: tlm_open / tlm_send / tlm_flush / tlm_close, the I/O thread and
 * fork() handling (see telemetry.h for the promises, client.h for the state).
 *
 * Draining. A send first tries the socket itself: with nothing queued ahead
 * of it (fire-and-forget mode) the event is written straight from the
 * caller's buffer, no copy, no thread hand-off. Whatever the socket does not
 * take is copied into the queue, and a background I/O thread, started the
 * first time the client connects or queues something, waits in poll() for
 * the socket to drain, for replies, for the reconnect time and for ack
 * deadlines. The thread sleeps with no timeout when there is nothing to do.
 * A sender changing what the thread should wait for (a first queued event, a
 * new connection) wakes it through a self-pipe. With opt.no_thread (or when
 * pthread_create fails) the same work happens inside tlm_send*, tlm_flush and
 * tlm_poll only.
 *
 * fork(). pthread_atfork handlers take every client's lock (and the uuid
 * lock) before fork, so the child's copy of each client is consistent and
 * unlocked, then the child closes its copy of the connection and wake pipe,
 * drops the parent's queue and counters and forgets the parent's thread. It
 * connects again, and starts its own thread, on its first send.
 */
#define _GNU_SOURCE /* pipe2 */
#include "client.h"
#include "clock.h"
#include "event.h"
#include "pack.h"
#include "scan.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t tlm_client_all_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, tlm_client) tlm_client_all = LIST_HEAD_INITIALIZER(tlm_client_all);
static pthread_once_t tlm_client_atfork_once = PTHREAD_ONCE_INIT;

static void tlm_client_fork_prepare(void)
{
    struct tlm_client *c;
    pthread_mutex_lock(&tlm_client_all_lock);
    LIST_FOREACH(c, &tlm_client_all, all)
    pthread_mutex_lock(&c->lock);
    tlm_event_fork_prepare();
}

static void tlm_client_fork_parent(void)
{
    struct tlm_client *c;
    tlm_event_fork_release();
    LIST_FOREACH(c, &tlm_client_all, all)
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&tlm_client_all_lock);
}

static int tlm_client_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

static void tlm_client_close_wake(struct tlm_client *c)
{
    for (int i = 0; i < 2; i++) {
        if (c->wake[i] >= 0)
            close(c->wake[i]);
        c->wake[i] = -1;
    }
    c->wake_pending = 0;
}

/* The child's copy of a client: everything the parent had in flight stays
 * the parent's. */
static void tlm_client_fork_reset(struct tlm_client *c)
{
    tlm_conn_forget(c);
    tlm_client_close_wake(c);
    tlm_queue_clear(&c->queue);
    memset(&c->stats, 0, sizeof c->stats);
    c->attempts = 0;
    c->next_connect_ms = 0;
    c->probe = 0;
    c->thread_running = 0;
    c->thread_retry_ms = 0;
    c->thread_polling = c->thread_lingering = 0;
    c->stopping = 0;
    c->flush_waiters = 0;
    c->rng ^= (uint64_t)getpid() * UINT64_C(0x9e3779b97f4a7c15);
    /* a waiter of the parent's may have left the condition variable busy */
    tlm_client_cond_init(&c->progress);
}

static void tlm_client_fork_child(void)
{
    struct tlm_client *c;
    tlm_event_fork_release();
    LIST_FOREACH(c, &tlm_client_all, all)
    {
        tlm_client_fork_reset(c);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&tlm_client_all_lock);
}

static void tlm_client_atfork(void)
{
    pthread_atfork(tlm_client_fork_prepare, tlm_client_fork_parent, tlm_client_fork_child);
}

static const char *tlm_client_default_path(const char *path)
{
    if (path != NULL)
        return path;
    path = getenv(WIRE_SOCKET_ENV);
    return path != NULL && path[0] != '\0' ? path : TLM_DEFAULT_SOCKET;
}

tlm_status tlm_open(tlm_client **out, const char *socket_path, const tlm_options *opts)
{
    if (out == NULL)
        return TLM_EINVAL;
    *out = NULL;
    tlm_options o;
    tlm_options_init(&o);
    if (opts != NULL)
        o = *opts;
    const char *path = tlm_client_default_path(socket_path);
    if (path[0] == '\0')
        return TLM_EINVAL;
    if (o.queue_bytes == 0)
        o.queue_bytes = TLM_DEFAULT_QUEUE_BYTES;
    if (o.max_event_bytes == 0)
        o.max_event_bytes = TLM_DEFAULT_MAX_EVENT_BYTES;
    if (o.ack_timeout_ms == 0)
        o.ack_timeout_ms = TLM_DEFAULT_ACK_TIMEOUT_MS;
    if (o.reconnect_min_ms == 0)
        o.reconnect_min_ms = TLM_DEFAULT_RECONNECT_MIN_MS;
    if (o.reconnect_max_ms == 0)
        o.reconnect_max_ms = TLM_DEFAULT_RECONNECT_MAX_MS;
    if (o.reconnect_min_ms > o.reconnect_max_ms)
        return TLM_EINVAL;
    struct tlm_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return TLM_ENOMEM;
    if (strlen(path) >= sizeof c->path) {
        free(c);
        return TLM_ETOOLONG;
    }
    memcpy(c->path, path, strlen(path) + 1);
    c->opt = o;
    c->fd = -1;
    c->wake[0] = c->wake[1] = -1;
    c->rng = (uint64_t)clock_monotonic_ms() * UINT64_C(0x9e3779b97f4a7c15) ^
             (uint64_t)(uintptr_t)c ^ (uint64_t)getpid();
    c->rng |= 1;
    tlm_queue_init(&c->queue);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return TLM_ESYS;
    }
    if (tlm_client_cond_init(&c->progress) != 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return TLM_ESYS;
    }
    pthread_once(&tlm_client_atfork_once, tlm_client_atfork);
    pthread_mutex_lock(&tlm_client_all_lock);
    LIST_INSERT_HEAD(&tlm_client_all, c, all);
    pthread_mutex_unlock(&tlm_client_all_lock);
    *out = c;
    return TLM_OK;
}

const char *tlm_socket_path(const tlm_client *c)
{
    return c != NULL ? c->path : NULL;
}

/* ------------------------------------------------------------ I/O thread */

static int64_t tlm_client_poll_timeout(int64_t deadline, int64_t now)
{
    if (deadline == TLM_CLIENT_NEVER)
        return -1;
    if (deadline <= now)
        return 0;
    return deadline - now > 60000 ? 60000 : deadline - now;
}

static void *tlm_client_thread(void *arg)
{
    struct tlm_client *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        int64_t now = clock_monotonic_ms();
        uint64_t written = c->stats.sent + c->stats.resent;
        tlm_conn_io(c, now);
        if (c->flush_waiters > 0)
            pthread_cond_broadcast(&c->progress);
        tlm_conn_plan(c, now, &c->plan);
        int64_t deadline = c->plan.deadline;
        /* events are flowing and the socket takes them: look again soon,
         * unwoken (a full socket wakes it with POLLOUT instead) */
        c->thread_lingering = c->stats.sent + c->stats.resent != written && c->fd >= 0 &&
                              !(c->plan.events & POLLOUT);
        if (c->thread_lingering && deadline > now + TLM_CLIENT_LINGER_MS)
            deadline = now + TLM_CLIENT_LINGER_MS;
        c->thread_polling = 1;
        /* no events (reading paused, nothing to write): not even POLLHUP */
        struct pollfd pfd[2] = {{c->wake[0], POLLIN, 0},
                                {c->plan.events != 0 ? c->plan.fd : -1, c->plan.events, 0}};
        pthread_mutex_unlock(&c->lock);
        poll(pfd, 2, (int)tlm_client_poll_timeout(deadline, now));
        pthread_mutex_lock(&c->lock);
        c->thread_polling = c->thread_lingering = 0;
        if (pfd[0].revents != 0) {
            char drain[64];
            while (read(c->wake[0], drain, sizeof drain) > 0)
                ;
            c->wake_pending = 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int tlm_client_start_thread(struct tlm_client *c, int64_t now)
{
    if (c->wake[0] < 0 && pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        c->wake[0] = c->wake[1] = -1;
        return -1;
    }
    /* the thread takes no signals: they stay the application's */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, tlm_client_thread, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        c->thread_retry_ms = now + 1000;
        return -1;
    }
    c->thread_running = 1;
    return 0;
}

/* After a caller did I/O: start the thread if there is now something to
 * wait for, or wake it if what it waits for changed. */
static void tlm_client_kick(struct tlm_client *c, int64_t now)
{
    if (c->opt.no_thread)
        return;
    if (!c->thread_running) {
        if ((c->fd >= 0 || c->queue.count > 0) && now >= c->thread_retry_ms)
            tlm_client_start_thread(c, now);
        return;
    }
    if (!c->thread_polling || c->wake_pending || c->thread_lingering)
        return; /* it plans again before it next waits, or soon */
    struct tlm_plan plan;
    tlm_conn_plan(c, now, &plan);
    if (tlm_plan_changed(&c->plan, &plan)) {
        if (write(c->wake[1], "", 1) == 1)
            c->wake_pending = 1;
    }
}

/* ---------------------------------------------------------------- sending */

/* Queue (or write) one message under the lock. data is the event as the
 * caller gave it; reliable mode adds the chunk id here. */
static tlm_status tlm_client_submit(struct tlm_client *c, const unsigned char *data, size_t len)
{
    int64_t now = clock_monotonic_ms();
    struct tlm_queue *q = &c->queue;
    uint64_t seq = c->next_seq++;
    if (len > c->opt.max_event_bytes || len > c->opt.queue_bytes) {
        c->stats.dropped_too_large++;
        return TLM_ETOOLARGE;
    }
    /* with the thread, a send only queues: the thread writes */
    int by_thread = !c->opt.no_thread &&
                    (c->thread_running ||
                     (now >= c->thread_retry_ms && tlm_client_start_thread(c, now) == 0));
    size_t off = 0;
    if (!by_thread && !c->opt.reliable && q->next == NULL) {
        /* nothing ahead of it: straight from the caller's buffer */
        if (c->fd < 0 && now >= c->next_connect_ms)
            tlm_conn_open(c, now);
        long n = c->fd >= 0 ? tlm_conn_write_direct(c, data, len, now) : 0;
        if (n == (long)len) {
            tlm_client_kick(c, now);
            return TLM_OK;
        }
        off = n > 0 ? (size_t)n : 0;
    }
    size_t need = len;
    if (c->opt.reliable)
        need += 4 + 6 + 1 + TLM_QUEUE_CHUNK_MAX; /* header growth, "chunk", the id */
    struct tlm_entry *e = tlm_queue_entry_new(need);
    if (e == NULL) {
        if (off > 0) {
            /* its head is on the wire: end that stream there, and have the
             * thread let go of the socket it may be polling */
            tlm_conn_drop(c, now, TLM_CONN_BROKEN);
            tlm_client_kick(c, now);
        }
        c->stats.dropped_queue_full++; /* no memory to hold it: no room, as the caller sees it */
        return TLM_ENOMEM;
    }
    e->seq = seq;
    if (c->opt.reliable) {
        e->chunk_len = (size_t)snprintf(e->chunk, sizeof e->chunk, "%llx", (unsigned long long)seq);
        struct buf out = buf_borrow(e->data, need);
        if (pack_map_add_chunk(&out, data, len, e->chunk, e->chunk_len) != 0) {
            free(e);
            c->stats.dropped_invalid++;
            return TLM_EINVALID;
        }
        e->len = out.len;
    } else {
        memcpy(e->data, data, len);
        e->len = len;
    }
    tlm_status st = TLM_OK;
    if (e->len > c->opt.max_event_bytes || e->len > c->opt.queue_bytes) {
        c->stats.dropped_too_large++;
        st = TLM_ETOOLARGE;
    } else if (q->bytes + e->len > c->opt.queue_bytes) {
        c->stats.dropped_queue_full++;
        st = TLM_EQUEUE_FULL;
    }
    if (st != TLM_OK) {
        free(e);
        return st;
    }
    tlm_queue_push(q, e);
    if (off > 0)
        q->off = off; /* it is the only one queued: its rest goes first */
    if (!by_thread)
        tlm_conn_io(c, now);
    tlm_client_kick(c, now);
    return TLM_OK;
}

/* Check raw bytes: exactly one complete object, not too deep. */
static tlm_status tlm_client_check_raw(const void *data, size_t len)
{
    size_t objlen;
    if (len == 0 || scan_object(data, len, &objlen) != SCAN_COMPLETE ||
        objlen != len)
        return TLM_EINVALID;
    return TLM_OK;
}

static tlm_status tlm_client_send_bytes(tlm_client *c, const void *data, size_t len,
                                        tlm_status error)
{
    pthread_mutex_lock(&c->lock);
    c->stats.attempted++;
    tlm_status st = error;
    if (st == TLM_OK)
        st = tlm_client_submit(c, data, len);
    else if (st == TLM_ENOMEM)
        c->stats.dropped_queue_full++;
    else
        c->stats.dropped_invalid++;
    pthread_mutex_unlock(&c->lock);
    return st;
}

tlm_status tlm_send(tlm_client *c, tlm_event *ev)
{
    if (c == NULL || ev == NULL)
        return TLM_EINVAL;
    const void *data = NULL;
    size_t len = 0;
    tlm_status st = tlm_event_encode(ev, &data, &len);
    return tlm_client_send_bytes(c, data, len, st);
}

tlm_status tlm_send_raw(tlm_client *c, const void *data, size_t len)
{
    if (c == NULL || (data == NULL && len > 0))
        return TLM_EINVAL;
    return tlm_client_send_bytes(c, data, len, tlm_client_check_raw(data, len));
}

/* ------------------------------------------------------ flush, poll, stats */

static int tlm_client_flushed(const struct tlm_client *c, uint64_t target)
{
    return tlm_queue_done_before(&c->queue, target);
}

static void tlm_client_wait_progress(struct tlm_client *c, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    c->flush_waiters++;
    pthread_cond_timedwait(&c->progress, &c->lock, &ts);
    c->flush_waiters--;
}

/* Without the thread: wait in poll() ourselves. Short waits, since another
 * caller may read the reply this one waits for. */
static void tlm_client_wait_io(struct tlm_client *c, int64_t now, int64_t ms)
{
    struct tlm_plan plan;
    tlm_conn_plan(c, now, &plan);
    int64_t t = tlm_client_poll_timeout(plan.deadline, now);
    if (t < 0 || t > ms)
        t = ms;
    struct pollfd pfd = {plan.fd, plan.events, 0};
    pthread_mutex_unlock(&c->lock);
    poll(&pfd, plan.fd >= 0 && plan.events != 0 ? 1 : 0, (int)t);
    pthread_mutex_lock(&c->lock);
}

tlm_status tlm_flush(tlm_client *c, int timeout_ms)
{
    if (c == NULL)
        return TLM_EINVAL;
    pthread_mutex_lock(&c->lock);
    uint64_t target = c->next_seq;
    int64_t start = clock_monotonic_ms();
    /* 0: what can be done now, which with the thread is its next write */
    if (timeout_ms == 0 && c->thread_running)
        timeout_ms = 2 * TLM_CLIENT_LINGER_MS;
    int64_t deadline = timeout_ms < 0 ? TLM_CLIENT_NEVER : start + timeout_ms;
    tlm_status st;
    for (;;) {
        int64_t now = clock_monotonic_ms();
        if (!c->thread_running) /* else the thread alone does I/O (it writes unlocked) */
            tlm_conn_io(c, now);
        tlm_client_kick(c, now);
        if (tlm_client_flushed(c, target)) {
            st = TLM_OK;
            break;
        }
        if (now >= deadline) {
            st = TLM_ETIMEOUT;
            break;
        }
        int64_t left = deadline - now;
        if (c->thread_running)
            tlm_client_wait_progress(c, left < 100 ? left : 100);
        else
            tlm_client_wait_io(c, now, left < 10 ? left : 10);
    }
    pthread_mutex_unlock(&c->lock);
    return st;
}

tlm_status tlm_poll(tlm_client *c)
{
    if (c == NULL)
        return TLM_EINVAL;
    pthread_mutex_lock(&c->lock);
    int64_t now = clock_monotonic_ms();
    if (!c->thread_running) /* else the thread alone does I/O */
        tlm_conn_io(c, now);
    tlm_client_kick(c, now);
    pthread_mutex_unlock(&c->lock);
    return TLM_OK;
}

tlm_status tlm_get_stats(tlm_client *c, tlm_stats *out)
{
    if (c == NULL || out == NULL)
        return TLM_EINVAL;
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    out->queued = c->queue.count;
    out->queued_bytes = c->queue.bytes;
    pthread_mutex_unlock(&c->lock);
    return TLM_OK;
}

void tlm_close(tlm_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&tlm_client_all_lock);
    LIST_REMOVE(c, all);
    pthread_mutex_unlock(&tlm_client_all_lock);
    pthread_mutex_lock(&c->lock);
    int joined = c->thread_running;
    c->stopping = 1;
    if (joined && write(c->wake[1], "", 1) < 0) {
        /* the pipe is full, so the thread is awake anyway */
    }
    pthread_mutex_unlock(&c->lock);
    if (joined)
        pthread_join(c->thread, NULL);
    tlm_conn_forget(c);
    tlm_client_close_wake(c);
    tlm_queue_clear(&c->queue);
    pthread_cond_destroy(&c->progress);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
