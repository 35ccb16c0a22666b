#!/usr/bin/python3
"""What `smtpkit track` and `smtpkit stats` say about real deliveries
(docs/tracking.md): a bounce names the queue ID of the DSN sent back to the
sender, a local delivery names its Maildir file (table and --json), and the
rows of stats by destination add up to its total."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (LOCAL, MX, events, expect, serve, submit, track,  # noqa: E402
                            wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "null.test": {"MX": [[0, "."]]},
    "ok.test": {"MX": [[10, "mx.ok.test"]]},
    "mx.ok.test": {"A": ["127.0.0.2"]},
}
QUEUE_ID = re.compile(r"^[0-9A-Z]{16}$")


def cli(*args):
    r = sktest.smtpkit(*args, timeout=30)
    expect(r.returncode == 0, "smtpkit %s: exit %d\n%s%s" % (" ".join(args), r.returncode,
                                                           r.stdout, r.stderr))
    return r.stdout


def check_adds_up(window, name):
    """The rows by destination add up to the window's total, and each row's
    outcomes to its own total."""
    rows = window["by_domain"] + [window["other_domains"], window["no_recipient"]]
    for row in rows:
        expect(sum(row["by_outcome"].values()) == row["total"],
               "%s: a row's outcomes add up to its total: %r" % (name, row))
    expect(sum(row["total"] for row in rows) == window["total"],
           "%s: rows %r add up to the total %d" % (name, [r["total"] for r in rows],
                                                   window["total"]))
    for kind, n in window["by_outcome"].items():
        expect(sum(row["by_outcome"][kind] for row in rows) == n,
               "%s: %s adds up over the rows" % (name, kind))


tmp = sktest.TempDir("sk-track-links-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, MX("127.0.0.2", port, "mx.ok.test") as ok:
        srv = serve(tmp, dns, port, retry="1s")
        with srv:
            # One message: a bounce (null MX), a local delivery, a remote one.
            qid = submit(srv, "alice@%s" % LOCAL,
                         ["nobody@null.test", "carol@%s" % LOCAL, "bob@ok.test"], "links")
            wait_event(srv, qid, "bounced")
            wait(lambda: ok.to("bob@ok.test"), 20, "bob@ok.test delivered", srv)
            wait_event(srv, qid, "delivered", count=2)

            # --- the DSN: its queue ID on the bounced event ---------------
            # Linked once the DSN is on disk, just after the bounce.
            b = wait(lambda: [e for e in events(srv.data_dir, qid, "bounced") if e["dsn_id"]],
                     20, "the bounce names its DSN", srv)[0]
            dsn_id = b["dsn_id"]
            expect(QUEUE_ID.match(dsn_id) and dsn_id != qid, "a DSN queue ID: %r" % b, srv)
            # The DSN is a message of its own, delivered to alice's Maildir.
            dsn_delivered = wait_event(srv, dsn_id, "delivered")[0]
            expect(dsn_delivered["recipient"] == "alice@%s" % LOCAL,
                   "the DSN went to the sender: %r" % dsn_delivered, srv)
            alice = srv.wait_maildir(LOCAL, "alice", 1, timeout=20)

            # --- the Maildir file of a local delivery ---------------------
            t = track(srv.data_dir, qid)
            carol = [e for e in t["events"] if e["event"] == "delivered"
                     and e["recipient"] == "carol@%s" % LOCAL]
            expect(len(carol) == 1, "carol delivered once: %r" % t, srv)
            path = carol[0]["remote_host"]
            files = srv.maildir(LOCAL, "carol")
            expect(len(files) == 1, "one file for carol: %r" % files, srv)
            expect(path is not None and os.path.isabs(path)
                   and os.path.samefile(path, files[0]),
                   "remote_host is carol's Maildir file %s: %r" % (files[0], carol[0]), srv)
            expect(dsn_delivered["remote_host"] and
                   os.path.samefile(dsn_delivered["remote_host"], alice[0]),
                   "the DSN's delivery names alice's file: %r" % dsn_delivered, srv)
            # A remote delivery still names the peer, and has no DSN.
            bob = [e for e in t["events"] if e["event"] == "delivered"
                   and e["recipient"] == "bob@ok.test"][0]
            expect("127.0.0.2" in (bob["remote_host"] or "") and bob["dsn_id"] is None,
                   "remote delivery: %r" % bob, srv)
            expect(all("dsn_id" in e for e in t["events"]), "dsn_id in every event", srv)

            # The table says the same.
            table = cli("track", "--data-dir", srv.data_dir, qid)
            expect("DSN %s" % dsn_id in table, "table names the DSN:\n%s" % table, srv)
            expect(path in table, "table names the Maildir file:\n%s" % table, srv)

            # --- stats: the rows add up -------------------------------------
            s = json.loads(cli("stats", "--data-dir", srv.data_dir, "--json"))
            for name in ("last_hour", "last_day"):
                w = s[name]
                check_adds_up(w, name)
                expect(w["no_recipient"]["by_outcome"]["received"] == 1,
                       "the one received event has no recipient domain: %r" % w, srv)
                doms = {d["domain"]: d for d in w["by_domain"]}
                expect(doms[LOCAL]["by_outcome"]["delivered"] == 2,
                       "local deliveries (carol, the DSN) count under %s: %r" % (LOCAL, doms),
                       srv)
            table = cli("stats", "--data-dir", srv.data_dir)
            rows = [line.split() for line in table.splitlines()]
            totals = [r for r in rows if r and r[0] == "total" and len(r) == 10]
            expect(len(totals) == 2, "a total row per window:\n%s" % table, srv)
            expect(any(r[:2] == ["(no", "recipient)"] for r in rows),
                   "a row for events without a recipient:\n%s" % table, srv)
        expect(srv.proc.returncode == 0, "serve exit %r" % srv.proc.returncode, srv)
    print("ok")
finally:
    tmp.cleanup()
