#!/usr/bin/python3
"""Bounces that arrive later by mail (--verp): the envelope sender of
relayed mail carries the queue ID and recipient; a DSN (RFC 3464, built
here with Python's email package) sent later to that address is matched to
the message and recipient, classified and recorded: `smtpkit track` shows
the recipient `bounced` with class bad-mailbox, and since the Remote-MTA
is in the recipient's domain, the recipient is suppressed with that bounce
as the cause. A Postfix text bounce (no status part) from a host outside
the recipient's domain is read too and recorded, but one such bounce is
not evidence enough to suppress."""

import email.policy
import json
import os
import smtplib
import sys
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import HOST, MX, events, expect, serve, submit, wait, wait_event  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "far.test": {"MX": [[10, "mx.far.test"]]},
    "mx.far.test": {"A": ["127.0.0.2"]},
}


def build_dsn(to, rcpt, qid):
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.far.test>"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.attach(MIMEText("Your message could not be delivered to %s.\n" % rcpt))
    status = Message()
    status.set_type("message/delivery-status")
    per_msg = Message()
    per_msg["Reporting-MTA"] = "dns; mx.far.test"
    per_msg["X-Postfix-Queue-ID"] = "4ABCDEF"
    per_rcpt = Message()
    per_rcpt["Final-Recipient"] = "rfc822; " + rcpt
    per_rcpt["Original-Recipient"] = "rfc822; " + rcpt
    per_rcpt["Action"] = "failed"
    per_rcpt["Status"] = "5.1.1"
    per_rcpt["Remote-MTA"] = "dns; inbox.far.test"
    per_rcpt["Diagnostic-Code"] = "smtp; 550 5.1.1 <%s>: Recipient address rejected" % rcpt
    status.set_payload([per_msg, per_rcpt])
    report.attach(status)
    headers = MIMEText("Subject: verp me\nMessage-ID: <x@client.test>\n", "rfc822-headers")
    report.attach(headers)
    return report.as_bytes(policy=email.policy.SMTP)  # CRLF line ends


def build_text_bounce(to, rcpt):
    """Postfix's human-readable bounce alone, as some gateways forward it."""
    return ("From: MAILER-DAEMON@relay.other.test (Mail Delivery System)\r\n"
            "To: %s\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n"
            "This is the mail system at host relay.other.test.\r\n\r\n"
            "<%s>: host mx.other.test[192.0.2.9] said: 550 5.1.1 User unknown\r\n"
            "    (in reply to RCPT TO command)\r\n" % (to, rcpt)).encode()


tmp = sktest.TempDir("sk-delivery-verp-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.far.test") as mx:
        srv = serve(tmp, dns, port, "--verp")
        with srv:
            qid = submit(srv, "alice@local.test", ["bob@far.test", "carol@far.test"], "verp me")
            wait(lambda: len(mx.messages) >= 1 and
                 sum(len(m["rcpt_tos"]) for m in mx.messages) >= 2, 20, "delivered", srv)
            by_rcpt = {}
            for m in mx.messages:
                for r in m["rcpt_tos"]:
                    by_rcpt[r] = m["mail_from"]
            verp = by_rcpt["bob@far.test"]
            # docs/serve.md: bounces+QUEUEID=LOCAL=DOMAIN@HOSTNAME
            expect(verp == "bounces+%s=bob=far.test@relay.test" % qid,
                   "VERP sender names the queue ID and recipient at our host name: %r" % verp,
                   srv)
            expect(by_rcpt["carol@far.test"] != verp,
                   "each recipient has its own VERP sender: %r" % by_rcpt, srv)
            wait_event(srv, qid, "delivered", 2)

            # Later, the far side's DSN comes back to the VERP address.
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                refused = s.sendmail("", [verp], build_dsn(verp, "bob@far.test", qid))
                expect(refused == {}, "DSN accepted: %r" % refused, srv)
            b = wait_event(srv, qid, "bounced", timeout=20)
            expect(len(b) == 1 and b[0]["recipient"] == "bob@far.test" and
                   b[0]["class"] == "bad-mailbox", "bounce recorded: %r" % b, srv)
            expect(not events(srv.data_dir, qid, "bounced")[0]["recipient"] == "carol@far.test",
                   "only bob", srv)
            r = sktest.smtpkit("track", "--data-dir", srv.data_dir, qid, timeout=30)
            expect(r.returncode == 0 and "bounced" in r.stdout and "bad-mailbox" in r.stdout,
                   "smtpkit track table: %s" % r.stdout, srv)
            # Strong evidence (the Remote-MTA is in far.test): suppressed,
            # with the bounce that caused it.
            lst = [e for e in json.loads(sktest.smtpkit(
                "suppress", "--data-dir", srv.data_dir, "list", "--json", timeout=30).stdout)
                if e["address"] == "bob@far.test"]
            expect(len(lst) == 1 and lst[0]["queue_id"] == qid
                   and lst[0]["detector"] == "rfc3464"
                   and lst[0]["evidence"] == "recipient-domain"
                   and "5.1.1" in (lst[0]["bounce"] or ""), "bob suppressed: %r" % lst, srv)

            # A text bounce for carol from outside far.test: read and
            # recorded, not suppressed on its own.
            verp_c = by_rcpt["carol@far.test"]
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                refused = s.sendmail("", [verp_c], build_text_bounce(verp_c, "carol@far.test"))
                expect(refused == {}, "text bounce accepted: %r" % refused, srv)
            wait(lambda: any(e["recipient"] == "carol@far.test"
                             for e in events(srv.data_dir, qid, "bounced")), 20,
                 "carol's bounce recorded", srv)
            c = [e for e in events(srv.data_dir, qid, "bounced")
                 if e["recipient"] == "carol@far.test"]
            expect(c[0]["class"] == "bad-mailbox" and "User unknown" in (c[0]["reply"] or ""),
                   "carol's text bounce: %r" % c, srv)
            lst = json.loads(sktest.smtpkit("suppress", "--data-dir", srv.data_dir, "list",
                                            "--json", timeout=30).stdout)
            expect(not any(e["address"] == "carol@far.test" for e in lst),
                   "one bounce from outside the domain does not suppress: %r" % lst, srv)
            # The report was consumed, not delivered to anyone's mailbox.
            expect(not srv.maildir("local.test", "alice"), "no mail to the sender", srv)
    print("ok")
finally:
    tmp.cleanup()
