#!/usr/bin/python3
"""No DSN for the null sender (RFC 5321 4.5.5, RFC 3461 6.2: no bounce
loops): a message from <> that fails permanently (550) and one that expires
produce no mail at all, while the same failure from a local sender does
produce a DSN (so the setup can show one)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import MX, events, expect, serve, submit, wait_event  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "fail.test": {"MX": [[10, "mx.fail.test"]]},
    "mx.fail.test": {"A": ["127.0.0.2"]},
}

tmp = sktest.TempDir("sk-delivery-nullsender-")
try:
    port = sktest.free_port()
    script = {"gone@fail.test": ["550 5.1.1 no such user"] * 10,
              "gone2@fail.test": ["550 5.1.1 no such user"] * 10,
              "busy@fail.test": ["451 4.3.2 busy"] * 100}
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.fail.test",
                                        rcpt_script=script):
        srv = serve(tmp, dns, port, retry="1s", lifetime="4s")
        with srv:
            q_null = submit(srv, "", ["gone@fail.test"], "null sender bounce")
            q_null2 = submit(srv, "", ["busy@fail.test"], "null sender expiry")
            # A hard bounce suppresses its address: the control uses another one.
            q_ctl = submit(srv, "alice@local.test", ["gone2@fail.test"], "control bounce")
            wait_event(srv, q_null, "bounced")
            wait_event(srv, q_ctl, "bounced")
            wait_event(srv, q_null2, "expired", timeout=30)
            srv.wait_maildir("local.test", "alice", 1, timeout=20)
            time.sleep(2)
            # Every Maildir: only alice's one DSN.
            boxes = os.path.join(srv.data_dir, "mailboxes")
            found = []
            for root, _dirs, files in os.walk(boxes):
                found += [os.path.join(root, f) for f in files
                          if os.path.basename(root) in ("new", "cur")]
            expect(len(found) == 1 and "/alice/" in found[0],
                   "only the control DSN was delivered: %r" % found, srv)
            # The control DSN leaves the queue after its Maildir file is
            # written; anything else queued stays.
            sktest.settle(lambda: not srv.queue_list(), timeout=10)
            left = [m["id"] for m in srv.queue_list()]
            expect(not left, "nothing queued (no DSN waiting for delivery): %r" % left, srv)
            for q in (q_null, q_null2):
                expect(len(events(srv.data_dir, q, "received")) == 1, "tracked %s" % q, srv)
            log = srv.log()
            expect(q_null in log, "bounce logged", srv)
    print("ok")
finally:
    tmp.cleanup()
