#!/usr/bin/python3
"""An IPv4 client of a [::] listener arrives as ::ffff:127.0.0.1; the server
names it 127.0.0.1 everywhere (RFC 4291 2.5.5.2), like a client of the
127.0.0.1 listener: the per-address connection limit counts both listeners
together, AUTH failures on one throttle the other, --relay-net 127.0.0.1/32
lets it relay, and the log and the Received header say [127.0.0.1].
Exits 77 when the machine has no IPv6 loopback or its [::] sockets take no
IPv4 clients (net.ipv6.bindv6only)."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from fault_util import Raw, auth_plain  # noqa: E402
from serve_peer import Serve, expect, make_users, message  # noqa: E402


def dual_stack_port():
    """A free port of a [::] socket that takes IPv4 clients, or None."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        s.bind(("::1", 0))
        s.close()
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::", 0))
        if s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
            return None
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()


def main():
    p6 = dual_stack_port()
    if p6 is None:
        print("SKIP: no IPv6 loopback or no dual-stack [::] sockets")
        sys.exit(77)
    with sktest.TempDir() as tmp:
        users = make_users(tmp, {"zoe": "right-Secret"})
        # Relayed mail goes to a loopback port where nothing listens: deferred.
        dead = sktest.free_port()
        args = ["--listen", "[::]:%d" % p6, "--local-domain", "localhost",
                "--relay-host", "127.0.0.1:%d" % dead,
                "--relay-net", "127.0.0.1/32", "--max-connections-per-ip", "1",
                "--users", users, "--auth-plaintext-loopback"]
        with Serve(tmp, args=args) as srv:
            sktest.wait_port(p6, "127.0.0.1", proc=srv.proc)
            # The two probes of the ports count against the limit of one
            # session per address until they are gone.
            sktest.wait_for(lambda: srv.log().count(" server connect ") >= 2 and
                            srv.log().count(" server disconnect ") >=
                            srv.log().count(" server connect "), timeout=10,
                            what="probe sessions ended")

            # One session per address: the [::] listener sees the same one.
            first = Raw(srv.port)
            expect(first.reply()[0] == 220, "greeting on 127.0.0.1", srv)
            second = Raw(p6)
            code, text = second.reply()
            expect(code == 421, "second session of 127.0.0.1 via [::]: %d %r" % (code, text), srv)
            second.close()
            first.cmd("QUIT")
            first.close()
            # The refused session is logged as gone after its 421 was sent,
            # so a new disconnect line may be its own: wait until every
            # session logged has ended, the first one with them.
            sktest.wait_for(lambda: srv.log().count(" server disconnect ") >=
                            srv.log().count(" server connect "), timeout=10,
                            what="first session gone")

            # Relay (127.0.0.1/32) and local delivery, through [::].
            c = Raw(p6)
            expect(c.reply()[0] == 220, "greeting on [::]", srv)
            c.cmd("EHLO client.test")
            expect(c.cmd("MAIL FROM:<alice@example.org>")[0] == 250, "MAIL", srv)
            code, text = c.cmd("RCPT TO:<carol@example.net>")
            expect(code == 250, "relay from 127.0.0.1 via [::]: %d %r" % (code, text), srv)
            expect(c.cmd("RCPT TO:<bob@localhost>")[0] == 250, "RCPT local", srv)
            expect(c.cmd("DATA")[0] == 354, "DATA", srv)
            c.send(message("mapped").encode() + b"\r\n.\r\n")
            code, text = c.reply()
            expect(code == 250, "message: %d %r" % (code, text), srv)
            gone = srv.log().count("disconnect peer=")
            c.cmd("QUIT")
            c.close()
            sktest.wait_for(lambda: srv.log().count("disconnect peer=") > gone, timeout=10,
                            what="message session gone")
            log = srv.log()
            expect("::ffff:" not in log, "a mapped address in the log", srv)
            expect("connect peer=127.0.0.1 port=" in log, "peer logged as 127.0.0.1", srv)
            files = srv.wait_maildir("localhost", "bob")
            with open(files[0], "rb") as f:
                head = f.read(4096)
            expect(b"[127.0.0.1]" in head and b"::ffff:" not in head,
                   "Received header: %r" % head[:600], srv)

            # AUTH failures through 127.0.0.1 throttle [::] too.
            gone = srv.log().count("disconnect peer=")
            c = Raw(srv.port)
            c.reply()
            c.cmd("EHLO client.test")
            tries, code = 0, 535
            while code == 535 and tries < 20:
                tries += 1
                code, _ = c.cmd(auth_plain("zoe", "guess-%d" % tries))
            expect(code == 421, "throttled after %d guesses: %d" % (tries, code), srv)
            c.close()
            sktest.wait_for(lambda: srv.log().count("disconnect peer=") > gone, timeout=10,
                            what="throttled session gone")
            c = Raw(p6)
            c.reply()
            c.cmd("EHLO client.test")
            code, text = c.cmd(auth_plain("zoe", "right-Secret"))
            expect(code == 454, "AUTH via [::] while 127.0.0.1 is throttled: %d %r" % (code, text),
                   srv)
            c.cmd("QUIT")
            c.close()
    print("ok")


if __name__ == "__main__":
    main()
