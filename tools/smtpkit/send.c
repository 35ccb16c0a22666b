/* `smtpkit send`: compose a message (or take a prepared one) and submit it
 * over SMTP, reporting the outcome for people (stderr) or scripts (--json). */
#include "send_int.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A person waits at the terminal: give up on a host that does not answer
 * within seconds, as swaks, msmtp and curl do, rather than after the
 * RFC 5321 4.5.3.2 minutes an MTA waits (those remain the library's
 * defaults, and --timeout sets every step). */
#define SEND_CONNECT_TIMEOUT_MS  (10 * 1000)
#define SEND_GREETING_TIMEOUT_MS (15 * 1000)

enum {
    OPT_SERVER = 256,
    OPT_TLS,
    OPT_CA_FILE,
    OPT_INSECURE,
    OPT_TLS_NAME,
    OPT_USER,
    OPT_PASSWORD_FILE,
    OPT_OAUTH_TOKEN_FILE,
    OPT_AUTH,
    OPT_ALLOW_PLAINTEXT_AUTH,
    OPT_FROM,
    OPT_TO,
    OPT_CC,
    OPT_BCC,
    OPT_SUBJECT,
    OPT_TEXT,
    OPT_HTML,
    OPT_ATTACH,
    OPT_INLINE,
    OPT_HEADER,
    OPT_MESSAGE,
    OPT_PRIORITY,
    OPT_DSN_NOTIFY,
    OPT_DSN_RET,
    OPT_ENVID,
    OPT_HELO,
    OPT_TIMEOUT,
    OPT_VERBOSE,
    OPT_QUIET,
    OPT_JSON,
    OPT_HELP,
};

