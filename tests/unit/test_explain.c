/* Unit tests for the reply explanation table (src/proto/explain.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/smtpkit.h>
#include <string.h>

/* Each case: a reply, and a phrase its explanation must contain (NULL: no
 * explanation). The phrases are what tells one cause from another. */
static const struct {
    int code;
    const char *enhanced, *text, *expect;
} explain_cases[] = {
    /* By enhanced status. */
    {550, "5.1.1", "<nobody@example.org>: Recipient address rejected", "does not exist"},
    {550, "5.1.1", "User unknown in relay recipient table", "does not exist"},
    {450, "4.1.1", "Recipient address verification pending", "cannot check"},
    {550, "5.1.2", "Host unknown", "domain does not exist"},
    {556, "5.1.10", "Recipient address has null MX", "null MX"},
    {552, "5.2.2", "Sorry", "mailbox is full"},
    {452, "4.2.2", "Sorry", "over quota for now"},
    {552, "5.3.4", "Message size exceeds fixed limit", "larger than the server accepts"},
    {550, "5.4.1", "No answer", "no answer"},
    {554, "5.4.4", "Unable to route", "cannot route"},
    {451, "4.4.7", "Expired", "expired"},
    {421, "4.4.2", "Connection dropped", "broke off"},
    {451, "4.4.3", "Temporary lookup failure", "lookup on the server's side"},
    {451, "4.4.5", "Server busy", "congested"},
    {421, "4.3.2", "System not accepting network messages", "not accepting mail now"},
    {501, "5.5.2", "Syntax: MAIL FROM:<address>", "syntax error"},
    {503, "5.5.1", "Error: need RCPT command", "command order"},
    {452, "4.5.3", "Error: too many recipients", "smaller batches"},
    {550, "5.7.1", "Message rejected", "relaying denied"},
    {450, "4.7.1", "Try again", "temporarily refused"},
    {0, "4.7.0", "Come back later", "greylisting or rate limiting"},
    {403, "4.7.0", "Come back later", "greylisting or rate limiting"},
    {550, "5.7.0", "Not allowed", "refused by policy"},
    /* A status of detail 0 says less than a known code. */
    {530, "5.7.0", "Authentication required", "requires authentication"},
    {454, "4.7.0", "TLS not available due to local problem", "temporarily unavailable"},
    {500, "5.5.0", "Command unrecognized", "SMTP server"},
    {535, "5.7.8", "Error: authentication failed", "username or password"},
    {534, "5.7.9", "Please log in with your web browser", "too weak"},
    {538, "5.7.11", "Encryption needed for this mechanism", "encrypted connection"},
    {550, "5.7.23", "SPF check failed", "SPF failed"},
    {550, "5.7.24", "SPF error", "SPF check errored"},
    {550, "5.7.25", "No PTR", "reverse DNS"},
    {550, "5.7.26", "Unauthenticated email is not accepted", "DMARC"},
    /* By code alone. */
    {421, "", "Service not available, closing transmission channel", "closing"},
    {450, "", "Mailbox busy", "retry in a few minutes"},
    {451, "", "Local error in processing", "local error"},
    {452, "", "Insufficient system storage", "too many recipients"},
    {454, "", "TLS not available due to temporary reason", "temporarily unavailable"},
    {500, "", "Command unrecognized", "SMTP server"},
    {501, "", "Bad argument", "arguments"},
    {502, "", "Command not implemented", "does not implement"},
    {503, "", "Bad sequence", "skipped"},
    {504, "", "Unrecognized authentication type", "EHLO reply lists"},
    {530, "", "Authentication required", "requires authentication"},
    {534, "", "Mechanism too weak", "too weak"},
    {535, "", "Authentication credentials invalid", "username or password"},
    {538, "", "Encryption needed", "encrypted connection"},
    {550, "", "Requested action not taken", "mailbox is unavailable"},
    {551, "", "User not local", "not local"},
    {552, "", "Exceeded storage allocation", "size limit"},
    {553, "", "Mailbox name not allowed", "not allowed"},
    {554, "", "Transaction failed", "transaction failed"},
    /* Text patterns win over codes and statuses. */
    {450, "4.2.0", "Recipient address rejected: Greylisted, see http://x/", "greylisting"},
    {451, "", "Greylisting in action, please come back later", "greylisting"},
    {554, "5.7.1", "Service unavailable; Client host blocked using zen.spamhaus.org", "blocklist"},
    {554, "", "Message blocked by content filter", "blocked this sender"},
    {554, "5.7.1", "<x@example.net>: Relay access denied", "will not relay"},
    {530, "5.7.0", "Must issue a STARTTLS command first", "requires TLS first"},
    {552, "5.2.2", "Quota exceeded (mailbox for user is full)", "mailbox is full"},
    {452, "4.2.2", "Mailbox is full, try later", "over quota for now"},
    {421, "4.7.0", "Rate limit exceeded, slow down", "rate-limiting"},
    /* A status whose class contradicts the code is ignored. */
    {550, "4.2.2", "Sorry", "mailbox is unavailable"},
    /* Without a code, the status's class decides. */
    {0, "5.1.1", "", "does not exist"},
    /* Unknown codes still get their class's meaning. */
    {459, "", "Odd", "temporary failure"},
    {599, "5.9.9", "Odd", "permanent failure"},
    /* Successes and intermediate replies need no explanation. */
    {250, "2.1.5", "Ok", NULL},
    {354, "", "End data with <CR><LF>.<CR><LF>", NULL},
    {0, "", "", NULL},
    {0, NULL, NULL, NULL},
};

