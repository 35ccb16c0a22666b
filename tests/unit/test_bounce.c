/* Unit tests for src/bounce: each detector on a minimal message of its
 * family (marks, recipient, status, reply, action), the recipient put back
 * to the envelope recipient, what is not a bounce, the classification of
 * outcomes into classes and suppressions, the helpers, and an
 * allocation-failure sweep. Whole real bounces are in tests/bounces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/bounce.h>
#include <smtpkit/dsn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One message per detector, with what it must find. */
static const struct {
    const char *name, *msg;
    const char *detector, *recipient, *reported, *status, *reply_has;
    int action;
} cases[] = {
    {"rfc3464",
     "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n--b\n"
     "Content-Type: text/plain\n\nfailed\n--b\nContent-Type: message/delivery-status\n\n"
     "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; a@example.com\n"
     "Original-Recipient: rfc822; orig@example.com\nAction: failed\nStatus: 5.1.1\n"
     "Diagnostic-Code: smtp; 550 5.1.1 no such user\n--b--\n",
     "rfc3464", "orig@example.com", "a@example.com", "5.1.1", "no such user", SK_DSN_FAILED},
    {"rfc3464 status comment",
     "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n--b\n"
     "Content-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\n"
     "Final-Recipient: rfc822; c@example.com\nAction: FAILURE\nStatus: 5.2.2 (over quota)\n--b--\n",
     "rfc3464", "c@example.com", "c@example.com", "5.2.2", "over quota", SK_DSN_FAILED},
    {"postfix",
     "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n\n"
     "This is the mail system at host mx.example.net.\n\n"
     "<b@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1 <b@example.com>:\n"
     "    Recipient address rejected (in reply to RCPT TO command)\n",
     "postfix", "b@example.com", "b@example.com", "5.1.1", "Recipient address rejected",
     SK_DSN_FAILED},
    {"postfix alias",
     "Subject: Undelivered Mail\n\nThis is the mail system at host mx.example.net.\n\n"
     "<user@local.example>: (expanded from <alias@example.org>): unknown user: \"user\"\n",
     "postfix", "alias@example.org", "user@local.example", NULL, "unknown user", SK_DSN_FAILED},
    {"exim",
     "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n\n"
     "This message was created automatically by mail delivery software.\n\n"
     "A message that you sent could not be delivered to one or more of its\nrecipients. "
     "This is a permanent error. The following address(es) failed:\n\n  d@example.com\n"
     "    Unrouteable address\n",
     "exim", "d@example.com", "d@example.com", NULL, "Unrouteable address", SK_DSN_FAILED},
    {"qmail",
     "Subject: failure notice\n\nHi. This is the qmail-send program at q.example.com.\n"
     "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
     "<e@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
     "--- Below this line is a copy of the message.\n\nTo: x@example.net\n",
     "qmail", "e@example.com", "e@example.com", "5.1.1", "no mailbox here", SK_DSN_FAILED},
    {"sendmail delay",
     "Subject: Warning: could not send message for past 4 hours\n\n"
     "    ----- The following addresses had transient non-fatal errors -----\n<f@example.com>\n\n"
     "    ----- Transcript of session follows -----\n<f@example.com>... Deferred: Connection "
     "timed out\n",
     "sendmail", "f@example.com", "f@example.com", NULL, NULL, SK_DSN_DELAYED},
    {"exchange",
     "Subject: Undeliverable: x\n\nDelivery has failed to these recipients or groups:\n\n"
     "g@example.com\nThe email address couldn't be found.\n\n"
     "Diagnostic information for administrators:\n\nGenerating server: ex.example.com\n\n"
     "g@example.com\nRemote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\n",
     "exchange", "g@example.com", "g@example.com", "5.1.1", "RecipNotFound", SK_DSN_FAILED},
    {"yahoo",
     "Subject: Failure Notice\n\nSorry, we were unable to deliver your message to the "
     "following address.\n\n<h@yahoo.example>:\nRemote host said: 554 delivery error: dd This "
     "user doesn't have a yahoo.example account\n",
     "yahoo", "h@yahoo.example", "h@yahoo.example", NULL, "doesn't have", SK_DSN_FAILED},
    {"groupwise",
     "Subject: undeliverable\n\nThe message that you sent was undeliverable to the following:\n"
     "\ti@gw.example (user not found)\n\nPossible causes:\n",
     "groupwise", "i@gw.example", "i@gw.example", NULL, "user not found", SK_DSN_FAILED},
    {"domino",
     "Subject: DELIVERY FAILURE\n\nYour message\n\n  Subject: x\n\nwas not delivered to:\n\n"
     "  j@notes.example\n\nbecause:\n\n  User j not listed in Domino Directory\n",
     "domino", "j@notes.example", "j@notes.example", NULL, "not listed", SK_DSN_FAILED},
    {"courier",
     "Subject: NOTICE\n\nThis is a delivery status notification from c.example,\nrunning the "
     "Courier mail server, version 1.1.\n\n<k@example.com>:\n<<< 550 5.1.1 unknown user\n",
     "courier", "k@example.com", "k@example.com", "5.1.1", "unknown user", SK_DSN_FAILED},
    {"gateway",
     "Subject: Delivery Problem\n\n--- The following addresses had delivery problems ---\n\n"
     "<l@example.com>   (Permanent error: 550 5.1.1 unknown)\n",
     "gateway", "l@example.com", "l@example.com", "5.1.1", "unknown", SK_DSN_FAILED},
    {"scan, Dutch",
     "Subject: Onbestelbaar: x\n\nUw bericht kon niet worden bezorgd aan:\n\nm@example.nl\n"
     "Reden: 550 mailbox onbekend\n",
     "scan", "m@example.nl", "m@example.nl", NULL, "550 mailbox onbekend", SK_DSN_FAILED},
    {"scan, X-Failed-Recipients",
     "Subject: Returned mail\nX-Failed-Recipients: n@example.com\n\nDelivery failed.\n", "scan",
     "n@example.com", "n@example.com", NULL, NULL, SK_DSN_FAILED},
    {"VERP",
     "To: bounces+01ABC=o=example.com@mta.example.org\nSubject: Returned mail\n\n"
     "This is the mail system at host mx.example.net.\n\n<o.fwd@example.net>: unknown user\n",
     "postfix", "o@example.com", "o.fwd@example.net", NULL, "unknown user", SK_DSN_FAILED},
    {"forwarded",
     "Subject: Fwd: bounce\nContent-Type: multipart/mixed; boundary=\"o\"\n\n--o\n"
     "Content-Type: text/plain\n\nsee below\n--o\nContent-Type: message/rfc822\n\n"
     "Subject: failure notice\n\nHi. This is the qmail-send program at q.example.com.\n\n"
     "<p@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n--o--\n",
     "qmail", "p@example.com", "p@example.com", "5.1.1", NULL, SK_DSN_FAILED},
    {"html only",
     "Subject: Undeliverable\nContent-Type: text/html\n\n<html><body><p>Delivery has failed to "
     "these recipients or groups:</p><p>q@example.com</p><p>The mailbox is disabled.</p>"
     "</body></html>\n",
     "exchange", "q@example.com", "q@example.com", NULL, "disabled", SK_DSN_FAILED},
    {"qmail layout, another greeting",
     "Subject: failure notice\n\nThis is the mail delivery agent at gw.example.net.\n"
     "I was not able to deliver your message to the following addresses.\n\n"
     "<s@example.com>:\n192.0.2.7 does not like recipient.\n"
     "Remote host said: 550 5.1.1 no such user\n\n--- Below this line is a copy of the message.\n"
     "\nTo: list@lists.example.org\n",
     "qmail", "s@example.com", "s@example.com", "5.1.1", "no such user", SK_DSN_FAILED},
    {"exchange 5.5, X.400",
     "Subject: Undeliverable: hi\n\nYour message\n\n  To:      list@lists.example.org\n\n"
     "did not reach the following recipient(s):\n\n"
     "c=US;a= ;p=ORG;o=Srv;dda:SMTP=t@example.com; on Fri, 4 Oct 2002 17:12:28 -0400\n"
     "    The recipient name is not recognized\n",
     "exchange", "t@example.com", "t@example.com", NULL, "not recognized", SK_DSN_FAILED},
    {"exim, undisclosed address",
     "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n\n"
     "This message was created automatically by mail delivery software.\n\n"
     "A message that you sent could not be delivered to one or more of its\nrecipients. "
     "This is a permanent error. The following address(es) failed:\n\n"
     "  an undisclosed address\n    (generated from u@example.com)\n",
     "exim", "u@example.com", "u@example.com", NULL, NULL, SK_DSN_FAILED},
    {"scan, labelled",
     "Subject: Undeliverable Mail\n\nUnknown user: v@example.net\n\n"
     "RCPT TO generated following response:\n553 5.3.0 <v@example.net>... Addressee unknown\n\n"
     "Original message follows.\n\nTo: w@example.org\n",
     "scan", "v@example.net", "v@example.net", "5.3.0", "Addressee unknown", SK_DSN_FAILED},
    {"scan, warning",
     "Subject: Mail Delivery Warning\n\nThis is an advisory-only email.\n\n"
     "Delivery of email to this address\n\n\"x@example.com\"\n\n"
     "has been postponed due to a full mailbox.\n",
     "scan", "x@example.com", "x@example.com", NULL, NULL, SK_DSN_DELAYED},
    {"scan, address in the sentence above the words",
     "Subject: Warning: message has not yet been delivered\n\nYour message to:\n"
     "\ty@example.com\nhas not yet been delivered because the server did not respond.\n",
     "scan", "y@example.com", "y@example.com", NULL, NULL, SK_DSN_DELAYED},
    {"list, held for moderation (Mailman)",
     "From: team-bounces@lists.example.org\nTo: alice@example.com\n"
     "Subject: Your message to Team awaits moderator approval\n\n"
     "Your mail to 'Team' with the subject\n\n    Plans\n\n"
     "Is being held until the list moderator can review it for approval.\n\n"
     "The reason it is being held:\n\n    Post by non-member to a members-only list\n\n"
     "Either the message will get posted to the list, or you will receive\n"
     "notification of the moderator's decision.\n",
     "list", "team@lists.example.org", "team@lists.example.org", NULL, "non-member",
     SK_DSN_DELAYED},
    {"list, refused by the moderator (Mailman)",
     "From: dev-owner@lists.example.org\nSubject: Request to mailing list dev rejected\n\n"
     "Your request to the dev mailing list\n\n    Posting of your message titled \"Hi\"\n\n"
     "has been rejected by the list moderator.  The moderator gave the\n"
     "following reason for rejecting your request:\n\n\"Off topic\"\n\n"
     "Any questions or comments should be directed to the list administrator\n",
     "list", "dev@lists.example.org", "dev@lists.example.org", NULL, "Off topic", SK_DSN_FAILED},
    {"sendmail warning, no address list",
     "From: Mail Delivery Subsystem <MAILER-DAEMON@mta.example.net>\n"
     "Subject: Warning: could not send message for past 4 hours\n\n"
     "    **      THIS IS A WARNING MESSAGE ONLY      **\n\n"
     "   ----- Transcript of session follows -----\n... while talking to mx.example.com.:\n"
     ">>> RCPT To:<z@example.com>\n<<< 451 4.3.0 try again later\n"
     "z@example.com... Deferred: 451 4.3.0 try again later\n"
     "Warning: message still undelivered after 4 hours\n",
     "sendmail", "z@example.com", "z@example.com", "4.3.0", "try again later", SK_DSN_DELAYED},
    {"sendmail, an alias's expansion",
     "From: Mail Delivery Subsystem <MAILER-DAEMON@mta.example.net>\n"
     "Subject: Returned mail: see transcript for details\n\n"
     "   ----- The following addresses had permanent fatal errors -----\n"
     "<bob@mx.example.com>\n    (reason: 550 5.1.1 <bob@mx.example.com>... User unknown)\n"
     "    (expanded from: <alias@example.org>)\n\n"
     "   ----- Transcript of session follows -----\n... while talking to mx.example.com.:\n"
     ">>> RCPT To:<bob@mx.example.com>\n<<< 550 5.1.1 <bob@mx.example.com>... User unknown\n",
     "sendmail", "alias@example.org", "bob@mx.example.com", "5.1.1", "User unknown", SK_DSN_FAILED},
    /* An expansion note that names no address: the recipient is the one
     * the bounce names, not an address further on in the reason. */
    {"postfix, expansion note without an address",
     "Subject: Undelivered Mail\n\nThis is the mail system at host mx.example.net.\n\n"
     "<user@local.example>: (expanded from a local alias): mailbox unavailable,\n"
     "    write to help@example.org\n",
     "postfix", "user@local.example", "user@local.example", NULL, "mailbox unavailable",
     SK_DSN_FAILED},
    /* A report without Diagnostic-Code (a failure of the reporting MTA
     * itself; Exim's layout): the reason under the address in the text. */
    {"rfc3464, reason only in the text",
     "From: Mail Delivery System <Mailer-Daemon@mta.example.net>\n"
     "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n--b\n"
     "Content-Type: text/plain\n\nThis message was created automatically by mail delivery "
     "software.\n\nA message that you sent could not be delivered to one or more of its\n"
     "recipients. This is a permanent error. The following address(es) failed:\n\n"
     "  quota@example.com\n    mailbox is full: retry timeout exceeded\n\n--b\n"
     "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mta.example.net\n\n"
     "Action: failed\nFinal-Recipient: rfc822;quota@example.com\nStatus: 5.0.0\n--b--\n",
     "rfc3464", "quota@example.com", "quota@example.com", "5.0.0", "mailbox is full",
     SK_DSN_FAILED},
    /* A list's own mail: never a bounce, even with a bounce inside. */
    {"list, ezmlm warning with the member's bounce",
     "From: team-help@lists.example.org\nTo: alice@example.com\n"
     "Subject: ezmlm warning\n\nHi! This is the ezmlm program. I'm managing the\n"
     "team@lists.example.org mailing list.\n\nMessages to you from the team mailing list seem\n"
     "to have been bouncing. A copy of the first bounce follows.\n\n"
     "Hi. This is the qmail-send program at mx.example.com.\n"
     "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
     "<alice@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
     NULL, NULL, NULL, NULL, NULL, 0},
    {"list, Mailman probe",
     "From: team-bounces@lists.example.org\nSubject: Team mailing list probe message\n\n"
     "This is a probe message.  You can ignore this message.\n\nThe team mailing list has "
     "received a number of bounces from you,\nindicating that there may be a problem "
     "delivering messages to\nalice@example.com.\n",
     NULL, NULL, NULL, NULL, NULL, 0},
    {"list, digest quoting a bounce",
     "From: team-request@lists.example.org\nSubject: Team Digest, Vol 3, Issue 7\n\n"
     "Today's Topics:\n\n   1. Undelivered Mail Returned to Sender\n\n"
     "This is the mail system at host mx.example.net.\n\n"
     "<carol@example.net>: host mx.example.net said: 550 5.1.1 unknown user\n",
     NULL, NULL, NULL, NULL, NULL, 0},
    /* Not bounces. */
    {"returned list headers only",
     "Subject: Mail Error\n\nYour mail cannot be delivered to the following address(es):\n"
     " dylan \"(0), mail box space not enough\"\n"
     "---- Header of the source mail attached ----\n"
     "List-Subscribe: <mailto:list-request@lists.example.org?subject=subscribe>\n",
     NULL, NULL, NULL, NULL, NULL, 0},
    {"plain mail", "Subject: hi\n\nWrite to r@example.com about lunch.\n", NULL, NULL, NULL, NULL,
     NULL, 0},
    {"failure words, no address", "Subject: Delivery failed\n\nSomething could not be delivered.\n",
     NULL, NULL, NULL, NULL, NULL, 0},
    /* The only address follows "from": the sender, not a recipient (the
     * recipient is a name without a domain). */
    {"failure words, only the sender's address",
     "Subject: Mail Delivery Problem\n\nYour mail to the following recipients could not be "
     "delivered because\nthey are not accepting mail from list@lists.example.org:\n\tcarl\n",
     NULL, NULL, NULL, NULL, NULL, 0},
    {"empty", "", NULL, NULL, NULL, NULL, NULL, 0},
};

