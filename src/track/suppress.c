/* The suppression list: recipients not to send to, in the tracking store's
 * database (table "suppression"), written at once rather than batched. */
#include <smtpkit/bounce.h>
#include <smtpkit/classify.h>
#include <smtpkit/suppress.h>

#include "track_int.h"

#include <string.h>

#define STR_(x) #x
#define STR(x)  STR_(x)

/* Every change to the list, by any writer (this library, an older one,
 * the sqlite3 shell), gets a number in suppression_log, so that a mirror
 * reads only what changed since it last looked (suppress_mirror.c). The
 * last SK_SUPPRESS_LOG_KEEP_ROWS numbers are kept. AUTOINCREMENT: numbers
 * are never reused, so a gap below the oldest kept one shows a mirror
 * that fell behind. INSERT OR REPLACE fires the insert trigger only
 * (recursive triggers are off), which names the same address. */
const char sk_suppress_schema[] =
    "CREATE TABLE IF NOT EXISTS suppression_log ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " address TEXT NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS suppression_log_insert AFTER INSERT ON suppression BEGIN"
    " INSERT INTO suppression_log (address) VALUES (new.address); END;"
    "CREATE TRIGGER IF NOT EXISTS suppression_log_update AFTER UPDATE ON suppression BEGIN"
    " INSERT INTO suppression_log (address) VALUES (old.address);"
    " INSERT INTO suppression_log (address) VALUES (new.address); END;"
    "CREATE TRIGGER IF NOT EXISTS suppression_log_delete AFTER DELETE ON suppression BEGIN"
    " INSERT INTO suppression_log (address) VALUES (old.address); END;"
    "CREATE TRIGGER IF NOT EXISTS suppression_log_trim AFTER INSERT ON suppression_log BEGIN"
    " DELETE FROM suppression_log WHERE seq <= new.seq - " STR(
        SK_SUPPRESS_LOG_KEEP_ROWS) "; END;"
                                   /* The bounce that caused an entry (none for a manual one or a
                                    * complaint): gone with its entry. A table of its own rather
                                    * than columns of suppression, so that older programs keep
                                    * reading the store. */
                                   "CREATE TABLE IF NOT EXISTS suppression_cause ("
                                   " address TEXT PRIMARY KEY,"
                                   " queue_id TEXT,"
                                   " bounce TEXT,"
                                   " detector TEXT,"
                                   " evidence TEXT);"
                                   "CREATE TRIGGER IF NOT EXISTS suppression_cause_delete AFTER "
                                   "DELETE ON suppression BEGIN"
                                   " DELETE FROM suppression_cause WHERE address = old.address; "
                                   "END;";

void sk_suppression_clear(sk_suppression *s)
{
    if (!s) return;
    sk_free(s->address);
    sk_free(s->reason);
    sk_free(s->queue_id);
    sk_free(s->bounce);
    sk_free(s->detector);
    sk_free(s->evidence);
    memset(s, 0, sizeof *s);
}

sk_err sk_suppress_normalize(const char *addr, sk_buf *out)
{
    if (!addr) return SK_ERR_INVAL;
    while (*addr == ' ' || *addr == '\t') addr++;
    size_t n = strlen(addr);
    while (n && (addr[n - 1] == ' ' || addr[n - 1] == '\t')) n--;
    if (n >= 2 && addr[0] == '<' && addr[n - 1] == '>') {
        addr++;
        n -= 2;
    }
    /* The domain follows the last '@': a quoted local part may hold one
     * (RFC 5321 4.1.2). */
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];
        /* One pair of angle brackets was removed above; any left over is
         * not part of an address (and normalizing twice gives the same). */
        if (c < 0x20 || c == 0x7f || c == '<' || c == '>') return SK_ERR_INVAL;
        if (c == '@') at = addr + i;
    }
    if (!at || at == addr || at == addr + n - 1) return SK_ERR_INVAL;
    if (n > SK_SMTP_PATH_MAX_OCTETS) return SK_ERR_TOO_LONG;
    sk_buf_reset(out);
    sk_err e = sk_buf_append(out, addr, (size_t)(at - addr) + 1);
    for (const char *p = at + 1; !e && p < addr + n; p++)
        e = sk_buf_putc(out, (char)sk_to_lower(*p));
    return e;
}

static sk_err normalized(const char *addr, sk_buf *b, sk_error *err)
{
    sk_err e = sk_suppress_normalize(addr, b);
    if (e == SK_ERR_NOMEM) return sk_error_set(err, e, SK_STEP_NONE, "suppression: out of memory");
    if (e)
        return sk_error_set(err, e, SK_STEP_NONE, "not an address (user@domain): '%s'",
                            addr ? addr : "");
    return SK_OK;
}

