/*
 * http: the HTTP transport (see transport.h). POSTs through libcurl's
 * multi interface, driven by the libevent loop (curl_multi_socket_action
 * with socket and timer callbacks).
 *
 * curl tells us, per socket, what to wait for (http_socket_cb) and when its
 * next timeout is (http_timer_cb); libevent tells curl when either fires
 * (http_event_cb, http_timeout_cb), and after each nudge finished transfers
 * are collected (http_collect). curl is never re-entered from its callbacks.
 * No call here blocks. Connections are kept alive and reused by the multi
 * handle's connection cache; the sender limits how many requests are in
 * flight.
 *
 * Redirects (301, 302, 303, 307, 308) are followed for up to
 * HTTP_MAX_REDIRECTS hops with the method and body kept, and logged once
 * per new target: the configured URL should be updated.
 */
#include "http.h"

#include "log.h"
#include "version.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#define HTTP_MAX_REDIRECTS 5

/* The libevent event curl's socket is waited on with (curl_multi_assign). */
struct http_socket {
    LIST_ENTRY(http_socket) entry;
    struct event *ev;
};

struct http_request {
    TAILQ_ENTRY(http_request) entry;
    struct http *http;
    CURL *easy;
    struct body body;
    size_t body_sent;         /* of body: where curl reads on */
    transport_done_fn done;
    void *arg;
    struct transport_result result;
    size_t body_start_len;
    long first_redirect;      /* status of the first 3xx answer, 0: none */
    char location[512];       /* its Location */
    char error[CURL_ERROR_SIZE];
};

struct http {
    struct transport transport; /* first: a struct http is a struct transport */
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct curl_slist *headers[2]; /* without, with Content-Encoding: gzip */
    int gzip;                      /* bodies are gzipped: headers[1] */
    char *url;
    char *ca_file, *proxy;         /* NULL: the system's CAs, the environment's proxy */
    int tls_insecure;
    char last_redirect[512]; /* the last redirect target logged */
    TAILQ_HEAD(, http_request) requests;
    LIST_HEAD(, http_socket) sockets;
};

const char *http_status_text(long status)
{
    static const struct { long status; const char *text; } known[] = {
        {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"},
        {300, "Multiple Choices"}, {301, "Moved Permanently"}, {302, "Found"},
        {303, "See Other"}, {304, "Not Modified"}, {307, "Temporary Redirect"},
        {308, "Permanent Redirect"}, {400, "Bad Request"}, {401, "Unauthorized"},
        {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
        {407, "Proxy Authentication Required"}, {408, "Request Timeout"}, {409, "Conflict"},
        {410, "Gone"}, {411, "Length Required"}, {413, "Content Too Large"},
        {415, "Unsupported Media Type"}, {422, "Unprocessable Content"},
        {429, "Too Many Requests"}, {500, "Internal Server Error"}, {501, "Not Implemented"},
        {502, "Bad Gateway"}, {503, "Service Unavailable"}, {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (known[i].status == status)
            return known[i].text;
    if (status >= 200 && status < 600) {
        static const char *const classes[] = {"Success", "Redirection", "Client Error",
                                              "Server Error"};
        return classes[status / 100 - 2];
    }
    return "not an HTTP status";
}

/* Per-socket libevent event, attached to curl's socket with curl_multi_assign. */
static void http_event_cb(evutil_socket_t fd, short what, void *arg);

/* Detach and free everything of req but the struct itself. */
static void http_request_free(struct http_request *req)
{
    curl_multi_remove_handle(req->http->multi, req->easy);
    curl_easy_cleanup(req->easy);
    body_free(&req->body);
}

/* A request that reached its answer through redirects: say once where the
 * backend now is. */
static void http_log_redirect(struct http *h, struct http_request *req)
{
    char *final_url = NULL;
    curl_easy_getinfo(req->easy, CURLINFO_EFFECTIVE_URL, &final_url);
    if (final_url == NULL || strcmp(final_url, h->last_redirect) == 0)
        return;
    snprintf(h->last_redirect, sizeof h->last_redirect, "%s", final_url);
    log_warn("backend: %s answered %ld (%s) with Location: %s; following it, the request was "
             "answered %ld by %s: set [backend] url to that URL",
             h->url, req->first_redirect, http_status_text(req->first_redirect), req->location,
             req->result.status, final_url);
}

static void http_collect(struct http *h)
{
    CURLMsg *msg;
    int pending;
    while ((msg = curl_multi_info_read(h->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct http_request *req;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        CURLcode rc = msg->data.result;
        req->result.transport_ok = rc == CURLE_OK;
        req->result.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &req->result.status);
        if (rc != CURLE_OK)
            snprintf(req->result.error, sizeof req->result.error, "%s",
                     req->error[0] ? req->error : curl_easy_strerror(rc));
        if (rc == CURLE_OK && req->first_redirect != 0)
            http_log_redirect(h, req);
        TAILQ_REMOVE(&h->requests, req, entry);
        http_request_free(req);
        req->done(&req->result, req->arg);
        free(req);
    }
}

static void http_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http *h = arg;
    int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    http_collect(h);
}

static void http_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http *h = arg;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_collect(h);
}

static int http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct http *h = userp;
    struct http_socket *sock = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sock != NULL) {
            LIST_REMOVE(sock, entry);
            event_free(sock->ev);
            free(sock);
            curl_multi_assign(h->multi, s, NULL);
        }
        return 0;
    }
    short kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
                 (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (sock != NULL) {
        event_del(sock->ev);
        event_assign(sock->ev, h->base, s, kind, http_event_cb, h);
    } else {
        sock = calloc(1, sizeof *sock);
        if (sock == NULL || (sock->ev = event_new(h->base, s, kind, http_event_cb, h)) == NULL) {
            free(sock);
            return -1;
        }
        LIST_INSERT_HEAD(&h->sockets, sock, entry);
        curl_multi_assign(h->multi, s, sock);
    }
    if (event_add(sock->ev, NULL) < 0) {
        log_error("backend: cannot wait on a connection's socket");
        return -1;
    }
    return 0;
}

static int http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct http *h = userp;
    if (timeout_ms < 0)
        return evtimer_del(h->timer);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (evtimer_add(h->timer, &tv) < 0) {
        log_error("backend: cannot arm the transfer timer");
        return -1;
    }
    return 0;
}

