/*
 * listener: socket set-up, accept, and per-connection reading (see
 * listener.h).
 */
#define _GNU_SOURCE /* struct ucred */
#include "listener.h"

#include "frame.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <event2/listener.h>
#include <grp.h>
#include <limits.h>
#include <msgpack.h>
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
#define LISTENER_PAUSE_MS 1000   /* after accept() fails, e.g. out of descriptors */

struct conn {
    TAILQ_ENTRY(conn) entry;
    struct listener *listener;
    int fd;
    struct event *read_ev;
    msgpack_unpacker unpacker;
    struct frame_scanner scanner;
    char name[64]; /* "connection 7 (pid 1234)" */
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
    msgpack_unpacker_destroy(&c->unpacker);
    close(c->fd);
    log_debug("%s: closed", c->name);
    free(c);
}

static void conn_reject(struct conn *c, const char *why)
{
    metrics.connections_closed_bad_input++;
    log_limited(&c->listener->conn_log, LOG_WARN, "%s: closing: %s", c->name, why);
    conn_close(c);
}

/* Decode and hand on every complete object in the buffer. Returns 0, or -1
 * if the connection was closed for bad input. */
static int conn_process(struct conn *c)
{
    msgpack_unpacker *u = &c->unpacker;
    size_t limit = (size_t)c->listener->cfg->max_message_bytes;
    char why[128];
    for (;;) {
        const unsigned char *start = (const unsigned char *)u->buffer + u->off;
        size_t avail = u->used - u->off, object_len;
        switch (frame_scan(&c->scanner, start, avail, &object_len)) {
        case FRAME_INCOMPLETE:
            if (avail > limit)
                goto too_large;
            if (u->z != NULL) /* msgpack-c 4 makes the zone on first use */
                msgpack_unpacker_reset_zone(u);
            return 0;
        case FRAME_INVALID:
            conn_reject(c, "bytes that are not msgpack");
            return -1;
        case FRAME_TOO_DEEP:
            snprintf(why, sizeof why, "msgpack nested deeper than %d levels", FRAME_MAX_DEPTH);
            conn_reject(c, why);
            return -1;
        case FRAME_COMPLETE:
            if (object_len > limit)
                goto too_large;
            if (msgpack_unpacker_execute(u) != 1) {
                conn_reject(c, "msgpack the decoder refused");
                return -1;
            }
            msgpack_object obj = msgpack_unpacker_data(u);
            pipeline_handle(c->listener->pipeline, &obj, c->name);
            msgpack_unpacker_reset(u);
            break;
        }
    }
too_large:
    snprintf(why, sizeof why, "message larger than agent.max_message_bytes = %zu", limit);
    conn_reject(c, why);
    return -1;
}

/* Read what is available, up to max_reads reads. Returns -1 if the
 * connection was closed. */
static int conn_read(struct conn *c, int max_reads)
{
    msgpack_unpacker *u = &c->unpacker;
    for (int i = 0; i < max_reads; i++) {
        if (!msgpack_unpacker_reserve_buffer(u, CONN_READ_SIZE)) {
            conn_reject(c, "out of memory for its buffer");
            return -1;
        }
        ssize_t n = read(c->fd, msgpack_unpacker_buffer(u), msgpack_unpacker_buffer_capacity(u));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            if (n < 0)
                log_debug("%s: read failed: %s", c->name, strerror(errno));
            if (u->used > u->off)
                log_limited(&c->listener->conn_log, LOG_WARN,
                            "%s: closed in the middle of a message (%zu bytes discarded)", c->name,
                            u->used - u->off);
            conn_close(c);
            return -1;
        }
        msgpack_unpacker_buffer_consumed(u, (size_t)n);
        metrics.bytes_received += (uint64_t)n;
        if (conn_process(c) < 0)
            return -1;
    }
    return 0;
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_read(arg, CONN_READS_PER_WAKEUP);
}

static void listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
                               struct sockaddr *addr, int addrlen, void *arg)
{
    (void)evl;
    (void)addr;
    (void)addrlen;
    struct listener *l = arg;
    if (l->nconns >= (unsigned)l->cfg->max_connections) {
        metrics.connections_refused++;
        log_limited(&l->conn_log, LOG_WARN,
                    "refused a connection: agent.max_connections = %lld are open",
                    (long long)l->cfg->max_connections);
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL || !msgpack_unpacker_init(&c->unpacker, CONN_INITIAL_BUFFER)) {
        free(c);
        close(fd);
        return;
    }
    c->listener = l;
    c->fd = fd;
    frame_reset(&c->scanner);
    struct ucred cred;
    socklen_t len = sizeof cred;
    uint64_t id = ++l->next_id;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
        snprintf(c->name, sizeof c->name, "connection %llu (pid %d)", (unsigned long long)id,
                 (int)cred.pid);
    else
        snprintf(c->name, sizeof c->name, "connection %llu", (unsigned long long)id);
    c->read_ev = event_new(l->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    if (c->read_ev == NULL || event_add(c->read_ev, NULL) < 0) {
        if (c->read_ev)
            event_free(c->read_ev);
        msgpack_unpacker_destroy(&c->unpacker);
        free(c);
        close(fd);
        return;
    }
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
        if (conn_read(c, CONN_READS_TO_DRAIN) == 0)
            conn_close(c);
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