static const struct option long_options[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"tls", required_argument, NULL, OPT_TLS},
    {"ca-file", required_argument, NULL, OPT_CA_FILE},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"tls-name", required_argument, NULL, OPT_TLS_NAME},
    {"user", required_argument, NULL, OPT_USER},
    {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
    {"oauth-token-file", required_argument, NULL, OPT_OAUTH_TOKEN_FILE},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"allow-plaintext-auth", no_argument, NULL, OPT_ALLOW_PLAINTEXT_AUTH},
    {"from", required_argument, NULL, OPT_FROM},
    {"to", required_argument, NULL, OPT_TO},
    {"cc", required_argument, NULL, OPT_CC},
    {"bcc", required_argument, NULL, OPT_BCC},
    {"subject", required_argument, NULL, OPT_SUBJECT},
    {"text", required_argument, NULL, OPT_TEXT},
    {"html", required_argument, NULL, OPT_HTML},
    {"attach", required_argument, NULL, OPT_ATTACH},
    {"inline", required_argument, NULL, OPT_INLINE},
    {"header", required_argument, NULL, OPT_HEADER},
    {"message", required_argument, NULL, OPT_MESSAGE},
    {"priority", required_argument, NULL, OPT_PRIORITY},
    {"dsn-notify", required_argument, NULL, OPT_DSN_NOTIFY},
    {"dsn-ret", required_argument, NULL, OPT_DSN_RET},
    {"envid", required_argument, NULL, OPT_ENVID},
    {"helo", required_argument, NULL, OPT_HELO},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const char usage_text[] =
    "usage: smtpkit send --server HOST[:PORT] --from ADDR --to ADDR [options]\n"
    "       smtpkit send --server HOST[:PORT] [--from ADDR] --message FILE [options]\n"
    "\n"
    "Connection:\n"
    "  --server HOST[:PORT]    server to submit to; port 587 by default ([v6]:PORT)\n"
    "  --tls MODE              starttls (required; the default), implicit (the\n"
    "                          default on port 465) or none\n"
    "  --ca-file F             trust the CA certificates in PEM file F\n"
    "  --insecure              do not verify the certificate (still encrypts)\n"
    "  --tls-name NAME         name to verify the certificate against (default HOST)\n"
    "  --helo NAME             name to greet with (default: this machine's name)\n"
    "  --timeout DURATION      limit for each step, e.g. 10s, 500ms (default: 10s to\n"
    "                          connect, 15s for the greeting, then the RFC 5321\n"
    "                          4.5.3.2 values)\n"
    "Authentication:\n"
    "  --user U                authenticate as U\n"
    "  --password-file F       the password is F's first line; otherwise the\n"
    "                          environment variable SMTPKIT_PASSWORD\n"
    "  --oauth-token-file F    an OAuth 2.0 bearer token for XOAUTH2\n"
    "  --auth MECH             PLAIN, LOGIN, CRAM-MD5 or XOAUTH2 (default: the\n"
    "                          strongest the server offers)\n"
    "  --allow-plaintext-auth  allow AUTH without TLS (credentials in the clear)\n"
    "Message (ADDR is user@domain or 'Display Name <user@domain>', UTF-8 allowed):\n"
    "  --from ADDR             author and envelope sender\n"
    "  --to ADDR, --cc ADDR    recipients; repeat for more\n"
    "  --bcc ADDR              recipient not shown in the message; repeatable\n"
    "  --subject S             subject (UTF-8)\n"
    "  --text FILE|-           plain-text body (UTF-8), '-' for standard input\n"
    "  --html FILE             HTML body (with --text: multipart/alternative)\n"
    "  --attach FILE           attach a file (type from its extension); repeatable\n"
    "  --inline CID=FILE       an inline part the HTML shows as cid:CID; repeatable\n"
    "  --header 'Name: value'  an extra header field; repeatable\n"
    "  --message FILE          send a prepared RFC 5322 message instead; without\n"
    "                          --to/--cc/--bcc its To, Cc and Bcc fields are the\n"
    "                          recipients (like sendmail -t); Bcc fields are removed\n"
    "Delivery:\n"
    "  --priority N            RFC 6710 MT-PRIORITY, -9..9 (when the server offers it)\n"
    "  --dsn-notify LIST       RFC 3461: NEVER, or SUCCESS,FAILURE,DELAY\n"
    "  --dsn-ret FULL|HDRS     RFC 3461: what a bounce returns\n"
    "  --envid ID              RFC 3461 envelope identifier\n"
    "Output:\n"
    "  --verbose               print the SMTP conversation on stderr (AUTH masked)\n"
    "  --quiet                 print errors only: no warnings, no progress line, no\n"
    "                          \"sent to\" line\n"
    "  --json                  print one JSON object with the outcome on stdout\n"
    "  -h, --help              this text\n"
    "\n"
    "Exit codes (sysexits.h): 0 sent; 64 usage error; 65 bad input data; 69\n"
    "permanent failure (5xx); 75 temporary failure (4xx, refused connection,\n"
    "timeout, a port that never speaks); 76 unusable peer (not SMTP: a TLS-first\n"
    "port without --tls implicit, a web server; TLS failed, certificate not\n"
    "trusted); 77 authentication failed; 78 configuration error. When some\n"
    "recipients are refused the message still goes to the others; the exit code\n"
    "is then 69 if any refusal was permanent, else 75. A message larger than\n"
    "the server's SIZE limit is not sent (65).\n"
    "\n"
    "On a terminal, messages from 256 KiB on show a progress line on stderr\n"
    "(not with --json, --verbose or --quiet).\n";

/* The whole message as sent; base64 makes attachments a third larger. */
#define SEND_MESSAGE_MAX_OCTETS (SK_MIME_ATTACHMENT_MAX_OCTETS * 2u)

static void list_add(str_list *l, const char *s)
{
    l->v[l->n++] = s;
}

/* ---- Arguments -------------------------------------------------------- */

/* HOST, HOST:PORT, [V6] or [V6]:PORT into host (copied into buf) and port
 * (0 = the default). Returns 0 when malformed. */
static int parse_server(const char *s, char *buf, size_t bufsz, unsigned short *port)
{
    const char *host = s, *colon = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end) return 0;
        host = s + 1;
        hlen = (size_t)(end - host);
        if (end[1] == ':')
            colon = end + 1;
        else if (end[1] != '\0')
            return 0;
    } else {
        colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) colon = NULL; /* a bare IPv6 address */
        hlen = colon ? (size_t)(colon - s) : strlen(s);
    }
    if (hlen == 0 || hlen >= bufsz) return 0;
    memcpy(buf, host, hlen);
    buf[hlen] = '\0';
    *port = 0;
    if (colon) {
        char *end;
        errno = 0;
        long p = strtol(colon + 1, &end, 10);
        if (errno || end == colon + 1 || *end || p < 1 || p > 65535) return 0;
        *port = (unsigned short)p;
    }
    return 1;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* Returns -1 when parsed, else the exit code (help: 0, errors: 64). */
