/*
 * value: a strict JSON parser into a small tree (see value.h).
 *
 * A recursive-descent parser whose recursion is bounded by VALUE_MAX_DEPTH,
 * so hostile input cannot exhaust the stack. Errors carry the byte offset of
 * the first byte that does not fit, and say what was found and what was
 * expected there.
 */
#include "value.h"

#include "buf.h"  /* proto/buf.c: the growable buffer */
#include "json.h" /* proto/json.c: json_utf8_sequence_length */

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct value_parser {
    const unsigned char *s;
    size_t len;
    size_t pos;
    struct value_error *err;
};


static int value_parse_any(struct value_parser *p, struct value *out, int depth);

static int value_fail(struct value_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int value_fail(struct value_parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof p->err->message, fmt, ap);
    va_end(ap);
    p->err->offset = p->pos;
    return -1;
}

/* What stands at the parser's position, for a message: 'x', byte 0xff, end of input. */
static const char *value_found(const struct value_parser *p, char *buf, size_t buflen)
{
    if (p->pos >= p->len)
        return "the end of the input";
    unsigned char c = p->s[p->pos];
    if (c > 0x20 && c < 0x7f)
        snprintf(buf, buflen, "'%c'", c);
    else
        snprintf(buf, buflen, "byte 0x%02x", c);
    return buf;
}

static int value_unexpected(struct value_parser *p, const char *expected)
{
    char buf[16];
    return value_fail(p, "expected %s, found %s", expected, value_found(p, buf, sizeof buf));
}

static void value_skip_space(struct value_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\r' || p->s[p->pos] == '\n'))
        p->pos++;
}

/* Append code point cp as UTF-8. */
static int value_put_code_point(struct buf *t, uint32_t cp)
{
    unsigned char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xf0 | cp >> 18);
        b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return buf_append(t, b, n);
}

/* Four hex digits after "\u" at the parser's position. */
static int value_hex4(struct value_parser *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (p->pos >= p->len)
            return value_unexpected(p, "4 hex digits after \\u");
        unsigned char c = p->s[p->pos];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return value_unexpected(p, "4 hex digits after \\u");
        v = v << 4 | (uint32_t)d;
        p->pos++;
    }
    *out = v;
    return 0;
}

/* The escape after a backslash (the parser stands on the character after it). */
static int value_parse_escape(struct value_parser *p, struct buf *t)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    size_t at = p->pos - 1;
    if (p->pos >= p->len)
        return value_unexpected(p, "an escape after '\\'");
    const char *hit = memchr(from, p->s[p->pos], sizeof from - 1);
    if (hit != NULL) {
        p->pos++;
        return buf_append_char(t, to[hit - from]) ? value_fail(p, "out of memory") : 0;
    }
    if (p->s[p->pos] != 'u')
        return value_unexpected(p, "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX");
    p->pos++;
    uint32_t cp = 0, low = 0;
    if (value_hex4(p, &cp) < 0)
        return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff) {
        p->pos = at;
        return value_fail(p, "a lone low surrogate \\u%04X (not a character)", (unsigned)cp);
    }
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
            p->pos = at;
            return value_fail(p, "a high surrogate \\u%04X not followed by a low one",
                              (unsigned)cp);
        }
        p->pos += 2;
        if (value_hex4(p, &low) < 0)
            return -1;
        if (low < 0xdc00 || low > 0xdfff) {
            p->pos = at;
            return value_fail(p, "a high surrogate \\u%04X followed by \\u%04X, not a low one",
                              (unsigned)cp, (unsigned)low);
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    return value_put_code_point(t, cp) ? value_fail(p, "out of memory") : 0;
}

/* A string; the parser stands on its opening quote. */
static int value_parse_string(struct value_parser *p, struct value *out)
{
    struct buf t = BUF_INIT;
    size_t start = p->pos++;
    for (;;) {
        if (p->pos >= p->len) {
            buf_free(&t);
            p->pos = start;
            return value_fail(p, "a string that is never closed (missing '\"')");
        }
        unsigned char c = p->s[p->pos];
        size_t n;
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            p->pos++;
            if (value_parse_escape(p, &t) < 0)
                goto fail;
            continue;
        }
        if (c < 0x20) {
            value_fail(p, "a control character (byte 0x%02x) inside a string: write it as "
                          "\\u%04x", c, c);
            goto fail;
        }
        n = json_utf8_sequence_length(p->s + p->pos, p->len - p->pos);
        if (n == 0) {
            value_fail(p, "byte 0x%02x that is not valid UTF-8", c);
            goto fail;
        }
        if (buf_append(&t, p->s + p->pos, n) < 0) {
            value_fail(p, "out of memory");
            goto fail;
        }
        p->pos += n;
    }
    if (buf_append_char(&t, '\0') < 0) { /* NUL-terminated, not counted */
        value_fail(p, "out of memory");
        goto fail;
    }
    out->type = VALUE_STRING;
    out->as.str.ptr = t.data;
    out->as.str.len = t.len - 1;
    return 0;
