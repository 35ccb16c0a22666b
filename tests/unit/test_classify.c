/* Unit tests for src/deliver/classify.c: the rules format, its errors with
 * FILE:LINE, matching, and the built-in rules against real-world replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/classify.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replies seen from large providers, and what the built-in rules say. */
static const struct {
    int code;
    const char *enhanced, *text;
    sk_class cls;
    sk_traffic_kind action;
} default_cases[] = {
    {550, "5.1.1", "The email account that you tried to reach does not exist.",
     SK_CLASS_BAD_MAILBOX, SK_TRAFFIC_NONE},
    {550, "", "Requested action not taken: mailbox unavailable", SK_CLASS_BAD_MAILBOX,
     SK_TRAFFIC_NONE},
    {550, "5.0.0", "<bob@example.net>: Recipient address rejected: User unknown",
     SK_CLASS_BAD_MAILBOX, SK_TRAFFIC_NONE},
    {552, "5.2.2", "The email account that you tried to reach is over quota.",
     SK_CLASS_MAILBOX_FULL, SK_TRAFFIC_NONE},
    {452, "4.2.2", "Mailbox full", SK_CLASS_MAILBOX_FULL, SK_TRAFFIC_NONE},
    {552, "5.3.4", "Message size exceeds fixed limit", SK_CLASS_MESSAGE_TOO_BIG, SK_TRAFFIC_NONE},
    {552, "", "Message too large", SK_CLASS_MESSAGE_TOO_BIG, SK_TRAFFIC_NONE},
    {421, "4.7.0", "Try again later, closing connection.", SK_CLASS_THROTTLED, SK_TRAFFIC_SUSPEND},
    {421, "", "Too many concurrent SMTP connections; please try again later.", SK_CLASS_THROTTLED,
     SK_TRAFFIC_SUSPEND},
    {450, "4.7.28", "unusual rate of unsolicited mail", SK_CLASS_THROTTLED, SK_TRAFFIC_RATE},
    {451, "4.7.1", "Greylisted, please try again in 300 seconds", SK_CLASS_OTHER, SK_TRAFFIC_NONE},
    {550, "5.7.1", "Service unavailable; client host blocked using Spamhaus", SK_CLASS_BLOCKED,
     SK_TRAFFIC_NONE},
    {554, "5.7.1", "Message rejected due to poor sender reputation", SK_CLASS_BLOCKED,
     SK_TRAFFIC_NONE},
    {550, "5.7.26", "Unauthenticated email is not accepted from this domain (DMARC)",
     SK_CLASS_AUTH_FAILURE, SK_TRAFFIC_NONE},
    /* Texts that decide when the codes mislead. Gmail's 5.2.1 rate reply
     * is no bad mailbox, nor a disabled one. */
    {550, "5.2.1",
     "The email account that you tried to reach is receiving mail at a rate that prevents "
     "additional messages from being delivered.",
     SK_CLASS_THROTTLED, SK_TRAFFIC_RATE},
    {550, "5.2.1", "The email account that you tried to reach is disabled.",
     SK_CLASS_MAILBOX_DISABLED, SK_TRAFFIC_NONE},
    /* Yahoo's unknown account, whatever the status; its 5.7.9 is policy. */
    {554, "5.7.9", "delivery error: dd This user doesn't have a yahoo.com account",
     SK_CLASS_BAD_MAILBOX, SK_TRAFFIC_NONE},
    {554, "5.7.9", "Message not accepted for policy reasons.", SK_CLASS_POLICY, SK_TRAFFIC_NONE},
    {421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume",
     SK_CLASS_THROTTLED, SK_TRAFFIC_SUSPEND},
    /* Microsoft: DBEB's unknown recipient, a banned sending address. */
    {550, "5.4.1", "Recipient address rejected: Access denied.", SK_CLASS_BAD_MAILBOX,
     SK_TRAFFIC_NONE},
    {550, "5.7.606", "Access denied, banned sending IP [192.0.2.1].", SK_CLASS_BLOCKED,
     SK_TRAFFIC_NONE},
    {550, "5.7.1", "Email rejected per DMARC policy for example.org", SK_CLASS_AUTH_FAILURE,
     SK_TRAFFIC_NONE},
    {550, "5.7.23", "SPF validation failed", SK_CLASS_AUTH_FAILURE, SK_TRAFFIC_NONE},
    {550, "", "Message rejected: virus found (Eicar-Test-Signature)", SK_CLASS_VIRUS,
     SK_TRAFFIC_NONE},
    {550, "5.7.1", "Message content rejected, UBE, id=12345-01", SK_CLASS_CONTENT, SK_TRAFFIC_NONE},
    {554, "5.7.1", "This message was classified as SPAM and may not be delivered", SK_CLASS_CONTENT,
     SK_TRAFFIC_NONE},
    {550, "5.2.1", "Mailbox disabled for this recipient", SK_CLASS_MAILBOX_DISABLED,
     SK_TRAFFIC_NONE},
    {550, "", "This account has been suspended", SK_CLASS_MAILBOX_DISABLED, SK_TRAFFIC_NONE},
    {554, "5.4.6", "Hop count exceeded - possible mail loop", SK_CLASS_SYSTEM_ERROR,
     SK_TRAFFIC_NONE},
    {550, "5.3.0", "Other mail system problem", SK_CLASS_SYSTEM_ERROR, SK_TRAFFIC_NONE},
    {451, "4.4.7", "Delivery time expired", SK_CLASS_EXPIRED, SK_TRAFFIC_NONE},
    {550, "", "retry timeout exceeded", SK_CLASS_EXPIRED, SK_TRAFFIC_NONE},
    {550, "5.1.1", "Sorry, no mailbox here by that name.", SK_CLASS_BAD_MAILBOX, SK_TRAFFIC_NONE},
    {550, "", "Benutzer unbekannt", SK_CLASS_BAD_MAILBOX, SK_TRAFFIC_NONE},
    {550, "", "Adresse inexistante", SK_CLASS_BAD_MAILBOX, SK_TRAFFIC_NONE},
    {550, "", "Unrouteable address", SK_CLASS_DOMAIN_NOT_FOUND, SK_TRAFFIC_NONE},
    {554, "", "Relay access denied", SK_CLASS_POLICY, SK_TRAFFIC_NONE},
    {554, "", "Transaction failed", SK_CLASS_POLICY, SK_TRAFFIC_NONE},
    {530, "5.7.0", "Must issue a STARTTLS command first", SK_CLASS_TLS_REQUIRED, SK_TRAFFIC_NONE},
    {530, "5.7.0", "Authentication required", SK_CLASS_AUTH, SK_TRAFFIC_NONE},
    {535, "5.7.8", "Username and Password not accepted", SK_CLASS_AUTH, SK_TRAFFIC_NONE},
    {550, "5.1.10", "domain accepts no mail (null MX)", SK_CLASS_DOMAIN_NOT_FOUND, SK_TRAFFIC_NONE},
    {550, "5.1.2", "domain x.invalid does not exist", SK_CLASS_DOMAIN_NOT_FOUND, SK_TRAFFIC_NONE},
    {451, "4.3.0", "Temporary local problem", SK_CLASS_OTHER, SK_TRAFFIC_NONE},
    {250, "2.0.0", "Ok", SK_CLASS_OTHER, SK_TRAFFIC_NONE},
};

