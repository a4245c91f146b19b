/*
 * http: the HTTP transport (http_transport_new, see transport.h), and the
 * meaning of HTTP status codes for log lines.
 */
#ifndef TA_HTTP_H
#define TA_HTTP_H

#include "transport.h"

/* "Moved Permanently", "Service Unavailable", ... or the status's class. */
const char *http_status_text(long status);

#endif
