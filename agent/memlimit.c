/*
 * memlimit: the cgroup's memory limit (see memlimit.h).
 */
#include "memlimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The number in file, or -1 for "max", a number too large to be a limit,
 * or a file that cannot be read. */
static int64_t memlimit_read(const char *path)
{
    char text[64] = "";
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    if (fgets(text, sizeof text, f) == NULL)
        text[0] = '\0';
    fclose(f);
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || v == 0 || v >= (1ULL << 62)) /* "max", or v1's "no limit" */
        return -1;
    return (int64_t)v;
}

int64_t memlimit_bytes(const char *proc_cgroup, const char *root)
{
    FILE *f = fopen(proc_cgroup, "r");
    char line[1024], path[2048];
    int64_t limit = -1;
    if (f == NULL)
        return -1;
    while (limit < 0 && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *controllers = strchr(line, ':');
        char *where = controllers ? strchr(controllers + 1, ':') : NULL;
        if (where == NULL)
            continue;
        *where++ = '\0';
        controllers++;
        if (controllers[0] == '\0') /* v2: "0::/path" */
            snprintf(path, sizeof path, "%s%s/memory.max", root, where);
        else if (strstr(controllers, "memory") != NULL) /* v1: "4:memory:/path" */
            snprintf(path, sizeof path, "%s/memory%s/memory.limit_in_bytes", root, where);
        else
            continue;
        limit = memlimit_read(path);
    }
    fclose(f);
    return limit;
}
