/* Unit tests for src/track/suppress*.c: address forms, case rules, expiry,
 * removal, listing, suppression after hard bounces; the in-memory set and
 * the mirror that keeps one equal to the store (change log, catching up). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>

#include <event2/event.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOW_S 1790000000LL

typedef struct fixture {
    char *dir;
    char path[96];
    int64_t now_ms; /* the store's clock */
    sk_track *tr;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = skt_tmpdir("suppress");
    snprintf(f->path, sizeof f->path, "%s/track.db", f->dir);
    f->now_ms = NOW_S * 1000;
    sk_error err;
    f->tr = sk_track_open(f->path, 0, &err);
    if (!f->tr) return -1;
    sk_track_opts o = {.clock_ms = skt_clock_ms, .clock_ctx = &f->now_ms};
    if (sk_track_set_opts(f->tr, &o, NULL, &err)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_track_free(f->tr);
    skt_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void test_normalize(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        const char *out;
    } cases[] = {
        {"bob@example.com", SK_OK, "bob@example.com"},
        {"Bob@Example.COM", SK_OK, "Bob@example.com"}, /* local part kept as is */
        {"<Bob@EXAMPLE.com>", SK_OK, "Bob@example.com"},
        {"  a@b.c\t", SK_OK, "a@b.c"},
        {"\"x@Y\"@Z.org", SK_OK, "\"x@Y\"@z.org"}, /* the last '@' splits */
        {"nope", SK_ERR_INVAL, NULL},
        {"@example.com", SK_ERR_INVAL, NULL},
        {"bob@", SK_ERR_INVAL, NULL},
        {"<>", SK_ERR_INVAL, NULL},
        {"<<a@b.example>>", SK_ERR_INVAL, NULL},
        {"a@b.example>", SK_ERR_INVAL, NULL},
        {"", SK_ERR_INVAL, NULL},
        {"a\r\n@example.com", SK_ERR_INVAL, NULL},
        {NULL, SK_ERR_INVAL, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
        sk_err e = sk_suppress_normalize(cases[i].in, &b);
        if (e != cases[i].err) fail_msg("case %zu: %d", i, e);
        if (!e) assert_string_equal(sk_buf_cstr(&b), cases[i].out);
        sk_buf_free(&b);
    }
    char long_addr[SK_SMTP_PATH_MAX_OCTETS + 8];
    memset(long_addr, 'a', sizeof long_addr - 1);
    long_addr[sizeof long_addr - 1] = '\0';
    long_addr[10] = '@';
    sk_buf b = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    assert_int_equal(sk_suppress_normalize(long_addr, &b), SK_ERR_TOO_LONG);
    sk_buf_free(&b);
}

static void test_case_rules(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "Bob@Example.com", "manual", 0, 0, &err), SK_OK);
    static const struct {
        const char *addr;
        sk_err err;
    } cases[] = {
        {"Bob@Example.com", SK_OK},
        {"Bob@example.com", SK_OK},
        {"Bob@EXAMPLE.COM", SK_OK},
        {"<Bob@example.com>", SK_OK},
        {"bob@example.com", SK_ERR_NOT_FOUND}, /* the local part is exact */
        {"BOB@example.com", SK_ERR_NOT_FOUND},
        {"Bob@example.org", SK_ERR_NOT_FOUND},
        {"Bob", SK_ERR_INVAL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_suppression s;
        sk_err e = sk_suppress_check(f->tr, cases[i].addr, 0, &s, &err);
        if (e != cases[i].err) fail_msg("case %zu '%s': %d", i, cases[i].addr, e);
        if (!e) {
            assert_string_equal(s.address, "Bob@example.com");
            assert_string_equal(s.reason, "manual");
            assert_int_equal(s.created_s, NOW_S);
            assert_int_equal(s.until_s, 0);
        }
        sk_suppression_clear(&s);
    }
}