static int64_t now_or_clock(sk_track *tr, int64_t now_s)
{
    return now_s ? now_s : sk_track_now_ms(tr) / 1000;
}

/* What caused an entry; NULL: an operator or a complaint did. */
typedef struct cause {
    const char *queue_id, *bounce, *detector, *evidence;
} cause;

static sk_err add_entry(sk_track *tr, const char *addr, const char *reason, int64_t now_s,
                        int64_t until_s, const cause *why, sk_error *err);

sk_err sk_suppress_add(sk_track *tr, const char *addr, const char *reason, int64_t now_s,
                       int64_t until_s, sk_error *err)
{
    return add_entry(tr, addr, reason, now_s, until_s, NULL, err);
}

static sk_err add_entry(sk_track *tr, const char *addr, const char *reason, int64_t now_s,
                        int64_t until_s, const cause *why, sk_error *err)
{
    sk_error_clear(err);
    if (tr->readonly)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "tracking store opened read-only");
    if (reason && strnlen(reason, SK_TRACK_FIELD_MAX_OCTETS + 1) > SK_TRACK_FIELD_MAX_OCTETS)
        return sk_error_set(err, SK_ERR_TOO_LONG, SK_STEP_NONE,
                            "suppression reason longer than %d octets", SK_TRACK_FIELD_MAX_OCTETS);
    sk_buf a = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    sk_err e = normalized(addr, &a, err);
    if (e) return e;
    now_s = now_or_clock(tr, now_s);
    sqlite3_stmt *st = NULL;
    e = sk_track_exec(tr, "BEGIN IMMEDIATE", err);
    if (e) goto out;
    /* Expired entries go when a new one comes: the table stays small. */
    if (sqlite3_prepare_v2(tr->db, "DELETE FROM suppression WHERE until IS NOT NULL AND until <= ?",
                           -1, &st, NULL) != SQLITE_OK) {
        e = sk_track_db_error(tr, err, "preparing");
        goto rollback;
    }
    sqlite3_bind_int64(st, 1, now_s);
    if (sqlite3_step(st) != SQLITE_DONE) {
        e = sk_track_db_error(tr, err, "removing expired entries");
        goto rollback;
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(tr->db,
                           "INSERT OR REPLACE INTO suppression (address, reason, created, until)"
                           " VALUES (?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        st = NULL;
        e = sk_track_db_error(tr, err, "preparing");
        goto rollback;
    }
    sqlite3_bind_text(st, 1, sk_buf_cstr(&a), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, reason && *reason ? reason : "manual", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_s);
    if (until_s)
        sqlite3_bind_int64(st, 4, until_s);
    else
        sqlite3_bind_null(st, 4);
    if (sqlite3_step(st) != SQLITE_DONE) {
        e = sk_track_db_error(tr, err, "adding a suppression");
        goto rollback;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* The entry's cause replaces an earlier one (or none: manual). */
    if (sqlite3_prepare_v2(tr->db,
                           why ? "INSERT OR REPLACE INTO suppression_cause"
                                 " (address, queue_id, bounce, detector, evidence)"
                                 " VALUES (?, ?, ?, ?, ?)"
                               : "DELETE FROM suppression_cause WHERE address = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        st = NULL;
        e = sk_track_db_error(tr, err, "preparing");
        goto rollback;
    }
    sqlite3_bind_text(st, 1, sk_buf_cstr(&a), -1, SQLITE_STATIC);
    if (why) {
        sqlite3_bind_text(st, 2, why->queue_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, why->bounce, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, why->detector, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, why->evidence, -1, SQLITE_STATIC);
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        e = sk_track_db_error(tr, err, "recording the cause of a suppression");
        goto rollback;
    }
    sqlite3_finalize(st);
    st = NULL;
    e = sk_track_exec(tr, "COMMIT", err);
    if (!e) goto out;
rollback:
    sqlite3_finalize(st);
    st = NULL;
    sqlite3_exec(tr->db, "ROLLBACK", NULL, NULL, NULL);
out:
    sk_buf_free(&a);
    return e;
}

/* A store written by an older program, opened read-only, has no
 * suppression_cause table: its entries have no recorded cause. */
static int has_causes(sk_track *tr)
{
    sqlite3_stmt *st;
    int yes = 0;
    if (sqlite3_prepare_v2(tr->db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                           " AND name = 'suppression_cause'",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    yes = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return yes;
}

#define SELECT_ENTRY "SELECT s.address, s.reason, s.created, s.until"
#define SELECT_CAUSE                                                                               \
    ", c.queue_id, c.bounce, c.detector, c.evidence FROM suppression AS s"                         \
    " LEFT JOIN suppression_cause AS c ON c.address = s.address"
#define SELECT_PLAIN " FROM suppression AS s"

/* Fill s from a row (address, reason, created, until[, cause columns]). */
static int row_to_entry(sqlite3_stmt *st, sk_suppression *s)
{
    int oom = 0;
    s->address = sk_track_column_dup(st, 0, &oom);
    s->reason = sk_track_column_dup(st, 1, &oom);
    s->created_s = sqlite3_column_int64(st, 2);
    s->until_s = sqlite3_column_int64(st, 3); /* NULL reads as 0: no expiry */
    if (sqlite3_column_count(st) > 4) {
        s->queue_id = sk_track_column_dup(st, 4, &oom);
        s->bounce = sk_track_column_dup(st, 5, &oom);
        s->detector = sk_track_column_dup(st, 6, &oom);
        s->evidence = sk_track_column_dup(st, 7, &oom);
    }
    return oom;
}

sk_err sk_suppress_check(sk_track *tr, const char *addr, int64_t now_s, sk_suppression *found,
                         sk_error *err)
{
    sk_error_clear(err);
    if (found) memset(found, 0, sizeof *found);
    sk_buf a = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    sk_err e = normalized(addr, &a, err);
    if (e) return e;
    if (!tr->suppress_check &&
        sqlite3_prepare_v3(tr->db,
                           has_causes(tr) ? SELECT_ENTRY SELECT_CAUSE
                               " WHERE s.address = ?1 AND (s.until IS NULL OR s.until > ?2)"
                                          : SELECT_ENTRY SELECT_PLAIN
                               " WHERE s.address = ?1 AND (s.until IS NULL OR s.until > ?2)",
                           -1, SQLITE_PREPARE_PERSISTENT, &tr->suppress_check, NULL) != SQLITE_OK) {
        sk_buf_free(&a);
        return sk_track_db_error(tr, err, "preparing");
    }
    sqlite3_stmt *st = tr->suppress_check;
    sqlite3_bind_text(st, 1, sk_buf_cstr(&a), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_or_clock(tr, now_s));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        sk_suppression tmp = {0};
        if (row_to_entry(st, &tmp)) {
            sk_suppression_clear(&tmp);
            e = sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
        } else if (found) {
            *found = tmp;
        } else {
            sk_suppression_clear(&tmp);
        }
    } else if (rc == SQLITE_DONE) {
        e = sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "%s is not suppressed",
                         sk_buf_cstr(&a));
    } else {
        e = sk_track_db_error(tr, err, "checking a suppression");
    }
    /* Ends the read transaction; the bound text is ours only until here. */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    sk_buf_free(&a);
    return e;
}

sk_err sk_suppress_remove(sk_track *tr, const char *addr, sk_error *err)
{
    sk_error_clear(err);
    if (tr->readonly)
        return sk_error_set(err, SK_ERR_STATE, SK_STEP_NONE, "tracking store opened read-only");
    sk_buf a = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    sk_err e = normalized(addr, &a, err);
    if (e) return e;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(tr->db, "DELETE FROM suppression WHERE address = ?", -1, &st, NULL) !=
        SQLITE_OK) {
        sk_buf_free(&a);
        return sk_track_db_error(tr, err, "preparing");
    }
    sqlite3_bind_text(st, 1, sk_buf_cstr(&a), -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        e = sk_track_db_error(tr, err, "removing a suppression");
    else if (sqlite3_changes(tr->db) == 0)
        e = sk_error_set(err, SK_ERR_NOT_FOUND, SK_STEP_NONE, "%s is not on the suppression list",
                         sk_buf_cstr(&a));
    sqlite3_finalize(st);
    sk_buf_free(&a);
    return e;
}

void sk_suppress_list_free(sk_suppression *list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) sk_suppression_clear(&list[i]);
    sk_free(list);
}

sk_err sk_suppress_list(sk_track *tr, int64_t now_s, sk_suppression **out, size_t *n, sk_error *err)
{
    sk_error_clear(err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(tr->db,
                           has_causes(tr) ? SELECT_ENTRY SELECT_CAUSE
                               " WHERE s.until IS NULL OR s.until > ? ORDER BY s.address"
                                          : SELECT_ENTRY SELECT_PLAIN
                               " WHERE s.until IS NULL OR s.until > ? ORDER BY s.address",
                           -1, &st, NULL) != SQLITE_OK)
        return sk_track_db_error(tr, err, "preparing");
    sqlite3_bind_int64(st, 1, now_or_clock(tr, now_s));
    sk_suppression *list = NULL;
    size_t count = 0, cap = 0;
    int rc, oom = 0;
    while (!oom && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        oom = sk_array_grow(&list, &cap, count + 1, sizeof *list, SK_ARRAY_UNBOUNDED) != SK_OK;
        if (oom) break;
        list[count] = (sk_suppression){0};
        oom = row_to_entry(st, &list[count]);
        count++;
    }
    sqlite3_finalize(st);
    if (oom || rc != SQLITE_DONE) {
        sk_suppress_list_free(list, count);
        if (oom) return sk_error_set(err, SK_ERR_NOMEM, SK_STEP_NONE, "suppression: out of memory");
        return sk_track_db_error(tr, err, "listing suppressions");
    }
    *out = list;
    *n = count;
    return SK_OK;
}

/* Distinct messages that bounced for recipient with class cls since
 * since_ms (recorded events only). -1 on a database error. */
static int64_t bounces_of(sk_track *tr, const char *recipient, const char *cls, int64_t since_ms)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(tr->db,
                           "SELECT COUNT(DISTINCT COALESCE(queue_id, message_id)) FROM events"
                           " WHERE event = 'bounced' AND recipient = ? AND class = ?"
                           " AND time_ms > ?",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, recipient, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cls, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, since_ms);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return n;
}

