/* test.h — mu's C unit tests. Each TEST runs in its own forked process, so a crash
 * or an abort is a failure of that test, not of the runner. A test fails on the first
 * failed CHECK (the message names file:line and the values). SKIP ends it as skipped.
 *   TEST(stream_roundtrip) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 * Run: build/rel/tests/run-tests [substring...]   (prints "N passed, N failed, N skipped") */
#ifndef MU_TEST_H
#define MU_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef void (*mu_test_fn)(void);
void mu_test_register(const char *name, const char *file, mu_test_fn fn);
_Noreturn void mu_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void mu_test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Directory of the shared data (../shared/data by default, $MU_SHARED/data if set);
 * NULL if absent. */
const char *mu_test_shared_data(void);
/* Project root (where tests/golden lives). */
const char *mu_test_root(void);
/* A fresh temp directory for this test (removed after it). */
const char *mu_test_tmpdir(void);
/* The whole file at path (NUL-terminated, *len bytes; the test fails if it cannot be
 * read), and a file written with n bytes of b (fails if it cannot be written). */
unsigned char *mu_test_slurp(const char *path, size_t *len);
void mu_test_spit(const char *path, const void *b, size_t n);

#define TEST(name)                                                              \
    static void test_##name(void);                                              \
    __attribute__((constructor)) static void register_##name(void) {            \
        mu_test_register(#name, __FILE__, test_##name);                         \
    }                                                                           \
    static void test_##name(void)

#define CHECK(cond) do { if (!(cond)) mu_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) mu_test_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) mu_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); } while (0)
#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (!a_ || !b_ || strcmp(a_, b_)) mu_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
/* |a-b| <= tol */
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b); \
    if (!(fabs(a_ - b_) <= (tol))) mu_test_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol)); } while (0)
/* |a-b| <= rtol*max(|a|,|b|) + atol */
#define CHECK_CLOSE(a, b, rtol, atol) do { double a_ = (a), b_ = (b); \
    double m_ = fabs(a_) > fabs(b_) ? fabs(a_) : fabs(b_); \
    if (!(fabs(a_ - b_) <= (rtol) * m_ + (atol))) mu_test_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g", #a, #b, a_, b_); } while (0)
#define SKIP(...) mu_test_skip(__VA_ARGS__)
#endif
