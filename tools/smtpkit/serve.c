/* smtpkit serve: run the mail server daemon (options from the daemon's
 * option table, so flags and config-file keys are the same). */
#include "cli.h"
#include "log_json.h"

#include <smtpkit/daemon.h>

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* Log lines waiting for the end of an event-loop pass; a fuller buffer is
 * written out as it fills. */
#define SERVE_LOG_BUFFER_OCTETS (64 * 1024)

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit serve [OPTIONS]\n\n"
               "Receive mail over SMTP, store it durably, deliver it to Maildirs (local\n"
               "domains), to a relay host, or to the MX hosts of each domain. Every option\n"
               "can also be set in the config file as \"name = value\" (repeat the line for\n"
               "repeatable options); flags override it.\n\n");
    for (const sk_daemon_option *o = sk_daemon_options(); o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-28s %s%s\n", left, o->help,
                o->kind == SK_DOPT_LIST || o->kind == SK_DOPT_NETS ? "; repeatable" : "");
    }
    fprintf(f, "  %-28s %s\n", "-h, --help", "this text");
    fprintf(f,
            "\nThe data directory is --data-dir, else data-dir in the config file, else\n"
            "$%s, else %s; the operator commands (queue, track, stats,\n"
            "suppress) look for it in the same order. It is created when missing and\n"
            "must be writable: checked before any port opens (exit 78 otherwise).\n",
            CLI_DATA_DIR_ENV, CLI_DATA_DIR_DEFAULT);
    fprintf(f, "\nSignals: SIGTERM/SIGINT stop (sessions in flight finish), SIGHUP reloads\n"
               "the configuration, certificates, DKIM and ARC keys. Exit codes: 0 stopped\n"
               "cleanly, 64 bad flag, 78 bad configuration (also a data directory that\n"
               "cannot be used, a --dkim or --arc-seal key file that cannot be used), 71\n"
               "could not start (address in use, spool locked by another daemon after a\n"
               "5 s wait, ...), 70 the event loop failed.\n"
               "See docs/serve.md.\n");
}

/* Log lines: to stderr with a UTC timestamp, or to syslog (mail facility);
 * as the library's text ("<id> <module> <event> key=value ...") or as one
 * JSON object each. stderr is fully buffered while the daemon runs: the
 * daemon flushes it once per pass of its event loop (sk_logger.flush), so
 * a busy server makes one write for many lines; warnings and errors go out
 * at once. */
typedef struct serve_log {
    bool json;
    bool to_syslog;
} serve_log;

static void log_line(void *ctx, sk_log_level level, const char *line)
{
    const serve_log *sl = ctx;
    char ts[32];
    sk_time_rfc3339((int64_t)time(NULL), ts);
    char *json = sl->json ? cli_log_json(level, line, ts) : NULL;
    if (sl->to_syslog) {
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        syslog(prio[level <= SK_LOG_DEBUG ? level : SK_LOG_DEBUG], "%s", json ? json : line);
    } else {
        /* One call per line so that lines from worker threads do not mix. */
        if (json)
            fprintf(stderr, "%s\n", json);
        else
            fprintf(stderr, "%s %s\n", ts, line);
        if (level <= SK_LOG_WARN) fflush(stderr);
    }
    free(json);
}

static void log_flush(void *ctx)
{
    (void)ctx;
    fflush(stderr);
}

/* Can syslog(3) reach the log socket? glibc's syslog drops lines without
 * a word when it cannot, so look first: a datagram socket as glibc tries
 * first, then a stream one. Returns 0, or an errno value. */
static int syslog_socket_error(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", _PATH_LOG);
    int err = 0;
    static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
    for (size_t i = 0; i < 2; i++) {
        int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
        if (fd < 0) return errno;
        int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        err = r ? errno : 0;
        close(fd);
        if (err != EPROTOTYPE) break;
    }
    return err;
}

/* s as one shell word: as it is when it holds only characters that no
 * shell treats specially, else in single quotes (a quote as '\''). */
static void print_shell_word(const char *s)
{
    if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                        "@%+:,./-_") == strlen(s)) {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    }
    putchar('\'');
}

