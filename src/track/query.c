/* The tracking store's reads: a message's events by queue ID or
 * Message-ID (`smtpkit track`) and the counts of the last hour and day
 * (`smtpkit stats`). */
#include "track/track_int.h"

#include <stdlib.h>
#include <string.h>

void sk_track_result_free(sk_track_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nevents; i++) sk_track_ev_clear(&r->events[i]);
    sk_free(r->events);
    sk_free(r->id);
    sk_free(r->message_id);
    sk_free(r);
}

/* First column of the first row of sql with text parameter p, as a new
 * string; *found says whether there was a row. */
static sk_err query_text(sk_track *tr, const char *sql, const char *p, char **out, size_t *rows,
                         sk_error *err)
{
    sqlite3_stmt *st;
    *out = NULL;
    *rows = 0;
    if (sqlite3_prepare_v2(tr->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sk_track_db_error(tr, err, "preparing a query");
    sqlite3_bind_text(st, 1, p, -1, SQLITE_STATIC);
    int rc, oom = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((*rows)++ == 0) *out = sk_track_column_dup(st, 0, &oom);
    }
    sqlite3_finalize(st);
    if (oom) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    if (rc != SQLITE_DONE) {
        sk_free(*out);
        *out = NULL;
        return sk_track_db_error(tr, err, "querying");
    }
    return SK_OK;
}

static sk_err load_events(sk_track *tr, sk_track_result *r, sk_error *err)
{
    sqlite3_stmt *st;
    /* A store of an older version (read, not migrated) lacks the later
     * columns: version 1 DSN IDs, version 2 authentication results. */
    const char *sql =
        tr->schema >= 3   ? "SELECT time_ms, event, queue_id, message_id, recipient, attempt,"
                            " remote_host, reply, tls, class, dsn_id, auth FROM events"
                            " WHERE queue_id = ?1 OR (queue_id IS NULL AND message_id = ?2)"
                            " ORDER BY time_ms, id LIMIT ?3"
        : tr->schema == 2 ? "SELECT time_ms, event, queue_id, message_id, recipient, attempt,"
                            " remote_host, reply, tls, class, dsn_id, NULL FROM events"
                            " WHERE queue_id = ?1 OR (queue_id IS NULL AND message_id = ?2)"
                            " ORDER BY time_ms, id LIMIT ?3"
                          : "SELECT time_ms, event, queue_id, message_id, recipient, attempt,"
                            " remote_host, reply, tls, class, NULL, NULL FROM events"
                            " WHERE queue_id = ?1 OR (queue_id IS NULL AND message_id = ?2)"
                            " ORDER BY time_ms, id LIMIT ?3";
    if (sqlite3_prepare_v2(tr->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sk_track_db_error(tr, err, "preparing a query");
    sk_track_bind_text(st, 1, r->id);
    sk_track_bind_text(st, 2, r->message_id);
    sqlite3_bind_int(st, 3, SK_TRACK_QUERY_EVENTS_MAX);
    int rc, oom = 0;
    size_t cap = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        oom = sk_array_grow(&r->events, &cap, r->nevents + 1, sizeof *r->events,
                            SK_TRACK_QUERY_EVENTS_MAX) != SK_OK;
        if (oom) break;
        sk_track_ev *ev = &r->events[r->nevents++];
        int kind = sk_track_kind_parse((const char *)sqlite3_column_text(st, 1));
        *ev = (sk_track_ev){.time_ms = sqlite3_column_int64(st, 0),
                            .kind = kind < 0 ? SK_TRACK__COUNT : (sk_track_kind)kind,
                            .attempt = (unsigned)sqlite3_column_int64(st, 5)};
        ev->queue_id = sk_track_column_dup(st, 2, &oom);
        ev->message_id = sk_track_column_dup(st, 3, &oom);
        ev->recipient = sk_track_column_dup(st, 4, &oom);
        ev->remote_host = sk_track_column_dup(st, 6, &oom);
        ev->reply = sk_track_column_dup(st, 7, &oom);
        ev->tls = sk_track_column_dup(st, 8, &oom);
        ev->cls = sk_track_column_dup(st, 9, &oom);
        ev->dsn_id = sk_track_column_dup(st, 10, &oom);
        ev->auth = sk_track_column_dup(st, 11, &oom);
    }
    sqlite3_finalize(st);
    if (oom) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return sk_track_db_error(tr, err, "reading events");
    return SK_OK;
}

static sk_err find_message(sk_track *tr, const char *key, sk_track_result *r, sk_error *err)
{
    size_t rows;
    char *s;
    /* A queue ID first. */
    sk_err e = query_text(tr, "SELECT queue_id FROM events WHERE queue_id = ?1 LIMIT 1", key, &s,
                          &rows, err);
    if (e) return e;
    if (rows) {
        r->id = s;
        return query_text(tr,
                          "SELECT message_id FROM events WHERE queue_id = ?1"
                          " AND message_id IS NOT NULL ORDER BY time_ms, id LIMIT 1",
                          key, &r->message_id, &rows, err);
    }
    /* Then a Message-ID: the queue ID with the latest event. */
    e = query_text(tr,
                   "SELECT queue_id FROM events WHERE message_id = ?1 AND queue_id IS NOT NULL"
                   " GROUP BY queue_id ORDER BY max(time_ms) DESC, max(id) DESC",
                   key, &r->id, &rows, err);
    if (e) return e;
    r->other_ids = rows ? rows - 1 : 0;
    if (!rows) {
        e = query_text(tr, "SELECT message_id FROM events WHERE message_id = ?1 LIMIT 1", key, &s,
                       &rows, err);
        if (e) return e;
        sk_free(s);
        if (!rows)
            return sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE,
                                "no events for queue ID or Message-ID '%s'", key);
    }
    if (!(r->message_id = sk_strdup(key)))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    return SK_OK;
}

sk_err sk_track_query(sk_track *tr, const char *id, sk_track_result **out, sk_error *err)
{
    sk_error_clear(err);
    *out = NULL;
    if (!id) return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "no ID to look up");
    /* Our own events first; if that fails, answer from what is written. */
    sk_track_flush_or_log(tr);
    char *copy = sk_strdup(id);
    sk_track_result *r = sk_calloc(1, sizeof *r);
    sk_err e = SK_OK;
    if (!copy || !r) e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    const char *key = copy ? sk_track_strip_angles(copy) : "";
    if (!e && !*key) e = sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "empty ID");
    /* One read transaction, so the lookups and the events agree. */
    if (!e) e = sk_track_exec(tr, "BEGIN", err);
    if (!e) {
        e = find_message(tr, key, r, err);
        if (!e) e = load_events(tr, r, err);
        sqlite3_exec(tr->db, "COMMIT", NULL, NULL, NULL);
    }
    sk_free(copy);
    if (e) {
        sk_track_result_free(r);
        return e;
    }
    *out = r;
    return SK_OK;
}