static void test_explain_table(void **state)
{
    for (size_t i = 0; i < SKT_N(explain_cases); i++) {
        const char *got = sk_reply_explain(explain_cases[i].code, explain_cases[i].enhanced,
                                           explain_cases[i].text);
        if (!explain_cases[i].expect) {
            if (got) fail_msg("case %zu: unexpected explanation '%s'", i, got);
            continue;
        }
        if (!got)
            fail_msg("case %zu (%d %s): no explanation", i, explain_cases[i].code,
                     explain_cases[i].enhanced);
        if (!strstr(got, explain_cases[i].expect))
            fail_msg("case %zu (%d %s %s): '%s' lacks '%s'", i, explain_cases[i].code,
                     explain_cases[i].enhanced, explain_cases[i].text, got,
                     explain_cases[i].expect);
        /* One line for people: no line breaks. */
        assert_null(strchr(got, '\n'));
    }
}

static const struct {
    const char *status, *name;
} describe_cases[] = {
    {"5.1.1", "bad destination mailbox address"},
    {"4.1.1", "bad destination mailbox address"},
    {"5.1.10", "recipient address has null MX"},
    {"5.2.2", "mailbox full"},
    {"4.4.7", "delivery time expired"},
    {"5.7.8", "authentication credentials invalid"},
    {"5.7.9", "authentication mechanism is too weak"},
    {"5.7.11", "encryption required for requested authentication mechanism"},
    {"5.7.26", "multiple authentication checks failed"},
    {"2.0.0", "other undefined status"},
    {"5.9.9", NULL},  /* no such subject */
    {"5.1.99", NULL}, /* no such detail */
    {"5.01.1", NULL}, /* leading zero: not RFC 3463 syntax */
    {"3.1.1", NULL},  /* no class 3 */
    {"5.1", NULL},
    {"", NULL},
    {NULL, NULL},
};

static void test_describe_table(void **state)
{
    for (size_t i = 0; i < SKT_N(describe_cases); i++) {
        const char *got = sk_enhanced_describe(describe_cases[i].status);
        if (!describe_cases[i].name) {
            if (got) fail_msg("case %zu (%s): unexpected '%s'", i, describe_cases[i].status, got);
            continue;
        }
        if (!got) fail_msg("case %zu (%s): no description", i, describe_cases[i].status);
        assert_string_equal(got, describe_cases[i].name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explain_table),
        cmocka_unit_test(test_describe_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
