/* One SMTP server session: the command table, the state machine, DATA and
 * BDAT streams, STARTTLS and AUTH, limits and timeouts (RFC 5321 + ESMTP). */
#include "server/session_int.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const state_names[] = {"new",  "delay", "tls",  "connected", "ready",  "mail",
                                          "auth", "data",  "bdat", "wait",      "closing"};
_Static_assert(sizeof state_names / sizeof state_names[0] == SS__COUNT, "one name per state");

/* Commands: what each may do where. A new command is one row. */
#define CF_PRE_HELO 0x01u /* before HELO/EHLO */
#define CF_PRE_TLS  0x02u /* on a listener that requires TLS, before it */
#define CF_PRE_AUTH 0x04u /* on a submission listener, before AUTH */
#define CF_IN_TX    0x08u /* inside a mail transaction */
#define CF_IDLE     0x10u /* makes no progress (counted against max_idle_commands) */
#define CF_ESMTP    0x20u /* an ESMTP extension: only after EHLO, never after HELO */

typedef struct cmd_def {
    unsigned flags;
    void (*handler)(sk_session *s, const char *args);
} cmd_def;

static void cmd_helo(sk_session *s, const char *args);
static void cmd_ehlo(sk_session *s, const char *args);
static void cmd_mail(sk_session *s, const char *args);
static void cmd_rcpt(sk_session *s, const char *args);
static void cmd_rset(sk_session *s, const char *args);
static void cmd_noop(sk_session *s, const char *args);
static void cmd_quit(sk_session *s, const char *args);
static void cmd_vrfy(sk_session *s, const char *args);
static void cmd_expn(sk_session *s, const char *args);
static void cmd_help(sk_session *s, const char *args);

static const cmd_def commands[] = {
    [SK_CMD_UNKNOWN] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, NULL},
    [SK_CMD_EHLO] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_ehlo},
    [SK_CMD_HELO] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_helo},
    [SK_CMD_MAIL] = {0, cmd_mail},
    [SK_CMD_RCPT] = {CF_IN_TX, cmd_rcpt},
    [SK_CMD_DATA] = {CF_IN_TX, sk_sess_cmd_data},
    [SK_CMD_BDAT] = {CF_IN_TX | CF_ESMTP, sk_sess_cmd_bdat},
    [SK_CMD_RSET] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_rset},
    [SK_CMD_NOOP] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_noop},
    [SK_CMD_QUIT] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_quit},
    [SK_CMD_VRFY] = {CF_PRE_HELO | CF_IN_TX | CF_IDLE, cmd_vrfy},
    [SK_CMD_EXPN] = {CF_PRE_HELO | CF_IN_TX | CF_IDLE, cmd_expn},
    [SK_CMD_HELP] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_help},
    [SK_CMD_STARTTLS] = {CF_PRE_TLS | CF_PRE_AUTH | CF_ESMTP, sk_sess_cmd_starttls},
    [SK_CMD_AUTH] = {CF_PRE_TLS | CF_PRE_AUTH | CF_ESMTP,
                     sk_sess_cmd_auth}, /* checks TLS itself (538) */
};
_Static_assert(sizeof commands / sizeof commands[0] == SK_CMD__COUNT, "one row per command");

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void session_free(sk_session *s);

