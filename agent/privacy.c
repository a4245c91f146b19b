/*
 * privacy: the [privacy] rules (see privacy.h).
 */
#define _GNU_SOURCE /* FNM_CASEFOLD */
#include "privacy.h"

#include "hash.h"
#include "json.h"
#include "swar.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum privacy_kind { RULE_DROP, RULE_HASH, RULE_EMAIL, RULE_IPV4, RULE_IPV6, RULE_REGEX };

static const char *const privacy_value_names[] = {"email", "ipv4", "ipv6", NULL};

/* How a key rule's glob is matched: most are a word, with or without a
 * '*' at either end, matched as such; others go to fnmatch(). */
enum privacy_shape { SHAPE_EXACT, SHAPE_PREFIX, SHAPE_SUFFIX, SHAPE_CONTAINS, SHAPE_GLOB };

struct privacy_rule {
    enum privacy_kind kind;
    char *text;    /* "drop_keys *password*": how /metrics names it */
    char *pattern; /* the glob of a key rule */
    enum privacy_shape shape;
    const char *word; /* within pattern (lowercase): the literal part of the shape */
    size_t word_len;
    uint64_t count;
};

/* Recent keys and the rule each matched: events repeat the same few keys,
 * so most keys are looked up here instead of against every rule. */
#define PRIVACY_CACHE_SLOTS 512 /* 2^9: privacy_cache_index */
#define PRIVACY_CACHE_KEY_MAX 47
#define PRIVACY_CACHE_PROBES 4 /* slots a key may take, from the one its hash names */
#define PRIVACY_NO_RULE 0xffff

struct privacy_cache_slot {
    uint8_t len;   /* 0: empty */
    uint8_t plain; /* the key is JSON text as it is (json_text_is_plain) */
    uint16_t rule; /* index in rules, or PRIVACY_NO_RULE */
    char key[PRIVACY_CACHE_KEY_MAX];
};

struct privacy {
    struct privacy_rule *rules; /* the key rules, then the value rules */
    size_t nrules;
    size_t first_value_rule;
    int has_key_rules, has_redactions;
    regex_t regex;
    int has_regex;
    char *hash_key;
    struct privacy_cache_slot cache[PRIVACY_CACHE_SLOTS];
    unsigned cache_evictions;
};

/* ---- building -------------------------------------------------------- */

/* Lowercase (ASCII, as fnmatch's FNM_CASEFOLD in the C locale). */
static void privacy_lower(char *to, const char *from, size_t len)
{
    for (size_t i = 0; i < len; i++)
        to[i] = (char)tolower((unsigned char)from[i]);
}

/* Set r's shape from its pattern, which it lowercases. */
static void privacy_shape_of(struct privacy_rule *r)
{
    char *word = r->pattern;
    size_t len = strlen(word);
    privacy_lower(word, word, len);
    int star_before = 0, star_after = 0;
    while (len > 0 && word[0] == '*') {
        word++;
        len--;
        star_before = 1;
    }
    while (len > 0 && word[len - 1] == '*') {
        len--;
        star_after = 1;
    }
    r->word = word;
    r->word_len = len;
    if (memchr(word, '*', len) != NULL || memchr(word, '?', len) != NULL ||
        memchr(word, '[', len) != NULL || memchr(word, '\\', len) != NULL)
        r->shape = SHAPE_GLOB;
    else if (star_before && star_after)
        r->shape = SHAPE_CONTAINS;
    else
        r->shape = star_before ? SHAPE_SUFFIX : star_after ? SHAPE_PREFIX : SHAPE_EXACT;
}

static int privacy_add(struct privacy *p, enum privacy_kind kind, const char *setting,
                       const char *pattern, size_t len, const struct privacy *previous)
{
    struct privacy_rule *more = realloc(p->rules, (p->nrules + 1) * sizeof *more);
    if (more == NULL)
        return -1;
    p->rules = more;
    struct privacy_rule *r = &p->rules[p->nrules];
    *r = (struct privacy_rule){.kind = kind};
    size_t text_len = strlen(setting) + 1 + len + 1;
    r->text = malloc(text_len);
    r->pattern = strndup(pattern, len);
    if (r->text == NULL || r->pattern == NULL) {
        free(r->text);
        free(r->pattern);
        return -1;
    }
    snprintf(r->text, text_len, "%s %s", setting, r->pattern);
    if (kind == RULE_DROP || kind == RULE_HASH)
        privacy_shape_of(r);
    for (size_t i = 0; previous != NULL && i < previous->nrules; i++)
        if (strcmp(previous->rules[i].text, r->text) == 0)
            r->count = previous->rules[i].count;
    if (kind != RULE_DROP && kind != RULE_HASH && !p->has_redactions)
        p->first_value_rule = p->nrules; /* privacy_new adds every key rule first */
    p->nrules++;
    if (kind == RULE_DROP || kind == RULE_HASH)
        p->has_key_rules = 1;
    else
        p->has_redactions = 1;
    return 0;
}

