#!/usr/bin/python3
"""`smtpkit queue flush|release|delete` through the control socket of a
running `smtpkit serve` (DATA-DIR/spool/control.sock): by ID and by each
filter (--all, --destination, --sender, --state, and together), with the
counts of matched and changed messages; a hold queue of thousands emptied
by one command; the same filters straight on the spool without a daemon;
a socket left by a killed daemon (the CLI works on the spool, the next
daemon replaces the socket); a client that connects and says nothing (the
daemon serves others meanwhile and drops it after its timeout); requests
that are too long or malformed; the socket gone when the daemon stops."""

import json
import os
import re
import socket
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import Serve, expect  # noqa: E402

INJECT = os.path.join(sktest.BUILD_DIR, "example_spool_inject")
BODY = "Subject: control\r\n\r\nHello.\r\n"
BIG = 3000  # held messages emptied by one command
# The daemon's limits (include/smtpkit/limits.h).
REQUEST_MAX_OCTETS = 2048
IO_TIMEOUT_S = 5.0

tmp = sktest.TempDir("sk-queue-control-")


def inject(data_dir, sender, rcpt, *args, count=1):
    r = sktest.run([INJECT, data_dir, "--from", sender, "--to", rcpt, "--count", str(count)]
                   + list(args), input=BODY, timeout=120, check_rc=0)
    ids = r.stdout.split()
    expect(len(ids) == count and all(re.match(r"^[0-9A-Z]{16}$", i) for i in ids),
           "%d queue IDs: %r" % (count, ids[:3]))
    return ids


def queue(data_dir, *args, rc=0, server=None):
    r = sktest.smtpkit("queue", "--data-dir", data_dir, *args, timeout=120)
    expect(rc is None or r.returncode == rc,
           "queue %s: exit %d, expected %s\nstdout: %s\nstderr: %s"
           % (" ".join(args), r.returncode, rc, r.stdout, r.stderr), server)
    return r


def op(data_dir, *args, server=None):
    """flush/release/delete with --json: (matched, changed, done by the daemon)."""
    r = queue(data_dir, *args, "--json", server=server)
    j = json.loads(r.stdout)
    expect(j["ok"] is True and j["action"] == args[0], "%r" % j, server)
    return j["matched"], j["changed"], j["daemon"]


def states(data_dir):
    q = json.loads(queue(data_dir, "list", "--json").stdout)
    return {m["id"]: m["state"] for m in q}


