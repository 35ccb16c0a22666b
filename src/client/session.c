/* The client session's steps: open, EHLO, STARTTLS, AUTH, the transaction
 * commands and QUIT (RFC 5321 4.1, RFC 3207, RFC 4954), and what the
 * session learned along the way. */
#include "client/client_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned or_default(unsigned v, unsigned def)
{
    return v ? v : def;
}

static int keep(sk_client *c, const char **field)
{
    if (!*field) return 1;
    if (c->nstrings >= sizeof c->strings / sizeof c->strings[0]) return 0;
    char *copy = sk_strdup(*field);
    if (!copy) return 0;
    c->strings[c->nstrings++] = copy;
    *field = copy;
    return 1;
}

sk_client *sk_client_new(const sk_client_opts *opts)
{
    if (!opts || !opts->host || !*opts->host) return NULL;
    sk_client *c = sk_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->o = *opts;
    c->fd = -1;
    c->abort_rd = c->abort_wr = -1;
    atomic_init(&c->aborted, 0);
    int ends[2];
    if (pipe(ends) < 0) {
        sk_free(c);
        return NULL;
    }
    c->abort_rd = ends[0];
    c->abort_wr = ends[1];
    for (int i = 0; i < 2; i++) {
        /* Non-blocking: abort never waits (one octet fits in any pipe). */
        (void)fcntl(ends[i], F_SETFD, FD_CLOEXEC);
        (void)fcntl(ends[i], F_SETFL, O_NONBLOCK);
    }
    int ok = keep(c, &c->o.host) && keep(c, &c->o.ca_file) && keep(c, &c->o.tls_name) &&
             keep(c, &c->o.connect_address) && keep(c, &c->o.helo_name) && keep(c, &c->o.user) &&
             keep(c, &c->o.password) && keep(c, &c->o.oauth_token) && keep(c, &c->o.auth_mech);
    if (!ok) {
        sk_client_free(c);
        return NULL;
    }
    if (!c->o.port) c->o.port = c->o.tls == SK_TLS_IMPLICIT ? 465 : 587;
    /* RFC 8314 3.3: port 465 is implicit TLS; elsewhere STARTTLS. */
    if (c->o.tls == SK_TLS_DEFAULT) c->o.tls = c->o.port == 465 ? SK_TLS_IMPLICIT : SK_TLS_STARTTLS;
    c->o.connect_timeout_ms = or_default(c->o.connect_timeout_ms, SK_TIMEOUT_CONNECT_MS);
    c->o.greeting_timeout_ms = or_default(c->o.greeting_timeout_ms, SK_TIMEOUT_GREETING_MS);
    /* RFC 5321 4.5.3.2 names no EHLO/AUTH timeout; MAIL's 5 minutes fit. */
    c->o.command_timeout_ms = or_default(c->o.command_timeout_ms, SK_TIMEOUT_MAIL_MS);
    c->o.mail_timeout_ms = or_default(c->o.mail_timeout_ms, SK_TIMEOUT_MAIL_MS);
    c->o.rcpt_timeout_ms = or_default(c->o.rcpt_timeout_ms, SK_TIMEOUT_RCPT_MS);
    c->o.data_init_timeout_ms = or_default(c->o.data_init_timeout_ms, SK_TIMEOUT_DATA_INIT_MS);
    c->o.data_block_timeout_ms = or_default(c->o.data_block_timeout_ms, SK_TIMEOUT_DATA_BLOCK_MS);
    c->o.data_end_timeout_ms = or_default(c->o.data_end_timeout_ms, SK_TIMEOUT_DATA_END_MS);
    sk_reply_parser_init(&c->parser);
    sk_buf_init(&c->in, 64 * 1024);
    sk_buf_init(&c->raw, SK_SMTP_REPLY_MAX_OCTETS + 2 * SK_SMTP_REPLY_MAX_LINES);
    sk_buf_init(&c->ehlo_lines, SK_SMTP_REPLY_MAX_OCTETS);
    sk_buf_init(&c->ext_split, SK_SMTP_REPLY_MAX_OCTETS);
    return c;
}

void sk_client_close(sk_client *c)
{
    if (c) cl_disconnect(c);
}

