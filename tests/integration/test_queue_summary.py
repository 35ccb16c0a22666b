#!/usr/bin/python3
"""`smtpkit queue summary` (docs/queue.md "Summary"): messages by state and,
per recipient domain, the messages and recipients still to be delivered
there with the oldest one's age, most messages first; the same counts
read from the spool's files without a daemon and answered by a running
`smtpkit serve` from its table through the control socket (text and
--json); a table of states, including a message being delivered (a peer
that does not answer DATA) and one due now; arguments refused with 64."""

import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402

INJECT = os.path.join(sktest.BUILD_DIR, "example_spool_inject")
BODY = "Subject: summary\r\n\r\nHello.\r\n"

tmp = sktest.TempDir("sk-queue-summary-")


def inject(data_dir, rcpts, *args, count=1):
    argv = [INJECT, data_dir, "--from", "s@x.example"]
    for r in rcpts:
        argv += ["--to", r]
    sktest.run(argv + ["--count", str(count)] + list(args), input=BODY, timeout=120, check_rc=0)


def summary(data_dir, *args, rc=0, server=None):
    r = sktest.smtpkit("queue", "--data-dir", data_dir, "summary", *args, timeout=60)
    expect(r.returncode == rc, "summary %s: exit %d, expected %d\nstdout: %s\nstderr: %s"
           % (" ".join(args), r.returncode, rc, r.stdout, r.stderr), server)
    return r


def check(j, states, domains, daemon, server=None):
    expect(j["daemon"] is daemon, "daemon %r: %r" % (daemon, j), server)
    expect(j["states"] == states, "states %r, want %r" % (j["states"], states), server)
    expect(j["messages"] == sum(states.values()), "messages: %r" % j, server)
    got = [(d["domain"], d["messages"], d["recipients"]) for d in j["domains"]]
    expect(got == domains, "domains %r, want %r" % (got, domains), server)
    expect(all(0 <= d["oldest_age_s"] < 600 for d in j["domains"]), "ages: %r" % j, server)
    expect(j["loading"] is False and j["domains_left_out"] == 0, "%r" % j, server)


# A peer that takes the connection and the envelope, then never answers
# DATA: a message sent to it stays "delivering".
stall = socket.socket()
stall.bind((HOST, 0))
stall.listen(8)
stall_port = stall.getsockname()[1]
stalled = []


def stall_peer():
    while True:
        try:
            c, _ = stall.accept()
        except OSError:
            return
        stalled.append(c)
        f = c.makefile("rb")
        c.sendall(b"220 stall.test ESMTP\r\n")
        for line in f:
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                c.sendall(b"250 stall.test\r\n")
            elif cmd == b"DATA":
                break  # no answer: the delivery hangs until the daemon stops
            elif cmd == b"QUIT":
                break
            else:
                c.sendall(b"250 ok\r\n")


threading.Thread(target=stall_peer, daemon=True).start()

try:
    data = tmp.join("data")
    inject(data, ["a@Held.example", "b@held.example"], "--hold", count=5)
    inject(data, ["r@late.example", "r@held.example"], "--deferred", "1", count=3)
    inject(data, ["r@late.example"], "--deferred", "2", count=4)
    injected = time.time()

    # No daemon: from the files. The envelopes' states; domains by
    # messages, a message once per domain, in lower case.
    spool_states = {"active": 0, "delivering": 0, "deferred": 7, "hold": 5}
    spool_domains = [("held.example", 8, 13), ("late.example", 7, 7)]
    check(json.loads(summary(data, "--json").stdout), spool_states, spool_domains, False)
    text = summary(data).stdout
    expect(re.search(r"^messages: 12 \(active 0, delivering 0, deferred 7, hold 5\), "
                     r"recipients: 20, oldest: \d+s \(no daemon runs", text, re.M), text)
    expect(re.search(r"^held\.example +8 +13 +\d+s$", text, re.M), text)
    rows = [ln.split()[0] for ln in text.splitlines()[2:]]
    expect(rows == ["held.example", "late.example"], text)

    # The daemon: one more message, to the stalling peer, being delivered.
    with Serve(tmp, data_dir=data, args=["--relay-host", "%s:%d" % (HOST, stall_port)]) as srv:
        import smtplib
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.sendmail("s@x.example", ["r@Stall.example"], BODY)
        sktest.wait_for(lambda: stalled, timeout=30, what="the delivery to the stalling peer")
        want = {"active": 0, "delivering": 1, "deferred": 7, "hold": 5}
        domains = spool_domains + [("stall.example", 1, 1)]

        def delivering():
            j = json.loads(summary(data, "--json", server=srv).stdout)
            return j if j["states"]["delivering"] == 1 else None
        j = sktest.wait_for(delivering, timeout=30, what="the message counted as delivering")
        check(j, want, domains, True, srv)
        # Ages on the wall clock, as the arrivals are kept.
        time.sleep(max(0.0, injected + 2.1 - time.time()))
        j = json.loads(summary(data, "--json", server=srv).stdout)
        expect(j["oldest_age_s"] >= 2 and j["domains"][0]["oldest_age_s"] >= 2,
               "ages of messages stored 2 s ago: %r" % j, srv)
        text = summary(data, server=srv).stdout
        expect(text.startswith("messages: 13 (active 0, delivering 1, deferred 7, hold 5), "
                               "recipients: 21, oldest: "), text, srv)
        expect("no daemon" not in text and "loading" not in text, text, srv)

    # Bad arguments.
    r = summary(data, "--all", rc=64)
    expect("--all" in r.stderr, r.stderr)
    r = summary(data, "extra", rc=64)
    expect("extra" in r.stderr, r.stderr)
    r = sktest.smtpkit("queue", "--data-dir", tmp.join("none"), "summary", timeout=30)
    expect(r.returncode == 66, "no spool: %d %s" % (r.returncode, r.stderr))
    print("ok: summary from the spool and from the daemon, states and domains")
finally:
    stall.close()
    for c in stalled:
        c.close()
    tmp.cleanup()
