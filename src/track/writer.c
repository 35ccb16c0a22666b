/* The tracking store's event writing: events copied and kept pending,
 * then written in batches, one transaction each, on the loop's timer or,
 * with an event base, by a writer job on a thread of its own with a
 * connection of its own (docs/tracking.md). */
#include "track/track_int.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A pending entry that is not an event: "the DSN dsn_id reports the
 * outcome of recipient of queue_id" (sk_track_dsn_sent). It travels in
 * the same batches as the events, so it is applied after the event it
 * names even when both are written in one transaction. */
#define TRACK_DSN_LINK ((sk_track_kind)SK_TRACK__COUNT)

static void hand_over(sk_track *tr);
static void start_writer(sk_track *tr);

void sk_track_pending_drop(sk_track *tr)
{
    for (size_t i = 0; i < tr->npending; i++) sk_track_ev_clear(&tr->pending[i]);
    tr->npending = 0;
    if (tr->timer) evtimer_del(tr->timer);
}

/* Flush where a failure is no caller's business: pending events stay and
 * are retried; the log says why. */
void sk_track_flush_or_log(sk_track *tr)
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
    sk_track_flush_or_log(arg);
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
    sk_track_opts_defaults(&tr->opts);
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
    if (!e) e = dup_field(&dst->tags, src->tags, "tags", err);
    if (!e) e = dup_field(&dst->metadata, src->metadata, "metadata", err);
    if (e) {
        sk_track_ev_clear(dst);
        return e;
    }
    if (dst->message_id) {
        char *m = (char *)dst->message_id;
        char *s = sk_track_strip_angles(m);
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
    if (due) sk_track_flush_or_log(tr);
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

/* The DSN link: the recipient's latest final event not linked yet. */
static sk_err link_dsn(sqlite3 *db, sqlite3_stmt *st, const sk_track_ev *ev, sk_error *err)
{
    sqlite3_reset(st);
    sk_track_bind_text(st, 1, ev->dsn_id);
    sk_track_bind_text(st, 2, ev->queue_id);
    sk_track_bind_text(st, 3, ev->recipient);
    int rc = sqlite3_step(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SK_OK : sk_track_conn_error(db, err, "linking a DSN");
}

/* The message's tags and metadata, once per queue ID (the first given
 * stay), with one row per tag for filtering. */
static sk_err add_meta(sqlite3 *db, sqlite3_stmt *const meta[2], const sk_track_ev *ev,
                       sk_error *err)
{
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *st = meta[i];
        sqlite3_reset(st);
        sk_track_bind_text(st, 1, ev->queue_id);
        sk_track_bind_text(st, 2, ev->tags);
        if (i == 0) sk_track_bind_text(st, 3, ev->metadata);
        int rc = sqlite3_step(st);
        sqlite3_clear_bindings(st);
        if (rc != SQLITE_DONE) return sk_track_conn_error(db, err, "writing tags and metadata");
    }
    return SK_OK;
}

static sk_err insert_events(sqlite3 *db, sqlite3_stmt *st, sqlite3_stmt *link, sqlite3_stmt *outbox,
                            sqlite3_stmt *const meta[2], const sk_track_ev *evs, size_t n,
                            sk_error *err)
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
        sk_track_bind_text(st, 3, ev->queue_id);
        sk_track_bind_text(st, 4, ev->message_id);
        sk_track_bind_text(st, 5, ev->recipient);
        sk_track_bind_text(st, 6, domain);
        if (ev->attempt)
            sqlite3_bind_int64(st, 7, ev->attempt);
        else
            sqlite3_bind_null(st, 7);
        sk_track_bind_text(st, 8, ev->remote_host);
        sk_track_bind_text(st, 9, ev->reply);
        sk_track_bind_text(st, 10, ev->tls);
        sk_track_bind_text(st, 11, ev->cls);
        sk_track_bind_text(st, 12, ev->dsn_id);
        sk_track_bind_text(st, 13, ev->auth);
        int rc = sqlite3_step(st);
        sqlite3_clear_bindings(st);
        sk_free(domain);
        if (rc != SQLITE_DONE) return sk_track_conn_error(db, err, "writing an event");
        if (ev->queue_id && (ev->tags || ev->metadata)) {
            sk_err e = add_meta(db, meta, ev, err);
            if (e) return e;
        }
        if (sk_outbox_add(outbox, sqlite3_last_insert_rowid(db), ev, ev->time_ms))
            return sk_track_conn_error(db, err, "writing the event's webhook rows");
    }
    return SK_OK;
}

/* Write n events in one transaction on db; nothing is written on failure. */
static sk_err write_events(sqlite3 *db, const sk_track_ev *evs, size_t n, sk_error *err)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return sk_track_conn_error(db, err, "BEGIN IMMEDIATE");
    sqlite3_stmt *st = NULL, *link = NULL, *outbox = NULL, *meta[2] = {NULL, NULL};
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
        sqlite3_prepare_v2(db,
                           "INSERT OR IGNORE INTO message_meta (queue_id, tags, metadata)"
                           " VALUES (?1, ?2, ?3)",
                           -1, &meta[0], NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT OR IGNORE INTO message_tags (tag, queue_id)"
                           " SELECT value, ?1 FROM json_each(coalesce(?2, '[]'))",
                           -1, &meta[1], NULL) != SQLITE_OK ||
        sk_outbox_prepare(db, &outbox))
        e = sk_track_conn_error(db, err, "preparing the insert");
    if (!e) e = insert_events(db, st, link, outbox, meta, evs, n, err);
    sqlite3_finalize(meta[0]);
    sqlite3_finalize(meta[1]);
    sqlite3_finalize(outbox);
    sqlite3_finalize(st);
    sqlite3_finalize(link);
    if (!e && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        e = sk_track_conn_error(db, err, "COMMIT");
    if (e) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return e;
}

