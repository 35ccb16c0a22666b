/* The webhook sender: outbox rows leased by a pass on the store's thread
 * (store.c), POSTed with libcurl's multi interface on the daemon's
 * libevent loop (connections kept alive per endpoint, up to
 * `concurrency` requests in flight each), results applied by the next
 * pass. Endpoints are changed by jobs on the store's thread too, their
 * ends (the endpoints the sender then uses, the caller's callback) on the
 * loop. */
#include "webhook/webhook_int.h"

#include <smtpkit/outbox.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct wh_endpoint {
    char *url, *secret;
    unsigned inflight;
    uint64_t backlog;
} wh_endpoint;

/* An endpoint change on the store's thread, then its end on the loop. */
typedef enum wh_change_kind { WH_CONFIGURE, WH_ADD, WH_REMOVE } wh_change_kind;
typedef struct wh_change {
    sk_job job;
    struct wh_change *next, *prev; /* submitted, not ended */
    sk_webhooks *w;
    wh_change_kind kind;
    /* The endpoints (one for add; remove: url only), copies. */
    sk_webhook_endpoint eps[SK_WEBHOOKS_MAX];
    wh_ep copies[SK_WEBHOOKS_MAX];
    char *events[SK_WEBHOOKS_MAX];
    size_t n;
    sk_webhooks_done_fn done;
    void *ctx;
    /* Out: the outcome, and the endpoints in the store after it. */
    sk_err e;
    sk_error err;
    wh_ep now[SK_WEBHOOKS_MAX];
    size_t nnow;
    bool loaded;
} wh_change;

