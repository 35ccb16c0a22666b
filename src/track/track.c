/* The tracking store: delivery events batched in memory and written to
 * SQLite (WAL) in one transaction at a time; queries by message and stats. */
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
#define TRACK_SCHEMA_VERSION 3

/* A pending entry that is not an event: "the DSN dsn_id reports the
 * outcome of recipient of queue_id" (sk_track_dsn_sent). It travels in
 * the same batches as the events, so it is applied after the event it
 * names even when both are written in one transaction. */
#define TRACK_DSN_LINK ((sk_track_kind)SK_TRACK__COUNT)

static void stop_writer(sk_track *tr);
static void hand_over(sk_track *tr);
static void start_writer(sk_track *tr);

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

static sk_err db_error(sqlite3 *db, sk_error *err, const char *what)
{
    int code = sqlite3_extended_errcode(db);
    sk_err e = SK_ERR_IO;
    if ((code & 0xff) == SQLITE_FULL) e = SK_ERR_NOSPACE;
    if ((code & 0xff) == SQLITE_NOMEM) e = SK_ERR_NOMEM;
    return sk_error_set(err, e, SK_STEP_NONE, "tracking store: %s: %s", what, sqlite3_errmsg(db));
}

sk_err sk_track_db_error(sk_track *tr, sk_error *err, const char *what)
{
    return db_error(tr->db, err, what);
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
        if (!e) e = sk_track_exec(tr, "PRAGMA user_version = 3", err);
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

static void apply_defaults(sk_track_opts *o)
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
    apply_defaults(&tr->opts);
    pthread_mutex_init(&tr->mu, NULL);
    pthread_cond_init(&tr->idle_cv, NULL);
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

static void ev_clear(sk_track_ev *ev)
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
    memset(ev, 0, sizeof *ev);
}

static void drop_pending(sk_track *tr)
{
    for (size_t i = 0; i < tr->npending; i++) ev_clear(&tr->pending[i]);
    tr->npending = 0;
    if (tr->timer) evtimer_del(tr->timer);
}

void sk_track_free(sk_track *tr)
{
    if (!tr) return;
    stop_writer(tr);
    if (tr->npending) {
        sk_error e;
        if (sk_track_flush(tr, &e))
            sk_log(&tr->opts.log, SK_LOG_WARN, "- track lost events=%zu error=\"%s\"", tr->npending,
                   e.text);
    }
    drop_pending(tr);
    sk_free(tr->pending);
    if (tr->timer) event_free(tr->timer);
    sqlite3_finalize(tr->suppress_check);
    sqlite3_close_v2(tr->db);
    pthread_mutex_destroy(&tr->mu);
    pthread_cond_destroy(&tr->idle_cv);
    sk_free(tr->path);
    sk_free(tr);
}

/* Flush where a failure is no caller's business: pending events stay and
 * are retried; the log says why. */
static void flush_or_log(sk_track *tr)
{
    sk_error e;
    if (tr->writer) {
        hand_over(tr);
        return;
    }
    if (!tr->readonly && tr->npending && sk_track_flush(tr, &e))
        sk_log(&tr->opts.log, SK_LOG_WARN, "- track flush-failed pending=%zu error=\"%s\"",
               tr->npending, e.text);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    flush_or_log(arg);
}

static void arm_timer(sk_track *tr)
{
    if (!tr->timer) return;
    struct timeval tv = {.tv_sec = tr->opts.batch_delay_ms / 1000,
                         .tv_usec = (tr->opts.batch_delay_ms % 1000) * 1000};
    evtimer_add(tr->timer, &tv);
}

sk_err sk_track_set_opts(sk_track *tr, const sk_track_opts *opts, struct event_base *base,
                         sk_error *err)
{
    sk_error_clear(err);
    tr->opts = opts ? *opts : (sk_track_opts){0};
    apply_defaults(&tr->opts);
    sqlite3_busy_timeout(tr->db, (int)tr->opts.busy_timeout_ms);
    if (tr->timer) {
        event_free(tr->timer);
        tr->timer = NULL;
    }
    tr->base = base;
    if (base && !tr->readonly) {
        tr->timer = evtimer_new(base, on_timer, tr);
        if (!tr->timer)
            return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking store: no timer");
        if (tr->npending) arm_timer(tr);
        start_writer(tr);
    }
    return SK_OK;
}

