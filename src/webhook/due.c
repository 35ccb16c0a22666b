/* When each webhook endpoint's next request is due, read from the outbox
 * (GET /v1/webhooks shows it with the state sk_webhooks_list gives). */
#include <smtpkit/webhook.h>

#include <sqlite3.h>

sk_err sk_webhooks_next_attempts(const char *track_path, const sk_webhook_state *s, size_t n,
                                 int64_t *next_ms, sk_error *err)
{
    sk_error_clear(err);
    for (size_t i = 0; i < n; i++) next_ms[i] = 0;
    if (!n) return SK_OK;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(track_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT min(next_ms) FROM webhook_outbox WHERE endpoint = ?1"
                           " AND leased = 0",
                           -1, &st, NULL) != SQLITE_OK) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s: %s", track_path,
                     db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close_v2(db);
        return SK_ERR_IO;
    }
    sqlite3_busy_timeout(db, SK_TRACK_BUSY_TIMEOUT_MS_DEFAULT);
    sk_err e = SK_OK;
    for (size_t i = 0; !e && i < n; i++) {
        sqlite3_bind_text(st, 1, s[i].url ? s[i].url : "", -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            next_ms[i] = sqlite3_column_int64(st, 0);
        else
            e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "webhooks: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close_v2(db);
    return e;
}
