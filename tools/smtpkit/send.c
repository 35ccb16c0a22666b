/* `smtpkit send`: compose a message (or take a prepared one) and submit it
 * over SMTP, reporting the outcome for people (stderr) or scripts (--json). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define CMD "send"

/* A person waits at the terminal: give up on a host that does not answer
 * within seconds, as swaks, msmtp and curl do, rather than after the
 * RFC 5321 4.5.3.2 minutes an MTA waits (those remain the library's
 * defaults, and --timeout sets every step). */
#define SEND_CONNECT_TIMEOUT_MS  (10 * 1000)
#define SEND_GREETING_TIMEOUT_MS (15 * 1000)
/* The progress line: for messages this large (smaller ones go out in a
 * blink), redrawn at most this often. */
#define SEND_PROGRESS_MIN_OCTETS  (256u * 1024)
#define SEND_PROGRESS_INTERVAL_MS 250

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

typedef struct str_list {
    const char **v;
    size_t n;
} str_list;

typedef struct send_args {
    const char *server;
    sk_tls_mode tls;
    const char *ca_file;
    int insecure;
    const char *tls_name;
    const char *helo;
    uint64_t timeout_ms;
    const char *user;
    const char *password_file;
    const char *oauth_token_file;
    const char *auth;
    int allow_plaintext_auth;
    const char *from;
    str_list to, cc, bcc, attach, inline_parts, headers;
    const char *subject;
    const char *text;
    const char *html;
    const char *message;
    int has_priority;
    int priority;
    const char *dsn_notify;
    const char *dsn_ret;
    const char *envid;
    int verbose;
    int quiet;
    int json;
} send_args;

/* The progress line's state (stderr is a terminal). */
typedef struct progress {
    uint64_t start_ms, last_ms;
    int open; /* a line is on the screen without its line end */
} progress;

/* What happened, for the report: filled as far as the attempt got. */
typedef struct outcome {
    int exit_code;
    const char *bad_arg; /* the argument a usage/data error is about */
    sk_error err;        /* err.err == SK_OK: no error */
    char server[300];
    sk_client *client;
    sk_send_result res;
    int have_res;
    const char *const *rcpts; /* the envelope recipients */
    size_t nrcpt;
    char message_id[256];
    progress prog;
} outcome;

static void list_add(str_list *l, const char *s)
{
    l->v[l->n++] = s;
}

/* ---- Reporting -------------------------------------------------------- */

/* The hint for e, from what the session learned, in our options' words;
 * NULL when there is none. The text stays valid until the next call: the
 * command reports one error, from one thread. */
static const char *hint_for(const outcome *o, const sk_error *e)
{
    static char hint[SK_CLIENT_HINT_MAX_OCTETS];
    sk_option_names names = cli_option_names;
    names.allow_plaintext_auth = "--allow-plaintext-auth";
    return sk_client_hint(o->client, e, &names, hint, sizeof hint);
}

/* Multi-line replies are joined by '\n'; for one-line output use ' / '. */
static void print_flat(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            fputs(" / ", f);
        else
            fputc(*s, f);
    }
}

static void print_error_block(const outcome *o, const char *what, const sk_error *e)
{
    fprintf(stderr, "smtpkit send: %s\n", what);
    fprintf(stderr, "  step:   %s\n", sk_step_name(e->step));
    if (o->server[0]) fprintf(stderr, "  server: %s\n", o->server);
    if (e->code) {
        fprintf(stderr, "  reply:  %d%s%s ", e->code, e->enhanced[0] ? " " : "", e->enhanced);
        print_flat(stderr, e->text);
        fputc('\n', stderr);
    } else {
        fprintf(stderr, "  error:  %s: ", sk_strerror(e->err));
        print_flat(stderr, e->text);
        fputc('\n', stderr);
    }
    const char *hint = hint_for(o, e);
    if (hint) fprintf(stderr, "  hint:   %s\n", hint);
}

