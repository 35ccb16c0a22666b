#!/usr/bin/python3
"""A full disk while a message is spooled: on a tiny tmpfs (mounted here, so
only when running as root; skipped otherwise) a message bigger than the free
space gets 452 4.3.1, leaves no file behind and nothing in the queue, and
the next message that fits is accepted and queued."""

import os
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402

if os.geteuid() != 0:
    print("SKIP: mounting a tmpfs needs root")
    sys.exit(sktest.SKIP)

tmp = sktest.TempDir("sk-queue-full-")
mnt = tmp.join("small")
os.makedirs(mnt)
r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt],
                   capture_output=True, text=True, timeout=30)
if r.returncode != 0:
    tmp.cleanup()
    print("SKIP: cannot mount a tmpfs here: %s" % r.stderr.strip())
    sys.exit(sktest.SKIP)

try:
    data = os.path.join(mnt, "data")
    srv = Serve(tmp, data_dir=data, args=["--hold", "--local-domain", "localhost"])
    with srv:
        big = message("too big", body=("x" * 998 + "\r\n") * 400)  # about 400 KB
        with smtplib.SMTP(HOST, srv.port, timeout=30) as c:
            try:
                c.sendmail("alice@example.org", ["bob@localhost"], big)
                sktest.fail("a message larger than the disk was accepted")
            except smtplib.SMTPDataError as e:
                expect(e.smtp_code == 452 and b"4.3.1" in e.smtp_error,
                       "disk full: 452 4.3.1, got %r" % (e.args,), srv)
            # The session goes on: a message that fits is accepted.
            c.sendmail("alice@example.org", ["bob@localhost"], message("fits"))
        left = sorted(os.listdir(os.path.join(data, "spool", "msg")))
        # One file per message: body, envelope and trailer (docs/queue.md).
        expect(len(left) == 1 and left[0].endswith(".msg"),
               "only the accepted message is on disk: %r" % left, srv)
        q = srv.queue_list()
        expect(len(q) == 1 and q[0]["state"] == "hold", "one held message: %r" % q, srv)
        expect(srv.stop() == 0, "serve exits 0", srv)
    print("ok")
finally:
    subprocess.run(["umount", mnt], capture_output=True, timeout=30)
    tmp.cleanup()
