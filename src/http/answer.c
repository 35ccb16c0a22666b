/* The HTTP API's answers (JSON, or any text), an Idempotency-Key's first
 * answer kept before it is sent, and what a handler reads of its request
 * and of the listener. */
#include "listener_int.h"

#include <smtpkit/track.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

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
        if (evbuffer_get_length(in)) sk_http_conn_start(c, in, 0);
    }
    if (b) evbuffer_free(b);
    sk_log(&h->o.log, SK_LOG_INFO, "- http request peer=%s method=%s route=%s status=%d%s%s",
           r->peer, r->route ? r->route->method : "-", r->route ? r->route->pattern : "-", status,
           r->key ? " key=" : "", r->key ? r->key->id : "");
}

void sk_http_req_done(sk_http_req *r)
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
    sk_http_req_done(r);
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
    sk_http_req_done(r);
}

void sk_http_finish(sk_http_req *r, int status, const char *text, size_t len, unsigned retry)
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
        sk_http_finish(r, 500, oom, sizeof oom - 1, 0);
        return;
    }
    sk_http_finish(r, status, text ? text : "", text ? strlen(text) : 0, 0);
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
    sk_http_finish(r, status, text ? text : "", text ? strlen(text) : 0, retry_after_s);
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
    sk_http_reply_stopping(h, r);
    return false;
}

void sk_http_reply_stopping(sk_http *h, sk_http_req *r)
{
    sk_http_reply_retry(h, r, 503, 1, "unavailable", "the server is stopping");
}

bool sk_http_work_stopped(sk_http *h, sk_http_req *r, const sk_http_work *w)
{
    if (!w->cancelled) return false;
    sk_http_reply_stopping(h, r);
    return true;
}

const sk_logger *sk_http_log(const sk_http *h)
{
    return &h->o.log;
}

bool sk_http_track_sync(sk_http *h, sk_http_work *w)
{
    /* Events are written in batches by the store's writer thread: what
     * was recorded so far is handed to it here, and the worker waits for
     * that batch before the query (work.c); the loop never waits. */
    if (!h->deps.track) return false;
    sk_error err;
    if (sk_track_ticket(h->deps.track, &w->track_ticket, &err))
        sk_log(&h->o.log, SK_LOG_WARN, "- http track-flush-failed error=\"%s\"", err.text);
    w->track = h->deps.track;
    return true;
}
