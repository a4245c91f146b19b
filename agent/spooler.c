/*
 * spooler: the spool thread and its hand-offs with the loop (see spooler.h).
 *
 * Fields are in three groups: the loop's, the thread's, and those between
 * them, guarded by `lock`. The loop hands over staged records (inbox), asks
 * for records to read (want_read), for a checkpoint (want_confirm) and, at
 * shutdown, for a sync now (want_sync). The thread answers with how much
 * of the inbox is durable (consumed_bytes), how far the log is durable,
 * records read (records_ready, then chunk and recs are the loop's until it
 * asks again), and the last failure; it pokes the loop through a pipe.
 *
 * The thread swaps the inbox out (no copy under the lock) and keeps every
 * record it took until it is durable (held). With fsync = interval the
 * staged records wait for the sync to be due or for a write's worth of
 * them, so staging wakes the thread about once per sync, not per event.
 * A failed write or sync rewinds the log to what was last durable and
 * writes the held records again after a pause: after a failed fsync the
 * kernel may have dropped the pages, so only writing them again makes them
 * durable.
 */
#define _GNU_SOURCE /* pipe2 */
#include "spooler.h"

#include "account.h"
#include "clock.h"
#include "log.h"
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#define SPOOLER_READ_BYTES (256 * 1024) /* read ahead per hand-over */
#define SPOOLER_READ_RECORDS 4096
#define SPOOLER_WRITE_BYTES (256 * 1024) /* staged, written before the sync is due */
#define SPOOLER_KEEP_BYTES (2 * SPOOLER_WRITE_BYTES) /* an empty hand-off buffer keeps at most */
#define SPOOLER_RETRY_MS 250            /* after a failed write, or a full spool */
#define SPOOLER_CONFIRM_EVERY_MS 100    /* checkpoints at most this often */
#define SPOOLER_SAVE_EVERY_MS 1000      /* counters saved this often while they change */
#define SPOOLER_LOUD_EVERY_MS 30000
#define SPOOLER_STAGE_HEAD 4            /* a staged record: its length, then the JSON */
#define SPOOLER_STATE_VERSION 1
#define SPOOLER_CLOSE_FLUSH_MS 2000     /* at exit: how long the last writes may take */
#define SPOOLER_SAMPLES 256             /* when records were staged, for the backlog's age */
#define SPOOLER_SAMPLE_EVERY_MS 100

/* One record read for the loop: its JSON's length in chunk, and origin. */
struct spooler_record {
    uint32_t len;
    struct batch_origin origin;
};

struct spooler_ticket {
    struct batch_ticket base; /* first: batches point at it */
    TAILQ_ENTRY(spooler_ticket) entry;
    struct spooler *sp;
    struct spool_pos end;
    uint64_t lost;
    uint64_t bytes;
    int done;
};

TAILQ_HEAD(spooler_tickets, spooler_ticket);

struct spooler {
    /* the loop's */
    struct event_base *base;
    const struct config *cfg;
    struct budget *memory;
    struct budget disk;
    struct budget staging;          /* of memory: staged, not yet on disk */
    struct batcher *batcher;
    struct sender *sender;
    struct event *news_ev, *feed_ev, *save_timer, *hand_over_ev;
    struct buf outbox;              /* staged in this pass, not yet handed over (the inbox) */
    struct spooler_tickets tickets; /* sealed batches, in log order */
    struct spool_pos confirmed;     /* the log is delivered (or dropped) up to here */
    uint64_t staged_index;          /* the index the next staged record gets */
    uint64_t staged_bytes;          /* ever staged (charged to memory) */
    uint64_t released_bytes;        /* of those, released when written */
    uint64_t durable_seen;
    uint64_t saved_received, saved_dropped; /* counters at the last save */
    int feeding;                    /* a read is asked for, or being fed */
    int stopping;
    int failing, full_logged;
    uint64_t feed_lost;             /* read from the log, lost for want of memory */
    int frozen;                     /* a batch went without a ticket: confirm no more */
    struct log_limit feed_log;
    int64_t loud_ms;
    void (*on_durable)(void *arg);
    void *durable_arg;
    struct { uint64_t index; int64_t ms; } samples[SPOOLER_SAMPLES]; /* index staged at ms */
    unsigned nsamples;

    /* between the two, under lock */
    pthread_mutex_t lock;
    pthread_cond_t work;    /* for the thread */
    pthread_cond_t settled; /* for spooler_flush: a round is over */
    struct buf inbox;       /* staged records */
    int stage_wakes;        /* the thread waits past when a record staged now is due to
                             * be written: staging must wake it */
    int want_read, records_ready;
    size_t read_bytes;       /* the most one hand-over may hold: the loop's room */
    int want_confirm;
    struct spool_pos confirm_pos;
    uint64_t state[4 + SOURCE_COUNT + 1 + DROP_REASON_COUNT];
    int want_sync, stop;
    int no_writes;           /* closing: nothing more is written */
    uint64_t rounds;         /* rounds of work the thread has finished */
    uint64_t consumed_bytes; /* of the inbox's bytes, written to the log */
    uint64_t durable_index;  /* the log is durable before this record */
    uint64_t written_index;  /* ... and written before this one */
    int io_errno;            /* the last write, sync or read failed (0: it worked) */
    const char *io_what;
    int spool_full;          /* at spool.max_bytes: waiting for confirmations */
    uint64_t pub_bytes, pub_segments; /* the spool's size after the last round */
    int64_t pub_made_ms;     /* when the segment of the checkpoint was made */
    int notify[2];
    pthread_t thread;
    int thread_started;

