/* What listens on a port that gives no SMTP greeting: a TLS server waiting
 * for a ClientHello, a web server waiting for a request, or nothing that
 * answers. Interactive programs and smtpkit probe use it to say "use
 * implicit TLS" or "wrong port" at once instead of after a long wait. */
#include "client/client_int.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const kind_names[] = {
    [SK_PEER_UNKNOWN] = "unknown", [SK_PEER_SMTP] = "smtp",   [SK_PEER_TLS] = "tls",
    [SK_PEER_HTTP] = "http",       [SK_PEER_OTHER] = "other", [SK_PEER_SILENT] = "silent",
    [SK_PEER_CLOSED] = "closed",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == SK_PEER__COUNT, "kind_names");

const char *sk_peer_kind_name(sk_peer_kind k)
{
    return (unsigned)k < SK_PEER__COUNT ? kind_names[k] : "unknown";
}

static int has_nocase(const unsigned char *b, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (!strncasecmp((const char *)b + i, needle, m)) return 1;
    return 0;
}

sk_peer_kind cl_classify(const unsigned char *b, size_t n)
{
    if (n == 0) return SK_PEER_UNKNOWN;
    /* RFC 5321 4.2: a reply is three digits (the first 2 to 5), then SP,
     * '-' or the line end; a short read may hold only its start. */
    if (b[0] >= '2' && b[0] <= '5') {
        size_t k = 1;
        while (k < n && k < 3 && isdigit(b[k])) k++;
        if (k == n || (k == 3 && (b[3] == ' ' || b[3] == '-' || b[3] == '\r' || b[3] == '\n')))
            return SK_PEER_SMTP;
    }
    /* RFC 9112 4: a status line starts with the protocol version. */
    if (!memcmp(b, "HTTP/", n < 5 ? n : 5) || has_nocase(b, n, "<html") ||
        has_nocase(b, n, "<!doctype html"))
        return SK_PEER_HTTP;
    /* RFC 8446 5.1: a record starts with its content type (20 to 23) and
     * the legacy version 3.x. */
    if (b[0] >= 20 && b[0] <= 23 && (n == 1 || b[1] == 3)) return SK_PEER_TLS;
    return SK_PEER_OTHER;
}

void cl_peer_said(const unsigned char *b, size_t n, char *out, size_t size)
{
    if (!size) return;
    out[0] = '\0';
    if (cl_classify(b, n) == SK_PEER_TLS) {
        snprintf(out, size, "%s",
                 b[0] == 21   ? "(a TLS alert)"
                 : b[0] == 22 ? "(a TLS handshake record)"
                              : "(a TLS record)");
        return;
    }
    size_t j = 0;
    for (size_t i = 0; i < n && b[i] != '\r' && b[i] != '\n' && j + 1 < size; i++)
        out[j++] = b[i] >= 0x20 && b[i] < 0x7f ? (char)b[i] : '.';
    out[j] = '\0';
}

size_t cl_tls_heard(const sk_tls_sock *sock, unsigned char *out, size_t size)
{
    size_t n = sock->nfirst < size ? sock->nfirst : size;
    memcpy(out, sock->first, n);
    if (n == sock->nfirst && n < size && sock->fd >= 0) {
        ssize_t more = recv(sock->fd, out + n, size - n, MSG_PEEK | MSG_DONTWAIT);
        if (more > 0) n += (size_t)more;
    }
    return n;
}

/* ---- the two connections ---- */

typedef enum sniff_state { SN_CONNECTING, SN_SPEAKING, SN_LISTENING, SN_DONE } sniff_state;

typedef struct sniff {
    int fd;
    int tls; /* 1: says a TLS ClientHello; 0: an HTTP request */
    sniff_state state;
    size_t sent; /* of the HTTP request */
    SSL *ssl;
    sk_tls_sock sock;
    sk_peer_kind kind;
    unsigned char got[128];
    size_t ngot;
} sniff;

/* RFC 9110 9.3.2: HEAD asks for no body; HTTP/1.0 needs no Host field. */
static const char http_request[] = "HEAD / HTTP/1.0\r\n\r\n";

static void sniff_done(sniff *s, sk_peer_kind kind, const unsigned char *b, size_t n)
{
    s->state = SN_DONE;
    s->kind = kind;
    if (n > sizeof s->got) n = sizeof s->got;
    if (b && n) memcpy(s->got, b, n);
    s->ngot = n;
}