static void check_str(size_t i, const char *what, const char *got, const char *want)
{
    if ((!got) != (!want) || (got && strcmp(got, want)))
        fail_msg("case %s %s: got \"%s\" want \"%s\"", cases[i].name, what, got ? got : "(null)",
                 want ? want : "(null)");
}

static void test_detectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_bounce *b = NULL;
        sk_error err;
        assert_int_equal(sk_bounce_read(cases[i].msg, strlen(cases[i].msg), &b, &err), SK_OK);
        check_str(i, "detector", b->detector, cases[i].detector);
        if (!cases[i].detector) {
            assert_int_equal(b->nrcpts, 0);
            sk_bounce_free(b);
            continue;
        }
        if (b->nrcpts != 1) fail_msg("case %s: %zu recipients", cases[i].name, b->nrcpts);
        const sk_bounce_rcpt *r = &b->rcpts[0];
        check_str(i, "recipient", r->recipient, cases[i].recipient);
        check_str(i, "reported", r->reported, cases[i].reported);
        if (cases[i].status) check_str(i, "status", r->status, cases[i].status);
        if (cases[i].reply_has && (!r->reply || !strstr(r->reply, cases[i].reply_has)))
            fail_msg("case %s: reply \"%s\"", cases[i].name, r->reply ? r->reply : "(null)");
        if (r->action != cases[i].action) fail_msg("case %s: action %d", cases[i].name, r->action);
        sk_bounce_free(b);
    }
}