    /* the thread's */
    struct spool *spool;
    struct buf taken;       /* the inbox, swapped out under lock, for held */
    struct buf held;        /* taken from the inbox, not yet durable */
    size_t held_appended;   /* of held, appended to the log */
    size_t held_written;    /* ... and written */
    uint64_t held_first;    /* the index of the record at held[0] */
    uint64_t held_appended_index; /* ... and of the first not appended */
    struct spool_pos read_at;
    uint64_t carry_lost;    /* records lost at a segment's end, told with the next */
    struct buf chunk;       /* records read for the loop, one after the other */
    struct spooler_record *recs;
    size_t nrecs;
    int64_t last_sync_ms, last_confirm_ms, retry_at_ms;
    int dirty;              /* written since the last sync */
};

static void spooler_ask(struct spooler *sp);
static void spooler_hand_over(struct spooler *sp);

/* Failures that need no rewind: what is in the log stays as it is. */
static const char spooler_reading[] = "reading";
static const char spooler_queueing[] = "queueing records for";

/* The time ms from now on `clock`, for a timed wait. */
static struct timespec spooler_time_in(clockid_t clock, int64_t ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* The loop asks (under lock) for a sync and waits up to 50 ms for the
 * thread to end a round. */
static void spooler_sync_and_wait(struct spooler *sp)
{
    sp->want_sync = 1;
    pthread_cond_signal(&sp->work);
    struct timespec ts = spooler_time_in(CLOCK_REALTIME, 50);
    pthread_cond_timedwait(&sp->settled, &sp->lock, &ts);
}

/* How much staged makes the thread write before the sync is due. */
static size_t spooler_write_bytes(const struct spooler *sp)
{
    return sp->staging.max / 8 < SPOOLER_WRITE_BYTES ? sp->staging.max / 8 : SPOOLER_WRITE_BYTES;
}

/* ---- the thread ---- */

/* A write or sync failed: say so, rewind the log to what is durable, and
 * write the held records again after a pause. */
/* The log is durable before record `durable`: let go of the held records
 * before it (held[0] is record held_first) and tell the loop. */
static void spooler_release(struct spooler *sp, uint64_t durable)
{
    size_t done = 0;
    if (durable >= sp->held_appended_index) { /* all that was appended: no walk */
        done = sp->held_appended;
        sp->held_first = sp->held_appended_index;
    }
    while (sp->held_first < durable && done + SPOOLER_STAGE_HEAD <= sp->held_appended) {
        uint32_t len;
        memcpy(&len, sp->held.data + done, sizeof len);
        done += SPOOLER_STAGE_HEAD + len;
        sp->held_first++;
    }
    memmove(sp->held.data, sp->held.data + done, sp->held.len - done);
    buf_truncate(&sp->held, sp->held.len - done);
    sp->held_appended -= done;
    sp->held_written = sp->held_written > done ? sp->held_written - done : 0;
    pthread_mutex_lock(&sp->lock);
    sp->consumed_bytes += done;
    sp->durable_index = durable;
    if (sp->held.len == 0 && !sp->spool_full)
        sp->io_errno = 0;
    pthread_mutex_unlock(&sp->lock);
}

static void spooler_failed(struct spooler *sp, const char *what, int err)
{
    pthread_mutex_lock(&sp->lock);
    sp->io_errno = err ? err : EIO;
    sp->io_what = what;
    pthread_mutex_unlock(&sp->lock);
    sp->retry_at_ms = clock_monotonic_ms() + SPOOLER_RETRY_MS;
    if (what == spooler_reading || what == spooler_queueing)
        return;
    if (spool_rewind(sp->spool) == SPOOL_OK) {
        /* what a finished segment's sync made durable stays; the rest is
         * appended again, to the same places */
        spooler_release(sp, spool_durable_index(sp->spool));
        sp->held_appended = sp->held_written = 0;
        sp->held_appended_index = sp->held_first;
        sp->dirty = 0;
    } /* else the next round appends after what is there, and fails again */
}

/* What is written is durable now: let go of it and tell the loop. */
static void spooler_made_durable(struct spooler *sp)
{
    spool_mark_durable(sp->spool);
    sp->dirty = 0;
    spooler_release(sp, spool_written_index(sp->spool));
}

/* Move the records of `from` into the empty `to` by swapping the two;
 * `from`, now empty, keeps its memory only up to SPOOLER_KEEP_BYTES (the
 * staging memory bounds what the hand-off buffers hold, not what they
 * keep). */
static void spooler_move(struct buf *from, struct buf *to)
{
    struct buf empty = *to;
    *to = *from;
    *from = empty;
    if (from->cap > SPOOLER_KEEP_BYTES)
        buf_free(from);
}

/* The records taken from the inbox join those held (out of memory: they
 * stay taken, tried again after a pause). */
static void spooler_hold_taken(struct spooler *sp)
{
    if (sp->taken.len == 0)
        return;
    if (sp->held.len == 0) {
        spooler_move(&sp->taken, &sp->held);
        return;
    }
    if (buf_append(&sp->held, sp->taken.data, sp->taken.len) < 0) {
        buf_rollback(&sp->held, sp->held.len);
        sp->retry_at_ms = clock_monotonic_ms() + SPOOLER_RETRY_MS;
        return;
    }
    buf_rollback(&sp->taken, 0);
    if (sp->taken.cap > SPOOLER_KEEP_BYTES)
        buf_free(&sp->taken);
}

/* Append and write the held records not yet in the log. */
static void spooler_write(struct spooler *sp)
{
    int full = 0;
    while (sp->held_appended + SPOOLER_STAGE_HEAD <= sp->held.len) {
        const char *rec = sp->held.data + sp->held_appended;
        uint32_t len;
        memcpy(&len, rec, sizeof len);
        struct spool_pos end;
        enum spool_status st = spool_append(sp->spool, rec + SPOOLER_STAGE_HEAD, len, &end);
        if (st == SPOOL_FULL) {
            full = 1;
            sp->retry_at_ms = clock_monotonic_ms() + SPOOLER_RETRY_MS;
            break;
        }
        if (st == SPOOL_NO_MEMORY) { /* what was appended before it is written */
            spooler_failed(sp, spooler_queueing, ENOMEM);
            break;
        }
        if (st != SPOOL_OK) {
            spooler_failed(sp, "starting a new file in", errno);
            return;
        }
        sp->held_appended += SPOOLER_STAGE_HEAD + len;
        sp->held_appended_index++;
    }
    pthread_mutex_lock(&sp->lock);
    sp->spool_full = full;
    pthread_mutex_unlock(&sp->lock);
    if (sp->held_appended == sp->held_written)
        return;
    if (spool_write(sp->spool) != SPOOL_OK) {
        spooler_failed(sp, "writing to", errno);
        return;
    }
    sp->held_written = sp->held_appended;
    sp->dirty = 1;
    pthread_mutex_lock(&sp->lock);
    sp->written_index = spool_written_index(sp->spool);
    pthread_mutex_unlock(&sp->lock);
    if (sp->cfg->spool_fsync == FSYNC_NEVER)
        spooler_made_durable(sp); /* written is all that is asked */
}

/* Sync as spool.fsync says (now, if `now`). */
static void spooler_sync(struct spooler *sp, int now)
{
    int64_t t = clock_monotonic_ms();
    if (!sp->dirty || sp->cfg->spool_fsync == FSYNC_NEVER)
        return;
    /* interval: at most fsync_interval_ms after a write, and sooner once
     * what waits for it holds half the staging memory (producers would
     * otherwise wait for the interval with their events staged) */
    if (!now && sp->cfg->spool_fsync == FSYNC_INTERVAL &&
        t - sp->last_sync_ms < sp->cfg->spool_fsync_interval_ms &&
        sp->held.len < sp->staging.max / 2)
        return;
    if (spool_sync(sp->spool) != SPOOL_OK) {
        spooler_failed(sp, "syncing", errno);
        return;
    }
    sp->last_sync_ms = t;
    spooler_made_durable(sp);
}

/* Read records for the loop, up to a hand-over's worth: max_bytes (at
 * least one record). */
static void spooler_read(struct spooler *sp, size_t max_bytes)
{
    buf_rollback(&sp->chunk, 0);
    sp->nrecs = 0;
    while (sp->nrecs < SPOOLER_READ_RECORDS && (sp->nrecs == 0 || sp->chunk.len < max_bytes)) {
        uint64_t lost;
        size_t before = sp->chunk.len;
        int rc = spool_read_append(sp->spool, &sp->read_at, &sp->chunk, &lost);
        sp->carry_lost += lost;
        if (rc == 0)
            break;
        if (rc < 0) {
            spooler_failed(sp, spooler_reading, errno);
            break;
        }
        struct spooler_record *r = &sp->recs[sp->nrecs++];
        r->len = (uint32_t)(sp->chunk.len - before);
        r->origin.end = sp->read_at;
        r->origin.lost = sp->carry_lost;
        r->origin.bytes = SPOOL_RECORD_HEAD + r->len;
        sp->carry_lost = 0;
    }
    if (sp->nrecs > 0) {
        pthread_mutex_lock(&sp->lock);
        sp->want_read = 0;
        sp->records_ready = 1;
        if (sp->io_what == spooler_reading)
            sp->io_errno = 0; /* reading works again */
        pthread_mutex_unlock(&sp->lock);
    }
}

/* When the staged records should be written (under lock). With fsync =
 * interval they wait for the sync to be due, since their acks wait for it
 * anyway, unless they are SPOOLER_WRITE_BYTES (or an eighth of the staging
 * memory) already: fewer, larger writes, and the thread is woken once per
 * sync, not once per event. Otherwise (and when a sync is asked for): now. */
static int64_t spooler_write_at_ms(const struct spooler *sp)
{
    if (sp->cfg->spool_fsync != FSYNC_INTERVAL || sp->want_sync ||
        sp->inbox.len >= spooler_write_bytes(sp))
        return 0;
    return sp->last_sync_ms + sp->cfg->spool_fsync_interval_ms;
}

/* Is there work for the thread? (under lock) When not, *deadline_ms is
 * when there will be (0: only when asked). */
static int spooler_has_work(struct spooler *sp, int64_t *deadline_ms)
{
    int64_t now = clock_monotonic_ms();
    int64_t deadline = 0;
    int waiting_data = sp->held.len > sp->held_written || sp->taken.len > 0;
    int readable = sp->want_read && spool_written_index(sp->spool) > sp->read_at.index;
    int64_t write_at = sp->inbox.len > 0 ? spooler_write_at_ms(sp) : -1;
    if (sp->stop)
        return 1;
    if (write_at > now) {
        deadline = write_at > sp->retry_at_ms ? write_at : sp->retry_at_ms;
        write_at = -1;
    }
    if (write_at >= 0 || sp->want_sync || waiting_data || readable) {
        /* right away, unless the last attempt failed: then after a pause */
        if (now >= sp->retry_at_ms)
            return 1;
        deadline = sp->retry_at_ms;
    }
    if (sp->dirty) {
        int64_t due = sp->last_sync_ms + sp->cfg->spool_fsync_interval_ms;
        if (due < sp->retry_at_ms)
            due = sp->retry_at_ms;
        if (now >= due)
            return 1;
        if (deadline == 0 || due < deadline)
            deadline = due;
    }
    if (sp->want_confirm) {
        int64_t due = sp->last_confirm_ms + SPOOLER_CONFIRM_EVERY_MS;
        if (now >= due)
            return 1;
        if (deadline == 0 || due < deadline)
            deadline = due;
    }
    *deadline_ms = deadline;
    return 0;
}

static void spooler_wait(struct spooler *sp)
{
    int64_t deadline;
    while (!spooler_has_work(sp, &deadline)) {
        sp->stage_wakes = deadline == 0 || deadline > spooler_write_at_ms(sp);
        if (deadline == 0) {
            pthread_cond_wait(&sp->work, &sp->lock);
        } else {
            struct timespec ts = spooler_time_in(CLOCK_MONOTONIC,
                                                 deadline - clock_monotonic_ms());
            pthread_cond_timedwait(&sp->work, &sp->lock, &ts);
        }
        sp->stage_wakes = 0;
    }
}

static void spooler_poke(struct spooler *sp)
{
    char x = 1;
    if (write(sp->notify[1], &x, 1) < 0 && errno != EAGAIN)
        return; /* the loop hears at its next poke */
}

static void *spooler_thread(void *arg)
{
    struct spooler *sp = arg;
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        spooler_wait(sp);
        int stop = sp->stop, sync_now = sp->want_sync || stop;
        int confirm = sp->want_confirm &&
                      (stop || clock_monotonic_ms() - sp->last_confirm_ms >= SPOOLER_CONFIRM_EVERY_MS);
        struct spool_pos pos = sp->confirm_pos;
        uint64_t state[sizeof sp->state / sizeof sp->state[0]];
        memcpy(state, sp->state, sizeof state);
        int no_writes = sp->no_writes;
        if (!no_writes && sp->taken.len == 0) /* swapped, not copied, under lock */
            spooler_move(&sp->inbox, &sp->taken);
        sp->want_sync = 0;
        if (confirm)
            sp->want_confirm = 0;
        int want_read = sp->want_read;
        size_t read_bytes = sp->read_bytes;
        pthread_mutex_unlock(&sp->lock);

        /* when closing, what is not written yet stays out: spooler_close
         * counts it as never acknowledged */
        if (!no_writes)
            spooler_hold_taken(sp);
        if (!no_writes && sp->held.len > sp->held_written)
            spooler_write(sp);
        spooler_sync(sp, sync_now);
        if (confirm) {
            sp->last_confirm_ms = clock_monotonic_ms();
            if (spool_confirm(sp->spool, pos, state, sizeof state) != SPOOL_OK) {
                spooler_failed(sp, "saving the checkpoint in", errno);
                pthread_mutex_lock(&sp->lock);
                sp->want_confirm = 1; /* again, with whatever is newest */
                pthread_mutex_unlock(&sp->lock);
            }
        }
        if (want_read)
            spooler_read(sp, read_bytes);
        int64_t made = spool_checkpoint_made_ms(sp->spool);
        spooler_poke(sp);
        pthread_mutex_lock(&sp->lock);
        sp->pub_bytes = spool_bytes(sp->spool);
        sp->pub_segments = spool_segments(sp->spool);
        sp->pub_made_ms = made;
        sp->rounds++;
        pthread_cond_broadcast(&sp->settled);
        if (stop)
            break;
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

/* ---- the loop ---- */

/* Feed the records the thread read to the batcher. */
static void spooler_take_records(struct spooler *sp)
{
    struct batcher *b = sp->batcher;
    const char *data = sp->chunk.data;
    for (size_t i = 0; i < sp->nrecs; i++) {
        struct spooler_record *r = &sp->recs[i];
        size_t mark;
        struct buf *out;
        r->origin.lost += sp->feed_lost;
        sp->feed_lost = 0;
        b->origin = &r->origin;
        if ((out = batcher_begin(b, &mark)) == NULL || buf_append(out, data, r->len) < 0 ||
            batcher_commit(b, mark) != BATCH_ADDED) {
            /* only out of memory (the batcher takes events of any size here): the
             * event goes with the next one's count of events lost */
            if (out != NULL)
                batcher_abort(b, mark);
            sp->feed_lost += 1 + r->origin.lost;
            log_limited(&sp->feed_log, LOG_ERROR, "spool: out of memory batching an event read "
                        "from %s: it is dropped (counted as spool_corrupt)", sp->cfg->spool_dir);
        }
        data += r->len;
    }
    b->origin = NULL;
    if (sp->stopping)
        batcher_seal(b);
}

/* What becomes of new events while they cannot be written. */
static const char *spooler_then(const struct spooler *sp)
{
    return sp->cfg->buffer_overflow == OVERFLOW_BLOCK
               ? "producers wait (buffer.overflow = block)"
               : "new events are refused as buffer_full (buffer.overflow = drop_newest)";
}

/* The spool is full: say so, once until it has room again. */
static void spooler_log_full(struct spooler *sp)
{
    if (sp->full_logged)
        return;
    log_warn("spool: %s holds spool.max_bytes = %lld of undelivered events; %s until the "
             "backend takes some", sp->cfg->spool_dir, (long long)sp->cfg->spool_max_bytes,
             spooler_then(sp));
    sp->full_logged = 1;
}

static void spooler_log_health(struct spooler *sp, int err, const char *what, int full)
{
    int64_t now = clock_monotonic_ms();
    uint64_t waiting = sp->staged_bytes - sp->released_bytes;
    const char *then = spooler_then(sp);
    if (err != 0 && (!sp->failing || now - sp->loud_ms >= SPOOLER_LOUD_EVERY_MS)) {
        log_error("spool: %s %s failed: %s; %" PRIu64 " bytes of accepted events wait in memory "
                  "and are retried; once memory is full %s until they are written",
                  what, sp->cfg->spool_dir, strerror(err), waiting, then);
        sp->loud_ms = now;
        sp->failing = 1;
    } else if (err == 0 && sp->failing) {
        log_info("spool: writing to %s again", sp->cfg->spool_dir);
        sp->failing = 0;
    }
    if (full)
        spooler_log_full(sp);
    else if (sp->disk.used <= sp->disk.max / 4 * 3) /* room again, as producers see it */
        sp->full_logged = 0;
}

/* What the thread has done since the loop last looked. */
static void spooler_hear(struct spooler *sp)
{
    spooler_hand_over(sp); /* what the inbox had no room for, now that it was taken */
    pthread_mutex_lock(&sp->lock);
    uint64_t consumed = sp->consumed_bytes, durable = sp->durable_index;
    int ready = sp->records_ready, err = sp->io_errno, full = sp->spool_full;
    const char *what = sp->io_what;
    pthread_mutex_unlock(&sp->lock);
    if (consumed > sp->released_bytes) {
        budget_release(sp->memory, consumed - sp->released_bytes);
        budget_release(&sp->staging, consumed - sp->released_bytes);
        sp->released_bytes = consumed;
    }
    spooler_log_health(sp, err, what, full || budget_full(&sp->disk));
    if (durable > sp->durable_seen) {
        sp->durable_seen = durable;
        if (sp->on_durable != NULL)
            sp->on_durable(sp->durable_arg);
    }
    if (ready && sp->batcher != NULL) {
        spooler_take_records(sp);
        pthread_mutex_lock(&sp->lock);
        sp->records_ready = 0;
        pthread_mutex_unlock(&sp->lock);
        sp->feeding = 0;
        spooler_ask(sp);
    }
}

static void spooler_news_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char drain[64];
    while (read(fd, drain, sizeof drain) > 0)
        ;
    spooler_hear(arg);
}

/* How much memory batches read ahead may still take: half of it is theirs
 * (and the bodies'), whatever staging takes of the other half. A read is
 * held to it, so that batches waiting for a backend that is down can never
 * leave staging without room while the spool still has some. */
static size_t spooler_read_room(const struct spooler *sp)
{
    size_t batches = sp->memory->used - (sp->memory->used < sp->staging.used ? sp->memory->used
                                                                             : sp->staging.used);
    return batches < sp->memory->max / 2 ? sp->memory->max / 2 - batches : 0;
}

/* Ask the thread for more of the log while the memory has room. */
static void spooler_ask(struct spooler *sp)
{
    size_t room = spooler_read_room(sp);
    if (sp->feeding || sp->batcher == NULL || room == 0)
        return;
    sp->feeding = 1;
    pthread_mutex_lock(&sp->lock);
    sp->want_read = 1;
    sp->read_bytes = room < SPOOLER_READ_BYTES ? room : SPOOLER_READ_BYTES;
    pthread_cond_signal(&sp->work);
    pthread_mutex_unlock(&sp->lock);
}

static void spooler_feed_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    spooler_ask(arg);
}

