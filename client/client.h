/*
 * client: the state behind a tlm_client, shared by client.c (the public
 * calls, the I/O thread, fork handling) and conn.c (the socket).
 *
 * Everything in struct tlm_client is guarded by `lock`, except what only
 * tlm_open / tlm_close touch, the connection and its reply buffer while
 * the I/O thread runs (it alone does I/O then, and lets go of the lock for
 * its reads and writes: conn.c), and the senders' hand-over, guarded by
 * `inbox_lock`. No lock is ever held while waiting: the socket is
 * non-blocking and the I/O thread and tlm_flush release the lock around
 * poll() and condition waits.
 *
 * While the I/O thread runs, a send takes `inbox_lock` alone, and only for
 * a few stores: it never waits behind the thread's work under `lock`
 * (which a busy machine may preempt for tens of microseconds). Lock order:
 * `lock`, then `inbox_lock`, then the pool's.
 */
#ifndef TLM_CLIENT_H
#define TLM_CLIENT_H

#include "pool.h"
#include "queue.h"
#include "telemetry.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/un.h>

#define TLM_CLIENT_NEVER INT64_MAX /* a deadline that does not come */
/* After writing, the thread looks at the queue again this soon without
 * being woken, so that while events flow a send only queues (no system
 * call on the caller's thread) and each write carries many events. */
#define TLM_CLIENT_LINGER_MS 1
/* While senders draw slabs from the pool (one in the last
 * TLM_CLIENT_REFILL_WINDOW_MS), the thread looks this often to touch new
 * ones (pool.h), unwoken. */
#define TLM_CLIENT_REFILL_MS 2
#define TLM_CLIENT_REFILL_WINDOW_MS 1000
#define TLM_CLIENT_MAX_LOSSES 8     /* agent errors about an event before it is dropped */
#define TLM_CLIENT_REPLY_MAX 4096   /* longest reply from the agent */

/* What the client waits for next: the connection (its fd, -1: none, and
 * its generation) with the poll events (0: none), and a deadline
 * (TLM_CLIENT_NEVER: none) for a reconnect or an ack timeout. */
struct tlm_plan {
    int fd;
    uint64_t generation;
    short events;
    int64_t deadline;
};

struct tlm_client {
    pthread_mutex_t lock;
    pthread_cond_t progress; /* broadcast after the I/O thread did something */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    tlm_options opt; /* with the defaults filled in */

    /* connection */
    int fd;                 /* -1: not connected */
    uint64_t generation;    /* connections made so far: tells a new one from an old one
                               that had the same fd number */
    int64_t next_connect_ms; /* earliest next connection attempt (monotonic) */
    unsigned attempts;      /* failures since the last progress: the backoff exponent */
    int64_t last_progress_ms; /* last bytes written or ack read on this connection */
    unsigned char reply[TLM_CLIENT_REPLY_MAX];
    size_t reply_len;
    int64_t read_resume_ms; /* after a full read budget, no reading before this */
    int64_t write_resume_ms; /* after {"deferred"}: no writing before this */
    int64_t defer_delay_ms;  /* the next such pause: doubles while the agent defers */
    int probe;    /* reliable, after an error about a message: one entry in flight at a time */
    uint64_t rng; /* jitter */

    struct tlm_queue queue;
    struct tlm_pool pool; /* the entries' memory, refilled by the I/O thread */
    unsigned long pool_taken; /* the thread: tlm_pool_refill's last answer */
    int64_t pool_drawn_ms;    /* the thread: when it last saw that answer change */
    tlm_stats stats; /* attempted and dropped_{queue_full,too_large,invalid}: inbox_lock */

    /* senders' hand-over (inbox_lock) */
    pthread_mutex_t inbox_lock;
    struct tlm_entry_list inbox; /* admitted, in seq order, for the thread to take in */
    uint64_t next_seq;
    int inbox_open;   /* the thread runs: a send only appends to inbox */
    int inbox_wake;   /* the thread sleeps and would not see a new entry: wake it */
    int wake_pending; /* a byte is in the wake pipe */

    /* I/O thread */
    pthread_t thread;
    int thread_running;
    int64_t thread_retry_ms; /* after a failed pthread_create */
    int stopping;
    int wake[2];     /* self-pipe: [0] polled by the thread; -1 until the thread starts */
    int thread_polling; /* the thread is (about to be) in poll() with the plan below */
    int thread_lingering; /* ... and looks again within TLM_CLIENT_LINGER_MS unwoken */
    struct tlm_plan plan;
    int flush_waiters;

    LIST_ENTRY(tlm_client) all; /* every open client, for fork() */
};

/* Why a connection is given up. Only the agent's word that a message was
 * bad counts against the entry in flight (see TLM_CLIENT_MAX_LOSSES): a
 * close without an error reply, or an error about the agent itself, says
 * nothing about the events. */
enum tlm_conn_end {
    TLM_CONN_BROKEN,      /* closed or reset without an error reply, a reply that is not
                             msgpack, an ack timeout, our own allocation failure */
    TLM_CONN_REFUSED,     /* {"error": max_connections, no_memory, or a reason we do not
                             know}: try again later, after a backoff */
    TLM_CONN_BAD_MESSAGE, /* {"error": too_large, too_deep, not_msgpack} */
};

/* What the client waits for next. */
void tlm_conn_plan(struct tlm_client *c, int64_t now, struct tlm_plan *plan);
/* Must a thread waiting by plan `old` wake up to wait by `now` instead?
 * Yes for another connection (even one that got the same fd number: the
 * old one's poll() would never hear of the new one), an event more to wait
 * for, or an earlier deadline. */
int tlm_plan_changed(const struct tlm_plan *old, const struct tlm_plan *now);
/* Connect now. Returns 0, or -1 (and schedules the next attempt). */
int tlm_conn_open(struct tlm_client *c, int64_t now);
/* Do all the I/O possible now without waiting: connect when due, read
 * replies, write queued entries, enforce the ack timeout. */
void tlm_conn_io(struct tlm_client *c, int64_t now);
/* Write an event that is not queued (nothing is queued ahead of it)
 * straight to the socket. Returns the bytes written, or -1 if the
 * connection failed (and was dropped). */
long tlm_conn_write_direct(struct tlm_client *c, const unsigned char *data, size_t len,
                           int64_t now);
/* Give up on the connection (counted as a disconnect) for the reason why
 * and schedule the next. */
void tlm_conn_drop(struct tlm_client *c, int64_t now, enum tlm_conn_end why);
/* Close the connection (if any) and forget its state, without accounting:
 * for fork children and tlm_close. */
void tlm_conn_forget(struct tlm_client *c);

#endif
