/* irpkit — command-line front door. Each subcommand lives in its own cmd_<name>.c and defines
 * irpk_cmd_<name>(argc, argv); a subcommand whose file is not part of this build is reported as
 * unavailable instead of failing to link. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Weak: a subcommand whose cmd_<name>.c is absent resolves to NULL. */
#pragma weak irpk_cmd_demo
#pragma weak irpk_cmd_explore
#pragma weak irpk_cmd_trace
#pragma weak irpk_cmd_run
#pragma weak irpk_cmd_bench

static const struct {
    const char *name;
    const char *help;
} commands[] = {
    {"demo", "run the seed's sample driver and print the timeline (--help for options)"},
    {"explore", "explore interleavings of a scenario, replay a schedule"},
    {"trace", "run a scenario and export its trace (text timeline or Chrome JSON)"},
    {"run", "run a built-in scenario natively"},
    {"bench", "run the benchmarks"},
};

static int (*lookup(const char *name))(int, char **)
{
    if (!strcmp(name, "demo")) return irpk_cmd_demo;
    if (!strcmp(name, "explore")) return irpk_cmd_explore;
    if (!strcmp(name, "trace")) return irpk_cmd_trace;
    if (!strcmp(name, "run")) return irpk_cmd_run;
    if (!strcmp(name, "bench")) return irpk_cmd_bench;
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: irpkit <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-8s %s%s\n", commands[i].name, commands[i].help,
                lookup(commands[i].name) ? "" : " (not in this build)");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int (*fn)(int, char **) = lookup(argv[1]);
    if (!fn) {
        fprintf(stderr, "irpkit: unknown or unavailable command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return fn(argc - 1, argv + 1);
}
