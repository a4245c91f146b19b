/*
 * reason: names of the drop reasons, and refusals (see reason.h).
 */
#include "reason.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const reason_names[DROP_REASON_COUNT] = {
#define REASON_NAME(id, name) [DROP_##id] = (name),
    WIRE_REJECTION_REASONS(REASON_NAME)
#undef REASON_NAME
    [DROP_DISABLED] = "disabled",
    [DROP_BUFFER_FULL] = "buffer_full",
    [DROP_BACKEND_REJECTED] = "backend_rejected",
    [DROP_RETRY_EXPIRED] = "retry_expired",
    [DROP_SHUTDOWN] = "shutdown",
    [DROP_SPOOL_CORRUPT] = "spool_corrupt",
    [DROP_CRASH] = "crash",
};

const char *reason_name(enum drop_reason reason)
{
    return (unsigned)reason < DROP_REASON_COUNT ? reason_names[reason] : "unknown";
}

int refuse(struct refusal *r, enum drop_reason reason, const char *fmt, ...)
{
    if (r != NULL) {
        r->reason = reason;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->detail, sizeof r->detail, fmt, ap);
        va_end(ap);
    }
    return -1;
}
