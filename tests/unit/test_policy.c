/* Unit tests for src/daemon/rcpt_policy.c: the one recipient decision of
 * `smtpkit serve`, as a table (recipient, client, tables) -> (verdict,
 * reply). The sender takes no part in it: reports to VERP addresses come
 * from anyone, usually with the null sender. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/daemon.h>

#include "daemon/daemon_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOW_S 1790000000LL /* 2026-09-21 */

/* Which tables a case runs with. */
enum {
    FULL,    /* local domains list.example (with a recipients table) and
                open.example (without), relay networks 10.255.255.0/24 and
                2001:db8::/32, VERP at relay.example, a suppression list */
    BARE,    /* the same configuration, and no recipients table, VERP or
                suppression list (no tracking store) */
    DEFAULTS /* no settings: local domain localhost, relay from loopback */
};

static const struct {
    int tables;
    const char *rcpt; /* "local@domain", or a local part alone */
    const char *peer, *auth;
    sk_rcpt_verdict verdict;
    int code;
    const char *enhanced;
    const char *text;  /* part of the reply text, or NULL */
    const char *entry; /* the suppression entry the decision names, or NULL */
} decide_cases[] = {
    /* Local domain with a recipients table: known and unknown users, in
     * any case (the table is case-insensitive, domain and local part). */
    {FULL, "alice@list.example", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "ALICE@LIST.example", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "carol@list.example", "192.0.2.1", "", SK_RCPT_REFUSED, 550, "5.1.1",
     "no such user here", NULL},
    {FULL, "carol@LIST.EXAMPLE", "192.0.2.1", "", SK_RCPT_REFUSED, 550, "5.1.1",
     "no such user here", NULL},
    /* Trusted or authenticated clients get no more local users. */
    {FULL, "carol@list.example", "10.255.255.1", "bob", SK_RCPT_REFUSED, 550, "5.1.1", NULL, NULL},
    /* RFC 5321 4.5.1: postmaster, with no domain or at a local one. */
    {FULL, "postmaster@list.example", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "PostMaster@List.Example", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "postmaster", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "POSTMASTER", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "anyone", "192.0.2.1", "", SK_RCPT_REFUSED, 550, "5.1.3", "needs a domain", NULL},
    /* A local domain the table does not list takes any local part. */
    {FULL, "anyone@open.example", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "anyone@OPEN.example", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    /* No recipients table: every local part of every local domain. */
    {BARE, "carol@list.example", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    /* Relaying: only from the relay networks or after AUTH. */
    {FULL, "x@elsewhere.example", "192.0.2.1", "", SK_RCPT_REFUSED, 554, "5.7.1",
     "relay access denied", NULL},
    {FULL, "x@elsewhere.example", "127.0.0.1", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    {FULL, "x@elsewhere.example", "10.255.255.9", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    {FULL, "x@elsewhere.example", "10.255.254.9", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    {FULL, "x@elsewhere.example", "2001:db8::7", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    {FULL, "x@elsewhere.example", "2001:db9::7", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    {FULL, "x@elsewhere.example", "IPv6:2001:db8::7", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    {FULL, "x@elsewhere.example", "::ffff:10.255.255.3", "", SK_RCPT_RELAY, 250, "2.0.0", NULL,
     NULL},
    {FULL, "x@elsewhere.example", "::ffff:192.0.2.1", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL,
     NULL},
    {FULL, "x@elsewhere.example", "192.0.2.1", "alice", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    {FULL, "x@elsewhere.example", "garbage", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    {FULL, "x@elsewhere.example", "", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    /* Suppressed remote addresses: refused for trusted and authenticated
     * clients alike, with the date, reason and the way out. */
    {FULL, "gone@far.example", "10.255.255.9", "", SK_RCPT_REFUSED, 550, "5.1.1",
     "recipient suppressed after a hard bounce on 2026-09-21: bad-mailbox: 550 5.1.1 no such "
     "user; smtpkit suppress remove gone@far.example",
     "gone@far.example"},
    {FULL, "gone@far.example", "192.0.2.1", "alice", SK_RCPT_REFUSED, 550, "5.1.1", NULL,
     "gone@far.example"},
    {FULL, "gone@FAR.Example", "2001:db8::7", "", SK_RCPT_REFUSED, 550, "5.1.1",
     "remove gone@far.example", "gone@far.example"},
    {FULL, "Gone@far.example", "10.255.255.9", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    /* An untrusted client hears that it may not relay, not more. */
    {FULL, "gone@far.example", "192.0.2.1", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    /* Expiry: in force until its end, not at it. */
    {FULL, "later@far.example", "10.255.255.9", "", SK_RCPT_REFUSED, 550, "5.1.1",
     "complaint: abuse", "later@far.example"},
    {FULL, "old@far.example", "10.255.255.9", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    /* Local domains are not checked against the list (they are ours). */
    {FULL, "bob@list.example", "10.255.255.9", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {FULL, "any@open.example", "10.255.255.9", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    /* No tracking store, no suppression. */
    {BARE, "gone@far.example", "10.255.255.9", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    /* VERP addresses at our host name take reports from anyone, only when
     * VERP is on and only with the prefix. */
    {FULL, "bounces+ABC=bob=far.example@relay.example", "192.0.2.1", "", SK_RCPT_REPORT, 250,
     "2.0.0", NULL, NULL},
    {FULL, "Bounces+ABC=bob=far.example@RELAY.example", "192.0.2.1", "", SK_RCPT_REPORT, 250,
     "2.0.0", NULL, NULL},
    {FULL, "bob@relay.example", "192.0.2.1", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    {FULL, "bounces+ABC=bob=far.example@other.example", "192.0.2.1", "", SK_RCPT_REFUSED, 554,
     "5.7.1", NULL, NULL},
    {BARE, "bounces+ABC=bob=far.example@relay.example", "192.0.2.1", "", SK_RCPT_REFUSED, 554,
     "5.7.1", NULL, NULL},
    /* The embedded default: localhost is local, loopback relays. */
    {DEFAULTS, "whoever@localhost", "192.0.2.1", "", SK_RCPT_LOCAL, 250, "2.0.0", NULL, NULL},
    {DEFAULTS, "x@elsewhere.example", "127.0.0.1", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    {DEFAULTS, "x@elsewhere.example", "127.1.2.3", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    {DEFAULTS, "x@elsewhere.example", "::1", "", SK_RCPT_RELAY, 250, "2.0.0", NULL, NULL},
    {DEFAULTS, "x@elsewhere.example", "::ffff:127.0.0.1", "", SK_RCPT_RELAY, 250, "2.0.0", NULL,
     NULL},
    {DEFAULTS, "x@elsewhere.example", "192.0.2.1", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
    {DEFAULTS, "x@elsewhere.example", "::2", "", SK_RCPT_REFUSED, 554, "5.7.1", NULL, NULL},
};

/* The path as the server's parser leaves it: the domain after the last
 * '@', "" for a local part alone. */
static sk_path path_of(const char *addr)
{
    sk_path p = {0};
    snprintf(p.mailbox, sizeof p.mailbox, "%s", addr);
    const char *at = strrchr(addr, '@');
    if (!at) return p;
    snprintf(p.local, sizeof p.local, "%.*s", (int)(at - addr), addr);
    snprintf(p.domain, sizeof p.domain, "%s", at + 1);
    return p;
}

static void test_decide(void **state)
{
    (void)state;
    static const char table[] = "# known users\nAlice@List.Example\nbob@list.example\n";
    char *path = skt_tmpfile("policy", table, sizeof table - 1);
    sk_recipients rcpts;
    sk_error err;
    assert_int_equal(sk_recipients_load(path, &rcpts, &err), SK_OK);
    unlink(path);
    free(path);

    static const sk_daemon_setting flags[] = {{"local-domain", "list.example"},
                                              {"local-domain", "open.example"},
                                              {"relay-net", "10.255.255.0/24"},
                                              {"relay-net", "2001:db8::/32"}};
    sk_daemon_config *cfg = NULL, *defaults = NULL;
    assert_int_equal(sk_daemon_config_build(NULL, flags, 4, &cfg, &err), SK_OK);
    assert_int_equal(sk_daemon_config_build(NULL, NULL, 0, &defaults, &err), SK_OK);

    sk_suppress_set *set = sk_suppress_set_new();
    assert_non_null(set);
    static const sk_suppression entries[] = {
        {.address = "gone@far.example",
         .reason = "bad-mailbox: 550 5.1.1 no such user",
         .created_s = NOW_S,
         .until_s = NOW_S + 86400},
        {.address = "later@far.example",
         .reason = "complaint: abuse",
         .created_s = NOW_S - 86400,
         .until_s = NOW_S + 1},
        {.address = "old@far.example",
         .reason = "bad-mailbox",
         .created_s = NOW_S - 86400,
         .until_s = NOW_S},
        {.address = "bob@list.example", .reason = "manual", .created_s = NOW_S},
        {.address = "any@open.example", .reason = "manual", .created_s = NOW_S},
    };
    for (size_t i = 0; i < SKT_N(entries); i++)
        assert_int_equal(sk_suppress_set_put(set, &entries[i]), SK_OK);

    const sk_rcpt_tables tables[] = {
        [FULL] = {cfg, &rcpts, "relay.example", set},
        [BARE] = {cfg, NULL, NULL, NULL},
        [DEFAULTS] = {defaults, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < SKT_N(decide_cases); i++) {
        sk_path rcpt = path_of(decide_cases[i].rcpt);
        sk_rcpt_query q = {&rcpt, decide_cases[i].peer, decide_cases[i].auth, NOW_S};
        sk_rcpt_decision d = sk_rcpt_decide(&tables[decide_cases[i].tables], &q);
        if (d.verdict != decide_cases[i].verdict || d.reply.code != decide_cases[i].code ||
            strcmp(d.reply.enhanced, decide_cases[i].enhanced) ||
            (decide_cases[i].text && !strstr(d.reply.text, decide_cases[i].text)) ||
            !d.suppressed != !decide_cases[i].entry ||
            (d.suppressed && strcmp(d.suppressed->address, decide_cases[i].entry)))
            fail_msg("case %zu (%s from %s, auth \"%s\"): got verdict %d, %d %s %s%s", i,
                     decide_cases[i].rcpt, decide_cases[i].peer, decide_cases[i].auth, d.verdict,
                     d.reply.code, d.reply.enhanced, d.reply.text,
                     d.suppressed ? " (suppressed)" : "");
    }
    sk_suppress_set_free(set);
    sk_daemon_config_free(cfg);
    sk_daemon_config_free(defaults);
    sk_recipients_free(&rcpts);
}

/* The recipients table names its file and line when a line is wrong. */
static void test_recipients_file(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        sk_err err;
        const char *why;
    } cases[] = {
        {"a@b.example\n# comment\n\n  C@D.example  \n", SK_OK, NULL},
        {"not an address\n", SK_ERR_CONFIG, ":1: expected one address"},
        {"a@b.example\n@b.example\n", SK_ERR_CONFIG, ":2: expected one address"},
        {"a@\n", SK_ERR_CONFIG, ":1: expected one address"},
        {"<a@b.example>\n", SK_ERR_CONFIG, ":1: expected one address"},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        char *path = skt_tmpfile("policy", cases[i].text, strlen(cases[i].text));
        sk_recipients r = {0};
        sk_error err;
        sk_error_clear(&err);
        sk_err e = sk_recipients_load(path, &r, &err);
        unlink(path);
        free(path);
        if (e != cases[i].err) fail_msg("case %zu: got %d (%s)", i, e, err.text);
        if (cases[i].why && !strstr(err.text, cases[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.text, cases[i].why);
        if (!e) {
            assert_true(sk_strset_has(&r.addrs, "c@d.example"));
            assert_true(sk_strset_has(&r.domains, "b.example"));
            assert_false(sk_strset_has(&r.addrs, "C@D.example"));
        }
        sk_recipients_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_recipients_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