/* The reply a status part does not give, taken from the human-readable
 * part: only from a line that starts with the block's own address and
 * holds a reply of its Status's class (OpenSMTPD's layout). */
#define TR_MIXED(text, blocks)                                                                     \
    "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n"           \
    "An error has occurred while attempting to deliver a message for\n"                            \
    "the following list of recipients:\n\n" text "\n--b\n"                                         \
    "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mta.example.net\n\n" blocks      \
    "--b--\n"
#define TR_BLOCK(addr, action, status)                                                             \
    "Final-Recipient: rfc822; " addr "\nAction: " action "\nStatus: " status "\n\n"
static const struct {
    const char *name, *msg;
    const char *reply[2]; /* of the first and second recipient; NULL: none */
} text_replies[] = {
    {"the reply of the line naming the recipient",
     TR_MIXED("a@example.com: 550 5.1.1 <a@example.com>: User unknown\n",
              TR_BLOCK("a@example.com", "failed", "5.0.0")),
     {"550 5.1.1 <a@example.com>: User unknown", NULL}},
    {"two recipients, lines in another order",
     TR_MIXED("b@example.com: 552 5.2.2 Mailbox full\na@example.com: 550 5.1.1 unknown\n",
              TR_BLOCK("a@example.com", "failed", "5.0.0")
                  TR_BLOCK("b@example.com", "failed", "5.0.0")),
     {"550 5.1.1 unknown", "552 5.2.2 Mailbox full"}},
    {"a reply of another class than the Status is not taken",
     TR_MIXED("a@example.com: 451 4.3.0 try again later\n",
              TR_BLOCK("a@example.com", "failed", "5.0.0")),
     {NULL, NULL}},
    {"a line about another address is not taken",
     TR_MIXED("b@example.com: 550 5.1.1 unknown\n", TR_BLOCK("a@example.com", "failed", "5.0.0")),
     {NULL, NULL}},
    {"an address quoted after the start of the line is not taken",
     TR_MIXED("Note: a@example.com: 550 5.1.1 unknown\n",
              TR_BLOCK("a@example.com", "failed", "5.0.0")),
     {NULL, NULL}},
    {"a delay notice's reply",
     TR_MIXED("a@example.com: 451 4.3.0 try again later\n",
              TR_BLOCK("a@example.com", "delayed", "4.0.0")),
     {"451 4.3.0 try again later", NULL}},
    {"a Diagnostic-Code stays",
     TR_MIXED("a@example.com: 550 5.1.1 unknown\n",
              "Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.2.2\n"
              "Diagnostic-Code: smtp; 552 5.2.2 over quota\n\n"),
     {"552 5.2.2 over quota", NULL}},
};

