/* Unit tests for src/dmarc: record parsing, domains (normalization, the
 * Public Suffix List, alignment), the From domain of a header block, the
 * whole check driven with DNS answers from a table (the state machine of
 * dmarc_int.h), and the evented and blocking checkers against
 * tests/integration/dns_server.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include "dmarc/dmarc_int.h"
#include <smtpkit/dmarc.h>

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- records ---- */

enum { OK = 0, BAD = 1 };
#define BADREC(t)                                                                                  \
    {                                                                                              \
        t, BAD, 0, 0, 0, 0, 0, 0, 0, 0, 0                                                          \
    }

static void test_record_parse(void **state)
{
    static const struct {
        const char *txt;
        int bad;
        sk_dmarc_policy p, sp, np;
        int adkim_s, aspf_s;
        unsigned pct;
        size_t n_rua, n_ruf;
        unsigned problems;
    } cases[] = {
        /* the minimum, and defaults */
        {"v=DMARC1; p=none", OK, 0, 0, 0, 0, 0, 100, 0, 0, 0},
        {"v=DMARC1;p=reject", OK, 2, 2, 2, 0, 0, 100, 0, 0, 0},
        {"v=DMARC1; p=reject;", OK, 2, 2, 2, 0, 0, 100, 0, 0, 0},
        {"  v = DMARC1 ;  p = quarantine ; ", OK, 1, 1, 1, 0, 0, 100, 0, 0, 0},
        /* tag names and keywords are case-insensitive, DMARC1 is not */
        {"V=DMARC1; P=Reject; SP=NONE; ADKIM=S", OK, 2, 0, 0, 1, 0, 100, 0, 0, 0},
        BADREC("v=dmarc1; p=reject"),
        BADREC("v=DMARC1x; p=reject"),
        BADREC("v=DMARC2; p=reject"),
        BADREC("p=reject; v=DMARC1"),
        BADREC("v=DMARC1 p=reject"),
        BADREC(""),
        /* sp, np (RFC 9091), alignment, pct */
        {"v=DMARC1; p=reject; sp=quarantine; np=none", OK, 2, 1, 0, 0, 0, 100, 0, 0, 0},
        {"v=DMARC1; p=reject; np=quarantine", OK, 2, 2, 1, 0, 0, 100, 0, 0, 0},
        {"v=DMARC1; p=none; sp=reject", OK, 0, 2, 2, 0, 0, 100, 0, 0, 0},
        {"v=DMARC1; p=reject; adkim=s; aspf=s; pct=25", OK, 2, 2, 2, 1, 1, 25, 0, 0, 0},
        {"v=DMARC1; p=reject; pct=0", OK, 2, 2, 2, 0, 0, 0, 0, 0, 0},
        {"v=DMARC1; p=reject; pct=100", OK, 2, 2, 2, 0, 0, 100, 0, 0, 0},
        /* invalid optional values: defaults, and the problem noted */
        {"v=DMARC1; p=reject; pct=101", OK, 2, 2, 2, 0, 0, 100, 0, 0, SK_DMARC_REC_PCT_INVALID},
        {"v=DMARC1; p=reject; pct=-1", OK, 2, 2, 2, 0, 0, 100, 0, 0, SK_DMARC_REC_PCT_INVALID},
        {"v=DMARC1; p=reject; pct=0050", OK, 2, 2, 2, 0, 0, 100, 0, 0, SK_DMARC_REC_PCT_INVALID},
        {"v=DMARC1; p=reject; adkim=x; aspf=relaxed", OK, 2, 2, 2, 0, 0, 100, 0, 0,
         SK_DMARC_REC_ADKIM_INVALID | SK_DMARC_REC_ASPF_INVALID},
        {"v=DMARC1; p=reject; np=maybe", OK, 2, 2, 2, 0, 0, 100, 0, 0, SK_DMARC_REC_NP_INVALID},
        {"v=DMARC1; p=reject; ri=x; fo=2; rf=x_y", OK, 2, 2, 2, 0, 0, 100, 0, 0,
         SK_DMARC_REC_RI_INVALID | SK_DMARC_REC_FO_INVALID | SK_DMARC_REC_RF_INVALID},
        /* unknown tags are ignored (6.3) */
        {"v=DMARC1; p=reject; t=y; psd=n", OK, 2, 2, 2, 0, 0, 100, 0, 0, SK_DMARC_REC_UNKNOWN_TAG},
        /* reporting URIs, with sizes; invalid ones dropped */
        {"v=DMARC1; p=none; rua=mailto:a@example.org", OK, 0, 0, 0, 0, 0, 100, 1, 0, 0},
        {"v=DMARC1; p=none; rua=mailto:a@example.org!10m, mailto:b@example.net; "
         "ruf=mailto:f@example.org",
         OK, 0, 0, 0, 0, 0, 100, 2, 1, 0},
        {"v=DMARC1; p=none; rua=mailto:a@example.org, not a uri", OK, 0, 0, 0, 0, 0, 100, 1, 0,
         SK_DMARC_REC_RUA_INVALID},
        {"v=DMARC1; p=none; rua=mailto:a@example.org!99999999999999999999999", OK, 0, 0, 0, 0, 0,
         100, 0, 0, SK_DMARC_REC_RUA_INVALID},
        {"v=DMARC1; p=none; rua=mailto:a@example.org!17179869184t", OK, 0, 0, 0, 0, 0, 100, 0, 0,
         SK_DMARC_REC_RUA_INVALID},
        {"v=DMARC1; p=none; rua=mailto:a@example.org!5x", OK, 0, 0, 0, 0, 0, 100, 0, 0,
         SK_DMARC_REC_RUA_INVALID},
        /* p= missing, invalid or not second: p=none with a valid rua (6.6.3),
         * unusable without */
        BADREC("v=DMARC1"),
        BADREC("v=DMARC1;"),
        BADREC("v=DMARC1; p=block"),
        {"v=DMARC1; p=block; rua=mailto:d@example.org", OK, 0, 0, 0, 0, 0, 100, 1, 0,
         SK_DMARC_REC_P_INVALID},
        {"v=DMARC1; rua=mailto:d@example.org", OK, 0, 0, 0, 0, 0, 100, 1, 0,
         SK_DMARC_REC_P_INVALID},
        {"v=DMARC1; rua=mailto:d@example.org; p=reject", OK, 0, 0, 0, 0, 0, 100, 1, 0,
         SK_DMARC_REC_P_INVALID | SK_DMARC_REC_P_NOT_SECOND},
        BADREC("v=DMARC1; sp=reject; p=reject"),
        /* an invalid sp= makes the record p=none (6.6.3) */
        BADREC("v=DMARC1; p=reject; sp=bogus"),
        {"v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.org", OK, 0, 0, 0, 0, 0, 100, 1, 0,
         SK_DMARC_REC_SP_INVALID},
        /* the tag-list: duplicates and malformed tags make it unusable */
        BADREC("v=DMARC1; p=reject; p=none"),
        BADREC("v=DMARC1; p=reject; PCT=5; pct=5"),
        BADREC("v=DMARC1; p=reject; x=1; X=2"),
        BADREC("v=DMARC1; p=reject; v=DMARC1"),
        BADREC("v=DMARC1; p=reject; novalue"),
        BADREC("v=DMARC1; p=reject; 9x=1"),
        BADREC("v=DMARC1; p=reject; =1"),
        /* empty tag-specs between separators are tolerated */
        {"v=DMARC1;; p=reject;;", OK, 2, 2, 2, 0, 0, 100, 0, 0, 0},
        /* control or non-ASCII octets in a value make that value invalid */
        {"v=DMARC1; p=reject; pct=5\x01", OK, 2, 2, 2, 0, 0, 100, 0, 0, SK_DMARC_REC_PCT_INVALID},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_dmarc_record r;
        const char *why = NULL;
        sk_err e = sk_dmarc_record_parse(cases[i].txt, strlen(cases[i].txt), &r, &why);
        if (cases[i].bad) {
            if (e != SK_ERR_SYNTAX) fail_msg("case %zu (%s): parsed", i, cases[i].txt);
            if (!why) fail_msg("case %zu: no reason", i);
            continue;
        }
        if (e != SK_OK) fail_msg("case %zu (%s): %s", i, cases[i].txt, why);
        if (r.p != cases[i].p || r.sp != cases[i].sp || r.np != cases[i].np)
            fail_msg("case %zu (%s): p=%d sp=%d np=%d", i, cases[i].txt, r.p, r.sp, r.np);
        if ((int)r.adkim != cases[i].adkim_s || (int)r.aspf != cases[i].aspf_s)
            fail_msg("case %zu: alignment %d %d", i, r.adkim, r.aspf);
        if (r.pct != cases[i].pct) fail_msg("case %zu: pct %u", i, r.pct);
        if (r.n_rua != cases[i].n_rua || r.n_ruf != cases[i].n_ruf)
            fail_msg("case %zu: rua %zu ruf %zu", i, r.n_rua, r.n_ruf);
        if (r.problems != cases[i].problems)
            fail_msg("case %zu (%s): problems %#x, want %#x", i, cases[i].txt, r.problems,
                     cases[i].problems);
        sk_dmarc_record_clear(&r);
    }
}

