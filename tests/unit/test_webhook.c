/* Unit tests for the webhook module's pure parts (src/webhook/sign.c):
 * the Standard Webhooks signature against the specification's example,
 * endpoint and --webhook checks, and the event's JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <stdio.h>
#include <string.h>

#include <smtpkit/webhook.h>

static const char secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

static const struct {
    const char *name, *secret, *id;
    int64_t ts;
    const char *body;
    sk_err want;
    const char *sig;
} sign_cases[] = {
    {"the specification's example", secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
     "{\"test\": 2432232314}", SK_OK, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
    {"another timestamp, another signature", secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331,
     "{\"test\": 2432232314}", SK_OK, NULL},
    {"no prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "x", 1, "{}", SK_ERR_SYNTAX, NULL},
    {"a key too short", "whsec_AAAA", "x", 1, "{}", SK_ERR_SYNTAX, NULL},
    {"not base64", "whsec_!!!!", "x", 1, "{}", SK_ERR_SYNTAX, NULL},
};

static void test_sign(void **state)
{
    (void)state;
    for (size_t c = 0; c < SKT_N(sign_cases); c++) {
        char sig[SK_WEBHOOK_SIGNATURE_OCTETS] = "";
        sk_err e = sk_webhook_sign(sign_cases[c].secret, sign_cases[c].id, sign_cases[c].ts,
                                   sign_cases[c].body, strlen(sign_cases[c].body), sig);
        if (e != sign_cases[c].want) fail_msg("%s: %d", sign_cases[c].name, (int)e);
        if (sign_cases[c].sig && strcmp(sig, sign_cases[c].sig))
            fail_msg("%s: %s", sign_cases[c].name, sig);
        if (!e && !sign_cases[c].sig && !strcmp(sig, sign_cases[0].sig))
            fail_msg("%s: same signature", sign_cases[c].name);
    }
}

static const struct {
    const char *spec;
    sk_err want;
    const char *url, *events;
} spec_cases[] = {
    {"https://a.example/hook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SK_OK,
     "https://a.example/hook", NULL},
    {"http://127.0.0.1:8080/x whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw delivered,bounced", SK_OK,
     "http://127.0.0.1:8080/x", "delivered,bounced"},
    {"ftp://a.example/ whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SK_ERR_SYNTAX, NULL, NULL},
    {"https://a.example/hook", SK_ERR_SYNTAX, NULL, NULL},
    {"https://a.example/hook whsec_AAAA", SK_ERR_SYNTAX, NULL, NULL},
    {"https://a.example/hook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw delivred", SK_ERR_SYNTAX, NULL,
     NULL},
    {"https://a.example/hook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw delivered extra", SK_ERR_SYNTAX,
     NULL, NULL},
    {"", SK_ERR_SYNTAX, NULL, NULL},
};

static void test_spec(void **state)
{
    (void)state;
    for (size_t c = 0; c < SKT_N(spec_cases); c++) {
        char *buf = NULL;
        sk_webhook_endpoint ep;
        sk_error err;
        sk_err e = sk_webhook_spec_parse(spec_cases[c].spec, &buf, &ep, &err);
        if (e != spec_cases[c].want) fail_msg("case %zu: %d %s", c, (int)e, err.text);
        if (!e) {
            assert_string_equal(ep.url, spec_cases[c].url);
            if (spec_cases[c].events)
                assert_string_equal(ep.events, spec_cases[c].events);
            else
                assert_null(ep.events);
        } else {
            /* An error never shows the secret. */
            assert_null(strstr(err.text, "MfKQ9r8G"));
        }
        sk_free(buf);
    }
}

/* The event's JSON: without tags and metadata they are empty; with them
 * (as the tracking store keeps them) they are the sender's. */
static const struct {
    const char *tags, *metadata, *tail;
} json_cases[] = {
    {NULL, NULL, "\"tags\":[],\"metadata\":{}}}"},
    {"[\"welcome\",\"ü\"]", "{\"order\":\"42\"}",
     "\"tags\":[\"welcome\",\"\\u00FC\"],\"metadata\":{\"order\":\"42\"}}}"},
};

static void test_event_json(void **state)
{
    (void)state;
    for (size_t c = 0; c < SKT_N(json_cases); c++) {
        sk_track_ev ev = {.time_ms = 1740823202123,
                          .kind = SK_TRACK_BOUNCED,
                          .queue_id = "01ABC",
                          .recipient = "b\"ob@example.net",
                          .attempt = 2,
                          .cls = "bad-mailbox",
                          .tags = json_cases[c].tags,
                          .metadata = json_cases[c].metadata};
        sk_buf b = SK_BUF_INIT(4096);
        assert_int_equal(sk_webhook_event_json(&ev, &b), SK_OK);
        char want[1024];
        snprintf(want, sizeof want, "%s%s",
                 "{\"type\":\"message.bounced\",\"timestamp\":\"2025-03-01T10:00:02Z\","
                 "\"data\":{\"event\":\"bounced\",\"queue_id\":\"01ABC\",\"message_id\":null,"
                 "\"recipient\":\"b\\\"ob@example.net\",\"time_ms\":1740823202123,"
                 "\"attempt\":2,\"remote_host\":null,\"reply\":null,\"tls\":null,"
                 "\"class\":\"bad-mailbox\",",
                 json_cases[c].tail);
        assert_string_equal(sk_buf_cstr(&b), want);
        sk_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_event_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