void sk_client_free(sk_client *c)
{
    if (!c) return;
    cl_disconnect(c);
    if (c->ctx) SSL_CTX_free(c->ctx);
    for (size_t i = 0; i < c->nstrings; i++) {
        /* The password and token are secrets: do not leave them in memory. */
        OPENSSL_cleanse(c->strings[i], strlen(c->strings[i]));
        sk_free(c->strings[i]);
    }
    sk_reply_parser_free(&c->parser);
    sk_buf_free(&c->in);
    sk_buf_free(&c->raw);
    sk_buf_free(&c->ehlo_lines);
    sk_buf_free(&c->ext_split);
    if (c->abort_rd >= 0) close(c->abort_rd);
    if (c->abort_wr >= 0) close(c->abort_wr);
    sk_free(c);
}

void sk_client_abort(sk_client *c)
{
    if (!c) return;
    /* The flag first: a wait that starts after the write still sees it. */
    atomic_store(&c->aborted, 1);
    const char one = 1;
    ssize_t w;
    do w = write(c->abort_wr, &one, 1);
    while (w < 0 && errno == EINTR);
}

static void forget_session(sk_client *c)
{
    c->have_greeting = 0;
    c->have_ehlo = 0;
    memset(&c->ext, 0, sizeof c->ext);
    sk_buf_reset(&c->ehlo_lines);
    sk_buf_reset(&c->ext_split);
    c->next = 0;
    c->authed = SK_SASL_NONE;
    c->tls_tried = 0;
    memset(&c->tls, 0, sizeof c->tls);
    c->remote[0] = '\0';
    c->rport = 0;
    c->raddrlen = 0;
    c->have_peer = 0;
    memset(&c->peer, 0, sizeof c->peer);
}

static sk_err need_state(sk_client *c, cl_state s, sk_step step, sk_error *err)
{
    if (c->state == s) return SK_OK;
    static const char *const what[] = {"not connected", "EHLO has not been sent",
                                       "EHLO has not been sent", "a transaction is open"};
    return sk_error_set(err, SK_ERR_STATE, step, "%s", what[c->state]);
}

sk_err sk_client_open(sk_client *c, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_CONNECT, "no client");
    if (c->state != CL_CLOSED)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_CONNECT, "already connected");
    forget_session(c);
    sk_err e = cl_connect_tcp(c, err);
    if (e) return e;
    /* With implicit TLS the handshake is the server's first answer, so it
     * gets the greeting's timeout. */
    if (c->o.tls == SK_TLS_IMPLICIT && (e = cl_tls_handshake(c, c->o.greeting_timeout_ms, 1, err)))
        return e;
    unsigned wait = c->o.greeting_timeout_ms;
    if (!c->ssl && c->o.identify_after_ms) {
        uint64_t t0 = sk_now_ms();
        if ((e = cl_await_greeting(c, t0 + wait, err))) return e;
        uint64_t used = sk_now_ms() - t0;
        wait = used >= wait ? 0 : wait - (unsigned)used;
    }
    e = cl_read_reply(c, wait, SK_STEP_GREETING, &c->greeting, err);
    if (e) return e;
    c->have_greeting = 1;
    /* RFC 5321 4.2: 220 opens the session; 554 (or 4xx) refuses it, and we
     * then send QUIT and close (3.1). */
    if (c->greeting.code != 220) {
        e = cl_reply_error(err, SK_STEP_GREETING, &c->greeting, SK_ERR_PERMFAIL);
        if (sk_reply_class_of(c->greeting.code) >= SK_REPLY_TRANSIENT) {
            sk_error dummy;
            if (!cl_send_line(c, "QUIT", NULL, 5000, SK_STEP_QUIT, &dummy)) {
                sk_reply r;
                (void)cl_read_reply(c, 5000, SK_STEP_QUIT, &r, &dummy);
            }
        }
        cl_disconnect(c);
        return e;
    }
    cl_set_state(c, CL_CONNECTED);
    return SK_OK;
}

/* RFC 5321 4.1.4: the EHLO argument is our FQDN, or an address literal
 * when we have no such name. */
static void helo_name(sk_client *c, char *out, size_t size)
{
    if (c->o.helo_name) {
        snprintf(out, size, "%s", c->o.helo_name);
        return;
    }
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) == 0 && !strchr(host, '.')) {
        struct addrinfo hints = {.ai_flags = AI_CANONNAME}, *res = NULL;
        if (getaddrinfo(host, NULL, &hints, &res) == 0) {
            if (res && res->ai_canonname) snprintf(host, sizeof host, "%s", res->ai_canonname);
            freeaddrinfo(res);
        }
    }
    if (host[0] && strchr(host, '.')) {
        snprintf(out, size, "%s", host);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "127.0.0.1";
    int v6 = 0;
    if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            v6 = 1;
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
        } else if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
        }
    }
    /* RFC 5321 4.1.3: IPv6 literals carry the "IPv6:" tag. */
    snprintf(out, size, "[%s%s]", v6 ? "IPv6:" : "", ip);
}