/* Each item of a list separated by commas or spaces. */
static int privacy_each_item(const char *list, int (*fn)(void *arg, const char *item, size_t len),
                             void *arg)
{
    for (const char *s = list; *s != '\0';) {
        s += strspn(s, ", \t");
        size_t len = strcspn(s, ", \t");
        if (len > 0 && fn(arg, s, len) < 0)
            return -1;
        s += len;
    }
    return 0;
}

/* Which of privacy_value_names item (len bytes) is, or -1. */
static int privacy_value_index(const char *item, size_t len)
{
    for (int i = 0; privacy_value_names[i]; i++)
        if (strlen(privacy_value_names[i]) == len &&
            strncmp(privacy_value_names[i], item, len) == 0)
            return i;
    return -1;
}

struct privacy_build {
    struct privacy *p;
    enum privacy_kind kind;
    const char *setting;
    const struct privacy *previous;
};

static int privacy_build_item(void *arg, const char *item, size_t len)
{
    struct privacy_build *b = arg;
    enum privacy_kind kind = b->kind;
    if (kind == RULE_EMAIL) /* redact_values: which one (config_load checked it is one) */
        kind = (enum privacy_kind)(RULE_EMAIL + privacy_value_index(item, len));
    return privacy_add(b->p, kind, b->setting, item, len, b->previous);
}

struct privacy *privacy_new(const struct config *cfg, const struct privacy *previous, char *err,
                            size_t errlen)
{
    err[0] = '\0';
    if (cfg->privacy_drop_keys[0] == '\0' && cfg->privacy_hash_keys[0] == '\0' &&
        cfg->privacy_redact_values[0] == '\0' && cfg->privacy_redact_regex[0] == '\0')
        return NULL;
    struct privacy *p = calloc(1, sizeof *p);
    if (p == NULL)
        goto oom;
    struct privacy_build lists[] = {
        {p, RULE_DROP, "drop_keys", previous},
        {p, RULE_HASH, "hash_keys", previous},
        {p, RULE_EMAIL, "redact_values", previous},
    };
    const char *texts[] = {cfg->privacy_drop_keys, cfg->privacy_hash_keys,
                           cfg->privacy_redact_values};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (privacy_each_item(texts[i], privacy_build_item, &lists[i]) < 0)
            goto oom;
    if (cfg->privacy_redact_regex[0] != '\0') {
        if (regcomp(&p->regex, cfg->privacy_redact_regex, REG_EXTENDED) != 0) {
            snprintf(err, errlen, "[privacy] redact_regex does not compile");
            privacy_free(p);
            return NULL;
        }
        p->has_regex = 1;
        if (privacy_add(p, RULE_REGEX, "redact_regex", cfg->privacy_redact_regex,
                        strlen(cfg->privacy_redact_regex), previous) < 0)
            goto oom;
    }
    if ((p->hash_key = strdup(cfg->privacy_hash_key)) == NULL)
        goto oom;
    return p;
oom:
    privacy_free(p);
    snprintf(err, errlen, "out of memory for the [privacy] rules");
    return NULL;
}

void privacy_free(struct privacy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nrules; i++) {
        free(p->rules[i].text);
        free(p->rules[i].pattern);
    }
    free(p->rules);
    if (p->has_regex)
        regfree(&p->regex);
    free(p->hash_key);
    free(p);
}

struct privacy_error {
    char *text;
    size_t len;
};

static int privacy_check_value_name(void *arg, const char *item, size_t len)
{
    struct privacy_error *e = arg;
    if (privacy_value_index(item, len) >= 0)
        return 0;
    snprintf(e->text, e->len, "[privacy] redact_values: '%.*s' is not allowed (allowed: email, "
             "ipv4, ipv6, separated by commas)", (int)len, item);
    return -1;
}

