#!/usr/bin/python3
"""smtpkit spf against dns_server.py: each result with its exit code, the
text and JSON output (reason, explanation, lookup counts, the
Authentication-Results property, the trace), and the usage errors."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "example.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 include:_spf.example.test "
                             "a:nx.example.test ~all exp=why.example.test"]},
    "_spf.example.test": {"TXT": ["v=spf1 ip6:2001:db8::/32 -all"]},
    "why.example.test": {"TXT": ["%{i} is not a server of %{d}"]},
    "hard.test": {"TXT": ["v=spf1 -all exp=why.hard.test"]},
    "why.hard.test": {"TXT": ["%{i} is not allowed to send for %{o} (see %{r})"]},
    "mail.helo.test": {"A": ["198.51.100.25"], "TXT": ["v=spf1 a -all"]},
    "broken.test": {"TXT": ["v=spf1 ip4:192.0.2.300 -all"]},
    "two.test": {"TXT": ["v=spf1 -all", "v=spf1 +all"]},
    "failing.test": {"TXT": ["v=spf1 include:servfail.test -all"]},
    "servfail.test": {"SERVFAIL": True},
    "neutral.test": {"TXT": ["v=spf1 ?all"]},
}


def spf(dns, *args):
    return sktest.smtpkit("spf", "--dns-server", dns.address, *args, timeout=30)


def expect_run(r, rc, *needles, where=""):
    out = r.stdout + r.stderr
    sktest.expect(r.returncode == rc, "%s: exit %d, want %d\n%s" % (where, r.returncode, rc, out))
    for n in needles:
        sktest.expect(n in out, "%s: no %r in:\n%s" % (where, n, out))


def main():
    with DNSTestServer(ZONE) as dns:
        # Results and their exit codes.
        cases = [
            (["--ip", "192.0.2.7", "--mail-from", "a@example.test"], 0,
             ["spf: pass", "reason: ip4:192.0.2.0/24 matched in example.test",
              "identity: mailfrom example.test (smtp.mailfrom=a@example.test)",
              "lookups: 0 of 10, void lookups 0 of 2"]),
            (["--ip", "2001:db8::5", "--mail-from", "a@example.test"], 0,
             ["spf: pass", "include:_spf.example.test matched", "lookups: 1 of 10"]),
            (["--ip", "203.0.113.9", "--mail-from", "a@example.test"], 1,
             ["spf: softfail", "~all matched in example.test", "lookups: 2 of 10, void lookups 1"]),
            (["--ip", "203.0.113.9", "--mail-from", "b@hard.test", "--receiver", "mx.test"], 1,
             ["spf: fail",
              "explanation: 203.0.113.9 is not allowed to send for hard.test (see mx.test)"]),
            (["--ip", "198.51.100.25", "--helo", "mail.helo.test"], 0,
             ["spf: pass", "identity: helo mail.helo.test (smtp.helo=mail.helo.test)"]),
            (["--ip", "198.51.100.25", "--mail-from", "", "--helo", "mail.helo.test"], 0,
             ["spf: pass", "(smtp.mailfrom=postmaster@mail.helo.test)"]),
            (["--ip", "192.0.2.1", "--mail-from", "a@neutral.test"], 2, ["spf: neutral"]),
            (["--ip", "192.0.2.1", "--mail-from", "a@nowhere.test"], 2,
             ["spf: none", "nowhere.test does not exist"]),
            (["--ip", "192.0.2.1", "--mail-from", "a@broken.test"], 65,
             ["spf: permerror", "ip4:192.0.2.300", "not an IPv4 network"]),
            (["--ip", "192.0.2.1", "--mail-from", "a@two.test"], 65,
             ["spf: permerror", "2 SPF records at two.test"]),
            (["--ip", "192.0.2.1", "--mail-from", "a@failing.test"], 75,
             ["spf: temperror", "servfail.test"]),
        ]
        for args, rc, needles in cases:
            expect_run(spf(dns, *args), rc, *needles, where=" ".join(args))

        # --trace: each step; --json: one object with the same facts.
        r = spf(dns, "--ip", "203.0.113.9", "--mail-from", "a@example.test", "--trace")
        expect_run(r, 1, "trace:", "  example.test: ip4:192.0.2.0/24 -> no match",
                   "  _spf.example.test: -all -> match (fail)",
                   "  example.test: a:nx.example.test -> no match (nxdomain)", where="--trace")
        r = spf(dns, "--ip", "203.0.113.9", "--mail-from", "b@hard.test", "--json")
        sktest.check(r.returncode == 1, "--json: exit %d: %s" % (r.returncode, r.stderr))
        o = json.loads(r.stdout)
        want = {"result": "fail", "identity": "mailfrom", "domain": "hard.test",
                "sender": "b@hard.test", "mechanism": "-all", "mechanism_domain": "hard.test",
                "explanation": "203.0.113.9 is not allowed to send for hard.test (see unknown)",
                "lookups": 0, "lookups_max": 10, "void_lookups": 0, "void_lookups_max": 2,
                "property": "smtp.mailfrom", "property_value": "b@hard.test"}
        for k, v in want.items():
            sktest.check(o.get(k) == v, "--json %s: %r, want %r" % (k, o.get(k), v))
        sktest.check(o["trace"] and o["reason"] == "-all matched in hard.test", "--json: %r" % o)

        # Usage errors name the argument (64); a bad resolver is configuration (78).
        usage = [
            ([], "--ip"),
            (["--ip", "999.1.1.1", "--mail-from", "a@b.test"], "--ip '999.1.1.1'"),
            (["--ip", "192.0.2.1", "--mail-from", ""], "--helo"),
            (["--ip", "192.0.2.1", "--identity", "helo"], "--helo"),
            (["--ip", "192.0.2.1", "--identity", "ehlo", "--helo", "x.test"], "--identity"),
            (["--ip", "192.0.2.1", "--identity", "mailfrom", "--helo", "x.test"], "--mail-from"),
            (["--ip", "192.0.2.1", "--helo", "x.test", "--timeout", "soon"], "--timeout"),
            (["--ip", "192.0.2.1", "--helo", "x.test", "extra"], "'extra'"),
        ]
        for args, needle in usage:
            r = sktest.smtpkit("spf", *args, timeout=30)
            expect_run(r, 64, needle, where="usage " + " ".join(args))
        r = sktest.smtpkit("spf", "--ip", "192.0.2.1", "--helo", "x.test", "--dns-server",
                           "not-an-address", timeout=30)
        expect_run(r, 78, "not-an-address", where="--dns-server")
    print("ok")


if __name__ == "__main__":
    main()
