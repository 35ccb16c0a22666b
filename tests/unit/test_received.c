/* Unit tests for the one Received: builder of both transports (Maildir
 * files with LF, relayed messages with CRLF): its exact output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deliver/deliver_int.h"

#define NOW 1700000000 /* Tue, 14 Nov 2023 22:13:20 +0000 */

static void test_received(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    static const struct {
        sk_spool_envelope env;
        const char *id, *rcpt, *eol, *want;
    } cases[] = {
        /* A Maildir file: one recipient, LF. */
        {{.helo = "client.example.org", .peer = "192.0.2.1", .esmtp = 1},
         "01HF3Z4Q7M2ABCDE",
         "bob@example.net",
         "\n",
         "Received: from client.example.org ([192.0.2.1])\n"
         "\tby mx.example.net with ESMTP id 01HF3Z4Q7M2ABCDE\n"
         "\tfor <bob@example.net>; Tue, 14 Nov 2023 22:13:20 +0000\n"},
        /* Relayed to one recipient: the same with CRLF. */
        {{.helo = "client.example.org", .peer = "192.0.2.1", .esmtp = 1},
         "01HF3Z4Q7M2ABCDE",
         "bob@example.net",
         "\r\n",
         "Received: from client.example.org ([192.0.2.1])\r\n"
         "\tby mx.example.net with ESMTP id 01HF3Z4Q7M2ABCDE\r\n"
         "\tfor <bob@example.net>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"},
        /* Relayed to several recipients (RFC 5321 7.2: none named); the
         * peer's DNS name, TLS and AUTH shown. */
        {{.helo = "[IPv6:2001:db8::1]",
          .peer = "IPv6:2001:db8::1",
          .peer_name = "c.example",
          .esmtp = 1,
          .tls = "TLSv1.3 TLS_AES_128_GCM_SHA256",
          .auth_user = "alice"},
         "Q2",
         NULL,
         "\r\n",
         "Received: from [IPv6:2001:db8::1] (c.example [IPv6:2001:db8::1])\r\n"
         "\tby mx.example.net with ESMTPSA (TLSv1.3 TLS_AES_128_GCM_SHA256) id Q2;\r\n"
         "\tTue, 14 Nov 2023 22:13:20 +0000\r\n"},
        /* Nothing known of the client (a message made locally): no TCP-info,
         * and an empty HELO name is "unknown" as a missing one is. */
        {{.helo = ""},
         "Q3",
         "a@b",
         "\r\n",
         "Received: from unknown\r\n"
         "\tby mx.example.net with SMTP id Q3\r\n"
         "\tfor <a@b>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"},
        {{.peer = "198.51.100.7", .peer_name = ""},
         "Q4",
         NULL,
         "\n",
         "Received: from unknown ([198.51.100.7])\n"
         "\tby mx.example.net with SMTP id Q4;\n"
         "\tTue, 14 Nov 2023 22:13:20 +0000\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_buf b = SK_BUF_INIT(4096);
        assert_int_equal(sk_deliver_received(&cases[i].env, cases[i].id, "mx.example.net",
                                             cases[i].rcpt, NOW, cases[i].eol, &b),
                         SK_OK);
        assert_string_equal(sk_buf_cstr(&b), cases[i].want);
        sk_buf_free(&b);
    }
}

/* A buffer too small for the header is an error, never a cut header. */
static void test_received_bounded(void **state)
{
    (void)state;
    sk_spool_envelope env = {.helo = "client.example.org", .peer = "192.0.2.1"};
    sk_buf b = SK_BUF_INIT(40);
    assert_int_equal(
        sk_deliver_received(&env, "Q1", "mx.example.net", "bob@example.net", NOW, "\r\n", &b),
        SK_ERR_TOO_LONG);
    sk_buf_free(&b);
}

/* The fields added at acceptance, with each transport's line ends. */
static void test_added_fields(void **state)
{
    (void)state;
    sk_spool_envelope env = {.prepend =
                                 "DKIM-Signature: v=1; d=example.org;\r\n\tb=abc\r\nX-A: 1\r\n"};
    sk_buf b = SK_BUF_INIT(4096);
    assert_int_equal(sk_deliver_added_fields(&env, "\n", &b), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "DKIM-Signature: v=1; d=example.org;\n\tb=abc\nX-A: 1\n");
    sk_buf_reset(&b);
    assert_int_equal(sk_deliver_added_fields(&env, "\r\n", &b), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), env.prepend);
    sk_buf_reset(&b);
    env.prepend = NULL;
    assert_int_equal(sk_deliver_added_fields(&env, "\n", &b), SK_OK);
    assert_int_equal(b.len, 0);
    sk_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_received),
        cmocka_unit_test(test_received_bounded),
        cmocka_unit_test(test_added_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
