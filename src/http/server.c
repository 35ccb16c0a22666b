/* The HTTP API's listener on the daemon's event loop (libevent's evhttp):
 * connections (plain or TLS), the limits on requests, API-key
 * authentication with throttling of failures per client address, the
 * router over the table in api.c, and JSON answers. */
#include "http_int.h"

#include <smtpkit/track.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* How often old idempotency answers are forgotten. */
#define HTTP_PRUNE_INTERVAL_S 3600

/* A failed-key count for one client address (SMTP AUTH's throttle). */
typedef struct auth_fail {
    char peer[64];
    unsigned count;
    uint64_t first_ms;
} auth_fail;

struct sk_http_req {
    struct sk_http_req *prev, *next; /* in h->pending while a handler has it */
    sk_http *h;                      /* NULL once the listener is gone */
    struct evhttp_request *ev;
    const sk_http_route *route;
    char params[SK_HTTP_PARAMS_MAX][SK_HTTP_PARAM_OCTETS];
    struct evkeyvalq query;
    bool has_query;
    char peer[64];
    const sk_apikey *key;
    sk_apikey key_copy; /* the key's fields, kept for a later answer */
    char idem_key[SK_HTTP_IDEMPOTENCY_KEY_MAX_OCTETS + 1];
    /* Set from the Idempotency-Key check until the request is answered:
     * no other request with the same key pair runs meanwhile (409). */
    bool idem_claim;
    /* The idempotency store's work on a worker: the lookup before the
     * route runs, then keeping the answer before it is sent. */
    sk_http_work idem_work;
    sk_err idem_err;
    int idem_status;
    char *idem_body;
    /* The answer being kept (idem_work), sent from its completion. */
    int ans_status;
    char ans_ctype[64];
    char *ans_text;
    size_t ans_len;
    unsigned ans_retry;
    /* The routes' own state for answers given later (api.c). */
    void *state;
    void (*state_free)(void *state);
    struct hconn *conn; /* its connection's record; NULL once it closed */
};

/* A connection, as the listener watches it beside evhttp: the octets and
 * the time of the request being read (evhttp's limits answer with HTML
 * and its timeout is an idle one), and the cap on connections. */
typedef enum hconn_state {
    HC_NEW = 0, /* accepted; evhttp's connection not known yet */
    HC_IDLE,    /* between requests */
    HC_READING, /* a request is arriving: octets counted, deadline armed */
    HC_BUSY,    /* a request is with its handler */
    HC_REFUSED, /* answered by us (413, 408, 503) and closing */
} hconn_state;

typedef struct hconn {
    struct hconn *prev, *next;
    sk_http *h;
    struct bufferevent *bev;
    struct evhttp_connection *evc;
    struct event *timer; /* attach, then the request's deadline, then the linger */
    hconn_state state;
    bool ref;                /* we hold a reference on bev (until attached) */
    uint64_t octets;         /* of the request being read */
    unsigned line_ends;      /* header block scanner: line ends in a row */
    bool in_body;            /* the header block is over */
    struct sk_http_req *req; /* with its handler (HC_BUSY) */
} hconn;

struct sk_http {
    sk_http_opts o;
    char *listen, *data_dir, *hostname, *tls_cert, *tls_key;
    sk_http_deps deps;
    struct event_base *base;
    struct evhttp *http;
    int port;
    SSL_CTX *ssl;
    sk_apikey_store *keys;
    sk_http_pool *pool;
    auth_fail *fails;
    size_t nfails, capfails;
    sk_http_req *pending;
    unsigned nrequests;
    struct event *prune;
    hconn *conns;
    unsigned nconns;
};

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
static void conn_start(hconn *c, struct evbuffer *in, size_t from)
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
        conn_start(c, in, from);
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
            conn_start(c, in, 0);
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

/* ---- answers ---- */

static void req_free(sk_http_req *r)
{
    if (r->conn) r->conn->req = NULL;
    if (r->state_free) r->state_free(r->state);
    if (r->has_query) evhttp_clear_headers(&r->query);
    sk_free(r->key_copy.name);
    sk_free(r->idem_body);
    sk_free(r->ans_text);
    sk_free(r);
}

static void req_unlink(sk_http_req *r)
{
    sk_http *h = r->h;
    if (!h) return;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->pending = r->next;
    if (r->next) r->next->prev = r->prev;
    h->nrequests--;
}

