#!/usr/bin/python3
"""`queued` is recorded once per recipient, when the message is committed,
never again when a restarted daemon reloads it from the spool: a held
message survives a SIGTERM restart and a kill -9 restart, is released and
delivered by the third daemon, and `smtpkit track ID --json` shows exactly
one received, one queued and one delivered per recipient, in that order.
The delivered events come from the last daemon, so tracking after a reload
is seen to work."""

import json
import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import Serve, expect, message  # noqa: E402

RCPTS = ["bob@localhost", "carol@localhost"]


def track(data_dir, qid, written=True):
    """The events of qid; with written=False, [] while none is written yet
    (the store is written in batches: docs/tracking.md)."""
    r = sktest.smtpkit("track", "--data-dir", data_dir, qid, "--json", timeout=30)
    if r.returncode == 69 and not written:
        return []
    expect(r.returncode == 0, "track %s: %d %s" % (qid, r.returncode, r.stderr))
    return json.loads(r.stdout)["events"]


def kinds(events, kind):
    return [e["recipient"] for e in events if e["event"] == kind]


def main():
    with sktest.TempDir() as tmp:
        data = tmp.join("data")
        args = ["--local-domain", "localhost", "--hold"]
        srv = Serve(tmp, args=args, data_dir=data, name="first").start()
        try:
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=10) as c:
                c.sendmail("alice@example.org", RCPTS, message("restart", to=RCPTS[0]))
            q = srv.queue_list(at_least=1)
            expect(len(q) == 1, "the message in the queue: %r" % q, srv)
            qid = q[0]["id"]
            sktest.wait_for(lambda: len(kinds(track(data, qid, False), "queued")) == 2, timeout=10,
                            what="queued events written")
            expect(srv.stop() == 0, "first daemon exits 0", srv)

            srv = Serve(tmp, args=args, data_dir=data, name="second").start()
            sktest.wait_for(lambda: "queue started messages=1" in srv.log(), timeout=10,
                            what="second daemon loaded the message")
            srv.kill9()

            srv = Serve(tmp, args=args, data_dir=data, name="third").start()
            sktest.wait_for(lambda: "queue started messages=1" in srv.log(), timeout=10,
                            what="third daemon loaded the message")
            sktest.smtpkit("queue", "--data-dir", data, "release", qid, check_rc=0, timeout=30)
            for r in RCPTS:
                srv.wait_maildir("localhost", r.split("@")[0])
            sktest.wait_for(lambda: len(kinds(track(data, qid), "delivered")) == 2, timeout=10,
                            what="delivered events written")
            expect(srv.stop() == 0, "third daemon exits 0", srv)
        finally:
            srv.stop()

        events = track(data, qid)
        expect(len(kinds(events, "received")) == 1, "one received: %r" % events)
        for r in RCPTS:
            for kind in ("queued", "delivered"):
                n = kinds(events, kind).count(r)
                expect(n == 1, "%d %s events for %s: %r" % (n, kind, r, events))
        order = [e["event"] for e in events]
        expect(order.index("received") < order.index("queued") and
               max(i for i, k in enumerate(order) if k == "queued") <
               order.index("delivered"), "event order: %r" % order)
        expect(len(events) == 5, "no other events: %r" % events)
    print("ok")


if __name__ == "__main__":
    main()
