/* The routes of the HTTP API that read and run the server rather than
 * send (docs/http-api.md): GET /metrics, the webhooks' endpoints, the
 * events of every message, and the queue per destination. */
#include "http_int.h"

#include <smtpkit/metrics.h>
#include <smtpkit/queue.h>
#include <smtpkit/webhook.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Unix time (s or ms) as RFC 3339, or null for 0. */
static json_t *time_or_null(int64_t unix_s)
{
    if (!unix_s) return json_null();
    char t[32];
    sk_time_rfc3339(unix_s, t);
    return json_string(t);
}

/* ---- GET /metrics ---- */

void sk_http_get_metrics(sk_http *h, sk_http_req *r)
{
    const sk_http_deps *d = sk_http_get_deps(h);
    if (!d->metrics) {
        sk_http_reply_error(h, r, 404, "not_found", NULL, "no metrics here");
        return;
    }
    sk_buf b = SK_BUF_INIT(SK_METRICS_TEXT_MAX_OCTETS);
    sk_err e = d->metrics(d->ctx, &b);
    if (e)
        sk_http_reply_error(h, r, 500, "internal", NULL, "metrics: %s", sk_strerror(e));
    else
        sk_http_reply_text(h, r, 200, SK_METRICS_CONTENT_TYPE, b.data ? b.data : "", b.len);
    sk_buf_free(&b);
}

/* ---- /v1/webhooks ---- */

/* An endpoint's id in the API: the first 16 hex digits of the SHA-256 of
 * its URL (the URL is the endpoint's key; it does not fit a path). */
