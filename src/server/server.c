/* The SMTP server object: settings snapshots, listeners, graceful stop and
 * reload. Sessions: session.c; AUTH failure throttling: auth.c. */
#include "server/server_int.h"
#include "tls/tls_server.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void listener_close(sk_listener *li);

static unsigned or_default(unsigned v, unsigned def)
{
    return v ? v : def;
}

static sk_server_cfg *cfg_new(const sk_server_opts *o, sk_error *err)
{
    sk_server_cfg *c = sk_calloc(1, sizeof *c);
    if (!c) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    c->refs = 1;
    char host[256] = "localhost";
    if (o->hostname && *o->hostname) {
        if (!sk_proto_helo_valid(o->hostname)) {
            sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "bad hostname \"%s\"", o->hostname);
            goto fail;
        }
        snprintf(host, sizeof host, "%s", o->hostname);
    } else if (gethostname(host, sizeof host - 1) != 0) {
        snprintf(host, sizeof host, "localhost");
    }
    c->hostname = sk_strdup(host);
    if (!c->hostname) goto nomem;
    if ((o->tls_cert_file && *o->tls_cert_file) != (o->tls_key_file && *o->tls_key_file)) {
        sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS, "TLS needs both a certificate and a key");
        goto fail;
    }
    if (o->tls_cert_file && *o->tls_cert_file) {
        c->ssl = sk_tls_server_ctx_new(o->tls_cert_file, o->tls_key_file, err);
        if (!c->ssl) goto fail;
    }
    c->max_message_size =
        o->max_message_size ? o->max_message_size : SK_SERVER_MAX_MESSAGE_OCTETS_DEFAULT;
    c->max_recipients = or_default(o->max_recipients, SK_SMTP_RECIPIENTS_DEFAULT);
    c->max_connections = or_default(o->max_connections, SK_SERVER_MAX_CONNECTIONS_DEFAULT);
    c->max_connections_per_ip =
        or_default(o->max_connections_per_ip, SK_SERVER_MAX_CONNECTIONS_PER_IP_DEFAULT);
    c->greeting_timeout_ms = or_default(o->greeting_timeout_ms, SK_TIMEOUT_SERVER_COMMAND_MS);
    c->command_timeout_ms = or_default(o->command_timeout_ms, SK_TIMEOUT_SERVER_COMMAND_MS);
    c->data_timeout_ms = or_default(o->data_timeout_ms, SK_TIMEOUT_DATA_BLOCK_MS);
    c->greeting_delay_ms = or_default(o->greeting_delay_ms, SK_SERVER_GREETING_DELAY_MS_DEFAULT);
    c->max_idle_commands = or_default(o->max_idle_commands, SK_SERVER_MAX_IDLE_COMMANDS_DEFAULT);
    c->auth_failures_max = or_default(o->auth_failures_max, SK_SERVER_AUTH_FAILURES_MAX);
    c->auth_throttle_ms = or_default(o->auth_throttle_ms, SK_SERVER_AUTH_THROTTLE_MS);
    c->auth_plaintext_loopback = o->auth_plaintext_loopback;
    c->logger = o->logger;
    return c;
nomem:
    sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
fail:
    sk_server_cfg_release(c);
    return NULL;
}

void sk_server_cfg_release(sk_server_cfg *c)
{
    if (!c || --c->refs) return;
    sk_free(c->hostname);
    SSL_CTX_free(c->ssl);
    sk_free(c);
}

sk_server *sk_server_new(const sk_server_opts *o, struct event_base *base, sk_error *err)
{
    sk_error_clear(err);
    sk_server_opts none = {0};
    sk_server *srv = sk_calloc(1, sizeof *srv);
    if (!srv) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    srv->cfg = cfg_new(o ? o : &none, err);
    if (!srv->cfg) goto fail;
    if (base) {
        srv->base = base;
    } else {
        srv->base = event_base_new();
        srv->own_base = 1;
        if (!srv->base) {
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "cannot create event loop");
            goto fail;
        }
    }
    return srv;
fail:
    sk_server_free(srv);
    return NULL;
}

void sk_server_free(sk_server *srv)
{
    if (!srv) return;
    for (size_t i = 0; i < srv->nlisteners; i++) listener_close(&srv->listeners[i]);
    srv->nlisteners = 0;
    /* Sessions still open are ended without replies; their hooks run. */
    srv->stopping = srv->stopped = 1; /* no on_stopped call from here */
    while (srv->sessions) sk_session_destroy(srv->sessions);
    for (size_t i = 0; i < srv->nsignals; i++) event_free(srv->signals[i].ev);
    sk_server_cfg_release(srv->cfg);
    sk_free(srv->auth_fails);
    if (srv->own_base && srv->base) event_base_free(srv->base);
    sk_free(srv);
}

#define HOOK_SETTER(name, type)                                                                    \
    void sk_server_##name(sk_server *srv, type fn, void *ctx)                                      \
    {                                                                                              \
        srv->name = fn;                                                                            \
        srv->name##_ctx = ctx;                                                                     \
    }