struct sk_webhooks {
    sk_webhooks_opts o;
    char *path;
    struct event_base *base;
    sqlite3 *wdb; /* the store thread's (and at start, before it runs) */
    sk_workers *workers;
    struct event *drain_ev, *poll_ev, *curl_timer;
    CURLM *multi;
    wh_endpoint eps[SK_WEBHOOKS_MAX];
    size_t neps;
    /* The pass: its job, what it was given and gives back. busy: queued
     * or running (then pass belongs to it). */
    sk_job job;
    bool busy, polling;
    wh_pass pass;
    wh_item *results;  /* ended since the pass was handed over */
    wh_item *inflight; /* requests running */
    uint64_t backlog_at_ms;
    wh_change *changes; /* submitted, not ended */
    bool freeing;       /* in sk_webhooks_free: ends without callbacks */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static wh_endpoint *endpoint_of(sk_webhooks *w, const char *url)
{
    for (size_t i = 0; i < w->neps; i++)
        if (!strcmp(w->eps[i].url, url)) return &w->eps[i];
    return NULL;
}

static void kick(sk_webhooks *w, bool fetch);

/* ---- the pass on the store's thread ---------------------------------- */

static void run_pass(void *ctx)
{
    sk_webhooks *w = ctx;
    wh_store_pass(w->wdb, &w->pass);
}

static void start_request(sk_webhooks *w, wh_item *it);

static void pass_done(void *ctx, sk_job_end end)
{
    sk_webhooks *w = ctx;
    wh_pass *p = &w->pass;
    w->busy = false;
    while (p->results) {
        wh_item *it = p->results;
        p->results = it->next;
        wh_item_free(it);
    }
    if (end == SK_JOB_DONE && p->err)
        sk_log(&w->o.log, SK_LOG_WARN, "- webhook store-failed error=\"%s\"", p->err_text);
    bool got = p->fetched != NULL;
    while (p->fetched) {
        wh_item *it = p->fetched;
        p->fetched = it->next;
        it->next = NULL;
        wh_endpoint *ep = endpoint_of(w, it->url);
        if (end != SK_JOB_DONE || !ep) {
            wh_item_free(it); /* leased until the next start, or its endpoint is gone */
            continue;
        }
        if (it->orphan) {
            sk_log(&w->o.log, SK_LOG_WARN,
                   "- webhook dropped url=\"%s\" row=%lld reason=\"its event is gone\"", it->url,
                   (long long)it->row);
            it->next = w->results;
            w->results = it;
            continue;
        }
        start_request(w, it);
    }
    for (size_t i = 0; i < p->n; i++) {
        if (p->count_backlog) {
            wh_endpoint *ep = endpoint_of(w, p->urls[i]);
            if (ep) ep->backlog = p->backlog[i];
        }
        sk_free(p->urls[i]);
        p->urls[i] = NULL;
    }
    p->n = 0;
    /* More at once when this pass found some; else look again shortly. */
    kick(w, got);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    sk_webhooks *w = arg;
    (void)fd;
    (void)what;
    w->polling = false;
    kick(w, true);
}

/* Hand a pass over when none runs: the results so far, and (fetch) the
 * free request slots of each endpoint. Nothing to do: poll later. */
static void kick(sk_webhooks *w, bool fetch)
{
    if (w->busy || !w->workers) return;
    wh_pass *p = &w->pass;
    size_t want = 0;
    p->n = 0;
    for (size_t i = 0; fetch && i < w->neps; i++) {
        unsigned free = w->o.concurrency - w->eps[i].inflight;
        if (free > SK_WEBHOOK_FETCH_MAX) free = SK_WEBHOOK_FETCH_MAX;
        if (!(p->urls[p->n] = sk_strdup(w->eps[i].url))) break;
        p->want[p->n++] = free;
        want += free;
    }
    uint64_t now = sk_now_ms();
    p->count_backlog = fetch && now - w->backlog_at_ms >= SK_WEBHOOK_BACKLOG_MS;
    if (p->count_backlog) w->backlog_at_ms = now;
    if (!w->results && !want && !p->count_backlog) {
        for (size_t i = 0; i < p->n; i++) sk_free(p->urls[i]);
        p->n = 0;
        if (!w->polling) {
            struct timeval tv = {0, SK_WEBHOOK_POLL_MS * 1000};
            evtimer_add(w->poll_ev, &tv);
            w->polling = true;
        }
        return;
    }
    p->results = w->results;
    w->results = NULL;
    p->max_age_ms = w->o.max_age_ms;
    p->fetched = NULL;
    if (sk_workers_submit(w->workers, &w->job) == SK_OK) {
        w->busy = true;
        if (w->polling) evtimer_del(w->poll_ev);
        w->polling = false;
        return;
    }
    w->results = p->results;
    p->results = NULL;
}

/* ---- HTTP: libcurl's multi interface on the loop ----------------------- */

static void request_ended(sk_webhooks *w, wh_item *it, CURLcode rc)
{
    long code = 0;
    curl_easy_getinfo(it->h, CURLINFO_RESPONSE_CODE, &code);
    it->ok = rc == CURLE_OK && code >= 200 && code < 300;
    if (rc != CURLE_OK)
        snprintf(it->err, sizeof it->err, "%s", curl_easy_strerror(rc));
    else if (!it->ok)
        snprintf(it->err, sizeof it->err, "HTTP status %ld", code);
    if (!it->ok)
        sk_log(&w->o.log, SK_LOG_INFO, "- webhook failed url=\"%s\" id=%s attempt=%u error=\"%s\"",
               it->url, it->id, it->attempts + 1, it->err);
    curl_multi_remove_handle(w->multi, it->h);
    curl_easy_cleanup(it->h);
    it->h = NULL;
    for (wh_item **pp = &w->inflight; *pp; pp = &(*pp)->next)
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    wh_endpoint *ep = endpoint_of(w, it->url);
    if (ep && ep->inflight) ep->inflight--;
    it->next = w->results;
    w->results = it;
}

static void check_done(sk_webhooks *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        wh_item *it = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&it);
        request_ended(w, it, m->data.result);
    }
    kick(w, true);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    sk_webhooks *w = arg;
    int running,
        action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(w->multi, fd, action, &running);
    check_done(w);
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
    sk_webhooks *w = arg;
    (void)fd;
    (void)what;
    int running;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(w);
}

