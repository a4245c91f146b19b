/*
 * status: names for tlm_status values, and the library version; and the
 * check that the limits telemetry.h publishes are the protocol's.
 */
#include "telemetry.h"
#include "wire.h"

_Static_assert(TLM_NAME_MAX == WIRE_NAME_MAX, "telemetry.h: TLM_NAME_MAX");
_Static_assert(TLM_DISTINCT_ID_MAX == WIRE_DISTINCT_ID_MAX, "telemetry.h: TLM_DISTINCT_ID_MAX");
_Static_assert(TLM_MAX_DEPTH == WIRE_MAX_DEPTH, "telemetry.h: TLM_MAX_DEPTH");
_Static_assert(TLM_UUID_LEN == WIRE_UUID_TEXT_LEN, "telemetry.h: TLM_UUID_LEN");
_Static_assert(TLM_DEFAULT_MAX_EVENT_BYTES == WIRE_DEFAULT_MAX_MESSAGE_BYTES,
               "telemetry.h: TLM_DEFAULT_MAX_EVENT_BYTES");

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
