/* Unit tests for src/arc: chains sealed and verified over 1, 2, 3 and 50
 * hops with RSA and Ed25519 keys answered by the test (sans I/O), every
 * broken form of a chain (missing, duplicate and out-of-range instances,
 * gaps, wrong cv=, tampered AAR, AMS, AS, header and body), oldest-pass,
 * the cv=fail seal (RFC 8617 5.1.2) and what a sealer refuses, the AAR
 * instance reader, the resolver path, and an allocation-failure sweep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include "arc/arc_int.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sk_dkim_key *rsa_key, *ed_key;
static char *rsa_rec, *ed_rec;
static const int64_t fixed_time = 1764583200; /* 2025-12-01 10:00:00 UTC */

static char *record_of(sk_dkim_key *k)
{
    sk_buf b = SK_BUF_INIT(8192);
    assert_int_equal(sk_dkim_key_record(k, &b), 0);
    return b.data;
}

static int make_keys(void **state)
{
    (void)state;
    sk_error err;
    if (sk_dkim_key_generate(SK_DKIM_KEY_RSA, 1024, &rsa_key, &err) ||
        sk_dkim_key_generate(SK_DKIM_KEY_ED25519, 0, &ed_key, &err))
        return -1;
    rsa_rec = record_of(rsa_key);
    ed_rec = record_of(ed_key);
    return 0;
}

static int free_keys(void **state)
{
    (void)state;
    sk_dkim_key_free(rsa_key);
    sk_dkim_key_free(ed_key);
    sk_free(rsa_rec);
    sk_free(ed_rec);
    return 0;
}

static const char base_msg[] = "Received: from a by b; Mon, 1 Dec 2025 10:00:00 +0000\r\n"
                               "From: Zoe <zoe@example.org>\r\n"
                               "To: list@example.net\r\n"
                               "Subject: Hello\r\n"
                               "Date: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
                               "Message-ID: <1@example.org>\r\n"
                               "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=x; h=from;\r\n"
                               "\tbh=x; b=x\r\n"
                               "\r\n"
                               "Hello  list \r\n"
                               "\r\n";

/* One more ARC set on msg: 'r' seals with the RSA key, 'e' with Ed25519.
 * The new message (malloc'ed), or NULL with *e set. */
static char *seal_with(const char *msg, char which, sk_arc_status cv, sk_err *e_out, sk_error *err)
{
    sk_arc_seal_opts o = {.domain = "example.org",
                          .selector = which == 'e' ? "ed" : "rsa",
                          .key = which == 'e' ? ed_key : rsa_key,
                          .authserv_id = "mx.example.org",
                          .results_text = "spf=pass smtp.mailfrom=example.org; dkim=pass "
                                          "header.d=example.org (\"quoted  words\")",
                          .cv = cv,
                          .timestamp = fixed_time};
    sk_buf out = SK_BUF_INIT(1u << 22);
    sk_err e = sk_arc_seal(&o, msg, strlen(msg), &out, err);
    if (e_out) *e_out = e;
    if (e) {
        sk_buf_free(&out);
        return NULL;
    }
    assert_int_equal(sk_buf_puts(&out, msg), 0);
    return out.data;
}

static char *seal(const char *msg, char which, sk_arc_status cv)
{
    sk_error err;
    sk_err e;
    char *m = seal_with(msg, which, cv, &e, &err);
    if (!m) fail_msg("seal: %s", err.text);
    return m;
}

/* Seal base_msg once per letter of keys, each hop with cv=pass after the
 * first. */
static char *chain(const char *keys)
{
    char *m = strdup(base_msg);
    for (size_t i = 0; keys[i]; i++) {
        char *n = seal(m, keys[i], i ? SK_ARC_PASS : SK_ARC_NONE);
        free(m);
        m = n;
    }
    return m;
}

enum { KEYS_OK = 0, KEYS_TEMPFAIL, KEYS_MISSING };

/* Verify msg in chunks of chunk octets (0: whole), answering keys. */
static sk_arc_verifier *verify_chunks(const char *msg, int keys, size_t chunk)
{
    sk_arc_verify_opts o = {.now = fixed_time + 60};
    sk_error err;
    sk_arc_verifier *v = sk_arc_verifier_new(&o, &err);
    assert_non_null(v);
    size_t len = strlen(msg);
    if (!chunk) chunk = len ? len : 1;
    for (size_t off = 0; off < len; off += chunk)
        assert_int_equal(sk_arc_verifier_feed(v, msg + off, len - off < chunk ? len - off : chunk),
                         0);
    assert_int_equal(sk_arc_verifier_finish(v, &err), 0);
    const char *q;
    while ((q = sk_arc_verifier_next_query(v))) {
        const char *rec = !strcmp(q, "rsa._domainkey.example.org")  ? rsa_rec
                          : !strcmp(q, "ed._domainkey.example.org") ? ed_rec
                                                                    : NULL;
        sk_dns_status st = keys == KEYS_TEMPFAIL          ? SK_DNS_TEMPFAIL
                           : !rec || keys == KEYS_MISSING ? SK_DNS_NXDOMAIN
                                                          : SK_DNS_OK;
        assert_int_equal(sk_arc_verifier_answer(v, q, st, &rec, st == SK_DNS_OK), 0);
    }
    return v;
}

