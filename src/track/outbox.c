/* The webhooks' durable outbox in the tracking store (docs/webhooks.md):
 * the endpoints, and one row per event and endpoint that wants it, added
 * in the same transaction as the event itself. The webhook module
 * (src/webhook) sends them and removes them. */
#include "track/track_int.h"

#include <stdio.h>

#include <smtpkit/outbox.h>

const char sk_outbox_schema[] =
    "CREATE TABLE IF NOT EXISTS webhook_endpoints ("
    " url TEXT PRIMARY KEY,"
    " secret TEXT NOT NULL,"
    " events TEXT NOT NULL," /* "*" or ",delivered,bounced," */
    " source TEXT NOT NULL," /* "config" or "api" */
    " created_ms INTEGER NOT NULL,"
    " delivered INTEGER NOT NULL DEFAULT 0,"
    " failures INTEGER NOT NULL DEFAULT 0,"
    " dropped INTEGER NOT NULL DEFAULT 0,"
    " last_ok_ms INTEGER,"
    " failing_since_ms INTEGER,"
    " last_error TEXT);"
    "CREATE TABLE IF NOT EXISTS webhook_outbox ("
    " id INTEGER PRIMARY KEY,"
    " endpoint TEXT NOT NULL,"
    " event_id INTEGER NOT NULL,"
    " msg_key TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_ms INTEGER NOT NULL,"
    " leased INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL);"
    /* A pass takes an endpoint's rows that are not leased in the order
     * they were written, up to its limit, skipping those not due (next_ms
     * in the index: no table read for them): a walk that stops early,
     * where an index on next_ms made every pass sort the whole backlog
     * (docs/BENCHMARKS.md, "Webhook delivery"). */
    "DROP INDEX IF EXISTS webhook_outbox_due;"
    "CREATE INDEX IF NOT EXISTS webhook_outbox_ready ON webhook_outbox(endpoint, leased, id,"
    " next_ms);"
    "CREATE INDEX IF NOT EXISTS webhook_outbox_msg ON webhook_outbox(endpoint, msg_key, id);"
    /* sk_track_prune keeps the events that still have rows. */
    "CREATE INDEX IF NOT EXISTS webhook_outbox_event ON webhook_outbox(event_id);";

sk_err sk_outbox_prepare(sqlite3 *db, sqlite3_stmt **st)
{
    /* Every endpoint whose event list names the event (or takes all). */
    return sqlite3_prepare_v2(db,
                              "INSERT INTO webhook_outbox (endpoint, event_id, msg_key, next_ms,"
                              " created_ms) SELECT url, ?1, ?2, 0, ?3 FROM webhook_endpoints"
                              " WHERE events = '*' OR instr(events, ?4) > 0",
                              -1, st, NULL) == SQLITE_OK
               ? SK_OK
               : SK_ERR_IO;
}

sk_err sk_outbox_add(sqlite3_stmt *st, sqlite3_int64 event_id, const sk_track_ev *ev,
                     int64_t now_ms)
{
    char kind[32];
    snprintf(kind, sizeof kind, ",%s,", sk_track_kind_name(ev->kind));
    /* Order is kept per message: its queue ID, else its Message-ID. */
    const char *key = ev->queue_id ? ev->queue_id : ev->message_id ? ev->message_id : "";
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, event_id);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms);
    sqlite3_bind_text(st, 4, kind, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SK_OK : SK_ERR_IO;
}