HOOK_SETTER(on_connect, sk_on_connect_fn)
HOOK_SETTER(on_helo, sk_on_helo_fn)
HOOK_SETTER(on_auth, sk_on_auth_fn)
HOOK_SETTER(on_mail, sk_on_mail_fn)
HOOK_SETTER(on_rcpt, sk_on_rcpt_fn)
HOOK_SETTER(on_disconnect, sk_on_disconnect_fn)
HOOK_SETTER(on_stopped, sk_on_stopped_fn)

void sk_server_on_data(sk_server *srv, sk_on_data_start_fn start, sk_on_data_chunk_fn chunk,
                       sk_on_data_end_fn end, void *ctx)
{
    srv->on_data_start = start;
    srv->on_data_chunk = chunk;
    srv->on_data_end = end;
    srv->on_data_ctx = ctx;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    sk_listener *li = arg;
    sk_session_start(li->srv, li->kind, fd, sa, salen);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_listener *li = arg;
    if (li->l) evconnlistener_enable(li->l);
}

/* Out of descriptors or memory: pause this listener for a moment rather
 * than spin on a connection that cannot be accepted. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    sk_listener *li = arg;
    int e = EVUTIL_SOCKET_ERROR();
    sk_log(&li->srv->cfg->logger, SK_LOG_ERR, "- server accept-error port=%d error=\"%s\"",
           li->port, evutil_socket_error_to_string(e));
    evconnlistener_disable(l);
    struct timeval tv = sk_server_timeval(SK_SERVER_ACCEPT_PAUSE_MS);
    evtimer_add(li->retry, &tv);
}

static void listener_close(sk_listener *li)
{
    if (li->l) evconnlistener_free(li->l);
    if (li->retry) event_free(li->retry);
    li->l = NULL;
    li->retry = NULL;
}

/* "ADDR:PORT" or "[V6]:PORT" into a socket address. */
static sk_err parse_listen_addr(const char *addr, struct sockaddr_storage *ss, int *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr) return SK_ERR_INVAL;
    size_t hl = (size_t)(colon - addr);
    int bracketed = addr[0] == '[';
    if (bracketed) {
        if (hl < 3 || addr[hl - 1] != ']') return SK_ERR_INVAL;
        addr++;
        hl -= 2;
    }
    if (hl >= sizeof host) return SK_ERR_INVAL;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    /* An IPv6 address without brackets is ambiguous ("::1:25"). */
    if (!bracketed && strchr(host, ':')) return SK_ERR_INVAL;
    if (colon[1] < '0' || colon[1] > '9') return SK_ERR_INVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) return SK_ERR_INVAL;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
    } else {
        return SK_ERR_INVAL;
    }
    return SK_OK;
}

sk_err sk_server_listen(sk_server *srv, const char *addr, sk_listen_kind kind, sk_error *err)
{
    sk_error_clear(err);
    if (kind != SK_LISTEN_SMTP && kind != SK_LISTEN_SUBMISSION && kind != SK_LISTEN_SMTPS)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "unknown listener kind %d", kind);
    if (kind == SK_LISTEN_SMTPS && !srv->cfg->ssl)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS,
                            "implicit TLS listener %s needs a certificate and key", addr);
    if (srv->nlisteners == SK_SERVER_LISTENERS_MAX)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE, "too many listeners");
    struct sockaddr_storage ss;
    int len;
    if (!addr || parse_listen_addr(addr, &ss, &len))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "bad listen address \"%s\" (want ADDR:PORT or [ADDR]:PORT)",
                            addr ? addr : "");
    sk_listener *li = &srv->listeners[srv->nlisteners];
    li->srv = srv;
    li->kind = kind;
    li->l = evconnlistener_new_bind(
        srv->base, accept_cb, li, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        128, (struct sockaddr *)&ss, len);
    if (!li->l)
        return sk_error_set(err, SK_ERR_CONNECT, SK_STEP_CONNECT, "cannot listen on %s: %s", addr,
                            evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    li->retry = evtimer_new(srv->base, accept_retry_cb, li);
    if (!li->retry) {
        listener_close(li);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    }
    evconnlistener_set_error_cb(li->l, accept_error_cb);
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    if (getsockname(evconnlistener_get_fd(li->l), (struct sockaddr *)&bound, &bl)) {
        int saved = EVUTIL_SOCKET_ERROR();
        listener_close(li);
        return sk_error_set(err, SK_ERR_CONNECT, SK_STEP_CONNECT,
                            "cannot read the address of %s: %s", addr,
                            evutil_socket_error_to_string(saved));
    }
    li->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    srv->nlisteners++;
    sk_log(&srv->cfg->logger, SK_LOG_INFO, "- server listen addr=%s port=%d kind=%s", addr,
           li->port, sk_server_kind_name(kind));
    return SK_OK;
}

