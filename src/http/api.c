/* The routes of the HTTP API (docs/http-api.md, docs/openapi.yaml): one
 * row each in sk_http_routes, each handler using the library calls the
 * CLI uses (the spool and queue for messages, the tracking store for
 * events, stats and suppressions). */
#include "http_int.h"

#include <smtpkit/queue.h>
#include <smtpkit/spool.h>
#include <smtpkit/suppress.h>
#include <smtpkit/track.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- GET /v1/health ---- */

static void health(sk_http *h, sk_http_req *r)
{
    const sk_http_deps *d = sk_http_get_deps(h);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/spool/msg", sk_http_get_opts(h)->data_dir);
    bool spool_ok = d->spool && access(dir, W_OK) == 0;
    bool track_ok = d->track != NULL;
    int status = spool_ok && track_ok ? 200 : 503;
    sk_http_reply(h, r, status,
                  json_pack("{s:s,s:s,s:s}", "status", status == 200 ? "ok" : "unavailable",
                            "spool", spool_ok ? "ok" : "unwritable", "tracking",
                            track_ok ? "ok" : "closed"));
}

/* ---- POST /v1/messages, /v1/messages/raw ---- */

/* A send request waiting for its messages to be durable. */
typedef struct send_state {
    sk_http *h;
    sk_http_req *r;
    sk_http_build b;
    char (*ids)[SK_SPOOL_ID_SIZE];
    sk_err *results;
    size_t waiting;
} send_state;

static void send_state_free(void *p)
{
    send_state *s = p;
    sk_http_build_free(&s->b);
    sk_free(s->ids);
    sk_free(s->results);
    sk_free(s);
}

/* A Message-ID as the API and the tracking store show it: without its
 * angle brackets ("" when there is none or it does not fit). */
static void bare_message_id(const char *message_id, char *out, size_t size)
{
    out[0] = '\0';
    size_t n = message_id ? strlen(message_id) : 0;
    if (n >= 2 && message_id[0] == '<' && message_id[n - 1] == '>' && n - 2 < size) {
        memcpy(out, message_id + 1, n - 2);
        out[n - 2] = '\0';
    }
}

static void track_received(sk_http *h, const char *id, const char *message_id,
                           const sk_http_build *b)
{
    sk_track *t = sk_http_get_deps(h)->track;
    if (!t) return;
    char mid[SK_TRACK_FIELD_MAX_OCTETS + 1];
    bare_message_id(message_id, mid, sizeof mid);
    sk_track_ev ev = {.kind = SK_TRACK_RECEIVED,
                      .queue_id = id,
                      .message_id = mid[0] ? mid : NULL,
                      .tags = b->tags,
                      .metadata = b->metadata};
    sk_error err;
    if (sk_track_event(t, &ev, &err))
        sk_log(sk_http_log(h), SK_LOG_ERR, "%s http track-failed error=\"%s\"", id, err.text);
}

/* Nothing of the request was queued: the spool's failure, to try again. */
static void reply_not_queued(sk_http *h, sk_http_req *r, sk_err e)
{
    if (e == SK_ERR_NOSPACE)
        sk_http_reply_retry(h, r, 503, SK_HTTP_RETRY_AFTER_S, "insufficient_storage",
                            "the spool's disk is full; nothing was queued");
    else
        sk_http_reply_retry(h, r, 503, SK_HTTP_RETRY_AFTER_S, "spool_error",
                            "the message could not be stored; nothing was queued");
}

/* Every message of the request is committed or failed: 202 with the IDs,
 * or, when one failed, what was committed of the request is deleted again
 * (nothing half-queued) and the answer says why. */
