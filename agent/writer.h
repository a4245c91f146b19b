/*
 * writer: writes to a file descriptor the agent shares with its parent
 * (standard output, standard error) without ever blocking the event loop
 * and without changing the descriptor.
 *
 * Setting O_NONBLOCK on an inherited descriptor changes the open file
 * description the shell and every other process share: their terminal or
 * pipe is left non-blocking. So each writer has a thread of its own that
 * makes plain blocking write()s, fed through a queue. With an event base,
 * each chunk's completion is reported on the loop; a writer may also bound
 * its queue, and then refuses chunks past the bound so that a reader that
 * never reads costs bounded memory.
 */
#ifndef TA_WRITER_H
#define TA_WRITER_H

#include "buf.h"

#include <event2/event.h>
#include <stddef.h>

/* A chunk was written whole (err 0), or could not be (err: the errno). */
typedef void (*writer_done_fn)(void *arg, int err);

struct writer;

/* A writer for fd. base may be NULL (chunks then have no completion);
 * max_queued is the bound on the bytes queued (0: none). */
struct writer *writer_new(int fd, struct event_base *base, size_t max_queued);
/* Queue the contents of data (taken over on success; data is left empty).
 * done may be NULL. Returns 0, or -1 when the bound or memory does not
 * allow it (data untouched, done never called). */
int writer_submit(struct writer *w, struct buf *data, writer_done_fn done, void *arg);
/* Queue a copy of len bytes. Returns 0 or -1 as writer_submit. */
int writer_submit_copy(struct writer *w, const void *data, size_t len);
/* Called on the writer's thread each time its queue becomes empty. */
void writer_on_drained(struct writer *w, void (*hook)(void *arg), void *arg);
/* Wait until everything queued is written, for at most timeout_ms.
 * Returns 0, or -1 if the time ran out. */
int writer_flush(struct writer *w, int timeout_ms);
/* Stop the thread, even in the middle of a write, and free what is still
 * queued without calling its completions. */
void writer_free(struct writer *w);

#endif
