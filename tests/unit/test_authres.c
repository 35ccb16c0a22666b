/* Unit tests for src/authres: building Authentication-Results (quoting,
 * comments, properties, folding, errors) and its ARC form, reading the
 * authserv-id of real-world-shaped headers, finding and stripping ours, and
 * Python's authres library (python3-authres) as an oracle both ways. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/authres.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROPS(...) (const sk_authres_prop[]){__VA_ARGS__}, SKT_N(((sk_authres_prop[]){__VA_ARGS__}))

static const sk_authres_prop typical_dkim[] = {{"header", "d", "example.org"},
                                               {"header", "i", "@example.org"},
                                               {"header", "s", "sel2024"},
                                               {"header", "b", "AbC/d+9="}};
static const sk_authres_prop typical_spf[] = {{"smtp", "mailfrom", "bounce@example.org"}};
static const sk_authres_prop typical_dmarc[] = {{"header", "from", "example.org"}};
static const sk_authres_result typical[] = {
    {"dkim", 0, "pass", NULL, NULL, typical_dkim, SKT_N(typical_dkim)},
    {"spf", 0, "pass", NULL, NULL, typical_spf, SKT_N(typical_spf)},
    {"dmarc", 0, "pass", "p=reject dis=none", NULL, typical_dmarc, SKT_N(typical_dmarc)},
};

static void test_build(void **state)
{
    const struct {
        const char *id;
        const sk_authres_result *r;
        size_t n;
        const char *want;
    } cases[] = {
        {"mx.example.net", NULL, 0, "Authentication-Results: mx.example.net; none\r\n"},
        {"mx.example.net", typical, 3,
         "Authentication-Results: mx.example.net;\r\n"
         "\tdkim=pass header.d=example.org header.i=@example.org header.s=sel2024\r\n"
         "\theader.b=\"AbC/d+9=\";\r\n"
         "\tspf=pass smtp.mailfrom=bounce@example.org;\r\n"
         "\tdmarc=pass (p=reject dis=none) header.from=example.org\r\n"},
        /* an authserv-id that is not a token is quoted */
        {"odd id", typical + 1, 1,
         "Authentication-Results: \"odd id\";\r\n\tspf=pass smtp.mailfrom=bounce@example.org\r\n"},
        /* reason, version, values needing quotes, comment escapes */
        {"mx.example.net",
         (const sk_authres_result[]){
             {"spf", 1, "fail", "a (nested) \\ comment", "sender \"x\" not allowed",
              PROPS({"smtp", "mailfrom", "a b@example.org"}, {"smtp", "helo", "[192.0.2.1]"},
                    {"policy", "dmarc", "reject"})}},
         1,
         "Authentication-Results: mx.example.net;\r\n"
         "\tspf/1=fail (a \\(nested\\) \\\\ comment) reason=\"sender \\\"x\\\" not allowed\"\r\n"
         "\tsmtp.mailfrom=\"a b@example.org\" smtp.helo=\"[192.0.2.1]\" policy.dmarc=reject\r\n"},
        /* UTF-8 values are quoted as they are (RFC 6532) */
        {"mx.example.net",
         (const sk_authres_result[]){
             {"spf", 0, "pass", NULL, NULL, PROPS({"smtp", "mailfrom", "zoë@bücher.example"})}},
         1,
         "Authentication-Results: mx.example.net;\r\n"
         "\tspf=pass smtp.mailfrom=\"zoë@bücher.example\"\r\n"},
        {"mx.example.net",
         (const sk_authres_result[]){
             {"dkim", 0, "none", NULL, "no signature", NULL, 0},
             {"arc", 0, "pass", NULL, NULL, PROPS({"header", "oldest-pass", "0"})}},
         2,
         "Authentication-Results: mx.example.net;\r\n"
         "\tdkim=none reason=\"no signature\";\r\n"
         "\tarc=pass header.oldest-pass=0\r\n"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
        sk_error err;
        if (sk_authres_build(cases[i].id, cases[i].r, cases[i].n, &b, &err) != SK_OK)
            fail_msg("case %zu: %s", i, err.text);
        if (strcmp(b.data, cases[i].want))
            fail_msg("case %zu:\n%s\nwant\n%s", i, b.data, cases[i].want);
        sk_buf_free(&b);
    }
}