static void send_answer(send_state *s)
{
    sk_http *h = s->h;
    sk_http_req *r = s->r;
    if (sk_http_req_orphaned(r)) {
        sk_http_reply(h, r, 0, NULL);
        return;
    }
    sk_err bad = SK_OK;
    for (size_t i = 0; i < s->b.n; i++)
        if (s->results[i]) bad = s->results[i];
    const sk_http_deps *d = sk_http_get_deps(h);
    if (bad) {
        for (size_t i = 0; i < s->b.n; i++) {
            if (s->results[i]) continue;
            if (d->queue && sk_queue_delete(d->queue, s->ids[i]))
                sk_log(sk_http_log(h), SK_LOG_ERR, "%s http undo-failed", s->ids[i]);
            else
                sk_log(sk_http_log(h), SK_LOG_INFO, "%s http undone reason=batch-failed",
                       s->ids[i]);
        }
        reply_not_queued(h, r, bad);
        return;
    }
    json_t *msgs = json_array();
    for (size_t i = 0; msgs && i < s->b.n; i++) {
        const sk_http_out *o = &s->b.msgs[i];
        json_t *rc = json_array();
        for (size_t k = 0; rc && k < o->nrcpts; k++)
            json_array_append_new(rc, json_string(o->rcpts[k]));
        char mid[SK_TRACK_FIELD_MAX_OCTETS + 1];
        bare_message_id(o->message_id, mid, sizeof mid);
        json_array_append_new(msgs,
                              json_pack("{s:s,s:s?,s:o}", "id", s->ids[i], "message_id",
                                        mid[0] ? mid : NULL, "recipients", rc ? rc : json_null()));
    }
    sk_http_reply(h, r, 202, json_pack("{s:o}", "messages", msgs ? msgs : json_null()));
}

static void on_committed(void *ctx, sk_err e, const char *queue_id)
{
    send_state *s = ctx;
    /* Which message: the one with this ID. */
    for (size_t i = 0; i < s->b.n; i++) {
        if (strcmp(s->ids[i], queue_id) != 0) continue;
        s->results[i] = e;
        if (!e && !sk_http_req_orphaned(s->r)) {
            track_received(s->h, queue_id, s->b.msgs[i].message_id, &s->b);
            sk_log(sk_http_log(s->h), SK_LOG_INFO, "%s http queued nrcpt=%zu size=%zu key=%s",
                   queue_id, s->b.msgs[i].nrcpts, s->b.msgs[i].data.len, sk_http_req_key(s->r)->id);
        }
        break;
    }
    if (--s->waiting == 0) send_answer(s);
}

static void build_error(sk_http *h, sk_http_req *r, sk_err e, const sk_http_build *b)
{
    const char *field = b->field[0] ? b->field : NULL;
    switch (e) {
    case SK_ERR_SYNTAX:
        sk_http_reply_error(h, r, 400, "invalid_json", field, "%s", b->message);
        break;
    case SK_ERR_INVAL:
        sk_http_reply_error(h, r, 400, "invalid_field", field, "%s: %s", field ? field : "body",
                            b->message);
        break;
    case SK_ERR_TOO_LONG:
        sk_http_reply_error(h, r, 413, "too_large", field, "%s", b->message);
        break;
    default:
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        break;
    }
}