size_t sk_track_pending(const sk_track *tr)
{
    sk_track *t = (sk_track *)tr; /* the lock only */
    pthread_mutex_lock(&t->mu);
    size_t n = tr->npending + tr->nwq + tr->writing;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Copy s into *dst; strings longer than the field bound are refused. */
static sk_err dup_field(const char **dst, const char *s, const char *name, sk_error *err)
{
    *dst = NULL;
    if (!s) return SK_OK;
    size_t n = strnlen(s, SK_TRACK_FIELD_MAX_OCTETS + 1);
    if (n > SK_TRACK_FIELD_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE,
                            "tracking event: %s longer than %d octets", name,
                            SK_TRACK_FIELD_MAX_OCTETS);
    if (!(*dst = sk_strndup(s, n)))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking event: out of memory");
    return SK_OK;
}

/* A Message-ID without surrounding blanks and angle brackets, in place. */
static char *strip_angles(char *s)
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

static sk_err copy_event(sk_track_ev *dst, const sk_track_ev *src, sk_error *err)
{
    *dst = (sk_track_ev){.time_ms = src->time_ms, .kind = src->kind, .attempt = src->attempt};
    sk_err e = dup_field(&dst->queue_id, src->queue_id, "queue ID", err);
    if (!e) e = dup_field(&dst->message_id, src->message_id, "Message-ID", err);
    if (!e) e = dup_field(&dst->recipient, src->recipient, "recipient", err);
    if (!e) e = dup_field(&dst->remote_host, src->remote_host, "remote host", err);
    if (!e) e = dup_field(&dst->reply, src->reply, "reply", err);
    if (!e) e = dup_field(&dst->tls, src->tls, "TLS", err);
    if (!e) e = dup_field(&dst->cls, src->cls, "class", err);
    if (!e) e = dup_field(&dst->dsn_id, src->dsn_id, "DSN ID", err);
    if (!e) e = dup_field(&dst->auth, src->auth, "authentication results", err);
    if (e) {
        ev_clear(dst);
        return e;
    }
    if (dst->message_id) {
        char *m = (char *)dst->message_id;
        char *s = strip_angles(m);
        memmove(m, s, strlen(s) + 1);
    }
    return SK_OK;
}

/* Keep ev (an event or a DSN link) for the next batch. */
static sk_err enqueue(sk_track *tr, const sk_track_ev *ev, sk_error *err)
{
    if (tr->npending >= SK_TRACK_PENDING_MAX_EVENTS && tr->writer) hand_over(tr);
    if (tr->npending >= SK_TRACK_PENDING_MAX_EVENTS) {
        sk_error fe = {.text = "still failing"};
        /* With the writer, the events it holds are what is failing. */
        if (tr->writer || sk_now_ms() < tr->retry_mono_ms || sk_track_flush(tr, &fe)) {
            tr->dropped++;
            return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE,
                                "tracking store cannot be written (%s); event dropped", fe.text);
        }
    }
    if (sk_array_grow(&tr->pending, &tr->cap, tr->npending + 1, sizeof *tr->pending,
                      SK_TRACK_PENDING_MAX_EVENTS))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    sk_track_ev *dst = &tr->pending[tr->npending];
    sk_err e = copy_event(dst, ev, err);
    if (e) return e;
    if (!dst->time_ms) dst->time_ms = sk_track_now_ms(tr);
    if (tr->npending++ == 0) {
        tr->first_pending_mono_ms = sk_now_ms();
        arm_timer(tr);
    }
    uint64_t now = sk_now_ms();
    int due = now >= tr->retry_mono_ms &&
              (tr->npending >= tr->opts.batch_events ||
               (!tr->timer && now - tr->first_pending_mono_ms >= tr->opts.batch_delay_ms));
    /* The event is kept either way; a failed flush is retried later. */
    if (due) flush_or_log(tr);
    return SK_OK;
}

sk_err sk_track_event(sk_track *tr, const sk_track_ev *ev, sk_error *err)
{
    sk_error_clear(err);
    if (tr->readonly)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "tracking store opened read-only");
    if ((unsigned)ev->kind >= SK_TRACK__COUNT)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE, "tracking event: bad kind %d",
                            (int)ev->kind);
    if ((!ev->queue_id || !*ev->queue_id) && (!ev->message_id || !*ev->message_id))
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "tracking event: needs a queue ID or a Message-ID");
    sk_err e = enqueue(tr, ev, err);
    if (!e && tr->opts.on_event) tr->opts.on_event(tr->opts.event_ctx, ev);
    return e;
}

