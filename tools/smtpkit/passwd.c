/* smtpkit passwd: print a crypt(3) hash of a password read from standard
 * input, for the --users file of smtpkit serve. */
#include "cli.h"

#include <smtpkit/auth.h>

#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit passwd [USER] < password\n\n"
               "Reads a password (its first line) from standard input and prints its crypt(3)\n"
               "hash (yescrypt, or sha512crypt where yescrypt is missing). With USER, prints\n"
               "\"USER:HASH\", a line for the file given to smtpkit serve --users.\n"
               "\n"
               "-h, --help  this text\n");
}

/* Read the first line of stdin; without echo when it is a terminal. */
static char *read_password(void)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fputs("Password: ", stderr);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (n < 0) {
        free(line);
        return NULL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    return line;
}

int cmd_passwd(int argc, char **argv)
{
    const char *user = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return EX_OK;
        }
        if (argv[i][0] == '-')
            return cli_unknown_option("passwd", argv[i], (const char *const[]){"help", NULL});
        if (user) return cli_usage_error("passwd", "unexpected argument '%s'", argv[i]);
        user = argv[i];
    }
    if (user && (strchr(user, ':') || !*user || strpbrk(user, "\r\n")))
        return cli_usage_error("passwd", "a user name cannot be empty or contain ':'");
    char *pw = read_password();
    if (!pw || !*pw) {
        free(pw);
        cli_warn("passwd", "no password on standard input");
        return EX_DATAERR;
    }
    char *hash = NULL;
    sk_err e = sk_sasl_hash_password(pw, &hash);
    explicit_bzero(pw, strlen(pw));
    free(pw);
    if (e) {
        cli_warn("passwd", "cannot hash the password: %s", sk_strerror(e));
        return EX_SOFTWARE;
    }
    if (user)
        printf("%s:%s\n", user, hash);
    else
        printf("%s\n", hash);
    sk_free(hash);
    return EX_OK;
}
