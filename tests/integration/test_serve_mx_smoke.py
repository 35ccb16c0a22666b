#!/usr/bin/python3
"""Smoke test of delivery by MX: `smtpkit serve --dns-server --mx-port` (no
relay host) sends a message for a remote domain to the MX host that the
loopback DNS server names, over STARTTLS, and `smtpkit track ID --json`
shows received, queued and delivered with the remote host and TLS, both
while the server runs and after it stopped. A domain named by
--tls-required is not delivered to that peer, whose certificate does not
verify: deferred with 4.7.10."""
import json
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402


def track(data_dir, qid):
    r = sktest.smtpkit("track", "--data-dir", data_dir, qid, "--json", timeout=30)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def kinds(obj):
    return [e.get("event") for e in obj.get("events", [])] if obj else []


tmp = sktest.TempDir("sk-serve-mx-smoke-")
try:
    cert, key = sktest.TestCA.self_signed(tmp.join("tls"), "mx.remote.test")
    mx_port = sktest.free_port()
    mx = Peer(port=mx_port, name="mx.remote.test", tls="starttls", cert=(cert, key),
              smtputf8=False)
    zone = {"remote.test": {"MX": [[10, "mx.remote.test"]]},
            "strict.test": {"MX": [[10, "mx.remote.test"]]},
            "mx.remote.test": {"A": ["127.0.0.1"]}}
    mx.start()
    try:
        with DNSTestServer(zone) as dns:
            srv = Serve(tmp, ["--hostname", "relay.test", "--dns-server", dns.address,
                              "--mx-port", str(mx_port), "--retry-schedule", "1m",
                              "--tls-required", "strict.test"])
            with srv:
                with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                    s.ehlo("client.test")
                    s.mail("alice@localhost")
                    s.rcpt("bob@remote.test")
                    code, resp = s.data(b"From: <alice@localhost>\r\nTo: <bob@remote.test>\r\n"
                                        b"Message-ID: <smoke-1@client.test>\r\n"
                                        b"Subject: smoke\r\n\r\nHello by MX.\r\n")
                expect(code == 250, "DATA accepted: %d %r" % (code, resp), srv)
                qid = resp.decode().rsplit(" ", 1)[-1]
                sktest.wait_for(lambda: mx.messages, 20, what="the MX host got the message")
                m = mx.messages[0]
                sender, rcpts, data, tls = m["mail_from"], m["rcpt_tos"], m["data"], m["tls"]
                expect(sender == "alice@localhost" and rcpts == ["bob@remote.test"],
                       "envelope at the MX: %r %r" % (sender, rcpts), srv)
                expect(b"Hello by MX." in data, "body arrived", srv)
                expect(tls, "delivered over STARTTLS", srv)
                # Events are written in batches: wait for the delivered one.
                deadline = time.monotonic() + 15
                obj = track(srv.data_dir, qid)
                while "delivered" not in kinds(obj) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    obj = track(srv.data_dir, qid)
                expect("delivered" in kinds(obj), "track shows delivered: %r" % obj, srv)
                expect(obj["message_id"] == "smoke-1@client.test",
                       "Message-ID recorded: %r" % obj.get("message_id"), srv)
                expect(track(srv.data_dir, "<smoke-1@client.test>") is not None,
                       "found by Message-ID", srv)
                with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                    s.ehlo("client.test")
                    s.mail("alice@localhost")
                    s.rcpt("carol@strict.test")
                    code, resp = s.data(b"Subject: strict\r\n\r\nOnly over verified TLS.\r\n")
                strict = resp.decode().rsplit(" ", 1)[-1]
                deadline = time.monotonic() + 15
                while "deferred" not in kinds(track(srv.data_dir, strict)) and \
                        time.monotonic() < deadline:
                    time.sleep(0.2)
                ev = [e for e in track(srv.data_dir, strict)["events"] if e["event"] == "deferred"]
                expect(ev and "4.7.10" in (ev[0].get("reply") or ""),
                       "--tls-required defers: %r" % ev, srv)
                expect(len(mx.messages) == 1, "the peer got nothing for strict.test", srv)
            # After the server stopped, the same story is on disk.
            obj = track(srv.data_dir, qid)
            got = kinds(obj)
            expect(got[:1] == ["received"] and "queued" in got and "delivered" in got,
                   "received, queued, delivered in order: %r" % got)
            ev = [e for e in obj["events"] if e["event"] == "delivered"][0]
            expect(ev.get("recipient") == "bob@remote.test", "recipient: %r" % ev)
            expect("127.0.0.1" in (ev.get("remote_host") or ""), "remote host: %r" % ev)
            expect((ev.get("tls") or "").startswith("TLSv1"), "TLS recorded: %r" % ev)
            expect((ev.get("reply") or "").startswith("250"), "reply recorded: %r" % ev)
    finally:
        mx.stop()
    print("ok")
finally:
    tmp.cleanup()