static void send_text(sk_http *h, sk_http_req *r, int status, const char *ctype, const char *text,
                      size_t len, unsigned retry_after_s)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->ev);
    if (len) evhttp_add_header(out, "Content-Type", ctype);
    if (retry_after_s) {
        char v[32];
        snprintf(v, sizeof v, "%u", retry_after_s);
        evhttp_add_header(out, "Retry-After", v);
    }
    struct evbuffer *b = evbuffer_new();
    if (b && len) evbuffer_add(b, text, len);
    evhttp_send_reply(r->ev, status, NULL, b);
    hconn *c = r->conn;
    if (c) {
        /* The next request may have begun arriving meanwhile. */
        c->req = NULL;
        r->conn = NULL;
        c->state = HC_IDLE;
        struct evbuffer *in = bufferevent_get_input(c->bev);
        if (evbuffer_get_length(in)) conn_start(c, in, 0);
    }
    if (b) evbuffer_free(b);
    sk_log(&h->o.log, SK_LOG_INFO, "- http request peer=%s method=%s route=%s status=%d%s%s",
           r->peer, r->route ? r->route->method : "-", r->route ? r->route->pattern : "-", status,
           r->key ? " key=" : "", r->key ? r->key->id : "");
}

static void done_with(sk_http_req *r)
{
    req_unlink(r);
    req_free(r);
}

/* Worker: keep the answer under its Idempotency-Key (the first stays). */
static void keep_run(sk_http_work *w, sk_http_pool *p, sk_http_conns *c)
{
    sk_http_req *r = (sk_http_req *)((char *)w - offsetof(sk_http_req, idem_work));
    sk_error err = {0};
    sk_idem *db = sk_http_conns_idem(p, c, &err);
    r->idem_err = db ? sk_idem_put(db, r->key_copy.id, r->idem_key, r->ans_status,
                                   r->ans_text ? r->ans_text : "")
                     : (err.err ? err.err : SK_ERR_IO);
}

/* Loop: the answer is kept (or could not be): now it is sent. */
static void keep_done(sk_http_work *w)
{
    sk_http_req *r = (sk_http_req *)((char *)w - offsetof(sk_http_req, idem_work));
    sk_http *h = r->h;
    if (h && (w->cancelled || r->idem_err))
        sk_log(&h->o.log, SK_LOG_ERR, "- http idempotency-store-failed error=\"%s\"",
               w->cancelled ? "cancelled" : sk_strerror(r->idem_err));
    if (h && r->ev)
        send_text(h, r, r->ans_status, r->ans_ctype, r->ans_text ? r->ans_text : "", r->ans_len,
                  r->ans_retry);
    done_with(r);
}

static void finish_as(sk_http_req *r, int status, const char *ctype, const char *text, size_t len,
                      unsigned retry)
{
    sk_http *h = r->h;
    /* An Idempotency-Key's first answer is kept (durably, on a worker)
     * before it is sent; answers that say nothing was done (4xx, 5xx)
     * are not, so that the client may try again with the same key. */
    if (h && r->ev && r->idem_claim && status < 300) {
        r->ans_status = status;
        snprintf(r->ans_ctype, sizeof r->ans_ctype, "%s", ctype);
        r->ans_len = len;
        r->ans_retry = retry;
        r->ans_text = sk_malloc(len + 1);
        if (r->ans_text) {
            memcpy(r->ans_text, text, len);
            r->ans_text[len] = '\0';
            if (sk_http_work_submit(h->pool, &r->idem_work, keep_run, keep_done)) return;
        }
        sk_log(&h->o.log, SK_LOG_ERR, "- http idempotency-store-failed error=\"%s\"",
               r->ans_text ? "stopping" : "out of memory");
    }
    if (h && r->ev) send_text(h, r, status, ctype, text, len, retry);
    done_with(r);
}

static void finish(sk_http_req *r, int status, const char *text, size_t len, unsigned retry)
{
    finish_as(r, status, "application/json", text, len, retry);
}

void sk_http_reply_text(sk_http *h, sk_http_req *r, int status, const char *content_type,
                        const char *text, size_t len)
{
    (void)h;
    finish_as(r, status, content_type, text, len, 0);
}

void sk_http_reply(sk_http *h, sk_http_req *r, int status, json_t *body)
{
    (void)h;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (body && !text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\",\"field\":null}}";
        finish(r, 500, oom, sizeof oom - 1, 0);
        return;
    }
    finish(r, status, text ? text : "", text ? strlen(text) : 0, 0);
    free(text);
}

static json_t *error_body(const char *code, const char *field, const char *message)
{
    return json_pack("{s:{s:s,s:s,s:s?}}", "error", "code", code, "message", message, "field",
                     field);
}