static void test_expiry(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "a@x.org", "bad-mailbox", 1000, 2000, &err), SK_OK);
    assert_int_equal(sk_suppress_add(f->tr, "b@x.org", NULL, 1000, 0, &err), SK_OK);
    static const struct {
        const char *addr;
        int64_t now;
        sk_err err;
    } cases[] = {
        {"a@x.org", 1000, SK_OK},
        {"a@x.org", 1999, SK_OK},
        {"a@x.org", 2000, SK_ERR_NOT_FOUND}, /* until is the first second it no longer holds */
        {"a@x.org", 5000, SK_ERR_NOT_FOUND},
        {"b@x.org", 1999, SK_OK},
        {"b@x.org", INT64_MAX, SK_OK}, /* for ever */
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_err e = sk_suppress_check(f->tr, cases[i].addr, cases[i].now, NULL, &err);
        if (e != cases[i].err) fail_msg("case %zu: %d", i, e);
    }
    /* The list shows what holds at a time. */
    sk_suppression *list;
    size_t n;
    assert_int_equal(sk_suppress_list(f->tr, 1500, &list, &n, &err), SK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].address, "a@x.org");
    assert_string_equal(list[0].reason, "bad-mailbox");
    assert_int_equal(list[0].until_s, 2000);
    assert_string_equal(list[1].address, "b@x.org");
    assert_string_equal(list[1].reason, "manual");
    sk_suppress_list_free(list, n);
    assert_int_equal(sk_suppress_list(f->tr, 2000, &list, &n, &err), SK_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].address, "b@x.org");
    sk_suppress_list_free(list, n);

    /* Adding again replaces the entry. */
    assert_int_equal(sk_suppress_add(f->tr, "a@X.ORG", "again", 3000, 4000, &err), SK_OK);
    sk_suppression s;
    assert_int_equal(sk_suppress_check(f->tr, "A@x.org", 3500, &s, &err), SK_ERR_NOT_FOUND);
    assert_int_equal(sk_suppress_check(f->tr, "a@x.org", 3500, &s, &err), SK_OK);
    assert_string_equal(s.reason, "again");
    assert_int_equal(s.created_s, 3000);
    sk_suppression_clear(&s);
}

static void test_remove(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "c@Example.NET", "manual", 0, 0, &err), SK_OK);
    static const struct {
        const char *addr;
        sk_err err;
    } cases[] = {
        {"c@example.com", SK_ERR_NOT_FOUND},
        {"C@example.net", SK_ERR_NOT_FOUND},
        {"<c@EXAMPLE.net>", SK_OK},
        {"c@example.net", SK_ERR_NOT_FOUND}, /* already gone */
        {"junk", SK_ERR_INVAL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_err e = sk_suppress_remove(f->tr, cases[i].addr, &err);
        if (e != cases[i].err) fail_msg("case %zu: %d", i, e);
    }
    assert_int_equal(sk_suppress_check(f->tr, "c@example.net", 0, NULL, &err), SK_ERR_NOT_FOUND);
}

/* Which bounces suppress: the class's policy (rules), a permanent
 * reply, and strong evidence (the recipient's own domain answered, or two
 * messages bounced with the same class). Every suppression records its
 * bounce. */