static sk_arc_verifier *verify(const char *msg)
{
    return verify_chunks(msg, KEYS_OK, 0);
}

/* ---- the AAR's instance ---- */

static void test_aar_instance(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        unsigned want;
    } cases[] = {
        {" i=1; mx.example.org; spf=pass", 1},
        {"i=50;x", 50},
        {" I = 7 ; x", 7},
        {"\r\n\ti=2;\r\n\tx", 2},
        {" (comment (nested)) i=3 (more);", 3},
        {" i=0; x", 0},
        {" i=51; x", 0},
        {" i=001; x", 0},
        {" i=1 x; y", 0},
        {" i=1", 0},
        {" i=; x", 0},
        {" x=1; i=1;", 0},
        {" (open comment i=1;", 0},
        {"", 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        unsigned got = arc_aar_instance(cases[i].value, strlen(cases[i].value));
        if (got != cases[i].want) fail_msg("'%s': %u, not %u", cases[i].value, got, cases[i].want);
    }
}

/* ---- seal, then verify ---- */

static void test_round_trip(void **state)
{
    (void)state;
    static const char *const patterns[] = {"r", "e", "rr", "re", "er", "rer", "eee", "ere"};
    for (size_t p = 0; p < SKT_N(patterns); p++) {
        char *m = chain(patterns[p]);
        unsigned n = (unsigned)strlen(patterns[p]);
        /* Whole, and a few octets at a time as a server gets it. */
        for (size_t chunk = 0; chunk <= 7; chunk += 7) {
            sk_arc_verifier *v = verify_chunks(m, KEYS_OK, chunk);
            const sk_arc_result *r = sk_arc_verifier_result(v);
            if (r->status != SK_ARC_PASS) fail_msg("%s: %s", patterns[p], r->reason);
            assert_int_equal(r->instances, n);
            assert_int_equal(r->oldest_pass, 0);
            assert_int_equal(sk_arc_verifier_sets(v), n);
            for (unsigned i = 1; i <= n; i++) {
                const sk_arc_set_info *s = sk_arc_verifier_set(v, i);
                assert_int_equal(s->instance, i);
                assert_int_equal(s->cv, i == 1 ? SK_ARC_NONE : SK_ARC_PASS);
                assert_int_equal(s->ams, SK_DKIM_PASS);
                assert_int_equal(s->as, SK_DKIM_PASS);
                assert_string_equal(s->as_selector, patterns[p][i - 1] == 'e' ? "ed" : "rsa");
            }
            assert_null(sk_arc_verifier_set(v, n + 1));
            sk_arc_verifier_free(v);
        }
        free(m);
    }
}

static void test_none(void **state)
{
    (void)state;
    sk_arc_verifier *v = verify(base_msg);
    const sk_arc_result *r = sk_arc_verifier_result(v);
    assert_int_equal(r->status, SK_ARC_NONE);
    assert_int_equal(r->instances, 0);
    assert_int_equal(sk_arc_verifier_sets(v), 0);
    sk_arc_verifier_free(v);
    /* A result is not one before the message is complete. */
    v = sk_arc_verifier_new(NULL, NULL);
    assert_int_equal(sk_arc_verifier_result(v)->status, SK_ARC_FAIL);
    assert_string_equal(sk_arc_verifier_result(v)->reason, "not finished");
    assert_null(sk_arc_verifier_next_query(v));
    sk_arc_verifier_free(v);
}

/* ---- each broken form ---- */

/* The field of msg that starts a line with prefix: [*start, *end). */
static int find_field(const char *msg, const char *prefix, size_t *start, size_t *end)
{
    size_t pl = strlen(prefix);
    for (const char *p = msg; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
        if (p[0] == '\r') return 0; /* the body */
        if (strncmp(p, prefix, pl)) continue;
        const char *e = p;
        do {
            e = strstr(e, "\r\n") + 2;
        } while (*e == ' ' || *e == '\t');
        *start = (size_t)(p - msg);
        *end = (size_t)(e - msg);
        return 1;
    }
    return 0;
}

enum { OP_NONE, OP_DROP, OP_DUP, OP_EDIT, OP_BODY };

/* A changed copy of msg: drop or duplicate the field starting with
 * prefix, or replace old with new in it (OP_EDIT) or in the body. */
