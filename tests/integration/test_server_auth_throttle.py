#!/usr/bin/python3
"""Failed AUTH attempts are counted per client address: after N within the
window the session ends (421 4.7.0) and later AUTH gets 454 4.7.0; the log
names the address and never the password."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

import base64


def plain(user, pw):
    return "AUTH PLAIN " + base64.b64encode(b"\0" + user + b"\0" + pw).decode()


def main():
    with sh.PrintServer(["--user", "zoe:right", "--auth-loopback", "--auth-failures", "3"]) as srv:
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        sh.expect(c.cmd(plain(b"zoe", b"Wrong-1")), 535, "5.7.8", "failure 1")
        sh.expect(c.cmd(plain(b"zoe", b"Wrong-2")), 535, "5.7.8", "failure 2")
        sh.expect(c.cmd(plain(b"zoe", b"Wrong-3")), 421, "4.7.0", "failure 3")
        sktest.check(c.closed(), "not closed after too many failures")
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        # Even the right password is refused while throttled.
        sh.expect(c.cmd(plain(b"zoe", b"right")), 454, "4.7.0", "throttled")
        c.close()
        sktest.check(sh.log_has(srv, r"auth-throttle peer=127\.0\.0\.1"), "throttle not logged")
        log = srv.stderr()
        sktest.check(b"auth-failed peer=127.0.0.1 mech=PLAIN user=\"zoe\"" in log, "failure not logged")
        for secret in (b"Wrong-1", b"Wrong-2", b"Wrong-3", b"right", b"AHpvZQ"):
            sktest.check(secret not in log, "secret %r in the log" % secret)
    print("ok")


if __name__ == "__main__":
    main()
