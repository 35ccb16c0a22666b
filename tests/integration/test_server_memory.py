#!/usr/bin/python3
"""Idle sessions are small: the server's resident memory grows by less than
32 KiB per idle connection (after EHLO, after a message, and over TLS)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

N = 300
LIMIT = 32 * 1024


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def idle_tls(tmp):
    cert, key, ctx = sh.tls_setup(tmp)
    n = 100
    with sh.PrintServer(["--tls", cert, key, "--max-conn-per-ip", str(n + 10)], verbose=False) as srv:
        w = sh.Client(srv.port)
        w.cmd("EHLO client.example")
        w.starttls(ctx)
        w.cmd("EHLO client.example")
        before = rss(srv.proc.pid)
        clients = []
        for i in range(n):
            c = sh.Client(srv.port)
            c.cmd("EHLO client.example")
            c.starttls(ctx)
            sh.expect(c.cmd("EHLO client.example"), 250, None, "EHLO over TLS")
            clients.append(c)
        per = (rss(srv.proc.pid) - before) / n
        print("RSS per idle TLS connection: %.0f octets" % per)
        sktest.check(per < LIMIT, "%.0f octets per idle TLS connection" % per)
        for c in clients + [w]:
            c.close()


def sanitized():
    """AddressSanitizer's shadow memory and quarantine make RSS meaningless."""
    with open(sh.SERVER_PRINT, "rb") as f:
        return b"__asan_init" in f.read()


def main():
    if sanitized():
        print("skipped: server_print is built with AddressSanitizer")
        return
    with sktest.TempDir() as tmp:
        idle_tls(tmp)
    with sh.PrintServer(["--max-conn-per-ip", str(N + 10)], verbose=False) as srv:
        # Warm up allocator and code pages with one full session.
        w = sh.Client(srv.port)
        w.cmd("EHLO client.example")
        w.cmd("MAIL FROM:<a@example.net>")
        w.cmd("RCPT TO:<bob@example.org>")
        w.cmd("DATA")
        sh.expect(w.cmd(b"x" * 10000 + b"\r\n."), 250, "2.0.0", "warm-up message")
        before = rss(srv.proc.pid)
        clients = []
        for i in range(N):
            c = sh.Client(srv.port)
            c.cmd("EHLO client%d.example" % i)
            if i % 10 == 0:
                c.cmd("MAIL FROM:<a@example.net>")
                c.cmd("RCPT TO:<bob@example.org>")
                c.cmd("DATA")
                sh.expect(c.cmd(b"y" * 5000 + b"\r\n."), 250, "2.0.0", "message")
            clients.append(c)
        after = rss(srv.proc.pid)
        per = (after - before) / N
        print("RSS per idle connection: %.0f octets" % per)
        sktest.check(per < LIMIT, "%.0f octets per idle connection" % per)
        for c in clients:
            c.close()
        w.close()
    print("ok")


if __name__ == "__main__":
    main()
