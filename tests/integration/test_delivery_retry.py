#!/usr/bin/python3
"""Retries after a temporary failure: the MX answers 451 to the first two
attempts and 250 to the third. `smtpkit serve` defers, retries on the
--retry-schedule, delivers exactly once, and `smtpkit track --json` shows
deferred (attempt 1, 2, with the remote reply) then delivered (attempt 3)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import MX, events, expect, serve, submit, wait, wait_event  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "grey.test": {"MX": [[10, "mx.grey.test"]]},
    "mx.grey.test": {"A": ["127.0.0.2"]},
}
GREY = "451 4.3.0 temporary local problem, come back later"

tmp = sktest.TempDir("sk-delivery-retry-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.grey.test",
               rcpt_script={"bob@grey.test": [GREY, GREY]}) as mx:
        srv = serve(tmp, dns, port, retry="1s,2s")
        with srv:
            t0 = time.monotonic()
            qid = submit(srv, "alice@local.test", ["bob@grey.test"], "greylisted")
            d1 = wait_event(srv, qid, "deferred", 1)[0]
            expect(d1["attempt"] == 1 and d1["reply"] == GREY and "127.0.0.2" in
                   (d1["remote_host"] or ""), "first deferral %r" % d1, srv)
            q = [m for m in srv.queue_list() if m["id"] == qid]
            if q:  # unless the second attempt already ran
                expect(q[0]["state"] == "deferred" and q[0]["attempts"] >= 1 and
                       q[0]["last_reply"] == GREY, "queue entry %r" % q[0], srv)
            wait(lambda: mx.to("bob@grey.test"), 30, "delivery after the retries", srv)
            took = time.monotonic() - t0
            dl = wait_event(srv, qid, "delivered")[0]
            evs = [e for e in events(srv.data_dir, qid) if e["event"] in ("deferred",
                                                                          "delivered")]
            expect([(e["event"], e["attempt"]) for e in evs] ==
                   [("deferred", 1), ("deferred", 2), ("delivered", 3)],
                   "attempts in track: %r" % evs, srv)
            expect(dl["reply"].startswith("250"), "delivered reply %r" % dl, srv)
            # The schedule was followed: at least 1 s then 2 s between attempts.
            rc = [t for t, a, _ in mx.handler.rcpts if a == "bob@grey.test"]
            expect(len(rc) == 3, "three RCPTs for bob: %d" % len(rc), srv)
            expect(rc[1] - rc[0] >= 0.9 and rc[2] - rc[1] >= 1.9,
                   "waits between attempts %.2f, %.2f" % (rc[1] - rc[0], rc[2] - rc[1]), srv)
            expect(took < 20, "delivered in %.1fs" % took, srv)
            time.sleep(1)
            expect(len(mx.messages) == 1, "delivered once: %d" % len(mx.messages), srv)
            wait(lambda: not srv.queue_list(), 10, "queue empty", srv)
    print("ok")
finally:
    tmp.cleanup()
