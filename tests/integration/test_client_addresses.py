#!/usr/bin/python3
"""The client tries a host's addresses in turn (RFC 5321 5.1): given
127.0.0.2 (nothing listens there: refused) and then 127.0.0.1 (a server) by
the resolve hook (examples/send_simple with SMTP_ADDRESSES), it delivers, and
its transcript shows the refused address first; in the other order the
second address is never tried; when every address refuses, the error names
each one. The host name, mx.test, does not resolve: only the hook can find
the server."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

SEND = os.path.join(sktest.BUILD_DIR, "example_send_simple")


def send(port, addresses):
    env = {"SMTP_ADDRESSES": addresses}
    env.pop("SMTP_USER", None)
    return sktest.run([SEND, "mx.test", port, "alice@example.net", "bob@example.org", "none"],
                      timeout=30, env=env)


def notes(r):
    return [l[3:] for l in r.stderr.splitlines() if l.startswith("*: ")]


def main():
    with sh.PrintServer() as srv:
        p = srv.port

        r = send(p, "127.0.0.2 127.0.0.1")
        sktest.check(r.returncode == 0 and r.stdout.startswith("sent: 250"),
                     "first address refused, second serves: %d\n%s%s" % (r.returncode, r.stdout,
                                                                          r.stderr))
        want = ["connecting to 127.0.0.2 port %d" % p,
                "127.0.0.2 port %d: Connection refused" % p,
                "connecting to 127.0.0.1 port %d" % p,
                "connected to 127.0.0.1 port %d" % p]
        sktest.check(notes(r)[:4] == want, "transcript: %r" % notes(r))
        sktest.check(sh.wait_output(srv, b"RCPT <bob@example.org>"), "message not received")

        # In order: the first address that answers is used, no other.
        r = send(p, "127.0.0.1 127.0.0.2")
        sktest.check(r.returncode == 0, "first address serves: %s" % r.stderr)
        sktest.check(not any("127.0.0.2" in n for n in notes(r)),
                     "127.0.0.2 tried after a success: %r" % notes(r))

        if sktest.have_ipv6_loopback():
            # ::1 has nothing on this port either; IPv6 then IPv4.
            r = send(p, "::1 127.0.0.1")
            sktest.check(r.returncode == 0 and "::1 port %d: Connection refused" % p in notes(r),
                         "::1 refused, then 127.0.0.1: %s" % r.stderr)

        # Every address refuses: the error names each, at the connect step.
        r = send(p, "127.0.0.2 127.0.0.3")
        sktest.check(r.returncode != 0, "sent with no server: %s" % r.stdout)
        sktest.check(re.search(r"failed at connect: .*127\.0\.0\.2: Connection refused; "
                               r"127\.0\.0\.3: Connection refused", r.stderr),
                     "error: %r" % r.stderr)

        # The server's output is read by a thread of this process: the
        # client's 250 does not mean its envelope has been read yet.
        want = 3 if sktest.have_ipv6_loopback() else 2
        sktest.settle(lambda: srv.stdout().count(b"ENVELOPE ") >= want, timeout=5)
        sktest.check(srv.stdout().count(b"ENVELOPE ") == want,
                     "messages received: %r" % srv.stdout())
    print("ok")


if __name__ == "__main__":
    main()
