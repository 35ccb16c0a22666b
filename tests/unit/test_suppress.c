/* Unit tests for src/track/suppress.c: address forms, case rules, expiry,
 * removal, listing, and suppression after hard bounces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <smtpkit/smtpkit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOW_S 1790000000LL

typedef struct fixture {
    char dir[64];
    char path[96];
    sk_track *tr;
} fixture;

static int64_t fake_clock(void *ctx)
{
    return NOW_S * 1000;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/sk-suppress-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/track.db", f->dir);
    sk_error err;
    f->tr = sk_track_open(f->path, 0, &err);
    if (!f->tr) return -1;
    sk_track_opts o = {.clock_ms = fake_clock};
    if (sk_track_set_opts(f->tr, &o, NULL, &err)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_track_free(f->tr);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_normalize(void **state)
{
    static const struct {
        const char *in;
        sk_err err;
        const char *out;
    } cases[] = {
        {"bob@example.com", SK_OK, "bob@example.com"},
        {"Bob@Example.COM", SK_OK, "Bob@example.com"}, /* local part kept as is */
        {"<Bob@EXAMPLE.com>", SK_OK, "Bob@example.com"},
        {"  a@b.c\t", SK_OK, "a@b.c"},
        {"\"x@Y\"@Z.org", SK_OK, "\"x@Y\"@z.org"}, /* the last '@' splits */
        {"nope", SK_ERR_INVAL, NULL},
        {"@example.com", SK_ERR_INVAL, NULL},
        {"bob@", SK_ERR_INVAL, NULL},
        {"<>", SK_ERR_INVAL, NULL},
        {"<<a@b.example>>", SK_ERR_INVAL, NULL},
        {"a@b.example>", SK_ERR_INVAL, NULL},
        {"", SK_ERR_INVAL, NULL},
        {"a\r\n@example.com", SK_ERR_INVAL, NULL},
        {NULL, SK_ERR_INVAL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_buf b = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
        sk_err e = sk_suppress_normalize(cases[i].in, &b);
        if (e != cases[i].err) fail_msg("case %zu: %d", i, e);
        if (!e) assert_string_equal(sk_buf_cstr(&b), cases[i].out);
        sk_buf_free(&b);
    }
    char long_addr[SK_SMTP_PATH_MAX_OCTETS + 8];
    memset(long_addr, 'a', sizeof long_addr - 1);
    long_addr[sizeof long_addr - 1] = '\0';
    long_addr[10] = '@';
    sk_buf b = SK_BUF_INIT(SK_SMTP_PATH_MAX_OCTETS);
    assert_int_equal(sk_suppress_normalize(long_addr, &b), SK_ERR_TOO_LONG);
    sk_buf_free(&b);
}

static void test_case_rules(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "Bob@Example.com", "manual", 0, 0, &err), SK_OK);
    static const struct {
        const char *addr;
        sk_err err;
    } cases[] = {
        {"Bob@Example.com", SK_OK},
        {"Bob@example.com", SK_OK},
        {"Bob@EXAMPLE.COM", SK_OK},
        {"<Bob@example.com>", SK_OK},
        {"bob@example.com", SK_ERR_NOT_FOUND}, /* the local part is exact */
        {"BOB@example.com", SK_ERR_NOT_FOUND},
        {"Bob@example.org", SK_ERR_NOT_FOUND},
        {"Bob", SK_ERR_INVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_suppression s;
        sk_err e = sk_suppress_check(f->tr, cases[i].addr, 0, &s, &err);
        if (e != cases[i].err) fail_msg("case %zu '%s': %d", i, cases[i].addr, e);
        if (!e) {
            assert_string_equal(s.address, "Bob@example.com");
            assert_string_equal(s.reason, "manual");
            assert_int_equal(s.created_s, NOW_S);
            assert_int_equal(s.until_s, 0);
        }
        sk_suppression_clear(&s);
    }
}

static void test_expiry(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "a@x.org", "bad-mailbox", 1000, 2000, &err), SK_OK);
    assert_int_equal(sk_suppress_add(f->tr, "b@x.org", NULL, 1000, 0, &err), SK_OK);
    static const struct {
        const char *addr;
        int64_t now;
        sk_err err;
    } cases[] = {
        {"a@x.org", 1000, SK_OK},
        {"a@x.org", 1999, SK_OK},
        {"a@x.org", 2000, SK_ERR_NOT_FOUND}, /* until is the first second it no longer holds */
        {"a@x.org", 5000, SK_ERR_NOT_FOUND},
        {"b@x.org", 1999, SK_OK},
        {"b@x.org", INT64_MAX, SK_OK}, /* for ever */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_err e = sk_suppress_check(f->tr, cases[i].addr, cases[i].now, NULL, &err);
        if (e != cases[i].err) fail_msg("case %zu: %d", i, e);
    }
    /* The list shows what holds at a time. */
    sk_suppression *list;
    size_t n;
    assert_int_equal(sk_suppress_list(f->tr, 1500, &list, &n, &err), SK_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].address, "a@x.org");
    assert_string_equal(list[0].reason, "bad-mailbox");
    assert_int_equal(list[0].until_s, 2000);
    assert_string_equal(list[1].address, "b@x.org");
    assert_string_equal(list[1].reason, "manual");
    sk_suppress_list_free(list, n);
    assert_int_equal(sk_suppress_list(f->tr, 2000, &list, &n, &err), SK_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].address, "b@x.org");
    sk_suppress_list_free(list, n);

    /* Adding again replaces the entry. */
    assert_int_equal(sk_suppress_add(f->tr, "a@X.ORG", "again", 3000, 4000, &err), SK_OK);
    sk_suppression s;
    assert_int_equal(sk_suppress_check(f->tr, "A@x.org", 3500, &s, &err), SK_ERR_NOT_FOUND);
    assert_int_equal(sk_suppress_check(f->tr, "a@x.org", 3500, &s, &err), SK_OK);
    assert_string_equal(s.reason, "again");
    assert_int_equal(s.created_s, 3000);
    sk_suppression_clear(&s);
}

