/*
 * httpd: an HTTP listener on the event loop (libevent's evhttp), bounded:
 * at most max_connections at once (past it, accepting pauses and new
 * connections wait in the kernel's queue), headers and bodies of bounded
 * size, a timeout on each connection's reads and a deadline of three
 * timeouts on its whole life. The operator endpoints (ops.c)
 * are served by one.
 */
#ifndef TA_HTTPD_H
#define TA_HTTPD_H

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>

struct httpd_limits {
    unsigned max_connections;
    size_t max_headers_bytes;
    size_t max_body_bytes;
    int timeout_ms;           /* to read a request, and for an idle connection */
};

typedef void (*httpd_handler)(struct evhttp_request *req, void *arg);

struct httpd;

/* Check a listen address: "HOST:PORT" (an IPv4 address or a name), or
 * "[IPv6]:PORT", port 0-65535 (0: any free one). Returns 0, or -1 with
 * what is wrong in err. */
int httpd_parse_listen(const char *listen, char *host, size_t hostlen, int *port, char *err,
                       size_t errlen);
/* Listen on `listen` and hand every request to handler. key names the
 * setting in messages ("[http] listen"). Returns NULL with a message in
 * err. */
struct httpd *httpd_open(struct event_base *base, const char *key, const char *listen,
                         const struct httpd_limits *limits, httpd_handler handler, void *arg,
                         char *err, size_t errlen);
/* What it listens on, as "HOST:PORT" with the port it got. */
const char *httpd_address(const struct httpd *h);
/* Connections open now. */
unsigned httpd_connections(const struct httpd *h);
/* Accept no more connections (shutdown); those open are still served. */
void httpd_stop(struct httpd *h);
void httpd_free(struct httpd *h);

/* Answer req with code and body (content_type may be NULL: none). */
void httpd_reply(struct evhttp_request *req, int code, const char *content_type,
                 const char *body, size_t len);

#endif
