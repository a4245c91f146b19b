/*
 * memlimit: the memory limit of the agent's container, read from its
 * cgroup (v2 memory.max, or v1 memory.limit_in_bytes), so that start-up can
 * warn when buffer.max_bytes cannot fit in it.
 */
#ifndef TA_MEMLIMIT_H
#define TA_MEMLIMIT_H

#include <stdint.h>

/* The limit in bytes, or -1 when there is none (or it cannot be read).
 * proc_cgroup is /proc/self/cgroup and root /sys/fs/cgroup, but for tests. */
int64_t memlimit_bytes(const char *proc_cgroup, const char *root);

#endif