/* The memory budget let something go: maybe read on. */
static void spooler_released(void *arg)
{
    struct spooler *sp = arg;
    if (!sp->feeding && spooler_read_room(sp) > 0)
        event_active(sp->feed_ev, 0, 0);
}

/* Note, every SPOOLER_SAMPLE_EVERY_MS, when the next record is staged; when
 * the samples are all taken, every other one goes (coarser, as long). */
static void spooler_sample(struct spooler *sp)
{
    int64_t now = clock_wall_ms();
    if (sp->nsamples > 0 && now - sp->samples[sp->nsamples - 1].ms < SPOOLER_SAMPLE_EVERY_MS)
        return;
    if (sp->nsamples == SPOOLER_SAMPLES) {
        for (unsigned i = 0; i < SPOOLER_SAMPLES / 2; i++)
            sp->samples[i] = sp->samples[2 * i];
        sp->nsamples = SPOOLER_SAMPLES / 2;
    }
    sp->samples[sp->nsamples].index = sp->staged_index;
    sp->samples[sp->nsamples].ms = now;
    sp->nsamples++;
}

/* Samples of delivered records are not needed, but the last one of them:
 * it bounds the age of the first undelivered one. */
static void spooler_forget_samples(struct spooler *sp)
{
    unsigned drop = 0;
    while (drop + 1 < sp->nsamples && sp->samples[drop + 1].index <= sp->confirmed.index)
        drop++;
    if (drop > 0) {
        memmove(sp->samples, sp->samples + drop, (sp->nsamples - drop) * sizeof sp->samples[0]);
        sp->nsamples -= drop;
    }
}

