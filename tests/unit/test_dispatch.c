/* Unit tests for the queue's dispatch (src/queue/dispatch.c) and what it
 * drives, with a scripted transport and an injected clock: priorities
 * within a destination, per-destination connection limits, independence
 * of destinations, throttling by 421, 4.7.x and rules, provider grouping,
 * priority settings, DSNs on permanent failure and on expiry (NOTIFY, null
 * sender), success and delay DSNs, and retry state across a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver/deliver.h"
#include "queue/queue_int.h"

#define MAX_JOBS 2048

/* A job the fake transport was given. */
typedef struct fjob {
    char id[SK_SPOOL_ID_SIZE];
    char domain[64];
    size_t nrcpts;
    sk_delivery_done_fn done;
    void *ctx;
    int finished;
    unsigned max_per_conn;
    int next_hop_dsn; /* what the result says of the next hop */
    int local;        /* given to the local transport: no remote host */
} fjob;

/* How the fake answers a domain: held until the test finishes the job, or
 * at once with this reply. */
typedef struct script {
    const char *domain;
    int hold;
    sk_delivery_status status;
    int code;
    const char *enhanced;
    const char *text;
} script;

typedef struct harness {
    char *dir;
    struct event_base *base;
    sk_spool *spool;
    sk_queue *q;
    sk_transport t;
    sk_transport lt;  /* the local transport, when opts name local domains */
    int next_hop_dsn; /* remote results say the next hop took DSN parameters */
    int64_t now;
    fjob jobs[MAX_JOBS];
    size_t njobs;
    const script *scripts;
    size_t nscripts;
    /* route_key: domain -> key pairs, NULL-terminated; none = no hook */
    const char *const (*routes)[2];
    int route_calls;
    int ev[8];
    char dsn_ids[4][SK_SPOOL_ID_SIZE];
    int ndsn;
    char last_dest[128];
    uint64_t last_throttle_ms;
    sk_class last_class;
    sk_queue_opts opts;
} harness;

static harness *fake_h(sk_transport *t)
{
    return (harness *)((char *)t - offsetof(harness, t));
}

static const script *find_script(const harness *h, const char *domain)
{
    for (size_t i = 0; i < h->nscripts; i++)
        if (!strcmp(h->scripts[i].domain, domain)) return &h->scripts[i];
    return NULL;
}

static void finish(fjob *j, sk_delivery_status st, int code, const char *enh, const char *text)
{
    sk_delivery_rcpt_result rs[8];
    for (size_t i = 0; i < j->nrcpts && i < 8; i++) {
        rs[i].status = st;
        rs[i].reply = sk_reply_make(code, enh, "%s", text);
    }
    sk_delivery_result res = {.rcpts = rs,
                              .nrcpts = j->nrcpts,
                              .remote_host = j->local ? NULL : "mx.fake",
                              .tls = "TLSv1.3 FAKE",
                              .next_hop_dsn = j->next_hop_dsn};
    j->finished = 1;
    j->done(j->ctx, &res);
}

static void fake_job(harness *h, int local, const sk_delivery *job, sk_delivery_done_fn done,
                     void *ctx)
{
    assert_true(h->njobs < MAX_JOBS);
    fjob *j = &h->jobs[h->njobs++];
    snprintf(j->id, sizeof j->id, "%s", job->queue_id);
    snprintf(j->domain, sizeof j->domain, "%s", job->domain);
    j->nrcpts = job->nrcpts;
    j->done = done;
    j->ctx = ctx;
    j->max_per_conn = job->max_per_conn;
    j->next_hop_dsn = !local && h->next_hop_dsn;
    j->local = local;
    const script *s = find_script(h, job->domain);
    if (s && s->hold) return;
    if (!s)
        finish(j, SK_DELIVERY_OK, 250, "2.0.0", "ok");
    else
        finish(j, s->status, s->code, s->enhanced, s->text);
}

static void fake_deliver(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done,
                         void *ctx)
{
    fake_job(fake_h(t), 0, job, done, ctx);
}

static void fake_deliver_local(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done,
                               void *ctx)
{
    fake_job((harness *)((char *)t - offsetof(harness, lt)), 1, job, done, ctx);
}

static void fake_route_key(sk_transport *t, const char *domain, sk_route_key_fn cb, void *ctx)
{
    harness *h = fake_h(t);
    h->route_calls++;
    for (size_t i = 0; h->routes[i][0]; i++)
        if (!strcmp(h->routes[i][0], domain)) {
            cb(ctx, domain, h->routes[i][1]);
            return;
        }
    cb(ctx, domain, NULL);
}

static void on_event(void *ctx, const sk_queue_event *ev)
{
    harness *h = ctx;
    h->ev[ev->type]++;
    if (ev->type == SK_QUEUE_EV_DSN && h->ndsn < 4)
        snprintf(h->dsn_ids[h->ndsn++], SK_SPOOL_ID_SIZE, "%s", ev->dsn_id);
    if (ev->destination) snprintf(h->last_dest, sizeof h->last_dest, "%s", ev->destination);
    if (ev->type == SK_QUEUE_EV_THROTTLED) h->last_throttle_ms = ev->throttle_ms;
    if (ev->type == SK_QUEUE_EV_BOUNCED || ev->type == SK_QUEUE_EV_DEFERRED) {
        h->last_class = ev->cls;
        assert_non_null(ev->tls);
        assert_int_equal(ev->attempt, ev->env->attempts + 1);
    }
}

/* Start (or restart) the queue over a synchronous spool in h->dir, with
 * h->opts as the caller set them plus the harness hooks. */
static void start(harness *h)
{
    if (!h->dir) {
        h->dir = skt_tmpdir("dispatch");
        h->now = 1700000000000;
    }
    memset(h->ev, 0, sizeof h->ev);
    h->base = event_base_new();
    sk_error err;
    h->spool = sk_spool_open(h->dir, NULL, NULL, &err);
    assert_non_null(h->spool);
    h->t = (sk_transport){.name = "fake", .deliver = fake_deliver};
    if (h->routes) h->t.route_key = fake_route_key;
    h->lt = (sk_transport){.name = "fake-local", .deliver = fake_deliver_local};
    sk_queue_opts o = h->opts;
    o.remote_transport = &h->t;
    if (o.nlocal_domains) o.local_transport = &h->lt;
    o.on_event = on_event;
    o.event_ctx = h;
    o.now_ms = skt_clock_ms;
    o.clock_ctx = &h->now;
    o.hostname = "mta.test";
    h->q = sk_queue_new(h->spool, &o, h->base, &err);
    assert_non_null(h->q);
}

static void stop(harness *h)
{
    sk_queue_free(h->q);
    sk_spool_free(h->spool);
    event_base_free(h->base);
    h->q = NULL;
}

static void done_all(harness *h)
{
    stop(h);
    skt_rmtree(h->dir);
    free(h->dir);
    h->dir = NULL;
}

/* Run what is due at the injected time (no waiting on real timers). */
static void pump(harness *h)
{
    sk_queue_poke(h->q);
    for (int i = 0; i < 4; i++) event_base_loop(h->base, EVLOOP_NONBLOCK);
}