static void send_messages(sk_http *h, sk_http_req *r, sk_http_body_kind kind)
{
    const sk_http_opts *o = sk_http_get_opts(h);
    const sk_http_deps *d = sk_http_get_deps(h);
    if (!d->spool) {
        sk_http_reply_retry(h, r, 503, SK_HTTP_RETRY_AFTER_S, "unavailable", "no spool");
        return;
    }
    /* The queue over its limit: the client is asked to come back. */
    if (o->queue_limit && d->queue && sk_queue_count(d->queue) >= o->queue_limit) {
        sk_log(sk_http_log(h), SK_LOG_WARN, "- http queue-full queued=%zu limit=%llu",
               sk_queue_count(d->queue), (unsigned long long)o->queue_limit);
        sk_http_reply_retry(h, r, 429, SK_HTTP_RETRY_AFTER_S, "queue_full",
                            "the queue is over its limit; try again later");
        return;
    }
    send_state *s = sk_calloc(1, sizeof *s);
    if (!s) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        return;
    }
    s->h = h;
    s->r = r;
    sk_http_req_set_state(r, s, send_state_free);
    size_t len = 0;
    const char *body = sk_http_req_body(r, &len);
    sk_err e = sk_http_build_messages(kind, body, len, o->max_message_octets, &s->b);
    if (e) {
        build_error(h, r, e, &s->b);
        return;
    }
    s->ids = sk_calloc(s->b.n, sizeof *s->ids);
    s->results = sk_calloc(s->b.n, sizeof *s->results);
    sk_spool_msg **ms = sk_calloc(s->b.n, sizeof *ms);
    if (!s->ids || !s->results || !ms) {
        sk_free(ms);
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        return;
    }
    char peer[80];
    const char *p = sk_http_req_peer(r);
    snprintf(peer, sizeof peer, "%s%s", strchr(p, ':') ? "IPv6:" : "", p);
    sk_error err = {0};
    size_t begun = 0;
    for (size_t i = 0; !e && i < s->b.n; i++) {
        sk_http_out *m = &s->b.msgs[i];
        sk_spool_rcpt *rc = sk_calloc(m->nrcpts, sizeof *rc);
        if (!rc) {
            e = SK_ERR_NOMEM;
            break;
        }
        for (size_t k = 0; k < m->nrcpts; k++) rc[k].addr = m->rcpts[k];
        sk_spool_envelope se = {0};
        se.sender = m->sender;
        se.rcpts = rc;
        se.nrcpts = m->nrcpts;
        se.mail.smtputf8 = m->smtputf8;
        se.mail.has_priority = m->has_priority;
        se.mail.priority = m->priority;
        se.helo = (char *)"api";
        se.peer = peer;
        se.esmtp = 1;
        se.auth_user = (char *)sk_http_req_key(r)->id;
        se.state = o->hold ? SK_SPOOL_HOLD : SK_SPOOL_ACTIVE;
        ms[i] = sk_spool_begin(d->spool, &se, &err);
        sk_free(rc);
        if (!ms[i]) {
            e = err.err ? err.err : SK_ERR_IO;
            break;
        }
        begun++;
        snprintf(s->ids[i], SK_SPOOL_ID_SIZE, "%s", sk_spool_msg_id(ms[i]));
        e = sk_spool_write(ms[i], m->data.data, m->data.len);
    }
    if (e) {
        for (size_t i = 0; i < begun; i++) sk_spool_abort(ms[i]);
        sk_free(ms);
        sk_log(sk_http_log(h), SK_LOG_ERR, "- http spool-error step=begin error=\"%s\"",
               err.text[0] ? err.text : sk_strerror(e));
        reply_not_queued(h, r, e);
        return;
    }
    /* 202 only once every message is durable: the commits answer. */
    s->waiting = s->b.n;
    for (size_t i = 0; i < s->b.n; i++) sk_spool_commit(ms[i], on_committed, s);
    sk_free(ms);
}

static void post_message(sk_http *h, sk_http_req *r)
{
    send_messages(h, r, SK_HTTP_COMPOSE);
}

static void post_raw(sk_http *h, sk_http_req *r)
{
    send_messages(h, r, SK_HTTP_RAW);
}

/* ---- GET /v1/messages/{id} ---- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Tags or metadata as kept (JSON text), or empty. */
static json_t *kept_json(const char *text, bool array)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    if (v && (array ? json_is_array(v) : json_is_object(v))) return v;
    json_decref(v);
    return array ? json_array() : json_object();
}

json_t *sk_http_event_json(const sk_track_ev *ev)
{
    char when[32];
    sk_time_rfc3339(ev->time_ms / 1000, when);
    return json_pack("{s:s,s:s,s:o,s:o,s:o,s:I,s:o,s:o,s:o,s:o,s:o,s:o}", "time", when, "event",
                     sk_track_kind_name(ev->kind), "queue_id", str_or_null(ev->queue_id),
                     "message_id", str_or_null(ev->message_id), "recipient",
                     str_or_null(ev->recipient), "attempt", (json_int_t)ev->attempt, "remote_host",
                     str_or_null(ev->remote_host), "reply", str_or_null(ev->reply), "tls",
                     str_or_null(ev->tls), "class", str_or_null(ev->cls), "tags",
                     kept_json(ev->tags, true), "metadata", kept_json(ev->metadata, false));
}