sk_err sk_track_dsn_sent(sk_track *tr, const char *queue_id, const char *recipient,
                         const char *dsn_id, sk_error *err)
{
    sk_error_clear(err);
    if (tr->readonly)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "tracking store opened read-only");
    if (!queue_id || !*queue_id || !recipient || !dsn_id || !*dsn_id)
        return sk_error_set(err, SK_ERR_INVAL, SK_STEP_NONE,
                            "tracking: a DSN link needs a queue ID, a recipient and a DSN ID");
    sk_track_ev link = {
        .kind = TRACK_DSN_LINK, .queue_id = queue_id, .recipient = recipient, .dsn_id = dsn_id};
    return enqueue(tr, &link, err);
}

/* The recipient's domain in lower case, for stats by destination. */
static char *rcpt_domain(const char *rcpt, int *oom)
{
    const char *at = rcpt ? strrchr(rcpt, '@') : NULL;
    if (!at || !at[1]) return NULL;
    char *d = sk_strdup(at + 1);
    if (!d) {
        *oom = 1;
        return NULL;
    }
    sk_ascii_lower(d, strlen(d));
    return d;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* The DSN link: the recipient's latest final event not linked yet. */
static sk_err link_dsn(sqlite3 *db, sqlite3_stmt *st, const sk_track_ev *ev, sk_error *err)
{
    sqlite3_reset(st);
    bind_text(st, 1, ev->dsn_id);
    bind_text(st, 2, ev->queue_id);
    bind_text(st, 3, ev->recipient);
    int rc = sqlite3_step(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SK_OK : db_error(db, err, "linking a DSN");
}

static sk_err insert_events(sqlite3 *db, sqlite3_stmt *st, sqlite3_stmt *link, sqlite3_stmt *outbox,
                            const sk_track_ev *evs, size_t n, sk_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const sk_track_ev *ev = &evs[i];
        if (ev->kind == TRACK_DSN_LINK) {
            sk_err e = link_dsn(db, link, ev, err);
            if (e) return e;
            continue;
        }
        int oom = 0;
        char *domain = rcpt_domain(ev->recipient, &oom);
        if (oom) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ev->time_ms);
        sqlite3_bind_text(st, 2, sk_track_kind_name(ev->kind), -1, SQLITE_STATIC);
        bind_text(st, 3, ev->queue_id);
        bind_text(st, 4, ev->message_id);
        bind_text(st, 5, ev->recipient);
        bind_text(st, 6, domain);
        if (ev->attempt)
            sqlite3_bind_int64(st, 7, ev->attempt);
        else
            sqlite3_bind_null(st, 7);
        bind_text(st, 8, ev->remote_host);
        bind_text(st, 9, ev->reply);
        bind_text(st, 10, ev->tls);
        bind_text(st, 11, ev->cls);
        bind_text(st, 12, ev->dsn_id);
        bind_text(st, 13, ev->auth);
        int rc = sqlite3_step(st);
        sqlite3_clear_bindings(st);
        sk_free(domain);
        if (rc != SQLITE_DONE) return db_error(db, err, "writing an event");
        if (sk_outbox_add(outbox, sqlite3_last_insert_rowid(db), ev, ev->time_ms))
            return db_error(db, err, "writing the event's webhook rows");
    }
    return SK_OK;
}

