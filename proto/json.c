/*
 * json: JSON text primitives (see json.h).
 *
 * json_write_string_body copies runs of bytes that need no escaping in one
 * append, so ordinary ASCII text costs one scan and one memcpy.
 */
#include "json.h"

#include "swar.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int json_nesting_step(struct json_nesting *n, char c)
{
    if (n->in_string) {
        if (n->escaped)
            n->escaped = 0;
        else if (c == '\\')
            n->escaped = 1;
        else if (c == '"')
            n->in_string = 0;
        return 0;
    }
    if (c == '"') {
        n->in_string = 1;
    } else if (c == '{' || c == '[') {
        n->depth++;
        return 1;
    } else if (c == '}' || c == ']') {
        n->depth--;
        return -1;
    }
    return 0;
}

size_t json_utf8_sequence_length(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int json_utf8_is_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] >= 0x80) {
            size_t n = json_utf8_sequence_length(p + i, len - i);
            if (n == 0)
                return 0;
            i += n;
            continue;
        }
        uint64_t w;
        if (i + 8 <= len && (memcpy(&w, p + i, 8), swar_high(w) == 0))
            i += 8; /* eight ASCII bytes */
        else
            i++;
    }
    return 1;
}

/* A byte written as it is: printable ASCII other than '"' and '\\'. */
static inline int json_byte_is_plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* The escaped body of a string, without the surrounding quotes. */
static int json_write_string_body(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (json_byte_is_plain(c)) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = json_utf8_sequence_length(p + i, len - i);
            if (n > 0) {
                i += n;
                continue;
            }
        }
        if (buf_append(out, p + run, i - run) < 0)
            return -1;
        char esc[6] = {'\\', 0};
        size_t esc_len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (c < 0x20) {
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                esc_len = 6;
            } else { /* a byte that is not valid UTF-8 here: U+FFFD */
                esc[0] = (char)0xef;
                esc[1] = (char)0xbf;
                esc[2] = (char)0xbd;
                esc_len = 3;
            }
        }
        if (buf_append(out, esc, esc_len) < 0)
            return -1;
        i++;
        run = i;
    }
    return buf_append(out, p + run, len - run);
}

/* Whether any of the 8 bytes in w is not json_byte_is_plain. */
static int json_word_needs_look(uint64_t w)
{
    uint64_t low7 = swar_low7(w);
    return (swar_below(low7, 0x20) | swar_equal(low7, '"') | swar_equal(low7, '\\') |
            swar_high(w)) != 0;
}

