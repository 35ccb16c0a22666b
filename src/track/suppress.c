/* The suppression list: recipients not to send to, in the tracking store's
 * database (table "suppression"), written at once rather than batched. */
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
    " DELETE FROM suppression_log WHERE seq <= new.seq - " STR(SK_SUPPRESS_LOG_KEEP_ROWS) "; END;";

void sk_suppression_clear(sk_suppression *s)
{
    if (!s) return;
    sk_free(s->address);
    sk_free(s->reason);
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

sk_err sk_suppress_add(sk_track *tr, const char *addr, const char *reason, int64_t now_s,
                       int64_t until_s, sk_error *err)
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

/* Fill s from a row (address, reason, created, until). */
static int row_to_entry(sqlite3_stmt *st, sk_suppression *s)
{
    int oom = 0;
    s->address = sk_track_column_dup(st, 0, &oom);
    s->reason = sk_track_column_dup(st, 1, &oom);
    s->created_s = sqlite3_column_int64(st, 2);
    s->until_s = sqlite3_column_int64(st, 3); /* NULL reads as 0: no expiry */
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
                           "SELECT address, reason, created, until FROM suppression"
                           " WHERE address = ?1 AND (until IS NULL OR until > ?2)",
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
                           "SELECT address, reason, created, until FROM suppression"
                           " WHERE until IS NULL OR until > ? ORDER BY address",
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

sk_err sk_suppress_after_bounce(sk_track *tr, const sk_track_ev *ev, int64_t for_s, int *added,
                                sk_error *err)
{
    sk_error_clear(err);
    if (added) *added = 0;
    /* Only failures that say the address itself is wrong: a full mailbox or
     * a policy refusal may pass. */
    if (ev->kind != SK_TRACK_BOUNCED || !ev->recipient || !ev->cls) return SK_OK;
    int cls = sk_class_parse(ev->cls);
    if (cls != SK_CLASS_BAD_MAILBOX && cls != SK_CLASS_DOMAIN_NOT_FOUND) return SK_OK;
    if (!for_s) for_s = SK_SUPPRESS_DURATION_S_DEFAULT;
    int64_t now_s = ev->time_ms ? ev->time_ms / 1000 : sk_track_now_ms(tr) / 1000;
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
    e = sk_suppress_add(tr, ev->recipient, sk_buf_cstr(&reason), now_s, now_s + for_s, err);
    sk_buf_free(&reason);
    if (!e && added) *added = 1;
    return e;
}
