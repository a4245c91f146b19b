/*
 * value: the JSON values telemetry-send reads (from `key:=JSON`, --json and
 * standard input), as a small tree, and a strict parser for them.
 *
 * Strict means RFC 8259 and nothing more: one value, no comments, no
 * trailing commas, no NaN, UTF-8 text only, no lone surrogate escapes. On top
 * of that it refuses what could not be sent faithfully: a duplicate key in an
 * object, a key containing U+0000, nesting deeper than VALUE_MAX_DEPTH, an
 * integer outside int64..uint64 and a number too large for a double.
 *
 * Numbers keep their kind: an integer literal (no fraction, no exponent) is
 * an int64 when negative and a uint64 otherwise, so 18446744073709551615
 * arrives exact; anything with a fraction or exponent is a double (strtod's
 * nearest, so 0.1 stays 0.1 and 1e300 stays 1e300).
 */
#ifndef TS_VALUE_H
#define TS_VALUE_H

#include <stddef.h>
#include <stdint.h>

/* The wire protocol's nesting limit (TLM_MAX_DEPTH): no document may be deeper. */
#define VALUE_MAX_DEPTH 32

enum value_type {
    VALUE_NULL,
    VALUE_BOOL,
    VALUE_INT,    /* negative integer */
    VALUE_UINT,   /* non-negative integer */
    VALUE_DOUBLE,
    VALUE_STRING,
    VALUE_ARRAY,
    VALUE_OBJECT
};

struct value_member;

struct value {
    enum value_type type;
    union {
        int boolean;
        int64_t i;
        uint64_t u;
        double d;
        struct {
            char *ptr; /* NUL-terminated; may also hold NULs (from \u0000) */
            size_t len;
        } str;
        struct {
            struct value *items;
            size_t len;
        } array;
        struct {
            struct value_member *members; /* in the order they were added */
            size_t len;
        } object;
    } as;
};

struct value_member {
    char *key; /* NUL-terminated, no NUL inside */
    size_t key_len;
    int tag;   /* the caller's (value_parse sets -1): telemetry-send notes the argument
                  that set the member */
    struct value value;
};

/* Where and why a parse failed: offset is the byte offset into the text. */
struct value_error {
    size_t offset;
    char message[200];
};

/* Parse text[0..len) as exactly one JSON value (surrounding whitespace
 * allowed) into *out. Returns 0, or -1 with *err filled in and *out untouched.
 * Out of memory is reported as an error like any other. */
int value_parse(const char *text, size_t len, struct value *out, struct value_error *err);

/* Free what v holds (not v itself); v becomes null. */
void value_free(struct value *v);

/* An empty object. */
struct value value_object(void);

/* The member of obj named key[0..len), or NULL. */
struct value_member *value_find(const struct value *obj, const char *key, size_t len);

/* Append a member to obj, taking ownership of v (freed on failure). The key
 * is copied. Returns the new member, or NULL if out of memory. The caller
 * checks for duplicates first (value_find). */
struct value_member *value_add(struct value *obj, const char *key, size_t len, struct value v,
                               int tag);

/* "a string", "an object", ... for messages. */
const char *value_type_name(enum value_type type);

#endif
