/* The HTTP API's router: a request matched against the table of routes
 * (api.c) by method and path pattern, its key checked, an Idempotency-Key
 * on a POST claimed and looked up on a worker, then the route run. */
#include "listener_int.h"

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

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
        sk_http_req_done(r);
        return;
    }
    if (w->cancelled || sk_http_pool_stopping(h->pool)) {
        r->idem_claim = false;
        sk_http_reply_stopping(h, r);
        return;
    }
    if (r->idem_err == SK_OK) {
        r->idem_claim = false; /* kept already */
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Idempotent-Replayed", "true");
        sk_http_finish(r, r->idem_status, r->idem_body, strlen(r->idem_body), 0);
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

void sk_http_dispatch(struct evhttp_request *ev, void *arg)
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
    if (!open && !sk_http_authenticate(h, r)) return;
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
