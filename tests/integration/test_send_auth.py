#!/usr/bin/python3
"""`smtpkit send` AUTH against aiosmtpd: PLAIN and LOGIN over STARTTLS, a
wrong password, credentials kept off plain-text connections, and the
--verbose transcript with the secrets masked."""

import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from send_peer import Runner, Smtpd, expect, expect_exit, json_out, send  # noqa: E402

tmp = sktest.TempDir("sk-send-auth-")
run = Runner()
ca = sktest.TestCA(tmp.join("ca"))
CERT = ca.issue("localhost", ["localhost", "127.0.0.1"])
USER, PASSWORD = "alice", "s3cret-Pässwort"
USERS = {USER: PASSWORD}
TEXT = tmp.join("body.txt")
with open(TEXT, "w") as f:
    f.write("body-marker-7f3a\n")
PWFILE = tmp.join("password")
with open(PWFILE, "w") as f:
    f.write(PASSWORD + "\n")  # the trailing newline is not part of it
BADPW = tmp.join("bad-password")
with open(BADPW, "w") as f:
    f.write("not-the-password\n")


def base(port, *extra):
    return ["--server", "127.0.0.1:%d" % port, "--ca-file", ca.cert, "--from", "a@example.org",
            "--to", "b@example.net", "--subject", "auth", "--text", TEXT] + list(extra)


@run.case
def plain_and_login_over_starttls():
    for mech in ("PLAIN", "LOGIN"):
        with Smtpd(tls="starttls", cert=CERT, users=USERS) as s:
            r = send(*base(s.port, "--user", USER, "--password-file", PWFILE, "--auth", mech,
                           "--json"))
            expect_exit(r, 0)
            expect(s.recorder.auth_logins == [(mech, USER)], "AUTH %s as %s: %r"
                   % (mech, USER, s.recorder.auth_logins), r)
            expect(len(s.messages) == 1 and s.messages[0]["auth"] and s.messages[0]["tls"],
                   "sent authenticated over TLS", r)
            expect(json_out(r)["auth"] == mech, "JSON names the mechanism", r)


@run.case
def password_from_environment():
    with Smtpd(tls="starttls", cert=CERT, users=USERS) as s:
        r = send(*base(s.port, "--user", USER), env={"SMTPKIT_PASSWORD": PASSWORD})
        expect_exit(r, 0)
        expect(len(s.recorder.auth_logins) == 1, "authenticated once", r)
        expect(len(s.messages) == 1, "sent", r)


@run.case
def xoauth2_with_token_file():
    token = "ya29.test-token"
    tokfile = tmp.join("token")
    with open(tokfile, "w") as f:
        f.write(token + "\n")
    with Smtpd(tls="starttls", cert=CERT, tokens={USER: token}) as s:
        r = send(*base(s.port, "--user", USER, "--oauth-token-file", tokfile, "--auth", "XOAUTH2",
                       "--verbose", "--json"))
        expect_exit(r, 0)
        expect(s.recorder.auth_logins == [("XOAUTH2", USER)], "XOAUTH2 %r"
               % s.recorder.auth_logins, r)
        expect(len(s.messages) == 1 and s.messages[0]["auth"], "sent authenticated", r)
        expect(token not in r.stderr, "token not in the transcript", r)
        bad = tmp.join("bad-token")
        with open(bad, "w") as f:
            f.write("expired\n")
        r = send(*base(s.port, "--user", USER, "--oauth-token-file", bad, "--auth", "XOAUTH2"))
        expect_exit(r, 77)


@run.case
def wrong_password_is_auth_failure():
    with Smtpd(tls="starttls", cert=CERT, users=USERS) as s:
        r = send(*base(s.port, "--user", USER, "--password-file", BADPW, "--json"))
        expect_exit(r, 77)
        j = json_out(r)
        expect(j["error"]["step"] == "AUTH" and j["error"]["code"] == 535, "AUTH 535", r)
        expect(s.messages == [], "nothing sent")
        r = send(*base(s.port, "--user", USER, "--password-file", BADPW))
        expect("AUTH" in r.stderr and "535" in r.stderr, "error block names AUTH, 535", r)


@run.case
def no_credentials_in_the_clear_unless_allowed():
    with Smtpd(users=USERS, auth_require_tls=False) as s:
        r = send(*base(s.port, "--tls", "none", "--user", USER, "--password-file", PWFILE))
        expect_exit(r, 78)  # a configuration the user must change, not a server failure
        expect("--allow-plaintext-auth" in r.stderr, "hint names the option", r)
        expect(s.recorder.auth_logins == [], "no AUTH attempted: %r" % s.recorder.auth_logins, r)
        expect(s.messages == [], "nothing sent")
        r = send(*base(s.port, "--tls", "none", "--user", USER, "--password-file", PWFILE,
                       "--allow-plaintext-auth"))
        expect_exit(r, 0)
        expect(s.recorder.auth_logins and s.recorder.auth_logins[0][1] == USER, "AUTH", r)
        expect(len(s.messages) == 1 and s.messages[0]["auth"], "sent authenticated", r)


@run.case
def verbose_transcript_masks_secrets():
    plain_blob = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
    pw_b64 = base64.b64encode(PASSWORD.encode()).decode()
    for mech in ("PLAIN", "LOGIN"):
        with Smtpd(tls="starttls", cert=CERT, users=USERS) as s:
            r = send(*base(s.port, "--user", USER, "--password-file", PWFILE, "--auth", mech,
                           "--verbose"))
            expect_exit(r, 0)
            err = r.stderr
            expect("C: AUTH %s" % mech in err, "transcript shows AUTH %s" % mech, r)
            expect("S: 235" in err, "transcript shows the AUTH success", r)
            expect("C: MAIL FROM:<a@example.org>" in err, "transcript shows MAIL", r)
            expect("S: 220" in err and "STARTTLS" in err, "transcript shows greeting, STARTTLS", r)
            for secret in (PASSWORD, plain_blob, pw_b64, plain_blob[:12], pw_b64[:12]):
                expect(secret not in err, "secret %r not in the transcript" % secret, r)
            expect(PASSWORD not in r.stdout, "nor on stdout", r)
            expect("body-marker-7f3a" not in err, "message content not in the transcript", r)


try:
    run.finish()
finally:
    tmp.cleanup()
