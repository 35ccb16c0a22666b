/* The probe checklist (sk_client_probe): check a mail server one step at a
 * time (DNS, TCP to each address, greeting, EHLO, TLS, AUTH, envelope) and
 * say as data what is wrong and how to fix it. */
#include <smtpkit/probe.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client_int.h"

static const char *const verdict_names[] = {"pass", "warn", "fail", "skip"};
_Static_assert(sizeof verdict_names / sizeof verdict_names[0] == SK_PROBE__VERDICTS,
               "a name per verdict");
static const char *const check_names[] = {"dns",  "tcp",  "tls",  "greeting", "ehlo",
                                          "auth", "mail", "rcpt", "rset"};
_Static_assert(sizeof check_names / sizeof check_names[0] == SK_PROBE__CHECKS, "a name per check");
/* The client step each check is (for errors and bindings). */
static const sk_step check_steps[] = {SK_STEP_DNS,      SK_STEP_CONNECT, SK_STEP_TLS,
                                      SK_STEP_GREETING, SK_STEP_EHLO,    SK_STEP_AUTH,
                                      SK_STEP_MAIL,     SK_STEP_RCPT,    SK_STEP_RSET};
_Static_assert(sizeof check_steps / sizeof check_steps[0] == SK_PROBE__CHECKS,
               "a client step per check");

const char *sk_probe_verdict_name(sk_probe_verdict v)
{
    return (unsigned)v < SK_PROBE__VERDICTS ? verdict_names[v] : "unknown";
}

const char *sk_probe_check_name(sk_probe_check c)
{
    return (unsigned)c < SK_PROBE__CHECKS ? check_names[c] : "unknown";
}

struct sk_probe {
    sk_probe_step *steps; /* SK_PROBE_STEPS_MAX of them */
    size_t nsteps;
    int failed; /* index of the failed step, -1 when none */
    /* What steps point at (one of each per probe). */
    char addr_store[SK_PROBE_ADDRS_MAX][INET6_ADDRSTRLEN];
    const char *addrs[SK_PROBE_ADDRS_MAX];
    sk_tls_info tls;
    sk_peer_info peer;
    sk_probe_ext *exts[2]; /* the two EHLO steps' extensions */
    size_t nexts_used;
};

/* A probe in progress: the client, the options and what was found. */
typedef struct run {
    sk_client *c;
    const sk_probe_opts *po;
    sk_option_names names; /* po's, with plain words where unset */
    sk_probe *p;
    struct sockaddr_storage addrs[SK_PROBE_ADDRS_MAX];
    socklen_t addrlens[SK_PROBE_ADDRS_MAX];
    size_t naddrs;
    int reachable; /* index into addrs of the first address that connected */
    char reach_addr[INET6_ADDRSTRLEN];
} run;

/* ---- steps ---- */

static sk_probe_step *step_begin(run *r, sk_probe_check check)
{
    sk_probe *p = r->p;
    /* The steps' bound (limits.h) holds every step a probe can take; were
     * it passed, the last step would be reused rather than overrun. */
    if (p->nsteps == SK_PROBE_STEPS_MAX) p->nsteps--;
    sk_probe_step *s = &p->steps[p->nsteps++];
    memset(s, 0, sizeof *s);
    s->check = check;
    s->elapsed_ms = -1;
    s->error.step = check_steps[check];
    return s;
}

static void step_detail(sk_probe_step *s, const char *fmt, ...) SK_PRINTF(2, 3);
static void step_detail(sk_probe_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof s->detail, fmt, ap);
    va_end(ap);
}

static void step_hint(sk_probe_step *s, const char *fmt, ...) SK_PRINTF(2, 3);
static void step_hint(sk_probe_step *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->hint, sizeof s->hint, fmt, ap);
    va_end(ap);
}

/* One of the hints the client's errors share (hint.c), in the caller's
 * words. */
static void step_hint_shared(const run *r, sk_probe_step *s, cl_hint h)
{
    cl_hint_format(h, &r->names, s->hint, sizeof s->hint);
}

static void step_reply(sk_probe_step *s, const sk_reply *r)
{
    s->has_reply = 1;
    s->reply = *r;
    if (sk_reply_class_of(r->code) >= SK_REPLY_TRANSIENT)
        s->explanation = sk_reply_explain(r->code, r->enhanced, r->text);
}

/* The reply an sk_error carries (code, enhanced status, text). */
static void step_error_reply(sk_probe_step *s, const sk_error *e)
{
    sk_reply r = sk_reply_make(e->code, e->enhanced, "%s", e->text);
    step_reply(s, &r);
}

static void step_end(run *r, sk_probe_step *s, sk_probe_verdict v)
{
    s->verdict = v;
    if (v == SK_PROBE_FAIL && r->p->failed < 0) r->p->failed = (int)(s - r->p->steps);
    if (r->po->on_step) r->po->on_step(r->po->on_step_ctx, s);
}

/* Fail the probe at step s with the error e (its err says what kind of
 * failure this is; the text is the step's detail when e has none). */
