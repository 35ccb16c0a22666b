/* A suppression set kept equal to the store's list: loaded once, then
 * updated from the numbered changes in suppression_log (suppress.c), read
 * on a thread of its own so that an event loop never waits for SQLite. */
#include <smtpkit/suppress.h>

#include "track_int.h"

#include <errno.h>
#include <event2/event.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

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

    /* The reading side: the thread's once it runs, else the caller's. */
    sqlite3 *db;
    sqlite3_stmt *top, *bottom, *all, *changed;
    int64_t seq; /* the last change read */
    int failing; /* the last read failed (logged once per run of failures) */

    /* With an event base. mu guards stop, poked, ready and retired. */
    struct event_base *base;
    struct event *ev;
    int efd;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, poked;
    mirror_batch *ready;      /* read, not yet applied by the loop */
    sk_suppress_set *retired; /* replaced by a full load; the thread frees it */
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

static void deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (uint64_t)ms * 1000000u;
    ts->tv_sec += (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

/* The thread: every refresh_ms, or when poked, read the changes and hand
 * them to the loop; one batch at a time (while the loop has not applied
 * the last one, a poke waits for it). */
static void *mirror_main(void *arg)
{
    sk_suppress_mirror *m = arg;
    struct timespec next;
    deadline_after(&next, m->opts.refresh_ms);
    pthread_mutex_lock(&m->mu);
    for (;;) {
        int timed_out = 0;
        while (!m->stop && !(m->poked && !m->ready) && !timed_out)
            timed_out = pthread_cond_timedwait(&m->cv, &m->mu, &next) == ETIMEDOUT;
        if (m->stop) break;
        sk_suppress_set *old = m->retired;
        m->retired = NULL;
        int busy = m->ready != NULL;
        if (!busy) m->poked = 0;
        pthread_mutex_unlock(&m->mu);
        sk_suppress_set_free(old);
        mirror_batch *b = NULL;
        if (!busy) {
            sk_error err;
            sk_err e = read_changes(m, 0, &b, &err);
            note_result(m, e, &err);
        }
        deadline_after(&next, m->opts.refresh_ms);
        pthread_mutex_lock(&m->mu);
        if (b) {
            m->ready = b;
            uint64_t one = 1;
            if (write(m->efd, &one, sizeof one) < 0) {
                /* EAGAIN: the counter is already non-zero, the loop will wake. */
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* The loop: apply what the thread read. */
static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    sk_suppress_mirror *m = arg;
    (void)what;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN) return;
    pthread_mutex_lock(&m->mu);
    mirror_batch *b = m->ready;
    m->ready = NULL;
    if (m->poked) pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (!b) return;
    sk_suppress_set *old;
    apply(m, b, &old);
    batch_free(b);
    if (old) {
        /* A whole list is freed off the loop. */
        pthread_mutex_lock(&m->mu);
        sk_suppress_set *prev = m->retired;
        m->retired = old;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        sk_suppress_set_free(prev);
    }
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
    m->efd = -1;
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    mirror_batch *b = NULL;
    sk_err e = open_db(m, path, err);
    if (!e) e = read_changes(m, 1, &b, err);
    if (!e) {
        m->set = b->full;
        b->full = NULL;
        batch_free(b);
    }
    if (!e && base) {
        m->base = base;
        m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (m->efd < 0)
            e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "eventfd: %s", strerror(errno));
        else if (!(m->ev = event_new(base, m->efd, EV_READ | EV_PERSIST, on_ready, m)) ||
                 event_add(m->ev, NULL))
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
        else if (pthread_create(&m->thread, NULL, mirror_main, m))
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE,
                             "suppression mirror: cannot start a thread");
        else
            m->started = 1;
    }
    if (e) {
        sk_suppress_mirror_free(m);
        return NULL;
    }
    return m;
}

void sk_suppress_mirror_free(sk_suppress_mirror *m)
{
    if (!m) return;
    if (m->started) {
        pthread_mutex_lock(&m->mu);
        m->stop = 1;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
    }
    if (m->ev) event_free(m->ev);
    if (m->efd >= 0) close(m->efd);
    batch_free(m->ready);
    sk_suppress_set_free(m->retired);
    sk_suppress_set_free(m->set);
    sqlite3_finalize(m->top);
    sqlite3_finalize(m->bottom);
    sqlite3_finalize(m->all);
    sqlite3_finalize(m->changed);
    sqlite3_close_v2(m->db);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    sk_free(m);
}

const sk_suppress_set *sk_suppress_mirror_set(const sk_suppress_mirror *m)
{
    return m ? m->set : NULL;
}

void sk_suppress_mirror_poke(sk_suppress_mirror *m)
{
    if (!m || !m->started) return;
    pthread_mutex_lock(&m->mu);
    m->poked = 1;
    pthread_cond_signal(&m->cv);
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