static void set_timeouts(sk_session *s)
{
    unsigned ms = s->cfg->command_timeout_ms;
    if (s->state == SS_CONNECTED) ms = s->cfg->greeting_timeout_ms;
    if (s->state == SS_DATA || s->state == SS_BDAT) ms = s->cfg->data_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* The one place the session state changes (and it is logged). */
void sk_sess_set_state(sk_session *s, sstate to)
{
    if (s->state == to) return;
    sk_log(logger(s), SK_LOG_DEBUG, "%s server state from=%s to=%s", s->id, state_names[s->state],
           state_names[to]);
    s->state = to;
    if (s->bev) set_timeouts(s);
}

/* Write a reply; text lines separated by '\n' become a multi-line reply
 * (RFC 5321 4.2.1). Error replies count against the idle-command limit. */
void sk_sess_reply_text(sk_session *s, int code, const char *enh, const char *text)
{
    if (!s->bev) return;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    const char *p = text && *text ? text : "Ok";
    for (;;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        if (enh && *enh)
            evbuffer_add_printf(out, "%d%c%s %.*s\r\n", code, nl ? '-' : ' ', enh, len, p);
        else
            evbuffer_add_printf(out, "%d%c%.*s\r\n", code, nl ? '-' : ' ', len, p);
        if (!nl) break;
        p = nl + 1;
    }
    if (code >= 400) s->idle++;
}

void sk_sess_reply(sk_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sk_sess_reply_text(s, code, enh, text);
}

void sk_sess_reply_r(sk_session *s, const sk_reply *r)
{
    sk_sess_reply_text(s, r->code, r->enhanced, r->text);
}

/* A hook's answer: 2xx goes on (the caller sends its own success reply),
 * anything else is sent as the refusal. A hook may not answer "later"
 * except on_data_end. */
int sk_sess_hook_refused(sk_session *s, sk_reply *r, const char *hook)
{
    if (r->code == 0 || sk_reply_class_of(r->code) == SK_REPLY_INVALID) {
        sk_log(logger(s), SK_LOG_ERR, "%s server hook-error hook=%s code=%d", s->id, hook, r->code);
        *r = sk_reply_make(451, "4.3.0", "Internal error");
    }
    if (r->code < 400) return 0;
    sk_sess_reply_r(s, r);
    return 1;
}

void sk_sess_close_after_flush(sk_session *s)
{
    sk_sess_set_state(s, SS_CLOSING);
    bufferevent_disable(s->bev, EV_READ);
    /* Never free here: callers may still look at the session. */
    if (!evbuffer_get_length(bufferevent_get_output(s->bev))) {
        struct timeval tv = {0, 0};
        evtimer_add(s->timer, &tv);
    }
}

void sk_sess_tx_reset(sk_session *s)
{
    sk_sess_msg_abort(s);
    sk_free(s->from);
    sk_free(s->mp);
    sk_free(s->rcpts);
    s->from = NULL;
    s->mp = NULL;
    s->rcpts = NULL;
    s->nrcpts = s->cap_rcpts = s->rcpt_over = 0;
}

/* The server is stopping: a session at rest ends now (RFC 5321 3.8). */
int sk_sess_maybe_stop(sk_session *s)
{
    if (!s->srv->stopping || in_tx(s) || (s->state != SS_CONNECTED && s->state != SS_READY))
        return 0;
    sk_sess_reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
    sk_sess_close_after_flush(s);
    return 1;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

static void send_banner(sk_session *s)
{
    sk_sess_reply(s, 220, NULL, "%s ESMTP SMTPKit", s->cfg->hostname);
    sk_sess_set_state(s, SS_CONNECTED);
}

static int addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* An IPv4 client of a [::] listener arrives as ::ffff:a.b.c.d (RFC 4291
 * 2.5.5.2). It becomes the IPv4 address it is, here once, so that the
 * on_connect hook, relay networks, per-address limits, AUTH throttling, logs
 * and Received see one address whichever listener the client used. */
static void peer_normalize(const struct sockaddr *sa, int salen, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
    if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)out;
        v4->sin_family = AF_INET;
        v4->sin_port = a6->sin6_port;
        memcpy(&v4->sin_addr, &a6->sin6_addr.s6_addr[12], 4);
        return;
    }
    memcpy(out, sa, salen > 0 && (size_t)salen <= sizeof *out ? (size_t)salen : sizeof *out);
}