static void test_default_rules(void **state)
{
    sk_rules *rs;
    sk_error err;
    assert_int_equal(sk_rules_default(&rs, &err), SK_OK);
    assert_true(sk_rules_count(rs) > 20);
    for (size_t i = 0; i < SKT_N(default_cases); i++) {
        sk_rule_match m = sk_rules_match(rs, default_cases[i].code, default_cases[i].enhanced,
                                         default_cases[i].text);
        if (m.cls != default_cases[i].cls || m.action.kind != default_cases[i].action)
            fail_msg("case %zu (%d %s %s): got %s action %d (rule line %zu)", i,
                     default_cases[i].code, default_cases[i].enhanced, default_cases[i].text,
                     sk_class_name(m.cls), (int)m.action.kind, m.line);
    }
    sk_rules_free(rs);
}

/* The compiled-in rules are the file shipped in etc/. */
static void test_default_matches_file(void **state)
{
    const char *src = getenv("SK_SOURCE_DIR");
    assert_non_null(src);
    char path[4096];
    snprintf(path, sizeof path, "%s/etc/smtpkit-rules.conf", src);
    char *text = skt_read_file(path, NULL);
    assert_string_equal(text, sk_rules_default_text());
    free(text);
    sk_rules *rs;
    sk_error err;
    assert_int_equal(sk_rules_load(path, &rs, &err), SK_OK);
    sk_rules_free(rs);
}

