/*
 * sockfile: socket file set-up (see sockfile.h).
 */
#include "sockfile.h"

#include "dirs.h"

#include "log.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int sockfile_mkdirs(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX], failed[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    if (dirs_make(dir, 0755, 0755, failed, sizeof failed) < 0) {
        snprintf(err, errlen, "[agent] socket = '%s': cannot create directory %s: %s", path,
                 failed, strerror(errno));
        return -1;
    }
    return 0;
}

/* Remove a socket file left by an agent that is gone. Fails if the path is
 * not a socket or an agent still answers on it. */
static int sockfile_clear_stale(const char *path, const struct sockaddr_un *addr, char *err,
                                size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "[agent] socket = '%s': %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "[agent] socket = '%s': the path exists and is not a socket; "
                 "refusing to remove it", path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        snprintf(err, errlen, "[agent] socket = '%s': socket(): %s", path, strerror(errno));
        return -1;
    }
    int rc = connect(probe, (const struct sockaddr *)addr, sizeof *addr);
    int saved = errno;
    close(probe);
    if (rc == 0) {
        snprintf(err, errlen, "[agent] socket = '%s': another agent is already listening there",
                 path);
        return -1;
    }
    if (saved != ECONNREFUSED) {
        snprintf(err, errlen, "[agent] socket = '%s': cannot tell whether it is in use: %s", path,
                 strerror(saved));
        return -1;
    }
    log_info("removing stale socket %s", path);
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "[agent] socket = '%s': cannot remove the stale socket: %s", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static int sockfile_group(const char *name, gid_t *gid)
{
    char *end;
    long n = strtol(name, &end, 10);
    if (*name != '\0' && *end == '\0' && n >= 0) {
        *gid = (gid_t)n;
        return 0;
    }
    struct group *g = getgrnam(name);
    if (g == NULL)
        return -1;
    *gid = g->gr_gid;
    return 0;
}

/* The name the socket is bound under before it is linked into place. */
#define SOCKFILE_TEMP_SUFFIX "~"

int sockfile_open(const struct config *cfg, char *err, size_t errlen)
{
    const char *path = cfg->socket;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) + strlen(SOCKFILE_TEMP_SUFFIX) >= sizeof addr.sun_path) {
        snprintf(err, errlen, "[agent] socket = '%s' is not allowed (allowed: a path of at most "
                 "%zu bytes)", path, sizeof addr.sun_path - 1 - strlen(SOCKFILE_TEMP_SUFFIX));
        return -1;
    }
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s" SOCKFILE_TEMP_SUFFIX, path);
    const char *temp = addr.sun_path;
    gid_t gid = (gid_t)-1;
    if (cfg->socket_group[0] != '\0' && sockfile_group(cfg->socket_group, &gid) < 0) {
        snprintf(err, errlen, "[agent] socket_group = '%s': no such group", cfg->socket_group);
        return -1;
    }
    struct sockaddr_un final = {.sun_family = AF_UNIX};
    memcpy(final.sun_path, path, strlen(path));
    /* a temporary socket is left only by an agent that died starting */
    if (sockfile_mkdirs(path, err, errlen) < 0 ||
        sockfile_clear_stale(path, &final, err, errlen) < 0 ||
        sockfile_clear_stale(temp, &addr, err, errlen) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "[agent] socket = '%s': socket(): %s", path, strerror(errno));
        return -1;
    }
    /* Bound under a temporary name with no permissions at all, listening,
     * given its group and mode, and only then linked to its path (link()
     * fails if another agent took the path since the check above, as bind()
     * would): whoever finds the path can connect at once, and nobody could
     * ever open it more widely than configured. */
    mode_t old = umask(0777);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    int saved = errno;
    umask(old);
    if (rc < 0 || listen(fd, SOMAXCONN) < 0 ||
        (gid != (gid_t)-1 && chown(temp, (uid_t)-1, gid) < 0) ||
        chmod(temp, (mode_t)cfg->socket_mode) < 0 || link(temp, path) < 0) {
        if (rc == 0)
            saved = errno;
        if (saved == EEXIST)
            snprintf(err, errlen, "[agent] socket = '%s': another agent took the path while "
                     "this one started", path);
        else
            snprintf(err, errlen, "[agent] socket = '%s': %s", path, strerror(saved));
        if (rc == 0)
            unlink(temp);
        close(fd);
        return -1;
    }
    unlink(temp);
    return fd;
}