int privacy_check_redactions(const char *values, const char *regex, char *err, size_t errlen)
{
    struct privacy_error e = {err, errlen};
    if (privacy_each_item(values, privacy_check_value_name, &e) < 0)
        return -1;
    if (regex[0] != '\0') {
        regex_t re;
        int rc = regcomp(&re, regex, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[200];
            regerror(rc, &re, why, sizeof why);
            snprintf(err, errlen, "[privacy] redact_regex = '%s' is not allowed: %s (allowed: a "
                     "POSIX extended regular expression)", regex, why);
            return -1;
        }
        regfree(&re);
    }
    return 0;
}

/* ---- keys -------------------------------------------------------------- */

/* Whether rule r matches name (len bytes, lowercase, NUL-terminated). */
static int privacy_matches(const struct privacy_rule *r, const char *name, size_t len)
{
    switch (r->shape) {
    case SHAPE_EXACT: return len == r->word_len && memcmp(name, r->word, len) == 0;
    case SHAPE_PREFIX: return len >= r->word_len && memcmp(name, r->word, r->word_len) == 0;
    case SHAPE_SUFFIX:
        return len >= r->word_len && memcmp(name + len - r->word_len, r->word, r->word_len) == 0;
    case SHAPE_CONTAINS: return memmem(name, len, r->word, r->word_len) != NULL;
    default: return fnmatch(r->pattern, name, 0) == 0; /* the pattern is lowercase too */
    }
}

/* The first key rule matching key, or PRIVACY_NO_RULE. */
static unsigned privacy_first_match(const struct privacy *p, const char *key, size_t len)
{
    char stack[256];
    char *name = len < sizeof stack ? stack : malloc(len + 1);
    if (name == NULL)
        return 0; /* out of memory: when in doubt, leave it out (rule 0 is a key rule) */
    privacy_lower(name, key, len);
    name[len] = '\0';
    len = strlen(name); /* up to a NUL in the key, as fnmatch() reads it */
    unsigned match = PRIVACY_NO_RULE;
    for (size_t i = 0; i < p->nrules && match == PRIVACY_NO_RULE; i++) {
        const struct privacy_rule *r = &p->rules[i];
        if ((r->kind == RULE_DROP || r->kind == RULE_HASH) && privacy_matches(r, name, len))
            match = (unsigned)i;
    }
    if (name != stack)
        free(name);
    return match;
}

/* Where key (1 to PRIVACY_CACHE_KEY_MAX bytes) is kept: a hash of its
 * length and its first and last eight bytes, which tell most keys apart
 * (those that share them share the probes, and are still compared whole). */
static size_t privacy_cache_index(const char *key, size_t len)
{
    uint64_t first, last;
    hash_ends(key, len, &first, &last);
    uint64_t h = (first ^ (last * UINT64_C(0x9e3779b97f4a7c15)) ^ len) *
                 UINT64_C(0xff51afd7ed558ccd);
    return (size_t)(h >> 55); /* 9 bits: PRIVACY_CACHE_SLOTS */
}

/* Whether a and b, len bytes (1 to PRIVACY_CACHE_KEY_MAX), are the same:
 * compared as words, the last one overlapping. */
static int privacy_same_key(const char *a, const char *b, size_t len)
{
    uint64_t x, y;
    if (len < 8) {
        if (len < 4)
            return a[0] == b[0] && a[len / 2] == b[len / 2] && a[len - 1] == b[len - 1];
        uint32_t h, k, t, u;
        memcpy(&h, a, 4);
        memcpy(&k, b, 4);
        memcpy(&t, a + len - 4, 4);
        memcpy(&u, b + len - 4, 4);
        return h == k && t == u;
    }
    for (size_t i = 0; i + 8 < len; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            return 0;
    }
    memcpy(&x, a + len - 8, 8);
    memcpy(&y, b + len - 8, 8);
    return x == y;
}