static const struct {
    const char *rules;
    int code;
    const char *enhanced, *text;
    int matched;
    sk_class cls;
    size_t line;
} match_cases[] = {
    /* exact code */
    {"class=bad-mailbox code=550\n", 550, "", "x", 1, SK_CLASS_BAD_MAILBOX, 1},
    {"class=bad-mailbox code=550\n", 551, "", "x", 0, SK_CLASS_OTHER, 0},
    /* wildcards */
    {"class=policy code=5xx\n", 554, NULL, NULL, 1, SK_CLASS_POLICY, 1},
    {"class=policy code=5xx\n", 454, NULL, NULL, 0, SK_CLASS_OTHER, 0},
    {"class=throttled code=45x\n", 452, NULL, NULL, 1, SK_CLASS_THROTTLED, 1},
    {"class=throttled code=45x\n", 421, NULL, NULL, 0, SK_CLASS_OTHER, 0},
    /* status exact and prefix; a prefix does not match 5.70.x */
    {"class=policy status=5.7.*\n", 550, "5.7.26", "", 1, SK_CLASS_POLICY, 1},
    {"class=policy status=5.7.*\n", 550, "5.70.1", "", 0, SK_CLASS_OTHER, 0},
    {"class=policy status=5.*\n", 550, "5.1.1", "", 1, SK_CLASS_POLICY, 1},
    {"class=policy status=5.*\n", 450, "4.1.1", "", 0, SK_CLASS_OTHER, 0},
    {"class=bad-mailbox status=5.1.1\n", 550, "5.1.10", "", 0, SK_CLASS_OTHER, 0},
    {"class=bad-mailbox status=5.1.1\n", 550, NULL, "", 0, SK_CLASS_OTHER, 0},
    /* regex: case sensitivity, spaces and slashes inside */
    {"class=throttled text=/try again later/i\n", 421, "", "Try AGAIN later", 1, SK_CLASS_THROTTLED,
     1},
    {"class=throttled text=/try again later/\n", 421, "", "Try AGAIN later", 0, SK_CLASS_OTHER, 0},
    {"class=policy text=/see http:\\/\\/x\\/y/\n", 550, "", "see http://x/y", 1, SK_CLASS_POLICY,
     1},
    {"class=policy text=/^550/\n", 550, "", NULL, 0, SK_CLASS_OTHER, 0},
    /* all conditions must hold; first match wins; comments and blanks */
    {"# c\n\nclass=auth code=535 status=5.7.8 text=/pass/i\nclass=other code=5xx\n", 535, "5.7.8",
     "Password wrong", 1, SK_CLASS_AUTH, 3},
    {"# c\n\nclass=auth code=535 status=5.7.8 text=/pass/i\nclass=other code=5xx\n", 535, "5.7.8",
     "no", 1, SK_CLASS_OTHER, 4},
    {"  class=mailbox-full   status=4.2.2  \r\n", 452, "4.2.2", "", 1, SK_CLASS_MAILBOX_FULL, 1},
};

