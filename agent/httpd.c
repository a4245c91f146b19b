/*
 * httpd: a bounded evhttp listener (see httpd.h).
 *
 * libevent 2.1 has no limit on evhttp's connections, and no hook when one
 * closes. So each connection's bufferevent is made here (evhttp_set_bevcb)
 * and kept with a reference of its own: once evhttp lets a connection go
 * (shutting its socket down for writing) it clears the bufferevent's
 * callbacks; a sweep a few times a second notices, drops the reference,
 * which closes the socket, and counts the connection closed. While max_connections are open the listener pauses. The sweep
 * also closes a connection that has lived past a deadline (three request
 * timeouts), so a client that trickles a byte now and then
 * cannot hold a slot; and each connection reads at most what one request
 * may hold before evhttp takes it, so a client that never reads its
 * answers cannot make the agent buffer without end. When accept() fails
 * (out of file descriptors), accepting pauses until the next sweep.
 */
#include "httpd.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTPD_SWEEP_MS 200
#define HTTPD_BACKLOG 64
#define HTTPD_READ_SLACK (64 * 1024) /* read past a request's bound, for the next one's start */

/* An open connection: its bufferevent (with a reference of ours) and when
 * it was accepted. */
struct httpd_conn {
    struct bufferevent *bev;
    int64_t since_ms;
};

struct httpd {
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *listener;
    struct event *sweep;
    struct httpd_conn *conns;
    unsigned count, cap, max;
    size_t read_max;         /* bytes a connection reads ahead */
    int64_t lifetime_ms;
    int paused;              /* by the bound, or after a failed accept */
    int accept_failed;
    int stopped;             /* httpd_stop: never accepts again */
    struct log_limit log;
    char address[96];
};

int httpd_parse_listen(const char *listen, char *host, size_t hostlen, int *port, char *err,
                       size_t errlen)
{
    const char *colon = strrchr(listen, ':');
    const char *h = listen, *h_end = colon;
    if (listen[0] == '[') { /* [IPv6]:port */
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "'%s' is not HOST:PORT or [IPv6]:PORT", listen);
            return -1;
        }
        h = listen + 1;
        h_end = close;
        colon = close + 1;
    }
    if (colon == NULL || h_end == h || (size_t)(h_end - h) >= hostlen) {
        snprintf(err, errlen, "'%s' is not HOST:PORT or [IPv6]:PORT", listen);
        return -1;
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 0 || p > 65535) {
        snprintf(err, errlen, "'%s' has no port from 0 to 65535 after its last ':'", listen);
        return -1;
    }
    memcpy(host, h, (size_t)(h_end - h));
    host[h_end - h] = '\0';
    *port = (int)p;
    return 0;
}

static void httpd_pause(struct httpd *h, int paused)
{
    paused = paused || h->stopped;
    if (paused == h->paused)
        return;
    if ((paused ? evconnlistener_disable(h->listener) : evconnlistener_enable(h->listener)) == 0)
        h->paused = paused;
}

/* Let go of the connections evhttp has let go of. */
static void httpd_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct httpd *h = arg;
    unsigned kept = 0;
    int64_t now = clock_monotonic_ms();
    for (unsigned i = 0; i < h->count; i++) {
        bufferevent_data_cb readcb, writecb;
        bufferevent_event_cb eventcb;
        void *cbarg;
        bufferevent_getcb(h->conns[i].bev, &readcb, &writecb, &eventcb, &cbarg);
        if (readcb == NULL && writecb == NULL && eventcb == NULL) {
            bufferevent_decref(h->conns[i].bev); /* evhttp let it go: the last reference */
            continue;
        }
        if (now - h->conns[i].since_ms > h->lifetime_ms && cbarg != NULL)
            evhttp_connection_free(cbarg); /* its callbacks' argument is the connection;
                                            * the next sweep lets it go */
        h->conns[kept++] = h->conns[i];
    }
    h->count = kept;
    h->accept_failed = 0;
    httpd_pause(h, h->count >= h->max);
    if (h->count == 0)
        evtimer_del(h->sweep);
}

static void httpd_arm_sweep(struct httpd *h)
{
    struct timeval tv = {0, HTTPD_SWEEP_MS * 1000};
    if (!evtimer_pending(h->sweep, NULL))
        event_add(h->sweep, &tv);
}

/* accept() failed (out of descriptors, most often): pause until the next
 * sweep rather than be called again at once. */
static void httpd_accept_error_cb(struct evconnlistener *listener, void *arg)
{
    (void)listener;
    struct httpd *h = arg;
    log_limited(&h->log, LOG_ERROR, "HTTP on %s: cannot accept a connection: %s; pausing",
                h->address, strerror(errno));
    h->accept_failed = 1;
    httpd_pause(h, 1);
    httpd_arm_sweep(h);
}