void cl_parse_ehlo(const char *lines, sk_ehlo_info *info)
{
    static const struct {
        const char *kw;
        unsigned bit;
    } known[] = {
        {"SIZE", SK_CLIENT_EXT_SIZE},
        {"PIPELINING", SK_CLIENT_EXT_PIPELINING},
        {"8BITMIME", SK_CLIENT_EXT_8BITMIME},
        {"SMTPUTF8", SK_CLIENT_EXT_SMTPUTF8},
        {"ENHANCEDSTATUSCODES", SK_CLIENT_EXT_ENHANCEDSTATUSCODES},
        {"DSN", SK_CLIENT_EXT_DSN},
        {"CHUNKING", SK_CLIENT_EXT_CHUNKING},
        {"STARTTLS", SK_CLIENT_EXT_STARTTLS},
        {"MT-PRIORITY", SK_CLIENT_EXT_MT_PRIORITY},
        {"AUTH", SK_CLIENT_EXT_AUTH},
        {"BINARYMIME", SK_CLIENT_EXT_BINARYMIME},
    };
    memset(info, 0, sizeof *info);
    info->esmtp = 1;
    const char *p = lines;
    int first = 1;
    while (p && *p) {
        size_t n = strcspn(p, "\n");
        if (first) {
            /* The first line is the server's name and a greeting. */
            size_t d = strcspn(p, " \n");
            snprintf(info->domain, sizeof info->domain, "%.*s", (int)d, p);
            first = 0;
        } else {
            size_t kw = strcspn(p, " =\n");
            const char *param = p + kw;
            size_t plen = n - kw;
            /* "AUTH=LOGIN PLAIN" is an old, still seen, spelling of AUTH. */
            while (plen && (*param == ' ' || *param == '=')) param++, plen--;
            for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
                if (strlen(known[i].kw) != kw || strncasecmp(p, known[i].kw, kw)) continue;
                info->ext |= known[i].bit;
                if (known[i].bit == SK_CLIENT_EXT_SIZE && plen)
                    info->size_max = strtoull(param, NULL, 10);
                if (known[i].bit == SK_CLIENT_EXT_AUTH) {
                    size_t used = strlen(info->auth);
                    snprintf(info->auth + used, sizeof info->auth - used, "%s%.*s", used ? " " : "",
                             (int)plen, param);
                }
            }
        }
        p += n;
        if (*p == '\n') p++;
    }
}

/* Keep the EHLO lines and split them for sk_client_ext_param. */
static void store_ehlo(sk_client *c)
{
    const char *text = sk_reply_parser_text(&c->parser);
    sk_buf_reset(&c->ehlo_lines);
    sk_buf_reset(&c->ext_split);
    c->next = 0;
    /* Both buffers have the parser's bound, so these cannot fail. */
    if (sk_buf_puts(&c->ehlo_lines, text) || sk_buf_puts(&c->ext_split, text) ||
        sk_buf_reserve(&c->ext_split, 1))
        return;
    cl_parse_ehlo(text, &c->ext);
    char *s = c->ext_split.data, *end = s + c->ext_split.len;
    char *line = memchr(s, '\n', (size_t)(end - s)); /* skip the greeting line */
    while (line && line < end && c->next < SK_SMTP_REPLY_MAX_LINES) {
        *line++ = '\0';
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl) *nl = '\0';
        size_t kw = strcspn(line, " =");
        c->ext_kw[c->next] = (size_t)(line - s);
        if (line[kw]) {
            line[kw] = '\0';
            c->ext_param[c->next] = (size_t)(line + kw + 1 - s);
        } else {
            c->ext_param[c->next] = (size_t)(line + kw - s); /* "" */
        }
        c->next++;
        line = nl;
    }
}

