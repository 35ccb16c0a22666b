/* Unit tests for authenticated mail in `smtpkit serve` (src/daemon): the
 * header scanner that removes forged Authentication-Results as the message
 * streams in (hdrscan.c), the --dkim keys and which of them sign
 * (signing.c), the pool that signs off the loop (signpool.c), the one
 * decision under --dmarc-policy and --spf-reject-fail and the
 * Authentication-Results it records (verdict.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include "daemon/daemon_int.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the header scanner ------------------------------------------------- */

static const struct {
    const char *id; /* authserv-id to strip, NULL: keep all */
    const char *in, *want, *from;
    size_t removed;
} scan_cases[] = {
    /* Nothing to remove; the From field copied. */
    {"mx.test", "From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n",
     "From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n", "From: a@b.example\r\n", 0},
    /* Ours goes, anywhere in the block; another server's stays. */
    {"mx.test",
     "Authentication-Results: mx.test; dkim=pass\r\nFrom: a@b.example\r\n"
     "Authentication-Results: other.example; spf=pass\r\n\r\nbody\r\n",
     "From: a@b.example\r\nAuthentication-Results: other.example; spf=pass\r\n\r\nbody\r\n",
     "From: a@b.example\r\n", 1},
    /* Folded, a comment first, another case, a space before the colon. */
    {"mx.test",
     "Subject: s\r\nauthentication-results : (hi)\r\n MX.TEST;\r\n\tspf=pass\r\nTo: c@d\r\n\r\n",
     "Subject: s\r\nTo: c@d\r\n\r\n", "", 1},
    /* Quoted id and a version (RFC 8601 2.2). */
    {"mx.test", "Authentication-Results: \"mx.test\" 1; none\r\n\r\nx\r\n", "\r\nx\r\n", "", 1},
    /* A field that does not parse but starts with our id goes too. */
    {"mx.test", "Authentication-Results: mx.test dkim=pass\r\n\r\n", "\r\n", "", 1},
    /* Without an id to strip (mail we sign): all kept. */
    {NULL, "Authentication-Results: mx.test; dkim=pass\r\nFrom: a@b\r\n\r\nx\r\n",
     "Authentication-Results: mx.test; dkim=pass\r\nFrom: a@b\r\n\r\nx\r\n", "From: a@b\r\n", 0},
    /* Not ours: an id that only starts like ours, ARC's field, the text
     * in another field, the body. */
    {"mx.test", "Authentication-Results: mx.test.evil; none\r\n\r\n",
     "Authentication-Results: mx.test.evil; none\r\n\r\n", "", 0},
    {"mx.test", "ARC-Authentication-Results: i=1; mx.test; dkim=pass\r\n\r\n",
     "ARC-Authentication-Results: i=1; mx.test; dkim=pass\r\n\r\n", "", 0},
    {"mx.test", "X-Note: Authentication-Results: mx.test; x\r\n\r\n",
     "X-Note: Authentication-Results: mx.test; x\r\n\r\n", "", 0},
    {"mx.test", "From: a@b\r\n\r\nAuthentication-Results: mx.test; dkim=pass\r\n",
     "From: a@b\r\n\r\nAuthentication-Results: mx.test; dkim=pass\r\n", "From: a@b\r\n", 0},
    /* A message that ends in its header block: the last field too. */
    {"mx.test", "From: a@b\r\nAuthentication-Results: mx.test; x\r\n", "From: a@b\r\n",
     "From: a@b\r\n", 1},
    {"mx.test", "Authentication-Results: mx.test; x\r\nFrom: a@b\r\n", "From: a@b\r\n",
     "From: a@b\r\n", 1},
    /* No header fields at all. */
    {"mx.test", "\r\nbody\r\n", "\r\nbody\r\n", "", 0},
    /* Several From fields, folded: all copied for DMARC to judge. */
    {"mx.test", "From: a@b,\r\n c@d\r\nSubject: x\r\nFROM: e@f\r\n\r\n",
     "From: a@b,\r\n c@d\r\nSubject: x\r\nFROM: e@f\r\n\r\n", "From: a@b,\r\n c@d\r\nFROM: e@f\r\n",
     0},
    /* Lines that are no fields pass as they are; so does a first line
     * that starts with a blank. */
    {"mx.test", "From: a@b\r\nnot a field\r\n\r\nx", "From: a@b\r\nnot a field\r\n\r\nx",
     "From: a@b\r\n", 0},
    {"mx.test", " odd\r\nFrom: a@b\r\n\r\n", " odd\r\nFrom: a@b\r\n\r\n", "From: a@b\r\n", 0},
    /* From-like names that are not From. */
    {"mx.test", "From-X: a@b\r\nXFrom: c@d\r\n\r\n", "From-X: a@b\r\nXFrom: c@d\r\n\r\n", "", 0},
};

