/* One SMTP server session: the command table, the state machine, DATA and
 * BDAT streams, STARTTLS and AUTH, limits and timeouts (RFC 5321 + ESMTP). */
#include "server/server_int.h"
#include "sasl/sasl_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum sstate {
    SS_NEW,       /* accepted, being set up */
    SS_DELAY,     /* greeting delay: a client that talks now is an early talker */
    SS_TLS,       /* TLS handshake in progress */
    SS_CONNECTED, /* banner sent, no HELO/EHLO yet */
    SS_READY,     /* after HELO/EHLO, no transaction */
    SS_MAIL,      /* in a transaction (after MAIL) */
    SS_AUTH,      /* SASL exchange: the next line is a response */
    SS_DATA,      /* reading the DATA stream */
    SS_BDAT,      /* reading a BDAT chunk */
    SS_WAIT,      /* waiting for the program's asynchronous reply */
    SS_CLOSING,   /* last reply being flushed */
    SS__COUNT
} sstate;

static const char *const state_names[] = {"new",  "delay", "tls",  "connected", "ready",  "mail",
                                          "auth", "data",  "bdat", "wait",      "closing"};
_Static_assert(sizeof state_names / sizeof state_names[0] == SS__COUNT, "one name per state");

/* What became of the message being received. */
typedef enum msg_state {
    MSG_NONE,    /* no message open */
    MSG_OPEN,    /* receiving, all well */
    MSG_BAD_EOL, /* bare CR or LF seen (RFC 5321 2.3.8) */
    MSG_BAD_NUL, /* NUL seen (RFC 2045 2.7, 2.8; no BINARYMIME offered) */
    MSG_TOO_BIG, /* over max_message_size (RFC 1870) */
    MSG_FAILED,  /* on_data_chunk failed */
    MSG_REFUSED  /* on_data_start refused (BDAT: its reply is kept) */
} msg_state;

struct sk_session {
    sk_session *next, *prev;
    sk_server *srv;
    sk_server_cfg *cfg;
    struct bufferevent *bev;
    struct event *timer; /* greeting delay; flushing a TLS close */
    sstate state;
    sk_listen_kind kind;
    char id[16];
    char peer[INET6_ADDRSTRLEN];
    int port;
    int loopback;
    int refused; /* over a connection limit: not counted per address */
    int gone;    /* client went away while a reply was pending */
    int discarding, throttled, close_polls;
    unsigned idle;
    unsigned commands;
    char *helo;
    int esmtp;
    int tls;
    char tls_version[16];
    char tls_cipher[64];
    char *auth_user;
    void *user;
    /* SASL exchange */
    int sasl_mech;      /* 1 PLAIN, 2 LOGIN */
    char *pending_user; /* on_auth answers later: who is being checked */
    sk_buf sasl;        /* LOGIN: the user name between steps */
    /* transaction */
    sk_path *from; /* allocated at MAIL: sessions at rest stay small */
    sk_mail_params *mp;
    sk_envelope_rcpt *rcpts;
    size_t nrcpts, cap_rcpts;
    size_t rcpt_over; /* RCPTs past max_recipients (RFC 5321 4.5.3.1.10) */
    msg_state msg;
    void *msg_ctx;
    int msg_started; /* on_data_start accepted: on_data_end is owed */
    int bdat_mode;
    sk_reply *refusal;
    uint64_t msg_size;
    sk_buf chunk;
    sk_data_decoder dec;
    uint64_t bdat_left;
    int bdat_last;
    /* Slow senders: when the pending command line began, when DATA began
     * and how many octets it has brought (SK_SERVER_DATA_MIN_OCTETS_PER_S). */
    uint64_t line_started_ms, data_started_ms, data_octets;
};

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
static void cmd_data(sk_session *s, const char *args);
static void cmd_bdat(sk_session *s, const char *args);
static void cmd_rset(sk_session *s, const char *args);
static void cmd_noop(sk_session *s, const char *args);
static void cmd_quit(sk_session *s, const char *args);
static void cmd_vrfy(sk_session *s, const char *args);
static void cmd_expn(sk_session *s, const char *args);
static void cmd_help(sk_session *s, const char *args);
static void cmd_starttls(sk_session *s, const char *args);
static void cmd_auth(sk_session *s, const char *args);
static void bdat_start(sk_session *s, const char *args, const sk_reply *refuse);

static const cmd_def commands[] = {
    [SK_CMD_UNKNOWN] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, NULL},
    [SK_CMD_EHLO] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_ehlo},
    [SK_CMD_HELO] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_helo},
    [SK_CMD_MAIL] = {0, cmd_mail},
    [SK_CMD_RCPT] = {CF_IN_TX, cmd_rcpt},
    [SK_CMD_DATA] = {CF_IN_TX, cmd_data},
    [SK_CMD_BDAT] = {CF_IN_TX | CF_ESMTP, cmd_bdat},
    [SK_CMD_RSET] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_rset},
    [SK_CMD_NOOP] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_noop},
    [SK_CMD_QUIT] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX, cmd_quit},
    [SK_CMD_VRFY] = {CF_PRE_HELO | CF_IN_TX | CF_IDLE, cmd_vrfy},
    [SK_CMD_EXPN] = {CF_PRE_HELO | CF_IN_TX | CF_IDLE, cmd_expn},
    [SK_CMD_HELP] = {CF_PRE_HELO | CF_PRE_TLS | CF_PRE_AUTH | CF_IN_TX | CF_IDLE, cmd_help},
    [SK_CMD_STARTTLS] = {CF_PRE_TLS | CF_PRE_AUTH | CF_ESMTP, cmd_starttls},
    [SK_CMD_AUTH] = {CF_PRE_TLS | CF_PRE_AUTH | CF_ESMTP, cmd_auth}, /* checks TLS itself (538) */
};
_Static_assert(sizeof commands / sizeof commands[0] == SK_CMD__COUNT, "one row per command");

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void process(sk_session *s);
static void session_free(sk_session *s);
static void auth_result(sk_session *s, const char *mech, const char *user, sk_reply r);

static const sk_logger *logger(const sk_session *s)
{
    return &s->cfg->logger;
}

