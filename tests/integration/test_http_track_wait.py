#!/usr/bin/python3
"""A read of events over HTTP waits for the events recorded before it on an
API worker thread, not on the event loop (docs/http-api.md "SQLite off the
loop"). Another process holds track.db's write lock, so the tracking
writer cannot write the pending event of a message just received; a
GET /v1/events then waits for it. Meanwhile an SMTP session to the same
daemon gets its banner and a NOOP answer (judged by order: the replies come
while the HTTP request is still unanswered). Once the lock is released the
HTTP answer includes the event."""

import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402
from http_client import call, in_thread, make_key  # noqa: E402

tmp = sktest.TempDir("sk-httptw-")

# How long the SMTP replies may take while the lock is held. The whole
# hold (message, request, SMTP session) must stay within the tracking
# writer's busy timeout (2 s, docs/tracking.md): past it the writer reports
# a failure and the read answers from what is written, without the event.
SMTP_WAIT_S = 1.2


try:
    data = tmp.join("data")
    key = make_key(data, "k", "admin")["key"]
    hport = sktest.free_port(HOST)
    srv = Serve(tmp, data_dir=data, args=["--hold", "--local-domain", "localhost",
                                          "--http", "%s:%d" % (HOST, hport)])
    with srv:
        # The store exists and the API's worker connections are open.
        for _ in range(4):
            st, doc, _ = call(hport, "GET", "/v1/events", key=key)
            expect(st == 200, "events before: %d %r" % (st, doc), srv)
        before = len(doc["events"])

        # Another process holds track.db's write lock.
        lock = sqlite3.connect(os.path.join(data, "track.db"), timeout=10, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        released = False
        try:
            # A message: its received event is pending in the daemon.
            c = sktest.SMTPClient(srv.port, timeout=5)
            c.cmd("EHLO client.test")
            expect(c.cmd("MAIL FROM:<a@example.org>")[0] == 250, "MAIL", srv)
            expect(c.cmd("RCPT TO:<bob@localhost>")[0] == 250, "RCPT", srv)
            expect(c.cmd("DATA")[0] == 354, "DATA", srv)
            st, lines = c.cmd(message("tw-pending") + ".")
            expect(st == 250, "DATA end: %d %r" % (st, lines), srv)
            c.cmd("QUIT")
            c.close()

            # The read waits for that event (the writer waits for the lock).
            h, hout = in_thread(call, hport, "GET", "/v1/events?limit=1000", key=key)
            # Time for the loop to take the request (before the change it
            # then waited there for the writer, up to the busy timeout).
            time.sleep(0.3)
            # Meanwhile the loop answers SMTP.
            got = {}
            try:
                s = sktest.SMTPClient(srv.port, timeout=SMTP_WAIT_S)
                got["banner"] = s.banner[0]
                got["noop"] = s.cmd("NOOP")[0]
                s.cmd("QUIT")
                s.close()
            except OSError as e:
                got["error"] = repr(e)
            waiting = h.is_alive()
            expect(got.get("banner") == 220 and got.get("noop") == 250,
                   "SMTP while an HTTP read waits for the tracking writer: %r" % got, srv)
            expect(waiting, "the HTTP read was answered before the lock was released: %r" % hout,
                   srv)
            lock.execute("ROLLBACK")
            released = True
        finally:
            if not released:
                lock.execute("ROLLBACK")
            lock.close()
        h.join(15)
        expect("r" in hout, "the HTTP read: %r" % hout, srv)
        st, doc, _ = hout["r"]
        expect(st == 200, "events: %d %r" % (st, doc), srv)
        received = [e for e in doc["events"] if e["event"] == "received" and
                    (e["message_id"] or "").startswith("tw-pending.")]
        expect(len(doc["events"]) > before and received,
               "the pending event is not in the answer: %r" % doc, srv)
        expect("track-flush-failed" not in srv.log(), "the wait failed", srv)
    print("ok")
finally:
    tmp.cleanup()
