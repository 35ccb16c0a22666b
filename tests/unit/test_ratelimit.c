/* Unit tests for the queue's rates and throttling (src/queue/ratelimit.c):
 * token bucket arithmetic (exact intervals, burst, idle time not banked),
 * the --rate-limit syntax, which rate a destination gets (per-domain
 * override, default, what joining domains change), and how failure replies
 * suspend or slow a destination (rule actions, 421, 4.7.x, class other). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <string.h>

#include "queue/queue_int.h"

/* A bucket run over a sequence of (time, expected wait); a 0 wait takes. */
typedef struct step {
    int64_t at_ms;
    uint64_t wait_ms;
} step;

static const struct {
    const char *name;
    sk_queue_rate rate;
    step steps[8];
    size_t n;
} bucket_cases[] = {
    {"10/s, burst 1: 100 ms apart",
     {10, 1000, 0},
     {{1000, 0}, {1000, 100}, {1050, 50}, {1100, 0}, {1150, 50}, {1200, 0}},
     6},
    {"3/s: 333.33 ms intervals, waits rounded up to the next ms",
     {3, 1000, 0},
     {{0, 0}, {1, 333}, {334, 0}, {334, 334}, {668, 0}, {668, 334}, {1001, 1}, {1002, 0}},
     8},
    {"100/m: 600 ms", {100, 60000, 0}, {{5000, 0}, {5000, 600}, {5599, 1}, {5600, 0}}, 4},
    {"burst 3 lets three go at once, then paces",
     {1, 1000, 3},
     {{0, 0}, {0, 0}, {0, 0}, {0, 1000}, {1000, 0}, {1000, 1000}},
     6},
    {"idle time is not banked beyond the burst",
     {1, 1000, 1},
     {{0, 0}, {60000, 0}, {60000, 1000}, {60999, 1}},
     4},
    {"count 0: no limit", {0, 1000, 0}, {{0, 0}, {0, 0}, {0, 0}}, 3},
    {"1/h", {1, 3600000, 0}, {{10, 0}, {3600009, 1}, {3600010, 0}}, 3},
};

static void test_bucket(void **state)
{
    for (size_t c = 0; c < SKT_N(bucket_cases); c++) {
        sk_bucket b = {.rate = bucket_cases[c].rate};
        for (size_t i = 0; i < bucket_cases[c].n; i++) {
            const step *s = &bucket_cases[c].steps[i];
            uint64_t w = sk_bucket_wait(&b, s->at_ms);
            if (w != s->wait_ms)
                fail_msg("%s: step %zu at %lld: wait %llu, want %llu", bucket_cases[c].name, i,
                         (long long)s->at_ms, (unsigned long long)w,
                         (unsigned long long)s->wait_ms);
            if (!w) sk_bucket_take(&b, s->at_ms);
        }
    }
}

/* Over a long run at the paced speed, exactly count per period go. */
static void test_bucket_long_run(void **state)
{
    static const sk_queue_rate rates[] = {{10, 1000, 0}, {7, 1000, 0}, {100, 60000, 0}};
    for (size_t c = 0; c < SKT_N(rates); c++) {
        sk_bucket b = {.rate = rates[c]};
        unsigned sent = 0;
        /* Ten periods, asking every millisecond. */
        for (int64_t t = 0; t < (int64_t)rates[c].per_ms * 10; t++)
            if (!sk_bucket_wait(&b, t)) {
                sk_bucket_take(&b, t);
                sent++;
            }
        assert_int_equal(sent, rates[c].count * 10);
    }
}

static const struct {
    const char *in;
    sk_err want;
    const char *domain;
    unsigned count;
    uint64_t per_ms;
} parse_cases[] = {
    {"example.com=100/m", SK_OK, "example.com", 100, 60000},
    {"Example.COM=5/s", SK_OK, "example.com", 5, 1000},
    {"default=10/s", SK_OK, "", 10, 1000},
    {"20/h", SK_OK, "", 20, 3600000},
    {"mx.example.net=3/min", SK_OK, "mx.example.net", 3, 60000},
    {"a.b=1/hour", SK_OK, "a.b", 1, 3600000},
    {"a.b=1/sec", SK_OK, "a.b", 1, 1000},
    {"example.com=0/m", SK_ERR_SYNTAX, NULL, 0, 0},
    {"example.com=100", SK_ERR_SYNTAX, NULL, 0, 0},
    {"example.com=100/d", SK_ERR_SYNTAX, NULL, 0, 0},
    {"example.com=-1/s", SK_ERR_SYNTAX, NULL, 0, 0},
    {"example.com=10/s/", SK_ERR_SYNTAX, NULL, 0, 0},
    {"=10/s", SK_ERR_SYNTAX, NULL, 0, 0},
    {"exa mple.com=10/s", SK_ERR_SYNTAX, NULL, 0, 0},
    {"example.com=", SK_ERR_SYNTAX, NULL, 0, 0},
    {"example.com=99999999/s", SK_ERR_SYNTAX, NULL, 0, 0},
    {"", SK_ERR_SYNTAX, NULL, 0, 0},
};

