/*
 * check: a tiny header-only unit test harness.
 *
 * Every CHECK macro evaluates to 1 if the check passed and 0 if it failed, so
 * a test can stop before dereferencing something that is not there:
 *
 *     if (!CHECK(obj != NULL))
 *         return;
 *
 * A failure prints file:line, the expression and the values involved, plus
 * the current context (set with check_context() in table-driven tests), and
 * is counted. main() runs the tests with RUN(fn) and returns check_finish(),
 * which is non-zero if any check failed.
 *
 * Only test files include this header; the helpers (mp.c, support.c) report
 * problems through return values instead, so every failure is counted in the
 * one translation unit that owns main().
 */
#ifndef UNIT_CHECK_H
#define UNIT_CHECK_H

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int check_failures_;
static int check_total_;
static const char *check_test_;
static char check_context_[256];

/* Describe what the following checks are about ("input '1.5'"); NULL clears. */
static inline void check_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void check_context(const char *fmt, ...)
{
    check_context_[0] = '\0';
    if (fmt == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(check_context_, sizeof check_context_, fmt, ap);
    va_end(ap);
}

static inline void check_fail_begin_(const char *file, int line)
{
    check_failures_++;
    fprintf(stderr, "%s:%d: FAILED", file, line);
    if (check_test_ != NULL)
        fprintf(stderr, " in %s", check_test_);
    if (check_context_[0] != '\0')
        fprintf(stderr, " [%s]", check_context_);
    fprintf(stderr, ": ");
}

/* Print bytes as a C string literal, escaping anything not printable ASCII. */
static inline void check_print_bytes_(const char *s, size_t len)
{
    if (s == NULL) {
        fprintf(stderr, "NULL");
        return;
    }
    fputc('"', stderr);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(stderr, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fputc('"', stderr);
}

static inline int check_true_(int ok, const char *expr, const char *file, int line)
{
    check_total_++;
    if (!ok) {
        check_fail_begin_(file, line);
        fprintf(stderr, "CHECK(%s)\n", expr);
    }
    return ok;
}

static inline int check_eq_int_(intmax_t a, intmax_t b, const char *ea, const char *eb,
                                const char *file, int line)
{
    check_total_++;
    if (a != b) {
        check_fail_begin_(file, line);
        fprintf(stderr, "%s == %s: %jd != %jd\n", ea, eb, a, b);
    }
    return a == b;
}

static inline int check_eq_uint_(uintmax_t a, uintmax_t b, const char *ea, const char *eb,
                                 const char *file, int line)
{
    check_total_++;
    if (a != b) {
        check_fail_begin_(file, line);
        fprintf(stderr, "%s == %s: %ju != %ju\n", ea, eb, a, b);
    }
    return a == b;
}

/* op is "<", "<=", ">" or ">=". */
static inline int check_cmp_int_(intmax_t a, const char *op, intmax_t b, const char *ea,
                                 const char *eb, const char *file, int line)
{
    int ok = op[0] == '<' ? (op[1] == '=' ? a <= b : a < b) : (op[1] == '=' ? a >= b : a > b);
    check_total_++;
    if (!ok) {
        check_fail_begin_(file, line);
        fprintf(stderr, "%s %s %s: %jd vs %jd\n", ea, op, eb, a, b);
    }
    return ok;
}

static inline int check_mem_eq_(const char *a, size_t alen, const char *b, size_t blen,
                                const char *ea, const char *eb, const char *file, int line)
{
    int ok;
    if (a == NULL || b == NULL)
        ok = a == b;
    else
        ok = alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
    check_total_++;
    if (!ok) {
        check_fail_begin_(file, line);
        fprintf(stderr, "%s == %s:\n    got      ", ea, eb);
        check_print_bytes_(a, alen);
        fprintf(stderr, "\n    expected ");
        check_print_bytes_(b, blen);
        fprintf(stderr, "\n");
    }
    return ok;
}

static inline int check_str_eq_(const char *a, const char *b, const char *ea, const char *eb,
                                const char *file, int line)
{
    return check_mem_eq_(a, a ? strlen(a) : 0, b, b ? strlen(b) : 0, ea, eb, file, line);
}

static inline int check_contains_(const char *hay, const char *needle, int want, const char *eh,
                                  const char *file, int line)
{
    int found = hay != NULL && strstr(hay, needle) != NULL;
    check_total_++;
    if (found != want) {
        check_fail_begin_(file, line);
        fprintf(stderr, "%s %s \"%s\":\n    text ", eh, want ? "contains" : "does not contain",
                needle);
        check_print_bytes_(hay, hay ? strlen(hay) : 0);
        fprintf(stderr, "\n");
    }
    return found == want;
}

#define CHECK(cond) check_true_((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
#define CHECK_EQ_INT(a, b) check_eq_int_((intmax_t)(a), (intmax_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_EQ_UINT(a, b)                                                                        \
    check_eq_uint_((uintmax_t)(a), (uintmax_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_LT(a, b)                                                                             \
    check_cmp_int_((intmax_t)(a), "<", (intmax_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_LE(a, b)                                                                             \
    check_cmp_int_((intmax_t)(a), "<=", (intmax_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_GT(a, b)                                                                             \
    check_cmp_int_((intmax_t)(a), ">", (intmax_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_GE(a, b)                                                                             \
    check_cmp_int_((intmax_t)(a), ">=", (intmax_t)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_STR_EQ(a, b) check_str_eq_((a), (b), #a, #b, __FILE__, __LINE__)
#define CHECK_MEM_EQ(a, alen, b, blen)                                                             \
    check_mem_eq_((const char *)(a), (alen), (const char *)(b), (blen), #a, #b, __FILE__, __LINE__)
#define CHECK_CONTAINS(hay, needle) check_contains_((hay), (needle), 1, #hay, __FILE__, __LINE__)
#define CHECK_NOT_CONTAINS(hay, needle)                                                            \
    check_contains_((hay), (needle), 0, #hay, __FILE__, __LINE__)

/* Run one test function, naming it in failure messages. */
#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int failures_before_ = check_failures_;                                                    \
        check_test_ = #fn;                                                                         \
        check_context(NULL);                                                                       \
        fn();                                                                                      \
        check_context(NULL);                                                                       \
        check_test_ = NULL;                                                                        \
        printf("%-4s %s\n", check_failures_ == failures_before_ ? "ok" : "FAIL", #fn);            \
        fflush(stdout);                                                                            \
    } while (0)

/* Summary line; the exit status for main(). */
static inline int check_finish(void)
{
    printf("%d checks, %d failed\n", check_total_, check_failures_);
    if (check_total_ == 0) {
        printf("no checks ran\n");
        return 1;
    }
    return check_failures_ == 0 ? 0 : 1;
}

#endif
