/* The webhook sender's reads and updates of the outbox in the tracking
 * store (outbox.h), one transaction per pass on the sender's thread. */
#include "webhook/webhook_int.h"

#include <smtpkit/outbox.h>

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wh_item_free(wh_item *it)
{
    if (!it) return;
    sk_free(it->url);
    sk_free(it->body);
    if (it->hdrs) curl_slist_free_all(it->hdrs);
    sk_free(it);
}

sqlite3 *wh_store_open(const char *path, sk_error *err)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, sk_outbox_schema, NULL, NULL, NULL) != SQLITE_OK) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s: %s", path,
                     db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close_v2(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, SK_TRACK_BUSY_TIMEOUT_MS_DEFAULT);
    return db;
}

sk_err wh_store_unlease(sqlite3 *db, sk_error *err)
{
    if (sqlite3_exec(db, "UPDATE webhook_outbox SET leased = 0 WHERE leased = 1", NULL, NULL,
                     NULL) != SQLITE_OK)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s", sqlite3_errmsg(db));
    return SK_OK;
}

typedef struct stmts {
    sqlite3_stmt *del, *retry, *ok, *fail, *fetch, *lease, *backlog, *gone;
} stmts;

static const char *const sqls[] = {
    "DELETE FROM webhook_outbox WHERE id = ?1",
    "UPDATE webhook_outbox SET attempts = ?3, leased = 0, next_ms = ?2 WHERE id = ?1",
    "UPDATE webhook_endpoints SET delivered = delivered + 1, last_ok_ms = ?2,"
    " failing_since_ms = NULL WHERE url = ?1",
    "UPDATE webhook_endpoints SET failures = failures + 1, dropped = dropped + ?4,"
    " last_error = ?3, failing_since_ms = coalesce(failing_since_ms, ?2) WHERE url = ?1",
    /* Due rows of an endpoint that are first of their message (an
     * earlier one, sent or not, holds the later ones back), with their
     * event; a row whose event was pruned comes with NULLs. */
    "SELECT o.id, o.created_ms, o.attempts, e.id, e.time_ms, e.event, e.queue_id, e.message_id,"
    " e.recipient, e.attempt, e.remote_host, e.reply, e.tls, e.class, m.tags, m.metadata"
    " FROM webhook_outbox o LEFT JOIN events e ON e.id = o.event_id"
    " LEFT JOIN message_meta m ON m.queue_id = e.queue_id"
    " WHERE o.endpoint = ?1 AND o.leased = 0 AND o.next_ms <= ?2 AND NOT EXISTS"
    " (SELECT 1 FROM webhook_outbox p WHERE p.endpoint = o.endpoint AND p.msg_key = o.msg_key"
    " AND p.id < o.id) ORDER BY o.id LIMIT ?3",
    "UPDATE webhook_outbox SET leased = 1 WHERE id = ?1",
    "SELECT count(*) FROM webhook_outbox WHERE endpoint = ?1",
    /* A row whose event is gone (removed by hand: sk_track_prune keeps
     * the events the outbox has) cannot be sent: counted as given up. */
    "UPDATE webhook_endpoints SET dropped = dropped + 1 WHERE url = ?1",
};

static void finalize(stmts *s)
{
    sqlite3_stmt **all = (sqlite3_stmt **)s;
    for (size_t i = 0; i < sizeof *s / sizeof *all; i++) sqlite3_finalize(all[i]);
}

static bool step_done(sqlite3_stmt *st)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE;
}

/* Exponential backoff: SK_WEBHOOK_RETRY_MIN_MS doubled per attempt made. */
static uint64_t backoff_ms(unsigned attempts)
{
    uint64_t d = SK_WEBHOOK_RETRY_MIN_MS;
    for (unsigned i = 1; i < attempts && d < SK_WEBHOOK_RETRY_MAX_MS; i++) d *= 2;
    return d < SK_WEBHOOK_RETRY_MAX_MS ? d : SK_WEBHOOK_RETRY_MAX_MS;
}

