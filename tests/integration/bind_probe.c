/*
 * bind_probe: an LD_PRELOAD shim for the socket-permission test. Right
 * after each successful bind() of a Unix socket it appends the new file's
 * permissions (octal) and path to the file named by $BIND_PROBE_OUT: what
 * anyone could have opened at that moment, before the agent set the mode.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (real == NULL)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    int rc = real(fd, addr, len);
    const char *out = getenv("BIND_PROBE_OUT");
    struct stat st;
    if (rc == 0 && out != NULL && addr->sa_family == AF_UNIX) {
        const char *path = ((const struct sockaddr_un *)addr)->sun_path;
        FILE *f = fopen(out, "a");
        if (f != NULL && stat(path, &st) == 0)
            fprintf(f, "%04o %s\n", (unsigned)(st.st_mode & 07777), path);
        if (f != NULL)
            fclose(f);
    }
    return rc;
}
