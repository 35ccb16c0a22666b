/* Idempotency keys of the HTTP API: the first answer to a request that
 * carried one, in DATA-DIR/http.db (SQLite, WAL, synchronous=FULL: the
 * answer is durable before it is sent, so a retry after a crash finds it). */
#include "http_int.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* How long a writer waits for the database's lock (another process
 * reading it): far above a single insert. */
#define IDEM_BUSY_TIMEOUT_MS 5000

struct sk_idem {
    sqlite3 *db;
    sqlite3_stmt *get, *put, *prune;
};

void sk_idem_free(sk_idem *d)
{
    if (!d) return;
    sqlite3_finalize(d->get);
    sqlite3_finalize(d->put);
    sqlite3_finalize(d->prune);
    sqlite3_close(d->db);
    sk_free(d);
}

sk_idem *sk_idem_open(const char *data_dir, sk_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/http.db", data_dir);
    sk_idem *d = sk_calloc(1, sizeof *d);
    if (!d) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "out of memory");
        return NULL;
    }
    int rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK) sqlite3_busy_timeout(d->db, IDEM_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d->db,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                          "CREATE TABLE IF NOT EXISTS idempotency ("
                          " api_key TEXT NOT NULL, key TEXT NOT NULL, created INTEGER NOT NULL,"
                          " status INTEGER NOT NULL, body TEXT NOT NULL,"
                          " PRIMARY KEY (api_key, key));"
                          "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency(created);",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(
            d->db, "SELECT status, body FROM idempotency WHERE api_key = ?1 AND key = ?2", -1,
            &d->get, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(d->db,
                                "INSERT OR IGNORE INTO idempotency (api_key, key, created, status,"
                                " body) VALUES (?1, ?2, ?3, ?4, ?5)",
                                -1, &d->put, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(d->db, "DELETE FROM idempotency WHERE created < ?1", -1, &d->prune,
                                NULL);
    if (rc != SQLITE_OK) {
        sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "%s: %s", path,
                     d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
        sk_idem_free(d);
        return NULL;
    }
    return d;
}

sk_err sk_idem_get(sk_idem *d, const char *api_key_id, const char *key, int *status, char **body)
{
    *body = NULL;
    sqlite3_reset(d->get);
    sqlite3_bind_text(d->get, 1, api_key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(d->get, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(d->get);
    sk_err e = SK_ERR_IO;
    if (rc == SQLITE_DONE) e = SK_ERR_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        *status = sqlite3_column_int(d->get, 0);
        const char *b = (const char *)sqlite3_column_text(d->get, 1);
        e = (*body = sk_strdup(b ? b : "")) ? SK_OK : SK_ERR_NOMEM;
    }
    sqlite3_reset(d->get);
    return e;
}

sk_err sk_idem_put(sk_idem *d, const char *api_key_id, const char *key, int status,
                   const char *body)
{
    sqlite3_reset(d->put);
    sqlite3_bind_text(d->put, 1, api_key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(d->put, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(d->put, 3, (sqlite3_int64)time(NULL));
    sqlite3_bind_int(d->put, 4, status);
    sqlite3_bind_text(d->put, 5, body, -1, SQLITE_STATIC);
    int rc = sqlite3_step(d->put);
    sqlite3_reset(d->put);
    if (rc == SQLITE_DONE) return SK_OK;
    return rc == SQLITE_FULL ? SK_ERR_NOSPACE : SK_ERR_IO;
}

sk_err sk_idem_prune(sk_idem *d, int64_t now_s)
{
    sqlite3_reset(d->prune);
    sqlite3_bind_int64(d->prune, 1, (sqlite3_int64)(now_s - SK_HTTP_IDEMPOTENCY_KEEP_S));
    int rc = sqlite3_step(d->prune);
    sqlite3_reset(d->prune);
    return rc == SQLITE_DONE ? SK_OK : SK_ERR_IO;
}
