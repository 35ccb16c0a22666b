#!/usr/bin/python3
"""`smtpkit serve` with Python's smtplib: plain SMTP, STARTTLS, implicit TLS,
AUTH PLAIN and LOGIN on submission with a --users file made by `smtpkit
passwd`; every message arrives byte for byte in the Maildir."""

import os
import smtplib
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, expect_arrived, make_users, message  # noqa: E402

tmp = sktest.TempDir("sk-serve-smtplib-")
try:
    ca = sktest.TestCA(tmp.join("ca"))
    cert, key = ca.issue("mx.test", sans=["mx.test", "localhost", "127.0.0.1"])
    users = make_users(tmp, {"zoe": "correct horse", "bob": "s3cret:with colon"})
    tls = ssl.create_default_context(cafile=ca.cert)
    tls.check_hostname = False  # we connect by address; the chain is still verified

    srv = Serve(tmp, submission=1, smtps=1,
                args=["--hostname", "mx.test", "--tls-cert", cert, "--tls-key", key,
                      "--users", users, "--local-domain", "localhost",
                      "--local-domain", "example.net"])
    with srv:
        # 1. Plain SMTP, two recipients in two domains; a line starting with
        # a dot (RFC 5321 4.5.2), 8-bit UTF-8, a long line, an empty line.
        body = ("Hello Bob,\r\n.leading dot\r\n..two dots\r\n.\r\nGrüße aus Köln\r\n" +
                "x" * 900 + "\r\n\r\nend\r\n")
        m1 = message("plain smtplib", body, to="bob@localhost")
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.ehlo("client.test")
            expect(s.has_extn("starttls"), "STARTTLS offered with a certificate", srv)
            expect(s.has_extn("pipelining"), "PIPELINING offered", srv)
            refused = s.sendmail("alice@example.org", ["bob@localhost", "carol@example.net"],
                                 m1.encode("utf-8"), mail_options=["BODY=8BITMIME"])
            expect(refused == {}, "no recipient refused: %r" % refused, srv)
        expect_arrived(srv, "localhost", "bob", m1.encode("utf-8"))
        expect_arrived(srv, "example.net", "carol", m1.encode("utf-8"))

        # 2. STARTTLS on the SMTP port, certificate verified against the CA.
        m2 = message("starttls smtplib", to="bob@localhost")
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.starttls(context=tls)
            code, resp = s.ehlo("client.test")
            expect(code == 250, "EHLO after STARTTLS", srv)
            s.sendmail("alice@example.org", ["bob@localhost"], m2)
        expect_arrived(srv, "localhost", "bob", m2, count=2)
        heads = [open(p, "rb").read(2000) for p in srv.maildir("localhost", "bob")]
        expect(any(b"with ESMTPS" in h for h in heads),
               "Received: says ESMTPS for the STARTTLS message: %r" % heads, srv)

        # 3. Submission: MAIL before AUTH is refused (RFC 6409, RFC 4954 530).
        with smtplib.SMTP(HOST, srv.submission_port, timeout=30) as s:
            s.starttls(context=tls)
            s.ehlo("client.test")
            expect("PLAIN" in s.esmtp_features.get("auth", ""), "AUTH PLAIN offered", srv)
            code, resp = s.mail("zoe@example.org")
            expect(code == 530, "MAIL without AUTH on submission: %d %r" % (code, resp), srv)

        # 4. Wrong password: 535 5.7.8.
        with smtplib.SMTP(HOST, srv.submission_port, timeout=30) as s:
            s.starttls(context=tls)
            s.ehlo("client.test")
            try:
                s.user, s.password = "zoe", "wrong"
                s.auth("PLAIN", s.auth_plain)
                sktest.fail("a wrong password was accepted")
            except smtplib.SMTPAuthenticationError as e:
                expect(e.smtp_code == 535, "535 for a wrong password: %r" % (e,), srv)
        expect("auth-failed" in srv.log(), "failed AUTH logged", srv)
        expect("wrong" not in srv.log(), "passwords never logged", srv)

        # 5. AUTH PLAIN and AUTH LOGIN on submission after STARTTLS.
        for mech, user, pw in (("PLAIN", "zoe", "correct horse"),
                               ("LOGIN", "bob", "s3cret:with colon")):
            m = message("auth %s" % mech, sender=user + "@example.org", to="dave@localhost")
            with smtplib.SMTP(HOST, srv.submission_port, timeout=30) as s:
                s.starttls(context=tls)
                s.ehlo("client.test")
                s.user, s.password = user, pw
                fn = s.auth_plain if mech == "PLAIN" else s.auth_login
                code, resp = s.auth(mech, fn, initial_response_ok=(mech == "PLAIN"))
                expect(code == 235, "AUTH %s: %d %r" % (mech, code, resp), srv)
                s.sendmail(user + "@example.org", ["dave@localhost"], m)
            expect_arrived(srv, "localhost", "dave", m,
                           count=1 if mech == "PLAIN" else 2)

        # 6. Implicit TLS (RFC 8314) with AUTH.
        m6 = message("smtps smtplib", to="erin@localhost")
        with smtplib.SMTP_SSL(HOST, srv.smtps_port, context=tls, timeout=30) as s:
            s.ehlo("client.test")
            s.login("zoe", "correct horse")
            s.sendmail("zoe@example.org", ["erin@localhost"], m6)
        expect_arrived(srv, "localhost", "erin", m6)

        # The 250 names the queue ID, and the log has it.
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.ehlo("client.test")
            s.mail("alice@example.org")
            s.rcpt("frank@localhost")
            code, resp = s.data(message("queue id", to="frank@localhost"))
            expect(code == 250 and resp.startswith(b"2.0.0 Ok: queued as "),
                   "final reply %d %r" % (code, resp), srv)
            qid = resp.split()[-1].decode()
        srv.wait_maildir("localhost", "frank")
        expect(("%s daemon queued" % qid) in srv.log(), "log line with the queue ID", srv)

    rc = srv.proc.returncode
    expect(rc == 0, "SIGTERM: exit 0, got %r" % rc, srv)

    # Without --users there are no accounts: AUTH is not announced, even
    # after STARTTLS, and a client that tries it anyway gets 502.
    bare = Serve(tmp, name="no-users",
                 args=["--hostname", "mx.test", "--tls-cert", cert, "--tls-key", key,
                       "--local-domain", "localhost"])
    with bare:
        with smtplib.SMTP(HOST, bare.port, timeout=30) as s:
            s.starttls(context=tls)
            s.ehlo("client.test")
            expect(not s.has_extn("auth"), "no AUTH without --users: %r" % s.esmtp_features,
                   bare)
            code, resp = s.docmd("AUTH", "PLAIN AHpvZQBzZWNyZXQ=")
            expect(code == 502 and resp.startswith(b"5.5.1"),
                   "AUTH without accounts: 502 5.5.1, got %d %r" % (code, resp), bare)
    print("ok")
finally:
    tmp.cleanup()
