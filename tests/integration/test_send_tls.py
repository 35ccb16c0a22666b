#!/usr/bin/python3
"""`smtpkit send` over TLS against aiosmtpd: STARTTLS and implicit TLS with
a test CA, and the refusals (wrong name, untrusted, not offered, not SMTP)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from send_peer import RawPeer, Runner, Smtpd, expect, expect_exit, json_out, send  # noqa: E402

tmp = sktest.TempDir("sk-send-tls-")
run = Runner()
ca = sktest.TestCA(tmp.join("ca"))
GOOD = ca.issue("localhost", ["localhost", "127.0.0.1"])
WRONG_NAME = ca.issue("wrong.example", ["wrong.example"])
UNTRUSTED = sktest.TestCA.self_signed(tmp.path, "localhost", ["localhost", "127.0.0.1"])
TEXT = tmp.join("body.txt")
with open(TEXT, "w") as f:
    f.write("over TLS\n")


def base(port, *extra):
    return ["--server", "127.0.0.1:%d" % port, "--from", "a@example.org", "--to",
            "b@example.net", "--subject", "tls", "--text", TEXT] + list(extra)


@run.case
def starttls_verified_by_default():
    with Smtpd(tls="starttls", cert=GOOD) as s:
        r = send(*base(s.port, "--ca-file", ca.cert))  # no --tls: STARTTLS required
        expect_exit(r, 0)
        expect(len(s.messages) == 1 and s.messages[0]["tls"], "message sent over TLS", r)
        r = send(*base(s.port, "--tls", "starttls", "--ca-file", ca.cert, "--json"))
        expect_exit(r, 0)
        expect(json_out(r)["tls"]["version"].startswith("TLSv1."), "JSON tells TLS version", r)
        expect(s.messages[1]["tls"], "second message over TLS")


@run.case
def starttls_required_but_not_offered():
    with Smtpd() as s:
        r = send(*base(s.port, "--ca-file", ca.cert, "--json"))
        expect_exit(r, 76)
        expect(json_out(r)["error"]["step"] == "TLS", "error step TLS", r)
        expect(s.messages == [], "nothing sent in clear")
        r = send(*base(s.port, "--ca-file", ca.cert))
        expect("step:   TLS" in r.stderr and "hint:" in r.stderr and "--tls implicit" in r.stderr,
               "error block with a hint naming the option", r)


@run.case
def implicit_tls():
    with Smtpd(tls="implicit", cert=GOOD) as s:
        r = send(*base(s.port, "--tls", "implicit", "--ca-file", ca.cert))
        expect_exit(r, 0)
        expect(len(s.messages) == 1 and s.messages[0]["tls"], "message over implicit TLS", r)


@run.case
def certificate_for_another_name():
    for mode in ("starttls", "implicit"):
        with Smtpd(tls=mode, cert=WRONG_NAME) as s:
            r = send(*base(s.port, "--tls", mode, "--ca-file", ca.cert))
            expect_exit(r, 76)
            expect("TLS" in r.stderr, "error block names TLS (%s)" % mode, r)
            expect(s.messages == [], "nothing sent")


@run.case
def untrusted_certificate_and_insecure():
    with Smtpd(tls="starttls", cert=UNTRUSTED) as s:
        r = send(*base(s.port, "--ca-file", ca.cert))
        expect_exit(r, 76)
        expect("TLS" in r.stderr, "error names TLS", r)
        expect(s.messages == [], "nothing sent")
        r = send(*base(s.port, "--ca-file", ca.cert, "--insecure"))
        expect_exit(r, 0)
        expect(len(s.messages) == 1 and s.messages[0]["tls"], "sent with --insecure", r)
    with Smtpd(tls="implicit", cert=UNTRUSTED) as s:
        r = send(*base(s.port, "--tls", "implicit"))
        expect_exit(r, 76)
        r = send(*base(s.port, "--tls", "implicit", "--insecure"))
        expect_exit(r, 0)


@run.case
def peer_that_does_not_speak_smtp():
    with RawPeer("not_smtp") as p:
        r = send(*base(p.port, "--tls", "none", "--timeout", "5s"))
        expect_exit(r, 76)


@run.case
def missing_ca_file_is_configuration_error():
    with Smtpd(tls="starttls", cert=GOOD) as s:
        r = send(*base(s.port, "--ca-file", tmp.join("missing-ca.pem")))
        expect_exit(r, 78)
        expect("missing-ca.pem" in r.stderr, "names the file", r)
        expect(s.messages == [], "nothing sent")


try:
    run.finish()
finally:
    tmp.cleanup()