/* How to send a test message to this server (make run). The commands are
 * printed so that they work when pasted into a shell in the directory the
 * server was started from: smtpkit is named as it was invoked
 * (./build/smtpkit under make run), since it need not be on the PATH. */
static void print_usage_hint(const sk_daemon *d)
{
    const sk_daemon_config *c = sk_daemon_get_config(d);
    if (c->listen.n == 0) {
        printf("smtpkit serve: listening for submission only; see docs/serve.md\n");
        fflush(stdout);
        return;
    }
    char host[256];
    unsigned port = 0;
    if (sk_daemon_parse_hostport(c->listen.v[0], host, sizeof host, &port)) return;
    int bound = sk_daemon_port(d, 0);
    if (bound > 0) port = (unsigned)bound;
    /* A wildcard address is reached over loopback from this machine. */
    const char *connect = !strcmp(host, "0.0.0.0") ? "127.0.0.1"
                          : !strcmp(host, "::")    ? "::1"
                                                   : host;
    bool v6 = strchr(connect, ':') != NULL;
    const char *dom = c->local_domain.v[0];
    /* argv[0] of the process, kept by glibc. */
    const char *self = program_invocation_name;
    printf("smtpkit serve: SMTP on %s%s%s:%u, data in %s, local domains:", v6 ? "[" : "", host,
           v6 ? "]" : "", port, c->data_dir);
    for (size_t i = 0; i < c->local_domain.n; i++) printf(" %s", c->local_domain.v[i]);
    printf("\n\nSend a test message with any of these:\n");
    printf("  echo Hello | ");
    print_shell_word(self);
    printf(" send --server %s%s%s:%u --tls none --from me@%s --to someone@%s --subject test "
           "--text -\n",
           v6 ? "[" : "", connect, v6 ? "]" : "", port, dom, dom);
    printf("  swaks --server %s --port %u --from me@%s --to someone@%s\n", connect, port, dom, dom);
    printf("  /usr/bin/python3 -c 'import smtplib; smtplib.SMTP(\"%s\", %u).sendmail(\"me@%s\", "
           "[\"someone@%s\"], \"Subject: test\\r\\n\\r\\nHello\\r\\n\")'\n",
           connect, port, dom, dom);
    if (c->hold) {
        printf("\nWith --hold it stays in the queue: ");
        print_shell_word(self);
        printf(" queue --data-dir ");
        print_shell_word(c->data_dir);
        printf(" list\n");
    } else {
        printf("\nIt appears as a file in ");
        print_shell_word(c->data_dir);
        printf("/mailboxes/%s/someone/new/\n", dom);
    }
    printf("Stop with Ctrl-C (SIGTERM); SIGHUP reloads the configuration.\n\n");
    fflush(stdout);
}