static void test_build_fold(void **state)
{
    /* Long values: lines folded before the soft limit where a word
     * boundary allows, a long word alone on its line. */
    char sig[200];
    memset(sig, 'A', sizeof sig - 1);
    sig[sizeof sig - 1] = '\0';
    sk_authres_result r = {"dkim",
                           0,
                           "pass",
                           NULL,
                           NULL,
                           PROPS({"header", "d", "a-rather-long-subdomain.of.example.org"},
                                 {"header", "s", "selector-2024-01"}, {"header", "b", sig})};
    sk_buf b = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    assert_int_equal(sk_authres_build("mx.example.net", &r, 1, &b, NULL), SK_OK);
    size_t longest = 0, lines = 0;
    for (const char *p = b.data; *p;) {
        const char *e = strstr(p, "\r\n");
        assert_non_null(e);
        size_t n = (size_t)(e - p);
        if (n > longest) longest = n;
        lines++;
        p = e + 2;
        if (*p) assert_true(*p == '\t');
    }
    assert_int_equal(lines, 4);
    assert_int_equal(longest, strlen("\theader.b=") + sizeof sig - 1);
    sk_buf_free(&b);
    /* A word longer than a line can be: refused, out unchanged. */
    char *huge = malloc(1200);
    memset(huge, 'B', 1199);
    huge[1199] = '\0';
    sk_authres_result h = {"dkim", 0, "pass", NULL, NULL, PROPS({"header", "b", huge})};
    sk_buf o = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
    assert_int_equal(sk_buf_puts(&o, "kept"), SK_OK);
    sk_error err;
    assert_int_equal(sk_authres_build("mx.example.net", &h, 1, &o, &err), SK_ERR_TOO_LONG);
    assert_string_equal(o.data, "kept");
    sk_buf_free(&o);
    free(huge);
}

static void test_build_errors(void **state)
{
    const sk_authres_result bad[] = {
        {"dk im", 0, "pass", NULL, NULL, NULL, 0},
        {"dkim", 0, "", NULL, NULL, NULL, 0},
        {"dkim", 0, "pass;", NULL, NULL, NULL, 0},
        {"dkim", 0, "pass", "line\r\nbreak", NULL, NULL, 0},
        {"dkim", 0, "pass", NULL, "tab\tin reason", NULL, 0},
        {"dkim", 0, "pass", NULL, NULL, PROPS({"header", "d", ""})},
        {"dkim", 0, "pass", NULL, NULL, PROPS({"head er", "d", "x"})},
        {"dkim", 0, "pass", NULL, NULL, PROPS({"header", "d=", "x"})},
        {"dkim", 0, "pass", NULL, NULL, PROPS({"header", "d", "a\nb"})},
        {NULL, 0, "pass", NULL, NULL, NULL, 0},
    };
    for (size_t i = 0; i < SKT_N(bad); i++) {
        sk_buf b = SK_BUF_INIT(4096);
        sk_error err;
        if (sk_authres_build("mx.example.net", &bad[i], 1, &b, &err) != SK_ERR_INVAL)
            fail_msg("case %zu accepted", i);
        assert_int_equal(b.len, 0);
        assert_non_null(strstr(err.text, "invalid"));
        sk_buf_free(&b);
    }
    sk_buf b = SK_BUF_INIT(4096);
    assert_int_equal(sk_authres_build("", typical, 1, &b, NULL), SK_ERR_INVAL);
    assert_int_equal(sk_authres_build("a\rb", typical, 1, &b, NULL), SK_ERR_INVAL);
    assert_int_equal(sk_authres_build(NULL, typical, 1, &b, NULL), SK_ERR_INVAL);
    sk_buf_free(&b);
}

static void test_build_arc(void **state)
{
    sk_buf b = SK_BUF_INIT(4096);
    assert_int_equal(sk_authres_build_arc(1, "mx.example.net", typical + 1, 1, &b, NULL), SK_OK);
    assert_string_equal(b.data, "ARC-Authentication-Results: i=1; mx.example.net;\r\n"
                                "\tspf=pass smtp.mailfrom=bounce@example.org\r\n");
    sk_buf_reset(&b);
    assert_int_equal(sk_authres_build_arc(50, "mx.example.net", NULL, 0, &b, NULL), SK_OK);
    assert_string_equal(b.data, "ARC-Authentication-Results: i=50; mx.example.net; none\r\n");
    sk_buf_reset(&b);
    assert_int_equal(sk_authres_build_arc(0, "mx.example.net", NULL, 0, &b, NULL), SK_ERR_INVAL);
    assert_int_equal(sk_authres_build_arc(51, "mx.example.net", NULL, 0, &b, NULL), SK_ERR_INVAL);
    assert_int_equal(b.len, 0);
    sk_buf_free(&b);
}

