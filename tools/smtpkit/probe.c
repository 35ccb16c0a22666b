/* smtpkit probe: check a mail server one step at a time (DNS, TCP, greeting,
 * EHLO, TLS, AUTH, envelope) and say what is wrong and how to fix it. */
#include "cli.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The OpenSSL X509_V_ERR_* values sk_tls_info.verify_code carries
 * (openssl/x509_vfy.h; stable across OpenSSL releases). That header is not
 * included: its sk_free and sk_new macros collide with SMTPKit's names. */
enum {
    VERIFY_UNABLE_TO_GET_ISSUER_CERT = 2,
    VERIFY_CERT_NOT_YET_VALID = 9,
    VERIFY_CERT_HAS_EXPIRED = 10,
    VERIFY_DEPTH_ZERO_SELF_SIGNED_CERT = 18,
    VERIFY_SELF_SIGNED_CERT_IN_CHAIN = 19,
    VERIFY_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20,
    VERIFY_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21,
    VERIFY_HOSTNAME_MISMATCH = 62,
    VERIFY_IP_ADDRESS_MISMATCH = 64,
};

#define PROBE_TIMEOUT_MS_DEFAULT 10000
/* How long the diagnosis of a silent or odd peer waits for each answer:
 * long enough for a loaded server, short enough to keep a probe quick. */
#define PROBE_SNIFF_WAIT_MS_MAX SK_CLIENT_IDENTIFY_WAIT_MS
#define PROBE_ADDRS_MAX         16
#define PROBE_RCPTS_MAX         16
#define PROBE_STEPS_MAX         (PROBE_ADDRS_MAX + PROBE_RCPTS_MAX + 16)

typedef enum verdict { V_OK, V_WARN, V_FAIL } verdict;
static const char *const verdict_names[] = {"ok", "warn", "fail"};
static const char *const verdict_marks[] = {"[ OK ]", "[WARN]", "[FAIL]"};

/* One line of the checklist, and one object of the JSON output. */
typedef struct probe_step {
    const char *name;
    verdict status;
    char detail[SK_REPLY_TEXT_MAX_OCTETS + 64];
    const char *explanation; /* static storage, from sk_reply_explain or here */
    char fix[512];
    int has_reply;
    sk_reply reply;
    char address[INET6_ADDRSTRLEN];
    long elapsed_ms; /* -1: not measured */
    /* The extras below are far smaller than their buffers' bounds; should
     * one overflow, the step's extras are left out whole (never a broken
     * line or JSON value) and marked "truncated". */
    int overflow;
    sk_buf lines; /* more lines for people (extensions, certificates) */
    json_t *data; /* more JSON members of the step's object */
    json_t *exts; /* the EHLO step's "extensions" array (in data) */
} probe_step;

typedef struct probe {
    const char *host;
    unsigned short port;
    sk_tls_mode tls;
    const char *user, *password, *ca_file, *from, *helo, *tls_name;
    int insecure;
    const char *to[PROBE_RCPTS_MAX];
    size_t nto;
    unsigned timeout_ms;
    int json, verbose;

    struct sockaddr_storage addrs[PROBE_ADDRS_MAX];
    socklen_t addrlens[PROBE_ADDRS_MAX];
    size_t naddrs;
    int reachable; /* index into addrs of the first address that connected */

    probe_step steps[PROBE_STEPS_MAX];
    size_t nsteps;
    int exit_code;
    const char *failed_step;
} probe;

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

/* ---- steps: recording and printing ---- */

static probe_step *step_begin(probe *p, const char *name)
{
    if (p->nsteps == PROBE_STEPS_MAX) return &p->steps[PROBE_STEPS_MAX - 1];
    probe_step *s = &p->steps[p->nsteps++];
    memset(s, 0, sizeof *s);
    s->name = name;
    s->elapsed_ms = -1;
    sk_buf_init(&s->lines, 64 * 1024);
    s->data = cli_jobj();
    return s;
}

static void step_detail(probe_step *s, const char *fmt, ...) SK_PRINTF(2, 3);
static void step_detail(probe_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof s->detail, fmt, ap);
    va_end(ap);
}

static void step_fix(probe_step *s, const char *fmt, ...) SK_PRINTF(2, 3);
static void step_fix(probe_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->fix, sizeof s->fix, fmt, ap);
    va_end(ap);
}

/* Extra lines and JSON are best effort: a full buffer only shortens them. */
static void step_line(probe_step *s, const char *fmt, ...) SK_PRINTF(2, 3);
static void step_line(probe_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (sk_buf_vprintf(&s->lines, fmt, ap) != SK_OK || sk_buf_putc(&s->lines, '\n') != SK_OK)
        s->overflow = 1;
    va_end(ap);
}

/* A member of the step's JSON object (v taken over). */
static void json_member(probe_step *s, const char *key, json_t *v)
{
    cli_jset(s->data, key, v);
}

static void json_member_str(probe_step *s, const char *key, const char *val)
{
    json_member(s, key, cli_jstr(val));
}