void sk_track_stats_free(sk_track_stats *s)
{
    if (!s) return;
    sk_track_window *w[] = {&s->hour, &s->day};
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < w[i]->ndomains; j++) sk_free(w[i]->domains[j].domain);
        sk_free(w[i]->domains);
    }
    sk_free(s);
}

static int by_total(const void *a, const void *b)
{
    const sk_track_domain_count *x = a, *y = b;
    if (x->total != y->total) return x->total < y->total ? 1 : -1;
    return strcmp(x->domain, y->domain);
}

static sk_err window_counts(sk_track *tr, sk_track_window *w, sk_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(tr->db,
                           "SELECT event, domain, count(*) FROM events"
                           " WHERE time_ms > ?1 AND time_ms <= ?2"
                           " GROUP BY domain, event ORDER BY domain",
                           -1, &st, NULL) != SQLITE_OK)
        return sk_track_db_error(tr, err, "preparing the stats query");
    sqlite3_bind_int64(st, 1, w->since_ms);
    sqlite3_bind_int64(st, 2, w->until_ms);
    int rc, oom = 0;
    size_t cap = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int kind = sk_track_kind_parse((const char *)sqlite3_column_text(st, 0));
        const char *domain = (const char *)sqlite3_column_text(st, 1);
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 2);
        if (kind < 0) continue; /* written by a newer version */
        w->by_kind[kind] += n;
        w->total += n;
        if (!domain) {
            w->no_recipient.by_kind[kind] += n;
            w->no_recipient.total += n;
            continue;
        }
        sk_track_domain_count *d = w->ndomains ? &w->domains[w->ndomains - 1] : NULL;
        if (!d || strcmp(d->domain, domain)) {
            oom = sk_array_grow(&w->domains, &cap, w->ndomains + 1, sizeof *w->domains,
                                SK_ARRAY_UNBOUNDED) != SK_OK;
            if (oom) break;
            d = &w->domains[w->ndomains];
            *d = (sk_track_domain_count){.domain = sk_strdup(domain)};
            if (!d->domain) {
                oom = 1;
                break;
            }
            w->ndomains++;
        }
        d->by_kind[kind] += n;
        d->total += n;
    }
    sqlite3_finalize(st);
    if (oom) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    if (rc != SQLITE_DONE) return sk_track_db_error(tr, err, "reading stats");
    if (w->ndomains) qsort(w->domains, w->ndomains, sizeof *w->domains, by_total);
    if (w->ndomains > SK_TRACK_STATS_DOMAINS_MAX) {
        for (size_t i = SK_TRACK_STATS_DOMAINS_MAX; i < w->ndomains; i++) {
            const sk_track_domain_count *d = &w->domains[i];
            for (int k = 0; k < SK_TRACK__COUNT; k++) w->other_domains.by_kind[k] += d->by_kind[k];
            w->other_domains.total += d->total;
            sk_free(d->domain);
        }
        w->domains_omitted = w->ndomains - SK_TRACK_STATS_DOMAINS_MAX;
        w->ndomains = SK_TRACK_STATS_DOMAINS_MAX;
    }
    return SK_OK;
}

sk_err sk_track_stats_query(sk_track *tr, int64_t now_ms, sk_track_stats **out, sk_error *err)
{
    sk_error_clear(err);
    *out = NULL;
    sk_track_flush_or_log(tr);
    sk_track_stats *s = sk_calloc(1, sizeof *s);
    if (!s) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    s->now_ms = now_ms ? now_ms : sk_track_now_ms(tr);
    s->hour.until_ms = s->day.until_ms = s->now_ms;
    s->hour.since_ms = s->now_ms - 3600 * 1000;
    s->day.since_ms = s->now_ms - 86400 * 1000;
    /* One read transaction: both windows see the same events. */
    sk_err e = sk_track_exec(tr, "BEGIN", err);
    if (!e) e = window_counts(tr, &s->hour, err);
    if (!e) e = window_counts(tr, &s->day, err);
    sqlite3_exec(tr->db, "COMMIT", NULL, NULL, NULL);
    if (e) {
        sk_track_stats_free(s);
        return e;
    }
    *out = s;
    return SK_OK;
}