/* Hand the thread the counters as they are now, to keep with the
 * checkpoint: they describe the log up to the staged index. */
static void spooler_save(struct spooler *sp)
{
    const struct account *acc = account_now();
    uint64_t st[sizeof sp->state / sizeof sp->state[0]];
    size_t n = 0;
    st[n++] = SPOOLER_STATE_VERSION;
    st[n++] = SOURCE_COUNT;
    st[n++] = DROP_REASON_COUNT;
    st[n++] = sp->staged_index;
    for (int i = 0; i < SOURCE_COUNT; i++)
        st[n++] = acc->received[i];
    st[n++] = acc->delivered;
    for (int i = 0; i < DROP_REASON_COUNT; i++)
        st[n++] = acc->dropped[i];
    sp->saved_received = account_received_total();
    sp->saved_dropped = account_dropped_total();
    pthread_mutex_lock(&sp->lock);
    memcpy(sp->state, st, sizeof st);
    sp->confirm_pos = sp->confirmed;
    sp->want_confirm = 1;
    pthread_cond_signal(&sp->work);
    pthread_mutex_unlock(&sp->lock);
}

static void spooler_save_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct spooler *sp = arg;
    if (account_received_total() != sp->saved_received ||
        account_dropped_total() != sp->saved_dropped)
        spooler_save(sp);
}

