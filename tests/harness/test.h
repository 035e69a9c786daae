/* irpkit test harness: one executable per test file, TEST() registers a case, CHECK*() records a
 * failure and continues, REQUIRE*() stops the case. Run `./test_x` for all cases or
 * `./test_x name` for one. Exit status is non-zero when any check failed. */
#ifndef IRPK_TEST_H
#define IRPK_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*irpk_test_fn)(void);
void irpk_test_register(const char *name, irpk_test_fn fn, const char *file);
void irpk_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int irpk_test_failed_in_case(void);
/* Scale for stress loops: IRPK_STRESS_SCALE (default 1.0) multiplies n; never returns < 1. */
long irpk_test_scale(long n);
/* Deterministic 64-bit PRNG for tests (splitmix64). */
uint64_t irpk_test_rand(uint64_t *state);

#ifdef __cplusplus
}
#endif

#define TEST(name)                                                                   \
    static void name(void);                                                          \
    __attribute__((constructor)) static void irpk_reg_##name(void)                   \
    {                                                                                \
        irpk_test_register(#name, name, __FILE__);                                   \
    }                                                                                \
    static void name(void)

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) irpk_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);         \
    } while (0)
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            irpk_test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                \
            return;                                                                  \
        }                                                                            \
    } while (0)
#define CHECK_EQ(a, b)                                                               \
    do {                                                                             \
        long long irpk_a_ = (long long)(a), irpk_b_ = (long long)(b);                \
        if (irpk_a_ != irpk_b_)                                                      \
            irpk_test_fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %lld != %lld", #a, \
                           #b, irpk_a_, irpk_b_);                                    \
    } while (0)
#define CHECK_PTR(a, b)                                                              \
    do {                                                                             \
        const void *irpk_a_ = (const void *)(a), *irpk_b_ = (const void *)(b);      \
        if (irpk_a_ != irpk_b_)                                                      \
            irpk_test_fail(__FILE__, __LINE__, "CHECK_PTR(%s, %s): %p != %p", #a,    \
                           #b, irpk_a_, irpk_b_);                                    \
    } while (0)
#define CHECK_STR(a, b)                                                              \
    do {                                                                             \
        const char *irpk_a_ = (a), *irpk_b_ = (b);                                   \
        if (!irpk_a_ || !irpk_b_ || strcmp(irpk_a_, irpk_b_) != 0)                   \
            irpk_test_fail(__FILE__, __LINE__, "CHECK_STR(%s, %s): \"%s\" != \"%s\"", \
                           #a, #b, irpk_a_ ? irpk_a_ : "(null)",                     \
                           irpk_b_ ? irpk_b_ : "(null)");                            \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                                  \
    do {                                                                             \
        const char *irpk_h_ = (hay), *irpk_n_ = (needle);                            \
        if (!irpk_h_ || !strstr(irpk_h_, irpk_n_))                                   \
            irpk_test_fail(__FILE__, __LINE__, "CHECK_CONTAINS(%s, \"%s\") in: %s",  \
                           #hay, irpk_n_, irpk_h_ ? irpk_h_ : "(null)");             \
    } while (0)

#endif