static json_t *json_reply(const sk_reply *r)
{
    if (!r || r->code == 0) return cli_jnull();
    json_t *o = cli_jobj();
    cli_jset(o, "code", cli_jint(r->code));
    cli_jset(o, "enhanced", cli_jstr(r->enhanced[0] ? r->enhanced : NULL));
    cli_jset(o, "text", cli_jstr(r->text));
    return o;
}

/* A string member that is null when empty. */
static json_t *jstr_or_null(const char *s)
{
    return cli_jstr(s && s[0] ? s : NULL);
}

static void json_report(const outcome *o)
{
    json_t *j = cli_jobj();
    cli_jset(j, "ok", cli_jbool(o->exit_code == 0));
    cli_jset(j, "exit_code", cli_jint(o->exit_code));
    cli_jset(j, "sent", cli_jbool(o->have_res && o->res.sent));
    cli_jset(j, "server", jstr_or_null(o->server));
    cli_jset(j, "remote_address",
             jstr_or_null(o->client ? sk_client_remote_address(o->client) : ""));
    const sk_tls_info *ti = o->client ? sk_client_tls_info(o->client) : NULL;
    json_t *tls = cli_jnull();
    if (ti && ti->active) {
        tls = cli_jobj();
        cli_jset(tls, "version", cli_jstr(ti->version));
        cli_jset(tls, "cipher", cli_jstr(ti->cipher));
        cli_jset(tls, "verified", cli_jbool(ti->verified));
    }
    cli_jset(j, "tls", tls);
    sk_sasl_mech mech = o->client ? sk_client_auth_mech(o->client) : SK_SASL_NONE;
    cli_jset(j, "auth", cli_jstr(mech != SK_SASL_NONE ? sk_sasl_mech_name(mech) : NULL));
    cli_jset(j, "message_id", jstr_or_null(o->message_id));
    cli_jset(j, "reply", json_reply(o->have_res ? &o->res.data : NULL));
    cli_jset(j, "queue_id", o->have_res ? jstr_or_null(o->res.queue_id) : cli_jnull());
    json_t *rcpts = cli_jarr();
    for (size_t i = 0; i < o->nrcpt; i++) {
        const sk_rcpt_result *rr = o->have_res && i < o->res.nrcpt ? &o->res.rcpts[i] : NULL;
        const sk_reply *r = rr && rr->reply.code ? &rr->reply : NULL;
        json_t *x = cli_jobj();
        cli_jset(x, "address", cli_jstr(o->rcpts[i]));
        cli_jset(x, "accepted", cli_jbool(rr && rr->accepted));
        cli_jset(x, "code", r ? cli_jint(r->code) : cli_jnull());
        cli_jset(x, "enhanced", r ? jstr_or_null(r->enhanced) : cli_jnull());
        cli_jset(x, "text", cli_jstr(r ? r->text : NULL));
        cli_jpush(rcpts, x);
    }
    cli_jset(j, "recipients", rcpts);
    json_t *err = cli_jnull();
    if (o->err.err != SK_OK) {
        err = cli_jobj();
        cli_jset(err, "step",
                 cli_jstr(o->exit_code == EX_USAGE ? "usage" : sk_step_name(o->err.step)));
        cli_jset(err, "reason", cli_jstr(sk_strerror(o->err.err)));
        cli_jset(err, "argument", cli_jstr(o->bad_arg));
        cli_jset(err, "code", o->err.code ? cli_jint(o->err.code) : cli_jnull());
        cli_jset(err, "enhanced", jstr_or_null(o->err.enhanced));
        cli_jset(err, "text", cli_jstr(o->err.text));
        cli_jset(err, "hint", cli_jstr(hint_for(o, &o->err)));
    }
    cli_jset(j, "error", err);
    cli_json_print(j);
    fflush(stdout);
}

/* A usage (64), data (65) or configuration (78) error found before
 * connecting: one line naming the argument, and the JSON object if asked. */
static int fail_early(outcome *o, const send_args *a, int code, const char *arg, sk_step step,
                      const char *fmt, ...) SK_PRINTF(6, 7);
