/* Unit tests for src/mtasts: the _mta-sts TXT record and the policy file
 * (RFC 8461 3.1, 3.2), mx pattern matching (4.1), the _smtp._tls record
 * (RFC 8460 3), and the arguments the policy fetch refuses before any
 * connection. The fetch itself runs against an HTTPS server in
 * tests/integration/test_check_domain.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/mtasts.h>

#include <stdio.h>
#include <string.h>

enum { OK = 0, BAD = 1 };

static void test_record_parse(void **state)
{
    (void)state;
    static const struct {
        const char *txt;
        int bad;
        const char *id;
        unsigned extensions;
        const char *why; /* a part of the reason of a refusal */
    } cases[] = {
        {"v=STSv1; id=20160831085700Z;", OK, "20160831085700Z", 0, NULL},
        {"v=STSv1; id=20160831085700Z", OK, "20160831085700Z", 0, NULL},
        {"v=STSv1;id=abc", OK, "abc", 0, NULL},
        {"v=STSv1 ;\tid=abc ; ", OK, "abc", 0, NULL},
        {"v=STSv1; id=abc; ext=1; x.y-z_w=a:b", OK, "abc", 2, NULL},
        {"v=STSv1; id=12345678901234567890123456789012", OK, "12345678901234567890123456789012", 0,
         NULL},
        /* refused */
        {"", BAD, NULL, 0, "does not begin with v=STSv1"},
        {"v=STSv1", BAD, NULL, 0, "no field"},
        {"v=STSv1;", BAD, NULL, 0, "no field"},
        {"v=STSv1; ext=1", BAD, NULL, 0, "id= is missing"},
        {"v=stsv1; id=abc", BAD, NULL, 0, "does not begin"},
        {"V=STSv1; id=abc", BAD, NULL, 0, "does not begin"},
        {" v=STSv1; id=abc", BAD, NULL, 0, "does not begin"},
        {"v=STSv10; id=abc", BAD, NULL, 0, "expected ';'"},
        {"v=STSv1 id=abc", BAD, NULL, 0, "expected ';'"},
        {"v=STSv1; id=abc ", BAD, NULL, 0, "expected ';'"},
        {"v=STSv1; id=", BAD, NULL, 0, "id= is empty"},
        {"v=STSv1; id=ab-c", BAD, NULL, 0, "letters and digits"},
        {"v=STSv1; id=123456789012345678901234567890123", BAD, NULL, 0, "33 characters"},
        {"v=STSv1; id=a; id=b", BAD, NULL, 0, "id= is given twice"},
        {"v=STSv1; v=STSv1; id=a", BAD, NULL, 0, "v= is given twice"},
        {"v=STSv1; id=a;; ext=1", BAD, NULL, 0, "is not a field"},
        {"v=STSv1; id=a; =1", BAD, NULL, 0, "is not a field"},
        {"v=STSv1; id=a; _x=1", BAD, NULL, 0, "is not a field"},
        {"v=STSv1; id=a; ext=", BAD, NULL, 0, "empty value"},
        {"v=STSv1; id=a; ext=a=b", BAD, NULL, 0, "not allowed"},
        {"v=STSv1; id=a; ext=\x01", BAD, NULL, 0, "not allowed"},
        {"v=STSv1; id=a; abcdefghijabcdefghijabcdefghijabc=1", BAD, NULL, 0, "is not a field"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_mtasts_record r;
        char why[200];
        sk_err e = sk_mtasts_record_parse(cases[i].txt, strlen(cases[i].txt), &r, why, sizeof why);
        if ((e != SK_OK) != cases[i].bad) fail_msg("case %zu \"%s\": %s", i, cases[i].txt, why);
        if (cases[i].bad) {
            assert_int_equal(e, SK_ERR_SYNTAX);
            if (!strstr(why, cases[i].why))
                fail_msg("case %zu \"%s\": reason \"%s\", want \"%s\"", i, cases[i].txt, why,
                         cases[i].why);
            assert_string_equal(r.id, "");
        } else {
            assert_string_equal(r.id, cases[i].id);
            assert_int_equal(r.extensions, cases[i].extensions);
        }
    }
}