void sk_session_start(sk_server *srv, sk_listen_kind kind, evutil_socket_t fd,
                      const struct sockaddr *sa, int salen)
{
    sk_session *s = sk_calloc(1, sizeof *s);
    if (!s) {
        evutil_closesocket(fd);
        return;
    }
    s->srv = srv;
    s->cfg = srv->cfg;
    s->cfg->refs++;
    s->kind = kind;
    sk_buf_init(&s->sasl, SK_SMTP_LINE_MAX_OCTETS);
    sk_buf_init(&s->chunk, SK_SERVER_CHUNK_OCTETS);
    unsigned char rnd[4] = {0};
    if (sk_random(rnd, sizeof rnd) != SK_OK) memset(rnd, 0, sizeof rnd);
    snprintf(s->id, sizeof s->id, "%02x%02x%02x%02x%04x", rnd[0], rnd[1], rnd[2], rnd[3],
             (unsigned)(++srv->counter & 0xffff));
    struct sockaddr_storage peer_ss;
    peer_normalize(sa, salen, &peer_ss);
    sa = (const struct sockaddr *)&peer_ss;
    if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->peer, sizeof s->peer);
        s->port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    } else {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->peer, sizeof s->peer);
        s->port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    }
    s->loopback = addr_is_loopback(sa);

    /* Limits are checked before the session is linked in. */
    size_t same = 0;
    for (sk_session *o = srv->sessions; o; o = o->next)
        if (!o->refused && !strcmp(o->peer, s->peer)) same++;
    const char *limit = NULL;
    if (srv->nsessions >= s->cfg->max_connections) limit = "connections";
    if (same >= s->cfg->max_connections_per_ip) limit = "connections-per-ip";

    s->next = srv->sessions;
    if (s->next) s->next->prev = s;
    srv->sessions = s;
    srv->nsessions++;

    evutil_make_socket_nonblocking(fd);
    struct bufferevent *bev = kind == SK_LISTEN_SMTPS
                                  ? sk_sess_tls_accept(s, fd)
                                  : bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        session_free(s);
        return;
    }
    sk_sess_use_bev(s, bev);
    s->timer = evtimer_new(srv->base, timer_cb, s);
    if (!s->timer) {
        session_free(s);
        return;
    }
    static const char *const kinds[] = {"", "smtp", "submission", "", "smtps"};
    sk_log(logger(s), SK_LOG_INFO, "%s server connect peer=%s port=%d listener=%s", s->id, s->peer,
           s->port, kinds[kind]);
    sk_sess_set_state(s, kind == SK_LISTEN_SMTPS ? SS_TLS : SS_CONNECTED);
    bufferevent_enable(s->bev, EV_READ);

    if (limit) {
        s->refused = 1;
        sk_log(logger(s), SK_LOG_WARN, "%s server refuse peer=%s limit=%s", s->id, s->peer, limit);
        sk_sess_reply(s, 421, "4.7.0", "%s Too many connections, try again later",
                      s->cfg->hostname);
        sk_sess_close_after_flush(s);
        return;
    }
    if (srv->on_connect) {
        sk_reply r = srv->on_connect(s, sa, srv->on_connect_ctx);
        if (sk_sess_hook_refused(s, &r, "connect")) {
            sk_log(logger(s), SK_LOG_INFO, "%s server refuse peer=%s reply=%d", s->id, s->peer,
                   r.code);
            sk_sess_close_after_flush(s);
            return;
        }
    }
    if (kind == SK_LISTEN_SMTPS) return; /* the banner follows the handshake */
    if (s->cfg->greeting_delay_ms) {
        /* Early talkers (RFC 5321 4.3.1: the client waits for the banner). */
        sk_sess_set_state(s, SS_DELAY);
        struct timeval tv = {(time_t)(s->cfg->greeting_delay_ms / 1000),
                             (suseconds_t)(s->cfg->greeting_delay_ms % 1000) * 1000};
        evtimer_add(s->timer, &tv);
        return;
    }
    send_banner(s);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_session *s = arg;
    if (s->state == SS_DELAY) {
        send_banner(s);
        sk_sess_process(s);
        return;
    }
    if (s->state == SS_CLOSING) write_cb(s->bev, s);
}

static void session_free(sk_session *s)
{
    sk_server *srv = s->srv;
    sk_sess_tx_reset(s);
    if (srv->on_disconnect) srv->on_disconnect(s, srv->on_disconnect_ctx);
    sk_log(logger(s), SK_LOG_INFO, "%s server disconnect peer=%s commands=%u", s->id, s->peer,
           s->commands);
    if (s->prev)
        s->prev->next = s->next;
    else if (srv->sessions == s)
        srv->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    srv->nsessions--;
    if (s->timer) event_free(s->timer);
    if (s->bev) bufferevent_free(s->bev);
    if (s->sasl.data) OPENSSL_cleanse(s->sasl.data, s->sasl.cap);
    sk_buf_free(&s->sasl);
    sk_free(s->helo);
    sk_free(s->auth_user);
    sk_free(s->pending_user);
    sk_server_cfg_release(s->cfg);
    sk_free(s);
    sk_server_session_gone(srv);
}

void sk_session_destroy(sk_session *s)
{
    if (s->state == SS_WAIT) s->msg_started = 0; /* the program holds it; do not ask again */
    session_free(s);
}

