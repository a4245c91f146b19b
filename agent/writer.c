/*
 * writer: a thread per descriptor for blocking writes (see writer.h).
 *
 * The queue and the list of finished chunks are guarded by `lock`. The
 * thread takes the oldest chunk, writes it without the lock, then moves it
 * to `finished` and pokes the loop through a pipe of the writer's own (that
 * one may be non-blocking: nobody else shares it). The loop's callback
 * takes the finished chunks and calls their completions, in order.
 */
#define _GNU_SOURCE /* pipe2 */
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

struct writer_chunk {
    STAILQ_ENTRY(writer_chunk) entry;
    struct buf data;
    writer_done_fn done;
    void *arg;
    int err;
};

STAILQ_HEAD(writer_chunks, writer_chunk);

struct writer {
    int fd;
    pthread_mutex_t lock;
    pthread_cond_t work;    /* a chunk was queued, or stop */
    pthread_cond_t drained; /* the queue became empty */
    struct writer_chunks queue, finished;
    size_t queued_bytes, max_queued;
    struct writer_chunk *current; /* the chunk the thread is writing, out of the queue */
    int stop;
    pthread_t thread;
    int notify[2]; /* thread -> loop, when base is set */
    struct event *notify_ev;
    void (*drained_hook)(void *arg);
    void *drained_arg;
};

/* Write the whole chunk. Returns 0 or an errno. */
static int writer_write_all(int fd, const struct buf *data)
{
    size_t off = 0;
    while (off < data->len) {
        ssize_t n = write(fd, data->data + off, data->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        off += (size_t)n;
    }
    return 0;
}

/* The thread can be cancelled only inside write(), where it holds no lock:
 * a reader that never reads must not keep the agent from exiting. */
static void *writer_thread(void *arg)
{
    struct writer *w = arg;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->stop && STAILQ_EMPTY(&w->queue))
            pthread_cond_wait(&w->work, &w->lock);
        if (w->stop)
            break;
        struct writer_chunk *c = STAILQ_FIRST(&w->queue);
        STAILQ_REMOVE_HEAD(&w->queue, entry);
        w->current = c;
        pthread_mutex_unlock(&w->lock);
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        int err = writer_write_all(w->fd, &c->data);
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        pthread_mutex_lock(&w->lock);
        c->err = err;
        w->current = NULL;
        w->queued_bytes -= c->data.len;
        if (w->notify_ev != NULL) {
            int was_empty = STAILQ_EMPTY(&w->finished);
            STAILQ_INSERT_TAIL(&w->finished, c, entry);
            if (was_empty && write(w->notify[1], "", 1) < 0) {
                /* the pipe holds a byte already: the loop will look */
            }
        } else {
            buf_free(&c->data);
            free(c);
        }
        if (STAILQ_EMPTY(&w->queue)) {
            pthread_cond_broadcast(&w->drained);
            if (w->drained_hook != NULL) {
                void (*hook)(void *) = w->drained_hook;
                pthread_mutex_unlock(&w->lock);
                hook(w->drained_arg);
                pthread_mutex_lock(&w->lock);
            }
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* On the loop: call the completions of the chunks written. */
static void writer_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct writer *w = arg;
    char drain[64];
    while (read(fd, drain, sizeof drain) > 0)
        ;
    struct writer_chunks done = STAILQ_HEAD_INITIALIZER(done);
    pthread_mutex_lock(&w->lock);
    STAILQ_CONCAT(&done, &w->finished);
    pthread_mutex_unlock(&w->lock);
    struct writer_chunk *c;
    while ((c = STAILQ_FIRST(&done)) != NULL) {
        STAILQ_REMOVE_HEAD(&done, entry);
        if (c->done != NULL)
            c->done(c->arg, c->err);
        buf_free(&c->data);
        free(c);
    }
}

/* Free what writer_new made (the thread is not running). */
static void writer_release(struct writer *w)
{
    if (w->notify_ev != NULL)
        event_free(w->notify_ev);
    for (int i = 0; i < 2; i++)
        if (w->notify[i] >= 0)
            close(w->notify[i]);
    pthread_cond_destroy(&w->drained);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

struct writer *writer_new(int fd, struct event_base *base, size_t max_queued)
{
    struct writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->fd = fd;
    w->max_queued = max_queued;
    w->notify[0] = w->notify[1] = -1;
    STAILQ_INIT(&w->queue);
    STAILQ_INIT(&w->finished);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->drained, NULL);
    if (base != NULL) {
        if (pipe2(w->notify, O_NONBLOCK | O_CLOEXEC) < 0 ||
            (w->notify_ev = event_new(base, w->notify[0], EV_READ | EV_PERSIST, writer_notify_cb,
                                      w)) == NULL ||
            event_add(w->notify_ev, NULL) < 0)
            goto fail;
    }
    /* the thread takes no signals: they are the event loop's */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, writer_thread, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        return w;
fail:
    writer_release(w);
    return NULL;
}

int writer_submit(struct writer *w, struct buf *data, writer_done_fn done, void *arg)
{
    struct writer_chunk *c = malloc(sizeof *c);
    if (c == NULL)
        return -1;
    pthread_mutex_lock(&w->lock);
    if (w->max_queued > 0 && w->queued_bytes + data->len > w->max_queued) {
        pthread_mutex_unlock(&w->lock);
        free(c);
        return -1;
    }
    c->data = *data;
    c->done = done;
    c->arg = arg;
    c->err = 0;
    *data = (struct buf)BUF_INIT;
    w->queued_bytes += c->data.len;
    STAILQ_INSERT_TAIL(&w->queue, c, entry);
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

int writer_submit_copy(struct writer *w, const void *data, size_t len)
{
    struct buf copy = BUF_INIT;
    if (buf_append(&copy, data, len) < 0)
        return -1;
    if (writer_submit(w, &copy, NULL, NULL) < 0) {
        buf_free(&copy);
        return -1;
    }
    return 0;
}

void writer_on_drained(struct writer *w, void (*hook)(void *arg), void *arg)
{
    pthread_mutex_lock(&w->lock);
    w->drained_hook = hook;
    w->drained_arg = arg;
    pthread_mutex_unlock(&w->lock);
}

int writer_flush(struct writer *w, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    while (rc == 0 && (!STAILQ_EMPTY(&w->queue) || w->current != NULL))
        rc = pthread_cond_timedwait(&w->drained, &w->lock, &deadline);
    pthread_mutex_unlock(&w->lock);
    return rc == 0 ? 0 : -1;
}

static void writer_free_chunks(struct writer_chunks *list)
{
    struct writer_chunk *c;
    while ((c = STAILQ_FIRST(list)) != NULL) {
        STAILQ_REMOVE_HEAD(list, entry);
        buf_free(&c->data);
        free(c);
    }
}

void writer_free(struct writer *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->lock);
    pthread_cancel(w->thread); /* it may be blocked in write() for good */
    pthread_join(w->thread, NULL);
    if (w->current != NULL) {
        buf_free(&w->current->data);
        free(w->current);
    }
    writer_free_chunks(&w->queue);
    writer_free_chunks(&w->finished);
    writer_release(w);
}