static void webhook_id(const char *url, char id[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (!EVP_Digest(url, strlen(url), md, &n, EVP_sha256(), NULL) || n < 8) n = 0;
    if (n)
        sk_hex_encode(id, md, 8, false);
    else
        snprintf(id, 17, "%s", "0000000000000000");
}

static char *track_path(sk_http *h)
{
    sk_buf p = SK_BUF_INIT(4096);
    if (sk_buf_printf(&p, "%s/%s", sk_http_get_opts(h)->data_dir, SK_TRACK_DB_NAME)) {
        sk_buf_free(&p);
        return NULL;
    }
    return sk_buf_detach(&p, NULL);
}

static json_t *webhook_json(const sk_webhook_state *s, int64_t next_ms)
{
    char id[17];
    webhook_id(s->url, id);
    /* The events column: "*" for all, else ",a,b,". */
    json_t *evs = json_array();
    const char *e = s->events && strcmp(s->events, "*") ? s->events : "";
    while (evs && *e) {
        size_t k = strcspn(e, ",");
        if (k) json_array_append_new(evs, json_stringn(e, k));
        e += k + (e[k] == ',');
    }
    return json_pack("{s:s,s:s,s:o,s:o,s:I,s:o,s:o,s:I,s:I,s:I,s:o,s:o,s:o}", "id", id, "url",
                     s->url, "events", evs ? evs : json_null(), "source", str_or_null(s->source),
                     "backlog", (json_int_t)s->backlog, "oldest", time_or_null(s->oldest_ms / 1000),
                     "next_attempt", time_or_null(next_ms / 1000), "delivered",
                     (json_int_t)s->delivered, "failures", (json_int_t)s->failures, "dropped",
                     (json_int_t)s->dropped, "last_ok", time_or_null(s->last_ok_ms / 1000),
                     "failing_since", time_or_null(s->failing_since_ms / 1000), "last_error",
                     str_or_null(s->last_error));
}

/* A route on the webhooks' endpoints: their state read on a worker (from
 * track.db, on a connection of that read's own), then, on the loop, the
 * answer, or a change asked of the webhooks' sender (answered from its
 * completion, after which the endpoint is read again for the answer). */
typedef struct webhook_op webhook_op;
struct webhook_op {
    sk_http_work w; /* first */
    sk_http *h;
    sk_http_req *r;
    char *path;                               /* track.db */
    char want_id[SK_HTTP_PARAM_OCTETS];       /* "": every endpoint */
    char *url;                                /* the endpoint's, once known */
    void (*then)(webhook_op *o, json_t *arr); /* loop: the endpoints read */
    sk_err e;
    sk_error err;
    sk_webhook_state *s;
    size_t n;
    int64_t *next;
};

static void webhook_op_free(void *p)
{
    webhook_op *o = p;
    sk_webhook_states_free(o->s, o->n);
    sk_free(o->next);
    sk_free(o->path);
    sk_free(o->url);
    sk_free(o);
}

/* A new operation for r (its state), or NULL with r answered. */
static webhook_op *webhook_op_new(sk_http *h, sk_http_req *r)
{
    const sk_http_deps *d = sk_http_get_deps(h);
    if (!d->webhooks) {
        sk_http_reply_error(h, r, 503, "unavailable", NULL, "webhooks need the tracking store");
        return NULL;
    }
    webhook_op *o = sk_calloc(1, sizeof *o);
    if (o) sk_http_req_set_state(r, o, webhook_op_free);
    if (!o || !(o->path = track_path(h))) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    o->h = h;
    o->r = r;
    return o;
}

static void webhooks_read_run(sk_http_work *w, sk_http_pool *p, sk_http_conns *c)
{
    (void)p;
    (void)c;
    webhook_op *o = (webhook_op *)w;
    sk_webhook_states_free(o->s, o->n);
    sk_free(o->next);
    o->s = NULL;
    o->next = NULL;
    o->n = 0;
    o->e = sk_webhooks_list(o->path, &o->s, &o->n, &o->err);
    if (!o->e && o->n && !(o->next = sk_calloc(o->n, sizeof *o->next))) o->e = SK_ERR_NOMEM;
    if (!o->e) o->e = sk_webhooks_next_attempts(o->path, o->s, o->n, o->next, &o->err);
}

static void webhooks_read_done(sk_http_work *w)
{
    webhook_op *o = (webhook_op *)w;
    sk_http *h = o->h;
    sk_http_req *r = o->r;
    if (sk_http_work_stopped(h, r, w)) return;
    json_t *arr = o->e ? NULL : json_array();
    for (size_t i = 0; arr && i < o->n; i++) {
        if (o->want_id[0]) {
            char id[17];
            webhook_id(o->s[i].url, id);
            if (strcmp(id, o->want_id)) continue;
            if (!o->url && !(o->url = sk_strdup(o->s[i].url))) {
                json_decref(arr);
                arr = NULL;
                o->e = SK_ERR_NOMEM;
                break;
            }
        }
        json_array_append_new(arr, webhook_json(&o->s[i], o->next[i]));
    }
    if (!arr) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "webhooks: %s",
                            o->err.text[0] ? o->err.text : sk_strerror(o->e ? o->e : SK_ERR_NOMEM));
        return;
    }
    o->then(o, arr);
}

/* Read the endpoints (want_id: only that one) on a worker, then o->then. */
static void webhooks_read(webhook_op *o, const char *want_id, void (*then)(webhook_op *, json_t *))
{
    snprintf(o->want_id, sizeof o->want_id, "%s", want_id ? want_id : "");
    o->then = then;
    (void)sk_http_req_work(o->h, o->r, &o->w, webhooks_read_run, webhooks_read_done);
}

static void list_answer(webhook_op *o, json_t *arr)
{
    sk_http_reply(o->h, o->r, 200, json_pack("{s:o}", "webhooks", arr));
}

void sk_http_list_webhooks(sk_http *h, sk_http_req *r)
{
    webhook_op *o = webhook_op_new(h, r);
    if (o) webhooks_read(o, NULL, list_answer);
}

static void added_answer(webhook_op *o, json_t *arr)
{
    json_t *one = json_array_get(arr, 0);
    json_incref(one);
    json_decref(arr);
    if (!one) {
        sk_http_reply_error(o->h, o->r, 500, "internal", NULL, "webhooks: the endpoint is gone");
        return;
    }
    sk_http_reply(o->h, o->r, 201, one);
}

