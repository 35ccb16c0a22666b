#!/usr/bin/python3
"""Commands that make no progress (errors, NOOP, RSET, VRFY, HELP) are
counted; past the limit the session ends with 421 4.7.0."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    with sh.PrintServer(["--max-idle", "5"]) as srv:
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        for i in range(5):
            code, _ = c.cmd("NOOP" if i % 2 else "BOGUS")
            sktest.check(code in (250, 500), "command %d: %d" % (i, code))
        sh.expect(c.cmd("RSET"), 421, "4.7.0", "sixth idle command")
        sktest.check(c.closed(), "not closed after 421")
        sktest.check(sh.log_has(srv, r"idle-limit peer=127\.0\.0\.1"), "not logged")
        # A delivered message resets the count.
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        for _ in range(4):
            c.cmd("NOOP")
        c.cmd("MAIL FROM:<a@example.net>")
        c.cmd("RCPT TO:<bob@example.org>")
        c.cmd("DATA")
        sh.expect(c.cmd(b"x\r\n."), 250, "2.0.0", "message")
        for _ in range(5):
            sh.expect(c.cmd("NOOP"), 250, "2.0.0", "NOOP after a message")
        c.close()
    print("ok")


if __name__ == "__main__":
    main()
