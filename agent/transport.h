/*
 * transport: how a request body reaches the backend, behind one small
 * interface: post a body, and hear once, later, on the event loop, how it
 * went. The sender knows nothing else about the way there.
 *
 *   http    POST to backend.url through libcurl's multi interface (http.c)
 *   stdout  one line per body on standard output (stdout.c)
 */
#ifndef TA_TRANSPORT_H
#define TA_TRANSPORT_H

#include "body.h"
#include "config.h"

#include <event2/event.h>

#define TRANSPORT_TEXT_LEN 256

struct transport_result {
    int transport_ok;   /* an answer was had (an HTTP status was read, a line written) */
    int permanent;      /* !transport_ok, and trying again cannot help */
    int timed_out;      /* !transport_ok: no answer within the timeout */
    long status;        /* the HTTP status (200 for a line written) */
    char error[TRANSPORT_TEXT_LEN];       /* what went wrong when !transport_ok */
    char retry_after[64];                 /* the Retry-After header, or "" */
    char body_start[TRANSPORT_TEXT_LEN];  /* start of the response body */
};

typedef void (*transport_done_fn)(const struct transport_result *result, void *arg);

struct transport;

struct transport_ops {
    /* Send body (taken over: the transport frees it), waiting at most
     * timeout_ms for the answer; done is called exactly once, later, from
     * the event loop. Returns 0, or -1 (body freed, done never called). */
    int (*post)(struct transport *t, struct body *body, long timeout_ms, transport_done_fn done,
                void *arg);
    /* Send later requests as cfg says (backend.url, backend.gzip); requests
     * under way finish as they began. Returns 0, or -1 (nothing changed). */
    int (*retarget)(struct transport *t, const struct config *cfg);
    /* Abandon every request without calling done, and free t. */
    void (*free)(struct transport *t);
};

struct transport {
    const struct transport_ops *ops;
};

static inline int transport_post(struct transport *t, struct body *body, long timeout_ms,
                                 transport_done_fn done, void *arg)
{
    return t->ops->post(t, body, timeout_ms, done, arg);
}

static inline int transport_retarget(struct transport *t, const struct config *cfg)
{
    return t->ops->retarget(t, cfg);
}

static inline void transport_free(struct transport *t)
{
    if (t != NULL)
        t->ops->free(t);
}

/* The transport for cfg: stdout when backend.url = stdout, else http.
 * NULL when it cannot be set up. */
struct transport *transport_new(struct event_base *base, const struct config *cfg);
int transport_is_stdout(const struct config *cfg);

struct transport *http_transport_new(struct event_base *base, const struct config *cfg);
struct transport *stdout_transport_new(struct event_base *base);

#endif
