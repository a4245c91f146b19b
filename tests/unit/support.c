/*
 * support: JSON checking and temporary files (see support.h).
 */
#define _GNU_SOURCE /* nftw */
#include "support.h"

#include "account.h"
#include "encode.h"
#include "metrics.h"
#include "registry.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

json_t *js_parse_flags(const char *text, size_t len, size_t flags)
{
    json_error_t error;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY | flags, &error);
    if (root == NULL)
        fprintf(stderr, "not valid JSON (%s at position %d): %.*s\n", error.text, error.position,
                (int)(len > 2000 ? 2000 : len), text);
    return root;
}

json_t *js_parse(const char *text, size_t len)
{
    return js_parse_flags(text, len, 0);
}

json_t *js_parse_buf(const struct buf *b)
{
    return js_parse(b->data ? b->data : "", b->len);
}

json_t *js_at(json_t *root, const char *path)
{
    json_t *node = root;
    const char *p = path;
    while (node != NULL) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (json_is_array(node)) { /* a number selects an element */
            char *end;
            unsigned long i = strtoul(p, &end, 10);
            node = end == p + len ? json_array_get(node, i) : NULL;
        } else if (json_is_object(node)) {
            node = json_object_getn(node, p, len);
        } else {
            return NULL;
        }
        if (slash == NULL)
            return node;
        p = slash + 1;
    }
    return NULL;
}

json_t *js_encode_value(const msgpack_object *obj)
{
    struct buf out = BUF_INIT;
    int rc = encode_value(&out, obj, 0);
    json_t *root = NULL;
    if (rc != 0 || out.failed)
        fprintf(stderr, "encode_value failed: %s\n", rc != 0 ? "too deep" : "out of memory");
    else
        root = js_parse_buf(&out);
    buf_free(&out);
    return root;
}

const char *uuid_v7_problem(const char *text, int64_t ms)
{
    if (text == NULL || strlen(text) != 36)
        return "not 36 characters";
    for (size_t i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : strchr("0123456789abcdef", text[i]) == NULL || !text[i])
            return "not 8-4-4-4-12 lower-case hex digits";
    }
    if (text[14] != '7')
        return "version nibble is not 7";
    if (strchr("89ab", text[19]) == NULL)
        return "variant bits are not 10";
    char hex[13];
    memcpy(hex, text, 8);
    memcpy(hex + 8, text + 9, 4);
    hex[12] = '\0';
    if (strtoll(hex, NULL, 16) != ms)
        return "first 48 bits are not the timestamp";
    return NULL;
}

char *tmp_file(const char *contents)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    if (path == NULL)
        return NULL;
    snprintf(path, 4096, "%s/unit-test-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        free(path);
        return NULL;
    }
    size_t len = strlen(contents);
    if (write(fd, contents, len) != (ssize_t)len) {
        perror("write");
        close(fd);
        unlink(path);
        free(path);
        return NULL;
    }
    close(fd);
    return path;
}

void tmp_file_remove(char *path)
{
    if (path == NULL)
        return;
    unlink(path);
    free(path);
}

/* nftw's callback: each entry, the deepest first. */
static int tmp_dir_remove_entry(const char *path, const struct stat *st, int type,
                                struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

int tmp_dir_remove(const char *dir)
{
    if (nftw(dir, tmp_dir_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return -1;
    return access(dir, F_OK) == 0 ? -1 : 0;
}

struct registry *registry_from_names(const char *names)
{
    char err[256];
    char *path = tmp_file(names);
    struct registry *r = path ? registry_load(path, err, sizeof err) : NULL;
    if (path != NULL && r == NULL)
        fprintf(stderr, "registry_from_names: %s\n", err);
    tmp_file_remove(path);
    return r;
}

int fresh_config(struct config *cfg, char **env)
{
    char err[CONFIG_ERR_LEN];
    account_reset();
    metrics_reset();
    if (config_load(cfg, NULL, env, err, sizeof err) < 0) {
        fprintf(stderr, "    the configuration does not load: %s\n", err);
        return 0;
    }
    return 1;
}
