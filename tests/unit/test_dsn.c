/* Unit tests for src/deliver/dsn.c: when DSNs are due, building them (and
 * checking them with Python's email package), and parsing reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sktest.h"

#include <smtpkit/dsn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_wanted(void **state)
{
    static const struct {
        const char *sender;
        unsigned notify;
        sk_dsn_action action;
        int want;
    } cases[] = {
        {"a@example.org", 0, SK_DSN_FAILED, 1},
        {"a@example.org", 0, SK_DSN_DELAYED, 0},
        {"a@example.org", 0, SK_DSN_DELIVERED, 0},
        {"", 0, SK_DSN_FAILED, 0}, /* never to the null sender */
        {NULL, SK_DSN_NOTIFY_FAILURE, SK_DSN_FAILED, 0},
        {"", SK_DSN_NOTIFY_SUCCESS, SK_DSN_DELIVERED, 0},
        {"a@example.org", SK_DSN_NOTIFY_NEVER, SK_DSN_FAILED, 0},
        {"a@example.org", SK_DSN_NOTIFY_SUCCESS, SK_DSN_FAILED, 0},
        {"a@example.org", SK_DSN_NOTIFY_SUCCESS, SK_DSN_DELIVERED, 1},
        {"a@example.org", SK_DSN_NOTIFY_SUCCESS, SK_DSN_RELAYED, 1},
        {"a@example.org", SK_DSN_NOTIFY_DELAY, SK_DSN_DELAYED, 1},
        {"a@example.org", SK_DSN_NOTIFY_DELAY, SK_DSN_FAILED, 0},
        {"a@example.org", SK_DSN_NOTIFY_FAILURE | SK_DSN_NOTIFY_DELAY, SK_DSN_FAILED, 1},
        {"a@example.org", SK_DSN_NOTIFY_FAILURE | SK_DSN_NOTIFY_DELAY, SK_DSN_DELAYED, 1},
    };
    for (size_t i = 0; i < SKT_N(cases); i++)
        if (sk_dsn_wanted(cases[i].sender, cases[i].notify, cases[i].action) != cases[i].want)
            fail_msg("case %zu", i);
}

static void test_notify_and_action(void **state)
{
    static const struct {
        unsigned bits;
        const char *text;
    } nf[] = {{0, NULL},
              {SK_DSN_NOTIFY_NEVER, "NEVER"},
              {SK_DSN_NOTIFY_SUCCESS, "SUCCESS"},
              {SK_DSN_NOTIFY_DELAY | SK_DSN_NOTIFY_FAILURE, "FAILURE,DELAY"},
              {SK_DSN_NOTIFY_SUCCESS | SK_DSN_NOTIFY_FAILURE | SK_DSN_NOTIFY_DELAY,
               "SUCCESS,FAILURE,DELAY"}};
    for (size_t i = 0; i < SKT_N(nf); i++) {
        char buf[SK_DSN_NOTIFY_TEXT_SIZE];
        const char *t = sk_dsn_notify_format(nf[i].bits, buf);
        if (nf[i].text)
            assert_string_equal(t, nf[i].text);
        else
            assert_null(t);
    }
    static const struct {
        const char *in;
        int a;
    } acts[] = {{"failed", SK_DSN_FAILED},
                {" Delayed ", SK_DSN_DELAYED},
                {"delivered", SK_DSN_DELIVERED},
                {"relayed (via x)", SK_DSN_RELAYED},
                {"expanded", SK_DSN_EXPANDED},
                {"fail", -1},
                {"", -1},
                {NULL, -1}};
    for (size_t i = 0; i < SKT_N(acts); i++)
        assert_int_equal(sk_dsn_action_parse(acts[i].in), acts[i].a);
}

static const char original[] = "From: Alice <alice@example.org>\r\n"
                               "To: bob@example.net\r\n"
                               "Subject: Quarterly numbers\r\n"
                               "Message-ID: <orig-1@example.org>\r\n"
                               "\r\n"
                               "Hello Bob,\r\nhere they are.\r\n";

/* Python's email package reads the DSN and prints what it sees; the test
 * compares that with what it should be. */