static void sniff_start(sniff *s, const sk_client *c)
{
    s->fd = socket(c->raddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        sniff_done(s, SK_PEER_UNKNOWN, NULL, 0);
        return;
    }
    s->state = SN_CONNECTING;
    if (connect(s->fd, (const struct sockaddr *)&c->raddr, c->raddrlen) < 0 &&
        errno != EINPROGRESS && errno != EINTR)
        sniff_done(s, SK_PEER_UNKNOWN, NULL, 0); /* nothing listens any more */
}

/* Send the ClientHello: OpenSSL writes it and then wants to read. */
static void sniff_hello(sniff *s, const sk_client *c, SSL_CTX *ctx)
{
    if (!s->ssl) {
        s->sock.fd = s->fd;
        const char *name = c->o.tls_name ? c->o.tls_name : c->o.host;
        s->ssl = sk_tls_client_ssl_new(ctx, &s->sock, name, NULL);
        /* A name OpenSSL will not take for SNI: say the hello without. */
        if (!s->ssl) s->ssl = sk_tls_client_ssl_new(ctx, &s->sock, c->remote, NULL);
        if (!s->ssl) {
            sniff_done(s, SK_PEER_UNKNOWN, NULL, 0);
            return;
        }
    }
    ERR_clear_error();
    int r = SSL_connect(s->ssl);
    int se = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, r);
    if (se == SSL_ERROR_WANT_READ && s->sock.nfirst) {
        /* OpenSSL took in part of the answer already. */
        unsigned char heard[sizeof s->got];
        size_t n = cl_tls_heard(&s->sock, heard, sizeof heard);
        sniff_done(s, cl_classify(heard, n), heard, n);
    } else if (se == SSL_ERROR_WANT_READ) {
        s->state = SN_LISTENING;
    } else if (se == SSL_ERROR_WANT_WRITE || (se == SSL_ERROR_SYSCALL && errno == EINTR)) {
        s->state = SN_SPEAKING;
    } else if (se == SSL_ERROR_NONE) {
        sniff_done(s, SK_PEER_TLS, (const unsigned char *)"\x16\x03", 2);
    } else {
        /* The peer answered before or instead of TLS. */
        unsigned char heard[sizeof s->got];
        size_t n = cl_tls_heard(&s->sock, heard, sizeof heard);
        sniff_done(s, n ? cl_classify(heard, n) : SK_PEER_CLOSED, heard, n);
    }
    ERR_clear_error();
}

static void sniff_request(sniff *s)
{
    ssize_t w =
        send(s->fd, http_request + s->sent, sizeof http_request - 1 - s->sent, MSG_NOSIGNAL);
    if (w > 0) s->sent += (size_t)w;
    if (s->sent == sizeof http_request - 1)
        s->state = SN_LISTENING;
    else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        sniff_done(s, SK_PEER_CLOSED, NULL, 0);
    else
        s->state = SN_SPEAKING;
}

/* One step of a connection that poll found ready. */
static void sniff_step(sniff *s, const sk_client *c, SSL_CTX *ctx)
{
    if (s->state == SN_CONNECTING) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            sniff_done(s, SK_PEER_UNKNOWN, NULL, 0);
            return;
        }
        s->state = SN_SPEAKING;
    }
    if (s->state == SN_SPEAKING) {
        if (s->tls)
            sniff_hello(s, c, ctx);
        else
            sniff_request(s);
        return;
    }
    if (s->state != SN_LISTENING) return;
    /* Peek: what the peer sent is looked at, never fed to OpenSSL. */
    unsigned char buf[sizeof s->got];
    ssize_t n = recv(s->fd, buf, sizeof buf, MSG_PEEK);
    if (n > 0)
        sniff_done(s, cl_classify(buf, (size_t)n), buf, (size_t)n);
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        sniff_done(s, SK_PEER_CLOSED, NULL, 0);
}

static int conclusive(sk_peer_kind k)
{
    return k == SK_PEER_TLS || k == SK_PEER_HTTP || k == SK_PEER_SMTP;
}

/* Identify the peer; watch_fd (or -1) is the client's own connection: when
 * it becomes readable the server has spoken there, and identification
 * stops (returns 1, out->kind SK_PEER_UNKNOWN). */
