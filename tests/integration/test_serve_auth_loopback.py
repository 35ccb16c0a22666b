#!/usr/bin/python3
"""`smtpkit serve` offers AUTH only over TLS by default, loopback clients
included: behind a local proxy or port forwarder every remote client is a
loopback client. --auth-plaintext-loopback allows AUTH without TLS from
127.0.0.0/8 and ::1; AUTH after STARTTLS works either way (RFC 4954 4, 6).
The default and the flag, session by session, are the transcripts
serve_auth_default.txt and serve_auth_plaintext_loopback.txt; here: the
flag in --help, the config-file key (applied by SIGHUP to new sessions)
and AUTH after STARTTLS."""

import base64
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402
from fault_util import log_wait  # noqa: E402
from serve_peer import Serve, expect, make_users, message  # noqa: E402

PASSWORD = "loop back"
GOOD = "AUTH PLAIN " + base64.b64encode(b"\0zoe\0" + PASSWORD.encode()).decode()
BAD = "AUTH PLAIN " + base64.b64encode(b"\0zoe\0wrong").decode()


def ehlo(c, srv):
    code, lines = c.cmd("EHLO client.example")
    expect(code == 250, "EHLO: %d %r" % (code, lines), srv)
    return {l.split()[0]: l.split()[1:] for l in lines[1:]}


def no_plain_auth(srv, port, what):
    """Loopback without TLS: AUTH not announced, and refused with 538."""
    c = sh.Client(port)
    kw = ehlo(c, srv)
    expect("AUTH" not in kw, "%s: AUTH announced without TLS: %r" % (what, kw), srv)
    sh.expect_reply(c.cmd(GOOD), 538, "5.7.11", what + ": AUTH PLAIN without TLS", srv)
    sh.expect(c.cmd("NOOP"), 250, "2.0.0", what + ": session goes on")
    c.cmd("QUIT")
    c.close()


def plain_auth(srv, port, what):
    """Loopback without TLS, allowed: AUTH announced and working."""
    c = sh.Client(port)
    kw = ehlo(c, srv)
    expect(kw.get("AUTH") == ["PLAIN", "LOGIN"], "%s: AUTH PLAIN LOGIN: %r" % (what, kw), srv)
    sh.expect_reply(c.cmd(BAD), 535, "5.7.8", what + ": wrong password", srv)
    sh.expect_reply(c.cmd(GOOD), 235, "2.7.0", what + ": AUTH PLAIN", srv)
    return c


def send(srv, c, subject):
    m = message(subject)
    sh.expect(c.cmd("MAIL FROM:<alice@example.org>"), 250, "2.1.0", subject + ": MAIL")
    sh.expect(c.cmd("RCPT TO:<bob@localhost>"), 250, "2.1.5", subject + ": RCPT")
    sh.expect(c.cmd("DATA"), 354, None, subject + ": DATA")
    c.send(m.encode() + b".\r\n")
    sh.expect(c.reply(), 250, "2.0.0", subject + ": message")
    c.cmd("QUIT")
    c.close()
    return m


def main():
    with sktest.TempDir() as tmp:
        users = make_users(tmp, {"zoe": PASSWORD})
        cert, key, ctx = sh.tls_setup(tmp)

        r = sktest.smtpkit("serve", "--help")
        expect(r.returncode == 0 and "--auth-plaintext-loopback " in r.stdout,
               "--help lists --auth-plaintext-loopback: %r" % r.stdout)

        # The config-file key; SIGHUP applies a change to new sessions.
        conf = tmp.join("serve.conf")
        with open(conf, "w") as f:
            f.write("users = %s\nauth-plaintext-loopback = yes\n" % users)
        srv = Serve(tmp, name="conf", args=["--config", conf])
        with srv:
            c = plain_auth(srv, srv.port, "config yes")
            c.close()
            with open(conf, "w") as f:
                f.write("users = %s\nauth-plaintext-loopback = no\n" % users)
            srv.proc.send_signal(signal.SIGHUP)
            log_wait(srv, "daemon reload-done")
            no_plain_auth(srv, srv.port, "config no after SIGHUP")
        with open(conf, "w") as f:
            f.write("auth-plaintext-loopback = maybe\n")
        r = sktest.smtpkit("serve", "--config", conf, "--data-dir", tmp.join("bad-data"),
                           "--listen", "127.0.0.1:%d" % sktest.free_port(), timeout=30)
        expect(r.returncode == 78 and "%s:1: auth-plaintext-loopback" % conf in r.stderr,
               "bad value: exit 78 naming FILE:LINE and the key: %d %r" % (r.returncode, r.stderr))

        # With a certificate and without the flag: STARTTLS first, then
        # AUTH is offered and works, and a message goes through.
        srv = Serve(tmp, name="tls", submission=1,
                    args=["--users", users, "--local-domain", "localhost",
                          "--tls-cert", cert, "--tls-key", key, "--hostname", "mx.test"])
        with srv:
            for port, what in ((srv.port, "tls smtp"), (srv.submission_port, "tls submission")):
                c = sh.Client(port)
                kw = ehlo(c, srv)
                expect("STARTTLS" in kw and "AUTH" not in kw, "%s before TLS: %r" % (what, kw),
                       srv)
                sh.expect_reply(c.cmd(GOOD), 538, "5.7.11", what + ": AUTH before STARTTLS", srv)
                c.starttls(ctx)
                kw = ehlo(c, srv)
                expect(kw.get("AUTH") == ["PLAIN", "LOGIN"], "%s after TLS: %r" % (what, kw), srv)
                sh.expect_reply(c.cmd(GOOD), 235, "2.7.0", what + ": AUTH after STARTTLS", srv)
                send(srv, c, "auth after starttls on " + what.split()[1])
            files = srv.wait_maildir("localhost", "bob", 2)
            expect(len(files) == 2, "both messages arrived: %r" % files, srv)
    print("ok")


if __name__ == "__main__":
    main()
