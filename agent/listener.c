/*
 * listener: socket set-up, accept, and per-connection reading (see
 * listener.h).
 *
 * A connection is read while its unsent replies stay under
 * CONN_MAX_UNSENT_REPLIES. Each wakeup handles at most CONN_READS_PER_WAKEUP
 * reads and CONN_WORK_PER_WAKEUP messages and events (a few kilobytes of
 * gzip can carry a million events), then lets the others have a turn: what
 * is left in the buffer is taken up by more_ev, a timer that fires after
 * the next poll. Once there is no more input (end of stream, or bad bytes)
 * the connection only writes the replies it owes, then closes.
 */
#define _GNU_SOURCE /* struct ucred */
#include "listener.h"

#include "buf.h"
#include "stream.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <event2/listener.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONN_INITIAL_BUFFER (8 * 1024)
#define CONN_READ_SIZE (32 * 1024)
#define CONN_READS_PER_WAKEUP 16 /* then let other connections have a turn */
#define CONN_READS_TO_DRAIN 256  /* at shutdown: a socket buffer's worth, not forever */
#define CONN_WORK_PER_WAKEUP 16384 /* messages + events; kilobytes of gzip can hold millions */
#define CONN_WORK_TO_DRAIN (16 * CONN_WORK_PER_WAKEUP) /* at shutdown */
#define CONN_MAX_UNSENT_REPLIES (64 * 1024) /* then stop reading until the producer reads */
#define LISTENER_PAUSE_MS 1000   /* after accept() fails, e.g. out of descriptors */

struct conn {
    TAILQ_ENTRY(conn) entry;
    struct listener *listener;
    int fd;
    struct event *read_ev, *write_ev, *more_ev;
    struct stream in;
    struct buf replies; /* acknowledgements not yet written */
    size_t replies_sent; /* of replies.len */
    int reading;         /* read_ev is added */
    int backlog;         /* complete messages may still wait in `in` */
    int closing;         /* no more input: close once the replies are written */
    char name[64];       /* "connection 7 (pid 1234)" */
};

struct listener {
    struct event_base *base;
    const struct config *cfg;
    struct pipeline *pipeline;
    struct evconnlistener *evl;
    struct event *resume_ev;
    char *path;
    TAILQ_HEAD(, conn) conns;
    unsigned nconns;
    uint64_t next_id;
    struct log_limit conn_log;
};

static void conn_close(struct conn *c)
{
    struct listener *l = c->listener;
    TAILQ_REMOVE(&l->conns, c, entry);
    l->nconns--;
    event_free(c->read_ev);
    event_free(c->write_ev);
    event_free(c->more_ev);
    stream_destroy(&c->in);
    buf_free(&c->replies);
    close(c->fd);
    log_debug("%s: closed", c->name);
    free(c);
}

static void conn_set_reading(struct conn *c, int on)
{
    if (on == c->reading)
        return;
    if (on ? event_add(c->read_ev, NULL) : event_del(c->read_ev)) /* cannot fail for a valid fd */
        return;
    c->reading = on;
}

/* Write what replies the socket takes now. Returns -1 if it failed for good
 * (errno says why). */
static int conn_send_replies(struct conn *c)
{
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
    }
    /* Move what is left to the front once most of the buffer is sent, so a
     * producer that always lags a little cannot make it grow without end. */
    if (c->replies_sent > 0 && c->replies_sent >= c->replies.len / 2) {
        size_t unsent = c->replies.len - c->replies_sent;
        memmove(c->replies.data, c->replies.data + c->replies_sent, unsent);
        buf_truncate(&c->replies, unsent);
        c->replies_sent = 0;
    }
    return 0;
}

/* Write what replies the socket takes now and wait for it to drain
 * otherwise; read on, or close once a closing connection owes nothing.
 * Returns -1 if the connection was closed. */