void sk_http_reply_error(sk_http *h, sk_http_req *r, int status, const char *code,
                         const char *field, const char *fmt, ...)
{
    char msg[SK_HTTP_ERROR_TEXT_OCTETS + SK_HTTP_FIELD_PATH_OCTETS];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sk_http_reply(h, r, status, error_body(code, field, msg));
}

void sk_http_reply_retry(sk_http *h, sk_http_req *r, int status, unsigned retry_after_s,
                         const char *code, const char *message)
{
    (void)h;
    json_t *b = error_body(code, NULL, message);
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    finish(r, status, text ? text : "", text ? strlen(text) : 0, retry_after_s);
    free(text);
}

/* ---- what handlers read ---- */

const char *sk_http_req_param(const sk_http_req *r, size_t i)
{
    return i < SK_HTTP_PARAMS_MAX ? r->params[i] : NULL;
}

const char *sk_http_req_query(const sk_http_req *r, const char *name)
{
    return r->has_query ? evhttp_find_header(&r->query, name) : NULL;
}

const char *sk_http_req_body(const sk_http_req *r, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
    *len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1);
    return p ? p : "";
}

const char *sk_http_req_header(const sk_http_req *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *sk_http_req_peer(const sk_http_req *r)
{
    return r->peer;
}

const sk_apikey *sk_http_req_key(const sk_http_req *r)
{
    return r->key;
}

const sk_http_opts *sk_http_get_opts(const sk_http *h)
{
    return &h->o;
}

const sk_http_deps *sk_http_get_deps(const sk_http *h)
{
    return &h->deps;
}

bool sk_http_req_work(sk_http *h, sk_http_req *r, sk_http_work *w, sk_http_work_run_fn run,
                      sk_http_work_done_fn done)
{
    if (sk_http_work_submit(h->pool, w, run, done)) return true;
    sk_http_reply_retry(h, r, 503, 1, "unavailable", "the server is stopping");
    return false;
}

const sk_logger *sk_http_log(const sk_http *h)
{
    return &h->o.log;
}

bool sk_http_track_sync(sk_http *h)
{
    /* Events are written in batches by the store's writer thread: what
     * was recorded so far is handed to it and written before the query
     * (the loop waits for that batch only when events are pending). */
    sk_error err;
    if (h->deps.track && sk_track_pending(h->deps.track) && sk_track_flush(h->deps.track, &err))
        sk_log(&h->o.log, SK_LOG_WARN, "- http track-flush-failed error=\"%s\"", err.text);
    return h->deps.track != NULL;
}

/* ---- routing ---- */

static int hexval(char c)
{
    return sk_hex_value(c);
}

bool sk_http_route_match(const char *pattern, const char *path, char params[][SK_HTTP_PARAM_OCTETS],
                         size_t nparams)
{
    size_t np = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            if (!pe) return false;
            const char *se = strchr(s, '/');
            if (!se) se = s + strlen(s);
            if (se == s || np >= nparams) return false;
            /* The segment, percent-decoded (RFC 3986 2.1). */
            size_t o = 0;
            for (const char *q = s; q < se; q++) {
                char c = *q;
                if (c == '%') {
                    if (se - q < 3) return false;
                    int hi = hexval(q[1]), lo = hexval(q[2]);
                    if (hi < 0 || lo < 0) return false;
                    c = (char)(hi * 16 + lo);
                    q += 2;
                }
                if (c == '\0' || o + 1 >= SK_HTTP_PARAM_OCTETS) return false;
                params[np][o++] = c;
            }
            params[np++][o] = '\0';
            p = pe + 1;
            s = se;
            continue;
        }
        if (*p != *s) return false;
        p++;
        s++;
    }
    return !*p && !*s;
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    default:
        return "";
    }
}

/* Is peer throttled (too many failed keys lately)? */
static auth_fail *fail_find(sk_http *h, const char *peer, uint64_t now)
{
    for (size_t i = 0; i < h->nfails; i++) {
        auth_fail *f = &h->fails[i];
        if (strcmp(f->peer, peer) != 0) continue;
        if (now - f->first_ms >= SK_HTTP_AUTH_THROTTLE_MS) {
            f->count = 0;
            f->first_ms = now;
        }
        return f;
    }
    return NULL;
}

