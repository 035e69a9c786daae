/* Internal to the CLI: subcommand entry points (argv[0] is the subcommand name). Exit codes:
 * 0 success, 1 the run found a failure (verifier report, race), 2 bad usage. */
#ifndef IRPK_CLI_H
#define IRPK_CLI_H
int irpk_cmd_demo(int argc, char **argv);
int irpk_cmd_explore(int argc, char **argv);
int irpk_cmd_trace(int argc, char **argv);
int irpk_cmd_run(int argc, char **argv);
int irpk_cmd_bench(int argc, char **argv);
#endif