static int parse_args(int argc, char **argv, send_args *a, outcome *o)
{
    opterr = 0; /* our own messages, naming the argument */
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER:
            a->server = optarg;
            break;
        case OPT_TLS:
            if (!strcmp(optarg, "starttls"))
                a->tls = SK_TLS_STARTTLS;
            else if (!strcmp(optarg, "implicit"))
                a->tls = SK_TLS_IMPLICIT;
            else if (!strcmp(optarg, "none"))
                a->tls = SK_TLS_NONE;
            else
                return sn_fail_early(o, a, EX_USAGE, "--tls", SK_STEP_NONE,
                                     "--tls '%s': expected starttls, implicit or none", optarg);
            break;
        case OPT_CA_FILE:
            a->ca_file = optarg;
            break;
        case OPT_INSECURE:
            a->insecure = 1;
            break;
        case OPT_TLS_NAME:
            a->tls_name = optarg;
            break;
        case OPT_USER:
            a->user = optarg;
            break;
        case OPT_PASSWORD_FILE:
            a->password_file = optarg;
            break;
        case OPT_OAUTH_TOKEN_FILE:
            a->oauth_token_file = optarg;
            break;
        case OPT_AUTH:
            if (sk_sasl_mech_parse(optarg) == SK_SASL_NONE)
                return sn_fail_early(o, a, EX_USAGE, "--auth", SK_STEP_NONE,
                                     "--auth '%s': expected PLAIN, LOGIN, CRAM-MD5 or XOAUTH2",
                                     optarg);
            a->auth = optarg;
            break;
        case OPT_ALLOW_PLAINTEXT_AUTH:
            a->allow_plaintext_auth = 1;
            break;
        case OPT_FROM:
            a->from = optarg;
            break;
        case OPT_TO:
            list_add(&a->to, optarg);
            break;
        case OPT_CC:
            list_add(&a->cc, optarg);
            break;
        case OPT_BCC:
            list_add(&a->bcc, optarg);
            break;
        case OPT_SUBJECT:
            a->subject = optarg;
            break;
        case OPT_TEXT:
            a->text = optarg;
            break;
        case OPT_HTML:
            a->html = optarg;
            break;
        case OPT_ATTACH:
            list_add(&a->attach, optarg);
            break;
        case OPT_INLINE:
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return sn_fail_early(o, a, EX_USAGE, "--inline", SK_STEP_NONE,
                                     "--inline '%s': expected CID=FILE", optarg);
            list_add(&a->inline_parts, optarg);
            break;
        case OPT_HEADER:
            if (!strchr(optarg, ':') || optarg[0] == ':')
                return sn_fail_early(o, a, EX_USAGE, "--header", SK_STEP_NONE,
                                     "--header '%s': expected 'Name: value'", optarg);
            list_add(&a->headers, optarg);
            break;
        case OPT_MESSAGE:
            a->message = optarg;
            break;
        case OPT_PRIORITY:
            /* RFC 6710 2: priorities run from -9 to 9. */
            if (!parse_int(optarg, -9, 9, &a->priority))
                return sn_fail_early(o, a, EX_USAGE, "--priority", SK_STEP_NONE,
                                     "--priority '%s': expected a number from -9 to 9", optarg);
            a->has_priority = 1;
            break;
        case OPT_DSN_NOTIFY:
            a->dsn_notify = optarg;
            break;
        case OPT_DSN_RET:
            if (strcasecmp(optarg, "FULL") && strcasecmp(optarg, "HDRS"))
                return sn_fail_early(o, a, EX_USAGE, "--dsn-ret", SK_STEP_NONE,
                                     "--dsn-ret '%s': expected FULL or HDRS", optarg);
            a->dsn_ret = optarg;
            break;
        case OPT_ENVID:
            a->envid = optarg;
            break;
        case OPT_HELO:
            a->helo = optarg;
            break;
        case OPT_TIMEOUT:
            if (sk_parse_duration_ms(optarg, &a->timeout_ms) || a->timeout_ms == 0 ||
                a->timeout_ms > 24u * 3600 * 1000)
                return sn_fail_early(o, a, EX_USAGE, "--timeout", SK_STEP_NONE,
                                     "--timeout '%s': expected a duration such as 30s or 500ms",
                                     optarg);
            break;
        case OPT_VERBOSE:
            a->verbose = 1;
            break;
        case OPT_QUIET:
            a->quiet = 1;
            break;
        case OPT_JSON:
            a->json = 1;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            return 0;
        case ':':
            return sn_fail_early(o, a, EX_USAGE, argv[optind - 1], SK_STEP_NONE,
                                 "option '%s' needs a value", argv[optind - 1]);
        default: {
            const char *bad = argv[optind - 1];
            const char *names[sizeof long_options / sizeof long_options[0]];
            for (size_t i = 0; i < sizeof long_options / sizeof long_options[0]; i++)
                names[i] = long_options[i].name;
            char word[64];
            snprintf(word, sizeof word, "%.*s", (int)strcspn(bad + strspn(bad, "-"), "="),
                     bad + strspn(bad, "-"));
            const char *near = cli_nearest(word, names);
            if (near)
                return sn_fail_early(o, a, EX_USAGE, bad, SK_STEP_NONE,
                                     "unknown option '%s' (did you mean '--%s'?)", bad, near);
            return sn_fail_early(o, a, EX_USAGE, bad, SK_STEP_NONE, "unknown option '%s'", bad);
        }
        }
    }
    if (optind < argc)
        return sn_fail_early(o, a, EX_USAGE, argv[optind], SK_STEP_NONE, "unexpected argument '%s'",
                             argv[optind]);
    if (!a->server)
        return sn_fail_early(o, a, EX_USAGE, "--server", SK_STEP_NONE, "--server is required");
    if (a->message) {
        const char *clash = a->subject          ? "--subject"
                            : a->text           ? "--text"
                            : a->html           ? "--html"
                            : a->attach.n       ? "--attach"
                            : a->inline_parts.n ? "--inline"
                            : a->headers.n      ? "--header"
                                                : NULL;
        if (clash)
            return sn_fail_early(o, a, EX_USAGE, clash, SK_STEP_NONE,
                                 "%s cannot be combined with --message (the message is sent as is)",
                                 clash);
    } else {
        if (!a->from)
            return sn_fail_early(o, a, EX_USAGE, "--from", SK_STEP_NONE, "--from is required");
        if (a->to.n + a->cc.n + a->bcc.n == 0)
            return sn_fail_early(o, a, EX_USAGE, "--to", SK_STEP_NONE,
                                 "at least one --to, --cc or --bcc is required");
    }
    if (a->password_file && !a->user)
        return sn_fail_early(o, a, EX_USAGE, "--password-file", SK_STEP_NONE,
                             "--password-file needs --user");
    if (a->oauth_token_file && !a->user)
        return sn_fail_early(o, a, EX_USAGE, "--oauth-token-file", SK_STEP_NONE,
                             "--oauth-token-file needs --user");
    return -1;
}

