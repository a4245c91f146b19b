/*
 * registry: the set of event names the agent accepts ([events] registry).
 *
 * The file lists one name a line; blank lines and lines starting with '#' are
 * ignored. Lookups are by (pointer, length) so names can be checked straight
 * from the msgpack buffer without copying.
 */
#ifndef TA_REGISTRY_H
#define TA_REGISTRY_H

#include <stddef.h>

struct registry;

/* Load `path`. Returns NULL with a message in err if it cannot be read or
 * holds no names. */
struct registry *registry_load(const char *path, char *err, size_t errlen);
int registry_contains(const struct registry *r, const char *name, size_t len);
size_t registry_count(const struct registry *r);
void registry_free(struct registry *r);

#endif
