/* The client's connection layer: resolving and connecting with timeouts,
 * TLS handshakes, robust writes, and reading whole replies. */
#include "client/client_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const state_names[] = {
    [CL_CLOSED] = "closed",
    [CL_CONNECTED] = "connected",
    [CL_READY] = "ready",
    [CL_MAIL] = "transaction",
};
_Static_assert(sizeof state_names / sizeof state_names[0] == CL__COUNT, "state_names");

void cl_set_state(sk_client *c, cl_state s)
{
    if (c->state == s) return;
    sk_log(&c->o.log, SK_LOG_DEBUG, "- client state from=%s to=%s host=%s", state_names[c->state],
           state_names[s], c->o.host);
    c->state = s;
}

void cl_info(sk_client *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    if (c->o.transcript) c->o.transcript(c->o.transcript_ctx, '*', line, (size_t)n);
    if (!c->o.log.fn || c->o.log.max_level < SK_LOG_INFO) return;
    /* The line may quote the peer (certificate names, addresses): escaped. */
    sk_buf esc = SK_BUF_INIT(4 * sizeof line);
    if (sk_log_escape(&esc, line, (size_t)n) == SK_OK)
        sk_log(&c->o.log, SK_LOG_INFO, "- client note host=%s text=\"%s\"", c->o.host,
               sk_buf_cstr(&esc));
    sk_buf_free(&esc);
}

void cl_disconnect(sk_client *c)
{
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    sk_tls_sock_release(&c->sock);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    sk_buf_reset(&c->in);
    sk_buf_reset(&c->raw);
    sk_reply_parser_reset(&c->parser);
    cl_set_state(c, CL_CLOSED);
}

static uint64_t deadline_of(unsigned timeout_ms)
{
    return sk_now_ms() + timeout_ms;
}

int cl_aborted(const sk_client *c)
{
    return atomic_load(&c->aborted) != 0;
}

sk_err cl_wait_fd(const sk_client *c, int fd, short events, uint64_t deadline)
{
    for (;;) {
        if (cl_aborted(c)) return SK_ERR_STATE;
        uint64_t now = sk_now_ms();
        if (now >= deadline) return SK_ERR_TIMEOUT;
        uint64_t left = deadline - now;
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = c->abort_rd, .events = POLLIN}};
        int r = poll(p, c->abort_rd >= 0 ? 2 : 1, left > 60000 ? 60000 : (int)left);
        if (r > 0 && (p[0].revents || cl_aborted(c))) return cl_aborted(c) ? SK_ERR_STATE : SK_OK;
        if (r < 0 && errno != EINTR) return SK_ERR_IO;
    }
}

/* ---- connecting ---- */

static sk_err connect_one(const sk_client *c, const struct addrinfo *ai, uint64_t deadline,
                          int *fd_out, int *why)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        *why = errno;
        return SK_ERR_CONNECT;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            *why = errno;
            close(fd);
            return SK_ERR_CONNECT;
        }
        sk_err e = cl_wait_fd(c, fd, POLLOUT, deadline);
        if (e == SK_ERR_STATE) {
            close(fd);
            return e;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (e || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            *why = e == SK_ERR_TIMEOUT ? ETIMEDOUT : soerr ? soerr : errno;
            close(fd);
            return e == SK_ERR_TIMEOUT ? SK_ERR_TIMEOUT : SK_ERR_CONNECT;
        }
    }
    /* Commands are small and we wait for each answer: no Nagle delay. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *fd_out = fd;
    return SK_OK;
}

/* The resolve hook's answer as an addrinfo list over caller storage, so
 * that both sources are tried by the same loop. */