int json_text_is_plain(const char *s, size_t len)
{
    size_t i = 0;
    for (uint64_t w; i + 8 <= len; i += 8) {
        memcpy(&w, s + i, 8);
        if (json_word_needs_look(w))
            return 0;
    }
    for (; i < len; i++)
        if (!json_byte_is_plain((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Up to three characters looked for while a string is written, each
 * broadcast to every byte of a word (see swar.h); on = 0: none. */
struct json_watch {
    int on;
    uint64_t c[3];
};

/* The bytes of w whose low seven bits are one of the watched characters. */
static inline uint64_t json_word_watched(uint64_t w, struct json_watch watch)
{
    if (!watch.on)
        return 0;
    uint64_t low7 = swar_low7(w), ones = 0x7f * SWAR_ONES;
    /* swar_equal for each, its complement taken once for the three */
    return ~(((low7 ^ watch.c[0]) + ones) & ((low7 ^ watch.c[1]) + ones) &
             ((low7 ^ watch.c[2]) + ones)) & SWAR_HIGHS;
}

/* json_write_string; with watch, also *seen = whether s holds one of the
 * watched characters, found in the same pass over s. */
static inline __attribute__((always_inline)) int
json_write_string_core(struct buf *out, const char *s, size_t len, struct json_watch watch,
                       int *seen)
{
    /* the common case, plain ASCII: one reservation, copied eight bytes at
     * a time as it is scanned */
    if ((out->cap - out->len < len + 2 || out->failed) && buf_reserve(out, len + 2) < 0)
        return -1;
    char *o = out->data + out->len;
    *o++ = '"';
    size_t i = 0;
    uint64_t w, watched = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, s + i, 8);
        if (json_word_needs_look(w))
            break;
        watched |= json_word_watched(w, watch);
        memcpy(o + i, &w, 8);
    }
    if (i < len && len >= 8 && i + 8 > len) { /* the last bytes, as the word ending there */
        memcpy(&w, s + len - 8, 8);
        if (!json_word_needs_look(w)) {
            watched |= json_word_watched(w, watch);
            memcpy(o + len - 8, &w, 8);
            i = len;
        }
    }
    if (watch.on) /* what the words did not cover, byte by byte */
        for (size_t k = i; k < len && watched == 0; k++)
            watched = json_word_watched((unsigned char)s[k], watch);
    if (seen != NULL)
        *seen = watched != 0;
    while (i < len && json_byte_is_plain((unsigned char)s[i])) {
        o[i] = s[i];
        i++;
    }
    if (i == len) {
        o[len] = '"';
        out->len += len + 2;
        return 0;
    }
    out->len += 1 + i; /* the rest, from the first byte that needs a look */
    if (json_write_string_body(out, s + i, len - i) < 0)
        return -1;
    return buf_append_char(out, '"');
}

int json_write_string(struct buf *out, const char *s, size_t len)
{
    static const struct json_watch none = {0, {0, 0, 0}};
    return json_write_string_core(out, s, len, none, NULL);
}

int json_write_string_watching(struct buf *out, const char *s, size_t len, const char watch[3],
                               int *seen)
{
    struct json_watch chars = {1, {0, 0, 0}};
    for (int k = 0; k < 3; k++)
        chars.c[k] = ((unsigned char)watch[k] & 0x7fu) * SWAR_ONES;
    return json_write_string_core(out, s, len, chars, seen);
}

int json_write_base64(struct buf *out, const void *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    if (buf_reserve(out, (len + 2) / 3 * 4 + 2) < 0)
        return -1;
    char *o = out->data + out->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    out->len = (size_t)(o - out->data);
    return 0;
}

/* A float stays a float: 1.0 is written "1.0", not the integer "1". */
static int json_append_float_text(struct buf *out, const char *text)
{
    int rc = buf_append_str(out, text);
    if (rc == 0 && strspn(text, "-0123456789") == strlen(text))
        rc = buf_append_str(out, ".0");
    return rc;
}

/* The decimal digits of v, written backwards from end; returns where they start. */
static char *json_digits(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

/* A double that is a decimal of up to 15 significant digits which %g
 * writes without an exponent (1e-4 <= |v| < 1e15): that decimal, as %.15g
 * would write it, in text. The test is exact: m and 10^k are exact doubles,
 * so m / 10^k is the double nearest m * 10^-k, as strtod reads it. Returns
 * the length, or 0 when v is not such a decimal. */
static size_t json_short_decimal(double v, char *text)
{
    static const double powers[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
                                    1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = fabs(v);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 0; k < 16; k++) {
        double m = a * powers[k];
        if (m >= 1e15)
            return 0; /* more than 15 significant digits */
        if (m != floor(m) || m / powers[k] != a)
            continue;
        char digits[24];
        char *end = digits + sizeof digits, *start = json_digits(end, (uint64_t)m);
        size_t n = (size_t)(end - start), len = 0;
        if (signbit(v))
            text[len++] = '-';
        if (n <= (size_t)k) { /* 0.000ddd */
            text[len++] = '0';
            text[len++] = '.';
            for (size_t z = n; z < (size_t)k; z++)
                text[len++] = '0';
        } else {
            memcpy(text + len, start, n - (size_t)k);
            len += n - (size_t)k;
            start += n - (size_t)k;
            if (k > 0)
                text[len++] = '.';
        }
        memcpy(text + len, start, (size_t)(end - start));
        len += (size_t)(end - start);
        while (k > 0 && text[len - 1] == '0') /* as %g: no trailing zeros */
            len--;
        if (text[len - 1] == '.')
            len--;
        return len;
    }
    return 0;
}

int json_write_double(struct buf *out, double v)
{
    if (!isfinite(v))
        return buf_append(out, "null", 4);
    char text[40];
    size_t short_len = json_short_decimal(v, text);
    if (short_len > 0) {
        text[short_len] = '\0';
        return json_append_float_text(out, text);
    }
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, v);
        if (strtod(text, NULL) == v)
            break;
    }
    return json_append_float_text(out, text);
}

int json_write_float(struct buf *out, float v)
{
    if (!isfinite(v))
        return buf_append(out, "null", 4);
    char text[40];
    int digits;
    for (digits = 1; digits < 9; digits++) { /* denormals may need fewer than 6 */
        snprintf(text, sizeof text, "%.*g", digits, (double)v);
        if (strtof(text, NULL) == v)
            break;
    }
    /* 100 rather than 1e+02: as many digits as the whole part has, when
     * %g would write it without an exponent at that precision */
    double whole = fabs((double)v);
    int whole_digits = whole >= 1 ? (int)floor(log10(whole)) + 1 : 0;
    if (whole_digits > digits && whole_digits <= 9)
        digits = whole_digits;
    snprintf(text, sizeof text, "%.*g", digits, (double)v);
    return json_append_float_text(out, text);
}


int json_write_int64(struct buf *out, int64_t v)
{
    char text[24];
    char *end = text + sizeof text;
    char *start = json_digits(end, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--start = '-';
    return buf_append(out, start, (size_t)(end - start));
}

int json_write_uint64(struct buf *out, uint64_t v)
{
    char text[24];
    char *end = text + sizeof text;
    char *start = json_digits(end, v);
    return buf_append(out, start, (size_t)(end - start));
}
