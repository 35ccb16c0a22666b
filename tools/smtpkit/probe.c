/* smtpkit probe: check a mail server one step at a time (DNS, TCP, greeting,
 * EHLO, TLS, AUTH, envelope) and say what is wrong and how to fix it. The
 * checks are the library's (sk_client_probe); this prints their steps. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROBE_TIMEOUT_MS_DEFAULT 10000

static const char *const verdict_marks[] = {"[ OK ]", "[WARN]", "[FAIL]"};
/* The JSON names of the verdicts (docs/probe.md). */
static const char *const verdict_json[] = {"ok", "warn", "fail"};

static const char *tls_mode_label(sk_tls_mode m)
{
    switch (m) {
    case SK_TLS_IMPLICIT:
        return "implicit";
    case SK_TLS_NONE:
        return "none";
    default:
        return "starttls";
    }
}

/* ---- the checklist for people ---- */

/* Print n octets of text that may come from the peer on one line: control
 * characters (a terminal would act on escape sequences) are shown as '?'. */
static void print_clean(const char *t, size_t n)
{
    for (size_t i = 0; i < n && t[i]; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '\n')
            fputs(" / ", stdout); /* the lines of a multi-line reply */
        else
            putchar(c < 0x20 || c == 0x7f ? '?' : c);
    }
}

static void print_indented(const char *label, const char *text)
{
    printf("         %-7s ", label);
    print_clean(text, strlen(text));
    putchar('\n');
}

static void print_more(const char *fmt, ...) SK_PRINTF(1, 2);
static void print_more(const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("                   ");
    print_clean(line, strlen(line));
    putchar('\n');
}

/* The lines under a step: the certificate chain, the extensions. */
static void print_step_lines(const sk_probe_step *s)
{
    if (s->tls) {
        for (size_t i = 0; i < s->tls->chain_len; i++) {
            const sk_tls_cert *c = &s->tls->chain[i];
            char nb[32], na[32];
            sk_time_rfc3339(c->not_before, nb);
            sk_time_rfc3339(c->not_after, na);
            print_more("cert %zu: subject %s", i, c->subject);
            print_more("        issuer  %s%s", c->issuer, c->self_signed ? " (self-signed)" : "");
            print_more("        valid   %s to %s", nb, na);
            if (c->san[0]) print_more("        names   %s", c->san);
        }
    }
    for (size_t i = 0; i < s->nextensions; i++)
        print_more("%-20s %s", s->extensions[i].keyword, s->extensions[i].meaning);
}

/* One step as it ends (sk_probe_opts.on_step); skipped steps are not
 * shown: the checklist stops at the failure. */
static void print_step(void *ctx, const sk_probe_step *s)
{
    (void)ctx;
    if (s->verdict == SK_PROBE_SKIP) return;
    printf("  %s %-9s ", verdict_marks[s->verdict], sk_probe_check_name(s->check));
    print_clean(s->detail, strlen(s->detail));
    if (s->elapsed_ms >= 0) printf(" (%ld ms)", s->elapsed_ms);
    putchar('\n');
    if (s->truncated)
        printf("                   (details left out: too long)\n");
    else
        print_step_lines(s);
    if (s->has_reply && s->reply.enhanced[0] &&
        sk_reply_class_of(s->reply.code) >= SK_REPLY_TRANSIENT) {
        const char *d = sk_enhanced_describe(s->reply.enhanced);
        if (d) {
            char buf[160];
            snprintf(buf, sizeof buf, "%s %s", s->reply.enhanced, d);
            print_indented("status", buf);
        }
    }
    if (s->explanation) print_indented("meaning", s->explanation);
    if (s->hint[0]) print_indented("fix", s->hint);
    fflush(stdout);
}

/* ---- the checklist as JSON (docs/probe.md): all of it here ---- */

