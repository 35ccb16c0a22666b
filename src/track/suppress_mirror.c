/* A suppression set kept equal to the store's list: loaded once, then
 * updated from the numbered changes in suppression_log (suppress.c), read
 * by a job on a background thread so that an event loop never waits for
 * SQLite. */
#include <smtpkit/suppress.h>

#include "track_int.h"

#include <event2/event.h>
#include <smtpkit/worker.h>
#include <string.h>

/* What one read found: a whole new set, or the entries of the addresses
 * that changed (reason NULL: the address is no longer on the list). */
typedef struct mirror_batch {
    sk_suppress_set *full;
    sk_suppression *changes;
    size_t n;
} mirror_batch;

struct sk_suppress_mirror {
    sk_suppress_mirror_opts opts;
    sk_suppress_set *set; /* the loop's (or the caller's without a base) */

    /* The reading side: the refresh job's once there is one, else the
     * caller's. */
    sqlite3 *db;
    sqlite3_stmt *top, *bottom, *all, *changed;
    int64_t seq; /* the last change read */
    int failing; /* the last read failed (logged once per run of failures) */

    /* With an event base: the refresh job runs on a one-thread group every
     * refresh_ms (tick) or when poked, one at a time: busy from its
     * submission until its end was drained on the loop. mu guards busy,
     * poked and stopping. The job fills ready, which its end applies;
     * retired (a set replaced by a full load) is handed to the next job to
     * free. */
    struct event_base *base;
    sk_workers *workers;
    struct event *ev, *tick;
    sk_job refresh;
    pthread_mutex_t mu;
    int busy, poked, stopping;
    mirror_batch *ready;
    sk_suppress_set *retired;
};

static void batch_free(mirror_batch *b)
{
    if (!b) return;
    sk_suppress_set_free(b->full);
    sk_suppress_list_free(b->changes, b->n);
    sk_free(b);
}

static sk_err db_fail(sk_suppress_mirror *m, sk_error *err, const char *what)
{
    return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "suppression mirror: %s: %s", what,
                        sqlite3_errmsg(m->db));
}

/* One integer from a statement without parameters; 0 for NULL. */
static sk_err step_int(sk_suppress_mirror *m, sqlite3_stmt *st, int64_t *out, sk_error *err)
{
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_fail(m, err, "reading the change log");
    return SK_OK;
}

static sk_err load_all(sk_suppress_mirror *m, sk_suppress_set **out, sk_error *err)
{
    sk_suppress_set *set = sk_suppress_set_new();
    if (!set) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
    sk_err e = SK_OK;
    int rc = SQLITE_DONE;
    while (!e && (rc = sqlite3_step(m->all)) == SQLITE_ROW) {
        sk_suppression s = {.address = (char *)sqlite3_column_text(m->all, 0),
                            .reason = (char *)sqlite3_column_text(m->all, 1),
                            .created_s = sqlite3_column_int64(m->all, 2),
                            .until_s = sqlite3_column_int64(m->all, 3)};
        /* A row that is no address (written by hand) can match no
         * recipient: skip it. */
        if (s.address && (e = sk_suppress_set_put(set, &s)) == SK_ERR_INVAL) e = SK_OK;
    }
    if (!e && rc != SQLITE_DONE) e = db_fail(m, err, "loading the list");
    sqlite3_reset(m->all);
    if (e == SK_ERR_NOMEM) sk_error_set(err, e, SK_STEP_NONE, "suppression: out of memory");
    if (e) {
        sk_suppress_set_free(set);
        return e;
    }
    *out = set;
    return SK_OK;
}

static sk_err load_changes(sk_suppress_mirror *m, mirror_batch *b, sk_error *err)
{
    sqlite3_bind_int64(m->changed, 1, m->seq);
    size_t cap = 0;
    int rc = SQLITE_DONE, oom = 0;
    while (!oom && (rc = sqlite3_step(m->changed)) == SQLITE_ROW) {
        oom = sk_array_grow(&b->changes, &cap, b->n + 1, sizeof *b->changes, SK_ARRAY_UNBOUNDED) !=
              SK_OK;
        if (oom) break;
        sk_suppression *s = &b->changes[b->n++];
        *s = (sk_suppression){0};
        s->address = sk_track_column_dup(m->changed, 0, &oom);
        s->reason = sk_track_column_dup(m->changed, 1, &oom); /* NULL: removed */
        s->created_s = sqlite3_column_int64(m->changed, 2);
        s->until_s = sqlite3_column_int64(m->changed, 3);
    }
    sqlite3_reset(m->changed);
    if (oom) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
    if (rc != SQLITE_DONE) return db_fail(m, err, "reading changes");
    return SK_OK;
}

