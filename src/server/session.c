/* One SMTP server session from accept to close: the bufferevent's callbacks,
 * input read by state, the state setter, replies, limits and timeouts. */
#include "server/session_int.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const state_names[] = {"new",  "delay", "tls",  "connected", "ready",  "mail",
                                          "auth", "data",  "bdat", "wait",      "closing"};
_Static_assert(sizeof state_names / sizeof state_names[0] == SS__COUNT, "one name per state");

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void session_free(sk_session *s);
static void end_timeout(sk_session *s);

static void set_timeouts(sk_session *s)
{
    unsigned ms = s->cfg->command_timeout_ms;
    if (s->state == SS_CONNECTED) ms = s->cfg->greeting_timeout_ms;
    if (s->state == SS_DATA || s->state == SS_BDAT) ms = s->cfg->data_timeout_ms;
    struct timeval tv = sk_server_timeval(ms);
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
    if (sk_reply_class_of(code) >= SK_REPLY_TRANSIENT) s->idle++;
}

static void reply_v(sk_session *s, int code, const char *enh, const char *fmt, va_list ap)
    SK_PRINTF(4, 0);
static void reply_v(sk_session *s, int code, const char *enh, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    sk_sess_reply_text(s, code, enh, text);
}

void sk_sess_reply(sk_session *s, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_v(s, code, enh, fmt, ap);
    va_end(ap);
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
    if (sk_reply_class_of(r->code) == SK_REPLY_INVALID) {
        sk_log(logger(s), SK_LOG_ERR, "%s server hook-error hook=%s code=%d", s->id, hook, r->code);
        reply_check(r);
    }
    if (sk_reply_class_of(r->code) < SK_REPLY_TRANSIENT) return 0;
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

void sk_sess_end(sk_session *s, int code, const char *enh, const char *fmt, ...)
{
    sk_sess_tx_reset(s);
    va_list ap;
    va_start(ap, fmt);
    reply_v(s, code, enh, fmt, ap);
    va_end(ap);
    sk_sess_close_after_flush(s);
}

void sk_sess_bad_line(sk_session *s, const char *text)
{
    sk_sess_reply(s, 500, "5.5.2", "%s", text);
    if (s->state == SS_AUTH) sk_sess_set_state(s, rest_state(s));
}

/* The server is stopping: a session at rest ends now (RFC 5321 3.8). */
int sk_sess_maybe_stop(sk_session *s)
{
    if (!s->srv->stopping || in_tx(s) || (s->state != SS_CONNECTED && s->state != SS_READY))
        return 0;
    sk_sess_end(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
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
    s->accepted_ms = sk_now_ms();
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
    sk_log(logger(s), SK_LOG_INFO, "%s server connect peer=%s port=%d listener=%s", s->id, s->peer,
           s->port, sk_server_kind_name(kind));
    sk_sess_set_state(s, kind == SK_LISTEN_SMTPS ? SS_TLS : SS_CONNECTED);
    bufferevent_enable(s->bev, EV_READ);

    if (limit) {
        s->refused = 1;
        sk_log(logger(s), SK_LOG_WARN, "%s server refuse peer=%s limit=%s", s->id, s->peer, limit);
        sk_sess_end(s, 421, "4.7.0", "%s Too many connections, try again later", s->cfg->hostname);
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
        struct timeval tv = sk_server_timeval(s->cfg->greeting_delay_ms);
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
    buf_wipe(&s->sasl);
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

/* RFC 5321 4.5.3.2: the client said nothing, or too little, for too long. */
static void end_timeout(sk_session *s)
{
    sk_sess_end(s, 421, "4.4.2", "%s Timeout, closing connection", s->cfg->hostname);
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
        end_timeout(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) sk_sess_tls_error(s);
    if (s->state == SS_DATA || s->state == SS_BDAT)
        sk_log(logger(s), SK_LOG_INFO, "%s server lost peer=%s state=%s", s->id, s->peer,
               state_names[s->state]);
    connection_gone(s);
}

void sk_sess_too_slow(sk_session *s, const char *what)
{
    sk_log(logger(s), SK_LOG_INFO, "%s server too-slow peer=%s state=%s what=%s", s->id, s->peer,
           state_names[s->state], what);
    end_timeout(s);
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

void sk_sess_wait(sk_session *s)
{
    sk_sess_set_state(s, SS_WAIT);
    /* Keep reading, so that a client that leaves is noticed, but only a
     * little: pipelined commands wait for the reply. */
    bufferevent_setwatermark(s->bev, EV_READ, 0, SK_SERVER_WAIT_READ_OCTETS);
}

sk_err sk_session_reply(sk_session *s, const sk_reply *r)
{
    if (s->state != SS_WAIT) return SK_ERR_STATE;
    sk_reply rr = *r;
    reply_check(&rr);
    if (s->gone) {
        if (!s->pending_user) {
            sk_log(logger(s), SK_LOG_INFO, "%s server message-reply-lost reply=%d", s->id, rr.code);
            s->msg_started = 0;
        }
        session_free(s);
        return SK_OK;
    }
    if (s->pending_user)
        sk_sess_auth_answer(s, *r); /* AUTH has a fallback of its own: 454 */
    else
        sk_sess_msg_done(s, &rr);
    bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
    if (s->state == SS_READY) sk_sess_process(s);
    return SK_OK;
}

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
            sk_sess_end(s, 554, "5.5.0", "%s Protocol error: talking before the greeting",
                        s->cfg->hostname);
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
                sk_sess_bad_line(s, "Line too long");
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
            sk_sess_bad_line(s, "Line too long");
            continue;
        }
        char line[SK_SMTP_LINE_MAX_OCTETS + 1];
        evbuffer_remove(in, line, n);
        line[n] = '\0';
        /* RFC 5321 4.1.1.10: QUIT gets its 221 even past the idle limit. */
        int quit = !strncasecmp(line, "QUIT", 4) &&
                   (line[4] == '\0' || line[4] == '\r' || line[4] == '\n' || line[4] == ' ');
        if (s->idle >= s->cfg->max_idle_commands && s->state != SS_AUTH && !quit) {
            OPENSSL_cleanse(line, n);
            sk_log(logger(s), SK_LOG_INFO, "%s server idle-limit peer=%s commands=%u", s->id,
                   s->peer, s->idle);
            sk_sess_end(s, 421, "4.7.0", "%s Too many commands without progress, closing",
                        s->cfg->hostname);
            return;
        }
        sk_sess_handle_line(s, line, n);
        OPENSSL_cleanse(line, n); /* it may have carried AUTH data */
    }
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
uint64_t sk_session_age_ms(const sk_session *s)
{
    return sk_now_ms() - s->accepted_ms;
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