static char *mutate(const char *msg, int op, const char *prefix, const char *old, const char *new)
{
    size_t len = strlen(msg), s = 0, e = 0;
    char *out = malloc(2 * len + 1000);
    assert_non_null(out);
    if (op == OP_NONE) return strcpy(out, msg);
    if (op == OP_BODY) {
        const char *body = strstr(msg, "\r\n\r\n") + 4;
        s = e = (size_t)(body - msg);
    } else if (!find_field(msg, prefix, &s, &e)) {
        fail_msg("no field %s", prefix);
    }
    if (op == OP_DROP) {
        memcpy(out, msg, s);
        strcpy(out + s, msg + e);
    } else if (op == OP_DUP) {
        memcpy(out, msg, e);
        memcpy(out + e, msg + s, e - s);
        strcpy(out + e + (e - s), msg + e);
    } else {
        const char *hit = strstr(msg + s, old);
        if (!hit || (op == OP_EDIT && (size_t)(hit - msg) >= e))
            fail_msg("no %s in %s", old, prefix);
        size_t at = (size_t)(hit - msg);
        memcpy(out, msg, at);
        strcpy(out + at, new);
        strcat(out, hit + strlen(old));
    }
    return out;
}

#define AAR(i) "ARC-Authentication-Results: i=" #i ";"
#define AMS(i) "ARC-Message-Signature: i=" #i ";"
#define AS(i)  "ARC-Seal: i=" #i ";"
#define T      "t=1764583200"

static void test_broken(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int op;
        const char *prefix, *old, *new;
        sk_arc_status want;
        unsigned failed_at;
        const char *reason;
    } cases[] = {
        {"untouched", OP_NONE, NULL, NULL, NULL, SK_ARC_PASS, 0, "3 ARC sets verified"},
        {"no AAR 2", OP_DROP, AAR(2), NULL, NULL, SK_ARC_FAIL, 0,
         "instance 2 has no ARC-Authentication-Results"},
        {"no AMS 1", OP_DROP, AMS(1), NULL, NULL, SK_ARC_FAIL, 0,
         "instance 1 has no ARC-Message-Signature"},
        {"no AS 3", OP_DROP, AS(3), NULL, NULL, SK_ARC_FAIL, 0, "instance 3 has no ARC-Seal"},
        {"two AMS 2", OP_DUP, AMS(2), NULL, NULL, SK_ARC_FAIL, 0,
         "two ARC-Message-Signature fields for instance 2"},
        {"two AAR 3", OP_DUP, AAR(3), NULL, NULL, SK_ARC_FAIL, 0,
         "two ARC-Authentication-Results fields for instance 3"},
        {"gap: instance 2 is 4", OP_EDIT, AS(2), "i=2;", "i=4;", SK_ARC_FAIL, 0,
         "instance 2 has no ARC-Seal"},
        {"instance 0", OP_EDIT, AAR(1), "i=1;", "i=0;", SK_ARC_FAIL, 0,
         "an ARC-Authentication-Results without an instance"},
        {"instance 51", OP_EDIT, AMS(1), "i=1;", "i=51;", SK_ARC_FAIL, 0,
         "ARC-Message-Signature cannot be used: i= is not an instance from 1 to 50"},
        {"cv=pass at 1", OP_EDIT, AS(1), "cv=none", "cv=pass", SK_ARC_FAIL, 0,
         "instance 1 says cv=pass where none belongs"},
        {"cv=none at 2", OP_EDIT, AS(2), "cv=pass", "cv=none", SK_ARC_FAIL, 0,
         "instance 2 says cv=none where pass belongs"},
        {"cv=fail at 2", OP_EDIT, AS(2), "cv=pass", "cv=fail", SK_ARC_FAIL, 0,
         "instance 2 says cv=fail where pass belongs"},
        {"cv=fail at 3", OP_EDIT, AS(3), "cv=pass", "cv=fail", SK_ARC_FAIL, 3,
         "instance 3 says cv=fail: the chain ended"},
        {"cv=maybe", OP_EDIT, AS(2), "cv=pass", "cv=maybe", SK_ARC_FAIL, 0,
         "ARC-Seal i=2 cannot be used: cv= is not none, pass or fail"},
        {"h= in a seal", OP_EDIT, AS(2), "cv=pass;", "cv=pass; h=from;", SK_ARC_FAIL, 0,
         "h= is not allowed in an ARC-Seal"},
        {"AMS signs ARC-Seal", OP_EDIT, AMS(2), "h=", "h=arc-seal:", SK_ARC_FAIL, 0,
         "must not sign ARC-Seal"},
        {"tampered AMS 3", OP_EDIT, AMS(3), T, "t=1764583201", SK_ARC_FAIL, 3,
         "ARC-Message-Signature of instance 3 (d=example.org) did not pass: signature did not "
         "verify"},
        {"tampered AMS 1", OP_EDIT, AMS(1), T, "t=1764583201", SK_ARC_FAIL, 3,
         "ARC-Seal of instance 3 (d=example.org) did not pass: signature did not verify"},
        {"tampered AS 3", OP_EDIT, AS(3), T, "t=1764583201", SK_ARC_FAIL, 3,
         "ARC-Seal of instance 3"},
        {"tampered AS 1", OP_EDIT, AS(1), T, "t=1764583201", SK_ARC_FAIL, 3,
         "ARC-Seal of instance 3"},
        {"tampered AAR 2", OP_EDIT, AAR(2), "spf=pass", "spf=fail", SK_ARC_FAIL, 3,
         "ARC-Seal of instance 3"},
        {"tampered header", OP_EDIT, "Subject:", "Hello", "Hullo", SK_ARC_FAIL, 3,
         "ARC-Message-Signature of instance 3 (d=example.org) did not pass: signature did not "
         "verify"},
        {"tampered body", OP_BODY, NULL, "list", "lust", SK_ARC_FAIL, 3,
         "ARC-Message-Signature of instance 3 (d=example.org) did not pass: body hash did not "
         "verify"},
        /* What relaxed canonicalization forgives is no tampering. */
        {"refolded AAR", OP_EDIT, AAR(2), "; spf", ";\r\n   spf", SK_ARC_PASS, 0, "verified"},
        {"seal with a new field", OP_EDIT, "Subject:", "Subject: Hello\r\n",
         "Subject: Hello\r\nX-Added: by a list\r\n", SK_ARC_PASS, 0, "verified"},
    };
    char *m = chain("rer");
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char *b = mutate(m, cases[i].op, cases[i].prefix, cases[i].old, cases[i].new);
        sk_arc_verifier *v = verify(b);
        const sk_arc_result *r = sk_arc_verifier_result(v);
        if (r->status != cases[i].want || !strstr(r->reason, cases[i].reason) ||
            r->failed_instance != cases[i].failed_at)
            fail_msg("%s: arc=%s at %u (%s)", cases[i].name, sk_arc_status_name(r->status),
                     r->failed_instance, r->reason);
        assert_false(r->temporary);
        sk_arc_verifier_free(v);
        free(b);
    }
    free(m);
}

