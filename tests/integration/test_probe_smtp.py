#!/usr/bin/python3
"""smtpkit probe against working SMTP servers (aiosmtpd): a plain server,
STARTTLS with a test CA, AUTH accepted and refused (535), and an envelope
whose recipient does not exist (550 5.1.1)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from probe_peers import HOST, PASSWORD, UNKNOWN, USER, Cases, Smtpd  # noqa: E402

t = Cases()

with sktest.TempDir() as tmp:
    ca = sktest.TestCA(tmp.join("ca"))
    cert = ca.issue("localhost", sans=["localhost", HOST])
    pwfile = tmp.join("pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    badpw = tmp.join("badpw")
    with open(badpw, "w") as f:
        f.write("wrong-" + PASSWORD + "\n")

    # Plain server, --tls none: every step passes, TLS is a warning.
    with Smtpd() as srv:
        target = "%s:%d" % (HOST, srv.port)
        r = t.probe(target, "--tls", "none", "--timeout", "5s")
        t.expect("plain", r.returncode == 0, r, "exit 0 expected")
        for line in ("[ OK ] dns", "[ OK ] tcp", "[ OK ] greeting", "[ OK ] ehlo",
                     "[WARN] tls", "SMTPUTF8", "UTF-8 addresses", "result: OK with 1 warning"):
            t.expect("plain", line in r.stdout, r, "missing %r" % line)
        t.expect("plain", "220 " in r.stdout and "mx.probe.test" in r.stdout, r, "greeting text")

        # The same as JSON: every step with its status and detail.
        r = t.probe(target, "--tls", "none", "--timeout", "5s", "--json")
        doc = t.json("plain json", r)
        if doc:
            t.expect("plain json", doc.get("status") == "warn" and doc.get("exit_code") == 0,
                     r, "status warn, exit_code 0")
            t.expect("plain json", doc.get("port") == srv.port and doc.get("tls") == "none", r,
                     "port and tls")
            for s in doc.get("steps", []):
                t.expect("plain json", {"step", "status", "detail"} <= set(s), r,
                         "step lacks step/status/detail: %r" % s)
            g = t.step("plain json", doc, "greeting", "ok")
            t.expect("plain json", g.get("code") == 220, r, "greeting code 220")
            e = t.step("plain json", doc, "ehlo", "ok")
            kws = [x.get("keyword") for x in e.get("extensions", [])]
            t.expect("plain json", "SMTPUTF8" in kws and "8BITMIME" in kws, r,
                     "extensions listed: %r" % kws)
            size = [x for x in e.get("extensions", []) if x.get("keyword") == "SIZE"]
            t.expect("plain json", size and "MB" in size[0].get("meaning", ""), r,
                     "SIZE explained in MB")
            d = t.step("plain json", doc, "dns", "ok")
            t.expect("plain json", d.get("addresses") == [HOST], r, "dns addresses")

        # Envelope: an existing recipient, then one that does not exist.
        r = t.probe(target, "--tls", "none", "--from", "a@example.org", "--to",
                    "b@example.org", "--timeout", "5s", "--json")
        doc = t.json("envelope ok", r)
        t.expect("envelope ok", r.returncode == 0, r, "exit 0")
        if doc:
            t.step("envelope ok", doc, "mail", "ok")
            rc = t.step("envelope ok", doc, "rcpt", "ok")
            t.expect("envelope ok", rc.get("code") == 250, r, "RCPT 250")
            t.step("envelope ok", doc, "rset", "ok")

        # Credentials are never sent without TLS.
        r = t.probe(target, "--tls", "none", "--user", USER, "--password-file", pwfile,
                    "--timeout", "5s")
        t.expect("auth without TLS", r.returncode == 78, r, "exit 78")
        t.expect("auth without TLS", "[FAIL] auth" in r.stdout and "--tls starttls" in r.stdout,
                 r, "the fix names --tls starttls")
        t.expect("auth without TLS", PASSWORD not in r.stdout + r.stderr, r, "password printed")

        r = t.probe(target, "--tls", "none", "--from", "a@example.org", "--to", UNKNOWN,
                    "--timeout", "5s")
        t.expect("rcpt 550", r.returncode == 69, r, "exit 69 (permanent failure)")
        t.expect("rcpt 550", "[FAIL] rcpt" in r.stdout and "550 5.1.1" in r.stdout, r,
                 "RCPT step fails with the reply")
        t.expect("rcpt 550", "does not exist" in r.stdout, r, "explanation of 5.1.1")
        t.expect("rcpt 550", "bad destination mailbox address" in r.stdout, r,
                 "enhanced status described")
        t.expect("rcpt 550", "result: FAIL at rcpt (exit 69)" in r.stdout, r, "result line")
        t.expect("rcpt 550", not srv.handler.got_data, None, "the probe sent DATA")

    # STARTTLS with the test CA, AUTH accepted and refused.
    with Smtpd(tls="starttls", cert=cert, auth=True) as srv:
        target = "localhost:%d" % srv.port
        r = t.probe(target, "--ca-file", ca.cert, "--timeout", "5s", "--json")
        doc = t.json("starttls", r)
        t.expect("starttls", r.returncode == 0, r, "exit 0")
        if doc:
            tls = t.step("starttls", doc, "tls", "ok")
            t.expect("starttls", tls.get("verified") is True, r, "verified")
            t.expect("starttls", tls.get("version", "").startswith("TLSv1."), r, "version")
            t.expect("starttls", tls.get("cipher"), r, "cipher")
            chain = tls.get("chain") or [{}]
            t.expect("starttls", "localhost" in chain[0].get("subject", ""), r, "leaf subject")
            t.expect("starttls", "SMTPKit Test CA" in chain[0].get("issuer", ""), r, "issuer")
            t.expect("starttls", "DNS:localhost" in chain[0].get("names", ""), r, "names")
            ehlos = [s for s in doc["steps"] if s["step"] == "ehlo"]
            t.expect("starttls", len(ehlos) == 2, r, "EHLO before and after TLS")
            if len(ehlos) == 2:
                kws = [x.get("keyword") for x in ehlos[1].get("extensions", [])]
                t.expect("starttls", "AUTH" in kws and "STARTTLS" not in kws, r,
                         "after TLS: AUTH offered, STARTTLS gone: %r" % kws)

        r = t.probe(target, "--ca-file", ca.cert, "--timeout", "5s", "--user", USER,
                    "--password-file", pwfile)
        t.expect("auth ok", r.returncode == 0, r, "exit 0")
        t.expect("auth ok", "[ OK ] auth" in r.stdout, r, "auth OK")
        t.expect("auth ok", "PLAIN" in r.stdout or "LOGIN" in r.stdout, r, "mechanism named")
        t.expect("auth ok", PASSWORD not in r.stdout + r.stderr, r, "password printed")

        # The password from the environment, and a wrong one: 535 explained.
        r = t.probe(target, "--ca-file", ca.cert, "--timeout", "5s", "--user", USER,
                    env={"SMTPKIT_PASSWORD": "wrong-" + PASSWORD})
        t.expect("auth 535", r.returncode == 77, r, "exit 77")
        t.expect("auth 535", "[FAIL] auth" in r.stdout and "535" in r.stdout, r, "535 shown")
        t.expect("auth 535", "username or password" in r.stdout, r, "535 explained")
        t.expect("auth 535", PASSWORD not in r.stdout + r.stderr, r, "password printed")

        r = t.probe(target, "--ca-file", ca.cert, "--timeout", "5s", "--user", USER,
                    "--password-file", badpw, "--json")
        doc = t.json("auth 535 json", r)
        if doc:
            a = t.step("auth 535 json", doc, "auth", "fail")
            t.expect("auth 535 json", a.get("code") == 535 and a.get("explanation"), r,
                     "code and explanation")
            t.expect("auth 535 json", doc.get("failed_step") == "auth", r, "failed_step")

        # Without --ca-file the test CA is unknown: the fix says --ca-file.
        r = t.probe(target, "--timeout", "5s")
        t.expect("unknown CA", r.returncode == 76, r, "exit 76")
        t.expect("unknown CA", "[FAIL] tls" in r.stdout and "--ca-file" in r.stdout, r,
                 "TLS fails and the fix names --ca-file")

    # Usage errors.
    r = t.probe("--help")
    for opt in ("--tls", "--user", "--password-file", "--from", "--to", "--ca-file",
                "--timeout", "--json"):
        t.expect("help", opt in r.stdout, r, "--help lacks %s" % opt)
    t.expect("help", r.returncode == 0, r, "--help exits 0")
    r = t.probe("%s:1" % HOST, "--tls", "sometimes")
    t.expect("usage", r.returncode == 64, r, "bad --tls is exit 64")
    r = t.probe("%s:1" % HOST, "--to", "b@example.org")
    t.expect("usage", r.returncode == 64, r, "--to without --from is exit 64")

t.finish()