static void step_reply(probe_step *s, const sk_reply *r)
{
    s->has_reply = 1;
    s->reply = *r;
    if (sk_reply_class_of(r->code) >= SK_REPLY_TRANSIENT)
        s->explanation = sk_reply_explain(r->code, r->enhanced, r->text);
}

/* The reply an sk_error carries (code, enhanced status, text). */
static void step_error_reply(probe_step *s, const sk_error *e)
{
    sk_reply r = sk_reply_make(e->code, e->enhanced, "%s", e->text);
    step_reply(s, &r);
}

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

static void step_end(probe *p, probe_step *s, verdict v)
{
    s->status = v;
    if (v == V_FAIL && !p->failed_step) p->failed_step = s->name;
    if (p->json) return;
    printf("  %s %-9s ", verdict_marks[v], s->name);
    print_clean(s->detail, strlen(s->detail));
    if (s->elapsed_ms >= 0) printf(" (%ld ms)", s->elapsed_ms);
    putchar('\n');
    if (s->overflow) {
        printf("                   (details left out: too long)\n");
    } else if (s->lines.len) {
        const char *l = sk_buf_cstr(&s->lines);
        while (*l) {
            const char *nl = strchr(l, '\n');
            size_t n = nl ? (size_t)(nl - l) : strlen(l);
            printf("                   ");
            print_clean(l, n);
            putchar('\n');
            l += n + (nl ? 1 : 0);
        }
    }
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
    if (s->fix[0]) print_indented("fix", s->fix);
    fflush(stdout);
}

/* Fail the probe at step s with an exit code (sysexits.h, as `smtpkit send`). */
static int step_fail(probe *p, probe_step *s, int exit_code)
{
    p->exit_code = exit_code;
    step_end(p, s, V_FAIL);
    return -1;
}

static void print_json(const probe *p)
{
    verdict worst = V_OK;
    for (size_t i = 0; i < p->nsteps; i++)
        if (p->steps[i].status > worst) worst = p->steps[i].status;
    json_t *j = cli_jobj();
    cli_jset(j, "host", cli_jstr(p->host));
    cli_jset(j, "port", cli_jint(p->port));
    cli_jset(j, "tls", cli_jstr(tls_mode_label(p->tls)));
    cli_jset(j, "status", cli_jstr(verdict_names[worst]));
    cli_jset(j, "exit_code", cli_jint(p->exit_code));
    cli_jset(j, "failed_step", cli_jstr(p->failed_step));
    json_t *steps = cli_jarr();
    for (size_t i = 0; i < p->nsteps; i++) {
        const probe_step *s = &p->steps[i];
        json_t *o = cli_jobj();
        cli_jset(o, "step", cli_jstr(s->name));
        cli_jset(o, "status", cli_jstr(verdict_names[s->status]));
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
        if (s->fix[0]) cli_jset(o, "fix", cli_jstr(s->fix));
        if (s->overflow)
            cli_jset(o, "truncated", cli_jbool(1));
        else if (s->data && json_object_update(o, s->data))
            cli_jset(o, "truncated", cli_jbool(1));
        cli_jpush(steps, o);
    }
    cli_jset(j, "steps", steps);
    cli_json_print(j);
}

/* ---- sockets for the checks the client library does not make ---- */

static void addr_string(const struct sockaddr *sa, char *out, size_t n)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)n)) snprintf(out, n, "?");
}

/* Connect with a timeout. Returns the socket (blocking) or -1 with *error
 * set (ETIMEDOUT when the timeout passed). */
