#!/usr/bin/python3
"""A restart in the middle of retries keeps the schedule and the attempt
count: after two failed attempts the server is stopped (SIGTERM) and
started again on the same data directory; `smtpkit queue list --json`
shows the same attempts and next_attempt before, while stopped and after,
the next attempt does not come before next_attempt, and the delivery is
recorded as attempt 3."""

import calendar
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (MX, expect, queue_entry, serve, submit, wait,  # noqa: E402
                            wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "later.test": {"MX": [[10, "mx.later.test"]]},
    "mx.later.test": {"A": ["127.0.0.2"]},
}
TEMP = "451 4.3.0 try later"


def epoch(rfc3339):
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


tmp = sktest.TempDir("sk-delivery-restart-")
try:
    port = sktest.free_port()
    data = tmp.join("data")
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.later.test", rcpt_script={"bob@later.test": [TEMP, TEMP]}
               ) as mx:
        srv = serve(tmp, dns, port, retry="1s,8s", data_dir=data, name="first")
        srv.start()
        try:
            qid = submit(srv, "alice@local.test", ["bob@later.test"], "restart")
            wait_event(srv, qid, "deferred", 2, timeout=20)
            before = wait(lambda: (queue_entry(srv, qid) or {}).get("attempts") == 2 and
                          queue_entry(srv, qid), 10, "attempts 2 in the queue", srv)
        finally:
            rc = srv.stop()
        expect(rc == 0, "first server exit %r" % rc, srv)
        expect(before["state"] == "deferred" and before["next_attempt"],
               "deferred with a next attempt: %r" % before, srv)
        stopped = queue_entry(srv, qid)
        expect(stopped and stopped["attempts"] == 2 and
               stopped["next_attempt"] == before["next_attempt"],
               "on disk while stopped: %r vs %r" % (stopped, before), srv)

        srv2 = serve(tmp, dns, port, retry="1s,8s", data_dir=data, name="second")
        with srv2:
            after = queue_entry(srv2, qid)
            if not mx.to("bob@later.test"):
                expect(after and after["attempts"] == 2 and
                       after["next_attempt"] == before["next_attempt"] and
                       after["state"] == "deferred",
                       "after restart: %r vs %r" % (after, before), srv2)
            wait(lambda: mx.to("bob@later.test"), 30, "delivery after the restart", srv2)
            got = mx.to("bob@later.test")[0]
            expect(got["wall"] >= epoch(before["next_attempt"]) - 1.0,
                   "third attempt at %.1f, not before next_attempt %s (%d)"
                   % (got["wall"], before["next_attempt"], epoch(before["next_attempt"])), srv2)
            d = wait_event(srv2, qid, "delivered")[0]
            expect(d["attempt"] == 3, "delivered as attempt 3: %r" % d, srv2)
            rc_tries = [a for _t, a, _r in mx.handler.rcpts if a == "bob@later.test"]
            expect(len(rc_tries) == 3, "three attempts in all: %d" % len(rc_tries), srv2)
            wait(lambda: not srv2.queue_list(), 10, "queue empty", srv2)
    print("ok")
finally:
    tmp.cleanup()
