/*
 * sockfile: the producers' socket file: its directory made, a stale socket
 * from a dead agent replaced only if no agent answers on it, a path that is
 * not a socket left alone, permissions never wider than configured, at any
 * moment, and a listening socket the moment the path appears.
 */
#ifndef TA_SOCKFILE_H
#define TA_SOCKFILE_H

#include "config.h"

#include <stddef.h>

/* Create, bind and listen on cfg->socket. Returns the listening socket
 * (non-blocking, close-on-exec), or -1 with a message in err; a failure
 * after the file was made removes it. */
int sockfile_open(const struct config *cfg, char *err, size_t errlen);

#endif