/* The tickets at the head of the log are done: count their events and
 * move the checkpoint past them. */
static void spooler_settle(struct spooler *sp)
{
    struct spooler_ticket *t;
    int moved = 0;
    while (!sp->frozen && (t = TAILQ_FIRST(&sp->tickets)) != NULL && t->done) {
        TAILQ_REMOVE(&sp->tickets, t, entry);
        account_delivered(t->base.delivered);
        for (int r = 0; r < DROP_REASON_COUNT; r++)
            if (t->base.dropped[r] > 0)
                account_dropped((enum drop_reason)r, t->base.dropped[r]);
        if (t->lost > 0) {
            account_dropped(DROP_SPOOL_CORRUPT, t->lost);
            log_error("spool: %" PRIu64 " events were lost to damage in %s (counted as "
                      "spool_corrupt)", t->lost, sp->cfg->spool_dir);
        }
        budget_release(&sp->disk, t->bytes);
        sp->confirmed = t->end;
        free(t);
        moved = 1;
    }
    if (!moved)
        return;
    spooler_forget_samples(sp);
    if (sp->confirmed.index >= sp->staged_index) /* all of it: no estimate left over */
        budget_release(&sp->disk, sp->disk.used);
    spooler_save(sp);
}

static void spooler_ticket_done(struct batch_ticket *bt)
{
    struct spooler_ticket *t = (struct spooler_ticket *)bt;
    t->done = 1;
    spooler_settle(t->sp);
}

