/* Unit tests for src/util: buffer, base64, parsing helpers, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <smtpkit/smtpkit.h>
#include <string.h>

static void test_buf_bounded(void **state)
{
    sk_buf b = SK_BUF_INIT(8);
    assert_int_equal(sk_buf_puts(&b, "12345678"), SK_OK);
    assert_int_equal(b.len, 8);
    assert_string_equal(sk_buf_cstr(&b), "12345678");
    /* One octet over the maximum is an error, and nothing is appended. */
    assert_int_equal(sk_buf_putc(&b, '9'), SK_ERR_TOO_LONG);
    assert_int_equal(b.len, 8);
    sk_buf_consume(&b, 3);
    assert_string_equal(sk_buf_cstr(&b), "45678");
    assert_int_equal(sk_buf_printf(&b, "%d", 123), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "45678123");
    assert_int_equal(sk_buf_printf(&b, "%d", 4), SK_ERR_TOO_LONG);
    sk_buf_free(&b);
    assert_string_equal(sk_buf_cstr(&b), "");
    /* A reserve on an empty buffer leaves a valid empty string. */
    assert_int_equal(sk_buf_reserve(&b, 4), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "");
    sk_buf_free(&b);
}

/* RFC 4648 section 10 test vectors. */
static const struct {
    const char *plain, *encoded;
} b64_cases[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_base64_vectors(void **state)
{
    for (size_t i = 0; i < sizeof b64_cases / sizeof b64_cases[0]; i++) {
        sk_buf b = SK_BUF_INIT(64);
        assert_int_equal(sk_base64_encode(&b, b64_cases[i].plain, strlen(b64_cases[i].plain)),
                         SK_OK);
        assert_string_equal(sk_buf_cstr(&b), b64_cases[i].encoded);
        sk_buf_reset(&b);
        assert_int_equal(sk_base64_decode(&b, b64_cases[i].encoded, strlen(b64_cases[i].encoded)),
                         SK_OK);
        assert_int_equal(b.len, strlen(b64_cases[i].plain));
        assert_memory_equal(sk_buf_cstr(&b), b64_cases[i].plain, b.len);
        sk_buf_free(&b);
    }
}

static void test_base64_rejects(void **state)
{
    static const char *const bad[] = {"Zg=", "Z===", "Zm9v!A==", "Zh==", "Zg==Zg==", "=Zg="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sk_buf b = SK_BUF_INIT(64);
        assert_int_equal(sk_base64_decode(&b, bad[i], strlen(bad[i])), SK_ERR_SYNTAX);
        sk_buf_free(&b);
    }
}

static void test_parse_units(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        uint64_t ms;
    } d[] = {{"5d", SK_OK, 5 * 86400000ull}, {"1m", SK_OK, 60000},     {"30", SK_OK, 30000},
             {"250ms", SK_OK, 250},          {"4h", SK_OK, 14400000},  {"x", SK_ERR_SYNTAX, 0},
             {"5y", SK_ERR_SYNTAX, 0},       {"-1s", SK_ERR_SYNTAX, 0}};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        uint64_t v = 0;
        assert_int_equal(sk_parse_duration_ms(d[i].in, &v), d[i].err);
        if (d[i].err == SK_OK) assert_int_equal(v, d[i].ms);
    }
    uint64_t v;
    assert_int_equal(sk_parse_size("10M", &v), SK_OK);
    assert_int_equal(v, 10u * 1024 * 1024);
    assert_int_equal(sk_parse_size("10Q", &v), SK_ERR_SYNTAX);
}