static void test_record_values(void **state)
{
    static const char txt[] =
        "v=DMARC1; p=quarantine; rua=mailto:agg@example.org!10m,https://r.example.net/x%20y; "
        "ruf=mailto:f@example.org!1k; fo=1:d : s; rf=afrf:iodef; ri=3600";
    sk_dmarc_record r;
    assert_int_equal(sk_dmarc_record_parse(txt, strlen(txt), &r, NULL), SK_OK);
    assert_int_equal(r.n_rua, 2);
    assert_string_equal(r.rua[0].uri, "mailto:agg@example.org");
    assert_true(r.rua[0].max_octets == 10u * 1024 * 1024);
    assert_string_equal(r.rua[1].uri, "https://r.example.net/x%20y");
    assert_true(r.rua[1].max_octets == 0);
    assert_true(r.ruf[0].max_octets == 1024);
    assert_int_equal(r.fo, SK_DMARC_FO_1 | SK_DMARC_FO_D | SK_DMARC_FO_S);
    assert_int_equal(r.rf, SK_DMARC_RF_AFRF);
    assert_int_equal(r.ri, 3600);
    sk_dmarc_record_clear(&r);
    /* More URIs than kept: the first SK_DMARC_URIS_MAX. */
    sk_buf b = SK_BUF_INIT(4096);
    assert_int_equal(sk_buf_puts(&b, "v=DMARC1; p=none; rua="), SK_OK);
    for (int i = 0; i < SK_DMARC_URIS_MAX + 3; i++)
        assert_int_equal(sk_buf_printf(&b, "%smailto:r%d@example.org", i ? "," : "", i), SK_OK);
    assert_int_equal(sk_dmarc_record_parse(b.data, b.len, &r, NULL), SK_OK);
    assert_int_equal(r.n_rua, SK_DMARC_URIS_MAX);
    assert_int_equal(r.problems, 0);
    sk_dmarc_record_clear(&r);
    sk_buf_free(&b);
    /* Too long. */
    char big[SK_DMARC_RECORD_MAX_OCTETS + 32];
    memset(big, 'a', sizeof big);
    memcpy(big, "v=DMARC1; p=none; x=", 20);
    assert_int_equal(sk_dmarc_record_parse(big, sizeof big, &r, NULL), SK_ERR_TOO_LONG);
}

