#!/usr/bin/python3
"""`smtpkit stats --metrics`: the running daemon's metrics through its
control socket. After mail was delivered, bounced (550 5.1.1 from the MX,
class bad-mailbox), refused at RCPT as suppressed and deferred, the
exposition passes `promtool check metrics`, its counters equal the tracking
store's counts (`smtpkit stats --json`), its histograms count every commit,
delivery and session, and the gauges show the queue drained. Without a
daemon, exit 69; --metrics with --json, exit 64."""

import json
import os
import re
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import HOST, MX, expect, serve, submit, wait  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "met.test": {"MX": [[10, "mx.met.test"]]},
    "mx.met.test": {"A": ["127.0.0.2"]},
}
PROMTOOL = "/usr/bin/promtool"


def metrics(data_dir):
    r = sktest.smtpkit("stats", "--data-dir", data_dir, "--metrics", timeout=30)
    expect(r.returncode == 0, "stats --metrics: %d %s" % (r.returncode, r.stderr))
    return r.stdout


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def tracked(data_dir):
    r = sktest.smtpkit("stats", "--data-dir", data_dir, "--json", timeout=30)
    expect(r.returncode == 0, "stats --json: %d %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)["last_hour"]["by_outcome"]


tmp = sktest.TempDir("sk-serve-metrics-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, \
            MX("127.0.0.2", port, "mx.met.test",
               rcpt_script={"gone@met.test": ["550 5.1.1 <gone@met.test>: no such user"] * 5,
                            "later@met.test": ["451 4.3.0 try later"] + ["250 2.1.5 ok"] * 5}
               ):
        srv = serve(tmp, dns, port, "--suppress-for", "1h")
        r = sktest.smtpkit("stats", "--data-dir", srv.data_dir, "--metrics", timeout=30)
        expect(r.returncode in (66, 69), "no daemon yet: %d %s" % (r.returncode, r.stderr))
        r = sktest.smtpkit("stats", "--data-dir", srv.data_dir, "--metrics", "--json", timeout=30)
        expect(r.returncode == 64 and "--metrics" in r.stderr,
               "--metrics with --json: %d %s" % (r.returncode, r.stderr))
        with srv:
            ids = [submit(srv, "alice@local.test", ["bob@met.test"], "m%d" % i) for i in range(8)]
            ids.append(submit(srv, "alice@local.test", ["gone@met.test"], "bounce"))
            ids.append(submit(srv, "alice@local.test", ["later@met.test"], "defer"))
            wait(lambda: tracked(srv.data_dir)["bounced"] >= 1, 30, "the bounce", srv)
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.ehlo("client.test")
                s.mail("alice@local.test")
                code, _ = s.rcpt("gone@met.test")
                expect(code == 550, "suppressed at RCPT: %d" % code, srv)
            wait(lambda: tracked(srv.data_dir)["delivered"] >= 9 and
                 tracked(srv.data_dir)["suppressed"] >= 1, 40, "deliveries", srv)
            # The bounce's DSN goes to alice (local): wait for the queue
            # to drain so that the gauges can be checked at 0.
            wait(lambda: samples(metrics(srv.data_dir))["smtpkit_queue_messages"] == 0, 30,
                 "an empty queue", srv)
            # The store writes events in batches (docs/tracking.md): the
            # last ones reach track.db shortly after they are counted.
            wait(lambda: samples(metrics(srv.data_dir))["smtpkit_delivered_total"] ==
                 tracked(srv.data_dir)["delivered"], 10, "the last events written", srv)
            text = metrics(srv.data_dir)
            path = tmp.join("metrics.txt")
            with open(path, "w") as f:
                f.write(text)
            p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                               capture_output=True, timeout=60)
            expect(p.returncode == 0, "promtool check metrics: %d %s%s\n%s"
                   % (p.returncode, p.stdout, p.stderr, text))
            s = samples(text)
            t = tracked(srv.data_dir)
            pairs = [("smtpkit_messages_received_total", "received"),
                     ("smtpkit_delivered_total", "delivered"),
                     ("smtpkit_deferred_total", "deferred"),
                     ("smtpkit_expired_total", "expired"),
                     ("smtpkit_complained_total", "complained"),
                     ("smtpkit_suppressed_total", "suppressed")]
            for name, kind in pairs:
                expect(s[name] == t[kind], "%s %s, tracked %s %s" % (name, s[name], kind, t[kind]),
                       text)
            bounced = sum(v for k, v in s.items() if k.startswith("smtpkit_bounced_total{"))
            expect(bounced == t["bounced"] >= 1, "bounced %s, tracked %s" % (bounced, t["bounced"]),
                   text)
            expect(s.get('smtpkit_bounced_total{class="bad-mailbox"}') == 1,
                   "bounce by class", text)
            expect(t["deferred"] >= 1, "a deferral happened: %r" % t)
            # 10 messages and the bounce's DSN.
            expect(s["smtpkit_messages_received_total"] >= 10, "received", text)
            expect(s["smtpkit_spool_commit_seconds_count"] == s["smtpkit_messages_received_total"],
                   "a commit per message received", text)
            expect(s["smtpkit_delivery_seconds_count"] == s["smtpkit_delivered_total"],
                   "a delivery time per delivery", text)
            expect(s["smtpkit_received_bytes_total"] > 10 * 50, "bytes", text)
            expect(s["smtpkit_smtp_session_seconds_count"] >= 11, "sessions ended", text)
            expect(s["smtpkit_queue_recipients"] == 0 and s["smtpkit_deliveries_in_flight"] == 0,
                   "the queue is empty", text)
            expect(s["smtpkit_connections_in"] == 0, "no session open", text)
            expect(re.search(r"^smtpkit_connections_out \d+$", text, re.M), "out", text)
finally:
    tmp.cleanup()
print("ok")