static void test_enhanced_valid(void **state)
{
    static const struct {
        const char *s;
        int code, ok;
    } c[] = {{"5.1.1", 550, 1}, {"4.7.0", 421, 1},  {"2.0.0", 250, 1}, {"5.1.10", 550, 1},
             {"4.1.1", 550, 0}, {"3.1.1", 0, 0},    {"5.1", 0, 0},     {"5.1.1.1", 0, 0},
             {"5.01.1", 0, 0},  {"5.1000.1", 0, 0}, {"", 0, 0}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        assert_int_equal(sk_enhanced_valid(c[i].s, c[i].code), c[i].ok);
}

/* A reply's class, from its code and from its enhanced status. */
static void test_reply_class(void **state)
{
    static const struct {
        int code;
        sk_reply_class cls;
    } codes[] = {{0, SK_REPLY_INVALID},     {199, SK_REPLY_INVALID},      {200, SK_REPLY_SUCCESS},
                 {299, SK_REPLY_SUCCESS},   {354, SK_REPLY_INTERMEDIATE}, {421, SK_REPLY_TRANSIENT},
                 {499, SK_REPLY_TRANSIENT}, {500, SK_REPLY_PERMANENT},    {599, SK_REPLY_PERMANENT},
                 {600, SK_REPLY_INVALID}};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        assert_int_equal(sk_reply_class_of(codes[i].code), codes[i].cls);
    static const struct {
        const char *enhanced;
        sk_reply_class cls;
    } enh[] = {{"2.0.0", SK_REPLY_SUCCESS},   {"4.7.1", SK_REPLY_TRANSIENT},
               {"5.1.1", SK_REPLY_PERMANENT}, {"3.0.0", SK_REPLY_INVALID},
               {"", SK_REPLY_INVALID},        {NULL, SK_REPLY_INVALID}};
    for (size_t i = 0; i < sizeof enh / sizeof enh[0]; i++)
        assert_int_equal(sk_enhanced_class(enh[i].enhanced), enh[i].cls);
}

/* A reply's one-line form, and back. */
static void test_reply_line(void **state)
{
    static const struct {
        sk_reply r;
        const char *line;
        sk_reply back; /* what the line reads back as */
    } c[] = {
        {{550, "5.1.1", "no such user"}, "550 5.1.1 no such user", {550, "5.1.1", "no such user"}},
        {{250, "", "ok"}, "250 ok", {250, "", "ok"}},
        {{451, "4.7.1", "greylisted\ntry later"},
         "451 4.7.1 greylisted try later",
         {451, "4.7.1", "greylisted try later"}},
        /* An enhanced status of another class than the code stays text. */
        {{550, "4.1.1", "odd"}, "550 4.1.1 odd", {550, "", "4.1.1 odd"}},
        {{421, "", ""}, "421 ", {421, "", ""}},
        {{0, "", "no reply"}, "0 no reply", {0, "", "0 no reply"}},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        sk_buf b = SK_BUF_INIT(2048);
        assert_int_equal(sk_reply_to_line(&c[i].r, &b), SK_OK);
        assert_string_equal(sk_buf_cstr(&b), c[i].line);
        sk_reply back;
        sk_reply_from_line(sk_buf_cstr(&b), &back);
        assert_int_equal(back.code, c[i].back.code);
        assert_string_equal(back.enhanced, c[i].back.enhanced);
        assert_string_equal(back.text, c[i].back.text);
        sk_buf_free(&b);
    }
    static const struct {
        const char *line;
        int code;
        const char *enhanced, *text;
    } in[] = {{"554", 554, "", ""},
              {"5.1.1 no code", 0, "5.1.1", "no code"},
              {"55 short", 0, "", "55 short"},
              {"550-5.1.1 continued", 0, "", "550-5.1.1 continued"}};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        sk_reply r;
        sk_reply_from_line(in[i].line, &r);
        assert_int_equal(r.code, in[i].code);
        assert_string_equal(r.enhanced, in[i].enhanced);
        assert_string_equal(r.text, in[i].text);
    }
    sk_reply r = {.code = 1};
    sk_reply_from_line(NULL, &r);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.text, "");
}

static void test_errors_named(void **state)
{
    for (int e = 0; e < SK_ERR__COUNT; e++) assert_non_null(sk_strerror((sk_err)e));
    assert_string_equal(sk_step_name(SK_STEP_RCPT), "RCPT");
    sk_error err;
    assert_int_equal(sk_error_set(&err, SK_ERR_TIMEOUT, SK_STEP_DATA, "after %d s", 3),
                     SK_ERR_TIMEOUT);
    assert_true(err.transient);
    assert_string_equal(err.text, "after 3 s");
}

static void test_log_escape(void **state)
{
    sk_buf b = SK_BUF_INIT(64);
    assert_int_equal(sk_log_escape(&b, "a\r\n\"\\\xc3", 6), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "a\\x0d\\x0a\\\"\\\\\\xc3");
    sk_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_bounded),    cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_rejects), cmocka_unit_test(test_parse_units),
        cmocka_unit_test(test_enhanced_valid), cmocka_unit_test(test_reply_class),
        cmocka_unit_test(test_reply_line),     cmocka_unit_test(test_errors_named),
        cmocka_unit_test(test_log_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
