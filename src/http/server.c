/* The HTTP API's listener on the daemon's event loop (libevent's evhttp):
 * connections (plain or TLS), each watched beside evhttp for the limits
 * on requests (octets, deadline) and the cap on connections, refusals
 * answered in JSON; the listener's start and stop. The answers are in
 * answer.c, API-key authentication in keyauth.c, the router in router.c. */
#include "listener_int.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* How often old idempotency answers are forgotten. */
#define HTTP_PRUNE_INTERVAL_S 3600

/* ---- connections ---- */

static void conn_arm(hconn *c, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void conn_release(hconn *c)
{
    sk_http *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    h->nconns--;
    if (c->req) c->req->conn = NULL;
    evbuffer_remove_cb(bufferevent_get_input(c->bev), NULL, NULL);
    event_free(c->timer);
    if (c->ref) bufferevent_decref(c->bev);
    sk_free(c);
}

/* evhttp closes the connection (or the listener goes). */
static void on_conn_close(struct evhttp_connection *evc, void *arg)
{
    (void)evc;
    conn_release(arg);
}

static void refused_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void refused_written(struct bufferevent *bev, void *arg)
{
    hconn *c = arg;
    /* The answer is out: no more from us; what the client still sends is
     * read and dropped until it closes or the linger ends. */
    if (!c->h->ssl) shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void refused_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    hconn *c = arg;
    /* Closed, failed or timed out: closed on the next loop pass. */
    event_active(c->timer, EV_TIMEOUT, 0);
}

/* Answer status with the JSON error ourselves and close: the connection
 * is taken from evhttp, whose request is dropped unanswered. */
static void conn_refuse(hconn *c, int status, const char *reason, const char *code,
                        const char *message, unsigned retry_after_s)
{
    sk_http *h = c->h;
    c->state = HC_REFUSED;
    evtimer_del(c->timer);
    json_t *b = json_pack("{s:{s:s,s:s,s:n}}", "error", "code", code, "message", message, "field");
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    char retry[48] = "";
    if (retry_after_s) snprintf(retry, sizeof retry, "Retry-After: %u\r\n", retry_after_s);
    bufferevent_setcb(c->bev, refused_read, refused_written, refused_event, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                        "%zu\r\n%sConnection: close\r\n\r\n%s",
                        status, reason, text ? strlen(text) : 0, retry, text ? text : "");
    free(text);
    refused_read(c->bev, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_arm(c, SK_HTTP_LINGER_MS);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (c->evc) evhttp_connection_get_peer(c->evc, &addr, &port);
    sk_log(&h->o.log, SK_LOG_INFO, "- http refused peer=%s status=%d code=%s", addr ? addr : "-",
           status, code);
}

/* The octets of a request that arrived (n of them, from pos on): counted,
 * and the end of its header block looked for. Too many: 413. */
static void conn_count(hconn *c, struct evbuffer *in, size_t from, size_t n)
{
    sk_http *h = c->h;
    c->octets += n;
    if (!c->in_body) {
        struct evbuffer_ptr pos;
        struct evbuffer_iovec v[16];
        if (evbuffer_ptr_set(in, &pos, from, EVBUFFER_PTR_SET) == 0) {
            int nv = evbuffer_peek(in, (ev_ssize_t)n, &pos, v, 16);
            for (int i = 0; i < nv && i < 16 && !c->in_body; i++)
                for (size_t k = 0; k < v[i].iov_len && !c->in_body; k++) {
                    char ch = ((const char *)v[i].iov_base)[k];
                    if (ch == '\n')
                        c->in_body = ++c->line_ends == 2;
                    else if (ch != '\r')
                        c->line_ends = 0;
                }
        }
    }
    if ((!c->in_body && c->octets > h->o.max_header_octets) || c->octets > h->o.max_request_octets)
        conn_refuse(c, 413, "Payload Too Large", "too_large",
                    c->in_body ? "the request is larger than allowed (--http-max-request-size)"
                               : "the request header is larger than allowed "
                                 "(--http-max-header-size)",
                    0);
}

/* A request starts with the octets in the buffer from `from` on. */
void sk_http_conn_start(hconn *c, struct evbuffer *in, size_t from)
{
    c->state = HC_READING;
    c->octets = 0;
    c->line_ends = 0;
    c->in_body = false;
    conn_arm(c, c->h->o.request_timeout_ms);
    conn_count(c, in, from, evbuffer_get_length(in) - from);
}

static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    hconn *c = arg;
    if (!info->n_added) return;
    size_t len = evbuffer_get_length(in), from = len - info->n_added;
    switch (c->state) {
    case HC_NEW:
    case HC_IDLE:
        sk_http_conn_start(c, in, from);
        break;
    case HC_READING:
        conn_count(c, in, from, info->n_added);
        break;
    case HC_BUSY:    /* the next request, counted when this one is answered */
    case HC_REFUSED: /* dropped by refused_read */
        break;
    }
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hconn *c = arg;
    sk_http *h = c->h;
    switch (c->state) {
    case HC_NEW: {
        /* evhttp made its connection in the accept that made bev: its
         * callbacks' argument is it (none: it failed and let bev go). */
        void *evc = NULL;
        bufferevent_getcb(c->bev, NULL, NULL, NULL, &evc);
        if (!evc) {
            conn_release(c);
            return;
        }
        c->evc = evc;
        bufferevent_decref(c->bev);
        c->ref = false;
        evhttp_connection_set_closecb(c->evc, on_conn_close, c);
        if (h->nconns > h->o.max_connections) {
            conn_refuse(c, 503, "Service Unavailable", "busy", "too many connections", 1);
            return;
        }
        struct evbuffer *in = bufferevent_get_input(c->bev);
        if (evbuffer_get_length(in))
            sk_http_conn_start(c, in, 0);
        else
            c->state = HC_IDLE;
        return;
    }
    case HC_READING:
        /* A request still not whole: cut off, however slowly it comes. */
        conn_refuse(c, 408, "Request Timeout", "timeout",
                    "the request did not arrive in time (--http-request-timeout)", 0);
        return;
    case HC_REFUSED:
        if (c->evc) evhttp_connection_free(c->evc); /* on_conn_close frees c */
        return;
    default:
        return;
    }
}

/* evhttp asks for a connection's bufferevent: TLS when configured (the
 * handshake as the server, on the socket evhttp sets). */
/* evhttp asks for a connection's bufferevent (plain, or TLS as the
 * server on the socket evhttp sets): made here so that the connection is
 * watched (hconn) from its start. NULL lets evhttp make a plain one. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    sk_http *h = arg;
    struct bufferevent *b = NULL;
    if (h->ssl) {
        SSL *ssl = SSL_new(h->ssl);
        if (!ssl) return NULL;
        b = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                           BEV_OPT_CLOSE_ON_FREE);
        if (!b) SSL_free(ssl);
    } else {
        b = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    hconn *c = b ? sk_calloc(1, sizeof *c) : NULL;
    if (c) c->timer = evtimer_new(base, on_conn_timer, c);
    if (!c || !c->timer) {
        /* Unwatched, the connection is refused rather than let past the
         * limits. */
        if (c) sk_free(c);
        if (b) bufferevent_free(b);
        return NULL;
    }
    c->h = h;
    c->bev = b;
    /* Held until evhttp's connection is known (on the next loop pass). */
    bufferevent_incref(b);
    c->ref = true;
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    evbuffer_add_cb(bufferevent_get_input(b), on_input, c);
    event_active(c->timer, EV_TIMEOUT, 0);
    return b;
}