static void set_timeouts(sk_session *s)
{
    unsigned ms = s->cfg->command_timeout_ms;
    if (s->state == SS_CONNECTED) ms = s->cfg->greeting_timeout_ms;
    if (s->state == SS_DATA || s->state == SS_BDAT) ms = s->cfg->data_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* The one place the session state changes (and it is logged). */
static void set_state(sk_session *s, sstate to)
{
    if (s->state == to) return;
    sk_log(logger(s), SK_LOG_DEBUG, "%s server state from=%s to=%s", s->id, state_names[s->state],
           state_names[to]);
    s->state = to;
    if (s->bev) set_timeouts(s);
}

/* Write a reply; text lines separated by '\n' become a multi-line reply
 * (RFC 5321 4.2.1). Error replies count against the idle-command limit. */
static void reply_text(sk_session *s, int code, const char *enh, const char *text)
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

static void reply(sk_session *s, int code, const char *enh, const char *fmt, ...) SK_PRINTF(4, 5);
static void reply(sk_session *s, int code, const char *enh, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    reply_text(s, code, enh, text);
}

static void reply_r(sk_session *s, const sk_reply *r)
{
    reply_text(s, r->code, r->enhanced, r->text);
}

/* A hook's answer: 2xx goes on (the caller sends its own success reply),
 * anything else is sent as the refusal. A hook may not answer "later"
 * except on_data_end. */
static int hook_refused(sk_session *s, sk_reply *r, const char *hook)
{
    if (r->code == 0 || sk_reply_class_of(r->code) == SK_REPLY_INVALID) {
        sk_log(logger(s), SK_LOG_ERR, "%s server hook-error hook=%s code=%d", s->id, hook, r->code);
        *r = sk_reply_make(451, "4.3.0", "Internal error");
    }
    if (sk_reply_class_of(r->code) < SK_REPLY_TRANSIENT) return 0;
    reply_r(s, r);
    return 1;
}

static void close_after_flush(sk_session *s)
{
    set_state(s, SS_CLOSING);
    bufferevent_disable(s->bev, EV_READ);
    /* Never free here: callers may still look at the session. */
    if (!evbuffer_get_length(bufferevent_get_output(s->bev))) {
        struct timeval tv = {0, 0};
        evtimer_add(s->timer, &tv);
    }
}

static void msg_abort(sk_session *s)
{
    sk_server *srv = s->srv;
    if (s->msg_started && srv->on_data_end) srv->on_data_end(s, s->msg_ctx, 0, srv->on_data_ctx);
    s->msg_started = 0;
    s->msg_ctx = NULL;
    s->msg = MSG_NONE;
    s->bdat_mode = 0;
    s->data_started_ms = s->data_octets = 0;
    sk_free(s->refusal);
    s->refusal = NULL;
    sk_buf_free(&s->chunk);
}

static void tx_reset(sk_session *s)
{
    msg_abort(s);
    sk_free(s->from);
    sk_free(s->mp);
    sk_free(s->rcpts);
    s->from = NULL;
    s->mp = NULL;
    s->rcpts = NULL;
    s->nrcpts = s->cap_rcpts = s->rcpt_over = 0;
}

static int in_tx(const sk_session *s)
{
    return s->from != NULL;
}

/* The server is stopping: a session at rest ends now (RFC 5321 3.8). */
static int maybe_stop(sk_session *s)
{
    if (!s->srv->stopping || in_tx(s) || (s->state != SS_CONNECTED && s->state != SS_READY))
        return 0;
    reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
    close_after_flush(s);
    return 1;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

static void send_banner(sk_session *s)
{
    reply(s, 220, NULL, "%s ESMTP SMTPKit", s->cfg->hostname);
    set_state(s, SS_CONNECTED);
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
    if (kind == SK_LISTEN_SMTPS) {
        SSL *ssl = SSL_new(s->cfg->ssl);
        if (ssl)
            s->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
        if (!s->bev) SSL_free(ssl);
    } else {
        s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!s->bev) {
        evutil_closesocket(fd);
        session_free(s);
        return;
    }
    s->timer = evtimer_new(srv->base, timer_cb, s);
    if (!s->timer) {
        session_free(s);
        return;
    }
    if (kind == SK_LISTEN_SMTPS) bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
    static const char *const kinds[] = {"", "smtp", "submission", "", "smtps"};
    sk_log(logger(s), SK_LOG_INFO, "%s server connect peer=%s port=%d listener=%s", s->id, s->peer,
           s->port, kinds[kind]);
    set_state(s, kind == SK_LISTEN_SMTPS ? SS_TLS : SS_CONNECTED);
    bufferevent_enable(s->bev, EV_READ);

    if (limit) {
        s->refused = 1;
        sk_log(logger(s), SK_LOG_WARN, "%s server refuse peer=%s limit=%s", s->id, s->peer, limit);
        reply(s, 421, "4.7.0", "%s Too many connections, try again later", s->cfg->hostname);
        close_after_flush(s);
        return;
    }
    if (srv->on_connect) {
        sk_reply r = srv->on_connect(s, sa, srv->on_connect_ctx);
        if (hook_refused(s, &r, "connect")) {
            sk_log(logger(s), SK_LOG_INFO, "%s server refuse peer=%s reply=%d", s->id, s->peer,
                   r.code);
            close_after_flush(s);
            return;
        }
    }
    if (kind == SK_LISTEN_SMTPS) return; /* the banner follows the handshake */
    if (s->cfg->greeting_delay_ms) {
        /* Early talkers (RFC 5321 4.3.1: the client waits for the banner). */
        set_state(s, SS_DELAY);
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
        process(s);
        return;
    }
    if (s->state == SS_CLOSING) write_cb(s->bev, s);
}

static void session_free(sk_session *s)
{
    sk_server *srv = s->srv;
    tx_reset(s);
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
    maybe_stop(s);
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
        process(s);
    }
}

static void tls_done(sk_session *s)
{
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    s->tls = 1;
    snprintf(s->tls_version, sizeof s->tls_version, "%s", SSL_get_version(ssl));
    snprintf(s->tls_cipher, sizeof s->tls_cipher, "%s", SSL_get_cipher_name(ssl));
    sk_log(logger(s), SK_LOG_INFO, "%s server tls version=%s cipher=%s", s->id, s->tls_version,
           s->tls_cipher);
    if (s->kind == SK_LISTEN_SMTPS)
        send_banner(s);
    else
        set_state(s, SS_CONNECTED); /* RFC 3207 4.2: start over with EHLO */
    /* The client's first command may have come with the end of the
     * handshake, before this event. */
    process(s);
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
        msg_abort(s);
        reply(s, 421, "4.4.2", "%s Timeout, closing connection", s->cfg->hostname);
        close_after_flush(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = ERR_get_error();
        if (s->state == SS_TLS || e) {
            char buf[200] = "";
            if (e) ERR_error_string_n(e, buf, sizeof buf);
            ERR_clear_error();
            sk_log(logger(s), SK_LOG_INFO, "%s server tls-failed peer=%s error=\"%s\"", s->id,
                   s->peer, buf);
        }
    }
    if (s->state == SS_DATA || s->state == SS_BDAT)
        sk_log(logger(s), SK_LOG_INFO, "%s server lost peer=%s state=%s", s->id, s->peer,
               state_names[s->state]);
    connection_gone(s);
}

/* A client trickling octets in keeps the idle timeout from firing: end it
 * the way a timeout does. */
static void too_slow(sk_session *s, const char *what)
{
    sk_log(logger(s), SK_LOG_INFO, "%s server too-slow peer=%s state=%s what=%s", s->id, s->peer,
           state_names[s->state], what);
    msg_abort(s);
    reply(s, 421, "4.4.2", "%s Timeout, closing connection", s->cfg->hostname);
    close_after_flush(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    process(arg);
}

/* ---- message stream ---- */

static void envelope_fill(const sk_session *s, sk_envelope *env)
{
    memset(env, 0, sizeof *env);
    env->from = *s->from;
    env->params = *s->mp;
    env->rcpts = s->rcpts;
    env->nrcpts = s->nrcpts;
    env->session_id = s->id;
    env->helo = s->helo ? s->helo : "";
    env->peer_addr = s->peer;
    static const char *const protos[2][2][2] = {
        {{"ESMTP", "ESMTPA"}, {"ESMTPS", "ESMTPSA"}},
        {{"UTF8SMTP", "UTF8SMTPA"}, {"UTF8SMTPS", "UTF8SMTPSA"}}};
    env->protocol = s->esmtp ? protos[s->mp->smtputf8 != 0][s->tls][s->auth_user != NULL] : "SMTP";
    env->tls = s->tls;
    env->tls_version = s->tls_version;
    env->tls_cipher = s->tls_cipher;
    env->auth_user = s->auth_user ? s->auth_user : "";
    env->kind = s->kind;
    env->bdat = s->bdat_mode;
    env->server_name = s->cfg->hostname;
    env->peer_port = s->port;
}

/* Open the message with the program. 0 and a reply sent (or kept, for
 * BDAT) when refused. */
static int msg_open(sk_session *s, int bdat)
{
    sk_server *srv = s->srv;
    s->bdat_mode = bdat;
    s->msg_size = 0;
    sk_data_decoder_init(&s->dec, bdat);
    sk_reply r;
    if (!srv->on_data_start || !srv->on_data_chunk || !srv->on_data_end) {
        r = sk_reply_make(554, "5.3.2", "Not accepting messages");
    } else {
        sk_envelope env;
        envelope_fill(s, &env);
        s->msg_ctx = NULL;
        r = srv->on_data_start(s, &env, &s->msg_ctx, srv->on_data_ctx);
        if (r.code == 0 || sk_reply_class_of(r.code) == SK_REPLY_INVALID)
            r = sk_reply_make(451, "4.3.0", "Internal error");
    }
    if (sk_reply_class_of(r.code) >= SK_REPLY_TRANSIENT) {
        sk_log(logger(s), SK_LOG_INFO, "%s server data-refused reply=%d", s->id, r.code);
        if (bdat) {
            /* BDAT: the chunk is read first, then refused. */
            s->msg = MSG_REFUSED;
            s->refusal = sk_malloc(sizeof *s->refusal);
            if (s->refusal) *s->refusal = r;
            return 1;
        }
        reply_r(s, &r);
        return 0;
    }
    if (sk_buf_reserve(&s->chunk, SK_SERVER_CHUNK_OCTETS) != SK_OK) {
        srv->on_data_end(s, s->msg_ctx, 0, srv->on_data_ctx);
        s->msg_ctx = NULL;
        reply(s, 451, "4.3.0", "Out of memory");
        return 0;
    }
    s->msg_started = 1;
    s->msg = MSG_OPEN;
    return 1;
}

static void chunk_flush(sk_session *s)
{
    if (s->msg == MSG_OPEN && s->chunk.len) {
        sk_server *srv = s->srv;
        if (srv->on_data_chunk(s, s->msg_ctx, s->chunk.data, s->chunk.len, srv->on_data_ctx)) {
            sk_log(logger(s), SK_LOG_WARN, "%s server data-chunk-failed", s->id);
            s->msg = MSG_FAILED;
        }
    }
    s->chunk.len = 0;
}

/* Body octets, already decoded. */
static void emit(sk_session *s, const char *p, size_t n)
{
    if (s->msg != MSG_OPEN || !n) return;
    s->msg_size += n;
    if (s->msg_size > s->cfg->max_message_size) {
        s->msg = MSG_TOO_BIG;
        return;
    }
    while (n) {
        if (s->chunk.len == SK_SERVER_CHUNK_OCTETS) chunk_flush(s);
        if (s->msg != MSG_OPEN) return;
        size_t room = SK_SERVER_CHUNK_OCTETS - s->chunk.len;
        size_t k = n < room ? n : room;
        memcpy(s->chunk.data + s->chunk.len, p, k);
        s->chunk.len += k;
        p += k;
        n -= k;
    }
}

/* A bare CR or LF or a NUL marks the whole message bad; it is refused at
 * its end, and nothing more of it reaches the program. */
static void check_octets(sk_session *s)
{
    if (!s->dec.bad || s->msg != MSG_OPEN) return;
    if (s->dec.bad & SK_DATA_NUL) {
        s->msg = MSG_BAD_NUL;
        sk_log(logger(s), SK_LOG_INFO, "%s server bad-octet peer=%s kind=nul", s->id, s->peer);
        return;
    }
    s->msg = MSG_BAD_EOL;
    sk_log(logger(s), SK_LOG_INFO, "%s server bad-eol peer=%s kind=%s", s->id, s->peer,
           s->dec.bad & SK_DATA_BARE_LF ? "bare-lf" : "bare-cr");
}

static void msg_finish(sk_session *s);

/* Feed up to limit octets of input to the decoder. Returns the octets
 * consumed; *end when DATA's end marker was among them. */
static size_t decode_input(sk_session *s, struct evbuffer *in, size_t limit, int *end)
{
    struct evbuffer_iovec v[8];
    int n = evbuffer_peek(in, -1, NULL, v, 8);
    if (n > 8) n = 8; /* peek tells how many it would need */
    size_t used = 0;
    char out[4096 + 1];
    *end = 0;
    for (int i = 0; i < n && !*end && used < limit; i++) {
        const char *p = v[i].iov_base;
        size_t len = v[i].iov_len;
        if (len > limit - used) len = limit - used;
        while (len && !*end) {
            size_t olen, take = len < sizeof out - 1 ? len : sizeof out - 1;
            size_t k = sk_data_decode(&s->dec, p, take, out, &olen, end);
            emit(s, out, olen);
            p += k;
            len -= k;
            used += k;
        }
    }
    evbuffer_drain(in, used);
    check_octets(s);
    return used;
}

/* DATA: consume input up to the end marker CRLF "." CRLF (RFC 5321 4.1.1.4,
 * 4.5.2). A bare CR or LF never ends a line here (RFC 5321 2.3.8); it marks
 * the message bad, and the whole message is refused at its end: so
 * "\n.\n" or "\r\n.\n" cannot end the message and smuggle commands. A
 * NUL does the same, so that "\r\n\0.\r\n" cannot end it for a receiver
 * further on that drops NULs.
 * Returns 1 when the caller should look at the input again. */
static int data_consume(sk_session *s, struct evbuffer *in)
{
    int end;
    size_t before = evbuffer_get_length(in);
    uint64_t now = sk_now_ms();
    if (!s->data_started_ms) s->data_started_ms = now;
    decode_input(s, in, SIZE_MAX, &end);
    s->data_octets += before - evbuffer_get_length(in);
    if (end) {
        s->data_started_ms = s->data_octets = 0;
        msg_finish(s);
        return 1;
    }
    uint64_t ms = now - s->data_started_ms;
    if (ms > s->cfg->data_timeout_ms &&
        s->data_octets * 1000 / ms < SK_SERVER_DATA_MIN_OCTETS_PER_S) {
        too_slow(s, "data");
        return 0;
    }
    if (evbuffer_get_length(in)) return 1; /* more than the peeked extents */
    chunk_flush(s);
    return 0;
}

/* BDAT: exactly the announced octets (RFC 3030 2); no dot-stuffing, but
 * line ends must still be CRLF and NUL is refused (no BINARYMIME). */
static int bdat_consume(sk_session *s, struct evbuffer *in)
{
    int end;
    uint64_t want = s->bdat_left, now = sk_now_ms();
    /* The rate is over the whole message, from its first BDAT: one chunk
     * trickling in and many tiny chunks are the same slowloris as DATA. */
    if (!s->data_started_ms) s->data_started_ms = now;
    size_t got = decode_input(s, in, want < SIZE_MAX ? (size_t)want : SIZE_MAX, &end);
    s->bdat_left -= got;
    s->data_octets += got;
    uint64_t ms = now - s->data_started_ms;
    if ((s->bdat_left || !s->bdat_last) && ms > s->cfg->data_timeout_ms &&
        s->data_octets * 1000 / ms < SK_SERVER_DATA_MIN_OCTETS_PER_S) {
        too_slow(s, "bdat");
        return 0;
    }
    if (s->bdat_left) {
        if (evbuffer_get_length(in)) return 1; /* more than the peeked extents */
        chunk_flush(s);
        return 0;
    }
    if (s->bdat_last) {
        char out[1];
        size_t olen;
        sk_data_decoder_finish(&s->dec, out, &olen);
        emit(s, out, olen);
        check_octets(s);
        msg_finish(s);
        return 1;
    }
    chunk_flush(s);
    set_state(s, SS_MAIL);
    if (s->msg == MSG_OPEN)
        reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->msg_size);
    else
        msg_finish(s); /* the rest of the message is refused the same way */
    return 1;
}

static void msg_reply_done(sk_session *s, const sk_reply *r)
{
    reply_r(s, r);
    sk_log(logger(s), SK_LOG_INFO, "%s server message size=%llu rcpts=%zu reply=%d", s->id,
           (unsigned long long)s->msg_size, s->nrcpts, r->code);
    if (sk_reply_class_of(r->code) == SK_REPLY_SUCCESS) s->idle = 0;
    s->msg_started = 0;
    tx_reset(s);
    set_state(s, s->helo ? SS_READY : SS_CONNECTED); /* a BDAT refused before EHLO */
    maybe_stop(s);
}

/* The message has ended (or, for BDAT, failed): answer it. */
static void msg_finish(sk_session *s)
{
    sk_server *srv = s->srv;
    chunk_flush(s);
    sk_reply r;
    switch (s->msg) {
    case MSG_OPEN:
        sk_buf_free(&s->chunk);
        r = srv->on_data_end(s, s->msg_ctx, 1, srv->on_data_ctx);
        if (r.code == 0) {
            /* Keep reading, so that a client that leaves is noticed, but
             * only a little: pipelined commands wait for the reply. */
            set_state(s, SS_WAIT);
            bufferevent_setwatermark(s->bev, EV_READ, 0, SK_SERVER_WAIT_READ_OCTETS);
            return;
        }
        if (sk_reply_class_of(r.code) == SK_REPLY_INVALID)
            r = sk_reply_make(451, "4.3.0", "Internal error");
        if (r.code == 250 && !strcmp(r.enhanced, "2.0.0") && !strcmp(r.text, "Ok"))
            r = sk_reply_make(250, "2.0.0", "Ok: message accepted");
        break;
    case MSG_BAD_EOL:
        r = sk_reply_make(554, "5.6.0", "Message contains bare CR or LF (RFC 5321 2.3.8)");
        break;
    case MSG_BAD_NUL:
        r = sk_reply_make(554, "5.6.0", "Message contains a NUL octet (RFC 2045 2.8)");
        break;
    case MSG_TOO_BIG:
        r = sk_reply_make(552, "5.3.4", "Message size exceeds fixed maximum message size");
        break;
    case MSG_REFUSED:
        r = s->refusal ? *s->refusal : sk_reply_make(451, "4.3.0", "Internal error");
        break;
    default:
        r = sk_reply_make(451, "4.3.0", "Local error in processing");
        break;
    }
    if (s->msg != MSG_OPEN) msg_abort(s);
    msg_reply_done(s, &r);
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
        char *user = s->pending_user;
        s->pending_user = NULL;
        set_state(s, SS_READY);
        auth_result(s, s->sasl_mech == 1 ? "PLAIN" : "LOGIN", user, *r);
        sk_free(user);
        bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
        if (s->state == SS_READY) process(s);
        return SK_OK;
    }
    if (s->gone) {
        sk_log(logger(s), SK_LOG_INFO, "%s server message-reply-lost reply=%d", s->id, rr.code);
        s->msg_started = 0;
        session_free(s);
        return SK_OK;
    }
    msg_reply_done(s, &rr);
    bufferevent_setwatermark(s->bev, EV_READ, 0, 0);
    if (s->state == SS_READY) process(s);
    return SK_OK;
}