sk_session *sk_session_next(const sk_session *s)
{
    return s->next;
}

void sk_session_stop_idle(sk_session *s)
{
    sk_sess_maybe_stop(s);
}

/* The connection is over (EOF, error, timeout handled): free the session,
 * unless the program still owes an asynchronous reply. */
static void connection_gone(sk_session *s)
{
    if (s->state == SS_WAIT) {
        s->gone = 1;
        bufferevent_free(s->bev);
        s->bev = NULL;
        return;
    }
    session_free(s);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    sk_session *s = arg;
    if (s->state == SS_CLOSING) {
        /* With STARTTLS the TLS filter has passed its bytes to the socket's
         * bufferevent, which may still be sending them. */
        struct bufferevent *u = bufferevent_get_underlying(s->bev);
        if (u && evbuffer_get_length(bufferevent_get_output(u)) && s->close_polls++ < 100) {
            struct timeval tv = {0, 20000};
            evtimer_add(s->timer, &tv);
            return;
        }
        session_free(s);
        return;
    }
    if (s->throttled) {
        s->throttled = 0;
        bufferevent_enable(s->bev, EV_READ);
        sk_sess_process(s);
    }
}

/* The TLS handshake is done, at connect (implicit TLS) or after STARTTLS. */
static void tls_done(sk_session *s)
{
    sk_sess_tls_up(s);
    if (s->kind == SK_LISTEN_SMTPS)
        send_banner(s);
    else
        sk_sess_set_state(s, SS_CONNECTED); /* RFC 3207 4.2: start over with EHLO */
    /* The client's first command may have come with the end of the
     * handshake, before this event. */
    sk_sess_process(s);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    sk_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (s->state == SS_TLS) tls_done(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (s->state == SS_WAIT) {
            /* The program is still storing the message; it is not the
             * client's silence. */
            bufferevent_enable(s->bev, EV_READ | EV_WRITE);
            return;
        }
        sk_log(logger(s), SK_LOG_INFO, "%s server timeout peer=%s state=%s", s->id, s->peer,
               state_names[s->state]);
        if (s->state == SS_CLOSING || s->state == SS_TLS) {
            session_free(s);
            return;
        }
        sk_sess_msg_abort(s);
        sk_sess_reply(s, 421, "4.4.2", "%s Timeout, closing connection", s->cfg->hostname);
        sk_sess_close_after_flush(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) sk_sess_tls_error(s);
    if (s->state == SS_DATA || s->state == SS_BDAT)
        sk_log(logger(s), SK_LOG_INFO, "%s server lost peer=%s state=%s", s->id, s->peer,
               state_names[s->state]);
    connection_gone(s);
}

/* A client trickling octets in keeps the idle timeout from firing: end it
 * the way a timeout does. */
void sk_sess_too_slow(sk_session *s, const char *what)
{
    sk_log(logger(s), SK_LOG_INFO, "%s server too-slow peer=%s state=%s what=%s", s->id, s->peer,
           state_names[s->state], what);
    sk_sess_msg_abort(s);
    sk_sess_reply(s, 421, "4.4.2", "%s Timeout, closing connection", s->cfg->hostname);
    sk_sess_close_after_flush(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    sk_sess_process(arg);
}

void sk_sess_use_bev(sk_session *s, struct bufferevent *bev)
{
    s->bev = bev;
    bufferevent_setcb(bev, read_cb, write_cb, event_cb, s);
}

sk_err sk_session_reply(sk_session *s, const sk_reply *r)
{
    if (s->state != SS_WAIT) return SK_ERR_STATE;
    sk_reply rr = *r;
    if (rr.code == 0 || sk_reply_class_of(rr.code) == SK_REPLY_INVALID)
        rr = sk_reply_make(451, "4.3.0", "Internal error");
    if (s->pending_user) {
        if (s->gone) {
            session_free(s);
            return SK_OK;
        }
        sk_sess_auth_answer(s, *r);
        bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
        if (s->state == SS_READY) sk_sess_process(s);
        return SK_OK;
    }
    if (s->gone) {
        sk_log(logger(s), SK_LOG_INFO, "%s server message-reply-lost reply=%d", s->id, rr.code);
        s->msg_started = 0;
        session_free(s);
        return SK_OK;
    }
    sk_sess_msg_done(s, &rr);
    bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
    if (s->state == SS_READY) sk_sess_process(s);
    return SK_OK;
}

/* ---- commands ---- */

static void handle_line(sk_session *s, char *line, size_t n);

void sk_sess_process(sk_session *s)
{
    while (s->bev) {
        struct evbuffer *in = bufferevent_get_input(s->bev);
        if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SK_SERVER_OUTPUT_MAX_OCTETS) {
            s->throttled = 1;
            bufferevent_disable(s->bev, EV_READ);
            return;
        }
        size_t avail = evbuffer_get_length(in);
        if (!avail) return;
        switch (s->state) {
        case SS_DELAY:
            sk_log(logger(s), SK_LOG_INFO, "%s server early-talker peer=%s", s->id, s->peer);
            evtimer_del(s->timer);
            evbuffer_drain(in, avail);
            sk_sess_reply(s, 554, "5.5.0", "%s Protocol error: talking before the greeting",
                          s->cfg->hostname);
            sk_sess_close_after_flush(s);
            return;
        case SS_DATA:
            if (!sk_sess_data_consume(s, in)) return;
            continue;
        case SS_BDAT:
            if (!sk_sess_bdat_consume(s, in)) return;
            continue;
        case SS_CONNECTED:
        case SS_READY:
        case SS_MAIL:
        case SS_AUTH:
            break;
        default:
            return;
        }
        struct evbuffer_ptr pos = evbuffer_search(in, "\n", 1, NULL);
        if (pos.pos < 0) {
            unsigned limit_ms =
                s->state == SS_CONNECTED ? s->cfg->greeting_timeout_ms : s->cfg->command_timeout_ms;
            if (!s->line_started_ms) {
                s->line_started_ms = sk_now_ms();
            } else if (sk_now_ms() - s->line_started_ms > limit_ms) {
                sk_sess_too_slow(s, "command");
                return;
            }
            /* RFC 5321 4.5.3.1.4/4.5.3.1.6: no line is longer than 1000. */
            if (s->discarding) {
                evbuffer_drain(in, avail);
            } else if (avail >= SK_SMTP_LINE_MAX_OCTETS) {
                evbuffer_drain(in, avail);
                s->discarding = 1;
                sk_sess_reply(s, 500, "5.5.2", "Line too long");
                if (s->state == SS_AUTH) sk_sess_set_state(s, s->helo ? SS_READY : SS_CONNECTED);
            }
            return;
        }
        size_t n = (size_t)pos.pos + 1;
        s->line_started_ms = 0;
        if (s->discarding) {
            evbuffer_drain(in, n);
            s->discarding = 0;
            continue;
        }
        if (n > SK_SMTP_LINE_MAX_OCTETS) {
            evbuffer_drain(in, n);
            sk_sess_reply(s, 500, "5.5.2", "Line too long");
            if (s->state == SS_AUTH) sk_sess_set_state(s, s->helo ? SS_READY : SS_CONNECTED);
            continue;
        }
        char line[SK_SMTP_LINE_MAX_OCTETS + 1];
        evbuffer_remove(in, line, n);
        line[n] = '\0';
        if (s->idle >= s->cfg->max_idle_commands && s->state != SS_AUTH) {
            OPENSSL_cleanse(line, n);
            sk_log(logger(s), SK_LOG_INFO, "%s server idle-limit peer=%s commands=%u", s->id,
                   s->peer, s->idle);
            sk_sess_reply(s, 421, "4.7.0", "%s Too many commands without progress, closing",
                          s->cfg->hostname);
            sk_sess_tx_reset(s);
            sk_sess_close_after_flush(s);
            return;
        }
        handle_line(s, line, n);
        OPENSSL_cleanse(line, n); /* it may have carried AUTH data */
    }
}

static size_t line_limit(const sk_session *s, sk_cmd_verb v)
{
    size_t lim = SK_SMTP_COMMAND_LINE_MAX_OCTETS;
    if (s->esmtp && v == SK_CMD_MAIL) lim += SK_SERVER_MAIL_EXT_OCTETS;
    if (s->esmtp && v == SK_CMD_RCPT) lim += SK_SERVER_RCPT_EXT_OCTETS;
    if (v == SK_CMD_AUTH) lim = SK_SMTP_LINE_MAX_OCTETS; /* RFC 4954 4 allows longer */
    return lim < SK_SMTP_LINE_MAX_OCTETS ? lim : SK_SMTP_LINE_MAX_OCTETS;
}

static void handle_line(sk_session *s, char *line, size_t n)
{
    s->commands++;
    /* RFC 5321 2.3.8: lines end with CRLF, and CR or LF never appear alone. */
    if (n < 2 || line[n - 2] != '\r') {
        sk_sess_reply(s, 500, "5.5.2", "Line must end with CRLF");
        if (s->state == SS_AUTH) sk_sess_set_state(s, s->helo ? SS_READY : SS_CONNECTED);
        return;
    }
    line[n - 2] = '\0';
    if (memchr(line, '\r', n - 2) || strlen(line) != n - 2) {
        sk_sess_reply(s, 500, "5.5.2", "Bare CR or NUL in command");
        if (s->state == SS_AUTH) sk_sess_set_state(s, s->helo ? SS_READY : SS_CONNECTED);
        return;
    }
    if (s->state == SS_AUTH) {
        sk_sess_auth_line(s, line);
        return;
    }
    if (sk_sess_maybe_stop(s)) return;
    const char *args;
    sk_cmd_verb v = sk_cmd_parse(line, &args);
    if (v != SK_CMD_AUTH && logger(s)->fn && logger(s)->max_level >= SK_LOG_DEBUG) {
        sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_LINE_MAX_OCTETS);
        if (sk_log_escape(&esc, line, strlen(line)) == SK_OK)
            sk_log(logger(s), SK_LOG_DEBUG, "%s server command line=\"%s\"", s->id,
                   sk_buf_cstr(&esc));
        sk_buf_free(&esc);
    }
    if (n > line_limit(s, v)) {
        sk_sess_reply(s, 500, "5.5.2", "Line too long");
        return;
    }
    const cmd_def *c = &commands[v];
    if (v == SK_CMD_UNKNOWN) {
        sk_sess_reply(s, 500, "5.5.2", "Command unrecognized");
        return;
    }
    if (c->flags & CF_IDLE) s->idle++;
    sk_reply gate = {0};
    if (!(c->flags & CF_PRE_HELO) && !s->helo)
        gate = sk_reply_make(503, "5.5.1", "Send HELO or EHLO first");
    else if ((c->flags & CF_ESMTP) && !s->esmtp)
        /* RFC 5321 2.2.1: after HELO no extension is in effect. The verb is
         * known but not implemented in this session, so 502, not 500
         * (RFC 5321 4.2.4); MAIL parameters after HELO get 555 likewise. */
        gate = sk_reply_make(502, "5.5.1", "Command not implemented after HELO; use EHLO");
    else if (!(c->flags & CF_PRE_TLS) && sk_sess_tls_required(s))
        gate = sk_reply_make(530, "5.7.0", "Must issue a STARTTLS command first");
    else if (!(c->flags & CF_PRE_AUTH) && s->kind != SK_LISTEN_SMTP && !s->auth_user)
        gate = sk_reply_make(530, "5.7.0", "Authentication required");
    if (gate.code) {
        /* A refused BDAT's chunk follows all the same (RFC 3030 2): it is
         * read, never run as commands. */
        if (v == SK_CMD_BDAT)
            sk_sess_bdat_start(s, args, &gate);
        else
            sk_sess_reply_r(s, &gate);
        return;
    }
    if (!(c->flags & CF_IN_TX) && in_tx(s)) {
        sk_sess_reply(s, 503, "5.5.1", "Not allowed in a mail transaction");
        return;
    }
    /* RFC 3030 2: after a BDAT, only BDAT, RSET, NOOP and QUIT. */
    if (s->bdat_mode && v != SK_CMD_BDAT && v != SK_CMD_RSET && v != SK_CMD_NOOP &&
        v != SK_CMD_QUIT) {
        sk_sess_reply(s, 503, "5.5.1", "Only BDAT may follow BDAT");
        return;
    }
    c->handler(s, args);
}

