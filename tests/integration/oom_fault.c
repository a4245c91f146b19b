/*
 * oom_fault: an LD_PRELOAD shim for the spool tests. While the file named
 * by $OOM_FAULT_FLAG exists, realloc() fails (NULL, ENOMEM) in every thread
 * but the process's first one, as when the memory runs out for the spool's
 * thread; the first failure creates the file "<flag>.hit", so that a test
 * knows the fault was met. Otherwise realloc is the one that comes next
 * (the C library's, or a sanitizer's).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef void *(*realloc_fn)(void *, size_t);

/* Whether this thread's reallocs fail now. */
static int oom_fault_now(void)
{
    static __thread int first_thread = -1; /* not known yet */
    if (first_thread < 0)
        first_thread = gettid() == getpid();
    if (first_thread)
        return 0;
    const char *flag = getenv("OOM_FAULT_FLAG");
    if (flag == NULL || access(flag, F_OK) != 0)
        return 0;
    char hit[4096];
    if (snprintf(hit, sizeof hit, "%s.hit", flag) < (int)sizeof hit) {
        int fd = open(hit, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
    }
    return 1;
}

void *realloc(void *ptr, size_t size)
{
    static realloc_fn real;
    if (size > 0 && oom_fault_now()) {
        errno = ENOMEM;
        return NULL;
    }
    if (real == NULL)
        real = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    return real(ptr, size);
}
