#!/usr/bin/python3
"""`smtpkit serve` delivering by MX: the most preferred MX gets the mail
(RFC 5321 5.1: lowest preference first, whatever order DNS lists them in),
and when it refuses connections the next MX gets it in the same attempt."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import MX, expect, events, serve, submit, wait, wait_event  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

# 127.0.0.3: nobody listens there (connection refused).
ZONE = {
    "order.test": {"MX": [[20, "mx2.order.test"], [10, "mx1.order.test"]]},
    "mx1.order.test": {"A": ["127.0.0.2"]},
    "mx2.order.test": {"A": ["127.0.0.1"]},
    "fallback.test": {"MX": [[10, "dead.fallback.test"], [20, "mx.fallback.test"]]},
    "dead.fallback.test": {"A": ["127.0.0.3"]},
    "mx.fallback.test": {"A": ["127.0.0.4"]},
}

tmp = sktest.TempDir("sk-delivery-order-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, MX("127.0.0.1", port, "mx2.order.test") as low, \
            MX("127.0.0.2", port, "mx1.order.test") as best, \
            MX("127.0.0.4", port, "mx.fallback.test") as backup:
        srv = serve(tmp, dns, port)
        with srv:
            q1 = submit(srv, "alice@local.test", ["bob@order.test"], "preferred")
            q2 = submit(srv, "alice@local.test", ["carol@fallback.test"], "fallback")
            wait(lambda: best.to("bob@order.test") and backup.to("carol@fallback.test"), 30,
                 "both messages at their MX", srv)
            expect(not low.messages, "nothing went to the less preferred MX", srv)
            got = best.to("bob@order.test")[0]
            expect(got["mail_from"] == "alice@local.test", "sender %r" % got["mail_from"], srv)
            expect(b"Subject: preferred" in got["data"], "the message itself arrived", srv)
            # Tracked: delivered on the first attempt, by the host that took it.
            d1 = wait_event(srv, q1, "delivered")[0]
            expect(d1["attempt"] == 1 and "127.0.0.2" in (d1["remote_host"] or ""),
                   "q1 delivered event %r" % d1, srv)
            d2 = wait_event(srv, q2, "delivered")[0]
            expect(d2["attempt"] == 1 and "127.0.0.4" in (d2["remote_host"] or ""),
                   "fallback in the same attempt: %r" % d2, srv)
            expect(not events(srv.data_dir, q2, "deferred"), "no deferral", srv)
            wait(lambda: not srv.queue_list(), 10, "queue empty", srv)
        expect(srv.proc.returncode == 0, "serve exit %r" % srv.proc.returncode, srv)
    print("ok")
finally:
    tmp.cleanup()