static bool apply(stmts *s, const wh_pass *p, int64_t now)
{
    for (const wh_item *it = p->results; it; it = it->next) {
        bool give_up = !it->ok && now - it->created_ms > (int64_t)p->max_age_ms;
        if (it->ok || give_up || it->orphan) {
            sqlite3_bind_int64(s->del, 1, it->row);
            if (!step_done(s->del)) return false;
        } else {
            /* The attempts made so far, this one included, give the delay. */
            unsigned attempts = it->attempts + 1;
            sqlite3_bind_int64(s->retry, 1, it->row);
            sqlite3_bind_int64(s->retry, 2, now + (int64_t)backoff_ms(attempts));
            sqlite3_bind_int(s->retry, 3, (int)attempts);
            if (!step_done(s->retry)) return false;
        }
        if (it->orphan) {
            sqlite3_bind_text(s->gone, 1, it->url, -1, SQLITE_STATIC);
            if (!step_done(s->gone)) return false;
            continue;
        }
        sqlite3_stmt *st = it->ok ? s->ok : s->fail;
        sqlite3_bind_text(st, 1, it->url, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        if (!it->ok) {
            sqlite3_bind_text(st, 3, it->err, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 4, give_up);
        }
        if (!step_done(st)) return false;
    }
    return true;
}

static const char *col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* The leased rows of one endpoint, as items with their bodies. */
static bool fetch(stmts *s, wh_pass *p, size_t i, int64_t now, wh_item ***tail)
{
    sqlite3_bind_text(s->fetch, 1, p->urls[i], -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->fetch, 2, now);
    sqlite3_bind_int(s->fetch, 3, (int)p->want[i]);
    int rc;
    bool ok = true;
    while (ok && (rc = sqlite3_step(s->fetch)) == SQLITE_ROW) {
        wh_item *it = sk_calloc(1, sizeof *it);
        if (!it || !(it->url = sk_strdup(p->urls[i]))) {
            wh_item_free(it);
            ok = false;
            break;
        }
        it->row = sqlite3_column_int64(s->fetch, 0);
        it->created_ms = sqlite3_column_int64(s->fetch, 1);
        it->attempts = (unsigned)sqlite3_column_int(s->fetch, 2);
        if (sqlite3_column_type(s->fetch, 3) == SQLITE_NULL) {
            it->orphan = true;
        } else {
            int kind = sk_track_kind_parse(col(s->fetch, 5));
            sk_track_ev ev = {.time_ms = sqlite3_column_int64(s->fetch, 4),
                              .kind = kind < 0 ? SK_TRACK_RECEIVED : (sk_track_kind)kind,
                              .queue_id = col(s->fetch, 6),
                              .message_id = col(s->fetch, 7),
                              .recipient = col(s->fetch, 8),
                              .attempt = (unsigned)sqlite3_column_int(s->fetch, 9),
                              .remote_host = col(s->fetch, 10),
                              .reply = col(s->fetch, 11),
                              .tls = col(s->fetch, 12),
                              .cls = col(s->fetch, 13),
                              .tags = col(s->fetch, 14),
                              .metadata = col(s->fetch, 15)};
            /* The event's row and time: the same event always has the
             * same ID, whatever the endpoint or the attempt (receivers
             * deduplicate by it). */
            snprintf(it->id, sizeof it->id, "evt_%lld_%lld", (long long)ev.time_ms,
                     (long long)sqlite3_column_int64(s->fetch, 3));
            sk_buf b = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS * 16);
            if (sk_webhook_event_json(&ev, &b)) {
                sk_buf_free(&b);
                wh_item_free(it);
                ok = false;
                break;
            }
            it->body = sk_buf_detach(&b, &it->len);
        }
        **tail = it;
        *tail = &it->next;
        sqlite3_bind_int64(s->lease, 1, it->row);
        ok = step_done(s->lease);
    }
    sqlite3_reset(s->fetch);
    return ok && (rc == SQLITE_DONE || rc == SQLITE_ROW);
}