static void test_is_record(void **state)
{
    static const struct {
        const char *txt;
        int is;
    } cases[] = {
        {"v=DMARC1; p=none", 1},  {"v=DMARC1", 1},
        {" v = DMARC1;", 1},      {"V=DMARC1;p=none", 1},
        {"v=DMARC1 ;", 1},        {"v=DMARC10; p=none", 0},
        {"v=dmarc1; p=none", 0},  {"v=spf1 -all", 0},
        {"p=none; v=DMARC1", 0},  {"", 0},
        {"google-site-verif", 0}, {"v=", 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_dmarc_is_record(cases[i].txt, strlen(cases[i].txt)) != cases[i].is)
            fail_msg("case %zu (%s)", i, cases[i].txt);
}

/* ---- domains ---- */

static void test_normalize(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: SK_ERR_SYNTAX */
    } cases[] = {
        {"Example.ORG", "example.org"},
        {"example.org.", "example.org"},
        {"mail-1.example.org", "mail-1.example.org"},
        {"bücher.example", "xn--bcher-kva.example"},
        {"BÜCHER.example", "xn--bcher-kva.example"},
        {"пример.рф", "xn--e1afmkfd.xn--p1ai"},
        {"xn--e1afmkfd.XN--P1AI", "xn--e1afmkfd.xn--p1ai"},
        {"", NULL},
        {".", NULL},
        {"a..b", NULL},
        {".example.org", NULL},
        {"[192.0.2.1]", NULL},
        {"exa mple.org", NULL},
        {"a@b.org", NULL},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org", NULL}, /* 64 */
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
        sk_err e = sk_dmarc_domain_normalize(cases[i].in, out);
        if (!cases[i].out) {
            if (e != SK_ERR_SYNTAX) fail_msg("case %zu (%s): accepted as %s", i, cases[i].in, out);
        } else if (e != SK_OK || strcmp(out, cases[i].out)) {
            fail_msg("case %zu (%s): %d %s", i, cases[i].in, e, e ? "" : out);
        }
    }
}

static void test_org_domain(void **state)
{
    assert_non_null(sk_dmarc_psl_source());
    static const struct {
        const char *in, *org;
    } cases[] = {
        {"example.com", "example.com"},
        {"mail.example.com", "example.com"},
        {"a.b.c.example.com", "example.com"},
        {"MAIL.Example.COM.", "example.com"},
        /* two-label public suffixes */
        {"example.co.uk", "example.co.uk"},
        {"a.b.example.co.uk", "example.co.uk"},
        {"co.uk", "co.uk"}, /* a public suffix stands for itself */
        {"com", "com"},
        /* wildcard and exception rules (*.kawasaki.jp, !city.kawasaki.jp) */
        {"a.b.kawasaki.jp", "a.b.kawasaki.jp"},
        {"x.city.kawasaki.jp", "city.kawasaki.jp"},
        /* the private section: each blogspot.com / github.io name is its own */
        {"foo.blogspot.com", "foo.blogspot.com"},
        {"www.foo.blogspot.com", "foo.blogspot.com"},
        {"user.github.io", "user.github.io"},
        /* IDN: U-labels and A-labels alike */
        {"mail.пример.рф", "xn--e1afmkfd.xn--p1ai"},
        {"mail.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"},
        /* a TLD the list does not know: the default rule "*" */
        {"mail.example.test", "example.test"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
        sk_err e = sk_dmarc_org_domain(cases[i].in, out);
        if (e != SK_OK || strcmp(out, cases[i].org))
            fail_msg("case %zu (%s): %d %s, want %s", i, cases[i].in, e, e ? "" : out,
                     cases[i].org);
    }
    char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1];
    assert_int_equal(sk_dmarc_org_domain("a..b", out), SK_ERR_SYNTAX);
}

