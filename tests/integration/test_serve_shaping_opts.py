#!/usr/bin/python3
"""`smtpkit serve` hands its connection options to the MX delivery: with
--messages-per-connection 1 every message to a destination opens its own
connection, while by default a connection carries the next messages (it
idles a moment for more). The messages are sent one after another, so with
reuse one connection carries them all."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import MX, expect, serve, submit, wait  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "far.test": {"MX": [[10, "mx.far.test"]]},
    "mx.far.test": {"A": ["127.0.0.2"]},
}
COUNT = 4

tmp = sktest.TempDir("sk-serve-shaping-")
try:
    for name, args, want in (("one-per-conn", ["--messages-per-connection", "1",
                                                "--destination-connections", "1"], COUNT),
                             ("reuse", ["--destination-connections", "1"], 1)):
        port = sktest.free_port()
        with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.far.test") as mx:
            srv = serve(tmp, dns, port, *args, name=name)
            with srv:
                for i in range(COUNT):
                    submit(srv, "alice@local.test", ["bob@far.test"], "m%d" % i)
                    # One at a time: each is delivered before the next comes.
                    wait(lambda: len(mx.messages) > i, 20, "message %d delivered" % i, srv)
                conns = len(mx.conn_times)
                expect(conns == want, "%s: %d connection(s) for %d messages, want %d"
                       % (name, conns, COUNT, want), srv)
    print("ok")
finally:
    tmp.cleanup()