/* Read what changed since m->seq, in one read transaction (one snapshot
 * of the log and the list). *out is NULL when nothing did. The whole list
 * is read the first time, and when the changes since m->seq are no longer
 * all in the log (trimmed: the mirror fell behind; or numbered anew: the
 * store was replaced). */
static sk_err read_changes(sk_suppress_mirror *m, int first, mirror_batch **out, sk_error *err)
{
    *out = NULL;
    mirror_batch *b = NULL;
    if (sqlite3_exec(m->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(m, err, "BEGIN");
    int64_t top = 0, bottom = 0;
    sk_err e = step_int(m, m->top, &top, err);
    if (!e && !first && top == m->seq) goto done;
    if (!e) e = step_int(m, m->bottom, &bottom, err);
    if (e) goto done;
    b = sk_calloc(1, sizeof *b);
    if (!b) {
        e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
        goto done;
    }
    if (first || top < m->seq || bottom > m->seq + 1)
        e = load_all(m, &b->full, err);
    else
        e = load_changes(m, b, err);
    if (e) {
        batch_free(b);
        goto done;
    }
    m->seq = top;
    *out = b;
done:
    /* Ends the read transaction (a reader left open would keep the WAL
     * from being checkpointed). */
    sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL);
    return e;
}

/* The set's side: apply a batch (the loop's thread, or the caller's). */
static void apply(sk_suppress_mirror *m, mirror_batch *b, sk_suppress_set **old)
{
    *old = NULL;
    if (b->full) {
        *old = m->set;
        m->set = b->full;
        b->full = NULL;
        return;
    }
    size_t lost = 0;
    for (size_t i = 0; i < b->n; i++) {
        sk_suppression *s = &b->changes[i];
        if (!s->address) continue;
        if (!s->reason)
            (void)sk_suppress_set_remove(m->set, s->address); /* may never have been in */
        else if (sk_suppress_set_put(m->set, s) == SK_ERR_NOMEM)
            lost++;
    }
    if (lost)
        sk_log(&m->opts.log, SK_LOG_ERR,
               "- track suppress-mirror-failed error=\"out of memory\" lost=%zu", lost);
}

static void note_result(sk_suppress_mirror *m, sk_err e, const sk_error *err)
{
    if (e && !m->failing)
        sk_log(&m->opts.log, SK_LOG_WARN,
               "- track suppress-refresh-failed error=\"%s\" (the last list read stays in use)",
               err->text);
    else if (!e && m->failing)
        sk_log(&m->opts.log, SK_LOG_INFO, "- track suppress-refresh-recovered");
    m->failing = e != SK_OK;
}

/* The job: free what the loop retired, read the changes. */
static void refresh_run(void *arg)
{
    sk_suppress_mirror *m = arg;
    sk_suppress_set_free(m->retired);
    m->retired = NULL;
    sk_error err;
    sk_err e = read_changes(m, 0, &m->ready, &err);
    note_result(m, e, &err);
}

/* Queue the job unless one is on its way (mu held). */
static void refresh_soon(sk_suppress_mirror *m)
{
    if (m->busy) {
        m->poked = 1;
        return;
    }
    if (sk_workers_submit(m->workers, &m->refresh) == SK_OK) m->busy = 1;
}

/* The loop: apply what the job read, then a poke that came meanwhile. */
static void refresh_done(void *arg, sk_job_end end)
{
    sk_suppress_mirror *m = arg;
    mirror_batch *b = m->ready;
    m->ready = NULL;
    pthread_mutex_lock(&m->mu);
    int stopping = m->stopping;
    pthread_mutex_unlock(&m->mu);
    if (b && end == SK_JOB_DONE && !stopping) {
        sk_suppress_set *old;
        apply(m, b, &old);
        /* A whole list is freed off the loop, by the next job. */
        if (old) m->retired = old;
    }
    batch_free(b);
    pthread_mutex_lock(&m->mu);
    m->busy = 0;
    if (m->poked && !m->stopping) {
        m->poked = 0;
        refresh_soon(m);
    }
    pthread_mutex_unlock(&m->mu);
}

/* The loop, every refresh_ms. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    sk_suppress_mirror *m = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&m->mu);
    if (!m->busy) refresh_soon(m);
    pthread_mutex_unlock(&m->mu);
}

/* The refresh job, its group and the loop's events. */
static sk_err start(sk_suppress_mirror *m, struct event_base *base, sk_error *err)
{
    m->base = base;
    sk_job_init(&m->refresh, refresh_run, refresh_done, m);
    sk_error e;
    m->workers = sk_workers_new(&(sk_workers_opts){.name = "suppress", .threads = 1}, &e);
    if (!m->workers)
        return sk_error_set(err, e.err, SK_STEP_NONE, "suppression mirror: %s", e.text);
    struct timeval tv = {.tv_sec = m->opts.refresh_ms / 1000,
                         .tv_usec = (m->opts.refresh_ms % 1000) * 1000};
    m->ev = event_new(base, sk_workers_fd(m->workers), EV_READ | EV_PERSIST, sk_workers_drain_cb,
                      m->workers);
    m->tick = event_new(base, -1, EV_PERSIST, on_tick, m);
    if (!m->ev || event_add(m->ev, NULL) || !m->tick || event_add(m->tick, &tv))
        return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
    return SK_OK;
}

static sk_err prepare(sk_suppress_mirror *m, const char *sql, sqlite3_stmt **st, sk_error *err)
{
    if (sqlite3_prepare_v3(m->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return db_fail(m, err, "preparing");
    return SK_OK;
}

static sk_err open_db(sk_suppress_mirror *m, const char *path, sk_error *err)
{
    if (sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        if (!m->db)
            return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "suppression mirror: %s: %s", path,
                            sqlite3_errmsg(m->db));
    }
    sqlite3_busy_timeout(m->db, SK_TRACK_BUSY_TIMEOUT_MS_DEFAULT);
    /* max() and min() of the key are single index lookups. */
    sk_err e = prepare(m, "SELECT max(seq) FROM suppression_log", &m->top, err);
    if (!e) e = prepare(m, "SELECT min(seq) FROM suppression_log", &m->bottom, err);
    if (!e) e = prepare(m, "SELECT address, reason, created, until FROM suppression", &m->all, err);
    if (!e)
        e = prepare(m,
                    "SELECT l.address, s.reason, s.created, s.until"
                    " FROM (SELECT DISTINCT address FROM suppression_log WHERE seq > ?1) AS l"
                    " LEFT JOIN suppression AS s ON s.address = l.address",
                    &m->changed, err);
    return e;
}

sk_suppress_mirror *sk_suppress_mirror_new(const char *path, const sk_suppress_mirror_opts *o,
                                           struct event_base *base, sk_error *err)
{
    sk_error_clear(err);
    sk_suppress_mirror *m = sk_calloc(1, sizeof *m);
    if (!m) {
        sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
        return NULL;
    }
    if (o) m->opts = *o;
    if (!m->opts.refresh_ms) m->opts.refresh_ms = SK_SUPPRESS_REFRESH_MS_DEFAULT;
    pthread_mutex_init(&m->mu, NULL);
    mirror_batch *b = NULL;
    sk_err e = open_db(m, path, err);
    if (!e) e = read_changes(m, 1, &b, err);
    if (!e) {
        m->set = b->full;
        b->full = NULL;
        batch_free(b);
    }
    if (!e && base) e = start(m, base, err);
    if (e) {
        sk_suppress_mirror_free(m);
        return NULL;
    }
    return m;
}

void sk_suppress_mirror_free(sk_suppress_mirror *m)
{
    if (!m) return;
    /* The events before the group: one watches its eventfd. */
    if (m->tick) event_free(m->tick);
    if (m->ev) event_free(m->ev);
    if (m->workers) {
        pthread_mutex_lock(&m->mu);
        m->stopping = 1;
        pthread_mutex_unlock(&m->mu);
        /* A read under way ends (SQLite's busy timeout bounds it); a job's
         * end not applied yet is dropped. */
        sk_workers_free(m->workers);
    }
    batch_free(m->ready);
    sk_suppress_set_free(m->retired);
    sk_suppress_set_free(m->set);
    sqlite3_finalize(m->top);
    sqlite3_finalize(m->bottom);
    sqlite3_finalize(m->all);
    sqlite3_finalize(m->changed);
    sqlite3_close_v2(m->db);
    pthread_mutex_destroy(&m->mu);
    sk_free(m);
}

const sk_suppress_set *sk_suppress_mirror_set(const sk_suppress_mirror *m)
{
    return m ? m->set : NULL;
}

void sk_suppress_mirror_poke(sk_suppress_mirror *m)
{
    if (!m || !m->workers) return;
    pthread_mutex_lock(&m->mu);
    if (!m->stopping) refresh_soon(m);
    pthread_mutex_unlock(&m->mu);
}

sk_err sk_suppress_mirror_refresh(sk_suppress_mirror *m, sk_error *err)
{
    sk_error_clear(err);
    if (m->base)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE,
                            "suppression mirror: its thread refreshes it");
    mirror_batch *b;
    sk_err e = read_changes(m, 0, &b, err);
    note_result(m, e, err);
    if (e || !b) return e;
    sk_suppress_set *old;
    apply(m, b, &old);
    batch_free(b);
    sk_suppress_set_free(old);
    return SK_OK;
}