static int step_fail(run *r, sk_probe_step *s, const sk_error *e, sk_err kind)
{
    if (e) s->error = *e;
    s->error.err = kind;
    s->error.step = check_steps[s->check];
    if (!s->error.text[0])
        snprintf(s->error.text, sizeof s->error.text, "%.*s", (int)sizeof s->error.text - 1,
                 s->detail);
    step_end(r, s, SK_PROBE_FAIL);
    return -1;
}

/* ---- addresses and sockets ---- */

static void addr_string(const struct sockaddr *sa, char *out, size_t n)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, a, out, (socklen_t)n)) snprintf(out, n, "?");
}

static socklen_t sockaddr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Connect with the client's connect timeout, and its abort. Returns 0, or
 * -1 with *error set (ETIMEDOUT when the timeout passed, ECANCELED when
 * aborted). */
static int tcp_try(const sk_client *c, const struct sockaddr *sa, socklen_t len, int *error)
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
    sk_err w = cl_wait_fd(c, fd, POLLOUT, sk_now_ms() + c->o.connect_timeout_ms);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (w == SK_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    close(fd);
    if (w != SK_OK) {
        *error = w == SK_ERR_TIMEOUT ? ETIMEDOUT : w == SK_ERR_STATE ? ECANCELED : EIO;
        return -1;
    }
    if (soerr) {
        *error = soerr;
        return -1;
    }
    return 0;
}

/* ---- the checks ---- */