/* ---- Sending ---------------------------------------------------------- */

/* The exit code for refused recipients: permanent refusals win, since
 * sending again later would not reach those recipients either. */
static int refusal_exit_code(const sk_send_result *res)
{
    int temp = 0;
    for (size_t i = 0; i < res->nrcpt; i++) {
        if (res->rcpts[i].accepted) continue;
        if (sk_reply_class_of(res->rcpts[i].reply.code) == SK_REPLY_PERMANENT)
            return EX_UNAVAILABLE;
        temp = 1;
    }
    return temp ? EX_TEMPFAIL : EX_OK;
}

static void report_refusals(const outcome *o)
{
    for (size_t i = 0; i < o->res.nrcpt; i++) {
        const sk_rcpt_result *rr = &o->res.rcpts[i];
        if (rr->accepted || rr->reply.code == 0) continue;
        sk_error e;
        sk_error_clear(&e);
        e.err = sk_reply_class_of(rr->reply.code) == SK_REPLY_PERMANENT ? SK_ERR_PERMFAIL
                                                                        : SK_ERR_TEMPFAIL;
        e.step = SK_STEP_RCPT;
        e.code = rr->reply.code;
        snprintf(e.enhanced, sizeof e.enhanced, "%s", rr->reply.enhanced);
        snprintf(e.text, sizeof e.text, "%s", rr->reply.text);
        char what[SK_SMTP_PATH_MAX_OCTETS + 64];
        snprintf(what, sizeof what, "recipient <%s> refused", rr->address);
        sn_print_error_block(o, what, &e);
    }
}

static int read_secret(outcome *o, const send_args *a, const char *opt, const char *path,
                       char **out)
{
    *out = cli_read_first_line(path);
    if (!*out)
        return sn_fail_early(o, a, EX_CONFIG, opt, SK_STEP_NONE, "%s '%s': %s", opt, path,
                             strerror(errno));
    return -1;
}