int sk_sess_no_args(sk_session *s, const char *args)
{
    if (args && *args) {
        sk_sess_reply(s, 501, "5.5.4", "No parameters allowed");
        return 0;
    }
    return 1;
}

static void greet(sk_session *s, const char *args, int esmtp)
{
    if (!*args) {
        sk_sess_reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    if (!sk_proto_helo_valid(args)) {
        sk_sess_reply(s, 501, "5.5.4", "Invalid domain name");
        return;
    }
    if (s->srv->on_helo) {
        sk_reply r = s->srv->on_helo(s, args, s->srv->on_helo_ctx);
        if (sk_sess_hook_refused(s, &r, "helo")) return;
    }
    sk_sess_tx_reset(s); /* RFC 5321 4.1.4: EHLO resets the transaction */
    if (s->helo) s->idle++;
    sk_free(s->helo);
    s->helo = sk_strdup(args);
    if (!s->helo) {
        sk_sess_reply(s, 451, "4.3.0", "Out of memory");
        return;
    }
    s->esmtp = esmtp;
    sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_LINE_MAX_OCTETS);
    if (sk_log_escape(&esc, args, strlen(args)) == SK_OK)
        sk_log(logger(s), SK_LOG_INFO, "%s server helo name=\"%s\" esmtp=%d", s->id,
               sk_buf_cstr(&esc), esmtp);
    sk_buf_free(&esc);
    sk_sess_set_state(s, SS_READY);
    if (!esmtp) {
        sk_sess_reply(s, 250, NULL, "%s", s->cfg->hostname);
        return;
    }
    char text[512];
    int len = snprintf(text, sizeof text,
                       "%s\nPIPELINING\nSIZE %llu\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\n",
                       s->cfg->hostname, (unsigned long long)s->cfg->max_message_size);
    if (sk_sess_starttls_offered(s))
        len += snprintf(text + len, sizeof text - (size_t)len, "STARTTLS\n");
    /* RFC 4954 4 / RFC 3207 6: no AUTH in clear text on a network port. */
    if (sk_sess_auth_offered(s) && !s->auth_user)
        len += snprintf(text + len, sizeof text - (size_t)len, "AUTH PLAIN LOGIN\n");
    snprintf(text + len, sizeof text - (size_t)len, "CHUNKING\nDSN\nMT-PRIORITY");
    sk_sess_reply_text(s, 250, NULL, text);
}