static void test_match(void **state)
{
    for (size_t i = 0; i < SKT_N(match_cases); i++) {
        sk_rules *rs;
        sk_error err;
        if (sk_rules_parse(match_cases[i].rules, strlen(match_cases[i].rules), "t", &rs, &err))
            fail_msg("case %zu: %s", i, err.text);
        sk_rule_match m =
            sk_rules_match(rs, match_cases[i].code, match_cases[i].enhanced, match_cases[i].text);
        if (m.matched != match_cases[i].matched || m.cls != match_cases[i].cls ||
            m.line != match_cases[i].line)
            fail_msg("case %zu: matched=%d class=%s line=%zu", i, m.matched, sk_class_name(m.cls),
                     m.line);
        sk_rules_free(rs);
    }
}

static void test_actions(void **state)
{
    static const struct {
        const char *rules;
        sk_traffic_kind kind;
        uint64_t duration_ms;
        unsigned count;
        uint64_t per_ms;
    } cases[] = {
        {"class=throttled code=421 action=suspend:10m", SK_TRAFFIC_SUSPEND, 600000, 0, 0},
        {"class=throttled code=421 action=rate:5/m for 1h", SK_TRAFFIC_RATE, 3600000, 5, 60000},
        {"class=throttled code=421 action=rate:100/h for 30m text=/x/", SK_TRAFFIC_RATE, 1800000,
         100, 3600000},
        {"class=throttled code=421", SK_TRAFFIC_NONE, 0, 0, 0},
    };
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_rules *rs;
        sk_error err;
        if (sk_rules_parse(cases[i].rules, strlen(cases[i].rules), "t", &rs, &err))
            fail_msg("case %zu: %s", i, err.text);
        sk_rule_match m = sk_rules_match(rs, 421, "", "x");
        assert_int_equal(m.matched, 1);
        assert_int_equal(m.action.kind, cases[i].kind);
        assert_int_equal(m.action.duration_ms, cases[i].duration_ms);
        assert_int_equal(m.action.rate_count, cases[i].count);
        assert_int_equal(m.action.rate_per_ms, cases[i].per_ms);
        sk_rules_free(rs);
    }
}

/* Bad rule lines: the error names the origin and the line. */
static const struct {
    const char *rules, *error;
} bad_cases[] = {
    {"class=bad-mailbox code=550\nclass=nonsense code=550\n", "f.conf:2: unknown class"},
    {"code=550\n", "f.conf:1: no class="},
    {"class=other\n", "f.conf:1: a rule needs at least one of code=, status=, text="},
    {"# x\nclass=other code=55\n", "f.conf:2: bad code (want e.g. 550, 5xx, 45x)"},
    {"class=other code=650\n", "f.conf:1: bad code (want e.g. 550, 5xx, 45x)"},
    {"class=other status=5.1\n", "f.conf:1: bad status (want e.g. 5.1.1 or 5.7.*)"},
    {"class=other status=5.1.1.*\n", "f.conf:1: bad status (want e.g. 5.1.1 or 5.7.*)"},
    {"class=other status=3.1.1\n", "f.conf:1: bad status (want e.g. 5.1.1 or 5.7.*)"},
    {"class=other text=/abc\n", "f.conf:1: text regex has no closing /"},
    {"class=other text=abc\n", "f.conf:1: text must be /REGEX/ or /REGEX/i"},
    {"class=other text=/a/x\n", "f.conf:1: unknown regex flag (only i)"},
    {"class=other code=550 color=red\n",
     "f.conf:1: unknown key (want class, code, status, text, action)"},
    {"class=other code=550 junk\n", "f.conf:1: expected key=value"},
    {"define class=bad-mailbox\n", "f.conf:1: define needs suppress="},
    {"define suppress=no\n", "f.conf:1: define needs class="},
    {"define class=nope suppress=no\n", "f.conf:1: unknown class"},
    {"define class=bad-mailbox suppress=soon\n",
     "f.conf:1: bad suppress (want no or a duration, e.g. suppress=30d)"},
    {"define class=bad-mailbox suppress=1d evidence=maybe\n",
     "f.conf:1: bad evidence (want strong or any)"},
    {"define class=throttled suppress=1d\n",
     "f.conf:1: a temporary class never suppresses (want suppress=no)"},
    {"define class=expired suppress=1d\n",
     "f.conf:1: a temporary class never suppresses (want suppress=no)"},
    {"define class=other suppress=no\ndefine class=other suppress=1d\n",
     "f.conf:2: class defined twice"},
    {"define class=other suppress=no for=1d\n",
     "f.conf:1: unknown key in define (want class, suppress, evidence)"},
    {"class=other code=550 code=551\n", "f.conf:1: code given twice"},
    {"class=throttled code=421 action=suspend:soon\n",
     "f.conf:1: bad suspend duration (want e.g. suspend:10m)"},
    {"class=throttled code=421 action=rate:5/m\n", "f.conf:1: a rate needs \"for DURATION\""},
    {"class=throttled code=421 action=rate:5/w for 1h\n",
     "f.conf:1: bad rate unit (want s, m, h or d)"},
    {"class=throttled code=421 action=slow\n",
     "f.conf:1: unknown action (want suspend:DURATION or rate:N/UNIT for DURATION)"},
};