static sk_err resolve_hook(sk_client *c, struct sockaddr_storage *ss, struct addrinfo *ai,
                           size_t max, struct addrinfo **res, sk_error *err)
{
    int n = c->o.resolve(c->o.resolve_ctx, c->o.host, c->o.port, ss, max);
    if (n <= 0) {
        sk_err e = sk_error_set(err, SK_ERR_DNS, SK_STEP_DNS, "cannot resolve %s: %s", c->o.host,
                                n ? "temporary resolver failure" : "no address");
        if (err && !n) err->transient = 0;
        return e;
    }
    if ((size_t)n > max) n = (int)max;
    struct addrinfo *prev = NULL;
    *res = NULL;
    for (int i = 0; i < n; i++) {
        int fam = ss[i].ss_family;
        if (fam != AF_INET && fam != AF_INET6) continue;
        ai[i] = (struct addrinfo){
            .ai_family = fam,
            .ai_socktype = SOCK_STREAM,
            .ai_protocol = IPPROTO_TCP,
            .ai_addr = (struct sockaddr *)&ss[i],
            .ai_addrlen = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6),
        };
        if (prev)
            prev->ai_next = &ai[i];
        else
            *res = &ai[i];
        prev = &ai[i];
    }
    if (!*res)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_DNS,
                            "the resolve hook gave no IPv4 or IPv6 address for %s", c->o.host);
    return SK_OK;
}

static sk_err resolve_system(sk_client *c, struct addrinfo **out, sk_error *err)
{
    char port[8];
    snprintf(port, sizeof port, "%u", c->o.port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    const char *target = c->o.connect_address ? c->o.connect_address : c->o.host;
    if (c->o.connect_address) hints.ai_flags = AI_NUMERICHOST;
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(target, port, &hints, &res);
    if (gai == EAI_NONAME && !c->o.connect_address) {
        /* AI_ADDRCONFIG hides loopback-only answers on hosts without a
         * global address; ask again without it. */
        hints.ai_flags = 0;
        gai = getaddrinfo(target, port, &hints, &res);
    }
    if (gai) {
        sk_err e = sk_error_set(err, c->o.connect_address ? SK_ERR_CONFIG : SK_ERR_DNS, SK_STEP_DNS,
                                "cannot resolve %s: %s", target, gai_strerror(gai));
        /* A name that does not exist will not exist in a minute either. */
        if (err && (gai == EAI_NONAME || c->o.connect_address)) err->transient = 0;
        return e;
    }
    *out = res;
    return SK_OK;
}

/* Every address in turn until one answers (RFC 5321 5.1); res is freed
 * here unless it came from the resolve hook. */
static sk_err connect_list(sk_client *c, struct addrinfo *res, int from_hook, sk_error *err)
{
    uint64_t deadline = deadline_of(c->o.connect_timeout_ms);
    char tried[SK_REPLY_TEXT_MAX_OCTETS] = "";
    size_t used = 0;
    sk_err last = SK_ERR_CONNECT;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN] = "?";
        unsigned short p = 0;
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *s = (const void *)ai->ai_addr;
            inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
            p = ntohs(s->sin_port);
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *s = (const void *)ai->ai_addr;
            inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
            p = ntohs(s->sin6_port);
        } else {
            continue;
        }
        cl_info(c, "connecting to %s port %u", ip, p);
        int fd = -1, why = 0;
        /* Each address gets the full connect timeout (RFC 5321 5.1: try
         * the addresses in turn). */
        if (ai != res) deadline = deadline_of(c->o.connect_timeout_ms);
        last = connect_one(c, ai, deadline, &fd, &why);
        if (last == SK_ERR_STATE) break; /* aborted */
        if (last == SK_OK) {
            c->fd = fd;
            memcpy(&c->raddr, ai->ai_addr, ai->ai_addrlen);
            c->raddrlen = (socklen_t)ai->ai_addrlen;
            snprintf(c->remote, sizeof c->remote, "%s", ip);
            c->rport = p;
            cl_info(c, "connected to %s port %u", ip, p);
            if (!from_hook) freeaddrinfo(res);
            return SK_OK;
        }
        cl_info(c, "%s port %u: %s", ip, p, strerror(why));
        if (used < sizeof tried) {
            int w = snprintf(tried + used, sizeof tried - used, "%s%s: %s", used ? "; " : "", ip,
                             strerror(why));
            if (w > 0) used += (size_t)w;
        }
    }
    if (!from_hook) freeaddrinfo(res);
    if (last == SK_ERR_STATE)
        return sk_error_set(err, last, SK_STEP_CONNECT,
                            "connecting to %s: aborted (sk_client_abort)", c->o.host);
    return sk_error_set(err, last, SK_STEP_CONNECT, "cannot connect to %s port %u (%s)", c->o.host,
                        c->o.port, tried);
}