static void cmd_ehlo(sk_session *s, const char *args)
{
    greet(s, args, 1);
}

static void cmd_helo(sk_session *s, const char *args)
{
    greet(s, args, 0);
}

static unsigned ext_mask(const sk_session *s)
{
    if (!s->esmtp) return 0;
    unsigned ext =
        SK_EXT_SIZE | SK_EXT_8BITMIME | SK_EXT_SMTPUTF8 | SK_EXT_DSN | SK_EXT_MT_PRIORITY;
    if (sk_sess_auth_offered(s)) ext |= SK_EXT_AUTH;
    return ext;
}

static void log_path(sk_session *s, const char *event, const sk_path *p, int code)
{
    sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_PATH_MAX_OCTETS);
    if (sk_log_escape(&esc, p->mailbox, strlen(p->mailbox)) == SK_OK)
        sk_log(logger(s), SK_LOG_INFO, "%s server %s addr=<%s> reply=%d", s->id, event,
               sk_buf_cstr(&esc), code);
    sk_buf_free(&esc);
}

static void cmd_mail(sk_session *s, const char *args)
{
    sk_path *from = sk_malloc(sizeof *from);
    sk_mail_params *mp = sk_malloc(sizeof *mp);
    sk_reply r;
    if (!from || !mp) {
        sk_sess_reply(s, 451, "4.3.0", "Out of memory");
        goto out;
    }
    if (sk_proto_parse_mail(args, ext_mask(s), from, mp, &r) != SK_OK) {
        sk_sess_reply_r(s, &r);
        goto out;
    }
    if (mp->has_size && mp->size > s->cfg->max_message_size) {
        sk_sess_reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        goto out;
    }
    if (s->srv->on_mail) {
        r = s->srv->on_mail(s, from, mp, s->srv->on_mail_ctx);
        if (sk_sess_hook_refused(s, &r, "mail")) {
            log_path(s, "mail", from, r.code);
            goto out;
        }
    }
    s->from = from;
    s->mp = mp;
    from = NULL;
    mp = NULL;
    log_path(s, "mail", s->from, 250);
    sk_sess_set_state(s, SS_MAIL);
    sk_sess_reply(s, 250, "2.1.0", "Ok");
out:
    sk_free(from);
    sk_free(mp);
}

