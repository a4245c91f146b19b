/*
 * enospc_fault: an LD_PRELOAD shim for the spool tests. While the file
 * named by $ENOSPC_FAULT_FLAG exists, writes to spool segment files (*.seg)
 * fail as on a full disk: a write is first cut short (half of it is
 * written), the next one fails with ENOSPC. Other files, and every write
 * while the flag is absent, go to the C library's pwrite() as they are.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* Is fd a spool segment file, while the flag exists? */
static int enospc_fault_now(int fd)
{
    const char *flag = getenv("ENOSPC_FAULT_FLAG");
    if (flag == NULL || access(flag, F_OK) != 0)
        return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path);
    return n > 4 && memcmp(path + n - 4, ".seg", 4) == 0;
}

/* How many of count bytes a write to fd may write now: all, half (a write
 * cut short), or -1 with errno ENOSPC. */
static ssize_t enospc_fault_allow(int fd, size_t count)
{
    static __thread int cut_short; /* this thread's last write was cut short */
    if (!enospc_fault_now(fd))
        return (ssize_t)count;
    if (count > 1 && !cut_short) {
        cut_short = 1;
        return (ssize_t)(count / 2);
    }
    cut_short = 0;
    errno = ENOSPC;
    return -1;
}

/* pwrite() and pwrite64() (what pwrite is with _FILE_OFFSET_BITS = 64) are
 * one function where off_t is 64 bits wide, as on every system the agent
 * is built for. */
_Static_assert(sizeof(off_t) == sizeof(off64_t), "off_t is not 64 bits wide");
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off64_t);

/* Fail as asked, or call the C library's `name` with what may be written. */
static ssize_t enospc_fault_pwrite(const char *name, pwrite_fn *real, int fd, const void *data,
                                   size_t count, off64_t offset)
{
    ssize_t allow = enospc_fault_allow(fd, count);
    if (allow < 0)
        return -1;
    if (*real == NULL)
        *real = (pwrite_fn)dlsym(RTLD_NEXT, name);
    return (*real)(fd, data, (size_t)allow, offset);
}

ssize_t pwrite(int fd, const void *data, size_t count, off_t offset)
{
    static pwrite_fn real;
    return enospc_fault_pwrite("pwrite", &real, fd, data, count, offset);
}

ssize_t pwrite64(int fd, const void *data, size_t count, off64_t offset)
{
    static pwrite_fn real;
    return enospc_fault_pwrite("pwrite64", &real, fd, data, count, offset);
}
