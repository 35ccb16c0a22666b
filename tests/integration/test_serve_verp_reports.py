#!/usr/bin/python3
"""What `smtpkit serve --verp` does with mail to its VERP addresses beyond
DSNs: a complaint (ARF, RFC 5965) is recorded as `complained` and
suppresses the recipient (the next RCPT to it gets 550 5.1.1); a report for
a queue ID nobody knows, and a message that is no report, are answered 250,
logged as unmatched and dropped (no mailbox gets them). That VERP addresses
take mail from anyone with --verp, and are a relay attempt without it, is
the transcripts serve_verp_relay.txt and serve_relay_refused.txt."""
import os
import smtplib
import sys
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
import email.policy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (HOST, MX, events, expect, serve, submit,  # noqa: E402
                            suppress_list, wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "far.test": {"MX": [[10, "mx.far.test"]]},
    "mx.far.test": {"A": ["127.0.0.2"]},
}


def build_arf(to, rcpt):
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "<abuse@far.test>"
    report["To"] = to
    report["Subject"] = "FW: complaint"
    report.attach(MIMEText("This is an email abuse report.\n"))
    feedback = Message()
    feedback.set_type("message/feedback-report")
    fields = Message()
    fields["Feedback-Type"] = "abuse"
    fields["User-Agent"] = "far-fbl/1.0"
    fields["Version"] = "1"
    fields["Original-Rcpt-To"] = "<%s>" % rcpt
    feedback.set_payload([fields])
    report.attach(feedback)
    report.attach(MIMEText("Subject: verp me\nMessage-ID: <x@client.test>\n", "rfc822-headers"))
    return report.as_bytes(policy=email.policy.SMTP)


def send_report(srv, to, data):
    with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
        s.ehlo("mx.far.test")
        s.mail("")
        code, resp = s.rcpt(to)
        expect(code == 250, "RCPT to %s: %d %r" % (to, code, resp), srv)
        code, resp = s.data(data)
        expect(code == 250, "report answered 250: %d %r" % (code, resp), srv)


tmp = sktest.TempDir("sk-serve-verp-reports-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.far.test") as mx:
        srv = serve(tmp, dns, port, "--verp", "--suppress-for", "2h")
        with srv:
            qid = submit(srv, "alice@local.test", ["bob@far.test"], "verp me")
            wait_event(srv, qid, "delivered")
            verp = mx.messages[0]["mail_from"]
            expect(verp == "bounces+%s=bob=far.test@relay.test" % qid,
                   "VERP sender: %r" % verp, srv)

            send_report(srv, verp, build_arf(verp, "bob@far.test"))
            c = wait_event(srv, qid, "complained", timeout=20)
            expect(c[0]["recipient"] == "bob@far.test", "complaint recorded: %r" % c, srv)
            entries = wait(lambda: suppress_list(srv.data_dir), 10, "suppression entry", srv)
            expect([e["address"] for e in entries] == ["bob@far.test"] and
                   "complaint" in entries[0]["reason"], "suppressed: %r" % entries, srv)
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.ehlo("client.test")
                s.mail("alice@local.test")
                code, resp = s.rcpt("bob@far.test")
            expect(code == 550 and b"5.1.1" in resp and b"suppress remove bob@far.test" in resp,
                   "suppressed at RCPT: %d %r" % (code, resp), srv)

            # Unknown queue ID, and a plain message: 250, logged, dropped.
            unknown = "bounces+01ZZZZZZZZZZZZZZ=bob=far.test@relay.test"
            send_report(srv, unknown, build_arf(unknown, "bob@far.test"))
            send_report(srv, verp, b"Subject: out of office\r\n\r\nI am away.\r\n")
            wait(lambda: "outcome=unmatched-queue-id" in srv.log() and
                 "outcome=not-a-report" in srv.log(), 10, "unmatched reports logged", srv)
            expect(len(events(srv.data_dir, qid, "complained")) == 1,
                   "nothing more recorded for the message", srv)
            expect(not srv.maildir("local.test", "alice"), "no report reached a mailbox", srv)
            expect(len(mx.messages) == 1, "nothing was relayed: %r" % mx.messages, srv)
    print("ok")
finally:
    tmp.cleanup()