enum privacy_action privacy_key(struct privacy *p, const char *key, size_t len, int *plain)
{
    *plain = 0;
    if (!p->has_key_rules)
        return PRIVACY_KEEP;
    unsigned rule;
    struct privacy_cache_slot *slot = NULL; /* where key is kept, or will be */
    if (len > 0 && len <= PRIVACY_CACHE_KEY_MAX) {
        size_t home = privacy_cache_index(key, len);
        for (size_t i = 0; i < PRIVACY_CACHE_PROBES; i++) {
            struct privacy_cache_slot *s = &p->cache[(home + i) % PRIVACY_CACHE_SLOTS];
            if (s->len == len && privacy_same_key(s->key, key, len)) {
                rule = s->rule;
                *plain = s->plain;
                goto found;
            }
            if (s->len == 0 && slot == NULL)
                slot = s;
        }
        if (slot == NULL) /* all taken: one of them makes room, in turn */
            slot = &p->cache[(home + p->cache_evictions++ % PRIVACY_CACHE_PROBES) %
                             PRIVACY_CACHE_SLOTS];
    }
    rule = privacy_first_match(p, key, len);
    if (slot != NULL && p->nrules < PRIVACY_NO_RULE) {
        slot->len = (uint8_t)len;
        slot->rule = (uint16_t)rule;
        slot->plain = (uint8_t)(*plain = json_text_is_plain(key, len));
        memcpy(slot->key, key, len);
    }
found:
    if (rule == PRIVACY_NO_RULE)
        return PRIVACY_KEEP;
    p->rules[rule].count++;
    return p->rules[rule].kind == RULE_DROP ? PRIVACY_DROP : PRIVACY_HASH;
}

void privacy_write_hash(const struct privacy *p, struct buf *out, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char text[2 * EVP_MAX_MD_SIZE + 2];
    if (HMAC(EVP_sha256(), p->hash_key, (int)strlen(p->hash_key), data, len, md, &md_len) ==
        NULL) {
        buf_append_str(out, "\"" PRIVACY_REDACTED "\""); /* never the value itself */
        return;
    }
    text[0] = '"';
    for (unsigned int i = 0; i < md_len; i++) {
        text[1 + 2 * i] = hex[md[i] >> 4];
        text[2 + 2 * i] = hex[md[i] & 15];
    }
    text[1 + 2 * md_len] = '"';
    buf_append(out, text, 2 + 2 * md_len);
}

/* ---- values ------------------------------------------------------------ */

static int privacy_is_local(char c)
{
    return isalnum((unsigned char)c) || strchr("._%+-", c) != NULL;
}

static int privacy_is_domain(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-';
}

/* The first e-mail address at or after from: [*start, *end). */
static int privacy_find_email(const char *s, size_t len, size_t from, size_t *start, size_t *end)
{
    for (size_t at = from; at < len; at++) {
        if (s[at] != '@')
            continue;
        size_t left = at, right = at + 1;
        while (left > from && privacy_is_local(s[left - 1]))
            left--;
        while (right < len && privacy_is_domain(s[right]))
            right++;
        while (right > at + 1 && (s[right - 1] == '.' || s[right - 1] == '-'))
            right--;
        size_t dot = right;
        while (dot > at + 1 && s[dot - 1] != '.')
            dot--;
        if (left == at || dot <= at + 2 || right - dot < 2)
            continue;
        int tld_letters = 1;
        for (size_t i = dot; i < right; i++)
            tld_letters &= isalpha((unsigned char)s[i]) != 0;
        if (tld_letters) {
            *start = left;
            *end = right;
            return 1;
        }
    }
    return 0;
}