static void fail_count(sk_http *h, const char *peer, uint64_t now)
{
    auth_fail *f = fail_find(h, peer, now);
    if (!f) {
        if (h->nfails == SK_HTTP_AUTH_PEERS_MAX) {
            /* The oldest count goes. */
            size_t old = 0;
            for (size_t i = 1; i < h->nfails; i++)
                if (h->fails[i].first_ms < h->fails[old].first_ms) old = i;
            h->fails[old] = h->fails[--h->nfails];
        }
        if (sk_array_grow(&h->fails, &h->capfails, h->nfails + 1, sizeof *h->fails,
                          SK_HTTP_AUTH_PEERS_MAX))
            return;
        f = &h->fails[h->nfails++];
        snprintf(f->peer, sizeof f->peer, "%s", peer);
        f->count = 0;
        f->first_ms = now;
    }
    f->count++;
}

/* The Bearer token of Authorization (RFC 6750 2.1), or NULL. */
static const char *bearer(const char *auth)
{
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return NULL;
    auth += 7;
    while (*auth == ' ') auth++;
    return *auth ? auth : NULL;
}

static bool authenticate(sk_http *h, sk_http_req *r)
{
    uint64_t now = sk_now_ms();
    auth_fail *f = fail_find(h, r->peer, now);
    if (f && f->count >= SK_HTTP_AUTH_FAILURES_MAX) {
        unsigned wait = (unsigned)((SK_HTTP_AUTH_THROTTLE_MS - (now - f->first_ms)) / 1000 + 1);
        sk_log(&h->o.log, SK_LOG_WARN, "- http auth-throttle peer=%s failures=%u", r->peer,
               f->count);
        sk_http_reply_retry(h, r, 429, wait, "throttled",
                            "too many failed API keys from this address; try again later");
        return false;
    }
    const char *token = bearer(sk_http_req_header(r, "Authorization"));
    const sk_apikey *k = NULL;
    sk_err e = token ? sk_apikey_store_check(h->keys, token, &k) : SK_ERR_AUTH;
    if (e == SK_ERR_IO || e == SK_ERR_NOMEM) {
        sk_log(&h->o.log, SK_LOG_ERR, "- http apikeys-unreadable data_dir=%s", h->data_dir);
        sk_http_reply_error(h, r, 500, "internal", NULL, "the API keys cannot be read");
        return false;
    }
    if (e) {
        /* Keys never go to the log; a missing header is no failed guess. */
        if (token) fail_count(h, r->peer, now);
        sk_log(&h->o.log, SK_LOG_INFO, "- http auth-failed peer=%s reason=%s", r->peer,
               token ? "unknown-key" : "no-key");
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), "WWW-Authenticate",
                          "Bearer realm=\"smtpkit\"");
        sk_http_reply_error(h, r, 401, "unauthorized", NULL,
                            token ? "unknown or revoked API key"
                                  : "an API key is required (Authorization: Bearer KEY)");
        return false;
    }
    r->key_copy = *k;
    r->key_copy.name = sk_strdup(k->name);
    if (!r->key_copy.name) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        return false;
    }
    r->key = &r->key_copy;
    if (!sk_apikey_scope_allows(k->scope, (sk_apikey_scope)r->route->scope)) {
        sk_http_reply_error(h, r, 403, "forbidden", NULL, "this key's scope (%s) does not allow %s",
                            sk_apikey_scope_name(k->scope),
                            sk_apikey_scope_name((sk_apikey_scope)r->route->scope));
        return false;
    }
    return true;
}

/* Worker: the answer kept for the request's key pair, if any. */
static void lookup_run(sk_http_work *w, sk_http_pool *p, sk_http_conns *c)
{
    sk_http_req *r = (sk_http_req *)((char *)w - offsetof(sk_http_req, idem_work));
    sk_error err = {0};
    sk_idem *db = sk_http_conns_idem(p, c, &err);
    r->idem_err = db ? sk_idem_get(db, r->key_copy.id, r->idem_key, &r->idem_status, &r->idem_body)
                     : SK_ERR_IO;
}

/* Loop: a key seen before gets its first answer again; a new one runs
 * the route. */
static void lookup_done(sk_http_work *w)
{
    sk_http_req *r = (sk_http_req *)((char *)w - offsetof(sk_http_req, idem_work));
    sk_http *h = r->h;
    if (!h || !r->ev) {
        done_with(r);
        return;
    }
    if (w->cancelled || sk_http_pool_stopping(h->pool)) {
        r->idem_claim = false;
        sk_http_reply_retry(h, r, 503, 1, "unavailable", "the server is stopping");
        return;
    }
    if (r->idem_err == SK_OK) {
        r->idem_claim = false; /* kept already */
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Idempotent-Replayed", "true");
        finish(r, r->idem_status, r->idem_body, strlen(r->idem_body), 0);
        return;
    }
    if (r->idem_err != SK_ERR_NOT_FOUND) {
        r->idem_claim = false;
        sk_http_reply_error(h, r, 503, "unavailable", NULL, "the idempotency store cannot be read");
        return;
    }
    r->route->fn(h, r);
}

