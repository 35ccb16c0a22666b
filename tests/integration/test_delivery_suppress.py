#!/usr/bin/python3
"""Suppression after a hard bounce: the MX answers 550 5.1.1 for a
recipient; `smtpkit serve --suppress-for 1h` bounces it, puts it on the
suppression list (`smtpkit suppress list --json`), answers the next message
to it with 550 5.1.1 at RCPT (other recipients of that message still go
through), never contacts the MX for it again, and tracks a `suppressed`
event."""

import json
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (HOST, MX, expect, send_on, serve, submit,  # noqa: E402
                            suppress_list, wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "sup.test": {"MX": [[10, "mx.sup.test"]]},
    "mx.sup.test": {"A": ["127.0.0.2"]},
}


def stats_suppressed(data_dir):
    r = sktest.smtpkit("stats", "--data-dir", data_dir, "--json", timeout=30)
    expect(r.returncode == 0, "smtpkit stats: %d %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)["last_hour"]["by_outcome"]["suppressed"]


tmp = sktest.TempDir("sk-delivery-suppress-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.sup.test",
               rcpt_script={"gone@sup.test": ["550 5.1.1 <gone@sup.test>: no such user"] * 5}
               ) as mx:
        srv = serve(tmp, dns, port, "--suppress-for", "1h")
        with srv:
            expect(suppress_list(srv.data_dir) == [], "empty list at start", srv)
            q1 = submit(srv, "alice@local.test", ["gone@sup.test"], "first")
            b = wait_event(srv, q1, "bounced")[0]
            expect(b["class"] == "bad-mailbox", "bounce class %r" % b, srv)
            entries = wait(lambda: suppress_list(srv.data_dir), 10, "suppression entry", srv)
            expect([e["address"] for e in entries] == ["gone@sup.test"],
                   "suppressed: %r" % entries, srv)
            e = entries[0]
            expect(e["until"] is not None and e["reason"], "entry has a reason and an end: %r"
                   % e, srv)
            rcpts_before = len(mx.handler.rcpts)

            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.ehlo("client.test")
                s.mail("alice@local.test")
                code, resp = s.rcpt("gone@sup.test")
                expect(code == 550 and resp.startswith(b"5.1.1"),
                       "suppressed recipient refused at RCPT: %d %r" % (code, resp), srv)
                s.rset()
                q2 = send_on(s, "alice@local.test", ["live@sup.test"],
                             "From: <alice@local.test>\r\nSubject: second\r\n\r\nHi\r\n")
            wait(lambda: mx.to("live@sup.test"), 20, "the other recipient delivered", srv)
            wait(lambda: stats_suppressed(srv.data_dir) >= 1, 10, "a suppressed event", srv)
            time.sleep(1)
            expect(stats_suppressed(srv.data_dir) == 1, "one suppressed event", srv)
            expect(not [r for r in mx.handler.rcpts[rcpts_before:] if r[1] == "gone@sup.test"],
                   "the MX never saw the suppressed address again", srv)
            # Removing it lets mail through to the MX again, once the
            # server's copy of the list has read the change (within
            # 100 ms, docs/tracking.md; the margin is for a loaded machine).
            r = sktest.smtpkit("suppress", "--data-dir", srv.data_dir, "remove",
                               "gone@sup.test", timeout=30)
            expect(r.returncode == 0, "suppress remove: %d %s" % (r.returncode, r.stderr), srv)

            def rcpt_accepted():
                with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                    s.ehlo("client.test")
                    s.mail("alice@local.test")
                    code, resp = s.rcpt("gone@sup.test")
                    return code == 250
            wait(rcpt_accepted, 5, "RCPT accepted after removal", srv)
    print("ok")
finally:
    tmp.cleanup()