/* CURLMOPT_SOCKETFUNCTION: watch s as curl asks. */
static int socket_cb(CURL *h, curl_socket_t s, int what, void *userp, void *socketp)
{
    sk_webhooks *w = userp;
    struct event *ev = socketp;
    (void)h;
    if (what == CURL_POLL_REMOVE) {
        if (ev) event_free(ev);
        curl_multi_assign(w->multi, s, NULL);
        return 0;
    }
    short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) |
                         (what & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);
    if (ev) {
        event_del(ev);
        event_assign(ev, w->base, s, kind, on_socket_event, w);
    } else {
        ev = event_new(w->base, s, kind, on_socket_event, w);
        if (!ev) return -1;
        curl_multi_assign(w->multi, s, ev);
    }
    event_add(ev, NULL);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    sk_webhooks *w = userp;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(w->curl_timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(w->curl_timer, &tv);
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

static void start_request(sk_webhooks *w, wh_item *it)
{
    wh_endpoint *ep = endpoint_of(w, it->url);
    int64_t ts = wall_ms() / 1000;
    char sig[SK_WEBHOOK_SIGNATURE_OCTETS], h[160];
    bool ok = sk_webhook_sign(ep->secret, it->id, ts, it->body, it->len, sig) == SK_OK;
    struct curl_slist *l = NULL;
    const char *fixed[] = {"Content-Type: application/json", "Expect:"};
    for (size_t i = 0; ok && i < 2; i++) ok = (l = curl_slist_append(it->hdrs = l, fixed[i]));
    snprintf(h, sizeof h, "webhook-id: %s", it->id);
    if (ok) ok = (l = curl_slist_append(it->hdrs = l, h));
    snprintf(h, sizeof h, "webhook-timestamp: %lld", (long long)ts);
    if (ok) ok = (l = curl_slist_append(it->hdrs = l, h));
    snprintf(h, sizeof h, "webhook-signature: %s", sig);
    if (ok) ok = (l = curl_slist_append(it->hdrs = l, h));
    if (ok) it->hdrs = l;
    it->h = ok ? curl_easy_init() : NULL;
    if (!it->h) {
        snprintf(it->err, sizeof it->err, "out of memory");
        it->ok = false;
        it->next = w->results;
        w->results = it;
        return;
    }
    CURL *c = it->h;
    curl_easy_setopt(c, CURLOPT_URL, it->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, it->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)it->len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, it->hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "smtpkit-webhooks");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)SK_WEBHOOK_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_PRIVATE, it);
    /* Wait for a kept-alive connection to come free rather than open
     * more than the endpoint's share. */
    curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L);
    if (curl_multi_add_handle(w->multi, c) != CURLM_OK) {
        curl_easy_cleanup(c);
        it->h = NULL;
        snprintf(it->err, sizeof it->err, "cannot start the request");
        it->next = w->results;
        w->results = it;
        return;
    }
    ep->inflight++;
    it->next = w->inflight;
    w->inflight = it;
}

/* ---- endpoints ------------------------------------------------------- */

static void endpoints_clear(sk_webhooks *w)
{
    for (size_t i = 0; i < w->neps; i++) {
        sk_free(w->eps[i].url);
        if (w->eps[i].secret) OPENSSL_cleanse(w->eps[i].secret, strlen(w->eps[i].secret));
        sk_free(w->eps[i].secret);
    }
    w->neps = 0;
}

/* The endpoints read from the store (taken over) become the sender's;
 * requests in flight keep their counts. */
static void endpoints_set(sk_webhooks *w, wh_ep *now, size_t n)
{
    wh_endpoint eps[SK_WEBHOOKS_MAX] = {0};
    for (size_t i = 0; i < n; i++) {
        eps[i].url = now[i].url;
        eps[i].secret = now[i].secret;
        now[i] = (wh_ep){0};
        wh_endpoint *old = endpoint_of(w, eps[i].url);
        if (old) {
            eps[i].inflight = old->inflight;
            eps[i].backlog = old->backlog;
        }
    }
    endpoints_clear(w);
    memcpy(w->eps, eps, sizeof eps);
    w->neps = n;
}

static void change_free(wh_change *c)
{
    wh_eps_clear(c->copies, c->n);
    for (size_t i = 0; i < c->n; i++) sk_free(c->events[i]);
    wh_eps_clear(c->now, c->nnow);
    OPENSSL_cleanse(c, sizeof *c);
    sk_free(c);
}

/* On the store's thread, between passes (one thread: they never overlap,
 * and both use its connection). */
static void change_run(void *ctx)
{
    wh_change *c = ctx;
    sqlite3 *db = c->w->wdb;
    switch (c->kind) {
    case WH_CONFIGURE:
        c->e = wh_store_configure(db, c->eps, c->n, &c->err);
        break;
    case WH_ADD:
        c->e = wh_store_add(db, &c->eps[0], &c->err);
        break;
    case WH_REMOVE:
        c->e = wh_store_remove(db, c->eps[0].url, &c->err);
        break;
    }
    /* What the store holds now, whatever the outcome. */
    sk_error lerr;
    c->loaded = wh_store_endpoints(db, c->now, &c->nnow, &lerr) == SK_OK;
    if (!c->loaded && !c->e) c->e = sk_error_set(&c->err, lerr.err, SK_STEP_NONE, "%s", lerr.text);
}

static const char *const change_names[] = {"configured", "added", "removed"};