static int tcp_connect(const struct sockaddr *sa, socklen_t len, unsigned timeout_ms, int *error)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *error = errno;
        return -1;
    }
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        *error = errno;
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int n;
    do n = poll(&pfd, 1, (int)timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        *error = n == 0 ? ETIMEDOUT : errno;
        close(fd);
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr) {
        *error = soerr;
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

/* ---- the checks ---- */

static int check_dns(probe *p)
{
    probe_step *s = step_begin(p, "dns");
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", p->port);
    uint64_t t0 = sk_now_ms();
    int rc = getaddrinfo(p->host, port, &hints, &res);
    s->elapsed_ms = (long)(sk_now_ms() - t0);
    if (rc != 0) {
        step_detail(s, "%s does not resolve: %s", p->host, gai_strerror(rc));
        if (rc == EAI_NONAME)
            step_fix(s,
                     "check the name for typos; 'dig %s A' and 'dig %s AAAA' show what DNS "
                     "says",
                     p->host, p->host);
        else
            step_fix(s, "the resolver failed (%s): check /etc/resolv.conf and the network",
                     gai_strerror(rc));
        return step_fail(p, s, EX_TEMPFAIL);
    }
    json_t *addrs = cli_jarr();
    json_member(s, "addresses", addrs);
    sk_buf list = SK_BUF_INIT(4096);
    for (struct addrinfo *ai = res; ai && p->naddrs < PROBE_ADDRS_MAX; ai = ai->ai_next) {
        int dup = 0;
        for (size_t i = 0; i < p->naddrs; i++)
            dup |= p->addrlens[i] == ai->ai_addrlen &&
                   memcmp(&p->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0;
        if (dup) continue;
        memcpy(&p->addrs[p->naddrs], ai->ai_addr, ai->ai_addrlen);
        p->addrlens[p->naddrs] = ai->ai_addrlen;
        char a[INET6_ADDRSTRLEN];
        addr_string(ai->ai_addr, a, sizeof a);
        if (sk_buf_printf(&list, "%s%s", p->naddrs ? ", " : "", a) != SK_OK) s->overflow = 1;
        cli_jpush(addrs, cli_jstr(a));
        p->naddrs++;
    }
    freeaddrinfo(res);
    struct in6_addr tmp6;
    struct in_addr tmp4;
    if (inet_pton(AF_INET, p->host, &tmp4) == 1 || inet_pton(AF_INET6, p->host, &tmp6) == 1)
        step_detail(s, "%s is an address; nothing to resolve", p->host);
    else
        step_detail(s, "%s resolves to %s", p->host, sk_buf_cstr(&list));
    sk_buf_free(&list);
    step_end(p, s, V_OK);
    return 0;
}

static int check_tcp(probe *p)
{
    int refused = 0, timedout = 0, other = 0;
    p->reachable = -1;
    for (size_t i = 0; i < p->naddrs; i++) {
        probe_step *s = step_begin(p, "tcp");
        const struct sockaddr *sa = (const struct sockaddr *)&p->addrs[i];
        addr_string(sa, s->address, sizeof s->address);
        char where[INET6_ADDRSTRLEN + 10];
        int v6 = sa->sa_family == AF_INET6;
        snprintf(where, sizeof where, "%s%s%s:%u", v6 ? "[" : "", s->address, v6 ? "]" : "",
                 p->port);
        int error = 0;
        uint64_t t0 = sk_now_ms();
        int fd = tcp_connect(sa, p->addrlens[i], p->timeout_ms, &error);
        s->elapsed_ms = (long)(sk_now_ms() - t0);
        if (fd >= 0) {
            close(fd);
            step_detail(s, "%s connected", where);
            if (p->reachable < 0) p->reachable = (int)i;
            step_end(p, s, V_OK);
            continue;
        }
        if (error == ECONNREFUSED) {
            refused++;
            step_detail(s, "%s refused: nothing is listening on port %u there", where, p->port);
            step_fix(s, "wrong port? (SMTP: 25 relay, 587 submission, 465 submission over "
                        "TLS) or the server is not running");
        } else if (error == ETIMEDOUT) {
            timedout++;
            step_detail(s, "%s timed out after %u ms: no answer at all", where, p->timeout_ms);
            step_fix(s,
                     "packets are dropped on the way: a firewall, or an ISP blocking port "
                     "%u; check from another network",
                     p->port);
        } else {
            other++;
            step_detail(s, "%s failed: %s", where, strerror(error));
            step_fix(s, "check the route to %s (ip route get %s)", s->address, s->address);
        }
        /* An unreachable address is only a warning while another works. */
        step_end(p, s, p->naddrs > 1 ? V_WARN : V_FAIL);
    }
    if (p->reachable >= 0) return 0;
    if (p->naddrs > 1) {
        probe_step *s = step_begin(p, "tcp");
        step_detail(s,
                    "no address of %s accepted a connection on port %u (%d refused, %d timed "
                    "out, %d other)",
                    p->host, p->port, refused, timedout, other);
        step_fix(s, "%s",
                 refused ? "check the port, and that the server runs"
                         : "check firewalls between here and the server");
        return step_fail(p, s, EX_TEMPFAIL);
    }
    p->exit_code = EX_TEMPFAIL;
    p->failed_step = "tcp";
    return -1;
}

/* The certificate chain as lines and JSON. */
static void describe_chain(probe_step *s, const sk_tls_info *ti)
{
    json_t *chain = cli_jarr();
    json_member(s, "chain", chain);
    for (size_t i = 0; i < ti->chain_len; i++) {
        const sk_tls_cert *c = &ti->chain[i];
        char nb[32], na[32];
        sk_time_rfc3339(c->not_before, nb);
        sk_time_rfc3339(c->not_after, na);
        step_line(s, "cert %zu: subject %s", i, c->subject);
        step_line(s, "        issuer  %s%s", c->issuer, c->self_signed ? " (self-signed)" : "");
        step_line(s, "        valid   %s to %s", nb, na);
        if (c->san[0]) step_line(s, "        names   %s", c->san);
        json_t *o = cli_jobj();
        cli_jset(o, "subject", cli_jstr(c->subject));
        cli_jset(o, "issuer", cli_jstr(c->issuer));
        cli_jset(o, "not_before", cli_jstr(nb));
        cli_jset(o, "not_after", cli_jstr(na));
        cli_jset(o, "names", cli_jstr(c->san));
        cli_jset(o, "self_signed", cli_jbool(c->self_signed));
        cli_jpush(chain, o);
    }
}

/* Why a certificate did not verify, and what to do about it. */
static void explain_verify(const probe *p, probe_step *s, const sk_tls_info *ti)
{
    const sk_tls_cert *leaf = ti->chain_len ? &ti->chain[0] : NULL;
    char when[32] = "";
    switch (ti->verify_code) {
    case VERIFY_CERT_HAS_EXPIRED:
        if (leaf) sk_time_rfc3339(leaf->not_after, when);
        s->explanation = "the server's certificate has expired";
        step_fix(s,
                 "the server's operator must renew the certificate (it expired %s) and "
                 "reload the server",
                 when[0] ? when : "already");
        break;
    case VERIFY_CERT_NOT_YET_VALID:
        if (leaf) sk_time_rfc3339(leaf->not_before, when);
        s->explanation = "the server's certificate is not valid yet";
        step_fix(s, "it becomes valid %s: check the clocks of this machine and the server", when);
        break;
    case VERIFY_DEPTH_ZERO_SELF_SIGNED_CERT:
        s->explanation = "the certificate is self-signed: no authority vouches for it";
        step_fix(s, "use a certificate from a CA (e.g. Let's Encrypt); if you trust this one, "
                    "pass it with --ca-file");
        break;
    case VERIFY_SELF_SIGNED_CERT_IN_CHAIN:
    case VERIFY_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case VERIFY_UNABLE_TO_GET_ISSUER_CERT:
    case VERIFY_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        s->explanation = "the certificate was issued by an authority this machine does not "
                         "trust (unknown issuer)";
        step_fix(s, "a private CA: pass its certificate with --ca-file; a public CA: the "
                    "server must send its intermediate certificates too (the full chain)");
        break;
    case VERIFY_HOSTNAME_MISMATCH:
    case VERIFY_IP_ADDRESS_MISMATCH:
        s->explanation = "the certificate is for another name than the one you connected to";
        step_fix(s,
                 "connect with a name the certificate lists (%s; or give it with "
                 "--tls-name), or the operator must add %s to the certificate",
                 leaf && leaf->san[0] ? leaf->san
                 : leaf               ? leaf->subject
                                      : "see above",
                 p->tls_name ? p->tls_name : p->host);
        break;
    default:
        s->explanation = "the certificate chain did not verify";
        step_fix(s, "see the reason above; --ca-file names the authority to trust");
    }
}

/* Report the TLS session of the client (after implicit TLS or STARTTLS). */
static int report_tls(probe *p, probe_step *s, const sk_tls_info *ti, sk_err rc, const sk_error *e)
{
    if (!ti || !ti->active) {
        step_detail(s, "TLS handshake failed: %s", e->text[0] ? e->text : sk_strerror(rc));
        s->explanation = e->hint;
        step_fix(s,
                 "the server may not support a TLS version or cipher we accept (TLS 1.2 or "
                 "later); 'openssl s_client -connect %s:%u%s' shows more",
                 p->host, p->port, p->tls == SK_TLS_IMPLICIT ? "" : " -starttls smtp");
        return step_fail(p, s, EX_PROTOCOL);
    }
    json_member_str(s, "version", ti->version);
    json_member_str(s, "cipher", ti->cipher);
    json_member(s, "verified", cli_jbool(ti->verified));
    json_member_str(s, "verify_error", ti->verified ? NULL : ti->verify_text);
    describe_chain(s, ti);
    if (ti->verified) {
        step_detail(s, "%s %s, certificate verified for %s", ti->version, ti->cipher,
                    ti->sni[0] ? ti->sni : p->host);
        step_end(p, s, V_OK);
        return 0;
    }
    step_detail(s, "%s %s, certificate NOT verified: %s%s", ti->version, ti->cipher,
                ti->verify_text, p->insecure ? " (--insecure: going on)" : "");
    explain_verify(p, s, ti);
    if (p->insecure) {
        /* As `smtpkit send --insecure`: encrypted, not authenticated. */
        step_end(p, s, V_WARN);
        return 0;
    }
    return step_fail(p, s, EX_PROTOCOL);
}

/* The greeting did not come as SMTP: find out what the peer is. The
 * client may have found out already while it waited (identify_after_ms);
 * else it is asked now (sk_client_identify, shared with smtpkit send). */
static int diagnose_no_greeting(probe *p, sk_client *c, probe_step *s, sk_err rc, const sk_error *e)
{
    sk_peer_info peer;
    memset(&peer, 0, sizeof peer);
    const sk_peer_info *known = sk_client_peer(c);
    /* What an implicit-TLS handshake heard holds only its first octets:
     * ask again for the whole greeting line. */
    if (known && known->kind != SK_PEER_SMTP) {
        peer = *known;
    } else {
        unsigned wait =
            p->timeout_ms < PROBE_SNIFF_WAIT_MS_MAX ? p->timeout_ms : PROBE_SNIFF_WAIT_MS_MAX;
        sk_error ie;
        if (sk_client_identify(c, wait, &peer, &ie) != SK_OK && known) peer = *known;
    }
    const char *first = peer.said;
    json_member_str(s, "peer", sk_peer_kind_name(peer.kind));
    json_member_str(s, "peer_said", first[0] ? first : NULL);
    switch (peer.kind) {
    case SK_PEER_SMTP:
        if (p->tls == SK_TLS_IMPLICIT) {
            step_detail(s,
                        "the server greets in plain text (\"%s\"): it does not speak TLS from "
                        "the first byte",
                        first);
            step_fix(s, "use --tls starttls (usually port 587 or 25), or --tls none");
            return step_fail(p, s, EX_PROTOCOL);
        }
        if (rc != SK_ERR_TIMEOUT) {
            step_detail(s, "the greeting (\"%s\") cannot be used: %s", first,
                        e->text[0] ? e->text : sk_strerror(rc));
            step_fix(s, "the server breaks the SMTP reply syntax (RFC 5321 4.2); tell its "
                        "operator");
            return step_fail(p, s, EX_PROTOCOL);
        }
        step_detail(s,
                    "the greeting (\"%s\") came on another connection, but not on this one "
                    "within %u ms",
                    first, p->timeout_ms);
        step_fix(s, "the server is slow (overloaded, or slow reverse DNS lookups on its side): "
                    "raise --timeout");
        return step_fail(p, s, EX_TEMPFAIL);
    case SK_PEER_HTTP:
        step_detail(s, "not an SMTP server: it answered like a web server (\"%s\")", first);
        step_fix(s, "wrong port? SMTP is on 25 (relay), 587 (submission) or 465 (submission "
                    "over TLS)");
        return step_fail(p, s, EX_PROTOCOL);
    case SK_PEER_OTHER:
        step_detail(s, "not an SMTP server: it said \"%s\"", first);
        step_fix(s, "wrong port or host? SMTP is on 25, 587 or 465");
        return step_fail(p, s, EX_PROTOCOL);
    case SK_PEER_TLS:
        if (p->tls != SK_TLS_IMPLICIT) {
            step_detail(s, "the server speaks TLS from the first byte: no plain-text greeting");
            step_fix(s, "use --tls implicit (the usual mode on port 465)");
            return step_fail(p, s, EX_PROTOCOL);
        }
        break;
    default:
        break;
    }
    if (p->tls == SK_TLS_IMPLICIT) {
        step_detail(s, "TLS handshake failed: %s", e->text[0] ? e->text : sk_strerror(rc));
        step_fix(s, "is this port TLS from the first byte? Port 465 usually is; 587 and 25 use "
                    "--tls starttls");
        return step_fail(p, s, rc == SK_ERR_TIMEOUT ? EX_TEMPFAIL : EX_PROTOCOL);
    }
    if (rc == SK_ERR_TIMEOUT || peer.kind == SK_PEER_SILENT) {
        step_detail(s, "connected, but no greeting within %u ms, and no answer when spoken to",
                    p->timeout_ms);
        step_fix(s, "the server is stuck or overloaded, or this is not a mail server (a proxy or "
                    "tarpit holding the connection); try again later or check the port");
        return step_fail(p, s, EX_TEMPFAIL);
    }
    if (rc == SK_ERR_CLOSED || peer.kind == SK_PEER_CLOSED) {
        step_detail(s, "the server closed the connection without a greeting");
        step_fix(s, "it refuses this client (access list, connection limit, or blocklisted "
                    "IP); check the server's log");
        return step_fail(p, s, EX_TEMPFAIL);
    }
    step_detail(s, "no usable greeting: %s", e->text[0] ? e->text : sk_strerror(rc));
    return step_fail(p, s, EX_PROTOCOL);
}

static int check_open(probe *p, sk_client *c)
{
    /* With implicit TLS the handshake comes first, then the greeting. */
    probe_step *ts = p->tls == SK_TLS_IMPLICIT ? step_begin(p, "tls") : NULL;
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_open(c, &e);
    long elapsed = (long)(sk_now_ms() - t0);
    const sk_tls_info *ti = sk_client_tls_info(c);

    if (ts) {
        char a[INET6_ADDRSTRLEN];
        addr_string((const struct sockaddr *)&p->addrs[p->reachable], a, sizeof a);
        snprintf(ts->address, sizeof ts->address, "%s", a);
        ts->elapsed_ms = elapsed;
        if (ti && ti->active) {
            if (report_tls(p, ts, ti, rc, &e) < 0) return -1;
        } else if (rc != SK_OK) {
            return diagnose_no_greeting(p, c, ts, rc, &e);
        }
    }

    probe_step *s = step_begin(p, "greeting");
    addr_string((const struct sockaddr *)&p->addrs[p->reachable], s->address, sizeof s->address);
    s->elapsed_ms = elapsed;
    const sk_reply *g = sk_client_greeting(c);
    if (rc == SK_OK && g) {
        step_reply(s, g);
        step_detail(s, "%d %s", g->code, g->text);
        step_end(p, s, V_OK);
        return 0;
    }
    if (sk_reply_class_of(e.code) >= SK_REPLY_TRANSIENT ||
        (g && sk_reply_class_of(g->code) >= SK_REPLY_TRANSIENT)) {
        /* RFC 5321 3.1: 554 instead of 220 means "no service for you";
         * 421 means "not now". */
        if (sk_reply_class_of(e.code) >= SK_REPLY_TRANSIENT)
            step_error_reply(s, &e);
        else
            step_reply(s, g);
        step_detail(s, "the server refused the session: %d %s%s%s", s->reply.code,
                    s->reply.enhanced, s->reply.enhanced[0] ? " " : "", s->reply.text);
        return step_fail(p, s,
                         sk_reply_class_of(s->reply.code) == SK_REPLY_PERMANENT ? EX_UNAVAILABLE
                                                                                : EX_TEMPFAIL);
    }
    return diagnose_no_greeting(p, c, s, rc, &e);
}

static const struct {
    const char *keyword, *meaning;
} ext_meanings[] = {
    {"PIPELINING", "commands can be sent in batches (RFC 2920): faster sending"},
    {"SMTPUTF8", "UTF-8 addresses and headers accepted (RFC 6531)"},
    {"STARTTLS", "the connection can be upgraded to TLS (RFC 3207)"},
    {"CHUNKING", "BDAT transfers without dot-stuffing (RFC 3030)"},
    {"BINARYMIME", "binary message bodies (RFC 3030)"},
    {"DSN", "delivery status notifications on request (RFC 3461)"},
    {"8BITMIME", "8-bit message bodies (RFC 6152)"},
    {"ENHANCEDSTATUSCODES", "replies carry x.y.z status codes (RFC 2034, RFC 3463)"},
    {"MT-PRIORITY", "message priorities (RFC 6710)"},
    {"REQUIRETLS", "messages can demand TLS on every hop (RFC 8689)"},
    {"VRFY", "addresses can be verified (RFC 5321 3.5)"},
    {"ETRN", "remote queue start (RFC 1985)"},
    {"HELP", "help text"},
    {"DELIVERBY", "delivery deadlines (RFC 2852)"},
};

/* One extension line ("SIZE 35882577") explained. */
static void explain_extension(probe_step *s, const char *line, size_t n, int tls_active)
{
    char kw[64], params[256];
    size_t k = 0;
    while (k < n && line[k] != ' ' && k + 1 < sizeof kw) {
        kw[k] = (char)toupper((unsigned char)line[k]);
        k++;
    }
    kw[k] = '\0';
    while (k < n && line[k] == ' ') k++;
    snprintf(params, sizeof params, "%.*s", (int)(n - k), line + k);
    char meaning[320];
    if (!strcmp(kw, "SIZE")) {
        unsigned long long sz = strtoull(params, NULL, 10);
        if (sz)
            snprintf(meaning, sizeof meaning, "messages up to %.1f MB (%llu octets, RFC 1870)",
                     (double)sz / 1e6, sz);
        else
            snprintf(meaning, sizeof meaning, "no fixed message size limit announced (RFC 1870)");
    } else if (!strcmp(kw, "AUTH")) {
        snprintf(meaning, sizeof meaning, "login with %s (RFC 4954)%s", params,
                 tls_active ? "" : "; offered before TLS");
    } else {
        snprintf(meaning, sizeof meaning, "not explained here");
        for (size_t i = 0; i < sizeof ext_meanings / sizeof ext_meanings[0]; i++)
            if (!strcmp(kw, ext_meanings[i].keyword))
                snprintf(meaning, sizeof meaning, "%s", ext_meanings[i].meaning);
    }
    step_line(s, "%-20s %s", line[0] ? kw : "?", meaning);
    json_t *o = cli_jobj();
    cli_jset(o, "keyword", cli_jstr(kw));
    cli_jset(o, "params", cli_jstr(params));
    cli_jset(o, "meaning", cli_jstr(meaning));
    cli_jpush(s->exts, o);
}

/* Does a space-separated AUTH list hold a mechanism that sends the password
 * itself (RFC 4616 PLAIN, LOGIN)? */
static int offers_cleartext_auth(const char *mechs)
{
    char buf[sizeof((sk_ehlo_info *)0)->auth];
    snprintf(buf, sizeof buf, "%s", mechs);
    char *save = NULL;
    for (char *m = strtok_r(buf, " ", &save); m; m = strtok_r(NULL, " ", &save))
        if (!strcasecmp(m, "PLAIN") || !strcasecmp(m, "LOGIN")) return 1;
    return 0;
}

static int check_ehlo(probe *p, sk_client *c, const char *name, int after_tls, sk_err rc,
                      const sk_error *e)
{
    probe_step *s = step_begin(p, name);
    if (rc != SK_OK) {
        if (e->code) {
            step_error_reply(s, e);
            step_detail(s, "%d %s%s%s", e->code, e->enhanced, e->enhanced[0] ? " " : "", e->text);
        } else {
            step_detail(s, "EHLO failed: %s", e->text[0] ? e->text : sk_strerror(rc));
            s->explanation = e->hint;
        }
        return step_fail(p, s, cli_exit_code(e));
    }
    const sk_ehlo_info *x = sk_client_extensions(c);
    const char *lines = sk_client_ehlo_lines(c);
    const char *nl = strchr(lines, '\n');
    int count = 0;
    json_member_str(s, "server_name", x ? x->domain : "");
    json_member(s, "esmtp", cli_jbool(x && x->esmtp));
    s->exts = cli_jarr();
    json_member(s, "extensions", s->exts);
    for (const char *l = nl ? nl + 1 : ""; *l;) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n) {
            explain_extension(s, l, n, sk_client_is_tls(c));
            count++;
        }
        l += n + (end ? 1 : 0);
    }
    if (x && !x->esmtp) {
        step_detail(s, "EHLO refused, HELO accepted: no ESMTP, so no STARTTLS, AUTH or SIZE");
        step_fix(s, "an old or minimal server; sending may work, but without TLS");
        step_end(p, s, V_WARN);
        return 0;
    }
    step_detail(s, "%s offers %d extension%s%s", x && x->domain[0] ? x->domain : "the server",
                count, count == 1 ? "" : "s", after_tls ? " after TLS" : "");
    if (x && !sk_client_is_tls(c) && offers_cleartext_auth(x->auth)) {
        /* RFC 4954 4: servers must be able to withhold plaintext password
         * mechanisms until TLS protects the session. */
        s->explanation = "AUTH with PLAIN or LOGIN is offered on a connection without TLS: a "
                         "client that uses it sends the password in clear";
        step_fix(s, "the server should offer these mechanisms only after STARTTLS (or on "
                    "implicit TLS, port 465)");
        step_end(p, s, V_WARN);
        return 0;
    }
    step_end(p, s, V_OK);
    return 0;
}

