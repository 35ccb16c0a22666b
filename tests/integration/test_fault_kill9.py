#!/usr/bin/python3
"""kill -9 at random instants under load, five times in a row on the same
data directory (each restart also recovers and delivers what the previous
one left, so kills land in reception, commit, recovery and delivery alike).
Afterwards every message that got a 250 is in its Maildir exactly once and
readable, nothing unsent appears, and the spool is empty and consistent
(`smtpkit queue list` reads it). SK_FAULT_SPOOL_SYNC=fs or files runs the
daemon with --spool-sync fs (one syncfs per group) or files (fdatasync per
file) instead of the journal (test_fault_kill9_fs does the first)."""

import email
import email.policy
import os
import random
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402

ROUNDS = 5
CLIENTS = 6
BOXES = 3

rng = random.Random(os.environ.get("SK_FAULT_SEED") or time.time_ns())
SPOOL_SYNC = os.environ.get("SK_FAULT_SPOOL_SYNC")
SERVE_ARGS = ["--spool-sync", SPOOL_SYNC] if SPOOL_SYNC else []
tmp = sktest.TempDir("sk-fault-kill9-")
acked, attempted = set(), set()
lock = threading.Lock()


def client(n, port, rnd, stop):
    i = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP(HOST, port, timeout=10) as s:
                while not stop.is_set():
                    i += 1
                    tok = "token-%d-%d-%d" % (rnd, n, i)
                    to = "box%d@localhost" % (i % BOXES)
                    m = message(tok, "body %s\r\n%s\r\n" % (tok, "z" * (i % 5 * 700)), to=to)
                    with lock:
                        attempted.add(tok)
                    s.sendmail("alice@example.org", [to], m)
                    with lock:
                        acked.add(tok)
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)


try:
    data_dir = tmp.join("data")
    srv = None
    for rnd in range(ROUNDS):
        srv = Serve(tmp, name="round%d" % rnd, data_dir=data_dir, args=SERVE_ARGS)
        srv.start()
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(n, srv.port, rnd, stop), daemon=True)
                   for n in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 1.2))
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(timeout=15)
        expect(not any(t.is_alive() for t in threads), "clients finished")
    expect(len(acked) > 20, "enough messages acknowledged: %d" % len(acked), srv)

    after = Serve(tmp, name="after", data_dir=data_dir, args=SERVE_ARGS)
    with after:
        try:
            sktest.wait_for(lambda: len(after.queue_list()) == 0, timeout=60, interval=0.2,
                            what="queue drained")
        except TimeoutError as e:
            sktest.fail("%s: %r\n%s" % (e, after.queue_list()[:3], after.log()[-3000:]))
        expect(after.stop() == 0, "restarted server exits 0", after)

    seen = {}
    for box in range(BOXES):
        for path in after.maildir("localhost", "box%d" % box):
            with open(path, "rb") as f:
                msg = email.message_from_bytes(f.read(), policy=email.policy.default)
            subject = msg["Subject"] or ""
            body = msg.get_body().get_content() if msg.get_body() else ""
            expect(subject.startswith("token-") and ("body %s" % subject) in body,
                   "complete, readable message in %s" % path)
            seen[subject] = seen.get(subject, 0) + 1
    missing = sorted(acked - set(seen))
    dups = sorted(t for t, c in seen.items() if c > 1)
    unknown = sorted(set(seen) - attempted)
    expect(not missing, "%d acknowledged messages lost: %r" % (len(missing), missing[:10]), after)
    expect(not dups, "messages delivered twice: %r" % dups[:10], after)
    expect(not unknown, "messages nobody sent: %r" % unknown[:10])
    left = []
    for root, _dirs, files in os.walk(os.path.join(data_dir, "spool")):
        left += [os.path.join(root, f) for f in files if f.endswith((".msg", ".env", ".new"))]
    expect(not left, "spool files left after the queue drained: %r" % left[:10], after)
    print("ok: %d rounds, %d acknowledged, %d delivered, %d sent without reply" %
          (ROUNDS, len(acked), len(seen), len(attempted) - len(acked)))
finally:
    tmp.cleanup()