static void advance(harness *h, int64_t ms)
{
    h->now += ms;
    pump(h);
}

static void on_commit(void *ctx, sk_err err, const char *id)
{
    assert_int_equal(err, SK_OK);
    snprintf(ctx, SK_SPOOL_ID_SIZE, "%s", id);
}

typedef struct msgspec {
    const char *sender;
    const char *rcpts[4];
    unsigned notify; /* for every recipient */
    const char *orcpt;
    const char *envid;
    int prio; /* MT-PRIORITY when has_prio */
    int has_prio;
    const char *auth_user;
} msgspec;

static void inject(harness *h, const msgspec *s, char id[SK_SPOOL_ID_SIZE])
{
    sk_spool_rcpt rs[4] = {0};
    size_t n = 0;
    while (n < 4 && s->rcpts[n]) {
        rs[n].addr = (char *)s->rcpts[n];
        rs[n].notify = s->notify;
        rs[n].orcpt = (char *)s->orcpt;
        n++;
    }
    sk_spool_envelope env = {.sender = (char *)(s->sender ? s->sender : "a@sender.test"),
                             .rcpts = rs,
                             .nrcpts = n,
                             .arrival = h->now / 1000,
                             .auth_user = (char *)s->auth_user,
                             .esmtp = 1};
    env.mail.has_priority = s->has_prio;
    env.mail.priority = s->prio;
    if (s->envid) snprintf(env.mail.envid, sizeof env.mail.envid, "%s", s->envid);
    sk_error err;
    sk_spool_msg *m = sk_spool_begin(h->spool, &env, &err);
    assert_non_null(m);
    static const char body[] =
        "Subject: dispatch test\r\nMessage-ID: <t@sender.test>\r\n\r\nhi\r\n";
    assert_int_equal(sk_spool_write(m, body, sizeof body - 1), SK_OK);
    char tmp[SK_SPOOL_ID_SIZE];
    sk_spool_commit(m, on_commit, id ? id : tmp);
}

static size_t started(const harness *h, const char *domain)
{
    size_t n = 0;
    for (size_t i = 0; i < h->njobs; i++) n += !strcmp(h->jobs[i].domain, domain);
    return n;
}

/* The first job to domain not yet finished. */
static fjob *open_job(harness *h, const char *domain)
{
    for (size_t i = 0; i < h->njobs; i++)
        if (!h->jobs[i].finished && !strcmp(h->jobs[i].domain, domain)) return &h->jobs[i];
    return NULL;
}

/* ---- priorities ---- */

static void test_priority_behind_bulk(void **state)
{
    harness h = {0};
    /* One connection, 1 message/s, and the destination starts throttled. */
    h.opts.dest_max_conns = 1;
    h.opts.rate_default = (sk_queue_rate){.count = 1, .per_ms = 1000};
    static const script sc[] = {{"busy.test", 1, 0, 0, NULL, NULL}};
    h.scripts = sc;
    h.nscripts = 1;
    start(&h);
    for (int i = 0; i < 1000; i++) {
        msgspec bulk = {.rcpts = {"news@busy.test"}, .has_prio = 1, .prio = -2};
        inject(&h, &bulk, NULL);
    }
    pump(&h);
    assert_int_equal(started(&h, "busy.test"), 1);
    /* The receiver says "too many connections": suspended (rule: 10m). */
    finish(open_job(&h, "busy.test"), SK_DELIVERY_TRANSIENT, 421, "4.7.0",
           "too many connections, try again later");
    assert_int_equal(h.ev[SK_QUEUE_EV_THROTTLED], 1);
    char urgent[SK_SPOOL_ID_SIZE];
    msgspec hi = {.rcpts = {"ceo@busy.test"}, .has_prio = 1, .prio = 5};
    inject(&h, &hi, urgent);
    advance(&h, 60 * 1000);
    assert_int_equal(started(&h, "busy.test"), 1); /* still suspended */
    advance(&h, 10 * 60 * 1000);
    /* Resumed: the urgent message goes first although 999 bulk ones
     * arrived before it. */
    assert_int_equal(started(&h, "busy.test"), 2);
    assert_string_equal(h.jobs[1].id, urgent);
    finish(&h.jobs[1], SK_DELIVERY_OK, 250, "2.0.0", "ok");
    advance(&h, 1000);
    assert_int_equal(started(&h, "busy.test"), 3);
    assert_string_not_equal(h.jobs[2].id, urgent);
    finish(&h.jobs[2], SK_DELIVERY_OK, 250, "2.0.0", "ok");
    done_all(&h);
}

/* Within a priority, arrival order; higher priorities first. */
static void test_priority_order(void **state)
{
    harness h = {0};
    h.opts.dest_max_conns = 1;
    static const script sc[] = {{"one.test", 1, 0, 0, NULL, NULL}};
    h.scripts = sc;
    h.nscripts = 1;
    /* auth user "bulk" is lowered; sender vip@ raised over its MT-PRIORITY. */
    sk_queue_priority_rule pr[2];
    sk_error err;
    assert_int_equal(sk_queue_priority_parse("auth:bulk=-9", &pr[0], &err), SK_OK);
    assert_int_equal(sk_queue_priority_parse("vip@sender.test=7", &pr[1], &err), SK_OK);
    h.opts.priority_rules = pr;
    h.opts.npriority_rules = 2;
    start(&h);
    /* A blocker occupies the one connection while the others queue. */
    msgspec blocker = {.rcpts = {"x@one.test"}};
    inject(&h, &blocker, NULL);
    pump(&h);
    static const struct {
        msgspec m;
        int order; /* expected delivery position after the blocker */
    } cases[] = {
        {{.rcpts = {"a@one.test"}}, 2},                                                /* 0 */
        {{.rcpts = {"b@one.test"}, .auth_user = "bulk", .has_prio = 1, .prio = 9}, 5}, /* -9 */
        {{.rcpts = {"c@one.test"}, .has_prio = 1, .prio = 3}, 1},                      /* 3 */
        {{.rcpts = {"d@one.test"}}, 3}, /* 0, later */
        {{.sender = "vip@sender.test", .rcpts = {"e@one.test"}, .has_prio = 1, .prio = -5}, 0},
        {{.rcpts = {"f@one.test"}, .has_prio = 1, .prio = -1}, 4},
    };
    enum { N = SKT_N(cases) };
    char ids[N][SK_SPOOL_ID_SIZE];
    for (size_t i = 0; i < N; i++) {
        inject(&h, &cases[i].m, ids[i]);
        h.now += 1; /* distinct arrivals */
    }
    pump(&h);
    for (size_t k = 0; k <= N; k++) {
        fjob *j = open_job(&h, "one.test");
        assert_non_null(j);
        if (k) {
            size_t want = 0;
            for (size_t i = 0; i < N; i++)
                if (cases[i].order == (int)k - 1) want = i;
            if (strcmp(j->id, ids[want])) fail_msg("position %zu: not case %zu", k - 1, want);
        }
        finish(j, SK_DELIVERY_OK, 250, "2.0.0", "ok");
        pump(&h);
    }
    assert_int_equal(sk_queue_count(h.q), 0);
    done_all(&h);
}

