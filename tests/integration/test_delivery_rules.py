#!/usr/bin/python3
"""A reply-text rule in a --rules file (text=/try again later/
action=suspend:30s) suspends only the destination whose reply matched: no
more connections to it, its second message waits untried, while another
destination that answered a plain 451 is retried on the schedule and
delivered."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (MX, events, expect, rules_file, serve, submit, wait,  # noqa: E402
                            wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "big.test": {"MX": [[10, "mx.big.test"]]},
    "mx.big.test": {"A": ["127.0.0.2"]},
    "small.test": {"MX": [[10, "mx.small.test"]]},
    "mx.small.test": {"A": ["127.0.0.3"]},
}
LATER = "451 4.3.0 Temporarily deferred, please try again later"

tmp = sktest.TempDir("sk-delivery-rules-")
try:
    port = sktest.free_port()
    rules = rules_file(tmp, first=["class=throttled code=4xx text=/try again later/ "
                                   "action=suspend:30s"])
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.big.test", rcpt_script={"@big.test": [LATER]}) as big, \
            MX("127.0.0.3", port, "mx.small.test",
               rcpt_script={"@small.test": ["451 4.3.0 local problem"]}) as small:
        srv = serve(tmp, dns, port, "--rules", rules, retry="1s")
        with srv:
            q1 = submit(srv, "alice@local.test", ["a@big.test"], "big one")
            q2 = submit(srv, "alice@local.test", ["a@small.test"], "small one")
            d = wait_event(srv, q1, "deferred")[0]
            expect(d["reply"] == LATER and d["class"] == "throttled",
                   "matched the rule: %r" % d, srv)
            conns = len(big.conn_times)
            q3 = submit(srv, "alice@local.test", ["b@big.test"], "big two")
            # small.test: deferred, retried after 1 s, delivered.
            wait(lambda: small.to("a@small.test"), 15, "small.test retried and delivered", srv)
            expect(wait_event(srv, q2, "delivered")[0]["attempt"] == 2, "small.test attempt 2",
                   srv)
            # big.test: several retry periods later, still untouched.
            time.sleep(4)
            expect(len(big.conn_times) == conns,
                   "no connection to the suspended destination (%d new)"
                   % (len(big.conn_times) - conns), srv)
            expect(not big.messages, "nothing delivered to big.test", srv)
            expect(len(events(srv.data_dir, q1, "deferred")) == 1,
                   "q1 not retried during the suspension: %r" % events(srv.data_dir, q1), srv)
            expect(not [e for e in events(srv.data_dir, q3)
                        if e["event"] in ("deferred", "delivered", "bounced")],
                   "q3 not tried: %r" % events(srv.data_dir, q3), srv)
            left = sorted(m["id"] for m in srv.queue_list())
            expect(left == sorted([q1, q3]), "big.test's messages wait: %r" % left, srv)
    print("ok")
finally:
    tmp.cleanup()