/* Feed in in two pieces split at k, as the server's chunks come: header
 * octets through the scanner, the rest (the body) as it is. */
static void scan_split(const char *id, const char *in, size_t k, sk_buf *all, sk_hdrscan *h)
{
    size_t n = strlen(in);
    const char *piece[2] = {in, in + k};
    size_t len[2] = {k, n - k};
    sk_hdrscan_init(h, id);
    for (int i = 0; i < 2; i++) {
        const char *p = piece[i];
        size_t l = len[i];
        if (!sk_hdrscan_in_body(h)) {
            size_t used = 0;
            assert_int_equal(sk_hdrscan_feed(h, p, l, all, &used), SK_OK);
            assert_true(used <= l);
            if (!sk_hdrscan_in_body(h)) assert_int_equal(used, l);
            p += used;
            l -= used;
        }
        assert_int_equal(sk_buf_append(all, p, l), SK_OK);
    }
    if (!sk_hdrscan_in_body(h)) assert_int_equal(sk_hdrscan_end(h, all), SK_OK);
}

static void test_scan(void **state)
{
    (void)state;
    for (size_t i = 0; i < SKT_N(scan_cases); i++) {
        size_t n = strlen(scan_cases[i].in);
        for (size_t k = 0; k <= n; k++) {
            sk_buf all = SK_BUF_INIT(1 << 20);
            sk_hdrscan h;
            scan_split(scan_cases[i].id, scan_cases[i].in, k, &all, &h);
            if (strcmp(sk_buf_cstr(&all), scan_cases[i].want) ||
                strcmp(sk_buf_cstr(&h.from), scan_cases[i].from) ||
                h.removed != scan_cases[i].removed)
                fail_msg("case %zu split %zu: got \"%s\" from \"%s\" removed %zu", i, k,
                         sk_buf_cstr(&all), sk_buf_cstr(&h.from), h.removed);
            sk_hdrscan_free(&h);
            sk_buf_free(&all);
        }
    }
}

/* Fields longer than any we write are judged by their start. */
static void test_scan_long(void **state)
{
    (void)state;
    size_t big = SK_AUTHRES_HEADER_MAX_OCTETS + 5000;
    for (int ours = 0; ours < 2; ours++) {
        sk_buf in = SK_BUF_INIT(big + 256);
        assert_int_equal(sk_buf_printf(&in, "Authentication-Results: %s; dkim=pass reason=\"",
                                       ours ? "mx.test" : "other.example"),
                         SK_OK);
        while (in.len < big) assert_int_equal(sk_buf_puts(&in, "x\r\n "), SK_OK);
        assert_int_equal(sk_buf_puts(&in, "\"\r\nFrom: a@b\r\n\r\nbody\r\n"), SK_OK);
        for (size_t k = 1; k < in.len; k += 7919) {
            sk_buf all = SK_BUF_INIT(1 << 20);
            sk_hdrscan h;
            scan_split("mx.test", in.data, k, &all, &h);
            if (ours) {
                assert_string_equal(sk_buf_cstr(&all), "From: a@b\r\n\r\nbody\r\n");
                assert_int_equal(h.removed, 1);
            } else {
                assert_string_equal(sk_buf_cstr(&all), in.data);
                assert_int_equal(h.removed, 0);
            }
            sk_hdrscan_free(&h);
            sk_buf_free(&all);
        }
        sk_buf_free(&in);
    }
}

