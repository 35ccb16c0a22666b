/* Unit tests for server-side SASL decoding (PLAIN, LOGIN) and crypt(3)
 * password hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include "sasl/sasl_server.h"
#include <smtpkit/smtpkit.h>
#include <stdlib.h>
#include <string.h>

static void test_plain(void **state)
{
    static const struct {
        const char *b64;
        sk_err err;
        const char *authzid, *user, *password;
    } cases[] = {
        {"AHRpbQB0YW5zdGFhZnRhbnN0YWFm", SK_OK, "", "tim", "tanstaaftanstaaf"}, /* RFC 4616 4 */
        {"S3VydABLdXJ0AHNlY3JldA==", SK_OK, "Kurt", "Kurt", "secret"},
        {"AHUAcA==", SK_OK, "", "u", "p"},
        {"AHUA", SK_OK, "", "u", ""},                  /* empty password: the hook decides */
        {"AAB4", SK_ERR_SYNTAX, NULL, NULL, NULL},     /* empty user */
        {"dQBw", SK_ERR_SYNTAX, NULL, NULL, NULL},     /* one NUL */
        {"AHUAcAB4", SK_ERR_SYNTAX, NULL, NULL, NULL}, /* three NULs */
        {"", SK_ERR_SYNTAX, NULL, NULL, NULL},
        {"!!!!", SK_ERR_SYNTAX, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(1000);
        const char *z = NULL, *u = NULL, *p = NULL;
        sk_err e = sk_sasl_server_plain(cases[i].b64, strlen(cases[i].b64), &b, &z, &u, &p);
        if (e != cases[i].err) fail_msg("case %zu: got %d", i, e);
        if (!e) {
            assert_string_equal(z, cases[i].authzid);
            assert_string_equal(u, cases[i].user);
            assert_string_equal(p, cases[i].password);
        }
        sk_buf_free(&b);
    }
}

static void test_login(void **state)
{
    static const struct {
        const char *b64;
        sk_err err;
        const char *out;
    } cases[] = {
        {"dXNlcg==", SK_OK, "user"},
        {"", SK_OK, ""},
        {"dQB4", SK_ERR_SYNTAX, NULL},
        {"dXNlcg", SK_ERR_SYNTAX, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(1000);
        sk_err e = sk_sasl_server_login(cases[i].b64, strlen(cases[i].b64), &b);
        assert_int_equal(e, cases[i].err);
        if (!e) assert_string_equal(sk_buf_cstr(&b), cases[i].out);
        sk_buf_free(&b);
    }
}

static void test_crypt(void **state)
{
    char *h = NULL;
    assert_int_equal(sk_sasl_hash_password("s3cret pw", &h), SK_OK);
    assert_non_null(h);
    assert_true(!strncmp(h, "$y$", 3) || !strncmp(h, "$6$", 3));
    char *h2 = NULL;
    assert_int_equal(sk_sasl_hash_password("s3cret pw", &h2), SK_OK);
    assert_string_not_equal(h, h2); /* random salt */
    static const struct {
        const char *pw;
        int ok;
    } cases[] = {{"s3cret pw", 1}, {"s3cret pw ", 0}, {"", 0}, {"S3cret pw", 0}};
    for (size_t i = 0; i < SKT_N(cases); i++) {
        assert_int_equal(sk_sasl_verify_crypt(cases[i].pw, h), cases[i].ok);
        assert_int_equal(sk_sasl_verify_crypt(cases[i].pw, h2), cases[i].ok);
    }
    /* A fixed sha512crypt hash (glibc's documented format) of "password". */
    static const struct {
        const char *pw, *hash;
        int ok;
    } fixed[] = {
        {"password",
         "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/"
         "jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/",
         1},
        {"password", "*", 0},
        {"password", "!locked", 0},
        {"password", "", 0},
        {"password", "$6$saltsalt$tampered", 0},
    };
    for (size_t i = 0; i < SKT_N(fixed); i++)
        if (sk_sasl_verify_crypt(fixed[i].pw, fixed[i].hash) != fixed[i].ok)
            fail_msg("fixed %zu", i);
    sk_free(h);
    sk_free(h2);
}

/* Allocation-failure sweep: fail the Nth allocation for every N; each call
 * either works or says SK_ERR_NOMEM (and leaks nothing, under ASan). */
static void test_alloc_failures(void **state)
{
    int done = 0;
    for (long n = 0; n < 50 && !done; n++) {
        skt_alloc_fail_from(n);
        sk_buf b = SK_BUF_INIT(1000);
        const char *z, *u, *p;
        sk_err e1 = sk_sasl_server_plain("AHRpbQB0YW5zdGFhZg==", 20, &b, &z, &u, &p);
        assert_true(e1 == SK_OK || e1 == SK_ERR_NOMEM);
        if (e1 == SK_OK) assert_string_equal(p, "tanstaaf");
        sk_buf_free(&b);
        sk_err e2 = sk_sasl_server_login("dXNlcg==", 8, &b);
        assert_true(e2 == SK_OK || e2 == SK_ERR_NOMEM);
        sk_buf_free(&b);
        char *h = NULL;
        sk_err e3 = sk_sasl_hash_password("pw", &h);
        assert_true(e3 == SK_OK || e3 == SK_ERR_NOMEM);
        int v = h ? sk_sasl_verify_crypt("pw", h) : 0;
        sk_free(h);
        done = e1 == SK_OK && e2 == SK_OK && e3 == SK_OK && v;
        skt_alloc_end();
    }
    assert_true(done); /* enough allocations let everything succeed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_crypt),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