static void test_bad_rules(void **state)
{
    for (size_t i = 0; i < SKT_N(bad_cases); i++) {
        sk_rules *rs = (sk_rules *)1;
        sk_error err;
        sk_err e =
            sk_rules_parse(bad_cases[i].rules, strlen(bad_cases[i].rules), "f.conf", &rs, &err);
        if (e != SK_ERR_CONFIG) fail_msg("case %zu: accepted", i);
        assert_null(rs);
        if (strcmp(err.text, bad_cases[i].error) != 0)
            fail_msg("case %zu: got \"%s\"", i, err.text);
    }
    /* Repetition in moderation is fine. */
    sk_rules *ok;
    const char *fine = "class=policy text=/(spam|block(ed)?|listed)+ .{0,50}zen|a{1,100}/i\n";
    assert_int_equal(sk_rules_parse(fine, strlen(fine), "f.conf", &ok, NULL), SK_OK);
    sk_rule_match m = sk_rules_match(ok, 554, NULL, "Blocked, listed at zen.example");
    assert_true(m.matched);
    sk_rules_free(ok);
    /* A regex that does not compile reports PCRE2's reason on its line. */
    sk_rules *rs;
    sk_error err;
    const char *re = "class=other code=550\nclass=other text=/a(b/\n";
    assert_int_equal(sk_rules_parse(re, strlen(re), "f.conf", &rs, &err), SK_ERR_CONFIG);
    assert_true(strncmp(err.text, "f.conf:2: text regex: ", 22) == 0 && strlen(err.text) > 22);
}

/* Patterns that made glibc's regcomp take minutes or gigabytes (found by
 * fuzz_rules) either do not compile (PCRE2 names why, on their line) or
 * compile and match within PCRE2's limits. */
static const char *const hostile_patterns[] = {
    "u++++++++++++++++",
    "((a*){100}){100}",
    "(((((((((()+)+)+)+)+)+)+)+)+)+",
    "x{99999999999999999999}",
    "([[:alpha:]]+)+((b|c)*)+(d?)+[]+(]{9999}",
    "(a*$)((a**)+++)+))",
    "$(((a*)+)+)+",
    "((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))",
};