/* ---- commands ---- */

static void handle_line(sk_session *s, char *line, size_t n);

static void process(sk_session *s)
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
            reply(s, 554, "5.5.0", "%s Protocol error: talking before the greeting",
                  s->cfg->hostname);
            close_after_flush(s);
            return;
        case SS_DATA:
            if (!data_consume(s, in)) return;
            continue;
        case SS_BDAT:
            if (!bdat_consume(s, in)) return;
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
                too_slow(s, "command");
                return;
            }
            /* RFC 5321 4.5.3.1.4/4.5.3.1.6: no line is longer than 1000. */
            if (s->discarding) {
                evbuffer_drain(in, avail);
            } else if (avail >= SK_SMTP_LINE_MAX_OCTETS) {
                evbuffer_drain(in, avail);
                s->discarding = 1;
                reply(s, 500, "5.5.2", "Line too long");
                if (s->state == SS_AUTH) set_state(s, s->helo ? SS_READY : SS_CONNECTED);
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
            reply(s, 500, "5.5.2", "Line too long");
            if (s->state == SS_AUTH) set_state(s, s->helo ? SS_READY : SS_CONNECTED);
            continue;
        }
        char line[SK_SMTP_LINE_MAX_OCTETS + 1];
        evbuffer_remove(in, line, n);
        line[n] = '\0';
        if (s->idle >= s->cfg->max_idle_commands && s->state != SS_AUTH) {
            OPENSSL_cleanse(line, n);
            sk_log(logger(s), SK_LOG_INFO, "%s server idle-limit peer=%s commands=%u", s->id,
                   s->peer, s->idle);
            reply(s, 421, "4.7.0", "%s Too many commands without progress, closing",
                  s->cfg->hostname);
            tx_reset(s);
            close_after_flush(s);
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

static int tls_required(const sk_session *s)
{
    return s->kind == SK_LISTEN_SUBMISSION && s->cfg->ssl && !s->tls &&
           !(s->cfg->auth_plaintext_loopback && s->loopback);
}

static void sasl_line(sk_session *s, const char *line);

static void handle_line(sk_session *s, char *line, size_t n)
{
    s->commands++;
    /* RFC 5321 2.3.8: lines end with CRLF, and CR or LF never appear alone. */
    if (n < 2 || line[n - 2] != '\r') {
        reply(s, 500, "5.5.2", "Line must end with CRLF");
        if (s->state == SS_AUTH) set_state(s, s->helo ? SS_READY : SS_CONNECTED);
        return;
    }
    line[n - 2] = '\0';
    if (memchr(line, '\r', n - 2) || strlen(line) != n - 2) {
        reply(s, 500, "5.5.2", "Bare CR or NUL in command");
        if (s->state == SS_AUTH) set_state(s, s->helo ? SS_READY : SS_CONNECTED);
        return;
    }
    if (s->state == SS_AUTH) {
        sasl_line(s, line);
        return;
    }
    if (maybe_stop(s)) return;
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
        reply(s, 500, "5.5.2", "Line too long");
        return;
    }
    const cmd_def *c = &commands[v];
    if (v == SK_CMD_UNKNOWN) {
        reply(s, 500, "5.5.2", "Command unrecognized");
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
    else if (!(c->flags & CF_PRE_TLS) && tls_required(s))
        gate = sk_reply_make(530, "5.7.0", "Must issue a STARTTLS command first");
    else if (!(c->flags & CF_PRE_AUTH) && s->kind != SK_LISTEN_SMTP && !s->auth_user)
        gate = sk_reply_make(530, "5.7.0", "Authentication required");
    if (gate.code) {
        /* A refused BDAT's chunk follows all the same (RFC 3030 2): it is
         * read, never run as commands. */
        if (v == SK_CMD_BDAT)
            bdat_start(s, args, &gate);
        else
            reply_r(s, &gate);
        return;
    }
    if (!(c->flags & CF_IN_TX) && in_tx(s)) {
        reply(s, 503, "5.5.1", "Not allowed in a mail transaction");
        return;
    }
    /* RFC 3030 2: after a BDAT, only BDAT, RSET, NOOP and QUIT. */
    if (s->bdat_mode && v != SK_CMD_BDAT && v != SK_CMD_RSET && v != SK_CMD_NOOP &&
        v != SK_CMD_QUIT) {
        reply(s, 503, "5.5.1", "Only BDAT may follow BDAT");
        return;
    }
    c->handler(s, args);
}

static int no_args(sk_session *s, const char *args)
{
    if (args && *args) {
        reply(s, 501, "5.5.4", "No parameters allowed");
        return 0;
    }
    return 1;
}

static int auth_offered(const sk_session *s)
{
    return s->srv->on_auth && (s->tls || (s->cfg->auth_plaintext_loopback && s->loopback));
}

static int starttls_offered(const sk_session *s)
{
    return s->cfg->ssl && !s->tls && s->kind != SK_LISTEN_SMTPS;
}

static void greet(sk_session *s, const char *args, int esmtp)
{
    if (!*args) {
        reply(s, 501, "5.5.4", "Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    if (!sk_proto_helo_valid(args)) {
        reply(s, 501, "5.5.4", "Invalid domain name");
        return;
    }
    if (s->srv->on_helo) {
        sk_reply r = s->srv->on_helo(s, args, s->srv->on_helo_ctx);
        if (hook_refused(s, &r, "helo")) return;
    }
    tx_reset(s); /* RFC 5321 4.1.4: EHLO resets the transaction */
    if (s->helo) s->idle++;
    sk_free(s->helo);
    s->helo = sk_strdup(args);
    if (!s->helo) {
        reply(s, 451, "4.3.0", "Out of memory");
        return;
    }
    s->esmtp = esmtp;
    sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_LINE_MAX_OCTETS);
    if (sk_log_escape(&esc, args, strlen(args)) == SK_OK)
        sk_log(logger(s), SK_LOG_INFO, "%s server helo name=\"%s\" esmtp=%d", s->id,
               sk_buf_cstr(&esc), esmtp);
    sk_buf_free(&esc);
    set_state(s, SS_READY);
    if (!esmtp) {
        reply(s, 250, NULL, "%s", s->cfg->hostname);
        return;
    }
    char text[512];
    int len = snprintf(text, sizeof text,
                       "%s\nPIPELINING\nSIZE %llu\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\n",
                       s->cfg->hostname, (unsigned long long)s->cfg->max_message_size);
    if (starttls_offered(s)) len += snprintf(text + len, sizeof text - (size_t)len, "STARTTLS\n");
    /* RFC 4954 4 / RFC 3207 6: no AUTH in clear text on a network port. */
    if (auth_offered(s) && !s->auth_user)
        len += snprintf(text + len, sizeof text - (size_t)len, "AUTH PLAIN LOGIN\n");
    snprintf(text + len, sizeof text - (size_t)len, "CHUNKING\nDSN\nMT-PRIORITY");
    reply_text(s, 250, NULL, text);
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
    if (auth_offered(s)) ext |= SK_EXT_AUTH;
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
        reply(s, 451, "4.3.0", "Out of memory");
        goto out;
    }
    if (sk_proto_parse_mail(args, ext_mask(s), from, mp, &r) != SK_OK) {
        reply_r(s, &r);
        goto out;
    }
    if (mp->has_size && mp->size > s->cfg->max_message_size) {
        reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        goto out;
    }
    if (s->srv->on_mail) {
        r = s->srv->on_mail(s, from, mp, s->srv->on_mail_ctx);
        if (hook_refused(s, &r, "mail")) {
            log_path(s, "mail", from, r.code);
            goto out;
        }
    }
    s->from = from;
    s->mp = mp;
    from = NULL;
    mp = NULL;
    log_path(s, "mail", s->from, 250);
    set_state(s, SS_MAIL);
    reply(s, 250, "2.1.0", "Ok");
out:
    sk_free(from);
    sk_free(mp);
}

