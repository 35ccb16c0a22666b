/* Unit tests for the queue's retry schedule (src/queue/retry.c): the wait
 * after each attempt (the last entry repeats, waits rounded up to whole
 * seconds, the default schedule), expiry at the lifetime and the delay
 * notice at its time, an arrival in the future, and Will-Retry-Until. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue/queue_int.h"

#define NOW 1700000000

static void test_next_attempt(void **state)
{
    static const uint64_t schedule[] = {60000, 1500, 3600000};
    static const uint64_t defaults[] = SK_QUEUE_RETRY_DEFAULT_MS;
    static const struct {
        const char *name;
        const uint64_t *retry_ms;
        size_t nretry;
        unsigned attempts;
        int64_t wait_s;
    } cases[] = {
        {"after the first attempt", schedule, 3, 1, 60},
        {"no attempt counted yet: the first wait", schedule, 3, 0, 60},
        {"1.5 s rounds up to 2 s", schedule, 3, 2, 2},
        {"the last entry", schedule, 3, 3, 3600},
        {"the last entry repeats", schedule, 3, 9, 3600},
        {"default schedule, first", NULL, 0, 1, (int64_t)defaults[0] / 1000},
        {"default schedule, last repeats", NULL, 0, 40,
         (int64_t)defaults[sizeof defaults / sizeof defaults[0] - 1] / 1000},
        {"retry_ms without nretry: the default", schedule, 0, 1, (int64_t)defaults[0] / 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_queue_opts o = {.retry_ms = cases[i].retry_ms, .nretry = cases[i].nretry};
        sk_retry r;
        assert_int_equal(sk_retry_init(&r, &o), SK_OK);
        int64_t got = sk_retry_next(&r, cases[i].attempts, (int64_t)NOW * 1000);
        if (got != NOW + cases[i].wait_s)
            fail_msg("%s: next attempt in %lld s, want %lld", cases[i].name, (long long)(got - NOW),
                     (long long)cases[i].wait_s);
        sk_retry_free(&r);
    }
    /* Late in a second: the wait still counts from the moment itself. */
    const uint64_t one[] = {1000};
    sk_queue_opts o = {.retry_ms = one, .nretry = 1};
    sk_retry r;
    assert_int_equal(sk_retry_init(&r, &o), SK_OK);
    assert_int_equal(sk_retry_next(&r, 1, (int64_t)NOW * 1000 + 990), NOW + 2);
    assert_int_equal(sk_retry_next(&r, 1, (int64_t)NOW * 1000), NOW + 1);
    sk_retry_free(&r);
}

static void test_expiry_and_warning(void **state)
{
    static const struct {
        const char *name;
        uint64_t lifetime_ms, warning_ms;
        int64_t age_s; /* now - arrival */
        int expired, warn;
    } cases[] = {
        {"young", 3600000, 600000, 10, 0, 0},
        {"warning time reached", 3600000, 600000, 600, 0, 1},
        {"one second short of the warning", 3600000, 600000, 599, 0, 0},
        {"lifetime reached", 3600000, 600000, 3600, 1, 1},
        {"one second short of the lifetime", 3600000, 600000, 3599, 0, 1},
        {"no warnings configured", 3600000, 0, 3000, 0, 0},
        {"arrival in the future never expires", 1000, 1000, -100, 0, 0},
        {"arrival now", 1000, 1000, 0, 0, 0},
        {"default lifetime: 5 days", 0, 0, 5 * 86400, 1, 0},
        {"default lifetime: not yet", 0, 0, 5 * 86400 - 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_queue_opts o = {.max_lifetime_ms = cases[i].lifetime_ms,
                           .delay_warning_ms = cases[i].warning_ms};
        sk_retry r;
        assert_int_equal(sk_retry_init(&r, &o), SK_OK);
        int64_t arrival = NOW - cases[i].age_s;
        if (sk_retry_expired(&r, arrival, NOW) != cases[i].expired)
            fail_msg("%s: expired %d, want %d", cases[i].name, !cases[i].expired, cases[i].expired);
        if (sk_retry_warn_due(&r, arrival, NOW) != cases[i].warn)
            fail_msg("%s: warning due %d, want %d", cases[i].name, !cases[i].warn, cases[i].warn);
        int64_t lifetime_s =
            (int64_t)(cases[i].lifetime_ms ? cases[i].lifetime_ms : SK_QUEUE_LIFETIME_DEFAULT_MS) /
            1000;
        assert_int_equal(sk_retry_until(&r, arrival), arrival + lifetime_s);
        sk_retry_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_attempt),
        cmocka_unit_test(test_expiry_and_warning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