/* ---- life ---- */

static void on_prune(evutil_socket_t fd, short what, void *arg)
{
    sk_http *h = arg;
    (void)fd;
    (void)what;
    sk_http_pool_prune(h->pool);
}

static sk_err tls_setup(sk_http *h, sk_error *err)
{
    if (!h->tls_cert || !h->tls_key)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "--http-tls needs --tls-cert and --tls-key");
    h->ssl = SSL_CTX_new(TLS_server_method());
    if (!h->ssl) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    SSL_CTX_set_min_proto_version(h->ssl, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(h->ssl, h->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(h->ssl, h->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(h->ssl) != 1) {
        ERR_clear_error();
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "--http-tls: cannot use the certificate %s with the key %s",
                            h->tls_cert, h->tls_key);
    }
    return SK_OK;
}

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s) return NULL;
    char *d = sk_strdup(s);
    if (!d) *oom = true;
    return d;
}

sk_http *sk_http_new(const sk_http_opts *o, const sk_http_deps *deps, struct event_base *base,
                     sk_error *err)
{
    sk_http *h = sk_calloc(1, sizeof *h);
    if (!h) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    h->o = *o;
    h->deps = *deps;
    h->base = base;
    bool oom = false;
    h->listen = dup_or_null(o->listen, &oom);
    h->data_dir = dup_or_null(o->data_dir, &oom);
    h->hostname = dup_or_null(o->hostname ? o->hostname : "localhost", &oom);
    h->tls_cert = dup_or_null(o->tls_cert, &oom);
    h->tls_key = dup_or_null(o->tls_key, &oom);
    h->o.listen = h->listen;
    h->o.data_dir = h->data_dir;
    h->o.hostname = h->hostname;
    h->o.tls_cert = h->tls_cert;
    h->o.tls_key = h->tls_key;
    if (!h->o.max_request_octets) h->o.max_request_octets = SK_HTTP_REQUEST_MAX_OCTETS_DEFAULT;
    if (!h->o.max_header_octets) h->o.max_header_octets = SK_HTTP_HEADER_MAX_OCTETS_DEFAULT;
    if (!h->o.request_timeout_ms) h->o.request_timeout_ms = SK_HTTP_REQUEST_TIMEOUT_MS_DEFAULT;
    if (!h->o.max_requests) h->o.max_requests = SK_HTTP_REQUESTS_MAX_DEFAULT;
    if (!h->o.max_connections) h->o.max_connections = SK_HTTP_CONNECTIONS_MAX_DEFAULT;
    sk_err e = oom ? sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory") : SK_OK;
    if (!e && (!h->listen || !h->data_dir))
        e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "--http needs ADDR:PORT");
    if (!e && o->tls) e = tls_setup(h, err);
    if (!e && !(h->keys = sk_apikey_store_new(h->data_dir)))
        e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    /* http.db is made (and checked) here, where a failure stops the
     * start; the workers then open their own connections to it. */
    sk_idem *idem = e ? NULL : sk_idem_open(h->data_dir, err);
    if (!e && !idem) e = err && err->err ? err->err : SK_ERR_IO;
    sk_idem_free(idem);
    if (!e && !(h->pool = sk_http_pool_new(base, h->data_dir, deps->track != NULL, &h->o.log, err)))
        e = err && err->err ? err->err : SK_ERR_NOMEM;
    if (!e && !(h->http = evhttp_new(base)))
        e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
    char host[256];
    unsigned port = 0;
    if (!e) {
        /* "ADDR:PORT" or "[v6]:PORT". */
        const char *colon = strrchr(h->listen, ':');
        const char *hs = h->listen, *he = colon;
        if (colon && hs[0] == '[' && colon > hs && colon[-1] == ']') {
            hs++;
            he--;
        }
        char *end = NULL;
        unsigned long pv = colon ? strtoul(colon + 1, &end, 10) : 0;
        if (!colon || he <= hs || (size_t)(he - hs) >= sizeof host || !end || *end ||
            end == colon + 1 || pv > 65535)
            e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                             "--http %s: expected ADDR:PORT or [ADDR]:PORT", h->listen);
        else {
            memcpy(host, hs, (size_t)(he - hs));
            host[he - hs] = '\0';
            port = (unsigned)pv;
        }
    }
    struct evhttp_bound_socket *bound = NULL;
    if (!e) {
        /* The sizes are checked as the octets arrive (conn_count), which
         * answers in JSON; evhttp's own checks would answer in HTML. */
        evhttp_set_max_body_size(h->http, EV_SSIZE_MAX);
        evhttp_set_max_headers_size(h->http, EV_SSIZE_MAX);
        struct timeval tv = {.tv_sec = (time_t)(h->o.request_timeout_ms / 1000),
                             .tv_usec = (suseconds_t)(h->o.request_timeout_ms % 1000) * 1000};
        evhttp_set_timeout_tv(h->http, &tv);
        evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                                EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
        evhttp_set_bevcb(h->http, make_bev, h);
        evhttp_set_gencb(h->http, sk_http_dispatch, h);
        evhttp_set_default_content_type(h->http, "application/json");
        if (!(bound = evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port)))
            e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "--http %s: cannot listen there",
                             h->listen);
    }
    if (!e) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        evutil_socket_t fd = evhttp_bound_socket_get_fd(bound);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
        h->prune = event_new(base, -1, EV_PERSIST, on_prune, h);
        struct timeval iv = {.tv_sec = HTTP_PRUNE_INTERVAL_S};
        if (!h->prune || event_add(h->prune, &iv))
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        else
            on_prune(-1, 0, h);
    }
    if (e) {
        sk_http_free(h);
        return NULL;
    }
    sk_log(&h->o.log, SK_LOG_INFO,
           "- http listening addr=%s port=%d tls=%s max_request=%llu request_timeout_ms=%llu", host,
           h->port, h->ssl ? "yes" : "no", (unsigned long long)h->o.max_request_octets,
           (unsigned long long)h->o.request_timeout_ms);
    return h;
}

int sk_http_port(const sk_http *h)
{
    return h ? h->port : 0;
}

void sk_http_free(sk_http *h)
{
    if (!h) return;
    /* The workers' jobs finish, and their completions answer (or let go)
     * their requests while the listener is still here. */
    sk_http_pool_free(h->pool);
    h->pool = NULL;
    /* Requests whose answers wait on a commit are left to it: they
     * answer nobody (evhttp frees its side with the connections). */
    for (sk_http_req *r = h->pending; r;) {
        sk_http_req *next = r->next;
        r->h = NULL;
        r->ev = NULL;
        r->prev = r->next = NULL;
        r = next;
    }
    h->pending = NULL;
    if (h->http) evhttp_free(h->http);
    /* Connections evhttp never took up. */
    while (h->conns) conn_release(h->conns);
    if (h->prune) event_free(h->prune);
    if (h->ssl) SSL_CTX_free(h->ssl);
    sk_apikey_store_free(h->keys);
    sk_free(h->fails);
    sk_free(h->listen);
    sk_free(h->data_dir);
    sk_free(h->hostname);
    sk_free(h->tls_cert);
    sk_free(h->tls_key);
    sk_free(h);
}