static int fail_early(outcome *o, const send_args *a, int code, const char *arg, sk_step step,
                      const char *fmt, ...)
{
    char msg[SK_REPLY_TEXT_MAX_OCTETS];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == EX_USAGE)
        cli_usage_error(CMD, "%s", msg);
    else
        cli_warn(CMD, "%s", msg);
    o->exit_code = code;
    o->bad_arg = arg;
    sk_error_set(&o->err, code == EX_CONFIG ? SK_ERR_CONFIG : SK_ERR_INVAL, step, "%s", msg);
    if (a->json) json_report(o);
    return code;
}

static void transcript(void *ctx, char dir, const char *line, size_t len)
{
    (void)ctx;
    fprintf(stderr, "%c: %.*s\n", dir, (int)len, line);
}

/* A size for people, in decimal units as disks and mail providers state
 * them: "850 B", "12.4 MB", "10 MB". */
static void human_size(uint64_t n, char *out, size_t size)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    size_t u = 0;
    double v = (double)n;
    /* 999.96 kB would print as "1000 kB": that is 1 MB. */
    while (v >= 999.95 && u + 1 < sizeof units / sizeof units[0]) v /= 1000, u++;
    if (u == 0) {
        snprintf(out, size, "%llu B", (unsigned long long)n);
        return;
    }
    snprintf(out, size, "%.1f", v);
    size_t l = strlen(out);
    if (l > 2 && !strcmp(out + l - 2, ".0")) out[l - 2] = '\0';
    l = strlen(out);
    snprintf(out + l, size - l, " %s", units[u]);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The progress line on stderr (a terminal), like curl's: octets sent of
 * the total, the share, the rate; redrawn in place. */
static void show_progress(void *ctx, uint64_t sent, uint64_t total)
{
    progress *p = ctx;
    uint64_t now = mono_ms();
    if (sent == 0 || !p->start_ms) p->start_ms = now;
    if (sent != 0 && sent < total && now - p->last_ms < SEND_PROGRESS_INTERVAL_MS) return;
    p->last_ms = now;
    char done[32], all[32], rate[32] = "";
    human_size(sent, done, sizeof done);
    human_size(total, all, sizeof all);
    uint64_t ms = now > p->start_ms ? now - p->start_ms : 1;
    if (sent > 0) {
        human_size(sent * 1000 / ms, rate, sizeof rate);
        size_t l = strlen(rate);
        snprintf(rate + l, sizeof rate - l, "/s");
    }
    /* \033[K clears what a longer earlier line left. */
    fprintf(stderr, "\rsending: %s of %s (%u%%)%s%s\033[K", done, all,
            total ? (unsigned)(sent * 100 / total) : 100u, rate[0] ? ", " : "", rate);
    p->open = 1;
    if (sent >= total) {
        fputc('\n', stderr);
        p->open = 0;
    }
    fflush(stderr);
}

