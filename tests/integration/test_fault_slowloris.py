#!/usr/bin/python3
"""Slowloris: clients that send a byte at a time, each byte well inside the
idle timeout. A command trickling in is ended (421 4.4.2) once the command
timeout has passed since it began, also before the greeting's first command
and in a line too long to keep; a message trickling in is ended once DATA
has lasted longer than the data timeout at a rate below the minimum; a
silent client is ended by the idle timeout. Meanwhile normal clients get
their mail through, and nothing of the cut messages is queued."""

import os
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from fault_util import Raw  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402

TIMEOUT_S = 2
DRIP_S = 0.25  # well inside the idle timeout
BOUND_S = 20   # a dripper that is not ended by then counts as not ended

results = {}


def drip(port, name, setup, payload):
    """Connect, run setup lines normally, then send payload a byte at a
    time; record how it ended (the last reply code) and after how long."""
    c = Raw(port, timeout=BOUND_S)
    c.reply()
    for line in setup:
        c.cmd(line)
    start = time.monotonic()
    code = None
    try:
        for i in range(len(payload)):
            if time.monotonic() - start > BOUND_S:
                break
            c.send(payload[i:i + 1])
            time.sleep(DRIP_S)
    except OSError:
        pass
    try:
        c.sock.settimeout(5)
        code, _ = c.reply()
        while code is not None and code != 421:
            code, _ = c.reply()
    except OSError:
        pass
    results[name] = (code, time.monotonic() - start, c.closed_by_peer(timeout=5))
    c.close()


tmp = sktest.TempDir("sk-fault-slowloris-")
try:
    t = "%ds" % TIMEOUT_S
    srv = Serve(tmp, args=["--hold", "--greeting-timeout", t, "--command-timeout", t,
                           "--data-timeout", t])
    with srv:
        long_line = "NOOP " + "x" * 2000 + "\r\n"
        cases = {
            "greeting": ([], "EHLO slow.test\r\n" * 10),
            "command": (["EHLO slow.test"], "MAIL FROM:<slow@example.org>\r\n" * 3),
            "long-line": (["EHLO slow.test"], long_line),
            "data": (["EHLO slow.test", "MAIL FROM:<slow@example.org>",
                      "RCPT TO:<bob@localhost>", "DATA"], "Subject: slow\r\n\r\n" + "ab\r\n" * 100),
        }
        threads = [threading.Thread(target=drip, args=(srv.port, name, setup, payload),
                                    daemon=True) for name, (setup, payload) in cases.items()]
        silent = Raw(srv.port)
        silent.reply()
        for th in threads:
            th.start()
        # Normal clients are served meanwhile.
        for i in range(5):
            with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
                c.sendmail("a@example.org", ["bob@localhost"], message("normal %d" % i))
            time.sleep(0.2)
        for th in threads:
            th.join(timeout=BOUND_S + 15)
        expect(silent.closed_by_peer(timeout=10), "a silent client is timed out", srv)
        for name in cases:
            expect(name in results, "%s dripper finished" % name, srv)
            code, secs, closed = results[name]
            expect(code == 421 and closed and secs < BOUND_S,
                   "%s dripper ended with 421 and closed: code=%r closed=%r after %.1fs" %
                   (name, code, closed, secs), srv)
        log = srv.log()
        expect(log.count("too-slow") >= 4, "slow clients logged", srv)
        q = srv.queue_list(at_least=5)
        expect(len(q) == 5, "the five normal messages queued, nothing else: %d" % len(q), srv)
        expect(srv.stop() == 0, "serve exits 0", srv)
    print("ok: " + ", ".join("%s %.1fs" % (n, r[1]) for n, r in sorted(results.items())))
finally:
    tmp.cleanup()