static int conn_flush_replies(struct conn *c)
{
    static const struct timeval now = {0, 0};
    if (conn_send_replies(c) < 0) {
        if (c->closing) /* the producer left without reading them */
            log_debug("%s: closed with acknowledgements unsent: %s", c->name, strerror(errno));
        else
            log_limited(&c->listener->conn_log, LOG_WARN,
                        "%s: closing: cannot send acknowledgements: %s", c->name,
                        strerror(errno));
        conn_close(c);
        return -1;
    }
    size_t unsent = c->replies.len - c->replies_sent;
    if (c->closing && unsent == 0) {
        conn_close(c);
        return -1;
    }
    if (unsent > 0)
        event_add(c->write_ev, NULL);
    conn_set_reading(c, !c->closing && unsent < CONN_MAX_UNSENT_REPLIES);
    if (c->reading && c->backlog)
        evtimer_add(c->more_ev, &now);
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

/* Stop reading a connection for bad input. The acknowledgements of the
 * messages before the fault are still written, then {"error": reason,
 * "detail": why}, then it is closed. */
static int conn_reject(struct conn *c, const char *reason, const char *why)
{
    metrics.connections_closed_bad_input++;
    log_limited(&c->listener->conn_log, LOG_WARN, "%s: closing: %s", c->name, why);
    pipeline_write_error(&c->replies, reason, why); /* out of memory: closed without it */
    return conn_finish(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_flush_replies(arg);
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
    c->backlog = 0;
    for (;;) {
        if (*work >= max_work) {
            c->backlog = 1;
            return conn_flush_replies(c);
        }
        switch (stream_next(&c->in, &obj)) {
        case STREAM_OBJECT:
            pipeline_handle(c->listener->pipeline, &obj, c->name, &result);
            *work += 1 + (size_t)result.accepted + result.rejected + result.deferred;
            if (pipeline_write_ack(&result, &c->replies) < 0)
                return conn_reject(c, "no_memory", "out of memory for its acknowledgements");
            continue;
        case STREAM_NEED_MORE:
            return c->replies.len > had_replies ? conn_flush_replies(c) : 0;
        case STREAM_INVALID:
            return conn_reject(c, "not_msgpack", "bytes that are not msgpack");
        case STREAM_TOO_DEEP:
            snprintf(why, sizeof why, "msgpack nested deeper than %d levels", FRAME_MAX_DEPTH);
            return conn_reject(c, "too_deep", why);
        case STREAM_TOO_LARGE:
            snprintf(why, sizeof why, "message larger than agent.max_message_bytes = %lld",
                     (long long)c->listener->cfg->max_message_bytes);
            return conn_reject(c, "too_large", why);
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
    for (int i = 0; i < max_reads && c->reading && !c->backlog; i++) {
        size_t capacity;
        char *space = stream_reserve(&c->in, CONN_READ_SIZE, &capacity);
        if (space == NULL)
            return conn_reject(c, "no_memory", "out of memory for its buffer");
        ssize_t n = read(c->fd, space, capacity);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            if (n < 0)
                log_debug("%s: read failed: %s", c->name, strerror(errno));
            if (stream_pending(&c->in) > 0)
                log_limited(&c->listener->conn_log, LOG_WARN,
                            "%s: closed in the middle of a message (%zu bytes discarded)", c->name,
                            stream_pending(&c->in));
            return conn_finish(c);
        }
        stream_consumed(&c->in, (size_t)n);
        metrics.bytes_received += (uint64_t)n;
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

static void listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
                               struct sockaddr *addr, int addrlen, void *arg)
{
    (void)evl;
    (void)addr;
    (void)addrlen;
    struct listener *l = arg;
    if (l->nconns >= (unsigned)l->cfg->max_connections) {
        char why[96];
        struct buf reply = BUF_INIT;
        metrics.connections_refused++;
        snprintf(why, sizeof why, "agent.max_connections = %lld are open",
                 (long long)l->cfg->max_connections);
        log_limited(&l->conn_log, LOG_WARN, "refused a connection: %s", why);
        /* say why, if the socket takes it now: the producer retries later */
        if (pipeline_write_error(&reply, "max_connections", why) == 0)
            send(fd, reply.data, reply.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        buf_free(&reply);
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL ||
        stream_init(&c->in, CONN_INITIAL_BUFFER, (size_t)l->cfg->max_message_bytes) < 0) {
        free(c);
        close(fd);
        return;
    }
    c->listener = l;
    c->fd = fd;
    struct ucred cred;
    socklen_t len = sizeof cred;
    uint64_t id = ++l->next_id;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        snprintf(c->name, sizeof c->name, "connection %llu (pid %d)", (unsigned long long)id,
                 (int)cred.pid);
    else
        snprintf(c->name, sizeof c->name, "connection %llu", (unsigned long long)id);
    c->read_ev = event_new(l->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->write_ev = event_new(l->base, fd, EV_WRITE, conn_write_cb, c);
    c->more_ev = evtimer_new(l->base, conn_more_cb, c);
    if (c->read_ev == NULL || c->write_ev == NULL || c->more_ev == NULL ||
        event_add(c->read_ev, NULL) < 0) {
        if (c->read_ev)
            event_free(c->read_ev);
        if (c->write_ev)
            event_free(c->write_ev);
        if (c->more_ev)
            event_free(c->more_ev);
        stream_destroy(&c->in);
        free(c);
        close(fd);
        return;
    }
    c->reading = 1;
    TAILQ_INSERT_TAIL(&l->conns, c, entry);
    l->nconns++;
    metrics.connections_accepted++;
    log_debug("%s: accepted", c->name);
}

static void listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    if (l->evl)
        evconnlistener_enable(l->evl);
}

static void listener_error_cb(struct evconnlistener *evl, void *arg)
{
    struct listener *l = arg;
    log_limited(&l->conn_log, LOG_ERROR, "accept failed: %s; pausing for %d ms",
                strerror(errno), LISTENER_PAUSE_MS);
    evconnlistener_disable(evl);
    struct timeval tv = {LISTENER_PAUSE_MS / 1000, 0};
    evtimer_add(l->resume_ev, &tv);
}

static int listener_mkdirs(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                snprintf(err, errlen, "[agent] socket = '%s': cannot create directory %s: %s",
                         path, dir, strerror(errno));
                return -1;
            }
            *p = saved;
            if (saved == '\0')
                return 0;
        }
    }
}

/* Remove a socket file left by an agent that is gone. Fails if the path is
 * not a socket or an agent still answers on it. */
static int listener_clear_stale(const char *path, const struct sockaddr_un *addr, char *err,
                                size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "[agent] socket = '%s': the path exists and is not a socket; "
                 "refusing to remove it", path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return -1;
    int rc = connect(probe, (const struct sockaddr *)addr, sizeof *addr);
    int saved = errno;
    close(probe);
    if (rc == 0) {
        snprintf(err, errlen, "[agent] socket = '%s': another agent is already listening there",
                 path);
        return -1;
    }
    if (saved != ECONNREFUSED) {
        snprintf(err, errlen, "[agent] socket = '%s': cannot tell whether it is in use: %s", path,
                 strerror(saved));
        return -1;
    }
    log_info("removing stale socket %s", path);
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int listener_group(const char *name, gid_t *gid)
{
    char *end;
    long n = strtol(name, &end, 10);
    if (*name != '\0' && *end == '\0' && n >= 0) {
        *gid = (gid_t)n;
        return 0;
    }
    struct group *g = getgrnam(name);
    if (g == NULL)
        return -1;
    *gid = g->gr_gid;
    return 0;
}

static int listener_bind(const struct config *cfg, char *err, size_t errlen)
{
    const char *path = cfg->socket;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        snprintf(err, errlen, "[agent] socket = '%s' is not allowed (allowed: a path of at most "
                 "%zu bytes)", path, sizeof addr.sun_path - 1);
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path));
    gid_t gid = (gid_t)-1;
    if (cfg->socket_group[0] != '\0' && listener_group(cfg->socket_group, &gid) < 0) {
        snprintf(err, errlen, "[agent] socket_group = '%s': no such group", cfg->socket_group);
        return -1;
    }
    if (listener_mkdirs(path, err, errlen) < 0)
        return -1;
    if (listener_clear_stale(path, &addr, err, errlen) < 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "[agent] socket = '%s': %s", path, strerror(errno));
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(): %s", strerror(errno));
        return -1;
    }
    /* Created with no permissions at all, then given its group, then its
     * mode: never more open than configured, at any moment. */
    mode_t old = umask(0777);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    int saved = errno;
    umask(old);
    if (rc < 0 || (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) ||
        chmod(path, (mode_t)cfg->socket_mode) < 0 || listen(fd, SOMAXCONN) < 0) {
        if (rc == 0)
            saved = errno;
        snprintf(err, errlen, "[agent] socket = '%s': %s", path, strerror(saved));
        if (rc == 0)
            unlink(path);
        close(fd);
        return -1;
    }
    return fd;
}