/* A query of the tracking store, run on a worker (work.c): what it asks
 * is copied in, what it found is kept until the answer. */
typedef enum track_op {
    Q_MESSAGE,
    Q_STATS,
    Q_SUPPRESS_LIST,
    Q_SUPPRESS_GET,
    Q_SUPPRESS_PUT,
    Q_SUPPRESS_DELETE,
} track_op;

typedef struct track_query {
    sk_http_work w; /* first: the job's record is the query's */
    sk_http *h;
    sk_http_req *r;
    track_op op;
    char *arg;    /* the message ID, tag or address */
    char *reason; /* PUT */
    int64_t until_s;
    sk_err e;
    sk_error err;
    sk_track_result *res;
    sk_track_stats *st;
    sk_suppression *list;
    size_t n;
    sk_suppression one;
} track_query;

static void track_query_free(void *p)
{
    track_query *q = p;
    sk_free(q->arg);
    sk_free(q->reason);
    sk_track_result_free(q->res);
    sk_track_stats_free(q->st);
    if (q->list) sk_suppress_list_free(q->list, q->n);
    sk_suppression_clear(&q->one);
    sk_free(q);
}

/* Worker thread: the query on this thread's connection. */
static void track_query_run(sk_http_work *w, sk_http_pool *p, sk_http_conns *c)
{
    track_query *q = (track_query *)w;
    sk_track *t = sk_http_conns_track(p, c, &q->err);
    if (!t) {
        q->e = q->err.err ? q->err.err : SK_ERR_IO;
        return;
    }
    switch (q->op) {
    case Q_MESSAGE:
        q->e = sk_track_query(t, q->arg, &q->res, &q->err);
        break;
    case Q_STATS:
        q->e = sk_track_stats_query_tag(t, 0, q->arg, &q->st, &q->err);
        break;
    case Q_SUPPRESS_LIST:
        q->e = sk_suppress_list(t, 0, &q->list, &q->n, &q->err);
        break;
    case Q_SUPPRESS_PUT:
        q->e = sk_suppress_add(t, q->arg, q->reason, 0, q->until_s, &q->err);
        if (q->e) break;
        /* The entry as stored, for the answer. */
        q->e = sk_suppress_check(t, q->arg, 0, &q->one, &q->err);
        break;
    case Q_SUPPRESS_GET:
        q->e = sk_suppress_check(t, q->arg, 0, &q->one, &q->err);
        break;
    case Q_SUPPRESS_DELETE:
        q->e = sk_suppress_remove(t, q->arg, &q->err);
        break;
    }
}

static void track_query_done(sk_http_work *w);

/* Hand op on arg (copied; NULL: none) to a worker; the answer comes from
 * track_query_done. NULL when r was answered already (no store, no
 * memory, stopping). */