void wh_store_pass(sqlite3 *db, wh_pass *p)
{
    stmts s = {0};
    sqlite3_stmt **all = (sqlite3_stmt **)&s;
    int64_t now = now_ms();
    p->err = SK_OK;
    bool ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
    for (size_t i = 0; ok && i < sizeof sqls / sizeof sqls[0]; i++)
        ok = sqlite3_prepare_v2(db, sqls[i], -1, &all[i], NULL) == SQLITE_OK;
    if (ok) ok = apply(&s, p, now);
    wh_item **tail = &p->fetched;
    for (size_t i = 0; ok && i < p->n; i++) {
        if (p->want[i]) ok = fetch(&s, p, i, now, &tail);
        if (ok && p->count_backlog) {
            sqlite3_bind_text(s.backlog, 1, p->urls[i], -1, SQLITE_STATIC);
            if (sqlite3_step(s.backlog) == SQLITE_ROW)
                p->backlog[i] = (uint64_t)sqlite3_column_int64(s.backlog, 0);
            sqlite3_reset(s.backlog);
        }
    }
    if (ok) ok = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
    if (!ok) {
        p->err = SK_ERR_IO;
        snprintf(p->err_text, sizeof p->err_text, "%s", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        /* Nothing was leased: what was read goes back. */
        while (p->fetched) {
            wh_item *it = p->fetched;
            p->fetched = it->next;
            wh_item_free(it);
        }
    }
    finalize(&s);
}

/* ---- endpoints: changed on the store's thread (or at start) ----------- */

static int64_t wall_ms(void)
{
    return now_ms();
}

static sk_err db_fail(sqlite3 *db, sk_error *err)
{
    sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return SK_ERR_IO;
}

/* ",a,b," for the events column ("*" for all). */
static char *events_column(const char *events)
{
    if (!events || !*events) return sk_strdup("*");
    sk_buf b = SK_BUF_INIT(1024);
    if (sk_buf_printf(&b, ",%s,", events)) {
        sk_buf_free(&b);
        return NULL;
    }
    return sk_buf_detach(&b, NULL);
}

/* In a transaction: insert the endpoint, or (replace) update the one with
 * its URL. Without replace, a known URL is SK_ERR_STATE. */
static sk_err upsert(sqlite3 *db, const sk_webhook_endpoint *ep, const char *source, bool replace,
                     sk_error *err)
{
    sqlite3_stmt *st;
    const char *sql = replace ? "INSERT INTO webhook_endpoints (url, secret, events, source,"
                                " created_ms) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(url) DO"
                                " UPDATE SET secret = ?2, events = ?3, source = ?4"
                              : "INSERT INTO webhook_endpoints (url, secret, events, source,"
                                " created_ms) VALUES (?1, ?2, ?3, ?4, ?5)";
    char *events = events_column(ep->events);
    if (!events) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: out of memory");
    }
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        sk_free(events);
        return db_fail(db, err);
    }
    sqlite3_bind_text(st, 1, ep->url, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ep->secret, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, events, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, wall_ms());
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    sk_free(events);
    if (rc == SQLITE_CONSTRAINT) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "webhook %s exists already", ep->url);
    }
    return rc == SQLITE_DONE ? SK_OK : db_fail(db, err);
}

/* In a transaction: the endpoint and its events not sent; *dropped
 * counts the endpoints removed. */
static sk_err drop_endpoint(sqlite3 *db, const char *url, size_t *dropped, sk_error *err)
{
    const char *drops[] = {"DELETE FROM webhook_outbox WHERE endpoint = ?1",
                           "DELETE FROM webhook_endpoints WHERE url = ?1"};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, drops[i], -1, &st, NULL) != SQLITE_OK) return db_fail(db, err);
        sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return db_fail(db, err);
        if (i == 1 && dropped) *dropped += (size_t)sqlite3_changes(db);
    }
    return SK_OK;
}

sk_err wh_store_configure(sqlite3 *db, const sk_webhook_endpoint *eps, size_t n, sk_error *err)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return db_fail(db, err);
    /* The configuration's endpoints that it no longer names go, with
     * their events. */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT url FROM webhook_endpoints WHERE source = 'config'", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(db, err);
    char *gone[SK_WEBHOOKS_MAX];
    size_t ngone = 0;
    bool oom = false;
    while (!oom && sqlite3_step(st) == SQLITE_ROW && ngone < SK_WEBHOOKS_MAX) {
        const char *u = (const char *)sqlite3_column_text(st, 0);
        bool kept = false;
        for (size_t i = 0; i < n && !kept; i++) kept = !strcmp(eps[i].url, u);
        if (!kept && !(gone[ngone++] = sk_strdup(u))) oom = true;
    }
    sqlite3_finalize(st);
    sk_err e = SK_OK;
    if (oom) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: out of memory");
    }
    for (size_t i = 0; i < ngone; i++) {
        if (!e && gone[i]) e = drop_endpoint(db, gone[i], NULL, err);
        sk_free(gone[i]);
    }
    for (size_t i = 0; !e && i < n; i++) e = upsert(db, &eps[i], "config", true, err);
    if (e) return e; /* rolled back */
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) return db_fail(db, err);
    return SK_OK;
}

sk_err wh_store_add(sqlite3 *db, const sk_webhook_endpoint *ep, sk_error *err)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return db_fail(db, err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM webhook_endpoints", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(db, err);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (n < 0) return db_fail(db, err);
    if (n >= SK_WEBHOOKS_MAX) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE, "more than %d webhooks",
                            SK_WEBHOOKS_MAX);
    }
    sk_err e = upsert(db, ep, "api", false, err);
    if (e) return e; /* rolled back */
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) return db_fail(db, err);
    return SK_OK;
}