static void test_rate_parse(void **state)
{
    for (size_t c = 0; c < SKT_N(parse_cases); c++) {
        sk_queue_rate_rule r;
        sk_error err;
        sk_err e = sk_queue_rate_parse(parse_cases[c].in, &r, &err);
        if (e != parse_cases[c].want) fail_msg("\"%s\": got %d", parse_cases[c].in, (int)e);
        if (e) {
            assert_true(err.text[0] != '\0');
            continue;
        }
        assert_string_equal(r.domain, parse_cases[c].domain);
        assert_int_equal(r.rate.count, parse_cases[c].count);
        assert_int_equal(r.rate.per_ms, parse_cases[c].per_ms);
    }
    sk_error err;
    sk_queue_rate_rule r;
    assert_int_equal(sk_queue_rate_parse(NULL, &r, &err), SK_ERR_SYNTAX);
}

static void test_rate_for(void **state)
{
    sk_queue_rate_rule rules[3];
    sk_error err;
    assert_int_equal(sk_queue_rate_parse("big.example=100/m", &rules[0], &err), SK_OK);
    assert_int_equal(sk_queue_rate_parse("default=10/s", &rules[1], &err), SK_OK);
    assert_int_equal(sk_queue_rate_parse("big.example=1/h", &rules[2], &err), SK_OK);
    sk_queue_opts o = {.rate_rules = rules, .nrate_rules = 3, .rate_default = {5, 1000, 0}};
    static const struct {
        const char *domain;
        unsigned count;
        uint64_t per_ms;
        int overridden;
    } cases[] = {
        {"big.example", 100, 60000, 1}, /* the first rule naming it */
        {"BIG.example", 100, 60000, 1},
        {"other.example", 10, 1000, 0}, /* "default=" beats rate_default */
        {"sub.big.example", 10, 1000, 0},
        {NULL, 10, 1000, 0},
    };
    for (size_t c = 0; c < SKT_N(cases); c++) {
        int ov = -1;
        sk_queue_rate r = sk_queue_rate_for(&o, cases[c].domain, &ov);
        assert_int_equal(r.count, cases[c].count);
        assert_int_equal(r.per_ms, cases[c].per_ms);
        assert_int_equal(ov, cases[c].overridden);
    }
    /* Without a "default=" rule, rate_default applies. */
    o.nrate_rules = 1;
    sk_queue_rate r = sk_queue_rate_for(&o, "other.example", NULL);
    assert_int_equal(r.count, 5);
    assert_int_equal(r.per_ms, 1000);
}