static void cmd_rcpt(sk_session *s, const char *args)
{
    if (!in_tx(s)) {
        reply(s, 503, "5.5.1", "Need MAIL before RCPT");
        return;
    }
    if (s->nrcpts >= s->cfg->max_recipients) {
        /* RFC 5321 4.5.3.1.10: the client sends the rest in a later
         * transaction, so these are no errors against the idle limit. */
        unsigned idle = s->idle;
        reply(s, 452, "4.5.3", "Too many recipients");
        if (s->rcpt_over++ < SK_SERVER_RCPT_OVERSHOOT_MAX) s->idle = idle;
        return;
    }
    sk_envelope_rcpt rc;
    sk_reply r;
    if (sk_proto_parse_rcpt(args, ext_mask(s), s->mp->smtputf8, &rc.path, &rc.params, &r) !=
        SK_OK) {
        reply_r(s, &r);
        return;
    }
    if (s->srv->on_rcpt) {
        r = s->srv->on_rcpt(s, &rc.path, &rc.params, s->srv->on_rcpt_ctx);
        if (hook_refused(s, &r, "rcpt")) {
            log_path(s, "rcpt", &rc.path, r.code);
            return;
        }
    }
    if (s->nrcpts == s->cap_rcpts) {
        size_t cap = s->cap_rcpts ? s->cap_rcpts * 2 : 4;
        sk_envelope_rcpt *n = sk_realloc(s->rcpts, cap * sizeof *n);
        if (!n) {
            reply(s, 452, "4.3.1", "Out of memory");
            return;
        }
        s->rcpts = n;
        s->cap_rcpts = cap;
    }
    s->rcpts[s->nrcpts++] = rc;
    log_path(s, "rcpt", &rc.path, 250);
    reply(s, 250, "2.1.5", "Ok");
}

