/* The tracking store: opening it (schema and its migrations), closing it,
 * pruning, and the helpers the store's files share. Events are written by
 * writer.c, read back by query.c. */
#include "track/track_int.h"

#include <smtpkit/outbox.h>

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Bump when the schema changes, and migrate from the older versions in
 * create_schema. */
#define TRACK_SCHEMA_VERSION 4

static const char *const kind_names[] = {
    [SK_TRACK_RECEIVED] = "received",     [SK_TRACK_QUEUED] = "queued",
    [SK_TRACK_DEFERRED] = "deferred",     [SK_TRACK_DELIVERED] = "delivered",
    [SK_TRACK_BOUNCED] = "bounced",       [SK_TRACK_EXPIRED] = "expired",
    [SK_TRACK_SUPPRESSED] = "suppressed", [SK_TRACK_COMPLAINED] = "complained",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == SK_TRACK__COUNT, "a name per kind");

const char *sk_track_kind_name(sk_track_kind k)
{
    return (unsigned)k < SK_TRACK__COUNT ? kind_names[k] : "unknown";
}

int sk_track_kind_parse(const char *name)
{
    for (int i = 0; name && i < SK_TRACK__COUNT; i++)
        if (!strcmp(name, kind_names[i])) return i;
    return -1;
}

sk_err sk_track_conn_error(sqlite3 *db, sk_error *err, const char *what)
{
    int code = sqlite3_extended_errcode(db);
    sk_err e = SK_ERR_IO;
    if ((code & 0xff) == SQLITE_FULL) e = SK_ERR_NOSPACE;
    if ((code & 0xff) == SQLITE_NOMEM) e = SK_ERR_NOMEM;
    return sk_error_set(err, e, SK_STEP_NONE, "tracking store: %s: %s", what, sqlite3_errmsg(db));
}

sk_err sk_track_db_error(sk_track *tr, sk_error *err, const char *what)
{
    return sk_track_conn_error(tr->db, err, what);
}

