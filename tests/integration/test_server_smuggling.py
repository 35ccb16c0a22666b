#!/usr/bin/python3
"""SMTP smuggling: only CRLF.CRLF ends DATA, and a message with a bare CR, a
bare LF or a NUL is refused whole (RFC 5321 2.3.8, 4.1.1.4; RFC 2045 2.7,
2.8); nothing after a fake end of data is taken as commands. BDAT bodies get
the same check (BINARYMIME, which would allow NUL, is not offered). First
against the library's server (examples/server_print), then against
`smtpkit serve`, whose Maildir and queue must stay empty."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402
from serve_peer import Serve, expect  # noqa: E402

SMUGGLED = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\nsmuggled\r\n"
ENDS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n..\n", b"\r\n.\r\r\n"]
# A receiver further on that drops NULs would see CRLF.CRLF in these.
NUL_ENDS = [b"\r\n\0.\r\n", b"\r\n.\0\r\n"]
# A NUL inside a line, at its start, and at its end.
NUL_LINES = [b"a\0b\r\n", b"\0line\r\n", b"line\0\r\n"]


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
        # NUL next to the end marker or anywhere in a line.
        for body in [b"Subject: nul\r\n\r\nbody" + e + SMUGGLED for e in NUL_ENDS] + NUL_LINES:
            transaction(c)
            c.send(body + b"\r\n.\r\n")
            sh.expect(c.reply(), 554, "5.6.0", "NUL in %r" % body)
            sh.expect(c.cmd("NOOP"), 250, "2.0.0", "after NUL in %r" % body)
        # BDAT: same rule, and a bare LF cannot end anything either.
        sh.expect(c.cmd("MAIL FROM:<alice@example.net>"), 250, "2.1.0", "MAIL")
        sh.expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT")
        c.send(b"BDAT 9 LAST\r\nbare\nLF\r\n")
        sh.expect(c.reply(), 554, "5.6.0", "BDAT bare LF")
        for body in [b"body" + e + b"more\r\n" for e in NUL_ENDS] + NUL_LINES:
            sh.expect(c.cmd("MAIL FROM:<alice@example.net>"), 250, "2.1.0", "MAIL")
            sh.expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT")
            c.send(b"BDAT %d LAST\r\n" % len(body) + body)
            sh.expect(c.reply(), 554, "5.6.0", "BDAT NUL in %r" % body)
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
        # The log is read by another thread than stdout: wait for it.
        want = {b" server bad-eol ": len(ENDS) + 3 + 1,
                b" server bad-octet ": 2 * (len(NUL_ENDS) + len(NUL_LINES))}
        sktest.settle(lambda: all(srv.stderr().count(k) >= n for k, n in want.items()))
        for k, n in want.items():
            sktest.check(srv.stderr().count(k) == n,
                         "%d %r logged:\n%r" % (n, k, srv.stderr()[-3000:]))
    serve_nul()
    print("ok")


def serve_nul():
    """`smtpkit serve` refuses every message with a NUL, in DATA and in
    BDAT, and queues and delivers none of them: its Maildirs and queue stay
    empty. A clean message sent last arrives, which shows that the refused
    ones were not merely slower. One connection per message: refused
    messages count as commands without progress."""
    with sktest.TempDir() as tmp:
        with Serve(tmp, args=["--local-domain", "localhost"]) as srv:
            def session():
                c = sh.Client(srv.port)
                code, lines = c.cmd("EHLO client.example")
                kw = [l.split()[0] for l in lines[1:]]
                expect(code == 250 and "CHUNKING" in kw and "BINARYMIME" not in kw,
                       "EHLO: CHUNKING without BINARYMIME: %r" % kw, srv)
                sh.expect(c.cmd("MAIL FROM:<alice@example.net>"), 250, "2.1.0", "MAIL")
                return c

            def refused(c, code, lines, what):
                expect(code == 554 and lines[-1].startswith("5.6.0"),
                       "%s: %d %r" % (what, code, lines), srv)
                # The next reply answers our NOOP: nothing was smuggled.
                sh.expect(c.cmd("NOOP"), 250, "2.0.0", "after " + what)
                c.cmd("QUIT")
                c.close()

            sent = 0
            for body in [b"Subject: nul\r\n\r\nbody" + e + SMUGGLED for e in NUL_ENDS] + NUL_LINES:
                c = session()
                sh.expect(c.cmd("RCPT TO:<bob@localhost>"), 250, "2.1.5", "RCPT")
                sh.expect(c.cmd("DATA"), 354, None, "DATA")
                c.send(body + b"\r\n.\r\n")
                code, lines = c.reply()
                refused(c, code, lines, "DATA with NUL %r" % body)
                sent += 1
            chunks = [b"Subject: nul\r\n\r\nbody" + e + b"more\r\n" for e in NUL_ENDS]
            for body in chunks + NUL_LINES:
                c = session()
                sh.expect(c.cmd("RCPT TO:<bob@localhost>"), 250, "2.1.5", "RCPT")
                # The NUL in a first chunk; the message ends in a second.
                c.send(b"BDAT %d\r\n" % len(body) + body)
                code, lines = c.reply()
                if code == 250:
                    c.send(b"BDAT 6 LAST\r\nend\r\n")
                    code, lines = c.reply()
                refused(c, code, lines, "BDAT with NUL %r" % body)
                sent += 1
            # Log lines are flushed once per loop pass, maybe after the reply.
            sktest.settle(lambda: srv.log().count(" server bad-octet ") >= sent)
            expect(srv.log().count(" server bad-octet ") == sent,
                   "%d NUL refusals logged" % sent, srv)
            expect(" daemon queued " not in srv.log(), "a message with a NUL was queued", srv)
            expect(srv.queue_list() == [], "queue empty: %r" % srv.queue_list(), srv)
            # A clean message afterwards is delivered: the checks are not vacuous.
            c = session()
            sh.expect(c.cmd("RCPT TO:<carol@localhost>"), 250, "2.1.5", "RCPT")
            sh.expect(c.cmd("DATA"), 354, None, "DATA")
            c.send(b"Subject: clean\r\n\r\nline\r\n.\r\n")
            sh.expect(c.reply(), 250, "2.0.0", "clean message")
            c.cmd("QUIT")
            c.close()
            srv.wait_maildir("localhost", "carol")
            boxes = os.path.join(srv.data_dir, "mailboxes", "localhost")
            expect(sorted(os.listdir(boxes)) == ["carol"],
                   "only carol has a Maildir: %r" % os.listdir(boxes), srv)
            expect(srv.maildir("localhost", "bob") == [], "nothing delivered to bob", srv)
            expect(srv.log().count(" daemon queued ") == 1, "one message queued", srv)
            sktest.wait_for(lambda: srv.queue_list() == [], timeout=15,
                            what="queue empty after delivery")


if __name__ == "__main__":
    main()