void spooler_sealed(struct batch *batch, void *arg)
{
    struct spooler *sp = arg;
    struct spooler_ticket *t = calloc(1, sizeof *t);
    if (t == NULL) {
        /* without a ticket the checkpoint would pass the batch: it stops
         * here for this run, and the batch is read again at the next start */
        log_error("spool: out of memory for a batch of %u events; it stays in the spool, "
                  "which is no longer confirmed until the agent restarts", batch->count);
        sp->frozen = 1;
        batch_release(batch, sp->memory);
        return;
    }
    t->sp = sp;
    t->base.parts = 1;
    t->base.done = spooler_ticket_done;
    t->end = batch->end;
    t->lost = batch->lost;
    t->bytes = batch->spool_bytes;
    batch->ticket = &t->base;
    TAILQ_INSERT_TAIL(&sp->tickets, t, entry);
    sender_submit(batch, sp->sender);
}

/* Hand the records staged in this pass over to the thread: one lock per
 * pass over the producers' input, not one per event. If the inbox cannot
 * grow, they stay in the outbox until the thread has taken the inbox (it
 * pokes the loop after each round). */
static void spooler_hand_over(struct spooler *sp)
{
    if (sp->outbox.len == 0)
        return;
    size_t write_bytes = spooler_write_bytes(sp);
    pthread_mutex_lock(&sp->lock);
    size_t mark = sp->inbox.len;
    if (mark == 0)
        spooler_move(&sp->outbox, &sp->inbox);
    else if (buf_append(&sp->inbox, sp->outbox.data, sp->outbox.len) == 0)
        buf_rollback(&sp->outbox, 0);
    else
        buf_rollback(&sp->inbox, mark);
    if (sp->inbox.len > mark &&
        (sp->cfg->spool_fsync == FSYNC_INTERVAL
             ? (mark == 0 && sp->stage_wakes) || (mark < write_bytes && sp->inbox.len >= write_bytes)
             : mark == 0))
        pthread_cond_signal(&sp->work);
    pthread_mutex_unlock(&sp->lock);
}

static void spooler_hand_over_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    spooler_hand_over(arg);
}

int spooler_stage(struct spooler *sp, const void *json, size_t len, int may_refuse)
{
    size_t size = SPOOLER_STAGE_HEAD + len;
    /* refused unless the spool has room for all of it: a record staged
     * that the spool cannot take waits for the backend, and so do the
     * replies behind its ack, refusals too */
    if (may_refuse && !budget_fits(&sp->disk, SPOOL_RECORD_HEAD + len)) {
        spooler_log_full(sp);
        return -1;
    }
    if (may_refuse && spooler_full(sp))
        return -1;
    uint32_t len32 = (uint32_t)len;
    size_t mark = sp->outbox.len;
    buf_append(&sp->outbox, &len32, sizeof len32);
    buf_append(&sp->outbox, json, len);
    if (sp->outbox.failed) {
        buf_rollback(&sp->outbox, mark);
        return -1;
    }
    if (sp->outbox.len >= spooler_write_bytes(sp))
        spooler_hand_over(sp); /* a long pass: the thread need not wait for its end */
    else if (mark == 0)
        event_active(sp->hand_over_ev, 0, 0); /* once this pass is over */
    budget_charge(sp->memory, size);
    budget_charge(&sp->staging, size);
    budget_charge(&sp->disk, SPOOL_RECORD_HEAD + len);
    sp->staged_bytes += size;
    spooler_sample(sp);
    sp->staged_index++;
    return 0;
}