/* A retried message takes its arrival place again, ahead of newer ones. */
static void test_retry_keeps_arrival_order(void **state)
{
    harness h = {0};
    h.opts.dest_max_conns = 1;
    static const uint64_t retry[] = {60 * 1000};
    h.opts.retry_ms = retry;
    h.opts.nretry = 1;
    static const script sc[] = {{"one.test", 1, 0, 0, NULL, NULL}};
    h.scripts = sc;
    h.nscripts = 1;
    start(&h);
    char ids[5][SK_SPOOL_ID_SIZE];
    msgspec m = {.rcpts = {"x@one.test"}};
    for (int i = 0; i < 5; i++) {
        inject(&h, &m, ids[i]);
        h.now += 1;
    }
    pump(&h);
    /* The oldest fails for now; the next one starts. */
    finish(open_job(&h, "one.test"), SK_DELIVERY_TRANSIENT, 451, "4.3.0", "later");
    pump(&h);
    assert_string_equal(open_job(&h, "one.test")->id, ids[1]);
    /* The retry time is a whole second, rounded up from the failure's
     * millisecond: 60 s and a part of one. */
    advance(&h, 61 * 1000);
    static const int order[] = {0, 2, 3, 4};
    for (size_t k = 0; k < 4; k++) {
        finish(open_job(&h, "one.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
        pump(&h);
        fjob *j = open_job(&h, "one.test");
        assert_non_null(j);
        assert_string_equal(j->id, ids[order[k]]);
    }
    finish(open_job(&h, "one.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
    pump(&h);
    assert_int_equal(sk_queue_count(h.q), 0);
    done_all(&h);
}

static void test_priority_parse(void **state)
{
    static const struct {
        const char *in;
        sk_err want;
        int auth;
        const char *match;
        int prio;
    } cases[] = {
        {"alice@example.com=5", SK_OK, 0, "alice@example.com", 5},
        {"example.com=-3", SK_OK, 0, "example.com", -3},
        {"auth:bob=9", SK_OK, 1, "bob", 9},
        {"AUTH:bob=-9", SK_OK, 1, "bob", -9},
        {"example.com=10", SK_ERR_SYNTAX, 0, NULL, 0},
        {"example.com=-10", SK_ERR_SYNTAX, 0, NULL, 0},
        {"example.com=", SK_ERR_SYNTAX, 0, NULL, 0},
        {"example.com=1x", SK_ERR_SYNTAX, 0, NULL, 0},
        {"=1", SK_ERR_SYNTAX, 0, NULL, 0},
        {"auth:=1", SK_ERR_SYNTAX, 0, NULL, 0},
        {"example.com", SK_ERR_SYNTAX, 0, NULL, 0},
    };
    for (size_t c = 0; c < SKT_N(cases); c++) {
        sk_queue_priority_rule r;
        sk_error err;
        sk_err e = sk_queue_priority_parse(cases[c].in, &r, &err);
        if (e != cases[c].want) fail_msg("\"%s\": got %d", cases[c].in, (int)e);
        if (e) continue;
        assert_int_equal(r.auth, cases[c].auth);
        assert_string_equal(r.match, cases[c].match);
        assert_int_equal(r.priority, cases[c].prio);
    }
}

/* ---- limits and independence of destinations ---- */

static void test_dest_concurrency(void **state)
{
    harness h = {0};
    h.opts.dest_max_conns = 2;
    h.opts.msgs_per_conn = 7;
    static const script sc[] = {{"a.test", 1, 0, 0, NULL, NULL}, {"b.test", 1, 0, 0, NULL, NULL}};
    h.scripts = sc;
    h.nscripts = 2;
    start(&h);
    for (int i = 0; i < 5; i++) {
        msgspec m = {.rcpts = {"x@a.test"}};
        inject(&h, &m, NULL);
    }
    msgspec mb = {.rcpts = {"y@b.test"}};
    inject(&h, &mb, NULL);
    pump(&h);
    assert_int_equal(started(&h, "a.test"), 2);
    assert_int_equal(started(&h, "b.test"), 1);
    assert_int_equal(sk_queue_in_flight(h.q), 3);
    assert_int_equal(h.jobs[0].max_per_conn, 7);
    /* One a.test job reports: exactly one more starts. */
    finish(open_job(&h, "a.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
    pump(&h);
    assert_int_equal(started(&h, "a.test"), 3);
    assert_int_equal(sk_queue_in_flight(h.q), 3);
    fjob *j;
    while ((j = open_job(&h, "a.test")) || (j = open_job(&h, "b.test"))) {
        finish(j, SK_DELIVERY_OK, 250, "2.0.0", "ok");
        pump(&h);
    }
    assert_int_equal(started(&h, "a.test"), 5);
    assert_int_equal(sk_queue_count(h.q), 0);
    done_all(&h);
}

/* A destination that hangs and one that keeps failing hold up neither
 * each other nor a third one. */
static void test_failing_dest_isolated(void **state)
{
    harness h = {0};
    h.opts.dest_max_conns = 2;
    h.opts.max_in_flight = 8;
    static const script sc[] = {{"hang.test", 1, 0, 0, NULL, NULL},
                                {"fail.test", 0, SK_DELIVERY_TRANSIENT, 451, "4.4.1", "later"}};
    h.scripts = sc;
    h.nscripts = 2;
    start(&h);
    for (int i = 0; i < 20; i++) {
        msgspec m1 = {.rcpts = {"x@hang.test"}};
        msgspec m2 = {.rcpts = {"x@fail.test"}};
        inject(&h, &m1, NULL);
        inject(&h, &m2, NULL);
    }
    for (int i = 0; i < 10; i++) {
        msgspec m = {.rcpts = {"x@good.test"}};
        inject(&h, &m, NULL);
    }
    pump(&h);
    assert_int_equal(started(&h, "hang.test"), 2);
    assert_int_equal(started(&h, "fail.test"), 20);
    assert_int_equal(started(&h, "good.test"), 10);
    assert_int_equal(h.ev[SK_QUEUE_EV_DELIVERED], 10);
    assert_int_equal(h.ev[SK_QUEUE_EV_DEFERRED], 20);
    assert_int_equal(h.ev[SK_QUEUE_EV_THROTTLED], 0);
    done_all(&h);
}

/* Fair shares of the 32 slots (docs/queue.md "Scheduling"): eight slow
 * destinations whose deliveries never end, with their mail queued first. */
#define FAIR_SLOW 8
static const script fair_scripts[] = {
    {"s0.test", 1, 0, 0, NULL, NULL},   {"s1.test", 1, 0, 0, NULL, NULL},
    {"s2.test", 1, 0, 0, NULL, NULL},   {"s3.test", 1, 0, 0, NULL, NULL},
    {"s4.test", 1, 0, 0, NULL, NULL},   {"s5.test", 1, 0, 0, NULL, NULL},
    {"s6.test", 1, 0, 0, NULL, NULL},   {"s7.test", 1, 0, 0, NULL, NULL},
    {"quick.test", 1, 0, 0, NULL, NULL}};

/* Queue 10 messages to each slow destination; they take every slot but
 * the reserved quarter, 3 each (levels filled one job at a time). */
static void fair_start(harness *h, size_t nscripts)
{
    h->scripts = fair_scripts;
    h->nscripts = nscripts;
    start(h);
    for (int i = 0; i < 10; i++)
        for (int k = 0; k < FAIR_SLOW; k++) {
            char rcpt[32];
            snprintf(rcpt, sizeof rcpt, "x@s%d.test", k);
            msgspec m = {.rcpts = {rcpt}};
            inject(h, &m, NULL);
        }
    pump(h);
    for (int k = 0; k < FAIR_SLOW; k++) assert_int_equal(started(h, fair_scripts[k].domain), 3);
    assert_int_equal(sk_queue_in_flight(h->q), 24);
}

/* A destination that comes after them takes a reserved slot at once: the
 * reserve is kept for destinations holding none (with a reserve open to
 * any holding fewer than 4, eight slow ones at 4 each would fill it). */
static void test_fair_reserve(void **state)
{
    harness h = {0};
    fair_start(&h, FAIR_SLOW); /* quick.test answers at once */
    for (int i = 0; i < 20; i++) {
        msgspec m = {.rcpts = {"y@quick.test"}};
        inject(&h, &m, NULL);
    }
    pump(&h);
    assert_int_equal(started(&h, "quick.test"), 20);
    assert_int_equal(h.ev[SK_QUEUE_EV_DELIVERED], 20);
    for (int k = 0; k < FAIR_SLOW; k++) assert_int_equal(started(&h, fair_scripts[k].domain), 3);
    done_all(&h);
}

/* A freed slot goes to the destination holding the fewest, not back to
 * the slow one listed first. */
static void test_fair_fewest_first(void **state)
{
    harness h = {0};
    fair_start(&h, FAIR_SLOW + 1); /* quick.test held too */
    for (int i = 0; i < 10; i++) {
        msgspec m = {.rcpts = {"y@quick.test"}};
        inject(&h, &m, NULL);
    }
    pump(&h);
    /* From the reserve: one, as it then holds one. */
    assert_int_equal(started(&h, "quick.test"), 1);
    assert_int_equal(sk_queue_in_flight(h.q), 25);
    /* s0 ends one: 24 in flight, all the unreserved slots, so nothing
     * starts; s1 ends one: the slot goes to quick.test (holding 1), not to
     * s0 or s1 (holding 2 each, listed before it). */
    finish(open_job(&h, "s0.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
    pump(&h);
    assert_int_equal(sk_queue_in_flight(h.q), 24);
    finish(open_job(&h, "s1.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
    pump(&h);
    assert_int_equal(started(&h, "quick.test"), 2);
    assert_int_equal(started(&h, "s0.test"), 3);
    assert_int_equal(started(&h, "s1.test"), 3);
    assert_int_equal(sk_queue_in_flight(h.q), 24);
    /* quick.test's jobs end as they start: every freed slot is its own
     * again, and its ten messages go while the slow ones still hold. */
    while (started(&h, "quick.test") < 10) {
        finish(open_job(&h, "quick.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
        pump(&h);
    }
    assert_int_equal(started(&h, "s0.test"), 3);
    assert_int_equal(started(&h, "s1.test"), 3);
    done_all(&h);
}

/* A destination whose only queued job was removed holds nothing and
 * waits for nothing: a freed slot still goes to one that has work, in the
 * same dispatch (the job's report wakes the queue once). */
static void test_fair_emptied_dest(void **state)
{
    harness h = {0};
    h.opts.max_in_flight = 2;
    h.opts.dest_max_conns = 2;
    static const script sc[] = {{"a.test", 1, 0, 0, NULL, NULL},
                                {"b.test", 1, 0, 0, NULL, NULL},
                                {"c.test", 1, 0, 0, NULL, NULL}};
    h.scripts = sc;
    h.nscripts = 3;
    start(&h);
    msgspec mb = {.rcpts = {"x@b.test"}};
    inject(&h, &mb, NULL);
    pump(&h);
    msgspec ma = {.rcpts = {"x@a.test"}};
    inject(&h, &ma, NULL);
    inject(&h, &ma, NULL);
    pump(&h);
    assert_int_equal(started(&h, "b.test"), 1);
    assert_int_equal(started(&h, "a.test"), 1);
    /* c.test's message waits for a slot, then is removed. */
    msgspec mc = {.rcpts = {"x@c.test"}};
    char idc[SK_SPOOL_ID_SIZE];
    inject(&h, &mc, idc);
    pump(&h);
    assert_int_equal(started(&h, "c.test"), 0);
    assert_int_equal(sk_queue_delete(h.q, idc), SK_OK);
    /* b.test's job ends: its report's one wake-up starts a.test's second. */
    finish(open_job(&h, "b.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
    for (int i = 0; i < 4; i++) event_base_loop(h.base, EVLOOP_NONBLOCK);
    assert_int_equal(started(&h, "a.test"), 2);
    assert_int_equal(started(&h, "c.test"), 0);
    done_all(&h);
}

/* A throttling reply suspends or slows its destination only, for the time
 * the rule (or the default for 421 / 4.7.x) says. */
static void test_throttle(void **state)
{
    static const struct {
        const char *name;
        int code;
        const char *enh;
        const char *text;
        uint64_t for_ms;   /* 0: not throttled */
        int rate;          /* a slow-down rather than a suspension */
        uint64_t interval; /* rate: ms between messages */
    } cases[] = {
        {"421 rule", 421, "4.4.2", "closing channel", 2 * 60 * 1000, 0, 0},
        {"421 text rule", 421, "", "Too many messages, slow down", 10 * 60 * 1000, 0, 0},
        {"4.7.x default", 451, "4.7.1", "temporarily deferred", 90 * 1000, 0, 0},
        {"rate rule", 450, "4.2.0", "Rate limit exceeded for this sender", 30 * 60 * 1000, 1, 6000},
        {"4.7.28 rule", 451, "4.7.28", "unusual rate", 3600 * 1000, 1, 60000},
        {"plain 4xx", 451, "4.3.0", "local problem", 0, 0, 0},
    };
    for (size_t c = 0; c < SKT_N(cases); c++) {
        harness h = {0};
        h.opts.throttle_suspend_ms = 90 * 1000;
        /* The deferred first message stays out of the way. */
        static const uint64_t retry[] = {2 * 3600 * 1000};
        h.opts.retry_ms = retry;
        h.opts.nretry = 1;
        script sc[] = {{"slow.test", 1, 0, 0, NULL, NULL}};
        h.scripts = sc;
        h.nscripts = 1;
        start(&h);
        msgspec m = {.rcpts = {"x@slow.test"}};
        inject(&h, &m, NULL);
        pump(&h);
        finish(open_job(&h, "slow.test"), SK_DELIVERY_TRANSIENT, cases[c].code, cases[c].enh,
               cases[c].text);
        if (h.ev[SK_QUEUE_EV_THROTTLED] != (cases[c].for_ms ? 1 : 0))
            fail_msg("%s: throttled %d", cases[c].name, h.ev[SK_QUEUE_EV_THROTTLED]);
        if (cases[c].for_ms) {
            assert_int_equal(h.last_throttle_ms, cases[c].for_ms);
            assert_string_equal(h.last_dest, "slow.test");
        }
        /* Three more to the same destination, one elsewhere. */
        for (int i = 0; i < 3; i++) inject(&h, &m, NULL);
        msgspec other = {.rcpts = {"y@other.test"}};
        inject(&h, &other, NULL);
        pump(&h);
        assert_int_equal(started(&h, "other.test"), 1);
        size_t now_started = started(&h, "slow.test");
        if (!cases[c].for_ms) {
            assert_int_equal(now_started, 4);
        } else if (!cases[c].rate) {
            if (now_started != 1) fail_msg("%s: suspended, yet %zu", cases[c].name, now_started);
            advance(&h, (int64_t)cases[c].for_ms - 1);
            assert_int_equal(started(&h, "slow.test"), 1);
            advance(&h, 1);
            assert_int_equal(started(&h, "slow.test"), 4);
        } else {
            /* Slowed: one now, the next after the rule's interval. */
            if (now_started != 2) fail_msg("%s: slowed, yet %zu", cases[c].name, now_started);
            advance(&h, (int64_t)cases[c].interval - 1);
            assert_int_equal(started(&h, "slow.test"), 2);
            advance(&h, 1);
            assert_int_equal(started(&h, "slow.test"), 3);
        }
        fjob *j;
        while ((j = open_job(&h, "slow.test"))) finish(j, SK_DELIVERY_OK, 250, "2.0.0", "ok");
        done_all(&h);
    }
}

/* A configured rate paces one destination while another goes unpaced. */
static void test_rate_per_domain(void **state)
{
    harness h = {0};
    sk_queue_rate_rule rr;
    sk_error err;
    assert_int_equal(sk_queue_rate_parse("paced.test=2/s", &rr, &err), SK_OK);
    h.opts.rate_rules = &rr;
    h.opts.nrate_rules = 1;
    start(&h);
    for (int i = 0; i < 6; i++) {
        msgspec a = {.rcpts = {"x@paced.test"}};
        msgspec b = {.rcpts = {"x@free.test"}};
        inject(&h, &a, NULL);
        inject(&h, &b, NULL);
    }
    pump(&h);
    assert_int_equal(started(&h, "paced.test"), 1);
    assert_int_equal(started(&h, "free.test"), 6);
    advance(&h, 499);
    assert_int_equal(started(&h, "paced.test"), 1);
    advance(&h, 1);
    assert_int_equal(started(&h, "paced.test"), 2);
    advance(&h, 2000);
    assert_int_equal(started(&h, "paced.test"), 3); /* idle time is not banked */
    for (int i = 0; i < 3; i++) advance(&h, 500);
    assert_int_equal(started(&h, "paced.test"), 6);
    done_all(&h);
}

/* ---- provider grouping ---- */

static void test_provider_grouping(void **state)
{
    static const char *const routes[][2] = {{"a.test", "mx1.prov.test,mx2.prov.test"},
                                            {"b.test", "mx1.prov.test,mx2.prov.test"},
                                            {"c.test", "mx.other.test"},
                                            {NULL, NULL}};
    for (int per_domain = 0; per_domain < 2; per_domain++) {
        harness h = {0};
        h.routes = routes;
        h.opts.dest_max_conns = 1;
        h.opts.group_by_domain = per_domain;
        static const script sc[] = {{"a.test", 1, 0, 0, NULL, NULL},
                                    {"b.test", 1, 0, 0, NULL, NULL},
                                    {"c.test", 1, 0, 0, NULL, NULL},
                                    {"d.test", 1, 0, 0, NULL, NULL}};
        h.scripts = sc;
        h.nscripts = 4;
        start(&h);
        static const char *const to[] = {"x@a.test", "x@b.test", "x@c.test", "x@d.test",
                                         "y@a.test"};
        for (size_t i = 0; i < 5; i++) {
            msgspec m = {.rcpts = {to[i]}};
            inject(&h, &m, NULL);
        }
        pump(&h);
        if (per_domain) {
            /* One queue per domain: a, b, c and d each get their one. */
            assert_int_equal(h.njobs, 4);
            assert_int_equal(h.route_calls, 0);
        } else {
            /* a and b share the provider's one connection; d, with no key,
             * is its own destination. */
            assert_int_equal(h.njobs, 3);
            assert_int_equal(started(&h, "a.test"), 1);
            assert_int_equal(started(&h, "b.test"), 0);
            assert_int_equal(started(&h, "c.test"), 1);
            assert_int_equal(started(&h, "d.test"), 1);
            /* One lookup per domain: the key is cached. */
            assert_int_equal(h.route_calls, 4);
            finish(open_job(&h, "a.test"), SK_DELIVERY_OK, 250, "2.0.0", "ok");
            assert_string_equal(h.last_dest, "mx1.prov.test,mx2.prov.test");
            pump(&h);
            assert_int_equal(started(&h, "b.test"), 1);
            assert_int_equal(started(&h, "a.test"), 1);
            /* A throttle on b's reply holds a too. */
            finish(open_job(&h, "b.test"), SK_DELIVERY_TRANSIENT, 421, "4.7.0", "closing");
            pump(&h);
            assert_int_equal(started(&h, "a.test"), 1);
            advance(&h, 2 * 60 * 1000);
            /* Then the provider resumes: b's retry (older) goes first. */
            assert_int_equal(started(&h, "a.test") + started(&h, "b.test"), 3);
            assert_int_equal(started(&h, "b.test"), 2);
            assert_int_equal(h.route_calls, 4);
        }
        fjob *j;
        for (size_t i = 0; i < h.njobs; i++)
            if (!(j = &h.jobs[i])->finished) finish(j, SK_DELIVERY_OK, 250, "2.0.0", "ok");
        if (!per_domain) {
            /* Keys are cached for route_ttl_ms (1 h), then looked up again. */
            int calls = h.route_calls;
            advance(&h, 30 * 60 * 1000);
            msgspec again = {.rcpts = {"z@a.test"}};
            inject(&h, &again, NULL);
            pump(&h);
            assert_int_equal(h.route_calls, calls);
            for (size_t i = 0; i < h.njobs; i++)
                if (!(j = &h.jobs[i])->finished) finish(j, SK_DELIVERY_OK, 250, "2.0.0", "ok");
            advance(&h, 3600 * 1000);
            inject(&h, &again, NULL);
            pump(&h);
            assert_int_equal(h.route_calls, calls + 1);
            for (size_t i = 0; i < h.njobs; i++)
                if (!(j = &h.jobs[i])->finished) finish(j, SK_DELIVERY_OK, 250, "2.0.0", "ok");
        }
        done_all(&h);
    }
}

/* ---- bounces ---- */

static char *read_msg(harness *h, const char *id)
{
    sk_buf p = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_body_path(h->spool, id, &p), SK_OK);
    char *s = skt_read_file(sk_buf_cstr(&p), NULL);
    sk_buf_free(&p);
    return s;
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_dsn_on_permanent_failure(void **state)
{
    static const struct {
        const char *name;
        const char *sender;
        unsigned notify;
        int want_dsn;
        int about_success; /* the DSN reports carol's success, not bob's failure */
    } cases[] = {
        {"no NOTIFY", "alice@sender.test", 0, 1, 0},
        {"NOTIFY=FAILURE", "alice@sender.test", SK_DSN_NOTIFY_FAILURE, 1, 0},
        {"NOTIFY=SUCCESS,DELAY", "alice@sender.test", SK_DSN_NOTIFY_SUCCESS | SK_DSN_NOTIFY_DELAY,
         1, 1},
        {"NOTIFY=NEVER", "alice@sender.test", SK_DSN_NOTIFY_NEVER, 0, 0},
        {"null sender", "", 0, 0, 0},
    };
    for (size_t c = 0; c < SKT_N(cases); c++) {
        harness h = {0};
        static const script sc[] = {
            {"gone.test", 0, SK_DELIVERY_PERMANENT, 550, "5.1.1", "no such user here"},
            {"sender.test", 1, 0, 0, NULL, NULL}};
        h.scripts = sc;
        h.nscripts = 2;
        start(&h);
        msgspec m = {.sender = cases[c].sender,
                     .rcpts = {"bob@gone.test", "carol@ok.test"},
                     .notify = cases[c].notify,
                     .orcpt = "rfc822;bob@gone.test",
                     .envid = "ENV+2B42"};
        char id[SK_SPOOL_ID_SIZE];
        inject(&h, &m, id);
        pump(&h);
        assert_int_equal(h.ev[SK_QUEUE_EV_BOUNCED], 1);
        assert_int_equal(h.last_class, SK_CLASS_BAD_MAILBOX);
        if (h.ev[SK_QUEUE_EV_DSN] != cases[c].want_dsn)
            fail_msg("%s: %d DSNs", cases[c].name, h.ev[SK_QUEUE_EV_DSN]);
        if (!cases[c].want_dsn) {
            assert_int_equal(sk_queue_count(h.q), 0);
            assert_int_equal(started(&h, "sender.test"), 0);
            done_all(&h);
            continue;
        }
        /* The DSN is a new message from <> to the sender, on its way. */
        sk_spool_envelope *env = NULL;
        sk_error err;
        assert_int_equal(sk_spool_load(h.spool, h.dsn_ids[0], &env, &err), SK_OK);
        assert_string_equal(env->sender, "");
        assert_int_equal(env->nrcpts, 1);
        assert_string_equal(env->rcpts[0].addr, "alice@sender.test");
        sk_spool_envelope_free(env);
        assert_int_equal(started(&h, "sender.test"), 1);
        char *dsn = read_msg(&h, h.dsn_ids[0]);
        assert_non_null(strstr(dsn, "report-type=delivery-status"));
        if (cases[c].about_success) {
            /* carol's success, relayed to a host without DSN (RFC 3461
             * 5.2.2); bob's failure is not asked for. Headers only. */
            assert_non_null(strstr(dsn, "Final-Recipient: rfc822; carol@ok.test"));
            assert_non_null(strstr(dsn, "Action: relayed"));
            assert_non_null(strstr(dsn, "Status: 2.0.0"));
            assert_non_null(strstr(dsn, "Content-Type: text/rfc822-headers"));
            assert_null(strstr(dsn, "Final-Recipient: rfc822; bob@gone.test"));
            assert_null(strstr(dsn, "Action: failed"));
            assert_null(strstr(dsn, "\r\nhi\r\n"));
            free(dsn);
            done_all(&h);
            continue;
        }
        assert_non_null(strstr(dsn, "Final-Recipient: rfc822; bob@gone.test"));
        assert_non_null(strstr(dsn, "Original-Recipient: rfc822; bob@gone.test"));
        assert_non_null(strstr(dsn, "Original-Envelope-Id: ENV+42"));
        assert_non_null(strstr(dsn, "Status: 5.1.1"));
        assert_non_null(strstr(dsn, "Remote-MTA: dns; mx.fake"));
        assert_non_null(strstr(dsn, "smtp; 550 5.1.1 no such user here (class bad-mailbox)"));
        assert_non_null(strstr(dsn, "Subject: dispatch test")); /* the original comes back */
        assert_null(strstr(dsn, "carol@ok.test"));
        free(dsn);
        done_all(&h);
    }
}

/* The dsn_fields hook (smtpkit serve signs DSNs there): it sees the whole
 * DSN, what it adds goes on top, and a failing hook leaves the DSN as it
 * was, still sent. */
typedef struct fields_hook {
    const char *add; /* appended to fields */
    sk_err fail;     /* returned after appending nothing */
    int calls;
    int saw_report; /* the message it got was the whole DSN */
} fields_hook;

static sk_err add_fields(void *ctx, const char *msg, size_t len, sk_buf *fields, sk_error *err)
{
    fields_hook *f = ctx;
    f->calls++;
    f->saw_report = len > 5 && !strncmp(msg, "From:", 5) &&
                    memmem(msg, len, "report-type=delivery-status", 27) &&
                    memmem(msg, len, "Final-Recipient: rfc822; bob@gone.test", 38);
    if (f->fail) return sk_error_set(err, f->fail, SK_STEP_NONE, "cannot sign");
    return sk_buf_puts(fields, f->add);
}

static void test_dsn_fields(void **state)
{
    static const struct {
        const char *name;
        const char *add;
        sk_err fail;
        const char *want_top; /* what the stored DSN starts with */
    } cases[] = {
        {"a field", "X-Added: one\r\n", SK_OK, "X-Added: one\r\nFrom: "},
        {"two", "X-Added: one\r\nX-Added: two\r\n", SK_OK,
         "X-Added: one\r\nX-Added: two\r\nFrom: "},
        {"nothing", "", SK_OK, "From: "},
        {"the hook fails", "", SK_ERR_INVAL, "From: "},
    };
    for (size_t c = 0; c < SKT_N(cases); c++) {
        harness h = {0};
        static const script sc[] = {
            {"gone.test", 0, SK_DELIVERY_PERMANENT, 550, "5.1.1", "no such user here"},
            {"sender.test", 1, 0, 0, NULL, NULL}};
        h.scripts = sc;
        h.nscripts = 2;
        fields_hook f = {.add = cases[c].add, .fail = cases[c].fail};
        h.opts.dsn_fields = add_fields;
        h.opts.dsn_ctx = &f;
        start(&h);
        msgspec m = {.sender = "alice@sender.test", .rcpts = {"bob@gone.test"}};
        inject(&h, &m, NULL);
        pump(&h);
        if (h.ev[SK_QUEUE_EV_DSN] != 1 || f.calls != 1 || !f.saw_report)
            fail_msg("%s: %d DSNs, %d calls, whole DSN seen %d", cases[c].name,
                     h.ev[SK_QUEUE_EV_DSN], f.calls, f.saw_report);
        char *dsn = read_msg(&h, h.dsn_ids[0]);
        if (strncmp(dsn, cases[c].want_top, strlen(cases[c].want_top)))
            fail_msg("%s: the DSN starts %.80s", cases[c].name, dsn);
        assert_int_equal(count_str(dsn, "X-Added:"), count_str(cases[c].add, "X-Added:"));
        free(dsn);
        done_all(&h);
    }
}

static void test_dsn_once_on_expiry(void **state)
{
    harness h = {0};
    static const uint64_t retry[] = {10 * 60 * 1000};
    h.opts.retry_ms = retry;
    h.opts.nretry = 1;
    h.opts.max_lifetime_ms = 3600 * 1000;
    static const script sc[] = {
        {"down.test", 0, SK_DELIVERY_TRANSIENT, 451, "4.4.1", "connection refused"},
        {"also.test", 0, SK_DELIVERY_TRANSIENT, 452, "4.2.2", "mailbox full"},
        {"sender.test", 1, 0, 0, NULL, NULL}};
    h.scripts = sc;
    h.nscripts = 3;
    start(&h);
    msgspec m = {.rcpts = {"a@down.test", "b@down.test", "c@also.test"}};
    char id[SK_SPOOL_ID_SIZE];
    inject(&h, &m, id);
    pump(&h);
    assert_int_equal(h.ev[SK_QUEUE_EV_DEFERRED], 3);
    for (int i = 0; i < 8; i++) advance(&h, 10 * 60 * 1000 + 1000);
    assert_int_equal(h.ev[SK_QUEUE_EV_EXPIRED], 3);
    assert_int_equal(h.ev[SK_QUEUE_EV_DSN], 1);
    assert_int_equal(started(&h, "sender.test"), 1);
    sk_spool_envelope *env = NULL;
    sk_error err;
    assert_int_equal(sk_spool_load(h.spool, id, &env, &err), SK_ERR_NOT_FOUND);
    char *dsn = read_msg(&h, h.dsn_ids[0]);
    assert_int_equal(count_str(dsn, "Final-Recipient:"), 3);
    assert_int_equal(count_str(dsn, "Status: 4.4.7"), 3);
    assert_non_null(strstr(dsn, "smtp; 452 4.2.2 mailbox full (class mailbox-full)"));
    free(dsn);
    /* Later ticks add nothing. */
    advance(&h, 3600 * 1000);
    assert_int_equal(h.ev[SK_QUEUE_EV_DSN], 1);
    done_all(&h);
}

/* Success DSNs: "delivered" by the local transport (RFC 3461 5.2.3),
 * "relayed" to a next hop without DSN (5.2.2), none from us when the next
 * hop took the parameters (5.2.1), none unless NOTIFY has SUCCESS, never
 * to the null sender. */
static void test_dsn_on_success(void **state)
{
    static const struct {
        const char *name;
        const char *sender;
        const char *rcpt;
        unsigned notify;
        int next_hop_dsn;
        const char *action; /* NULL: no DSN */
    } cases[] = {
        {"local", "alice@sender.test", "bob@here.test", SK_DSN_NOTIFY_SUCCESS, 0, "delivered"},
        {"relayed, no DSN there", "alice@sender.test", "bob@ok.test",
         SK_DSN_NOTIFY_SUCCESS | SK_DSN_NOTIFY_FAILURE, 0, "relayed"},
        {"relayed, DSN there", "alice@sender.test", "bob@ok.test", SK_DSN_NOTIFY_SUCCESS, 1, NULL},
        {"local, FAILURE only", "alice@sender.test", "bob@here.test", SK_DSN_NOTIFY_FAILURE, 0,
         NULL},
        {"relayed, no NOTIFY", "alice@sender.test", "bob@ok.test", 0, 0, NULL},
        {"local, NEVER", "alice@sender.test", "bob@here.test", SK_DSN_NOTIFY_NEVER, 0, NULL},
        {"null sender", "", "bob@here.test", SK_DSN_NOTIFY_SUCCESS, 0, NULL},
        {"null sender relayed", "", "bob@ok.test", SK_DSN_NOTIFY_SUCCESS, 0, NULL},
    };
    static const char *const locals[] = {"here.test"};
    for (size_t c = 0; c < SKT_N(cases); c++) {
        print_message("%s\n", cases[c].name);
        harness h = {0};
        static const script sc[] = {{"sender.test", 1, 0, 0, NULL, NULL}};
        h.scripts = sc;
        h.nscripts = 1;
        h.opts.local_domains = locals;
        h.opts.nlocal_domains = 1;
        h.next_hop_dsn = cases[c].next_hop_dsn;
        start(&h);
        msgspec m = {.sender = cases[c].sender,
                     .rcpts = {cases[c].rcpt},
                     .notify = cases[c].notify,
                     .envid = "ENV+2B7"};
        char id[SK_SPOOL_ID_SIZE];
        inject(&h, &m, id);
        pump(&h);
        assert_int_equal(h.ev[SK_QUEUE_EV_DELIVERED], 1);
        if (!cases[c].action) {
            if (h.ev[SK_QUEUE_EV_DSN]) fail_msg("%s: a DSN", cases[c].name);
            assert_int_equal(started(&h, "sender.test"), 0);
            done_all(&h);
            continue;
        }
        assert_int_equal(h.ev[SK_QUEUE_EV_DSN], 1);
        char *dsn = read_msg(&h, h.dsn_ids[0]);
        char want[64];
        snprintf(want, sizeof want, "Action: %s\r\n", cases[c].action);
        assert_non_null(strstr(dsn, want));
        assert_non_null(strstr(dsn, "Status: 2.0.0"));
        assert_non_null(strstr(dsn, "Original-Envelope-Id: ENV+7"));
        assert_non_null(strstr(dsn, "Subject: Successful Mail Delivery Report"));
        /* RFC 3461 4.3: no failure, so the headers only. */
        assert_non_null(strstr(dsn, "Content-Type: text/rfc822-headers"));
        assert_non_null(strstr(dsn, "Subject: dispatch test"));
        assert_null(strstr(dsn, "\r\nhi\r\n"));
        if (!strcmp(cases[c].action, "relayed")) {
            assert_non_null(strstr(dsn, "Remote-MTA: dns; mx.fake"));
            assert_non_null(strstr(dsn, "Diagnostic-Code: smtp; 250 2.0.0 ok"));
        } else {
            assert_null(strstr(dsn, "Remote-MTA:"));
        }
        free(dsn);
        done_all(&h);
    }
}

/* One delay DSN per message once it has waited delay_warning_ms, to the
 * recipients with NOTIFY=DELAY only; recorded in the envelope, so neither
 * more retries nor a restart repeat it. */
static void test_dsn_delay_once(void **state)
{
    static const uint64_t warn[] = {30 * 60 * 1000, 0};
    for (size_t c = 0; c < 2; c++) {
        harness h = {0};
        static const uint64_t retry[] = {10 * 60 * 1000};
        h.opts.retry_ms = retry;
        h.opts.nretry = 1;
        h.opts.max_lifetime_ms = 5 * 3600 * 1000;
        h.opts.delay_warning_ms = warn[c];
        static const script sc[] = {
            {"down.test", 0, SK_DELIVERY_TRANSIENT, 451, "4.4.1", "connection refused"},
            {"sender.test", 1, 0, 0, NULL, NULL}};
        h.scripts = sc;
        h.nscripts = 2;
        start(&h);
        int64_t arrival = h.now / 1000;
        msgspec m = {.sender = "alice@sender.test",
                     .rcpts = {"a@down.test"},
                     .notify = SK_DSN_NOTIFY_DELAY | SK_DSN_NOTIFY_FAILURE,
                     .orcpt = "rfc822;A+2Bx@down.test"};
        msgspec never = {
            .sender = "bob@sender.test", .rcpts = {"b@down.test"}, .notify = SK_DSN_NOTIFY_NEVER};
        msgspec failure = {.sender = "carol@sender.test",
                           .rcpts = {"c@down.test"},
                           .notify = SK_DSN_NOTIFY_FAILURE};
        char id[SK_SPOOL_ID_SIZE], id2[SK_SPOOL_ID_SIZE], id3[SK_SPOOL_ID_SIZE];
        inject(&h, &m, id);
        inject(&h, &never, id2);
        inject(&h, &failure, id3);
        pump(&h);
        /* Attempts at 0, 10 and 20 minutes: not yet. */
        advance(&h, 10 * 60 * 1000 + 1000);
        advance(&h, 10 * 60 * 1000 + 1000);
        assert_int_equal(h.ev[SK_QUEUE_EV_DSN], 0);
        /* The attempt after 30 minutes sends it (when the setting is on). */
        advance(&h, 10 * 60 * 1000 + 1000);
        assert_int_equal(h.ev[SK_QUEUE_EV_DSN], c == 0 ? 1 : 0);
        for (int i = 0; i < 3; i++) advance(&h, 10 * 60 * 1000 + 1000);
        assert_int_equal(h.ev[SK_QUEUE_EV_DSN], c == 0 ? 1 : 0);
        if (c == 1) {
            done_all(&h);
            continue;
        }
        sk_spool_envelope *env = NULL;
        sk_error err;
        assert_int_equal(sk_spool_load(h.spool, id, &env, &err), SK_OK);
        assert_int_equal(env->delay_dsn_sent, 1);
        assert_int_equal(env->state, SK_SPOOL_DEFERRED);
        sk_spool_envelope_free(env);
        char *dsn = read_msg(&h, h.dsn_ids[0]);
        assert_non_null(strstr(dsn, "To: <alice@sender.test>"));
        assert_int_equal(count_str(dsn, "Final-Recipient:"), 1);
        assert_non_null(strstr(dsn, "Final-Recipient: rfc822; a@down.test"));
        assert_non_null(strstr(dsn, "Original-Recipient: rfc822; A+x@down.test"));
        assert_non_null(strstr(dsn, "Action: delayed\r\n"));
        assert_non_null(strstr(dsn, "Status: 4.4.1"));
        assert_non_null(strstr(dsn, "Diagnostic-Code: smtp; 451 4.4.1 connection refused"));
        assert_non_null(strstr(dsn, "Subject: Delayed Mail (still being retried)"));
        char until[40], line[64];
        sk_time_rfc5322(arrival + 5 * 3600, until);
        snprintf(line, sizeof line, "Will-Retry-Until: %s\r\n", until);
        assert_non_null(strstr(dsn, line));
        assert_non_null(strstr(dsn, "Content-Type: text/rfc822-headers"));
        free(dsn);
        /* A new process: the envelope says it was sent. */
        stop(&h);
        start(&h);
        for (int i = 0; i < 3; i++) advance(&h, 10 * 60 * 1000 + 1000);
        assert_true(h.ev[SK_QUEUE_EV_DEFERRED] >= 3);
        assert_int_equal(h.ev[SK_QUEUE_EV_DSN], 0);
        done_all(&h);
    }
}

/* ---- restart ---- */

static void test_restart_keeps_schedule(void **state)
{
    harness h = {0};
    static const uint64_t retry[] = {60 * 1000, 300 * 1000};
    h.opts.retry_ms = retry;
    h.opts.nretry = 2;
    static const script sc[] = {
        {"later.test", 0, SK_DELIVERY_TRANSIENT, 451, "4.4.1", "try later"}};
    h.scripts = sc;
    h.nscripts = 1;
    start(&h);
    msgspec m = {.rcpts = {"x@later.test"}};
    char id[SK_SPOOL_ID_SIZE];
    inject(&h, &m, id);
    pump(&h);
    advance(&h, 60 * 1000);
    assert_int_equal(started(&h, "later.test"), 2);
    int64_t t2 = h.now / 1000;
    stop(&h);
    /* A new process: attempts and the next attempt come from disk. */
    h.now += 100 * 1000;
    start(&h);
    sk_spool_envelope *env = NULL;
    sk_error err;
    assert_int_equal(sk_spool_load(h.spool, id, &env, &err), SK_OK);
    assert_int_equal(env->attempts, 2);
    assert_int_equal(env->next_attempt, t2 + 300);
    sk_spool_envelope_free(env);
    pump(&h);
    assert_int_equal(started(&h, "later.test"), 2); /* not due yet */
    h.now = (t2 + 300) * 1000 - 1000;
    pump(&h);
    assert_int_equal(started(&h, "later.test"), 2);
    advance(&h, 1000);
    assert_int_equal(started(&h, "later.test"), 3);
    assert_int_equal(sk_spool_load(h.spool, id, &env, &err), SK_OK);
    assert_int_equal(env->attempts, 3);
    sk_spool_envelope_free(env);
    done_all(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priority_parse),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_priority_behind_bulk),
        cmocka_unit_test(test_retry_keeps_arrival_order),
        cmocka_unit_test(test_dest_concurrency),
        cmocka_unit_test(test_failing_dest_isolated),
        cmocka_unit_test(test_fair_reserve),
        cmocka_unit_test(test_fair_fewest_first),
        cmocka_unit_test(test_fair_emptied_dest),
        cmocka_unit_test(test_throttle),
        cmocka_unit_test(test_rate_per_domain),
        cmocka_unit_test(test_provider_grouping),
        cmocka_unit_test(test_dsn_on_permanent_failure),
        cmocka_unit_test(test_dsn_fields),
        cmocka_unit_test(test_dsn_once_on_expiry),
        cmocka_unit_test(test_dsn_on_success),
        cmocka_unit_test(test_dsn_delay_once),
        cmocka_unit_test(test_restart_keeps_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