sk_err sk_client_ehlo(sk_client *c, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_EHLO, "no client");
    if (c->state != CL_CONNECTED && c->state != CL_READY)
        return need_state(c, CL_CONNECTED, SK_STEP_EHLO, err);
    /* RFC 5321 4.1.1.1: one word, a domain or an address literal. Only
     * what would break the command line is refused here (a line end would
     * start another command); a loose host name is the server's to judge. */
    if (c->o.helo_name) {
        const char *h = c->o.helo_name;
        int ok = *h && strlen(h) <= SK_SMTP_DOMAIN_MAX_OCTETS + 2;
        for (; ok && *h; h++) ok = (unsigned char)*h > 32 && *h != 127;
        if (!ok)
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_EHLO,
                                "the EHLO name is not one word of printable characters");
    }
    char name[300], line[320];
    helo_name(c, name, sizeof name);
    snprintf(line, sizeof line, "EHLO %s", name);
    sk_err e = cl_send_line(c, line, NULL, c->o.command_timeout_ms, SK_STEP_EHLO, err);
    if (!e) e = cl_read_reply(c, c->o.command_timeout_ms, SK_STEP_EHLO, &c->ehlo, err);
    if (e) return e;
    if (c->ehlo.code == 250) {
        c->have_ehlo = 1;
        store_ehlo(c);
        cl_set_state(c, CL_READY);
        return SK_OK;
    }
    if (sk_reply_class_of(c->ehlo.code) != SK_REPLY_PERMANENT)
        return cl_reply_error(err, SK_STEP_EHLO, &c->ehlo, SK_ERR_PERMFAIL);
    /* RFC 5321 3.2: a server that does not know EHLO gets HELO. */
    snprintf(line, sizeof line, "HELO %s", name);
    e = cl_send_line(c, line, NULL, c->o.command_timeout_ms, SK_STEP_EHLO, err);
    if (!e) e = cl_read_reply(c, c->o.command_timeout_ms, SK_STEP_EHLO, &c->ehlo, err);
    if (e) return e;
    if (c->ehlo.code != 250) return cl_reply_error(err, SK_STEP_EHLO, &c->ehlo, SK_ERR_PERMFAIL);
    c->have_ehlo = 1;
    memset(&c->ext, 0, sizeof c->ext);
    sk_buf_reset(&c->ehlo_lines);
    sk_buf_reset(&c->ext_split);
    c->next = 0;
    if (sk_buf_puts(&c->ehlo_lines, sk_reply_parser_text(&c->parser))) sk_buf_reset(&c->ehlo_lines);
    cl_set_state(c, CL_READY);
    return SK_OK;
}

sk_err sk_client_starttls(sk_client *c, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_TLS, "no client");
    sk_err e = need_state(c, CL_READY, SK_STEP_TLS, err);
    if (e) return e;
    if (c->ssl) return sk_error_set(err, SK_ERR_STATE, SK_STEP_TLS, "TLS is already on");
    if (!(c->ext.ext & SK_CLIENT_EXT_STARTTLS)) {
        e = sk_error_set(err, SK_ERR_UNSUPPORTED, SK_STEP_TLS,
                         "the server does not offer STARTTLS");
        if (err) {
            err->transient = 0;
            err->hint = "the server offers no TLS here: use a port with TLS, or go without "
                        "TLS only on a network you trust";
        }
        return e;
    }
    sk_reply r;
    e = cl_send_line(c, "STARTTLS", NULL, c->o.command_timeout_ms, SK_STEP_TLS, err);
    if (!e) e = cl_read_reply(c, c->o.command_timeout_ms, SK_STEP_TLS, &r, err);
    if (e) return e;
    if (r.code != 220) return cl_reply_error(err, SK_STEP_TLS, &r, SK_ERR_PERMFAIL);
    /* RFC 3207 5 and CVE-2011-0411: nothing may follow the 220 in the clear;
     * bytes here would be injected into the TLS session's replies. */
    if (c->in.len) {
        cl_disconnect(c);
        return sk_error_set(err, SK_ERR_PROTOCOL, SK_STEP_TLS,
                            "the server sent data after its STARTTLS reply (possible injection)");
    }
    e = cl_tls_handshake(c, c->o.command_timeout_ms, 0, err);
    if (e) return e;
    /* RFC 3207 4.2: forget what was learned before TLS and ask again. */
    c->have_ehlo = 0;
    memset(&c->ext, 0, sizeof c->ext);
    cl_set_state(c, CL_CONNECTED);
    return sk_client_ehlo(c, err);
}