static void on_webhook_added(void *ctx, sk_err e, const sk_error *err)
{
    webhook_op *o = ctx;
    sk_http *h = o->h;
    sk_http_req *r = o->r;
    if (sk_http_req_orphaned(r)) {
        sk_http_reply(h, r, 0, NULL);
        return;
    }
    if (e == SK_ERR_SYNTAX) {
        /* The check's text names the part at fault; the secret is not in it. */
        const char *field = strstr(err->text, "secret")       ? "secret"
                            : strstr(err->text, "event name") ? "events"
                                                              : "url";
        sk_http_reply_error(h, r, 400, "invalid_field", field, "%s", err->text);
        return;
    }
    if (e == SK_ERR_STATE || e == SK_ERR_TOO_LONG) {
        sk_http_reply_error(h, r, 409, "conflict", "url", "%s", err->text);
        return;
    }
    if (e) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "webhooks: %s",
                            err->text[0] ? err->text : sk_strerror(e));
        return;
    }
    sk_log(sk_http_log(h), SK_LOG_INFO, "- http webhook-added key=%s", sk_http_req_key(r)->id);
    char id[17];
    webhook_id(o->url, id);
    sk_free(o->url);
    o->url = NULL;
    webhooks_read(o, id, added_answer);
}

static void on_webhook_removed(void *ctx, sk_err e, const sk_error *err)
{
    webhook_op *o = ctx;
    sk_http *h = o->h;
    sk_http_req *r = o->r;
    if (sk_http_req_orphaned(r))
        sk_http_reply(h, r, 0, NULL);
    else if (e == SK_ERR_NOT_FOUND)
        sk_http_reply_error(h, r, 404, "not_found", "id", "no webhook with this id");
    else if (e)
        sk_http_reply_error(h, r, 500, "internal", NULL, "webhooks: %s", err->text);
    else
        sk_http_reply(h, r, 204, NULL);
}

/* POST body: {"url", "secret", "events": [names]}; 201 with the endpoint. */
void sk_http_add_webhook(sk_http *h, sk_http_req *r)
{
    size_t len = 0;
    const char *body = sk_http_req_body(r, &len);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        sk_http_reply_error(h, r, 400, "invalid_json", NULL, "the body must be a JSON object");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "url") && strcmp(key, "secret") && strcmp(key, "events")) {
            sk_http_reply_error(h, r, 400, "invalid_field", key, "%s: unknown field", key);
            json_decref(root);
            return;
        }
    }
    json_t *url = json_object_get(root, "url"), *secret = json_object_get(root, "secret");
    json_t *events = json_object_get(root, "events");
    const char *bad = !json_is_string(url)                                  ? "url"
                      : !json_is_string(secret)                             ? "secret"
                      : events && !json_is_array(events)                    ? "events"
                      : events && json_array_size(events) > SK_TRACK__COUNT ? "events"
                                                                            : NULL;
    sk_buf list = SK_BUF_INIT(1024);
    size_t i;
    json_array_foreach(bad ? NULL : events, i, v)
    {
        if (!json_is_string(v) || sk_buf_printf(&list, "%s%s", i ? "," : "", json_string_value(v)))
            bad = "events";
    }
    if (bad) {
        sk_buf_free(&list);
        json_decref(root);
        sk_http_reply_error(h, r, 400, "invalid_field", bad, "%s: %s", bad,
                            strcmp(bad, "events") ? "a string" : "an array of event names");
        return;
    }
    sk_webhook_endpoint ep = {.url = json_string_value(url),
                              .secret = json_string_value(secret),
                              .events = list.len ? sk_buf_cstr(&list) : NULL};
    webhook_op *o = webhook_op_new(h, r);
    if (o && !(o->url = sk_strdup(ep.url))) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        o = NULL;
    }
    if (!o) {
        sk_buf_free(&list);
        json_decref(root);
        return;
    }
    sk_error err = {0};
    sk_err e = sk_webhooks_add(sk_http_get_deps(h)->webhooks, &ep, on_webhook_added, o, &err);
    sk_buf_free(&list);
    json_decref(root);
    /* An endpoint refused by its check: answered now, done not called. */
    if (e) on_webhook_added(o, e, &err);
}

