/* Unit tests for src/queue: routing to transports, results recorded on
 * disk, retry schedule, expiry, hold/release/flush/delete (by ID, and by
 * filter in batches; in process, on the spool directly, and through a
 * running queue), the states a message goes through (each change logged),
 * and no duplicate Maildir delivery after a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <dirent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <smtpkit/queue.h>
#include "deliver/deliver.h"

/* A transport whose answer per recipient is scripted: status by local
 * part prefix ("ok", "tmp", "perm"), or held until completed by the test. */
typedef struct fake {
    sk_transport base;
    int calls, maybe_delivered_seen, hold_jobs;
    sk_delivery_status force; /* used when >= 0 ... see answer() */
    int use_force;
    char domains[8][64];
    /* A held job. */
    sk_delivery_done_fn held_done;
    void *held_ctx;
    size_t held_n;
} fake;

static sk_delivery_status answer(const fake *f, const char *addr)
{
    if (f->use_force) return f->force;
    if (!strncmp(addr, "tmp", 3)) return SK_DELIVERY_TRANSIENT;
    if (!strncmp(addr, "perm", 4)) return SK_DELIVERY_PERMANENT;
    return SK_DELIVERY_OK;
}

static void fake_deliver(sk_transport *t, const sk_delivery *job, sk_delivery_done_fn done,
                         void *ctx)
{
    fake *f = (fake *)t;
    if (f->calls < 8) snprintf(f->domains[f->calls], 64, "%s", job->domain);
    f->calls++;
    f->maybe_delivered_seen += job->maybe_delivered;
    if (f->hold_jobs) {
        f->held_done = done;
        f->held_ctx = ctx;
        f->held_n = job->nrcpts;
        return;
    }
    sk_delivery_rcpt_result rs[8];
    for (size_t i = 0; i < job->nrcpts; i++) {
        sk_delivery_status st = answer(f, job->rcpts[i].addr);
        rs[i].status = st;
        rs[i].reply = st == SK_DELIVERY_OK          ? sk_reply_make(250, "2.0.0", "ok")
                      : st == SK_DELIVERY_TRANSIENT ? sk_reply_make(451, "4.4.1", "later")
                                                    : sk_reply_make(550, "5.1.1", "no such user");
    }
    sk_delivery_result res = {.rcpts = rs, .nrcpts = job->nrcpts, .remote_host = "fake"};
    done(ctx, &res);
}

static void fake_complete_held(fake *f)
{
    sk_delivery_rcpt_result rs[8];
    for (size_t i = 0; i < f->held_n; i++) {
        rs[i].status = SK_DELIVERY_OK;
        rs[i].reply = sk_reply_make(250, "2.0.0", "ok");
    }
    sk_delivery_result res = {.rcpts = rs, .nrcpts = f->held_n};
    sk_delivery_done_fn done = f->held_done;
    f->held_done = NULL;
    done(f->held_ctx, &res);
}

/* The harness: a spool and a queue on one event base, recording events. */
typedef struct harness {
    char *dir;
    struct event_base *base;
    sk_spool *spool;
    sk_queue *q;
    fake local, remote;
    int ev[8];
    int removed_target; /* break the loop once this many REMOVED events */
    int events_target;  /* or this many events in all */
    int events;
    struct event *guard;
    unsigned max_in_flight;
    char states[4096];  /* "ID from>to\n" for each state change logged */
    const char *sender; /* of injected messages; NULL: the null sender */
} harness;

/* Keep the queue's state changes ("ID queue state from=A to=B"). */
static void on_log(void *ctx, sk_log_level level, const char *line)
{
    harness *h = ctx;
    char id[SK_SPOOL_ID_SIZE], from[16], to[16];
    if (sscanf(line, "%16s queue state from=%15s to=%15s", id, from, to) != 3) return;
    size_t n = strlen(h->states);
    snprintf(h->states + n, sizeof h->states - n, "%s %s>%s\n", id, from, to);
}

/* The state changes of message id, "a>b c>d ...". */
static void states_of(const harness *h, const char *id, char *out, size_t size)
{
    out[0] = '\0';
    for (const char *p = h->states; (p = strstr(p, id)); p += SK_SPOOL_ID_LEN) {
        const char *change = p + SK_SPOOL_ID_LEN + 1;
        size_t n = strcspn(change, "\n"), len = strlen(out);
        snprintf(out + len, size - len, "%s%.*s", len ? " " : "", (int)n, change);
    }
}