static int check_dns(run *r)
{
    sk_client *c = r->c;
    sk_probe_step *s = step_begin(r, SK_PROBE_DNS);
    /* The caller's address, when given, is what the client connects to. */
    const char *target = c->o.connect_address ? c->o.connect_address : c->o.host;
    uint64_t t0 = sk_now_ms();
    if (c->o.resolve && !c->o.connect_address) {
        struct sockaddr_storage ss[SK_PROBE_ADDRS_MAX];
        memset(ss, 0, sizeof ss);
        int n = c->o.resolve(c->o.resolve_ctx, c->o.host, c->o.port, ss, SK_PROBE_ADDRS_MAX);
        s->elapsed_ms = (long)(sk_now_ms() - t0);
        if (n <= 0) {
            step_detail(s, "%s does not resolve: %s", c->o.host,
                        n ? "temporary resolver failure" : "no address");
            step_hint(s,
                      "check the name for typos; 'dig %s A' and 'dig %s AAAA' show what DNS says",
                      c->o.host, c->o.host);
            return step_fail(r, s, NULL, SK_ERR_DNS);
        }
        for (int i = 0; i < n && i < SK_PROBE_ADDRS_MAX; i++) {
            if (ss[i].ss_family != AF_INET && ss[i].ss_family != AF_INET6) continue;
            r->addrs[r->naddrs] = ss[i];
            r->addrlens[r->naddrs++] = sockaddr_len(&ss[i]);
        }
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        if (c->o.connect_address) hints.ai_flags = AI_NUMERICHOST;
        char port[8];
        snprintf(port, sizeof port, "%u", c->o.port);
        int rc = getaddrinfo(target, port, &hints, &res);
        s->elapsed_ms = (long)(sk_now_ms() - t0);
        if (rc != 0) {
            step_detail(s, "%s does not resolve: %s", target, gai_strerror(rc));
            if (rc == EAI_NONAME)
                step_hint(s,
                          "check the name for typos; 'dig %s A' and 'dig %s AAAA' show what DNS "
                          "says",
                          target, target);
            else
                step_hint(s, "the resolver failed (%s): check /etc/resolv.conf and the network",
                          gai_strerror(rc));
            sk_error e;
            sk_error_set(&e, SK_ERR_DNS, SK_STEP_DNS, "cannot resolve %s: %s", target,
                         gai_strerror(rc));
            e.transient = rc != EAI_NONAME;
            return step_fail(r, s, &e, c->o.connect_address ? SK_ERR_CONFIG : SK_ERR_DNS);
        }
        for (struct addrinfo *ai = res; ai && r->naddrs < SK_PROBE_ADDRS_MAX; ai = ai->ai_next) {
            int dup = 0;
            for (size_t i = 0; i < r->naddrs; i++)
                dup |= r->addrlens[i] == ai->ai_addrlen &&
                       memcmp(&r->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0;
            if (dup) continue;
            memcpy(&r->addrs[r->naddrs], ai->ai_addr, ai->ai_addrlen);
            r->addrlens[r->naddrs++] = ai->ai_addrlen;
        }
        freeaddrinfo(res);
    }
    char list[SK_PROBE_ADDRS_MAX * (INET6_ADDRSTRLEN + 2)] = "";
    size_t used = 0;
    for (size_t i = 0; i < r->naddrs; i++) {
        addr_string((const struct sockaddr *)&r->addrs[i], r->p->addr_store[i],
                    sizeof r->p->addr_store[i]);
        r->p->addrs[i] = r->p->addr_store[i];
        int w =
            snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", r->p->addr_store[i]);
        if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
    }
    s->addresses = r->p->addrs;
    s->naddresses = r->naddrs;
    struct in6_addr tmp6;
    struct in_addr tmp4;
    if (inet_pton(AF_INET, target, &tmp4) == 1 || inet_pton(AF_INET6, target, &tmp6) == 1)
        step_detail(s, "%s is an address; nothing to resolve", target);
    else
        step_detail(s, "%s resolves to %s", target, list);
    step_end(r, s, SK_PROBE_PASS);
    return 0;
}

static int check_tcp(run *r)
{
    const sk_client *c = r->c;
    unsigned short port = c->o.port;
    int refused = 0, timedout = 0, other = 0;
    r->reachable = -1;
    for (size_t i = 0; i < r->naddrs; i++) {
        sk_probe_step *s = step_begin(r, SK_PROBE_TCP);
        const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[i];
        addr_string(sa, s->address, sizeof s->address);
        char where[INET6_ADDRSTRLEN + 10];
        int v6 = sa->sa_family == AF_INET6;
        snprintf(where, sizeof where, "%s%s%s:%u", v6 ? "[" : "", s->address, v6 ? "]" : "", port);
        int error = 0;
        uint64_t t0 = sk_now_ms();
        int rc = tcp_try(c, sa, r->addrlens[i], &error);
        s->elapsed_ms = (long)(sk_now_ms() - t0);
        if (rc == 0) {
            step_detail(s, "%s connected", where);
            if (r->reachable < 0) r->reachable = (int)i;
            step_end(r, s, SK_PROBE_PASS);
            continue;
        }
        sk_err kind = SK_ERR_CONNECT;
        if (error == ECANCELED) {
            step_detail(s, "%s: aborted (sk_client_abort)", where);
            return step_fail(r, s, NULL, SK_ERR_STATE);
        } else if (error == ECONNREFUSED) {
            refused++;
            step_detail(s, "%s refused: nothing is listening on port %u there", where, port);
            step_hint(s, "wrong port? (SMTP: 25 relay, 587 submission, 465 submission over "
                         "TLS) or the server is not running");
        } else if (error == ETIMEDOUT) {
            timedout++;
            kind = SK_ERR_TIMEOUT;
            step_detail(s, "%s timed out after %u ms: no answer at all", where,
                        c->o.connect_timeout_ms);
            step_hint(s,
                      "packets are dropped on the way: a firewall, or an ISP blocking port "
                      "%u; check from another network",
                      port);
        } else {
            other++;
            step_detail(s, "%s failed: %s", where, strerror(error));
            step_hint(s, "check the route to %s (ip route get %s)", s->address, s->address);
        }
        /* An unreachable address is only a warning while another works. */
        if (r->naddrs > 1) {
            step_end(r, s, SK_PROBE_WARN);
        } else {
            sk_error e;
            sk_error_set(&e, kind, SK_STEP_CONNECT, "cannot connect to %s port %u (%s: %s)",
                         c->o.host, port, s->address, strerror(error));
            e.transient = 1;
            return step_fail(r, s, &e, kind);
        }
    }
    if (r->reachable >= 0) {
        addr_string((const struct sockaddr *)&r->addrs[r->reachable], r->reach_addr,
                    sizeof r->reach_addr);
        return 0;
    }
    sk_probe_step *s = step_begin(r, SK_PROBE_TCP);
    step_detail(s,
                "no address of %s accepted a connection on port %u (%d refused, %d timed "
                "out, %d other)",
                c->o.host, port, refused, timedout, other);
    step_hint(s, "%s",
              refused ? "check the port, and that the server runs"
                      : "check firewalls between here and the server");
    sk_error e;
    sk_error_set(&e, SK_ERR_CONNECT, SK_STEP_CONNECT, "%s", s->detail);
    e.transient = 1;
    return step_fail(r, s, &e, refused || other ? SK_ERR_CONNECT : SK_ERR_TIMEOUT);
}

/* Why a certificate did not verify, and what to do about it. */
static void explain_verify(const run *r, sk_probe_step *s, const sk_tls_info *ti)
{
    const sk_tls_cert *leaf = ti->chain_len ? &ti->chain[0] : NULL;
    const sk_option_names *n = &r->names;
    char when[32] = "";
    switch (ti->verify_code) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (leaf) sk_time_rfc3339(leaf->not_after, when);
        s->explanation = "the server's certificate has expired";
        step_hint(s,
                  "the server's operator must renew the certificate (it expired %s) and "
                  "reload the server",
                  when[0] ? when : "already");
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (leaf) sk_time_rfc3339(leaf->not_before, when);
        s->explanation = "the server's certificate is not valid yet";
        step_hint(s, "it becomes valid %s: check the clocks of this machine and the server", when);
        break;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        s->explanation = "the certificate is self-signed: no authority vouches for it";
        step_hint(s,
                  "use a certificate from a CA (e.g. Let's Encrypt); if you trust this one, "
                  "pass it with %s",
                  n->ca_file);
        break;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        s->explanation = "the certificate was issued by an authority this machine does not "
                         "trust (unknown issuer)";
        step_hint(s,
                  "a private CA: pass its certificate with %s; a public CA: the "
                  "server must send its intermediate certificates too (the full chain)",
                  n->ca_file);
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        s->explanation = "the certificate is for another name than the one you connected to";
        step_hint(s,
                  "connect with a name the certificate lists (%s; or give it with "
                  "%s), or the operator must add %s to the certificate",
                  leaf && leaf->san[0] ? leaf->san
                  : leaf               ? leaf->subject
                                       : "see above",
                  n->tls_name, r->c->o.tls_name ? r->c->o.tls_name : r->c->o.host);
        break;
    default:
        s->explanation = "the certificate chain did not verify";
        step_hint(s, "see the reason above; %s names the authority to trust", n->ca_file);
    }
}

