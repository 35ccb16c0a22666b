/* The tracking store's events of every message, filtered and a page at a
 * time (GET /v1/events): ordered by their row number, which only grows,
 * so that a cursor (the last number seen) stays right while events are
 * added. */
#include "track/track_int.h"

#include <stdbool.h>
#include <string.h>

void sk_track_page_free(sk_track_page *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) sk_track_ev_clear(&p->events[i]);
    sk_free(p->events);
    sk_free(p->ids);
    memset(p, 0, sizeof *p);
}

/* The columns of an event from column 1 on (column 0 is its number). */
static sk_err read_event(sqlite3_stmt *st, sk_track_ev *ev)
{
    int oom = 0;
    int kind = sk_track_kind_parse((const char *)sqlite3_column_text(st, 2));
    *ev = (sk_track_ev){
        .time_ms = sqlite3_column_int64(st, 1),
        .kind = kind < 0 ? SK_TRACK_RECEIVED : (sk_track_kind)kind,
        .queue_id = sk_track_column_dup(st, 3, &oom),
        .message_id = sk_track_column_dup(st, 4, &oom),
        .recipient = sk_track_column_dup(st, 5, &oom),
        .attempt = (unsigned)sqlite3_column_int(st, 6),
        .remote_host = sk_track_column_dup(st, 7, &oom),
        .reply = sk_track_column_dup(st, 8, &oom),
        .tls = sk_track_column_dup(st, 9, &oom),
        .cls = sk_track_column_dup(st, 10, &oom),
        .dsn_id = sk_track_column_dup(st, 11, &oom),
        .tags = sk_track_column_dup(st, 12, &oom),
        .metadata = sk_track_column_dup(st, 13, &oom),
    };
    if (!oom) return SK_OK;
    sk_track_ev_clear(ev);
    return SK_ERR_NOMEM;
}

sk_err sk_track_events_list(sk_track *tr, const sk_track_filter *f, sk_track_page *out,
                            sk_error *err)
{
    sk_error_clear(err);
    memset(out, 0, sizeof *out);
    if (!f->limit || f->limit > SK_TRACK_PAGE_MAX || f->kind >= SK_TRACK__COUNT)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "events: bad filter");
    if (tr->schema < 4)
        return sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                            "tracking store: schema version %d has no tags (open it writable "
                            "once to migrate it)",
                            tr->schema);
    /* What was recorded here so far is part of the answer. */
    sk_track_flush_or_log(tr);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            tr->db,
            "SELECT e.id, e.time_ms, e.event, e.queue_id, e.message_id, e.recipient, e.attempt,"
            " e.remote_host, e.reply, e.tls, e.class, e.dsn_id, m.tags, m.metadata"
            " FROM events e LEFT JOIN message_meta m ON m.queue_id = e.queue_id"
            " WHERE e.id > ?1 AND (?2 IS NULL OR e.event = ?2)"
            " AND (?3 IS NULL OR e.recipient = ?3 COLLATE NOCASE)"
            " AND (?4 IS NULL OR e.time_ms >= ?4) AND (?5 IS NULL OR e.time_ms < ?5)"
            " AND (?6 IS NULL OR e.queue_id IN (SELECT queue_id FROM message_tags WHERE tag = ?6))"
            " ORDER BY e.id LIMIT ?7",
            -1, &st, NULL) != SQLITE_OK)
        return sk_track_db_error(tr, err, "preparing the events query");
    sqlite3_bind_int64(st, 1, f->after_id > 0 ? f->after_id : 0);
    if (f->kind >= 0)
        sqlite3_bind_text(st, 2, sk_track_kind_name((sk_track_kind)f->kind), -1, SQLITE_STATIC);
    sk_track_bind_text(st, 3, f->recipient);
    if (f->since_ms) sqlite3_bind_int64(st, 4, f->since_ms);
    if (f->until_ms) sqlite3_bind_int64(st, 5, f->until_ms);
    sk_track_bind_text(st, 6, f->tag);
    /* One more than the page: whether there is a next one. */
    sqlite3_bind_int64(st, 7, (sqlite3_int64)f->limit + 1);
    out->events = sk_calloc(f->limit, sizeof *out->events);
    out->ids = sk_calloc(f->limit, sizeof *out->ids);
    sk_err e = out->events && out->ids ? SK_OK : SK_ERR_NOMEM;
    int rc = SQLITE_DONE;
    bool more = false;
    while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == f->limit) {
            more = true;
            break;
        }
        e = read_event(st, &out->events[out->n]);
        if (!e) out->ids[out->n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (!e && rc != SQLITE_ROW && rc != SQLITE_DONE)
        e = sk_track_db_error(tr, err, "reading events");
    else if (e == SK_ERR_NOMEM)
        sk_error_set(err, e, SK_STEP_NONE, "tracking: out of memory");
    if (e) {
        sk_track_page_free(out);
        return e;
    }
    out->next_after = more && out->n ? out->ids[out->n - 1] : 0;
    return SK_OK;
}
