/* Minimal unit-test harness printing TAP (meson runs these with protocol 'tap').
 * Usage: CHECK(cond), CHECK_STR(a, b), CHECK_INT(a, b) inside TEST(name) functions; main() = RUN(t1, t2...).
 */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failures;
static int unit_test_failed;

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            printf("# %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                                \
            unit_test_failed = 1;                                                                            \
        }                                                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                                                      \
    do {                                                                                                     \
        const char *_a = (a), *_b = (b);                                                                     \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                                             \
            printf("# %s:%d: '%s' != '%s'\n", __FILE__, __LINE__, _a ? _a : "(null)", _b ? _b : "(null)");   \
            unit_test_failed = 1;                                                                            \
        }                                                                                                    \
    } while (0)

#define CHECK_INT(a, b)                                                                                      \
    do {                                                                                                     \
        long long _a = (long long)(a), _b = (long long)(b);                                                  \
        if (_a != _b) {                                                                                      \
            printf("# %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, _b);                  \
            unit_test_failed = 1;                                                                            \
        }                                                                                                    \
    } while (0)

#define TEST(name) static void name(void)

typedef void (*unit_fn)(void);
static inline int unit_run(const char *const *names, const unit_fn *fns, int n)
{
    printf("1..%d\n", n);
    for (int i = 0; i < n; i++) {
        unit_test_failed = 0;
        fns[i]();
        printf("%s %d - %s\n", unit_test_failed ? "not ok" : "ok", i + 1, names[i]);
        unit_failures += unit_test_failed;
    }
    return unit_failures ? 1 : 0;
}

#define RUN(...)                                                                                             \
    int main(void)                                                                                           \
    {                                                                                                        \
        static const unit_fn fns[] = {__VA_ARGS__};                                                          \
        static const char *const names_all = #__VA_ARGS__;                                                   \
        const char *names[sizeof(fns) / sizeof(fns[0])];                                                     \
        static char buf[4096];                                                                               \
        snprintf(buf, sizeof(buf), "%s", names_all);                                                         \
        char *save = NULL, *tok = strtok_r(buf, ", ", &save);                                                \
        for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {                                          \
            names[i] = tok ? tok : "?";                                                                      \
            tok = strtok_r(NULL, ", ", &save);                                                               \
        }                                                                                                    \
        return unit_run(names, fns, (int)(sizeof(fns) / sizeof(fns[0])));                                    \
    }