static void test_remove(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "c@Example.NET", "manual", 0, 0, &err), SK_OK);
    static const struct {
        const char *addr;
        sk_err err;
    } cases[] = {
        {"c@example.com", SK_ERR_NOT_FOUND},
        {"C@example.net", SK_ERR_NOT_FOUND},
        {"<c@EXAMPLE.net>", SK_OK},
        {"c@example.net", SK_ERR_NOT_FOUND}, /* already gone */
        {"junk", SK_ERR_INVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_err e = sk_suppress_remove(f->tr, cases[i].addr, &err);
        if (e != cases[i].err) fail_msg("case %zu: %d", i, e);
    }
    assert_int_equal(sk_suppress_check(f->tr, "c@example.net", 0, NULL, &err), SK_ERR_NOT_FOUND);
}

static void test_after_bounce(void **state)
{
    fixture *f = *state;
    static const struct {
        sk_track_kind kind;
        const char *rcpt, *cls, *reply;
        int added;
        const char *reason;
    } cases[] = {
        {SK_TRACK_BOUNCED, "u1@example.org", "bad-mailbox", "550 5.1.1 no such user", 1,
         "bad-mailbox: 550 5.1.1 no such user"},
        {SK_TRACK_BOUNCED, "u2@example.org", "domain-not-found", NULL, 1, "domain-not-found"},
        {SK_TRACK_BOUNCED, "u3@example.org", "mailbox-full", "552 5.2.2 full", 0, NULL},
        {SK_TRACK_BOUNCED, "u4@example.org", "policy", "550 5.7.1 spam", 0, NULL},
        {SK_TRACK_BOUNCED, "u5@example.org", NULL, "550 5.0.0 no", 0, NULL},
        {SK_TRACK_DEFERRED, "u6@example.org", "bad-mailbox", "450 4.1.1 later", 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_track_ev ev = {.time_ms = NOW_S * 1000,
                          .kind = cases[i].kind,
                          .queue_id = "Q",
                          .recipient = cases[i].rcpt,
                          .cls = cases[i].cls,
                          .reply = cases[i].reply};
        sk_error err;
        int added = -1;
        assert_int_equal(sk_suppress_after_bounce(f->tr, &ev, 3600, &added, &err), SK_OK);
        if (added != cases[i].added) fail_msg("case %zu: added %d", i, added);
        sk_suppression s;
        sk_err e = sk_suppress_check(f->tr, cases[i].rcpt, NOW_S + 10, &s, &err);
        assert_int_equal(e, cases[i].added ? SK_OK : SK_ERR_NOT_FOUND);
        if (!e) {
            assert_string_equal(s.reason, cases[i].reason);
            assert_int_equal(s.until_s, NOW_S + 3600);
            sk_suppression_clear(&s);
            /* Gone when the time is up. */
            assert_int_equal(sk_suppress_check(f->tr, cases[i].rcpt, NOW_S + 3600, NULL, &err),
                             SK_ERR_NOT_FOUND);
        }
    }
    /* 0: the default duration. */
    sk_track_ev ev = {.kind = SK_TRACK_BOUNCED,
                      .queue_id = "Q",
                      .recipient = "u7@example.org",
                      .cls = "bad-mailbox"};
    sk_error err;
    assert_int_equal(sk_suppress_after_bounce(f->tr, &ev, 0, NULL, &err), SK_OK);
    sk_suppression s;
    assert_int_equal(sk_suppress_check(f->tr, "u7@example.org", 0, &s, &err), SK_OK);
    assert_int_equal(s.until_s, NOW_S + SK_SUPPRESS_DURATION_S_DEFAULT);
    sk_suppression_clear(&s);
}

static void test_readonly(void **state)
{
    fixture *f = *state;
    sk_error err;
    assert_int_equal(sk_suppress_add(f->tr, "r@example.org", "manual", 0, 0, &err), SK_OK);
    sk_track *rd = sk_track_open(f->path, 1, &err);
    assert_non_null(rd);
    assert_int_equal(sk_suppress_check(rd, "r@example.org", NOW_S, NULL, &err), SK_OK);
    assert_int_equal(sk_suppress_add(rd, "s@example.org", "x", 0, 0, &err), SK_ERR_STATE);
    assert_int_equal(sk_suppress_remove(rd, "r@example.org", &err), SK_ERR_STATE);
    sk_track_free(rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test_setup_teardown(test_case_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_bounce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
