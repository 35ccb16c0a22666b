/* Private to the tracking store (track.c, writer.c, query.c) and the
 * suppression list that shares its database (src/track/suppress.c). */
#ifndef SK_TRACK_INT_H
#define SK_TRACK_INT_H

#include <smtpkit/track.h>
#include <smtpkit/worker.h>
#include <pthread.h>
#include <sqlite3.h>

struct event;

struct sk_track {
    sqlite3 *db;
    int readonly;
    int schema; /* the store's schema version (a reader may find an older one) */
    sk_track_opts opts;
    struct event_base *base;
    struct event *timer; /* flushes pending events on base's loop */
    sk_track_ev *pending;
    size_t npending, cap;
    uint64_t first_pending_mono_ms; /* when the oldest pending was recorded */
    uint64_t retry_mono_ms;         /* after a failed flush, no automatic one before */
    uint64_t dropped;               /* events lost since the last log line */
    /* sk_suppress_check, prepared once (suppress.c), reset after each use. */
    sqlite3_stmt *suppress_check;
    /* With an event base, a writer (a job of a one-thread sk_workers
     * group) with a connection of its own (wdb) writes the batches the
     * loop hands over in wq, so the loop thread runs neither SQLite's
     * inserts nor its WAL checkpoints (docs/tracking.md). Guarded by mu:
     * wq, writing, writer_busy (the job is queued or running), werr,
     * handed, written, failures; idle_cv is broadcast after each batch
     * (written or failed) and when the writer stops.
     * handed counts the events given to the writer, written those it has
     * written, in the order handed over: wq and the batch being written
     * are always events written+1 .. handed. Events the writer loses (no
     * memory to keep them after a failure, or at stop) are taken off
     * handed, so that written can reach the tickets handed out after. */
    char *path;
    sqlite3 *wdb;
    sk_workers *writer;
    sk_job write_job;
    int writer_busy;
    size_t writing; /* events of the batch being written */
    pthread_mutex_t mu;
    pthread_cond_t idle_cv;
    sk_track_ev *wq;
    size_t nwq, wq_cap;
    sk_err werr; /* the last batch failed with this (0: it did not) */
    uint64_t handed, written;
    uint64_t failures; /* batches that failed, for sk_track_wait */
    char werr_text[sizeof(((sk_error *)0)->text)];
};

/* The suppression list's change log and its triggers (suppress.c):
 * created by every read-write open, so that version-1 stores written
 * before it existed get it too. */
extern const char sk_suppress_schema[];

/* The webhooks' outbox (outbox.c): the statement that adds an event's
 * rows (one per endpoint that wants it) in the event's transaction, and
 * its use for the event just inserted as event_id. */
sk_err sk_outbox_prepare(sqlite3 *db, sqlite3_stmt **st);
sk_err sk_outbox_add(sqlite3_stmt *st, sqlite3_int64 event_id, const sk_track_ev *ev,
                     int64_t now_ms);

/* Fill err from the connection's last error. */
sk_err sk_track_db_error(sk_track *tr, sk_error *err, const char *what);
/* Run one statement without results. */
sk_err sk_track_exec(sk_track *tr, const char *sql, sk_error *err);
/* A column as a new string (NULL for SQL NULL), or fail with *oom set. */
char *sk_track_column_dup(sqlite3_stmt *st, int col, int *oom);

/* ---- track.c: the store ---- */

/* Fill err from a connection's last error (the writer's has its own). */
sk_err sk_track_conn_error(sqlite3 *db, sk_error *err, const char *what);
/* The options' defaults where they are 0. */
void sk_track_opts_defaults(sk_track_opts *o);
/* Free the strings of an event the store owns, and zero it. */
void sk_track_ev_clear(sk_track_ev *ev);
/* Bind s as text, or NULL when s is. */
void sk_track_bind_text(sqlite3_stmt *st, int i, const char *s);
/* A Message-ID without surrounding blanks and angle brackets, in place. */
char *sk_track_strip_angles(char *s);

/* ---- writer.c: the events written ---- */

/* Write the pending events (hand them to the writer job when there is
 * one) where a failure is no caller's business: they stay pending and
 * are retried; the log says why. */
void sk_track_flush_or_log(sk_track *tr);
/* Forget the pending events (after they were written, or at free). */
void sk_track_pending_drop(sk_track *tr);
/* Stop the writer job after it wrote what it was handed (at free); what
 * it could not write is logged as lost. */
void sk_track_writer_stop(sk_track *tr);

#endif