static void test_aligned(void **state)
{
    enum { R = SK_DMARC_ALIGN_RELAXED, S = SK_DMARC_ALIGN_STRICT };
    static const struct {
        const char *from, *auth;
        int mode, aligned;
    } cases[] = {
        {"example.com", "example.com", S, 1},
        {"example.com", "EXAMPLE.com.", S, 1},
        {"example.com", "mail.example.com", S, 0},
        {"example.com", "mail.example.com", R, 1},
        {"news.example.com", "bounce.example.com", R, 1},
        {"news.example.com", "bounce.example.com", S, 0},
        {"example.com", "example.net", R, 0},
        {"example.com", "badexample.com", R, 0},
        {"example.com", "com", R, 0},
        {"a.example.co.uk", "b.example.co.uk", R, 1},
        {"example.co.uk", "other.co.uk", R, 0},
        {"example.co.uk", "co.uk", R, 0},
        {"foo.blogspot.com", "bar.blogspot.com", R, 0},
        {"www.foo.blogspot.com", "foo.blogspot.com", R, 1},
        {"пример.рф", "xn--e1afmkfd.xn--p1ai", S, 1},
        {"mail.пример.рф", "xn--e1afmkfd.xn--p1ai", R, 1},
        {"example.com", "", R, 0},
        {"example.com", "[192.0.2.1]", R, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_dmarc_aligned(cases[i].from, cases[i].auth, cases[i].mode) != cases[i].aligned)
            fail_msg("case %zu (%s / %s)", i, cases[i].from, cases[i].auth);
}

static void test_from_domain(void **state)
{
    static const struct {
        const char *headers;
        sk_err e;
        const char *domain;
    } cases[] = {
        {"From: a@example.org\r\nTo: b@example.net\r\n\r\nbody", SK_OK, "example.org"},
        {"from: \"Doe, J\" <j@Mail.Example.ORG>\n\n", SK_OK, "mail.example.org"},
        {"Subject: x\r\nFrom:\r\n =?UTF-8?Q?Zo=C3=AB?=\r\n <zoe@example.org>\r\n\r\n", SK_OK,
         "example.org"},
        {"From : a@example.org\r\n\r\n", SK_OK, "example.org"},
        {"From: a@example.org (comment), b@EXAMPLE.org\r\n\r\n", SK_OK, "example.org"},
        {"From: zoë@bücher.example\r\n\r\n", SK_OK, "xn--bcher-kva.example"},
        /* a From in the body does not count */
        {"To: b@example.net\r\n\r\nFrom: a@example.org\r\n", SK_ERR_NOT_FOUND, NULL},
        {"To: b@example.net\r\n", SK_ERR_NOT_FOUND, NULL},
        {"", SK_ERR_NOT_FOUND, NULL},
        {"From: a@example.org\r\nFrom: a@example.org\r\n\r\n", SK_ERR_SYNTAX, NULL},
        {"From: a@example.org\r\nfrom: b@evil.example\r\n\r\n", SK_ERR_SYNTAX, NULL},
        {"From: a@example.org, b@evil.example\r\n\r\n", SK_ERR_SYNTAX, NULL},
        {"From: a@[192.0.2.1]\r\n\r\n", SK_ERR_SYNTAX, NULL},
        {"From: undisclosed:;\r\n\r\n", SK_ERR_SYNTAX, NULL},
        {"From: not an address\r\n\r\n", SK_ERR_SYNTAX, NULL},
        {"From:\r\n\r\n", SK_ERR_SYNTAX, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char out[SK_SMTP_DOMAIN_MAX_OCTETS + 1] = "";
        const char *why = NULL;
        sk_err e = sk_dmarc_from_domain(cases[i].headers, strlen(cases[i].headers), out, &why);
        if (e != cases[i].e) fail_msg("case %zu: %d (%s)", i, e, why ? why : "");
        if (e == SK_OK && strcmp(out, cases[i].domain)) fail_msg("case %zu: %s", i, out);
        if (e != SK_OK && !why) fail_msg("case %zu: no reason", i);
    }
}

/* ---- the check, with DNS answers from a table ---- */

typedef struct rr {
    const char *name;
    sk_dns_type type;
    const char *values[4]; /* NULL-terminated */
} rr;

/* A zone: names in it answer their records (NODATA for other types);
 * "servfail" in a name's first record makes it fail; other names are
 * NXDOMAIN. */
static sk_dns_result zone_answer(const rr *zone, const char *name, sk_dns_type type, char **vals)
{
    sk_dns_result res = {.status = SK_DNS_NXDOMAIN, .type = type, .name = name, .values = vals};
    for (const rr *r = zone; r && r->name; r++) {
        if (strcmp(r->name, name)) continue;
        if (r->values[0] && !strcmp(r->values[0], "servfail")) {
            res.status = SK_DNS_TEMPFAIL;
            return res;
        }
        if (res.status == SK_DNS_NXDOMAIN) res.status = SK_DNS_NODATA;
        if (r->type != type) continue;
        res.status = SK_DNS_OK;
        for (size_t i = 0; i < 4 && r->values[i]; i++) vals[res.count++] = (char *)r->values[i];
    }
    return res;
}

static size_t fixed_rand(void *ctx, size_t n)
{
    size_t *v = ctx;
    assert_int_equal(n, 100);
    v[1]++;
    return v[0];
}

#define P    SK_DMARC_AUTH_PASS
#define F    SK_DMARC_AUTH_FAIL
#define T    SK_DMARC_AUTH_TEMPERROR
#define NONE SK_DMARC_POLICY_NONE
#define QUAR SK_DMARC_POLICY_QUARANTINE
#define REJ  SK_DMARC_POLICY_REJECT

static const rr zone[] = {
    {"_dmarc.example.org",
     SK_DNS_TXT,
     {"v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.org"}},
    {"_dmarc.example.org", SK_DNS_TXT, {"v=spf1 -all"}}, /* other TXT records are ignored */
    {"example.org", SK_DNS_A, {"192.0.2.1"}},
    {"_dmarc.own.example.org", SK_DNS_TXT, {"v=DMARC1; p=none"}},
    {"_dmarc.strict.test", SK_DNS_TXT, {"v=DMARC1; p=reject; adkim=s; aspf=s"}},
    {"_dmarc.half.test", SK_DNS_TXT, {"v=DMARC1; p=reject; pct=50"}},
    {"_dmarc.quar.test", SK_DNS_TXT, {"v=DMARC1; p=quarantine; pct=10"}},
    {"_dmarc.zero.test", SK_DNS_TXT, {"v=DMARC1; p=reject; pct=0"}},
    {"_dmarc.two.test", SK_DNS_TXT, {"v=DMARC1; p=reject", "v=DMARC1; p=none"}},
    {"_dmarc.sub.two.test", SK_DNS_TXT, {"v=spf1 -all"}},
    {"_dmarc.broken.test", SK_DNS_TXT, {"v=DMARC1; p=reject; p=none"}},
    {"_dmarc.nop.test", SK_DNS_TXT, {"v=DMARC1; rua=mailto:r@nop.test"}},
    {"_dmarc.fail.test", SK_DNS_TXT, {"servfail"}},
    {"_dmarc.subfail.test", SK_DNS_TXT, {"v=DMARC1; p=reject"}},
    {"_dmarc.x.subfail.test", SK_DNS_TXT, {"servfail"}},
    {"_dmarc.example.co.uk", SK_DNS_TXT, {"v=DMARC1; p=reject"}},
    {"_dmarc.co.uk", SK_DNS_TXT, {"v=DMARC1; p=none"}},
    /* np= (RFC 9091): real.np.test exists, mx.np.test has only MX,
     * nodata.np.test has no records at all, gone.np.test is NXDOMAIN */
    {"_dmarc.np.test", SK_DNS_TXT, {"v=DMARC1; p=none; sp=quarantine; np=reject"}},
    {"real.np.test", SK_DNS_AAAA, {"2001:db8::1"}},
    {"mx.np.test", SK_DNS_MX, {"10 mx.np.test"}},
    {"nodata.np.test", SK_DNS_TXT, {"hello"}},
    {"temp.np.test", SK_DNS_A, {"servfail"}},
    {"_dmarc.xn--e1afmkfd.xn--p1ai", SK_DNS_TXT, {"v=DMARC1; p=reject"}},
    {"_dmarc.blogspot.com", SK_DNS_TXT, {"v=DMARC1; p=reject"}},
    {"_dmarc.foo.blogspot.com", SK_DNS_TXT, {"v=DMARC1; p=quarantine"}},
    {NULL},
};

/* "pass:example.org fail:x.test" into identifiers (words of spec). */
static size_t parse_ids(const char *spec, char store[][64], sk_dmarc_auth_id *ids, size_t max)
{
    size_t n = 0;
    const char *p = spec;
    while (*p && n < max) {
        size_t len = strcspn(p, " ");
        snprintf(store[n], 64, "%.*s", (int)len, p);
        char *colon = strchr(store[n], ':');
        assert_non_null(colon);
        *colon = '\0';
        sk_dmarc_auth a = !strcmp(store[n], "pass")        ? SK_DMARC_AUTH_PASS
                          : !strcmp(store[n], "temperror") ? SK_DMARC_AUTH_TEMPERROR
                                                           : SK_DMARC_AUTH_FAIL;
        ids[n] = (sk_dmarc_auth_id){a, colon + 1};
        n++;
        p += len;
        while (*p == ' ') p++;
    }
    return n;
}

/* Each row: the From domain, SPF ("RESULT:DOMAIN" or ""), DKIM signatures
 * (the same, several), what the random source answers, the expected
 * "STATUS TAG=POLICY/DISPOSITION", the queries made ("TYPE NAME," each;
 * "" for not checked) and a part of the reason. */
static const struct {
    const char *from, *spf, *dkim;
    size_t rnd;
    const char *want, *queries, *reason;
} check_cases[] = {
    /* SPF alignment, relaxed by default */
    {"example.org", "pass:example.org", "", 0, "pass p=reject/none", "16 _dmarc.example.org,",
     "SPF example.org aligned (relaxed)"},
    {"example.org", "pass:bounce.example.org", "", 0, "pass p=reject/none", "", "aligned"},
    {"example.org", "pass:example.net", "", 0, "fail p=reject/reject", "16 _dmarc.example.org,",
     "no aligned pass"},
    {"example.org", "fail:example.org", "", 0, "fail p=reject/reject", "", NULL},
    /* DKIM alignment: any passing aligned signature */
    {"example.org", "fail:example.org", "fail:example.org pass:mail.example.org", 0,
     "pass p=reject/none", "", "DKIM d=mail.example.org aligned"},
    {"example.org", "", "pass:esp.example pass:example.org", 0, "pass p=reject/none", "",
     "d=example.org"},
    {"example.org", "", "pass:esp.example", 0, "fail p=reject/reject", "", NULL},
    {"example.org", "pass:example.org", "pass:example.org", 0, "pass p=reject/none", "",
     "DKIM d=example.org and SPF example.org aligned"},
    /* strict alignment */
    {"strict.test", "pass:strict.test", "", 0, "pass p=reject/none", "", NULL},
    {"strict.test", "pass:mail.strict.test", "pass:mail.strict.test", 0, "fail p=reject/reject", "",
     "DKIM strict, SPF strict"},
    {"strict.test", "fail:x.test", "pass:STRICT.test.", 0, "pass p=reject/none", "", NULL},
    /* a subdomain without a record of its own: the organizational
     * domain's, with sp= */
    {"news.example.org", "fail:news.example.org", "", 0, "fail sp=quarantine/quarantine",
     "16 _dmarc.news.example.org,16 _dmarc.example.org,", NULL},
    {"news.example.org", "pass:example.org", "", 0, "pass sp=quarantine/none", "", NULL},
    {"a.b.example.org", "", "pass:b.example.org", 0, "pass sp=quarantine/none",
     "16 _dmarc.a.b.example.org,16 _dmarc.example.org,", NULL},
    /* a subdomain with its own record */
    {"own.example.org", "", "", 0, "fail p=none/none", "16 _dmarc.own.example.org,", NULL},
    /* pct: sampled in below pct, the next lower policy otherwise */
    {"half.test", "", "", 49, "fail p=reject/reject", "", "p=reject"},
    {"half.test", "", "", 50, "fail p=reject/quarantine", "", "not sampled by pct="},
    {"quar.test", "", "", 9, "fail p=quarantine/quarantine", "", NULL},
    {"quar.test", "", "", 10, "fail p=quarantine/none", "", NULL},
    {"zero.test", "", "", 0, "fail p=reject/quarantine", "", NULL},
    {"half.test", "pass:half.test", "", 0, "pass p=reject/none", "", NULL},
    /* no record anywhere: none; the org domain is asked only once */
    {"nothing.test", "", "", 0, "none =none/none", "16 _dmarc.nothing.test,",
     "no DMARC record at _dmarc.nothing.test"},
    {"a.nothing.test", "", "", 0, "none =none/none",
     "16 _dmarc.a.nothing.test,16 _dmarc.nothing.test,", "nor _dmarc.nothing.test"},
    /* several records: none, and no fallback to the org domain */
    {"two.test", "", "", 0, "none =none/none", "16 _dmarc.two.test,", "several DMARC records"},
    {"sub.two.test", "", "", 0, "none =none/none", "16 _dmarc.sub.two.test,16 _dmarc.two.test,",
     "several"},
    /* an unusable record: permerror, nothing enforced */
    {"broken.test", "", "", 0, "permerror =none/none", "", "a tag given twice"},
    /* no valid p= but a valid rua=: p=none (6.6.3) */
    {"nop.test", "", "", 0, "fail p=none/none", "", NULL},
    /* DNS failures: temperror, never a permanent result */
    {"fail.test", "", "", 0, "temperror =none/none", "16 _dmarc.fail.test,", "failed"},
    {"x.subfail.test", "", "", 0, "temperror =none/none", "16 _dmarc.x.subfail.test,", NULL},
    {"example.org", "temperror:example.org", "", 0, "temperror =none/none", "", "temporary"},
    {"example.org", "fail:example.org", "temperror:example.org", 0, "temperror =none/none", "",
     NULL},
    {"example.org", "temperror:example.org", "pass:example.org", 0, "pass p=reject/none", "", NULL},
    /* a temporary failure of an identifier that would not align changes nothing */
    {"example.org", "temperror:example.net", "", 0, "fail p=reject/reject", "", NULL},
    /* PSL edge cases: co.uk's own record is not example.co.uk's */
    {"mail.example.co.uk", "", "", 0, "fail sp=reject/reject",
     "16 _dmarc.mail.example.co.uk,16 _dmarc.example.co.uk,", NULL},
    {"mail.example.co.uk", "pass:example.co.uk", "", 0, "pass sp=reject/none", "", NULL},
    {"mail.example.co.uk", "pass:other.co.uk", "", 0, "fail sp=reject/reject", "", NULL},
    {"co.uk", "pass:example.co.uk", "", 0, "fail p=none/none", "16 _dmarc.co.uk,", NULL},
    /* a private-section suffix: foo.blogspot.com is its own org domain */
    {"www.foo.blogspot.com", "", "", 0, "fail sp=quarantine/quarantine",
     "16 _dmarc.www.foo.blogspot.com,16 _dmarc.foo.blogspot.com,", NULL},
    {"foo.blogspot.com", "pass:bar.blogspot.com", "", 0, "fail p=quarantine/quarantine", "", NULL},
    /* upper case and IDN */
    {"NEWS.Example.ORG", "pass:EXAMPLE.org", "", 0, "pass sp=quarantine/none",
     "16 _dmarc.news.example.org,16 _dmarc.example.org,", NULL},
    {"пример.рф", "", "pass:mail.xn--e1afmkfd.xn--p1ai", 0, "pass p=reject/none",
     "16 _dmarc.xn--e1afmkfd.xn--p1ai,", NULL},
    /* np=: a From domain that does not exist (RFC 9091) */
    {"real.np.test", "", "", 0, "fail sp=quarantine/quarantine",
     "16 _dmarc.real.np.test,16 _dmarc.np.test,1 real.np.test,28 real.np.test,", NULL},
    {"mx.np.test", "", "", 0, "fail sp=quarantine/quarantine",
     "16 _dmarc.mx.np.test,16 _dmarc.np.test,1 mx.np.test,28 mx.np.test,15 mx.np.test,", NULL},
    {"nodata.np.test", "", "", 0, "fail np=reject/reject",
     "16 _dmarc.nodata.np.test,16 _dmarc.np.test,1 nodata.np.test,28 nodata.np.test,"
     "15 nodata.np.test,",
     NULL},
    {"gone.np.test", "", "", 0, "fail np=reject/reject",
     "16 _dmarc.gone.np.test,16 _dmarc.np.test,1 gone.np.test,", NULL},
    {"temp.np.test", "", "", 0, "temperror =none/none", "", "np="},
    /* a pass needs no existence check */
    {"gone.np.test", "pass:np.test", "", 0, "pass sp=quarantine/none",
     "16 _dmarc.gone.np.test,16 _dmarc.np.test,", NULL},
    /* a From domain that is not a domain: permerror without DNS */
    {"[192.0.2.1]", "pass:example.org", "", 0, "permerror =none/none", "", "not a domain"},
};

static void test_check_table(void **state)
{
    for (size_t i = 0; i < SKT_N(check_cases); i++) {
        char store[4][64];
        sk_dmarc_auth_id spf = {0}, dkim[3];
        if (check_cases[i].spf[0]) parse_ids(check_cases[i].spf, store, &spf, 1);
        size_t nd = parse_ids(check_cases[i].dkim, store + 1, dkim, 3);
        sk_dmarc_input in = {
            .from_domain = check_cases[i].from, .spf = spf, .dkim = dkim, .n_dkim = nd};
        size_t rnd[2] = {check_cases[i].rnd, 0};
        dm_state s;
        assert_int_equal(dm_start(&s, &in, fixed_rand, rnd), SK_OK);
        char queries[512] = "";
        sk_dns_type type;
        const char *name;
        int steps = 0;
        while ((name = dm_next(&s, &type)) != NULL) {
            assert_true(++steps < 10);
            size_t n = strlen(queries);
            snprintf(queries + n, sizeof queries - n, "%d %s,", (int)type, name);
            char *vals[4];
            sk_dns_result a = zone_answer(zone, name, type, vals);
            dm_feed(&s, &a);
        }
        sk_dmarc_result r;
        dm_take(&s, &r);
        char got[128];
        snprintf(got, sizeof got, "%s %s=%s/%s", sk_dmarc_status_name(r.status), r.policy_tag,
                 sk_dmarc_policy_name(r.policy), sk_dmarc_policy_name(r.disposition));
        if (strcmp(got, check_cases[i].want))
            fail_msg("case %zu (%s): %s, want %s (%s)", i, check_cases[i].from, got,
                     check_cases[i].want, r.reason);
        if (check_cases[i].queries[0] && strcmp(queries, check_cases[i].queries))
            fail_msg("case %zu (%s): queries %s", i, check_cases[i].from, queries);
        if (check_cases[i].reason && !strstr(r.reason, check_cases[i].reason))
            fail_msg("case %zu (%s): reason \"%s\"", i, check_cases[i].from, r.reason);
        /* The random source is asked only for failures with 0 < pct < 100. */
        int sampled =
            r.has_record && r.status == SK_DMARC_FAIL && r.record.pct > 0 && r.record.pct < 100;
        if ((size_t)sampled != rnd[1]) fail_msg("case %zu: random asked %zu times", i, rnd[1]);
        if (r.sampled_out != (r.status == SK_DMARC_FAIL && r.disposition != r.policy))
            fail_msg("case %zu: sampled_out %d", i, r.sampled_out);
        sk_dmarc_result_clear(&r);
    }
}

/* The From domain from a header block, through the whole check. */
static void test_check_headers(void **state)
{
    static const struct {
        const char *headers;
        sk_dmarc_status status;
        const char *from;
    } cases[] = {
        {"From: <a@example.org>\r\n\r\n", SK_DMARC_PASS, "example.org"},
        {"From: a@example.org\r\nFrom: b@example.org\r\n\r\n", SK_DMARC_PERMERROR, ""},
        {"Subject: no from\r\n\r\n", SK_DMARC_PERMERROR, ""},
        {"From: a@example.org, b@example.net\r\n\r\n", SK_DMARC_PERMERROR, ""},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_dmarc_input in = {.headers = cases[i].headers,
                             .headers_len = strlen(cases[i].headers),
                             .spf = {P, "example.org"}};
        dm_state s;
        assert_int_equal(dm_start(&s, &in, NULL, NULL), SK_OK);
        sk_dns_type type;
        const char *name;
        while ((name = dm_next(&s, &type)) != NULL) {
            char *vals[4];
            sk_dns_result a = zone_answer(zone, name, type, vals);
            dm_feed(&s, &a);
        }
        if (s.res.status != cases[i].status || strcmp(s.res.from_domain, cases[i].from))
            fail_msg("case %zu: %s %s (%s)", i, sk_dmarc_status_name(s.res.status),
                     s.res.from_domain, s.res.reason);
        sk_dmarc_result_clear(&s.res);
    }
}

/* The random source by default: sampling stays within the policy's two
 * values over many tries (not which one: that is the OS's). */
static void test_default_random(void **state)
{
    sk_dmarc_input in = {.from_domain = "half.test"};
    int counts[3] = {0};
    for (int k = 0; k < 200; k++) {
        dm_state s;
        assert_int_equal(dm_start(&s, &in, NULL, NULL), SK_OK);
        sk_dns_type type;
        const char *name;
        while ((name = dm_next(&s, &type)) != NULL) {
            char *vals[4];
            sk_dns_result a = zone_answer(zone, name, type, vals);
            dm_feed(&s, &a);
        }
        assert_int_equal(s.res.status, SK_DMARC_FAIL);
        counts[s.res.disposition]++;
        sk_dmarc_result_clear(&s.res);
    }
    assert_int_equal(counts[NONE], 0);
    assert_int_equal(counts[QUAR] + counts[REJ], 200);
}

static void test_names(void **state)
{
    assert_string_equal(sk_dmarc_status_name(SK_DMARC_NONE), "none");
    assert_string_equal(sk_dmarc_status_name(SK_DMARC_PASS), "pass");
    assert_string_equal(sk_dmarc_status_name(SK_DMARC_FAIL), "fail");
    assert_string_equal(sk_dmarc_status_name(SK_DMARC_TEMPERROR), "temperror");
    assert_string_equal(sk_dmarc_status_name(SK_DMARC_PERMERROR), "permerror");
    assert_string_equal(sk_dmarc_policy_name(SK_DMARC_POLICY_QUARANTINE), "quarantine");
}

/* ---- the evented and blocking checkers against dns_server.py ---- */

static const char json_zone[] =
    "{\"_dmarc.example.org\": {\"TXT\": [\"v=DMARC1; p=reject; sp=quarantine\","
    "   [\"v=DMARC1; \", \"p=none\"]]},"
    " \"_dmarc.split.test\": {\"TXT\": [[\"v=DMARC1; p=quar\", \"antine; pct=100\"]]},"
    " \"_dmarc.fail.test\": {\"SERVFAIL\": true},"
    " \"_dmarc.slow.test\": {\"DROP\": true},"
    " \"_dmarc.np.test\": {\"TXT\": [\"v=DMARC1; p=none; np=reject\"]},"
    " \"gone.np.test\": {\"TXT\": [\"x\"]}}";

typedef struct server {
    pid_t pid;
    char addr[64];
} server;

static int start_server(void **state)
{
    static server srv;
    const char *src = getenv("SK_SOURCE_DIR");
    assert_non_null(src);
    char prog[4096];
    snprintf(prog, sizeof prog, "%s/tests/integration/dns_server.py", src);
    char *zpath = skt_tmpfile("dmarc-zone", json_zone, strlen(json_zone));
    int p[2];
    assert_int_equal(pipe(p), 0);
    srv.pid = fork();
    assert_true(srv.pid >= 0);
    if (srv.pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execl("/usr/bin/python3", "python3", prog, zpath, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char line[32] = "";
    size_t n = 0;
    while (n < sizeof line - 1 && read(p[0], line + n, 1) == 1 && line[n] != '\n') n++;
    line[n] = '\0';
    close(p[0]);
    unlink(zpath);
    free(zpath);
    if (atoi(line) <= 0) {
        kill(srv.pid, SIGKILL);
        waitpid(srv.pid, NULL, 0);
        fail_msg("dns_server.py did not start");
    }
    snprintf(srv.addr, sizeof srv.addr, "127.0.0.1:%d", atoi(line));
    *state = &srv;
    return 0;
}

static int stop_server(void **state)
{
    server *srv = *state;
    kill(srv->pid, SIGTERM);
    waitpid(srv->pid, NULL, 0);
    return 0;
}

typedef struct got {
    int calls;
    char text[512];
} got;

static void on_result(void *ctx, const sk_dmarc_result *r)
{
    got *g = ctx;
    g->calls++;
    snprintf(g->text, sizeof g->text, "%s %s %s/%s", r->from_domain,
             sk_dmarc_status_name(r->status), r->policy_tag, sk_dmarc_policy_name(r->disposition));
}

static void must_not_run(void *ctx, const sk_dmarc_result *r)
{
    fail_msg("callback of a cancelled check ran");
}

static void test_checker_async(void **state)
{
    server *srv = *state;
    struct event_base *base = event_base_new();
    sk_resolver_opts ro = {.server = srv->addr, .timeout_ms = 300, .tries = 1};
    sk_resolver *res = sk_resolver_new_opts(base, &ro, NULL);
    assert_non_null(res);
    sk_dmarc_checker *c = sk_dmarc_checker_new(res, NULL);
    assert_non_null(c);
    static const struct {
        const char *from;
        const char *want;
    } cases[] = {
        {"example.org", "example.org none /none"},       /* two records */
        {"split.test", "split.test fail p/quarantine"},  /* strings of one record joined */
        {"fail.test", "fail.test temperror /none"},      /* SERVFAIL */
        {"slow.test", "slow.test temperror /none"},      /* no answer: timeout */
        {"gone.np.test", "gone.np.test fail np/reject"}, /* existence lookups */
        {"a.nothing.test", "a.nothing.test none /none"}, /* NXDOMAIN twice */
    };
    got g[SKT_N(cases)];
    memset(g, 0, sizeof g);
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_dmarc_input in = {.from_domain = cases[i].from, .spf = {F, cases[i].from}};
        assert_int_equal(sk_dmarc_check(c, &in, on_result, &g[i], NULL), SK_OK);
    }
    /* A cancelled check never calls back. */
    sk_dmarc_job *job = NULL;
    sk_dmarc_input in = {.from_domain = "split.test"};
    assert_int_equal(sk_dmarc_check(c, &in, must_not_run, NULL, &job), SK_OK);
    assert_non_null(job);
    sk_dmarc_cancel(job);
    /* A From that cannot be evaluated is answered at once. */
    got now = {0};
    sk_dmarc_input bad = {.headers = "Subject: x\r\n\r\n", .headers_len = 14};
    assert_int_equal(sk_dmarc_check(c, &bad, on_result, &now, &job), SK_OK);
    assert_null(job);
    assert_int_equal(now.calls, 1);
    assert_string_equal(now.text, " permerror /none");
    event_base_dispatch(base);
    for (size_t i = 0; i < SKT_N(cases); i++) {
        assert_int_equal(g[i].calls, 1);
        assert_string_equal(g[i].text, cases[i].want);
    }
    /* Checks in flight when the resolver goes: released by the checker. */
    assert_int_equal(sk_dmarc_check(c, &in, must_not_run, NULL, NULL), SK_OK);
    sk_resolver_free(res);
    sk_dmarc_checker_free(c);
    event_base_free(base);
}

static void test_checker_sync(void **state)
{
    server *srv = *state;
    sk_resolver_opts ro = {.server = srv->addr, .timeout_ms = 300, .tries = 1};
    sk_dmarc_input in = {.from_domain = "mail.split.test",
                         .dkim = &(sk_dmarc_auth_id){P, "split.test"},
                         .n_dkim = 1};
    sk_dmarc_result r;
    sk_error err;
    assert_int_equal(sk_dmarc_check_sync(&ro, NULL, &in, &r, &err), SK_OK);
    assert_int_equal(r.status, SK_DMARC_PASS);
    assert_string_equal(r.record_domain, "split.test");
    assert_string_equal(r.dkim_domain, "split.test");
    assert_int_equal(r.record.p, SK_DMARC_POLICY_QUARANTINE);
    sk_dmarc_result_clear(&r);
    in.from_domain = "fail.test";
    assert_int_equal(sk_dmarc_check_sync(&ro, NULL, &in, &r, &err), SK_OK);
    assert_int_equal(r.status, SK_DMARC_TEMPERROR);
    sk_dmarc_result_clear(&r);
    /* A resolver setting that is wrong is an error, not a result. */
    sk_resolver_opts bad = {.server = "not-an-ip:x"};
    assert_int_not_equal(sk_dmarc_check_sync(&bad, NULL, &in, &r, &err), SK_OK);
    assert_int_equal(err.err, SK_ERR_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_parse),
        cmocka_unit_test(test_record_values),
        cmocka_unit_test(test_is_record),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_org_domain),
        cmocka_unit_test(test_aligned),
        cmocka_unit_test(test_from_domain),
        cmocka_unit_test(test_check_table),
        cmocka_unit_test(test_check_headers),
        cmocka_unit_test(test_default_random),
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_checker_async, start_server, stop_server),
        cmocka_unit_test_setup_teardown(test_checker_sync, start_server, stop_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
