/* Fatal mode: the report is printed and the process aborts like a bug check. The SIGABRT handler
 * turns the expected abort into a pass; ctest also checks the printed report (CMakeLists.txt).
 * Run as `test_verifier_fatal fatal_by_api`, or with IRPK_VERIFIER=fatal in the environment as
 * `test_verifier_fatal fatal_from_environment`. */
#include <signal.h>
#include <unistd.h>

#include "vfixture.h"

static void aborted(int sig)
{
    (void)sig;
    static const char msg[] = "irpkit test: aborted as expected\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(0);
}

static void double_completion(void)
{
    signal(SIGABRT, aborted);
    PIRP irp = vf_irp(1, true);
    vf_send(irp); /* vf_read_complete: completes once */
    IoCompleteRequest(irp, IO_NO_INCREMENT); /* 0x44: aborts in fatal mode */
    irpk_test_fail(__FILE__, __LINE__, "fatal mode did not abort");
}

TEST(fatal_by_api)
{
    vf_setup();
    irpk_verifier_set_mode(IRPK_VERIFIER_FATAL);
    double_completion();
}

TEST(fatal_from_environment)
{
    irpk_verifier_mode m = irpk_verifier_get_mode();
    CHECK_EQ(m, IRPK_VERIFIER_FATAL);
    vf_setup(); /* (sets report mode: put fatal back as the environment asked) */
    irpk_verifier_set_mode(m);
    double_completion();
}