/* On the loop: the sender takes the endpoints, then the caller hears. */
static void change_done(void *ctx, sk_job_end end)
{
    wh_change *c = ctx;
    sk_webhooks *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->changes = c->next;
    if (c->next) c->next->prev = c->prev;
    if (end != SK_JOB_DONE && !c->e)
        c->e = sk_error_set(&c->err, SK_ERR_STATE, SK_STEP_NONE, "webhooks: stopped");
    if (end == SK_JOB_DONE && c->loaded) endpoints_set(w, c->now, c->nnow);
    if (c->e)
        sk_log(&w->o.log, SK_LOG_WARN, "- webhook change-failed error=\"%s\"", c->err.text);
    else if (c->kind == WH_CONFIGURE)
        sk_log(&w->o.log, SK_LOG_INFO, "- webhook configured endpoints=%zu", w->neps);
    else
        sk_log(&w->o.log, SK_LOG_INFO, "- webhook %s url=\"%s\"", change_names[c->kind],
               c->eps[0].url);
    if (c->done && !w->freeing) c->done(c->ctx, c->e, &c->err);
    change_free(c);
    if (!w->freeing) kick(w, true);
}

/* Copies of eps (secrets too) into a new change of that kind. */
static wh_change *change_new(sk_webhooks *w, wh_change_kind kind, const sk_webhook_endpoint *eps,
                             size_t n, sk_webhooks_done_fn done, void *ctx)
{
    wh_change *c = sk_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->w = w;
    c->kind = kind;
    c->done = done;
    c->ctx = ctx;
    for (size_t i = 0; i < n; i++) {
        c->n = i + 1;
        if (!(c->copies[i].url = sk_strdup(eps[i].url)) ||
            (eps[i].secret && !(c->copies[i].secret = sk_strdup(eps[i].secret))) ||
            (eps[i].events && !(c->events[i] = sk_strdup(eps[i].events)))) {
            change_free(c);
            return NULL;
        }
        c->eps[i] = (sk_webhook_endpoint){
            .url = c->copies[i].url, .secret = c->copies[i].secret, .events = c->events[i]};
    }
    sk_job_init(&c->job, change_run, change_done, c);
    return c;
}

static sk_err change_submit(sk_webhooks *w, wh_change_kind kind, const sk_webhook_endpoint *eps,
                            size_t n, sk_webhooks_done_fn done, void *ctx, sk_error *err)
{
    wh_change *c = change_new(w, kind, eps, n, done, ctx);
    if (!c) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: out of memory");
    if (sk_workers_submit(w->workers, &c->job) != SK_OK) {
        change_free(c);
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "webhooks: stopping");
    }
    c->next = w->changes;
    if (c->next) c->next->prev = c;
    w->changes = c;
    return SK_OK;
}

static sk_err check_all(const sk_webhook_endpoint *eps, size_t n, sk_error *err)
{
    if (n > SK_WEBHOOKS_MAX)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE, "more than %d webhooks",
                            SK_WEBHOOKS_MAX);
    for (size_t i = 0; i < n; i++)
        if (sk_webhook_endpoint_check(&eps[i], err)) return err ? err->err : SK_ERR_SYNTAX;
    return SK_OK;
}

sk_err sk_webhooks_configure(sk_webhooks *w, const sk_webhook_endpoint *eps, size_t n,
                             sk_webhooks_done_fn done, void *ctx, sk_error *err)
{
    sk_error_clear(err);
    sk_err e = check_all(eps, n, err);
    return e ? e : change_submit(w, WH_CONFIGURE, eps, n, done, ctx, err);
}

sk_err sk_webhooks_add(sk_webhooks *w, const sk_webhook_endpoint *ep, sk_webhooks_done_fn done,
                       void *ctx, sk_error *err)
{
    sk_error_clear(err);
    sk_err e = check_all(ep, 1, err);
    return e ? e : change_submit(w, WH_ADD, ep, 1, done, ctx, err);
}

sk_err sk_webhooks_remove(sk_webhooks *w, const char *url, sk_webhooks_done_fn done, void *ctx,
                          sk_error *err)
{
    sk_error_clear(err);
    if (!url || !*url) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "webhooks: no URL");
    return change_submit(w, WH_REMOVE, &(sk_webhook_endpoint){.url = url}, 1, done, ctx, err);
}

void sk_webhooks_set_max_age(sk_webhooks *w, uint64_t max_age_ms)
{
    w->o.max_age_ms = max_age_ms ? max_age_ms : SK_WEBHOOK_MAX_AGE_MS_DEFAULT;
}