/* Whether c may be part of an address of family (AF_INET, AF_INET6). */
static inline int privacy_is_address_char(unsigned char c, int family)
{
    if ((c >= '0' && c <= '9') || c == '.')
        return 1;
    return family == AF_INET6 && (c == ':' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
}

/* Whether the separator at `at` can be inside an address: an IPv4
 * address has a digit on both sides of each '.', and in an IPv6 address
 * each ':' has a neighbour that may be part of it (a run of one character
 * is no address). Only runs with such a separator are looked at whole. */
static int privacy_separates_address(const char *s, size_t len, size_t from, size_t at,
                                     int family)
{
    unsigned char before = at > from ? (unsigned char)s[at - 1] : 0;
    unsigned char after = at + 1 < len ? (unsigned char)s[at + 1] : 0;
    if (family == AF_INET)
        return before >= '0' && before <= '9' && after >= '0' && after <= '9';
    return privacy_is_address_char(before, family) || privacy_is_address_char(after, family);
}

/* Whether text of n bytes holding `colons` colons, `dots` dots and (or
 * not) a "::" can be an address of family at all: what inet_pton() needs,
 * checked first because it is cheap (a time "07:08:09" is no IPv6 address).
 * IPv6: eight groups (seven colons), or six and an IPv4 address, or fewer
 * with "::". */
static int privacy_may_be_address(size_t n, size_t colons, size_t dots, int double_colon,
                                  int family)
{
    if (family == AF_INET)
        return n >= 7 && n <= 15 && dots == 3;
    return n >= 2 && n <= 45 && colons >= 2 &&
           (colons >= 7 || double_colon || (colons == 6 && dots == 3));
}

/* The first address of family (AF_INET, AF_INET6) at or after from: a
 * maximal run of the characters it may hold that inet_pton takes whole.
 * Only runs holding the family's separator ('.', ':') can be one: they are
 * found with memchr. */
static int privacy_find_address(const char *s, size_t len, size_t from, int family,
                                size_t *start, size_t *end)
{
    char separator = family == AF_INET ? '.' : ':';
    for (size_t i = from; i < len;) {
        const char *hit = memchr(s + i, separator, len - i);
        if (hit == NULL)
            return 0;
        size_t a = (size_t)(hit - s), b = a;
        if (!privacy_separates_address(s, len, from, a, family)) {
            i = a + 1; /* the run's other separators may */
            continue;
        }
        while (a > from && privacy_is_address_char((unsigned char)s[a - 1], family))
            a--;
        while (b < len && privacy_is_address_char((unsigned char)s[b], family))
            b++;
        size_t run_end = b;
        while (a < b && s[a] == '.')
            a++;
        while (b > a && s[b - 1] == '.')
            b--;
        size_t colons = 0, dots = 0;
        int double_colon = 0;
        for (size_t k = a; k < b && k - a <= 45; k++) {
            colons += s[k] == ':';
            dots += s[k] == '.';
            double_colon |= s[k] == ':' && k > a && s[k - 1] == ':';
        }
        if (privacy_may_be_address(b - a, colons, dots, double_colon, family)) {
            char text[64];
            unsigned char addr[16];
            memcpy(text, s + a, b - a);
            text[b - a] = '\0';
            if (inet_pton(family, text, addr) == 1) {
                *start = a;
                *end = b;
                return 1;
            }
        }
        i = run_end;
    }
    return 0;
}

static int privacy_find_regex(const struct privacy *p, const char *s, size_t len, size_t from,
                              size_t *start, size_t *end)
{
    for (size_t at = from; at < len;) {
        regmatch_t m = {.rm_so = (regoff_t)at, .rm_eo = (regoff_t)len};
        if (regexec(&p->regex, s, 1, &m, REG_STARTEND | (at > 0 ? REG_NOTBOL : 0)) != 0)
            return 0;
        if (m.rm_eo > m.rm_so) {
            *start = (size_t)m.rm_so;
            *end = (size_t)m.rm_eo;
            return 1;
        }
        at = (size_t)m.rm_so + 1; /* an empty match redacts nothing */
    }
    return 0;
}

static int privacy_find(const struct privacy *p, const struct privacy_rule *r, const char *s,
                        size_t len, size_t from, size_t *start, size_t *end)
{
    switch (r->kind) {
    case RULE_EMAIL: /* none without an '@', looked for first (memchr is fast) */
        return memchr(s + from, '@', len - from) != NULL &&
               privacy_find_email(s, len, from, start, end);
    case RULE_IPV4: return privacy_find_address(s, len, from, AF_INET, start, end);
    case RULE_IPV6: return privacy_find_address(s, len, from, AF_INET6, start, end);
    case RULE_REGEX: return privacy_find_regex(p, s, len, from, start, end);
    default: return 0;
    }
}

/* A word loaded from memory with its first byte lowest, as
 * privacy_load_tail builds them. */
static inline uint64_t privacy_little_endian(uint64_t w)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(w);
#else
    return w;
#endif
}

/* The first n (below 8) bytes at s as a word, the rest zero. */
static inline uint64_t privacy_load_tail(const char *s, size_t n)
{
    uint64_t w = 0;
    for (size_t k = 0; k < n; k++)
        w |= (uint64_t)(unsigned char)s[k] << (8 * k);
    return w;
}

/* Which built-in value kinds s can hold (the bit 1 << kind of each), from
 * counts of the characters each needs, taken eight bytes at a time: an
 * e-mail address an '@' and a '.'; an IPv4 address three '.'; an IPv6
 * address seven ':', or a "::", or six ':' and three '.' (an IPv4 ending).
 * A byte of 0x80 or more can count as any of them (the rule then looks and
 * finds nothing): none is missed. */