static void test_parse_id(void **state)
{
    static const struct {
        const char *value;
        const char *id; /* NULL: SK_ERR_SYNTAX */
        unsigned version;
    } cases[] = {
        {" mx.google.com;\r\n       dkim=pass header.i=@example.org", "mx.google.com", 1},
        {" mx.example.net; none", "mx.example.net", 1},
        {" mx.example.net 1; spf=pass", "mx.example.net", 1},
        {" mx.example.net 2 ; spf=pass", "mx.example.net", 2},
        {"mx.example.net;spf=pass", "mx.example.net", 1},
        {" (comment) mx.example.net (more (nested)) ; none", "mx.example.net", 1},
        {" (a \\) quoted paren) mx.example.net; none", "mx.example.net", 1},
        {"\r\n\tmx.example.net\r\n\t; none", "mx.example.net", 1},
        {" \"quoted id\"; none", "quoted id", 1},
        {" \"with \\\"escapes\\\"\" 1; none", "with \"escapes\"", 1},
        {" \"folded\r\n id\"; none", "folded id", 1},
        {" mx.example.net (version follows) 1 (done); none", "mx.example.net", 1},
        /* Microsoft's form without an authserv-id, and other malformed ones */
        {" spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.org; dkim=none", NULL, 0},
        {" mx.example.net", NULL, 0},
        {" mx.example.net dkim=pass", NULL, 0},
        {" (unterminated mx.example.net; none", NULL, 0},
        {" \"unterminated; none", NULL, 0},
        {" ; none", NULL, 0},
        {"", NULL, 0},
        {" mx.example.net 1234567890; none", NULL, 0},
        {" \"\"; none", NULL, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf id = SK_BUF_INIT(256);
        unsigned v = 99;
        sk_err e = sk_authres_parse_id(cases[i].value, strlen(cases[i].value), &id, &v);
        if (!cases[i].id) {
            if (e != SK_ERR_SYNTAX) fail_msg("case %zu: parsed as \"%s\"", i, sk_buf_cstr(&id));
            assert_int_equal(id.len, 0);
        } else {
            if (e != SK_OK) fail_msg("case %zu: %d", i, e);
            if (strcmp(id.data, cases[i].id) || v != cases[i].version)
                fail_msg("case %zu: \"%s\" %u", i, id.data, v);
        }
        sk_buf_free(&id);
    }
    /* Bounded by the buffer's maximum. */
    sk_buf small = SK_BUF_INIT(4);
    assert_int_equal(sk_authres_parse_id("mx.example.net; none", 20, &small, NULL),
                     SK_ERR_TOO_LONG);
    sk_buf_free(&small);
}

static void test_find_ours(void **state)
{
    static const char headers[] =
        "Received: from x by y\r\n"
        "Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=a@b.example\r\n"
        "Authentication-Results: other.example; dkim=pass\r\n"
        "authentication-results: MX.Example.NET;\r\n"
        "\tdkim=pass header.d=forged.example\r\n"
        "ARC-Authentication-Results: i=1; mx.example.net; none\r\n"
        "Authentication-Results: (hidden) \"mx.example.net\" 1; none\r\n"
        "Authentication-Results: mx.example.net.other; none\r\n"
        "Authentication-Results: mx.example.net (unterminated; dkim=pass\r\n"
        "Authentication-Results: spf=pass smtp.mailfrom=mx.example.net\r\n"
        "Subject: Authentication-Results: mx.example.net; none\r\n"
        "\r\n"
        "Authentication-Results: mx.example.net; in the body\r\n";
    sk_authres_span *spans;
    size_t n;
    assert_int_equal(sk_authres_find_ours(headers, strlen(headers), "mx.example.net", &spans, &n),
                     SK_OK);
    assert_int_equal(n, 4);
    static const char *const starts[] = {
        "Authentication-Results: mx.example.net; spf",
        "authentication-results: MX.Example.NET;",
        "Authentication-Results: (hidden)",
        "Authentication-Results: mx.example.net (unterminated",
    };
    for (size_t i = 0; i < n; i++) {
        if (strncmp(headers + spans[i].offset, starts[i], strlen(starts[i])))
            fail_msg("span %zu: %.40s", i, headers + spans[i].offset);
        /* Each span ends with its field's line end. */
        assert_memory_equal(headers + spans[i].offset + spans[i].length - 2, "\r\n", 2);
    }
    sk_free(spans);

    sk_buf out = SK_BUF_INIT(4096);
    size_t removed;
    assert_int_equal(sk_authres_strip(headers, strlen(headers), "mx.example.net", &out, &removed),
                     SK_OK);
    assert_int_equal(removed, 4);
    assert_string_equal(out.data,
                        "Received: from x by y\r\n"
                        "Authentication-Results: other.example; dkim=pass\r\n"
                        "ARC-Authentication-Results: i=1; mx.example.net; none\r\n"
                        "Authentication-Results: mx.example.net.other; none\r\n"
                        "Authentication-Results: spf=pass smtp.mailfrom=mx.example.net\r\n"
                        "Subject: Authentication-Results: mx.example.net; none\r\n"
                        "\r\n"
                        "Authentication-Results: mx.example.net; in the body\r\n");
    sk_buf_free(&out);
    /* LF line ends, and nothing to remove. */
    static const char lf[] = "From: a@b.example\nAuthentication-Results: x.example; none\n\n";
    assert_int_equal(sk_authres_find_ours(lf, strlen(lf), "mx.example.net", &spans, &n), SK_OK);
    assert_int_equal(n, 0);
    assert_null(spans);
    assert_int_equal(sk_authres_find_ours(lf, strlen(lf), "x.example", &spans, &n), SK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(spans[0].offset, 18);
    assert_int_equal(spans[0].length, 40);
    sk_free(spans);
    assert_int_equal(sk_authres_find_ours(lf, strlen(lf), "", &spans, &n), SK_ERR_INVAL);

    /* A lone CR before a removed field and an LF after it do not join
     * into one CRLF: the empty line that ends the header stays (found by
     * fuzz_authres). */
    static const char cr[] = "A: 1\rAuthentication-Results: x.example; none\r\n\n"
                             "Authentication-Results: x.example; in the body\r\n";
    sk_buf o = SK_BUF_INIT(4096);
    assert_int_equal(sk_authres_strip(cr, strlen(cr), "x.example", &o, &removed), SK_OK);
    assert_int_equal(removed, 1);
    assert_string_equal(o.data, "A: 1\r\n\nAuthentication-Results: x.example; in the body\r\n");
    assert_int_equal(sk_authres_find_ours(o.data, o.len, "x.example", &spans, &n), SK_OK);
    assert_int_equal(n, 0);
    sk_buf_free(&o);
}

/* Allocation failures: every one is reported, nothing leaks. */
static void test_alloc_failures(void **state)
{
    static const char headers[] = "Authentication-Results: mx.example.net; none\r\n"
                                  "Authentication-Results: mx.example.net; none\r\n\r\n";
    for (long k = 0;; k++) {
        skt_alloc_fail_at(k);
        sk_buf b = SK_BUF_INIT(4096);
        sk_err e1 = sk_authres_build("mx.example.net", typical, 3, &b, NULL);
        sk_buf_free(&b);
        sk_buf s = SK_BUF_INIT(4096);
        sk_err e2 = sk_authres_strip(headers, strlen(headers), "mx.example.net", &s, NULL);
        sk_buf_free(&s);
        int failed = skt_alloc_failed();
        long live = skt_alloc_live();
        skt_alloc_end();
        assert_int_equal(live, 0);
        if (!failed) {
            assert_int_equal(e1, SK_OK);
            assert_int_equal(e2, SK_OK);
            break;
        }
        assert_true(e1 == SK_ERR_NOMEM || e2 == SK_ERR_NOMEM);
    }
}

/* ---- Python's authres library as an oracle ---- */

static int run_oracle(const char *dir)
{
    const char *src = getenv("SK_SOURCE_DIR");
    char script[512];
    snprintf(script, sizeof script, "%s/tests/unit/authres_oracle.py", src ? src : ".");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/usr/bin/python3", "python3", script, dir, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if ((unsigned char)*s < 0x20) {
            fprintf(f, "\\u%04x", (unsigned)*s);
            continue;
        }
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Our headers, parsed by Python: the same id, methods, results, reasons
 * and properties. Python's headers (written by the library): the same id
 * through sk_authres_parse_id, and found by sk_authres_find_ours. */
static void test_oracle(void **state)
{
    if (access("/usr/lib/python3/dist-packages/authres/__init__.py", R_OK) != 0) {
        print_message("python3-authres missing (scripts/deps.sh installs it)\n");
        fail();
    }
    char *dir = skt_tmpdir("authres");
    const struct {
        const char *id;
        const sk_authres_result *r;
        size_t n;
    } cases[] = {
        {"mx.example.net", typical, 3},
        {"mx.example.net", NULL, 0},
        {"relay-1.example.net",
         (const sk_authres_result[]){
             {"spf", 0, "softfail", "transitioning", "not in the list",
              PROPS({"smtp", "mailfrom", "user@sub.example.org"},
                    {"smtp", "helo", "mail.example.org"})},
             {"dkim", 0, "fail", NULL, "signature did not verify",
              PROPS({"header", "d", "example.org"}, {"header", "s", "s1"},
                    {"header", "b", "x/Y+z=="})},
             {"dkim", 0, "pass", NULL, NULL,
              PROPS({"header", "d", "esp.example"}, {"header", "i", "@esp.example"})},
             {"dmarc", 0, "fail", "p=reject", NULL,
              PROPS({"header", "from", "example.org"}, {"policy", "dmarc", "reject"})},
             {"arc", 0, "none", NULL, NULL, NULL, 0}},
         5},
    };
    char path[512];
    snprintf(path, sizeof path, "%s/ours.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[", f);
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(SK_AUTHRES_HEADER_MAX_OCTETS);
        assert_int_equal(sk_authres_build(cases[i].id, cases[i].r, cases[i].n, &b, NULL), SK_OK);
        fprintf(f, "%s{\"header\": ", i ? ",\n" : "");
        json_str(f, b.data);
        fputs(", \"id\": ", f);
        json_str(f, cases[i].id);
        fputs(", \"results\": [", f);
        for (size_t k = 0; k < cases[i].n; k++) {
            const sk_authres_result *r = &cases[i].r[k];
            fprintf(f, "%s{\"method\": ", k ? ", " : "");
            json_str(f, r->method);
            fputs(", \"result\": ", f);
            json_str(f, r->result);
            fputs(", \"reason\": ", f);
            if (r->reason)
                json_str(f, r->reason);
            else
                fputs("null", f);
            fputs(", \"props\": [", f);
            for (size_t p = 0; p < r->n_props; p++) {
                fputs(p ? ", [" : "[", f);
                json_str(f, r->props[p].ptype);
                fputs(", ", f);
                json_str(f, r->props[p].property);
                fputs(", ", f);
                json_str(f, r->props[p].value);
                fputs("]", f);
            }
            fputs("]}", f);
        }
        fputs("]}", f);
        sk_buf_free(&b);
    }
    fputs("]\n", f);
    fclose(f);
    int rc = run_oracle(dir);
    if (rc != 0) fail_msg("authres_oracle.py exited with %d (files kept in %s)", rc, dir);
    /* The headers Python wrote, one a line as "ID<TAB>HEADER". */
    snprintf(path, sizeof path, "%s/theirs.txt", dir);
    size_t len;
    char *theirs = skt_read_file(path, &len);
    size_t count = 0;
    for (char *line = strtok(theirs, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = '\0';
        const char *hdr = tab + 1;
        const char *colon = strchr(hdr, ':');
        assert_non_null(colon);
        sk_buf id = SK_BUF_INIT(256);
        if (sk_authres_parse_id(colon + 1, strlen(colon + 1), &id, NULL) != SK_OK)
            fail_msg("cannot read the id of: %s", hdr);
        assert_string_equal(id.data, line);
        sk_buf_free(&id);
        char block[2048];
        snprintf(block, sizeof block, "%s\r\n\r\n", hdr);
        sk_authres_span *spans;
        size_t n;
        assert_int_equal(sk_authres_find_ours(block, strlen(block), line, &spans, &n), SK_OK);
        assert_int_equal(n, 1);
        sk_free(spans);
        count++;
    }
    assert_true(count >= 3);
    free(theirs);
    skt_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build),          cmocka_unit_test(test_build_fold),
        cmocka_unit_test(test_build_errors),   cmocka_unit_test(test_build_arc),
        cmocka_unit_test(test_parse_id),       cmocka_unit_test(test_find_ours),
        cmocka_unit_test(test_alloc_failures), cmocka_unit_test(test_oracle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