struct listener *listener_open(struct event_base *base, const struct config *cfg,
                               struct pipeline *pipeline, char *err, size_t errlen)
{
    err[0] = '\0';
    int fd = listener_bind(cfg, err, errlen);
    if (fd < 0)
        return NULL;
    struct listener *l = calloc(1, sizeof *l);
    if (l == NULL || (l->path = strdup(cfg->socket)) == NULL) {
        free(l);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->base = base;
    l->cfg = cfg;
    l->pipeline = pipeline;
    TAILQ_INIT(&l->conns);
    l->resume_ev = evtimer_new(base, listener_resume_cb, l);
    l->evl = evconnlistener_new(base, listener_accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (l->evl == NULL || l->resume_ev == NULL) {
        if (l->evl == NULL)
            close(fd);
        listener_free(l);
        snprintf(err, errlen, "cannot listen on %s", cfg->socket);
        return NULL;
    }
    evconnlistener_set_error_cb(l->evl, listener_error_cb);
    return l;
}

void listener_shutdown(struct listener *l)
{
    if (l->evl != NULL) {
        evconnlistener_free(l->evl);
        l->evl = NULL;
        unlink(l->path);
    }
    struct conn *c;
    while ((c = TAILQ_FIRST(&l->conns)) != NULL) {
        if (!c->closing)
            c->reading = 1; /* drain even a connection paused for unread replies */
        if (conn_read(c, CONN_READS_TO_DRAIN, CONN_WORK_TO_DRAIN) == 0 &&
            conn_flush_replies(c) == 0)
            conn_close(c); /* replies the socket could not take are lost: the producer resends */
    }
}

void listener_free(struct listener *l)
{
    if (l == NULL)
        return;
    listener_shutdown(l);
    if (l->resume_ev)
        event_free(l->resume_ev);
    free(l->path);
    free(l);
}
