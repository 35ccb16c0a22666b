#!/usr/bin/python3
"""Backoff on 421 (RFC 5321 4.2.3): a destination that answers 421 is
suspended for --throttle-suspend (4 s here; the rules file has its 421
rule without an action, so the option decides): no new connection to it
during the suspension, its queued mail goes afterwards, and another domain
is delivered meanwhile as usual."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (MX, events, expect, rules_file, serve, submit, wait,  # noqa: E402
                            wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "busy.test": {"MX": [[10, "mx.busy.test"]]},
    "mx.busy.test": {"A": ["127.0.0.2"]},
    "calm.test": {"MX": [[10, "mx.calm.test"]]},
    "mx.calm.test": {"A": ["127.0.0.3"]},
}
SUSPEND = 4.0
BUSY = "421 4.3.2 service busy, closing"

tmp = sktest.TempDir("sk-delivery-backoff-")
try:
    port = sktest.free_port()
    rules = rules_file(tmp, first=["class=throttled code=421"],
                       drop=["class=throttled code=421 action=suspend:2m"])
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.busy.test", rcpt_script={"@busy.test": [BUSY]}) as busy, \
            MX("127.0.0.3", port, "mx.calm.test") as calm:
        srv = serve(tmp, dns, port, "--rules", rules, "--throttle-suspend", "4s",
                    retry="1s")
        with srv:
            q1 = submit(srv, "alice@local.test", ["a@busy.test"], "first")
            wait_event(srv, q1, "deferred")
            t_421 = [t for t, _a, r in busy.handler.rcpts if r.startswith("421")][0]
            conns_then = len(busy.conn_times)
            # During the suspension: more mail for both domains.
            q2 = submit(srv, "alice@local.test", ["b@busy.test"], "second")
            q3 = submit(srv, "alice@local.test", ["c@calm.test"], "other domain")
            wait(lambda: calm.to("c@calm.test"), 10, "calm.test delivered meanwhile", srv)
            t_calm = calm.to("c@calm.test")[0]["time"]
            expect(t_calm - t_421 < SUSPEND - 0.5,
                   "calm.test not held by busy.test's suspension (%.1fs after the 421)"
                   % (t_calm - t_421), srv)
            wait(lambda: len(busy.to("a@busy.test")) + len(busy.to("b@busy.test")) >= 2, 20,
                 "busy.test delivered after the suspension", srv)
            during = [t for t in busy.conn_times if t_421 < t < t_421 + SUSPEND - 0.3]
            expect(not during, "connections during the suspension at %r s after the 421"
                   % [round(t - t_421, 2) for t in during], srv)
            after = [t for t, _a, _r in busy.handler.rcpts if t > t_421]
            expect(after and min(after) - t_421 >= SUSPEND - 0.3,
                   "busy.test tried again %.2fs after the 421 (suspended %.0fs)"
                   % (min(after) - t_421, SUSPEND), srv)
            expect(min(after) - t_421 < SUSPEND + 4, "resumed in time", srv)
            expect(len(busy.conn_times) > conns_then, "a new connection after the suspension",
                   srv)
            d1 = wait_event(srv, q1, "delivered")[0]
            d2 = wait_event(srv, q2, "delivered")[0]
            expect(d1["attempt"] == 2, "the 421 cost q1 one attempt: %r" % d1, srv)
            expect(d2["attempt"] == 1 and not events(srv.data_dir, q2, "deferred"),
                   "q2 waited without being charged an attempt: %r"
                   % events(srv.data_dir, q2), srv)
            expect("throttled" in srv.log(), "the suspension is logged", srv)
    print("ok")
finally:
    tmp.cleanup()