static int check_starttls(probe *p, sk_client *c)
{
    const sk_ehlo_info *x = sk_client_extensions(c);
    int offered = x && (x->ext & SK_CLIENT_EXT_STARTTLS);
    if (p->tls == SK_TLS_NONE) {
        probe_step *s = step_begin(p, "tls");
        if (offered) {
            step_detail(s, "not tried (--tls none), but the server offers STARTTLS");
            step_fix(s, "use --tls starttls: without TLS, mail and passwords cross the network "
                        "in clear");
        } else {
            step_detail(s, "no TLS: the server does not offer STARTTLS");
            step_fix(s, "fine on a trusted network only; the operator should configure a "
                        "certificate");
        }
        step_end(p, s, V_WARN);
        return 0;
    }
    probe_step *s = step_begin(p, "tls");
    if (!offered) {
        step_detail(s, "the server does not offer STARTTLS");
        step_fix(s, "on port 465 use --tls implicit; otherwise the operator must configure a "
                    "certificate (--tls none only on a trusted network)");
        return step_fail(p, s, EX_PROTOCOL);
    }
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_starttls(c, &e);
    s->elapsed_ms = (long)(sk_now_ms() - t0);
    if (rc != SK_OK && sk_reply_class_of(e.code) >= SK_REPLY_TRANSIENT && e.step != SK_STEP_EHLO) {
        step_error_reply(s, &e);
        step_detail(s, "STARTTLS refused: %d %s%s%s", e.code, e.enhanced, e.enhanced[0] ? " " : "",
                    e.text);
        return step_fail(p, s, cli_exit_code(&e));
    }
    const sk_tls_info *ti = sk_client_tls_info(c);
    if (report_tls(p, s, ti, rc, &e) < 0) return -1;
    /* RFC 3207 4.2: the client must EHLO again; the library did, and its
     * failure is reported as that step's. */
    return check_ehlo(p, c, "ehlo", 1, rc, &e);
}

