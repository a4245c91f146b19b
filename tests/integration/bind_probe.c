/*
 * bind_probe: an LD_PRELOAD shim for the socket-permission tests. It
 * appends to the file named by $BIND_PROBE_OUT one line per successful
 * bind() of a Unix socket, "bind MODE PATH", and one per link() after it,
 * "link MODE LISTENING TO": the permissions (octal) anyone could have
 * opened the file with at that moment, and whether the bound socket was
 * already accepting when its final name appeared. With
 * $BIND_PROBE_TAKE_PATH set, a file appears at the final name just before
 * the link(), as if another agent had taken the path meanwhile.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static int bound_fd = -1;

static void probe_write(const char *what, const char *path, int with_listening)
{
    const char *out = getenv("BIND_PROBE_OUT");
    struct stat st;
    if (out == NULL || stat(path, &st) != 0)
        return;
    FILE *f = fopen(out, "a");
    if (f == NULL)
        return;
    fprintf(f, "%s %04o ", what, (unsigned)(st.st_mode & 07777));
    if (with_listening) {
        int accepting = 0;
        socklen_t len = sizeof accepting;
        if (getsockopt(bound_fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0)
            accepting = -1;
        fprintf(f, "%s ", accepting == 1 ? "listening" : "not-listening");
    }
    fprintf(f, "%s\n", path);
    fclose(f);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (real == NULL)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    int rc = real(fd, addr, len);
    if (rc == 0 && addr->sa_family == AF_UNIX) {
        bound_fd = fd;
        probe_write("bind", ((const struct sockaddr_un *)addr)->sun_path, 0);
    }
    return rc;
}

int link(const char *from, const char *to)
{
    static int (*real)(const char *, const char *);
    if (real == NULL)
        real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "link");
    /* $BIND_PROBE_TAKE_PATH: another agent's socket appears at the path
     * just before this one links its own there */
    if (bound_fd >= 0 && getenv("BIND_PROBE_TAKE_PATH") != NULL) {
        FILE *f = fopen(to, "w");
        if (f != NULL)
            fclose(f);
    }
    int rc = real(from, to);
    if (rc == 0 && bound_fd >= 0)
        probe_write("link", to, 1);
    return rc;
}