/* The endpoint found (or not): removed by the sender. */
static void delete_found(webhook_op *o, json_t *arr)
{
    size_t found = json_array_size(arr);
    json_decref(arr);
    if (!found || !o->url) {
        sk_http_reply_error(o->h, o->r, 404, "not_found", "id", "no webhook with this id");
        return;
    }
    sk_error err = {0};
    sk_err e =
        sk_webhooks_remove(sk_http_get_deps(o->h)->webhooks, o->url, on_webhook_removed, o, &err);
    if (e) on_webhook_removed(o, e, &err);
}

void sk_http_delete_webhook(sk_http *h, sk_http_req *r)
{
    webhook_op *o = webhook_op_new(h, r);
    if (o) webhooks_read(o, sk_http_req_param(r, 0), delete_found);
}

/* ---- GET /v1/events ---- */

/* A time in a query: Unix seconds, or RFC 3339 ("2024-05-01T12:00:00Z",
 * "...+02:00", fractions of a second ignored). */
static bool parse_time(const char *s, int64_t *out_ms)
{
    char *end = NULL;
    if (*s >= '0' && *s <= '9') {
        long long v = strtoll(s, &end, 10);
        if (*end == '\0' && v >= 0 && v < 253402300800LL) {
            *out_ms = (int64_t)v * 1000;
            return true;
        }
    }
    struct tm tm = {0};
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) return false;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9';) end++;
    int64_t off = 0;
    if (*end == 'Z' || *end == 'z') {
        end++;
    } else if ((*end == '+' || *end == '-') && strlen(end) == 6 && end[3] == ':') {
        int hh = 0, mm = 0;
        if (sscanf(end + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59) return false;
        off = (int64_t)(hh * 3600 + mm * 60) * (*end == '+' ? 1 : -1);
        end += 6;
    } else {
        return false;
    }
    if (*end) return false;
    *out_ms = ((int64_t)timegm(&tm) - off) * 1000;
    return true;
}

/* A page of events read on a worker: the filter's strings copied in. */
typedef struct events_query {
    sk_http_work w; /* first */
    sk_http *h;
    sk_http_req *r;
    sk_track_filter f;
    char *recipient, *tag;
    sk_err e;
    sk_error err;
    sk_track_page p;
} events_query;

static void events_query_free(void *ptr)
{
    events_query *q = ptr;
    sk_free(q->recipient);
    sk_free(q->tag);
    sk_track_page_free(&q->p);
    sk_free(q);
}

static void events_run(sk_http_work *w, sk_http_pool *pool, sk_http_conns *c)
{
    events_query *q = (events_query *)w;
    sk_track *t = sk_http_conns_track(pool, c, &q->err);
    q->e = t ? sk_track_events_list(t, &q->f, &q->p, &q->err) : SK_ERR_IO;
}

static void events_done(sk_http_work *w)
{
    events_query *q = (events_query *)w;
    sk_http *h = q->h;
    sk_http_req *r = q->r;
    if (sk_http_work_stopped(h, r, w)) return;
    if (q->e) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "%s",
                            q->err.text[0] ? q->err.text : sk_strerror(q->e));
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < q->p.n; i++) {
        json_t *ev = sk_http_event_json(&q->p.events[i]);
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)q->p.ids[i]);
        if (ev) json_object_set_new(ev, "id", json_string(id));
        json_array_append_new(arr, ev);
    }
    char next[24];
    int64_t after = q->p.next_after;
    snprintf(next, sizeof next, "%lld", (long long)after);
    sk_http_reply(h, r, 200,
                  json_pack("{s:o,s:o}", "events", arr ? arr : json_null(), "next_cursor",
                            after ? json_string(next) : json_null()));
}