static void test_after_bounce(void **state)
{
    fixture *f = *state;
    sk_rules *rules;
    assert_int_equal(sk_rules_default(&rules, NULL), SK_OK);
    static const struct {
        sk_track_kind kind;
        const char *queue_id, *rcpt, *cls, *reply;
        int from_domain, for_s;
        int added;
        const char *reason, *evidence;
        int64_t until_s; /* after NOW_S */
    } cases[] = {
        {SK_TRACK_BOUNCED, "Q1", "u1@example.org", "bad-mailbox", "550 5.1.1 no such user", 1, 3600,
         1, "bad-mailbox: 550 5.1.1 no such user", "recipient-domain", 3600},
        /* 0: the class's duration from the rules (7 days, 90 days). */
        {SK_TRACK_BOUNCED, "Q1", "u2@example.org", "domain-not-found", NULL, 1, 0, 1,
         "domain-not-found", "recipient-domain", 7 * 86400},
        {SK_TRACK_BOUNCED, "Q1", "u8@example.org", "mailbox-disabled", "550 5.2.1 disabled", 1, 0,
         1, "mailbox-disabled: 550 5.2.1 disabled", "recipient-domain", 90 * 86400},
        {SK_TRACK_BOUNCED, "Q1", "u3@example.org", "mailbox-full", "552 5.2.2 full", 1, 0, 0, NULL,
         NULL, 0},
        {SK_TRACK_BOUNCED, "Q1", "u4@example.org", "policy", "550 5.7.1 spam", 1, 0, 0, NULL, NULL,
         0},
        {SK_TRACK_BOUNCED, "Q1", "u5@example.org", NULL, "550 5.0.0 no", 1, 0, 0, NULL, NULL, 0},
        {SK_TRACK_DEFERRED, "Q1", "u6@example.org", "bad-mailbox", "450 4.1.1 later", 1, 0, 0, NULL,
         NULL, 0},
        /* Temporary kinds never suppress, whatever the class says. */
        {SK_TRACK_BOUNCED, "Q1", "t1@example.org", "bad-mailbox", "450 4.1.1 try later", 1, 0, 0,
         NULL, NULL, 0},
        {SK_TRACK_BOUNCED, "Q1", "t2@example.org", "throttled", "550 5.7.1 rate", 1, 0, 0, NULL,
         NULL, 0},
        {SK_TRACK_BOUNCED, "Q1", "t3@example.org", "expired", "retry timeout exceeded", 1, 0, 0,
         NULL, NULL, 0},
        /* Not from the recipient's domain: once is not enough... */
        {SK_TRACK_BOUNCED, "Q1", "w@example.org", "bad-mailbox", "550 5.1.1 unknown", 0, 0, 0, NULL,
         NULL, 0},
        /* ...nor the same message reported again... */
        {SK_TRACK_BOUNCED, "Q1", "w@example.org", "bad-mailbox", "550 5.1.1 unknown", 0, 0, 0, NULL,
         NULL, 0},
        /* ...a second message with the same class is. */
        {SK_TRACK_BOUNCED, "Q2", "w@example.org", "bad-mailbox", "550 5.1.1 unknown", 0, 0, 1,
         "bad-mailbox: 550 5.1.1 unknown", "repeated", 30 * 86400},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_track_ev ev = {.time_ms = NOW_S * 1000,
                          .kind = cases[i].kind,
                          .queue_id = cases[i].queue_id,
                          .recipient = cases[i].rcpt,
                          .cls = cases[i].cls,
                          .reply = cases[i].reply};
        sk_error err;
        int added = -1;
        sk_suppress_evidence how = {.rules = rules,
                                    .from_recipient_domain = cases[i].from_domain,
                                    .detector = cases[i].from_domain ? NULL : "rfc3464",
                                    .for_s = cases[i].for_s};
        assert_int_equal(sk_track_event(f->tr, &ev, &err), SK_OK);
        assert_int_equal(sk_suppress_after_bounce(f->tr, &ev, &how, &added, &err), SK_OK);
        if (added != cases[i].added) fail_msg("case %zu: added %d", i, added);
        sk_suppression s;
        sk_err e = sk_suppress_check(f->tr, cases[i].rcpt, NOW_S + 10, &s, &err);
        assert_int_equal(e, cases[i].added ? SK_OK : SK_ERR_NOT_FOUND);
        if (!e) {
            assert_string_equal(s.reason, cases[i].reason);
            assert_int_equal(s.until_s, NOW_S + cases[i].until_s);
            assert_string_equal(s.queue_id, cases[i].queue_id);
            assert_string_equal(s.evidence, cases[i].evidence);
            assert_string_equal(s.detector, cases[i].from_domain ? "smtp-reply" : "rfc3464");
            if (cases[i].reply)
                assert_string_equal(s.bounce, cases[i].reply);
            else
                assert_null(s.bounce);
            sk_suppression_clear(&s);
            /* Gone when the time is up. */
            assert_int_equal(
                sk_suppress_check(f->tr, cases[i].rcpt, NOW_S + cases[i].until_s, NULL, &err),
                SK_ERR_NOT_FOUND);
        }
    }
    /* A manual entry replaces the bounce's, and its cause with it. */
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "u1@example.org", "manual", 0, 0, &err), SK_OK);
    sk_suppression s;
    assert_int_equal(sk_suppress_check(f->tr, "u1@example.org", 0, &s, &err), SK_OK);
    assert_null(s.queue_id);
    assert_null(s.bounce);
    sk_suppression_clear(&s);
    /* Without rules nothing suppresses. */
    sk_track_ev ev = {.kind = SK_TRACK_BOUNCED,
                      .queue_id = "Q3",
                      .recipient = "u7@example.org",
                      .cls = "bad-mailbox"};
    sk_suppress_evidence none = {.from_recipient_domain = 1};
    int added = -1;
    assert_int_equal(sk_suppress_after_bounce(f->tr, &ev, &none, &added, &err), SK_OK);
    assert_int_equal(added, 0);
    sk_rules_free(rules);
}