/* Read the reply to an AUTH step; err is filled for anything but 235/334. */
static sk_err auth_reply(sk_client *c, sk_reply *r, sk_error *err)
{
    sk_err e = cl_read_reply(c, c->o.command_timeout_ms, SK_STEP_AUTH, r, err);
    if (e) return e;
    if (r->code == 235 || r->code == 334) return SK_OK;
    return cl_reply_error(err, SK_STEP_AUTH, r, SK_ERR_AUTH);
}

/* Send base64(raw) as a continuation line, masked on the transcript. */
static sk_err auth_send(sk_client *c, const char *prefix, const sk_buf *raw, sk_error *err)
{
    sk_buf line = SK_BUF_INIT(SK_SASL_MAX_OCTETS + 64);
    sk_err e = sk_buf_puts(&line, prefix);
    if (!e && raw) e = sk_base64_encode(&line, raw->data ? raw->data : "", raw->len);
    if (e) {
        sk_buf_free(&line);
        return sk_error_set(err, e, SK_STEP_AUTH, "credentials too long");
    }
    char shown[64];
    snprintf(shown, sizeof shown, "%s%s", prefix, raw ? "****" : "");
    e = cl_send_line(c, sk_buf_cstr(&line), shown, c->o.command_timeout_ms, SK_STEP_AUTH, err);
    OPENSSL_cleanse(line.data, line.len);
    sk_buf_free(&line);
    return e;
}

static sk_err decode_challenge(const sk_reply *r, const sk_reply_parser *p, sk_buf *out,
                               sk_error *err)
{
    const char *t = sk_reply_parser_text(p);
    if (sk_base64_decode(out, t, strlen(t)))
        return sk_error_set(err, SK_ERR_PROTOCOL, SK_STEP_AUTH,
                            "the server's AUTH challenge is not base64");
    return SK_OK;
}

sk_err sk_client_authenticate(sk_client *c, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_AUTH, "no client");
    sk_err e = need_state(c, CL_READY, SK_STEP_AUTH, err);
    if (e) return e;
    if (!c->o.user) return SK_OK;
    if (!c->o.password && !c->o.oauth_token)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_AUTH, "a user without a password");
    /* RFC 4954 4 / RFC 8314 3: credentials only over TLS unless asked. */
    if (!c->ssl && !c->o.allow_plaintext_auth) {
        e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_AUTH,
                         "refusing to send credentials over a connection without TLS");
        if (err) err->hint = "use TLS (STARTTLS or implicit), or allow plain-text AUTH";
        return e;
    }
    if (!(c->ext.ext & SK_CLIENT_EXT_AUTH)) {
        e = sk_error_set(err, SK_ERR_UNSUPPORTED, SK_STEP_AUTH, "the server does not offer AUTH");
        if (err) err->transient = 0;
        return e;
    }
    sk_sasl_mech m = sk_sasl_choose(c->ext.auth, c->o.auth_mech, c->o.oauth_token != NULL);
    if (m == SK_SASL_NONE) {
        e = sk_error_set(err, SK_ERR_UNSUPPORTED, SK_STEP_AUTH,
                         "no usable AUTH mechanism: the server offers \"%s\"%s%s", c->ext.auth,
                         c->o.auth_mech ? ", asked for " : "",
                         c->o.auth_mech ? c->o.auth_mech : "");
        if (err) err->transient = 0;
        return e;
    }
    const char *pw = c->o.password ? c->o.password : "";
    sk_buf raw = SK_BUF_INIT(SK_SASL_MAX_OCTETS), ch = SK_BUF_INIT(SK_SASL_MAX_OCTETS);
    sk_reply r;
    char prefix[40];
    switch (m) {
    case SK_SASL_PLAIN:
    case SK_SASL_XOAUTH2:
        /* RFC 4954 4: the initial response rides on the AUTH command. */
        e = m == SK_SASL_PLAIN ? sk_sasl_plain_response(&raw, NULL, c->o.user, pw)
                               : sk_sasl_xoauth2_response(&raw, c->o.user, c->o.oauth_token);
        if (e) {
            e = sk_error_set(err, e, SK_STEP_AUTH, "cannot encode the credentials");
            break;
        }
        snprintf(prefix, sizeof prefix, "AUTH %s ", sk_sasl_mech_name(m));
        e = auth_send(c, prefix, &raw, err);
        if (!e) e = auth_reply(c, &r, err);
        /* XOAUTH2 failure: a 334 with a JSON error; an empty line ends it. */
        if (!e && r.code == 334 && m == SK_SASL_XOAUTH2) {
            e = cl_send_line(c, "", NULL, c->o.command_timeout_ms, SK_STEP_AUTH, err);
            if (!e) e = auth_reply(c, &r, err);
        }
        break;
    case SK_SASL_LOGIN:
        e = cl_send_line(c, "AUTH LOGIN", NULL, c->o.command_timeout_ms, SK_STEP_AUTH, err);
        for (int step = 0; !e && step < 2; step++) {
            e = auth_reply(c, &r, err);
            if (e || r.code != 334) break;
            sk_buf_reset(&raw);
            e = sk_sasl_login_response(&raw, step, c->o.user, pw);
            if (!e) e = auth_send(c, "", &raw, err);
        }
        if (!e && r.code == 334) e = auth_reply(c, &r, err);
        break;
    case SK_SASL_CRAM_MD5:
        e = cl_send_line(c, "AUTH CRAM-MD5", NULL, c->o.command_timeout_ms, SK_STEP_AUTH, err);
        if (!e) e = auth_reply(c, &r, err);
        if (!e && r.code == 334) {
            e = decode_challenge(&r, &c->parser, &ch, err);
            if (!e)
                e = sk_sasl_cram_md5_response(&raw, c->o.user, pw, ch.data ? ch.data : "", ch.len);
            if (!e) e = auth_send(c, "", &raw, err);
            if (!e) e = auth_reply(c, &r, err);
        }
        break;
    default:
        e = sk_error_set(err, SK_ERR_UNSUPPORTED, SK_STEP_AUTH, "mechanism not supported");
    }
    if (raw.data) OPENSSL_cleanse(raw.data, raw.len);
    sk_buf_free(&raw);
    sk_buf_free(&ch);
    if (e) return e;
    if (r.code != 235) {
        /* A 334 where the exchange should be over: cancel (RFC 4954 4). */
        if (r.code == 334 &&
            !cl_send_line(c, "*", NULL, c->o.command_timeout_ms, SK_STEP_AUTH, err))
            (void)cl_read_reply(c, c->o.command_timeout_ms, SK_STEP_AUTH, &r, err);
        return sk_error_set(err, SK_ERR_PROTOCOL, SK_STEP_AUTH,
                            "the server kept asking for more AUTH data");
    }
    c->authed = m;
    cl_info(c, "authenticated as %s with %s", c->o.user, sk_sasl_mech_name(m));
    return SK_OK;
}

