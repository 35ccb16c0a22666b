#!/usr/bin/python3
"""`smtpkit serve` with the spool's journal (the default, --spool-sync log):
every 250 is backed by a record in DATA-DIR/spool/journal until a
checkpoint. A machine crash can lose message files written after their
250; this test makes that loss by hand after a kill -9 (some files deleted,
some cut in half, while their records are still live) and checks that the
restarted daemon writes them all back byte for byte from the journal, and
that they are then delivered once each."""

import os
import re
import signal
import smtplib
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, expect_held_then_delivered, message  # noqa: E402

SESSIONS = 3
PER_SESSION = 10
N = SESSIONS * PER_SESSION
LOST, TORN = 10, 5

tmp = sktest.TempDir("sk-spool-journal-")
try:
    data = tmp.join("data")
    msgdir = os.path.join(data, "spool", "msg")
    args = ["--local-domain", "localhost"]
    sent = {}
    errors = []

    def session(k):
        try:
            with smtplib.SMTP(HOST, srv.port, timeout=30) as c:
                for i in range(PER_SESSION):
                    subject = "journal-%d-%d" % (k, i)
                    text = message(subject, body="body of %s\r\n%s\r\n" % (subject, "j" * 300 * i))
                    c.sendmail("alice@example.org", ["bob@localhost"], text)
                    sent[subject] = text
        except Exception as e:  # reported below, with the server log
            errors.append("session %d: %r" % (k, e))

    def files():
        return sorted(n for n in os.listdir(msgdir) if n.endswith(".msg"))

    srv = Serve(tmp, data_dir=data, args=args + ["--hold"])
    with srv:
        threads = [threading.Thread(target=session, args=(k,)) for k in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        expect(not errors, "every message accepted: %r" % errors, srv)
        expect(os.path.getsize(os.path.join(data, "spool", "journal")) > 0, "a journal", srv)
        # Files are written just after each 250, by another thread, under
        # their final names: wait until each ends with its trailer (the
        # last thing written, docs/queue.md "Message file"), so that the
        # copies taken below are whole.
        trailer = re.compile(rb"smtpkit-envelope-at \d{15}\n\Z")

        def complete():
            names = files()
            if len(names) != N:
                return False
            for n in names:
                with open(os.path.join(msgdir, n), "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 64))
                    if not trailer.search(f.read()):
                        return False
            return True

        sktest.wait_for(complete, timeout=10)
        names = files()
        expect(len(names) == N, "one file per accepted message: %r" % names, srv)
        before = {}
        for n in names:
            with open(os.path.join(msgdir, n), "rb") as f:
                before[n] = f.read()
        # No checkpoint since (held, far from filling the journal): every
        # record is live. The process dies; then the "crash" takes files.
        srv.stop(signal.SIGKILL)

    for n in names[:LOST]:
        os.unlink(os.path.join(msgdir, n))
    for n in names[LOST:LOST + TORN]:
        os.truncate(os.path.join(msgdir, n), len(before[n]) // 2)

    srv = Serve(tmp, data_dir=data, args=args, name="again")
    with srv:
        expect("journal replayed records=%d rewritten=%d removed=0" % (N, LOST + TORN)
               in srv.log(), "the journal wrote back the lost and torn files", srv)
        now = {}
        for n in files():
            with open(os.path.join(msgdir, n), "rb") as f:
                now[n] = f.read()
        expect(now == before, "every message file back byte for byte", srv)
        expect_held_then_delivered(srv, data, sent)
        expect(srv.stop() == 0, "serve exits 0 on SIGTERM", srv)
    # A clean stop ends with a checkpoint: nothing to replay next time.
    srv = Serve(tmp, data_dir=data, args=args, name="third")
    with srv:
        expect("journal replayed" not in srv.log(), "nothing replayed after a clean stop", srv)
    print("ok: %d messages, %d lost and %d torn files written back" % (N, LOST, TORN))
finally:
    tmp.cleanup()