sk_err cl_connect_tcp(sk_client *c, sk_error *err)
{
    struct sockaddr_storage hook_ss[SK_DNS_ADDRS_PER_HOST_MAX];
    struct addrinfo hook_ai[SK_DNS_ADDRS_PER_HOST_MAX];
    struct addrinfo *res = NULL;
    if (cl_aborted(c))
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_CONNECT,
                            "the client was aborted (sk_client_abort): make a new one");
    int from_hook = c->o.resolve && !c->o.connect_address;
    if (from_hook) {
        memset(hook_ss, 0, sizeof hook_ss);
        sk_err e = resolve_hook(c, hook_ss, hook_ai, SK_DNS_ADDRS_PER_HOST_MAX, &res, err);
        if (e) return e;
    } else {
        sk_err e = resolve_system(c, &res, err);
        if (e) return e;
    }
    return connect_list(c, res, from_hook, err);
}

/* ---- TLS ---- */

/* Why a handshake failed, from what the server sent instead of TLS. */
static sk_err handshake_failure(sk_client *c, sk_error *err)
{
    char why[512];
    sk_tls_error_string(why, sizeof why);
    unsigned char f[128];
    size_t n = cl_tls_heard(&c->sock, f, sizeof f);
    sk_peer_kind kind = cl_classify(f, n);
    if (kind == SK_PEER_HTTP || kind == SK_PEER_SMTP) {
        /* What the server said instead of TLS tells what it is. */
        c->peer.kind = kind;
        cl_peer_said(f, n, c->peer.said, sizeof c->peer.said);
        c->have_peer = 1;
    }
    sk_err e;
    if (kind == SK_PEER_HTTP) {
        e = sk_error_set(err, SK_ERR_PROTOCOL, SK_STEP_TLS, "not an SMTP server (HTTP)");
        if (err)
            err->hint = "this looks like an HTTP server: check the port (SMTP is on 25, 587 or "
                        "465)";
    } else if (kind == SK_PEER_SMTP && n >= 3) {
        char shown[sizeof c->peer.said];
        cl_peer_said(f, n, shown, sizeof shown);
        e = sk_error_set(err, SK_ERR_TLS, SK_STEP_TLS,
                         "the server spoke plain SMTP, not TLS: this port expects STARTTLS, "
                         "not implicit TLS (server sent \"%s\")",
                         shown);
    } else if (n == 0) {
        e = sk_error_set(err, SK_ERR_TLS, SK_STEP_TLS,
                         "TLS handshake failed: the server closed the connection%s%s",
                         why[0] ? ": " : "", why);
    } else {
        e = sk_error_set(err, SK_ERR_TLS, SK_STEP_TLS, "TLS handshake failed: %s",
                         why[0] ? why : "unknown reason");
    }
    cl_disconnect(c);
    return e;
}