sk_err sk_suppress_after_bounce(sk_track *tr, const sk_track_ev *ev,
                                const sk_suppress_evidence *how, int *added, sk_error *err)
{
    sk_error_clear(err);
    if (added) *added = 0;
    if (ev->kind != SK_TRACK_BOUNCED || !ev->recipient || !ev->cls || !how) return SK_OK;
    int cls = sk_class_parse(ev->cls);
    if (cls < 0 || sk_class_is_temporary((sk_class)cls)) return SK_OK;
    /* A bounce of a temporary kind never suppresses: the reply must be a
     * permanent one (when it has a code or enhanced status at all). */
    int code;
    char enhanced[16];
    const char *text;
    sk_bounce_split_reply(ev->reply, &code, enhanced, sizeof enhanced, &text);
    if ((code >= 400 && code < 500) || enhanced[0] == '4') return SK_OK;
    sk_class_policy pol = sk_rules_class_policy(how->rules, (sk_class)cls);
    if (!pol.suppress) return SK_OK;
    int64_t for_s = how->for_s ? how->for_s : (int64_t)pol.suppress_s;
    int64_t now_ms = ev->time_ms ? ev->time_ms : sk_track_now_ms(tr);
    const char *evidence = "any";
    if (!pol.evidence_any) {
        /* One misread bounce must not block a working address: the
         * recipient's own domain's servers said so, or the same class
         * came back for two messages. */
        if (how->from_recipient_domain) {
            evidence = "recipient-domain";
        } else {
            sk_err e = sk_track_flush(tr, err);
            if (e) return e;
            int64_t n = bounces_of(tr, ev->recipient, ev->cls, now_ms - for_s * 1000);
            if (n < 0) return sk_track_db_error(tr, err, "counting bounces");
            if (n < 2) return SK_OK;
            evidence = "repeated";
        }
    }
    sk_buf reason = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS);
    sk_err e = sk_buf_printf(&reason, "%s", ev->cls);
    /* The reply is informative only: a reason cut at the bound is fine. */
    if (!e && ev->reply) {
        size_t room = SK_TRACK_FIELD_MAX_OCTETS - reason.len - 2;
        e = sk_buf_printf(&reason, ": %.*s", (int)room, ev->reply);
    }
    if (e) {
        sk_buf_free(&reason);
        return sk_error_set(err, e, SK_STEP_NONE, "suppression: out of memory");
    }
    cause why = {.queue_id = ev->queue_id ? ev->queue_id : ev->message_id,
                 .bounce = ev->reply,
                 .detector = how->detector ? how->detector : "smtp-reply",
                 .evidence = evidence};
    int64_t now_s = now_ms / 1000;
    e = add_entry(tr, ev->recipient, sk_buf_cstr(&reason), now_s, now_s + for_s, &why, err);
    sk_buf_free(&reason);
    if (!e && added) *added = 1;
    return e;
}