/* The writer, a job on its group's thread while there are batches to
 * write: writes them in order. A failed batch (the lock held by another
 * writer past the busy timeout, disk full) stays first in line and is
 * tried again after batch_delay_ms, or as soon as the loop hands more
 * over; at stop, once more, then its events are lost (logged by
 * sk_track_writer_stop). */
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
            for (size_t i = 0; i < n; i++) sk_track_ev_clear(&batch[i]);
            sk_free(batch);
            sk_log(&tr->opts.log, SK_LOG_DEBUG, "- track flushed events=%zu", n);
        }
        pthread_mutex_lock(&tr->mu);
        tr->writing = 0;
        if (!e) {
            tr->werr = SK_OK;
            tr->written += n;
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
                /* No memory to join them: the newer ones are lost (and
                 * taken off handed: the batch is written+1 .. handed). */
                tr->handed -= tr->nwq;
                for (size_t i = 0; i < tr->nwq; i++) sk_track_ev_clear(&tr->wq[i]);
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
        tr->failures++;
        snprintf(tr->werr_text, sizeof tr->werr_text, "%s", err.text);
        pthread_cond_broadcast(&tr->idle_cv);
        pthread_mutex_unlock(&tr->mu);
        bool stopping = sk_workers_pause(tr->writer, &tr->write_job, tr->opts.batch_delay_ms);
        pthread_mutex_lock(&tr->mu);
        if (stopping && stop_tries++) break;
    }
    /* From here on hand_over queues the job again. */
    tr->writer_busy = 0;
    pthread_cond_broadcast(&tr->idle_cv);
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
        tr->handed += tr->npending;
        tr->npending = 0;
        /* Stopped (only while being freed): sk_track_writer_stop reports them. A
         * writer pausing after a failure tries again at once. */
        if (tr->writer_busy)
            sk_workers_wake(tr->writer, &tr->write_job);
        else if (sk_workers_submit(tr->writer, &tr->write_job) == SK_OK)
            tr->writer_busy = 1;
    }
    pthread_mutex_unlock(&tr->mu);
    if (ok && tr->timer) evtimer_del(tr->timer);
}

void sk_track_writer_stop(sk_track *tr)
{
    if (!tr->writer) return;
    /* Finish: the batches handed over are written first. */
    if (sk_workers_stop(tr->writer, SK_WORKERS_FINISH, SK_WORKERS_NO_LIMIT, NULL)) {
    }
    sk_workers_free(tr->writer);
    tr->writer = NULL;
    /* What is left is lost: nobody waits for it any longer. */
    pthread_mutex_lock(&tr->mu);
    tr->handed -= tr->nwq;
    pthread_cond_broadcast(&tr->idle_cv);
    pthread_mutex_unlock(&tr->mu);
    if (tr->nwq)
        sk_log(&tr->opts.log, SK_LOG_WARN, "- track lost events=%zu error=\"%s\"", tr->nwq,
               tr->werr_text);
    for (size_t i = 0; i < tr->nwq; i++) sk_track_ev_clear(&tr->wq[i]);
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
    sk_track_pending_drop(tr);
    sk_log(&tr->opts.log, SK_LOG_DEBUG, "- track flushed events=%zu", n);
    if (tr->dropped) {
        sk_log(&tr->opts.log, SK_LOG_WARN, "- track dropped events=%llu",
               (unsigned long long)tr->dropped);
        tr->dropped = 0;
    }
    return SK_OK;
}

sk_err sk_track_ticket(sk_track *tr, uint64_t *ticket, sk_error *err)
{
    sk_error_clear(err);
    if (!tr->writer) {
        /* No writer thread: written here, and the ticket is one reached. */
        pthread_mutex_lock(&tr->mu);
        *ticket = tr->written;
        pthread_mutex_unlock(&tr->mu);
        return sk_track_flush(tr, err);
    }
    hand_over(tr);
    pthread_mutex_lock(&tr->mu);
    *ticket = tr->handed;
    pthread_mutex_unlock(&tr->mu);
    if (tr->npending)
        return sk_error_set(err, SK_ERR_IO, SK_STEP_NONE,
                            "tracking: backlog (%zu events not taken by the writer)", tr->npending);
    return SK_OK;
}

sk_err sk_track_wait(sk_track *tr, uint64_t ticket, unsigned timeout_ms, sk_error *err)
{
    sk_error_clear(err);
    if (!timeout_ms) timeout_ms = SK_TRACK_WAIT_MAX_MS;
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    sk_err e = SK_OK;
    pthread_mutex_lock(&tr->mu);
    uint64_t failures = tr->failures;
    while (tr->written < ticket) {
        if (ticket > tr->handed) {
            /* Some of its events were lost (see track_int.h). */
            e = sk_error_set(err, SK_ERR_IO, SK_STEP_NONE, "tracking: events lost (%s)",
                             tr->werr_text[0] ? tr->werr_text : "the writer stopped");
            break;
        }
        if (tr->failures != failures) {
            e = sk_error_set(err, tr->werr ? tr->werr : SK_ERR_IO, SK_STEP_NONE, "%s",
                             tr->werr_text);
            break;
        }
        if (pthread_cond_timedwait(&tr->idle_cv, &tr->mu, &end) == ETIMEDOUT &&
            tr->written < ticket) {
            e = sk_error_set(err, SK_ERR_TIMEOUT, SK_STEP_NONE,
                             "tracking: events not written after %u ms", timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&tr->mu);
    return e;
}
