/*
 * httpd: a bounded evhttp listener (see httpd.h).
 *
 * libevent 2.1 has no limit on evhttp's connections, and no hook when one
 * closes. So each connection's bufferevent is made here (evhttp_set_bevcb)
 * and kept with a reference of its own: once evhttp lets a connection go
 * it clears the bufferevent's callbacks, a sweep a few times a second
 * notices, drops the reference (closing the socket) and counts the
 * connection closed. While max_connections are open the listener pauses.
 */
#include "httpd.h"

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

struct httpd {
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *listener;
    struct event *sweep;
    struct bufferevent **conns; /* each open connection's, with a reference of ours */
    unsigned count, cap, max;
    int paused;
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
    for (unsigned i = 0; i < h->count; i++) {
        bufferevent_data_cb readcb, writecb;
        bufferevent_event_cb eventcb;
        void *cbarg;
        bufferevent_getcb(h->conns[i], &readcb, &writecb, &eventcb, &cbarg);
        if (readcb == NULL && writecb == NULL && eventcb == NULL)
            bufferevent_decref(h->conns[i]); /* the last reference: the socket closes */
        else
            h->conns[kept++] = h->conns[i];
    }
    h->count = kept;
    httpd_pause(h, h->count >= h->max);
    if (h->count == 0)
        evtimer_del(h->sweep);
}

static struct bufferevent *httpd_bev_cb(struct event_base *base, void *arg)
{
    struct httpd *h = arg;
    if (h->count == h->cap) {
        unsigned cap = h->cap ? h->cap * 2 : 16;
        struct bufferevent **more = realloc(h->conns, cap * sizeof *more);
        if (more == NULL)
            return NULL; /* evhttp makes one itself: this connection goes uncounted */
        h->conns = more;
        h->cap = cap;
    }
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    bufferevent_incref(bev);
    h->conns[h->count++] = bev;
    if (h->count == 1) {
        struct timeval tv = {0, HTTPD_SWEEP_MS * 1000};
        event_add(h->sweep, &tv);
    }
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
    struct sockaddr_storage ss;
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
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_bevcb(h->http, httpd_bev_cb, h);
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

void httpd_free(struct httpd *h)
{
    if (h == NULL)
        return;
    if (h->http != NULL)
        evhttp_free(h->http); /* frees its connections and the listener */
    else if (h->listener != NULL)
        evconnlistener_free(h->listener);
    for (unsigned i = 0; i < h->count; i++)
        bufferevent_decref(h->conns[i]);
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
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(out, body, len);
    evhttp_send_reply(req, code, NULL, out);
    evbuffer_free(out);
}
