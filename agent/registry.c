/*
 * registry: a read-only hash set of event names (see registry.h).
 * Open addressing with linear probing, at most half full.
 */
#include "registry.h"

#include "hash.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct registry {
    char **slots;
    size_t nslots; /* a power of two */
    size_t count;
};

static char **registry_slot(const struct registry *r, const char *name, size_t len)
{
    size_t i = hash_bytes(name, len) & (r->nslots - 1);
    while (r->slots[i] != NULL &&
           !(strlen(r->slots[i]) == len && memcmp(r->slots[i], name, len) == 0))
        i = (i + 1) & (r->nslots - 1);
    return &r->slots[i];
}

static int registry_grow(struct registry *r)
{
    struct registry bigger = {NULL, r->nslots ? r->nslots * 2 : 64, 0};
    bigger.slots = calloc(bigger.nslots, sizeof(char *));
    if (bigger.slots == NULL)
        return -1;
    for (size_t i = 0; i < r->nslots; i++)
        if (r->slots[i] != NULL)
            *registry_slot(&bigger, r->slots[i], strlen(r->slots[i])) = r->slots[i];
    free(r->slots);
    r->slots = bigger.slots;
    r->nslots = bigger.nslots;
    return 0;
}

static int registry_add(struct registry *r, const char *name, size_t len)
{
    if ((r->count + 1) * 2 > r->nslots && registry_grow(r) < 0)
        return -1;
    char **slot = registry_slot(r, name, len);
    if (*slot != NULL)
        return 0; /* listed twice: harmless */
    if ((*slot = strndup(name, len)) == NULL)
        return -1;
    r->count++;
    return 0;
}

struct registry *registry_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "[events] registry = '%s': cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct registry *r = calloc(1, sizeof *r);
    char line[1024];
    int lineno = 0;
    while (r != NULL && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t raw = strlen(line);
        if (raw > 0 && line[raw - 1] != '\n' && !feof(f)) {
            int c; /* longer than any name: skip the rest of the line */
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            if (line[strspn(line, " \t")] != '#') {
                snprintf(err, errlen, "[events] registry = '%s': line %d is longer than %zu bytes "
                         "(allowed: event names of at most %zu bytes)", path, lineno,
                         sizeof line - 2, sizeof line - 2);
                fclose(f);
                registry_free(r);
                return NULL;
            }
            continue;
        }
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        size_t len = strlen(s);
        while (len > 0 && isspace((unsigned char)s[len - 1]))
            len--;
        if (len == 0 || s[0] == '#')
            continue;
        if (registry_add(r, s, len) < 0) {
            registry_free(r);
            r = NULL;
        }
    }
    fclose(f);
    if (r == NULL) {
        snprintf(err, errlen, "[events] registry = '%s': out of memory", path);
        return NULL;
    }
    if (r->count == 0) {
        snprintf(err, errlen,
                 "[events] registry = '%s': no event names in the file (allowed: one name a "
                 "line; set registry empty to accept any name)",
                 path);
        registry_free(r);
        return NULL;
    }
    return r;
}

int registry_contains(const struct registry *r, const char *name, size_t len)
{
    return *registry_slot(r, name, len) != NULL;
}

size_t registry_count(const struct registry *r)
{
    return r->count;
}

void registry_free(struct registry *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nslots; i++)
        free(r->slots[i]);
    free(r->slots);
    free(r);
}