static void on_event(void *ctx, const sk_queue_event *ev)
{
    harness *h = ctx;
    h->ev[ev->type]++;
    h->events++;
    if ((h->removed_target && h->ev[SK_QUEUE_EV_REMOVED] >= h->removed_target) ||
        (h->events_target && h->events >= h->events_target))
        event_base_loopbreak(h->base);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    /* A bound on how long a test may run, not an assertion on timing. */
    fail_msg("the loop did not reach the expected state");
}

static const char *const local_domains[] = {"localhost", "example.test"};

static void start(harness *h, const uint64_t *retry, size_t nretry, uint64_t lifetime_ms)
{
    if (!h->dir) h->dir = skt_tmpdir("queue");
    /* Counters are per start. */
    memset(&h->local, 0, sizeof h->local);
    memset(&h->remote, 0, sizeof h->remote);
    memset(h->ev, 0, sizeof h->ev);
    h->events = 0;
    h->base = event_base_new();
    sk_error err;
    h->spool = sk_spool_open(h->dir, NULL, h->base, &err);
    assert_non_null(h->spool);
    h->local.base = (sk_transport){.name = "fake-local", .deliver = fake_deliver};
    h->remote.base = (sk_transport){.name = "fake-remote", .deliver = fake_deliver};
    sk_queue_opts o = {.local_domains = local_domains,
                       .nlocal_domains = 2,
                       .local_transport = &h->local.base,
                       .remote_transport = &h->remote.base,
                       .retry_ms = retry,
                       .nretry = nretry,
                       .max_lifetime_ms = lifetime_ms,
                       .max_in_flight = h->max_in_flight,
                       .on_event = on_event,
                       .event_ctx = h,
                       .log = {.fn = on_log, .ctx = h, .max_level = SK_LOG_DEBUG}};
    h->q = sk_queue_new(h->spool, &o, h->base, &err);
    assert_non_null(h->q);
    h->guard = evtimer_new(h->base, on_guard, h);
    struct timeval tv = {30, 0};
    evtimer_add(h->guard, &tv);
}

static void stop(harness *h)
{
    sk_queue_free(h->q);
    sk_spool_free(h->spool);
    event_free(h->guard);
    event_base_free(h->base);
    h->q = NULL;
    h->spool = NULL;
    h->base = NULL;
}

static void run_until(harness *h, int removed, int events)
{
    h->removed_target = removed;
    h->events_target = events;
    event_base_dispatch(h->base);
    h->removed_target = h->events_target = 0;
}

static void on_commit_done(void *ctx, sk_err err, const char *id)
{
    assert_int_equal(err, SK_OK);
    snprintf(ctx, SK_SPOOL_ID_SIZE, "%s", id);
}

/* Commit a message to rcpts through the spool (the loop finishes it). */
static void inject(harness *h, const char *const *rcpts, size_t n, sk_spool_state st,
                   int64_t arrival, char id[SK_SPOOL_ID_SIZE])
{
    sk_spool_rcpt rs[8] = {0};
    for (size_t i = 0; i < n; i++) rs[i].addr = (char *)rcpts[i];
    /* The null sender: these tests are not about bounces (test_dispatch is). */
    sk_spool_envelope env = {.sender = h->sender ? (char *)h->sender : "",
                             .rcpts = rs,
                             .nrcpts = n,
                             .state = st,
                             .arrival = arrival,
                             .esmtp = 1};
    sk_error err;
    sk_spool_msg *m = sk_spool_begin(h->spool, &env, &err);
    assert_non_null(m);
    const char body[] = "Subject: q\r\n\r\nhello\r\n";
    assert_int_equal(sk_spool_write(m, body, sizeof body - 1), SK_OK);
    id[0] = '\0';
    sk_spool_commit(m, on_commit_done, id);
}

static sk_spool_envelope *load(harness *h, const char *id)
{
    sk_spool_envelope *env = NULL;
    sk_error err;
    sk_err e = sk_spool_load(h->spool, id, &env, &err);
    return e ? NULL : env;
}

