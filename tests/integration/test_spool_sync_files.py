#!/usr/bin/python3
"""`smtpkit serve --spool-sync files`: messages from parallel sessions are
made durable per file (fdatasync of each message file, one directory fsync
per group) instead of with syncfs. Every accepted message is one file in
the spool, survives a restart, and arrives byte for byte once released."""

import os
import smtplib
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, expect_held_then_delivered, message  # noqa: E402

SESSIONS = 4
PER_SESSION = 5
N = SESSIONS * PER_SESSION

tmp = sktest.TempDir("sk-spool-files-")
try:
    data = tmp.join("data")
    args = ["--spool-sync", "files", "--local-domain", "localhost"]
    sent = {}
    errors = []

    def session(k):
        try:
            with smtplib.SMTP(HOST, srv.port, timeout=30) as c:
                for i in range(PER_SESSION):
                    subject = "files-%d-%d" % (k, i)
                    text = message(subject, body="body of %s\r\n" % subject)
                    c.sendmail("alice@example.org", ["bob@localhost"], text)
                    sent[subject] = text
        except Exception as e:  # reported below, with the server log
            errors.append("session %d: %r" % (k, e))

    srv = Serve(tmp, data_dir=data, args=args + ["--hold"])
    with srv:
        threads = [threading.Thread(target=session, args=(k,)) for k in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        expect(not errors, "every message accepted: %r" % errors, srv)
        expect(len(sent) == N, "%d messages sent, got %d" % (N, len(sent)), srv)
        names = sorted(os.listdir(os.path.join(data, "spool", "msg")))
        expect(len(names) == N and all(n.endswith(".msg") for n in names),
               "one file per accepted message: %r" % names, srv)
        expect(srv.stop() == 0, "serve exits 0 on SIGTERM", srv)

    # Restarted (no --hold): the held messages are still there, and each is
    # delivered once released.
    srv = Serve(tmp, data_dir=data, args=args, name="again")
    with srv:
        expect_held_then_delivered(srv, data, sent)
    print("ok: %d messages, --spool-sync files" % N)
finally:
    tmp.cleanup()
