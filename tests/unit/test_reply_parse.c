/* Unit tests for the client-side reply parser (src/proto/reply_parse.c):
 * complete, multi-line, malformed, over-long and truncated replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>
#include <stdlib.h>
#include <string.h>

#define DONE 1
#define MORE 0

static const struct {
    const char *name;
    const char *input;
    sk_err err;
    int done;
    int code;
    const char *enhanced;
    const char *text;
    size_t rest; /* input octets left unconsumed */
} cases[] = {
    {"single", "220 mx.example.org ESMTP\r\n", SK_OK, DONE, 220, "", "mx.example.org ESMTP", 0},
    {"code only", "250\r\n", SK_OK, DONE, 250, "", "", 0},
    {"bare LF", "250 ok\n", SK_OK, DONE, 250, "", "ok", 0},
    {"enhanced", "250 2.1.0 Ok\r\n", SK_OK, DONE, 250, "2.1.0", "Ok", 0},
    {"enhanced only", "250 2.0.0\r\n", SK_OK, DONE, 250, "2.0.0", "", 0},
    {"enhanced class mismatch", "550 2.1.0 odd\r\n", SK_OK, DONE, 550, "", "2.1.0 odd", 0},
    {"not enhanced", "250 1.2.3 x\r\n", SK_OK, DONE, 250, "", "1.2.3 x", 0},
    {"multi-line", "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", SK_OK, DONE, 250,
     "", "mx.example.org\nPIPELINING\nSIZE 1000", 0},
    {"multi-line enhanced", "550-5.7.1 Rejected\r\n550-5.7.1 see\r\n550 5.7.1 http://x\r\n", SK_OK,
     DONE, 550, "5.7.1", "Rejected\nsee\nhttp://x", 0},
    {"empty continuation", "250-\r\n250 ok\r\n", SK_OK, DONE, 250, "", "\nok", 0},
    {"pipelined rest kept", "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n", SK_OK, DONE, 250, "2.1.0",
     "Ok", 22},
    {"truncated line", "250 Ok", SK_OK, MORE, 0, "", "", 0},
    {"truncated multi-line", "250-a\r\n250-b\r\n", SK_OK, MORE, 0, "", "", 0},
    {"truncated code", "25", SK_OK, MORE, 0, "", "", 0},
    {"bad code letters", "2x0 no\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
    {"code out of range", "650 no\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
    {"code 1xx", "150 no\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
    {"short code", "25\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
    {"missing space", "250ok\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
    {"mixed codes", "250-a\r\n251 b\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
    {"empty line", "\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
    {"HTTP answer", "HTTP/1.1 400 Bad Request\r\n", SK_ERR_SYNTAX, MORE, 0, "", "", 0},
};

static void test_cases(void **state)
{
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_reply_parser p;
        sk_reply_parser_init(&p);
        sk_reply r;
        memset(&r, 0, sizeof r);
        size_t used = 0;
        int done = -1;
        size_t len = strlen(cases[i].input);
        print_message("case %s\n", cases[i].name);
        sk_err e = sk_reply_parser_feed(&p, cases[i].input, len, &used, &r, &done);
        assert_int_equal(e, cases[i].err);
        if (e == SK_OK) {
            assert_int_equal(done, cases[i].done);
            assert_int_equal(len - used, cases[i].rest);
            if (done) {
                assert_int_equal(r.code, cases[i].code);
                assert_string_equal(r.enhanced, cases[i].enhanced);
                assert_string_equal(r.text, cases[i].text);
                assert_string_equal(sk_reply_parser_text(&p), cases[i].text);
            }
        }
        sk_reply_parser_free(&p);
    }
}

/* Every reply of a pipelined answer, fed one octet at a time, comes out
 * the same as when fed at once. */
static void test_bytewise_and_sequence(void **state)
{
    static const char in[] = "250-mx\r\n250 PIPELINING\r\n250 2.1.0 Ok\r\n550 5.1.1 No\r\n";
    static const struct {
        int code;
        const char *enhanced, *text;
    } want[] = {{250, "", "mx\nPIPELINING"}, {250, "2.1.0", "Ok"}, {550, "5.1.1", "No"}};
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        sk_reply_parser p;
        sk_reply_parser_init(&p);
        size_t off = 0, got = 0, n = sizeof in - 1;
        while (off < n) {
            size_t chunk = bytewise ? 1 : n - off, used;
            int done;
            sk_reply r;
            assert_int_equal(sk_reply_parser_feed(&p, in + off, chunk, &used, &r, &done), SK_OK);
            off += used;
            if (done) {
                assert_true(got < 3);
                assert_int_equal(r.code, want[got].code);
                assert_string_equal(r.enhanced, want[got].enhanced);
                assert_string_equal(r.text, want[got].text);
                got++;
            }
        }
        assert_int_equal(got, 3);
        sk_reply_parser_free(&p);
    }
}

static void test_limits(void **state)
{
    sk_buf b = SK_BUF_INIT(64 * 1024);
    size_t used;
    int done;
    sk_reply r;
    sk_reply_parser p;

    /* A line of exactly the maximum (998 + CRLF) is fine; one more is not. */
    for (int extra = 0; extra < 2; extra++) {
        sk_buf_reset(&b);
        assert_int_equal(sk_buf_puts(&b, "250 "), SK_OK);
        for (size_t i = 4; i < SK_SMTP_REPLY_LINE_MAX_OCTETS - 2 + (size_t)extra; i++)
            assert_int_equal(sk_buf_putc(&b, 'x'), SK_OK);
        assert_int_equal(sk_buf_puts(&b, "\r\n"), SK_OK);
        sk_reply_parser_init(&p);
        sk_err e = sk_reply_parser_feed(&p, b.data, b.len, &used, &r, &done);
        assert_int_equal(e, extra ? SK_ERR_TOO_LONG : SK_OK);
        if (!extra) {
            assert_int_equal(done, 1);
            /* The reply's text is truncated to fit; the parser keeps all. */
            assert_int_equal(strlen(r.text), sizeof r.text - 1 < 994 ? sizeof r.text - 1 : 994);
            assert_int_equal(strlen(sk_reply_parser_text(&p)), 994);
        }
        sk_reply_parser_free(&p);
    }

    /* An endless line without a line end is refused, not buffered. */
    sk_buf_reset(&b);
    for (size_t i = 0; i < 4000; i++) assert_int_equal(sk_buf_putc(&b, '2'), SK_OK);
    sk_reply_parser_init(&p);
    assert_int_equal(sk_reply_parser_feed(&p, b.data, b.len, &used, &r, &done), SK_ERR_TOO_LONG);
    sk_reply_parser_free(&p);

    /* Too many lines. */
    for (int extra = 0; extra < 2; extra++) {
        sk_buf_reset(&b);
        for (int i = 0; i < SK_SMTP_REPLY_MAX_LINES - 1 + extra; i++)
            assert_int_equal(sk_buf_puts(&b, "250-x\r\n"), SK_OK);
        assert_int_equal(sk_buf_puts(&b, "250 end\r\n"), SK_OK);
        sk_reply_parser_init(&p);
        sk_err e = sk_reply_parser_feed(&p, b.data, b.len, &used, &r, &done);
        assert_int_equal(e, extra ? SK_ERR_TOO_LONG : SK_OK);
        if (!extra) assert_int_equal(done, 1);
        sk_reply_parser_free(&p);
    }
    sk_buf_free(&b);
}

/* Fail the Nth allocation for every N: each failure is reported as
 * SK_ERR_NOMEM and nothing leaks (checked under valgrind/ASan). */
static void test_allocation_failures(void **state)
{
    static const char in[] = "250-mx.example.org\r\n250-PIPELINING\r\n250 2.0.0 SIZE 1\r\n";
    int succeeded = 0;
    for (long n = 0; n < 49 && !succeeded; n++) {
        skt_alloc_fail_at(n);
        sk_reply_parser p;
        sk_reply_parser_init(&p);
        size_t used;
        int done;
        sk_reply r;
        sk_err e = sk_reply_parser_feed(&p, in, sizeof in - 1, &used, &r, &done);
        sk_reply_parser_free(&p);
        skt_alloc_end();
        if (e == SK_OK) {
            assert_int_equal(done, 1);
            succeeded = 1;
        } else {
            assert_int_equal(e, SK_ERR_NOMEM);
        }
    }
    assert_true(succeeded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_bytewise_and_sequence),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
