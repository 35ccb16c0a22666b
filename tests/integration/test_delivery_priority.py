#!/usr/bin/python3
"""Priority within a destination (RFC 6710): 1,000 bulk messages wait for a
destination held to 20 messages a second (--rate-limit); a message sent
after them with MT-PRIORITY=5 is among the first delivered once it is
queued (at most a few in-flight bulk messages before it), not behind the
backlog; so is one whose sender has a --priority rule."""

import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (HOST, MX, expect, finish, serve, source, submit,  # noqa: E402
                            wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "prio.test": {"MX": [[10, "mx.prio.test"]]},
    "mx.prio.test": {"A": ["127.0.0.2"]},
}
BULK = 1000
# Jobs already started when the urgent message is queued may finish first:
# at most the destination's connections (8 by default) and a margin.
MAX_AHEAD = 12

tmp = sktest.TempDir("sk-delivery-priority-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.prio.test") as mx:
        srv = serve(tmp, dns, port, "--rate-limit", "prio.test=20/s",
                    "--priority", "ops@local.test=5")
        with srv:
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.ehlo("client.test")
                expect(s.has_extn("mt-priority"), "MT-PRIORITY announced: %r" % s.esmtp_features,
                       srv)
            finish(source(srv, BULK, "bulk@local.test", "list@prio.test", sessions=20), 120,
                   "smtp-source", srv)
            before = len(mx.messages)
            expect(BULK - before >= BULK // 2,
                   "a backlog remains when the urgent message comes (%d delivered)" % before,
                   srv)
            qid = submit(srv, "alerts@local.test", ["oncall@prio.test"], "urgent",
                         mail_options=["MT-PRIORITY=5"])
            # Count from its 250: the bulk messages delivered while the
            # submission itself took its time (a loaded machine) were not
            # waiting behind it.
            before = len(mx.messages)
            wait(lambda: mx.to("oncall@prio.test"), 40, "the urgent message delivered", srv)
            msgs = mx.messages
            pos = [i for i, m in enumerate(msgs) if "oncall@prio.test" in m["rcpt_tos"]][0]
            ahead = pos - before
            expect(ahead <= MAX_AHEAD, "%d bulk messages went before the urgent one "
                   "(of %d waiting)" % (ahead, BULK - before), srv)
            expect(len(msgs) < BULK, "the backlog was not simply drained first", srv)
            d = wait_event(srv, qid, "delivered")[0]
            expect(d["attempt"] == 1, "urgent delivered on its first attempt: %r" % d, srv)
            print("urgent message delivered after %d of %d waiting bulk messages"
                  % (ahead, BULK - before))

            # The same through a --priority rule for the sender, without
            # MT-PRIORITY from the client.
            before2 = len(mx.messages)
            expect(BULK - before2 >= BULK // 4, "still a backlog (%d delivered)" % before2, srv)
            qid2 = submit(srv, "ops@local.test", ["oncall2@prio.test"], "urgent by rule")
            before2 = len(mx.messages)
            wait(lambda: mx.to("oncall2@prio.test"), 40, "the rule's message delivered", srv)
            pos2 = [i for i, m in enumerate(mx.messages) if "oncall2@prio.test" in m["rcpt_tos"]][0]
            expect(pos2 - before2 <= MAX_AHEAD, "%d bulk messages went before the message "
                   "prioritised by rule" % (pos2 - before2), srv)
            wait_event(srv, qid2, "delivered")
    print("ok")
finally:
    tmp.cleanup()