/* Write n events in one transaction on db; nothing is written on failure. */
static sk_err write_events(sqlite3 *db, const sk_track_ev *evs, size_t n, sk_error *err)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_error(db, err, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = NULL, *link = NULL, *outbox = NULL;
    sk_err e = SK_OK;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO events (time_ms, event, queue_id, message_id, recipient,"
                           " domain, attempt, remote_host, reply, tls, class, dsn_id, auth)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "UPDATE events SET dsn_id = ?1 WHERE id = (SELECT id FROM events"
                           " WHERE queue_id = ?2 AND recipient = ?3 AND dsn_id IS NULL"
                           " AND event IN ('bounced', 'expired', 'delivered')"
                           " ORDER BY id DESC LIMIT 1)",
                           -1, &link, NULL) != SQLITE_OK ||
        sk_outbox_prepare(db, &outbox))
        e = db_error(db, err, "preparing the insert");
    if (!e) e = insert_events(db, st, link, outbox, evs, n, err);
    sqlite3_finalize(outbox);
    sqlite3_finalize(st);
    sqlite3_finalize(link);
    if (!e && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        e = db_error(db, err, "COMMIT");
    if (e) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return e;
}

/* The writer, a job on its group's thread while there are batches to
 * write: writes them in order. A failed batch (the lock held by another
 * writer past the busy timeout, disk full) stays first in line and is
 * tried again after batch_delay_ms, or as soon as the loop hands more
 * over; at stop, once more, then its events are lost (logged by
 * stop_writer). */
static void write_batches(void *arg)
{
    sk_track *tr = arg;
    int stop_tries = 0;
    pthread_mutex_lock(&tr->mu);
    while (tr->nwq) {
        sk_track_ev *batch = tr->wq;
        size_t n = tr->nwq, cap = tr->wq_cap;
        tr->wq = NULL;
        tr->nwq = tr->wq_cap = 0;
        tr->writing = n;
        pthread_mutex_unlock(&tr->mu);
        sk_error err;
        sk_err e = write_events(tr->wdb, batch, n, &err);
        if (!e) {
            for (size_t i = 0; i < n; i++) ev_clear(&batch[i]);
            sk_free(batch);
            sk_log(&tr->opts.log, SK_LOG_DEBUG, "- track flushed events=%zu", n);
        }
        pthread_mutex_lock(&tr->mu);
        tr->writing = 0;
        if (!e) {
            tr->werr = SK_OK;
            pthread_cond_broadcast(&tr->idle_cv);
            continue;
        }
        /* Back in front of what came meanwhile. */
        if (tr->nwq) {
            sk_track_ev *all = sk_realloc(batch, (n + tr->nwq) * sizeof *all);
            if (all) {
                memcpy(all + n, tr->wq, tr->nwq * sizeof *all);
                sk_free(tr->wq);
                batch = all;
                cap = n + tr->nwq;
                n += tr->nwq;
            } else {
                /* No memory to join them: the newer ones are lost. */
                for (size_t i = 0; i < tr->nwq; i++) ev_clear(&tr->wq[i]);
                sk_free(tr->wq);
            }
        }
        tr->wq = batch;
        tr->nwq = n;
        tr->wq_cap = cap;
        if (!tr->werr)
            sk_log(&tr->opts.log, SK_LOG_WARN, "- track flush-failed pending=%zu error=\"%s\"", n,
                   err.text);
        tr->werr = e;
        snprintf(tr->werr_text, sizeof tr->werr_text, "%s", err.text);
        pthread_cond_broadcast(&tr->idle_cv);
        pthread_mutex_unlock(&tr->mu);
        bool stopping = sk_workers_pause(tr->writer, &tr->write_job, tr->opts.batch_delay_ms);
        pthread_mutex_lock(&tr->mu);
        if (stopping && stop_tries++) break;
    }
    /* From here on hand_over queues the job again. */
    tr->writer_busy = 0;
    pthread_mutex_unlock(&tr->mu);
}

/* Loop thread: give the pending events to the writer (kept pending when
 * the writer already holds SK_TRACK_PENDING_MAX_EVENTS, or on no memory). */
static void hand_over(sk_track *tr)
{
    if (!tr->npending) return;
    pthread_mutex_lock(&tr->mu);
    int ok = tr->nwq + tr->npending <= SK_TRACK_PENDING_MAX_EVENTS;
    if (ok && tr->nwq + tr->npending > tr->wq_cap) {
        size_t cap = tr->nwq + tr->npending + 64;
        sk_track_ev *p = sk_realloc(tr->wq, cap * sizeof *p);
        if (p) {
            tr->wq = p;
            tr->wq_cap = cap;
        } else {
            ok = 0;
        }
    }
    if (ok) {
        memcpy(tr->wq + tr->nwq, tr->pending, tr->npending * sizeof *tr->pending);
        tr->nwq += tr->npending;
        tr->npending = 0;
        /* Stopped (only while being freed): stop_writer reports them. A
         * writer pausing after a failure tries again at once. */
        if (tr->writer_busy)
            sk_workers_wake(tr->writer, &tr->write_job);
        else if (sk_workers_submit(tr->writer, &tr->write_job) == SK_OK)
            tr->writer_busy = 1;
    }
    pthread_mutex_unlock(&tr->mu);
    if (ok && tr->timer) evtimer_del(tr->timer);
}

static void stop_writer(sk_track *tr)
{
    if (!tr->writer) return;
    /* Finish: the batches handed over are written first. */
    if (sk_workers_stop(tr->writer, SK_WORKERS_FINISH, SK_WORKERS_NO_LIMIT, NULL)) {
    }
    sk_workers_free(tr->writer);
    tr->writer = NULL;
    if (tr->nwq)
        sk_log(&tr->opts.log, SK_LOG_WARN, "- track lost events=%zu error=\"%s\"", tr->nwq,
               tr->werr_text);
    for (size_t i = 0; i < tr->nwq; i++) ev_clear(&tr->wq[i]);
    sk_free(tr->wq);
    tr->wq = NULL;
    tr->nwq = tr->wq_cap = 0;
    sqlite3_close_v2(tr->wdb);
    tr->wdb = NULL;
}

/* With an event base: the writer's own connection and thread. Without
 * them (no memory, no thread) the loop keeps writing as before. */
static void start_writer(sk_track *tr)
{
    if (tr->writer) return;
    if (sqlite3_open_v2(tr->path, &tr->wdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(tr->wdb, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        sk_log(&tr->opts.log, SK_LOG_WARN, "- track writer=off error=\"%s\"",
               tr->wdb ? sqlite3_errmsg(tr->wdb) : "out of memory");
        sqlite3_close_v2(tr->wdb);
        tr->wdb = NULL;
        return;
    }
    sqlite3_busy_timeout(tr->wdb, (int)tr->opts.busy_timeout_ms);
    /* One thread: batches are written in the order handed over. */
    sk_error err;
    tr->writer = sk_workers_new(&(sk_workers_opts){.name = "track", .threads = 1}, &err);
    if (!tr->writer) {
        sk_log(&tr->opts.log, SK_LOG_WARN, "- track writer=off error=\"%s\"", err.text);
        sqlite3_close_v2(tr->wdb);
        tr->wdb = NULL;
        return;
    }
    sk_job_init(&tr->write_job, write_batches, NULL, tr);
}

/* Keep the events and try again after a delay: each attempt may wait for
 * the busy timeout, which must not happen on every event. */
static sk_err flush_failed(sk_track *tr, sk_err e)
{
    tr->retry_mono_ms = sk_now_ms() + tr->opts.batch_delay_ms;
    arm_timer(tr);
    return e;
}

sk_err sk_track_flush(sk_track *tr, sk_error *err)
{
    sk_error_clear(err);
    if (tr->writer) {
        /* Everything handed over, then wait until the writer has written
         * it or failed. */
        hand_over(tr);
        pthread_mutex_lock(&tr->mu);
        tr->werr = SK_OK;
        while (tr->nwq && !tr->werr) pthread_cond_wait(&tr->idle_cv, &tr->mu);
        while (tr->writing) pthread_cond_wait(&tr->idle_cv, &tr->mu);
        sk_err e = tr->nwq ? tr->werr : SK_OK;
        if (e) sk_error_set(err, e, SK_STEP_NONE, "%s", tr->werr_text);
        pthread_mutex_unlock(&tr->mu);
        if (!e && tr->npending) e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "tracking: backlog");
        return e;
    }
    if (!tr->npending) return SK_OK;
    sk_err e = write_events(tr->db, tr->pending, tr->npending, err);
    if (e) return flush_failed(tr, e);
    size_t n = tr->npending;
    drop_pending(tr);
    sk_log(&tr->opts.log, SK_LOG_DEBUG, "- track flushed events=%zu", n);
    if (tr->dropped) {
        sk_log(&tr->opts.log, SK_LOG_WARN, "- track dropped events=%llu",
               (unsigned long long)tr->dropped);
        tr->dropped = 0;
    }
    return SK_OK;
}

sk_err sk_track_prune(sk_track *tr, int64_t before_ms, sk_error *err)
{
    sk_error_clear(err);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(tr->db, "DELETE FROM events WHERE time_ms < ?", -1, &st, NULL) !=
        SQLITE_OK)
        return sk_track_db_error(tr, err, "preparing the prune");
    sqlite3_bind_int64(st, 1, before_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SK_OK : sk_track_db_error(tr, err, "pruning events");
}

void sk_track_result_free(sk_track_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nevents; i++) ev_clear(&r->events[i]);
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
    bind_text(st, 1, r->id);
    bind_text(st, 2, r->message_id);
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
    flush_or_log(tr);
    char *copy = sk_strdup(id);
    sk_track_result *r = sk_calloc(1, sizeof *r);
    sk_err e = SK_OK;
    if (!copy || !r) e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "tracking: out of memory");
    const char *key = copy ? strip_angles(copy) : "";
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
    flush_or_log(tr);
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
