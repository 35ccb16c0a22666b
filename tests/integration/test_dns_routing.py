#!/usr/bin/python3
"""MX routing end to end: examples/mx_lookup.c (the sk_resolver API)
against tests/integration/dns_server.py on loopback.

Covers MX order by preference, random order among equal preferences, the
implicit MX (A/AAAA fallback), null MX, NXDOMAIN, SERVFAIL and a server
that never answers (transient), AAAA and TXT lookups, truncation and TCP
retry, and a resolver on ::1.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

MX_LOOKUP = os.path.join(sktest.BUILD_DIR, "example_mx_lookup")
EX_UNAVAILABLE, EX_TEMPFAIL = 69, 75

ZONE = {
    "order.test": {"MX": [[30, "c.order.test"], [10, "a.order.test"], [20, "b.order.test"]]},
    "a.order.test": {"A": ["127.0.0.11"]},
    "b.order.test": {"A": ["127.0.0.12"], "AAAA": ["::12"]},
    "c.order.test": {"AAAA": ["::13"]},
    "equal.test": {"MX": [[10, "x.equal.test"], [10, "y.equal.test"], [20, "z.equal.test"]]},
    "x.equal.test": {"A": ["127.0.0.21"]},
    "y.equal.test": {"A": ["127.0.0.22"]},
    "z.equal.test": {"A": ["127.0.0.23"]},
    "noMX.test": {"A": ["127.0.0.31"], "AAAA": ["::31"]},
    "v6only.test": {"AAAA": ["2001:db8::5"]},
    "null.test": {"MX": [[0, "."]]},
    "empty.test": {"TXT": ["nothing else here"]},
    "broken.test": {"SERVFAIL": True},
    "silent.test": {"DROP": True},
    "halfbroken.test": {"MX": [[10, "sf.halfbroken.test"], [20, "ok.halfbroken.test"]]},
    "sf.halfbroken.test": {"SERVFAIL": True},
    "ok.halfbroken.test": {"A": ["127.0.0.41"]},
    "big.test": {"TXT": ["x" * 200, "y" * 200, "z" * 200]},
}


def lookup(dns, *args, timeout=30):
    return sktest.run([MX_LOOKUP, "--dns-server", dns.address] + list(args), timeout=timeout)


def expect_lookup(dns, args, rc, stdout):
    """mx_lookup ARGS exits rc and prints exactly stdout."""
    r = lookup(dns, *args)
    sktest.expect(r.returncode == rc and r.stdout == stdout,
                  "mx_lookup %s: rc %d (want %d)\n--- got\n%s--- want\n%s--- stderr\n%s"
                  % (" ".join(args), r.returncode, rc, r.stdout, stdout, r.stderr))


def main():
    sktest.check(os.access(MX_LOOKUP, os.X_OK), "no %s (build the examples)" % MX_LOOKUP)
    with DNSTestServer(ZONE) as dns:
        # Preference order, each host with its IPv4 then IPv6 addresses.
        expect_lookup(dns, ["order.test"], 0,
               "route order.test ok implicit=0\n"
               "mx 10 a.order.test 127.0.0.11\n"
               "mx 20 b.order.test 127.0.0.12 ::12\n"
               "mx 30 c.order.test ::13\n")

        # Equal preferences come in both orders over many lookups; the
        # lower preference group always comes first.
        r = lookup(dns, "equal.test", "--count", "40")
        sktest.check(r.returncode == 0, "equal.test failed: %s" % r.stderr)
        orders = set()
        for block in r.stdout.split("route ")[1:]:
            hosts = [line.split()[2] for line in block.splitlines()[1:]]
            sktest.check(sorted(hosts[:2]) == ["x.equal.test", "y.equal.test"]
                         and hosts[2] == "z.equal.test", "bad order %s" % hosts)
            orders.add(tuple(hosts[:2]))
        sktest.check(len(orders) == 2, "equal preferences never reordered: %s" % orders)

        # No MX: the domain itself, preference 0 (RFC 5321 5.1).
        expect_lookup(dns, ["noMX.test"], 0,
               "route noMX.test ok implicit=1\nmx 0 noMX.test 127.0.0.31 ::31\n")
        expect_lookup(dns, ["v6only.test"], 0,
               "route v6only.test ok implicit=1\nmx 0 v6only.test 2001:db8::5\n")
        # No MX and no address: permanent.
        expect_lookup(dns, ["empty.test"], EX_UNAVAILABLE,
               "route empty.test no-address implicit=1 5.1.2 "
               "empty.test has no MX and no address record\n")
        # Null MX (RFC 7505): permanent, 5.1.10.
        expect_lookup(dns, ["null.test"], EX_UNAVAILABLE,
               "route null.test null-mx implicit=0 5.1.10 domain null.test accepts no mail "
               "(null MX)\n")
        expect_lookup(dns, ["nx.test"], EX_UNAVAILABLE,
               "route nx.test nxdomain implicit=0 5.1.2 domain nx.test does not exist\n")
        # A temporary failure names the lookup, the server and the reason.
        expect_lookup(dns, ["broken.test"], EX_TEMPFAIL,
               "route broken.test tempfail implicit=0 4.4.3 DNS lookup of MX for broken.test "
               "failed at %s: SERVFAIL\n" % dns.address)
        # One MX host's lookup fails: the others still route.
        expect_lookup(dns, ["halfbroken.test"], 0,
               "route halfbroken.test ok implicit=0\nmx 20 ok.halfbroken.test 127.0.0.41\n")

        # A server that does not answer: transient, within the timeout.
        start = time.monotonic()
        expect_lookup(dns, ["silent.test", "--timeout-ms", "300", "--tries", "2"], EX_TEMPFAIL,
               "route silent.test tempfail implicit=0 4.4.3 DNS lookup of MX for silent.test "
               "failed at %s: timeout\n" % dns.address)
        sktest.check(time.monotonic() - start < 10, "timeout took too long")

        # Plain lookups.
        expect_lookup(dns, ["b.order.test", "--type", "AAAA"], 0,
               "lookup b.order.test ok count=1\nvalue ::12\n")
        expect_lookup(dns, ["a.order.test", "--type", "A"], 0,
               "lookup a.order.test ok count=1\nvalue 127.0.0.11\n")
        expect_lookup(dns, ["a.order.test", "--type", "AAAA"], EX_UNAVAILABLE,
               "lookup a.order.test nodata count=0\n")
        expect_lookup(dns, ["null.test", "--type", "MX"], 0, "lookup null.test ok count=1\nvalue 0 .\n")
        # Over 512 octets: truncated over UDP, asked again over TCP.
        before = dns.tcp_connections()
        r = lookup(dns, "big.test", "--type", "TXT")
        sktest.check(r.returncode == 0 and r.stdout.count("value ") == 3
                     and ("value " + "y" * 200 + "\n") in r.stdout, "big TXT: %r" % r.stdout)
        sktest.check(dns.tcp_connections() > before, "no TCP retry after truncation")

        # Names are asked exactly as given: no search-list suffixes.
        names = {n for n, _ in dns.queries()}
        sktest.check(all(n.endswith(".test") for n in names), "unexpected names %s" % names)

    # A bad server address is a configuration error.
    r = sktest.run([MX_LOOKUP, "--dns-server", "bogus", "x.test"])
    sktest.check(r.returncode == 78 and "bad DNS server" in r.stderr, "bogus server: %r" % (r,))

    # A resolver on ::1.
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
    except OSError:
        print("note: no IPv6 loopback here; the ::1 case was not run")
        return
    with DNSTestServer(ZONE, host="::1") as dns6:
        expect_lookup(dns6, ["order.test"], 0,
               "route order.test ok implicit=0\n"
               "mx 10 a.order.test 127.0.0.11\n"
               "mx 20 b.order.test 127.0.0.12 ::12\n"
               "mx 30 c.order.test ::13\n")


if __name__ == "__main__":
    main()
    print("ok")