sk_err sk_track_exec(sk_track *tr, const char *sql, sk_error *err)
{
    if (sqlite3_exec(tr->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sk_track_db_error(tr, err, sql);
    return SK_OK;
}

char *sk_track_column_dup(sqlite3_stmt *st, int col, int *oom)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    if (!s) return NULL;
    char *d = sk_strdup((const char *)s);
    if (!d) *oom = 1;
    return d;
}

void sk_track_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int64_t sk_track_now_ms(const sk_track *tr)
{
    if (tr->opts.clock_ms) return tr->opts.clock_ms(tr->opts.clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char schema_v1[] =
    "CREATE TABLE IF NOT EXISTS events ("
    " id INTEGER PRIMARY KEY,"
    " time_ms INTEGER NOT NULL,"
    " event TEXT NOT NULL,"
    " queue_id TEXT,"
    " message_id TEXT,"
    " recipient TEXT,"
    " domain TEXT,"
    " attempt INTEGER,"
    " remote_host TEXT,"
    " reply TEXT,"
    " tls TEXT,"
    " class TEXT);"
    "CREATE INDEX IF NOT EXISTS events_queue_id ON events(queue_id);"
    "CREATE INDEX IF NOT EXISTS events_message_id ON events(message_id);"
    "CREATE INDEX IF NOT EXISTS events_time ON events(time_ms);"
    "CREATE TABLE IF NOT EXISTS suppression ("
    " address TEXT PRIMARY KEY,"
    " reason TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " until INTEGER);";

/* Version 2: the queue ID of the DSN that reported an outcome. */
static const char schema_v2[] = "ALTER TABLE events ADD COLUMN dsn_id TEXT;";
/* Version 3: the authentication results of a message received from outside. */
static const char schema_v3[] = "ALTER TABLE events ADD COLUMN auth TEXT;";
/* Version 4: the tags and metadata of messages sent through the HTTP API,
 * once per queue ID (every event of the message reads them back), and
 * the tags one a row, for filtering by tag. */
static const char schema_v4[] =
    "CREATE TABLE IF NOT EXISTS message_meta ("
    " queue_id TEXT PRIMARY KEY, tags TEXT, metadata TEXT);"
    "CREATE TABLE IF NOT EXISTS message_tags ("
    " tag TEXT NOT NULL, queue_id TEXT NOT NULL, PRIMARY KEY (tag, queue_id)) WITHOUT ROWID;";

static int user_version(sk_track *tr)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(tr->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static sk_err create_schema(sk_track *tr, sk_error *err)
{
    sk_err e = sk_track_exec(tr, "BEGIN IMMEDIATE", err);
    if (e) return e;
    int v = user_version(tr);
    if (v < 0) {
        e = sk_track_db_error(tr, err, "reading the schema version");
    } else if (v > TRACK_SCHEMA_VERSION) {
        e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                         "tracking store: schema version %d is newer than this program's (%d)", v,
                         TRACK_SCHEMA_VERSION);
    } else if (v < TRACK_SCHEMA_VERSION) {
        /* Each step migrates from the version before it. */
        if (v < 1) e = sk_track_exec(tr, schema_v1, err);
        if (!e && v < 2) e = sk_track_exec(tr, schema_v2, err);
        if (!e && v < 3) e = sk_track_exec(tr, schema_v3, err);
        if (!e && v < 4) e = sk_track_exec(tr, schema_v4, err);
        if (!e) e = sk_track_exec(tr, "PRAGMA user_version = 4", err);
    }
    /* Added to version 1 later; a program that does not know the change
     * log still reads and writes the store (its changes are logged too). */
    if (!e) e = sk_track_exec(tr, sk_suppress_schema, err);
    if (!e) e = sk_track_exec(tr, sk_outbox_schema, err); /* webhooks (outbox.c) */
    if (!e) tr->schema = TRACK_SCHEMA_VERSION;
    if (e) {
        sqlite3_exec(tr->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return sk_track_exec(tr, "COMMIT", err);
}

void sk_track_opts_defaults(sk_track_opts *o)
{
    if (!o->batch_events) o->batch_events = SK_TRACK_BATCH_EVENTS_DEFAULT;
    if (!o->batch_delay_ms) o->batch_delay_ms = SK_TRACK_BATCH_DELAY_MS_DEFAULT;
    if (!o->busy_timeout_ms) o->busy_timeout_ms = SK_TRACK_BUSY_TIMEOUT_MS_DEFAULT;
}

sk_track *sk_track_open(const char *path, int readonly, sk_error *err)
{
    sk_error_clear(err);
    if (!path) {
        sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "tracking store: no path");
        return NULL;
    }
    struct stat sb;
    if (readonly && stat(path, &sb) != 0) {
        sk_error_set(err, sk_err_from_errno(errno, SK_FILE_READ), SK_STEP_NONE,
                     "tracking store %s: %s", path, strerror(errno));
        return NULL;
    }
    sk_track *tr = sk_calloc(1, sizeof *tr);
    if (!tr) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking store: out of memory");
        return NULL;
    }
    tr->readonly = readonly;
    sk_track_opts_defaults(&tr->opts);
    pthread_mutex_init(&tr->mu, NULL);
    /* sk_track_wait's bound is on the monotonic clock. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&tr->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    tr->path = sk_strdup(path);
    if (!tr->path) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking store: out of memory");
        sk_track_free(tr);
        return NULL;
    }
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &tr->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        if (tr->db)
            sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "tracking store %s: %s", path,
                         sqlite3_errmsg(tr->db));
        else
            sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking store: out of memory");
        sk_track_free(tr);
        return NULL;
    }
    sqlite3_busy_timeout(tr->db, (int)tr->opts.busy_timeout_ms);
    sk_err e = SK_OK;
    if (!readonly) {
        /* WAL: readers (the CLI) never block the writer (the daemon), nor
         * it them. synchronous=NORMAL syncs at checkpoints only, so a power
         * loss may drop the last transactions: docs/tracking.md. */
        e = sk_track_exec(tr, "PRAGMA journal_mode = WAL", err);
        if (!e) e = sk_track_exec(tr, "PRAGMA synchronous = NORMAL", err);
        if (!e) e = create_schema(tr, err);
    } else {
        int v = user_version(tr);
        if (v < 0)
            e = sk_track_db_error(tr, err, "reading the schema version");
        else if (v == 0)
            e = sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE,
                             "tracking store %s: not initialised yet", path);
        else if (v > TRACK_SCHEMA_VERSION)
            e = sk_error_set(err, SK_ERR_CONFIG, SK_STEP_NONE,
                             "tracking store: schema version %d is newer than this program's (%d)",
                             v, TRACK_SCHEMA_VERSION);
        /* An older store is read as it is (a reader does not migrate). */
        tr->schema = v;
    }
    if (e) {
        sk_track_free(tr);
        return NULL;
    }
    return tr;
}

