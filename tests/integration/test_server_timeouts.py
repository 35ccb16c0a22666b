#!/usr/bin/python3
"""Greeting, command and data timeouts end the session with 421 4.4.2
(RFC 5321 4.5.3.2); a message cut by the timeout is not delivered."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    with sh.PrintServer(["--timeout", "400"]) as srv:
        # Silent after the banner (greeting stage).
        c = sh.Client(srv.port)
        sh.expect(c.reply(), 421, "4.4.2", "silent client")
        sktest.check(c.closed(), "not closed after greeting timeout")
        # Silent between commands.
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.net>")
        sh.expect(c.reply(), 421, "4.4.2", "idle in a transaction")
        # Silent in the middle of DATA: the partial message is discarded.
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        c.cmd("MAIL FROM:<a@example.net>")
        c.cmd("RCPT TO:<bob@example.org>")
        sh.expect(c.cmd("DATA"), 354, None, "DATA")
        c.send(b"Subject: partial\r\n")
        sh.expect(c.reply(), 421, "4.4.2", "stalled DATA")
        sktest.check(c.closed(), "not closed after data timeout")
        sktest.check(sh.wait_output(srv, b"END ok=0"), "partial message not discarded")
        sktest.check(b"END ok=1" not in srv.stdout(), "partial message delivered")
        sktest.check(sh.log_has(srv, r"timeout peer=127\.0\.0\.1 state=data"), "not logged")
        # A client that keeps talking is not cut off.
        c = sh.Client(srv.port)
        for _ in range(4):
            time.sleep(0.2)
            sh.expect(c.cmd("NOOP"), 250, "2.0.0", "busy client")
        c.close()
    print("ok")


if __name__ == "__main__":
    main()