sk_err wh_store_remove(sqlite3 *db, const char *url, sk_error *err)
{
    size_t n = 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return db_fail(db, err);
    sk_err e = drop_endpoint(db, url, &n, err);
    if (e) return e; /* rolled back */
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) return db_fail(db, err);
    if (!n) return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "no webhook %s", url);
    return SK_OK;
}

void wh_eps_clear(wh_ep *eps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sk_free(eps[i].url);
        if (eps[i].secret) OPENSSL_cleanse(eps[i].secret, strlen(eps[i].secret));
        sk_free(eps[i].secret);
        eps[i] = (wh_ep){0};
    }
}

sk_err wh_store_endpoints(sqlite3 *db, wh_ep eps[SK_WEBHOOKS_MAX], size_t *n, sk_error *err)
{
    *n = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT url, secret FROM webhook_endpoints ORDER BY created_ms, url",
                           -1, &st, NULL) != SQLITE_OK)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s", sqlite3_errmsg(db));
    sk_err e = SK_OK;
    int rc;
    while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == SK_WEBHOOKS_MAX) {
            e = sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE, "webhooks: more than %d endpoints",
                             SK_WEBHOOKS_MAX);
            break;
        }
        wh_ep *x = &eps[(*n)++];
        *x = (wh_ep){0};
        x->url = sk_strdup((const char *)sqlite3_column_text(st, 0));
        x->secret = sk_strdup((const char *)sqlite3_column_text(st, 1));
        if (!x->url || !x->secret)
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "webhooks: out of memory");
    }
    if (!e && rc != SQLITE_DONE)
        e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (e) {
        wh_eps_clear(eps, *n);
        *n = 0;
    }
    return e;
}

static char *dup_col(sqlite3_stmt *st, int i, bool *oom)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    if (!s) return NULL;
    char *d = sk_strdup((const char *)s);
    if (!d) *oom = true;
    return d;
}

void sk_webhook_states_free(sk_webhook_state *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        sk_free(s[i].url);
        sk_free(s[i].events);
        sk_free(s[i].source);
        sk_free(s[i].last_error);
    }
    sk_free(s);
}

sk_err sk_webhooks_list(const char *track_path, sk_webhook_state **out, size_t *n, sk_error *err)
{
    sk_error_clear(err);
    *out = NULL;
    *n = 0;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(track_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s: %s", track_path,
                     db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close_v2(db);
        return SK_ERR_IO;
    }
    sqlite3_busy_timeout(db, SK_TRACK_BUSY_TIMEOUT_MS_DEFAULT);
    sqlite3_stmt *st;
    /* A store from before webhooks has no such table: no endpoints. */
    if (sqlite3_prepare_v2(db,
                           "SELECT e.url, e.events, e.source, e.delivered, e.failures, e.dropped,"
                           " e.last_ok_ms, e.failing_since_ms, e.last_error,"
                           " (SELECT count(*) FROM webhook_outbox o WHERE o.endpoint = e.url),"
                           " (SELECT min(created_ms) FROM webhook_outbox o WHERE o.endpoint ="
                           " e.url) FROM webhook_endpoints e ORDER BY e.created_ms, e.url",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close_v2(db);
        return SK_OK;
    }
    sk_webhook_state *s = NULL;
    size_t cap = 0, k = 0;
    bool oom = false;
    int rc;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sk_array_grow(&s, &cap, k + 1, sizeof *s, SK_ARRAY_UNBOUNDED)) {
            oom = true;
            break;
        }
        sk_webhook_state *x = &s[k++];
        *x = (sk_webhook_state){0};
        x->url = dup_col(st, 0, &oom);
        x->events = dup_col(st, 1, &oom);
        x->source = dup_col(st, 2, &oom);
        x->delivered = (uint64_t)sqlite3_column_int64(st, 3);
        x->failures = (uint64_t)sqlite3_column_int64(st, 4);
        x->dropped = (uint64_t)sqlite3_column_int64(st, 5);
        x->last_ok_ms = sqlite3_column_int64(st, 6);
        x->failing_since_ms = sqlite3_column_int64(st, 7);
        x->last_error = dup_col(st, 8, &oom);
        x->backlog = (uint64_t)sqlite3_column_int64(st, 9);
        x->oldest_ms = sqlite3_column_int64(st, 10);
    }
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    if (oom || (rc != SQLITE_DONE && rc != SQLITE_ROW)) {
        sk_webhook_states_free(s, k);
        return sk_error_set(err, oom ? SK_ERR_NOMEM : SK_ERR_IO, SK_STEP_NONE,
                            "webhooks: reading the endpoints failed");
    }
    *out = s;
    *n = k;
    return SK_OK;
}