static void test_hostile_regex(void **state)
{
    (void)state;
    char text[4096];
    memset(text, 'a', sizeof text - 2);
    text[sizeof text - 2] = '!';
    text[sizeof text - 1] = '\0';
    for (size_t i = 0; i < SKT_N(hostile_patterns); i++) {
        char rule[256];
        snprintf(rule, sizeof rule, "class=other code=550\nclass=policy text=/%s/\n",
                 hostile_patterns[i]);
        sk_rules *rs = NULL;
        sk_error err;
        sk_err e = sk_rules_parse(rule, strlen(rule), "f.conf", &rs, &err);
        if (e) {
            assert_int_equal(e, SK_ERR_CONFIG);
            if (strncmp(err.text, "f.conf:2: text regex: ", 22) != 0)
                fail_msg("case %zu: %s", i, err.text);
            continue;
        }
        sk_rule_match m = sk_rules_match(rs, 551, NULL, text);
        (void)m;
        sk_rules_free(rs);
    }
    /* Catastrophic backtracking reaches the match limit: the rule is
     * skipped and the caller told, rather than the thread stuck. */
    const char *bt = "class=policy text=/^(a+)+$/\n";
    sk_rules *rs;
    assert_int_equal(sk_rules_parse(bt, strlen(bt), "f.conf", &rs, NULL), SK_OK);
    sk_rule_match m = sk_rules_match(rs, 550, NULL, text);
    assert_false(m.matched);
    assert_int_equal(m.undecided, 1);
    /* The same rule on a text it matches quickly still matches. */
    m = sk_rules_match(rs, 550, NULL, "aaaa");
    assert_true(m.matched);
    assert_int_equal(m.undecided, 0);
    sk_rules_free(rs);
}

static void test_load_errors(void **state)
{
    sk_rules *rs;
    sk_error err;
    assert_int_equal(sk_rules_load("/nonexistent/rules.conf", &rs, &err), SK_ERR_IO);
    assert_non_null(strstr(err.text, "/nonexistent/rules.conf"));
    static const char bad[] = "class=bad-mailbox code=550\n\nclass=policy status=5.7\n";
    char *path = skt_tmpfile("rules", bad, strlen(bad));
    assert_int_equal(sk_rules_load(path, &rs, &err), SK_ERR_CONFIG);
    char want[128];
    snprintf(want, sizeof want, "%s:3: bad status (want e.g. 5.1.1 or 5.7.*)", path);
    assert_string_equal(err.text, want);
    remove(path);
    free(path);
}

/* Up to SK_RULES_MAX rules load; one more is refused on its line. */
static void test_rules_count(void **state)
{
    static const struct {
        size_t n;
        sk_err want;
    } cases[] = {{1, SK_OK}, {SK_RULES_MAX, SK_OK}, {SK_RULES_MAX + 1, SK_ERR_TOO_LONG}};
    static const char line[] = "class=other code=550\n";
    for (size_t i = 0; i < SKT_N(cases); i++) {
        size_t len = cases[i].n * (sizeof line - 1);
        char *text = malloc(len + 1);
        assert_non_null(text);
        for (size_t k = 0; k < cases[i].n; k++)
            memcpy(text + k * (sizeof line - 1), line, sizeof line);
        sk_rules *rs;
        sk_error err;
        sk_err e = sk_rules_parse(text, len, "f.conf", &rs, &err);
        free(text);
        if (e != cases[i].want)
            fail_msg("%zu rules: %s (%s)", cases[i].n, sk_strerror(e), err.text);
        if (e) {
            char want[64];
            snprintf(want, sizeof want, "f.conf:%zu: too many rules", cases[i].n);
            assert_string_equal(err.text, want);
            assert_null(rs);
        } else {
            sk_rules_free(rs);
        }
    }
}

/* The built-in define lines: what suppresses and for how long. */
static const struct {
    sk_class cls;
    int suppress;
    uint64_t suppress_s;
} builtin_policies[] = {
    {SK_CLASS_BAD_MAILBOX, 1, 30 * 86400},
    {SK_CLASS_MAILBOX_DISABLED, 1, 90 * 86400},
    {SK_CLASS_DOMAIN_NOT_FOUND, 1, 7 * 86400},
    {SK_CLASS_MAILBOX_FULL, 0, 0},
    {SK_CLASS_THROTTLED, 0, 0},
    {SK_CLASS_EXPIRED, 0, 0},
    {SK_CLASS_POLICY, 0, 0},
    {SK_CLASS_BLOCKED, 0, 0},
    {SK_CLASS_CONTENT, 0, 0},
    {SK_CLASS_VIRUS, 0, 0},
    {SK_CLASS_AUTH_FAILURE, 0, 0},
    {SK_CLASS_AUTH, 0, 0},
    {SK_CLASS_TLS_REQUIRED, 0, 0},
    {SK_CLASS_MESSAGE_TOO_BIG, 0, 0},
    {SK_CLASS_SYSTEM_ERROR, 0, 0},
    {SK_CLASS_UNDETERMINED, 0, 0},
    {SK_CLASS_OTHER, 0, 0},
};
_Static_assert(sizeof builtin_policies / sizeof builtin_policies[0] == SK_CLASS__COUNT,
               "every class has a built-in policy");