/* End a progress line cut short (an error follows on its own line). */
static void progress_end(outcome *o)
{
    if (!o->prog.open) return;
    fputc('\n', stderr);
    o->prog.open = 0;
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
                return fail_early(o, a, EX_USAGE, "--tls", SK_STEP_NONE,
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
                return fail_early(o, a, EX_USAGE, "--auth", SK_STEP_NONE,
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
                return fail_early(o, a, EX_USAGE, "--inline", SK_STEP_NONE,
                                  "--inline '%s': expected CID=FILE", optarg);
            list_add(&a->inline_parts, optarg);
            break;
        case OPT_HEADER:
            if (!strchr(optarg, ':') || optarg[0] == ':')
                return fail_early(o, a, EX_USAGE, "--header", SK_STEP_NONE,
                                  "--header '%s': expected 'Name: value'", optarg);
            list_add(&a->headers, optarg);
            break;
        case OPT_MESSAGE:
            a->message = optarg;
            break;
        case OPT_PRIORITY:
            /* RFC 6710 2: priorities run from -9 to 9. */
            if (!parse_int(optarg, -9, 9, &a->priority))
                return fail_early(o, a, EX_USAGE, "--priority", SK_STEP_NONE,
                                  "--priority '%s': expected a number from -9 to 9", optarg);
            a->has_priority = 1;
            break;
        case OPT_DSN_NOTIFY:
            a->dsn_notify = optarg;
            break;
        case OPT_DSN_RET:
            if (strcasecmp(optarg, "FULL") && strcasecmp(optarg, "HDRS"))
                return fail_early(o, a, EX_USAGE, "--dsn-ret", SK_STEP_NONE,
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
                return fail_early(o, a, EX_USAGE, "--timeout", SK_STEP_NONE,
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
            return fail_early(o, a, EX_USAGE, argv[optind - 1], SK_STEP_NONE,
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
                return fail_early(o, a, EX_USAGE, bad, SK_STEP_NONE,
                                  "unknown option '%s' (did you mean '--%s'?)", bad, near);
            return fail_early(o, a, EX_USAGE, bad, SK_STEP_NONE, "unknown option '%s'", bad);
        }
        }
    }
    if (optind < argc)
        return fail_early(o, a, EX_USAGE, argv[optind], SK_STEP_NONE, "unexpected argument '%s'",
                          argv[optind]);
    if (!a->server)
        return fail_early(o, a, EX_USAGE, "--server", SK_STEP_NONE, "--server is required");
    if (a->message) {
        const char *clash = a->subject          ? "--subject"
                            : a->text           ? "--text"
                            : a->html           ? "--html"
                            : a->attach.n       ? "--attach"
                            : a->inline_parts.n ? "--inline"
                            : a->headers.n      ? "--header"
                                                : NULL;
        if (clash)
            return fail_early(o, a, EX_USAGE, clash, SK_STEP_NONE,
                              "%s cannot be combined with --message (the message is sent as is)",
                              clash);
    } else {
        if (!a->from)
            return fail_early(o, a, EX_USAGE, "--from", SK_STEP_NONE, "--from is required");
        if (a->to.n + a->cc.n + a->bcc.n == 0)
            return fail_early(o, a, EX_USAGE, "--to", SK_STEP_NONE,
                              "at least one --to, --cc or --bcc is required");
    }
    if (a->password_file && !a->user)
        return fail_early(o, a, EX_USAGE, "--password-file", SK_STEP_NONE,
                          "--password-file needs --user");
    if (a->oauth_token_file && !a->user)
        return fail_early(o, a, EX_USAGE, "--oauth-token-file", SK_STEP_NONE,
                          "--oauth-token-file needs --user");
    return -1;
}

/* ---- The message ------------------------------------------------------ */

/* The bytes to send and the envelope. */
typedef struct prepared {
    sk_buf data;
    sk_message_envelope env;
    char *from_addr; /* envelope sender from --from, when given */
} prepared;

static int compose_error(outcome *o, const send_args *a, const char *opt, const char *value,
                         const sk_error *e)
{
    int code = e->err == SK_ERR_NOMEM ? EX_OSERR : EX_DATAERR;
    return fail_early(o, a, code, opt, SK_STEP_COMPOSE, "%s '%s': %s", opt, value,
                      e->text[0] ? e->text : sk_strerror(e->err));
}

/* Read a body file (or "-"); unreadable input is bad data (65). */
static int read_body(outcome *o, const send_args *a, const char *opt, const char *path, char **out)
{
    size_t len;
    *out = cli_read_file(path, &len);
    if (!*out)
        return fail_early(o, a, EX_DATAERR, opt, SK_STEP_COMPOSE, "%s '%s': %s", opt, path,
                          strerror(errno));
    if (strlen(*out) != len)
        return fail_early(o, a, EX_DATAERR, opt, SK_STEP_COMPOSE, "%s '%s': contains a NUL octet",
                          opt, path);
    return -1;
}

static int add_addresses(outcome *o, const send_args *a, sk_message *m, const char *opt,
                         const str_list *l, sk_err (*add)(sk_message *, const char *, sk_error *))
{
    for (size_t i = 0; i < l->n; i++) {
        sk_error e;
        sk_error_clear(&e);
        if (add(m, l->v[i], &e) != SK_OK) return compose_error(o, a, opt, l->v[i], &e);
    }
    return -1;
}

static int compose(outcome *o, const send_args *a, prepared *p)
{
    sk_message *m = sk_message_new();
    if (!m) return fail_early(o, a, EX_OSERR, NULL, SK_STEP_COMPOSE, "out of memory");
    int rc = -1;
    char *text = NULL, *html = NULL;
    sk_error e;
    sk_error_clear(&e);
    if (sk_message_set_from(m, a->from, &e) != SK_OK) {
        rc = compose_error(o, a, "--from", a->from, &e);
        goto out;
    }
    if ((rc = add_addresses(o, a, m, "--to", &a->to, sk_message_add_to)) >= 0 ||
        (rc = add_addresses(o, a, m, "--cc", &a->cc, sk_message_add_cc)) >= 0 ||
        (rc = add_addresses(o, a, m, "--bcc", &a->bcc, sk_message_add_bcc)) >= 0)
        goto out;
    if (a->subject && sk_message_set_subject(m, a->subject, &e) != SK_OK) {
        rc = compose_error(o, a, "--subject", a->subject, &e);
        goto out;
    }
    if (a->text) {
        if ((rc = read_body(o, a, "--text", a->text, &text)) >= 0) goto out;
        if (sk_message_set_text(m, text, &e) != SK_OK) {
            rc = compose_error(o, a, "--text", a->text, &e);
            goto out;
        }
    }
    if (a->html) {
        if ((rc = read_body(o, a, "--html", a->html, &html)) >= 0) goto out;
        if (sk_message_set_html(m, html, &e) != SK_OK) {
            rc = compose_error(o, a, "--html", a->html, &e);
            goto out;
        }
    }
    if (!a->text && !a->html && sk_message_set_text(m, "", &e) != SK_OK) {
        rc = compose_error(o, a, "--text", "", &e);
        goto out;
    }
    for (size_t i = 0; i < a->attach.n; i++) {
        /* Any failure to read an attachment is bad input (65), whatever
         * the reason (missing, unreadable, too large). */
        if (sk_message_attach_file(m, a->attach.v[i], NULL, &e) != SK_OK) {
            rc = compose_error(o, a, "--attach", a->attach.v[i], &e);
            goto out;
        }
    }
    for (size_t i = 0; i < a->inline_parts.n; i++) {
        const char *spec = a->inline_parts.v[i], *eq = strchr(spec, '=');
        char *cid = sk_strndup(spec, (size_t)(eq - spec));
        sk_err r = cid ? sk_message_add_inline_file(m, cid, eq + 1, NULL, &e) : SK_ERR_NOMEM;
        sk_free(cid);
        if (r != SK_OK) {
            rc = compose_error(o, a, "--inline", spec, &e);
            goto out;
        }
    }
    for (size_t i = 0; i < a->headers.n; i++) {
        const char *h = a->headers.v[i], *colon = strchr(h, ':');
        char *name = sk_strndup(h, (size_t)(colon - h));
        const char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        sk_err r = name ? sk_message_add_header(m, name, value, &e) : SK_ERR_NOMEM;
        sk_free(name);
        if (r != SK_OK) {
            rc = compose_error(o, a, "--header", h, &e);
            goto out;
        }
    }
    if (sk_message_render(m, &p->data, &e) != SK_OK ||
        sk_message_get_envelope(m, &p->env, &e) != SK_OK) {
        rc = fail_early(o, a, e.err == SK_ERR_NOMEM ? EX_OSERR : EX_DATAERR, NULL, SK_STEP_COMPOSE,
                        "could not compose the message: %s",
                        e.text[0] ? e.text : sk_strerror(e.err));
        goto out;
    }
    sk_buf id = SK_BUF_INIT(sizeof o->message_id - 1);
    if (sk_message_get_message_id(m, &id) == SK_OK)
        snprintf(o->message_id, sizeof o->message_id, "%s", sk_buf_cstr(&id));
    sk_buf_free(&id);
out:
    sk_free(text);
    sk_free(html);
    sk_message_free(m);
    return rc;
}

/* The Message-ID field of a prepared message, for the report. */
static void find_message_id(const char *raw, size_t len, char *out, size_t outsz)
{
    const char *p = raw, *end = raw + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (n == 0 || (n == 1 && p[0] == '\r')) return; /* end of the header */
        if (n > 11 && !strncasecmp(p, "Message-ID:", 11)) {
            const char *v = p + 11;
            while (v < p + n && (*v == ' ' || *v == '\t')) v++;
            size_t vn = (size_t)(p + n - v);
            while (vn && (v[vn - 1] == '\r' || v[vn - 1] == ' ')) vn--;
            if (vn < outsz) {
                memcpy(out, v, vn);
                out[vn] = '\0';
            }
            return;
        }
        p += n + 1;
    }
}

static int prepare_raw(outcome *o, const send_args *a, prepared *p)
{
    size_t len;
    char *raw = cli_read_file(a->message, &len);
    if (!raw)
        return fail_early(o, a, EX_DATAERR, "--message", SK_STEP_COMPOSE, "--message '%s': %s",
                          a->message, strerror(errno));
    int rc = -1;
    sk_error e;
    sk_error_clear(&e);
    int need_rcpts = a->to.n + a->cc.n + a->bcc.n == 0;
    if ((need_rcpts || !a->from) && sk_message_parse_envelope(raw, len, &p->env, &e) != SK_OK) {
        rc = compose_error(o, a, "--message", a->message, &e);
        goto out;
    }
    if (need_rcpts && p->env.recipient_count == 0) {
        rc = fail_early(o, a, EX_DATAERR, "--message", SK_STEP_COMPOSE,
                        "--message '%s': no recipients in To, Cc or Bcc (give --to)", a->message);
        goto out;
    }
    if (sk_message_prepare_raw(raw, len, &p->data, &e) != SK_OK) {
        rc = compose_error(o, a, "--message", a->message, &e);
        goto out;
    }
    find_message_id(raw, len, o->message_id, sizeof o->message_id);
out:
    sk_free(raw);
    return rc;
}

/* Envelope addresses given on the command line (--from with --message,
 * and --to/--cc/--bcc): their addr-specs. */
static int flag_envelope(outcome *o, const send_args *a, prepared *p)
{
    sk_error e;
    sk_mailbox mb;
    if (a->from) {
        sk_error_clear(&e);
        if (sk_mailbox_parse(a->from, &mb, &e) != SK_OK)
            return compose_error(o, a, "--from", a->from, &e);
        p->from_addr = sk_strdup(mb.addr);
        sk_mailbox_clear(&mb);
        if (!p->from_addr) return fail_early(o, a, EX_OSERR, NULL, SK_STEP_COMPOSE, "no memory");
    }
    size_t n = a->to.n + a->cc.n + a->bcc.n;
    if (n == 0) return -1;
    /* Replace whatever the headers said: the flags are the envelope. */
    for (size_t i = 0; i < p->env.recipient_count; i++) sk_free(p->env.recipients[i]);
    sk_free(p->env.recipients);
    p->env.recipients = sk_calloc(n, sizeof *p->env.recipients);
    p->env.recipient_count = 0;
    if (!p->env.recipients) return fail_early(o, a, EX_OSERR, NULL, SK_STEP_COMPOSE, "no memory");
    const str_list *lists[] = {&a->to, &a->cc, &a->bcc};
    const char *names[] = {"--to", "--cc", "--bcc"};
    for (size_t l = 0; l < 3; l++)
        for (size_t i = 0; i < lists[l]->n; i++) {
            sk_error_clear(&e);
            if (sk_mailbox_parse(lists[l]->v[i], &mb, &e) != SK_OK)
                return compose_error(o, a, names[l], lists[l]->v[i], &e);
            /* One RCPT per address, as the composer does for its own. */
            int dup = 0;
            for (size_t k = 0; k < p->env.recipient_count && !dup; k++)
                dup = !strcmp(p->env.recipients[k], mb.addr);
            if (!dup) {
                p->env.recipients[p->env.recipient_count++] = mb.addr;
                mb.addr = NULL;
            }
            sk_mailbox_clear(&mb);
        }
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
        print_error_block(o, what, &e);
    }
}