static track_query *track_query_start(sk_http *h, sk_http_req *r, track_op op, const char *arg)
{
    if (!sk_http_get_deps(h)->track) {
        sk_http_reply_error(h, r, 503, "unavailable", NULL, "the tracking store is not open");
        return NULL;
    }
    track_query *q = sk_calloc(1, sizeof *q);
    if (!q || (arg && !(q->arg = sk_strdup(arg)))) {
        sk_free(q);
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    /* Reads of events see those recorded so far; the suppression list
     * is written at once, not batched, and needs no such wait. */
    if (op == Q_MESSAGE || op == Q_STATS) (void)sk_http_track_sync(h, &q->w);
    q->h = h;
    q->r = r;
    q->op = op;
    sk_http_req_set_state(r, q, track_query_free);
    return q;
}

static void track_query_submit(track_query *q)
{
    (void)sk_http_req_work(q->h, q->r, &q->w, track_query_run, track_query_done);
}

static void get_message(sk_http *h, sk_http_req *r)
{
    track_query *q = track_query_start(h, r, Q_MESSAGE, sk_http_req_param(r, 0));
    if (q) track_query_submit(q);
}

static void answer_message(sk_http *h, sk_http_req *r, const sk_track_result *res)
{
    json_t *evs = json_array();
    const char *status = "received";
    for (size_t i = 0; evs && i < res->nevents; i++) {
        const sk_track_ev *ev = &res->events[i];
        json_array_append_new(evs, sk_http_event_json(ev));
        status = sk_track_kind_name(ev->kind);
    }
    sk_http_reply(h, r, 200,
                  json_pack("{s:o,s:o,s:s,s:o}", "id", str_or_null(res->id), "message_id",
                            str_or_null(res->message_id), "status", status, "events",
                            evs ? evs : json_null()));
}

/* ---- GET /v1/stats ---- */

static json_t *window_json(const sk_track_window *w)
{
    json_t *kinds = json_object();
    for (int k = 0; kinds && k < SK_TRACK__COUNT; k++)
        json_object_set_new(kinds, sk_track_kind_name((sk_track_kind)k),
                            json_integer((json_int_t)w->by_kind[k]));
    json_t *doms = json_array();
    for (size_t i = 0; doms && i < w->ndomains; i++) {
        const sk_track_domain_count *d = &w->domains[i];
        json_t *dk = json_object();
        for (int k = 0; dk && k < SK_TRACK__COUNT; k++)
            if (d->by_kind[k])
                json_object_set_new(dk, sk_track_kind_name((sk_track_kind)k),
                                    json_integer((json_int_t)d->by_kind[k]));
        json_array_append_new(doms,
                              json_pack("{s:s,s:I,s:o}", "domain", d->domain, "total",
                                        (json_int_t)d->total, "events", dk ? dk : json_null()));
    }
    char since[32], until[32];
    sk_time_rfc3339(w->since_ms / 1000, since);
    sk_time_rfc3339(w->until_ms / 1000, until);
    return json_pack("{s:s,s:s,s:I,s:o,s:o,s:I}", "since", since, "until", until, "total",
                     (json_int_t)w->total, "events", kinds ? kinds : json_null(), "domains",
                     doms ? doms : json_null(), "domains_omitted", (json_int_t)w->domains_omitted);
}

static void get_stats(sk_http *h, sk_http_req *r)
{
    track_query *q = track_query_start(h, r, Q_STATS, sk_http_req_query(r, "tag"));
    if (q) track_query_submit(q);
}

/* ---- suppressions ---- */

static json_t *suppression_json(const sk_suppression *s)
{
    char created[32], until[32];
    sk_time_rfc3339(s->created_s, created);
    sk_time_rfc3339(s->until_s, until);
    return json_pack("{s:s,s:s,s:s,s:o}", "address", s->address, "reason",
                     s->reason ? s->reason : "", "created", created, "until",
                     s->until_s ? json_string(until) : json_null());
}

static void list_suppressions(sk_http *h, sk_http_req *r)
{
    track_query *q = track_query_start(h, r, Q_SUPPRESS_LIST, NULL);
    if (q) track_query_submit(q);
}

static void get_suppression(sk_http *h, sk_http_req *r)
{
    track_query *q = track_query_start(h, r, Q_SUPPRESS_GET, sk_http_req_param(r, 0));
    if (q) track_query_submit(q);
}

static void changed(sk_http *h)
{
    const sk_http_deps *d = sk_http_get_deps(h);
    if (d->suppress_changed) d->suppress_changed(d->ctx);
}

/* PUT body: {"reason": "...", "until": Unix seconds or absent}. */
static void put_suppression(sk_http *h, sk_http_req *r)
{
    size_t len = 0;
    const char *body = sk_http_req_body(r, &len);
    const char *reason = "api";
    int64_t until = 0;
    json_t *root = NULL;
    if (len) {
        json_error_t jerr;
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(root)) {
            json_decref(root);
            sk_http_reply_error(h, r, 400, "invalid_json", NULL, "the body must be a JSON object");
            return;
        }
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v)
        {
            if (strcmp(key, "reason") && strcmp(key, "until")) {
                sk_http_reply_error(h, r, 400, "invalid_field", key, "%s: unknown field", key);
                json_decref(root);
                return;
            }
        }
        json_t *rv = json_object_get(root, "reason"), *uv = json_object_get(root, "until");
        if (rv && (!json_is_string(rv) || json_string_length(rv) > SK_TRACK_FIELD_MAX_OCTETS)) {
            sk_http_reply_error(h, r, 400, "invalid_field", "reason", "reason: a short string");
            json_decref(root);
            return;
        }
        if (uv && (!json_is_integer(uv) || json_integer_value(uv) <= 0)) {
            sk_http_reply_error(h, r, 400, "invalid_field", "until",
                                "until: Unix seconds after 1970");
            json_decref(root);
            return;
        }
        if (rv) reason = json_string_value(rv);
        if (uv) until = (int64_t)json_integer_value(uv);
    }
    track_query *q = track_query_start(h, r, Q_SUPPRESS_PUT, sk_http_req_param(r, 0));
    if (q && !(q->reason = sk_strdup(reason))) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "out of memory");
        q = NULL;
    }
    json_decref(root);
    if (!q) return;
    q->until_s = until;
    track_query_submit(q);
}