static int identify(sk_client *c, unsigned wait_ms, int watch_fd, sk_peer_info *out)
{
    memset(out, 0, sizeof *out);
    sniff sn[2];
    memset(sn, 0, sizeof sn);
    sn[0].tls = 1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    for (size_t i = 0; i < 2; i++) {
        sn[i].fd = -1;
        sniff_start(&sn[i], c);
    }
    if (!ctx) sniff_done(&sn[0], SK_PEER_UNKNOWN, NULL, 0);
    uint64_t deadline = sk_now_ms() + wait_ms;
    int interrupted = 0;
    for (;;) {
        struct pollfd p[3];
        int who[3], np = 0, nopen = 0;
        for (int i = 0; i < 2; i++) {
            if (sn[i].state == SN_DONE) {
                /* A web server that answered the ClientHello answers the
                 * request too, with a status line worth quoting. */
                int wait_http = i == 0 && sn[i].kind == SK_PEER_HTTP && sn[1].state != SN_DONE;
                if (conclusive(sn[i].kind) && !wait_http) goto decide;
                continue;
            }
            nopen++;
            short ev = sn[i].state == SN_LISTENING ? POLLIN : POLLOUT;
            /* OpenSSL may want to read while it says its hello. */
            if (sn[i].state == SN_SPEAKING && sn[i].ssl) ev |= POLLIN;
            p[np] = (struct pollfd){.fd = sn[i].fd, .events = ev};
            who[np++] = i;
        }
        if (!nopen) break;
        if (watch_fd >= 0) {
            p[np] = (struct pollfd){.fd = watch_fd, .events = POLLIN};
            who[np++] = -1;
        }
        uint64_t now = sk_now_ms();
        if (now >= deadline) break;
        int r = poll(p, (nfds_t)np, (int)(deadline - now));
        if (r < 0 && errno != EINTR) break;
        for (int k = 0; r > 0 && k < np; k++) {
            if (!p[k].revents) continue;
            if (who[k] < 0) {
                interrupted = 1;
                goto decide;
            }
            sniff_step(&sn[who[k]], c, ctx);
        }
    }
decide:;
    /* A TLS record or an HTTP answer on either connection settles it;
     * then an SMTP reply; then whatever was said at all. */
    static const sk_peer_kind order[] = {SK_PEER_TLS, SK_PEER_HTTP, SK_PEER_SMTP, SK_PEER_OTHER,
                                         SK_PEER_CLOSED};
    const sniff *best = NULL;
    for (size_t o = 0; o < sizeof order / sizeof order[0] && !best; o++)
        for (int k = 0; k < 2 && !best; k++) {
            /* Quote a web server's answer to the HTTP request first. */
            int i = order[o] == SK_PEER_HTTP ? 1 - k : k;
            if (sn[i].state == SN_DONE && sn[i].kind == order[o]) best = &sn[i];
        }
    if (best && (conclusive(best->kind) || !interrupted)) {
        out->kind = best->kind;
        cl_peer_said(best->got, best->ngot, out->said, sizeof out->said);
    } else if (!interrupted && (sn[0].state != SN_DONE || sn[1].state != SN_DONE)) {
        out->kind = SK_PEER_SILENT; /* connected, spoke, heard nothing */
        for (int i = 0; i < 2; i++)
            if (sn[i].state == SN_CONNECTING) out->kind = SK_PEER_UNKNOWN;
    }
    for (int i = 0; i < 2; i++) {
        if (sn[i].ssl) SSL_free(sn[i].ssl);
        sk_tls_sock_release(&sn[i].sock);
        if (sn[i].fd >= 0) close(sn[i].fd);
    }
    if (ctx) SSL_CTX_free(ctx);
    ERR_clear_error();
    return interrupted && !conclusive(out->kind);
}

sk_err sk_client_identify(sk_client *c, unsigned wait_ms, sk_peer_info *out, sk_error *err)
{
    sk_error_clear(err);
    if (!c || !out) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_CONNECT, "no client");
    memset(out, 0, sizeof *out);
    if (!c->raddrlen)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_CONNECT,
                            "no connection was made yet: nothing to identify");
    (void)identify(c, wait_ms ? wait_ms : SK_CLIENT_IDENTIFY_WAIT_MS, -1, out);
    c->peer = *out;
    c->have_peer = 1;
    cl_info(c, "what listens on %s port %u: %s%s%s%s", c->remote, c->rport,
            sk_peer_kind_name(out->kind), out->said[0] ? " (\"" : "", out->said,
            out->said[0] ? "\")" : "");
    return SK_OK;
}

/* Wait for the first octets on the client's connection until deadline,
 * identifying the peer after identify_after_ms of silence. Returns 1 when
 * the peer is identified while still silent here, 0 when it spoke (or the
 * wait ended) first. */