static void test_text_replies(void **state)
{
    (void)state;
    for (size_t i = 0; i < SKT_N(text_replies); i++) {
        const char *msg = text_replies[i].msg;
        sk_bounce *b = NULL;
        sk_error err;
        assert_int_equal(sk_bounce_read(msg, strlen(msg), &b, &err), SK_OK);
        if (!b->detector || strcmp(b->detector, "rfc3464") != 0)
            fail_msg("%s: detector %s", text_replies[i].name, b->detector ? b->detector : "none");
        size_t want = text_replies[i].reply[1] ? 2 : 1;
        if (b->nrcpts != want) fail_msg("%s: %zu recipients", text_replies[i].name, b->nrcpts);
        for (size_t k = 0; k < want; k++) {
            const char *got = b->rcpts[k].reply, *w = text_replies[i].reply[k];
            if ((!got) != (!w) || (got && strcmp(got, w) != 0))
                fail_msg("%s: recipient %zu reply \"%s\"", text_replies[i].name, k,
                         got ? got : "(null)");
        }
        sk_bounce_free(b);
    }
}

/* Bounces naming several recipients: each one read with its own reason,
 * nothing else taken. Written from each family's layout. */
static const struct {
    const char *name, *msg, *detector;
    size_t n;
    struct {
        const char *recipient, *reported, *reply_has;
    } r[3];
} several[] = {
    /* EarthLink's notice (flufl.bounce's simple_14 is one of them): a
     * paragraph per address, the reply indented under it, the copy after
     * "A copy of the original message below this line:". */
    {"earthlink, one paragraph per address",
     "From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\n"
     "Sorry, unable to deliver your message to ann@example.com for\nthe following reason:\n\n"
     " 552 Quota violation for ann@example.com\n\n"
     "Sorry, unable to deliver your message to ben@example.com for\nthe following reason:\n\n"
     " 550 No such user ben@example.com\n\n"
     "A copy of the original message below this line:\n\nTo: list@lists.example.org\n",
     "scan",
     2,
     {{"ann@example.com", "ann@example.com", "552 Quota violation"},
      {"ben@example.com", "ben@example.com", "550 No such user"}}},
    /* qmail-send's layout in another language: only its Received field
     * ("invoked for bounce"), its "<addr>:" lines and its "--- "
     * separator are qmail's. */
    {"qmail, translated text",
     "Received: (qmail 4242 invoked for bounce); 3 Apr 2002 15:55:44 -0000\n"
     "From: MAILER-DAEMON@mx.example.cn\nSubject: =?utf-8?B?6YKu5Lu25Lyg6L6T5aSx6LSl?=\n\n"
     "mx.example.cn.\nIhre Nachricht konnte nicht zugestellt werden.\n\n"
     "<cho@example.cn>:\n550 5.1.1 mailbox unavailable\n\n<dai@example.cn>:\n"
     "552 5.2.2 over quota\n\n--- Eine Kopie der Nachricht ist angehängt.\n\n"
     "<eve@example.org>:\n",
     "qmail",
     2,
     {{"cho@example.cn", "cho@example.cn", "mailbox unavailable"},
      {"dai@example.cn", "dai@example.cn", "over quota"}}},
    /* Sendmail: an address list with an alias's expansion under one. */
    {"sendmail, one address expanded",
     "From: Mail Delivery Subsystem <MAILER-DAEMON@mta.example.net>\n"
     "Subject: Returned mail: see transcript for details\n\n"
     "   ----- The following addresses had permanent fatal errors -----\n"
     "<fay@example.net>\n    (reason: 550 5.1.1 User unknown)\n"
     "gus@mx.example.com\n    (reason: 550 5.1.1 User unknown)\n"
     "    (expanded from: gus@example.org)\n\n"
     "   ----- Transcript of session follows -----\n"
     "550 5.1.1 <fay@example.net>... User unknown\n"
     "550 5.1.1 <gus@mx.example.com>... User unknown\n",
     "sendmail",
     2,
     {{"fay@example.net", "fay@example.net", "<fay@example.net>... User unknown"},
      {"gus@example.org", "gus@mx.example.com", "<gus@mx.example.com>... User unknown"}}},
};

