#!/usr/bin/python3
"""`smtpkit serve` relaying: mail for non-local domains goes to --relay-host
(an aiosmtpd sink here, STARTTLS used when offered) with a Received: line
added; no open relay: from outside --relay-net without AUTH it is refused
at RCPT (554 5.7.1), after AUTH it is relayed."""

import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from send_peer import Smtpd  # noqa: E402
from serve_peer import HOST, Serve, expect, expect_arrived, make_users, message  # noqa: E402

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
    users = make_users(tmp, {"zoe": "relay pw"})
    with Smtpd(tls="starttls", cert=sink_cert,
               rcpt_replies={"nobody@remote.example": "550 5.1.1 no such user"}) as sink:
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

            # 3. A recipient the relay refuses permanently: bounced, logged.
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.sendmail("alice@example.org", ["nobody@remote.example"],
                           message("refused", to="nobody@remote.example"))
            sktest.wait_for(lambda: "queue bounced" in srv.log(), timeout=20,
                            what="bounce logged")
            line = [ln for ln in srv.log().splitlines() if "queue bounced" in ln][0]
            expect("nobody@remote.example" in line and "550" in line, "bounce line %r" % line)
        expect(srv.proc.returncode == 0, "exit 0", srv)

        # 4. Outside --relay-net (loopback is not in 10.255.255.0/24).
        srv = Serve(tmp, name="untrusted", submission=1,
                    args=["--hostname", "mx.test", "--relay-net", "10.255.255.0/24",
                          "--relay-host", "%s:%d" % (HOST, sink.port), "--users", users,
                          "--auth-plaintext-loopback"])
        before = len(sink.messages)
        with srv:
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.ehlo("client.test")
                s.mail("alice@example.org")
                code, resp = s.rcpt("victim@remote.example")
                expect(code == 554 and resp.startswith(b"5.7.1"),
                       "relay refused: %d %r" % (code, resp), srv)
                code, resp = s.rcpt("bob@localhost")
                expect(code == 250, "a local recipient is still accepted: %d" % code, srv)
                code, resp = s.data(message("local only"))
                expect(code == 250, "DATA for the local recipient: %d %r" % (code, resp), srv)
            expect("rcpt addr=<victim@remote.example> reply=554" in srv.log(), "refusal logged",
                   srv)

            # 5. The same client after AUTH may relay (submission, plain text
            # AUTH allowed on loopback by --auth-plaintext-loopback).
            with smtplib.SMTP(HOST, srv.submission_port, timeout=30) as s:
                s.ehlo("client.test")
                s.login("zoe", "relay pw")
                refused = s.sendmail("zoe@example.org", ["friend@remote.example"],
                                     message("after auth", to="friend@remote.example"))
                expect(refused == {}, "relayed after AUTH", srv)
            wait_messages(sink, before + 1, srv)
            expect(sink.messages[-1]["rcpt_tos"] == ["friend@remote.example"], "relayed rcpt")
        expect(len(sink.messages) == before + 1, "nothing else reached the relay host")
        expect(srv.proc.returncode == 0, "exit 0", srv)

    # 6. Relay host down: the message is deferred (4.4.1) and stays queued.
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