void sk_http_list_events(sk_http *h, sk_http_req *r)
{
    sk_track_filter f = {.kind = -1, .limit = SK_HTTP_PAGE_DEFAULT};
    const char *v;
    if ((v = sk_http_req_query(r, "type")) && (f.kind = sk_track_kind_parse(v)) < 0) {
        sk_http_reply_error(h, r, 400, "invalid_query", "type", "type: not an event name");
        return;
    }
    if ((v = sk_http_req_query(r, "since")) && !parse_time(v, &f.since_ms)) {
        sk_http_reply_error(h, r, 400, "invalid_query", "since",
                            "since: Unix seconds or an RFC 3339 time");
        return;
    }
    if ((v = sk_http_req_query(r, "until")) && !parse_time(v, &f.until_ms)) {
        sk_http_reply_error(h, r, 400, "invalid_query", "until",
                            "until: Unix seconds or an RFC 3339 time");
        return;
    }
    char *end = NULL;
    if ((v = sk_http_req_query(r, "limit"))) {
        unsigned long n = strtoul(v, &end, 10);
        if (*v < '0' || *v > '9' || *end || n < 1 || n > SK_HTTP_PAGE_MAX) {
            sk_http_reply_error(h, r, 400, "invalid_query", "limit", "limit: 1 to %d",
                                SK_HTTP_PAGE_MAX);
            return;
        }
        f.limit = n;
    }
    if ((v = sk_http_req_query(r, "cursor"))) {
        long long n = strtoll(v, &end, 10);
        if (*v < '0' || *v > '9' || *end || n < 0) {
            sk_http_reply_error(h, r, 400, "invalid_query", "cursor",
                                "cursor: the next_cursor of an earlier page");
            return;
        }
        f.after_id = n;
    }
    if (!sk_http_get_deps(h)->track) {
        sk_http_reply_error(h, r, 503, "unavailable", NULL, "the tracking store is not open");
        return;
    }
    events_query *q = sk_calloc(1, sizeof *q);
    const char *rcpt = sk_http_req_query(r, "recipient"), *tag = sk_http_req_query(r, "tag");
    if (q) sk_http_req_set_state(r, q, events_query_free);
    if (!q || (rcpt && !(q->recipient = sk_strdup(rcpt))) || (tag && !(q->tag = sk_strdup(tag)))) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        return;
    }
    q->h = h;
    q->r = r;
    q->f = f;
    q->f.recipient = q->recipient;
    q->f.tag = q->tag;
    (void)sk_http_track_sync(h, &q->w);
    (void)sk_http_req_work(h, r, &q->w, events_run, events_done);
}

/* ---- GET /v1/queue ---- */

static void dest_one(void *ctx, const sk_queue_dest_info *d)
{
    json_t *arr = ctx;
    json_array_append_new(
        arr, json_pack("{s:s,s:o,s:I,s:I,s:I,s:I,s:o,s:o,s:I,s:I,s:b,s:o,s:b,s:o}", "destination",
                       d->domain, "queue", str_or_null(d->queue_key), "recipients",
                       (json_int_t)d->recipients, "messages", (json_int_t)d->messages, "held",
                       (json_int_t)d->held, "delivering", (json_int_t)d->delivering, "oldest",
                       time_or_null(d->oldest_s), "next_attempt", time_or_null(d->next_attempt_s),
                       "in_flight", (json_int_t)d->in_flight, "waiting_jobs",
                       (json_int_t)d->waiting_jobs, "suspended", d->suspended_until_ms != 0,
                       "suspended_until", time_or_null(d->suspended_until_ms / 1000), "throttled",
                       d->throttled_until_ms != 0, "throttled_until",
                       time_or_null(d->throttled_until_ms / 1000)));
}

void sk_http_list_queue(sk_http *h, sk_http_req *r)
{
    const sk_http_deps *d = sk_http_get_deps(h);
    if (!d->queue) {
        sk_http_reply_error(h, r, 503, "unavailable", NULL, "the queue is not running");
        return;
    }
    json_t *arr = json_array();
    size_t n = 0;
    if (!arr || sk_queue_destinations(d->queue, dest_one, arr, &n)) {
        json_decref(arr);
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        return;
    }
    sk_http_reply(h, r, 200,
                  json_pack("{s:I,s:I,s:o}", "messages", (json_int_t)sk_queue_count(d->queue),
                            "in_flight", (json_int_t)sk_queue_in_flight(d->queue), "destinations",
                            arr));
}