static int check_auth(probe *p, sk_client *c)
{
    probe_step *s = step_begin(p, "auth");
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_authenticate(c, &e);
    s->elapsed_ms = (long)(sk_now_ms() - t0);
    if (rc == SK_OK) {
        const char *mech = sk_sasl_mech_name(sk_client_auth_mech(c));
        step_detail(s, "credentials accepted (mechanism %s)", mech);
        json_member_str(s, "mechanism", mech);
        step_end(p, s, V_OK);
        return 0;
    }
    if (e.code) {
        step_error_reply(s, &e);
        step_detail(s, "credentials not accepted: %d %s%s%s", e.code, e.enhanced,
                    e.enhanced[0] ? " " : "", e.text);
    } else {
        step_detail(s, "authentication not possible: %s", e.text[0] ? e.text : sk_strerror(rc));
        s->explanation = e.hint;
        if (!sk_client_is_tls(c))
            step_fix(s, "probe with --tls starttls or --tls implicit: credentials are never sent "
                        "without TLS");
    }
    int code = sk_reply_class_of(e.code) == SK_REPLY_TRANSIENT ? EX_TEMPFAIL
               : rc == SK_ERR_CONFIG                           ? EX_CONFIG
                                                               : EX_NOPERM;
    return step_fail(p, s, code);
}

