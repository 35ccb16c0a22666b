#!/usr/bin/python3
"""A domain with a null MX (RFC 7505) accepts no mail: `smtpkit serve`
bounces at once with 5.1.10 (RFC 7505 3.2), never retries, and the sender
(a local address here) gets one DSN in its Maildir; another recipient of
the same message at a working domain still gets it."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (MX, delivery_status, dsns, events, expect, serve,  # noqa: E402
                            submit, wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "null.test": {"MX": [[0, "."]]},
    "ok.test": {"MX": [[10, "mx.ok.test"]]},
    "mx.ok.test": {"A": ["127.0.0.2"]},
}

tmp = sktest.TempDir("sk-delivery-nullmx-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.ok.test") as ok:
        srv = serve(tmp, dns, port, retry="1s")
        with srv:
            qid = submit(srv, "alice@local.test", ["nobody@null.test", "bob@ok.test"], "to null")
            b = wait_event(srv, qid, "bounced")
            expect(len(b) == 1 and b[0]["recipient"] == "nobody@null.test",
                   "one bounce: %r" % b, srv)
            expect(b[0]["attempt"] == 1, "bounced on the first attempt: %r" % b[0], srv)
            expect("5.1.10" in (b[0]["reply"] or ""), "reply names 5.1.10: %r" % b[0], srv)
            wait(lambda: ok.to("bob@ok.test"), 20, "the other recipient delivered", srv)

            files = srv.wait_maildir("local.test", "alice", 1, timeout=20)
            # Several retry intervals later: still one bounce, no deferral,
            # no second DSN, nothing left in the queue for this message.
            time.sleep(3.5)
            expect(len(events(srv.data_dir, qid, "bounced")) == 1, "bounced once", srv)
            expect(not events(srv.data_dir, qid, "deferred"),
                   "never retried: %r" % events(srv.data_dir, qid), srv)
            expect(len(srv.maildir("local.test", "alice")) == 1,
                   "one DSN, got %d" % len(srv.maildir("local.test", "alice")), srv)
            expect(qid not in [m["id"] for m in srv.queue_list()], "message left the queue",
                   srv)
            expect(len(ok.messages) == 1, "one delivery to ok.test", srv)

            dsn = dsns(srv, "alice")[0]
            expect(dsn["From"] is not None, "DSN has a From", srv)
            blocks = delivery_status(dsn)
            expect(len(blocks) == 1, "one recipient reported: %r" % blocks, srv)
            r = blocks[0]
            expect(r.get("action", "").lower() == "failed", "Action %r" % r, srv)
            expect(r.get("status") == "5.1.10", "Status %r" % r, srv)
            expect("nobody@null.test" in r.get("final-recipient", ""),
                   "Final-Recipient %r" % r, srv)
            with open(files[0], "rb") as f:
                head = f.read(2000)
            expect(head.startswith(b"Return-Path: <>"), "DSN from the null sender: %r"
                   % head[:100], srv)
        expect(srv.proc.returncode == 0, "serve exit %r" % srv.proc.returncode, srv)
    print("ok")
finally:
    tmp.cleanup()
