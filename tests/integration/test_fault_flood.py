#!/usr/bin/python3
"""Floods against `smtpkit serve`: connections from one address past
--max-connections-per-ip get 421 4.7.0 and the others keep working; 5,000
concurrent connections while a normal client still gets its message
through; pipelined floods of NOOP/RSET in one write end with 421 at the
progress limit; a client that pipelines endless transactions and never
reads its replies does not make the server's memory grow without bound."""

import os
import resource
import smtplib
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from fault_util import Raw, rss_kb, settled  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402

CONCURRENT = 5000
PER_IP = 10


def per_ip_flood(tmp):
    srv = Serve(tmp, name="perip", args=["--hold", "--max-connections-per-ip", PER_IP])
    with srv:
        settled(srv)  # the connection that found the port open is not counted
        conns = [Raw(srv.port) for _ in range(PER_IP * 4)]
        codes = [c.reply() for c in conns]
        ok = [c for c, (code, _) in zip(conns, codes) if code == 220]
        refused = [t for code, t in codes if code == 421]
        expect(len(ok) == PER_IP, "%d greeted, expected %d" % (len(ok), PER_IP), srv)
        expect(len(refused) == PER_IP * 3 and all(b"4.7.0" in t for t in refused),
               "the others get 421 4.7.0: %r" % codes[PER_IP:PER_IP + 3], srv)
        # The admitted sessions still work.
        expect(ok[0].cmd("EHLO a.test")[0] == 250, "an admitted session works", srv)
        for c in conns:
            c.close()
        c = sktest.wait_for(lambda: _greeted(srv.port), timeout=10, what="a free slot again")
        c.close()
        expect(srv.stop() == 0, "serve exits 0", srv)


def _greeted(port):
    c = Raw(port)
    if c.reply()[0] == 220:
        return c
    c.close()
    return None


def many_connections(tmp):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CONCURRENT * 2 + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        if os.geteuid() != 0:
            print("note: RLIMIT_NOFILE hard limit %d is too low for %d connections; "
                  "that part is skipped" % (hard, CONCURRENT))
            return
        hard = want
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    srv = Serve(tmp, name="many", args=["--hold", "--max-connections-per-ip", CONCURRENT + 100,
                                        "--max-connections", CONCURRENT + 100])
    with srv:
        socks = []
        try:
            for _ in range(CONCURRENT):
                socks.append(socket.create_connection((HOST, srv.port), timeout=30))
            # Every one of them is greeted (the server holds them all).
            greeted = 0
            for s in socks:
                if s.recv(512).startswith(b"220 "):
                    greeted += 1
            expect(greeted == CONCURRENT, "%d of %d greeted" % (greeted, CONCURRENT), srv)
            rss = rss_kb(srv.proc.pid)
            # A normal client meanwhile.
            with smtplib.SMTP(HOST, srv.port, timeout=30) as c:
                c.sendmail("a@example.org", ["bob@localhost"], message("meanwhile"))
            q = srv.queue_list(at_least=1)
            expect(len(q) == 1, "the normal client's message is queued: %r" % q, srv)
            print("%d connections open, server RSS %d KiB" % (CONCURRENT, rss))
        finally:
            for s in socks:
                s.close()
        expect(srv.stop() == 0, "serve exits 0", srv)


def pipelined_floods(tmp):
    srv = Serve(tmp, name="pipe", args=["--hold"])
    with srv:
        for verb in ("NOOP", "RSET"):
            c = Raw(srv.port, timeout=30)
            c.reply()
            c.cmd("EHLO flood.test")
            c.send((verb + "\r\n") * 20000)
            replies = []
            while True:
                code, text = c.reply()
                if code is None:
                    break
                replies.append(code)
            # The 421 itself may be lost: closing a socket with unread
            # input sends RST, which may discard what the client has not
            # read yet. What counts is that the session ends early.
            expect(all(r in (250, 421) for r in replies), "%s replies: %r" % (verb, replies),
                   srv)
            expect(len(replies) < 100, "%s flood cut short: %d replies" % (verb, len(replies)),
                   srv)
            c.close()
        expect("idle-limit" in srv.log(), "progress limit logged", srv)

        # Endless transactions, replies never read: the server must stop
        # reading rather than buffer its answers.
        before = rss_kb(srv.proc.pid)
        c = Raw(srv.port, timeout=30)
        c.reply()
        c.send("EHLO flood.test\r\n")
        chunk = ("MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@localhost>\r\nRSET\r\n" * 2000).encode()
        sent = [0]

        def writer():
            c.sock.settimeout(5)
            try:
                for _ in range(600):  # about 40 MB
                    c.sock.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        t.join(timeout=60)
        after = rss_kb(srv.proc.pid)
        c.reset()
        t.join(timeout=10)
        grown = after - before
        print("unread pipeline: %d bytes written, server RSS %d -> %d KiB" %
              (sent[0], before, after))
        expect(grown < 64 * 1024, "server memory grew by %d KiB" % grown, srv)
        # Still serving.
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            expect(s.noop()[0] == 250, "serving after the floods", srv)
        expect(srv.stop() == 0, "serve exits 0", srv)


tmp = sktest.TempDir("sk-fault-flood-")
try:
    per_ip_flood(tmp)
    pipelined_floods(tmp)
    many_connections(tmp)
    print("ok")
finally:
    tmp.cleanup()
