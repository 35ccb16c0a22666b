#!/usr/bin/python3
"""Expiry: an MX that answers 451 to every attempt. After
--max-queue-lifetime the message gives up, the tracking store records
`expired`, and exactly one DSN reaches the (local) sender: Python's email
parser (policy=default) reads it as multipart/report with
message/delivery-status: Action failed, Status 4.4.7 (RFC 3463 3.5) or
5.x.x, Final-Recipient, and the original message or its headers."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (MX, delivery_status, dsns, events, expect, serve,  # noqa: E402
                            submit, wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "down.test": {"MX": [[10, "mx.down.test"]]},
    "mx.down.test": {"A": ["127.0.0.2"]},
}
BUSY = "451 4.3.2 system busy"

tmp = sktest.TempDir("sk-delivery-expiry-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.down.test", rcpt_script={"@down.test": [BUSY] * 100}) as mx:
        srv = serve(tmp, dns, port, retry="1s,2s", lifetime="6s")
        with srv:
            t0 = time.monotonic()
            qid = submit(srv, "alice@local.test", ["bob@down.test", "carol@down.test"],
                         "will expire")
            ex = wait_event(srv, qid, "expired", 2, timeout=40)
            took = time.monotonic() - t0
            expect(sorted(e["recipient"] for e in ex) == ["bob@down.test", "carol@down.test"],
                   "both recipients expired: %r" % ex, srv)
            expect(5 <= took <= 20, "expired after %.1fs (lifetime 6s)" % took, srv)
            deferred = events(srv.data_dir, qid, "deferred")
            expect(len(deferred) >= 4, "several attempts before expiry: %r" % deferred, srv)
            srv.wait_maildir("local.test", "alice", 1, timeout=20)
            # Give a duplicate time to appear.
            time.sleep(3)
            got = dsns(srv, "alice")
            expect(len(got) == 1, "exactly one DSN, got %d" % len(got), srv)
            expect(len(events(srv.data_dir, qid, "expired")) == 2, "expired recorded once each",
                   srv)
            expect(qid not in [m["id"] for m in srv.queue_list()], "message left the queue",
                   srv)
            expect(not mx.messages, "nothing was accepted by the MX", srv)

            dsn = got[0]
            expect("alice@local.test" in str(dsn["To"] or ""), "DSN To %r" % dsn["To"], srv)
            blocks = delivery_status(dsn)
            finals = sorted(b.get("final-recipient", "") for b in blocks)
            expect(len(blocks) == 2 and "bob@down.test" in finals[0] and
                   "carol@down.test" in finals[1], "one DSN for both: %r" % blocks, srv)
            for b in blocks:
                expect(b.get("final-recipient", "").lower().startswith("rfc822;"),
                       "Final-Recipient type %r" % b, srv)
                expect(b.get("action", "").lower() == "failed", "Action %r" % b, srv)
                st = b.get("status", "")
                expect(st == "4.4.7" or st.startswith("5."), "Status %r" % b, srv)
            parts = dsn.get_payload()
            expect(len(parts) == 3 and parts[2].get_content_type() in
                   ("message/rfc822", "text/rfc822-headers"),
                   "third part: %r" % [p.get_content_type() for p in parts], srv)
            expect("will expire" in parts[2].as_string(), "original headers returned", srv)
        expect(srv.proc.returncode == 0, "serve exit %r" % srv.proc.returncode, srv)
    print("ok")
finally:
    tmp.cleanup()
