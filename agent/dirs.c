/*
 * dirs: mkdir -p (see dirs.h).
 */
#include "dirs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

int dirs_make(const char *path, mode_t parents_mode, mode_t mode, char *failed, size_t failedlen)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) {
        snprintf(failed, failedlen, "%s", path);
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, saved == '\0' ? mode : parents_mode) < 0 && errno != EEXIST) {
            snprintf(failed, failedlen, "%s", dir);
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            return 0;
    }
}
