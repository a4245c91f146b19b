/*
 * props: the tree of properties added to every event (see props.h).
 */
#include "props.h"

#include "buf.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct props_node *props_new(void)
{
    return calloc(1, sizeof(struct props_node));
}

const struct props_node *props_child(const struct props_node *node, const char *key, size_t len)
{
    for (size_t i = 0; i < node->nchildren; i++) {
        const struct props_node *c = &node->children[i];
        if (c->key_len == len && memcmp(c->key, key, len) == 0)
            return c;
    }
    return NULL;
}

static struct props_node *props_add_child(struct props_node *node, const char *key, size_t len)
{
    struct props_node *grown =
        realloc(node->children, (node->nchildren + 1) * sizeof(struct props_node));
    if (grown == NULL)
        return NULL;
    node->children = grown;
    struct props_node *c = &grown[node->nchildren];
    memset(c, 0, sizeof *c);
    c->key = strndup(key, len);
    if (c->key == NULL)
        return NULL;
    c->key_len = len;
    struct buf text = BUF_INIT; /* written once here, copied into every event */
    json_write_string(&text, key, len);
    buf_append_char(&text, ':');
    if (text.failed || (c->key_json = strndup(text.data, text.len)) == NULL) {
        buf_free(&text);
        free(c->key);
        return NULL;
    }
    c->key_json_len = text.len;
    buf_free(&text);
    node->nchildren++;
    return c;
}

static int props_is_json_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return 0;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

/* The four hex digits at s[at..at+4) (within s[0..end)), or -1. */
static long props_hex4(const char *s, size_t end, size_t at)
{
    long v = 0;
    for (size_t k = at; k < at + 4; k++) {
        if (k >= end || !strchr("0123456789abcdefABCDEF", s[k]) || s[k] == '\0')
            return -1;
        v = v * 16 + (s[k] <= '9' ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10);
    }
    return v;
}

static int props_is_json_string(const char *s)
{
    size_t len = strlen(s);
    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return 0;
    for (size_t i = 1; i < len - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"')
            return 0;
        if (c == '\\') {
            i++;
            if (i >= len - 1)
                return 0;
            if (s[i] == 'u') {
                long unit = props_hex4(s, len - 1, i + 1);
                if (unit < 0 || (unit >= 0xdc00 && unit <= 0xdfff))
                    return 0; /* malformed, or a low surrogate alone */
                i += 4;
                if (unit >= 0xd800 && unit <= 0xdbff) { /* must pair with a low surrogate */
                    long low = i + 2 < len - 1 && s[i + 1] == '\\' && s[i + 2] == 'u'
                                   ? props_hex4(s, len - 1, i + 3)
                                   : -1;
                    if (low < 0xdc00 || low > 0xdfff)
                        return 0;
                    i += 6;
                }
            } else if (!strchr("\"\\/bfnrt", s[i])) {
                return 0;
            }
        } else if (c >= 0x80) {
            size_t n = json_utf8_sequence_length((const unsigned char *)s + i, len - 1 - i);
            if (n == 0)
                return 0;
            i += n - 1;
        }
    }
    return 1;
}

int props_is_json_scalar(const char *text)
{
    return strcmp(text, "true") == 0 || strcmp(text, "false") == 0 ||
           strcmp(text, "null") == 0 || props_is_json_number(text) ||
           props_is_json_string(text);
}

static char *props_encode_value(const char *value)
{
    if (props_is_json_scalar(value))
        return strdup(value);
    struct buf b = BUF_INIT;
    if (json_write_string(&b, value, strlen(value)) < 0 || buf_append_char(&b, '\0') < 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}

static int props_put(struct props_node *root, const char *dotted_key, const char *value,
                     int replace, char *err, size_t errlen)
{
    struct props_node *node = root;
    const char *seg = dotted_key;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (len == 0) {
            snprintf(err, errlen, "property key '%s' has an empty part (allowed: name or a.b.c)",
                     dotted_key);
            return -1;
        }
        struct props_node *child = (struct props_node *)props_child(node, seg, len);
        if (dot == NULL) {
            if (child != NULL && !(replace && child->json != NULL)) {
                snprintf(err, errlen, "property '%s' is set twice, or conflicts with a nested key",
                         dotted_key);
                return -1;
            }
            char *json = props_encode_value(value);
            if (json == NULL || (child == NULL && (child = props_add_child(node, seg, len)) == NULL)) {
                free(json);
                goto nomem;
            }
            free(child->json);
            child->json = json;
            child->json_len = strlen(json);
            return 0;
        }
        if (child == NULL) {
            child = props_add_child(node, seg, len);
            if (child == NULL)
                goto nomem;
        } else if (child->json != NULL) {
            snprintf(err, errlen, "property '%s' nests under '%.*s', which already has a value",
                     dotted_key, (int)len, seg);
            return -1;
        }
        node = child;
        seg = dot + 1;
    }
nomem:
    snprintf(err, errlen, "out of memory adding property '%s'", dotted_key);
    return -1;
}

int props_add(struct props_node *root, const char *dotted_key, const char *value, char *err,
              size_t errlen)
{
    return props_put(root, dotted_key, value, 0, err, errlen);
}

int props_set(struct props_node *root, const char *dotted_key, const char *value, char *err,
              size_t errlen)
{
    return props_put(root, dotted_key, value, 1, err, errlen);
}

static void props_free_children(struct props_node *node)
{
    for (size_t i = 0; i < node->nchildren; i++) {
        props_free_children(&node->children[i]);
        free(node->children[i].key);
        free(node->children[i].key_json);
        free(node->children[i].json);
    }
    free(node->children);
}

void props_free(struct props_node *root)
{
    if (root == NULL)
        return;
    props_free_children(root);
    free(root);
}

int props_equal(const struct props_node *a, const struct props_node *b)
{
    if (a->nchildren != b->nchildren || (a->json == NULL) != (b->json == NULL) ||
        (a->json != NULL && strcmp(a->json, b->json) != 0))
        return 0;
    for (size_t i = 0; i < a->nchildren; i++)
        if (strcmp(a->children[i].key, b->children[i].key) != 0 ||
            !props_equal(&a->children[i], &b->children[i]))
            return 0;
    return 1;
}
