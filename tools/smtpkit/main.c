/* smtpkit: the command-line entry point; dispatches to one file per subcommand. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* The project's version, given by CMake (project(... VERSION ...)). */
#ifndef SMTPKIT_VERSION
#error "SMTPKIT_VERSION must be defined by the build"
#endif

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"send", cmd_send, "compose and send a message over SMTP"},
    {"serve", cmd_serve, "run the SMTP server"},
    {"queue", cmd_queue, "list, summarize, show, flush, release or delete queued messages"},
    {"track", cmd_track, "show the delivery events of a message"},
    {"stats", cmd_stats, "count delivery outcomes of the last hour and day"},
    {"suppress", cmd_suppress, "list, add or remove suppressed recipients"},
    {"probe", cmd_probe, "diagnose a mail server connection step by step"},
    {"passwd", cmd_passwd, "print a crypt(3) hash of a password read from stdin"},
    {"dmarc", cmd_dmarc, "evaluate DMARC for a From domain and SPF/DKIM results"},
    {"dkim", cmd_dkim, "make a DKIM key and its DNS record; sign or verify a message"},
    {"spf", cmd_spf, "evaluate SPF for a client address and a MAIL FROM or HELO"},
    {"arc", cmd_arc, "verify a message's ARC chain, or seal a message being forwarded"},
    {"check", cmd_check, "check a domain's MX, SPF, DKIM, DMARC, MTA-STS set-up, or a message"},
    {"apikey", cmd_apikey, "create, list or revoke keys of the HTTP API"},
    {"bounce", cmd_bounce, "read saved bounces: recipient, class, suppress or not, detector"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit COMMAND [OPTIONS]\n"
               "       smtpkit help [COMMAND]\n"
               "       smtpkit --version\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'smtpkit COMMAND --help' (or -h, or 'smtpkit help COMMAND') lists a\n"
               "command's options; -V or --version prints the version.\n"
               "Exit codes follow sysexits.h: 0 ok, 64 usage, 65 bad data, 69 permanent\n"
               "failure, 75 temporary failure, 76 protocol/TLS, 77 auth, 78 config.\n");
}

static int find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(name, commands[i].name)) return (int)i;
    return -1;
}

/* "smtpkit: unknown command 'sned' (did you mean 'send'?)", exit 64. */
static int unknown_command(const char *name)
{
    const char *names[N_COMMANDS + 2];
    for (size_t i = 0; i < N_COMMANDS; i++) names[i] = commands[i].name;
    names[N_COMMANDS] = "help";
    names[N_COMMANDS + 1] = NULL;
    const char *near = cli_nearest(name, names);
    if (near)
        fprintf(stderr, "smtpkit: unknown command '%s' (did you mean '%s'?)\n", name, near);
    else
        fprintf(stderr, "smtpkit: unknown command '%s'\n", name);
    fprintf(stderr, "(see 'smtpkit --help' for the list of commands)\n");
    return EX_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *first = argv[1];
    if (!strcmp(first, "--help") || !strcmp(first, "-h")) {
        usage(stdout);
        return EX_OK;
    }
    if (!strcmp(first, "--version") || !strcmp(first, "-V")) {
        printf("smtpkit %s\n", SMTPKIT_VERSION);
        return EX_OK;
    }
    if (!strcmp(first, "help")) {
        if (argc == 2) {
            usage(stdout);
            return EX_OK;
        }
        if (argc > 3) {
            fprintf(stderr, "smtpkit help: give one command (see 'smtpkit --help')\n");
            return EX_USAGE;
        }
        int i = find_command(argv[2]);
        if (i < 0) return unknown_command(argv[2]);
        static char help_flag[] = "--help";
        char *help_argv[] = {argv[2], help_flag, NULL};
        return commands[i].fn(2, help_argv);
    }
    if (first[0] == '-') {
        static const char *const names[] = {"--help", "--version", NULL};
        const char *near = cli_nearest(first, names);
        if (near)
            fprintf(stderr, "smtpkit: unknown option '%s' (did you mean '%s'?)\n", first, near);
        else
            fprintf(stderr, "smtpkit: unknown option '%s'\n", first);
        fprintf(stderr, "(see 'smtpkit --help')\n");
        return EX_USAGE;
    }
    int i = find_command(first);
    if (i < 0) return unknown_command(first);
    return commands[i].fn(argc - 1, argv + 1);
}