static struct bufferevent *httpd_bev_cb(struct event_base *base, void *arg)
{
    struct httpd *h = arg;
    if (h->count == h->cap) {
        unsigned cap = h->cap ? h->cap * 2 : 16;
        struct httpd_conn *more = realloc(h->conns, cap * sizeof *more);
        if (more == NULL)
            return NULL; /* evhttp makes one itself: this connection goes uncounted */
        h->conns = more;
        h->cap = cap;
    }
    /* BEV_OPT_CLOSE_ON_FREE: the socket is closed when the last reference
     * goes, after the bufferevent's events are deleted. Without it evhttp
     * closes the socket while our reference keeps those events registered
     * for its descriptor, and the next socket given that number (a
     * producer's, say) would never be polled. */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    bufferevent_setwatermark(bev, EV_READ, 0, h->read_max);
    bufferevent_incref(bev);
    h->conns[h->count++] = (struct httpd_conn){bev, clock_monotonic_ms()};
    httpd_arm_sweep(h);
    httpd_pause(h, h->count >= h->max);
    return bev;
}

static void httpd_generic_cb(struct evhttp_request *req, void *arg)
{
    (void)arg;
    httpd_reply(req, HTTP_NOTFOUND, "text/plain; charset=utf-8", "not found\n", 10);
}

/* A listening socket for host:port. Returns the fd, or -1 with err. */
static int httpd_listen_socket(const char *key, const char *address, char *err, size_t errlen)
{
    char host[64], msg[160], portstr[8];
    int port;
    if (httpd_parse_listen(address, host, sizeof host, &port, msg, sizeof msg) < 0) {
        snprintf(err, errlen, "%s = %s", key, msg);
        return -1;
    }
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    int rc = getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "%s = '%s': cannot resolve '%s': %s", key, address, host,
                 gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, HTTPD_BACKLOG) < 0) {
        snprintf(err, errlen, "%s = '%s': cannot listen there: %s", key, address, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* "HOST:PORT" of the socket as bound. */
static void httpd_name(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss = {.ss_family = AF_UNSPEC};
    socklen_t len = sizeof ss;
    char host[64] = "?", port[8] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, outlen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

struct httpd *httpd_open(struct event_base *base, const char *key, const char *listen,
                         const struct httpd_limits *limits, httpd_handler handler, void *arg,
                         char *err, size_t errlen)
{
    int fd = httpd_listen_socket(key, listen, err, errlen);
    if (fd < 0)
        return NULL;
    struct httpd *h = calloc(1, sizeof *h);
    if (h == NULL) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", key);
        return NULL;
    }
    h->base = base;
    h->max = limits->max_connections;
    h->read_max = limits->max_headers_bytes + limits->max_body_bytes + HTTPD_READ_SLACK;
    h->lifetime_ms = 3 * (int64_t)limits->timeout_ms;
    httpd_name(fd, h->address, sizeof h->address);
    h->sweep = event_new(base, -1, EV_PERSIST, httpd_sweep_cb, h);
    h->http = evhttp_new(base);
    h->listener = evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                     -1, fd);
    if (h->listener == NULL)
        close(fd);
    if (h->sweep == NULL || h->http == NULL || h->listener == NULL ||
        evhttp_bind_listener(h->http, h->listener) == NULL) {
        snprintf(err, errlen, "%s = '%s': cannot serve HTTP there", key, listen);
        httpd_free(h);
        return NULL;
    }
    struct timeval timeout = {limits->timeout_ms / 1000, (limits->timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(h->http, &timeout);
    evhttp_set_max_headers_size(h->http, (ev_ssize_t)limits->max_headers_bytes);
    evhttp_set_max_body_size(h->http, (ev_ssize_t)limits->max_body_bytes);
    /* Every method evhttp knows reaches the handler, which answers 405
     * with Allow for those it does not serve (evhttp itself would answer
     * 501). A method outside these nine, which libevent 2.1 cannot parse
     * (PROPFIND, MKCOL, LOCK, a made-up word ...), still gets libevent's
     * own 501 Not Implemented. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_bevcb(h->http, httpd_bev_cb, h);
    evconnlistener_set_error_cb(h->listener, httpd_accept_error_cb);
    evhttp_set_gencb(h->http, handler ? handler : httpd_generic_cb, arg);
    return h;
}

const char *httpd_address(const struct httpd *h)
{
    return h->address;
}

unsigned httpd_connections(const struct httpd *h)
{
    return h->count;
}

void httpd_stop(struct httpd *h)
{
    h->stopped = 1;
    httpd_pause(h, 1);
}

void httpd_free(struct httpd *h)
{
    if (h == NULL)
        return;
    if (h->http != NULL)
        evhttp_free(h->http); /* frees its connections and the listener */
    else if (h->listener != NULL)
        evconnlistener_free(h->listener);
    for (unsigned i = 0; i < h->count; i++)
        bufferevent_decref(h->conns[i].bev);
    free(h->conns);
    if (h->sweep != NULL)
        event_free(h->sweep);
    free(h);
}

void httpd_reply(struct evhttp_request *req, int code, const char *content_type,
                 const char *body, size_t len)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    if (content_type != NULL)
        evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd == EVHTTP_REQ_CONNECT) { /* evhttp gives an answer to CONNECT no Content-Length */
        char length[24];
        snprintf(length, sizeof length, "%zu", len);
        evhttp_add_header(headers, "Content-Length", length);
    }
    if (cmd != EVHTTP_REQ_HEAD)
        evbuffer_add(out, body, len);
    evhttp_send_reply(req, code, NULL, out);
    evbuffer_free(out);
}