/* From fields past the bound are flagged, not cut silently. */
static void test_scan_from_overflow(void **state)
{
    (void)state;
    sk_buf in = SK_BUF_INIT(SK_DAEMON_FROM_FIELDS_MAX_OCTETS * 2);
    assert_int_equal(sk_buf_puts(&in, "From: a@b"), SK_OK);
    while (in.len < SK_DAEMON_FROM_FIELDS_MAX_OCTETS + 10)
        assert_int_equal(sk_buf_puts(&in, ",\r\n c@d"), SK_OK);
    assert_int_equal(sk_buf_puts(&in, "\r\n\r\n"), SK_OK);
    sk_buf all = SK_BUF_INIT(1 << 20);
    sk_hdrscan h;
    scan_split("mx.test", in.data, in.len / 2, &all, &h);
    assert_true(h.from_overflow);
    assert_string_equal(sk_buf_cstr(&all), in.data);
    sk_hdrscan_free(&h);
    sk_buf_free(&all);
    sk_buf_free(&in);
}

/* ---- the --dkim keys ---------------------------------------------------- */

static char *key_file(sk_dkim_key_type type)
{
    sk_dkim_key *k = NULL;
    sk_error err;
    assert_int_equal(sk_dkim_key_generate(type, 1024, &k, &err), SK_OK);
    sk_buf pem = SK_BUF_INIT(1 << 16);
    assert_int_equal(sk_dkim_key_pem(k, &pem), SK_OK);
    char *path = skt_tmpfile("authmail-key", pem.data, pem.len);
    sk_buf_free(&pem);
    sk_dkim_key_free(k);
    return path;
}