static const char py_check[] =
    "import sys, email\n"
    "from email import policy\n"
    "m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)\n"
    "DATES = ('-Date', '-Until')\n"
    "out = []\n"
    "out.append('type ' + m.get_content_type())\n"
    "out.append('report-type ' + str(m.get_param('report-type')))\n"
    "out.append('from ' + str(m['From'].addresses[0].addr_spec))\n"
    "out.append('to ' + str(m['To'].addresses[0].addr_spec))\n"
    "out.append('auto ' + str(m['Auto-Submitted']))\n"
    "parts = m.get_payload()\n"
    "out.append('parts ' + ','.join(p.get_content_type() for p in parts))\n"
    "ds = parts[1].get_payload()\n"
    "for g in ds:\n"
    "    out.append('; '.join('%s=%s' % (k, ' '.join(str(v).split())) for k, v in g.items()\n"
    "                         if not k.endswith(DATES)))\n"
    "    out.append('dates ' + ','.join(k for k in g.keys() if k.endswith(DATES)))\n"
    "if len(parts) > 2:\n"
    "    p = parts[2]\n"
    "    if p.get_content_type() == 'message/rfc822':\n"
    "        inner = p.get_payload()[0]\n"
    "        out.append('returned subject=%s body=%r' % (inner['Subject'],\n"
    "                   inner.get_payload()))\n"
    "    else:\n"
    "        out.append('returned headers ' + str('Subject: Quarterly' in p.get_payload()))\n"
    "bad = [d for part in m.walk() for d in part.defects] + list(m.defects)\n"
    "out.append('defects %d' % len(bad))\n"
    "print('\\n'.join(out))\n";