void spooler_state(const struct spooler *sp, struct spooler_state *out)
{
    struct spooler *m = (struct spooler *)sp; /* the lock */
    pthread_mutex_lock(&m->lock);
    out->bytes = sp->pub_bytes;
    out->segments = sp->pub_segments;
    out->failing = sp->io_errno != 0 && sp->io_what != spooler_reading;
    int64_t made = sp->pub_made_ms;
    pthread_mutex_unlock(&m->lock);
    out->undelivered = sp->staged_index - sp->confirmed.index;
    out->oldest_ms = 0;
    if (out->undelivered == 0)
        return;
    /* the latest sample at or before the oldest undelivered record; and its
     * segment was made before it was written */
    out->oldest_ms = made;
    for (unsigned i = 0; i < sp->nsamples && sp->samples[i].index <= sp->confirmed.index; i++)
        if (sp->samples[i].ms > out->oldest_ms)
            out->oldest_ms = sp->samples[i].ms;
}

struct budget *spooler_disk(struct spooler *sp)
{
    return &sp->disk;
}

struct budget *spooler_staging(struct spooler *sp)
{
    return &sp->staging;
}

int spooler_full(const struct spooler *sp)
{
    return budget_full(&sp->disk) || budget_full(&sp->staging) || budget_full(sp->memory);
}

uint64_t spooler_staged(const struct spooler *sp)
{
    return sp->staged_index;
}

uint64_t spooler_durable(const struct spooler *sp)
{
    return sp->durable_seen;
}

void spooler_on_durable(struct spooler *sp, void (*fn)(void *arg), void *arg)
{
    sp->on_durable = fn;
    sp->durable_arg = arg;
}

int spooler_flush(struct spooler *sp, int timeout_ms)
{
    int64_t deadline = clock_monotonic_ms() + timeout_ms;
    spooler_hand_over(sp);
    pthread_mutex_lock(&sp->lock);
    sp->want_sync = 1;
    pthread_cond_signal(&sp->work);
    while (sp->durable_index < sp->staged_index && clock_monotonic_ms() < deadline) {
        if (sp->outbox.len > 0) { /* the inbox had no room for it: again */
            pthread_mutex_unlock(&sp->lock);
            spooler_hand_over(sp);
            pthread_mutex_lock(&sp->lock);
        }
        spooler_sync_and_wait(sp); /* after a failed round: again, after its pause */
    }
    int done = sp->durable_index >= sp->staged_index;
    pthread_mutex_unlock(&sp->lock);
    spooler_hear(sp);
    return done ? 0 : -1;
}

void spooler_stopping(struct spooler *sp)
{
    sp->stopping = 1;
    if (sp->batcher != NULL)
        batcher_seal(sp->batcher);
}

/* Take up the counters saved with the checkpoint, and what the log says
 * happened after them. */
static void spooler_restore(const struct spool_recovery *rec)
{
    uint64_t backlog = rec->end_index - rec->checkpoint.index;
    const uint64_t *st = (const uint64_t *)rec->state.data;
    size_t words = rec->state.len / sizeof *st;
    struct account saved = {0};
    int have = words >= 4 && st[0] == SPOOLER_STATE_VERSION && st[1] <= 64 && st[2] <= 256 &&
               words == 4 + st[1] + 1 + st[2];
    if (have) {
        const uint64_t *v = st + 4;
        for (uint64_t i = 0; i < st[1]; i++, v++)
            if (i < SOURCE_COUNT)
                saved.received[i] = *v;
        saved.delivered = *v++;
        for (uint64_t i = 0; i < st[2]; i++, v++)
            if (i < DROP_REASON_COUNT)
                saved.dropped[i] = *v;
        account_restore(&saved);
        have = account_received_total() >= saved.delivered + account_dropped_total();
    }
    if (!have) {
        account_reset();
        account_recovered(backlog);
        return;
    }
    uint64_t staged_then = st[3];
    if (rec->end_index >= staged_then)
        account_recovered(rec->end_index - staged_then); /* written after the last save */
    else
        account_dropped(DROP_CRASH, staged_then - rec->end_index);
    uint64_t buffered = account_now()->buffered;
    if (buffered != backlog) { /* a save older than its checkpoint: the log decides */
        log_warn("spool: the saved counters say %" PRIu64 " events were buffered, the spool "
                 "holds %" PRIu64 "; going by the spool", buffered, backlog);
        if (buffered < backlog)
            account_recovered(backlog - buffered);
        else
            account_dropped(DROP_CRASH, buffered - backlog);
    }
}

static void spooler_free(struct spooler *sp)
{
    struct spooler_ticket *t;
    while ((t = TAILQ_FIRST(&sp->tickets)) != NULL) {
        TAILQ_REMOVE(&sp->tickets, t, entry);
        free(t);
    }
    if (sp->news_ev)
        event_free(sp->news_ev);
    if (sp->feed_ev)
        event_free(sp->feed_ev);
    if (sp->hand_over_ev)
        event_free(sp->hand_over_ev);
    if (sp->save_timer)
        event_free(sp->save_timer);
    for (int i = 0; i < 2; i++)
        if (sp->notify[i] >= 0)
            close(sp->notify[i]);
    spool_close(sp->spool);
    buf_free(&sp->inbox);
    buf_free(&sp->outbox);
    buf_free(&sp->taken);
    buf_free(&sp->held);
    buf_free(&sp->chunk);
    free(sp->recs);
    pthread_mutex_destroy(&sp->lock);
    pthread_cond_destroy(&sp->work);
    pthread_cond_destroy(&sp->settled);
    if (sp->memory != NULL && sp->memory->release_arg == sp)
        sp->memory->on_release = NULL;
    free(sp);
}

