#!/usr/bin/python3
"""The peer going away in the middle of DATA, in both directions.
A client that resets (RST) or closes (FIN) mid-DATA: nothing is queued or
delivered, nothing is left in the spool, and the server goes on serving.
The relay host resetting, then closing, during DATA: the message stays
queued, is retried and arrives once."""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from fault_util import Raw  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402


class FlakyRelay(sktest.Listener):
    """A minimal SMTP server on loopback: connection k (from 0) behaves as
    faults[k] during DATA ("reset", "close"), later ones accept."""

    def __init__(self, faults):
        super().__init__(HOST)
        self.faults = list(faults)
        self.messages = []
        self.start()

    def handle(self, conn):
        k = self.connections - 1
        self.session(conn, self.faults[k] if k < len(self.faults) else None)

    def session(self, conn, fault):
        conn.settimeout(10)
        f = conn.makefile("rb")
        conn.sendall(b"220 relay.test ready\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250 relay.test\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            elif verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                if fault:
                    f.readline()  # some of the message has arrived
                    if fault == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    return
                body = []
                while True:
                    ln = f.readline()
                    if not ln or ln == b".\r\n":
                        break
                    body.append(ln)
                self.messages.append(b"".join(body))
                conn.sendall(b"250 2.0.0 stored\r\n")
            else:
                conn.sendall(b"502 5.5.2 no\r\n")

    def close(self):
        self.stop()


def spool_files(data_dir):
    out = []
    for root, _dirs, files in os.walk(os.path.join(data_dir, "spool")):
        out += [f for f in files if f.endswith((".msg", ".env", ".new"))]
    return out


tmp = sktest.TempDir("sk-fault-reset-")
relay = FlakyRelay(["reset", "close"])
try:
    srv = Serve(tmp, args=["--local-domain", "localhost", "--relay-host",
                           "%s:%d" % (HOST, relay.port), "--retry-schedule", "1s"])
    with srv:
        # 1. Clients that go away mid-DATA, by RST and by FIN.
        for how in ("reset", "close"):
            c = Raw(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<a@example.org>")
            expect(c.cmd("RCPT TO:<bob@localhost>")[0] == 250, "RCPT", srv)
            expect(c.cmd("DATA")[0] == 354, "DATA", srv)
            c.send("Subject: half\r\n\r\n" + "partial line\r\n" * 2000)
            getattr(c, how)()
            sktest.wait_for(lambda: srv.log().count("disconnect") >= (1 if how == "reset" else 2),
                            timeout=10, what="the session ended")
        # The server goes on: a normal message is accepted and delivered.
        c = Raw(srv.port)
        expect(c.reply()[0] == 220, "greeting after the aborted sessions", srv)
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<bob@localhost>")
        c.cmd("DATA")
        code, text = c.cmd(message("whole").rstrip("\r\n") + "\r\n.")
        expect(code == 250, "a whole message after the aborted ones: %r" % text, srv)
        c.cmd("QUIT")
        c.close()
        files = srv.wait_maildir("localhost", "bob", 1)
        time.sleep(0.3)
        files = srv.maildir("localhost", "bob")
        expect(len(files) == 1, "only the whole message delivered: %r" % files, srv)
        with open(files[0], "rb") as f:
            expect(b"Subject: whole" in f.read(), "the delivered message is the whole one")
        # The queue removes the delivered message after its Maildir file is
        # in place: wait for that step, not for the file.
        sktest.settle(lambda: srv.queue_list() == [] and not spool_files(srv.data_dir), timeout=10)
        expect(srv.queue_list() == [], "nothing queued from the aborted sessions", srv)
        expect(not spool_files(srv.data_dir), "no spool files left: %r" %
               spool_files(srv.data_dir), srv)

        # 2. The relay host resets, then closes, during DATA: retried.
        sent = message("relayed", "Relayed body\r\n", to="x@remote.example")
        c = Raw(srv.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        expect(c.cmd("RCPT TO:<x@remote.example>")[0] == 250, "relay RCPT", srv)
        c.cmd("DATA")
        code, text = c.cmd(sent.rstrip("\r\n") + "\r\n.")
        expect(code == 250, "relayed message accepted: %r" % text, srv)
        c.cmd("QUIT")
        c.close()
        sktest.wait_for(lambda: relay.messages, timeout=30, what="the message at the relay\n" +
                        srv.log()[-3000:])
        sktest.wait_for(lambda: srv.queue_list() == [], timeout=10, what="queue empty")
        time.sleep(0.5)
        expect(relay.connections >= 3, "three attempts: %d" % relay.connections, srv)
        expect(len(relay.messages) == 1, "relayed once: %d" % len(relay.messages), srv)
        expect(b"Relayed body" in relay.messages[0], "relayed body", srv)
        expect(srv.stop() == 0, "serve exits 0", srv)
    print("ok")
finally:
    relay.close()
    tmp.cleanup()
