/*
 * status: names for tlm_status values, and the library version.
 */
#include "telemetry.h"

#define TLM_STR2(x) #x
#define TLM_STR(x) TLM_STR2(x)

const char *tlm_strerror(tlm_status status)
{
    static const char *const text[TLM_STATUS_COUNT_] = {
        [TLM_OK] = "success",
        [TLM_EINVAL] = "invalid argument",
        [TLM_ENOMEM] = "out of memory",
        [TLM_ETOOLONG] = "string too long",
        [TLM_ETOODEEP] = "nested too deep",
        [TLM_ESTATE] = "call out of order for the event's state",
        [TLM_EINVALID] = "not one complete msgpack event",
        [TLM_ETOOLARGE] = "event too large",
        [TLM_EQUEUE_FULL] = "queue full",
        [TLM_ETIMEOUT] = "timed out",
        [TLM_ESYS] = "system resource unavailable",
    };
    if ((unsigned)status >= TLM_STATUS_COUNT_ || text[status] == NULL)
        return "unknown status";
    return text[status];
}

const char *tlm_version(void)
{
    return TLM_STR(TLM_VERSION_MAJOR) "." TLM_STR(TLM_VERSION_MINOR) "." TLM_STR(
        TLM_VERSION_PATCH);
}

void tlm_options_init(tlm_options *opts)
{
    if (opts != NULL)
        *opts = (tlm_options){0};
}