static void cmd_rcpt(sk_session *s, const char *args)
{
    if (!in_tx(s)) {
        sk_sess_reply(s, 503, "5.5.1", "Need MAIL before RCPT");
        return;
    }
    if (s->nrcpts >= s->cfg->max_recipients) {
        /* RFC 5321 4.5.3.1.10: the client sends the rest in a later
         * transaction, so these are no errors against the idle limit. */
        unsigned idle = s->idle;
        sk_sess_reply(s, 452, "4.5.3", "Too many recipients");
        if (s->rcpt_over++ < SK_SERVER_RCPT_OVERSHOOT_MAX) s->idle = idle;
        return;
    }
    sk_envelope_rcpt rc;
    sk_reply r;
    if (sk_proto_parse_rcpt(args, ext_mask(s), s->mp->smtputf8, &rc.path, &rc.params, &r) !=
        SK_OK) {
        sk_sess_reply_r(s, &r);
        return;
    }
    if (s->srv->on_rcpt) {
        r = s->srv->on_rcpt(s, &rc.path, &rc.params, s->srv->on_rcpt_ctx);
        if (sk_sess_hook_refused(s, &r, "rcpt")) {
            log_path(s, "rcpt", &rc.path, r.code);
            return;
        }
    }
    if (s->nrcpts == s->cap_rcpts) {
        size_t cap = s->cap_rcpts ? s->cap_rcpts * 2 : 4;
        sk_envelope_rcpt *n = sk_realloc(s->rcpts, cap * sizeof *n);
        if (!n) {
            sk_sess_reply(s, 452, "4.3.1", "Out of memory");
            return;
        }
        s->rcpts = n;
        s->cap_rcpts = cap;
    }
    s->rcpts[s->nrcpts++] = rc;
    log_path(s, "rcpt", &rc.path, 250);
    sk_sess_reply(s, 250, "2.1.5", "Ok");
}