static void test_keyring(void **state)
{
    (void)state;
    char *rsa = key_file(SK_DKIM_KEY_RSA), *ed = key_file(SK_DKIM_KEY_ED25519);
    char specs[4][512];
    snprintf(specs[0], sizeof specs[0], "Example.ORG:s1:%s", rsa);
    snprintf(specs[1], sizeof specs[1], "example.org.:e1:%s", ed);
    snprintf(specs[2], sizeof specs[2], "news.example.org:n1:%s", rsa);
    snprintf(specs[3], sizeof specs[3], "other.example:o1:%s", ed);
    char *v[] = {specs[0], specs[1], specs[2], specs[3]};
    sk_strlist l = {v, 4};
    sk_dkim_keyring *r = NULL;
    sk_error err;
    assert_int_equal(sk_dkim_keyring_load(&l, &r, &err), SK_OK);
    assert_int_equal(sk_dkim_keyring_count(r), 4);
    static const struct {
        const char *from;
        size_t n;
        const char *domain, *selectors; /* the d= of all, their s= in order */
    } picks[] = {
        {"example.org", 2, "example.org", "s1 e1"},
        {"mail.example.org", 2, "example.org", "s1 e1"}, /* a parent's keys sign */
        {"news.example.org", 1, "news.example.org", "n1"},
        {"a.news.example.org", 1, "news.example.org", "n1"}, /* the most specific wins */
        {"other.example", 1, "other.example", "o1"},
        {"xexample.org", 0, NULL, NULL},
        {"example.org.evil.example", 0, NULL, NULL},
        {"org", 0, NULL, NULL},
    };
    for (size_t i = 0; i < SKT_N(picks); i++) {
        sk_dkim_sign_opts o[SK_DKIM_SIGN_MAX];
        size_t n = sk_dkim_keyring_pick(r, picks[i].from, o, SK_DKIM_SIGN_MAX);
        if (n != picks[i].n) fail_msg("%s: %zu keys", picks[i].from, n);
        char sel[64] = "";
        for (size_t k = 0; k < n; k++) {
            assert_string_equal(o[k].domain, picks[i].domain);
            assert_non_null(o[k].key);
            snprintf(sel + strlen(sel), sizeof sel - strlen(sel), "%s%s", k ? " " : "",
                     o[k].selector);
        }
        if (n) assert_string_equal(sel, picks[i].selectors);
    }
    assert_int_equal(sk_dkim_keyring_pick(NULL, "example.org", NULL, 0), 0);
    sk_dkim_keyring_free(r);

    /* Errors name the file or the entry. */
    snprintf(specs[1], sizeof specs[1], "example.org:S1:%s", ed);
    l.n = 2;
    assert_int_equal(sk_dkim_keyring_load(&l, &r, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.text, "one selector of a domain twice"));
    snprintf(specs[0], sizeof specs[0], "example.org:s1:/nonexistent/key.pem");
    l.n = 1;
    assert_int_equal(sk_dkim_keyring_load(&l, &r, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.text, "/nonexistent/key.pem"));
    char many[SK_DKIM_SIGN_MAX + 1][512];
    char *mv[SK_DKIM_SIGN_MAX + 1];
    for (size_t i = 0; i <= SK_DKIM_SIGN_MAX; i++) {
        snprintf(many[i], sizeof many[i], "example.org:k%zu:%s", i, ed);
        mv[i] = many[i];
    }
    sk_strlist ml = {mv, SK_DKIM_SIGN_MAX + 1};
    assert_int_equal(sk_dkim_keyring_load(&ml, &r, &err), SK_ERR_CONFIG);
    assert_non_null(strstr(err.text, "more than"));
    ml.n = SK_DKIM_SIGN_MAX;
    assert_int_equal(sk_dkim_keyring_load(&ml, &r, &err), SK_OK);
    sk_dkim_keyring_free(r);
    unlink(rsa);
    unlink(ed);
    free(rsa);
    free(ed);
}

/* ---- the decision ------------------------------------------------------- */

enum { NO_DMARC = -1 };

