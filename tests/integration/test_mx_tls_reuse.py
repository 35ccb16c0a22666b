#!/usr/bin/python3
"""MX transport TLS and connection reuse end to end: the test_mx driver
against aiosmtpd MX hosts on loopback (one port, several addresses) with a
test CA, DNS from dns_server.py.

Covers opportunistic STARTTLS recorded with version and cipher (verified
or not), plain text after a failed opportunistic handshake, TLS required for a domain (next MX, or 4.7.10 when no host gives
it), several jobs over one connection (counted at the peer), the
messages-per-connection limit, the idle timeout, a kept connection the
host closed (or answered with 421), two domains with the same MX host set sharing a
connection, a domain's route looked up once for several jobs, and jobs
spread over MX hosts of equal preference with that route kept.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402
from mx_peers import DRIVER, Closer, MXHost, deliver, write_message  # noqa: E402
from send_peer import Runner, expect  # noqa: E402

# 127.0.0.1: plain MX host; 127.0.0.7: STARTTLS with a certificate for
# mx.tls.test from the test CA.
ZONE = {
    "tls.test": {"MX": [[10, "mx.tls.test"]]},
    "mx.tls.test": {"A": ["127.0.0.7"]},
    "wrongname.test": {"MX": [[10, "other.wrongname.test"]]},
    "other.wrongname.test": {"A": ["127.0.0.7"]},
    "req.test": {"MX": [[10, "plain.req.test"], [20, "mx.tls.test"]]},
    "plain.req.test": {"A": ["127.0.0.1"]},
    "reqonly.test": {"MX": [[10, "plain.req.test"]]},
    "reqbad.test": {"MX": [[10, "other.wrongname.test"]]},
    "reuse.test": {"MX": [[10, "plain.req.test"]]},
    "a.prov.test": {"MX": [[10, "mx1.prov.test"], [20, "mx2.prov.test"]]},
    "b.prov.test": {"MX": [[10, "mx2.prov.test"], [20, "mx1.prov.test"]]},
    "mx1.prov.test": {"A": ["127.0.0.1"]},
    "mx2.prov.test": {"A": ["127.0.0.2"]},
    "closer.test": {"MX": [[10, "mx.closer.test"]]},
    "mx.closer.test": {"A": ["127.0.0.8"]},
    "badtls.test": {"MX": [[10, "mx.badtls.test"]]},
    "mx.badtls.test": {"A": ["127.0.0.10"]},
    "idle.test": {"MX": [[10, "mx.idle.test"]]},
    "mx.idle.test": {"A": ["127.0.0.12"]},
    "even.test": {"MX": [[10, "mx1.even.test"], [10, "mx2.even.test"]]},
    "mx1.even.test": {"A": ["127.0.0.1"]},
    "mx2.even.test": {"A": ["127.0.0.11"]},
}

TLS_DESC = re.compile(r"^TLSv1\.[23] [A-Z0-9_-]+$")


def main():
    sktest.check(os.access(DRIVER, os.X_OK), "no %s (build the tests)" % DRIVER)
    tmp = sktest.TempDir("sk-mxtls-")
    msg = write_message(tmp.join("msg.eml"))
    ca = sktest.TestCA(tmp.join("ca"))
    cert = ca.issue("mx.tls.test")
    port = sktest.free_port("127.0.0.1")
    run = Runner()
    try:
        with DNSTestServer(ZONE) as dns, \
                MXHost("127.0.0.1", port, "plain.req.test") as plain, \
                MXHost("127.0.0.7", port, "mx.tls.test", cert=cert) as tls, \
                MXHost("127.0.0.11", port, "mx2.even.test") as even2, \
                Closer("127.0.0.8", port) as closer, \
                Closer("127.0.0.12", port, idle_421=True) as idle, \
                Closer("127.0.0.10", port, broken_tls=True) as badtls:

            def go(rcpts, *extra):
                return deliver(dns, port, rcpts, msg, "--ca-file", ca.cert, *extra)

            @run.case
            def opportunistic_tls_verified():
                n = len(tls.messages)
                res, r = go(["u@tls.test"])
                j = res[0]
                expect(j["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(TLS_DESC.match(j["tls"]) is not None, "TLS recorded: %s" % j["tls"], r)
                expect(j["tls_verified"] is True, "verified against the test CA", r)
                expect(len(tls.messages) == n + 1 and tls.messages[-1]["tls"],
                       "the peer saw it over TLS")

            @run.case
            def opportunistic_tls_unverified_still_delivers():
                res, r = go(["u@wrongname.test"])
                j = res[0]
                expect(j["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(TLS_DESC.match(j["tls"]) is not None and j["tls_verified"] is False,
                       "encrypted, not verified: %s" % j, r)

            @run.case
            def plain_host_recorded_as_none():
                res, r = go(["u@reuse.test"])
                expect(res[0]["tls"] == "none" and res[0]["rcpts"][0]["status"] == "ok",
                       "plain: %s" % res[0], r)

            @run.case
            def opportunistic_tls_handshake_failure_falls_back_to_plain():
                res, r = go(["u@badtls.test"])
                j = res[0]
                expect(j["rcpts"][0]["status"] == "ok" and j["tls"] == "none",
                       "delivered in plain text: %s" % j, r)
                expect(badtls.starttls == 1 and badtls.connections == 2 and badtls.messages == 1,
                       "STARTTLS once, then a plain connection: %d/%d/%d"
                       % (badtls.starttls, badtls.connections, badtls.messages))
                # When TLS is required there is no plain fallback.
                res, r = go(["u@badtls.test"], "--tls-required", "badtls.test")
                rc = res[0]["rcpts"][0]
                expect(rc["status"] == "transient" and rc["enhanced"] == "4.7.10",
                       "4.7.10: %s" % rc, r)
                expect(badtls.messages == 1, "nothing sent")

            @run.case
            def tls_required_skips_plain_mx():
                c, n = plain.connections, len(plain.messages)
                res, r = go(["u@req.test"], "--tls-required", "req.test")
                j = res[0]
                expect(j["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(j["remote_host"] == "mx.tls.test[127.0.0.7]:%d" % port,
                       "the TLS MX: %s" % j["remote_host"], r)
                expect(j["tls_verified"] is True, "verified", r)
                expect(plain.connections == c + 1 and len(plain.messages) == n,
                       "the plain MX was tried and got nothing")
                # Without the requirement the first MX takes it in plain text.
                res, r = go(["u@req.test"])
                expect(res[0]["remote_host"] == "plain.req.test[127.0.0.1]:%d" % port,
                       "first MX when TLS is not required: %s" % res[0], r)

            @run.case
            def tls_required_and_no_host_gives_it():
                for dom in ("reqonly.test", "reqbad.test"):
                    n = len(plain.messages) + len(tls.messages)
                    res, r = go(["u@" + dom], "--tls-required", dom)
                    rc = res[0]["rcpts"][0]
                    expect(rc["status"] == "transient" and rc["enhanced"] == "4.7.10",
                           "%s: 4.7.10: %s" % (dom, rc), r)
                    expect(len(plain.messages) + len(tls.messages) == n, "nothing sent")

            @run.case
            def reuse_one_connection():
                c, n = plain.connections, len(plain.messages)
                res, r = go(["u@reuse.test"], "--jobs", "4")
                expect(len(res) == 4 and all(j["rcpts"][0]["status"] == "ok" for j in res),
                       "four delivered", r)
                expect(len(plain.messages) == n + 4, "four messages at the peer")
                expect(plain.connections == c + 1,
                       "over one connection: %d" % (plain.connections - c), r)

            @run.case
            def reuse_over_tls():
                c = tls.connections
                res, r = go(["u@tls.test"], "--jobs", "3")
                expect(all(TLS_DESC.match(j["tls"]) and j["tls_verified"] for j in res),
                       "TLS on every job: %s" % res, r)
                expect(tls.connections == c + 1, "one connection: %d" % (tls.connections - c))

            @run.case
            def messages_per_connection_limit():
                c, n = plain.connections, len(plain.messages)
                res, r = go(["u@reuse.test"], "--jobs", "5", "--max-per-conn", "2")
                expect(len(plain.messages) == n + 5, "five messages", r)
                expect(plain.connections == c + 3,
                       "2+2+1 over three connections: %d" % (plain.connections - c), r)

            @run.case
            def idle_connection_closed():
                c = plain.connections
                res, r = go(["u@reuse.test"], "--jobs", "2", "--idle-ms", "100",
                            "--gap-ms", "1500")
                expect(all(j["rcpts"][0]["status"] == "ok" for j in res), "delivered", r)
                expect(plain.connections == c + 2,
                       "a new connection after the idle time: %d" % (plain.connections - c), r)

            @run.case
            def reused_connection_closed_by_host():
                # RSET finds the kept session dead: a new one, no failure.
                res, r = go(["u@closer.test"], "--jobs", "3")
                expect([j["rcpts"][0]["status"] for j in res] == ["ok"] * 3, "delivered", r)
                expect(closer.messages == 3 and closer.connections == 3,
                       "%d messages over %d connections" % (closer.messages, closer.connections))

            @run.case
            def reused_connection_421_by_host():
                # The 421 of a host that closed the kept session is no
                # answer about the message: a new connection, no failure.
                res, r = go(["u@idle.test"], "--jobs", "3")
                expect([j["rcpts"][0]["status"] for j in res] == ["ok"] * 3, "delivered", r)
                expect(idle.messages == 3 and idle.connections == 3,
                       "%d messages over %d connections" % (idle.messages, idle.connections))

            @run.case
            def same_destination_shares_connection():
                c, n = plain.connections, len(plain.messages)
                res, r = go(["u@a.prov.test"], "--alt-rcpt", "v@b.prov.test", "--jobs", "2")
                expect([j["destination"] for j in res] == ["mx1.prov.test,mx2.prov.test"] * 2,
                       "one destination key: %s" % res, r)
                expect([j["rcpts"][0]["addr"] for j in res] == ["u@a.prov.test", "v@b.prov.test"],
                       "both domains", r)
                expect(len(plain.messages) == n + 2 and plain.connections == c + 1,
                       "two domains over one connection: %d" % (plain.connections - c), r)

            @run.case
            def route_looked_up_once_for_several_jobs():
                def mx_queries():
                    return sum(1 for q in dns.queries() if q == ("reuse.test", "MX"))
                before = mx_queries()
                res, r = go(["u@reuse.test"], "--jobs", "3")
                expect([j["rcpts"][0]["status"] for j in res] == ["ok"] * 3, "delivered", r)
                expect(mx_queries() == before + 1,
                       "one MX lookup for three jobs: %d" % (mx_queries() - before), r)

            @run.case
            def equal_preference_hosts_share_the_jobs():
                # RFC 5321 5.1: the load spread over hosts of equal
                # preference, also when the route is the one kept.
                n1, n2 = len(plain.messages), len(even2.messages)
                res, r = go(["u@even.test"], "--jobs", "4", "--max-per-conn", "1")
                expect([j["rcpts"][0]["status"] for j in res] == ["ok"] * 4, "delivered", r)
                expect(len(plain.messages) - n1 == 2 and len(even2.messages) - n2 == 2,
                       "two each: %d and %d" % (len(plain.messages) - n1,
                                                len(even2.messages) - n2), r)
    finally:
        tmp.cleanup()
    run.finish()


if __name__ == "__main__":
    main()