fail:
    buf_free(&t);
    return -1;
}

static size_t value_digits(struct value_parser *p)
{
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++, n++;
    return n;
}

/* The integer text[0..len) (optional '-', then digits) as int64 or uint64. */
static int value_integer(const char *text, size_t len, struct value *out)
{
    int negative = text[0] == '-';
    uint64_t mag = 0;
    for (size_t i = (size_t)negative; i < len; i++) {
        unsigned d = (unsigned)(text[i] - '0');
        if (mag > (UINT64_MAX - d) / 10)
            return -1;
        mag = mag * 10 + d;
    }
    if (!negative || mag == 0) {
        out->type = VALUE_UINT;
        out->as.u = mag;
    } else if (mag <= (uint64_t)INT64_MAX + 1) {
        out->type = VALUE_INT;
        out->as.i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        return -1;
    }
    return 0;
}

static int value_parse_number(struct value_parser *p, struct value *out)
{
    size_t start = p->pos;
    int integral = 1;
    if (p->s[p->pos] == '-')
        p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            return value_fail(p, "a number with a leading zero (not JSON)");
    } else if (value_digits(p) == 0)
        return value_unexpected(p, "a digit");
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        integral = 0;
        if (value_digits(p) == 0)
            return value_unexpected(p, "a digit after the decimal point");
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        integral = 0;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (value_digits(p) == 0)
            return value_unexpected(p, "a digit in the exponent");
    }
    size_t len = p->pos - start;
    char *text = strndup((const char *)p->s + start, len);
    if (text == NULL)
        return value_fail(p, "out of memory");
    int rc = 0;
    if (integral) {
        if (value_integer(text, len, out) < 0) {
            p->pos = start;
            rc = value_fail(p, "integer %.40s%s is out of range (-9223372036854775808 to "
                               "18446744073709551615); quote it to send a string",
                            text, len > 40 ? "..." : "");
        }
    } else {
        out->type = VALUE_DOUBLE;
        out->as.d = strtod(text, NULL);
        if (isinf(out->as.d)) {
            p->pos = start;
            rc = value_fail(p, "number %.40s%s is too large for a double (about 1.8e308 at most)",
                            text, len > 40 ? "..." : "");
        }
    }
    free(text);
    return rc;
}

static int value_parse_word(struct value_parser *p, struct value *out)
{
    static const struct {
        const char *word;
        enum value_type type;
        int boolean;
    } words[] = {{"true", VALUE_BOOL, 1}, {"false", VALUE_BOOL, 0}, {"null", VALUE_NULL, 0}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].word);
        if (p->len - p->pos >= n && memcmp(p->s + p->pos, words[i].word, n) == 0) {
            p->pos += n;
            out->type = words[i].type;
            out->as.boolean = words[i].boolean;
            return 0;
        }
    }
    return value_unexpected(p, "a JSON value (a string in \"quotes\", a number, true, false, "
                               "null, [...] or {...})");
}

/* Step over `c` (after any space) if it is next: 1 if it was, else 0. */
static int value_accept(struct value_parser *p, char c)
{
    value_skip_space(p);
    if (p->pos < p->len && p->s[p->pos] == (unsigned char)c) {
        p->pos++;
        return 1;
    }
    return 0;
}

/* After an array element or object member: 1 if ',' says another follows,
 * 0 if `close` ends the container, -1 otherwise. */
static int value_after_item(struct value_parser *p, char close, const char *expected)
{
    if (value_accept(p, ','))
        return 1;
    if (value_accept(p, close))
        return 0;
    return value_unexpected(p, expected);
}

static int value_parse_array(struct value_parser *p, struct value *out, int depth)
{
    int more;
    out->type = VALUE_ARRAY;
    out->as.array.items = NULL;
    out->as.array.len = 0;
    p->pos++;
    if (value_accept(p, ']'))
        return 0;
    do {
        struct value item = {0};
        if (value_parse_any(p, &item, depth) < 0)
            return -1;
        struct value *grown =
            realloc(out->as.array.items, (out->as.array.len + 1) * sizeof *grown);
        if (grown == NULL) {
            value_free(&item);
            return value_fail(p, "out of memory");
        }
        grown[out->as.array.len++] = item;
        out->as.array.items = grown;
    } while ((more = value_after_item(p, ']', "',' or ']' after an array element")) == 1);
    return more;
}

