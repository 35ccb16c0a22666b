#!/usr/bin/python3
"""MX transport routing (RFC 5321 section 5) end to end: the test_mx driver
delivers through the transport to aiosmtpd MX hosts on loopback addresses
sharing one port, with DNS from dns_server.py.

Covers preference order, fallback to the next MX on a refused connection
and on a 421 greeting, the implicit MX (A/AAAA) with IPv4 to IPv6
fallback, an address literal without DNS, null MX and NXDOMAIN without
any connection, DNS failure, every host unreachable, every host refusing
with 5xx, a silent host (next MX after the timeout), per-recipient RCPT
results in one transaction, cancel, and shared destination keys.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402
from mx_peers import DRIVER, Greeter, MXHost, deliver, route_keys, write_message  # noqa: E402
from send_peer import Runner, expect, have_ipv6_loopback  # noqa: E402

# 127.0.0.1, .2, .5: MX hosts; .3: nobody listens (refused); .4: greets
# 421; .6: greets 554; .9: says nothing.
ZONE = {
    "order.test": {"MX": [[20, "mx2.order.test"], [10, "mx1.order.test"]]},
    "mx1.order.test": {"A": ["127.0.0.2"]},
    "mx2.order.test": {"A": ["127.0.0.1"]},
    "refused.test": {"MX": [[10, "dead.refused.test"], [20, "mx.refused.test"]]},
    "dead.refused.test": {"A": ["127.0.0.3"]},
    "mx.refused.test": {"A": ["127.0.0.1"]},
    "busy.test": {"MX": [[10, "busy.busy.test"], [20, "mx.busy.test"]]},
    "busy.busy.test": {"A": ["127.0.0.4"]},
    "mx.busy.test": {"A": ["127.0.0.5"]},
    "nomx.test": {"A": ["127.0.0.3"], "AAAA": ["::1"]},
    "nomx4.test": {"A": ["127.0.0.5"]},
    "null.test": {"MX": [[0, "."]]},
    "broken.test": {"SERVFAIL": True},
    "dead.test": {"MX": [[10, "a.dead.test"], [20, "b.dead.test"]]},
    "a.dead.test": {"A": ["127.0.0.3"]},
    "b.dead.test": {"A": ["127.0.0.3"]},
    "deny.test": {"MX": [[10, "a.deny.test"], [20, "b.deny.test"]]},
    "a.deny.test": {"A": ["127.0.0.6"]},
    "b.deny.test": {"A": ["127.0.0.6"]},
    "halfdeny.test": {"MX": [[10, "a.deny.test"], [20, "a.dead.test"]]},
    "slow.test": {"MX": [[10, "silent.slow.test"], [20, "mx.slow.test"]]},
    "silent.slow.test": {"A": ["127.0.0.9"]},
    "mx.slow.test": {"A": ["127.0.0.1"]},
    "silentonly.test": {"MX": [[10, "silent.slow.test"]]},
    "dropped.test": {"DROP": True},
    # Two domains at one provider, listed in different orders; one elsewhere.
    "a.prov.test": {"MX": [[10, "mx1.prov.test"], [20, "MX2.prov.test"]]},
    "b.prov.test": {"MX": [[5, "mx2.prov.test"], [5, "mx1.prov.test"]]},
    "c.other.test": {"MX": [[10, "mx1.prov.test"]]},
    "mx1.prov.test": {"A": ["127.0.0.1"]},
    "mx2.prov.test": {"A": ["127.0.0.2"]},
}


def main():
    sktest.check(os.access(DRIVER, os.X_OK), "no %s (build the tests)" % DRIVER)
    tmp = sktest.TempDir("sk-mx-")
    msg = write_message(tmp.join("msg.eml"))
    port = sktest.free_port("127.0.0.1")
    v6 = have_ipv6_loopback()
    run = Runner()
    try:
        with DNSTestServer(ZONE) as dns, \
                MXHost("127.0.0.1", port, "mx2.order.test") as h1, \
                MXHost("127.0.0.2", port, "mx1.order.test") as h2, \
                MXHost("127.0.0.5", port, "mx.busy.test") as h5, \
                Greeter("127.0.0.4", port, "421 4.3.2 busy.busy.test too busy") as g421, \
                Greeter("127.0.0.6", port, "554 5.7.1 go away") as g554, \
                Greeter("127.0.0.9", port, None) as silent:
            h6 = MXHost("::1", port, "v6.test") if v6 else None
            if h6:
                h6.__enter__()
            peers = [h1, h2, h5] + ([h6] if h6 else [])

            def counts():
                return [p.connections for p in peers] + [g421.connections, g554.connections]

            def one(domain, rcpts=None, *extra):
                res, r = deliver(dns, port, rcpts or ["u@" + domain], msg, *extra)
                expect(len(res) == 1, "one job result", r)
                return res[0], r

            @run.case
            def preference_order():
                before = (len(h1.messages), len(h2.messages))
                res, r = one("order.test")
                expect(res["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(res["remote_host"] == "mx1.order.test[127.0.0.2]:%d" % port,
                       "delivered at the lowest preference: %s" % res["remote_host"], r)
                expect(len(h2.messages) == before[1] + 1 and len(h1.messages) == before[0],
                       "mx1 got it, mx2 did not")
                expect(res["tls"] == "none" and res["destination"] ==
                       "mx1.order.test,mx2.order.test", "tls and destination: %s" % res)
                # Our Received: line is on top of what the peer got.
                expect(h2.messages[-1]["data"].startswith(b"Received: from client.test"),
                       "Received: added")

            @run.case
            def next_mx_when_refused():
                res, r = one("refused.test")
                expect(res["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(res["remote_host"] == "mx.refused.test[127.0.0.1]:%d" % port,
                       "second MX: %s" % res["remote_host"], r)

            @run.case
            def next_mx_when_greeting_421():
                before = (g421.connections, len(h5.messages))
                res, r = one("busy.test")
                expect(res["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(res["remote_host"] == "mx.busy.test[127.0.0.5]:%d" % port,
                       "second MX: %s" % res["remote_host"], r)
                expect(g421.connections == before[0] + 1, "the 421 host was tried first")
                expect(len(h5.messages) == before[1] + 1, "the next MX got the message")

            @run.case
            def implicit_mx_a_record():
                res, r = one("nomx4.test")
                expect(res["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(res["remote_host"] == "nomx4.test[127.0.0.5]:%d" % port,
                       "the domain's own A: %s" % res["remote_host"], r)

            @run.case
            def implicit_mx_ipv4_then_ipv6():
                if not h6:
                    print("skip implicit_mx_ipv4_then_ipv6: no IPv6 loopback")
                    return
                res, r = one("nomx.test")
                expect(res["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(res["remote_host"] == "nomx.test[::1]:%d" % port,
                       "IPv6 after the refused IPv4: %s" % res["remote_host"], r)
                expect(len(h6.messages) == 1, "the IPv6 host got it")

            @run.case
            def address_literal_without_dns():
                n = len(dns.queries())
                res, r = one("[127.0.0.5]")
                expect(res["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(res["remote_host"] == "[127.0.0.5]:%d" % port and
                       res["destination"] == "[127.0.0.5]", "the literal: %s" % res, r)
                expect(len(dns.queries()) == n, "no DNS query")

            @run.case
            def null_mx_no_connection():
                before = counts()
                res, r = one("null.test", ["a@null.test", "b@null.test"])
                for rc in res["rcpts"]:
                    expect(rc["status"] == "permanent" and rc["code"] == 550 and
                           rc["enhanced"] == "5.1.10", "550 5.1.10 for each: %s" % rc, r)
                expect(counts() == before, "no connection anywhere")
                expect("connected" not in r.stderr, "no connection logged", r)

            @run.case
            def nxdomain():
                before = counts()
                res, r = one("nosuch.test")
                rc = res["rcpts"][0]
                expect(rc["status"] == "permanent" and rc["enhanced"] == "5.1.2" and
                       "domain not found" in rc["text"], "5.1.2 domain not found: %s" % rc, r)
                expect(counts() == before, "no connection anywhere")

            @run.case
            def dns_failure_is_transient():
                res, r = one("broken.test")
                rc = res["rcpts"][0]
                expect(rc["status"] == "transient" and rc["enhanced"] == "4.4.3",
                       "4.4.3: %s" % rc, r)

            @run.case
            def all_unreachable_is_transient():
                res, r = one("dead.test")
                rc = res["rcpts"][0]
                expect(rc["status"] == "transient" and rc["code"] == 451 and
                       rc["enhanced"] == "4.4.1", "451 4.4.1: %s" % rc, r)
                expect("b.dead.test[127.0.0.3]" in rc["text"], "the last error: %s" % rc, r)

            @run.case
            def all_5xx_is_permanent():
                res, r = one("deny.test")
                rc = res["rcpts"][0]
                expect(rc["status"] == "permanent" and rc["code"] == 554 and
                       rc["enhanced"] == "5.7.1" and "go away" in rc["text"],
                       "554 5.7.1 from the hosts: %s" % rc, r)
                # One 5xx host and one unreachable: try again later.
                res, r = one("halfdeny.test")
                rc = res["rcpts"][0]
                expect(rc["status"] == "transient" and rc["enhanced"] == "4.4.1",
                       "transient: %s" % rc, r)

            @run.case
            def per_recipient_results_one_transaction():
                # refused.test ends at 127.0.0.1, whose recorder refuses two.
                before = len(h2.messages)
                rcpts = ["good1@refused.test", "bad@refused.test", "later@refused.test",
                         "good2@refused.test"]
                h1.recorder.rcpt_replies.update({"bad@refused.test": "550 5.1.1 no such user",
                                                 "later@refused.test": "450 4.2.1 try later"})
                n1 = len(h1.messages)
                res, r = one("refused.test", rcpts)
                got = [(x["addr"], x["status"], x["code"]) for x in res["rcpts"]]
                expect(got == [("good1@refused.test", "ok", 250),
                               ("bad@refused.test", "permanent", 550),
                               ("later@refused.test", "transient", 450),
                               ("good2@refused.test", "ok", 250)], "results: %s" % got, r)
                expect(res["rcpts"][0]["text"].endswith("queued as SKTEST42"),
                       "the DATA reply for the accepted: %s" % res["rcpts"][0], r)
                expect(len(h1.messages) == n1 + 1, "one transaction")
                expect(h1.messages[-1]["rcpt_tos"] == ["good1@refused.test", "good2@refused.test"],
                       "accepted recipients in it: %s" % h1.messages[-1]["rcpt_tos"])
                expect(len(h2.messages) == before, "nothing to 127.0.0.2")

            @run.case
            def next_mx_on_timeout():
                c = silent.connections
                res, r = one("slow.test", None, "--timeout-ms", "1000")
                expect(res["rcpts"][0]["status"] == "ok", "delivered", r)
                expect(res["remote_host"] == "mx.slow.test[127.0.0.1]:%d" % port,
                       "second MX after the silent one: %s" % res["remote_host"], r)
                expect(silent.connections == c + 1, "the silent host was tried")

            @run.case
            def cancel_drops_results():
                # A job in a worker (waiting for a greeting), and one in DNS
                # (no answer): after cancel, neither reports.
                for dom in ("silentonly.test", "dropped.test"):
                    r = sktest.run([DRIVER, "deliver", "--dns", dns.address, "--mx-port", port,
                                    "--from", "a@sender.test", "--rcpt", "u@" + dom,
                                    "--message", msg, "--timeout-ms", "1000",
                                    "--cancel-ms", "300"], timeout=60)
                    expect(r.returncode == 0 and r.stdout == "",
                           "%s: no result after cancel" % dom, r)

            @run.case
            def destination_keys():
                keys = route_keys(dns, "a.prov.test", "b.prov.test", "c.other.test", "nomx4.test",
                                  "nosuch.test")
                expect(keys["a.prov.test"] == "mx1.prov.test,mx2.prov.test", "key: %s" % keys)
                expect(keys["b.prov.test"] == keys["a.prov.test"], "same provider, same key")
                expect(keys["c.other.test"] == "mx1.prov.test", "another set: %s" % keys)
                expect(keys["nomx4.test"] == "nomx4.test", "implicit MX: %s" % keys)
                expect(keys["nosuch.test"] is None, "no key for NXDOMAIN: %s" % keys)

            if h6:
                h6.__exit__(None, None, None)
    finally:
        tmp.cleanup()
    run.finish()


if __name__ == "__main__":
    main()