static void test_routing_and_results(void **state)
{
    harness h = {0};
    static const uint64_t retry[] = {3600 * 1000};
    start(&h, retry, 1, 0);
    static const char *const rcpts[] = {"ok1@localhost",      "ok2@EXAMPLE.test",
                                        "perm@localhost",     "tmp@remote.example",
                                        "ok3@remote.example", "ok4@other.example"};
    char id[SK_SPOOL_ID_SIZE];
    int64_t before = (int64_t)time(NULL);
    inject(&h, rcpts, 6, SK_SPOOL_ACTIVE, 0, id);
    /* queued + 6 recipient events */
    run_until(&h, 0, 7);
    int64_t after = (int64_t)time(NULL);
    assert_int_equal(h.ev[SK_QUEUE_EV_QUEUED], 1);
    assert_int_equal(h.ev[SK_QUEUE_EV_DELIVERED], 4);
    assert_int_equal(h.ev[SK_QUEUE_EV_BOUNCED], 1);
    assert_int_equal(h.ev[SK_QUEUE_EV_DEFERRED], 1);
    /* One job per destination domain: localhost, example.test locally;
     * remote.example and other.example remotely. */
    assert_int_equal(h.local.calls, 2);
    assert_int_equal(h.remote.calls, 2);
    assert_int_equal(h.local.maybe_delivered_seen + h.remote.maybe_delivered_seen, 0);
    assert_int_equal(sk_queue_count(h.q), 1);
    assert_int_equal(sk_queue_in_flight(h.q), 0);

    /* On disk: per-recipient state, attempts, the retry time. */
    sk_spool_envelope *env = load(&h, id);
    assert_non_null(env);
    assert_int_equal(env->state, SK_SPOOL_DEFERRED);
    assert_int_equal(env->attempts, 1);
    /* Whole seconds rounded up from the moment: up to 1 s more. */
    assert_true(env->next_attempt >= before + 3600 && env->next_attempt <= after + 3600 + 1);
    static const sk_rcpt_state want[] = {SK_RCPT_DELIVERED, SK_RCPT_DELIVERED, SK_RCPT_FAILED,
                                         SK_RCPT_PENDING,   SK_RCPT_DELIVERED, SK_RCPT_DELIVERED};
    for (size_t i = 0; i < 6; i++) assert_int_equal(env->rcpts[i].state, want[i]);
    assert_string_equal(env->rcpts[2].last_reply, "550 5.1.1 no such user");
    assert_string_equal(env->rcpts[3].last_reply, "451 4.4.1 later");
    assert_string_equal(env->last_reply, "451 4.4.1 later");
    sk_spool_envelope_free(env);

    /* Flush: only the pending recipient is tried again, and it succeeds. */
    h.remote.use_force = 1;
    h.remote.force = SK_DELIVERY_OK;
    assert_int_equal(sk_queue_flush(h.q), SK_OK);
    run_until(&h, 1, 0);
    assert_int_equal(h.remote.calls, 3);
    assert_int_equal(h.ev[SK_QUEUE_EV_DELIVERED], 5);
    assert_int_equal(sk_queue_count(h.q), 0);
    assert_null(load(&h, id));
    stop(&h);
    skt_rmtree(h.dir);
    free(h.dir);
}

static void test_retry_schedule_and_expiry(void **state)
{
    harness h = {0};
    /* Schedule 1h, 2h: the last repeats. */
    static const uint64_t retry[] = {3600 * 1000, 7200 * 1000};
    start(&h, retry, 2, 0);
    static const char *const rcpts[] = {"tmp@localhost"};
    char id[SK_SPOOL_ID_SIZE];
    inject(&h, rcpts, 1, SK_SPOOL_ACTIVE, 0, id);
    static const struct {
        unsigned attempts;
        int64_t delay_s;
    } steps[] = {{1, 3600}, {2, 7200}, {3, 7200}};
    for (size_t i = 0; i < SKT_N(steps); i++) {
        if (i) assert_int_equal(sk_queue_flush(h.q), SK_OK);
        int64_t before = (int64_t)time(NULL);
        run_until(&h, 0, h.events + (i ? 1 : 2));
        int64_t after = (int64_t)time(NULL);
        sk_spool_envelope *env = load(&h, id);
        assert_non_null(env);
        assert_int_equal(env->attempts, steps[i].attempts);
        assert_int_equal(env->state, SK_SPOOL_DEFERRED);
        assert_true(env->next_attempt >= before + steps[i].delay_s &&
                    env->next_attempt <= after + steps[i].delay_s + 1);
        sk_spool_envelope_free(env);
    }
    /* Retry state survives a restart, and the message is not due. */
    stop(&h);
    start(&h, retry, 2, 0);
    assert_int_equal(sk_queue_count(h.q), 1);
    event_base_loop(h.base, EVLOOP_NONBLOCK);
    assert_int_equal(h.local.calls, 0);
    sk_spool_envelope *env = load(&h, id);
    assert_int_equal(env->attempts, 3);
    sk_spool_envelope_free(env);
    stop(&h);

    /* An old message that fails again expires instead of being deferred. */
    start(&h, retry, 2, 60 * 1000);
    inject(&h, rcpts, 1, SK_SPOOL_ACTIVE, (int64_t)time(NULL) - 3600, id);
    run_until(&h, 1, 0);
    assert_int_equal(h.ev[SK_QUEUE_EV_EXPIRED], 1);
    assert_null(load(&h, id));
    stop(&h);
    skt_rmtree(h.dir);
    free(h.dir);
}