static int check_envelope(probe *p, sk_client *c)
{
    sk_reply r;
    sk_error e;
    probe_step *s = step_begin(p, "mail");
    memset(&r, 0, sizeof r);
    sk_error_clear(&e);
    sk_err rc = sk_client_mail(c, p->from, NULL, &r, &e);
    if (rc != SK_OK) {
        if (r.code)
            step_reply(s, &r);
        else if (e.code)
            step_error_reply(s, &e);
        step_detail(s, "MAIL FROM:<%s> refused: %d %s%s%s", p->from, s->reply.code,
                    s->reply.enhanced, s->reply.enhanced[0] ? " " : "", s->reply.text);
        if (!s->reply.code) step_detail(s, "MAIL FROM:<%s> failed: %s", p->from, e.text);
        return step_fail(p, s, cli_exit_code(&e));
    }
    step_reply(s, &r);
    step_detail(s, "MAIL FROM:<%s>: %d %s%s%s", p->from, r.code, r.enhanced,
                r.enhanced[0] ? " " : "", r.text);
    step_end(p, s, V_OK);

    for (size_t i = 0; i < p->nto; i++) {
        s = step_begin(p, "rcpt");
        memset(&r, 0, sizeof r);
        sk_error_clear(&e);
        rc = sk_client_rcpt(c, p->to[i], NULL, &r, &e);
        json_member_str(s, "recipient", p->to[i]);
        if (rc != SK_OK) {
            if (r.code)
                step_reply(s, &r);
            else if (e.code)
                step_error_reply(s, &e);
            step_detail(s, "RCPT TO:<%s> refused: %d %s%s%s", p->to[i], s->reply.code,
                        s->reply.enhanced, s->reply.enhanced[0] ? " " : "", s->reply.text);
            if (!s->reply.code) step_detail(s, "RCPT TO:<%s> failed: %s", p->to[i], e.text);
            return step_fail(p, s, cli_exit_code(&e));
        }
        step_reply(s, &r);
        step_detail(s, "RCPT TO:<%s>: %d %s%s%s", p->to[i], r.code, r.enhanced,
                    r.enhanced[0] ? " " : "", r.text);
        step_end(p, s, V_OK);
    }

    /* Nothing is sent: the transaction is reset (RFC 5321 4.1.1.5). */
    s = step_begin(p, "rset");
    sk_error_clear(&e);
    rc = sk_client_rset(c, &e);
    if (rc != SK_OK) {
        if (e.code) step_error_reply(s, &e);
        step_detail(s, "RSET failed: %s", e.text);
        return step_fail(p, s, cli_exit_code(&e));
    }
    step_detail(s, "transaction reset; nothing was sent");
    step_end(p, s, V_OK);
    return 0;
}

