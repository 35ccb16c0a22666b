#!/usr/bin/python3
"""A delivery deferred by a DNS failure says which lookup failed, at which
resolver and why (docs/delivery.md): in the reply the queue keeps
(`queue list`), in the tracking store (`track`) and in the log. The
resolver is tests/integration/dns_server.py: SERVFAIL for the MX of one
domain, for the address of another's MX host, no answer at all for a
third (a timeout)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import expect, queue_entry, serve, submit, wait_event  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "broken.test": {"SERVFAIL": True},
    "hostfail.test": {"MX": [[10, "mx.hostfail.test"]]},
    "mx.hostfail.test": {"SERVFAIL": True},
    "silent.test": {"DROP": True},
}

tmp = sktest.TempDir("sk-dns-deferral-")
try:
    with DNSTestServer(ZONE) as dns:
        # No MX host is ever reached: any port will do.
        # One queue per domain: no route-key lookup before the delivery one
        # (a second timeout for silent.test).
        srv = serve(tmp, dns, sktest.free_port(), "--group-destinations", "domain", retry="1h")
        with srv:
            cases = [("a@broken.test", "MX for broken.test", "SERVFAIL"),
                     ("b@hostfail.test", "A for mx.hostfail.test", "SERVFAIL"),
                     # c-ares gives up after its two tries (5 s, then 10 s).
                     ("c@silent.test", "MX for silent.test", "timeout")]
            ids = {rcpt: submit(srv, "alice@local.test", [rcpt], "dns " + rcpt)
                   for rcpt, _, _ in cases}
            for rcpt, lookup, why in cases:
                want = "451 4.4.3 DNS lookup of %s failed at %s: %s" % (lookup, dns.address, why)
                d = wait_event(srv, ids[rcpt], "deferred", timeout=40)[0]
                expect(d["reply"] == want, "tracked reply %r, want %r" % (d["reply"], want), srv)
                m = queue_entry(srv, ids[rcpt])
                expect(m is not None and m["last_reply"] == want,
                       "queue keeps %r, want %r" % (m and m["last_reply"], want), srv)
                lines = [line for line in srv.log().splitlines()
                         if ids[rcpt] in line and " queue deferred " in line]
                expect(lines and ('reply="%s"' % want) in lines[0],
                       "the log says it: %r" % lines, srv)
        expect(srv.proc.returncode == 0, "serve exit %r" % srv.proc.returncode, srv)
    print("ok")
finally:
    tmp.cleanup()