static void test_readonly(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "r@example.org", "manual", 0, 0, &err), SK_OK);
    sk_track *rd = sk_track_open(f->path, 1, &err);
    assert_non_null(rd);
    assert_int_equal(sk_suppress_check(rd, "r@example.org", NOW_S, NULL, &err), SK_OK);
    assert_int_equal(sk_suppress_add(rd, "s@example.org", "x", 0, 0, &err), SK_ERR_STATE);
    assert_int_equal(sk_suppress_remove(rd, "r@example.org", &err), SK_ERR_STATE);
    sk_track_free(rd);
}

/* The set: the same rules as the store (domain folded, local part exact,
 * expiry at until_s), without a database. */
static void test_set(void **state)
{
    (void)state;
    sk_suppress_set *set = sk_suppress_set_new();
    assert_non_null(set);
    assert_null(sk_suppress_set_find(set, "a@x.org", NOW_S));
    static const sk_suppression entries[] = {
        {.address = "Bob@Example.COM", .reason = "manual", .created_s = 100},
        {.address = "<gone@x.org>",
         .reason = "bad-mailbox: 550 5.1.1 no such user",
         .created_s = 100,
         .until_s = NOW_S + 60},
        {.address = "old@x.org", .reason = "bad-mailbox", .created_s = 100, .until_s = NOW_S},
        {.address = "\"q@p\"@Y.org", .created_s = 100},
    };
    for (size_t i = 0; i < SKT_N(entries); i++)
        assert_int_equal(sk_suppress_set_put(set, &entries[i]), SK_OK);
    assert_int_equal(sk_suppress_set_count(set), 4);
    sk_suppression bad = {.address = "not-an-address", .reason = "x", .created_s = 1};
    assert_int_equal(sk_suppress_set_put(set, &bad), SK_ERR_INVAL);
    static const struct {
        const char *addr;
        int64_t now;
        const char *found; /* the stored address, NULL: not suppressed */
        const char *reason;
    } cases[] = {
        {"Bob@example.com", NOW_S, "Bob@example.com", "manual"},
        {"<Bob@EXAMPLE.com>", NOW_S, "Bob@example.com", "manual"},
        {"bob@example.com", NOW_S, NULL, NULL}, /* the local part is exact */
        {"Bob@example.org", NOW_S, NULL, NULL},
        {"gone@X.ORG", NOW_S + 59, "gone@x.org", "bad-mailbox: 550 5.1.1 no such user"},
        {"gone@x.org", NOW_S + 60, NULL, NULL}, /* until_s: over */
        {"old@x.org", NOW_S - 1, "old@x.org", "bad-mailbox"},
        {"old@x.org", NOW_S, NULL, NULL},
        {"\"q@p\"@y.org", NOW_S, "\"q@p\"@y.org", ""},
        {"q@p", NOW_S, NULL, NULL},
        {"junk", NOW_S, NULL, NULL},
        {"", NOW_S, NULL, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        const sk_suppression *e = sk_suppress_set_find(set, cases[i].addr, cases[i].now);
        if (!cases[i].found != !e) fail_msg("case %zu '%s': found %p", i, cases[i].addr, e);
        if (e) {
            assert_string_equal(e->address, cases[i].found);
            assert_string_equal(e->reason, cases[i].reason);
            assert_int_equal(e->created_s, 100);
        }
    }
    /* A put for the same address replaces the entry. */
    sk_suppression again = {.address = "Bob@example.COM",
                            .reason = "complaint: abuse",
                            .created_s = 200,
                            .until_s = NOW_S + 5};
    assert_int_equal(sk_suppress_set_put(set, &again), SK_OK);
    assert_int_equal(sk_suppress_set_count(set), 4);
    const sk_suppression *e = sk_suppress_set_find(set, "Bob@example.com", NOW_S);
    assert_non_null(e);
    assert_string_equal(e->reason, "complaint: abuse");
    assert_int_equal(e->created_s, 200);
    assert_null(sk_suppress_set_find(set, "Bob@example.com", NOW_S + 5));
    /* Removal, by any form of the address. */
    assert_int_equal(sk_suppress_set_remove(set, "<Bob@EXAMPLE.com>"), SK_OK);
    assert_int_equal(sk_suppress_set_remove(set, "Bob@example.com"), SK_ERR_NOT_FOUND);
    assert_int_equal(sk_suppress_set_remove(set, "junk"), SK_ERR_NOT_FOUND);
    assert_int_equal(sk_suppress_set_count(set), 3);
    assert_null(sk_suppress_set_find(set, "Bob@example.com", NOW_S));
    sk_suppress_set_free(set);
    sk_suppress_set_free(NULL);
    assert_null(sk_suppress_set_find(NULL, "a@b.c", NOW_S));
}

/* Raw SQL on a connection of its own: a writer that is not this library
 * (the sqlite3 shell, an older program). */
static void sql(const char *path, const char *stmt)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(db, stmt, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", stmt, msg);
    sqlite3_close(db);
}

static int64_t sql_int(const char *path, const char *stmt)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, stmt, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void expect_in(const sk_suppress_mirror *m, const char *addr, const char *reason)
{
    const sk_suppression *e = sk_suppress_set_find(sk_suppress_mirror_set(m), addr, NOW_S);
    if (!reason && e) fail_msg("%s still suppressed (%s)", addr, e->reason);
    if (reason && !e) fail_msg("%s not suppressed", addr);
    if (reason) assert_string_equal(e->reason, reason);
}

/* Without an event base the caller refreshes: every kind of change, by
 * this library or by another writer, reaches the set at the next refresh. */
static void test_mirror(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "before@x.org", "manual", 0, 0, &err), SK_OK);
    assert_int_equal(sk_suppress_add(f->tr, "Temp@x.org", "bad-mailbox", 0, NOW_S + 10, &err),
                     SK_OK);
    sk_suppress_mirror *m = sk_suppress_mirror_new(f->path, NULL, NULL, &err);
    assert_non_null(m);
    /* Loaded at once. */
    assert_int_equal(sk_suppress_set_count(sk_suppress_mirror_set(m)), 2);
    expect_in(m, "before@X.org", "manual");
    const sk_suppression *t =
        sk_suppress_set_find(sk_suppress_mirror_set(m), "Temp@x.org", NOW_S + 9);
    assert_non_null(t);
    assert_null(sk_suppress_set_find(sk_suppress_mirror_set(m), "Temp@x.org", NOW_S + 10));

    /* Nothing changed: nothing happens. */
    const sk_suppress_set *before = sk_suppress_mirror_set(m);
    assert_int_equal(sk_suppress_mirror_refresh(m, &err), SK_OK);
    assert_ptr_equal(sk_suppress_mirror_set(m), before);

    static const struct {
        const char *sql;            /* a change by another writer, or NULL */
        const char *add, *reason;   /* or sk_suppress_add */
        const char *remove;         /* or sk_suppress_remove */
        const char *check, *expect; /* then: check's reason, NULL: not suppressed */
    } steps[] = {
        {NULL, "new@x.org", "complaint: abuse", NULL, "new@x.org", "complaint: abuse"},
        {NULL, NULL, NULL, "before@x.org", "before@x.org", NULL},
        {NULL, "new@X.ORG", "manual", NULL, "new@x.org", "manual"}, /* replaced */
        {"INSERT INTO suppression VALUES ('shell@x.org', 'by hand', 1, NULL)", NULL, NULL, NULL,
         "shell@x.org", "by hand"},
        {"UPDATE suppression SET reason = 'edited' WHERE address = 'shell@x.org'", NULL, NULL, NULL,
         "shell@x.org", "edited"},
        {"UPDATE suppression SET address = 'moved@x.org' WHERE address = 'shell@x.org'", NULL, NULL,
         NULL, "shell@x.org", NULL},
        {NULL, NULL, NULL, NULL, "moved@x.org", "edited"},
        {"DELETE FROM suppression WHERE address = 'moved@x.org'", NULL, NULL, NULL, "moved@x.org",
         NULL},
        /* Removed and added again between two refreshes: in. */
        {"DELETE FROM suppression WHERE address = 'new@x.org';"
         "INSERT INTO suppression VALUES ('new@x.org', 'back', 1, NULL)",
         NULL, NULL, NULL, "new@x.org", "back"},
        /* A row that is no address is skipped. */
        {"INSERT INTO suppression VALUES ('nonsense', 'x', 1, NULL)", NULL, NULL, NULL, "new@x.org",
         "back"},
    };
    for (size_t i = 0; i < SKT_N(steps); i++) {
        if (steps[i].sql) sql(f->path, steps[i].sql);
        if (steps[i].add)
            assert_int_equal(sk_suppress_add(f->tr, steps[i].add, steps[i].reason, 0, 0, &err),
                             SK_OK);
        if (steps[i].remove)
            assert_int_equal(sk_suppress_remove(f->tr, steps[i].remove, &err), SK_OK);
        assert_int_equal(sk_suppress_mirror_refresh(m, &err), SK_OK);
        expect_in(m, steps[i].check, steps[i].expect);
    }
    assert_int_equal(sk_suppress_set_count(sk_suppress_mirror_set(m)), 2); /* new, Temp */

    /* With a base, refreshing is the thread's job. */
    struct event_base *base = event_base_new();
    sk_suppress_mirror *mt = sk_suppress_mirror_new(f->path, NULL, base, &err);
    assert_non_null(mt);
    assert_int_equal(sk_suppress_mirror_refresh(mt, &err), SK_ERR_STATE);
    sk_suppress_mirror_free(mt);
    event_base_free(base);
    sk_suppress_mirror_free(m);

    /* A store without a change log (never opened read-write by this
     * version) is refused with the reason. */
    sql(f->path, "DROP TABLE suppression_log");
    assert_null(sk_suppress_mirror_new(f->path, NULL, NULL, &err));
    assert_non_null(strstr(err.text, "suppression_log"));
    assert_null(sk_suppress_mirror_new("/nonexistent/track.db", NULL, NULL, &err));
}

