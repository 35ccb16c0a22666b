/* Unit tests for src/spf: record selection and parsing, macro expansion
 * (RFC 7208 7.4's examples among them), and check_host() on the loop
 * against dns_server.py: identities, explanations, counts, limits, the
 * time limit, cancelling, the blocking form. The RFC 7208 test suite runs
 * in tests/integration/test_spf_suite.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/spf.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_is_record(void **state)
{
    static const struct {
        const char *txt;
        int is;
    } cases[] = {
        {"v=spf1", 1},           {"v=spf1 -all", 1},  {"V=SpF1 a", 1},     {"v=spf10", 0},
        {"v=spf1-all", 0},       {"v=spf2.0/pra", 0}, {" v=spf1 -all", 0}, {"", 0},
        {"spf1 v=spf1 -all", 0}, {"v=spf1\t-all", 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_spf_is_record(cases[i].txt, strlen(cases[i].txt)) != cases[i].is)
            fail_msg("case %zu: \"%s\"", i, cases[i].txt);
}

/* Well-formed records: the terms as parsed, written back as a summary. */
static void test_record_parse(void **state)
{
    static const struct {
        const char *txt;
        const char *terms; /* qualifier mech [domain] [/cidr4] [//cidr6], by spaces */
        unsigned lookups;
        const char *redirect, *exp;
    } cases[] = {
        {"v=spf1", "", 0, NULL, NULL},
        {"v=spf1 -all", "-all", 0, NULL, NULL},
        {"v=spf1  +a   ~mx:%{d}  ?ptr -all ", "+a/32//128 ~mx:%{d}/32//128 ?ptr -all", 3, NULL,
         NULL},
        {"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip4:10.1.2.3", "+ip4/24 +ip6//32 +ip4/32", 0,
         NULL, NULL},
        {"v=spf1 a:mail.example.org/24//64 mx//0 include:_spf.example.net exists:%{ir}.x.example",
         "+a:mail.example.org/24//64 +mx/32//0 +include:_spf.example.net +exists:%{ir}.x.example",
         4, NULL, NULL},
        /* redirect counts as a lookup, unless "all" makes it unused (6.1). */
        {"v=spf1 mx redirect=_spf.example.org", "+mx/32//128", 2, "_spf.example.org", NULL},
        {"v=spf1 redirect=x.example ~all", "~all", 0, "x.example", NULL},
        {"v=spf1 -all exp=explain.%{d}", "-all", 0, NULL, "explain.%{d}"},
        /* Unknown modifiers are ignored; names are case-insensitive. */
        {"v=spf1 moo.cow-far_out=man:dog/cat Include:x.example ALL", "+include:x.example +all", 1,
         NULL, NULL},
        {"v=spf1 a:foo:bar/baz.example.com", "+a:foo:bar/baz.example.com/32//128", 1, NULL, NULL},
        {"v=spf1 a:foo.example.xn--zckzah", "+a:foo.example.xn--zckzah/32//128", 1, NULL, NULL},
        {"v=spf1 default=+", "", 0, NULL, NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_spf_record *rec;
        char why[256];
        sk_err e = sk_spf_record_parse(cases[i].txt, strlen(cases[i].txt), &rec, why, sizeof why);
        if (e) fail_msg("case %zu: %s: %s", i, sk_strerror(e), why);
        char got[512] = "";
        for (size_t k = 0; k < rec->nterms; k++) {
            const sk_spf_term *t = &rec->terms[k];
            static const char q[] = {[SK_SPF_PASS] = '+',
                                     [SK_SPF_FAIL] = '-',
                                     [SK_SPF_SOFTFAIL] = '~',
                                     [SK_SPF_NEUTRAL] = '?'};
            size_t len = strlen(got);
            snprintf(got + len, sizeof got - len, "%s%c%s%s%s", k ? " " : "", q[t->qualifier],
                     sk_spf_mech_name(t->mech), t->domain_spec ? ":" : "",
                     t->domain_spec ? t->domain_spec : "");
            len = strlen(got);
            if (t->mech == SK_SPF_A || t->mech == SK_SPF_MX)
                snprintf(got + len, sizeof got - len, "/%d//%d", t->cidr4, t->cidr6);
            else if (t->mech == SK_SPF_IP4)
                snprintf(got + len, sizeof got - len, "/%d", t->cidr4);
            else if (t->mech == SK_SPF_IP6)
                snprintf(got + len, sizeof got - len, "//%d", t->cidr6);
        }
        if (strcmp(got, cases[i].terms)) fail_msg("case %zu: \"%s\"", i, got);
        assert_int_equal(rec->lookup_terms, cases[i].lookups);
        if (cases[i].redirect)
            assert_string_equal(rec->redirect, cases[i].redirect);
        else
            assert_null(rec->redirect);
        if (cases[i].exp)
            assert_string_equal(rec->exp, cases[i].exp);
        else
            assert_null(rec->exp);
        sk_spf_record_free(rec);
    }
}

/* Records that are not well formed: permerror wherever the error is. */
static void test_record_errors(void **state)
{
    static const char *const bad[] = {
        "v=spf1 ip4:1.2.3.4 -all moo",                  /* unknown mechanism after -all */
        "v=spf1 -all.",                                 /* "all." */
        "v=spf1 -all:x",                                /* all takes nothing */
        "v=spf1 a:",                                    /* empty domain-spec */
        "v=spf1 a:museum",                              /* no "." toplabel */
        "v=spf1 a:museum.",                             /* still none */
        "v=spf1 a:abc.123",                             /* numeric toplabel */
        "v=spf1 a:example.-com",                        /* toplabel starts with "-" */
        "v=spf1 a:example.com:8080",                    /* ":" in the toplabel */
        "v=spf1 a/33",                                  /* IPv4 prefix over 32 */
        "v=spf1 a//129",                                /* IPv6 prefix over 128 */
        "v=spf1 a/24/64",                               /* not a dual-cidr-length */
        "v=spf1 ip4:1.2.3.4/032",                       /* leading zero */
        "v=spf1 ip4:1.2.3",                             /* short address */
        "v=spf1 ip4:01.2.3.4",                          /* leading zero */
        "v=spf1 ip4:1.2.3.4//32",                       /* dual cidr on ip4 */
        "v=spf1 ip6:::1.1.1.1//33",                     /* dual cidr on ip6 */
        "v=spf1 ip6::CAFE::BABE",                       /* not an address */
        "v=spf1 ip4",                                   /* no network */
        "v=spf1 ptr/0",                                 /* ptr takes no cidr */
        "v=spf1 include",                               /* include needs a domain */
        "v=spf1 include:x.example/24",                  /* ... and no cidr */
        "v=spf1 exists:%(ir).sbl.example",              /* bad macro */
        "v=spf1 exists:foo%.sbl.example",               /* lone % */
        "v=spf1 a:%{a}.example.com",                    /* no such letter */
        "v=spf1 exp=%{r}.example.com",                  /* r only in explanations */
        "v=spf1 a:%{d0}.example.com",                   /* a zero digit transformer */
        "v=spf1 1up=foo",                               /* modifier name starts with a digit */
        "v=spf1 =all",                                  /* empty modifier name */
        "v=spf1 foo=%abc",                              /* unknown modifier, bad macro-string */
        "v=spf1 redirect=a.example redirect=b.example", /* twice */
        "v=spf1 exp=a.example exp=b.example",           /* twice */
        "v=spf1 redirect=",                             /* empty */
        "v=spf1 exp=-all",                              /* not a domain-spec */
        "v=spf1 redirect:x.example",                    /* a mechanism called redirect */
        "v=spf1 a:ctrl.example.com\rptr -all",          /* only SP separates terms */
        "v=spf1 a:\xef\xbb\xbfx.example.net",           /* non-ASCII */
        "v=spf1 -",                                     /* qualifier alone */
        "v=spf1x -all",                                 /* not a record at all */
    };
    for (size_t i = 0; i < SKT_N(bad); i++) {
        sk_spf_record *rec = (sk_spf_record *)1;
        char why[256] = "";
        sk_err e = sk_spf_record_parse(bad[i], strlen(bad[i]), &rec, why, sizeof why);
        if (e != SK_ERR_SYNTAX) fail_msg("case %zu (%s): %s", i, bad[i], sk_strerror(e));
        assert_null(rec);
        assert_true(why[0] != '\0');
        for (const char *p = why; *p; p++) assert_true(*p >= 0x20 && *p < 0x7f);
    }
    /* A NUL inside a record is an error, not its end, and no qualifier
     * (found by fuzz_spf_record). */
    static const char nul[] = "v=spf1 a:foo.example.com\0 -all";
    static const char nul_qualifier[] = "v=spf1 \0a:foo.example.com";
    static const char nul_ip6[] = "v=spf1 ip6:::\0\0261.1.1/0";
    sk_spf_record *rec;
    assert_int_equal(sk_spf_record_parse(nul_ip6, sizeof nul_ip6 - 1, &rec, NULL, 0),
                     SK_ERR_SYNTAX);
    assert_int_equal(sk_spf_record_parse(nul, sizeof nul - 1, &rec, NULL, 0), SK_ERR_SYNTAX);
    assert_int_equal(sk_spf_record_parse(nul_qualifier, sizeof nul_qualifier - 1, &rec, NULL, 0),
                     SK_ERR_SYNTAX);
}

static void test_macros(void **state)
{
    /* RFC 7208 7.4. */
#define VARS(IP, PTR)                                                                              \
    {                                                                                              \
        .sender = "strong-bad@email.example.com", .local = "strong-bad",                           \
        .sender_domain = "email.example.com", .domain = "email.example.com", .ip = IP,             \
        .ptr_name = PTR, .helo = "mx.example.org", .receiver = "receiver.example.net",             \
        .now_s = 1700000000                                                                        \
    }
    static const sk_spf_macro_vars v4 = VARS("192.0.2.3", NULL);
    static const sk_spf_macro_vars v6 = VARS("2001:db8::cb01", NULL);
    static const sk_spf_macro_vars mapped = VARS("::ffff:192.0.2.3", NULL);
    static const sk_spf_macro_vars named = VARS("192.0.2.3", "mx.email.example.com");
#undef VARS
    static const struct {
        const sk_spf_macro_vars *v;
        sk_spf_macro_mode mode;
        const char *in, *out; /* out NULL: SK_ERR_SYNTAX */
    } cases[] = {
        {&v4, SK_SPF_MACRO_DOMAIN, "%{s}", "strong-bad@email.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{o}", "email.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d}", "email.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d4}", "email.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d3}", "email.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d2}", "example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d1}", "com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{dr}", "com.example.email"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d2r}", "example.email"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{l}", "strong-bad"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{l-}", "strong.bad"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{lr}", "strong-bad"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{lr-}", "bad.strong"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{l1r-}", "strong"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
         "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
         "3.2.0.192.in-addr.strong.lp._spf.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d2}.trusted-domains.example.net",
         "example.com.trusted-domains.example.net"},
        {&v6, SK_SPF_MACRO_DOMAIN, "%{ir}.%{v}._spf.%{d2}",
         "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"},
        /* An IPv4-mapped client is an IPv4 client (5). */
        {&mapped, SK_SPF_MACRO_DOMAIN, "%{i}.%{v}", "192.0.2.3.in-addr"},
        /* Several delimiters; a large digit is all parts. */
        {&v4, SK_SPF_MACRO_DOMAIN, "%{s2r-.}", "bad@email.strong"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{s2r@}", NULL}, /* "@" is no delimiter */
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d99}", "email.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%%%_%-x", "% %20x"},
        /* Uppercase: URL-escaped (7.3, RFC 3986 unreserved kept). */
        {&v4, SK_SPF_MACRO_DOMAIN, "%{S}", "strong-bad%40email.example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{p}", "unknown"},
        {&named, SK_SPF_MACRO_DOMAIN, "%{p2}", "example.com"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{h}", "mx.example.org"},
        /* c, r, t only in explanations. */
        {&v4, SK_SPF_MACRO_EXPLAIN, "%{c} via %{r} at %{t}",
         "192.0.2.3 via receiver.example.net at 1700000000"},
        {&v6, SK_SPF_MACRO_EXPLAIN, "%{c}", "2001:db8::cb01"},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{c}", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{r}", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{t}", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "a b", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d0}", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{x}", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "%{d2!}", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "50%", NULL},
        {&v4, SK_SPF_MACRO_DOMAIN, "%x", NULL},
        {&v4, SK_SPF_MACRO_EXPLAIN, "caf\xc3\xa9", NULL},
        {&v4, SK_SPF_MACRO_EXPLAIN, "tab\there", NULL},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(4096);
        sk_err e =
            sk_spf_macro_expand(cases[i].in, strlen(cases[i].in), cases[i].mode, cases[i].v, &b);
        if (!cases[i].out) {
            if (e != SK_ERR_SYNTAX) fail_msg("case %zu (%s): %s", i, cases[i].in, sk_strerror(e));
        } else {
            if (e) fail_msg("case %zu (%s): %s", i, cases[i].in, sk_strerror(e));
            if (strcmp(sk_buf_cstr(&b), cases[i].out))
                fail_msg("case %zu (%s): \"%s\"", i, cases[i].in, sk_buf_cstr(&b));
        }
        /* Checking alone agrees with expanding. */
        assert_int_equal(
            sk_spf_macro_expand(cases[i].in, strlen(cases[i].in), cases[i].mode, NULL, NULL),
            cases[i].out ? SK_OK : SK_ERR_SYNTAX);
        sk_buf_free(&b);
    }
    assert_int_equal(sk_spf_macro_uses_p("a.%{p}.b", 8), 1);
    assert_int_equal(sk_spf_macro_uses_p("a.%{P2}", 7), 1);
    assert_int_equal(sk_spf_macro_uses_p("%%{p}", 5), 0);
    assert_int_equal(sk_spf_macro_uses_p("%{d}", 4), 0);
    /* The output is bounded: exceeding it is an error, never a cut. */
    sk_buf small = SK_BUF_INIT(10);
    assert_int_equal(sk_spf_macro_expand("%{s}", 4, SK_SPF_MACRO_DOMAIN, &v4, &small),
                     SK_ERR_TOO_LONG);
    /* ... but a syntax error after the overflow is still a syntax error
     * (found by fuzz_spf_macro). */
    sk_buf_reset(&small);
    assert_int_equal(sk_spf_macro_expand("%{s}%{x}", 8, SK_SPF_MACRO_DOMAIN, &v4, &small),
                     SK_ERR_SYNTAX);
    sk_buf_free(&small);
}

/* ---- check_host() against dns_server.py ---- */

static const char zone[] =
    "{\"helo.test\": {\"A\": [\"192.0.2.10\"], \"TXT\": [\"v=spf1 a -all\"]},"
    " \"example.test\": {\"TXT\": [\"v=spf1 include:_spf.example.test mx -all "
    "exp=why.example.test\", \"unrelated text\"], \"MX\": [[10, \"mx.example.test\"]]},"
    " \"_spf.example.test\": {\"TXT\": [[\"v=spf1 ip4:198.51.100.0/24 \", "
    "\"ip6:2001:db8:1::/48 ?all\"]]},"
    " \"mx.example.test\": {\"A\": [\"192.0.2.25\"], \"AAAA\": [\"2001:db8:25::1\"]},"
    " \"why.example.test\": {\"TXT\": [\"%{i} may not send for %{o} (%{l}) here at %{r}, "
    "%{t}\"]},"
    " \"voids.test\": {\"TXT\": [\"v=spf1 a:nx1.voids.test a:nx2.voids.test "
    "a:nx3.voids.test ip4:192.0.2.1 -all\"]},"
    " \"slow.test\": {\"TXT\": [\"v=spf1 exists:drop.slow.test -all\"]},"
    " \"drop.slow.test\": {\"DROP\": true},"
    " \"ptr.test\": {\"TXT\": [\"v=spf1 exists:%{p}.allow.ptr.test -all\"]},"
    " \"host.ptr.test.allow.ptr.test\": {\"A\": [\"127.0.0.2\"]},"
    " \"host.ptr.test\": {\"A\": [\"192.0.2.77\"]},"
    " \"77.2.0.192.in-addr.arpa\": {\"PTR\": [\"host.ptr.test\"]}}";

typedef struct dns {
    int pid;
    char addr[64];
} dns;

static int start_dns(void **state)
{
    static dns d;
    /* The zone, and many.test: 120 ip4 terms (in strings of one record) that
     * do not match, then -all: more steps than the trace keeps. */
    static char full[sizeof zone + 120 * 40];
    size_t n = (size_t)snprintf(full, sizeof full, "%.*s, \"many.test\": {\"TXT\": [[\"v=spf1\"",
                                (int)(sizeof zone - 2), zone);
    for (int i = 0; i < 120; i++)
        n += (size_t)snprintf(full + n, sizeof full - n, ", \" ip4:203.0.113.%d\"", i);
    snprintf(full + n, sizeof full - n, ", \" -all\"]]}}");
    d.pid = skt_dns_start(full, d.addr, sizeof d.addr);
    *state = &d;
    return 0;
}

static int stop_dns(void **state)
{
    skt_dns_stop(((dns *)*state)->pid);
    return 0;
}

typedef struct got {
    int calls, returned;
    sk_spf_outcome *o;
} got;

static void keep(void *ctx, sk_spf_outcome *o)
{
    got *g = ctx;
    assert_true(g->returned); /* never inside sk_spf_check_start */
    g->calls++;
    g->o = o;
}

static sk_spf_outcome *check(sk_resolver *r, sk_spf_identity id, const char *ip,
                             const char *mail_from, const char *helo, const sk_spf_opts *o)
{
    got g = {0};
    sk_spf_request req = {.identity = id, .ip = ip, .mail_from = mail_from, .helo = helo};
    assert_int_equal(sk_spf_check_start(r, &req, o, keep, &g, NULL), SK_OK);
    g.returned = 1;
    event_base_dispatch(sk_resolver_base(r));
    assert_int_equal(g.calls, 1);
    return g.o;
}

static int has_line(const sk_spf_outcome *o, const char *needle)
{
    for (size_t i = 0; i < o->ntrace; i++)
        if (strstr(o->trace[i], needle)) return 1;
    return 0;
}

static void test_check(void **state)
{
    dns *d = *state;
    struct event_base *base = event_base_new();
    sk_resolver_opts ro = {.server = d->addr};
    sk_resolver *r = sk_resolver_new_opts(base, &ro, NULL);
    sk_spf_opts so = {.receiver = "mx.receiver.test", .now_s = 1700000000};
    static const struct {
        sk_spf_identity id;
        const char *ip, *mail_from, *helo;
        sk_spf_result result;
        const char *domain, *sender, *property, *value, *mechanism;
        unsigned lookups, voids;
    } cases[] = {
        /* HELO identity: postmaster@HELO is the sender. */
        {SK_SPF_HELO, "192.0.2.10", "someone@example.test", "helo.test", SK_SPF_PASS, "helo.test",
         "postmaster@helo.test", "smtp.helo", "helo.test", "a", 1, 0},
        {SK_SPF_HELO, "192.0.2.11", NULL, "helo.test", SK_SPF_FAIL, "helo.test",
         "postmaster@helo.test", "smtp.helo", "helo.test", "-all", 1, 0},
        /* MAIL FROM: through an include, by IPv4 and IPv6 (two strings of
         * one TXT record joined), and by an IPv4-mapped client. */
        {SK_SPF_MAILFROM, "198.51.100.7", "a.user@example.test", "helo.test", SK_SPF_PASS,
         "example.test", "a.user@example.test", "smtp.mailfrom", "a.user@example.test",
         "include:_spf.example.test", 1, 0},
        {SK_SPF_MAILFROM, "2001:db8:1::9", "a.user@example.test", "helo.test", SK_SPF_PASS,
         "example.test", "a.user@example.test", "smtp.mailfrom", "a.user@example.test",
         "include:_spf.example.test", 1, 0},
        {SK_SPF_MAILFROM, "::ffff:192.0.2.25", "a.user@example.test", "helo.test", SK_SPF_PASS,
         "example.test", "a.user@example.test", "smtp.mailfrom", "a.user@example.test", "mx", 2, 0},
        /* The null sender is postmaster@HELO; a missing local part too. */
        {SK_SPF_MAILFROM, "192.0.2.10", "", "helo.test", SK_SPF_PASS, "helo.test",
         "postmaster@helo.test", "smtp.mailfrom", "postmaster@helo.test", "a", 1, 0},
        {SK_SPF_MAILFROM, "192.0.2.10", "@helo.test", "other.test", SK_SPF_PASS, "helo.test",
         "postmaster@helo.test", "smtp.mailfrom", "postmaster@helo.test", "a", 1, 0},
        /* No record, no domain. */
        {SK_SPF_MAILFROM, "192.0.2.10", "x@nx.test", "helo.test", SK_SPF_NONE, "nx.test",
         "x@nx.test", "smtp.mailfrom", "x@nx.test", NULL, 0, 0},
        {SK_SPF_MAILFROM, "192.0.2.10", "x@localhost", "helo.test", SK_SPF_NONE, "localhost",
         "x@localhost", "smtp.mailfrom", "x@localhost", NULL, 0, 0},
        /* The third void lookup is a permerror (4.6.4). */
        {SK_SPF_MAILFROM, "192.0.2.1", "x@voids.test", "helo.test", SK_SPF_PERMERROR, "voids.test",
         "x@voids.test", "smtp.mailfrom", "x@voids.test", NULL, 3, 3},
        /* %{p}: the validated name of the client. */
        {SK_SPF_MAILFROM, "192.0.2.77", "x@ptr.test", "helo.test", SK_SPF_PASS, "ptr.test",
         "x@ptr.test", "smtp.mailfrom", "x@ptr.test", "exists:%{p}.allow.ptr.test", 1, 0},
        {SK_SPF_MAILFROM, "192.0.2.78", "x@ptr.test", "helo.test", SK_SPF_FAIL, "ptr.test",
         "x@ptr.test", "smtp.mailfrom", "x@ptr.test", "-all", 1, 1},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_spf_outcome *o =
            check(r, cases[i].id, cases[i].ip, cases[i].mail_from, cases[i].helo, &so);
        if (o->result != cases[i].result)
            fail_msg("case %zu: %s (%s)", i, sk_spf_result_name(o->result), o->reason);
        assert_int_equal(o->identity, cases[i].id);
        assert_string_equal(o->domain, cases[i].domain);
        assert_string_equal(o->sender, cases[i].sender);
        assert_string_equal(o->property, cases[i].property);
        assert_string_equal(o->property_value, cases[i].value);
        if (cases[i].mechanism)
            assert_string_equal(o->mechanism, cases[i].mechanism);
        else
            assert_null(o->mechanism);
        if (o->lookups != cases[i].lookups || o->void_lookups != cases[i].voids)
            fail_msg("case %zu: lookups %u voids %u", i, o->lookups, o->void_lookups);
        assert_non_null(o->reason);
        sk_spf_outcome_free(o);
    }

    /* A fail from the domain's own mechanism: its explanation, expanded. */
    sk_spf_outcome *o =
        check(r, SK_SPF_MAILFROM, "203.0.113.5", "joe@example.test", "helo.test", &so);
    assert_int_equal(o->result, SK_SPF_FAIL);
    assert_string_equal(o->explanation, "203.0.113.5 may not send for example.test (joe) here at "
                                        "mx.receiver.test, 1700000000");
    assert_string_equal(o->reason, "-all matched in example.test");
    assert_true(has_line(o, "_spf.example.test: ?all -> match (neutral)"));
    assert_true(has_line(o, "example.test: include:_spf.example.test -> no match"));
    sk_spf_outcome_free(o);
    /* A fail of the HELO record has no exp=: no explanation. */
    o = check(r, SK_SPF_HELO, "203.0.113.5", NULL, "helo.test", &so);
    assert_int_equal(o->result, SK_SPF_FAIL);
    assert_null(o->explanation);
    sk_spf_outcome_free(o);

    /* The trace keeps SK_SPF_TRACE_LINES_MAX lines, the last saying so. */
    o = check(r, SK_SPF_MAILFROM, "192.0.2.1", "x@many.test", "helo.test", &so);
    assert_int_equal(o->result, SK_SPF_FAIL);
    assert_int_equal(o->ntrace, SK_SPF_TRACE_LINES_MAX);
    assert_string_equal(o->trace[SK_SPF_TRACE_LINES_MAX - 1], "... (trace cut)");
    sk_spf_outcome_free(o);

    /* Bad requests. */
    got g = {0};
    sk_spf_request bad[] = {
        {SK_SPF_MAILFROM, "not-an-ip", "a@example.test", "helo.test"},
        {SK_SPF_MAILFROM, NULL, "a@example.test", "helo.test"},
        {SK_SPF_MAILFROM, "192.0.2.1", "", NULL},
        {SK_SPF_HELO, "192.0.2.1", "a@example.test", ""},
    };
    for (size_t i = 0; i < SKT_N(bad); i++)
        assert_int_equal(sk_spf_check_start(r, &bad[i], &so, keep, &g, NULL), SK_ERR_INVAL);
    sk_resolver_free(r);
    event_base_free(base);
}

/* The total time limit gives temperror; a cancelled check never calls
 * back; the blocking form gives the same outcome as the loop. */
static void test_check_limits(void **state)
{
    dns *d = *state;
    struct event_base *base = event_base_new();
    /* DNS would wait 5 s for the dropped query; the evaluation may take 200 ms. */
    sk_resolver_opts ro = {.server = d->addr, .timeout_ms = 5000, .tries = 1};
    sk_resolver *r = sk_resolver_new_opts(base, &ro, NULL);
    sk_spf_opts so = {.timeout_ms = 200};
    sk_spf_outcome *o = check(r, SK_SPF_MAILFROM, "192.0.2.1", "x@slow.test", "helo.test", &so);
    assert_int_equal(o->result, SK_SPF_TEMPERROR);
    assert_non_null(strstr(o->reason, "longer than the limit"));
    sk_spf_outcome_free(o);

    got g = {0};
    sk_spf_check *c;
    sk_spf_request req = {SK_SPF_MAILFROM, "192.0.2.1", "x@example.test", "helo.test"};
    assert_int_equal(sk_spf_check_start(r, &req, NULL, keep, &g, &c), SK_OK);
    sk_spf_check_cancel(c);
    event_base_dispatch(base);
    assert_int_equal(g.calls, 0);
    sk_resolver_free(r);
    event_base_free(base);

    sk_resolver_opts sync_ro = {.server = d->addr};
    sk_error err;
    req.ip = "198.51.100.200";
    assert_int_equal(sk_spf_check_sync(&sync_ro, &req, NULL, &o, &err), SK_OK);
    assert_int_equal(o->result, SK_SPF_PASS);
    assert_int_equal(o->lookups, 1);
    sk_spf_outcome_free(o);
    req.ip = "nope";
    assert_int_equal(sk_spf_check_sync(&sync_ro, &req, NULL, &o, &err), SK_ERR_INVAL);
    assert_null(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_record),
        cmocka_unit_test(test_record_parse),
        cmocka_unit_test(test_record_errors),
        cmocka_unit_test(test_macros),
        cmocka_unit_test_setup_teardown(test_check, start_dns, stop_dns),
        cmocka_unit_test_setup_teardown(test_check_limits, start_dns, stop_dns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