static char *run_python(const char *dsn, size_t len)
{
    char *path = skt_tmpfile("dsn", dsn, len);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        execl("/usr/bin/python3", "python3", "-c", py_check, path, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    static char out[8192];
    size_t n = 0;
    ssize_t r;
    while ((r = read(pipefd[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)r;
    out[n] = '\0';
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    unlink(path);
    free(path);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("python failed: %s", out);
    return out;
}

static const sk_dsn_rcpt rcpts_failed[] = {
    {.address = "bob@example.net",
     .orcpt = "rfc822;Bob+2BSales@example.net",
     .action = SK_DSN_FAILED,
     .status = "5.1.1",
     .remote_mta = "mx1.example.net",
     .diagnostic = "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in "
                   "virtual mailbox table, and this text is long enough to be folded",
     .last_attempt = 1700000100},
    {.address = "carol@example.com",
     .action = SK_DSN_DELAYED,
     .status = "4.4.1",
     .last_attempt = 1700000100,
     .retry_until = 1700400000},
};

static const struct {
    sk_dsn_ret ret;
    size_t full_max;
    const char *envid;
    size_t nrcpts;
    const char *expect;
} build_cases[] = {
    {SK_DSN_RET_FULL, 0, "QQ+2B123", 2,
     "type multipart/report\n"
     "report-type delivery-status\n"
     "from MAILER-DAEMON@mx.example.org\n"
     "to alice@example.org\n"
     "auto auto-replied\n"
     "parts text/plain,message/delivery-status,message/rfc822\n"
     "Reporting-MTA=dns; mx.example.org; Original-Envelope-Id=QQ+123\n"
     "dates Arrival-Date\n"
     "Original-Recipient=rfc822; Bob+Sales@example.net; Final-Recipient=rfc822; "
     "bob@example.net; Action=failed; Status=5.1.1; Remote-MTA=dns; mx1.example.net; "
     "Diagnostic-Code=smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User "
     "unknown in virtual mailbox table, and this text is long enough to be folded\n"
     "dates Last-Attempt-Date\n"
     "Final-Recipient=rfc822; carol@example.com; Action=delayed; Status=4.4.1\n"
     "dates Last-Attempt-Date,Will-Retry-Until\n"
     "returned subject=Quarterly numbers body='Hello Bob,\\nhere they are.\\n'\n"
     "defects 0\n"},
    /* RET=HDRS: headers only; no ENVID. */
    {SK_DSN_RET_HDRS, 0, NULL, 1,
     "type multipart/report\n"
     "report-type delivery-status\n"
     "from MAILER-DAEMON@mx.example.org\n"
     "to alice@example.org\n"
     "auto auto-replied\n"
     "parts text/plain,message/delivery-status,text/rfc822-headers\n"
     "Reporting-MTA=dns; mx.example.org\n"
     "dates Arrival-Date\n"
     "Original-Recipient=rfc822; Bob+Sales@example.net; Final-Recipient=rfc822; "
     "bob@example.net; Action=failed; Status=5.1.1; Remote-MTA=dns; mx1.example.net; "
     "Diagnostic-Code=smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User "
     "unknown in virtual mailbox table, and this text is long enough to be folded\n"
     "dates Last-Attempt-Date\n"
     "returned headers True\n"
     "defects 0\n"},
    /* No RET, but larger than the limit: headers. */
    {SK_DSN_RET_UNSPECIFIED, 64, NULL, 1,
     "type multipart/report\n"
     "report-type delivery-status\n"
     "from MAILER-DAEMON@mx.example.org\n"
     "to alice@example.org\n"
     "auto auto-replied\n"
     "parts text/plain,message/delivery-status,text/rfc822-headers\n"
     "Reporting-MTA=dns; mx.example.org\n"
     "dates Arrival-Date\n"
     "Original-Recipient=rfc822; Bob+Sales@example.net; Final-Recipient=rfc822; "
     "bob@example.net; Action=failed; Status=5.1.1; Remote-MTA=dns; mx1.example.net; "
     "Diagnostic-Code=smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User "
     "unknown in virtual mailbox table, and this text is long enough to be folded\n"
     "dates Last-Attempt-Date\n"
     "returned headers True\n"
     "defects 0\n"},
};

static void test_build_python(void **state)
{
    for (size_t i = 0; i < SKT_N(build_cases); i++) {
        sk_dsn_opts o = {.reporting_mta = "mx.example.org",
                         .sender = "alice@example.org",
                         .envid = build_cases[i].envid,
                         .arrival = 1700000000,
                         .ret = build_cases[i].ret,
                         .full_max_octets = build_cases[i].full_max,
                         .now = 1700000200};
        sk_buf b = SK_BUF_INIT(1 << 20);
        sk_error err;
        if (sk_dsn_build(&o, rcpts_failed, build_cases[i].nrcpts, original, strlen(original), &b,
                         &err))
            fail_msg("case %zu: %s", i, err.text);
        /* Every line ends in CRLF and none is over 998 octets. */
        size_t col = 0;
        for (size_t k = 0; k < b.len; k++) {
            if (b.data[k] == '\n') {
                assert_true(k > 0 && b.data[k - 1] == '\r');
                col = 0;
            } else {
                assert_true(++col <= 998);
            }
        }
        const char *got = run_python(b.data, b.len);
        if (strcmp(got, build_cases[i].expect) != 0)
            fail_msg("case %zu:\n--- got\n%s--- want\n%s", i, got, build_cases[i].expect);
        sk_buf_free(&b);
    }
}

/* What we build, we read back. */
static void test_round_trip(void **state)
{
    sk_dsn_opts o = {.reporting_mta = "mx.example.org",
                     .sender = "alice@example.org",
                     .envid = "ENV1",
                     .ret = SK_DSN_RET_FULL};
    sk_buf b = SK_BUF_INIT(1 << 20);
    assert_int_equal(sk_dsn_build(&o, rcpts_failed, 2, original, strlen(original), &b, NULL),
                     SK_OK);
    sk_report *r;
    assert_int_equal(sk_report_parse(b.data, b.len, &r, NULL), SK_OK);
    assert_int_equal(r->type, SK_REPORT_DSN);
    assert_string_equal(r->reporting_mta, "mx.example.org");
    assert_string_equal(r->envid, "ENV1");
    assert_string_equal(r->original_message_id, "<orig-1@example.org>");
    assert_int_equal(r->nrcpts, 2);
    assert_string_equal(r->rcpts[0].final_recipient, "bob@example.net");
    assert_string_equal(r->rcpts[0].original_recipient, "Bob+Sales@example.net");
    assert_int_equal(r->rcpts[0].action, SK_DSN_FAILED);
    assert_string_equal(r->rcpts[0].status, "5.1.1");
    assert_string_equal(r->rcpts[0].remote_mta, "mx1.example.net");
    assert_non_null(strstr(r->rcpts[0].diagnostic, "550 5.1.1 <bob@example.net>: Recipient"));
    assert_string_equal(r->rcpts[1].final_recipient, "carol@example.com");
    assert_int_equal(r->rcpts[1].action, SK_DSN_DELAYED);
    assert_null(r->rcpts[1].diagnostic);
    sk_report_free(r);
    sk_buf_free(&b);
}

static void test_build_rejects(void **state)
{
    static const sk_dsn_rcpt bad_status = {.address = "b@x", .status = "5.1", .action = 0};
    static const sk_dsn_rcpt injected = {.address = "b@x\r\nBcc: evil@x", .status = "5.1.1"};
    static const sk_dsn_rcpt ok = {.address = "b@x", .status = "5.1.1"};
    sk_dsn_opts good = {.reporting_mta = "mx", .sender = "a@x"};
    sk_dsn_opts no_sender = {.reporting_mta = "mx", .sender = ""};
    struct {
        const sk_dsn_opts *o;
        const sk_dsn_rcpt *r;
        size_t n;
    } cases[] = {
        {&good, &bad_status, 1}, {&good, &injected, 1}, {&no_sender, &ok, 1}, {&good, &ok, 0}};
    for (size_t i = 0; i < SKT_N(cases); i++) {
        sk_buf b = SK_BUF_INIT(1 << 16);
        if (sk_dsn_build(cases[i].o, cases[i].r, cases[i].n, "", 0, &b, NULL) != SK_ERR_INVAL)
            fail_msg("case %zu accepted", i);
        assert_int_equal(b.len, 0);
        sk_buf_free(&b);
    }
    /* A reply text with CR LF cannot add header fields. */
    sk_dsn_rcpt sneaky = {
        .address = "b@x", .status = "5.1.1", .diagnostic = "550 no\r\nX-Injected: yes"};
    sk_buf b = SK_BUF_INIT(1 << 16);
    assert_int_equal(sk_dsn_build(&good, &sneaky, 1, "", 0, &b, NULL), SK_OK);
    assert_null(strstr(b.data, "\nX-Injected"));
    sk_buf_free(&b);
}

/* ---- parsing real-world variants ---- */

static const char postfix_dsn[] =
    "Return-Path: <>\r\n"
    "From: MAILER-DAEMON@mail.example.net (Mail Delivery System)\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    "\tboundary=\"8F2A31C0A4.1700000000/mail.example.net\"\r\n"
    "\r\n"
    "This is a MIME-encapsulated message.\r\n"
    "\r\n"
    "--8F2A31C0A4.1700000000/mail.example.net\r\n"
    "Content-Description: Notification\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "The mail system could not deliver it.\r\n"
    "\r\n"
    "--8F2A31C0A4.1700000000/mail.example.net\r\n"
    "Content-Description: Delivery report\r\n"
    "Content-Type: message/delivery-status\r\n"
    "\r\n"
    "Reporting-MTA: dns; mail.example.net\r\n"
    "X-Postfix-Queue-ID: 8F2A31C0A4\r\n"
    "X-Postfix-Sender: rfc822; alice@example.org\r\n"
    "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)\r\n"
    "\r\n"
    "Final-Recipient: rfc822; bob@example.com\r\n"
    "Original-Recipient: rfc822;bob@example.com\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Remote-MTA: dns; mx.example.com\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected:\r\n"
    "    User unknown in local recipient table\r\n"
    "\r\n"
    "Final-Recipient: rfc822; dan@example.com\r\n"
    "Action: delayed\r\n"
    "Status: 4.4.1\r\n"
    "Diagnostic-Code: X-Postfix; connect to mx.example.com[192.0.2.7]:25: Connection\r\n"
    "    timed out\r\n"
    "\r\n"
    "--8F2A31C0A4.1700000000/mail.example.net\r\n"
    "Content-Description: Undelivered Message Headers\r\n"
    "Content-Type: text/rfc822-headers\r\n"
    "\r\n"
    "From: alice@example.org\r\n"
    "Message-ID: <abc@example.org>\r\n"
    "\r\n"
    "--8F2A31C0A4.1700000000/mail.example.net--\r\n";

/* LF line ends, no report-type, a type-less address, a Status with a
 * comment, lower-case field names, no blank line before the recipient. */
static const char sloppy_dsn[] = "From: postmaster@example.com\n"
                                 "Content-Type: Multipart/Report; Boundary=b1\n"
                                 "\n"
                                 "--b1\n"
                                 "Content-Type: text/plain\n"
                                 "\n"
                                 "Delivery has failed.\n"
                                 "--b1\n"
                                 "content-type: message/delivery-status\n"
                                 "\n"
                                 "reporting-mta: dns;EXCH01.example.com\n"
                                 "final-recipient: <erin@example.com>\n"
                                 "action: Failed\n"
                                 "status: 5.2.2 (mailbox full)\n"
                                 "diagnostic-code: smtp;552 5.2.2 Mailbox full\n"
                                 "--b1\n"
                                 "Content-Type: message/rfc822\n"
                                 "\n"
                                 "Message-ID: <m2@example.org>\n"
                                 "Subject: hi\n"
                                 "\n"
                                 "body\n"
                                 "--b1--\n";

/* A forwarded bounce: multipart/mixed around the report, the status part
 * in base64. */
static const char nested_dsn[] =
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "--outer\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "fyi\r\n"
    "--outer\r\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"inner\"\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: message/delivery-status\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    /* "Reporting-MTA: dns; b.example\r\n\r\nFinal-Recipient: rfc822; f@example.com\r\n
     *  Action: failed\r\nStatus: 5.7.1\r\n" */
    "UmVwb3J0aW5nLU1UQTogZG5zOyBiLmV4YW1wbGUNCg0KRmluYWwtUmVjaXBpZW50OiByZmM4MjI7\r\n"
    "IGZAZXhhbXBsZS5jb20NCkFjdGlvbjogZmFpbGVkDQpTdGF0dXM6IDUuNy4xDQo=\r\n"
    "--inner--\r\n"
    "--outer--\r\n";

static const char arf_report[] = "From: <abuse@mailbox.example>\r\n"
                                 "Subject: FW: Earn money\r\n"
                                 "MIME-Version: 1.0\r\n"
                                 "Content-Type: multipart/report; report-type=feedback-report;\r\n"
                                 "     boundary=\"part1_13d.2e68ed54_boundary\"\r\n"
                                 "\r\n"
                                 "--part1_13d.2e68ed54_boundary\r\n"
                                 "Content-Type: text/plain; charset=\"US-ASCII\"\r\n"
                                 "\r\n"
                                 "This is an email abuse report.\r\n"
                                 "\r\n"
                                 "--part1_13d.2e68ed54_boundary\r\n"
                                 "Content-Type: message/feedback-report\r\n"
                                 "\r\n"
                                 "Feedback-Type: abuse\r\n"
                                 "User-Agent: SomeGenerator/1.0\r\n"
                                 "Version: 1\r\n"
                                 "Original-Mail-From: <somespammer@example.net>\r\n"
                                 "Original-Rcpt-To: <user@example.com>\r\n"
                                 "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
                                 "Source-IP: 192.0.2.1\r\n"
                                 "\r\n"
                                 "--part1_13d.2e68ed54_boundary\r\n"
                                 "Content-Type: message/rfc822\r\n"
                                 "Content-Disposition: inline\r\n"
                                 "\r\n"
                                 "From: <somespammer@example.net>\r\n"
                                 "Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@example.net>\r\n"
                                 "\r\n"
                                 "Spam Spam Spam\r\n"
                                 "--part1_13d.2e68ed54_boundary--\r\n";

static const char plain_message[] = "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
static const char report_without_status[] =
    "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
    "--x\r\nContent-Type: text/plain\r\n\r\nsomething failed\r\n--x--\r\n";

typedef struct want_rcpt {
    const char *final, *original, *status, *diagnostic, *remote;
    int action;
} want_rcpt;

/* Variants real MTAs send (docs/delivery.md "Reading reports"). */
static const char lenient_mixed[] =
    "Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nx\n"
    "--m\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; o.example\n\n"
    "Final-Recipient: rfc822; a@example.com\nAction: failure\nStatus: 5.1.1\n--m--\n";
static const char lenient_noblank[] =
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\n\n--r\n"
    "Content-Type: message/delivery-status\n\nReporting-MTA: dns; g.example\n"
    "Final-Recipient: rfc822; b@example.com\nAction: Failed \nStatus: 5.0.0 (user unknown)\n"
    "Final-Recipient: rfc822; c@example.com\nAction: EXPIRED\nStatus: 4.4.7\n--r--\n";
static const char lenient_forwarded[] =
    "Content-Type: multipart/mixed; boundary=\"o\"\n\n--o\nContent-Type: message/rfc822\n\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"i\"\n\n--i\n"
    "Content-Type: message/delivery-status\n\nReporting-MTA: dns; f.example\n\n"
    "Final-Recipient: rfc822; d@example.com\nAction: deferred\nStatus: 4.2.0\n--i--\n--o--\n";
static const char lenient_no_rcpt[] =
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\n\n--r\n"
    "Content-Type: message/delivery-status\n\nReporting-MTA: dns; n.example\nAction: failed\n"
    "Status: 5.2.2\n--r--\n";
static const char other_report_type[] =
    "Content-Type: multipart/report; report-type=quota-notice; boundary=\"q\"\n\n--q\n"
    "Content-Type: text/plain\n\nover quota\n--q--\n";

static const struct {
    const char *name, *msg;
    sk_err err;
    sk_report_type type;
    const char *reporting_mta, *message_id;
    size_t nrcpts;
    want_rcpt r[2];
} parse_cases[] = {
    {"postfix",
     postfix_dsn,
     SK_OK,
     SK_REPORT_DSN,
     "mail.example.net",
     "<abc@example.org>",
     2,
     {{"bob@example.com", "bob@example.com", "5.1.1",
       "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in local "
       "recipient table",
       "mx.example.com", SK_DSN_FAILED},
      {"dan@example.com", NULL, "4.4.1",
       "connect to mx.example.com[192.0.2.7]:25: Connection timed out", NULL, SK_DSN_DELAYED}}},
    {"sloppy",
     sloppy_dsn,
     SK_OK,
     SK_REPORT_DSN,
     "EXCH01.example.com",
     "<m2@example.org>",
     1,
     {{"erin@example.com", NULL, "5.2.2", "552 5.2.2 Mailbox full", NULL, SK_DSN_FAILED}}},
    {"nested base64",
     nested_dsn,
     SK_OK,
     SK_REPORT_DSN,
     "b.example",
     NULL,
     1,
     {{"f@example.com", NULL, "5.7.1", NULL, NULL, SK_DSN_FAILED}}},
    {"arf",
     arf_report,
     SK_OK,
     SK_REPORT_ARF,
     NULL,
     "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>",
     0,
     {{0}}},
    {"plain", plain_message, SK_OK, SK_REPORT_NONE, NULL, NULL, 0, {{0}}},
    {"no status part", report_without_status, SK_ERR_SYNTAX, SK_REPORT_NONE, NULL, NULL, 0, {{0}}},
    {"status part in multipart/mixed",
     lenient_mixed,
     SK_OK,
     SK_REPORT_DSN,
     "o.example",
     NULL,
     1,
     {{"a@example.com", NULL, "5.1.1", NULL, NULL, SK_DSN_FAILED}}},
    {"blocks without empty lines, odd actions",
     lenient_noblank,
     SK_OK,
     SK_REPORT_DSN,
     "g.example",
     NULL,
     2,
     {{"b@example.com", NULL, "5.0.0", NULL, NULL, SK_DSN_FAILED},
      {"c@example.com", NULL, "4.4.7", NULL, NULL, SK_DSN_FAILED}}},
    {"forwarded as message/rfc822",
     lenient_forwarded,
     SK_OK,
     SK_REPORT_DSN,
     "f.example",
     NULL,
     1,
     {{"d@example.com", NULL, "4.2.0", NULL, NULL, SK_DSN_DELAYED}}},
    {"status without recipient fields",
     lenient_no_rcpt,
     SK_OK,
     SK_REPORT_DSN,
     "n.example",
     NULL,
     1,
     {{NULL, NULL, "5.2.2", NULL, NULL, SK_DSN_FAILED}}},
    {"another report-type", other_report_type, SK_OK, SK_REPORT_NONE, NULL, NULL, 0, {{0}}},
};

static void check_str(const char *what, size_t i, const char *got, const char *want)
{
    if ((!got) != (!want) || (got && strcmp(got, want) != 0))
        fail_msg("case %zu %s: got \"%s\" want \"%s\"", i, what, got ? got : "(null)",
                 want ? want : "(null)");
}

static void test_parse(void **state)
{
    for (size_t i = 0; i < SKT_N(parse_cases); i++) {
        sk_report *r = NULL;
        sk_error err;
        sk_err e = sk_report_parse(parse_cases[i].msg, strlen(parse_cases[i].msg), &r, &err);
        if (e != parse_cases[i].err) fail_msg("case %s: error %s", parse_cases[i].name, err.text);
        if (e) {
            assert_null(r);
            continue;
        }
        assert_int_equal(r->type, parse_cases[i].type);
        check_str("reporting-mta", i, r->reporting_mta, parse_cases[i].reporting_mta);
        check_str("message-id", i, r->original_message_id, parse_cases[i].message_id);
        if (r->nrcpts != parse_cases[i].nrcpts)
            fail_msg("case %s: %zu recipients", parse_cases[i].name, r->nrcpts);
        for (size_t k = 0; k < r->nrcpts; k++) {
            const want_rcpt *w = &parse_cases[i].r[k];
            check_str("final", i, r->rcpts[k].final_recipient, w->final);
            check_str("original", i, r->rcpts[k].original_recipient, w->original);
            check_str("status", i, r->rcpts[k].status, w->status);
            check_str("diagnostic", i, r->rcpts[k].diagnostic, w->diagnostic);
            check_str("remote", i, r->rcpts[k].remote_mta, w->remote);
            assert_int_equal(r->rcpts[k].action, w->action);
        }
        sk_report_free(r);
    }
}

/* The reason given only as a comment on the Status line. */
static void test_status_comment(void **state)
{
    (void)state;
    sk_report *r;
    assert_int_equal(sk_report_parse(lenient_noblank, strlen(lenient_noblank), &r, NULL), SK_OK);
    assert_string_equal(r->rcpts[0].status_comment, "user unknown");
    assert_null(r->rcpts[1].status_comment);
    sk_report_free(r);
}

static void test_parse_arf_fields(void **state)
{
    sk_report *r;
    assert_int_equal(sk_report_parse(arf_report, strlen(arf_report), &r, NULL), SK_OK);
    assert_int_equal(r->type, SK_REPORT_ARF);
    assert_string_equal(r->feedback_type, "abuse");
    assert_string_equal(r->user_agent, "SomeGenerator/1.0");
    assert_string_equal(r->original_mail_from, "somespammer@example.net");
    assert_string_equal(r->original_rcpt_to, "user@example.com");
    assert_string_equal(r->source_ip, "192.0.2.1");
    assert_string_equal(r->arrival_date, "Thu, 8 Mar 2005 14:00:00 EDT");
    sk_report_free(r);
}

/* ---- allocation failures: every one is reported, nothing leaks ---- */

static void summary(const sk_report *r, char *out, size_t size)
{
    int n = snprintf(out, size, "%d %s %s %s %s %zu", (int)r->type,
                     r->reporting_mta ? r->reporting_mta : "-",
                     r->original_message_id ? r->original_message_id : "-",
                     r->feedback_type ? r->feedback_type : "-",
                     r->original_rcpt_to ? r->original_rcpt_to : "-", r->nrcpts);
    for (size_t i = 0; i < r->nrcpts && n > 0 && (size_t)n < size; i++)
        n += snprintf(out + n, size - (size_t)n, " %s/%s/%s/%d",
                      r->rcpts[i].final_recipient ? r->rcpts[i].final_recipient : "-",
                      r->rcpts[i].status ? r->rcpts[i].status : "-",
                      r->rcpts[i].diagnostic ? r->rcpts[i].diagnostic : "-", r->rcpts[i].action);
}

static void test_alloc_failures(void **state)
{
    for (size_t i = 0; i < SKT_N(parse_cases); i++) {
        if (parse_cases[i].err) continue;
        const char *msg = parse_cases[i].msg;
        sk_report *r;
        char want[2048], got[2048];
        assert_int_equal(sk_report_parse(msg, strlen(msg), &r, NULL), SK_OK);
        summary(r, want, sizeof want);
        sk_report_free(r);
        for (long n = 0;; n++) {
            assert_true(n < 100000);
            skt_alloc_fail_from(n);
            sk_err e = sk_report_parse(msg, strlen(msg), &r, NULL);
            skt_alloc_end();
            if (e == SK_OK) {
                summary(r, got, sizeof got);
                sk_report_free(r);
                if (strcmp(got, want) != 0)
                    fail_msg("%s, allocation %ld failed: got %s", parse_cases[i].name, n, got);
                break;
            }
            if (e != SK_ERR_NOMEM)
                fail_msg("%s, allocation %ld: %s", parse_cases[i].name, n, sk_strerror(e));
            assert_null(r);
        }
    }
    sk_dsn_opts o = {.reporting_mta = "mx.example.org", .sender = "alice@example.org"};
    for (long n = 0;; n++) {
        assert_true(n < 100000);
        sk_buf b = SK_BUF_INIT(1 << 20);
        skt_alloc_fail_from(n);
        sk_err e = sk_dsn_build(&o, rcpts_failed, 2, original, strlen(original), &b, NULL);
        skt_alloc_end();
        if (e == SK_OK) {
            assert_non_null(strstr(b.data, "Status: 4.4.1"));
            sk_buf_free(&b);
            break;
        }
        assert_int_equal(e, SK_ERR_NOMEM);
        assert_int_equal(b.len, 0);
        sk_buf_free(&b);
    }
}

static void test_diagnostic_type(void **state)
{
    sk_dsn_opts o = {.reporting_mta = "mx.example.org", .sender = "alice@example.org"};
    sk_dsn_rcpt r = {.address = "bob@null.example",
                     .status = "5.1.10",
                     .diagnostic = "domain null.example accepts no mail (null MX)",
                     .diagnostic_type = "X-SMTPKit"};
    sk_buf b = SK_BUF_INIT(1 << 16);
    assert_int_equal(sk_dsn_build(&o, &r, 1, NULL, 0, &b, NULL), SK_OK);
    assert_non_null(strstr(b.data, "\r\nDiagnostic-Code: X-SMTPKit; domain null.example"));
    sk_report *rep;
    assert_int_equal(sk_report_parse(b.data, b.len, &rep, NULL), SK_OK);
    assert_string_equal(rep->rcpts[0].diagnostic, "domain null.example accepts no mail (null MX)");
    assert_string_equal(rep->rcpts[0].status, "5.1.10");
    sk_report_free(rep);
    sk_buf_reset(&b);
    /* A returned message with 8-bit octets is labelled 8bit (RFC 2046 5.2.1). */
    static const char utf8[] = "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n";
    sk_buf_reset(&b);
    assert_int_equal(sk_dsn_build(&o, &r, 1, utf8, strlen(utf8), &b, NULL), SK_OK);
    assert_non_null(strstr(b.data, "message/rfc822\r\nContent-Description: Undelivered "
                                   "message\r\nContent-Transfer-Encoding: 8bit\r\n"));
    sk_buf_reset(&b);
    assert_int_equal(sk_dsn_build(&o, &r, 1, original, strlen(original), &b, NULL), SK_OK);
    assert_null(strstr(b.data, "Content-Transfer-Encoding"));
    sk_buf_reset(&b);
    r.diagnostic_type = "bad type";
    assert_int_equal(sk_dsn_build(&o, &r, 1, NULL, 0, &b, NULL), SK_ERR_INVAL);
    sk_buf_free(&b);
}

/* RFC 6533 3: UTF-8 addresses in the 7-bit message/delivery-status part
 * are of the "utf-8" type in utf-8-addr-xtext form, whichever form the
 * ORCPT came in. */
static void test_utf8_recipients(void **state)
{
    (void)state;
    static const struct {
        const char *address, *orcpt;
        const char *original, *final; /* the fields as written; original NULL: none */
        sk_err e;
        const char *original_read; /* Original-Recipient as sk_report_parse gives it */
    } cases[] = {
        {"bob@example.net", "rfc822;Bob+2BSales@example.net",
         "Original-Recipient: rfc822; Bob+Sales@example.net",
         "Final-Recipient: rfc822; bob@example.net", SK_OK, "Bob+Sales@example.net"},
        {"j\xc3\xb6rg@example.net", "utf-8;j\xc3\xb6rg@example.net",
         "Original-Recipient: utf-8; j\\x{F6}rg@example.net",
         "Final-Recipient: utf-8; j\\x{F6}rg@example.net", SK_OK, "j\xc3\xb6rg@example.net"},
        {"j\xc3\xb6rg@example.net", "utf-8;J\\x{f6}rg\\x{2B}1@example.net",
         "Original-Recipient: utf-8; J\\x{F6}rg\\x{2B}1@example.net",
         "Final-Recipient: utf-8; j\\x{F6}rg@example.net", SK_OK, "J\xc3\xb6rg+1@example.net"},
        {"\xe7\x94\xa8@example.net", NULL, NULL, "Final-Recipient: utf-8; \\x{7528}@example.net",
         SK_OK, NULL},
        /* Not the RFC 6533 encoding ("+"): reported without the field. */
        {"a@example.net", "utf-8;a+2Bb@example.net", NULL, "Final-Recipient: rfc822; a@example.net",
         SK_OK, NULL},
    };
    /* 250 "ā" are 500 octets, over 1700 in the 7-bit form: one line
     * cannot hold it. */
    static char long_orcpt[SK_DSN_ORCPT_MAX_OCTETS + 1] = "utf-8;";
    for (size_t n = strlen(long_orcpt); n + 2 < SK_DSN_ORCPT_MAX_OCTETS; n += 2)
        memcpy(long_orcpt + n, "\xc4\x81", 3);
    sk_dsn_opts o = {.reporting_mta = "mx.example.org", .sender = "alice@example.org"};
    for (size_t i = 0; i <= SKT_N(cases); i++) {
        int last = i == SKT_N(cases);
        sk_dsn_rcpt r = {.address = last ? "a@example.net" : cases[i].address,
                         .orcpt = last ? long_orcpt : cases[i].orcpt,
                         .status = "5.1.1"};
        if (last) {
            sk_buf b = SK_BUF_INIT(1 << 16);
            assert_int_equal(sk_dsn_build(&o, &r, 1, NULL, 0, &b, NULL), SK_OK);
            assert_null(strstr(b.data, "Original-Recipient"));
            assert_non_null(strstr(b.data, "Final-Recipient: rfc822; a@example.net"));
            sk_buf_free(&b);
            break;
        }
        sk_buf b = SK_BUF_INIT(1 << 16);
        sk_err e = sk_dsn_build(&o, &r, 1, NULL, 0, &b, NULL);
        if (e != cases[i].e) fail_msg("case %zu: %d", i, e);
        if (!e) {
            const char *st = strstr(b.data, "message/delivery-status");
            assert_non_null(st);
            const char *end = strstr(st, "\r\n--");
            assert_non_null(end);
            for (const char *p = st; p < end; p++)
                if ((unsigned char)*p >= 0x80) fail_msg("case %zu: 8-bit status part", i);
            if (cases[i].original && !strstr(st, cases[i].original))
                fail_msg("case %zu: no \"%s\" in\n%s", i, cases[i].original, st);
            if (!cases[i].original) assert_null(strstr(st, "Original-Recipient"));
            if (!strstr(st, cases[i].final))
                fail_msg("case %zu: no \"%s\" in\n%s", i, cases[i].final, st);
            /* Read back: the utf-8 type decoded to the address. */
            sk_report *rep;
            assert_int_equal(sk_report_parse(b.data, b.len, &rep, NULL), SK_OK);
            assert_int_equal(rep->nrcpts, 1);
            assert_string_equal(rep->rcpts[0].final_recipient, cases[i].address);
            if (cases[i].original_read)
                assert_string_equal(rep->rcpts[0].original_recipient, cases[i].original_read);
            else
                assert_null(rep->rcpts[0].original_recipient);
            sk_report_free(rep);
        }
        sk_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wanted),           cmocka_unit_test(test_notify_and_action),
        cmocka_unit_test(test_build_python),     cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_build_rejects),    cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_arf_fields), cmocka_unit_test(test_status_comment),
        cmocka_unit_test(test_alloc_failures),   cmocka_unit_test(test_diagnostic_type),
        cmocka_unit_test(test_utf8_recipients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
