#!/usr/bin/python3
"""`smtpkit serve` with swaks: PIPELINING, STARTTLS, AUTH PLAIN and LOGIN,
attachments; each message arrives byte for byte in the Maildir (compared
with the DATA swaks shows in its transcript)."""

import email
import email.policy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import (HOST, Serve, expect, expect_arrived, make_users,  # noqa: E402
                        swaks_data)

tmp = sktest.TempDir("sk-serve-swaks-")
try:
    ca = sktest.TestCA(tmp.join("ca"))
    cert, key = ca.issue("mx.test", sans=["mx.test", "127.0.0.1"])
    users = make_users(tmp, {"zoe": "pass word"})
    attachment = bytes(range(256)) * 300 + b"\r\n.\r\n\x00end"
    att = tmp.join("report.bin")
    with open(att, "wb") as f:
        f.write(attachment)

    srv = Serve(tmp, submission=1,
                args=["--hostname", "mx.test", "--tls-cert", cert, "--tls-key", key,
                      "--users", users])

    def swaks(*args, port=None, rc=0):
        r = sktest.run(["swaks", "--server", HOST, "--port", str(port or srv.port),
                        "--helo", "client.test"] + list(args), timeout=60)
        if rc is not None and r.returncode != rc:
            sktest.fail("swaks exited %d (expected %d)\n%s\n%s\n--- server ---\n%s" %
                        (r.returncode, rc, r.stdout[-3000:], r.stderr[-2000:], srv.log()[-3000:]))
        return r

    with srv:
        # 1. PIPELINING over plain SMTP, two recipients, a body with dots.
        r = swaks("--pipeline", "--from", "alice@example.org", "--to",
                  "bob@localhost,carol@localhost", "--body", "Hi\n.one dot\n..two\n.\nbye\n")
        expect("PIPELINING" in r.stdout, "PIPELINING announced", srv)
        sent = swaks_data(r.stdout)
        expect(len(sent) > 100, "DATA found in the swaks transcript: %r" % sent[:200])
        expect_arrived(srv, "localhost", "bob", sent)
        expect_arrived(srv, "localhost", "carol", sent)

        # 2. STARTTLS + AUTH PLAIN on submission, pipelined, with an attachment.
        r = swaks("--tls", "--pipeline", "--auth", "PLAIN", "--auth-user", "zoe",
                  "--auth-password", "pass word", "--from", "zoe@example.org",
                  "--to", "dave@localhost", "--attach", "@" + att,
                  port=srv.submission_port)
        expect("~> AUTH PLAIN" in r.stdout or "~> AUTH" in r.stdout, "AUTH inside TLS", srv)
        sent = swaks_data(r.stdout)
        files = expect_arrived(srv, "localhost", "dave", sent)
        with open(files[0], "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        parts = [p for p in msg.iter_attachments()]
        expect(len(parts) == 1 and parts[0].get_content() == attachment,
               "the attachment decodes to the same bytes", srv)

        # 3. AUTH LOGIN over TLS; a wrong password is refused (swaks exit 28).
        r = swaks("--tls", "--auth", "LOGIN", "--auth-user", "zoe", "--auth-password", "nope",
                  "--from", "zoe@example.org", "--to", "dave@localhost",
                  port=srv.submission_port, rc=28)
        expect("535" in r.stdout, "535 for a wrong password: %s" % r.stdout[-1500:], srv)
        r = swaks("--tls", "--auth", "LOGIN", "--auth-user", "zoe", "--auth-password",
                  "pass word", "--from", "zoe@example.org", "--to", "erin@localhost",
                  "--header", "Subject: login", port=srv.submission_port)
        expect_arrived(srv, "localhost", "erin", swaks_data(r.stdout))

        # 4. The SIZE limit is announced and enforced.
        r = swaks("--from", "alice@example.org", "--to", "bob@localhost", "--quit-after", "EHLO")
        expect("SIZE" in r.stdout, "SIZE announced", srv)
    expect(srv.proc.returncode == 0, "exit 0 after SIGTERM", srv)
    print("ok")
finally:
    tmp.cleanup()