static size_t http_write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_request *req = arg;
    size_t n = size * nmemb;
    size_t room = sizeof req->result.body_start - 1 - req->body_start_len;
    size_t take = n < room ? n : room;
    memcpy(req->result.body_start + req->body_start_len, data, take);
    req->body_start_len += take;
    req->result.body_start[req->body_start_len] = '\0';
    return n; /* the rest is read and discarded */
}

/* Copy a header's value (after name_len bytes of "Name:") into out. */
static void http_header_value(const char *data, size_t n, size_t name_len, char *out,
                              size_t outlen)
{
    const char *v = data + name_len;
    size_t len = n - name_len;
    while (len > 0 && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len >= outlen)
        len = outlen - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

static int http_header_is(const char *data, size_t n, const char *name)
{
    size_t len = strlen(name);
    return n > len && strncasecmp(data, name, len) == 0;
}

/* Headers of every response, redirects included: each status line starts
 * a response, so only the last response's Retry-After counts. */
static size_t http_header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_request *req = arg;
    size_t n = size * nmemb;
    if (http_header_is(data, n, "HTTP/")) {
        req->result.retry_after[0] = '\0';
        const char *space = memchr(data, ' ', n);
        long status = space != NULL ? strtol(space + 1, NULL, 10) : 0;
        if (status >= 300 && status <= 399 && req->first_redirect == 0)
            req->first_redirect = status;
    } else if (http_header_is(data, n, "retry-after:")) {
        http_header_value(data, n, strlen("retry-after:"), req->result.retry_after,
                          sizeof req->result.retry_after);
    } else if (http_header_is(data, n, "location:") && req->location[0] == '\0') {
        http_header_value(data, n, strlen("location:"), req->location, sizeof req->location);
    }
    return n;
}

/* curl reads a body in parts (see body.h) through these two. */
static size_t http_read_cb(char *to, size_t size, size_t nitems, void *arg)
{
    struct http_request *req = arg;
    size_t n = body_read(&req->body, req->body_sent, to, size * nitems);
    req->body_sent += n;
    return n;
}

/* From the start again: a redirect, or a reused connection found closed. */
static int http_seek_cb(void *arg, curl_off_t offset, int origin)
{
    struct http_request *req = arg;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > body_len(&req->body))
        return CURL_SEEKFUNC_CANTSEEK;
    req->body_sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* The body: given whole when it is (gzipped), else read in parts, so the
 * batch's events are copied only into curl's buffer. */