static void test_several(void **state)
{
    (void)state;
    for (size_t i = 0; i < SKT_N(several); i++) {
        sk_bounce *b = NULL;
        sk_error err;
        assert_int_equal(sk_bounce_read(several[i].msg, strlen(several[i].msg), &b, &err), SK_OK);
        if (!b->detector || strcmp(b->detector, several[i].detector) || b->nrcpts != several[i].n)
            fail_msg("case %s: detector %s, %zu recipients", several[i].name,
                     b->detector ? b->detector : "(null)", b->nrcpts);
        for (size_t k = 0; k < several[i].n; k++) {
            const sk_bounce_rcpt *r = &b->rcpts[k];
            if (!r->recipient || strcmp(r->recipient, several[i].r[k].recipient) || !r->reported ||
                strcmp(r->reported, several[i].r[k].reported) || !r->reply ||
                !strstr(r->reply, several[i].r[k].reply_has) || r->action != SK_DSN_FAILED)
                fail_msg("case %s, recipient %zu: %s (reported %s) reply \"%s\" action %d",
                         several[i].name, k, r->recipient ? r->recipient : "(null)",
                         r->reported ? r->reported : "(null)", r->reply ? r->reply : "(null)",
                         r->action);
        }
        sk_bounce_free(b);
    }
}

/* The returned message's headers: its Message-ID is the result's
 * original_message_id, its single To the recipient when the bounce names
 * none, unless that To is the returned message's sender or a mailing
 * list's own address (the list handed the post on to a member: the member
 * failed, not the list). */
#define RET_TEXT                                                                                   \
    "Subject: Mail could not be delivered\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n" \
    "Content-Type: text/plain\n\nThe following mail could not be delivered.\n"                     \
    "Reason: Exceeded Maximum Delivery Attempts.\n\n--b\nContent-Type: message/rfc822\n\n"
#define RET_POST                                                                                   \
    "Message-ID: <post@lists.example.org>\nFrom: ann@example.com\nTo: dev@lists.example.org\n"