static int value_parse_object(struct value_parser *p, struct value *out, int depth)
{
    int more;
    *out = value_object();
    p->pos++;
    if (value_accept(p, '}'))
        return 0;
    do {
        struct value key = {0}, member = {0};
        value_skip_space(p);
        size_t key_at = p->pos;
        if (p->pos >= p->len || p->s[p->pos] != '"')
            return value_unexpected(p, "a \"quoted\" key");
        if (value_parse_string(p, &key) < 0)
            return -1;
        int nul = memchr(key.as.str.ptr, '\0', key.as.str.len) != NULL;
        if (nul || value_find(out, key.as.str.ptr, key.as.str.len) != NULL) {
            p->pos = key_at;
            if (nul)
                value_fail(p, "a key containing \\u0000 (not supported)");
            else
                value_fail(p, "duplicate key \"%.60s\" in an object", key.as.str.ptr);
            value_free(&key);
            return -1;
        }
        if (!value_accept(p, ':')) {
            value_free(&key);
            return value_unexpected(p, "':' after an object key");
        }
        if (value_parse_any(p, &member, depth) < 0) {
            value_free(&key);
            return -1;
        }
        struct value_member *m = value_add(out, key.as.str.ptr, key.as.str.len, member, -1);
        value_free(&key);
        if (m == NULL)
            return value_fail(p, "out of memory");
    } while ((more = value_after_item(p, '}', "',' or '}' after an object member")) == 1);
    return more;
}

static int value_parse_any(struct value_parser *p, struct value *out, int depth)
{
    int rc;
    value_skip_space(p);
    if (p->pos >= p->len)
        return value_unexpected(p, "a JSON value");
    unsigned char c = p->s[p->pos];
    if (c == '[' || c == '{') {
        if (depth >= VALUE_MAX_DEPTH)
            return value_fail(p, "arrays and objects nested deeper than %d levels (the "
                                 "protocol's limit)", VALUE_MAX_DEPTH);
        rc = c == '[' ? value_parse_array(p, out, depth + 1) : value_parse_object(p, out, depth + 1);
        if (rc < 0)
            value_free(out);
        return rc;
    }
    if (c == '"')
        return value_parse_string(p, out);
    if (c == '-' || (c >= '0' && c <= '9'))
        return value_parse_number(p, out);
    return value_parse_word(p, out);
}

int value_parse(const char *text, size_t len, struct value *out, struct value_error *err)
{
    struct value_parser p = {(const unsigned char *)text, len, 0, err};
    struct value v = {0};
    if (value_parse_any(&p, &v, 0) < 0)
        return -1;
    value_skip_space(&p);
    if (p.pos < p.len) {
        value_free(&v);
        return value_unexpected(&p, "nothing more after the JSON value");
    }
    *out = v;
    return 0;
}

void value_free(struct value *v)
{
    if (v->type == VALUE_STRING) {
        free(v->as.str.ptr);
    } else if (v->type == VALUE_ARRAY) {
        for (size_t i = 0; i < v->as.array.len; i++)
            value_free(&v->as.array.items[i]);
        free(v->as.array.items);
    } else if (v->type == VALUE_OBJECT) {
        for (size_t i = 0; i < v->as.object.len; i++) {
            free(v->as.object.members[i].key);
            value_free(&v->as.object.members[i].value);
        }
        free(v->as.object.members);
    }
    v->type = VALUE_NULL;
}

struct value value_object(void)
{
    struct value v;
    v.type = VALUE_OBJECT;
    v.as.object.members = NULL;
    v.as.object.len = 0;
    return v;
}

struct value_member *value_find(const struct value *obj, const char *key, size_t len)
{
    for (size_t i = 0; i < obj->as.object.len; i++) {
        struct value_member *m = &obj->as.object.members[i];
        if (m->key_len == len && memcmp(m->key, key, len) == 0)
            return m;
    }
    return NULL;
}

struct value_member *value_add(struct value *obj, const char *key, size_t len, struct value v,
                               int tag)
{
    char *copy = strndup(key, len);
    struct value_member *grown =
        copy ? realloc(obj->as.object.members, (obj->as.object.len + 1) * sizeof *grown) : NULL;
    if (grown == NULL) {
        free(copy);
        value_free(&v);
        return NULL;
    }
    obj->as.object.members = grown;
    struct value_member *m = &grown[obj->as.object.len++];
    m->key = copy;
    m->key_len = len;
    m->tag = tag;
    m->value = v;
    return m;
}

const char *value_type_name(enum value_type type)
{
    switch (type) {
    case VALUE_NULL:
        return "null";
    case VALUE_BOOL:
        return "a boolean";
    case VALUE_INT:
    case VALUE_UINT:
        return "an integer";
    case VALUE_DOUBLE:
        return "a number";
    case VALUE_STRING:
        return "a string";
    case VALUE_ARRAY:
        return "an array";
    case VALUE_OBJECT:
        return "an object";
    }
    return "a value";
}