sk_err cl_tls_handshake(sk_client *c, unsigned timeout_ms, int first, sk_error *err)
{
    const char *name = c->o.tls_name ? c->o.tls_name : c->o.host;
    if (!c->ctx && !(c->ctx = sk_tls_client_ctx_new(c->o.ca_file, err))) {
        cl_disconnect(c);
        return err ? err->err : SK_ERR_TLS;
    }
    memset(&c->sock, 0, sizeof c->sock);
    c->sock.fd = c->fd;
    ERR_clear_error();
    c->ssl = sk_tls_client_ssl_new(c->ctx, &c->sock, name, err);
    if (!c->ssl) {
        cl_disconnect(c);
        return err ? err->err : SK_ERR_TLS;
    }
    c->tls_tried = 1;
    memset(&c->tls, 0, sizeof c->tls);
    snprintf(c->tls.sni, sizeof c->tls.sni, "%s", name);
    uint64_t deadline = deadline_of(timeout_ms);
    int identified = !first || !c->o.identify_after_ms;
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1) break;
        int se = SSL_get_error(c->ssl, r);
        short ev = se == SSL_ERROR_WANT_READ ? POLLIN : se == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev && se == SSL_ERROR_SYSCALL && errno == EINTR) ev = POLLIN | POLLOUT;
        if (!ev) return handshake_failure(c, err);
        if (ev == POLLIN && !identified) {
            /* The ClientHello is out: a server that does not answer it
             * may be no TLS server at all. */
            identified = 1;
            sk_err e = cl_await_handshake(c, deadline, err);
            if (e) return e;
            continue;
        }
        sk_err e = cl_wait_fd(c, c->fd, ev, deadline);
        if (e) {
            cl_disconnect(c);
            return sk_error_set(err, e, SK_STEP_TLS, "TLS handshake: %s",
                                e == SK_ERR_STATE ? "aborted (sk_client_abort)" : sk_strerror(e));
        }
    }
    sk_tls_info_fill(c->ssl, name, c->o.insecure, &c->tls);
    cl_info(c, "TLS established: %s %s, certificate %s (%s)", c->tls.version, c->tls.cipher,
            c->tls.verified ? "verified" : "NOT verified", c->tls.verify_text);
    if (!c->tls.verified) {
        if (c->o.insecure) {
            cl_info(c, "continuing without verification (insecure requested)");
        } else if (c->o.tls == SK_TLS_STARTTLS_OPPORTUNISTIC) {
            /* RFC 7435: encrypt even when the peer cannot be authenticated. */
            cl_info(c, "continuing with unauthenticated encryption (opportunistic TLS)");
        } else {
            sk_err e =
                sk_error_set(err, SK_ERR_TLS_VERIFY, SK_STEP_TLS,
                             "certificate of %s not trusted: %s (subject %s, issuer %s)", name,
                             c->tls.verify_text, c->tls.chain_len ? c->tls.chain[0].subject : "-",
                             c->tls.chain_len ? c->tls.chain[0].issuer : "-");
            if (err) err->transient = 0;
            cl_disconnect(c);
            return e;
        }
    }
    return SK_OK;
}

/* ---- writing and reading ---- */

static sk_err io_error(sk_client *c, sk_err e, sk_step step, const char *what, sk_error *err)
{
    char why[256] = "";
    if (e == SK_ERR_TLS) sk_tls_error_string(why, sizeof why);
    cl_disconnect(c);
    if (e == SK_ERR_STATE && cl_aborted(c))
        return sk_error_set(err, e, step, "%s: aborted (sk_client_abort)", what);
    return sk_error_set(err, e, step, "%s: %s%s%s", what, sk_strerror(e), why[0] ? ": " : "", why);
}