static void cmd_rset(sk_session *s, const char *args)
{
    if (!sk_sess_no_args(s, args)) return;
    sk_sess_tx_reset(s);
    sk_sess_set_state(s, s->helo ? SS_READY : SS_CONNECTED);
    sk_sess_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(sk_session *s, const char *args)
{
    sk_sess_reply(s, 250, "2.0.0", "Ok"); /* RFC 5321 4.1.1.9: a parameter is allowed */
}

static void cmd_quit(sk_session *s, const char *args)
{
    if (!sk_sess_no_args(s, args)) return;
    sk_sess_reply(s, 221, "2.0.0", "%s Bye", s->cfg->hostname);
    sk_sess_tx_reset(s);
    sk_sess_close_after_flush(s);
}

static void cmd_vrfy(sk_session *s, const char *args)
{
    if (!*args) {
        sk_sess_reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    /* RFC 5321 3.5.3: 252 when we will not verify. */
    sk_sess_reply(s, 252, "2.5.0",
                  "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(sk_session *s, const char *args)
{
    sk_sess_reply(s, 502, "5.5.1", "EXPN not implemented");
}

static void cmd_help(sk_session *s, const char *args)
{
    sk_sess_reply(s, 214, "2.0.0",
                  "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP "
                  "STARTTLS AUTH; see RFC 5321");
}

/* ---- accessors ---- */

const char *sk_session_id(const sk_session *s)
{
    return s->id;
}
const char *sk_session_peer(const sk_session *s)
{
    return s->peer;
}
int sk_session_peer_port(const sk_session *s)
{
    return s->port;
}
const char *sk_session_helo(const sk_session *s)
{
    return s->helo ? s->helo : "";
}
int sk_session_tls(const sk_session *s)
{
    return s->tls;
}
const char *sk_session_tls_version(const sk_session *s)
{
    return s->tls_version;
}
const char *sk_session_tls_cipher(const sk_session *s)
{
    return s->tls_cipher;
}
const char *sk_session_auth_user(const sk_session *s)
{
    return s->auth_user ? s->auth_user : "";
}
sk_listen_kind sk_session_kind(const sk_session *s)
{
    return s->kind;
}
sk_server *sk_session_server(const sk_session *s)
{
    return s->srv;
}
void *sk_session_user(const sk_session *s)
{
    return s->user;
}
void sk_session_set_user(sk_session *s, void *user)
{
    s->user = user;
}