static int tx_ready(sk_session *s)
{
    if (!in_tx(s)) {
        reply(s, 503, "5.5.1", "Need MAIL command");
        return 0;
    }
    if (!s->nrcpts) {
        reply(s, 554, "5.5.1", "No valid recipients"); /* RFC 2920 3.1 */
        return 0;
    }
    return 1;
}

static void cmd_data(sk_session *s, const char *args)
{
    if (!no_args(s, args) || !tx_ready(s)) return;
    if (!msg_open(s, 0)) return;
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    set_state(s, SS_DATA);
}

static void cmd_bdat(sk_session *s, const char *args)
{
    bdat_start(s, args, NULL);
}

/* BDAT, or a BDAT refused (with refuse) before it began: either way its
 * chunk is read. */
static void bdat_start(sk_session *s, const char *args, const sk_reply *refuse)
{
    /* RFC 3030 2: BDAT chunk-size [ SP "LAST" ]. */
    const char *p = args;
    uint64_t size = 0;
    int digits = 0, overflow = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p++ - '0');
        /* A size past 64 bits would wrap to a wrong chunk length. */
        if (size > (UINT64_MAX - d) / 10) overflow = 1;
        size = size * 10 + d;
        digits++;
    }
    int last = 0;
    if (*p == ' ' && !strcasecmp(p + 1, "LAST")) last = 1, p += 5;
    if (!digits || overflow || *p) {
        /* The chunk's length is unknown, so its octets cannot be told
         * from commands: the session cannot go on. */
        reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]; closing");
        tx_reset(s);
        close_after_flush(s);
        return;
    }
    s->bdat_left = size;
    s->bdat_last = last;
    if (!s->bdat_mode) {
        /* A refused BDAT still has its octets read, so they are never taken
         * for commands. */
        if (refuse || !in_tx(s) || !s->nrcpts) {
            s->msg = MSG_REFUSED;
            s->bdat_mode = 1;
            s->refusal = sk_malloc(sizeof *s->refusal);
            if (s->refusal)
                *s->refusal = refuse     ? *refuse
                              : in_tx(s) ? sk_reply_make(554, "5.5.1", "No valid recipients")
                                         : sk_reply_make(503, "5.5.1", "Need MAIL command");
        } else if (!msg_open(s, 1)) {
            /* Out of memory; its reply is sent: read and drop the chunk. */
            s->msg = MSG_REFUSED;
            s->bdat_mode = 1;
            s->refusal = NULL;
        }
    }
    set_state(s, SS_BDAT);
    if (!size) bdat_consume(s, bufferevent_get_input(s->bev));
}