int cmd_serve(int argc, char **argv)
{
    /* getopt_long's table from the daemon's option table. */
    size_t nopts = 0;
    for (const sk_daemon_option *o = sk_daemon_options(); o->name; o++) nopts++;
    struct option *longopts = calloc(nopts + 2, sizeof *longopts);
    sk_daemon_setting *flags = calloc((size_t)argc + 1, sizeof *flags);
    if (!longopts || !flags) {
        free(longopts);
        free(flags);
        fprintf(stderr, "smtpkit serve: out of memory\n");
        return EX_OSERR;
    }
    const sk_daemon_option *table = sk_daemon_options();
    for (size_t i = 0; i < nopts; i++)
        longopts[i] = (struct option){
            table[i].name, table[i].kind == SK_DOPT_BOOL ? no_argument : required_argument, NULL,
            (int)(1000 + i)};
    longopts[nopts] = (struct option){"help", no_argument, NULL, 'h'};

    const char *config_path = NULL;
    size_t n_flags = 0;
    int rc = EX_OK;
    sk_daemon_config *scratch = sk_daemon_config_new();
    opterr = 0;
    optind = 1;
    int ch;
    while (rc == EX_OK && (ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            rc = -1;
            break;
        }
        if (ch == '?') {
            rc = cli_unknown_long_option("serve", argv[optind - 1], longopts);
            break;
        }
        if (ch == ':') {
            rc = cli_usage_error("serve", "option '%s' needs a value", argv[optind - 1]);
            break;
        }
        const sk_daemon_option *o = &table[ch - 1000];
        if (!strcmp(o->name, "config")) {
            config_path = optarg;
            continue;
        }
        /* Check each flag on its own, so that a bad one is named as a flag
         * (exit 64) rather than as configuration (exit 78). */
        sk_error err;
        if (sk_daemon_config_set(scratch, o->name, optarg, &err) != SK_OK) {
            rc = cli_usage_error("serve", "--%s", err.text);
            break;
        }
        flags[n_flags++] = (sk_daemon_setting){o->name, optarg};
    }
    if (rc == EX_OK && optind < argc)
        rc = cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    sk_daemon_config_free(scratch);

    /* The data directory in the order every subcommand uses (cli.h):
     * SMTPKIT_DATA_DIR comes after the config file's data-dir and before
     * the built-in ./var, so it is passed on as a flag only when neither
     * --data-dir nor the file set one. */
    cli_data_dir dd = {0};
    bool dir_flag = false;
    for (size_t i = 0; i < n_flags; i++) dir_flag |= !strcmp(flags[i].key, "data-dir");
    if (rc == EX_OK && !dir_flag && getenv(CLI_DATA_DIR_ENV)) {
        rc = cli_data_dir_resolve("serve", NULL, config_path, &dd);
        if (rc == EX_OK && dd.source == CLI_DATA_DIR_ENV_VAR)
            flags[n_flags++] = (sk_daemon_setting){"data-dir", dd.path};
    }

    sk_daemon_config *cfg = NULL;
    sk_error err;
    sk_error_clear(&err);
    if (rc == EX_OK && sk_daemon_config_build(config_path, flags, n_flags, &cfg, &err)) {
        fprintf(stderr, "smtpkit serve: %s\n", err.text);
        rc = EX_CONFIG;
    }
    sk_log_level level = SK_LOG_INFO;
    /* The option table has checked the name; a level it let through but
     * the logger does not know would be a bug, not a reason to log less. */
    if (rc == EX_OK && sk_log_level_parse(cfg->log_level, &level)) {
        fprintf(stderr, "smtpkit serve: log-level: \"%s\" is not a level\n", cfg->log_level);
        sk_daemon_config_free(cfg);
        rc = EX_SOFTWARE;
    }
    sk_daemon *d = NULL;
    if (rc == EX_OK) {
        static serve_log sl;
        static char logbuf[SERVE_LOG_BUFFER_OCTETS];
        sk_logger log = {log_line, &sl, level, log_flush};
        sl.json = !strcmp(cfg->log_format, "json");
        sl.to_syslog = !strcmp(cfg->log, "syslog");
        int serr = sl.to_syslog ? syslog_socket_error() : 0;
        if (serr) sl.to_syslog = false;
        if (sl.to_syslog) {
            openlog("smtpkit", LOG_PID | LOG_NDELAY, LOG_MAIL);
            log.flush = NULL;
        } else {
            setvbuf(stderr, logbuf, _IOFBF, sizeof logbuf);
        }
        /* Lines that would be lost are not: say so, and where they go. */
        if (serr) {
            fprintf(stderr,
                    "smtpkit serve: warning: cannot reach the syslog socket %s (%s); logging to "
                    "stderr instead\n",
                    _PATH_LOG, strerror(serr));
            fflush(stderr);
        }
        bool hint = cfg->print_usage;
        sk_daemon_config_free(cfg);
        if (sk_daemon_new(config_path, flags, n_flags, &log, &d, &err) != SK_OK) {
            fprintf(stderr, "smtpkit serve: %s\n", err.text[0] ? err.text : sk_strerror(err.err));
            rc = err.err == SK_ERR_CONFIG ? EX_CONFIG : EX_OSERR;
        } else if (hint) {
            print_usage_hint(d);
        }
    }
    if (rc == EX_OK && sk_daemon_run(d, &err) != SK_OK) {
        fprintf(stderr, "smtpkit serve: %s\n", err.text);
        rc = EX_SOFTWARE;
    }
    sk_daemon_free(d);
    cli_data_dir_clear(&dd);
    free(longopts);
    free(flags);
    return rc < 0 ? EX_OK : rc;
}
