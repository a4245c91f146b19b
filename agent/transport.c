/*
 * transport: choosing the transport for the configuration (see
 * transport.h).
 */
#include "transport.h"

#include <string.h>

int transport_is_stdout(const struct config *cfg)
{
    return strcmp(cfg->url, "stdout") == 0;
}

struct transport *transport_new(struct event_base *base, const struct config *cfg)
{
    return transport_is_stdout(cfg) ? stdout_transport_new(base) : http_transport_new(base, cfg);
}