struct spooler *spooler_open(struct event_base *base, const struct config *cfg,
                             struct budget *memory, char *err, size_t errlen)
{
    struct spooler *sp = calloc(1, sizeof *sp);
    if (sp == NULL) {
        snprintf(err, errlen, "[spool] dir = '%s': out of memory", cfg->spool_dir);
        return NULL;
    }
    sp->notify[0] = sp->notify[1] = -1;
    pthread_mutex_init(&sp->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&sp->work, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&sp->settled, NULL);
    TAILQ_INIT(&sp->tickets);
    sp->base = base;
    sp->cfg = cfg;
    struct spool_recovery rec;
    sp->spool = spool_open(cfg->spool_dir, (uint64_t)cfg->spool_max_bytes,
                           (uint64_t)cfg->spool_segment_bytes, &rec, err, errlen);
    if (sp->spool == NULL) {
        buf_free(&rec.state);
        spooler_free(sp);
        return NULL;
    }
    spooler_restore(&rec);
    buf_free(&rec.state);
    spool_sync_segments(sp->spool, cfg->spool_fsync != FSYNC_NEVER);
    sp->read_at = sp->confirmed = rec.checkpoint;
    sp->pub_bytes = spool_bytes(sp->spool);
    sp->pub_segments = spool_segments(sp->spool);
    sp->pub_made_ms = spool_checkpoint_made_ms(sp->spool);
    sp->staged_index = sp->durable_seen = sp->durable_index = sp->written_index = rec.end_index;
    sp->held_first = sp->held_appended_index = rec.end_index;
    budget_init(&sp->disk, (size_t)cfg->spool_max_bytes);
    budget_charge(&sp->disk, rec.backlog_bytes);
    budget_init(&sp->staging, memory->max / 2);
    sp->memory = memory;
    sp->recs = calloc(SPOOLER_READ_RECORDS, sizeof *sp->recs);
    struct timeval every = {SPOOLER_SAVE_EVERY_MS / 1000, (SPOOLER_SAVE_EVERY_MS % 1000) * 1000};
    if (sp->recs == NULL || pipe2(sp->notify, O_NONBLOCK | O_CLOEXEC) < 0 ||
        (sp->news_ev = event_new(base, sp->notify[0], EV_READ | EV_PERSIST, spooler_news_cb,
                                 sp)) == NULL ||
        event_add(sp->news_ev, NULL) < 0 ||
        (sp->feed_ev = event_new(base, -1, 0, spooler_feed_cb, sp)) == NULL ||
        (sp->hand_over_ev = event_new(base, -1, 0, spooler_hand_over_cb, sp)) == NULL ||
        (sp->save_timer = event_new(base, -1, EV_PERSIST, spooler_save_cb, sp)) == NULL ||
        event_add(sp->save_timer, &every) < 0 ||
        pthread_create(&sp->thread, NULL, spooler_thread, sp) != 0) {
        snprintf(err, errlen, "[spool] dir = '%s': cannot start its thread: %s", cfg->spool_dir,
                 strerror(errno));
        spooler_free(sp);
        return NULL;
    }
    sp->thread_started = 1;
    memory->on_release = spooler_released;
    memory->release_arg = sp;
    uint64_t backlog = rec.end_index - rec.checkpoint.index;
    if (backlog > 0 || rec.torn_bytes > 0 || rec.checkpoint_lost)
        log_info("spool: %s holds %" PRIu64 " undelivered events (%" PRIu64 " bytes) from an "
                 "earlier run%s%s", cfg->spool_dir, backlog, rec.backlog_bytes,
                 rec.torn_bytes > 0 ? "; a write cut short by a crash was removed from its end"
                                    : "",
                 rec.checkpoint_lost ? "; its checkpoint was unreadable: everything in it is "
                                       "sent again" : "");
    if (rec.torn_bytes > 0)
        log_warn("spool: %" PRIu64 " bytes torn at the end of the log were cut (a write the "
                 "agent did not finish; never acknowledged)", rec.torn_bytes);
    return sp;
}

void spooler_feed(struct spooler *sp, struct batcher *batcher, struct sender *sender)
{
    sp->batcher = batcher;
    sp->sender = sender;
    spooler_ask(sp);
}

void spooler_close(struct spooler *sp)
{
    if (sp == NULL)
        return;
    sp->batcher = NULL; /* gone: nothing more is fed */
    if (sp->thread_started) {
        spooler_flush(sp, SPOOLER_CLOSE_FLUSH_MS);
        /* no more writes from here: wait for the round under way and one
         * more, so that what counts as written below stays true */
        int64_t deadline = clock_monotonic_ms() + SPOOLER_CLOSE_FLUSH_MS;
        pthread_mutex_lock(&sp->lock);
        sp->no_writes = 1;
        sp->want_sync = 1;
        pthread_cond_signal(&sp->work);
        uint64_t until = sp->rounds + 2;
        while (sp->rounds < until && clock_monotonic_ms() < deadline) {
            spooler_sync_and_wait(sp);
        }
        uint64_t written = sp->written_index;
        pthread_mutex_unlock(&sp->lock);
        if (sp->staged_index > written) { /* never acknowledged: the producers resend */
            log_error("spool: %" PRIu64 " events could not be written to %s before exit",
                      sp->staged_index - written, sp->cfg->spool_dir);
            account_dropped(DROP_SHUTDOWN, sp->staged_index - written);
            sp->staged_index = written;
        }
        spooler_save(sp);
        pthread_mutex_lock(&sp->lock);
        sp->stop = 1;
        pthread_cond_signal(&sp->work);
        pthread_mutex_unlock(&sp->lock);
        pthread_join(sp->thread, NULL);
        uint64_t left = account_now()->buffered;
        if (left > 0)
            log_info("spool: %" PRIu64 " undelivered events stay in %s for the next start", left,
                     sp->cfg->spool_dir);
    }
    spooler_free(sp);
}