static int deliver(outcome *o, const send_args *a, prepared *p)
{
    char host[256];
    unsigned short port;
    if (!parse_server(a->server, host, sizeof host, &port))
        return sn_fail_early(o, a, EX_USAGE, "--server", SK_STEP_NONE,
                             "--server '%s': expected HOST, HOST:PORT or [IPv6]:PORT", a->server);
    if (a->ca_file && access(a->ca_file, R_OK) != 0)
        return sn_fail_early(o, a, EX_CONFIG, "--ca-file", SK_STEP_NONE, "--ca-file '%s': %s",
                             a->ca_file, strerror(errno));

    int rc = -1;
    char *password = NULL, *token = NULL;
    if (a->password_file &&
        (rc = read_secret(o, a, "--password-file", a->password_file, &password)) >= 0)
        goto out;
    if (a->oauth_token_file &&
        (rc = read_secret(o, a, "--oauth-token-file", a->oauth_token_file, &token)) >= 0)
        goto out;
    const char *env_pw = getenv("SMTPKIT_PASSWORD");
    if (a->user && !password && !token) {
        if (!env_pw) {
            rc = sn_fail_early(o, a, EX_USAGE, "--user", SK_STEP_NONE,
                               "--user needs a password: --password-file F or SMTPKIT_PASSWORD");
            goto out;
        }
    }

    sk_client_opts co = {
        .host = host,
        .connect_timeout_ms = SEND_CONNECT_TIMEOUT_MS,
        .greeting_timeout_ms = SEND_GREETING_TIMEOUT_MS,
        /* No greeting: find out at once whether this is a TLS-first or a
         * web server, rather than wait the whole greeting timeout. */
        .identify_after_ms = SK_CLIENT_IDENTIFY_AFTER_MS,
        .port = port,
        .tls = a->tls,
        .ca_file = a->ca_file,
        .insecure = a->insecure,
        .tls_name = a->tls_name,
        .helo_name = a->helo,
        .user = a->user,
        .password = password ? password : (a->user ? env_pw : NULL),
        .oauth_token = token,
        .auth_mech = a->auth,
        .allow_plaintext_auth = a->allow_plaintext_auth,
        .transcript = a->verbose ? sn_transcript : NULL,
    };
    if (a->timeout_ms) {
        unsigned t = (unsigned)a->timeout_ms;
        co.connect_timeout_ms = co.greeting_timeout_ms = co.command_timeout_ms = t;
        co.mail_timeout_ms = co.rcpt_timeout_ms = t;
        co.data_init_timeout_ms = co.data_block_timeout_ms = co.data_end_timeout_ms = t;
    }
    /* The progress line only where a person watches and nothing else is
     * written to stderr in between. */
    if (!a->json && !a->verbose && !a->quiet && p->data.len >= SEND_PROGRESS_MIN_OCTETS &&
        isatty(STDERR_FILENO)) {
        co.progress = sn_show_progress;
        co.progress_ctx = &o->prog;
    }
    snprintf(o->server, sizeof o->server, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             port ? port : (a->tls == SK_TLS_IMPLICIT ? 465u : 587u));

    o->client = sk_client_new(&co);
    if (!o->client) {
        rc = sn_fail_early(o, a, EX_OSERR, NULL, SK_STEP_NONE, "out of memory");
        goto out;
    }
    if (sk_client_connect(o->client, &o->err) != SK_OK) {
        o->exit_code = cli_exit_code(&o->err);
        sn_print_error_block(o, "could not get ready to send", &o->err);
        rc = o->exit_code;
        goto out;
    }

    sk_send_opts so = {
        .dsn_ret = a->dsn_ret,
        .dsn_envid = a->envid,
        .dsn_notify = a->dsn_notify,
        .has_priority = a->has_priority,
        .priority = a->priority,
    };
    const char *from = p->from_addr ? p->from_addr : p->env.reverse_path;
    o->have_res = 1;
    sk_err r = sk_client_send(o->client, from ? from : "", (const char *const *)o->rcpts, o->nrcpt,
                              p->data.data, p->data.len, &so, &o->res, &o->err);
    sn_progress_end(o);
    const sk_ehlo_info *ext = sk_client_extensions(o->client);
    if (r == SK_ERR_TOO_LONG && o->err.step == SK_STEP_MAIL && ext && ext->size_max &&
        p->data.len > ext->size_max) {
        /* RFC 1870: refused before sending; say it in sizes people read. */
        char have[32], most[32];
        sn_human_size(p->data.len, have, sizeof have);
        sn_human_size(ext->size_max, most, sizeof most);
        snprintf(o->err.text, sizeof o->err.text,
                 "message is %s, the server accepts at most %s (SIZE %llu, RFC 1870)", have, most,
                 (unsigned long long)ext->size_max);
    }
    if (r == SK_OK) {
        sk_error_clear(&o->err);
        o->exit_code = refusal_exit_code(&o->res);
        report_refusals(o);
        if (o->exit_code != EX_OK) {
            /* Report the first refusal as the error for scripts. */
            for (size_t i = 0; i < o->res.nrcpt; i++) {
                const sk_rcpt_result *rr = &o->res.rcpts[i];
                if (rr->accepted || !rr->reply.code) continue;
                o->err.err = o->exit_code == EX_UNAVAILABLE ? SK_ERR_PERMFAIL : SK_ERR_TEMPFAIL;
                o->err.step = SK_STEP_RCPT;
                o->err.code = rr->reply.code;
                snprintf(o->err.enhanced, sizeof o->err.enhanced, "%s", rr->reply.enhanced);
                snprintf(o->err.text, sizeof o->err.text, "%s", rr->reply.text);
                break;
            }
        }
        sk_error qe;
        (void)sk_client_quit(o->client, &qe); /* the message is sent; QUIT is courtesy */
    } else {
        int refused = o->err.step == SK_STEP_RCPT ? refusal_exit_code(&o->res) : EX_OK;
        o->exit_code = refused != EX_OK ? refused : cli_exit_code(&o->err);
        if (o->err.step == SK_STEP_RCPT)
            report_refusals(o);
        else
            sn_print_error_block(o, "the message was not sent", &o->err);
        sk_client_close(o->client);
    }
    if (!a->json && !a->quiet && o->res.sent) {
        printf("sent to %zu of %zu recipient%s: %d %s ", o->res.naccepted, o->nrcpt,
               o->nrcpt == 1 ? "" : "s", o->res.data.code, o->res.data.enhanced);
        sn_print_flat(stdout, o->res.data.text);
        putchar('\n');
    }
    rc = o->exit_code;
out:
    if (password) {
        explicit_bzero(password, strlen(password));
        sk_free(password);
    }
    if (token) {
        explicit_bzero(token, strlen(token));
        sk_free(token);
    }
    return rc;
}