static void json_step_extras(json_t *o, const sk_probe_step *s)
{
    if (s->addresses) {
        json_t *a = cli_jarr();
        for (size_t i = 0; i < s->naddresses; i++) cli_jpush(a, cli_jstr(s->addresses[i]));
        cli_jset(o, "addresses", a);
    }
    if (s->tls) {
        const sk_tls_info *ti = s->tls;
        cli_jset(o, "version", cli_jstr(ti->version));
        cli_jset(o, "cipher", cli_jstr(ti->cipher));
        cli_jset(o, "verified", cli_jbool(ti->verified));
        cli_jset(o, "verify_error", cli_jstr(ti->verified ? NULL : ti->verify_text));
        json_t *chain = cli_jarr();
        for (size_t i = 0; i < ti->chain_len; i++) {
            const sk_tls_cert *c = &ti->chain[i];
            char nb[32], na[32];
            sk_time_rfc3339(c->not_before, nb);
            sk_time_rfc3339(c->not_after, na);
            json_t *cert = cli_jobj();
            cli_jset(cert, "subject", cli_jstr(c->subject));
            cli_jset(cert, "issuer", cli_jstr(c->issuer));
            cli_jset(cert, "not_before", cli_jstr(nb));
            cli_jset(cert, "not_after", cli_jstr(na));
            cli_jset(cert, "names", cli_jstr(c->san));
            cli_jset(cert, "self_signed", cli_jbool(c->self_signed));
            cli_jpush(chain, cert);
        }
        cli_jset(o, "chain", chain);
    }
    if (s->peer) {
        cli_jset(o, "peer", cli_jstr(sk_peer_kind_name(s->peer->kind)));
        cli_jset(o, "peer_said", cli_jstr(s->peer->said[0] ? s->peer->said : NULL));
    }
    if (s->check == SK_PROBE_EHLO && s->verdict != SK_PROBE_FAIL) {
        cli_jset(o, "server_name", cli_jstr(s->server_name));
        cli_jset(o, "esmtp", cli_jbool(s->esmtp));
        json_t *exts = cli_jarr();
        for (size_t i = 0; i < s->nextensions; i++) {
            const sk_probe_ext *x = &s->extensions[i];
            json_t *e = cli_jobj();
            cli_jset(e, "keyword", cli_jstr(x->keyword));
            cli_jset(e, "params", cli_jstr(x->params));
            cli_jset(e, "meaning", cli_jstr(x->meaning));
            cli_jpush(exts, e);
        }
        cli_jset(o, "extensions", exts);
    }
    if (s->mechanism) cli_jset(o, "mechanism", cli_jstr(s->mechanism));
    if (s->check == SK_PROBE_RCPT) cli_jset(o, "recipient", cli_jstr(s->recipient));
}

static void print_json(const char *host, unsigned port, sk_tls_mode tls, const sk_probe *p,
                       int exit_code)
{
    const sk_probe_step *failed = sk_probe_failure(p);
    json_t *root = cli_jobj();
    cli_jset(root, "host", cli_jstr(host));
    cli_jset(root, "port", cli_jint(port));
    cli_jset(root, "tls", cli_jstr(tls_mode_label(tls)));
    cli_jset(root, "status", cli_jstr(verdict_json[p ? sk_probe_overall(p) : SK_PROBE_PASS]));
    cli_jset(root, "exit_code", cli_jint(exit_code));
    cli_jset(root, "failed_step", cli_jstr(failed ? sk_probe_check_name(failed->check) : NULL));
    json_t *steps = cli_jarr();
    for (size_t i = 0; i < sk_probe_count(p); i++) {
        const sk_probe_step *s = sk_probe_step_at(p, i);
        if (s->verdict == SK_PROBE_SKIP) continue;
        json_t *o = cli_jobj();
        cli_jset(o, "step", cli_jstr(sk_probe_check_name(s->check)));
        cli_jset(o, "status", cli_jstr(verdict_json[s->verdict]));
        cli_jset(o, "detail", cli_jstr(s->detail));
        if (s->address[0]) cli_jset(o, "address", cli_jstr(s->address));
        if (s->elapsed_ms >= 0) cli_jset(o, "elapsed_ms", cli_jint(s->elapsed_ms));
        if (s->has_reply) {
            cli_jset(o, "code", cli_jint(s->reply.code));
            cli_jset(o, "enhanced", cli_jstr(s->reply.enhanced));
            cli_jset(o, "text", cli_jstr(s->reply.text));
            if (s->reply.enhanced[0])
                cli_jset(o, "enhanced_meaning", cli_jstr(sk_enhanced_describe(s->reply.enhanced)));
        }
        if (s->explanation) cli_jset(o, "explanation", cli_jstr(s->explanation));
        if (s->hint[0]) cli_jset(o, "fix", cli_jstr(s->hint));
        if (s->truncated)
            cli_jset(o, "truncated", cli_jbool(1));
        else
            json_step_extras(o, s);
        cli_jpush(steps, o);
    }
    cli_jset(root, "steps", steps);
    cli_json_print(root);
}