static const struct {
    const char *name, *msg;
    const char *detector, *recipient, *message_id; /* detector NULL: no result */
} returned[] = {
    {"message/rfc822",
     RET_TEXT "Message-ID: <m1@origin.example>\nFrom: me@origin.example\nTo: bob@example.com\n"
              "Subject: hi\n\nhello\n--b--\n",
     "scan", "bob@example.com", "<m1@origin.example>"},
    {"message/rfc822, CRLF line ends",
     "Subject: Mail could not be delivered\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"
     "\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe following mail could not be delivered.\r\n"
     "\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <m2@origin.example>\r\n"
     "From: me@origin.example\r\nTo: <bob@example.com>\r\n\r\nhello\r\n--b--\r\n",
     "scan", "bob@example.com", "<m2@origin.example>"},
    {"text/rfc822-headers in a report",
     "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n--b\n"
     "Content-Type: text/plain\n\nfailed\n--b\nContent-Type: message/delivery-status\n\n"
     "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; cy@example.com\n"
     "Action: failed\nStatus: 5.1.1\n\n--b\nContent-Type: text/rfc822-headers\n\n"
     "Message-ID: <m3@origin.example>\nFrom: me@origin.example\nTo: cy@example.com\n--b--\n",
     "rfc3464", "cy@example.com", "<m3@origin.example>"},
    {"base64 message/rfc822",
     "Subject: Mail could not be delivered\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
     "Content-Type: text/plain\n\nThe following mail could not be delivered.\n\n--b\n"
     "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
     /* "Message-ID: <m4@origin.example>\nTo: dee@example.com\n\nhi\n" */
     "TWVzc2FnZS1JRDogPG00QG9yaWdpbi5leGFtcGxlPgpUbzogZGVlQGV4YW1wbGUuY29tCgpoaQo=\n--b--\n",
     "scan", "dee@example.com", "<m4@origin.example>"},
    /* Its own sender stays a recipient when it was sent to itself. */
    {"sent to its own sender",
     RET_TEXT "Message-ID: <m5@origin.example>\nFrom: eve@example.com\nTo: eve@example.com\n\n"
              "test\n--b--\n",
     "scan", "eve@example.com", "<m5@origin.example>"},
    {"sent by its To",
     RET_TEXT "Message-ID: <m6@origin.example>\nFrom: eve@example.com\nSender: fay@example.com\n"
              "To: fay@example.com\n\ntest\n--b--\n",
     "scan", "fay@example.com", "<m6@origin.example>"},
    {"several To: none taken",
     RET_TEXT "Message-ID: <m7@origin.example>\nTo: a@example.com, b@example.com\n\nx\n--b--\n",
     NULL, NULL, NULL},
    /* A list's post returned: its To is the list. */
    {"list post, List-Post",
     RET_TEXT RET_POST "List-Post: <mailto:dev@lists.example.org>\n\nx\n--b--\n", NULL, NULL, NULL},
    {"list post, List-Id",
     RET_TEXT RET_POST "List-Id: Developers <dev.lists.example.org>\n\nx\n--b--\n", NULL, NULL,
     NULL},
    {"list post, X-BeenThere", RET_TEXT RET_POST "X-BeenThere: dev@lists.example.org\n\nx\n--b--\n",
     NULL, NULL, NULL},
    {"list post, sent by the list's bounce address",
     RET_TEXT RET_POST "Sender: dev-bounces@lists.example.org\n\nx\n--b--\n", NULL, NULL, NULL},
    {"list post, the bounce sent to the list's admin address",
     "To: dev-admin@lists.example.org\n" RET_TEXT RET_POST "\nx\n--b--\n", NULL, NULL, NULL},
    {"list post, To someone else, the list in Cc",
     RET_TEXT "Message-ID: <m9@origin.example>\nFrom: ann@example.com\nTo: hal@example.com\n"
              "Cc: dev@lists.example.org\nList-Post: <mailto:dev@lists.example.org>\n\nx\n--b--\n",
     NULL, NULL, NULL},
    /* A sender's own list headers: the To is still the subscriber. */
    {"newsletter, List-Unsubscribe and List-Id",
     RET_TEXT "Message-ID: <n1@news.example>\nFrom: news@news.example\nTo: kim@example.com\n"
              "List-Unsubscribe: <mailto:unsubscribe+k1@news.example>\n"
              "List-Id: News <news.news.example>\n\nx\n--b--\n",
     "scan", "kim@example.com", "<n1@news.example>"},
    {"list post, list headers on the bounce only",
     "List-Post: <mailto:dev@lists.example.org>\n" RET_TEXT RET_POST "\nx\n--b--\n", NULL, NULL,
     NULL},
    /* The list's request address in the text is no recipient either. */
    {"list post, the list's request address named",
     "Subject: Mail could not be delivered\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
     "Content-Type: text/plain\n\nThe following mail could not be delivered:\n"
     "dev-request@lists.example.org\n\n--b\nContent-Type: message/rfc822\n\n" RET_POST
     "List-Help: <mailto:dev-request@lists.example.org?subject=help>\n\nx\n--b--\n",
     NULL, NULL, NULL},
    /* A member's address the bounce names is read as before. */
    {"list post, the member named",
     "Subject: Mail could not be delivered\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
     "Content-Type: text/plain\n\nThe following mail could not be delivered:\n"
     "gus@example.net\n\n--b\nContent-Type: message/rfc822\n\n" RET_POST
     "List-Post: <mailto:dev@lists.example.org>\n\nx\n--b--\n",
     "scan", "gus@example.net", "<post@lists.example.org>"},
    /* A copy quoted in the text after the line that starts it: its header
     * block is the returned message's, unless a part gave one. */
    {"quoted copy after qmail's mark",
     "Subject: failure notice\n\nHi. This is the qmail-send program at q.example.com.\n"
     "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
     "<e@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
     "--- Below this line is a copy of the message.\n\nReturn-Path: <me@origin.example>\n"
     "Message-ID: <q1@origin.example>\nTo: e@example.com\n\nhello\n",
     "qmail", "e@example.com", "<q1@origin.example>"},
    {"quoted copy, its To the recipient",
     "Subject: Undeliverable\n\nYour message could not be delivered.\n\n"
     "Original message follows.\n\nMessage-ID: <q2@origin.example>\nTo: ivy@example.com\n\nhi\n",
     "scan", "ivy@example.com", "<q2@origin.example>"},
    {"quoted copy, indented: no header block",
     "Subject: failure notice\n\nHi. This is the qmail-send program at q.example.com.\n\n"
     "<e@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
     "--- Below this line is a copy of the message.\n\n   Message-ID: <q3@origin.example>\n",
     "qmail", "e@example.com", NULL},
    {"quoted copy and a returned part: the part's",
     "Subject: Mail could not be delivered\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
     "Content-Type: text/plain\n\nThe following mail could not be delivered:\n"
     "jo@example.com\n\nOriginal message follows.\n\nMessage-ID: <q4@origin.example>\n\n--b\n"
     "Content-Type: message/rfc822\n\nMessage-ID: <q5@origin.example>\n\nx\n--b--\n",
     "scan", "jo@example.com", "<q5@origin.example>"},
    /* The list's notice about a post to it names the list, from the
     * returned message's To. */
    {"list notice, the post returned",
     "From: team-bounces@lists.example.org\nSubject: Your message to Team awaits moderator "
     "approval\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n"
     "Your mail to 'team' with the subject\n\n    Plans\n\n"
     "Is being held until the list moderator can review it for approval.\n\n--b\n"
     "Content-Type: message/rfc822\n\nMessage-ID: <m8@origin.example>\nFrom: ann@example.com\n"
     "To: Team <team@lists.example.org>\n\nx\n--b--\n",
     "list", "team@lists.example.org", "<m8@origin.example>"},
};

