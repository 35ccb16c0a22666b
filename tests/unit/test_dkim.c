/* Unit tests for src/dkim: canonicalization (RFC 6376 3.4, its 3.4.5
 * example, chunk boundaries at every position), tag lists, DKIM-Signature
 * fields and key records (each invalid form), keys, and signing and
 * verification end to end with keys answered by the test (sans I/O). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include "dkim/dkim_int.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- canonicalization ---- */

static void test_canon_header(void **state)
{
    static const struct {
        sk_dkim_canon c;
        const char *in, *out;
    } cases[] = {
        /* RFC 6376 3.4.5 */
        {SK_DKIM_CANON_RELAXED, "A: X\r\n", "a:X\r\n"},
        {SK_DKIM_CANON_RELAXED, "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n"},
        {SK_DKIM_CANON_SIMPLE, "B : Y\t\r\n\tZ  \r\n", "B : Y\t\r\n\tZ  \r\n"},
        /* WSP runs, leading and trailing whitespace, case of the name only */
        {SK_DKIM_CANON_RELAXED, "SUBJECT:  a \t b\t \r\n", "subject:a b\r\n"},
        {SK_DKIM_CANON_RELAXED, "Subject:\r\n", "subject:\r\n"},
        {SK_DKIM_CANON_RELAXED, "Subject: \t \r\n", "subject:\r\n"},
        {SK_DKIM_CANON_RELAXED, "To:\r\n a@b,\r\n\t c@d\r\n", "to:a@b, c@d\r\n"},
        {SK_DKIM_CANON_RELAXED, "X-Y \t: V\r\n", "x-y:V\r\n"},
        {SK_DKIM_CANON_RELAXED, "From: Zoë <z@example.org>\r\n", "from:Zoë <z@example.org>\r\n"},
        /* a field without its CRLF (the end of a message with no body) */
        {SK_DKIM_CANON_RELAXED, "Subject: x", "subject:x\r\n"},
        {SK_DKIM_CANON_SIMPLE, "Subject: x", "Subject: x"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(4096);
        assert_int_equal(dkim_canon_header(cases[i].c, cases[i].in, strlen(cases[i].in), &b), 0);
        if (strcmp(sk_buf_cstr(&b), cases[i].out))
            fail_msg("case %zu: '%s' -> '%s', want '%s'", i, cases[i].in, sk_buf_cstr(&b),
                     cases[i].out);
        sk_buf_free(&b);
    }
}

static const struct body_case {
    sk_dkim_canon c;
    const char *in, *out;
} body_cases[] = {
    /* RFC 6376 3.4.5 */
    {SK_DKIM_CANON_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
    {SK_DKIM_CANON_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n"},
    /* empty bodies (3.4.3, 3.4.4 and its erratum) */
    {SK_DKIM_CANON_SIMPLE, "", "\r\n"},
    {SK_DKIM_CANON_RELAXED, "", ""},
    {SK_DKIM_CANON_SIMPLE, "\r\n\r\n\r\n", "\r\n"},
    {SK_DKIM_CANON_RELAXED, "\r\n\r\n", ""},
    {SK_DKIM_CANON_RELAXED, " \r\n\t\r\n", ""},
    {SK_DKIM_CANON_SIMPLE, " \r\n", " \r\n"},
    /* no CRLF at the end: one is added */
    {SK_DKIM_CANON_SIMPLE, "abc", "abc\r\n"},
    {SK_DKIM_CANON_RELAXED, "abc", "abc\r\n"},
    {SK_DKIM_CANON_RELAXED, "a  ", "a \r\n"},
    {SK_DKIM_CANON_RELAXED, "   ", " \r\n"},
    /* trailing blank lines, whitespace-only ones for relaxed */
    {SK_DKIM_CANON_RELAXED, "a\r\n  \r\n\t\r\n", "a\r\n"},
    {SK_DKIM_CANON_SIMPLE, "a\r\n  \r\n\t\r\n", "a\r\n  \r\n\t\r\n"},
    {SK_DKIM_CANON_SIMPLE, "a\r\n\r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n"},
    {SK_DKIM_CANON_RELAXED, "\r\n\r\nb", "\r\n\r\nb\r\n"},
    /* WSP runs inside lines, at line starts */
    {SK_DKIM_CANON_RELAXED, "  a\t\t b  \r\n\tc\r\n", " a b\r\n c\r\n"},
    /* bare CR and LF are content, not line ends */
    {SK_DKIM_CANON_SIMPLE, "a\rb\r\n", "a\rb\r\n"},
    {SK_DKIM_CANON_RELAXED, "a \r b\r\n", "a \r b\r\n"},
    {SK_DKIM_CANON_SIMPLE, "a\nb\r\n", "a\nb\r\n"},
    {SK_DKIM_CANON_SIMPLE, "a\r", "a\r\r\n"},
    {SK_DKIM_CANON_RELAXED, "a\r\r\n", "a\r\r\n"},
    {SK_DKIM_CANON_RELAXED, "x\r\n\r\r\n", "x\r\n\r\r\n"},
    /* UTF-8 passes through */
    {SK_DKIM_CANON_RELAXED,
     "Gr\xc3\xbc\xc3\x9f"
     "e  \r\n",
     "Gr\xc3\xbc\xc3\x9f"
     "e\r\n"},
};

/* The digest of s, and what the body hash gives for in fed in the given
 * pieces (cuts: ascending offsets). */
static void digest_of(const char *s, size_t n, unsigned char *out)
{
    unsigned len;
    EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

static void hash_pieces(sk_dkim_canon c, const char *in, const size_t *cuts, size_t ncuts,
                        uint64_t limit, unsigned char *out, uint64_t *total)
{
    dkim_body_hash h;
    assert_int_equal(dkim_body_hash_init(&h, c, EVP_sha256(), limit), 0);
    size_t n = strlen(in), from = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        dkim_body_hash_feed(&h, in + from, to - from);
        from = to;
    }
    size_t len;
    assert_int_equal(dkim_body_hash_final(&h, out, &len), 0);
    assert_int_equal(len, 32);
    *total = h.total;
    dkim_body_hash_clear(&h);
}

static void test_canon_body(void **state)
{
    for (size_t i = 0; i < SKT_N(body_cases); i++) {
        const struct body_case *bc = &body_cases[i];
        unsigned char want[32], got[32];
        size_t n = strlen(bc->in), olen = strlen(bc->out);
        digest_of(bc->out, olen, want);
        uint64_t total;
        /* whole, then cut in two at every position, then octet by octet */
        hash_pieces(bc->c, bc->in, NULL, 0, UINT64_MAX, got, &total);
        if (memcmp(got, want, 32) || total != olen) fail_msg("case %zu whole", i);
        for (size_t cut = 0; cut <= n; cut++) {
            hash_pieces(bc->c, bc->in, &cut, 1, UINT64_MAX, got, &total);
            if (memcmp(got, want, 32) || total != olen) fail_msg("case %zu cut at %zu", i, cut);
        }
        size_t cuts[64];
        for (size_t k = 0; k < n; k++) cuts[k] = k;
        hash_pieces(bc->c, bc->in, cuts, n, UINT64_MAX, got, &total);
        if (memcmp(got, want, 32) || total != olen) fail_msg("case %zu octet by octet", i);
    }
}

/* l=: the hash covers the first l canonical octets; total counts all. */
static void test_body_limit(void **state)
{
    const char *in = "line one  \r\nline two\r\n\r\n";
    const char *canon = "line one\r\nline two\r\n";
    for (uint64_t l = 0; l <= strlen(canon) + 2; l++) {
        unsigned char want[32], got[32];
        uint64_t total;
        size_t take = l < strlen(canon) ? (size_t)l : strlen(canon);
        digest_of(canon, take, want);
        hash_pieces(SK_DKIM_CANON_RELAXED, in, NULL, 0, l, got, &total);
        if (memcmp(got, want, 32)) fail_msg("l=%llu", (unsigned long long)l);
        assert_int_equal(total, strlen(canon));
    }
}

/* A message of folded and long headers, trailing blank lines: the header
 * block and the body come out the same wherever the chunks are cut. */
typedef struct split_out {
    sk_buf body;
    size_t heads;
} split_out;

static void split_body(void *ctx, const char *p, size_t n)
{
    split_out *o = ctx;
    assert_int_equal(sk_buf_append(&o->body, p, n), 0);
}

static sk_err split_head(void *ctx, dkim_msg *m)
{
    split_out *o = ctx;
    o->heads++;
    return SK_OK;
}

static void test_msg_split(void **state)
{
    static const struct {
        const char *msg, *head, *body;
        size_t nfields;
    } cases[] = {
        {"From: a@b\r\nSubject: x\r\n\ty\r\n\r\nbody\r\n\r\n", "From: a@b\r\nSubject: x\r\n\ty\r\n",
         "body\r\n\r\n", 2},
        {"From: a@b\r\n\r\n", "From: a@b\r\n", "", 1},
        {"From: a@b\r\n", "From: a@b\r\n", "", 1}, /* no empty line: all header */
        {"\r\nbody\r\n", "", "body\r\n", 0},       /* no header at all */
        {"A: 1\r\nB: 2\r\n\r\n\r\n\r\n", "A: 1\r\nB: 2\r\n", "\r\n\r\n", 2},
        {"A: 1\r\n\r\nx\r\n\r\ny\r\n", "A: 1\r\n", "x\r\n\r\ny\r\n", 1},
        {"A: 1\r\nno colon\r\n\r\n", "A: 1\r\nno colon\r\n", "", 2},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        size_t n = strlen(cases[i].msg);
        for (size_t cut = 0; cut <= n; cut++) {
            split_out o = {SK_BUF_INIT(4096), 0};
            dkim_msg m;
            dkim_msg_init(&m, split_head, &o, split_body, &o);
            assert_int_equal(dkim_msg_feed(&m, cases[i].msg, cut), 0);
            assert_int_equal(dkim_msg_feed(&m, cases[i].msg + cut, n - cut), 0);
            assert_int_equal(dkim_msg_end(&m), 0);
            if (strcmp(sk_buf_cstr(&m.head), cases[i].head) ||
                strcmp(sk_buf_cstr(&o.body), cases[i].body) || o.heads != 1 ||
                m.nfields != cases[i].nfields)
                fail_msg("case %zu cut %zu: head '%s' body '%s' fields %zu", i, cut,
                         sk_buf_cstr(&m.head), sk_buf_cstr(&o.body), m.nfields);
            dkim_msg_clear(&m);
            sk_buf_free(&o.body);
        }
    }
}

static void test_header_block_limit(void **state)
{
    dkim_msg m;
    dkim_msg_init(&m, NULL, NULL, NULL, NULL);
    char line[1000];
    memset(line, 'x', sizeof line);
    memcpy(line, "X-Long: ", 8);
    line[998] = '\r';
    line[999] = '\n';
    sk_err e = SK_OK;
    for (size_t sent = 0; !e && sent <= SK_DKIM_HEADER_BLOCK_MAX_OCTETS; sent += sizeof line)
        e = dkim_msg_feed(&m, line, sizeof line);
    assert_int_equal(e, SK_ERR_TOO_LONG);
    assert_int_equal(dkim_msg_feed(&m, "\r\n", 2), SK_ERR_TOO_LONG);
    dkim_msg_clear(&m);
}

/* ---- tag lists ---- */

static void test_tags(void **state)
{
    static const struct {
        const char *in;
        int n; /* tags, or -1: refused */
        const char *why;
    } cases[] = {
        {"a=1", 1, NULL},
        {"a=1;", 1, NULL},
        {" a = 1 ; b=2 ;  ", 2, NULL},
        {"a=", 1, NULL},
        {"a=1 2\t3", 1, NULL},
        {"a=\r\n\t1;\r\n b=2", 2, NULL},
        {"k_1=x;K_1=y", 2, NULL}, /* names are case-sensitive */
        {"a=caf\xc3\xa9", 1, NULL},
        {"", -1, "empty"},
        {"  ", -1, "empty"},
        {";", -1, "letter"},
        {"a", -1, "no '='"},
        {"=1", -1, "letter"},
        {"1a=1", -1, "letter"},
        {"a-b=1", -1, "no '='"},
        {"a=1;;b=2", -1, "letter"},
        {"a=1;a=2", -1, "twice"},
        {"a=1\r\nb=2", -1, "line break"},
        {"a=1\nb=2", -1, "line break"},
        {"a=1;\r\n", -1, "line break"},
        {"a=\x01", -1, "not allowed"},
        {"a=x y;b=\x7f", -1, "not allowed"},
    };
    dkim_tags *t = malloc(sizeof *t);
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char why[200] = "";
        sk_err e = dkim_tags_parse(cases[i].in, strlen(cases[i].in), t, why, sizeof why);
        if (cases[i].n < 0) {
            if (e != SK_ERR_SYNTAX || !strstr(why, cases[i].why))
                fail_msg("case %zu '%s': want an error with '%s', got %d '%s'", i, cases[i].in,
                         cases[i].why, e, why);
        } else if (e || t->n != (size_t)cases[i].n) {
            fail_msg("case %zu '%s': %d %s", i, cases[i].in, e, why);
        }
    }
    /* values without the FWS around them; the region for b= deletion */
    const char *s = "a = x  y ; b=\r\n\tQUJD ;";
    assert_int_equal(dkim_tags_parse(s, strlen(s), t, NULL, 0), 0);
    assert_int_equal(t->tag[0].value_len, 4);
    assert_memory_equal(t->tag[0].value, "x  y", 4);
    const dkim_tag *b = dkim_tags_get(t, "b");
    assert_non_null(b);
    assert_memory_equal(b->value, "QUJD", 4);
    assert_int_equal(s[b->region_start - 1], '=');
    assert_int_equal(s[b->region_end], ';');
    free(t);
}

/* ---- DKIM-Signature fields ---- */

#define BH "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
#define LONG_LOCAL                                                                                 \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"     \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"     \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"     \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define SIG_BASE "v=1; a=rsa-sha256; d=example.org; s=sel; h=from:to; bh=" BH "; b=dGVzdA=="

static void test_sig_parse(void **state)
{
    static const struct {
        const char *in, *why; /* why NULL: valid */
    } cases[] = {
        {SIG_BASE, NULL},
        {SIG_BASE "; c=relaxed/simple; i=user@mail.example.org; q=dns/txt; l=10; t=1; x=2", NULL},
        {"b=dGVzdA==; bh=" BH "; h=From : To; s=sel; d=example.org; a=rsa-sha256; v=1", NULL},
        {SIG_BASE "; c=relaxed", NULL},
        {SIG_BASE "; z=From:a@b", NULL},
        {"v=1; a=ed25519-sha256; d=example.org; s=sel; h=from; bh=" BH "; b=dGVzdA==", NULL},
        {"v=1; a=rsa-sha1; d=example.org; s=sel; h=from; bh=2jmj7l5rSw0yVb/vlWAYkK/YBwk=; "
         "b=dGVzdA==",
         NULL},
        {"a=rsa-sha256; d=example.org; s=sel; h=from; bh=" BH "; b=dGVzdA==", "v= is missing"},
        {"v=1; d=example.org; s=sel; h=from; bh=" BH "; b=dGVzdA==", "a= is missing"},
        {"v=1; a=rsa-sha256; s=sel; h=from; bh=" BH "; b=dGVzdA==", "d= is missing"},
        {"v=1; a=rsa-sha256; d=example.org; h=from; bh=" BH "; b=dGVzdA==", "s= is missing"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; bh=" BH "; b=dGVzdA==", "h= is missing"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; h=from; b=dGVzdA==", "bh= is missing"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=" BH, "b= is missing"},
        {"v=2; a=rsa-sha256; d=example.org; s=sel; h=from; bh=" BH "; b=dGVzdA==",
         "incompatible version"},
        {"v=1; a=rsa-md5; d=example.org; s=sel; h=from; bh=" BH "; b=dGVzdA==",
         "unknown algorithm"},
        {SIG_BASE "; c=fancy", "unknown canonicalization"},
        {SIG_BASE "; c=relaxed/fancy", "unknown canonicalization"},
        {SIG_BASE "; c=relaxed/relaxed/simple", "unknown canonicalization"},
        {"v=1; a=rsa-sha256; d=ex..org; s=sel; h=from; bh=" BH "; b=dGVzdA==", "d= is not"},
        {"v=1; a=rsa-sha256; d=example.org; s=-sel; h=from; bh=" BH "; b=dGVzdA==", "s= is not"},
        {SIG_BASE "; i=user@other.org", "i= domain"},
        {SIG_BASE "; i=user@evilexample.org", "i= domain"}, /* the label boundary */
        {SIG_BASE "; i=nobody", "i= is not"},
        /* too long to hold: refused, not cut (its domain is at the end) */
        {SIG_BASE "; i=" LONG_LOCAL "@evil.example.com.example.org", "longer than"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; h=to:subject; bh=" BH "; b=dGVzdA==",
         "From field not signed"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; h=from::to; bh=" BH "; b=dGVzdA==",
         "not a field name"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=dGVzdA==; b=dGVzdA==", "bh= is not"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=" BH "; b=dGV*zdA==", "b= is not"},
        {"v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=" BH "; b=", "b= is not"},
        {SIG_BASE "; l=ten", "l= is not"},
        {SIG_BASE "; l=99999999999999999999999", "l= is not"},
        {SIG_BASE "; q=http/well-known", "q= does not"},
        {SIG_BASE "; t=soon", "t= is not"},
        {SIG_BASE "; t=1234567890123", "t= is not"},
        {SIG_BASE "; t=100; x=99", "x= is not later"},
        {SIG_BASE "; t=100; x=100", "x= is not later"},
        {SIG_BASE "; d=example.org", "twice"},
        {SIG_BASE "; ;", "letter"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        dkim_sig s;
        char why[200] = "";
        sk_err e = dkim_sig_parse(cases[i].in, strlen(cases[i].in), &s, why, sizeof why);
        if (!cases[i].why && e) fail_msg("case %zu: refused (%s): %s", i, why, cases[i].in);
        if (cases[i].why && (e != SK_ERR_SYNTAX || !strstr(why, cases[i].why)))
            fail_msg("case %zu: want '%s', got %d '%s': %s", i, cases[i].why, e, why, cases[i].in);
        dkim_sig_clear(&s);
    }
    /* the parsed fields */
    const char *in = SIG_BASE "; c=simple/relaxed; i=u@mail.Example.org; l=12; t=5; x=9";
    dkim_sig s;
    assert_int_equal(dkim_sig_parse(in, strlen(in), &s, NULL, 0), 0);
    assert_string_equal(s.domain, "example.org");
    assert_string_equal(s.selector, "sel");
    assert_string_equal(s.identity, "u@mail.Example.org");
    assert_int_equal(s.hcanon, SK_DKIM_CANON_SIMPLE);
    assert_int_equal(s.bcanon, SK_DKIM_CANON_RELAXED);
    assert_int_equal(s.nh, 2);
    assert_string_equal(s.h[1], "to");
    assert_int_equal(s.b_len, 4);
    assert_int_equal(s.bh_len, 32);
    assert_true(s.has_l && s.l == 12 && s.t == 5 && s.x == 9);
    dkim_sig_clear(&s);
    /* defaults: simple/simple (3.5), i= is @d */
    assert_int_equal(dkim_sig_parse(SIG_BASE, strlen(SIG_BASE), &s, NULL, 0), 0);
    assert_int_equal(s.hcanon, SK_DKIM_CANON_SIMPLE);
    assert_int_equal(s.bcanon, SK_DKIM_CANON_SIMPLE);
    assert_string_equal(s.identity, "@example.org");
    dkim_sig_clear(&s);
}

/* ---- keys and key records ---- */

static char *record_of(sk_dkim_key *k)
{
    sk_buf b = SK_BUF_INIT(8192);
    assert_int_equal(sk_dkim_key_record(k, &b), 0);
    return sk_buf_detach(&b, NULL);
}

/* The p= value of a record. */
static const char *p_of(const char *rec)
{
    return strstr(rec, "p=") + 2;
}

static sk_dkim_key *rsa_key, *ed_key;

static int make_keys(void **state)
{
    sk_error err;
    if (sk_dkim_key_generate(SK_DKIM_KEY_RSA, 1024, &rsa_key, &err)) return -1;
    if (sk_dkim_key_generate(SK_DKIM_KEY_ED25519, 0, &ed_key, &err)) return -1;
    return 0;
}

static int free_keys(void **state)
{
    sk_dkim_key_free(rsa_key);
    sk_dkim_key_free(ed_key);
    return 0;
}

static void test_key_record(void **state)
{
    char *rsa = record_of(rsa_key), *ed = record_of(ed_key);
    /* the same RSA key as a bare RSAPublicKey (RFC 8017 A.1.1) */
    unsigned char *der = NULL;
    int dl = i2d_PublicKey(dkim_key_pkey(rsa_key), &der);
    assert_true(dl > 0);
    sk_buf pkcs1 = SK_BUF_INIT(4096);
    assert_int_equal(sk_base64_encode(&pkcs1, der, (size_t)dl), 0);
    OPENSSL_free(der);
    char buf[4096];
    struct {
        const char *pre, *p, *post;
        int ok, type, revoked, testing, strict, sha256;
        const char *why;
    } cases[] = {
        {"v=DKIM1; k=rsa; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 1, NULL},
        {"p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 1, NULL},
        {"p=", sk_buf_cstr(&pkcs1), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 1, NULL},
        {"v=DKIM1; k=ed25519; p=", p_of(ed), "", 1, SK_DKIM_KEY_ED25519, 0, 0, 0, 1, NULL},
        {"v=DKIM1; p=", "", "", 1, SK_DKIM_KEY_RSA, 1, 0, 0, 1, NULL},
        {"v=DKIM1; p=", " \r\n ", "", 1, SK_DKIM_KEY_RSA, 1, 0, 0, 1, NULL},
        {"t=y; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 1, 0, 1, NULL},
        {"t=s:y; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 1, 1, 1, NULL},
        {"t=x; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 1, NULL},
        {"h=sha1; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 0, NULL},
        {"h=sha1:sha256; s=email; n=hi there; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 1,
         NULL},
        {"s=*; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 1, NULL},
        {"s=tlsrpt:email; p=", p_of(rsa), "", 1, SK_DKIM_KEY_RSA, 0, 0, 0, 1, NULL},
        {"k=rsa; v=DKIM1; p=", p_of(rsa), "", 0, 0, 0, 0, 0, 0, "v= is not the first"},
        {"v=DKIM2; p=", p_of(rsa), "", 0, 0, 0, 0, 0, 0, "unknown version"},
        {"v=DKIM1; k=dsa; p=", p_of(rsa), "", 0, 0, 0, 0, 0, 0, "unknown key type"},
        {"v=DKIM1", "", "", 0, 0, 0, 0, 0, 0, "p= is missing"},
        {"p=", "!!!!", "", 0, 0, 0, 0, 0, 0, "not base64"},
        {"p=", "AA\x01A", "", 0, 0, 0, 0, 0, 0, "not allowed"},
        {"p=", "AAAA*", "", 0, 0, 0, 0, 0, 0, "not base64"},
        {"p=", "QUJDRA==", "", 0, 0, 0, 0, 0, 0, "not an RSA public key"},
        {"p=", p_of(ed), "", 0, 0, 0, 0, 0, 0, "not an RSA public key"},
        {"k=ed25519; p=", p_of(rsa), "", 0, 0, 0, 0, 0, 0, "32 octets"},
        {"s=tlsrpt; p=", p_of(rsa), "", 0, 0, 0, 0, 0, 0, "does not include email"},
        {"p=", p_of(rsa), "; p=x", 0, 0, 0, 0, 0, 0, "twice"},
        {"v=DKIM1 p=", p_of(rsa), "", 0, 0, 0, 0, 0, 0, "unknown version"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        snprintf(buf, sizeof buf, "%s%s%s", cases[i].pre, cases[i].p, cases[i].post);
        dkim_key_record k;
        char why[200] = "";
        sk_err e = dkim_key_record_parse(buf, strlen(buf), &k, why, sizeof why);
        if (cases[i].ok) {
            if (e) fail_msg("case %zu refused: %s: %s", i, why, buf);
            if ((int)k.type != cases[i].type || k.revoked != cases[i].revoked ||
                k.testing != cases[i].testing || k.strict != cases[i].strict ||
                k.sha256_ok != cases[i].sha256 || (!k.revoked && !k.pkey))
                fail_msg("case %zu: fields differ: %s", i, buf);
            if (!k.revoked && k.bits != (k.type == SK_DKIM_KEY_RSA ? 1024u : 256u))
                fail_msg("case %zu: %u bits", i, k.bits);
        } else if (e != SK_ERR_SYNTAX || !strstr(why, cases[i].why)) {
            fail_msg("case %zu: want '%s', got %d '%s'", i, cases[i].why, e, why);
        }
        dkim_key_record_clear(&k);
    }
    sk_buf_free(&pkcs1);
    free(rsa);
    free(ed);
}

static void test_txt_strings(void **state)
{
    char value[600];
    memset(value, 'a', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    sk_buf b = SK_BUF_INIT(2048);
    assert_int_equal(sk_dkim_txt_strings(value, &b), 0);
    /* 599 = 255 + 255 + 89 */
    char want[700];
    snprintf(want, sizeof want, "\"%.255s\" \"%.255s\" \"%.89s\"", value, value, value);
    assert_string_equal(sk_buf_cstr(&b), want);
    sk_buf_reset(&b);
    assert_int_equal(sk_dkim_txt_strings("v=DKIM1; p=", &b), 0);
    assert_string_equal(sk_buf_cstr(&b), "\"v=DKIM1; p=\"");
    sk_buf_free(&b);
}

static char *write_pem(EVP_PKEY *k, int traditional, const char *pass)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (traditional)
        assert_true(PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL));
    else if (pass)
        assert_true(
            PEM_write_bio_PrivateKey(bio, k, EVP_aes_128_cbc(), NULL, 0, NULL, (void *)pass));
    else
        assert_true(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL));
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    char *path = skt_tmpfile("dkim-key", p, (size_t)n);
    BIO_free(bio);
    return path;
}

static void test_key_load(void **state)
{
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(small);
    assert_non_null(ec);
    struct {
        EVP_PKEY *k;
        int traditional;
        const char *pass;
        const char *why; /* NULL: loads */
    } cases[] = {
        {dkim_key_pkey(rsa_key), 0, NULL, NULL},
        {dkim_key_pkey(rsa_key), 1, NULL, NULL},
        {dkim_key_pkey(ed_key), 0, NULL, NULL},
        {dkim_key_pkey(rsa_key), 0, "secret", "encrypted"},
        {small, 0, NULL, "512 bits"},
        {ec, 0, NULL, "cannot sign DKIM"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char *path = write_pem(cases[i].k, cases[i].traditional, cases[i].pass);
        sk_dkim_key *k = NULL;
        sk_error err;
        sk_err e = sk_dkim_key_load(path, &k, &err);
        if (!cases[i].why && e) fail_msg("case %zu: %s", i, err.text);
        if (cases[i].why &&
            (e != SK_ERR_SYNTAX || !strstr(err.text, cases[i].why) || !strstr(err.text, path)))
            fail_msg("case %zu: want '%s' naming the file, got %d '%s'", i, cases[i].why, e,
                     err.text);
        sk_dkim_key_free(k);
        unlink(path);
        free(path);
    }
    sk_dkim_key *k = NULL;
    sk_error err;
    char *junk = skt_tmpfile("dkim-key", "hello\n", 6);
    assert_int_equal(sk_dkim_key_load(junk, &k, &err), SK_ERR_SYNTAX);
    assert_non_null(strstr(err.text, "no PEM private key"));
    assert_non_null(strstr(err.text, junk));
    unlink(junk);
    free(junk);
    assert_int_equal(sk_dkim_key_load("/nonexistent/key.pem", &k, &err), SK_ERR_NOT_FOUND);
    assert_non_null(strstr(err.text, "/nonexistent/key.pem"));
    assert_int_equal(sk_dkim_key_generate(SK_DKIM_KEY_RSA, 512, &k, &err), SK_ERR_INVAL);
    EVP_PKEY_free(small);
    EVP_PKEY_free(ec);
}

/* ---- signing and verifying ---- */

static const char message[] = "Received: from a by b; Mon, 1 Dec 2025 10:00:00 +0000\r\n"
                              "From: Zo\xc3\xab <zoe@example.org>\r\n"
                              "To: bob@example.net,\r\n"
                              "  carol@example.net\r\n"
                              "Subject:   Gr\xc3\xbc\xc3\x9f"
                              "e  \t aus Berlin\r\n"
                              "Date: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
                              "Message-ID: <1@example.org>\r\n"
                              "MIME-Version: 1.0\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "\r\n"
                              "Hallo  Welt \r\n"
                              "\r\n"
                              "Bis bald\r\n"
                              "\r\n"
                              "\r\n";

static int64_t fixed_time = 1764583200; /* 2025-12-01 10:00:00 UTC */

static sk_err sign_msg(const char *msg, size_t len, sk_dkim_key *k, sk_dkim_canon c, sk_buf *out)
{
    sk_dkim_sign_opts o = {.domain = "example.org",
                           .selector = "sel",
                           .key = k,
                           .header_canon = c,
                           .body_canon = c,
                           .timestamp = fixed_time,
                           .expire_s = 3600};
    sk_error err;
    return sk_dkim_sign(&o, 1, msg, len, out, &err);
}

typedef struct zone {
    const char *name;
    sk_dns_status st;
    const char *records[2];
    size_t n;
} zone;

/* Verify msg, answering key queries from z. */
static sk_dkim_verifier *verify_msg(const char *msg, size_t len, const zone *z, size_t nz,
                                    int64_t now)
{
    sk_dkim_verify_opts o = {.now = now ? now : fixed_time + 60};
    sk_error err;
    sk_dkim_verifier *v = sk_dkim_verifier_new(&o, &err);
    assert_non_null(v);
    assert_int_equal(sk_dkim_verifier_feed(v, msg, len), 0);
    assert_int_equal(sk_dkim_verifier_finish(v, &err), 0);
    const char *q;
    while ((q = sk_dkim_verifier_next_query(v))) {
        size_t i = 0;
        while (i < nz && strcmp(z[i].name, q)) i++;
        if (i == nz)
            assert_int_equal(sk_dkim_verifier_answer(v, q, SK_DNS_NXDOMAIN, NULL, 0), 0);
        else
            assert_int_equal(sk_dkim_verifier_answer(v, q, z[i].st, z[i].records, z[i].n), 0);
    }
    return v;
}

/* A key's signing context is set up once and copied by every signature,
 * from any thread: signatures made at once on several threads are the
 * ones made alone (RSASSA-PKCS1-v1_5 and Ed25519 are deterministic). */
#define SHARED_THREADS 4
#define SHARED_ROUNDS  25
typedef struct shared_job {
    sk_dkim_key *key;
    sk_buf out[SHARED_ROUNDS];
    sk_err e[SHARED_ROUNDS];
} shared_job;

static void *shared_sign(void *arg)
{
    shared_job *j = arg;
    for (int r = 0; r < SHARED_ROUNDS; r++) {
        sk_buf_init(&j->out[r], 65536);
        j->e[r] = sign_msg(message, strlen(message), j->key, SK_DKIM_CANON_RELAXED, &j->out[r]);
    }
    return NULL;
}

static void test_sign_shared_key(void **state)
{
    sk_dkim_key *keys[] = {rsa_key, ed_key};
    for (size_t k = 0; k < SKT_N(keys); k++) {
        sk_buf alone = SK_BUF_INIT(65536);
        assert_int_equal(sign_msg(message, strlen(message), keys[k], SK_DKIM_CANON_RELAXED, &alone),
                         0);
        static shared_job jobs[SHARED_THREADS];
        pthread_t t[SHARED_THREADS];
        for (int i = 0; i < SHARED_THREADS; i++) {
            jobs[i].key = keys[k];
            assert_int_equal(pthread_create(&t[i], NULL, shared_sign, &jobs[i]), 0);
        }
        for (int i = 0; i < SHARED_THREADS; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
        for (int i = 0; i < SHARED_THREADS; i++)
            for (int r = 0; r < SHARED_ROUNDS; r++) {
                assert_int_equal(jobs[i].e[r], SK_OK);
                if (jobs[i].out[r].len != alone.len ||
                    memcmp(jobs[i].out[r].data, alone.data, alone.len))
                    fail_msg("key %zu thread %d round %d: %s", k, i, r, jobs[i].out[r].data);
                sk_buf_free(&jobs[i].out[r]);
            }
        sk_buf_free(&alone);
    }
}

static void test_sign_verify(void **state)
{
    char *rsa = record_of(rsa_key), *ed = record_of(ed_key);
    char bad_type[200], testing[4096], strict[4096];
    snprintf(bad_type, sizeof bad_type, "%s", ed);
    snprintf(testing, sizeof testing, "v=DKIM1; t=y; p=%s", p_of(rsa));
    snprintf(strict, sizeof strict, "v=DKIM1; t=s; p=%s", p_of(rsa));
    const char *good = rsa;
    static const char *tampers[][2] = {
        {"Subject:   Gr", "Subject: Gr"},         /* relaxed survives this ... */
        {"Hallo  Welt", "Hallo Welt!"},           /* body */
        {"Date: Mon, 1", "Date: Tue, 2"},         /* signed header */
        {"Received: from a", "Received: from x"}, /* unsigned header: still passes */
    };
    for (int c = 0; c < 2; c++) {
        for (int which = 0; which < 2; which++) {
            sk_dkim_key *key = which ? ed_key : rsa_key;
            const char *rec = which ? ed : good;
            sk_buf signed_msg = SK_BUF_INIT(65536);
            assert_int_equal(sign_msg(message, strlen(message), key, (sk_dkim_canon)c, &signed_msg),
                             0);
            assert_int_equal(sk_buf_puts(&signed_msg, message), 0);
            zone z = {"sel._domainkey.example.org", SK_DNS_OK, {rec}, 1};
            sk_dkim_verifier *v = verify_msg(signed_msg.data, signed_msg.len, &z, 1, 0);
            assert_int_equal(sk_dkim_verifier_count(v), 1);
            const sk_dkim_result *r = sk_dkim_verifier_result(v, 0);
            if (r->status != SK_DKIM_PASS) fail_msg("canon %d key %d: %s", c, which, r->reason);
            assert_string_equal(r->domain, "example.org");
            assert_string_equal(r->selector, "sel");
            assert_string_equal(r->identity, "@example.org");
            assert_string_equal(r->algorithm, which ? "ed25519-sha256" : "rsa-sha256");
            assert_int_equal(strlen(r->b), SK_DKIM_B_PREFIX_MIN_OCTETS);
            assert_int_equal(r->t, fixed_time);
            assert_int_equal(r->x, fixed_time + 3600);
            assert_int_equal(sk_dkim_verifier_summary(v), SK_DKIM_PASS);
            sk_dkim_verifier_free(v);
            /* tampering */
            for (size_t t = 0; t < SKT_N(tampers); t++) {
                sk_buf m = SK_BUF_INIT(65536);
                char *at = strstr(signed_msg.data, tampers[t][0]);
                assert_non_null(at);
                assert_int_equal(sk_buf_append(&m, signed_msg.data, (size_t)(at - signed_msg.data)),
                                 0);
                assert_int_equal(sk_buf_puts(&m, tampers[t][1]), 0);
                assert_int_equal(sk_buf_puts(&m, at + strlen(tampers[t][0])), 0);
                v = verify_msg(m.data, m.len, &z, 1, 0);
                sk_dkim_status want =
                    (t == 0 && c == SK_DKIM_CANON_RELAXED) || t == 3 ? SK_DKIM_PASS : SK_DKIM_FAIL;
                r = sk_dkim_verifier_result(v, 0);
                if (r->status != want)
                    fail_msg("canon %d key %d tamper %zu: %s (%s)", c, which, t,
                             sk_dkim_status_name(r->status), r->reason);
                if (t == 1 && !strstr(r->reason, "body hash"))
                    fail_msg("body tamper reason: %s", r->reason);
                sk_dkim_verifier_free(v);
                sk_buf_free(&m);
            }
            /* an added From breaks it (over-signing) */
            sk_buf m = SK_BUF_INIT(65536);
            assert_int_equal(sk_buf_puts(&m, "From: mallory@example.com\r\n"), 0);
            assert_int_equal(sk_buf_append(&m, signed_msg.data, signed_msg.len), 0);
            v = verify_msg(m.data, m.len, &z, 1, 0);
            assert_int_equal(sk_dkim_verifier_result(v, 0)->status, SK_DKIM_FAIL);
            assert_non_null(strstr(sk_dkim_verifier_result(v, 0)->reason, "signature did not"));
            sk_dkim_verifier_free(v);
            sk_buf_free(&m);
            sk_buf_free(&signed_msg);
        }
    }
    /* key-side results, RSA relaxed */
    sk_buf sm = SK_BUF_INIT(65536);
    assert_int_equal(sign_msg(message, strlen(message), rsa_key, SK_DKIM_CANON_RELAXED, &sm), 0);
    assert_int_equal(sk_buf_puts(&sm, message), 0);
    const char *name = "sel._domainkey.example.org";
    struct {
        zone z;
        int64_t now;
        sk_dkim_status want;
        const char *why;
        int testing;
    } cases[] = {
        {{name, SK_DNS_OK, {good}, 1}, 0, SK_DKIM_PASS, "verified", 0},
        {{name, SK_DNS_OK, {testing}, 1}, 0, SK_DKIM_PASS, "testing", 1},
        {{name, SK_DNS_OK, {strict}, 1}, 0, SK_DKIM_PASS, "verified", 0},
        {{name, SK_DNS_TEMPFAIL, {NULL}, 0}, 0, SK_DKIM_TEMPERROR, "failed for now", 0},
        {{name, SK_DNS_NXDOMAIN, {NULL}, 0}, 0, SK_DKIM_PERMERROR, "no key", 0},
        {{name, SK_DNS_NODATA, {NULL}, 0}, 0, SK_DKIM_PERMERROR, "no key", 0},
        {{name, SK_DNS_OK, {good, good}, 2}, 0, SK_DKIM_PERMERROR, "2 TXT records", 0},
        {{name, SK_DNS_OK, {"v=DKIM1; p="}, 1}, 0, SK_DKIM_PERMERROR, "revoked", 0},
        {{name, SK_DNS_OK, {"v=DKIM1; k=rsa"}, 1}, 0, SK_DKIM_PERMERROR, "key syntax error", 0},
        {{name, SK_DNS_OK, {bad_type}, 1}, 0, SK_DKIM_PERMERROR, "inappropriate key", 0},
        {{name, SK_DNS_OK, {"v=DKIM1; h=sha1; p=AAAA"}, 1}, 0, SK_DKIM_PERMERROR, "syntax", 0},
        {{name, SK_DNS_OK, {good}, 1}, fixed_time + 7200, SK_DKIM_FAIL, "expired", 0},
        {{name, SK_DNS_OK, {good}, 1}, fixed_time - 3600, SK_DKIM_POLICY, "future", 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_dkim_verifier *v = verify_msg(sm.data, sm.len, &cases[i].z, 1, cases[i].now);
        const sk_dkim_result *r = sk_dkim_verifier_result(v, 0);
        if (r->status != cases[i].want || !strstr(r->reason, cases[i].why) ||
            r->testing != cases[i].testing)
            fail_msg("case %zu: %s (%s), want %s with '%s'", i, sk_dkim_status_name(r->status),
                     r->reason, sk_dkim_status_name(cases[i].want), cases[i].why);
        sk_dkim_verifier_free(v);
    }
    sk_buf_free(&sm);
    free(rsa);
    free(ed);
}

/* Several signatures in one pass, the message fed in two pieces cut at
 * every position: the same fields as one piece (both algorithms are
 * deterministic), and the verifier passes both, also when fed so. */
static void test_sign_chunks(void **state)
{
    sk_dkim_sign_opts o[3] = {
        {.domain = "example.org", .selector = "rsa", .key = rsa_key, .timestamp = fixed_time},
        {.domain = "example.org",
         .selector = "ed",
         .key = ed_key,
         .timestamp = fixed_time,
         .header_canon = SK_DKIM_CANON_SIMPLE,
         .body_canon = SK_DKIM_CANON_SIMPLE},
        {.domain = "service.example",
         .selector = "s1",
         .key = rsa_key,
         .identity = "bounces@mail.service.example",
         .timestamp = -1},
    };
    sk_buf whole = SK_BUF_INIT(65536);
    sk_error err;
    size_t n = strlen(message);
    assert_int_equal(sk_dkim_sign(o, 3, message, n, &whole, &err), 0);
    for (size_t cut = 0; cut <= n; cut++) {
        sk_dkim_signer *s = sk_dkim_signer_new(o, 3, &err);
        assert_non_null(s);
        assert_int_equal(sk_dkim_signer_feed(s, message, cut), 0);
        assert_int_equal(sk_dkim_signer_feed(s, message + cut, n - cut), 0);
        sk_buf out = SK_BUF_INIT(65536);
        assert_int_equal(sk_dkim_signer_finish(s, &out, &err), 0);
        if (strcmp(out.data, whole.data)) fail_msg("cut %zu differs", cut);
        sk_buf_free(&out);
        sk_dkim_signer_free(s);
    }
    /* no line over 78 octets; t= only where asked; i= as given */
    for (const char *l = whole.data; *l;) {
        const char *e = strstr(l, "\r\n");
        assert_true(e - l <= SK_MIME_LINE_SOFT_OCTETS);
        l = e + 2;
    }
    assert_non_null(strstr(whole.data, "i=bounces@mail.service.example;"));
    /* From over-signed, the rest as often as they occur, in the list's order */
    char *unfolded = strdup(whole.data), *u = unfolded;
    for (const char *p = whole.data; *p; p++)
        if (*p != '\r' && *p != '\n' && *p != '\t') *u++ = *p;
    *u = '\0';
    assert_non_null(strstr(unfolded, "h=from:from:subject:date:to:message-id:mime-version:"
                                     "content-type;"));
    free(unfolded);
    char *rsa = record_of(rsa_key), *ed = record_of(ed_key);
    zone z[] = {
        {"rsa._domainkey.example.org", SK_DNS_OK, {rsa}, 1},
        {"ed._domainkey.example.org", SK_DNS_OK, {ed}, 1},
        {"s1._domainkey.service.example", SK_DNS_OK, {rsa}, 1},
    };
    assert_int_equal(sk_buf_puts(&whole, message), 0);
    for (size_t cut = 0; cut <= whole.len; cut += 7) {
        sk_dkim_verify_opts vo = {.now = fixed_time};
        sk_dkim_verifier *v = sk_dkim_verifier_new(&vo, &err);
        assert_int_equal(sk_dkim_verifier_feed(v, whole.data, cut), 0);
        assert_int_equal(sk_dkim_verifier_feed(v, whole.data + cut, whole.len - cut), 0);
        assert_int_equal(sk_dkim_verifier_finish(v, &err), 0);
        const char *q;
        while ((q = sk_dkim_verifier_next_query(v))) {
            size_t i = 0;
            while (strcmp(z[i].name, q)) i++;
            assert_int_equal(sk_dkim_verifier_answer(v, q, SK_DNS_OK, z[i].records, 1), 0);
        }
        assert_int_equal(sk_dkim_verifier_count(v), 3);
        for (size_t i = 0; i < 3; i++)
            if (sk_dkim_verifier_result(v, i)->status != SK_DKIM_PASS)
                fail_msg("cut %zu sig %zu: %s", cut, i, sk_dkim_verifier_result(v, i)->reason);
        sk_dkim_verifier_free(v);
    }
    free(rsa);
    free(ed);
    sk_buf_free(&whole);
}

static void test_sign_errors(void **state)
{
    sk_error err;
    sk_buf out = SK_BUF_INIT(65536);
    static const char *const no_from[] = {"To", "Subject", NULL};
    static const char *const bad_name[] = {"From", "Sub ject", NULL};
    struct {
        sk_dkim_sign_opts o;
        const char *why;
    } cases[] = {
        {{.domain = "example.org", .selector = "s"}, "no key"},
        {{.domain = "exa mple.org", .selector = "s", .key = rsa_key}, "not a domain"},
        {{.domain = "example.org", .selector = "", .key = rsa_key}, "not a selector"},
        {{.domain = "example.org", .selector = "s", .key = rsa_key, .identity = "a@other.org"},
         "identity"},
        {{.domain = "example.org", .selector = "s", .key = rsa_key, .identity = "a b@example.org"},
         "identity"},
        {{.domain = "example.org", .selector = "s", .key = rsa_key, .headers = no_from},
         "must include From"},
        {{.domain = "example.org", .selector = "s", .key = rsa_key, .headers = bad_name},
         "not a header field name"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        if (sk_dkim_sign(&cases[i].o, 1, message, strlen(message), &out, &err) != SK_ERR_INVAL ||
            !strstr(err.text, cases[i].why))
            fail_msg("case %zu: want '%s', got '%s'", i, cases[i].why, err.text);
    }
    sk_dkim_sign_opts o = {.domain = "example.org", .selector = "s", .key = rsa_key};
    const char *m = "To: a@b\r\nSubject: x\r\n\r\nbody\r\n";
    assert_int_equal(sk_dkim_sign(&o, 1, m, strlen(m), &out, &err), SK_ERR_SYNTAX);
    assert_non_null(strstr(err.text, "no From"));
    assert_int_equal(out.len, 0);
    sk_buf_free(&out);
}

/* Signatures the verifier refuses before any key, and the limit. */
static void test_verify_refusals(void **state)
{
    char msg[8192];
    snprintf(msg, sizeof msg,
             "DKIM-Signature: v=1; a=rsa-sha1; d=example.org; s=s; h=from; "
             "bh=2jmj7l5rSw0yVb/vlWAYkK/YBwk=; b=dGVzdA==\r\n"
             "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; h=to; bh=" BH
             "; b=dGVzdA==\r\n"
             "From: a@example.org\r\n\r\n");
    sk_dkim_verifier *v = verify_msg(msg, strlen(msg), NULL, 0, 0);
    assert_int_equal(sk_dkim_verifier_count(v), 2);
    assert_int_equal(sk_dkim_verifier_result(v, 0)->status, SK_DKIM_FAIL);
    assert_non_null(strstr(sk_dkim_verifier_result(v, 0)->reason, "RFC 8301"));
    assert_int_equal(sk_dkim_verifier_result(v, 1)->status, SK_DKIM_NEUTRAL);
    assert_non_null(strstr(sk_dkim_verifier_result(v, 1)->reason, "From field not signed"));
    assert_string_equal(sk_dkim_verifier_result(v, 1)->domain, "example.org");
    assert_int_equal(sk_dkim_verifier_summary(v), SK_DKIM_FAIL);
    sk_dkim_verifier_free(v);
    /* no signature */
    v = verify_msg("From: a@b\r\n\r\nx\r\n", 16, NULL, 0, 0);
    assert_int_equal(sk_dkim_verifier_count(v), 0);
    assert_int_equal(sk_dkim_verifier_summary(v), SK_DKIM_NONE);
    sk_dkim_verifier_free(v);
    /* the limit: the rest counted, not evaluated */
    sk_buf m = SK_BUF_INIT(65536);
    for (int i = 0; i < SK_DKIM_VERIFY_SIGNATURES_MAX + 3; i++)
        assert_int_equal(sk_buf_printf(&m,
                                       "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; "
                                       "s=s%d; h=from; bh=" BH "; b=dGVzdGluZw%02d\r\n",
                                       i, i),
                         0);
    assert_int_equal(sk_buf_puts(&m, "From: a@example.org\r\n\r\n"), 0);
    v = verify_msg(m.data, m.len, NULL, 0, 0);
    assert_int_equal(sk_dkim_verifier_count(v), SK_DKIM_VERIFY_SIGNATURES_MAX);
    assert_int_equal(sk_dkim_verifier_skipped(v), 3);
    /* header.b grows past 8 characters when two signatures start alike */
    assert_string_equal(sk_dkim_verifier_result(v, 0)->b, "dGVzdGluZw00");
    assert_int_equal(sk_dkim_verifier_result(v, 0)->status, SK_DKIM_PERMERROR); /* no key */
    sk_dkim_verifier_free(v);
    sk_buf_free(&m);
}

/* Every allocation of a sign and a verify failing in turn: the error is
 * reported and nothing leaks. */
static sk_err sign_and_verify(void)
{
    sk_dkim_sign_opts o = {.domain = "example.org", .selector = "sel", .key = ed_key};
    sk_error err;
    sk_buf out = SK_BUF_INIT(65536);
    sk_err e = sk_dkim_sign(&o, 1, message, strlen(message), &out, &err);
    if (!e) e = sk_buf_puts(&out, message);
    sk_dkim_verifier *v = e ? NULL : sk_dkim_verifier_new(NULL, &err);
    if (!e && !v) e = SK_ERR_NOMEM;
    if (!e) e = sk_dkim_verifier_feed(v, out.data, out.len);
    if (!e) e = sk_dkim_verifier_finish(v, &err);
    if (!e) e = sk_dkim_verifier_answer(v, "sel._domainkey.example.org", SK_DNS_NXDOMAIN, NULL, 0);
    sk_dkim_verifier_free(v);
    sk_buf_free(&out);
    return e;
}

static void test_alloc_failures(void **state)
{
    long n;
    for (n = 0;; n++) {
        skt_alloc_fail_at(n);
        sk_err e = sign_and_verify();
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canon_header),       cmocka_unit_test(test_canon_body),
        cmocka_unit_test(test_body_limit),         cmocka_unit_test(test_msg_split),
        cmocka_unit_test(test_header_block_limit), cmocka_unit_test(test_tags),
        cmocka_unit_test(test_sig_parse),          cmocka_unit_test(test_key_record),
        cmocka_unit_test(test_txt_strings),        cmocka_unit_test(test_key_load),
        cmocka_unit_test(test_sign_verify),        cmocka_unit_test(test_sign_shared_key),
        cmocka_unit_test(test_sign_chunks),        cmocka_unit_test(test_sign_errors),
        cmocka_unit_test(test_verify_refusals),    cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, make_keys, free_keys);
}