static void delete_suppression(sk_http *h, sk_http_req *r)
{
    track_query *q = track_query_start(h, r, Q_SUPPRESS_DELETE, sk_http_req_param(r, 0));
    if (q) track_query_submit(q);
}

/* Loop: the query's answer. */
static void track_query_done(sk_http_work *w)
{
    track_query *q = (track_query *)w;
    sk_http *h = q->h;
    sk_http_req *r = q->r;
    if (sk_http_work_stopped(h, r, w)) return;
    bool by_address = q->op != Q_MESSAGE && q->op != Q_STATS && q->op != Q_SUPPRESS_LIST;
    if (q->e == SK_ERR_NOT_FOUND && q->op == Q_MESSAGE) {
        sk_http_reply_error(h, r, 404, "not_found", "id", "no message with this ID");
        return;
    }
    if (q->e == SK_ERR_NOT_FOUND && by_address) {
        sk_http_reply_error(h, r, 404, "not_found", "address", "not suppressed");
        return;
    }
    if ((q->e == SK_ERR_INVAL || (q->e == SK_ERR_SYNTAX && q->op == Q_SUPPRESS_PUT)) &&
        by_address) {
        sk_http_reply_error(h, r, 400, "invalid_field", "address", "not an address");
        return;
    }
    if (q->e) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "%s",
                            q->err.text[0] ? q->err.text : sk_strerror(q->e));
        return;
    }
    switch (q->op) {
    case Q_MESSAGE:
        answer_message(h, r, q->res);
        return;
    case Q_STATS:
        sk_http_reply(h, r, 200,
                      json_pack("{s:o,s:o,s:o}", "hour", window_json(&q->st->hour), "day",
                                window_json(&q->st->day), "tag", str_or_null(q->arg)));
        return;
    case Q_SUPPRESS_LIST: {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < q->n; i++)
            json_array_append_new(arr, suppression_json(&q->list[i]));
        sk_http_reply(h, r, 200, json_pack("{s:o}", "suppressions", arr ? arr : json_null()));
        return;
    }
    case Q_SUPPRESS_PUT:
        /* In force for RCPT at once: the mirror is told on the loop. */
        changed(h);
        sk_http_reply(h, r, 200, suppression_json(&q->one));
        return;
    case Q_SUPPRESS_GET:
        sk_http_reply(h, r, 200, suppression_json(&q->one));
        return;
    case Q_SUPPRESS_DELETE:
        changed(h);
        sk_http_reply(h, r, 204, NULL);
        return;
    }
}

/* ---- per-message queue operations ---- */

