/*
 * fsync_fault: an LD_PRELOAD shim for the spool tests. While the file named
 * by $FSYNC_FAULT_FLAG exists, fsync() and fdatasync() fail with EIO, as
 * they do when a disk cannot write back; otherwise they are the C
 * library's own.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int fsync_fault_now(void)
{
    const char *flag = getenv("FSYNC_FAULT_FLAG");
    return flag != NULL && access(flag, F_OK) == 0;
}

/* Fail as asked, or call the C library's `name`. */
static int fsync_fault_call(const char *name, int (**real)(int), int fd)
{
    if (fsync_fault_now()) {
        errno = EIO;
        return -1;
    }
    if (*real == NULL)
        *real = (int (*)(int))dlsym(RTLD_NEXT, name);
    return (*real)(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    return fsync_fault_call("fdatasync", &real, fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    return fsync_fault_call("fsync", &real, fd);
}
