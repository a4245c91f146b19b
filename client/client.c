/*
 * client: tlm_open / tlm_send / tlm_flush / tlm_close, the I/O thread and
 * fork() handling (see telemetry.h for the promises, client.h for the state).
 *
 * Draining. A background I/O thread, started on the first send, writes the
 * queue (many events per sendmsg) and waits in poll() for the socket to
 * drain, for replies, for the reconnect time and for ack deadlines. While
 * it runs, a send copies the event into a new entry and appends it to the
 * inbox under a lock of its own (client.h), which the thread empties into
 * the queue each time round: the sender never waits behind the thread's
 * work. The thread sleeps with no timeout when there is nothing to do; a
 * send that it would otherwise not see in time (its queue had nothing left
 * to write, and it is not about to look again) wakes it through a
 * self-pipe, once per sleep. With opt.no_thread (or when pthread_create
 * fails) the work happens inside tlm_send*, tlm_flush and tlm_poll, under
 * the client's lock: with nothing queued ahead of it (fire-and-forget
 * mode) an event is written straight from the caller's buffer.
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
    {
        pthread_mutex_lock(&c->lock);
        pthread_mutex_lock(&c->inbox_lock);
        pthread_mutex_lock(&c->pool.lock);
    }
    tlm_event_fork_prepare();
}

static void tlm_client_fork_parent(void)
{
    struct tlm_client *c;
    tlm_event_fork_release();
    LIST_FOREACH(c, &tlm_client_all, all)
    {
        pthread_mutex_unlock(&c->pool.lock);
        pthread_mutex_unlock(&c->inbox_lock);
        pthread_mutex_unlock(&c->lock);
    }
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
    tlm_queue_append(&c->queue, &c->inbox);
    tlm_queue_clear(&c->queue);
    memset(&c->stats, 0, sizeof c->stats);
    c->attempts = 0;
    c->next_connect_ms = 0;
    c->probe = 0;
    c->thread_running = c->inbox_open = c->inbox_wake = 0;
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
        pthread_mutex_unlock(&c->pool.lock); /* the reset below releases entries */
        tlm_client_fork_reset(c);
        pthread_mutex_unlock(&c->inbox_lock);
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
    TAILQ_INIT(&c->inbox);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return TLM_ESYS;
    }
    if (pthread_mutex_init(&c->inbox_lock, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return TLM_ESYS;
    }
    if (tlm_pool_init(&c->pool) != 0) {
        pthread_mutex_destroy(&c->inbox_lock);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return TLM_ESYS;
    }
    if (tlm_client_cond_init(&c->progress) != 0) {
        tlm_pool_destroy(&c->pool);
        pthread_mutex_destroy(&c->inbox_lock);
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

/* Under the lock: move what senders handed over into the queue. */
static void tlm_client_take_inbox(struct tlm_client *c)
{
    pthread_mutex_lock(&c->inbox_lock);
    tlm_queue_append(&c->queue, &c->inbox);
    pthread_mutex_unlock(&c->inbox_lock);
}

/* Under the lock, about to wait: whether senders handed something over
 * meanwhile (then do not wait); if not, have the next one wake the thread
 * unless it looks again soon anyway or has writing left, which a new entry
 * joins without changing what it waits for. */
static int tlm_client_inbox_before_wait(struct tlm_client *c)
{
    pthread_mutex_lock(&c->inbox_lock);
    int handed = !TAILQ_EMPTY(&c->inbox);
    c->inbox_wake = !handed && !c->thread_lingering && c->queue.next == NULL;
    pthread_mutex_unlock(&c->inbox_lock);
    return handed;
}

static void *tlm_client_thread(void *arg)
{
    struct tlm_client *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        int64_t now = clock_monotonic_ms();
        uint64_t written = c->stats.sent + c->stats.resent;
        tlm_client_take_inbox(c);
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
        if (tlm_client_inbox_before_wait(c)) {
            c->thread_lingering = 0;
            continue;
        }
        c->thread_polling = 1;
        /* no events (reading paused, nothing to write): not even POLLHUP */
        struct pollfd pfd[2] = {{c->wake[0], POLLIN, 0},
                                {c->plan.events != 0 ? c->plan.fd : -1, c->plan.events, 0}};
        pthread_mutex_unlock(&c->lock);
        /* the page faults here, not in a sender; while senders draw slabs,
         * look again soon for more */
        unsigned long taken = tlm_pool_refill(&c->pool);
        now = clock_monotonic_ms();
        if (taken != c->pool_taken) {
            c->pool_taken = taken;
            c->pool_drawn_ms = now;
        }
        if (now - c->pool_drawn_ms < TLM_CLIENT_REFILL_WINDOW_MS &&
            deadline > now + TLM_CLIENT_REFILL_MS)
            deadline = now + TLM_CLIENT_REFILL_MS;
        poll(pfd, 2, (int)tlm_client_poll_timeout(deadline, now));
        pthread_mutex_lock(&c->lock);
        c->thread_polling = c->thread_lingering = 0;
        pthread_mutex_lock(&c->inbox_lock);
        c->inbox_wake = 0;
        if (pfd[0].revents != 0) {
            char drain[64];
            while (read(c->wake[0], drain, sizeof drain) > 0)
                ;
            c->wake_pending = 0;
        }
        pthread_mutex_unlock(&c->inbox_lock);
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

/* Wake the thread, unless a wake-up is already on its way (inbox_lock
 * held). Returns whether the caller must write to the pipe, after letting
 * go of the lock. */
static int tlm_client_wake_locked(struct tlm_client *c)
{
    if (c->wake_pending)
        return 0;
    c->wake_pending = 1;
    return 1;
}

static void tlm_client_wake_write(struct tlm_client *c)
{
    if (write(c->wake[1], "", 1) != 1) {
        /* full: the thread has wake-ups to read already */
    }
}

/* After a caller did I/O: start the thread if there is now something to
 * wait for, or wake it if what it waits for changed. */
static void tlm_client_kick(struct tlm_client *c, int64_t now)
{
    if (c->opt.no_thread)
        return;
    if (!c->thread_running) {
        if ((c->fd >= 0 || tlm_queue_held_count(&c->queue) > 0) && now >= c->thread_retry_ms &&
            tlm_client_start_thread(c, now) == 0) {
            pthread_mutex_lock(&c->inbox_lock);
            __atomic_store_n(&c->inbox_open, 1, __ATOMIC_RELAXED); /* a send only hands over */
            pthread_mutex_unlock(&c->inbox_lock);
        }
        return;
    }
    if (!c->thread_polling || c->thread_lingering)
        return; /* it plans again before it next waits, or soon */
    struct tlm_plan plan;
    tlm_conn_plan(c, now, &plan);
    if (!tlm_plan_changed(&c->plan, &plan))
        return;
    pthread_mutex_lock(&c->inbox_lock);
    int wake = tlm_client_wake_locked(c);
    pthread_mutex_unlock(&c->inbox_lock);
    if (wake)
        tlm_client_wake_write(c);
}

/* ---------------------------------------------------------------- sending */

/* Room for the chunk id reliable mode adds: header growth, "chunk", the id. */
#define TLM_CLIENT_CHUNK_ROOM (4 + 6 + 1 + TLM_QUEUE_CHUNK_MAX)

/* A new entry for a message of len bytes (in reliable mode, room for its
 * chunk id, added once it is numbered), or NULL. */
static struct tlm_entry *tlm_client_entry_new(struct tlm_client *c, const void *data,
                                              size_t len)
{
    struct tlm_entry *e =
        tlm_queue_entry_new(&c->pool, c->opt.reliable ? len + TLM_CLIENT_CHUNK_ROOM : len);
    if (e != NULL && !c->opt.reliable) {
        memcpy(e->data, data, len);
        e->len = len;
    }
    return e;
}

/* Under inbox_lock: number the entry (in reliable mode, write the message
 * with its chunk id) and count it in, within the bound. TLM_OK, or why it
 * was dropped (counted). */
static tlm_status tlm_client_admit(struct tlm_client *c, struct tlm_entry *e, const void *data,
                                   size_t len)
{
    e->seq = c->next_seq++;
    if (c->opt.reliable) {
        e->chunk_len =
            (size_t)snprintf(e->chunk, sizeof e->chunk, "%llx", (unsigned long long)e->seq);
        struct buf out = buf_borrow(e->data, len + TLM_CLIENT_CHUNK_ROOM);
        if (pack_map_add_chunk(&out, data, len, e->chunk, e->chunk_len) != 0) {
            c->stats.dropped_invalid++;
            return TLM_EINVALID;
        }
        e->len = out.len;
    }
    if (e->len > c->opt.max_event_bytes || e->len > c->opt.queue_bytes) {
        c->stats.dropped_too_large++;
        return TLM_ETOOLARGE;
    }
    if (tlm_queue_reserve(&c->queue, e->len, c->opt.queue_bytes) != 0) {
        c->stats.dropped_queue_full++;
        return TLM_EQUEUE_FULL;
    }
    return TLM_OK;
}

/* Without the thread running (opt.no_thread, the first send, or no thread
 * to be had), under both locks: the event is written at once if nothing is
 * queued ahead of it and the socket takes it, else queued (in e, made
 * beforehand, or here). */
static tlm_status tlm_client_submit(struct tlm_client *c, struct tlm_entry *e,
                                    const unsigned char *data, size_t len, int64_t now)
{
    struct tlm_queue *q = &c->queue;
    int by_thread = !c->opt.no_thread &&
                    (c->thread_running ||
                     (now >= c->thread_retry_ms && tlm_client_start_thread(c, now) == 0));
    __atomic_store_n(&c->inbox_open, c->thread_running, __ATOMIC_RELAXED); /* a send only hands over */
    size_t off = 0;
    if (!by_thread && !c->opt.reliable && q->next == NULL) {
        /* nothing ahead of it: straight from the caller's buffer */
        if (c->fd < 0 && now >= c->next_connect_ms)
            tlm_conn_open(c, now);
        long n = c->fd >= 0 ? tlm_conn_write_direct(c, data, len, now) : 0;
        if (n == (long)len) {
            c->next_seq++;
            tlm_queue_entry_free(e);
            return TLM_OK;
        }
        off = n > 0 ? (size_t)n : 0;
    }
    if (e == NULL)
        e = tlm_client_entry_new(c, data, len);
    if (e == NULL) {
        if (off > 0) {
            /* its head is on the wire: end that stream there, and have the
             * thread let go of the socket it may be polling */
            tlm_conn_drop(c, now, TLM_CONN_BROKEN);
        }
        c->stats.dropped_queue_full++; /* no memory to hold it: no room, as the caller sees it */
        return TLM_ENOMEM;
    }
    tlm_status st = tlm_client_admit(c, e, data, len);
    if (st != TLM_OK) {
        tlm_queue_entry_free(e);
        return st;
    }
    tlm_queue_push(q, e);
    if (off > 0)
        q->off = off; /* it is the only one queued: its rest goes first */
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
    int fits = error == TLM_OK && len <= c->opt.max_event_bytes && len <= c->opt.queue_bytes;
    /* the copy is made outside every lock: it may fault fresh pages in */
    struct tlm_entry *e = NULL;
    int made = fits && __atomic_load_n(&c->inbox_open, __ATOMIC_RELAXED);
    if (made)
        e = tlm_client_entry_new(c, data, len);
    pthread_mutex_lock(&c->inbox_lock);
    if (fits && c->inbox_open && !made) { /* the thread started meanwhile */
        pthread_mutex_unlock(&c->inbox_lock);
        e = tlm_client_entry_new(c, data, len);
        pthread_mutex_lock(&c->inbox_lock);
    }
    c->stats.attempted++;
    tlm_status st = error;
    if (st == TLM_ENOMEM)
        c->stats.dropped_queue_full++;
    else if (st != TLM_OK)
        c->stats.dropped_invalid++;
    else if (!fits) {
        c->stats.dropped_too_large++;
        st = TLM_ETOOLARGE;
    } else if (c->inbox_open && e == NULL) {
        c->stats.dropped_queue_full++; /* no memory to hold it */
        st = TLM_ENOMEM;
    }
    if (st != TLM_OK || c->inbox_open) {
        int wake = 0;
        if (st == TLM_OK && (st = tlm_client_admit(c, e, data, len)) == TLM_OK) {
            TAILQ_INSERT_TAIL(&c->inbox, e, link);
            e = NULL;
        }
        if (c->inbox_wake) /* else it sees the entry in time */
            wake = tlm_client_wake_locked(c);
        pthread_mutex_unlock(&c->inbox_lock);
        tlm_queue_entry_free(e);
        if (wake)
            tlm_client_wake_write(c);
        return st;
    }
    pthread_mutex_unlock(&c->inbox_lock);
    /* no thread running: the lock order is the client's lock first */
    pthread_mutex_lock(&c->lock);
    pthread_mutex_lock(&c->inbox_lock);
    int64_t now = clock_monotonic_ms();
    tlm_queue_append(&c->queue, &c->inbox); /* if a thread ran before */
    st = tlm_client_submit(c, e, data, len, now);
    pthread_mutex_unlock(&c->inbox_lock);
    if (!c->thread_running)
        tlm_conn_io(c, now);
    tlm_client_kick(c, now);
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
    pthread_mutex_lock(&c->inbox_lock);
    uint64_t target = c->next_seq; /* everything sent before this call */
    pthread_mutex_unlock(&c->inbox_lock);
    int64_t start = clock_monotonic_ms();
    /* 0: what can be done now, which with the thread is its next write */
    if (timeout_ms == 0 && c->thread_running)
        timeout_ms = 2 * TLM_CLIENT_LINGER_MS;
    int64_t deadline = timeout_ms < 0 ? TLM_CLIENT_NEVER : start + timeout_ms;
    tlm_status st;
    for (;;) {
        int64_t now = clock_monotonic_ms();
        tlm_client_take_inbox(c);
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
    pthread_mutex_lock(&c->inbox_lock);
    *out = c->stats;
    out->queued = tlm_queue_held_count(&c->queue);
    out->queued_bytes = tlm_queue_held_bytes(&c->queue);
    pthread_mutex_unlock(&c->inbox_lock);
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
    tlm_queue_append(&c->queue, &c->inbox);
    tlm_queue_clear(&c->queue);
    tlm_pool_destroy(&c->pool);
    pthread_cond_destroy(&c->progress);
    pthread_mutex_destroy(&c->inbox_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
