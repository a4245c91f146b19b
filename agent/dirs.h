/*
 * dirs: making a directory and the ones above it (as `mkdir -p`), for the
 * socket's directory and the spool's.
 */
#ifndef TA_DIRS_H
#define TA_DIRS_H

#include <stddef.h>
#include <sys/types.h>

/* Make `path` and every missing directory above it: those above with
 * parents_mode, path itself with mode (an existing one is left as it is).
 * Returns 0, or -1 with errno set and the directory that could not be made
 * in failed. */
int dirs_make(const char *path, mode_t parents_mode, mode_t mode, char *failed, size_t failedlen);

#endif
