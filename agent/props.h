/*
 * props: the properties the agent adds to every event ([properties] in the
 * config file, plus $lib and $lib_version).
 *
 * A dotted key nests: "app_properties.orchest_version" is the child
 * "orchest_version" of the node "app_properties". Leaves hold their value
 * already encoded as JSON: a value that reads as a JSON scalar (true, false,
 * null, a number, a "quoted string") keeps that type, anything else becomes a
 * string. The encoder merges this tree into each event's own properties.
 */
#ifndef TA_PROPS_H
#define TA_PROPS_H

#include <stddef.h>

struct props_node {
    char *key;
    size_t key_len;
    char *key_json;               /* the key as JSON with its colon, "key": */
    size_t key_json_len;
    char *json;                   /* encoded value of a leaf; NULL for an inner node */
    size_t json_len;
    struct props_node *children;  /* inner node's children, in the order they were added */
    size_t nchildren;
};

/* Create an empty root. Returns NULL if out of memory. */
struct props_node *props_new(void);
/* Add `dotted_key = value`; a key already set is an error. Returns 0, or -1
 * with a message in err. */
int props_add(struct props_node *root, const char *dotted_key, const char *value, char *err,
              size_t errlen);
/* The same, but a value already set under dotted_key is replaced (an
 * override from the environment). */
int props_set(struct props_node *root, const char *dotted_key, const char *value, char *err,
              size_t errlen);
/* Child of `node` named key[0..len), or NULL. */
const struct props_node *props_child(const struct props_node *node, const char *key, size_t len);
void props_free(struct props_node *root);
/* The same keys, in the same order, with the same values. */
int props_equal(const struct props_node *a, const struct props_node *b);

/* 1 if text is a complete JSON scalar (true, false, null, number, string). */
int props_is_json_scalar(const char *text);

#endif
