#!/usr/bin/python3
"""Command lines over the limit get 500 5.5.2 (RFC 5321 4.5.3.1.4: 512
octets, plus what announced extensions allow for MAIL/RCPT, never over
1000); the session goes on after the long line."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    with sh.PrintServer() as srv:
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        # 512 octets with CRLF is the base limit.
        sh.expect(c.cmd("NOOP " + "x" * (512 - 7)), 250, "2.0.0", "512-octet NOOP")
        sh.expect(c.cmd("NOOP " + "x" * (513 - 7)), 500, "5.5.2", "513-octet NOOP")
        sh.expect(c.cmd("MAIL FROM:<alice@example.net>"), 250, "2.1.0", "MAIL")
        # RCPT may grow by the DSN allowance (RFC 3461 4): ORCPT of 480.
        orcpt = "rfc822;" + "o" * 470 + "+40example.org"
        line = "RCPT TO:<bob@example.org> NOTIFY=FAILURE ORCPT=" + orcpt
        sktest.check(512 < len(line) + 2 <= 1000, "test line length %d" % len(line))
        sh.expect(c.cmd(line), 250, "2.1.5", "long RCPT within the DSN allowance")
        # Never over 1000 octets, whatever the extensions.
        sh.expect(c.cmd("RCPT TO:<carol@example.org> ORCPT=rfc822;" + "p" * 1000), 500, "5.5.2",
                  "RCPT over 1000")
        # A huge line without an end: one 500, then the session continues.
        c.send(b"NOOP " + b"y" * 20000)
        sh.expect(c.reply(), 500, "5.5.2", "20000 octets without CRLF")
        c.send(b"y" * 5000 + b"\r\n")
        sh.expect(c.cmd("RCPT TO:<carol@example.org>"), 250, "2.1.5", "RCPT after long line")
        sh.expect(c.cmd("DATA"), 354, None, "DATA")
        # DATA lines are not command lines: long ones are passed on.
        c.send(b"z" * 3000 + b"\r\n.\r\n")
        sh.expect(c.reply(), 250, "2.0.0", "message with a long line")
        c.close()
        sktest.check(sh.wait_output(srv, b"END ok=1 size=3002"), "message not delivered whole")
    print("ok")


if __name__ == "__main__":
    main()