/* ---- command line ---- */

typedef struct probe_args {
    const char *host;
    unsigned short port;
    sk_tls_mode tls;
    const char *user, *password, *ca_file, *from, *helo, *tls_name;
    int insecure;
    const char *to[SK_PROBE_RCPTS_MAX];
    size_t nto;
    unsigned timeout_ms;
    int json, verbose;
} probe_args;

static void usage(FILE *f)
{
    fprintf(f, "usage: smtpkit probe HOST[:PORT] [options]\n"
               "       smtpkit probe --server HOST[:PORT] [options]\n"
               "\n"
               "Check a mail server step by step and explain what fails and how to fix it:\n"
               "DNS, TCP (each address), greeting, EHLO (extensions explained), TLS (version,\n"
               "cipher, certificate chain and why it does not verify), AUTH, and with --from /\n"
               "--to the envelope (MAIL, RCPT, then RSET: nothing is sent). A port that does\n"
               "not greet within 1s is asked what it is on two more connections (a TLS\n"
               "ClientHello, an HTTP request): a TLS-first port or a web server is named at\n"
               "once.\n"
               "\n"
               "HOST is a name or an address ([2001:db8::1]:587 for IPv6 with a port).\n"
               "PORT defaults to 465 with --tls implicit, 587 otherwise. The options that\n"
               "`smtpkit send` has too mean the same there.\n"
               "\n"
               "options:\n"
               "  --server HOST[:PORT]          the server (instead of the HOST[:PORT] word)\n"
               "  --tls starttls|implicit|none  TLS mode (default: implicit on port 465,\n"
               "                                starttls elsewhere)\n"
               "  --ca-file FILE                trust the CA certificates in FILE (PEM)\n"
               "  --insecure                    a certificate that does not verify is a\n"
               "                                warning, not a failure (still encrypts)\n"
               "  --tls-name NAME               name to verify the certificate against and\n"
               "                                send as SNI (default HOST)\n"
               "  --user USER                   authenticate as USER\n"
               "  --password-file FILE          the password is FILE's first line (or set\n"
               "                                SMTPKIT_PASSWORD); never printed\n"
               "  --from ADDR                   try MAIL FROM:<ADDR>\n"
               "  --to ADDR                     try RCPT TO:<ADDR> (repeatable; needs --from)\n"
               "  --helo NAME                   name to send in EHLO (default: this host's)\n"
               "  --timeout DURATION            per step, e.g. 2s, 500ms (default 10s)\n"
               "  --json                        print one JSON object with every step\n"
               "  --verbose                     print the SMTP conversation on stderr\n"
               "  -h, --help                    this text\n"
               "\n"
               "Exit codes: 0 all checks passed (warnings allowed); 64 usage; 69 permanent\n"
               "failure (5xx); 75 temporary failure (4xx, DNS, refused, timeout, a port that\n"
               "never speaks); 76 TLS, or not an SMTP server (a TLS-first port without\n"
               "--tls implicit, a web server); 77 authentication failed; 78 configuration\n"
               "error.\n");
}

static void transcript(void *ctx, char dir, const char *line, size_t len)
{
    fprintf(stderr, "%c: %.*s\n", dir, (int)len, line);
}

