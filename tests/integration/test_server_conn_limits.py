#!/usr/bin/python3
"""Concurrent connections per client address are limited (421 4.7.0), and
a slot frees when a session ends. Out of file descriptors, the server
pauses accepting and recovers."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    with sh.PrintServer(["--max-conn-per-ip", "2"]) as srv:
        a = sh.Client(srv.port)
        b = sh.Client(srv.port)
        sktest.check(a.banner[0] == 220 and b.banner[0] == 220, "first two not greeted")
        c = sh.Client(srv.port)
        sktest.check(c.banner[0] == 421 and c.banner[1][0].startswith("4.7.0"),
                     "third connection: %r" % (c.banner,))
        sktest.check(c.closed(), "refused connection left open")
        sktest.check(sh.log_has(srv, r"refuse peer=127\.0\.0\.1 limit=connections-per-ip"),
                     "refusal not logged")
        a.cmd("QUIT")
        sktest.check(a.closed(), "QUIT did not close")
        d = sktest.wait_for(lambda: (lambda x: x if x.banner[0] == 220 else x.close())(
            sh.Client(srv.port)), timeout=5, what="a free slot after QUIT")
        sh.expect(d.cmd("EHLO client.example"), 250, None, "EHLO on the freed slot")
        for x in (b, d):
            x.close()
    out_of_descriptors()
    print("ok")


def out_of_descriptors():
    import socket
    srv = sh.PrintServer(["--max-conn-per-ip", "1000"])
    try:
        # Leave the server a handful of descriptors.
        import resource
        resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (12, 12))
        socks = []
        for _ in range(20):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        sktest.check(sh.log_has(srv, r"accept-error port=\d+ error=\"Too many open files\""),
                     "accept error not logged")
        for s in socks:
            s.close()
        # Accepting resumes after the pause.
        c = sktest.wait_for(lambda: (lambda x: x if x.banner[0] == 220 else None)(sh.Client(srv.port)),
                            timeout=10, what="accepting again")
        sh.expect(c.cmd("EHLO client.example"), 250, None, "EHLO after recovering")
        c.close()
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