sk_err cl_write(sk_client *c, const char *p, size_t n, unsigned timeout_ms, sk_step step,
                sk_error *err)
{
    if (c->fd < 0) return sk_error_set(err, SK_ERR_STATE, step, "not connected");
    uint64_t deadline = deadline_of(timeout_ms);
    while (n > 0) {
        short ev = POLLOUT;
        if (c->ssl) {
            size_t w = 0;
            ERR_clear_error();
            int r = SSL_write_ex(c->ssl, p, n, &w);
            if (r == 1) {
                p += w, n -= w;
                continue;
            }
            int se = SSL_get_error(c->ssl, r);
            if (se == SSL_ERROR_WANT_READ)
                ev = POLLIN;
            else if (se == SSL_ERROR_WANT_WRITE)
                ev = POLLOUT;
            else if (se == SSL_ERROR_ZERO_RETURN)
                return io_error(c, SK_ERR_CLOSED, step, "sending", err);
            else if (se == SSL_ERROR_SYSCALL && (errno == EPIPE || errno == ECONNRESET))
                return io_error(c, SK_ERR_CLOSED, step, "sending", err);
            else if (!(se == SSL_ERROR_SYSCALL && errno == EINTR))
                return io_error(c, SK_ERR_TLS, step, "sending", err);
        } else {
            ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w > 0) {
                p += w, n -= (size_t)w;
                continue;
            }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return io_error(c,
                                errno == EPIPE || errno == ECONNRESET ? SK_ERR_CLOSED : SK_ERR_IO,
                                step, "sending", err);
        }
        sk_err e = cl_wait_fd(c, c->fd, ev, deadline);
        if (e) return io_error(c, e, step, "sending", err);
    }
    return SK_OK;
}

sk_err cl_send_line(sk_client *c, const char *line, const char *shown, unsigned timeout_ms,
                    sk_step step, sk_error *err)
{
    sk_buf b = SK_BUF_INIT(SK_SASL_MAX_OCTETS + 64);
    sk_err e = sk_buf_puts(&b, line);
    if (!e) e = sk_buf_puts(&b, "\r\n");
    if (e) {
        sk_buf_free(&b);
        return sk_error_set(err, e, step, "command too long");
    }
    if (c->o.transcript) {
        const char *s = shown ? shown : line;
        c->o.transcript(c->o.transcript_ctx, 'C', s, strlen(s));
    }
    e = cl_write(c, b.data, b.len, timeout_ms, step, err);
    sk_buf_free(&b);
    return e;
}

/* Read what is available (waiting until the deadline) into c->in. */
static sk_err read_more(sk_client *c, uint64_t deadline, sk_step step, sk_error *err)
{
    char chunk[4096];
    for (;;) {
        short ev = POLLIN;
        if (c->ssl) {
            size_t got = 0;
            ERR_clear_error();
            int r = SSL_read_ex(c->ssl, chunk, sizeof chunk, &got);
            if (r == 1) {
                sk_err e = sk_buf_append(&c->in, chunk, got);
                return e ? io_error(c, e, step, "receiving", err) : SK_OK;
            }
            int se = SSL_get_error(c->ssl, r);
            if (se == SSL_ERROR_WANT_READ)
                ev = POLLIN;
            else if (se == SSL_ERROR_WANT_WRITE)
                ev = POLLOUT;
            else if (se == SSL_ERROR_ZERO_RETURN ||
                     (se == SSL_ERROR_SYSCALL && (errno == 0 || errno == ECONNRESET)))
                return io_error(c, SK_ERR_CLOSED, step, "receiving", err);
            else if (!(se == SSL_ERROR_SYSCALL && errno == EINTR))
                return io_error(c, SK_ERR_TLS, step, "receiving", err);
        } else {
            ssize_t r = recv(c->fd, chunk, sizeof chunk, 0);
            if (r > 0) {
                sk_err e = sk_buf_append(&c->in, chunk, (size_t)r);
                return e ? io_error(c, e, step, "receiving", err) : SK_OK;
            }
            if (r == 0) return io_error(c, SK_ERR_CLOSED, step, "receiving", err);
            if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
                return io_error(c, errno == ECONNRESET ? SK_ERR_CLOSED : SK_ERR_IO, step,
                                "receiving", err);
        }
        sk_err e = cl_wait_fd(c, c->fd, ev, deadline);
        if (e) return io_error(c, e, step, "waiting for the server's reply", err);
    }
}

/* Report the raw lines consumed so far on the transcript. */
static void transcript_raw(sk_client *c)
{
    if (!c->o.transcript || !c->raw.len) return;
    const char *p = c->raw.data, *end = c->raw.data + c->raw.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        size_t n = (size_t)(stop - p);
        if (n && p[n - 1] == '\r') n--;
        c->o.transcript(c->o.transcript_ctx, 'S', p, n);
        p = nl ? nl + 1 : end;
    }
    sk_buf_reset(&c->raw);
}