static int read_secret(outcome *o, const send_args *a, const char *opt, const char *path,
                       char **out)
{
    *out = cli_read_first_line(path);
    if (!*out)
        return fail_early(o, a, EX_CONFIG, opt, SK_STEP_NONE, "%s '%s': %s", opt, path,
                          strerror(errno));
    return -1;
}

static int deliver(outcome *o, const send_args *a, prepared *p)
{
    char host[256];
    unsigned short port;
    if (!parse_server(a->server, host, sizeof host, &port))
        return fail_early(o, a, EX_USAGE, "--server", SK_STEP_NONE,
                          "--server '%s': expected HOST, HOST:PORT or [IPv6]:PORT", a->server);
    if (a->ca_file && access(a->ca_file, R_OK) != 0)
        return fail_early(o, a, EX_CONFIG, "--ca-file", SK_STEP_NONE, "--ca-file '%s': %s",
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
            rc = fail_early(o, a, EX_USAGE, "--user", SK_STEP_NONE,
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
        .transcript = a->verbose ? transcript : NULL,
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
        co.progress = show_progress;
        co.progress_ctx = &o->prog;
    }
    snprintf(o->server, sizeof o->server, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             port ? port : (a->tls == SK_TLS_IMPLICIT ? 465u : 587u));

    o->client = sk_client_new(&co);
    if (!o->client) {
        rc = fail_early(o, a, EX_OSERR, NULL, SK_STEP_NONE, "out of memory");
        goto out;
    }
    if (sk_client_connect(o->client, &o->err) != SK_OK) {
        o->exit_code = cli_exit_code(&o->err);
        print_error_block(o, "could not get ready to send", &o->err);
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
    progress_end(o);
    const sk_ehlo_info *ext = sk_client_extensions(o->client);
    if (r == SK_ERR_TOO_LONG && o->err.step == SK_STEP_MAIL && ext && ext->size_max &&
        p->data.len > ext->size_max) {
        /* RFC 1870: refused before sending; say it in sizes people read. */
        char have[32], most[32];
        human_size(p->data.len, have, sizeof have);
        human_size(ext->size_max, most, sizeof most);
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
            print_error_block(o, "the message was not sent", &o->err);
        sk_client_close(o->client);
    }
    if (!a->json && !a->quiet && o->res.sent) {
        printf("sent to %zu of %zu recipient%s: %d %s ", o->res.naccepted, o->nrcpt,
               o->nrcpt == 1 ? "" : "s", o->res.data.code, o->res.data.enhanced);
        print_flat(stdout, o->res.data.text);
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
    rc = a.message ? prepare_raw(&o, &a, &p) : compose(&o, &a, &p);
    if (rc >= 0) goto out;
    if ((rc = flag_envelope(&o, &a, &p)) >= 0) goto out;
    if (!a.message && !a.text && !a.html && !a.attach.n && !a.quiet)
        cli_warn(CMD, "warning: the message has no body text (no --text, --html or --attach); "
                      "it is sent with an empty body");
    o.rcpts = (const char *const *)p.env.recipients;
    o.nrcpt = p.env.recipient_count;
    if (!p.from_addr && !p.env.reverse_path) {
        rc = fail_early(&o, &a, EX_USAGE, "--from", SK_STEP_NONE,
                        "--from is required (the message has no From field)");
        goto out;
    }
    rc = deliver(&o, &a, &p);
    if (a.json && o.client) json_report(&o);
out:
    if (o.have_res) sk_send_result_free(&o.res);
    sk_client_free(o.client);
    sk_message_envelope_clear(&p.env);
    sk_free(p.from_addr);
    sk_buf_free(&p.data);
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) sk_free(lists[i]->v);
    return rc;
}