/* ---- oldest-pass, keys, the cv=fail seal ---- */

static void test_oldest_pass(void **state)
{
    (void)state;
    /* A list adds a footer after instance 1 and seals as instance 2: the
     * chain passes, but AMS 1 no longer verifies. */
    char *one = chain("r");
    char *footer =
        mutate(one, OP_BODY, NULL, "Hello  list \r\n", "Hello  list \r\n-- \r\nlist\r\n");
    char *two = seal(footer, 'e', SK_ARC_PASS);
    char *three = seal(two, 'r', SK_ARC_PASS);
    const char *msgs[] = {two, three};
    for (size_t i = 0; i < 2; i++) {
        sk_arc_verifier *v = verify(msgs[i]);
        const sk_arc_result *r = sk_arc_verifier_result(v);
        if (r->status != SK_ARC_PASS) fail_msg("%s", r->reason);
        assert_int_equal(r->oldest_pass, 2);
        assert_int_equal(sk_arc_verifier_set(v, 1)->ams, SK_DKIM_FAIL);
        sk_arc_authres ar;
        sk_arc_authres_result(r, "192.0.2.1", &ar);
        sk_buf b = SK_BUF_INIT(4096);
        assert_int_equal(sk_authres_build("mx.example.net", &ar.result, 1, &b, NULL), 0);
        assert_non_null(strstr(b.data, "arc=pass"));
        assert_non_null(strstr(b.data, "header.oldest-pass=2"));
        assert_non_null(strstr(b.data, "smtp.remote-ip=192.0.2.1"));
        sk_buf_free(&b);
        sk_arc_verifier_free(v);
    }
    free(one);
    free(footer);
    free(two);
    free(three);
}

static void test_keys(void **state)
{
    (void)state;
    char *m = chain("re");
    sk_arc_verifier *v = verify_chunks(m, KEYS_TEMPFAIL, 0);
    const sk_arc_result *r = sk_arc_verifier_result(v);
    assert_int_equal(r->status, SK_ARC_FAIL);
    assert_true(r->temporary);
    assert_non_null(strstr(r->reason, "failed for now"));
    sk_arc_verifier_free(v);
    v = verify_chunks(m, KEYS_MISSING, 0);
    r = sk_arc_verifier_result(v);
    assert_int_equal(r->status, SK_ARC_FAIL);
    assert_false(r->temporary);
    assert_non_null(strstr(r->reason, "no key for signature at ed._domainkey.example.org"));
    sk_arc_authres ar;
    sk_arc_authres_result(r, NULL, &ar);
    assert_string_equal(ar.result.result, "fail");
    assert_int_equal(ar.result.n_props, 0);
    assert_string_equal(ar.result.reason, r->reason);
    sk_arc_verifier_free(v);
    /* Answering a name nobody asked for. */
    v = sk_arc_verifier_new(NULL, NULL);
    assert_int_equal(sk_arc_verifier_feed(v, m, strlen(m)), 0);
    assert_int_equal(sk_arc_verifier_finish(v, NULL), 0);
    assert_int_equal(sk_arc_verifier_answer(v, "x._domainkey.example.org", SK_DNS_OK, NULL, 0),
                     SK_ERR_NOT_FOUND);
    sk_arc_verifier_free(v);
    free(m);
}

