#!/usr/bin/python3
"""One delay DSN per message (RFC 3461 5.2.5, RFC 3464 "delayed"): with
--delay-warning 3s and an MX host that answers 451 to every RCPT, a
message whose recipient asked NOTIFY=DELAY gets exactly one DSN (Action:
delayed, Will-Retry-Until = arrival + --max-queue-lifetime) across many
retries and across a restart of the server (the envelope records that it
was sent); recipients with NOTIFY=NEVER or NOTIFY=FAILURE, and the null
sender, get none."""

import calendar
import email.utils
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (LOCAL, MX, delivery_status, dsns, events, expect,  # noqa: E402
                            queue_entry, serve, wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402
from serve_peer import HOST  # noqa: E402

ZONE = {
    "slow.test": {"MX": [[10, "mx.slow.test"]]},
    "mx.slow.test": {"A": ["127.0.0.2"]},
}
BUSY = "451 4.3.2 busy, try later"
LIFETIME = 120


def submit(srv, sender, rcpt, notify, subject):
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s.%f@client.test>\r\n"
           "\r\nHello.\r\n" % (sender or "mailer-daemon@client.test", rcpt, subject,
                               subject.replace(" ", "-"), time.time()))
    with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.mail(sender, ["ENVID=delay-" + subject.replace(" ", "-")])
        expect(code == 250, "MAIL: %d %r" % (code, resp), srv)
        code, resp = s.rcpt(rcpt, ["NOTIFY=" + notify])
        expect(code == 250, "RCPT: %d %r" % (code, resp), srv)
        code, resp = s.data(msg.encode())
        expect(code == 250, "DATA: %d %r" % (code, resp), srv)
        return resp.decode().rsplit("queued as ", 1)[1].split()[0]


def epoch(rfc3339):
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def all_mail(srv):
    boxes = os.path.join(srv.data_dir, "mailboxes")
    return sorted(os.path.relpath(os.path.join(root, f), boxes)
                  for root, _d, files in os.walk(boxes) for f in files
                  if os.path.basename(root) in ("new", "cur"))


tmp = sktest.TempDir("sk-delivery-dsn-delay-")
try:
    port = sktest.free_port()
    data = tmp.join("data")
    args = ("--delay-warning", "3s")
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.slow.test", rcpt_script={"@slow.test": [BUSY] * 10000}):
        srv = serve(tmp, dns, port, *args, retry="1s", lifetime="%ds" % LIFETIME,
                    data_dir=data, name="first")
        srv.start()
        try:
            q_delay = submit(srv, "alice@" + LOCAL, "a@slow.test", "DELAY,FAILURE", "wants delay")
            q_never = submit(srv, "bob@" + LOCAL, "b@slow.test", "NEVER", "never")
            q_fail = submit(srv, "carol@" + LOCAL, "c@slow.test", "FAILURE", "failure only")
            q_null = submit(srv, "", "d@slow.test", "DELAY", "null sender")
            # The message file is written just after the 250, by another thread.
            arrival = epoch(wait(lambda: queue_entry(srv, q_delay), 10, "q_delay queued",
                                 srv)["arrival"])
            srv.wait_maildir(LOCAL, "alice", 1, timeout=30)
            n_at_dsn = len(events(data, q_delay, "deferred"))
            # More retries: no second notice.
            wait_event(srv, q_delay, "deferred", n_at_dsn + 3, timeout=30)
            for q in (q_never, q_fail, q_null):
                e = queue_entry(srv, q)
                expect(e and e["state"] == "deferred" and
                       epoch(e["next_attempt"]) - epoch(e["arrival"]) >= 3,
                       "%s retried past the delay warning: %r" % (q, e), srv)
        finally:
            rc = srv.stop()
        expect(rc == 0, "first server exit %r" % rc, srv)
        expect(len(re.findall(r" queue dsn ", srv.log())) == 1, "one DSN logged", srv)

        # A new process on the same spool: the envelope says it was sent.
        srv2 = serve(tmp, dns, port, *args, retry="1s", lifetime="%ds" % LIFETIME,
                     data_dir=data, name="second")
        with srv2:
            before = {q: len(events(data, q, "deferred"))
                      for q in (q_delay, q_never, q_fail, q_null)}
            wait_event(srv2, q_delay, "deferred", before[q_delay] + 3, timeout=30)
            for q in (q_never, q_fail, q_null):
                wait_event(srv2, q, "deferred", before[q] + 1, timeout=30)
            time.sleep(1.0)  # room for a wrong DSN to arrive
            log2 = srv2.log()
            expect(" queue dsn " not in log2, "no DSN after the restart", srv2)
            found = all_mail(srv2)
            expect(len(found) == 1 and found[0].startswith(LOCAL + "/alice/"),
                   "only alice's one notice in any mailbox: %r" % found, srv2)
            got = dsns(srv2, "alice")
            blocks = delivery_status(got[0])
            expect(len(blocks) == 1, "one recipient: %r" % blocks, srv2)
            b = blocks[0]
            expect(b.get("action") == "delayed", "Action: %r" % b, srv2)
            expect(b.get("final-recipient") == "rfc822; a@slow.test", "recipient %r" % b, srv2)
            expect(b.get("status") == "4.3.2", "status from the 451: %r" % b, srv2)
            expect("451 4.3.2 busy" in b.get("diagnostic-code", ""), "diagnostic %r" % b, srv2)
            expect("mx.slow.test" in b.get("remote-mta", ""), "remote %r" % b, srv2)
            until = email.utils.parsedate_to_datetime(b.get("will-retry-until", ""))
            expect(abs(until.timestamp() - (arrival + LIFETIME)) <= 1,
                   "Will-Retry-Until %r, arrival %d + %d" % (b.get("will-retry-until"),
                                                            arrival, LIFETIME), srv2)
            ds = got[0].get_payload()[1].get_payload()[0]
            expect(str(ds.get("Original-Envelope-Id")) == "delay-wants-delay",
                   "ENVID echoed: %r" % ds.items(), srv2)
            ctypes = [p.get_content_type() for p in got[0].get_payload()]
            expect(ctypes[2:] == ["text/rfc822-headers"], "headers only: %r" % ctypes, srv2)
            e = wait(lambda: queue_entry(srv2, q_delay), 10, "still queued", srv2)
            expect(e["state"] in ("deferred", "active"), "still retried: %r" % e, srv2)
    print("ok")
finally:
    tmp.cleanup()