static unsigned privacy_kinds_present(const char *s, size_t len)
{
    uint64_t ats = 0, dots = 0, colons = 0;
    int double_colon = 0, colon_before = 0;
    for (size_t i = 0; i < len; i += 8) {
        size_t n = len - i < 8 ? len - i : 8;
        uint64_t w;
        if (n == 8) {
            memcpy(&w, s + i, 8);
        } else if (len >= 8) { /* the word ending at len, less the bytes seen: zeros */
            memcpy(&w, s + len - 8, 8);
            w = privacy_little_endian(w) >> (8 * (8 - n));
        } else {
            w = privacy_load_tail(s + i, n); /* the zero bytes after are none of them */
        }
        uint64_t low7 = swar_low7(w);
        uint64_t at = swar_equal(low7, '@'), dot = swar_equal(low7, '.');
        uint64_t colon = swar_equal(low7, ':');
        if ((at | dot | colon) == 0) { /* most words of most strings */
            colon_before = 0;
            continue;
        }
        ats += swar_count(at);
        dots += swar_count(dot);
        colons += swar_count(colon);
        double_colon |= (colon & (colon >> 8)) != 0 ||
                        (colon_before && ((unsigned char)s[i] & 0x7f) == ':');
        colon_before = ((unsigned char)s[i + n - 1] & 0x7f) == ':';
    }
    return (ats > 0 && dots > 0 ? 1u << RULE_EMAIL : 0) | (dots >= 3 ? 1u << RULE_IPV4 : 0) |
           (colons >= 7 || double_colon || (colons >= 6 && dots >= 3) ? 1u << RULE_IPV6 : 0);
}

int privacy_redacts(const struct privacy *p)
{
    return p->has_redactions;
}

void privacy_write_string(struct privacy *p, struct buf *out, const char *s, size_t len)
{
    /* Without a regex, the string is written as it is first: the built-in
     * kinds need an '@', '.' or ':', most strings have none, and the pass
     * that writes them finds so. It is taken back if a rule matches. */
    size_t mark = out->len;
    int seen;
    if (!p->has_regex && (json_write_string_watching(out, s, len, "@.:", &seen) < 0 || !seen))
        return;
    /* regexec wants a NUL at the end, even with REG_STARTEND (sanitizers
     * read up to it); a message's strings have none */
    char *terminated = NULL;
    if (p->has_regex) {
        if ((terminated = malloc(len + 1)) == NULL) {
            buf_append_str(out, "\"" PRIVACY_REDACTED "\""); /* never the value unchecked */
            return;
        }
        memcpy(terminated, s, len);
        terminated[len] = '\0';
        s = terminated;
    }
    struct buf text = BUF_INIT; /* allocated only when something is redacted */
    size_t pos = 0;
    unsigned present = privacy_kinds_present(s, len) | 1u << RULE_REGEX;
    for (;;) {
        size_t best_start = len, best_end = len;
        struct privacy_rule *best = NULL;
        for (size_t i = p->first_value_rule; i < p->nrules; i++) {
            size_t a, b;
            if ((present & 1u << p->rules[i].kind) &&
                privacy_find(p, &p->rules[i], s, len, pos, &a, &b) &&
                (a < best_start || (a == best_start && b > best_end))) {
                best_start = a;
                best_end = b;
                best = &p->rules[i];
            }
        }
        if (best == NULL)
            break;
        best->count++;
        buf_append(&text, s + pos, best_start - pos);
        buf_append_str(&text, PRIVACY_REDACTED);
        pos = best_end;
    }
    if (pos == 0) { /* nothing matched */
        if (p->has_regex)
            json_write_string(out, s, len);
        free(terminated);
        return;
    }
    buf_truncate(out, mark);
    buf_append(&text, s + pos, len - pos);
    if (text.failed)
        buf_append_str(out, "\"" PRIVACY_REDACTED "\""); /* never the value itself */
    else
        json_write_string(out, text.data, text.len);
    buf_free(&text);
    free(terminated);
}

void privacy_each_count(const struct privacy *p,
                        void (*fn)(void *arg, const char *rule, uint64_t count), void *arg)
{
    for (size_t i = 0; p != NULL && i < p->nrules; i++)
        fn(arg, p->rules[i].text, p->rules[i].count);
}