static void test_is_record(void **state)
{
    (void)state;
    static const struct {
        const char *txt;
        int mtasts, tlsrpt;
    } cases[] = {
        {"v=STSv1; id=1", 1, 0},
        {"v=STSv1 ;id=1", 1, 0},
        {"v=STSv1", 0, 0},
        {"v=STSv1 id=1", 0, 0},
        {"v=STSv10; id=1", 0, 0},
        {"v=spf1 -all", 0, 0},
        {"v=TLSRPTv1; rua=mailto:a@b", 0, 1},
        {"v=TLSRPTv1;rua=mailto:a@b", 0, 1},
        {"v=TLSRPTv1", 0, 0},
        {"v=tlsrptv1; rua=mailto:a@b", 0, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        size_t n = strlen(cases[i].txt);
        if (sk_mtasts_is_record(cases[i].txt, n) != cases[i].mtasts)
            fail_msg("mta-sts \"%s\"", cases[i].txt);
        if (sk_tlsrpt_is_record(cases[i].txt, n) != cases[i].tlsrpt)
            fail_msg("tls-rpt \"%s\"", cases[i].txt);
    }
    assert_int_equal(sk_mtasts_is_record(NULL, 0), 0);
}

static void test_policy_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int bad;
        sk_mtasts_mode mode;
        uint32_t max_age;
        const char *mx; /* the patterns joined by spaces */
        const char *why;
    } cases[] = {
        /* RFC 8461 3.2's example, CRLF and LF, a final line end or none */
        {"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
         "mx: backupmx.example.com\r\nmax_age: 604800\r\n",
         OK, SK_MTASTS_MODE_ENFORCE, 604800, "mail.example.com *.example.net backupmx.example.com",
         NULL},
        {"version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400", OK,
         SK_MTASTS_MODE_TESTING, 86400, "mx.example.org", NULL},
        {"mx: MX.Example.ORG\nmax_age: 0\nmode: enforce\nversion: STSv1\n", OK,
         SK_MTASTS_MODE_ENFORCE, 0, "mx.example.org", NULL},
        {"version:STSv1\nmode:\tnone \nmax_age: 31557600\n", OK, SK_MTASTS_MODE_NONE, 31557600, "",
         NULL},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 0000000001\nfuture: x y\n"
         "other_ext: caf\xc3\xa9\n",
         OK, SK_MTASTS_MODE_ENFORCE, 1, "a.example", NULL},
        /* unknown fields are ignored, so a field of the wrong case is one */
        {"version: STSv1\nMode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "no mode field"},
        /* refused */
        {"", BAD, 0, 0, NULL, "empty"},
        {"\n", BAD, 0, 0, NULL, "line 1: empty"},
        {"version: STSv1\n\nmode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "line 2: empty"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n\n", BAD, 0, 0, NULL,
         "line 5: empty"},
        {"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "line 1: version \"STSv2\" is not STSv1"},
        {"version : STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "line 1: \"version \" is not a field name"},
        {" version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "is not a field name"},
        {"version: STSv1\nmode: enforcing\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "mode \"enforcing\" is not enforce, testing or none"},
        {"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "is not enforce"},
        {"version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n", BAD, 0, 0,
         NULL, "line 3: a second mode"},
        {"version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0,
         NULL, "a second version"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nmax_age: 2\n", BAD, 0, 0, NULL,
         "a second max_age"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", BAD, 0, 0, NULL,
         "is over 31557600"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 00000000001\n", BAD, 0, 0, NULL,
         "1 to 10 digits"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", BAD, 0, 0, NULL,
         "not a number"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1 week\n", BAD, 0, 0, NULL,
         "not a number"},
        {"version: STSv1\nmode: enforce\nmx: a.example\n", BAD, 0, 0, NULL, "no max_age"},
        {"mode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL, "no version"},
        {"version: STSv1\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL, "no mode"},
        {"version: STSv1\nmode: enforce\nmax_age: 1\n", BAD, 0, 0, NULL,
         "no mx field (mode enforce"},
        {"version: STSv1\nmode: testing\nmax_age: 1\n", BAD, 0, 0, NULL, "no mx field"},
        {"version: STSv1\nmode: enforce\nmx: a.example.\nmax_age: 1\n", BAD, 0, 0, NULL,
         "mx \"a.example.\""},
        {"version: STSv1\nmode: enforce\nmx: *example.org\nmax_age: 1\n", BAD, 0, 0, NULL,
         "is not a host name"},
        {"version: STSv1\nmode: enforce\nmx: a.*.example.org\nmax_age: 1\n", BAD, 0, 0, NULL,
         "is not a host name"},
        {"version: STSv1\nmode: enforce\nmx: *.*.example.org\nmax_age: 1\n", BAD, 0, 0, NULL,
         "is not a host name"},
        {"version: STSv1\nmode: enforce\nmx: -a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "is not a host name"},
        {"version: STSv1\nmode: enforce\nmx: a .example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "is not a host name"},
        {"version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", BAD, 0, 0, NULL, "is not a host name"},
        {"version: STSv1\rmode: enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "line 1: a CR not followed by LF"},
        {"version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n", BAD, 0, 0, NULL,
         "line 2: \"mode enforce\" is not name: value"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\next: a\tb\n", BAD, 0, 0, NULL,
         "the value of ext is not text"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\next: \xc3\x28\n", BAD, 0, 0,
         NULL, "not text"},
        {"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\next:\n", BAD, 0, 0, NULL,
         "not text"},
        {"<html><body>Not found</body></html>\n", BAD, 0, 0, NULL, "is not name: value"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_mtasts_policy p;
        char why[200];
        sk_err e =
            sk_mtasts_policy_parse(cases[i].text, strlen(cases[i].text), &p, why, sizeof why);
        if ((e != SK_OK) != cases[i].bad) fail_msg("case %zu: %s", i, why);
        if (cases[i].bad) {
            assert_int_equal(e, SK_ERR_SYNTAX);
            if (!strstr(why, cases[i].why))
                fail_msg("case %zu: reason \"%s\", want \"%s\"", i, why, cases[i].why);
            assert_int_equal(p.n_mx, 0);
            assert_null(p.mx);
            continue;
        }
        assert_int_equal(p.mode, cases[i].mode);
        assert_int_equal(p.max_age_s, cases[i].max_age);
        char joined[512] = "";
        for (size_t k = 0; k < p.n_mx; k++) {
            if (k) strcat(joined, " ");
            strcat(joined, p.mx[k]);
        }
        if (strcmp(joined, cases[i].mx)) fail_msg("case %zu: mx \"%s\"", i, joined);
        sk_mtasts_policy_clear(&p);
    }
}

static void test_policy_limits(void **state)
{
    (void)state;
    /* SK_MTASTS_MX_MAX patterns parse; one more is refused. */
    sk_buf b = SK_BUF_INIT(SK_MTASTS_POLICY_MAX_OCTETS);
    assert_int_equal(sk_buf_puts(&b, "version: STSv1\nmode: enforce\nmax_age: 86400\n"), SK_OK);
    for (int i = 0; i < SK_MTASTS_MX_MAX; i++)
        assert_int_equal(sk_buf_printf(&b, "mx: mx%d.example.org\n", i), SK_OK);
    sk_mtasts_policy p;
    char why[200];
    assert_int_equal(sk_mtasts_policy_parse(b.data, b.len, &p, why, sizeof why), SK_OK);
    assert_int_equal(p.n_mx, SK_MTASTS_MX_MAX);
    assert_string_equal(p.mx[SK_MTASTS_MX_MAX - 1], "mx255.example.org");
    sk_mtasts_policy_clear(&p);
    assert_int_equal(sk_buf_puts(&b, "mx: one-more.example.org\n"), SK_OK);
    assert_int_equal(sk_mtasts_policy_parse(b.data, b.len, &p, why, sizeof why), SK_ERR_SYNTAX);
    assert_non_null(strstr(why, "more than 256 mx patterns"));
    sk_buf_free(&b);
    /* A NUL inside is refused, not read as an end. */
    static const char nul[] = "version: STSv1\nmode: none\0\nmax_age: 1\n";
    assert_int_equal(sk_mtasts_policy_parse(nul, sizeof nul - 1, &p, why, sizeof why),
                     SK_ERR_SYNTAX);
    assert_non_null(strstr(why, "NUL"));
    /* Allocation failures are reported and leak nothing. */
    static const char ok[] = "version: STSv1\nmode: enforce\nmx: a.example\nmx: *.b.example\n"
                             "mx: c.example\nmax_age: 1\n";
    for (long n = 0;; n++) {
        skt_alloc_fail_at(n);
        sk_err e = sk_mtasts_policy_parse(ok, sizeof ok - 1, &p, why, sizeof why);
        int failed = skt_alloc_failed();
        if (e == SK_OK) sk_mtasts_policy_clear(&p);
        long live = skt_alloc_live();
        skt_alloc_end();
        assert_int_equal(live, 0);
        if (!failed) {
            assert_int_equal(e, SK_OK);
            break;
        }
        assert_int_equal(e, SK_ERR_NOMEM);
    }
}

static void test_mx_match(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *host;
        int match;
    } cases[] = {
        {"mail.example.com", "mail.example.com", 1},
        {"mail.example.com", "MAIL.Example.COM", 1},
        {"mail.example.com", "mail.example.com.", 1},
        {"mail.example.com", "mail.example.co", 0},
        {"mail.example.com", "xmail.example.com", 0},
        {"mail.example.com", "mail.example.com.evil", 0},
        /* RFC 8461 4.1: the wildcard is one leftmost label */
        {"*.example.com", "mail.example.com", 1},
        {"*.example.com", "MX1.EXAMPLE.COM.", 1},
        {"*.example.com", "example.com", 0},
        {"*.example.com", "foo.bar.example.com", 0},
        {"*.example.com", ".example.com", 0},
        {"*.example.com", "mail.example.net", 0},
        {"*.example.com", "mail.xexample.com", 0},
        {"*.example.com", "", 0},
        {"*.example.com", ".", 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_mtasts_mx_match(cases[i].pattern, cases[i].host) != cases[i].match)
            fail_msg("%s against %s", cases[i].pattern, cases[i].host);
    static const char text[] = "version: STSv1\nmode: enforce\nmx: mx1.example.org\n"
                               "mx: *.backup.example.org\nmax_age: 86400\n";
    sk_mtasts_policy p;
    assert_int_equal(sk_mtasts_policy_parse(text, sizeof text - 1, &p, NULL, 0), SK_OK);
    assert_string_equal(sk_mtasts_policy_match(&p, "MX1.example.org"), "mx1.example.org");
    assert_string_equal(sk_mtasts_policy_match(&p, "b2.backup.example.org"),
                        "*.backup.example.org");
    assert_null(sk_mtasts_policy_match(&p, "mx2.example.org"));
    assert_null(sk_mtasts_policy_match(NULL, "mx1.example.org"));
    sk_mtasts_policy_clear(&p);
    assert_string_equal(sk_mtasts_mode_name(SK_MTASTS_MODE_ENFORCE), "enforce");
    assert_string_equal(sk_mtasts_mode_name(SK_MTASTS_MODE_TESTING), "testing");
    assert_string_equal(sk_mtasts_mode_name(SK_MTASTS_MODE_NONE), "none");
}

static void test_tlsrpt_parse(void **state)
{
    (void)state;
    static const struct {
        const char *txt;
        int bad;
        const char *uris; /* "scheme:uri" joined by spaces, scheme m/h/o */
        const char *why;
    } cases[] = {
        {"v=TLSRPTv1; rua=mailto:reports@example.com", OK, "m:mailto:reports@example.com", NULL},
        {"v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt;", OK,
         "h:https://reporting.example.com/v1/tlsrpt", NULL},
        {"v=TLSRPTv1; rua=mailto:a@example.com , https://r.example.com/x?y=1%2C2 ; ext=1", OK,
         "m:mailto:a@example.com h:https://r.example.com/x?y=1%2C2", NULL},
        {"v=TLSRPTv1; rua=MAILTO:a@example.com,HTTPS://r.example.com", OK,
         "m:MAILTO:a@example.com h:HTTPS://r.example.com", NULL},
        {"v=TLSRPTv1; rua=ftp://r.example.com/in", OK, "o:ftp://r.example.com/in", NULL},
        /* refused */
        {"v=TLSRPTv1", BAD, NULL, "no field"},
        {"v=TLSRPTv1;", BAD, NULL, "no field"},
        {"v=TLSRPTv1; ext=1", BAD, NULL, "rua= is missing"},
        {"v=TLSRPTv2; rua=mailto:a@example.com", BAD, NULL, "does not begin"},
        {"v=TLSRPTv10; rua=mailto:a@example.com", BAD, NULL, "expected ';'"},
        {"rua=mailto:a@example.com; v=TLSRPTv1", BAD, NULL, "does not begin"},
        {"v=TLSRPTv1; rua=", BAD, NULL, "is not a URI"},
        {"v=TLSRPTv1; rua=reports@example.com", BAD, NULL, "has no scheme"},
        {"v=TLSRPTv1; rua=mailto:reports", BAD, NULL, "is not a mailto: address"},
        {"v=TLSRPTv1; rua=mailto:@example.com", BAD, NULL, "is not a mailto: address"},
        {"v=TLSRPTv1; rua=https:/r.example.com", BAD, NULL, "is not an https:// URL"},
        {"v=TLSRPTv1; rua=https:///path", BAD, NULL, "is not an https:// URL"},
        {"v=TLSRPTv1; rua=mailto:a!b@example.com", BAD, NULL, "%21"},
        {"v=TLSRPTv1; rua=mailto:a@example.com,", BAD, NULL, "is not a URI"},
        {"v=TLSRPTv1; rua=mailto:a@example.com mailto:b@example.com", BAD, NULL, "expected ';'"},
        {"v=TLSRPTv1; rua=https://r.example.com/%zz", BAD, NULL, "%HH"},
        {"v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", BAD, NULL,
         "rua= is given twice"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_tlsrpt_record r;
        char why[200];
        sk_err e = sk_tlsrpt_record_parse(cases[i].txt, strlen(cases[i].txt), &r, why, sizeof why);
        if ((e != SK_OK) != cases[i].bad) fail_msg("case %zu \"%s\": %s", i, cases[i].txt, why);
        if (cases[i].bad) {
            assert_int_equal(e, SK_ERR_SYNTAX);
            if (!strstr(why, cases[i].why))
                fail_msg("case %zu \"%s\": reason \"%s\", want \"%s\"", i, cases[i].txt, why,
                         cases[i].why);
            assert_int_equal(r.n_rua, 0);
            continue;
        }
        char joined[512] = "";
        for (size_t k = 0; k < r.n_rua; k++) {
            static const char sch[] = {'m', 'h', 'o'};
            size_t o = strlen(joined);
            snprintf(joined + o, sizeof joined - o, "%s%c:%s", k ? " " : "", sch[r.rua[k].scheme],
                     r.rua[k].uri);
        }
        if (strcmp(joined, cases[i].uris)) fail_msg("case %zu: \"%s\"", i, joined);
        sk_tlsrpt_record_clear(&r);
    }
    /* More URIs than kept: refused, nothing left behind. */
    sk_buf b = SK_BUF_INIT(4096);
    assert_int_equal(sk_buf_puts(&b, "v=TLSRPTv1; rua="), SK_OK);
    for (int i = 0; i <= SK_TLSRPT_URIS_MAX; i++)
        assert_int_equal(sk_buf_printf(&b, "%smailto:r%d@example.org", i ? "," : "", i), SK_OK);
    sk_tlsrpt_record r;
    char why[200];
    assert_int_equal(sk_tlsrpt_record_parse(b.data, b.len, &r, why, sizeof why), SK_ERR_SYNTAX);
    assert_non_null(strstr(why, "more than 16 URIs"));
    assert_int_equal(r.n_rua, 0);
    sk_buf_free(&b);
}

static void test_fetch_arguments(void **state)
{
    (void)state;
    static const struct {
        const char *domain, *connect_to, *why;
    } cases[] = {
        {NULL, NULL, "no policy domain"},
        {"", NULL, "is not a domain name"},
        {"exa mple.org", NULL, "is not a domain name"},
        {"example..org", NULL, "is not a domain name"},
        {"example.org", "127.0.0.1", "is not HOST:PORT"},
        {"example.org", "127.0.0.1:", "is not HOST:PORT"},
        {"example.org", "127.0.0.1:44x", "is not HOST:PORT"},
        {"example.org", "::1:443", "is not HOST:PORT"},
        {"example.org", "[::1]443", "is not HOST:PORT"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_mtasts_fetch_opts o = {.domain = cases[i].domain, .connect_to = cases[i].connect_to};
        sk_mtasts_fetch_result r;
        sk_error err;
        sk_error_clear(&err);
        assert_int_equal(sk_mtasts_fetch(&o, &r, &err), SK_ERR_INVAL);
        if (!strstr(err.text, cases[i].why)) fail_msg("case %zu: \"%s\"", i, err.text);
        assert_null(r.body);
    }
    assert_string_equal(sk_mtasts_fetch_status_name(SK_MTASTS_FETCH_OK), "ok");
    assert_string_equal(sk_mtasts_fetch_status_name(SK_MTASTS_FETCH_MEDIA_TYPE), "media-type");
    assert_string_equal(sk_mtasts_fetch_status_name(SK_MTASTS_FETCH__COUNT), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_parse),    cmocka_unit_test(test_is_record),
        cmocka_unit_test(test_policy_parse),    cmocka_unit_test(test_policy_limits),
        cmocka_unit_test(test_mx_match),        cmocka_unit_test(test_tlsrpt_parse),
        cmocka_unit_test(test_fetch_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
