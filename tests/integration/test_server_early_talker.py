#!/usr/bin/python3
"""A client that talks before the greeting (RFC 5321 4.3.1: it must wait
for it) is dropped with 554 when a greeting delay is set; a patient one is
served."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    with sh.PrintServer(["--greeting-delay", "300"]) as srv:
        c = sh.Client(srv.port, greet=False)
        c.send(b"EHLO spammer.example\r\nMAIL FROM:<s@example.net>\r\n")
        code, lines = c.reply()
        sktest.check(code == 554 and lines[0].startswith("5.5.0"), "early talker got %d %r" % (code, lines))
        sktest.check(c.closed(), "early talker not disconnected")
        sktest.check(sh.log_has(srv, r"early-talker peer=127\.0\.0\.1"), "not logged")
        sktest.check(b"server mail" not in srv.stderr(), "early talker's MAIL executed")
        c = sh.Client(srv.port)
        sktest.check(c.banner[0] == 220, "patient client got %r" % (c.banner,))
        sh.expect(c.cmd("EHLO client.example"), 250, None, "patient EHLO")
        c.close()
    # Without a delay the banner comes at once.
    with sh.PrintServer([]) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=0.25)
        sktest.check(s.recv(100).startswith(b"220 "), "no immediate banner")
        s.close()
    print("ok")


if __name__ == "__main__":
    main()