static void cmd_rset(sk_session *s, const char *args)
{
    if (!no_args(s, args)) return;
    tx_reset(s);
    set_state(s, s->helo ? SS_READY : SS_CONNECTED);
    reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(sk_session *s, const char *args)
{
    reply(s, 250, "2.0.0", "Ok"); /* RFC 5321 4.1.1.9: a parameter is allowed */
}

static void cmd_quit(sk_session *s, const char *args)
{
    if (!no_args(s, args)) return;
    reply(s, 221, "2.0.0", "%s Bye", s->cfg->hostname);
    tx_reset(s);
    close_after_flush(s);
}

static void cmd_vrfy(sk_session *s, const char *args)
{
    if (!*args) {
        reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    /* RFC 5321 3.5.3: 252 when we will not verify. */
    reply(s, 252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(sk_session *s, const char *args)
{
    reply(s, 502, "5.5.1", "EXPN not implemented");
}

static void cmd_help(sk_session *s, const char *args)
{
    reply(s, 214, "2.0.0",
          "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP "
          "STARTTLS AUTH; see RFC 5321");
}

static void cmd_starttls(sk_session *s, const char *args)
{
    /* Not announced here (no certificate, implicit TLS, or TLS already on:
     * RFC 3207 4.2), so a known command this session does not implement:
     * 502 (RFC 5321 4.2.4). 454 is kept for a temporary failure. */
    if (s->tls) {
        reply(s, 502, "5.5.1", "TLS already active");
        return;
    }
    if (!starttls_offered(s)) {
        reply(s, 502, "5.5.1", "STARTTLS not available");
        return;
    }
    if (!no_args(s, args)) return;
    SSL *ssl = SSL_new(s->cfg->ssl);
    if (!ssl) {
        reply(s, 454, "4.7.0", "TLS not available due to temporary reason");
        return;
    }
    reply(s, 220, "2.0.0", "Ready to start TLS");
    /* RFC 3207 4.2 / CVE-2011-0411: anything the client sent after STARTTLS
     * in clear text is dropped, never read as if it came over TLS. Bytes
     * that arrive later are fed to the handshake, which then fails. */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        sk_log(logger(s), SK_LOG_WARN, "%s server starttls-injection peer=%s octets=%zu", s->id,
               s->peer, junk);
        evbuffer_drain(in, junk);
    }
    struct bufferevent *f = bufferevent_openssl_filter_new(
        s->srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!f) {
        SSL_free(ssl);
        close_after_flush(s);
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
    s->bev = f;
    bufferevent_setcb(f, read_cb, write_cb, event_cb, s);
    /* RFC 3207 4.2: forget what the client said before TLS, its AUTH
     * (clear-text loopback AUTH) too. */
    tx_reset(s);
    sk_free(s->helo);
    s->helo = NULL;
    sk_free(s->auth_user);
    s->auth_user = NULL;
    s->esmtp = 0;
    set_state(s, SS_TLS);
    bufferevent_enable(f, EV_READ);
}

/* ---- AUTH (RFC 4954) ---- */

/* The answer to an AUTH, now or from sk_session_reply. */
static void auth_result(sk_session *s, const char *mech, const char *user, sk_reply r)
{
    sk_server *srv = s->srv;
    if (r.code == 0 || sk_reply_class_of(r.code) == SK_REPLY_INVALID)
        r = sk_reply_make(454, "4.7.0", "Temporary authentication failure");
    sk_buf esc = SK_BUF_INIT(4 * SK_SMTP_LINE_MAX_OCTETS);
    if (sk_log_escape(&esc, user, strlen(user)) != SK_OK) sk_buf_reset(&esc);
    if (sk_reply_class_of(r.code) == SK_REPLY_SUCCESS) {
        s->auth_user = sk_strdup(user);
        if (!s->auth_user) {
            reply(s, 454, "4.7.0", "Temporary authentication failure");
        } else {
            s->idle = 0;
            sk_log(logger(s), SK_LOG_INFO, "%s server auth mech=%s user=\"%s\" result=ok", s->id,
                   mech, sk_buf_cstr(&esc));
            reply(s, 235, "2.7.0", "Authentication successful");
        }
        sk_buf_free(&esc);
        return;
    }
    sk_log(logger(s), SK_LOG_WARN, "%s server auth-failed peer=%s mech=%s user=\"%s\" reply=%d",
           s->id, s->peer, mech, sk_buf_cstr(&esc), r.code);
    sk_buf_free(&esc);
    if (sk_reply_class_of(r.code) == SK_REPLY_PERMANENT) sk_server_auth_failed(srv, s->peer);
    if (sk_server_auth_blocked(srv, s->peer)) {
        sk_log(logger(s), SK_LOG_WARN, "%s server auth-throttle peer=%s failures=%u", s->id,
               s->peer, s->cfg->auth_failures_max);
        reply(s, 421, "4.7.0", "%s Too many authentication failures, closing", s->cfg->hostname);
        tx_reset(s);
        close_after_flush(s);
        return;
    }
    reply_r(s, &r);
}

static void auth_check(sk_session *s, const char *mech, const char *authzid, const char *user,
                       const char *password)
{
    sk_server *srv = s->srv;
    set_state(s, SS_READY);
    sk_reply r = srv->on_auth(s, mech, authzid, user, password, srv->on_auth_ctx);
    if (r.code == 0) {
        /* The program checks elsewhere (a slow hash off the loop) and
         * answers with sk_session_reply. */
        s->pending_user = sk_strdup(user);
        if (s->pending_user) {
            s->sasl_mech = !strcmp(mech, "PLAIN") ? 1 : 2;
            set_state(s, SS_WAIT);
            bufferevent_setwatermark(s->bev, EV_READ, 0, SK_SERVER_WAIT_READ_OCTETS);
            return;
        }
    }
    auth_result(s, mech, user, r);
}

static void sasl_plain(sk_session *s, const char *b64)
{
    const char *authzid, *user, *password;
    sk_buf dec = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS);
    if (sk_sasl_server_plain(b64, strlen(b64), &dec, &authzid, &user, &password) != SK_OK) {
        set_state(s, SS_READY);
        reply(s, 501, "5.5.2", "Cannot decode AUTH PLAIN response");
    } else {
        auth_check(s, "PLAIN", authzid, user, password);
    }
    if (dec.data) OPENSSL_cleanse(dec.data, dec.cap);
    sk_buf_free(&dec);
}

static void sasl_line(sk_session *s, const char *line)
{
    /* RFC 4954 4: "*" cancels. */
    if (!strcmp(line, "*")) {
        set_state(s, SS_READY);
        reply(s, 501, "5.0.0", "Authentication cancelled");
        return;
    }
    if (s->sasl_mech == 1) {
        sasl_plain(s, line);
        return;
    }
    sk_buf dec = SK_BUF_INIT(SK_SMTP_LINE_MAX_OCTETS);
    if (sk_sasl_server_login(line, strlen(line), &dec) != SK_OK) {
        set_state(s, SS_READY);
        reply(s, 501, "5.5.2", "Cannot decode AUTH LOGIN response");
    } else if (!s->sasl.len && !s->sasl.data) {
        if (sk_buf_append(&s->sasl, dec.data ? dec.data : "", dec.len) != SK_OK) {
            set_state(s, SS_READY);
            reply(s, 501, "5.5.2", "User name too long");
        } else {
            reply(s, 334, NULL, "UGFzc3dvcmQ6"); /* "Password:" */
        }
    } else {
        auth_check(s, "LOGIN", "", sk_buf_cstr(&s->sasl), sk_buf_cstr(&dec));
    }
    if (dec.data) OPENSSL_cleanse(dec.data, dec.cap);
    sk_buf_free(&dec);
    if (s->state != SS_AUTH) {
        if (s->sasl.data) OPENSSL_cleanse(s->sasl.data, s->sasl.cap);
        sk_buf_free(&s->sasl);
    }
}

static void cmd_auth(sk_session *s, const char *args)
{
    /* No mechanisms at all: never announced, so 502 (RFC 5321 4.2.4).
     * Mechanisms that wait for TLS get 538 instead (RFC 4954 6), and a
     * second AUTH 503 (RFC 4954 4). */
    if (!s->srv->on_auth) {
        reply(s, 502, "5.5.1", "AUTH not available");
        return;
    }
    if (!auth_offered(s)) {
        /* RFC 4954 6: never over an unprotected network connection. */
        reply(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
        return;
    }
    if (s->auth_user) {
        reply(s, 503, "5.5.1", "Already authenticated");
        return;
    }
    if (sk_server_auth_blocked(s->srv, s->peer)) {
        sk_log(logger(s), SK_LOG_WARN, "%s server auth-throttle peer=%s", s->id, s->peer);
        reply(s, 454, "4.7.0", "Too many authentication failures, try again later");
        return;
    }
    char mech[32];
    const char *sp = strchr(args, ' ');
    size_t ml = sp ? (size_t)(sp - args) : strlen(args);
    if (!ml || ml >= sizeof mech) {
        reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
        return;
    }
    memcpy(mech, args, ml);
    mech[ml] = '\0';
    const char *initial = sp ? sp + 1 : NULL;
    sk_buf_free(&s->sasl);
    sk_buf_init(&s->sasl, SK_SMTP_LINE_MAX_OCTETS);
    if (!strcasecmp(mech, "PLAIN")) {
        s->sasl_mech = 1;
        set_state(s, SS_AUTH);
        if (!initial) {
            reply(s, 334, NULL, " ");
            return;
        }
        /* RFC 4954 4: "=" is an empty initial response. */
        sasl_line(s, strcmp(initial, "=") ? initial : "");
        return;
    }
    if (!strcasecmp(mech, "LOGIN")) {
        s->sasl_mech = 2;
        set_state(s, SS_AUTH);
        if (!initial) {
            reply(s, 334, NULL, "VXNlcm5hbWU6"); /* "Username:" */
            return;
        }
        sasl_line(s, initial);
        return;
    }
    reply(s, 504, "5.5.4", "Unrecognized authentication mechanism");
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