def raw(sock_path, data, shut=False):
    """Send data on a new connection; what comes back until EOF."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT_S * 4)
    s.connect(sock_path)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        got = s.recv(4096)
        if not got:
            break
        out += got
    s.close()
    return out.decode()


try:
    d = tmp.join("data")
    sock = os.path.join(d, "spool", "control.sock")
    # Held: 3 from alice to localhost, 2 from carol to remote.test, one
    # from alice to both; deferred: one bounce (null sender) to localhost.
    a = inject(d, "alice@a.test", "bob@localhost", "--hold", count=3)
    c = inject(d, "carol@c.test", "dave@remote.test", "--hold", count=2)
    both = inject(d, "alice@a.test", "bob@localhost", "--to", "erin@remote.test", "--hold")[0]
    bounce = inject(d, "", "bob@localhost", "--deferred", "2")[0]

    # A relay host that refuses: remote mail is deferred, never sent.
    closed = sktest.free_port()
    srv = Serve(tmp, data_dir=d, args=["--hold", "--local-domain", "localhost",
                                       "--relay-host", "127.0.0.1:%d" % closed,
                                       "--hostname", "mx.test"])
    with srv:
        st = os.stat(sock)
        expect(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
               "the socket is there, mode 0600: %o" % st.st_mode, srv)

        # By ID.
        expect(op(d, "release", a[0], server=srv) == (1, 1, True), "release ID", srv)
        srv.wait_maildir("localhost", "bob", 1)
        r = queue(d, "release", "0000000000000000", rc=65, server=srv)
        expect("no message 0000000000000000 in the queue" in r.stderr, r.stderr, srv)
        r = queue(d, "delete", a[1], server=srv)
        expect(r.stdout == "delete %s: 1 matched, 1 changed\n" % a[1], r.stdout, srv)

        # By filter: state (flush changes no held message).
        expect(op(d, "flush", "--state", "hold", server=srv) == (4, 0, True),
               "flush --state hold", srv)
        # sender: the null sender's deferred message is retried now.
        expect(op(d, "flush", "--sender", "<>", server=srv) == (1, 1, True), "flush <>", srv)
        srv.wait_maildir("localhost", "bob", 2)
        # destination: carol's two and the message to both domains.
        expect(op(d, "delete", "--destination", "REMOTE.test", "--sender", "carol@c.test",
                  server=srv) == (2, 2, True), "delete carol's remote mail", srv)
        expect(op(d, "release", "--destination", "remote.test", server=srv) == (1, 1, True),
               "release by destination", srv)
        # Its local recipient is delivered, its remote one deferred.
        srv.wait_maildir("localhost", "bob", 3)
        sktest.wait_for(lambda: states(d).get(both) == "deferred", what="deferred at the relay")
        expect(op(d, "release", "--state", "hold", "--sender", "alice@A.TEST", server=srv)
               == (1, 1, True), "release alice's last held one", srv)
        srv.wait_maildir("localhost", "bob", 4)
        expect(set(states(d)) == {both}, "only the deferred one left: %r" % states(d), srv)
        r = queue(d, "delete", "--all", server=srv)
        expect(r.stdout == "delete: 1 matched, 1 changed\n", r.stdout, srv)
        expect(op(d, "delete", "--all", server=srv) == (0, 0, True), "nothing left", srv)
        # Done by the daemon, which logs each request.
        pattern = r" control (flush|release|delete) uid=%d " % os.geteuid()
        sktest.wait_for(lambda: len(re.findall(pattern, srv.log())) >= 10,
                        what="a log line per request")
        log = srv.log()
        expect(len(re.findall(pattern, log)) == 10, "a log line per request", srv)
        expect(" control release uid=%d pid=" % os.geteuid() in log and
               'sender="alice@A.TEST" state=hold matched=1 changed=1' in log, log[-2000:], srv)

        # --- malformed, oversized and silent clients ---------------------
        expect(raw(sock, b"hold all\n") == "error syntax unknown operation 'hold'\n",
               "an unknown verb", srv)
        expect(raw(sock, b"release\r\n") .startswith("error syntax release needs"),
               "nothing to apply to", srv)
        out = raw(sock, b"release sender=" + b"a" * REQUEST_MAX_OCTETS + b"\n")
        expect(out.startswith("error too-long "), "a line over the limit: %r" % out, srv)
        # Without a line end: refused once the limit is passed, not read on.
        out = raw(sock, b"x" * (REQUEST_MAX_OCTETS * 4))
        expect(out.startswith("error too-long "), "no line end: %r" % out, srv)
        # A client that says nothing: others are served meanwhile; it is
        # dropped after the timeout.
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.connect(sock)
        t0 = time.monotonic()
        expect(op(d, "flush", server=srv) == (0, 0, True), "served while one is idle", srv)
        idle.settimeout(IO_TIMEOUT_S * 4)
        got = b""
        while True:
            chunk = idle.recv(4096)
            if not chunk:
                break
            got += chunk
        waited = time.monotonic() - t0
        idle.close()
        expect(got == b"error timeout no complete request in time\n", "%r" % got, srv)
        expect(IO_TIMEOUT_S - 1 <= waited <= IO_TIMEOUT_S * 3,
               "dropped after about %.0f s: %.1f s" % (IO_TIMEOUT_S, waited), srv)
        expect("control dropped uid=%d" % os.geteuid() in srv.log() and
               "reason=no-request" in srv.log(), "logged", srv)
        rc = srv.stop()
        expect(rc == 0, "serve exited %r" % rc, srv)
    expect(not os.path.exists(sock), "the socket is removed at exit")

    # --- a hold queue of thousands, emptied by one command -------------
    t0 = time.monotonic()
    inject(d, "bulk@a.test", "many@remote.test", "--hold", count=BIG)
    inject(d, "keep@a.test", "many@remote.test", "--hold", count=5)
    injected = time.monotonic() - t0
    srv = Serve(tmp, data_dir=d, name="serve2",
                args=["--hold", "--relay-host", "127.0.0.1:%d" % closed])
    with srv:
        t0 = time.monotonic()
        matched, changed, by_daemon = op(d, "delete", "--state", "hold", "--sender",
                                         "bulk@a.test", server=srv)
        took = time.monotonic() - t0
        expect((matched, changed, by_daemon) == (BIG, BIG, True),
               "%d held messages deleted: %r" % (BIG, (matched, changed)), srv)
        left = states(d)
        expect(len(left) == 5 and set(left.values()) == {"hold"}, "the others stay", srv)
        print("note: %d held messages injected in %.1f s, deleted by one command in %.2f s"
              % (BIG, injected, took))
        # Releasing many: spread over loop passes, with progress lines
        # keeping the client's wait alive; every one is released.
        expect(op(d, "release", "--all", server=srv) == (5, 5, True), "release --all", srv)
        srv.stop()

    # --- no daemon: the same filters straight on the spool ---------------
    for m in states(d):
        queue(d, "delete", m)
    x = inject(d, "x@x.test", "p@one.test", "--hold", count=3)
    y = inject(d, "y@y.test", "q@two.test", "--deferred", "1", count=2)
    expect(op(d, "flush", "--destination", "two.test") == (2, 2, False), "flush, no daemon")
    expect(set(states(d)[i] for i in y) == {"active"}, "flushed")
    expect(op(d, "release", "--sender", "x@X.TEST", "--state", "hold") == (3, 3, False),
           "release, no daemon")
    expect(op(d, "delete", x[0]) == (1, 1, False), "delete ID, no daemon")
    queue(d, "delete", x[0], rc=65)
    expect(op(d, "delete", "--all") == (4, 4, False), "delete --all, no daemon")

    # --- a socket left by a daemon killed with SIGKILL -------------------
    relay = ["--hold", "--relay-host", "127.0.0.1:%d" % closed]
    srv = Serve(tmp, data_dir=d, name="serve3", args=relay)
    srv.start()
    srv.kill9()
    expect(stat.S_ISSOCK(os.stat(sock).st_mode), "the killed daemon's socket is still there")
    inject(d, "z@z.test", "r@three.test", "--hold", count=2)
    # Nobody answers on it and no lock is held: done on the spool.
    expect(op(d, "flush", "--all") == (2, 0, False), "a stale socket is not a daemon")
    srv = Serve(tmp, data_dir=d, name="serve4", args=relay)
    with srv:
        expect("control stale-socket-removed" in srv.log(), "replaced at start", srv)
        got = op(d, "delete", "--all", server=srv)
        expect(got == (2, 2, True), "the new socket answers: %r" % (got,), srv)
        srv.stop()
    print("ok")
finally:
    tmp.cleanup()