static void test_hold_release_delete(void **state)
{
    harness h = {0};
    start(&h, NULL, 0, 0);
    static const char *const rcpts[] = {"ok@localhost"};
    char held[SK_SPOOL_ID_SIZE], busy[SK_SPOOL_ID_SIZE];
    inject(&h, rcpts, 1, SK_SPOOL_HOLD, 0, held);
    run_until(&h, 0, 1); /* queued */
    for (int i = 0; i < 5; i++) event_base_loop(h.base, EVLOOP_NONBLOCK);
    assert_int_equal(h.local.calls, 0);
    sk_spool_envelope *env = load(&h, held);
    assert_int_equal(env->state, SK_SPOOL_HOLD);
    sk_spool_envelope_free(env);
    /* Flush does not touch held messages. */
    assert_int_equal(sk_queue_flush(h.q), SK_OK);
    for (int i = 0; i < 5; i++) event_base_loop(h.base, EVLOOP_NONBLOCK);
    assert_int_equal(h.local.calls, 0);
    assert_int_equal(sk_queue_release(h.q, "0000000000000000"), SK_ERR_NOT_FOUND);
    assert_int_equal(sk_queue_release(h.q, held), SK_OK);
    run_until(&h, 1, 0);
    assert_int_equal(h.local.calls, 1);
    assert_null(load(&h, held));

    /* Deleting a message whose delivery is in flight. */
    h.local.hold_jobs = 1;
    inject(&h, rcpts, 1, SK_SPOOL_ACTIVE, 0, busy);
    while (!h.local.held_done) event_base_loop(h.base, EVLOOP_ONCE);
    assert_int_equal(sk_queue_in_flight(h.q), 1);
    assert_int_equal(sk_queue_delete(h.q, busy), SK_OK);
    assert_int_equal(sk_queue_delete(h.q, busy), SK_ERR_NOT_FOUND);
    /* The transport may still be reading the file: it stays until the job
     * reports, so it cannot be reused for another message meanwhile. */
    sk_spool_envelope *still = load(&h, busy);
    assert_non_null(still);
    sk_spool_envelope_free(still);
    fake_complete_held(&h.local);
    assert_null(load(&h, busy));
    assert_int_equal(sk_queue_in_flight(h.q), 0);
    assert_int_equal(sk_queue_count(h.q), 0);
    assert_int_equal(h.ev[SK_QUEUE_EV_DELIVERED], 1); /* the late result is dropped */

    /* A job still out at shutdown is cancelled without leaks; a message
     * deleted meanwhile leaves no file (but the one kept for reuse,
     * ID.free, which no reader takes for a message). */
    char gone[SK_SPOOL_ID_SIZE];
    inject(&h, rcpts, 1, SK_SPOOL_ACTIVE, 0, gone);
    h.local.held_done = NULL;
    while (!h.local.held_done) event_base_loop(h.base, EVLOOP_ONCE);
    assert_int_equal(sk_queue_delete(h.q, gone), SK_OK);
    stop(&h);
    char msgdir[600];
    snprintf(msgdir, sizeof msgdir, "%s/spool/msg", h.dir);
    DIR *dd = opendir(msgdir);
    assert_non_null(dd);
    int left = 0;
    for (struct dirent *de; (de = readdir(dd));)
        left += !strncmp(de->d_name, gone, SK_SPOOL_ID_LEN) && !strstr(de->d_name, ".free");
    closedir(dd);
    assert_int_equal(left, 0);
    skt_rmtree(h.dir);
    free(h.dir);
}