static void test_pace_join(void **state)
{
    sk_queue_rate_rule rules[2];
    sk_error err;
    assert_int_equal(sk_queue_rate_parse("big.example=2/s", &rules[0], &err), SK_OK);
    assert_int_equal(sk_queue_rate_parse("other.example=3/s", &rules[1], &err), SK_OK);
    sk_queue_opts o = {.rate_rules = rules, .nrate_rules = 2, .rate_default = {10, 1000, 0}};
    static const struct {
        const char *name;
        int unpaced;
        const char *domains[3]; /* joining in turn; the first makes the destination */
        unsigned count;
        int overridden;
    } cases[] = {
        {"a new destination takes its domain's rate", 0, {"plain.example"}, 10, 0},
        {"the first domain with a rule of its own", 0, {"plain.example", "big.example"}, 2, 1},
        {"only the first override counts",
         0,
         {"plain.example", "big.example", "other.example"},
         2,
         1},
        {"an override from the start", 0, {"other.example", "plain.example"}, 3, 1},
        {"local delivery is not paced", 1, {"big.example"}, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sk_pace p = {.unpaced = cases[c].unpaced};
        for (size_t i = 0; i < 3 && cases[c].domains[i]; i++)
            sk_pace_join(&p, &o, cases[c].domains[i], i == 0);
        if (p.bucket.rate.count != cases[c].count || p.overridden != cases[c].overridden)
            fail_msg("%s: %u/s overridden %d", cases[c].name, p.bucket.rate.count, p.overridden);
    }
}

/* A reply to a destination paced at 10/s, at t = 1000 ms; then when it may
 * send again. */
static void test_pace_throttle(void **state)
{
    static const struct {
        const char *name;
        int code;
        const char *enhanced;
        sk_rule_match mt;
        int throttled;
        uint64_t for_ms;
        int64_t wait_ms;       /* right after */
        int64_t wait_later_ms; /* at t = 1000 + 5000 */
    } cases[] = {
        {"421: the default suspension", 421, "4.3.2", {0}, 1, 60000, 60000, 55000},
        {"4.7.x: the default suspension", 450, "4.7.0", {0}, 1, 60000, 60000, 55000},
        {"4.7.x classed other (greylisting): no",
         451,
         "4.7.1",
         {.matched = 1, .cls = SK_CLASS_OTHER},
         0,
         0,
         0,
         0},
        {"4.7.x classed throttled: suspended",
         451,
         "4.7.1",
         {.matched = 1, .cls = SK_CLASS_THROTTLED},
         1,
         60000,
         60000,
         55000},
        {"rule: suspend",
         451,
         "4.4.2",
         {.matched = 1,
          .cls = SK_CLASS_THROTTLED,
          .action = {.kind = SK_TRAFFIC_SUSPEND, .duration_ms = 2000}},
         1,
         2000,
         2000,
         0},
        {"rule: 1/s for 10 s on top of the configured rate",
         451,
         "4.4.2",
         {.matched = 1,
          .cls = SK_CLASS_THROTTLED,
          .action = {.kind = SK_TRAFFIC_RATE,
                     .duration_ms = 10000,
                     .rate_count = 1,
                     .rate_per_ms = 1000}},
         1,
         10000,
         0,
         0},
        {"rule without an action: nothing",
         550,
         "5.1.1",
         {.matched = 1, .cls = SK_CLASS_BAD_MAILBOX},
         0,
         0,
         0,
         0},
        {"a plain failure: nothing", 451, "4.3.0", {0}, 0, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sk_pace p = {.bucket = {.rate = {10, 1000, 0}}};
        sk_reply r = sk_reply_make(cases[c].code, cases[c].enhanced, "text");
        uint64_t ms = 0;
        int t = sk_pace_throttle(&p, &r, &cases[c].mt, 60000, 1000, &ms);
        if (t != cases[c].throttled || ms != cases[c].for_ms)
            fail_msg("%s: throttled %d for %llu ms", cases[c].name, t, (unsigned long long)ms);
        if (sk_pace_wait(&p, 1000) != cases[c].wait_ms)
            fail_msg("%s: waits %lld ms", cases[c].name, (long long)sk_pace_wait(&p, 1000));
        if (sk_pace_wait(&p, 6000) != cases[c].wait_later_ms)
            fail_msg("%s: later waits %lld ms", cases[c].name, (long long)sk_pace_wait(&p, 6000));
    }
    /* The imposed rate: one a second, while it lasts; then 10/s again. */
    sk_pace p = {.bucket = {.rate = {10, 1000, 0}}};
    sk_rule_match mt = {
        .matched = 1,
        .action = {
            .kind = SK_TRAFFIC_RATE, .duration_ms = 10000, .rate_count = 1, .rate_per_ms = 1000}};
    sk_reply r = sk_reply_make(451, "4.4.2", "slow down");
    uint64_t ms;
    assert_true(sk_pace_throttle(&p, &r, &mt, 60000, 1000, &ms));
    assert_int_equal(sk_pace_wait(&p, 1000), 0);
    sk_pace_take(&p, 1000);
    assert_int_equal(sk_pace_wait(&p, 1100), 900);
    assert_false(sk_pace_idle(&p, 2000));
    sk_pace_take(&p, 11000);
    assert_int_equal(sk_pace_wait(&p, 11100), 0); /* the slow rate has ended */
    assert_true(sk_pace_idle(&p, 12000));
    /* A shorter suspension does not cut a longer one short. */
    sk_pace s = {0};
    sk_rule_match sus = {.matched = 1, .action = {.kind = SK_TRAFFIC_SUSPEND, .duration_ms = 500}};
    sk_reply four21 = sk_reply_make(421, "4.3.2", "closing");
    sk_rule_match none = {0};
    assert_true(sk_pace_throttle(&s, &four21, &none, 60000, 0, &ms));
    assert_true(sk_pace_throttle(&s, &r, &sus, 60000, 1000, &ms));
    assert_int_equal(sk_pace_wait(&s, 1000), 59000);
    /* Local delivery waits only for a suspension. */
    sk_pace local = {.unpaced = 1, .bucket = {.rate = {1, 1000, 0}}};
    assert_true(sk_pace_throttle(&local, &r, &mt, 60000, 0, &ms));
    sk_pace_take(&local, 0);
    assert_int_equal(sk_pace_wait(&local, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket),     cmocka_unit_test(test_bucket_long_run),
        cmocka_unit_test(test_rate_parse), cmocka_unit_test(test_rate_for),
        cmocka_unit_test(test_pace_join),  cmocka_unit_test(test_pace_throttle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