sk_err sk_client_connect(sk_client *c, sk_error *err)
{
    sk_err e = sk_client_open(c, err);
    if (!e) e = sk_client_ehlo(c, err);
    if (!e && !c->ssl && c->o.tls != SK_TLS_NONE) {
        if (c->ext.ext & SK_CLIENT_EXT_STARTTLS)
            e = sk_client_starttls(c, err);
        else if (c->o.tls == SK_TLS_STARTTLS)
            e = sk_client_starttls(c, err); /* reports that it is not offered */
        else
            cl_info(c, "the server does not offer STARTTLS: continuing without TLS");
    }
    if (!e) e = sk_client_authenticate(c, err);
    if (e) cl_disconnect(c);
    return e;
}

/* An address must not carry what would end or change the command line. */
static sk_err check_path(const char *a, sk_step step, sk_error *err)
{
    if (!a) return sk_error_set(err, SK_ERR_INVAL, step, "no address");
    if (strlen(a) > SK_SMTP_PATH_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_INVAL, step, "address longer than %d octets",
                            SK_SMTP_PATH_MAX_OCTETS);
    for (const char *p = a; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == '<' || *p == '>' || (unsigned char)*p < 0x20)
            return sk_error_set(err, SK_ERR_INVAL, step, "invalid character in address");
    return SK_OK;
}

static sk_err simple_command(sk_client *c, const char *line, unsigned timeout, sk_step step,
                             sk_reply *reply, sk_error *err)
{
    sk_reply r;
    sk_err e = cl_send_line(c, line, NULL, timeout, step, err);
    if (!e) e = cl_read_reply(c, timeout, step, &r, err);
    if (e) return e;
    if (reply) *reply = r;
    if (sk_reply_class_of(r.code) != SK_REPLY_SUCCESS)
        return cl_reply_error(err, step, &r, SK_ERR_PERMFAIL);
    return SK_OK;
}

