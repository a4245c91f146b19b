/*
 * stdout: the transport that prints each body as one line on standard
 * output (backend.url = stdout), for trying the agent out and for piping
 * it into another program (see transport.h).
 *
 * Lines are written by a writer thread (writer.c): however slowly the
 * reader reads, the loop never waits and no line is lost; the sender's
 * request limit keeps how much waits in memory bounded. Standard output
 * is never made non-blocking: the agent shares it with its parent.
 */
#include "transport.h"

#include "writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

struct stdout_line {
    TAILQ_ENTRY(stdout_line) entry;
    struct stdout_transport *owner;
    transport_done_fn done;
    void *arg;
};

struct stdout_transport {
    struct transport transport; /* first: this is a struct transport */
    struct writer *writer;
    TAILQ_HEAD(, stdout_line) lines; /* queued or being written */
};

static void stdout_written(void *arg, int err)
{
    struct stdout_line *line = arg;
    TAILQ_REMOVE(&line->owner->lines, line, entry);
    struct transport_result result = {.transport_ok = err == 0, .permanent = err != 0,
                                      .status = err == 0 ? 200 : 0};
    if (err != 0)
        snprintf(result.error, sizeof result.error, "writing to standard output failed: %s",
                 strerror(err));
    transport_done_fn done = line->done;
    void *done_arg = line->arg;
    free(line);
    done(&result, done_arg);
}

static int stdout_post(struct transport *t, struct body *body, long timeout_ms,
                       transport_done_fn done, void *arg)
{
    (void)timeout_ms; /* a line waits for its reader as long as it takes */
    struct stdout_transport *s = (struct stdout_transport *)t;
    struct stdout_line *line = malloc(sizeof *line);
    if (line == NULL || body_flatten(body) < 0 || buf_append_char(&body->own, '\n') < 0) {
        free(line);
        body_free(body);
        return -1;
    }
    line->owner = s;
    line->done = done;
    line->arg = arg;
    if (writer_submit(s->writer, &body->own, stdout_written, line) < 0) {
        free(line);
        body_free(body);
        return -1;
    }
    *body = (struct body)BODY_INIT; /* its bytes went to the writer */
    TAILQ_INSERT_TAIL(&s->lines, line, entry);
    return 0;
}

static void stdout_free(struct transport *t)
{
    struct stdout_transport *s = (struct stdout_transport *)t;
    writer_free(s->writer); /* lines still queued are abandoned without a word */
    struct stdout_line *line;
    while ((line = TAILQ_FIRST(&s->lines)) != NULL) {
        TAILQ_REMOVE(&s->lines, line, entry);
        free(line);
    }
    free(s);
}

/* Printing has no target to change (a switch to a URL needs a restart). */
static int stdout_retarget(struct transport *t, const struct config *cfg)
{
    (void)t;
    (void)cfg;
    return 0;
}

static const struct transport_ops stdout_ops = {stdout_post, stdout_retarget, stdout_free};

struct transport *stdout_transport_new(struct event_base *base)
{
    struct stdout_transport *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->transport.ops = &stdout_ops;
    TAILQ_INIT(&s->lines);
    s->writer = writer_new(STDOUT_FILENO, base, 0);
    if (s->writer == NULL) {
        free(s);
        return NULL;
    }
    return &s->transport;
}