static int quiet_then_identify(sk_client *c, uint64_t deadline)
{
    uint64_t quiet = sk_now_ms() + c->o.identify_after_ms;
    if (cl_wait_fd(c, c->fd, POLLIN, quiet < deadline ? quiet : deadline) != SK_ERR_TIMEOUT)
        return 0;
    uint64_t now = sk_now_ms();
    if (now >= deadline) return 0;
    uint64_t left = deadline - now;
    unsigned wait = left < SK_CLIENT_IDENTIFY_WAIT_MS ? (unsigned)left : SK_CLIENT_IDENTIFY_WAIT_MS;
    cl_info(c,
            "nothing from the server after %u ms: asking on two more connections what "
            "listens there",
            c->o.identify_after_ms);
    int interrupted = identify(c, wait, c->fd, &c->peer);
    c->have_peer = !interrupted;
    if (interrupted) return 0;
    cl_info(c, "what listens on %s port %u: %s%s%s%s", c->remote, c->rport,
            sk_peer_kind_name(c->peer.kind), c->peer.said[0] ? " (\"" : "", c->peer.said,
            c->peer.said[0] ? "\")" : "");
    /* Whatever the server said here meanwhile wins. */
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* The port stayed quiet at step (the greeting, or the TLS handshake):
 * what listens there, found on other connections, names the mistake. An
 * HTTP server is one at either step; a TLS server when a greeting was
 * awaited, an SMTP server when a handshake was. */
static sk_err await_quiet(sk_client *c, uint64_t deadline, sk_step step, sk_error *err)
{
    if (!quiet_then_identify(c, deadline)) return SK_OK;
    sk_err e = SK_OK;
    if (c->peer.kind == SK_PEER_HTTP) {
        e = sk_error_set(err, SK_ERR_PROTOCOL, step,
                         "not an SMTP server: %s, and it answered an HTTP request on another "
                         "connection (\"%s\")",
                         step == SK_STEP_GREETING ? "no greeting"
                                                  : "no answer to the TLS ClientHello",
                         c->peer.said);
        if (err)
            err->hint = "this looks like an HTTP server: check the port (SMTP is on 25, 587 or "
                        "465)";
    } else if (step == SK_STEP_GREETING && c->peer.kind == SK_PEER_TLS) {
        e = sk_error_set(err, SK_ERR_PROTOCOL, step,
                         "no greeting, and the server answered a TLS ClientHello on another "
                         "connection: it speaks TLS from the first byte");
        if (err) err->hint = "this port expects implicit TLS (RFC 8314; usually port 465)";
    } else if (step == SK_STEP_TLS && c->peer.kind == SK_PEER_SMTP) {
        e = sk_error_set(err, SK_ERR_TLS, step,
                         "the server spoke plain SMTP, not TLS, on another connection "
                         "(\"%s\"): this port expects STARTTLS, not implicit TLS",
                         c->peer.said);
    }
    if (e) {
        if (err) err->transient = 0;
        cl_disconnect(c);
    }
    return e;
}

sk_err cl_await_greeting(sk_client *c, uint64_t deadline, sk_error *err)
{
    return await_quiet(c, deadline, SK_STEP_GREETING, err);
}

sk_err cl_await_handshake(sk_client *c, uint64_t deadline, sk_error *err)
{
    return await_quiet(c, deadline, SK_STEP_TLS, err);
}

const char *cl_silence_hint(const sk_client *c)
{
    if (!c->have_peer) return NULL;
    switch (c->peer.kind) {
    case SK_PEER_SILENT:
        return "the server accepted the connection but sent no greeting, and answered neither "
               "a TLS ClientHello nor an HTTP request: a stuck or overloaded server, or not a "
               "mail server (check the port)";
    case SK_PEER_SMTP:
        return "the server answers SMTP on other connections but did not greet this one in "
               "time: it is slow or overloaded, or delays its greeting on purpose; allow a "
               "longer wait";
    case SK_PEER_CLOSED:
        return "the server accepted the connection but sent nothing, and closed other "
               "connections without a word: it refuses this client, or is not a mail server";
    case SK_PEER_OTHER:
        return "no greeting, and on another connection the server said something that is "
               "not SMTP: check the port";
    case SK_PEER_TLS:
        return "this port expects implicit TLS (RFC 8314; usually port 465)";
    case SK_PEER_HTTP:
        return "this looks like an HTTP server: check the port (SMTP is on 25, 587 or 465)";
    default:
        return NULL;
    }
}
