#!/usr/bin/python3
"""Crash safety of `smtpkit serve`: parallel clients send messages, the
server is killed with SIGKILL mid-stream and restarted on the same data
directory; every message that got a 250 ends up in the Maildir exactly
once and readable, and nothing else is duplicated."""

import email
import email.policy
import os
import re
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402

CLIENTS = 8
RUN_SECONDS = 2.0
TOKEN = re.compile(rb"token-(\d+)-(\d+)")

tmp = sktest.TempDir("sk-serve-crash-")
try:
    srv = Serve(tmp, name="before")
    srv.start()
    acked = set()      # tokens that got 250
    attempted = set()  # tokens whose DATA was sent
    lock = threading.Lock()
    stop = threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            try:
                with smtplib.SMTP(HOST, srv.port, timeout=10) as s:
                    s.ehlo("client%d.test" % n)
                    while not stop.is_set():
                        i += 1
                        tok = "token-%d-%d" % (n, i)
                        m = message(tok, "body %s\r\n%s\r\n" % (tok, "y" * (i % 7 * 300)),
                                    to="box%d@localhost" % (n % 3))
                        with lock:
                            attempted.add(tok)
                        s.sendmail("alice@example.org", ["box%d@localhost" % (n % 3)], m)
                        with lock:
                            acked.add(tok)
            except (smtplib.SMTPException, OSError):
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=15)
    expect(len(acked) > 20, "enough messages acknowledged before the kill: %d" % len(acked), srv)
    with lock:
        acked_now = set(acked)

    after = Serve(tmp, name="after", data_dir=srv.data_dir)
    with after:
        # Wait until the queue has delivered everything it holds.
        def drained():
            q = after.queue_list()
            return len(q) == 0
        try:
            sktest.wait_for(drained, timeout=40, interval=0.2, what="queue drained")
        except TimeoutError as e:
            sktest.fail("%s: %r\n%s" % (e, after.queue_list()[:3], after.log()[-3000:]))
    expect(after.proc.returncode == 0,
           "restarted server exits 0, not %r" % after.proc.returncode, after)

    seen = {}
    for box in range(3):
        for path in after.maildir("localhost", "box%d" % box):
            with open(path, "rb") as f:
                data = f.read()
            msg = email.message_from_bytes(data, policy=email.policy.default)
            subject = msg["Subject"]
            body = msg.get_body().get_content() if msg.get_body() else ""
            expect(subject and subject.startswith("token-"), "readable message %s" % path)
            expect(("body %s" % subject) in body, "body matches subject in %s" % path)
            seen[subject] = seen.get(subject, 0) + 1
    missing = sorted(acked_now - set(seen))
    dups = sorted(t for t, c in seen.items() if c > 1)
    unknown = sorted(set(seen) - attempted)
    expect(not missing, "%d acknowledged messages lost: %r" % (len(missing), missing[:10]), after)
    expect(not dups, "messages delivered twice: %r" % dups[:10], after)
    expect(not unknown, "messages nobody sent: %r" % unknown[:10])
    print("ok: %d acknowledged, %d delivered, %d sent without reply" %
          (len(acked_now), len(seen), len(attempted) - len(acked_now)))
finally:
    tmp.cleanup()
