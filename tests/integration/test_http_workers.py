#!/usr/bin/python3
"""The HTTP API's SQLite work runs on its worker threads, not on the event
loop (docs/http-api.md "SQLite off the loop"). Another process holds the
write lock of http.db or of track.db, so that the request needing it
waits: meanwhile the loop answers the others at once. Two requests with
the same Idempotency-Key at once: the second gets 409 while the first is
answered, the first's answer is replayed afterwards, one message is
queued. A server stopped while an answer waits to be kept finishes
keeping it: after a restart the key replays it."""

import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402
from http_client import call, in_thread, make_key  # noqa: E402

tmp = sktest.TempDir("sk-httpw-")

# How long track.db's lock is held: well past what a loop answer takes,
# within its busy timeout (2 s), so the waiting request succeeds.
HOLD_S = 1.2
# An answer from a loop that is not blocked, with room for a loaded machine.
QUICK_S = 1.5


class Locker:
    """A write transaction on a SQLite file, held until release()."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self):
        if self.db:
            self.db.execute("ROLLBACK")
            self.db.close()
            self.db = None


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def wait_log(srv, text, count=1):
    sktest.wait_for(lambda: srv.log().count(text) >= count, timeout=15,
                    what="%r in the log" % text)


try:
    data = tmp.join("data")
    key = make_key(data, "k", "admin")["key"]
    hport = sktest.free_port(HOST)
    srv = Serve(tmp, data_dir=data, args=["--hold", "--local-domain", "localhost",
                                          "--http", "%s:%d" % (HOST, hport)])
    msg = {"from": "a@example.org", "to": ["once@localhost"], "text": "once\n"}
    hdr = {"Idempotency-Key": "same-key"}
    with srv:
        # The answer to keep waits for http.db's lock; the loop goes on.
        lock = Locker(os.path.join(data, "http.db"))
        a, aout = in_thread(call, hport, "POST", "/v1/messages", msg, key=key, headers=hdr)
        wait_log(srv, " http queued ")
        (st, doc, _), took = timed(call, hport, "POST", "/v1/messages", msg, key=key, headers=hdr)
        expect(st == 409 and doc["error"]["code"] == "idempotency_key_in_use" and
               doc["error"]["field"] == "Idempotency-Key",
               "same key while the first is answered: %d %r" % (st, doc), srv)
        expect(took < QUICK_S, "409 took %.2fs: the loop waited for http.db" % took, srv)
        (st, doc, _), took = timed(call, hport, "GET", "/v1/health")
        expect(st == 200 and took < QUICK_S, "health: %d after %.2fs" % (st, took), srv)
        expect(a.is_alive(), "the first answer was sent before it was kept", srv)
        lock.release()
        a.join(15)
        expect("r" in aout and aout["r"][0] == 202, "first: %r" % aout, srv)
        first = aout["r"][1]
        st, doc, r = call(hport, "POST", "/v1/messages", msg, key=key, headers=hdr)
        expect(st == 202 and doc == first and r.getheader("Idempotent-Replayed") == "true",
               "replay: %d %r" % (st, doc), srv)
        expect(len(srv.queue_list(at_least=1)) == 1, "queued more than once", srv)

        # A suppression change waits for track.db's lock; the loop goes on.
        lock = Locker(os.path.join(data, "track.db"))
        p, pout = in_thread(call, hport, "PUT", "/v1/suppressions/x@example.net",
                            {"reason": "test"}, key=key)
        time.sleep(0.2)
        t0 = time.monotonic()
        (st, doc, _), took = timed(call, hport, "GET", "/v1/health")
        expect(st == 200 and took < QUICK_S, "health with track.db locked: %d after %.2fs" %
               (st, took), srv)
        (st, doc, _), took = timed(call, hport, "GET", "/v1/queue", key=key)
        expect(st == 200 and took < QUICK_S, "queue with track.db locked: %d after %.2fs" %
               (st, took), srv)
        expect(p.is_alive(), "the suppression was answered while track.db was locked", srv)
        time.sleep(max(0.0, HOLD_S - 0.2 - (time.monotonic() - t0)))
        lock.release()
        p.join(15)
        expect("r" in pout and pout["r"][0] == 200 and
               pout["r"][1]["address"] == "x@example.net", "suppression: %r" % pout, srv)
        st, doc, _ = call(hport, "GET", "/v1/suppressions/x@example.net", key=key)
        expect(st == 200 and doc["reason"] == "test", "suppression read: %d %r" % (st, doc), srv)

        # Stopped while an answer waits to be kept: it is kept all the same.
        lock = Locker(os.path.join(data, "http.db"))
        msg2 = dict(msg, to=["twice@localhost"])
        hdr2 = {"Idempotency-Key": "during-stop"}
        s, sout = in_thread(call, hport, "POST", "/v1/messages", msg2, key=key, headers=hdr2)
        wait_log(srv, " http queued ", 2)
        srv.proc.send_signal(15)
        time.sleep(1.0)
        lock.release()
        rc = srv.proc.wait(timeout=20)
        expect(rc == 0, "exit status %r after SIGTERM" % rc, srv)
        s.join(15)
        answered = sout.get("r")
        expect(answered is None or answered[0] == 202, "answer at stop: %r" % sout, srv)
    with srv:
        st, doc, r = call(hport, "POST", "/v1/messages", msg2, key=key, headers=hdr2)
        expect(st == 202 and r.getheader("Idempotent-Replayed") == "true",
               "kept during the stop: %d %r" % (st, doc), srv)
        if answered:
            expect(doc == answered[1], "replayed %r, first %r" % (doc, answered[1]), srv)
        ids = [m["id"] for m in srv.queue_list(at_least=2)]
        expect(len(ids) == 2, "queue: %r" % ids, srv)
        expect("workers-stop-timeout" not in srv.log(), "a job outlived the stop", srv)
    print("ok")
finally:
    tmp.cleanup()