static void test_returned(void **state)
{
    (void)state;
    for (size_t i = 0; i < SKT_N(returned); i++) {
        sk_bounce *b = NULL;
        sk_error err;
        const char *msg = returned[i].msg;
        assert_int_equal(sk_bounce_read(msg, strlen(msg), &b, &err), SK_OK);
        const char *rcpt = b->nrcpts ? b->rcpts[0].recipient : NULL;
        if ((!b->detector) != (!returned[i].detector) ||
            (b->detector && strcmp(b->detector, returned[i].detector)) ||
            b->nrcpts != (returned[i].detector ? 1u : 0u) || (!rcpt) != (!returned[i].recipient) ||
            (rcpt && strcmp(rcpt, returned[i].recipient)))
            fail_msg("%s: detector %s, %zu recipients, first %s", returned[i].name,
                     b->detector ? b->detector : "(null)", b->nrcpts, rcpt ? rcpt : "(null)");
        const char *mid = b->original_message_id;
        if ((!mid) != (!returned[i].message_id) || (mid && strcmp(mid, returned[i].message_id)))
            fail_msg("%s: original_message_id %s", returned[i].name, mid ? mid : "(null)");
        sk_bounce_free(b);
    }
}

/* The detectors' names, in their order, end with the scanner. */
static void test_detector_list(void **state)
{
    (void)state;
    const char *const *n = sk_bounce_detectors();
    size_t k = 0;
    while (n[k]) k++;
    assert_true(k >= 13);
    assert_string_equal(n[0], "rfc3464");
    assert_string_equal(n[1], "list");
    assert_string_equal(n[k - 1], "scan");
}

/* Outcomes into classes: the reply decides through the rules; delays and
 * temporary failures never suppress. */
static const struct {
    int action;
    const char *status, *reply;
    sk_class cls;
    int permanent, suppress;
} verdicts[] = {
    {SK_DSN_FAILED, "5.1.1", "550 5.1.1 no such user", SK_CLASS_BAD_MAILBOX, 1, 1},
    {SK_DSN_FAILED, "5.1.1", NULL, SK_CLASS_BAD_MAILBOX, 1, 1},
    {SK_DSN_FAILED, NULL, "550 Benutzer unbekannt", SK_CLASS_BAD_MAILBOX, 1, 1},
    {SK_DSN_FAILED, "5.2.1",
     "550-5.2.1 The email account that you tried to reach is receiving "
     "mail at a rate that prevents additional messages",
     SK_CLASS_THROTTLED, 1, 0},
    {SK_DSN_FAILED, "5.2.2", "552 5.2.2 mailbox full", SK_CLASS_MAILBOX_FULL, 1, 0},
    /* Real MTAs' full mailboxes, whatever else their words say: Exim's
     * own quota failure (5.0.0, test_bounce_exim), Postfix local(8) at
     * its mailbox_size_limit (the file size error, 5.2.2 in its report,
     * no status in its text; test_bounce_postfix), an X.2.2 that
     * names a size, Sendmail's and Dovecot's texts. Given up after a
     * temporary one: expired. */
    {SK_DSN_FAILED, "5.0.0", "mailbox is full: retry timeout exceeded", SK_CLASS_MAILBOX_FULL, 1,
     0},
    {SK_DSN_FAILED, "5.2.2",
     "cannot update mailbox /var/mail/bob for user bob. error writing message: File too large",
     SK_CLASS_MAILBOX_FULL, 1, 0},
    {SK_DSN_FAILED, NULL,
     "cannot update mailbox /var/mail/bob for user bob. error writing message: File too large",
     SK_CLASS_MAILBOX_FULL, 1, 0},
    {SK_DSN_FAILED, "5.2.2", "552 5.2.2 Mailbox size limit exceeded", SK_CLASS_MAILBOX_FULL, 1, 0},
    {SK_DSN_FAILED, NULL, "552 5.2.2 <bob@example.com>... Mailbox full", SK_CLASS_MAILBOX_FULL, 1,
     0},
    {SK_DSN_FAILED, NULL, "552 5.2.2 <bob@example.com> Quota exceeded (mailbox for user is full)",
     SK_CLASS_MAILBOX_FULL, 1, 0},
    {SK_DSN_FAILED, "4.2.2", "452 4.2.2 mailbox is full: retry timeout exceeded", SK_CLASS_EXPIRED,
     0, 0},
    {SK_DSN_FAILED, "4.4.7", NULL, SK_CLASS_EXPIRED, 0, 0},
    /* A failure whose last reply was temporary: given up, not bad. */
    {SK_DSN_FAILED, "4.1.1", "450 4.1.1 mailbox unknown, try later", SK_CLASS_EXPIRED, 0, 0},
    {SK_DSN_DELAYED, "4.4.1", "connection timed out", SK_CLASS_OTHER, 0, 0},
    {SK_DSN_DELAYED, "5.1.1", "550 5.1.1 unknown", SK_CLASS_BAD_MAILBOX, 0, 0},
    {SK_DSN_DELIVERED, "2.0.0", NULL, SK_CLASS_OTHER, 0, 0},
    {SK_DSN_FAILED, "5.7.1", "554 5.7.1 blocked using zen.spamhaus.org", SK_CLASS_BLOCKED, 1, 0},
    {SK_DSN_FAILED, NULL, "something odd happened", SK_CLASS_UNDETERMINED, 1, 0},
    /* A list moderator's refusal: policy, the list's address is fine. */
    {SK_DSN_FAILED, NULL, "rejected by the list moderator: Off topic", SK_CLASS_POLICY, 1, 0},
    {-1, "5.1.2", NULL, SK_CLASS_DOMAIN_NOT_FOUND, 1, 1},
};