/* Every state a message goes through, logged by the one setter. */
static void test_state_changes(void **state)
{
    harness h = {0};
    static const uint64_t retry[] = {3600 * 1000};
    start(&h, retry, 1, 0);
    static const char *const ok[] = {"ok@localhost"}, *const tmp[] = {"tmp@localhost"};
    char held[SK_SPOOL_ID_SIZE], deferred[SK_SPOOL_ID_SIZE], busy[SK_SPOOL_ID_SIZE];
    inject(&h, ok, 1, SK_SPOOL_HOLD, 0, held);
    run_until(&h, 0, 1); /* queued */
    assert_int_equal(sk_queue_release(h.q, held), SK_OK);
    run_until(&h, 1, 0);
    inject(&h, tmp, 1, SK_SPOOL_ACTIVE, 0, deferred);
    run_until(&h, 0, h.events + 2); /* queued, deferred */
    assert_int_equal(sk_queue_flush(h.q), SK_OK);
    run_until(&h, 0, h.events + 1); /* deferred again */
    h.local.hold_jobs = 1;
    inject(&h, ok, 1, SK_SPOOL_ACTIVE, 0, busy);
    while (!h.local.held_done) event_base_loop(h.base, EVLOOP_ONCE);
    assert_int_equal(sk_queue_delete(h.q, busy), SK_OK);
    fake_complete_held(&h.local);
    const struct {
        const char *name;
        const char *id;
        const char *want;
    } cases[] = {
        {"held, released, delivered", held, "held>ready ready>delivering delivering>removed"},
        {"deferred, flushed, deferred again", deferred,
         "waiting>ready ready>delivering delivering>waiting "
         "waiting>ready ready>delivering delivering>waiting"},
        {"deleted while delivering", busy,
         "waiting>ready ready>delivering delivering>deleted deleted>removed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[512];
        states_of(&h, cases[i].id, got, sizeof got);
        if (strcmp(got, cases[i].want))
            fail_msg("%s: \"%s\", want \"%s\"", cases[i].name, got, cases[i].want);
    }
    stop(&h);
    skt_rmtree(h.dir);
    free(h.dir);
}

static void test_in_flight_limit(void **state)
{
    harness h = {.max_in_flight = 1};
    start(&h, NULL, 0, 0);
    h.local.hold_jobs = 1;
    static const char *const rcpts[] = {"ok@localhost"};
    char ids[3][SK_SPOOL_ID_SIZE];
    for (int i = 0; i < 3; i++) inject(&h, rcpts, 1, SK_SPOOL_ACTIVE, 0, ids[i]);
    run_until(&h, 0, 3); /* three queued */
    /* One job at a time, in arrival order. */
    for (int i = 0; i < 3; i++) {
        while (!h.local.held_done) event_base_loop(h.base, EVLOOP_ONCE);
        assert_int_equal(h.local.calls, i + 1);
        assert_int_equal(sk_queue_in_flight(h.q), 1);
        for (int k = 0; k < 3; k++) event_base_loop(h.base, EVLOOP_NONBLOCK);
        assert_int_equal(h.local.calls, i + 1);
        fake_complete_held(&h.local);
        assert_null(load(&h, ids[i]));
    }
    assert_int_equal(sk_queue_count(h.q), 0);
    stop(&h);
    skt_rmtree(h.dir);
    free(h.dir);
}

/* ---- bulk operations by filter ---- */

static void test_filter_match(void **state)
{
    sk_spool_rcpt rs[] = {{.addr = "a@Example.ORG", .state = SK_RCPT_PENDING},
                          {.addr = "\"x@y\"@done.example", .state = SK_RCPT_DELIVERED},
                          {.addr = "postmaster", .state = SK_RCPT_PENDING}};
    sk_spool_envelope env = {.id = "01HF3Z4Q7M2ABCDE",
                             .sender = "Alice@Mail.Example",
                             .rcpts = rs,
                             .nrcpts = 3,
                             .state = SK_SPOOL_HOLD};
    sk_spool_envelope null_sender = env;
    null_sender.sender = "";
    const unsigned hold = 1u << SK_SPOOL_HOLD, deferred = 1u << SK_SPOOL_DEFERRED;
    static const struct {
        const char *id, *destination, *sender;
        int all;
        unsigned states;
        int null_env; /* match against the null sender's copy */
        int want;
    } cases[] = {
        {.want = 0}, /* an empty filter matches nothing */
        {.all = 1, .want = 1},
        {.id = "01HF3Z4Q7M2ABCDE", .want = 1},
        {.id = "01HF3Z4Q7M2ABCDF", .want = 0},
        {.destination = "example.org", .want = 1},  /* domains in any case */
        {.destination = "done.example", .want = 0}, /* that recipient is done */
        {.destination = "y\"@done.example", .want = 0},
        {.destination = "org", .want = 0},
        {.sender = "Alice@mail.example", .want = 1}, /* the domain in any case */
        {.sender = "alice@mail.example", .want = 0}, /* the local part exactly */
        {.sender = "", .want = 0},
        {.sender = "", .null_env = 1, .want = 1},
        {.sender = "Alice@Mail.Example", .null_env = 1, .want = 0},
        {.states = hold, .want = 1},
        {.states = deferred, .want = 0},
        {.states = hold | deferred, .want = 1},
        {.all = 1, .states = deferred, .want = 0}, /* terms are ANDed */
        {.destination = "example.org", .sender = "Alice@mail.example", .states = hold, .want = 1},
        {.destination = "example.org", .sender = "bob@mail.example", .states = hold, .want = 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_queue_filter f = {.all = cases[i].all, .states = cases[i].states};
        if (cases[i].id) snprintf(f.id, sizeof f.id, "%s", cases[i].id);
        if (cases[i].destination)
            snprintf(f.destination, sizeof f.destination, "%s", cases[i].destination);
        if (cases[i].sender) {
            f.has_sender = 1;
            snprintf(f.sender, sizeof f.sender, "%s", cases[i].sender);
        }
        int got = sk_queue_filter_match(&f, cases[i].null_env ? &null_sender : &env);
        if (got != cases[i].want) fail_msg("case %zu: match %d, want %d", i, got, cases[i].want);
    }
    /* What each operation changes. */
    static const struct {
        sk_queue_op op;
        sk_spool_state st;
        int want;
    } ops[] = {
        {SK_QUEUE_OP_FLUSH, SK_SPOOL_ACTIVE, 0},     {SK_QUEUE_OP_FLUSH, SK_SPOOL_DEFERRED, 1},
        {SK_QUEUE_OP_FLUSH, SK_SPOOL_HOLD, 0},       {SK_QUEUE_OP_RELEASE, SK_SPOOL_ACTIVE, 0},
        {SK_QUEUE_OP_RELEASE, SK_SPOOL_DEFERRED, 1}, {SK_QUEUE_OP_RELEASE, SK_SPOOL_HOLD, 1},
        {SK_QUEUE_OP_DELETE, SK_SPOOL_ACTIVE, 1},    {SK_QUEUE_OP_DELETE, SK_SPOOL_HOLD, 1},
    };
    for (size_t i = 0; i < SKT_N(ops); i++)
        assert_int_equal(sk_queue_op_changes(ops[i].op, ops[i].st), ops[i].want);
}

/* Apply a bulk operation max messages at a time, as the control socket
 * does between loop passes; returns how many calls it took. */
static size_t bulk(harness *h, sk_queue_op op, const sk_queue_filter *f, size_t max,
                   sk_queue_bulk *b)
{
    memset(b, 0, sizeof *b);
    size_t calls = 0;
    while (!b->done) {
        assert_int_equal(sk_queue_apply_filter(h->q, op, f, max, b), SK_OK);
        calls++;
        event_base_loop(h->base, EVLOOP_NONBLOCK);
    }
    return calls;
}

static void test_apply_filter(void **state)
{
    harness h = {0};
    start(&h, NULL, 0, 0);
    /* Held: 5 from alice to localhost, 3 from bob to example.test; and
     * one from bob delivered to example.test and deferred for
     * remote.example. */
    static const char *const to_local[] = {"ok@localhost"};
    static const char *const to_test[] = {"ok@example.test"};
    static const char *const to_both[] = {"ok@example.test", "tmp@remote.example"};
    char ids[9][SK_SPOOL_ID_SIZE];
    h.sender = "alice@a.example";
    for (int i = 0; i < 5; i++) inject(&h, to_local, 1, SK_SPOOL_HOLD, 0, ids[i]);
    h.sender = "bob@b.example";
    for (int i = 5; i < 8; i++) inject(&h, to_test, 1, SK_SPOOL_HOLD, 0, ids[i]);
    inject(&h, to_both, 2, SK_SPOOL_ACTIVE, 0, ids[8]);
    run_until(&h, 0, 11); /* 9 queued, 1 delivered, 1 deferred */
    sk_spool_envelope *env = load(&h, ids[8]);
    assert_int_equal(env->state, SK_SPOOL_DEFERRED);
    sk_spool_envelope_free(env);

    sk_queue_filter f = {0};
    sk_queue_bulk b;
    assert_int_equal(sk_queue_apply(h.q, SK_QUEUE_OP_RELEASE, "0000000000000000"),
                     SK_ERR_NOT_FOUND);
    assert_int_equal(sk_queue_apply_filter(h.q, SK_QUEUE_OP_DELETE, &f, 0, &b), SK_ERR_INVAL);
    assert_int_equal(
        sk_queue_apply_filter(h.q, (sk_queue_op)7, &(sk_queue_filter){.all = 1}, 0, &b),
        SK_ERR_INVAL);

    /* Flush changes no held message, though all match. */
    f.all = 1;
    f.states = 1u << SK_SPOOL_HOLD;
    bulk(&h, SK_QUEUE_OP_FLUSH, &f, 0, &b);
    assert_int_equal(b.matched, 8);
    assert_int_equal(b.changed, 0);

    /* Delete by destination, one message per call: 3 of bob's (the
     * fourth has no recipient left there); new arrivals are not touched. */
    memset(&f, 0, sizeof f);
    snprintf(f.destination, sizeof f.destination, "EXAMPLE.test");
    memset(&b, 0, sizeof b);
    assert_int_equal(sk_queue_apply_filter(h.q, SK_QUEUE_OP_DELETE, &f, 1, &b), SK_OK);
    assert_false(b.done);
    char late[SK_SPOOL_ID_SIZE];
    inject(&h, to_test, 1, SK_SPOOL_HOLD, 0, late);
    run_until(&h, 0, h.events + 1);
    size_t calls = 1;
    while (!b.done) {
        assert_int_equal(sk_queue_apply_filter(h.q, SK_QUEUE_OP_DELETE, &f, 1, &b), SK_OK);
        calls++;
    }
    assert_int_equal(b.matched, 3);
    assert_int_equal(b.changed, 3);
    assert_true(calls >= 3);
    for (int i = 5; i < 8; i++) assert_null(load(&h, ids[i]));
    assert_non_null((env = load(&h, ids[8])));
    sk_spool_envelope_free(env);
    assert_int_equal(sk_queue_count(h.q), 7);

    /* Release by sender and state: alice's 5 are delivered. */
    memset(&f, 0, sizeof f);
    f.has_sender = 1;
    snprintf(f.sender, sizeof f.sender, "alice@A.EXAMPLE");
    f.states = 1u << SK_SPOOL_HOLD;
    int calls_before = h.local.calls;
    assert_true(bulk(&h, SK_QUEUE_OP_RELEASE, &f, 2, &b) >= 3);
    assert_int_equal(b.matched, 5);
    assert_int_equal(b.changed, 5);
    if (h.ev[SK_QUEUE_EV_REMOVED] < 8) run_until(&h, 8, 0); /* 3 deleted + 5 delivered */
    assert_int_equal(h.local.calls, calls_before + 5);
    assert_int_equal(sk_queue_count(h.q), 2);

    /* By ID: one match at most; an ID not there matches nothing. */
    memset(&f, 0, sizeof f);
    snprintf(f.id, sizeof f.id, "%s", late);
    bulk(&h, SK_QUEUE_OP_DELETE, &f, 0, &b);
    assert_int_equal(b.matched, 1);
    assert_int_equal(b.changed, 1);
    bulk(&h, SK_QUEUE_OP_DELETE, &f, 0, &b);
    assert_int_equal(b.matched, 0);

    /* A delivery in flight: matched, not released, deleted once it reports. */
    h.local.hold_jobs = 1;
    h.sender = NULL;
    char busy[SK_SPOOL_ID_SIZE];
    inject(&h, to_local, 1, SK_SPOOL_ACTIVE, 0, busy);
    while (!h.local.held_done) event_base_loop(h.base, EVLOOP_ONCE);
    memset(&f, 0, sizeof f);
    f.all = 1;
    bulk(&h, SK_QUEUE_OP_RELEASE, &f, 0, &b);
    assert_int_equal(b.matched, 2); /* bob's deferred one and the busy one */
    assert_int_equal(b.changed, 1);
    bulk(&h, SK_QUEUE_OP_DELETE, &f, 0, &b);
    assert_int_equal(b.matched, 2);
    assert_int_equal(b.changed, 2);
    assert_int_equal(sk_queue_count(h.q), 0);
    assert_non_null((env = load(&h, busy)));
    sk_spool_envelope_free(env);
    fake_complete_held(&h.local);
    assert_null(load(&h, busy));
    stop(&h);
    skt_rmtree(h.dir);
    free(h.dir);
}

/* ---- no duplicate after a crash between delivery and its record ---- */

static void count_ok(void *ctx, const sk_delivery_result *res)
{
    for (size_t i = 0; i < res->nrcpts; i++) *(int *)ctx += res->rcpts[i].status == SK_DELIVERY_OK;
}

static void test_maildir_restart_idempotent(void **state)
{
    harness h = {0};
    start(&h, NULL, 0, 0);
    static const char *const rcpts[] = {"u@localhost"};
    char id[SK_SPOOL_ID_SIZE];
    inject(&h, rcpts, 1, SK_SPOOL_HOLD, 0, id);
    run_until(&h, 0, 1);
    stop(&h);

    /* The "crash": the mailbox got the message, the spool never heard. */
    char boxes[512], newdir[600], curdir[600];
    snprintf(boxes, sizeof boxes, "%s/mailboxes", h.dir);
    snprintf(newdir, sizeof newdir, "%s/localhost/u/new", boxes);
    snprintf(curdir, sizeof curdir, "%s/localhost/u/cur", boxes);
    sk_transport *md = sk_maildir_transport_new(boxes, "mx.test", NULL, NULL);
    sk_spool *s = sk_spool_open(h.dir, NULL, NULL, NULL);
    sk_spool_envelope *env;
    assert_int_equal(sk_spool_load(s, id, &env, NULL), SK_OK);
    sk_buf path = SK_BUF_INIT(4096);
    assert_int_equal(sk_spool_body_path(s, id, &path), SK_OK);
    sk_delivery_rcpt jr = {.addr = "u@localhost", .index = 0};
    sk_delivery job = {.queue_id = id,
                       .env = env,
                       .body_path = path.data,
                       .domain = "localhost",
                       .rcpts = &jr,
                       .nrcpts = 1};
    int delivered = 0;
    md->deliver(md, &job, count_ok, &delivered);
    assert_int_equal(delivered, 1);
    env->state = SK_SPOOL_ACTIVE;
    assert_int_equal(sk_spool_save(s, env, NULL), SK_OK);
    sk_spool_envelope_free(env);
    sk_buf_free(&path);
    sk_spool_free(s);
    assert_int_equal(skt_count_files(newdir), 1);
    /* The user has even read it meanwhile. */
    DIR *d = opendir(newdir);
    struct dirent *de;
    char name[256] = "";
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') snprintf(name, sizeof name, "%s", de->d_name);
    closedir(d);
    char from[900], to[900];
    snprintf(from, sizeof from, "%s/%s", newdir, name);
    snprintf(to, sizeof to, "%s/%s:2,S", curdir, name);
    assert_int_equal(rename(from, to), 0);

    /* Restart with the real Maildir transport, on its worker thread as in
     * the daemon: recorded as delivered, and still one copy. */
    h.base = event_base_new();
    sk_transport *md2 = sk_maildir_transport_new(boxes, "mx.test", NULL, NULL);
    assert_int_equal(sk_maildir_transport_start(md2, h.base, NULL), SK_OK);
    h.spool = sk_spool_open(h.dir, NULL, h.base, NULL);
    const char *const locals[] = {"localhost"};
    sk_queue_opts o = {.local_domains = locals,
                       .nlocal_domains = 1,
                       .local_transport = md2,
                       .on_event = on_event,
                       .event_ctx = &h};
    h.q = sk_queue_new(h.spool, &o, h.base, NULL);
    assert_non_null(h.q);
    h.guard = evtimer_new(h.base, on_guard, &h);
    struct timeval tv = {30, 0};
    evtimer_add(h.guard, &tv);
    memset(h.ev, 0, sizeof h.ev);
    run_until(&h, 1, 0);
    assert_int_equal(h.ev[SK_QUEUE_EV_DELIVERED], 1);
    assert_int_equal(skt_count_files(newdir) + skt_count_files(curdir), 1);
    /* The queue, then the transport, then (in stop) the event base. */
    sk_queue_free(h.q);
    h.q = NULL;
    sk_transport_free(md2);
    stop(&h);
    sk_transport_free(md);
    skt_rmtree(h.dir);
    free(h.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_and_results),
        cmocka_unit_test(test_retry_schedule_and_expiry),
        cmocka_unit_test(test_hold_release_delete),
        cmocka_unit_test(test_state_changes),
        cmocka_unit_test(test_in_flight_limit),
        cmocka_unit_test(test_filter_match),
        cmocka_unit_test(test_apply_filter),
        cmocka_unit_test(test_maildir_restart_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
