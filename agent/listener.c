/*
 * listener: accepting producers (see listener.h).
 */
#include "listener.h"

#include "peer.h"

#include "conn.h"
#include "metrics.h"
#include "sockfile.h"
#include "wire.h"

#include <errno.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTENER_PAUSE_MS 1000 /* after accept() fails, e.g. out of descriptors */

struct listener {
    struct event_base *base;
    const struct config *cfg;
    struct conn_set conns;
    struct evconnlistener *evl;
    struct event *resume_ev;
    char *path;
    struct log_limit log;
};

/* Say why, if the socket takes it now, and close: over
 * agent.max_connections (the producer tries again later), or a peer
 * allowed_uids and allowed_gids leave out. */
static void listener_refuse(struct listener *l, int fd, const char *reason, const char *why)
{
    struct buf reply = BUF_INIT;
    log_limited(&l->log, LOG_WARN, "refused a connection: %s", why);
    if (conn_reply_error(&reply, reason, why) == 0 &&
        send(fd, reply.data, reply.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("could not tell a refused connection why: %s", strerror(errno));
    buf_free(&reply);
    close(fd);
}

static void listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
                               struct sockaddr *addr, int addrlen, void *arg)
{
    (void)evl;
    (void)addr;
    (void)addrlen;
    struct listener *l = arg;
    char why[160];
    if (l->conns.count >= (unsigned)l->cfg->max_connections) {
        metrics_add(METRIC_CONNECTIONS_REFUSED, 1);
        snprintf(why, sizeof why, "agent.max_connections = %lld are open",
                 (long long)l->cfg->max_connections);
        listener_refuse(l, fd, WIRE_ERROR_MAX_CONNECTIONS, why);
        return;
    }
    struct peer peer;
    peer_identify(fd, &peer);
    if (!peer_allowed(&peer, l->cfg->allowed_uids, l->cfg->allowed_gids)) {
        metrics_add(METRIC_CONNECTIONS_DENIED, 1);
        snprintf(why, sizeof why, "uid %lu, gid %lu (pid %d) is not in agent.allowed_uids or "
                 "agent.allowed_gids", (unsigned long)peer.uid, (unsigned long)peer.gid,
                 (int)peer.pid);
        listener_refuse(l, fd, WIRE_ERROR_NOT_ALLOWED, why);
        return;
    }
    if (conn_open(&l->conns, fd, &peer) < 0)
        log_limited(&l->log, LOG_ERROR, "out of memory for a new connection; closed it");
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
    log_limited(&l->log, LOG_ERROR, "accept failed: %s; pausing for %d ms", strerror(errno),
                LISTENER_PAUSE_MS);
    evconnlistener_disable(evl);
    struct timeval tv = {LISTENER_PAUSE_MS / 1000, 0};
    if (evtimer_add(l->resume_ev, &tv) < 0) {
        log_error("cannot arm the timer to accept again; accepting at once");
        evconnlistener_enable(evl);
    }
}

struct listener *listener_open(struct event_base *base, const struct config *cfg,
                               struct pipeline *pipeline, char *err, size_t errlen)
{
    err[0] = '\0';
    int fd = sockfile_open(cfg, err, errlen);
    if (fd < 0)
        return NULL;
    struct listener *l = calloc(1, sizeof *l);
    if (l == NULL || (l->path = strdup(cfg->socket)) == NULL) {
        free(l);
        close(fd);
        unlink(cfg->socket);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->base = base;
    l->cfg = cfg;
    int conns_ok = conn_set_init(&l->conns, base, cfg, pipeline) == 0;
    l->resume_ev = evtimer_new(base, listener_resume_cb, l);
    l->evl = evconnlistener_new(base, listener_accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (l->evl == NULL || l->resume_ev == NULL || !conns_ok) {
        if (l->evl == NULL)
            close(fd);
        unlink(cfg->socket);
        listener_free(l);
        snprintf(err, errlen, "[agent] socket = '%s': cannot wait for connections on it",
                 cfg->socket);
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
    conn_set_drain(&l->conns);
}

unsigned listener_connections(const struct listener *l)
{
    return l->conns.count;
}

int listener_accepting(const struct listener *l)
{
    return l->evl != NULL;
}

void listener_free(struct listener *l)
{
    if (l == NULL)
        return;
    listener_shutdown(l);
    conn_set_destroy(&l->conns);
    if (l->resume_ev)
        event_free(l->resume_ev);
    free(l->path);
    free(l);
}