/* ---- command line ---- */

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
    probe p;
    memset(&p, 0, sizeof p);
    p.timeout_ms = PROBE_TIMEOUT_MS_DEFAULT;
    p.reachable = -1;
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
            if (p.nto == PROBE_RCPTS_MAX)
                return cli_usage_error("probe", "at most %d --to", PROBE_RCPTS_MAX);
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
        case ':':
            return cli_usage_error("probe", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_unknown_long_option("probe", argv[optind - 1], longopts);
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
    sk_client *c = NULL;
    if (check_dns(&p) < 0 || check_tcp(&p) < 0) goto done;

    char address[INET6_ADDRSTRLEN];
    addr_string((const struct sockaddr *)&p.addrs[p.reachable], address, sizeof address);
    sk_client_opts o = {
        .host = p.host,
        .port = p.port,
        .tls = p.tls,
        .ca_file = p.ca_file,
        .insecure = p.insecure,
        .tls_name = p.tls_name,
        .connect_address = address,
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
    c = sk_client_new(&o);
    if (!c) {
        cli_warn("probe", "out of memory");
        p.exit_code = EX_SOFTWARE;
        goto done;
    }
    if (check_open(&p, c) < 0) goto done;
    sk_error e;
    sk_error_clear(&e);
    sk_err rc = sk_client_ehlo(c, &e);
    if (check_ehlo(&p, c, "ehlo", p.tls == SK_TLS_IMPLICIT, rc, &e) < 0) goto done;
    if (p.tls != SK_TLS_IMPLICIT && check_starttls(&p, c) < 0) goto done;
    if (p.user && check_auth(&p, c) < 0) goto done;
    if (p.from && check_envelope(&p, c) < 0) goto done;

done:
    if (c) {
        sk_error qe;
        (void)sk_client_quit(c, &qe);
        sk_client_free(c);
    }
    if (p.json) {
        print_json(&p);
    } else if (p.failed_step) {
        printf("result: FAIL at %s (exit %d)\n", p.failed_step, p.exit_code);
    } else {
        int warns = 0;
        for (size_t i = 0; i < p.nsteps; i++) warns += p.steps[i].status == V_WARN;
        if (warns)
            printf("result: OK with %d warning%s\n", warns, warns == 1 ? "" : "s");
        else
            printf("result: OK\n");
    }
    for (size_t i = 0; i < p.nsteps; i++) {
        sk_buf_free(&p.steps[i].lines);
        json_decref(p.steps[i].data);
    }
    if (password) {
        explicit_bzero(password, strlen(password));
        sk_free(password);
    }
    return p.exit_code;
}