void sk_track_ev_clear(sk_track_ev *ev)
{
    /* The store owns the strings of the events it keeps and returns. */
    sk_free((char *)ev->queue_id);
    sk_free((char *)ev->message_id);
    sk_free((char *)ev->recipient);
    sk_free((char *)ev->remote_host);
    sk_free((char *)ev->reply);
    sk_free((char *)ev->tls);
    sk_free((char *)ev->cls);
    sk_free((char *)ev->dsn_id);
    sk_free((char *)ev->auth);
    sk_free((char *)ev->tags);
    sk_free((char *)ev->metadata);
    memset(ev, 0, sizeof *ev);
}

void sk_track_free(sk_track *tr)
{
    if (!tr) return;
    sk_track_writer_stop(tr);
    if (tr->npending) {
        sk_error e;
        if (sk_track_flush(tr, &e))
            sk_log(&tr->opts.log, SK_LOG_WARN, "- track lost events=%zu error=\"%s\"", tr->npending,
                   e.text);
    }
    sk_track_pending_drop(tr);
    sk_free(tr->pending);
    if (tr->timer) event_free(tr->timer);
    sqlite3_finalize(tr->suppress_check);
    sqlite3_close_v2(tr->db);
    pthread_mutex_destroy(&tr->mu);
    pthread_cond_destroy(&tr->idle_cv);
    sk_free(tr->path);
    sk_free(tr);
}

char *sk_track_strip_angles(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s[n - 1] = '\0';
        s++;
    }
    return s;
}

sk_err sk_track_prune(sk_track *tr, int64_t before_ms, sk_error *err)
{
    sk_error_clear(err);
    sqlite3_stmt *st;
    /* An event still in the webhooks' outbox stays until its rows are done
     * (sent, given up after the maximum age, or their endpoint removed):
     * the sender builds the request body from the event. */
    if (sqlite3_prepare_v2(tr->db,
                           "DELETE FROM events WHERE time_ms < ?1 AND NOT EXISTS"
                           " (SELECT 1 FROM webhook_outbox o WHERE o.event_id = events.id)",
                           -1, &st, NULL) != SQLITE_OK)
        return sk_track_db_error(tr, err, "preparing the prune");
    sqlite3_bind_int64(st, 1, before_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return sk_track_db_error(tr, err, "pruning events");
    /* The tags and metadata of messages with no event left. */
    if (tr->schema < 4) return SK_OK;
    return sk_track_exec(tr,
                         "DELETE FROM message_meta WHERE queue_id NOT IN (SELECT queue_id FROM"
                         " events WHERE queue_id IS NOT NULL);"
                         "DELETE FROM message_tags WHERE queue_id NOT IN (SELECT queue_id FROM"
                         " message_meta)",
                         err);
}