int cmd_send(int argc, char **argv)
{
    send_args a = {0};
    outcome o = {0};
    prepared p = {.data = SK_BUF_INIT(SEND_MESSAGE_MAX_OCTETS)};
    /* Room for every repeatable option: none can occur more than argc times. */
    str_list *lists[] = {&a.to, &a.cc, &a.bcc, &a.attach, &a.inline_parts, &a.headers};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        lists[i]->v = sk_calloc((size_t)argc, sizeof *lists[i]->v);
        if (!lists[i]->v) {
            fprintf(stderr, "smtpkit send: out of memory\n");
            return EX_OSERR;
        }
    }
    /* --json anywhere asks for JSON even about a bad argument before it. */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--json")) a.json = 1;

    int rc = parse_args(argc, argv, &a, &o);
    if (rc >= 0) goto out;
    rc = a.message ? sn_prepare_raw(&o, &a, &p) : sn_compose(&o, &a, &p);
    if (rc >= 0) goto out;
    if ((rc = sn_flag_envelope(&o, &a, &p)) >= 0) goto out;
    if (!a.message && !a.text && !a.html && !a.attach.n && !a.quiet)
        cli_warn(CMD, "warning: the message has no body text (no --text, --html or --attach); "
                      "it is sent with an empty body");
    o.rcpts = (const char *const *)p.env.recipients;
    o.nrcpt = p.env.recipient_count;
    if (!p.from_addr && !p.env.reverse_path) {
        rc = sn_fail_early(&o, &a, EX_USAGE, "--from", SK_STEP_NONE,
                           "--from is required (the message has no From field)");
        goto out;
    }
    rc = deliver(&o, &a, &p);
    if (a.json && o.client) sn_json_report(&o);
out:
    if (o.have_res) sk_send_result_free(&o.res);
    sk_client_free(o.client);
    sk_message_envelope_clear(&p.env);
    sk_free(p.from_addr);
    sk_buf_free(&p.data);
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) sk_free(lists[i]->v);
    return rc;
}
