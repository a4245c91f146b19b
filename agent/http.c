/*
 * http: libcurl multi-socket glue for libevent (see http.h).
 *
 * curl tells us, per socket, what to wait for (http_socket_cb) and when its
 * next timeout is (http_timer_cb); libevent tells curl when either fires
 * (http_event_cb, http_timeout_cb), and after each nudge finished transfers
 * are collected (http_collect). curl is never re-entered from its callbacks.
 */
#include "http.h"

#include "log.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

/* The libevent event curl's socket is waited on with (curl_multi_assign). */
struct http_socket {
    LIST_ENTRY(http_socket) entry;
    struct event *ev;
};

struct http_request {
    TAILQ_ENTRY(http_request) entry;
    struct http *http;
    CURL *easy;
    struct buf body;
    http_done_fn done;
    void *arg;
    struct http_result result;
    size_t body_start_len;
    char error[CURL_ERROR_SIZE];
};

struct http {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct curl_slist *headers;
    long timeout_ms;
    TAILQ_HEAD(, http_request) requests;
    LIST_HEAD(, http_socket) sockets;
};

/* Per-socket libevent event, attached to curl's socket with curl_multi_assign. */
static void http_event_cb(evutil_socket_t fd, short what, void *arg);

/* Detach and free everything of req but the struct itself. */
static void http_request_free(struct http_request *req)
{
    curl_multi_remove_handle(req->http->multi, req->easy);
    curl_easy_cleanup(req->easy);
    buf_free(&req->body);
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
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &req->result.status);
        if (rc != CURLE_OK)
            snprintf(req->result.error, sizeof req->result.error, "%s",
                     req->error[0] ? req->error : curl_easy_strerror(rc));
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
    return event_add(sock->ev, NULL);
}

static int http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct http *h = userp;
    if (timeout_ms < 0)
        return evtimer_del(h->timer);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(h->timer, &tv);
}

struct http *http_new(struct event_base *base, const char *const *headers, long timeout_ms)
{
    struct http *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->base = base;
    h->timeout_ms = timeout_ms;
    TAILQ_INIT(&h->requests);
    LIST_INIT(&h->sockets);
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, http_timeout_cb, h);
    if (h->multi == NULL || h->timer == NULL)
        goto fail;
    for (const char *const *line = headers; line && *line; line++) {
        struct curl_slist *grown = curl_slist_append(h->headers, *line);
        if (grown == NULL)
            goto fail;
        h->headers = grown;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
fail:
    http_free(h);
    return NULL;
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

static size_t http_header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_request *req = arg;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        size_t len = n - (sizeof name - 1);
        const char *v = data + sizeof name - 1;
        while (len > 0 && (*v == ' ' || *v == '\t'))
            v++, len--;
        while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
            len--;
        if (len >= sizeof req->result.retry_after)
            len = sizeof req->result.retry_after - 1;
        memcpy(req->result.retry_after, v, len);
        req->result.retry_after[len] = '\0';
    }
    return n;
}

int http_post(struct http *h, const char *url, struct buf *body, http_done_fn done, void *arg)
{
    struct http_request *req = calloc(1, sizeof *req);
    if (req == NULL || (req->easy = curl_easy_init()) == NULL) {
        free(req);
        buf_free(body);
        return -1;
    }
    req->http = h;
    req->body = *body;
    *body = (struct buf)BUF_INIT;
    req->done = done;
    req->arg = arg;
    CURL *e = req->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        buf_free(&req->body);
        free(req);
        return -1;
    }
    TAILQ_INSERT_TAIL(&h->requests, req, entry);
    return 0;
}

void http_free(struct http *h)
{
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
    curl_slist_free_all(h->headers);
    free(h);
}
