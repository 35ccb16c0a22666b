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
from probe_peers import HOST, Cases, Silent, Smtpd, Web  # noqa: E402

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
