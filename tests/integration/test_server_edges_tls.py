#!/usr/bin/python3
"""Extension commands the session has not announced get 502 5.5.1
(RFC 5321 4.2.4): STARTTLS once TLS is on, after STARTTLS or on an implicit
TLS port (RFC 3207 4.2 forbids announcing it there); STARTTLS and AUTH after
HELO (RFC 5321 2.2.1). AUTH before TLS keeps 538 (RFC 4954 6) and a second
AUTH 503 (RFC 4954 4). A refusal changes nothing: mail still flows."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

PLAIN = "AUTH PLAIN AHpvZQBwYTU1IHdvcmQ="  # zoe / "pa55 word"


def send_one(c, rcpt):
    sh.expect(c.cmd("MAIL FROM:<alice@example.net>"), 250, "2.1.0", "MAIL")
    sh.expect(c.cmd("RCPT TO:<%s>" % rcpt), 250, "2.1.5", "RCPT")
    sh.expect(c.cmd("DATA"), 354, None, "DATA")
    sh.expect(c.cmd("Subject: t\r\n\r\nhi\r\n."), 250, "2.0.0", "end of data")


def main():
    with sktest.TempDir() as tmp:
        cert, key, ctx = sh.tls_setup(tmp)
        opts = ["--tls", cert, key, "--user", "zoe:pa55 word"]
        listens = [("--listen", "127.0.0.1:0"), ("--smtps", "127.0.0.1:0")]
        accept = ["helo@example.org", "starttls@example.org", "smtps@example.org"]
        with sh.PrintServer(opts, accept=accept, listens=listens) as srv:
            smtp, smtps = srv.ports["listen"][0], srv.ports["smtps"][0]

            # After HELO nothing is announced: STARTTLS and AUTH are 502.
            c = sh.Client(smtp)
            sh.expect(c.cmd("HELO client.example"), 250, None, "HELO")
            sh.expect(c.cmd("STARTTLS"), 502, "5.5.1", "STARTTLS after HELO")
            sh.expect(c.cmd(PLAIN), 502, "5.5.1", "AUTH after HELO")
            send_one(c, "helo@example.org")
            c.close()

            # STARTTLS, then STARTTLS again: TLS is on, not announced, 502;
            # the session goes on over TLS.
            c = sh.Client(smtp)
            sh.expect(c.cmd("EHLO client.example"), 250, None, "EHLO")
            sh.expect(c.cmd(PLAIN), 538, "5.7.11", "AUTH before TLS")
            c.starttls(ctx)
            code, lines = c.cmd("EHLO client.example")
            sktest.check(code == 250 and not any(l.startswith("STARTTLS") for l in lines),
                         "EHLO after TLS announces STARTTLS: %r" % lines)
            sh.expect(c.cmd("STARTTLS"), 502, "5.5.1", "second STARTTLS")
            sh.expect(c.cmd(PLAIN), 235, "2.7.0", "AUTH over TLS")
            sh.expect(c.cmd(PLAIN), 503, "5.5.1", "second AUTH")
            send_one(c, "starttls@example.org")
            c.close()

            # Implicit TLS (RFC 8314): STARTTLS is never announced.
            c = sh.Client(smtps, tls_context=ctx)
            sh.expect(c.cmd("EHLO client.example"), 250, None, "EHLO on smtps")
            sh.expect(c.cmd("STARTTLS"), 502, "5.5.1", "STARTTLS on smtps")
            sh.expect(c.cmd(PLAIN), 235, "2.7.0", "AUTH on smtps")
            send_one(c, "smtps@example.org")
            c.close()

            for rcpt in accept:
                sktest.check(sh.wait_output(srv, b"RCPT <%s>" % rcpt.encode()),
                             "no message for %s: %r" % (rcpt, srv.stdout()))
    print("ok")


if __name__ == "__main__":
    main()
