#!/usr/bin/python3
"""smtpkit probe names a port that does not greet at once: an implicit-TLS
port probed with STARTTLS and a web server are told within seconds (the
greeting wait was 10 s before anything else was tried), a server that
pauses its greeting on purpose still passes; and the options probe shares
with send: --server, --insecure, --tls-name."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from probe_peers import HOST, Cases, Smtpd, Web  # noqa: E402
from send_peer import GreetPause  # noqa: E402

t = Cases()
# An answer that needs no waiting, on a loaded machine; the default
# per-step timeout (10 s) is what the probe used to wait first.
PROMPT_S = 7


def timed(*args):
    t0 = time.monotonic()
    r = t.probe(*args)
    return r, time.monotonic() - t0


with sktest.TempDir() as tmp:
    ca = sktest.TestCA(tmp.join("ca"))
    good = ca.issue("localhost", sans=["localhost", HOST])
    other = ca.issue("mail.example.test", sans=["mail.example.test"])

    # An implicit-TLS port probed with the default STARTTLS.
    with Smtpd(tls="implicit", cert=good) as srv:
        r, took = timed("%s:%d" % (HOST, srv.port))
        t.expect("tls first", r.returncode == 76, r, "exit 76")
        t.expect("tls first", "[FAIL] greeting" in r.stdout and "TLS from the first byte" in
                 r.stdout and "--tls implicit" in r.stdout, r, "says TLS first, --tls implicit")
        t.expect("tls first", took < PROMPT_S, r, "took %.1f s" % took)
        r, took = timed("--server", "%s:%d" % (HOST, srv.port), "--json")
        doc = t.json("tls first json", r)
        if doc:
            g = t.step("tls first json", doc, "greeting", "fail")
            t.expect("tls first json", g.get("peer") == "tls", r, "peer tls")
        t.expect("tls first json", took < PROMPT_S, r, "took %.1f s" % took)

    # A web server, with STARTTLS and with implicit TLS.
    with Web() as srv:
        for mode in ("starttls", "implicit"):
            name = "http " + mode
            r, took = timed("%s:%d" % (HOST, srv.port), "--tls", mode, "--json")
            doc = t.json(name, r)
            t.expect(name, r.returncode == 76, r, "exit 76")
            t.expect(name, took < PROMPT_S, r, "took %.1f s" % took)
            if doc:
                s = t.step(name, doc, "greeting" if mode == "starttls" else "tls", "fail")
                t.expect(name, s.get("peer") == "http" and "web server" in s.get("detail", ""),
                         r, "a web server")

    # A greeting paused on purpose (sendmail's greet_pause, which answers
    # early talkers with 554) is still SMTP.
    with GreetPause(3) as srv:
        r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none")
        t.expect("greet pause", r.returncode == 0, r, "exit 0")
        t.expect("greet pause", "[ OK ] greeting" in r.stdout and "220 pause.test" in r.stdout,
                 r, "the greeting")
        t.expect("greet pause", srv.early_talkers >= 1, r, "identification ran")

    # --server as send has it; the word and the option together are a
    # usage error, and so is neither.
    with Smtpd() as srv:
        r = t.probe("--server", "%s:%d" % (HOST, srv.port), "--tls", "none")
        t.expect("--server", r.returncode == 0 and "[ OK ] greeting" in r.stdout, r, "exit 0")
        r = t.probe("--server", "%s:%d" % (HOST, srv.port), "%s:%d" % (HOST, srv.port))
        t.expect("--server twice", r.returncode == 64 and "give the server once" in r.stderr, r,
                 "usage error")
        r = t.probe("--tls", "none")
        t.expect("no server", r.returncode == 64 and "--server HOST[:PORT]" in r.stderr, r,
                 "usage error")
        r = t.probe("--sever", "x")
        t.expect("typo", r.returncode == 64 and "did you mean '--server'" in r.stderr, r,
                 "suggests --server")

    # --tls-name: the certificate is for mail.example.test, reached at
    # 127.0.0.1; --insecure: a certificate that does not verify is a warning.
    with Smtpd(tls="starttls", cert=other) as srv:
        target = "%s:%d" % (HOST, srv.port)
        r = t.probe(target, "--ca-file", ca.cert, "--timeout", "5s")
        t.expect("name mismatch", r.returncode == 76 and "--tls-name" in r.stdout, r,
                 "fails, suggests --tls-name")
        r = t.probe(target, "--ca-file", ca.cert, "--tls-name", "mail.example.test",
                    "--timeout", "5s")
        t.expect("--tls-name", r.returncode == 0, r, "exit 0")
        t.expect("--tls-name", "certificate verified for mail.example.test" in r.stdout, r,
                 "verified for the name given")
        r = t.probe(target, "--insecure", "--timeout", "5s", "--json")
        doc = t.json("--insecure", r)
        t.expect("--insecure", r.returncode == 0, r, "exit 0")
        if doc:
            s = t.step("--insecure", doc, "tls", "warn")
            t.expect("--insecure", s.get("verified") is False, r, "not verified")
            t.step("--insecure", doc, "ehlo", "ok")

t.finish()
