#!/usr/bin/python3
"""AUTH is neither offered nor accepted before TLS on a network port
(RFC 4954 4, RFC 3207 6); after STARTTLS it is; submission requires it
before MAIL (RFC 6409 4.3); implicit TLS (RFC 8314); STARTTLS forgets an
AUTH made before it. The SASL exchanges themselves (PLAIN, LOGIN, cancel,
errors) and the loopback exception are tests/transcripts/auth.txt."""

import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

EHLO = "EHLO client.example"


def ehlo_keywords(c):
    code, lines = c.cmd(EHLO)
    sktest.check(code == 250, "EHLO: %d" % code)
    return [l.split()[0] for l in lines[1:]]


def main():
    with sktest.TempDir() as tmp:
        cert, key, ctx = sh.tls_setup(tmp)
        opts = ["--tls", cert, key, "--user", "zoe:pa55 word"]
        listens = [("--listen", "127.0.0.1:0"), ("--submission", "127.0.0.1:0"),
                   ("--smtps", "127.0.0.1:0")]
        with sh.PrintServer(opts, listens=listens) as srv:
            smtp, sub, smtps = srv.ports["listen"][0], srv.ports["submission"][0], srv.ports["smtps"][0]

            # Port 25 style: STARTTLS offered, AUTH not, and refused with 538.
            c = sh.Client(smtp)
            kw = ehlo_keywords(c)
            sktest.check("STARTTLS" in kw and "AUTH" not in kw, "before TLS: %r" % kw)
            sh.expect(c.cmd("AUTH PLAIN AHpvZQBwYTU1IHdvcmQ="), 538, "5.7.11", "AUTH before TLS")
            c.starttls(ctx)
            kw = ehlo_keywords(c)
            sktest.check("AUTH" in kw and "STARTTLS" not in kw, "after TLS: %r" % kw)
            sh.expect(c.cmd("AUTH PLAIN AHpvZQBwYTU1IHdvcmQ="), 235, "2.7.0", "AUTH after TLS")
            c.close()

            # Submission: TLS first, then AUTH, then MAIL.
            c = sh.Client(sub)
            kw = ehlo_keywords(c)
            sktest.check("AUTH" not in kw, "submission before TLS offers AUTH")
            sh.expect(c.cmd("MAIL FROM:<zoe@example.org>"), 530, "5.7.0", "MAIL before TLS")
            sh.expect(c.cmd("AUTH PLAIN AHpvZQBwYTU1IHdvcmQ="), 538, "5.7.11", "AUTH before TLS")
            c.starttls(ctx)
            c.cmd(EHLO)
            sh.expect(c.cmd("MAIL FROM:<zoe@example.org>"), 530, "5.7.0", "MAIL before AUTH")
            sh.expect(c.cmd("AUTH PLAIN AHpvZQBwYTU1IHdvcmQ="), 235, "2.7.0", "submission AUTH")
            sh.expect(c.cmd("MAIL FROM:<zoe@example.org>"), 250, "2.1.0", "MAIL after AUTH")
            sh.expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT")
            c.close()

            # Implicit TLS with a real client (smtplib), AUTH and a message.
            s = smtplib.SMTP_SSL("127.0.0.1", smtps, context=ctx, timeout=10)
            s._host = "mx.test"
            s.ehlo("client.example")
            sktest.check("auth" in s.esmtp_features and "starttls" not in s.esmtp_features,
                         "smtps features %r" % s.esmtp_features)
            s.login("zoe", "pa55 word")
            s.sendmail("zoe@example.org", ["bob@example.org"], b"Subject: t\r\n\r\nvia smtps\r\n")
            s.quit()
            sktest.check(sh.wait_output(srv, b"proto=ESMTPSA tls=1 auth=zoe"), "smtps envelope")
            sktest.check(b"pa55" not in srv.stderr(), "password in the log")

        # RFC 3207 4.2: STARTTLS forgets what came before it, AUTH included.
        opts = ["--tls", cert, key, "--user", "zoe:pw", "--auth-loopback"]
        with sh.PrintServer(opts, listens=[("--submission", "127.0.0.1:0")]) as srv:
            c = sh.Client(srv.ports["submission"][0])
            c.cmd(EHLO)
            sh.expect(c.cmd("AUTH PLAIN AHpvZQBwdw=="), 235, "2.7.0", "clear-text loopback AUTH")
            c.starttls(ctx)
            kw = ehlo_keywords(c)
            sktest.check("AUTH" in kw, "AUTH not offered again after STARTTLS: %r" % kw)
            sh.expect(c.cmd("MAIL FROM:<zoe@example.org>"), 530, "5.7.0", "AUTH kept across STARTTLS")
            c.close()
    print("ok")


if __name__ == "__main__":
    main()