/* Report the TLS session of the client (after implicit TLS or STARTTLS). */
static int report_tls(run *r, sk_probe_step *s, const sk_tls_info *ti, sk_err rc, const sk_error *e)
{
    const sk_client *c = r->c;
    if (!ti || !ti->active) {
        step_detail(s, "TLS handshake failed: %s", e->text[0] ? e->text : sk_strerror(rc));
        s->explanation = e->hint;
        step_hint(s,
                  "the server may not support a TLS version or cipher we accept (TLS 1.2 or "
                  "later); 'openssl s_client -connect %s:%u%s' shows more",
                  c->o.host, c->o.port, c->o.tls == SK_TLS_IMPLICIT ? "" : " -starttls smtp");
        int tlsish = rc == SK_ERR_TLS || rc == SK_ERR_TLS_VERIFY || rc == SK_ERR_PROTOCOL ||
                     rc == SK_ERR_STATE;
        return step_fail(r, s, e, tlsish ? rc : SK_ERR_TLS);
    }
    r->p->tls = *ti;
    s->tls = &r->p->tls;
    if (ti->verified) {
        step_detail(s, "%s %s, certificate verified for %s", ti->version, ti->cipher,
                    ti->sni[0] ? ti->sni : c->o.host);
        step_end(r, s, SK_PROBE_PASS);
        return 0;
    }
    char going_on[96] = "";
    if (c->o.insecure) snprintf(going_on, sizeof going_on, " (%s: going on)", r->names.insecure);
    step_detail(s, "%s %s, certificate NOT verified: %s%s", ti->version, ti->cipher,
                ti->verify_text, going_on);
    explain_verify(r, s, ti);
    if (c->o.insecure) {
        /* As a client with verification off: encrypted, not authenticated. */
        step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    return step_fail(r, s, e, SK_ERR_TLS_VERIFY);
}

/* The greeting did not come as SMTP: find out what the peer is. The
 * client may have found out already while it waited (identify_after_ms);
 * else it is asked now (sk_client_identify, as `smtpkit send` does). */
static int diagnose_no_greeting(run *r, sk_probe_step *s, sk_err rc, const sk_error *e)
{
    sk_client *c = r->c;
    const sk_option_names *n = &r->names;
    unsigned timeout = c->o.greeting_timeout_ms;
    sk_peer_info peer;
    memset(&peer, 0, sizeof peer);
    const sk_peer_info *known = sk_client_peer(c);
    /* What an implicit-TLS handshake heard holds only its first octets:
     * ask again for the whole greeting line. */
    if (known && known->kind != SK_PEER_SMTP) {
        peer = *known;
    } else if (rc != SK_ERR_STATE) {
        unsigned wait = timeout < SK_CLIENT_IDENTIFY_WAIT_MS ? timeout : SK_CLIENT_IDENTIFY_WAIT_MS;
        sk_error ie;
        if (sk_client_identify(c, wait, &peer, &ie) != SK_OK && known) peer = *known;
    }
    r->p->peer = peer;
    s->peer = &r->p->peer;
    const char *first = peer.said;
    if (rc == SK_ERR_STATE) {
        step_detail(s, "%s", e->text[0] ? e->text : "aborted (sk_client_abort)");
        return step_fail(r, s, e, SK_ERR_STATE);
    }
    int implicit = c->o.tls == SK_TLS_IMPLICIT;
    switch (peer.kind) {
    case SK_PEER_SMTP:
        if (implicit) {
            step_detail(s,
                        "the server greets in plain text (\"%s\"): it does not speak TLS from "
                        "the first byte",
                        first);
            step_hint_shared(r, s, CL_HINT_PLAIN_SMTP);
            return step_fail(r, s, e, SK_ERR_PROTOCOL);
        }
        if (rc != SK_ERR_TIMEOUT) {
            step_detail(s, "the greeting (\"%s\") cannot be used: %s", first,
                        e->text[0] ? e->text : sk_strerror(rc));
            step_hint(s, "the server breaks the SMTP reply syntax (RFC 5321 4.2); tell its "
                         "operator");
            return step_fail(r, s, e, SK_ERR_PROTOCOL);
        }
        step_detail(s,
                    "the greeting (\"%s\") came on another connection, but not on this one "
                    "within %u ms",
                    first, timeout);
        step_hint_shared(r, s, CL_HINT_GREETS_OTHERS);
        return step_fail(r, s, e, SK_ERR_TIMEOUT);
    case SK_PEER_HTTP:
        step_detail(s, "not an SMTP server: it answered like a web server (\"%s\")", first);
        step_hint_shared(r, s, CL_HINT_HTTP);
        return step_fail(r, s, e, SK_ERR_PROTOCOL);
    case SK_PEER_OTHER:
        step_detail(s, "not an SMTP server: it said \"%s\"", first);
        step_hint(s, "wrong port or host? SMTP is on 25, 587 or 465");
        return step_fail(r, s, e, SK_ERR_PROTOCOL);
    case SK_PEER_TLS:
        if (!implicit) {
            step_detail(s, "the server speaks TLS from the first byte: no plain-text greeting");
            step_hint_shared(r, s, CL_HINT_TLS_FIRST);
            return step_fail(r, s, e, SK_ERR_PROTOCOL);
        }
        break;
    default:
        break;
    }
    if (implicit) {
        step_detail(s, "TLS handshake failed: %s", e->text[0] ? e->text : sk_strerror(rc));
        step_hint(s,
                  "is this port TLS from the first byte? Port 465 usually is; 587 and 25 use "
                  "%s",
                  n->tls_starttls);
        return step_fail(r, s, e, rc == SK_ERR_TIMEOUT ? SK_ERR_TIMEOUT : SK_ERR_TLS);
    }
    if (rc == SK_ERR_TIMEOUT || peer.kind == SK_PEER_SILENT) {
        step_detail(s, "connected, but no greeting within %u ms, and no answer when spoken to",
                    timeout);
        if (peer.kind == SK_PEER_SILENT)
            step_hint_shared(r, s, CL_HINT_SILENT);
        else
            step_hint(s, "the server is stuck or overloaded, or this is not a mail server (a "
                         "proxy or tarpit holding the connection); try again later or check "
                         "the port");
        return step_fail(r, s, e, SK_ERR_TIMEOUT);
    }
    if (rc == SK_ERR_CLOSED || peer.kind == SK_PEER_CLOSED) {
        step_detail(s, "the server closed the connection without a greeting");
        step_hint(s, "it refuses this client (access list, connection limit, or blocklisted "
                     "IP); check the server's log");
        return step_fail(r, s, e, SK_ERR_CLOSED);
    }
    step_detail(s, "no usable greeting: %s", e->text[0] ? e->text : sk_strerror(rc));
    return step_fail(r, s, e, SK_ERR_PROTOCOL);
}

static int check_open(run *r)
{
    sk_client *c = r->c;
    /* With implicit TLS the handshake comes first, then the greeting. */
    sk_probe_step *ts = c->o.tls == SK_TLS_IMPLICIT ? step_begin(r, SK_PROBE_TLS) : NULL;
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_open(c, &e);
    long elapsed = (long)(sk_now_ms() - t0);
    const sk_tls_info *ti = sk_client_tls_info(c);

    if (ts) {
        snprintf(ts->address, sizeof ts->address, "%s", r->reach_addr);
        ts->elapsed_ms = elapsed;
        if (ti && ti->active) {
            if (report_tls(r, ts, ti, rc, &e) < 0) return -1;
        } else if (rc != SK_OK) {
            return diagnose_no_greeting(r, ts, rc, &e);
        }
    }

    sk_probe_step *s = step_begin(r, SK_PROBE_GREETING);
    snprintf(s->address, sizeof s->address, "%s", r->reach_addr);
    s->elapsed_ms = elapsed;
    const sk_reply *g = sk_client_greeting(c);
    if (rc == SK_OK && g) {
        step_reply(s, g);
        step_detail(s, "%d %s", g->code, g->text);
        step_end(r, s, SK_PROBE_PASS);
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
        return step_fail(r, s, &e,
                         sk_reply_class_of(s->reply.code) == SK_REPLY_PERMANENT ? SK_ERR_PERMFAIL
                                                                                : SK_ERR_TEMPFAIL);
    }
    return diagnose_no_greeting(r, s, rc, &e);
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
static void explain_extension(sk_probe_ext *x, const char *line, size_t n, int tls_active)
{
    size_t k = 0;
    while (k < n && line[k] != ' ' && k + 1 < sizeof x->keyword) {
        char ch = line[k];
        x->keyword[k] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
        k++;
    }
    x->keyword[k] = '\0';
    while (k < n && line[k] == ' ') k++;
    snprintf(x->params, sizeof x->params, "%.*s", (int)(n - k), line + k);
    if (!strcmp(x->keyword, "SIZE")) {
        unsigned long long sz = strtoull(x->params, NULL, 10);
        if (sz)
            snprintf(x->meaning, sizeof x->meaning,
                     "messages up to %.1f MB (%llu octets, RFC 1870)", (double)sz / 1e6, sz);
        else
            snprintf(x->meaning, sizeof x->meaning,
                     "no fixed message size limit announced (RFC 1870)");
    } else if (!strcmp(x->keyword, "AUTH")) {
        snprintf(x->meaning, sizeof x->meaning, "login with %s (RFC 4954)%s", x->params,
                 tls_active ? "" : "; offered before TLS");
    } else {
        snprintf(x->meaning, sizeof x->meaning, "not explained here");
        for (size_t i = 0; i < sizeof ext_meanings / sizeof ext_meanings[0]; i++)
            if (!strcmp(x->keyword, ext_meanings[i].keyword))
                snprintf(x->meaning, sizeof x->meaning, "%s", ext_meanings[i].meaning);
    }
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

/* The extensions of the EHLO reply into the step (storage in the probe). */
static void keep_extensions(run *r, sk_probe_step *s)
{
    const char *lines = sk_client_ehlo_lines(r->c);
    const char *nl = strchr(lines, '\n');
    size_t count = 0;
    for (const char *l = nl ? nl + 1 : ""; *l; l++)
        if (*l == '\n') count++;
    if (nl && nl[1]) count++;
    if (!count) return;
    if (r->p->nexts_used == sizeof r->p->exts / sizeof r->p->exts[0]) {
        s->truncated = 1;
        return;
    }
    sk_probe_ext *xs = sk_calloc(count, sizeof *xs);
    if (!xs) {
        s->truncated = 1;
        return;
    }
    r->p->exts[r->p->nexts_used++] = xs;
    size_t i = 0;
    for (const char *l = nl + 1; *l && i < count;) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n) explain_extension(&xs[i++], l, n, sk_client_is_tls(r->c));
        l += n + (end ? 1 : 0);
    }
    s->extensions = xs;
    s->nextensions = i;
}

static int check_ehlo(run *r, int after_tls, sk_err rc, const sk_error *e)
{
    sk_client *c = r->c;
    sk_probe_step *s = step_begin(r, SK_PROBE_EHLO);
    if (rc != SK_OK) {
        if (e->code) {
            step_error_reply(s, e);
            step_detail(s, "%d %s%s%s", e->code, e->enhanced, e->enhanced[0] ? " " : "", e->text);
        } else {
            step_detail(s, "EHLO failed: %s", e->text[0] ? e->text : sk_strerror(rc));
            s->explanation = e->hint;
        }
        return step_fail(r, s, e, rc);
    }
    const sk_ehlo_info *x = sk_client_extensions(c);
    snprintf(s->server_name, sizeof s->server_name, "%s", x ? x->domain : "");
    s->esmtp = x && x->esmtp;
    keep_extensions(r, s);
    if (x && !x->esmtp) {
        step_detail(s, "EHLO refused, HELO accepted: no ESMTP, so no STARTTLS, AUTH or SIZE");
        step_hint(s, "an old or minimal server; sending may work, but without TLS");
        step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    size_t count = s->nextensions;
    step_detail(s, "%s offers %zu extension%s%s", x && x->domain[0] ? x->domain : "the server",
                count, count == 1 ? "" : "s", after_tls ? " after TLS" : "");
    if (x && !sk_client_is_tls(c) && offers_cleartext_auth(x->auth)) {
        /* RFC 4954 4: servers must be able to withhold plaintext password
         * mechanisms until TLS protects the session. */
        s->explanation = "AUTH with PLAIN or LOGIN is offered on a connection without TLS: a "
                         "client that uses it sends the password in clear";
        step_hint(s, "the server should offer these mechanisms only after STARTTLS (or on "
                     "implicit TLS, port 465)");
        step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    step_end(r, s, SK_PROBE_PASS);
    return 0;
}

static int check_starttls(run *r)
{
    sk_client *c = r->c;
    const sk_option_names *n = &r->names;
    const sk_ehlo_info *x = sk_client_extensions(c);
    int offered = x && (x->ext & SK_CLIENT_EXT_STARTTLS);
    sk_probe_step *s = step_begin(r, SK_PROBE_TLS);
    if (c->o.tls == SK_TLS_NONE) {
        if (offered) {
            step_detail(s, "not tried (%s), but the server offers STARTTLS", n->tls_none);
            step_hint(s,
                      "use %s: without TLS, mail and passwords cross the network "
                      "in clear",
                      n->tls_starttls);
        } else {
            step_detail(s, "no TLS: the server does not offer STARTTLS");
            step_hint(s, "fine on a trusted network only; the operator should configure a "
                         "certificate");
        }
        step_end(r, s, SK_PROBE_WARN);
        return 0;
    }
    if (!offered) {
        if (c->o.tls == SK_TLS_STARTTLS_OPPORTUNISTIC) {
            step_detail(s, "no TLS: the server does not offer STARTTLS (opportunistic: going on)");
            step_hint(s, "the operator should configure a certificate");
            step_end(r, s, SK_PROBE_WARN);
            return 0;
        }
        step_detail(s, "the server does not offer STARTTLS");
        step_hint_shared(r, s, CL_HINT_NO_STARTTLS);
        return step_fail(r, s, NULL, SK_ERR_UNSUPPORTED);
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
        return step_fail(r, s, &e, rc);
    }
    const sk_tls_info *ti = sk_client_tls_info(c);
    if (report_tls(r, s, ti, rc, &e) < 0) return -1;
    /* RFC 3207 4.2: the client must EHLO again; the library did, and its
     * failure is reported as that step's. */
    return check_ehlo(r, 1, rc, &e);
}

static int check_auth(run *r)
{
    sk_client *c = r->c;
    const sk_option_names *n = &r->names;
    sk_probe_step *s = step_begin(r, SK_PROBE_AUTH);
    sk_error e;
    sk_error_clear(&e);
    uint64_t t0 = sk_now_ms();
    sk_err rc = sk_client_authenticate(c, &e);
    s->elapsed_ms = (long)(sk_now_ms() - t0);
    if (rc == SK_OK) {
        s->mechanism = sk_sasl_mech_name(sk_client_auth_mech(c));
        step_detail(s, "credentials accepted (mechanism %s)", s->mechanism);
        step_end(r, s, SK_PROBE_PASS);
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
            step_hint(s, "probe with %s or %s: credentials are never sent without TLS",
                      n->tls_starttls, n->tls_implicit);
    }
    sk_err kind = sk_reply_class_of(e.code) == SK_REPLY_TRANSIENT ? SK_ERR_TEMPFAIL
                  : rc == SK_ERR_CONFIG || rc == SK_ERR_STATE     ? rc
                                                                  : SK_ERR_AUTH;
    return step_fail(r, s, &e, kind);
}

/* A refused or failed MAIL or RCPT: the reply, or the error's. */
static int envelope_fail(run *r, sk_probe_step *s, const char *verb, const char *addr,
                         const sk_reply *rp, sk_err rc, const sk_error *e)
{
    if (rp->code)
        step_reply(s, rp);
    else if (e->code)
        step_error_reply(s, e);
    if (s->reply.code)
        step_detail(s, "%s:<%s> refused: %d %s%s%s", verb, addr, s->reply.code, s->reply.enhanced,
                    s->reply.enhanced[0] ? " " : "", s->reply.text);
    else
        step_detail(s, "%s:<%s> failed: %s", verb, addr, e->text);
    return step_fail(r, s, e, rc);
}

static int check_envelope(run *r)
{
    sk_client *c = r->c;
    const sk_probe_opts *po = r->po;
    sk_reply rp;
    sk_error e;
    sk_probe_step *s = step_begin(r, SK_PROBE_MAIL);
    memset(&rp, 0, sizeof rp);
    sk_error_clear(&e);
    sk_err rc = sk_client_mail(c, po->from, NULL, &rp, &e);
    if (rc != SK_OK) return envelope_fail(r, s, "MAIL FROM", po->from, &rp, rc, &e);
    step_reply(s, &rp);
    step_detail(s, "MAIL FROM:<%s>: %d %s%s%s", po->from, rp.code, rp.enhanced,
                rp.enhanced[0] ? " " : "", rp.text);
    step_end(r, s, SK_PROBE_PASS);

    for (size_t i = 0; i < po->nto; i++) {
        s = step_begin(r, SK_PROBE_RCPT);
        snprintf(s->recipient, sizeof s->recipient, "%s", po->to[i]);
        memset(&rp, 0, sizeof rp);
        sk_error_clear(&e);
        rc = sk_client_rcpt(c, po->to[i], NULL, &rp, &e);
        if (rc != SK_OK) return envelope_fail(r, s, "RCPT TO", po->to[i], &rp, rc, &e);
        step_reply(s, &rp);
        step_detail(s, "RCPT TO:<%s>: %d %s%s%s", po->to[i], rp.code, rp.enhanced,
                    rp.enhanced[0] ? " " : "", rp.text);
        step_end(r, s, SK_PROBE_PASS);
    }

    /* Nothing is sent: the transaction is reset (RFC 5321 4.1.1.5). */
    s = step_begin(r, SK_PROBE_RSET);
    sk_error_clear(&e);
    rc = sk_client_rset(c, &e);
    if (rc != SK_OK) {
        if (e.code) step_error_reply(s, &e);
        step_detail(s, "RSET failed: %s", e.text);
        return step_fail(r, s, &e, rc);
    }
    step_detail(s, "transaction reset; nothing was sent");
    step_end(r, s, SK_PROBE_PASS);
    return 0;
}

/* After a failure: the checks that would have followed, as skipped. */
static void skip_rest(run *r)
{
    const sk_client *c = r->c;
    sk_probe_check failed = r->p->steps[r->p->failed].check;
    int implicit = c->o.tls == SK_TLS_IMPLICIT;
    /* The whole checklist for these settings, in order. */
    sk_probe_check plan[10 + SK_PROBE_RCPTS_MAX];
    size_t n = 0;
    plan[n++] = SK_PROBE_DNS;
    plan[n++] = SK_PROBE_TCP;
    if (implicit) plan[n++] = SK_PROBE_TLS;
    plan[n++] = SK_PROBE_GREETING;
    plan[n++] = SK_PROBE_EHLO;
    if (!implicit) plan[n++] = SK_PROBE_TLS;
    if (!implicit && c->o.tls != SK_TLS_NONE) plan[n++] = SK_PROBE_EHLO; /* after STARTTLS */
    if (c->o.user) plan[n++] = SK_PROBE_AUTH;
    size_t first_rcpt = n + 1;
    if (r->po->from) {
        plan[n++] = SK_PROBE_MAIL;
        for (size_t i = 0; i < r->po->nto; i++) plan[n++] = SK_PROBE_RCPT;
        plan[n++] = SK_PROBE_RSET;
    }
    /* Where the steps taken got to in it (a tcp step per address). */
    size_t at = 0;
    for (size_t i = 0; i < r->p->nsteps; i++) {
        sk_probe_check k = r->p->steps[i].check;
        if (k == SK_PROBE_TCP && at > 0 && plan[at - 1] == SK_PROBE_TCP) continue;
        while (at < n && plan[at] != k) at++;
        if (at < n) at++;
    }
    for (size_t i = at; i < n; i++) {
        sk_probe_step *s = step_begin(r, plan[i]);
        if (plan[i] == SK_PROBE_RCPT)
            snprintf(s->recipient, sizeof s->recipient, "%s", r->po->to[i - first_rcpt]);
        step_detail(s, "not checked: the %s step failed", check_names[failed]);
        step_end(r, s, SK_PROBE_SKIP);
    }
}

/* ---- the probe ---- */

sk_err sk_client_probe(sk_client *c, const sk_probe_opts *opts, sk_probe **out, sk_error *err)
{
    static const sk_probe_opts none;
    if (out) *out = NULL;
    if (!opts) opts = &none;
    if (!c || !out || opts->nto > SK_PROBE_RCPTS_MAX || (opts->nto && !opts->from) ||
        (opts->nto && !opts->to))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "sk_client_probe: no client, no result, or recipients without a "
                            "sender (at most %d)",
                            SK_PROBE_RCPTS_MAX);
    if (c->state != CL_CLOSED)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "sk_client_probe: the client is connected (QUIT first)");
    sk_probe *p = sk_calloc(1, sizeof *p);
    if (p) p->steps = sk_calloc(SK_PROBE_STEPS_MAX, sizeof *p->steps);
    if (!p || !p->steps) {
        sk_probe_free(p);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    p->failed = -1;
    run r = {.c = c, .po = opts, .p = p, .reachable = -1};
    cl_names_resolve(opts->names, &r.names);

    /* For the probe, the client connects to the address that answered
     * and identifies a silent port soon (a person is waiting); both are
     * put back at the end. */
    const char *saved_address = c->o.connect_address;
    unsigned saved_identify = c->o.identify_after_ms;
    if (!c->o.identify_after_ms) c->o.identify_after_ms = SK_CLIENT_IDENTIFY_AFTER_MS;

    if (check_dns(&r) == 0 && check_tcp(&r) == 0) {
        c->o.connect_address = r.reach_addr;
        if (check_open(&r) == 0) {
            sk_error e;
            sk_error_clear(&e);
            sk_err rc = sk_client_ehlo(c, &e);
            if (check_ehlo(&r, c->o.tls == SK_TLS_IMPLICIT, rc, &e) == 0 &&
                (c->o.tls == SK_TLS_IMPLICIT || check_starttls(&r) == 0) &&
                (!c->o.user || check_auth(&r) == 0) && opts->from)
                (void)check_envelope(&r);
        }
        sk_error qe;
        if (c->state != CL_CLOSED) (void)sk_client_quit(c, &qe);
        sk_client_close(c);
    }
    c->o.connect_address = saved_address;
    c->o.identify_after_ms = saved_identify;
    *out = p;
    if (p->failed < 0) {
        sk_error_clear(err);
        return SK_OK;
    }
    skip_rest(&r);
    const sk_probe_step *f = &p->steps[p->failed];
    if (err) *err = f->error;
    return f->error.err;
}

size_t sk_probe_count(const sk_probe *p)
{
    return p ? p->nsteps : 0;
}

const sk_probe_step *sk_probe_step_at(const sk_probe *p, size_t i)
{
    return p && i < p->nsteps ? &p->steps[i] : NULL;
}

const sk_probe_step *sk_probe_failure(const sk_probe *p)
{
    return p && p->failed >= 0 ? &p->steps[p->failed] : NULL;
}

sk_probe_verdict sk_probe_overall(const sk_probe *p)
{
    sk_probe_verdict worst = SK_PROBE_PASS;
    for (size_t i = 0; p && i < p->nsteps; i++)
        if (p->steps[i].verdict != SK_PROBE_SKIP && p->steps[i].verdict > worst)
            worst = p->steps[i].verdict;
    return worst;
}

void sk_probe_free(sk_probe *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nexts_used; i++) sk_free(p->exts[i]);
    sk_free(p->steps);
    sk_free(p);
}