/* HOST, HOST:PORT, [V6]:PORT, or a bare IPv6 address. host is rewritten
 * in place (brackets and port removed). */
static int parse_target(char *target, const char **host, unsigned *port)
{
    *port = 0;
    char *colon = NULL;
    if (target[0] == '[') {
        char *close = strchr(target, ']');
        if (!close) return -1;
        *close = '\0';
        *host = target + 1;
        if (close[1] == ':')
            colon = close + 1;
        else if (close[1])
            return -1;
    } else {
        *host = target;
        colon = strchr(target, ':');
        if (colon && strchr(colon + 1, ':')) colon = NULL; /* IPv6 without port */
    }
    if (colon) {
        *colon = '\0';
        char *end;
        unsigned long v = strtoul(colon + 1, &end, 10);
        if (!colon[1] || *end || v == 0 || v > 65535) return -1;
        *port = (unsigned)v;
    }
    return **host ? 0 : -1;
}

int cmd_probe(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"tls", required_argument, NULL, 't'},
        {"user", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, 'p'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 'r'},
        {"ca-file", required_argument, NULL, 'c'},
        {"server", required_argument, NULL, 's'},
        {"insecure", no_argument, NULL, 'k'},
        {"tls-name", required_argument, NULL, 'N'},
        {"helo", required_argument, NULL, 'H'},
        {"timeout", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    probe_args p;
    memset(&p, 0, sizeof p);
    p.timeout_ms = PROBE_TIMEOUT_MS_DEFAULT;
    int tls_set = 0;
    const char *password_file = NULL, *server = NULL;
    int opt;
    opterr = 0; /* our own messages, naming the argument */
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 't':
            tls_set = 1;
            if (!strcmp(optarg, "starttls"))
                p.tls = SK_TLS_STARTTLS;
            else if (!strcmp(optarg, "implicit"))
                p.tls = SK_TLS_IMPLICIT;
            else if (!strcmp(optarg, "none"))
                p.tls = SK_TLS_NONE;
            else
                return cli_usage_error("probe", "--tls must be starttls, implicit or none");
            break;
        case 'u':
            p.user = optarg;
            break;
        case 'p':
            password_file = optarg;
            break;
        case 'f':
            p.from = optarg;
            break;
        case 'r':
            if (p.nto == SK_PROBE_RCPTS_MAX)
                return cli_usage_error("probe", "at most %d --to", SK_PROBE_RCPTS_MAX);
            p.to[p.nto++] = optarg;
            break;
        case 'c':
            p.ca_file = optarg;
            break;
        case 's':
            server = optarg;
            break;
        case 'k':
            p.insecure = 1;
            break;
        case 'N':
            p.tls_name = optarg;
            break;
        case 'H':
            p.helo = optarg;
            break;
        case 'T': {
            uint64_t ms;
            if (sk_parse_duration_ms(optarg, &ms) != SK_OK || ms == 0 || ms > 3600000)
                return cli_usage_error("probe", "bad --timeout '%s' (e.g. 10s, 500ms)", optarg);
            p.timeout_ms = (unsigned)ms;
            break;
        }
        case 'j':
            p.json = 1;
            break;
        case 'v':
            p.verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return EX_OK;
        default:
            return cli_getopt_error("probe", opt, argv, longopts);
        }
    }
    /* The server as `smtpkit send` names it (--server), or as a word. */
    if (server && optind < argc)
        return cli_usage_error("probe", "give the server once: '%s' or --server '%s'", argv[optind],
                               server);
    if (!server && optind == argc)
        return cli_usage_error("probe", "give the server: HOST[:PORT] or --server HOST[:PORT]");
    if (optind < argc - 1)
        return cli_usage_error("probe", "unexpected argument '%s'", argv[optind + 1]);
    const char *target = server ? server : argv[optind];
    char target_buf[512];
    if (strlen(target) >= sizeof target_buf)
        return cli_usage_error("probe", "%s '%.40s...': too long", server ? "--server" : "server",
                               target);
    snprintf(target_buf, sizeof target_buf, "%s", target);
    unsigned port;
    if (parse_target(target_buf, &p.host, &port) < 0)
        return cli_usage_error("probe", "bad %s '%s' (HOST[:PORT], [IPv6]:PORT)",
                               server ? "--server" : "server", target);
    if (!tls_set) p.tls = port == 465 ? SK_TLS_IMPLICIT : SK_TLS_STARTTLS;
    p.port = (unsigned short)(port ? port : p.tls == SK_TLS_IMPLICIT ? 465 : 587);
    if (p.nto && !p.from) return cli_usage_error("probe", "--to needs --from");
    if (password_file && !p.user) return cli_usage_error("probe", "--password-file needs --user");
    char *password = NULL;
    if (p.user) {
        if (password_file) {
            password = cli_read_first_line(password_file);
            if (!password) {
                cli_warn("probe", "cannot read password file %s: %s", password_file,
                         strerror(errno));
                return EX_CONFIG;
            }
        } else if (getenv("SMTPKIT_PASSWORD")) {
            password = sk_strdup(getenv("SMTPKIT_PASSWORD"));
        } else {
            return cli_usage_error("probe", "--user needs --password-file or SMTPKIT_PASSWORD");
        }
        p.password = password;
    }
    if (p.ca_file && access(p.ca_file, R_OK) != 0) {
        cli_warn("probe", "cannot read CA file %s: %s", p.ca_file, strerror(errno));
        sk_free(password);
        return EX_CONFIG;
    }

    if (!p.json)
        printf("smtpkit probe %s port %u, TLS %s\n", p.host, p.port, tls_mode_label(p.tls));
    sk_client_opts o = {
        .host = p.host,
        .port = p.port,
        .tls = p.tls,
        .ca_file = p.ca_file,
        .insecure = p.insecure,
        .tls_name = p.tls_name,
        .helo_name = p.helo,
        .user = p.user,
        .password = p.password,
        .connect_timeout_ms = p.timeout_ms,
        .greeting_timeout_ms = p.timeout_ms,
        .command_timeout_ms = p.timeout_ms,
        .mail_timeout_ms = p.timeout_ms,
        .rcpt_timeout_ms = p.timeout_ms,
        .transcript = p.verbose ? transcript : NULL,
        /* A TLS-first or web server is told at once, not after the
         * greeting timeout. */
        .identify_after_ms = SK_CLIENT_IDENTIFY_AFTER_MS,
    };
    sk_probe_opts po = {
        .from = p.from,
        .to = p.to,
        .nto = p.nto,
        .names = &cli_option_names,
        .on_step = p.json ? NULL : print_step,
    };
    sk_client *c = sk_client_new(&o);
    sk_probe *res = NULL;
    sk_error e;
    sk_error_clear(&e);
    int exit_code = EX_OK;
    if (!c || sk_client_probe(c, &po, &res, &e) != SK_OK) exit_code = cli_exit_code(&e);
    sk_client_free(c);
    if (password) {
        explicit_bzero(password, strlen(password));
        sk_free(password);
    }
    if (!res) {
        cli_warn("probe", "%s", c ? e.text : "out of memory");
        return c ? exit_code : EX_SOFTWARE;
    }
    const sk_probe_step *failed = sk_probe_failure(res);
    if (p.json) {
        print_json(p.host, p.port, p.tls, res, exit_code);
    } else if (failed) {
        printf("result: FAIL at %s (exit %d)\n", sk_probe_check_name(failed->check), exit_code);
    } else {
        int warns = 0;
        for (size_t i = 0; i < sk_probe_count(res); i++)
            warns += sk_probe_step_at(res, i)->verdict == SK_PROBE_WARN;
        if (warns)
            printf("result: OK with %d warning%s\n", warns, warns == 1 ? "" : "s");
        else
            printf("result: OK\n");
    }
    sk_probe_free(res);
    return exit_code;
}
