#!/usr/bin/python3
"""SMTP smuggling: only CRLF.CRLF ends DATA, and a message with a bare CR or
LF is refused whole (RFC 5321 2.3.8, 4.1.1.4); nothing after a fake end of
data is taken as commands. BDAT bodies get the same check."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

SMUGGLED = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\nsmuggled\r\n"
ENDS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n..\n", b"\r\n.\r\r\n"]


def transaction(c):
    sh.expect(c.cmd("MAIL FROM:<alice@example.net>"), 250, "2.1.0", "MAIL")
    sh.expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT")
    sh.expect(c.cmd("DATA"), 354, None, "DATA")


def main():
    # Each refused message counts as a command without progress.
    with sh.PrintServer(["--max-idle", "100"]) as srv:
        c = sh.Client(srv.port)
        c.cmd("EHLO client.example")
        for i, end in enumerate(ENDS):
            transaction(c)
            c.send(b"Subject: %d\r\n\r\nbody" % i + end + SMUGGLED + b"\r\n.\r\n")
            code, lines = c.reply()
            sktest.check(code == 554 and lines[-1].startswith("5.6.0"),
                         "variant %r: got %d %r" % (end, code, lines))
            # The next reply must answer our NOOP: nothing was smuggled.
            sh.expect(c.cmd("NOOP"), 250, "2.0.0", "after variant %r" % end)
        # Bare CR or LF inside a line, not at a fake end.
        for body in (b"a\rb\r\n", b"a\nb\r\n", b"ends with CR\r"):
            transaction(c)
            c.send(body + b"\r\n.\r\n")
            sh.expect(c.reply(), 554, "5.6.0", "bare in %r" % body)
        # BDAT: same rule, and a bare LF cannot end anything either.
        sh.expect(c.cmd("MAIL FROM:<alice@example.net>"), 250, "2.1.0", "MAIL")
        sh.expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT")
        c.send(b"BDAT 9 LAST\r\nbare\nLF\r\n")
        sh.expect(c.reply(), 554, "5.6.0", "BDAT bare LF")
        # A clean message still goes through, with its lines intact.
        transaction(c)
        c.send(b"Subject: clean\r\n\r\nline\r\n.\r\n")
        sh.expect(c.reply(), 250, "2.0.0", "clean message")
        c.cmd("QUIT")
        c.close()
        sktest.check(sh.wait_output(srv, b"END ok=1"), "clean message not delivered")
        out = srv.stdout()
        sktest.check(out.count(b"END ok=1") == 1, "a refused message was delivered:\n%r" % out)
        sktest.check(b"evil@example.net" not in out and b"smuggled" not in out.replace(b"END", b""),
                     "smuggled content delivered")
        sktest.check(b"server mail addr=<evil@example.net>" not in srv.stderr(),
                     "smuggled MAIL executed")
    print("ok")


if __name__ == "__main__":
    main()