void sk_webhooks_backlog(const sk_webhooks *w, void (*fn)(void *ctx, const char *url, uint64_t n),
                         void *ctx)
{
    for (size_t i = 0; w && i < w->neps; i++) fn(ctx, w->eps[i].url, w->eps[i].backlog);
}

/* ---- life ------------------------------------------------------------ */

sk_webhooks *sk_webhooks_new(const sk_webhooks_opts *o, struct event_base *base, sk_error *err)
{
    sk_error_clear(err);
    sk_webhooks *w = sk_calloc(1, sizeof *w);
    if (!w) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: out of memory");
        return NULL;
    }
    w->o = *o;
    if (!w->o.max_age_ms) w->o.max_age_ms = SK_WEBHOOK_MAX_AGE_MS_DEFAULT;
    if (!w->o.concurrency) w->o.concurrency = SK_WEBHOOK_CONCURRENCY_DEFAULT;
    if (w->o.concurrency > SK_WEBHOOK_CONCURRENCY_MAX)
        w->o.concurrency = SK_WEBHOOK_CONCURRENCY_MAX;
    w->base = base;
    sk_job_init(&w->job, run_pass, pass_done, w);
    if (!(w->path = sk_strdup(o->track_path))) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: out of memory");
        goto fail;
    }
    /* At start, before the store's thread runs: leases cleared, the
     * configuration's endpoints, then those the store holds. */
    wh_ep now[SK_WEBHOOKS_MAX];
    size_t nnow = 0;
    if (check_all(o->endpoints, o->nendpoints, err) || !(w->wdb = wh_store_open(w->path, err)) ||
        wh_store_unlease(w->wdb, err) ||
        wh_store_configure(w->wdb, o->endpoints, o->nendpoints, err) ||
        wh_store_endpoints(w->wdb, now, &nnow, err))
        goto fail;
    endpoints_set(w, now, nnow);
    sk_log(&w->o.log, SK_LOG_INFO, "- webhook configured endpoints=%zu", w->neps);
    w->o.endpoints = NULL; /* the caller's */
    w->o.nendpoints = 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(w->multi = curl_multi_init())) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: libcurl did not start");
        goto fail;
    }
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)w->o.concurrency);
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->o.concurrency * SK_WEBHOOKS_MAX);
    w->workers = sk_workers_new(&(sk_workers_opts){.name = "webhook", .threads = 1}, err);
    if (!w->workers) goto fail;
    w->drain_ev = event_new(base, sk_workers_fd(w->workers), EV_READ | EV_PERSIST,
                            sk_workers_drain_cb, w->workers);
    w->poll_ev = evtimer_new(base, on_poll, w);
    w->curl_timer = evtimer_new(base, on_curl_timer, w);
    if (!w->drain_ev || !w->poll_ev || !w->curl_timer || event_add(w->drain_ev, NULL)) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: no events");
        goto fail;
    }
    kick(w, true);
    return w;
fail:
    sk_webhooks_free(w);
    return NULL;
}

void sk_webhooks_free(sk_webhooks *w)
{
    if (!w) return;
    w->freeing = true;
    if (w->workers) {
        /* The pass running finishes (its leases stay until the next start),
         * and the endpoint changes asked for are made (their callbacks are
         * not called). */
        if (sk_workers_stop(w->workers, SK_WORKERS_FINISH, SK_WORKERS_NO_LIMIT, NULL)) {
        }
        sk_workers_drain(w->workers);
        sk_workers_free(w->workers);
        w->workers = NULL;
    }
    if (w->multi) {
        /* Requests in flight are dropped: their rows stay leased and are
         * sent again after the next start. */
        while (w->inflight) {
            wh_item *it = w->inflight;
            w->inflight = it->next;
            curl_multi_remove_handle(w->multi, it->h);
            curl_easy_cleanup(it->h);
            wh_item_free(it);
        }
        curl_multi_cleanup(w->multi);
    }
    while (w->results) {
        wh_item *it = w->results;
        w->results = it->next;
        wh_item_free(it);
    }
    for (size_t i = 0; i < w->pass.n; i++) sk_free(w->pass.urls[i]);
    if (w->drain_ev) event_free(w->drain_ev);
    if (w->poll_ev) event_free(w->poll_ev);
    if (w->curl_timer) event_free(w->curl_timer);
    endpoints_clear(w);
    sqlite3_close_v2(w->wdb);
    sk_free(w->path);
    sk_free(w);
}