const char *sk_server_kind_name(sk_listen_kind kind)
{
    switch (kind) {
    case SK_LISTEN_SMTP:
        return "smtp";
    case SK_LISTEN_SUBMISSION:
        return "submission";
    case SK_LISTEN_SMTPS:
        return "smtps";
    }
    return "";
}

int sk_server_port(const sk_server *srv, size_t i)
{
    return i < srv->nlisteners ? srv->listeners[i].port : 0;
}

sk_err sk_server_run(sk_server *srv)
{
    if (!srv->own_base) return SK_ERR_STATE;
    if (event_base_dispatch(srv->base) < 0) return SK_ERR_IO;
    return SK_OK;
}

void sk_server_stop(sk_server *srv)
{
    if (srv->stopping) return;
    srv->stopping = 1;
    for (size_t i = 0; i < srv->nlisteners; i++) listener_close(&srv->listeners[i]);
    srv->nlisteners = 0;
    sk_log(&srv->cfg->logger, SK_LOG_INFO, "- server stop sessions=%zu", srv->nsessions);
    /* Signal events would keep a loop of our own running. */
    if (srv->own_base)
        for (size_t i = 0; i < srv->nsignals; i++) event_del(srv->signals[i].ev);
    /* Each session decides whether it is idle; walking carefully since
     * idle ones free themselves. */
    sk_session *s = srv->sessions;
    while (s) {
        sk_session *next = sk_session_next(s);
        sk_session_stop_idle(s);
        s = next;
    }
    sk_server_session_gone(srv);
}

void sk_server_session_gone(sk_server *srv)
{
    if (!srv->stopping || srv->nsessions || srv->stopped) return;
    srv->stopped = 1;
    sk_log(&srv->cfg->logger, SK_LOG_INFO, "- server stopped");
    if (srv->own_base) event_base_loopbreak(srv->base);
    if (srv->on_stopped) srv->on_stopped(srv, srv->on_stopped_ctx);
}

size_t sk_server_sessions(const sk_server *srv)
{
    return srv->nsessions;
}

sk_err sk_server_reload(sk_server *srv, const sk_server_opts *o, sk_error *err)
{
    sk_error_clear(err);
    sk_server_cfg *c = cfg_new(o, err);
    if (!c) return err ? err->err : SK_ERR_CONFIG;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        if (srv->listeners[i].kind == SK_LISTEN_SMTPS && !c->ssl) {
            sk_server_cfg_release(c);
            return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_TLS,
                                "an implicit TLS listener needs a certificate and key");
        }
    }
    sk_server_cfg_release(srv->cfg);
    srv->cfg = c;
    sk_log(&c->logger, SK_LOG_INFO, "- server reload tls=%s", c->ssl ? "yes" : "no");
    return SK_OK;
}

struct event_base *sk_server_base(const sk_server *srv)
{
    return srv->base;
}

typedef struct after_call {
    void (*fn)(void *ctx);
    void *ctx;
} after_call;

static void after_cb(evutil_socket_t fd, short what, void *arg)
{
    after_call c = *(after_call *)arg;
    sk_free(arg);
    c.fn(c.ctx);
}

sk_err sk_server_after(sk_server *srv, unsigned ms, void (*fn)(void *ctx), void *ctx)
{
    after_call *c = sk_malloc(sizeof *c);
    if (!c) return SK_ERR_NOMEM;
    c->fn = fn;
    c->ctx = ctx;
    struct timeval tv = sk_server_timeval(ms);
    if (event_base_once(srv->base, -1, EV_TIMEOUT, after_cb, c, &tv) != 0) {
        sk_free(c);
        return SK_ERR_NOMEM;
    }
    return SK_OK;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct sk_signal_hook *h = arg;
    sk_log(&h->srv->cfg->logger, SK_LOG_INFO, "- server signal number=%d", (int)sig);
    h->fn(h->srv, (int)sig, h->ctx);
}

sk_err sk_server_on_signal(sk_server *srv, int signum, sk_signal_fn fn, void *ctx)
{
    if (srv->nsignals == sizeof srv->signals / sizeof srv->signals[0]) return SK_ERR_TOO_LONG;
    struct sk_signal_hook *h = &srv->signals[srv->nsignals];
    h->srv = srv;
    h->fn = fn;
    h->ctx = ctx;
    h->ev = evsignal_new(srv->base, signum, signal_cb, h);
    if (!h->ev) return SK_ERR_NOMEM;
    if (evsignal_add(h->ev, NULL) != 0) {
        event_free(h->ev);
        return SK_ERR_IO;
    }
    srv->nsignals++;
    return SK_OK;
}

static void stop_signal(sk_server *srv, int signum, void *ctx)
{
    sk_server_stop(srv);
}

sk_err sk_server_stop_on_signal(sk_server *srv, int signum)
{
    return sk_server_on_signal(srv, signum, stop_signal, NULL);
}