/* An Idempotency-Key on a POST: checked, claimed, and looked up on a
 * worker (the route runs from lookup_done). True when it took the
 * request. */
static bool idempotent(sk_http *h, sk_http_req *r)
{
    const char *k = sk_http_req_header(r, "Idempotency-Key");
    if (!k) return false;
    size_t n = strlen(k);
    bool ok = n > 0 && n <= SK_HTTP_IDEMPOTENCY_KEY_MAX_OCTETS;
    for (size_t i = 0; ok && i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e) ok = false;
    if (!ok) {
        sk_http_reply_error(h, r, 400, "invalid_header", "Idempotency-Key",
                            "1 to %d printable ASCII characters without spaces",
                            SK_HTTP_IDEMPOTENCY_KEY_MAX_OCTETS);
        return true;
    }
    /* The same key pair still being answered: the first request has not
     * said what it did yet, so this one can neither run nor replay it
     * (draft-ietf-httpapi-idempotency-key-header: 409). */
    for (sk_http_req *o = h->pending; o; o = o->next)
        if (o != r && o->idem_claim && !strcmp(o->key_copy.id, r->key_copy.id) &&
            !strcmp(o->idem_key, k)) {
            sk_http_reply_error(h, r, 409, "idempotency_key_in_use", "Idempotency-Key",
                                "a request with this Idempotency-Key is still in progress");
            return true;
        }
    memcpy(r->idem_key, k, n + 1);
    r->idem_claim = true;
    /* Refused (stopping): answered 503, which is not kept. */
    (void)sk_http_req_work(h, r, &r->idem_work, lookup_run, lookup_done);
    return true;
}

static void dispatch(struct evhttp_request *ev, void *arg)
{
    sk_http *h = arg;
    sk_http_req *r = sk_calloc(1, sizeof *r);
    if (!r) {
        evhttp_send_error(ev, 500, NULL);
        return;
    }
    r->h = h;
    r->ev = ev;
    r->next = h->pending;
    if (h->pending) h->pending->prev = r;
    h->pending = r;
    h->nrequests++;
    struct evhttp_connection *evc = evhttp_request_get_connection(ev);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (evc) evhttp_connection_get_peer(evc, &addr, &port);
    snprintf(r->peer, sizeof r->peer, "%s", addr ? addr : "-");
    for (hconn *c = h->conns; evc && c; c = c->next) {
        if (c->evc != evc) continue;
        c->state = HC_BUSY;
        evtimer_del(c->timer);
        c->req = r;
        r->conn = c;
        break;
    }

    if (h->nrequests > h->o.max_requests) {
        sk_http_reply_retry(h, r, 503, 1, "busy", "too many requests in progress");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    if (!path || !*path) path = "/";
    if (query) {
        if (evhttp_parse_query_str(query, &r->query) != 0) {
            sk_http_reply_error(h, r, 400, "invalid_query", NULL, "malformed query string");
            return;
        }
        r->has_query = true;
    }
    const char *method = method_name(evhttp_request_get_command(ev));
    bool path_known = false;
    for (const sk_http_route *rt = sk_http_routes; rt->method; rt++) {
        char params[SK_HTTP_PARAMS_MAX][SK_HTTP_PARAM_OCTETS];
        if (!sk_http_route_match(rt->pattern, path, params, SK_HTTP_PARAMS_MAX)) continue;
        path_known = true;
        if (strcmp(rt->method, method) != 0) continue;
        r->route = rt;
        memcpy(r->params, params, sizeof params);
        break;
    }
    if (!r->route) {
        if (path_known)
            sk_http_reply_error(h, r, 405, "method_not_allowed", NULL, "%s is not allowed here",
                                method[0] ? method : "this method");
        else
            sk_http_reply_error(h, r, 404, "not_found", NULL, "no such route");
        return;
    }
    bool open =
        r->route->scope < 0 || ((r->route->flags & SK_HTTP_ROUTE_METRICS) && h->o.metrics_public);
    if (!open && !authenticate(h, r)) return;
    if (!open && !strcmp(method, "POST") && idempotent(h, r)) return;
    r->route->fn(h, r);
}

void sk_http_req_set_state(sk_http_req *r, void *state, void (*state_free)(void *))
{
    r->state = state;
    r->state_free = state_free;
}

bool sk_http_req_orphaned(const sk_http_req *r)
{
    return !r->h;
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
        evhttp_set_gencb(h->http, dispatch, h);
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
