#!/usr/bin/python3
"""smtpkit probe where the network or the peer is wrong: a port with nothing
listening, a server that accepts and never speaks, a web server, and a name
with several addresses of which only one works."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from probe_peers import HOST, Cases, Scripted, Silent, Smtpd, Web  # noqa: E402

t = Cases()

# Nothing listening: refused, with the time taken and a hint about ports.
port = sktest.free_port(HOST)
r = t.probe("%s:%d" % (HOST, port), "--tls", "none", "--timeout", "2s")
t.expect("refused", r.returncode == 75, r, "exit 75")
t.expect("refused", "[FAIL] tcp" in r.stdout and "refused" in r.stdout and "ms)" in r.stdout, r,
         "TCP refused with the time taken")
t.expect("refused", "wrong port" in r.stdout, r, "hint about the port")
r = t.probe("%s:%d" % (HOST, port), "--tls", "none", "--timeout", "2s", "--json")
doc = t.json("refused json", r)
if doc:
    s = t.step("refused json", doc, "tcp", "fail")
    t.expect("refused json", s.get("address") == HOST and "elapsed_ms" in s, r,
             "address and elapsed_ms")
    t.expect("refused json", doc.get("exit_code") == 75 and doc.get("failed_step") == "tcp", r,
             "exit_code and failed_step")

# Accepts and never answers: the greeting times out (bounded by --timeout).
with Silent() as srv:
    t0 = time.monotonic()
    r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none", "--timeout", "2s")
    took = time.monotonic() - t0
    t.expect("silent", r.returncode == 75, r, "exit 75")
    t.expect("silent", "[ OK ] tcp" in r.stdout and "[FAIL] greeting" in r.stdout, r,
             "TCP ok, greeting fails")
    t.expect("silent", "no greeting within 2000 ms" in r.stdout, r, "says no greeting in 2 s")
    t.expect("silent", took < 30, r, "took %.1f s" % took)

# Greetings that refuse the session are explained.
with Scripted("554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
              close_after_greeting=True) as srv:
    r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none", "--timeout", "2s")
    t.expect("greeting 554", r.returncode == 69, r, "exit 69")
    t.expect("greeting 554", "[FAIL] greeting" in r.stdout and "554 5.7.1" in r.stdout and
             "blocklist" in r.stdout, r, "554 greeting explained as a blocklisting")
with Scripted("421 mx.test Service not available, closing transmission channel",
              close_after_greeting=True) as srv:
    r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none", "--timeout", "2s", "--json")
    doc = t.json("greeting 421", r)
    t.expect("greeting 421", r.returncode == 75, r, "exit 75")
    if doc:
        g = t.step("greeting 421", doc, "greeting", "fail")
        t.expect("greeting 421", g.get("code") == 421 and "retry later" in
                 g.get("explanation", ""), r, "421 explained")

# A greeting line far over the limit: SMTP, but unusable.
with Scripted("220 " + "x" * 1200) as srv:
    r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none", "--timeout", "2s")
    t.expect("long greeting", r.returncode == 76, r, "exit 76")
    t.expect("long greeting", "[FAIL] greeting" in r.stdout and "cannot be used" in r.stdout, r,
             "greeting reported unusable")

# A server without ESMTP: EHLO refused, HELO accepted is a warning.
with Scripted("220 old.test SMTP", {"EHLO": "500 5.5.1 Command unrecognized",
                                    "HELO": "250 old.test"}) as srv:
    r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none", "--timeout", "2s")
    t.expect("helo", r.returncode == 0, r, "exit 0")
    t.expect("helo", "[WARN] ehlo" in r.stdout and "HELO accepted" in r.stdout, r,
             "EHLO refused is a warning")
    t.expect("helo", srv.commands[:2] == ["EHLO", "HELO"], r,
             "commands seen: %r" % srv.commands)

# STARTTLS required (the default) by a server that does not offer it.
with Scripted("220 plain.test ESMTP", {"EHLO": "250-plain.test\n250 8BITMIME"}) as srv:
    r = t.probe("%s:%d" % (HOST, srv.port), "--timeout", "2s")
    t.expect("no starttls", r.returncode == 76, r, "exit 76")
    t.expect("no starttls", "[FAIL] tls" in r.stdout and "does not offer STARTTLS" in r.stdout,
             r, "TLS fails: STARTTLS not offered")

# An IPv6 literal with a port; nothing listens there.
r = t.probe("[::1]:%d" % sktest.free_port(HOST), "--tls", "none", "--timeout", "2s")
t.expect("ipv6", r.returncode == 75, r, "exit 75")
t.expect("ipv6", "[FAIL] tcp" in r.stdout and "[::1]:" in r.stdout, r, "IPv6 address shown")

# A web server: recognised as HTTP.
with Web() as srv:
    r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "none", "--timeout", "2s")
    t.expect("http", r.returncode == 76, r, "exit 76")
    t.expect("http", "[FAIL] greeting" in r.stdout and "web server" in r.stdout and
             "HTTP/" in r.stdout, r, "recognised as HTTP")
    # With implicit TLS the handshake fails; the probe still finds HTTP.
    r = t.probe("%s:%d" % (HOST, srv.port), "--tls", "implicit", "--timeout", "2s")
    t.expect("http tls", r.returncode == 76, r, "exit 76")
    t.expect("http tls", "web server" in r.stdout, r, "recognised as HTTP")

# "localhost" may also resolve to ::1, where nothing listens: that address
# is a warning, the probe goes on with the one that works.
addrs = {ai[4][0] for ai in socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)}
with Smtpd() as srv:
    r = t.probe("localhost:%d" % srv.port, "--tls", "none", "--timeout", "2s", "--json")
    doc = t.json("localhost", r)
    t.expect("localhost", r.returncode == 0, r, "exit 0")
    if doc:
        d = t.step("localhost", doc, "dns", "ok")
        t.expect("localhost", set(d.get("addresses", [])) == addrs, r,
                 "dns lists %r" % sorted(addrs))
        tcps = [s for s in doc["steps"] if s["step"] == "tcp"]
        t.expect("localhost", len(tcps) == len(addrs), r, "one tcp step per address")
        for s in tcps:
            want = "ok" if s.get("address") == HOST else "warn"
            t.expect("localhost", s.get("status") == want, r, "tcp %s: %s" % (s.get("address"),
                                                                         want))

t.finish()
