#include "test.h"

#include <stdarg.h>

#define MAX_TESTS 1024

static struct {
    const char *name;
    irpk_test_fn fn;
    const char *file;
} tests[MAX_TESTS];
static int ntests;
static int case_failures;
static int total_failures;

void irpk_test_register(const char *name, irpk_test_fn fn, const char *file)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    tests[ntests].file = file;
    ntests++;
}

void irpk_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    case_failures++;
}

int irpk_test_failed_in_case(void) { return case_failures; }

long irpk_test_scale(long n)
{
    const char *s = getenv("IRPK_STRESS_SCALE");
    double f = s ? atof(s) : 1.0;
    long r = (long)((double)n * f);
    return r < 1 ? 1 : r;
}

uint64_t irpk_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
    int ran = 0, failed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < ntests; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
        case_failures = 0;
        printf("[ RUN  ] %s\n", tests[i].name);
        tests[i].fn();
        ran++;
        if (case_failures) {
            failed++;
            total_failures += case_failures;
            printf("[ FAIL ] %s (%d failed checks)\n", tests[i].name, case_failures);
        } else {
            printf("[  OK  ] %s\n", tests[i].name);
        }
    }
    if (ran == 0) {
        fprintf(stderr, "no test matched\n");
        return 2;
    }
    printf("%d passed, %d failed\n", ran - failed, failed);
    return failed ? 1 : 0;
}
