/* Private to the tracking store and the suppression list that shares its
 * database (src/policy/suppress.c). */
#ifndef SK_TRACK_INT_H
#define SK_TRACK_INT_H

#include <smtpkit/track.h>
#include <sqlite3.h>

struct event;

struct sk_track {
    sqlite3 *db;
    int readonly;
    sk_track_opts opts;
    struct event_base *base;
    struct event *timer; /* flushes pending events on base's loop */
    sk_track_ev *pending;
    size_t npending, cap;
    uint64_t first_pending_mono_ms; /* when the oldest pending was recorded */
    uint64_t retry_mono_ms;         /* after a failed flush, no automatic one before */
    uint64_t dropped;               /* events lost since the last log line */
    /* The suppression check runs for every relayed RCPT: prepared once
     * (suppress.c), reset after each use. */
    sqlite3_stmt *suppress_check;
};

/* Fill err from the connection's last error. */
sk_err sk_track_db_error(sk_track *tr, sk_error *err, const char *what);
/* Run one statement without results. */
sk_err sk_track_exec(sk_track *tr, const char *sql, sk_error *err);
/* A column as a new string (NULL for SQL NULL), or fail with *oom set. */
char *sk_track_column_dup(sqlite3_stmt *st, int col, int *oom);

#endif