static void http_set_body(struct http_request *req)
{
    CURL *e = req->easy;
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    if (req->body.events == NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body.own.data);
    } else {
        curl_easy_setopt(e, CURLOPT_READFUNCTION, http_read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, req);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, http_seek_cb);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, req);
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len(&req->body));
}

static int http_post(struct transport *t, struct body *body, long timeout_ms,
                     transport_done_fn done, void *arg)
{
    struct http *h = (struct http *)t;
    struct http_request *req = calloc(1, sizeof *req);
    if (req == NULL || (req->easy = curl_easy_init()) == NULL) {
        free(req);
        body_free(body);
        return -1;
    }
    req->http = h;
    req->body = *body;
    *body = (struct body)BODY_INIT;
    req->done = done;
    req->arg = arg;
    CURL *e = req->easy;
    curl_easy_setopt(e, CURLOPT_URL, h->url);
    if (h->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    if (h->proxy != NULL)
        curl_easy_setopt(e, CURLOPT_PROXY, h->proxy);
    if (h->tls_insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    http_set_body(req);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers[h->gzip]);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)HTTP_MAX_REDIRECTS);
    curl_easy_setopt(e, CURLOPT_POSTREDIR, (long)CURL_REDIR_POST_ALL);
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        body_free(&req->body);
        free(req);
        return -1;
    }
    TAILQ_INSERT_TAIL(&h->requests, req, entry);
    return 0;
}

static void http_free(struct transport *t)
{
    struct http *h = (struct http *)t;
    if (h == NULL)
        return;
    struct http_request *req;
    while ((req = TAILQ_FIRST(&h->requests)) != NULL) {
        TAILQ_REMOVE(&h->requests, req, entry);
        http_request_free(req);
        free(req);
    }
    if (h->multi != NULL)
        curl_multi_cleanup(h->multi);
    struct http_socket *sock;
    while ((sock = LIST_FIRST(&h->sockets)) != NULL) { /* any curl did not remove */
        LIST_REMOVE(sock, entry);
        event_free(sock->ev);
        free(sock);
    }
    if (h->timer)
        event_free(h->timer);
    curl_slist_free_all(h->headers[0]);
    curl_slist_free_all(h->headers[1]);
    free(h->url);
    free(h->ca_file);
    free(h->proxy);
    free(h);
}

/* Later requests go to cfg's url, gzipped as cfg says; requests under way
 * keep theirs (curl copied the URL; both header lists live as long as h). */
/* A copy of text, or NULL for "" (and when out of memory: *failed). */
static char *http_setting(const char *text, int *failed)
{
    if (text[0] == '\0')
        return NULL;
    char *copy = strdup(text);
    *failed |= copy == NULL;
    return copy;
}

static int http_retarget(struct transport *t, const struct config *cfg)
{
    struct http *h = (struct http *)t;
    int failed = 0;
    char *url = http_setting(cfg->url, &failed);
    char *ca_file = http_setting(cfg->ca_file, &failed);
    char *proxy = http_setting(cfg->proxy, &failed);
    if (failed) {
        free(url);
        free(ca_file);
        free(proxy);
        return -1;
    }
    free(h->url);
    free(h->ca_file);
    free(h->proxy);
    h->url = url;
    h->ca_file = ca_file;
    h->proxy = proxy;
    h->tls_insecure = cfg->tls_insecure;
    h->gzip = cfg->gzip != 0;
    return 0;
}

static const struct transport_ops http_ops = {http_post, http_retarget, http_free};

struct transport *http_transport_new(struct event_base *base, const struct config *cfg)
{
    struct http *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->transport.ops = &http_ops;
    h->base = base;
    TAILQ_INIT(&h->requests);
    LIST_INIT(&h->sockets);
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, http_timeout_cb, h);
    if (http_retarget(&h->transport, cfg) < 0 || h->multi == NULL || h->timer == NULL)
        goto fail;
    const char *headers[] = {"Content-Type: application/json",
                             /* NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one string */
                             "User-Agent: " TELEMETRY_NAME "/" TELEMETRY_VERSION,
                             "Expect:", /* no 100-continue round trip */
                             "Content-Encoding: gzip", NULL};
    for (int gzip = 0; gzip < 2; gzip++) {
        for (const char *const *line = headers; *line; line++) {
            if (!gzip && strstr(*line, "gzip") != NULL)
                continue;
            struct curl_slist *grown = curl_slist_append(h->headers[gzip], *line);
            if (grown == NULL)
                goto fail;
            h->headers[gzip] = grown;
        }
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return &h->transport;
fail:
    http_free(&h->transport);
    return NULL;
}