sk_err sk_client_mail(sk_client *c, const char *from, const char *params, sk_reply *reply,
                      sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_MAIL, "no client");
    sk_err e = need_state(c, CL_READY, SK_STEP_MAIL, err);
    if (!e) e = check_path(from, SK_STEP_MAIL, err);
    if (e) return e;
    char line[SK_SMTP_LINE_MAX_OCTETS];
    if (snprintf(line, sizeof line, "MAIL FROM:<%s>%s%s", from, params && *params ? " " : "",
                 params ? params : "") >= (int)sizeof line)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_MAIL, "MAIL command too long");
    e = simple_command(c, line, c->o.mail_timeout_ms, SK_STEP_MAIL, reply, err);
    if (!e) cl_set_state(c, CL_MAIL);
    return e;
}

sk_err sk_client_rcpt(sk_client *c, const char *rcpt, const char *params, sk_reply *reply,
                      sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_RCPT, "no client");
    sk_err e = need_state(c, CL_MAIL, SK_STEP_RCPT, err);
    if (!e) e = check_path(rcpt, SK_STEP_RCPT, err);
    if (e) return e;
    if (!*rcpt) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_RCPT, "empty recipient");
    char line[SK_SMTP_LINE_MAX_OCTETS];
    if (snprintf(line, sizeof line, "RCPT TO:<%s>%s%s", rcpt, params && *params ? " " : "",
                 params ? params : "") >= (int)sizeof line)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_RCPT, "RCPT command too long");
    return simple_command(c, line, c->o.rcpt_timeout_ms, SK_STEP_RCPT, reply, err);
}

sk_err sk_client_rset(sk_client *c, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_RSET, "no client");
    if (c->state != CL_READY && c->state != CL_MAIL)
        return need_state(c, CL_READY, SK_STEP_RSET, err);
    sk_err e = simple_command(c, "RSET", c->o.command_timeout_ms, SK_STEP_RSET, NULL, err);
    if (!e) cl_set_state(c, CL_READY);
    return e;
}

sk_err sk_client_noop(sk_client *c, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "no client");
    if (c->state == CL_CLOSED) return need_state(c, CL_READY, SK_STEP_NONE, err);
    return simple_command(c, "NOOP", c->o.command_timeout_ms, SK_STEP_NONE, NULL, err);
}

sk_err sk_client_quit(sk_client *c, sk_error *err)
{
    sk_error_clear(err);
    if (!c) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_QUIT, "no client");
    if (c->state == CL_CLOSED) return SK_OK;
    sk_err e = simple_command(c, "QUIT", c->o.command_timeout_ms, SK_STEP_QUIT, NULL, err);
    /* RFC 8446 6.1: say we are done before closing; a failure is moot. */
    if (c->ssl && c->fd >= 0) (void)SSL_shutdown(c->ssl);
    cl_disconnect(c);
    return e;
}

const sk_reply *sk_client_greeting(const sk_client *c)
{
    return c && c->have_greeting ? &c->greeting : NULL;
}

const sk_reply *sk_client_ehlo_reply(const sk_client *c)
{
    return c && c->have_ehlo ? &c->ehlo : NULL;
}

const char *sk_client_ehlo_lines(const sk_client *c)
{
    return c ? sk_buf_cstr(&c->ehlo_lines) : "";
}

const sk_ehlo_info *sk_client_extensions(const sk_client *c)
{
    return c && c->have_ehlo ? &c->ext : NULL;
}

const char *sk_client_ext_param(const sk_client *c, const char *keyword)
{
    if (!c || !keyword || !c->have_ehlo) return NULL;
    for (size_t i = 0; i < c->next; i++)
        if (!strcasecmp(c->ext_split.data + c->ext_kw[i], keyword))
            return c->ext_split.data + c->ext_param[i];
    return NULL;
}

const sk_peer_info *sk_client_peer(const sk_client *c)
{
    return c && c->have_peer ? &c->peer : NULL;
}

const char *sk_client_remote_address(const sk_client *c)
{
    return c ? c->remote : "";
}

unsigned short sk_client_remote_port(const sk_client *c)
{
    return c ? c->rport : 0;
}

const sk_tls_info *sk_client_tls_info(const sk_client *c)
{
    return c && c->tls_tried ? &c->tls : NULL;
}

int sk_client_is_tls(const sk_client *c)
{
    return c && c->ssl && c->state != CL_CLOSED;
}

sk_sasl_mech sk_client_auth_mech(const sk_client *c)
{
    return c ? c->authed : SK_SASL_NONE;
}