static void test_classify(void **state)
{
    (void)state;
    sk_rules *rules;
    assert_int_equal(sk_rules_default(&rules, NULL), SK_OK);
    for (size_t i = 0; i < SKT_N(verdicts); i++) {
        sk_bounce_rcpt r = {.action = verdicts[i].action,
                            .status = (char *)verdicts[i].status,
                            .reply = (char *)verdicts[i].reply};
        sk_bounce_verdict v = sk_bounce_classify(&r, rules);
        if (v.cls != verdicts[i].cls || v.permanent != verdicts[i].permanent ||
            v.suppress != verdicts[i].suppress)
            fail_msg("verdict %zu: %s permanent %d suppress %d", i, sk_class_name(v.cls),
                     v.permanent, v.suppress);
        if (v.suppress && !v.suppress_s) fail_msg("verdict %zu: no duration", i);
    }
    sk_rules_free(rules);
}

static void test_helpers(void **state)
{
    (void)state;
    static const struct {
        const char *host, *domain;
        int in;
    } hosts[] = {
        {"mx.example.com", "example.com", 1},
        {"MX1.Example.COM[192.0.2.1]:25", "example.com", 1},
        {"example.com", "example.com", 1},
        {"mx.example.com.", "example.com", 1},
        {"badexample.com", "example.com", 0},
        {"gmail-smtp-in.l.google.com", "gmail.com", 0},
        {"", "example.com", 0},
        {NULL, "example.com", 0},
    };
    for (size_t i = 0; i < SKT_N(hosts); i++)
        if (sk_bounce_host_in_domain(hosts[i].host, hosts[i].domain) != hosts[i].in)
            fail_msg("host %zu", i);
    static const struct {
        const char *s;
        int code;
        const char *enhanced, *text;
    } replies[] = {
        {"550 5.1.1 no such user", 550, "5.1.1", "no such user"},
        {"550-5.2.1 rate", 550, "5.2.1", "rate"},
        {"554 delivery error", 554, "", "delivery error"},
        {"5.1.1 (no code)", 0, "5.1.1", "(no code)"},
        {"no code at all", 0, "", "no code at all"},
    };
    for (size_t i = 0; i < SKT_N(replies); i++) {
        int code;
        char enh[16];
        const char *text;
        sk_bounce_split_reply(replies[i].s, &code, enh, sizeof enh, &text);
        if (code != replies[i].code || strcmp(enh, replies[i].enhanced) ||
            strcmp(text, replies[i].text))
            fail_msg("reply %zu: %d '%s' '%s'", i, code, enh, text);
    }
}

/* Every allocation failure is reported, and nothing leaks. */
static void test_alloc_failures(void **state)
{
    (void)state;
    static const char *const picks[] = {"rfc3464",
                                        "postfix",
                                        "exim",
                                        "VERP",
                                        "html only",
                                        "rfc3464, reason only in the text",
                                        "sendmail, an alias's expansion"};
    for (size_t k = 0; k < SKT_N(picks); k++) {
        size_t c = 0;
        while (c < SKT_N(cases) && strcmp(cases[c].name, picks[k]) != 0) c++;
        assert_true(c < SKT_N(cases));
        const char *msg = cases[c].msg;
        for (long n = 0;; n++) {
            assert_true(n < 100000);
            sk_bounce *b = NULL;
            sk_error err;
            skt_alloc_fail_from(n);
            sk_err e = sk_bounce_read(msg, strlen(msg), &b, &err);
            skt_alloc_end();
            if (e == SK_OK) {
                assert_string_equal(b->detector, cases[c].detector);
                sk_bounce_free(b);
                break;
            }
            assert_int_equal(e, SK_ERR_NOMEM);
            assert_null(b);
        }
    }
    /* The returned message's headers and a list's addresses. */
    static const char *const returned_picks[] = {"message/rfc822", "list post, List-Post",
                                                 "quoted copy after qmail's mark"};
    for (size_t k = 0; k < SKT_N(returned_picks); k++) {
        size_t c = 0;
        while (c < SKT_N(returned) && strcmp(returned[c].name, returned_picks[k]) != 0) c++;
        assert_true(c < SKT_N(returned));
        const char *msg = returned[c].msg;
        for (long n = 0;; n++) {
            assert_true(n < 100000);
            sk_bounce *b = NULL;
            sk_error err;
            skt_alloc_fail_from(n);
            sk_err e = sk_bounce_read(msg, strlen(msg), &b, &err);
            skt_alloc_end();
            if (e == SK_OK) {
                if ((!b->detector) != (!returned[c].detector)) fail_msg("%s", returned[c].name);
                sk_bounce_free(b);
                break;
            }
            assert_int_equal(e, SK_ERR_NOMEM);
            assert_null(b);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detectors),     cmocka_unit_test(test_several),
        cmocka_unit_test(test_detector_list), cmocka_unit_test(test_classify),
        cmocka_unit_test(test_helpers),       cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_text_replies),  cmocka_unit_test(test_returned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
