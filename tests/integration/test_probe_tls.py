#!/usr/bin/python3
"""smtpkit probe and TLS that goes wrong: an expired certificate, a
certificate for another name, and a TLS mode that does not match the port
(implicit TLS against a plain server, plain against an implicit one)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from probe_peers import HOST, Cases, Smtpd  # noqa: E402

t = Cases()

with sktest.TempDir() as tmp:
    ca = sktest.TestCA(tmp.join("ca"))
    good = ca.issue("localhost", sans=["localhost", HOST])
    expired = ca.issue("localhost", sans=["localhost", HOST], expired=True)
    other = ca.issue("mail.example.test", sans=["mail.example.test"])

    # STARTTLS with an expired certificate.
    with Smtpd(tls="starttls", cert=expired) as srv:
        r = t.probe("localhost:%d" % srv.port, "--ca-file", ca.cert, "--timeout", "5s")
        t.expect("expired", r.returncode == 76, r, "exit 76")
        t.expect("expired", "[FAIL] tls" in r.stdout and "expired" in r.stdout, r,
                 "TLS fails as expired")
        t.expect("expired", "renew" in r.stdout, r, "fix says renew")
        t.expect("expired", "2020-01-02" in r.stdout, r, "the expiry date is shown")
        r = t.probe("localhost:%d" % srv.port, "--ca-file", ca.cert, "--timeout", "5s",
                    "--json")
        doc = t.json("expired json", r)
        if doc:
            s = t.step("expired json", doc, "tls", "fail")
            t.expect("expired json", s.get("verified") is False and s.get("verify_error"), r,
                     "verified false with the reason")
            t.expect("expired json", (s.get("chain") or [{}])[0].get("not_after", "")
                     .startswith("2020-01-02"), r, "not_after of the leaf")

    # Implicit TLS with a certificate for another name.
    with Smtpd(tls="implicit", cert=other) as srv:
        r = t.probe("localhost:%d" % srv.port, "--tls", "implicit", "--ca-file", ca.cert,
                    "--timeout", "5s")
        t.expect("wrong name", r.returncode == 76, r, "exit 76")
        t.expect("wrong name", "[FAIL] tls" in r.stdout and "another name" in r.stdout, r,
                 "TLS fails for the name")
        t.expect("wrong name", "mail.example.test" in r.stdout, r, "the certificate's names")

        # The same port probed without TLS: the server waits for a
        # ClientHello; the probe recognises TLS and suggests implicit.
        r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none", "--timeout", "2s")
        t.expect("plain to implicit", r.returncode == 76, r, "exit 76")
        t.expect("plain to implicit", "[FAIL] greeting" in r.stdout and
                 "--tls implicit" in r.stdout, r, "suggests --tls implicit")

    # A self-signed certificate: trust it explicitly or use a CA's.
    selfsigned = sktest.TestCA.self_signed(tmp.path, "localhost", sans=["localhost", HOST])
    with Smtpd(tls="starttls", cert=selfsigned) as srv:
        r = t.probe("localhost:%d" % srv.port, "--ca-file", ca.cert, "--timeout", "5s")
        t.expect("self-signed", r.returncode == 76, r, "exit 76")
        t.expect("self-signed", "[FAIL] tls" in r.stdout and "self-signed" in r.stdout, r,
                 "TLS fails as self-signed")
        t.expect("self-signed", "--ca-file" in r.stdout, r, "fix names --ca-file")
        # Trusting that very certificate makes the same server pass.
        r = t.probe("localhost:%d" % srv.port, "--ca-file", selfsigned[0], "--timeout", "5s")
        t.expect("self-signed trusted", r.returncode == 0, r, "exit 0")

    # Implicit TLS against a server that greets in plain text.
    with Smtpd(tls="starttls", cert=good) as srv:
        r = t.probe("localhost:%d" % srv.port, "--tls", "implicit", "--ca-file", ca.cert,
                    "--timeout", "5s")
        t.expect("implicit to plain", r.returncode == 76, r, "exit 76")
        t.expect("implicit to plain", "[FAIL] tls" in r.stdout and "plain text" in r.stdout
                 and "--tls starttls" in r.stdout, r, "suggests --tls starttls")

t.finish()
