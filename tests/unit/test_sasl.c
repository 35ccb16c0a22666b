/* Unit tests for the SASL client side (src/sasl/sasl_client.c): RFC 4616
 * and RFC 2195 example vectors, XOAUTH2, LOGIN, and mechanism choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>
#include <string.h>

/* RFC 4616 4: the two examples, as octets and as sent (base64). */
static const struct {
    const char *authzid, *user, *password;
    const char *raw;
    size_t raw_len;
    const char *b64;
} plain_cases[] = {
    {NULL, "tim", "tanstaaftanstaaf", "\0tim\0tanstaaftanstaaf", 21,
     "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"},
    {"Ursel", "Kurt", "xipj3plmq", "Ursel\0Kurt\0xipj3plmq", 20, "VXJzZWwAS3VydAB4aXBqM3BsbXE="},
};

static void test_plain_rfc4616(void **state)
{
    for (size_t i = 0; i < SKT_N(plain_cases); i++) {
        sk_buf b = SK_BUF_INIT(SK_SASL_MAX_OCTETS), enc = SK_BUF_INIT(SK_SASL_MAX_OCTETS);
        assert_int_equal(sk_sasl_plain_response(&b, plain_cases[i].authzid, plain_cases[i].user,
                                                plain_cases[i].password),
                         SK_OK);
        assert_int_equal(b.len, plain_cases[i].raw_len);
        assert_memory_equal(b.data, plain_cases[i].raw, b.len);
        assert_int_equal(sk_base64_encode(&enc, b.data, b.len), SK_OK);
        assert_string_equal(sk_buf_cstr(&enc), plain_cases[i].b64);
        sk_buf_free(&b);
        sk_buf_free(&enc);
    }
}

/* RFC 2195 2: the example exchange. */
static void test_cram_md5_rfc2195(void **state)
{
    static const char challenge_b64[] = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";
    sk_buf ch = SK_BUF_INIT(256), b = SK_BUF_INIT(256), enc = SK_BUF_INIT(256);
    assert_int_equal(sk_base64_decode(&ch, challenge_b64, strlen(challenge_b64)), SK_OK);
    assert_string_equal(sk_buf_cstr(&ch), "<1896.697170952@postoffice.reston.mci.net>");
    assert_int_equal(sk_sasl_cram_md5_response(&b, "tim", "tanstaaftanstaaf", ch.data, ch.len),
                     SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "tim b913a602c7eda7a495b4e6e7334d3890");
    assert_int_equal(sk_base64_encode(&enc, b.data, b.len), SK_OK);
    assert_string_equal(sk_buf_cstr(&enc), "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    sk_buf_free(&ch);
    sk_buf_free(&b);
    sk_buf_free(&enc);
}

static void test_xoauth2_and_login(void **state)
{
    sk_buf b = SK_BUF_INIT(256);
    assert_int_equal(sk_sasl_xoauth2_response(&b, "someuser@example.com", "ya29.vF9dft4qmT"),
                     SK_OK);
    assert_string_equal(sk_buf_cstr(&b),
                        "user=someuser@example.com\001auth=Bearer ya29.vF9dft4qmT\001\001");
    sk_buf_reset(&b);
    assert_int_equal(sk_sasl_xoauth2_response(&b, "a\001b", "t"), SK_ERR_INVAL);
    assert_int_equal(sk_sasl_login_response(&b, 0, "zoe", "pw"), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "zoe");
    sk_buf_reset(&b);
    assert_int_equal(sk_sasl_login_response(&b, 1, "zoe", "pw"), SK_OK);
    assert_string_equal(sk_buf_cstr(&b), "pw");
    assert_int_equal(sk_sasl_login_response(&b, 2, "zoe", "pw"), SK_ERR_INVAL);
    assert_int_equal(sk_sasl_plain_response(&b, NULL, NULL, "pw"), SK_ERR_INVAL);
    assert_int_equal(sk_sasl_cram_md5_response(&b, "", "pw", "<x>", 3), SK_ERR_INVAL);
    sk_buf_free(&b);
}

static const struct {
    const char *offered, *wanted;
    int token;
    sk_sasl_mech want;
} choose_cases[] = {
    {"PLAIN LOGIN CRAM-MD5", NULL, 0, SK_SASL_CRAM_MD5},
    {"LOGIN PLAIN", NULL, 0, SK_SASL_PLAIN},
    {"login", NULL, 0, SK_SASL_LOGIN},
    {"GSSAPI NTLM", NULL, 0, SK_SASL_NONE},
    {"", NULL, 0, SK_SASL_NONE},
    {NULL, NULL, 0, SK_SASL_NONE},
    {"PLAIN XOAUTH2", NULL, 1, SK_SASL_XOAUTH2},
    {"PLAIN LOGIN", NULL, 1, SK_SASL_NONE},
    {"PLAIN LOGIN CRAM-MD5", "login", 0, SK_SASL_LOGIN},
    {"PLAIN LOGIN", "CRAM-MD5", 0, SK_SASL_NONE},
    {"PLAIN LOGIN", "SCRAM-SHA-1", 0, SK_SASL_NONE},
    {"PLAIN XOAUTH2", "XOAUTH2", 0, SK_SASL_NONE},
    {"PLAINX LOGINX", NULL, 0, SK_SASL_NONE},
    {"  PLAIN  ", NULL, 0, SK_SASL_PLAIN},
};

static void test_choose(void **state)
{
    for (size_t i = 0; i < SKT_N(choose_cases); i++) {
        print_message("case %zu\n", i);
        assert_int_equal(
            sk_sasl_choose(choose_cases[i].offered, choose_cases[i].wanted, choose_cases[i].token),
            choose_cases[i].want);
    }
    assert_int_equal(sk_sasl_mech_parse("cram-md5"), SK_SASL_CRAM_MD5);
    assert_int_equal(sk_sasl_mech_parse("DIGEST-MD5"), SK_SASL_NONE);
    assert_string_equal(sk_sasl_mech_name(SK_SASL_XOAUTH2), "XOAUTH2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_rfc4616),
        cmocka_unit_test(test_cram_md5_rfc2195),
        cmocka_unit_test(test_xoauth2_and_login),
        cmocka_unit_test(test_choose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
