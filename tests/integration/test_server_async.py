#!/usr/bin/python3
"""Asynchronous final replies (group commit): on_data_end answers "later",
the program replies for several sessions at once; pipelined commands wait
for the reply; a client that leaves meanwhile does not break the server.
on_auth may answer later too (a slow password hash off the loop)."""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def start_message(c, n):
    c.cmd("EHLO client.example")
    sh.expect(c.cmd("MAIL FROM:<a@example.net>"), 250, "2.1.0", "MAIL")
    sh.expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT")
    sh.expect(c.cmd("DATA"), 354, None, "DATA")
    c.send(b"Subject: %d\r\n\r\nbody\r\n.\r\n" % n)


def main():
    with sh.PrintServer(["--async", "400"]) as srv:
        # Two sessions' messages are committed as one batch.
        a, b = sh.Client(srv.port), sh.Client(srv.port)
        start_message(a, 1)
        start_message(b, 2)
        ra, rb = a.reply(), b.reply()
        sktest.check(ra == rb == (250, ["2.0.0 Ok: queued in batch 1 of 2"]),
                     "group commit replies %r %r" % (ra, rb))
        # Commands pipelined after the end of data are answered after it.
        start_message(a, 3)
        a.send(b"NOOP\r\nMAIL FROM:<a@example.net>\r\n")
        sh.expect(a.reply(), 250, "2.0.0", "async reply first")
        sh.expect(a.reply(), 250, "2.0.0", "then NOOP")
        sh.expect(a.reply(), 250, "2.1.0", "then MAIL")
        a.close()
        b.cmd("QUIT")
        b.close()
        # A client that disconnects while its reply is pending.
        c = sh.Client(srv.port)
        start_message(c, 4)
        c.close()
        sktest.check(sh.log_has(srv, r"message-reply-lost reply=250"), "lost reply not logged")
        sktest.check(sh.log_has(srv, r"server disconnect peer=127\.0\.0\.1"), "no disconnect")
        # Concurrency: several clients at once, all answered.
        results = []

        def one(n):
            c = sh.Client(srv.port)
            start_message(c, 10 + n)
            results.append(c.reply()[0])
            c.close()

        ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        sktest.check(results == [250] * 6, "concurrent async replies %r" % results)
        sktest.check(srv.proc.poll() is None, "server died")
    tls_fragments()
    async_auth()
    print("ok")


def async_auth():
    ok = "AUTH PLAIN AHpvZQBwdw=="  # zoe / pw
    bad = "AUTH PLAIN AHpvZQB4eA=="  # zoe / xx
    listens = [("--submission", "127.0.0.1:0")]
    with sh.PrintServer(["--user", "zoe:pw", "--auth-loopback", "--async-auth", "200"],
                        listens=listens) as srv:
        port = srv.ports["submission"][0]
        c = sh.Client(port)
        c.cmd("EHLO client.example")
        sh.expect(c.cmd(bad), 535, "5.7.8", "async AUTH, wrong password")
        # MAIL pipelined behind AUTH waits for it (530 if it ran first).
        c.send((ok + "\r\nMAIL FROM:<zoe@example.org>\r\n").encode())
        sh.expect(c.reply(), 235, "2.7.0", "async AUTH")
        sh.expect(c.reply(), 250, "2.1.0", "MAIL after async AUTH")
        c.close()
        # A client that leaves while its AUTH is being checked.
        c = sh.Client(port)
        c.cmd("EHLO client.example")
        c.send((ok + "\r\n").encode())
        c.close()
        c = sh.Client(port)
        sh.expect(c.cmd("EHLO client.example"), 250, None, "server still serving")
        c.close()
        sktest.check(sh.log_has(srv, r"auth mech=PLAIN user=\"zoe\" result=ok"), "auth not logged")


def tls_fragments():
    """While a reply is pending, the next message arrives over TLS as many
    tiny records: the input then spans many buffer pieces."""
    with sktest.TempDir() as tmp:
        cert, key, ctx = sh.tls_setup(tmp)
        with sh.PrintServer(["--async", "300", "--tls", cert, key]) as srv:
            c = sh.Client(srv.port)
            c.cmd("EHLO client.example")
            c.starttls(ctx)
            start_message(c, 1)
            c.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
            lines = [b"line %03d\r\n" % i for i in range(300)]
            for piece in lines:
                c.send(piece)  # one TLS record each
            c.send(b".\r\n")
            for what, code in (("first", 250), ("MAIL", 250), ("RCPT", 250), ("DATA", 354),
                               ("second", 250)):
                got = c.reply()
                sktest.check(got[0] == code, "%s: %r" % (what, got))
            c.close()
            sktest.check(sh.wait_output(srv, b"END ok=1 size=%d" % sum(map(len, lines))),
                         "fragmented message not whole")


if __name__ == "__main__":
    main()
