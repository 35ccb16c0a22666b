#!/usr/bin/python3
"""Real clients against the server framework: swaks (STARTTLS, AUTH PLAIN
and LOGIN, pipelining, BDAT), curl (STARTTLS + AUTH), Postfix smtp-source
(many pipelined messages over parallel sessions), Python smtplib (BDAT is
not in smtplib; SMTPUTF8)."""

import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    with sktest.TempDir() as tmp:
        cert, key, ctx = sh.tls_setup(tmp)
        ca = tmp.join("ca", "ca.pem")
        with sh.PrintServer(["--tls", cert, key, "--user", "zoe:pa55", "--max-conn-per-ip", "100"],
                            verbose=False) as srv:
            port = str(srv.port)
            for mech in ("PLAIN", "LOGIN"):
                r = sktest.run(["swaks", "--server", "127.0.0.1", "--port", port, "--tls",
                                "--tls-ca-path", ca, "--tls-verify", "--tls-sni", "mx.test",
                                "--auth", mech, "--auth-user", "zoe", "--auth-password", "pa55",
                                "--from", "zoe@example.org", "--to", "bob@example.org",
                                "--header", "Subject: swaks " + mech, "--pipeline"], timeout=60)
                sktest.check(r.returncode == 0, "swaks %s: %s%s" % (mech, r.stdout, r.stderr))
                sktest.check("<~  235 2.7.0" in r.stdout, "swaks %s AUTH: %s" % (mech, r.stdout))
            r = sktest.run(["swaks", "--server", "127.0.0.1", "--port", port, "--from",
                            "a@example.net", "--to", "carol@example.org", "--body",
                            "line1\n.dotted\nline3", "--header", "Subject: chunked"], timeout=60)
            sktest.check(r.returncode == 0, "swaks plain: %s%s" % (r.stdout, r.stderr))
            msg = tmp.join("msg.eml")
            with open(msg, "wb") as f:
                f.write(b"From: zoe@example.org\r\nTo: bob@example.org\r\nSubject: curl\r\n\r\nvia curl\r\n")
            r = sktest.run(["curl", "-sS", "--max-time", "30", "--url", "smtp://127.0.0.1:" + port,
                            "--ssl-reqd", "--cacert", ca, "--resolve", "mx.test:%s:127.0.0.1" % port,
                            "--connect-to", "127.0.0.1:%s:mx.test:%s" % (port, port),
                            "--user", "zoe:pa55", "--mail-from", "zoe@example.org",
                            "--mail-rcpt", "bob@example.org", "--upload-file", msg], timeout=60)
            sktest.check(r.returncode == 0, "curl: %s" % r.stderr)
            # smtp-source: 40 messages, 4 parallel sessions, 5 messages each.
            r = sktest.run(["/usr/sbin/smtp-source", "-s", "4", "-m", "40", "-r", "1", "-l", "2000",
                            "-f", "a@example.net", "-t", "bob@example.org", "-c",
                            "127.0.0.1:" + port], timeout=120)
            sktest.check(r.returncode == 0, "smtp-source: %s%s" % (r.stdout, r.stderr))
            s = smtplib.SMTP("127.0.0.1", srv.port, timeout=10)
            s.ehlo("client.example")
            s.sendmail("zoë@example.net", ["jörg@müller.example"], "Subject: ü\r\n\r\nGrüße\r\n".encode(),
                       mail_options=["SMTPUTF8"])
            s.quit()
            sktest.check(sh.wait_output(srv, "RCPT <jörg@müller.example>".encode()), "SMTPUTF8 message")
            # The server prints a message's envelope and its END line in
            # two writes: wait for every END line, not for the envelope.
            want = 2 + 1 + 1 + 40 + 1
            sktest.settle(lambda: srv.stdout().count(b"END ok=1") >= want, timeout=10)
            out = srv.stdout()
            sktest.check(out.count(b"END ok=1") == want,
                         "messages delivered: %d" % out.count(b"END ok=1"))
            sktest.check(b"Subject: swaks LOGIN" in out and b"via curl" in out and b".dotted" in out,
                         "message contents")
            sktest.check(out.count(b"proto=ESMTPSA tls=1 auth=zoe") == 3, "TLS+AUTH envelopes")
    print("ok")


if __name__ == "__main__":
    main()