/* The seal of a cv=fail set covers that set alone (RFC 8617 5.1.2). */
static void check_lone_seal(const char *msg, unsigned instance)
{
    dkim_msg dm;
    dkim_msg_init(&dm, NULL, NULL, NULL, NULL);
    assert_int_equal(dkim_msg_feed(&dm, msg, strlen(msg)), 0);
    assert_int_equal(dkim_msg_end(&dm), 0);
    arc_chain c;
    assert_int_equal(arc_chain_collect(&c, &dm), 0);
    const arc_set *s = &c.sets[instance];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    sk_buf scratch = SK_BUF_INIT(1u << 20), as = SK_BUF_INIT(1u << 20);
    assert_true(EVP_DigestInit_ex(md, EVP_sha256(), NULL));
    for (int k = ARC_AAR; k <= ARC_AS; k++) {
        const dkim_field *f = &dm.fields[s->field[k] - 1];
        if (k == ARC_AS) {
            assert_int_equal(dkim_field_strip_b(dm.head.data + f->off, f->len, &as), 0);
            assert_int_equal(arc_seal_hash_field(md, as.data, as.len, 1, &scratch), 0);
        } else {
            assert_int_equal(arc_seal_hash_field(md, dm.head.data + f->off, f->len, 0, &scratch),
                             0);
        }
    }
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl;
    assert_true(EVP_DigestFinal_ex(md, d, &dl));
    assert_true(dkim_verify_digest(dkim_key_pkey(rsa_key), SK_DKIM_RSA_SHA256, d, dl, s->as->b,
                                   s->as->b_len));
    EVP_MD_CTX_free(md);
    sk_buf_free(&scratch);
    sk_buf_free(&as);
    arc_chain_clear(&c);
    dkim_msg_clear(&dm);
}

static void test_seal_failed_chain(void **state)
{
    (void)state;
    char *two = chain("re");
    char *broken = mutate(two, OP_BODY, NULL, "list", "lust");
    sk_arc_verifier *v = verify(broken);
    assert_int_equal(sk_arc_verifier_result(v)->status, SK_ARC_FAIL);
    sk_arc_verifier_free(v);
    char *sealed = seal(broken, 'r', SK_ARC_FAIL);
    assert_non_null(strstr(sealed, "ARC-Seal: i=3; a=rsa-sha256; cv=fail;"));
    check_lone_seal(sealed, 3);
    v = verify(sealed);
    const sk_arc_result *r = sk_arc_verifier_result(v);
    assert_int_equal(r->status, SK_ARC_FAIL);
    assert_int_equal(r->failed_instance, 3);
    assert_null(sk_arc_verifier_next_query(v)); /* decided without a key */
    sk_arc_verifier_free(v);
    /* Nobody seals after cv=fail (RFC 8617 5.1 step 1), whatever cv. */
    for (int cv = 0; cv < SK_ARC_STATUS__COUNT; cv++) {
        sk_error err;
        sk_err e;
        assert_null(seal_with(sealed, 'r', (sk_arc_status)cv, &e, &err));
        assert_int_equal(e, SK_ERR_STATE);
        assert_non_null(strstr(err.text, "ends with cv=fail at instance 3"));
    }
    /* A broken shape can be sealed with cv=fail, not with pass. */
    char *dup = mutate(two, OP_DUP, AMS(1), NULL, NULL);
    sk_error err;
    sk_err e;
    assert_null(seal_with(dup, 'r', SK_ARC_PASS, &e, &err));
    assert_int_equal(e, SK_ERR_STATE);
    assert_non_null(strstr(err.text, "cannot have verified: two ARC-Message-Signature"));
    char *dup_sealed = seal(dup, 'r', SK_ARC_FAIL);
    check_lone_seal(dup_sealed, 3);
    free(dup_sealed);
    free(dup);
    free(sealed);
    free(broken);
    free(two);
}

static void test_fifty(void **state)
{
    (void)state;
    char keys[SK_ARC_INSTANCE_MAX + 1];
    memset(keys, 'e', SK_ARC_INSTANCE_MAX);
    keys[SK_ARC_INSTANCE_MAX] = '\0';
    char *m = chain(keys);
    sk_arc_verifier *v = verify(m);
    const sk_arc_result *r = sk_arc_verifier_result(v);
    if (r->status != SK_ARC_PASS) fail_msg("%s", r->reason);
    assert_int_equal(r->instances, SK_ARC_INSTANCE_MAX);
    sk_arc_verifier_free(v);
    sk_error err;
    sk_err e;
    assert_null(seal_with(m, 'e', SK_ARC_PASS, &e, &err));
    assert_int_equal(e, SK_ERR_STATE);
    assert_non_null(strstr(err.text, "already has 50 sets"));
    free(m);
}

