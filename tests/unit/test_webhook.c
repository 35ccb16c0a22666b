/* Unit tests for the webhook module: its pure parts (src/webhook/sign.c:
 * the Standard Webhooks signature against the specification's example,
 * endpoint and --webhook checks, the event's JSON), and endpoint changes,
 * made on the sender's thread and answered on the loop (send.c). */
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

/* The end of a change: what the callback got, and how many times. */
typedef struct change_end {
    int calls;
    sk_err e;
    char text[SK_REPLY_TEXT_MAX_OCTETS];
    struct event_base *base;
} change_end;

static void on_change(void *ctx, sk_err e, const sk_error *err)
{
    change_end *c = ctx;
    c->calls++;
    c->e = e;
    snprintf(c->text, sizeof c->text, "%s", err->text);
    event_base_loopbreak(c->base);
}

/* Run the loop until the change ends (bounded by the loop's own timer). */
static void wait_change(struct event_base *base, change_end *c)
{
    struct timeval limit = {10, 0};
    event_base_loopexit(base, &limit);
    while (!c->calls && !event_base_got_exit(base)) event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(c->calls, 1);
    /* The exit asked for above must not end the next wait at once. */
    event_base_loopbreak(base);
    event_base_loop(base, EVLOOP_NONBLOCK);
}

static const char secret2[] = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

static void test_endpoint_changes(void **state)
{
    (void)state;
    char *dir = skt_tmpdir("webhook");
    char path[256];
    snprintf(path, sizeof path, "%s/track.db", dir);
    sk_error err;
    sk_track *tr = sk_track_open(path, 0, &err); /* creates the tables */
    assert_non_null(tr);
    struct event_base *base = event_base_new();
    sk_webhook_endpoint conf = {.url = "http://127.0.0.1:1/conf", .secret = secret};
    sk_webhooks *w = sk_webhooks_new(
        &(sk_webhooks_opts){.track_path = path, .endpoints = &conf, .nendpoints = 1}, base, &err);
    assert_non_null(w);

    static const struct {
        const char *name;
        char op; /* a add, r remove, c configure */
        const char *url;
        sk_err now, end;  /* returned; given to the callback */
        const char *urls; /* the store's endpoints after it, by source */
    } cases[] = {
        {"added", 'a', "http://127.0.0.1:1/a", SK_OK, SK_OK, "config:/conf api:/a"},
        {"added twice", 'a', "http://127.0.0.1:1/a", SK_OK, SK_ERR_STATE, "config:/conf api:/a"},
        {"a bad URL, refused at once", 'a', "ftp://x/", SK_ERR_SYNTAX, SK_OK,
         "config:/conf api:/a"},
        {"removed", 'r', "http://127.0.0.1:1/a", SK_OK, SK_OK, "config:/conf"},
        {"removed again", 'r', "http://127.0.0.1:1/a", SK_OK, SK_ERR_NOT_FOUND, "config:/conf"},
        {"configuration replaced", 'c', "http://127.0.0.1:1/new", SK_OK, SK_OK, "config:/new"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        change_end c = {.base = base};
        sk_webhook_endpoint ep = {.url = cases[i].url, .secret = secret2, .events = "delivered"};
        sk_err e = cases[i].op == 'a'   ? sk_webhooks_add(w, &ep, on_change, &c, &err)
                   : cases[i].op == 'r' ? sk_webhooks_remove(w, ep.url, on_change, &c, &err)
                                        : sk_webhooks_configure(w, &ep, 1, on_change, &c, &err);
        if (e != cases[i].now) fail_msg("%s: returned %d", cases[i].name, e);
        if (!e) {
            /* Answered on the loop, never from within the call. */
            assert_int_equal(c.calls, 0);
            wait_change(base, &c);
            if (c.e != cases[i].end) fail_msg("%s: ended %d (%s)", cases[i].name, c.e, c.text);
        }
        sk_webhook_state *st;
        size_t n;
        assert_int_equal(sk_webhooks_list(path, &st, &n, &err), SK_OK);
        /* By source then URL: those made in one millisecond have no order. */
        char got[256] = "";
        for (int pass = 0; pass < 2; pass++)
            for (size_t k = 0; k < n; k++)
                if (!strcmp(st[k].source, pass ? "api" : "config"))
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s:%s",
                             *got ? " " : "", st[k].source, strrchr(st[k].url, '/'));
        sk_webhook_states_free(st, n);
        if (strcmp(got, cases[i].urls)) fail_msg("%s: endpoints %s", cases[i].name, got);
        /* No secret in what the caller is told. */
        assert_null(strstr(c.text, "whsec_"));
    }

    /* A change asked for just before the end is made, without its
     * callback (the caller may be gone). */
    change_end c = {.base = base};
    sk_webhook_endpoint late = {.url = "http://127.0.0.1:1/late", .secret = secret2};
    assert_int_equal(sk_webhooks_add(w, &late, on_change, &c, &err), SK_OK);
    sk_webhooks_free(w);
    assert_int_equal(c.calls, 0);
    sk_webhook_state *st;
    size_t n;
    assert_int_equal(sk_webhooks_list(path, &st, &n, &err), SK_OK);
    assert_int_equal(n, 2);
    assert_true(!strcmp(st[0].url, late.url) || !strcmp(st[1].url, late.url));
    sk_webhook_states_free(st, n);

    event_base_free(base);
    sk_track_free(tr);
    skt_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_event_json),
        cmocka_unit_test(test_endpoint_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