/* Run base's loop until addr is in m's set, or a bound passes; whether
 * it got there. */
static bool loop_until_in(struct event_base *base, const sk_suppress_mirror *m, const char *addr)
{
    for (int i = 0; i < 20000; i++) {
        if (sk_suppress_set_find(sk_suppress_mirror_set(m), addr, NOW_S)) return true;
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    return false;
}

/* With an event base the set follows the store by itself: at the next
 * tick (refresh_ms), or at once when poked (a tick that never comes). */
static void test_mirror_on_loop(void **state)
{
    fixture *f = *state;
    static const struct {
        unsigned refresh_ms;
        bool poke;
    } cases[] = {{5, false}, {3600 * 1000, true}};
    for (size_t c = 0; c < SKT_N(cases); c++) {
        struct event_base *base = event_base_new();
        assert_non_null(base);
        sk_error err;
        sk_suppress_mirror_opts o = {.refresh_ms = cases[c].refresh_ms};
        sk_suppress_mirror *m = sk_suppress_mirror_new(f->path, &o, base, &err);
        assert_non_null(m);
        char addr[64];
        for (int i = 0; i < 3; i++) {
            snprintf(addr, sizeof addr, "loop%zu-%d@x.org", c, i);
            assert_int_equal(sk_suppress_add(f->tr, addr, "manual", 0, 0, &err), SK_OK);
            if (cases[c].poke) sk_suppress_mirror_poke(m);
            assert_true(loop_until_in(base, m, addr));
        }
        sk_suppress_mirror_free(m);
        event_base_free(base);
    }
}

/* The log keeps the last SK_SUPPRESS_LOG_KEEP_ROWS changes; a mirror
 * further behind than that, or looking at a store numbered anew, reads the
 * whole list again and ends up equal to it. */
static void test_mirror_catch_up(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "keep@x.org", "manual", 0, 0, &err), SK_OK);
    assert_int_equal(sk_suppress_add(f->tr, "drop@x.org", "manual", 0, 0, &err), SK_OK);
    sk_suppress_mirror *m = sk_suppress_mirror_new(f->path, NULL, NULL, &err);
    assert_non_null(m);
    assert_int_equal(sk_suppress_remove(f->tr, "drop@x.org", &err), SK_OK);
    /* More changes than the log keeps, in one transaction. */
    char stmt[512];
    snprintf(stmt, sizeof stmt,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
             " INSERT INTO suppression SELECT 'bulk' || i || '@x.org', 'bulk', 1, NULL FROM n",
             SK_SUPPRESS_LOG_KEEP_ROWS + 5);
    sql(f->path, stmt);
    assert_int_equal(sql_int(f->path, "SELECT count(*) FROM suppression_log"),
                     SK_SUPPRESS_LOG_KEEP_ROWS);
    assert_int_equal(sk_suppress_mirror_refresh(m, &err), SK_OK);
    const sk_suppress_set *set = sk_suppress_mirror_set(m);
    assert_int_equal(sk_suppress_set_count(set), SK_SUPPRESS_LOG_KEEP_ROWS + 6);
    assert_non_null(sk_suppress_set_find(set, "keep@x.org", NOW_S));
    assert_non_null(sk_suppress_set_find(set, "bulk1@x.org", NOW_S));
    assert_null(sk_suppress_set_find(set, "drop@x.org", NOW_S)); /* its change was trimmed */
    /* The log numbered anew (all of it gone, the counter reset): read
     * again from scratch. */
    sql(f->path, "DELETE FROM suppression WHERE reason = 'bulk';"
                 "DELETE FROM suppression_log; DELETE FROM sqlite_sequence;"
                 "INSERT INTO suppression VALUES ('fresh@x.org', 'manual', 1, NULL)");
    assert_int_equal(sk_suppress_mirror_refresh(m, &err), SK_OK);
    set = sk_suppress_mirror_set(m);
    assert_int_equal(sk_suppress_set_count(set), 2);
    assert_non_null(sk_suppress_set_find(set, "fresh@x.org", NOW_S));
    assert_null(sk_suppress_set_find(set, "bulk1@x.org", NOW_S));
    sk_suppress_mirror_free(m);
}