static const struct {
    bool enforce, spf_reject_fail;
    sk_spf_result spf;
    int dmarc; /* sk_dmarc_status, or NO_DMARC */
    sk_dmarc_policy disposition;
    sk_auth_action action;
    int code;
    const char *enhanced, *text;
} decide_cases[] = {
    /* Reporting: everything accepted, whatever DMARC says. */
    {false, false, SK_SPF_FAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_REJECT, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {false, false, SK_SPF_PASS, SK_DMARC_TEMPERROR, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {false, false, SK_SPF_FAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_QUARANTINE, SK_AUTH_ACCEPT, 250,
     NULL, NULL},
    /* Enforcing: the disposition (after pct) decides. */
    {true, false, SK_SPF_FAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_REJECT, SK_AUTH_REFUSE, 550, "5.7.1",
     "DMARC policy of from.example (p=reject)"},
    {true, false, SK_SPF_FAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_QUARANTINE, SK_AUTH_QUARANTINE, 250,
     NULL, NULL},
    {true, false, SK_SPF_FAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {true, false, SK_SPF_PASS, SK_DMARC_PASS, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {true, false, SK_SPF_FAIL, SK_DMARC_NONE, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {true, false, SK_SPF_FAIL, SK_DMARC_PERMERROR, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {true, false, SK_SPF_FAIL, NO_DMARC, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL, NULL},
    /* A DNS failure: 451 when enforcing, never 5xx. */
    {true, false, SK_SPF_PASS, SK_DMARC_TEMPERROR, SK_DMARC_POLICY_NONE, SK_AUTH_DEFER, 451,
     "4.7.0", "DMARC check of from.example"},
    /* SPF on its own only with --spf-reject-fail, and not when DMARC
     * passed (an aligned signature: forwarded mail). */
    {false, false, SK_SPF_FAIL, SK_DMARC_NONE, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {false, true, SK_SPF_FAIL, SK_DMARC_NONE, SK_DMARC_POLICY_NONE, SK_AUTH_REFUSE, 550, "5.7.23",
     "192.0.2.1 is not allowed to send mail for mf.example"},
    {false, true, SK_SPF_FAIL, NO_DMARC, SK_DMARC_POLICY_NONE, SK_AUTH_REFUSE, 550, "5.7.23", NULL},
    {false, true, SK_SPF_FAIL, SK_DMARC_PASS, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {false, true, SK_SPF_SOFTFAIL, SK_DMARC_NONE, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {false, true, SK_SPF_PERMERROR, SK_DMARC_NONE, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    {false, true, SK_SPF_TEMPERROR, SK_DMARC_NONE, SK_DMARC_POLICY_NONE, SK_AUTH_DEFER, 451,
     "4.7.24", "SPF check of mf.example"},
    {false, true, SK_SPF_TEMPERROR, SK_DMARC_PASS, SK_DMARC_POLICY_NONE, SK_AUTH_ACCEPT, 250, NULL,
     NULL},
    /* Both: DMARC reject first; a quarantine gives way to an SPF refusal. */
    {true, true, SK_SPF_FAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_REJECT, SK_AUTH_REFUSE, 550, "5.7.1",
     NULL},
    {true, true, SK_SPF_FAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_QUARANTINE, SK_AUTH_REFUSE, 550,
     "5.7.23", NULL},
    {true, true, SK_SPF_SOFTFAIL, SK_DMARC_FAIL, SK_DMARC_POLICY_QUARANTINE, SK_AUTH_QUARANTINE,
     250, NULL, NULL},
};

static void test_decide(void **state)
{
    (void)state;
    for (size_t i = 0; i < SKT_N(decide_cases); i++) {
        sk_spf_outcome spf = {.result = decide_cases[i].spf, .domain = "mf.example"};
        sk_dmarc_result dm = {.status = (sk_dmarc_status)decide_cases[i].dmarc,
                              .disposition = decide_cases[i].disposition,
                              .policy = decide_cases[i].disposition,
                              .policy_tag = "p",
                              .from_domain = "from.example"};
        sk_auth_results r = {.spf_mailfrom = &spf,
                             .dmarc = decide_cases[i].dmarc == NO_DMARC ? NULL : &dm,
                             .peer = "192.0.2.1"};
        sk_auth_policy p = {decide_cases[i].enforce, decide_cases[i].spf_reject_fail};
        sk_auth_verdict v = sk_auth_decide(&p, &r);
        if (v.action != decide_cases[i].action || v.reply.code != decide_cases[i].code ||
            (decide_cases[i].enhanced && strcmp(v.reply.enhanced, decide_cases[i].enhanced)) ||
            (decide_cases[i].text && !strstr(v.reply.text, decide_cases[i].text)))
            fail_msg("case %zu: %s %d %s %s", i, sk_auth_action_name(v.action), v.reply.code,
                     v.reply.enhanced, v.reply.text);
    }
}

/* ---- what is recorded --------------------------------------------------- */

static void test_record(void **state)
{
    (void)state;
    sk_dkim_result d[2] = {
        {.status = SK_DKIM_PASS,
         .domain = "example.org",
         .identity = "@example.org",
         .selector = "s1",
         .algorithm = "rsa-sha256",
         .b = "AbC/d+9="},
        {.status = SK_DKIM_FAIL,
         .reason = "body hash did not verify",
         .domain = "example.net",
         .identity = "@example.net",
         .selector = "e1",
         .algorithm = "ed25519-sha256",
         .b = "xyzXYZ12",
         .testing = 1},
    };
    sk_spf_outcome mf = {.result = SK_SPF_PASS,
                         .identity = SK_SPF_MAILFROM,
                         .property = "smtp.mailfrom",
                         .property_value = "bounce@example.org"};
    sk_spf_outcome helo = {.result = SK_SPF_SOFTFAIL,
                           .identity = SK_SPF_HELO,
                           .reason = "~all matched in\tclient.example",
                           .property = "smtp.helo",
                           .property_value = "client.example"};
    sk_dmarc_result dm = {.status = SK_DMARC_FAIL,
                          .policy = SK_DMARC_POLICY_QUARANTINE,
                          .disposition = SK_DMARC_POLICY_QUARANTINE,
                          .policy_tag = "sp",
                          .has_record = 1,
                          .from_domain = "news.example.com",
                          .reason = "no aligned pass"};
    sk_auth_results r = {
        .dkim = d, .n_dkim = 2, .spf_mailfrom = &mf, .spf_helo = &helo, .dmarc = &dm};
    sk_auth_verdict v = {.action = SK_AUTH_QUARANTINE};
    sk_buf fields = SK_BUF_INIT(1 << 16), summary = SK_BUF_INIT(SK_TRACK_FIELD_MAX_OCTETS);
    sk_error err;
    assert_int_equal(sk_auth_record("mx.test", &r, &v, &fields, &summary, &err), SK_OK);
    assert_string_equal(
        sk_buf_cstr(&fields),
        "Authentication-Results: mx.test;\r\n"
        "\tdkim=pass header.d=example.org header.i=@example.org header.s=s1\r\n"
        "\theader.a=rsa-sha256 header.b=\"AbC/d+9=\";\r\n"
        "\tdkim=fail (key in testing mode) reason=\"body hash did not verify\"\r\n"
        "\theader.d=example.net header.i=@example.net header.s=e1\r\n"
        "\theader.a=ed25519-sha256 header.b=xyzXYZ12;\r\n"
        "\tspf=pass smtp.mailfrom=bounce@example.org;\r\n"
        "\tspf=softfail reason=\"~all matched in?client.example\" smtp.helo=client.example;\r\n"
        "\tdmarc=fail (sp=quarantine dis=quarantine) reason=\"no aligned pass\"\r\n"
        "\theader.from=news.example.com\r\n"
        "X-SMTPKit-Quarantine: dmarc\r\n");
    assert_string_equal(sk_buf_cstr(&summary),
                        "dkim=pass header.d=example.org header.i=@example.org header.s=s1 "
                        "header.a=rsa-sha256; dkim=fail header.d=example.net "
                        "header.i=@example.net header.s=e1 header.a=ed25519-sha256; "
                        "spf=pass smtp.mailfrom=bounce@example.org; "
                        "spf=softfail smtp.helo=client.example; "
                        "dmarc=fail header.from=news.example.com");

    /* No signature, a header block DKIM could not read, nothing else. */
    sk_auth_results none = {0};
    sk_auth_verdict accept = {.action = SK_AUTH_ACCEPT};
    sk_buf_reset(&fields);
    assert_int_equal(sk_auth_record("mx.test", &none, &accept, &fields, NULL, &err), SK_OK);
    assert_string_equal(sk_buf_cstr(&fields),
                        "Authentication-Results: mx.test;\r\n\tdkim=none\r\n");
    none.dkim_error = "header block over 262144 octets";
    sk_buf_reset(&fields);
    assert_int_equal(sk_auth_record("mx.test", &none, &accept, &fields, NULL, &err), SK_OK);
    assert_non_null(strstr(sk_buf_cstr(&fields), "dkim=permerror reason=\"header block over"));

    /* A summary too long for the tracking store says what it left out. */
    sk_dkim_result many[SK_DKIM_VERIFY_SIGNATURES_MAX];
    for (size_t i = 0; i < SKT_N(many); i++) {
        many[i] = d[0];
        memset(many[i].domain, 'a', 250);
        many[i].domain[250] = '\0';
        memcpy(many[i].domain + 240, ".example", 9);
        many[i].identity[0] = '@';
        memcpy(many[i].identity + 1, many[i].domain, strlen(many[i].domain) + 1);
    }
    sk_auth_results lots = {.dkim = many, .n_dkim = SKT_N(many), .dmarc = &dm};
    sk_buf_reset(&fields);
    sk_buf_reset(&summary);
    assert_int_equal(sk_auth_record("mx.test", &lots, &accept, &fields, &summary, &err), SK_OK);
    assert_true(summary.len <= SK_TRACK_FIELD_MAX_OCTETS);
    assert_non_null(strstr(sk_buf_cstr(&summary), "more)"));
    sk_buf_free(&fields);
    sk_buf_free(&summary);
}

/* ---- the signing pool --------------------------------------------------- */

typedef struct sign_seen {
    int calls;
    sk_err e;
    bool signature;   /* the fields are a DKIM-Signature */
    bool on_the_loop; /* called on the thread that runs the loop */
} sign_seen;

static pthread_t loop_thread;

static void signed_cb(void *ctx, sk_err e, sk_buf *fields, const sk_error *err)
{
    sign_seen *s = ctx;
    (void)err;
    s->calls++;
    s->e = e;
    s->signature = fields->len && !strncmp(fields->data, "DKIM-Signature:", 15);
    s->on_the_loop = pthread_equal(pthread_self(), loop_thread);
}

static sk_dkim_signer *pool_signer(sk_dkim_key *key)
{
    static const char msg[] = "From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n";
    sk_dkim_sign_opts o = {.domain = "example.org", .selector = "s1", .key = key};
    sk_error err;
    sk_dkim_signer *s = sk_dkim_signer_new(&o, 1, &err);
    assert_non_null(s);
    assert_int_equal(sk_dkim_signer_feed(s, msg, sizeof msg - 1), SK_OK);
    return s;
}

/* Every message submitted comes back once, signed, on the loop; freeing
 * the pool drops what the loop has not taken yet without a callback. */
static void test_sign_pool(void **state)
{
    (void)state;
    static const struct {
        size_t n;          /* messages submitted */
        bool run_the_loop; /* else the pool is freed at once */
    } cases[] = {{1, true}, {16, true}, {16, false}};
    sk_dkim_key *key = NULL;
    sk_error err;
    assert_int_equal(sk_dkim_key_generate(SK_DKIM_KEY_ED25519, 0, &key, &err), SK_OK);
    loop_thread = pthread_self();
    for (size_t c = 0; c < SKT_N(cases); c++) {
        struct event_base *base = event_base_new();
        assert_non_null(base);
        sk_sign_pool *p = sk_sign_pool_new(base, &err);
        assert_non_null(p);
        sk_dkim_signer *signers[16];
        sign_seen seen[16] = {0};
        for (size_t i = 0; i < cases[c].n; i++) {
            signers[i] = pool_signer(key);
            assert_int_equal(sk_sign_pool_submit(p, signers[i], signed_cb, &seen[i]), SK_OK);
        }
        size_t done = 0;
        while (cases[c].run_the_loop && done < cases[c].n) {
            assert_true(event_base_loop(base, EVLOOP_ONCE) >= 0);
            done = 0;
            for (size_t i = 0; i < cases[c].n; i++) done += seen[i].calls > 0;
        }
        sk_sign_pool_free(p);
        for (size_t i = 0; i < cases[c].n; i++) {
            assert_int_equal(seen[i].calls, cases[c].run_the_loop ? 1 : 0);
            if (cases[c].run_the_loop) {
                assert_int_equal(seen[i].e, SK_OK);
                assert_true(seen[i].signature);
                assert_true(seen[i].on_the_loop);
            }
            /* The signers are the caller's, whatever became of the jobs. */
            sk_dkim_signer_free(signers[i]);
        }
        event_base_free(base);
    }
    sk_dkim_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_scan_long),
        cmocka_unit_test(test_scan_from_overflow),
        cmocka_unit_test(test_keyring),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_sign_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
