/* Unit tests for src/track: event order, lookups by queue ID and Message-ID,
 * stats windows on an injected clock, batching, and a reader beside a writer
 * that holds the database lock. */
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

#define NOW_MS 1790000000000LL /* 2026-09-21: the injected clock */

typedef struct fixture {
    char *dir;
    char path[96];
    int64_t clock_ms;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = skt_tmpdir("track");
    snprintf(f->path, sizeof f->path, "%s/track.db", f->dir);
    f->clock_ms = NOW_MS;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    skt_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A writer on the fixture's clock; batch_events = n, no timed flush. */
static sk_track *open_writer(fixture *f, unsigned batch, unsigned busy_ms)
{
    sk_error err;
    sk_track *tr = sk_track_open(f->path, 0, &err);
    assert_non_null(tr);
    sk_track_opts o = {.batch_events = batch,
                       .batch_delay_ms = 3600 * 1000,
                       .busy_timeout_ms = busy_ms,
                       .clock_ms = skt_clock_ms,
                       .clock_ctx = &f->clock_ms};
    assert_int_equal(sk_track_set_opts(tr, &o, NULL, &err), SK_OK);
    return tr;
}

static void record(sk_track *tr, const sk_track_ev *ev)
{
    sk_error err;
    assert_int_equal(sk_track_event(tr, ev, &err), SK_OK);
}

static void test_kind_names(void **state)
{
    static const struct {
        sk_track_kind k;
        const char *name;
    } cases[] = {
        {SK_TRACK_RECEIVED, "received"},     {SK_TRACK_QUEUED, "queued"},
        {SK_TRACK_DEFERRED, "deferred"},     {SK_TRACK_DELIVERED, "delivered"},
        {SK_TRACK_BOUNCED, "bounced"},       {SK_TRACK_EXPIRED, "expired"},
        {SK_TRACK_SUPPRESSED, "suppressed"}, {SK_TRACK_COMPLAINED, "complained"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        assert_string_equal(sk_track_kind_name(cases[i].k), cases[i].name);
        assert_int_equal(sk_track_kind_parse(cases[i].name), cases[i].k);
    }
    assert_int_equal(sk_track_kind_parse("sent"), -1);
    assert_int_equal(sk_track_kind_parse(NULL), -1);
}

/* Recorded out of time order; read back by time, ties in recording order. */
static const struct {
    int64_t t;
    sk_track_kind k;
    const char *rcpt;
    unsigned attempt;
    const char *reply;
} order_cases[] = {
    {5000, SK_TRACK_DELIVERED, "a@example.net", 2, "250 2.0.0 ok"},
    {1000, SK_TRACK_RECEIVED, NULL, 0, NULL},
    {2000, SK_TRACK_QUEUED, "a@example.net", 0, NULL},
    {2000, SK_TRACK_QUEUED, "b@example.org", 0, NULL},
    {3000, SK_TRACK_DEFERRED, "a@example.net", 1, "451 4.7.1 try later"},
    {4000, SK_TRACK_BOUNCED, "b@example.org", 1, "550 5.1.1 no such user"},
};
static const size_t order_expected[] = {1, 2, 3, 4, 5, 0};

static void test_insert_query_order(void **state)
{
    fixture *f = *state;
    sk_track *tr = open_writer(f, 64, 0);
    size_t n = SKT_N(order_cases);
    for (size_t i = 0; i < n; i++)
        record(tr, &(sk_track_ev){.time_ms = NOW_MS + order_cases[i].t,
                                  .kind = order_cases[i].k,
                                  .queue_id = "Q1",
                                  .message_id = i == 1 ? "<m1@example.org>" : NULL,
                                  .recipient = order_cases[i].rcpt,
                                  .attempt = order_cases[i].attempt,
                                  .reply = order_cases[i].reply,
                                  .remote_host = i == 0 ? "mx.example.net[192.0.2.1]:25" : NULL,
                                  .tls = i == 0 ? "TLSv1.3 TLS_AES_256_GCM_SHA384" : NULL,
                                  .cls = i == 5 ? "bad-mailbox" : NULL});
    /* Another message, which must not show up. */
    record(tr, &(sk_track_ev){.kind = SK_TRACK_RECEIVED, .queue_id = "Q2"});
    assert_int_equal(sk_track_pending(tr), n + 1);
    sk_track_free(tr); /* flushes */

    sk_error err;
    sk_track *rd = sk_track_open(f->path, 1, &err);
    assert_non_null(rd);
    sk_track_result *r;
    assert_int_equal(sk_track_query(rd, "Q1", &r, &err), SK_OK);
    assert_string_equal(r->id, "Q1");
    assert_string_equal(r->message_id, "m1@example.org"); /* stored without <> */
    assert_int_equal(r->nevents, n);
    for (size_t i = 0; i < n; i++) {
        const sk_track_ev *ev = &r->events[i];
        size_t c = order_expected[i];
        assert_int_equal(ev->time_ms, NOW_MS + order_cases[c].t);
        assert_int_equal(ev->kind, order_cases[c].k);
        assert_int_equal(ev->attempt, order_cases[c].attempt);
        if (order_cases[c].rcpt)
            assert_string_equal(ev->recipient, order_cases[c].rcpt);
        else
            assert_null(ev->recipient);
        if (order_cases[c].reply)
            assert_string_equal(ev->reply, order_cases[c].reply);
        else
            assert_null(ev->reply);
    }
    assert_string_equal(r->events[5].tls, "TLSv1.3 TLS_AES_256_GCM_SHA384");
    assert_string_equal(r->events[5].remote_host, "mx.example.net[192.0.2.1]:25");
    assert_string_equal(r->events[4].cls, "bad-mailbox");
    assert_null(r->events[0].cls);
    sk_track_result_free(r);
    sk_track_free(rd);
}

static void test_message_id_lookup(void **state)
{
    fixture *f = *state;
    sk_track *tr = open_writer(f, 64, 0);
    /* m1 was submitted twice (Q1, then Q3); m2 once; a complaint knows
     * only the Message-ID. */
    record(tr, &(sk_track_ev){.time_ms = NOW_MS + 1,
                              .kind = SK_TRACK_RECEIVED,
                              .queue_id = "Q1",
                              .message_id = "<m1@example.org>"});
    record(tr, &(sk_track_ev){.time_ms = NOW_MS + 2,
                              .kind = SK_TRACK_DELIVERED,
                              .queue_id = "Q1",
                              .recipient = "a@example.net",
                              .attempt = 1});
    record(tr, &(sk_track_ev){.time_ms = NOW_MS + 3,
                              .kind = SK_TRACK_RECEIVED,
                              .queue_id = "Q2",
                              .message_id = "m2@example.org"});
    record(tr, &(sk_track_ev){.time_ms = NOW_MS + 4,
                              .kind = SK_TRACK_RECEIVED,
                              .queue_id = "Q3",
                              .message_id = "m1@example.org"});
    record(tr, &(sk_track_ev){.time_ms = NOW_MS + 5,
                              .kind = SK_TRACK_COMPLAINED,
                              .message_id = "<m2@example.org>",
                              .recipient = "c@example.com"});
    record(tr, &(sk_track_ev){.time_ms = NOW_MS + 6,
                              .kind = SK_TRACK_COMPLAINED,
                              .message_id = "orphan@example.org"});
    static const struct {
        const char *key;
        sk_err err;
        const char *id, *mid;
        size_t nevents, other_ids;
    } cases[] = {
        {"Q1", SK_OK, "Q1", "m1@example.org", 2, 0},
        {"<Q1>", SK_OK, "Q1", "m1@example.org", 2, 0},
        {"m1@example.org", SK_OK, "Q3", "m1@example.org", 1, 1},
        {"<m1@example.org>", SK_OK, "Q3", "m1@example.org", 1, 1},
        {" <m1@example.org> ", SK_OK, "Q3", "m1@example.org", 1, 1},
        {"Q2", SK_OK, "Q2", "m2@example.org", 2, 0},
        {"<m2@example.org>", SK_OK, "Q2", "m2@example.org", 2, 0},
        {"orphan@example.org", SK_OK, NULL, "orphan@example.org", 1, 0},
        {"q1", SK_ERR_NOT_FOUND, NULL, NULL, 0, 0}, /* queue IDs are exact */
        {"M1@example.org", SK_ERR_NOT_FOUND, NULL, NULL, 0, 0},
        {"nothing", SK_ERR_NOT_FOUND, NULL, NULL, 0, 0},
        {"<>", SK_ERR_INVAL, NULL, NULL, 0, 0},
        {"", SK_ERR_INVAL, NULL, NULL, 0, 0},
    };
    /* Through the writer (which flushes first) and through a reader. */
    for (int pass = 0; pass < 2; pass++) {
        sk_error err;
        sk_track *q = tr;
        if (pass == 1) {
            q = sk_track_open(f->path, 1, &err);
            assert_non_null(q);
        }
        for (size_t i = 0; i < SKT_N(cases); i++) {
            sk_track_result *r = NULL;
            sk_err e = sk_track_query(q, cases[i].key, &r, &err);
            if (e != cases[i].err) fail_msg("case %zu '%s': %d", i, cases[i].key, e);
            if (e) {
                assert_null(r);
                continue;
            }
            if (cases[i].id)
                assert_string_equal(r->id, cases[i].id);
            else
                assert_null(r->id);
            assert_string_equal(r->message_id, cases[i].mid);
            assert_int_equal(r->nevents, cases[i].nevents);
            assert_int_equal(r->other_ids, cases[i].other_ids);
            sk_track_result_free(r);
        }
        if (pass == 1) sk_track_free(q);
    }
    sk_track_free(tr);
}

static void test_stats_windows(void **state)
{
    fixture *f = *state;
    sk_track *tr = open_writer(f, 64, 0);
    static const struct {
        int64_t ago_s; /* before NOW_MS; negative: in the future */
        sk_track_kind k;
        const char *rcpt;
    } evs[] = {
        {10, SK_TRACK_DELIVERED, "a@example.net"},
        {20, SK_TRACK_DELIVERED, "b@EXAMPLE.NET"}, /* same domain */
        {30, SK_TRACK_DEFERRED, "c@example.org"},
        {3599, SK_TRACK_BOUNCED, "d@example.org"},   /* last second of the hour */
        {3600, SK_TRACK_DELIVERED, "e@example.com"}, /* day only */
        {7200, SK_TRACK_EXPIRED, "f@example.org"},
        {86399, SK_TRACK_RECEIVED, NULL},
        {86400, SK_TRACK_DELIVERED, "g@example.net"}, /* outside the day */
        {-5, SK_TRACK_DELIVERED, "h@example.net"},    /* after now */
    };
    for (size_t i = 0; i < SKT_N(evs); i++)
        record(tr, &(sk_track_ev){.time_ms = NOW_MS - evs[i].ago_s * 1000,
                                  .kind = evs[i].k,
                                  .queue_id = "Q",
                                  .recipient = evs[i].rcpt});
    sk_error err;
    sk_track_stats *s;
    assert_int_equal(sk_track_stats_query(tr, 0, &s, &err), SK_OK); /* 0: the injected clock */
    assert_int_equal(s->now_ms, NOW_MS);
    static const struct {
        int day;
        sk_track_kind k;
        uint64_t n;
    } kinds[] = {
        {0, SK_TRACK_DELIVERED, 2}, {0, SK_TRACK_DEFERRED, 1}, {0, SK_TRACK_BOUNCED, 1},
        {0, SK_TRACK_EXPIRED, 0},   {0, SK_TRACK_RECEIVED, 0}, {1, SK_TRACK_DELIVERED, 3},
        {1, SK_TRACK_DEFERRED, 1},  {1, SK_TRACK_BOUNCED, 1},  {1, SK_TRACK_EXPIRED, 1},
        {1, SK_TRACK_RECEIVED, 1},  {1, SK_TRACK_QUEUED, 0},
    };
    for (size_t i = 0; i < SKT_N(kinds); i++) {
        const sk_track_window *w = kinds[i].day ? &s->day : &s->hour;
        if (w->by_kind[kinds[i].k] != kinds[i].n)
            fail_msg("case %zu: %s %llu", i, sk_track_kind_name(kinds[i].k),
                     (unsigned long long)w->by_kind[kinds[i].k]);
    }
    assert_int_equal(s->hour.total, 4);
    assert_int_equal(s->day.total, 7);
    assert_int_equal(s->hour.since_ms, NOW_MS - 3600000);
    /* By domain, most events first; the domain is compared in lower case. */
    static const struct {
        int day;
        const char *domain;
        uint64_t total, delivered;
    } doms[] = {
        {0, "example.net", 2, 2}, {0, "example.org", 2, 0}, {1, "example.org", 3, 0},
        {1, "example.net", 2, 2}, {1, "example.com", 1, 1},
    };
    size_t idx[2] = {0, 0};
    for (size_t i = 0; i < SKT_N(doms); i++) {
        const sk_track_window *w = doms[i].day ? &s->day : &s->hour;
        size_t j = idx[doms[i].day]++;
        assert_true(j < w->ndomains);
        assert_string_equal(w->domains[j].domain, doms[i].domain);
        assert_int_equal(w->domains[j].total, doms[i].total);
        assert_int_equal(w->domains[j].by_kind[SK_TRACK_DELIVERED], doms[i].delivered);
    }
    assert_int_equal(s->hour.ndomains, idx[0]);
    assert_int_equal(s->day.ndomains, idx[1]);
    /* The event without a recipient has its own row: the rows add up. */
    assert_int_equal(s->hour.no_recipient.total, 0);
    assert_int_equal(s->day.no_recipient.total, 1);
    assert_int_equal(s->day.no_recipient.by_kind[SK_TRACK_RECEIVED], 1);
    const sk_track_window *ws[] = {&s->hour, &s->day};
    for (size_t i = 0; i < 2; i++) {
        uint64_t sum = ws[i]->no_recipient.total + ws[i]->other_domains.total;
        for (size_t j = 0; j < ws[i]->ndomains; j++) sum += ws[i]->domains[j].total;
        assert_int_equal(sum, ws[i]->total);
    }
    sk_track_stats_free(s);

    /* An explicit time moves the windows; their end is inclusive. */
    assert_int_equal(sk_track_stats_query(tr, NOW_MS - 3600 * 1000, &s, &err), SK_OK);
    assert_int_equal(s->hour.total, 1); /* the one 3600 s before NOW_MS */
    assert_int_equal(s->hour.by_kind[SK_TRACK_DELIVERED], 1);
    sk_track_stats_free(s);

    /* Pruning drops what is older than the day. */
    assert_int_equal(sk_track_stats_query(tr, NOW_MS - 1000, &s, &err), SK_OK);
    assert_int_equal(s->day.total, 8);
    sk_track_stats_free(s);
    assert_int_equal(sk_track_prune(tr, NOW_MS - 86400 * 1000 + 1, &err), SK_OK);
    assert_int_equal(sk_track_stats_query(tr, NOW_MS - 1000, &s, &err), SK_OK);
    assert_int_equal(s->day.total, 7);
    sk_track_stats_free(s);
    sk_track_free(tr);
}

static int64_t count_rows(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Pruning keeps an old event while the webhooks' outbox still has a row
 * for it (the request's body is made from it), and removes it once the
 * row is done. */
static void test_prune_keeps_outbox(void **state)
{
    fixture *f = *state;
    sk_track *tr = open_writer(f, 64, 0);
    sk_error err;
    /* Two endpoints: one takes every event, one only bounces. */
    exec_sql(f->path, "INSERT INTO webhook_endpoints (url, secret, events, source, created_ms)"
                      " VALUES ('http://127.0.0.1:1/a', 'whsec_x', '*', 'api', 0),"
                      " ('http://127.0.0.1:1/b', 'whsec_x', ',bounced,', 'api', 0)");
    static const struct {
        int64_t age_ms;
        sk_track_kind k;
    } evs[] = {
        {2 * 86400 * 1000, SK_TRACK_RECEIVED}, /* old, rows for a */
        {2 * 86400 * 1000, SK_TRACK_BOUNCED},  /* old, rows for a and b */
        {1000, SK_TRACK_QUEUED},               /* recent */
    };
    for (size_t i = 0; i < SKT_N(evs); i++)
        record(tr, &(sk_track_ev){.time_ms = NOW_MS - evs[i].age_ms,
                                  .kind = evs[i].k,
                                  .queue_id = "P1",
                                  .recipient = "bob@example.net"});
    assert_int_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM webhook_outbox"), 4);

    static const struct {
        const char *sql; /* what is done before the prune */
        int64_t events;  /* left after it */
    } steps[] = {
        {NULL, 3},                                                                 /* all unsent */
        {"DELETE FROM webhook_outbox WHERE endpoint = 'http://127.0.0.1:1/a'", 2}, /* a sent */
        {"DELETE FROM webhook_outbox", 1},                                         /* b given up */
    };
    for (size_t i = 0; i < SKT_N(steps); i++) {
        if (steps[i].sql) exec_sql(f->path, steps[i].sql);
        assert_int_equal(sk_track_prune(tr, NOW_MS - 86400 * 1000, &err), SK_OK);
        assert_int_equal(count_rows(f->path, "SELECT count(*) FROM events"), steps[i].events);
    }
    sk_track_free(tr);
}

/* More domains than stats lists: the rest are counted in other_domains. */
static void test_stats_other_domains(void **state)
{
    fixture *f = *state;
    sk_track *tr = open_writer(f, 1024, 0);
    size_t n = SK_TRACK_STATS_DOMAINS_MAX + 3;
    for (size_t i = 0; i < n; i++) {
        char rcpt[64];
        snprintf(rcpt, sizeof rcpt, "u@d%03zu.example", i);
        /* One domain gets two events, so it is listed first. */
        for (int k = 0; k < (i == 7 ? 2 : 1); k++)
            record(tr, &(sk_track_ev){.time_ms = NOW_MS - 10,
                                      .kind = SK_TRACK_QUEUED,
                                      .queue_id = "Q",
                                      .recipient = rcpt});
    }
    record(tr, &(sk_track_ev){.time_ms = NOW_MS - 10, .kind = SK_TRACK_RECEIVED, .queue_id = "Q"});
    sk_error err;
    sk_track_stats *s;
    assert_int_equal(sk_track_stats_query(tr, 0, &s, &err), SK_OK);
    assert_int_equal(s->hour.total, n + 2);
    assert_int_equal(s->hour.ndomains, SK_TRACK_STATS_DOMAINS_MAX);
    assert_string_equal(s->hour.domains[0].domain, "d007.example");
    assert_int_equal(s->hour.domains_omitted, 3);
    assert_null(s->hour.other_domains.domain);
    assert_int_equal(s->hour.other_domains.total, 3);
    assert_int_equal(s->hour.other_domains.by_kind[SK_TRACK_QUEUED], 3);
    assert_int_equal(s->hour.no_recipient.total, 1);
    uint64_t sum = s->hour.other_domains.total + s->hour.no_recipient.total;
    for (size_t j = 0; j < s->hour.ndomains; j++) sum += s->hour.domains[j].total;
    assert_int_equal(sum, s->hour.total);
    sk_track_stats_free(s);
    sk_track_free(tr);
}

/* sk_track_dsn_sent: the recipient's latest final event without a DSN gets
 * the DSN's queue ID, whether that event is still pending or written. */
static void test_dsn_links(void **state)
{
    fixture *f = *state;
    static const struct {
        int link;           /* 1: a link, 0: an event */
        int flush;          /* flush before this row */
        sk_track_kind kind; /* events only */
        const char *rcpt, *dsn;
    } rows[] = {
        {0, 0, SK_TRACK_QUEUED, "a@x.test", NULL},
        {0, 0, SK_TRACK_DEFERRED, "a@x.test", NULL},
        {0, 0, SK_TRACK_BOUNCED, "a@x.test", NULL},
        {1, 0, 0, "a@x.test", "DSN1"}, /* the bounce, still pending */
        {0, 0, SK_TRACK_DELIVERED, "b@x.test", NULL},
        {0, 1, SK_TRACK_EXPIRED, "c@x.test", NULL},
        {1, 1, 0, "c@x.test", "DSN2"}, /* the expiry, written already */
        {1, 0, 0, "b@x.test", "DSN2"}, /* a success DSN */
        {1, 0, 0, "a@x.test", "DSN3"}, /* a's bounce has one: nothing */
        {1, 0, 0, "nobody@x.test", "DSN3"},
    };
    static const struct {
        sk_track_kind kind;
        const char *rcpt, *dsn; /* dsn NULL: none */
    } want[] = {
        {SK_TRACK_QUEUED, "a@x.test", NULL},    {SK_TRACK_DEFERRED, "a@x.test", NULL},
        {SK_TRACK_BOUNCED, "a@x.test", "DSN1"}, {SK_TRACK_DELIVERED, "b@x.test", "DSN2"},
        {SK_TRACK_EXPIRED, "c@x.test", "DSN2"},
    };
    sk_track *tr = open_writer(f, 64, 0);
    sk_error err;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (rows[i].flush) assert_int_equal(sk_track_flush(tr, &err), SK_OK);
        if (rows[i].link)
            assert_int_equal(sk_track_dsn_sent(tr, "Q1", rows[i].rcpt, rows[i].dsn, &err), SK_OK);
        else
            record(tr, &(sk_track_ev){.time_ms = NOW_MS - 100 + (int64_t)i,
                                      .kind = rows[i].kind,
                                      .queue_id = "Q1",
                                      .recipient = rows[i].rcpt});
    }
    /* Links are not events: they are refused without what they need. */
    assert_int_equal(sk_track_dsn_sent(tr, "Q1", "a@x.test", "", &err), SK_ERR_INVAL);
    assert_int_equal(sk_track_dsn_sent(tr, NULL, "a@x.test", "D", &err), SK_ERR_INVAL);
    sk_track_result *r;
    assert_int_equal(sk_track_query(tr, "Q1", &r, &err), SK_OK);
    assert_int_equal(r->nevents, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < r->nevents; i++) {
        assert_int_equal(r->events[i].kind, want[i].kind);
        assert_string_equal(r->events[i].recipient, want[i].rcpt);
        if (want[i].dsn)
            assert_string_equal(r->events[i].dsn_id, want[i].dsn);
        else
            assert_null(r->events[i].dsn_id);
    }
    sk_track_result_free(r);
    sk_track_free(tr);
}

/* A store of schema version 1 is read as it is, and migrated by a writer. */
static void test_schema_v1(void **state)
{
    fixture *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE events (id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,"
                     " event TEXT NOT NULL, queue_id TEXT, message_id TEXT, recipient TEXT,"
                     " domain TEXT, attempt INTEGER, remote_host TEXT, reply TEXT, tls TEXT,"
                     " class TEXT);"
                     "CREATE TABLE suppression (address TEXT PRIMARY KEY, reason TEXT NOT NULL,"
                     " created INTEGER NOT NULL, until INTEGER);"
                     "INSERT INTO events (time_ms, event, queue_id, recipient) VALUES"
                     " (1, 'bounced', 'Q1', 'a@x.test');"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    sk_error err;
    sk_track_result *r;
    sk_track *rd = sk_track_open(f->path, 1, &err);
    assert_non_null(rd);
    assert_int_equal(sk_track_query(rd, "Q1", &r, &err), SK_OK);
    assert_int_equal(r->nevents, 1);
    assert_null(r->events[0].dsn_id);
    sk_track_result_free(r);
    sk_track_free(rd);

    sk_track *tr = open_writer(f, 64, 0);
    assert_int_equal(sk_track_dsn_sent(tr, "Q1", "a@x.test", "DSN1", &err), SK_OK);
    assert_int_equal(sk_track_query(tr, "Q1", &r, &err), SK_OK);
    assert_int_equal(r->nevents, 1);
    assert_string_equal(r->events[0].dsn_id, "DSN1");
    assert_null(r->events[0].auth);
    sk_track_result_free(r);
    sk_track_free(tr);
}

/* A store of version 2 (no authentication results) likewise; once
 * migrated, a received event keeps its results. */
static void test_schema_v2(void **state)
{
    fixture *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE events (id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,"
                     " event TEXT NOT NULL, queue_id TEXT, message_id TEXT, recipient TEXT,"
                     " domain TEXT, attempt INTEGER, remote_host TEXT, reply TEXT, tls TEXT,"
                     " class TEXT, dsn_id TEXT);"
                     "CREATE TABLE suppression (address TEXT PRIMARY KEY, reason TEXT NOT NULL,"
                     " created INTEGER NOT NULL, until INTEGER);"
                     "INSERT INTO events (time_ms, event, queue_id, dsn_id) VALUES"
                     " (1, 'received', 'Q2', NULL);"
                     "PRAGMA user_version = 2;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    sk_error err;
    sk_track_result *r;
    sk_track *rd = sk_track_open(f->path, 1, &err);
    assert_non_null(rd);
    assert_int_equal(sk_track_query(rd, "Q2", &r, &err), SK_OK);
    assert_int_equal(r->nevents, 1);
    assert_null(r->events[0].auth);
    sk_track_result_free(r);
    sk_track_free(rd);

    sk_track *tr = open_writer(f, 64, 0);
    const char *auth = "dkim=pass header.d=example.org header.s=s1; spf=pass "
                       "smtp.mailfrom=a@example.org; dmarc=pass header.from=example.org";
    record(tr, &(sk_track_ev){.kind = SK_TRACK_RECEIVED, .queue_id = "Q3", .auth = auth});
    assert_int_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(sk_track_query(tr, "Q3", &r, &err), SK_OK);
    assert_int_equal(r->nevents, 1);
    assert_string_equal(r->events[0].auth, auth);
    sk_track_result_free(r);
    sk_track_free(tr);
}

static size_t count_events(fixture *f)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM events", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    size_t n = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_batching(void **state)
{
    fixture *f = *state;
    sk_track *tr = open_writer(f, 3, 0);
    static const struct {
        size_t written, pending;
    } after[] = {{0, 1}, {0, 2}, {3, 0}, {3, 1}};
    for (size_t i = 0; i < SKT_N(after); i++) {
        record(tr, &(sk_track_ev){.kind = SK_TRACK_QUEUED, .queue_id = "QB"});
        assert_int_equal(sk_track_pending(tr), after[i].pending);
        assert_int_equal(count_events(f), after[i].written);
    }
    sk_error err;
    assert_int_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(count_events(f), 4);
    sk_track_free(tr);
}

static void test_timer_flush(void **state)
{
    fixture *f = *state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    sk_error err;
    sk_track *tr = sk_track_open(f->path, 0, &err);
    assert_non_null(tr);
    sk_track_opts o = {.batch_events = 100, .batch_delay_ms = 5};
    assert_int_equal(sk_track_set_opts(tr, &o, base, &err), SK_OK);
    record(tr, &(sk_track_ev){.kind = SK_TRACK_RECEIVED, .queue_id = "QT"});
    assert_int_equal(sk_track_pending(tr), 1);
    /* The only event on the loop is the flush timer; it hands the event
     * to the writer thread, which writes it (waited for, at most 5 s). */
    assert_int_not_equal(event_base_dispatch(base), -1);
    for (int i = 0; i < 5000 && count_events(f) < 1; i++) usleep(1000);
    assert_int_equal(count_events(f), 1);
    assert_int_equal(sk_track_pending(tr), 0);
    sk_track_free(tr);
    event_base_free(base);
}

/* With an event base the writer thread writes full batches without the
 * loop's help; while another writer holds the lock its batch stays
 * pending (none lost), sk_track_flush reports the failure, and once the
 * lock is free everything is written. */
static void test_writer_thread(void **state)
{
    fixture *f = *state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    sk_error err;
    sk_track *tr = sk_track_open(f->path, 0, &err);
    assert_non_null(tr);
    sk_track_opts o = {.batch_events = 10, .batch_delay_ms = 20, .busy_timeout_ms = 20};
    assert_int_equal(sk_track_set_opts(tr, &o, base, &err), SK_OK);
    for (int i = 0; i < 10; i++)
        record(tr, &(sk_track_ev){.kind = SK_TRACK_RECEIVED, .queue_id = "QW"});
    for (int i = 0; i < 5000 && count_events(f) < 10; i++) usleep(1000);
    assert_int_equal(count_events(f), 10);

    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 10; i++)
        record(tr, &(sk_track_ev){.kind = SK_TRACK_QUEUED, .queue_id = "QW"});
    assert_int_not_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(sk_track_pending(tr), 10);
    assert_int_equal(count_events(f), 10);
    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(count_events(f), 20);
    assert_int_equal(sk_track_pending(tr), 0);
    sk_track_free(tr);
    event_base_free(base);
}

/* sk_track_ticket hands the pending events to the writer without waiting;
 * sk_track_wait returns once they are written, when the writer reports a
 * failure (another writer held the lock past the busy timeout), or at its
 * bound (the writer still waiting for the lock). Without an event base
 * there is no writer thread: the ticket is taken after a flush, reached. */
static void test_writer_ticket(void **state)
{
    fixture *f = *state;
    static const struct {
        int base;              /* with an event base: a writer thread */
        int locked;            /* another writer holds the lock */
        unsigned busy_ms;      /* the store's busy timeout */
        unsigned wait_ms;      /* sk_track_wait's bound; 0: the default */
        int want;              /* 0: reached, 1: a failure, 2: timed out */
        size_t written_before; /* events in the file before the unlock */
    } rows[] = {
        {1, 0, 20, 0, 0, 1},
        {1, 1, 20, 0, 1, 0},
        {1, 1, 60000, 50, 2, 0},
        {0, 0, 20, 0, 0, 1},
    };
    for (size_t i = 0; i < SKT_N(rows); i++) {
        snprintf(f->path, sizeof f->path, "%s/ticket%zu.db", f->dir, i);
        struct event_base *base = rows[i].base ? event_base_new() : NULL;
        sk_error err;
        sk_track *tr = sk_track_open(f->path, 0, &err);
        assert_non_null(tr);
        sk_track_opts o = {
            .batch_events = 100, .batch_delay_ms = 20, .busy_timeout_ms = rows[i].busy_ms};
        assert_int_equal(sk_track_set_opts(tr, &o, base, &err), SK_OK);
        sqlite3 *other = NULL;
        if (rows[i].locked) {
            assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
            assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        }
        record(tr, &(sk_track_ev){.kind = SK_TRACK_RECEIVED, .queue_id = "QK"});
        uint64_t ticket = 0;
        /* Taken at once even while the writer waits for the lock (with a
         * busy timeout of 60 s, a ticket that waited would show). */
        assert_int_equal(sk_track_ticket(tr, &ticket, &err), SK_OK);
        assert_int_equal(ticket, rows[i].base ? 1 : 0);
        sk_err e = sk_track_wait(tr, ticket, rows[i].wait_ms, &err);
        if (rows[i].want == 0) assert_int_equal(e, SK_OK);
        if (rows[i].want == 1) assert_true(e != SK_OK && e != SK_ERR_TIMEOUT);
        if (rows[i].want == 2) assert_int_equal(e, SK_ERR_TIMEOUT);
        assert_int_equal(count_events(f), rows[i].written_before);
        if (other) {
            assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
            sqlite3_close(other);
            /* The writer tries again (after its delay, or as soon as the
             * lock is free): the same ticket is reached. */
            assert_int_equal(sk_track_wait(tr, ticket, 0, &err), SK_OK);
            assert_int_equal(count_events(f), 1);
        }
        /* A later ticket counts on from the first. */
        record(tr, &(sk_track_ev){.kind = SK_TRACK_QUEUED, .queue_id = "QK"});
        assert_int_equal(sk_track_ticket(tr, &ticket, &err), SK_OK);
        assert_int_equal(ticket, rows[i].base ? 2 : 0);
        assert_int_equal(sk_track_wait(tr, ticket, 0, &err), SK_OK);
        assert_int_equal(count_events(f), 2);
        assert_int_equal(sk_track_pending(tr), 0);
        sk_track_free(tr);
        if (base) event_base_free(base);
    }
}

static void test_reader_beside_locked_writer(void **state)
{
    fixture *f = *state;
    sk_track *tr = open_writer(f, 100, 20);
    record(tr, &(sk_track_ev){.kind = SK_TRACK_RECEIVED, .queue_id = "QC"});
    sk_error err;
    assert_int_equal(sk_track_flush(tr, &err), SK_OK);

    /* Another writer (e.g. `smtpkit suppress add`) holds the write lock
     * with an uncommitted event. */
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other,
                                  "BEGIN IMMEDIATE; INSERT INTO events (time_ms, event, queue_id)"
                                  " VALUES (1, 'queued', 'QC')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);

    /* A reader does not wait, and sees only what is committed. */
    sk_track *rd = sk_track_open(f->path, 1, &err);
    assert_non_null(rd);
    sk_track_result *r;
    assert_int_equal(sk_track_query(rd, "QC", &r, &err), SK_OK);
    assert_int_equal(r->nevents, 1);
    sk_track_result_free(r);
    sk_track_stats *s;
    assert_int_equal(sk_track_stats_query(rd, NOW_MS, &s, &err), SK_OK);
    assert_int_equal(s->hour.by_kind[SK_TRACK_RECEIVED], 1);
    sk_track_stats_free(s);

    /* Our writer cannot flush; its events stay pending, none is lost. */
    record(tr, &(sk_track_ev){.kind = SK_TRACK_DELIVERED, .queue_id = "QC"});
    assert_int_not_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(sk_track_pending(tr), 1);

    assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    assert_int_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(sk_track_query(rd, "QC", &r, &err), SK_OK);
    assert_int_equal(r->nevents, 3);
    assert_int_equal(r->events[0].kind, SK_TRACK_QUEUED); /* time 1: oldest */
    sk_track_result_free(r);
    sk_track_free(rd);
    sk_track_free(tr);
}

/* After a failed flush, recording events does not retry at once (each try
 * may wait for the busy timeout); an explicit flush does. */
static void test_flush_backoff(void **state)
{
    fixture *f = *state;
    skt_log log = {0};
    sk_error err;
    sk_track *tr = sk_track_open(f->path, 0, &err);
    assert_non_null(tr);
    sk_track_opts o = {.batch_events = 1,
                       .batch_delay_ms = 3600 * 1000,
                       .busy_timeout_ms = 10,
                       .log = {.fn = skt_log_line, .ctx = &log, .max_level = SK_LOG_DEBUG}};
    assert_int_equal(sk_track_set_opts(tr, &o, NULL, &err), SK_OK);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    static const struct {
        int commit_first;
        size_t pending;
        int warnings;
    } steps[] = {{0, 1, 1}, {0, 2, 1}, {1, 3, 1}};
    for (size_t i = 0; i < SKT_N(steps); i++) {
        if (steps[i].commit_first)
            assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        record(tr, &(sk_track_ev){.kind = SK_TRACK_QUEUED, .queue_id = "QR"});
        assert_int_equal(sk_track_pending(tr), steps[i].pending);
        assert_int_equal(skt_log_count(&log, SK_LOG_WARN, "flush-failed"), steps[i].warnings);
    }
    sqlite3_close(other);
    assert_int_equal(sk_track_flush(tr, &err), SK_OK);
    assert_int_equal(count_events(f), 3);
    sk_track_free(tr);
    skt_log_free(&log);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    sk_error err;
    /* Read-only on a missing store. */
    assert_null(sk_track_open(f->path, 1, &err));
    assert_int_equal(err.err, SK_ERR_NOT_FOUND);

    sk_track *tr = open_writer(f, 64, 0);
    char big[SK_TRACK_FIELD_MAX_OCTETS + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    static const struct {
        sk_track_ev ev;
        sk_err err;
    } cases[] = {
        {{.kind = SK_TRACK_RECEIVED}, SK_ERR_INVAL},
        {{.kind = SK_TRACK_RECEIVED, .queue_id = ""}, SK_ERR_INVAL},
        {{.kind = SK_TRACK__COUNT, .queue_id = "Q"}, SK_ERR_INVAL},
        {{.kind = SK_TRACK_RECEIVED, .message_id = "m@x"}, SK_OK},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        assert_int_equal(sk_track_event(tr, &cases[i].ev, &err), cases[i].err);
    assert_int_equal(
        sk_track_event(tr, &(sk_track_ev){.kind = SK_TRACK_DEFERRED, .queue_id = "Q", .reply = big},
                       &err),
        SK_ERR_TOO_LONG);
    assert_int_equal(sk_track_pending(tr), 1);
    sk_track_free(tr);

    /* A reader cannot record. */
    sk_track *rd = sk_track_open(f->path, 1, &err);
    assert_non_null(rd);
    assert_int_equal(
        sk_track_event(rd, &(sk_track_ev){.kind = SK_TRACK_RECEIVED, .queue_id = "Q"}, &err),
        SK_ERR_STATE);
    sk_track_free(rd);

    /* A schema from a newer version is refused, by writers and readers. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    for (int ro = 0; ro < 2; ro++) {
        assert_null(sk_track_open(f->path, ro, &err));
        assert_int_equal(err.err, SK_ERR_CONFIG);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test_setup_teardown(test_insert_query_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_id_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_other_domains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dsn_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batching, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_ticket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_beside_locked_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