typedef struct loop_wait {
    struct event_base *base;
    sk_suppress_mirror *m;
    const char *addr;
    int want; /* 1: until suppressed, 0: until not */
} loop_wait;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    loop_wait *w = arg;
    (void)fd;
    (void)what;
    int in = sk_suppress_set_find(sk_suppress_mirror_set(w->m), w->addr, NOW_S) != NULL;
    if (in == w->want) event_base_loopbreak(w->base);
}

/* Run the loop until the set says what we wait for (the thread applies
 * changes through it); a stuck mirror fails the test after 30 s. */
static void run_until(loop_wait *w)
{
    struct event *tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    struct timeval ms10 = {0, 10000};
    event_add(tick, &ms10);
    time_t give_up = time(NULL) + 30;
    while (!event_base_got_break(w->base) && time(NULL) < give_up)
        event_base_loop(w->base, EVLOOP_ONCE);
    event_free(tick);
    if (!event_base_got_break(w->base)) fail_msg("the mirror never showed %s", w->addr);
}

/* With an event base: changes are read by the mirror's thread and applied
 * on the loop, after a poke or at the next refresh. */
static void test_mirror_thread(void **state)
{
    fixture *f = *state;
    sk_error err;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    sk_suppress_mirror *m = sk_suppress_mirror_new(f->path, NULL, base, &err);
    assert_non_null(m);
    assert_int_equal(sk_suppress_set_count(sk_suppress_mirror_set(m)), 0);
    /* Our own change, poked. */
    assert_int_equal(sk_suppress_add(f->tr, "a@x.org", "manual", 0, 0, &err), SK_OK);
    sk_suppress_mirror_poke(m);
    loop_wait w = {base, m, "a@x.org", 1};
    run_until(&w);
    /* Another writer's: seen at a refresh. */
    sql(f->path, "DELETE FROM suppression WHERE address = 'a@x.org'");
    w.want = 0;
    run_until(&w);
    sk_suppress_mirror_free(m);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test_setup_teardown(test_case_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_bounce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test(test_set),
        cmocka_unit_test_setup_teardown(test_mirror_on_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_catch_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_thread, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
