/* smtpkit: the command-line entry point; dispatches to one file per subcommand. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"send", cmd_send, "compose and send a message over SMTP"},
    {"serve", cmd_serve, "run the SMTP server"},
    {"queue", cmd_queue, "list, show, flush, release or delete queued messages"},
    {"track", cmd_track, "show the delivery events of a message"},
    {"stats", cmd_stats, "count delivery outcomes of the last hour and day"},
    {"suppress", cmd_suppress, "list, add or remove suppressed recipients"},
    {"probe", cmd_probe, "diagnose a mail server connection step by step"},
    {"passwd", cmd_passwd, "print a crypt(3) hash of a password read from stdin"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'smtpkit COMMAND --help' lists a command's options.\n"
               "Exit codes follow sysexits.h: 0 ok, 64 usage, 65 bad data, 69 permanent\n"
               "failure, 75 temporary failure, 76 protocol/TLS, 77 auth, 78 config.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("smtpkit 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "smtpkit: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}