static void test_seal_refusals(void **state)
{
    (void)state;
    char *one = chain("r");
    static const char no_from[] = "To: a@example.org\r\nSubject: x\r\n\r\nbody\r\n";
    static const struct {
        const char *msg; /* NULL: the one-set chain */
        sk_arc_status cv;
        sk_err want;
        const char *text;
    } cases[] = {
        {base_msg, SK_ARC_PASS, SK_ERR_STATE, "no ARC set, so cv must be none, not pass"},
        {base_msg, SK_ARC_FAIL, SK_ERR_STATE, "no ARC set, so cv must be none, not fail"},
        {NULL, SK_ARC_NONE, SK_ERR_STATE, "carries ARC fields, so cv cannot be none"},
        {no_from, SK_ARC_NONE, SK_ERR_SYNTAX, "no From field"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_error err;
        sk_err e;
        assert_null(seal_with(cases[i].msg ? cases[i].msg : one, 'r', cases[i].cv, &e, &err));
        if (e != cases[i].want || !strstr(err.text, cases[i].text))
            fail_msg("case %zu: %s: %s", i, sk_strerror(e), err.text);
    }
    free(one);
    static const char *const with_seal[] = {"From", "ARC-Seal", NULL};
    static const char *const with_ar[] = {"From", "authentication-results", NULL};
    static const char *const without_from[] = {"To", "Subject", NULL};
    static const struct {
        sk_arc_seal_opts o;
        const char *text;
    } opts[] = {
        {{.domain = "example.org", .selector = "s", .authserv_id = "x", .results_text = "a=b"},
         "no key"},
        {{.domain = "exa mple", .selector = "s", .authserv_id = "x", .results_text = "a=b"},
         "not a domain"},
        {{.domain = "example.org", .selector = "", .authserv_id = "x", .results_text = "a=b"},
         "selector"},
        {{.domain = "example.org", .selector = "s", .results_text = "a=b"}, "no authserv-id"},
        {{.domain = "example.org", .selector = "s", .authserv_id = "x"}, "no results"},
        {{.domain = "example.org",
          .selector = "s",
          .authserv_id = "x",
          .results_text = "a=b",
          .cv = SK_ARC_STATUS__COUNT},
         "unknown cv"},
        {{.domain = "example.org",
          .selector = "s",
          .authserv_id = "x",
          .results_text = "a=b",
          .headers = with_seal},
         "may not sign ARC-Seal"},
        {{.domain = "example.org",
          .selector = "s",
          .authserv_id = "x",
          .results_text = "a=b",
          .headers = with_ar},
         "may not sign authentication-results"},
        {{.domain = "example.org",
          .selector = "s",
          .authserv_id = "x",
          .results_text = "a=b",
          .headers = without_from},
         "must include From"},
    };
    for (size_t i = 0; i < SKT_N(opts); i++) {
        sk_arc_seal_opts o = opts[i].o;
        if (strcmp(opts[i].text, "no key")) o.key = rsa_key;
        sk_error err;
        assert_null(sk_arc_sealer_new(&o, &err));
        if (err.err != SK_ERR_INVAL || !strstr(err.text, opts[i].text))
            fail_msg("opts %zu: %s", i, err.text);
    }
    /* Results text with a line break would end the field. */
    sk_arc_seal_opts o = {.domain = "example.org",
                          .selector = "rsa",
                          .key = rsa_key,
                          .authserv_id = "mx.example.org",
                          .results_text = "spf=pass\r\nX-Injected: yes"};
    sk_buf out = SK_BUF_INIT(1u << 20);
    sk_error err;
    assert_int_equal(sk_arc_seal(&o, base_msg, strlen(base_msg), &out, &err), SK_ERR_INVAL);
    assert_int_equal(out.len, 0);
    sk_buf_free(&out);
}

/* The AAR as data (sk_authres_build_arc) and as text: folded between
 * words, never inside a quoted string or a comment. */
static void test_aar_forms(void **state)
{
    (void)state;
    sk_authres_prop props[] = {{"smtp", "mailfrom", "bounce@example.org"}};
    sk_authres_result res[] = {{.method = "spf", .result = "pass", .props = props, .n_props = 1}};
    sk_arc_seal_opts o = {.domain = "example.org",
                          .selector = "rsa",
                          .key = rsa_key,
                          .authserv_id = "mx.example.org",
                          .results = res,
                          .n_results = 1,
                          .timestamp = fixed_time};
    sk_buf out = SK_BUF_INIT(1u << 20);
    assert_int_equal(sk_arc_seal(&o, base_msg, strlen(base_msg), &out, NULL), 0);
    assert_non_null(strstr(out.data, "ARC-Authentication-Results: i=1; mx.example.org;\r\n\t"
                                     "spf=pass smtp.mailfrom=bounce@example.org\r\n"));
    sk_buf_free(&out);
    sk_buf b = SK_BUF_INIT(1u << 16);
    const char *text = "dkim=pass header.d=example.org header.s=sel header.b=\"ab  cd\";"
                       "   spf=pass (a comment that is long enough to need a fold  somewhere) "
                       "smtp.mailfrom=example.org";
    assert_int_equal(sk_authres_build_arc_text(2, "mx.example.org", text, &b, NULL), 0);
    assert_string_equal(b.data, "ARC-Authentication-Results: i=2; mx.example.org; dkim=pass\r\n"
                                "\theader.d=example.org header.s=sel header.b=\"ab  cd\";\r\n"
                                "\tspf=pass (a comment that is long enough to need a fold  "
                                "somewhere)\r\n"
                                "\tsmtp.mailfrom=example.org\r\n");
    sk_buf_reset(&b);
    assert_int_equal(sk_authres_build_arc_text(1, "x", "  \t ", &b, NULL), SK_ERR_INVAL);
    assert_int_equal(sk_authres_build_arc_text(0, "x", "a=b", &b, NULL), SK_ERR_INVAL);
    assert_int_equal(sk_authres_build_arc_text(1, "x", "a=\x01", &b, NULL), SK_ERR_INVAL);
    sk_buf_free(&b);
}

/* Results and cv known only at the end, as a server that checks while it
 * receives has them: set before finish, they replace the options'. */
static void test_set_results(void **state)
{
    (void)state;
    char *m = chain("r");
    sk_arc_seal_opts o = {.domain = "example.org",
                          .selector = "ed",
                          .key = ed_key,
                          .authserv_id = "mx.example.net",
                          .results_text = "none",
                          .cv = SK_ARC_NONE,
                          .timestamp = fixed_time};
    sk_error err;
    sk_arc_sealer *s = sk_arc_sealer_new(&o, &err);
    assert_non_null(s);
    size_t len = strlen(m);
    for (size_t i = 0; i < len; i += 7) {
        size_t n = len - i < 7 ? len - i : 7;
        assert_int_equal(sk_arc_sealer_feed(s, m + i, n), 0);
    }
    static const struct {
        const char *text;
        sk_arc_status cv;
        sk_err want;
    } bad[] = {{NULL, SK_ARC_PASS, SK_ERR_INVAL}, {"spf=pass", SK_ARC_STATUS__COUNT, SK_ERR_INVAL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sk_arc_sealer_set_results(s, bad[i].text, bad[i].cv, &err), bad[i].want);
    assert_int_equal(sk_arc_sealer_set_results(s, "spf=pass smtp.mailfrom=example.org; arc=pass",
                                               SK_ARC_PASS, &err),
                     0);
    sk_buf out = SK_BUF_INIT(1u << 22);
    assert_int_equal(sk_arc_sealer_finish(s, &out, &err), 0);
    assert_int_equal(sk_arc_sealer_instance(s), 2);
    assert_non_null(strstr(out.data, "cv=pass"));
    assert_non_null(strstr(out.data, "ARC-Authentication-Results: i=2; mx.example.net;"));
    assert_non_null(strstr(out.data, "spf=pass"));
    assert_non_null(strstr(out.data, "smtp.mailfrom=example.org;"));
    assert_non_null(strstr(out.data, "arc=pass\r\n"));
    assert_null(strstr(out.data, "; none")); /* the text of the options is gone */
    assert_int_equal(sk_buf_puts(&out, m), 0);
    sk_arc_verifier *v = verify(out.data);
    assert_int_equal(sk_arc_verifier_result(v)->status, SK_ARC_PASS);
    assert_int_equal(sk_arc_verifier_result(v)->instances, 2);
    sk_arc_verifier_free(v);
    sk_buf_free(&out);
    sk_arc_sealer_free(s);
    free(m);
}

/* ---- through a resolver ---- */

static void on_done(void *ctx, sk_arc_verifier *v)
{
    (void)v;
    *(int *)ctx += 1;
}

static void test_resolver(void **state)
{
    (void)state;
    /* Nothing listens on port 1: every key lookup fails for now, the
     * result says so, and done comes once. */
    char *m = chain("re");
    struct event_base *base = event_base_new();
    sk_resolver_opts ro = {.server = "127.0.0.1:1", .timeout_ms = 200, .tries = 1};
    sk_resolver *r = sk_resolver_new_opts(base, &ro, NULL);
    assert_non_null(r);
    sk_arc_verifier *v = sk_arc_verifier_new(NULL, NULL);
    assert_int_equal(sk_arc_verifier_feed(v, m, strlen(m)), 0);
    assert_int_equal(sk_arc_verifier_finish(v, NULL), 0);
    int done = 0;
    assert_int_equal(sk_arc_verifier_resolve(v, r, on_done, &done), 0);
    while (!done && event_base_loop(base, EVLOOP_ONCE) == 0) {
    }
    assert_int_equal(done, 1);
    assert_int_equal(sk_arc_verifier_result(v)->status, SK_ARC_FAIL);
    assert_true(sk_arc_verifier_result(v)->temporary);
    sk_arc_verifier_free(v);
    /* Freed with lookups in flight: the answers are dropped. */
    v = sk_arc_verifier_new(NULL, NULL);
    assert_int_equal(sk_arc_verifier_feed(v, m, strlen(m)), 0);
    assert_int_equal(sk_arc_verifier_finish(v, NULL), 0);
    done = 0;
    assert_int_equal(sk_arc_verifier_resolve(v, r, on_done, &done), 0);
    sk_arc_verifier_free(v);
    event_base_dispatch(base);
    assert_int_equal(done, 0);
    /* No chain: done at once. */
    v = sk_arc_verifier_new(NULL, NULL);
    assert_int_equal(sk_arc_verifier_feed(v, base_msg, strlen(base_msg)), 0);
    assert_int_equal(sk_arc_verifier_finish(v, NULL), 0);
    assert_int_equal(sk_arc_verifier_resolve(v, r, on_done, &done), 0);
    assert_int_equal(done, 1);
    assert_int_equal(sk_arc_verifier_result(v)->status, SK_ARC_NONE);
    sk_arc_verifier_free(v);
    sk_resolver_free(r);
    event_base_free(base);
    free(m);
}

/* ---- allocation failures ---- */

static sk_err seal_and_verify(const char *msg)
{
    sk_arc_seal_opts o = {.domain = "example.org",
                          .selector = "ed",
                          .key = ed_key,
                          .authserv_id = "mx.example.org",
                          .results_text = "spf=pass",
                          .cv = strstr(msg, "ARC-Seal") ? SK_ARC_PASS : SK_ARC_NONE,
                          .timestamp = fixed_time};
    sk_buf out = SK_BUF_INIT(1u << 20);
    sk_error err;
    sk_err e = sk_arc_seal(&o, msg, strlen(msg), &out, &err);
    if (!e) e = sk_buf_puts(&out, msg);
    sk_arc_verify_opts vo = {.now = fixed_time};
    sk_arc_verifier *v = e ? NULL : sk_arc_verifier_new(&vo, &err);
    if (!e && !v) e = SK_ERR_NOMEM;
    if (!e) e = sk_arc_verifier_feed(v, out.data, out.len);
    if (!e) e = sk_arc_verifier_finish(v, &err);
    const char *q;
    while (!e && (q = sk_arc_verifier_next_query(v)))
        e = sk_arc_verifier_answer(v, q, SK_DNS_OK, (const char *const *)&ed_rec, 1);
    /* A key record that could not be read for want of memory is a
     * temperror of its signature, said in its reason: for an older AMS
     * that lowers oldest-pass without failing the chain. */
    for (unsigned i = 1; !e && i <= sk_arc_verifier_sets(v); i++) {
        const sk_arc_set_info *s = sk_arc_verifier_set(v, i);
        if (strstr(s->ams_reason, "out of memory") || strstr(s->as_reason, "out of memory"))
            e = SK_ERR_NOMEM;
    }
    if (!e && sk_arc_verifier_result(v)->status != SK_ARC_PASS) e = SK_ERR_INVAL;
    sk_arc_verifier_free(v);
    sk_buf_free(&out);
    return e;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    char *one = chain("e");
    long n;
    for (n = 0;; n++) {
        skt_alloc_fail_at(n);
        sk_err e = seal_and_verify(one);
        skt_alloc_end();
        if (skt_alloc_live() != 0)
            fail_msg("allocation %ld failed: %ld blocks leaked", n, skt_alloc_live());
        if (!skt_alloc_failed()) {
            if (e != SK_OK) fail_msg("run without failure returned %s", sk_strerror(e));
            break;
        }
        if (e != SK_ERR_NOMEM)
            fail_msg("failing allocation %ld gave %s, not SK_ERR_NOMEM", n, sk_strerror(e));
    }
    assert_true(n > 10);
    free(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aar_instance),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_broken),
        cmocka_unit_test(test_oldest_pass),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_seal_failed_chain),
        cmocka_unit_test(test_fifty),
        cmocka_unit_test(test_seal_refusals),
        cmocka_unit_test(test_aar_forms),
        cmocka_unit_test(test_set_results),
        cmocka_unit_test(test_resolver),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, make_keys, free_keys);
}
