/* API-key authentication of the HTTP API's requests (Authorization:
 * Bearer, RFC 6750 2.1) against the route's scope, with failed keys
 * counted and throttled per client address as SMTP AUTH is. */
#include "listener_int.h"

#include <event2/http.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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

bool sk_http_authenticate(sk_http *h, sk_http_req *r)
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
