#!/usr/bin/python3
"""`smtpkit serve` relaying: mail for non-local domains goes to --relay-host
(an aiosmtpd sink here, STARTTLS used when offered) with a Received: line
added, several messages over one connection; with the relay host down the
message is deferred. No open relay (554 5.7.1 from outside --relay-net
without AUTH, relayed after AUTH) and a recipient the relay refuses are the
transcripts serve_relay_refused.txt and serve_relay_bounce.txt."""

import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from send_peer import Smtpd  # noqa: E402
from serve_peer import HOST, Serve, expect, expect_arrived, message  # noqa: E402

tmp = sktest.TempDir("sk-serve-relay-")


def wait_messages(sink, n, srv):
    try:
        sktest.wait_for(lambda: len(sink.messages) >= n, timeout=20,
                        what="%d message(s) at the relay host" % n)
    except TimeoutError as e:
        sktest.fail("%s\n--- server ---\n%s" % (e, srv.log()[-4000:]))


try:
    sink_ca = sktest.TestCA(tmp.join("sink-ca"))
    sink_cert = sink_ca.issue("relay.test")
    with Smtpd(tls="starttls", cert=sink_cert) as sink:
        # 1. From loopback (the default relay networks) without AUTH.
        srv = Serve(tmp, name="trusted",
                    args=["--hostname", "mx.test", "--relay-host", "%s:%d" % (HOST, sink.port)])
        with srv:
            m1 = message("relay one", "Body one\r\n.dot\r\n", to="x@remote.example")
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.sendmail("alice@example.org", ["x@remote.example", "y@remote.example",
                                                 "bob@localhost"], m1)
            wait_messages(sink, 1, srv)
            got = sink.messages[0]
            expect(got["mail_from"] == "alice@example.org", "sender %r" % got["mail_from"], srv)
            expect(sorted(got["rcpt_tos"]) == ["x@remote.example", "y@remote.example"],
                   "only the remote recipients go to the relay: %r" % got["rcpt_tos"], srv)
            expect(got["tls"], "STARTTLS used with the relay host (opportunistic)", srv)
            data = got["data"]
            expect(data.startswith(b"Received: from "), "Received: first: %r" % data[:200], srv)
            # The rest is the message as sent, byte for byte (CRLF kept).
            end = data.index(b"\r\n")
            while data[end + 2:end + 3] in (b" ", b"\t"):
                end = data.index(b"\r\n", end + 2)
            rest = data[end + 2:]
            expect(rest == m1.encode(), "relayed message differs:\n%r\n%r" % (rest[:300],
                                                                             m1.encode()[:300]))
            # The local recipient got it in the Maildir.
            expect_arrived(srv, "localhost", "bob", m1)

            # 2. A second and third message reuse the relay connection.
            for i in (2, 3):
                with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                    s.sendmail("alice@example.org", ["x@remote.example"],
                               message("relay %d" % i, to="x@remote.example"))
                wait_messages(sink, i, srv)
            conns = srv.log().count("smtp connected")
            expect(conns == 1, "one relay connection for three messages, got %d" % conns, srv)
        expect(srv.proc.returncode == 0, "exit 0", srv)

    # 3. Relay host down: the message is deferred (4.4.1) and stays queued.
    srv = Serve(tmp, name="down",
                args=["--relay-host", "%s:%d" % (HOST, sktest.free_port(HOST))])
    with srv:
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.sendmail("alice@example.org", ["x@remote.example"],
                       message("deferred", to="x@remote.example"))
        sktest.wait_for(lambda: "queue deferred" in srv.log(), timeout=20, what="deferral")
        line = [ln for ln in srv.log().splitlines() if "queue deferred" in ln][0]
        expect("4.4.1" in line and "x@remote.example" in line, "deferral line %r" % line, srv)
        q = srv.queue_list()
        expect(len(q) == 1 and q[0]["state"] == "deferred", "deferred in the queue: %r" % q, srv)
    expect(srv.proc.returncode == 0, "exit 0", srv)
    print("ok")
finally:
    tmp.cleanup()
