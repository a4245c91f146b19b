/*
 * reason: why an event does not reach the backend, the vocabulary of
 * validation and delivery, and the refusal that carries one.
 *
 * The first reasons are the protocol's rejections (proto/wire.h), reported
 * to producers in their acknowledgements; the rest are the agent's own
 * reasons for dropping an event it had accepted. A refusal is a reason plus
 * a short text for the log and the producer: a check that fails fills one
 * with refuse() and returns what refuse() returns.
 */
#ifndef TA_REASON_H
#define TA_REASON_H

#include "wire.h"

#include <stddef.h>

enum drop_reason {
#define REASON_ENUM(id, name) DROP_##id,
    WIRE_REJECTION_REASONS(REASON_ENUM)
#undef REASON_ENUM
    /* dropped after validation */
    DROP_DISABLED,         /* agent.enabled = false: accepted and discarded */
    DROP_BUFFER_FULL,      /* no room in buffer.max_bytes */
    DROP_BACKEND_REJECTED, /* the backend refused the batch for good (4xx) */
    DROP_RETRY_EXPIRED,    /* backend.retry_max_elapsed_ms passed */
    DROP_SHUTDOWN,         /* still undelivered when the shutdown grace ran out */
    DROP_SPOOL_CORRUPT,    /* its record in the spool was damaged on disk */
    DROP_CRASH,            /* accepted, not yet in the spool when the agent was killed:
                            * never acknowledged */
    DROP_REASON_COUNT
};

/* "bad_event", "buffer_full", ... ("unknown" for a value out of range). */
const char *reason_name(enum drop_reason reason);

#define REFUSAL_DETAIL_LEN 256

struct refusal {
    enum drop_reason reason;
    char detail[REFUSAL_DETAIL_LEN]; /* what was wrong, for a person */
};

/* Fill r (when not NULL) and return -1, so that a failed check is one
 * statement: `return refuse(r, DROP_BAD_EVENT, "...", ...);`. */
int refuse(struct refusal *r, enum drop_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