static void test_class_policies(void **state)
{
    (void)state;
    sk_rules *rs;
    assert_int_equal(sk_rules_default(&rs, NULL), SK_OK);
    for (size_t i = 0; i < SKT_N(builtin_policies); i++) {
        sk_class_policy p = sk_rules_class_policy(rs, builtin_policies[i].cls);
        if (!p.defined || p.suppress != builtin_policies[i].suppress ||
            p.suppress_s != builtin_policies[i].suppress_s || p.evidence_any)
            fail_msg("class %s: defined %d suppress %d for %llu s",
                     sk_class_name(builtin_policies[i].cls), p.defined, p.suppress,
                     (unsigned long long)p.suppress_s);
    }
    sk_rules_free(rs);
    /* A file's own define lines win; classes it leaves out keep the
     * built-in policy (files written before define lines). */
    const char *own = "define class=bad-mailbox suppress=2d evidence=any\n"
                      "define class=mailbox-full suppress=1h\n"
                      "class=bad-mailbox code=550\n";
    assert_int_equal(sk_rules_parse(own, strlen(own), "f.conf", &rs, NULL), SK_OK);
    assert_int_equal(sk_rules_count(rs), 1);
    sk_class_policy p = sk_rules_class_policy(rs, SK_CLASS_BAD_MAILBOX);
    assert_true(p.suppress && p.suppress_s == 2 * 86400 && p.evidence_any);
    p = sk_rules_class_policy(rs, SK_CLASS_MAILBOX_FULL);
    assert_true(p.suppress && p.suppress_s == 3600 && !p.evidence_any);
    p = sk_rules_class_policy(rs, SK_CLASS_MAILBOX_DISABLED);
    assert_true(p.suppress && p.suppress_s == 90 * 86400);
    p = sk_rules_class_policy(rs, SK_CLASS_THROTTLED);
    assert_true(p.defined && !p.suppress);
    sk_rules_free(rs);
    for (int c = 0; c < SK_CLASS__COUNT; c++)
        assert_int_equal(sk_class_is_temporary((sk_class)c),
                         c == SK_CLASS_THROTTLED || c == SK_CLASS_EXPIRED);
}

static void test_class_names(void **state)
{
    for (int c = 0; c < SK_CLASS__COUNT; c++)
        assert_int_equal(sk_class_parse(sk_class_name((sk_class)c)), c);
    assert_int_equal(sk_class_parse("Bad-Mailbox"), -1);
}

/* Every allocation failure while loading is reported, and nothing leaks. */
static void test_alloc_failures(void **state)
{
    for (long n = 0;; n++) {
        assert_true(n < 10000);
        sk_rules *rs;
        skt_alloc_fail_from(n);
        sk_err e = sk_rules_default(&rs, NULL);
        skt_alloc_end();
        if (e == SK_OK) {
            assert_int_equal(sk_rules_match(rs, 552, "5.2.2", "").cls, SK_CLASS_MAILBOX_FULL);
            sk_rules_free(rs);
            break;
        }
        assert_int_equal(e, SK_ERR_NOMEM);
        assert_null(rs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_rules),  cmocka_unit_test(test_default_matches_file),
        cmocka_unit_test(test_match),          cmocka_unit_test(test_actions),
        cmocka_unit_test(test_bad_rules),      cmocka_unit_test(test_hostile_regex),
        cmocka_unit_test(test_load_errors),    cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_alloc_failures), cmocka_unit_test(test_rules_count),
        cmocka_unit_test(test_class_policies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