static void queue_op(sk_http *h, sk_http_req *r, sk_queue_op op)
{
    const sk_http_deps *d = sk_http_get_deps(h);
    const char *id = sk_http_req_param(r, 0);
    if (!sk_spool_id_valid(id)) {
        sk_http_reply_error(h, r, 400, "invalid_field", "id", "id: not a queue ID");
        return;
    }
    if (!d->queue) {
        sk_http_reply_error(h, r, 503, "unavailable", NULL, "the queue is not running");
        return;
    }
    /* The same bulk call as `smtpkit queue` through the control socket,
     * on one message: it says whether the message is there. */
    sk_queue_filter f = {0};
    snprintf(f.id, sizeof f.id, "%s", id);
    sk_queue_bulk b = {0};
    sk_err e = SK_OK;
    while (!e && !b.done) e = sk_queue_apply_filter(d->queue, op, &f, 0, &b);
    if (e) {
        sk_http_reply_error(h, r, 500, "internal", NULL, "%s", sk_strerror(e));
        return;
    }
    if (!b.matched) {
        sk_http_reply_error(h, r, 404, "not_found", "id", "no such message in the queue");
        return;
    }
    sk_log(sk_http_log(h), SK_LOG_INFO, "%s http queue-%s changed=%zu key=%s", id,
           sk_queue_op_name(op), b.changed, sk_http_req_key(r)->id);
    sk_http_reply(h, r, 200,
                  json_pack("{s:s,s:s,s:b}", "id", id, "operation", sk_queue_op_name(op), "changed",
                            b.changed > 0));
}

static void queue_release(sk_http *h, sk_http_req *r)
{
    queue_op(h, r, SK_QUEUE_OP_RELEASE);
}

static void queue_retry(sk_http *h, sk_http_req *r)
{
    queue_op(h, r, SK_QUEUE_OP_FLUSH);
}

static void queue_delete(sk_http *h, sk_http_req *r)
{
    queue_op(h, r, SK_QUEUE_OP_DELETE);
}

static void queue_hold(sk_http *h, sk_http_req *r)
{
    queue_op(h, r, SK_QUEUE_OP_HOLD);
}

/* The router's table: a route is one row (docs/openapi.yaml documents
 * every one; test_http_openapi.py keeps the two equal). */
const sk_http_route sk_http_routes[] = {
    {"GET", "/v1/health", -1, health, 0},
    {"POST", "/v1/messages", SK_APIKEY_SEND, post_message, 0},
    {"POST", "/v1/messages/raw", SK_APIKEY_SEND, post_raw, 0},
    {"GET", "/v1/messages/{id}", SK_APIKEY_READ, get_message, 0},
    {"GET", "/v1/events", SK_APIKEY_READ, sk_http_list_events, 0},
    {"GET", "/v1/stats", SK_APIKEY_READ, get_stats, 0},
    {"GET", "/v1/suppressions", SK_APIKEY_READ, list_suppressions, 0},
    {"GET", "/v1/suppressions/{address}", SK_APIKEY_READ, get_suppression, 0},
    {"PUT", "/v1/suppressions/{address}", SK_APIKEY_ADMIN, put_suppression, 0},
    {"DELETE", "/v1/suppressions/{address}", SK_APIKEY_ADMIN, delete_suppression, 0},
    {"GET", "/v1/queue", SK_APIKEY_READ, sk_http_list_queue, 0},
    {"POST", "/v1/queue/{id}/hold", SK_APIKEY_ADMIN, queue_hold, 0},
    {"POST", "/v1/queue/{id}/release", SK_APIKEY_ADMIN, queue_release, 0},
    {"POST", "/v1/queue/{id}/retry", SK_APIKEY_ADMIN, queue_retry, 0},
    {"DELETE", "/v1/queue/{id}", SK_APIKEY_ADMIN, queue_delete, 0},
    {"GET", "/v1/webhooks", SK_APIKEY_READ, sk_http_list_webhooks, 0},
    {"POST", "/v1/webhooks", SK_APIKEY_ADMIN, sk_http_add_webhook, 0},
    {"DELETE", "/v1/webhooks/{id}", SK_APIKEY_ADMIN, sk_http_delete_webhook, 0},
    {"GET", "/metrics", SK_APIKEY_READ, sk_http_get_metrics, SK_HTTP_ROUTE_METRICS},
    {NULL, NULL, 0, NULL, 0},
};