sk_err cl_read_reply(sk_client *c, unsigned timeout_ms, sk_step step, sk_reply *r, sk_error *err)
{
    if (c->fd < 0) return sk_error_set(err, SK_ERR_STATE, step, "not connected");
    uint64_t deadline = deadline_of(timeout_ms);
    sk_buf_reset(&c->raw);
    for (;;) {
        if (c->in.len) {
            /* RFC 8446 5.1 record types 21 (alert) and 22 (handshake): a
             * TLS server where an SMTP greeting should be. */
            if (step == SK_STEP_GREETING && !c->ssl && c->raw.len == 0 &&
                (c->in.data[0] == 0x15 || c->in.data[0] == 0x16)) {
                cl_disconnect(c);
                return sk_error_set(err, SK_ERR_PROTOCOL, step,
                                    "the server sent TLS instead of an SMTP greeting: this port "
                                    "expects implicit TLS");
            }
            size_t used = 0;
            int done = 0;
            sk_err e = sk_reply_parser_feed(&c->parser, c->in.data, c->in.len, &used, r, &done);
            if (!e && used) e = sk_buf_append(&c->raw, c->in.data, used);
            if (e) {
                /* Show what we got; the peer's text is escaped. */
                sk_buf shown = SK_BUF_INIT(200);
                const char *src = c->raw.len ? c->raw.data : c->in.data;
                size_t sl = c->raw.len ? c->raw.len : c->in.len;
                int http = sl >= 5 && !memcmp(src, "HTTP/", 5);
                sk_err ee = sk_log_escape(&shown, src, sl > 60 ? 60 : sl);
                (void)ee;
                transcript_raw(c);
                cl_disconnect(c);
                sk_err out;
                if (http)
                    out = sk_error_set(err, SK_ERR_PROTOCOL, step, "not an SMTP server (HTTP)");
                else if (e == SK_ERR_TOO_LONG)
                    out = sk_error_set(err, SK_ERR_PROTOCOL, step,
                                       "reply from the server exceeds our limits");
                else
                    out = sk_error_set(err, SK_ERR_PROTOCOL, step, "not an SMTP reply: \"%s\"",
                                       sk_buf_cstr(&shown));
                sk_buf_free(&shown);
                return out;
            }
            sk_buf_consume(&c->in, used);
            if (done) {
                transcript_raw(c);
                return SK_OK;
            }
        }
        sk_err e = read_more(c, deadline, step, err);
        if (e) {
            transcript_raw(c);
            if (e == SK_ERR_TIMEOUT && step == SK_STEP_GREETING && err) {
                const char *h = cl_silence_hint(c);
                if (c->tls_tried && c->tls.active)
                    h = "TLS works, but no SMTP greeting came inside it: is this an SMTP "
                        "server? (an HTTPS port, too, waits silently for its client)";
                err->hint = h ? h
                              : "no greeting: a server expecting implicit TLS (port 465) waits "
                                "silently for the client; try implicit TLS";
            }
            return e;
        }
    }
}

sk_err cl_reply_error(sk_error *err, sk_step step, const sk_reply *r, sk_err perm)
{
    sk_reply_class cls = sk_reply_class_of(r->code);
    sk_err e = cls == SK_REPLY_TRANSIENT   ? SK_ERR_TEMPFAIL
               : cls == SK_REPLY_PERMANENT ? perm
                                           : SK_ERR_PROTOCOL;
    sk_error_set(err, e, step, "%s", r->text);
    if (err) {
        err->code = r->code;
        snprintf(err->enhanced, sizeof err->enhanced, "%s", r->enhanced);
        err->transient = cls == SK_REPLY_TRANSIENT;
        err->hint = sk_reply_explain(r->code, r->enhanced, r->text);
    }
    return e;
}
