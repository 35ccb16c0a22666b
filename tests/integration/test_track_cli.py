#!/usr/bin/python3
"""`smtpkit track`, `smtpkit stats` and `smtpkit suppress` on a tracking store
filled through the library (examples/track_inject): JSON shapes and values,
tables, exit codes (64 bad argument, 66 no store, 69 unknown ID or address,
65 not an address), readers beside a writer holding the database lock."""

import json
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

INJECT = os.path.join(sktest.BUILD_DIR, "example_track_inject")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
EVENT_FIELDS = ["time", "event", "recipient", "attempt", "remote_host", "reply", "tls", "class",
                "dsn_id", "auth"]
KINDS = ["received", "queued", "deferred", "delivered", "bounced", "expired", "suppressed",
         "complained"]

tmp = sktest.TempDir("sk-track-cli-")
check = sktest.check


def cli(*args, rc=0):
    r = sktest.smtpkit(*args, timeout=30)
    check(rc is None or r.returncode == rc,
          "smtpkit %s: exit %d, expected %s\nstdout: %s\nstderr: %s"
          % (" ".join(args), r.returncode, rc, r.stdout, r.stderr))
    return r


def inject(data_dir, rows, *args):
    text = "".join("\t".join(str(f) for f in row) + "\n" for row in rows)
    return sktest.run([INJECT, data_dir] + list(args), input=text, timeout=30, check_rc=0)


# (age in seconds, event, queue ID, Message-ID, recipient, attempt, remote host, reply, tls, class)
MX = "mx.example.net[127.0.0.1]:2525"
TLS = "TLSv1.3 TLS_AES_256_GCM_SHA384"
EVENTS = [
    (1900, "received", "Q0000000000000A1", "<m1@example.org>", "-", "-", "-", "-", "-", "-"),
    (1890, "queued", "Q0000000000000A1", "-", "a@example.net", "-", "-", "-", "-", "-"),
    (1890, "queued", "Q0000000000000A1", "-", "b@Example.ORG", "-", "-", "-", "-", "-"),
    (1800, "deferred", "Q0000000000000A1", "-", "a@example.net", 1, MX, "451 4.7.1 greylisted",
     "-", "-"),
    (1700, "bounced", "Q0000000000000A1", "-", "b@Example.ORG", 1, "mx.example.org",
     "550 5.1.1 no such user", "-", "bad-mailbox"),
    (30, "delivered", "Q0000000000000A1", "-", "a@example.net", 2, MX, "250 2.0.0 Ok", TLS, "-"),
    (7200, "received", "Q0000000000000B2", "m2@example.org", "-", "-", "-", "-", "-", "-"),
    (7100, "expired", "Q0000000000000B2", "-", "c@example.com", 5, "-", "421 4.4.2 timeout",
     "-", "-"),
    (90000, "delivered", "Q0000000000000C3", "m3@example.org", "d@example.net", 1, MX,
     "250 ok", "-", "-"),  # outside the day
    (20, "complained", "-", "m2@example.org", "c@example.com", "-", "-", "-", "-", "-"),
]

try:
    d = tmp.join("data")
    os.makedirs(d)

    # --- before anything was tracked --------------------------------------
    r = cli("track", "--data-dir", d, "Q1", rc=66)
    check("no tracking store" in r.stderr, "missing store is explained: %r" % r.stderr)
    cli("stats", "--data-dir", d, "--json", rc=66)
    check(json.loads(cli("suppress", "--data-dir", d, "list", "--json").stdout) == [],
          "empty suppression list without a store")

    out = inject(d, EVENTS, "--suppress-for", "3600").stdout
    check(out.split() == ["suppressed", "b@Example.ORG"], "hard bounce suppressed: %r" % out)

    # --- track --json -------------------------------------------------------
    for key in ["Q0000000000000A1", "m1@example.org", "<m1@example.org>"]:
        t = json.loads(cli("track", "--data-dir", d, key, "--json").stdout)
        check(list(t) == ["id", "message_id", "events", "suppressions"],
              "top-level fields: %r" % list(t))
        # The suppression its hard bounce caused, with that bounce.
        sup = t["suppressions"]
        check(len(sup) == 1 and sup[0]["address"] == "b@example.org"
              and sup[0]["bounce"] == "550 5.1.1 no such user"
              and sup[0]["detector"] == "smtp-reply" and sup[0]["evidence"] == "recipient-domain"
              and RFC3339.match(sup[0]["until"]), "%s: suppressions: %r" % (key, sup))
        check(t["id"] == "Q0000000000000A1" and t["message_id"] == "m1@example.org",
              "%s: id and Message-ID: %r" % (key, t))
        evs = t["events"]
        check([e["event"] for e in evs] == ["received", "queued", "queued", "deferred",
                                            "bounced", "delivered"], "order: %r" % evs)
        for e in evs:
            check(list(e) == EVENT_FIELDS, "event fields: %r" % list(e))
            check(RFC3339.match(e["time"]), "RFC 3339 time: %r" % e["time"])
        check([e["time"] for e in evs] == sorted(e["time"] for e in evs), "times ascend")
        check(evs[0]["recipient"] is None and evs[0]["attempt"] is None, "received: %r" % evs[0])
        check(evs[3]["attempt"] == 1 and evs[3]["reply"] == "451 4.7.1 greylisted"
              and evs[3]["remote_host"] == MX and evs[3]["tls"] is None, "deferred: %r" % evs[3])
        check(evs[4]["class"] == "bad-mailbox" and evs[4]["recipient"] == "b@Example.ORG",
              "bounced: %r" % evs[4])
        check(evs[5]["attempt"] == 2 and evs[5]["tls"] == TLS and evs[5]["reply"] == "250 2.0.0 Ok",
              "delivered: %r" % evs[5])

    # A complaint known only by Message-ID joins its message's events.
    t = json.loads(cli("track", "--data-dir", d, "<m2@example.org>", "--json").stdout)
    check(t["id"] == "Q0000000000000B2", "m2's queue ID: %r" % t)
    check([e["event"] for e in t["events"]] == ["received", "expired", "complained"],
          "m2 events: %r" % t["events"])

    # The table names the message and each event.
    r = cli("track", "--data-dir", d, "Q0000000000000A1")
    check("Q0000000000000A1" in r.stdout and "<m1@example.org>" in r.stdout, r.stdout)
    check("Suppressed because of this message's bounces:" in r.stdout
          and "b@example.org until" in r.stdout and "evidence recipient-domain" in r.stdout, r.stdout)
    rows = [ln for ln in r.stdout.splitlines() if RFC3339.match(ln.split(" ")[0] or "-")]
    check(len(rows) == 6 and "delivered" in rows[5] and TLS in rows[5], "table rows: %r" % rows)

    # --- track errors ---------------------------------------------------------
    r = cli("track", "--data-dir", d, "NOSUCHID", rc=69)
    check("NOSUCHID" in r.stderr and "no events" in r.stderr, "unknown ID: %r" % r.stderr)
    cli("track", "--data-dir", d, "q0000000000000a1", rc=69)  # queue IDs are exact
    r = cli("track", "--data-dir", d, "Q0000000000000A1", "--bogus", rc=64)
    check("--bogus" in r.stderr, "names the bad option: %r" % r.stderr)
    r = cli("track", "Q0000000000000A1", "--data-dir", rc=64)
    check("--data-dir" in r.stderr, "names the option without its value: %r" % r.stderr)
    cli("track", "--data-dir", d, rc=64)
    r = cli("track", "--data-dir", d, "A", "B", rc=64)
    check("'B'" in r.stderr, "names the extra argument: %r" % r.stderr)
    cli("track", "--data-dir", tmp.join("nowhere"), "Q1", rc=66)

    # --- stats --json ---------------------------------------------------------
    s = json.loads(cli("stats", "--data-dir", d, "--json").stdout)
    check(list(s) == ["time", "last_hour", "last_day", "webhooks"], "stats fields: %r" % list(s))
    check(s["webhooks"] == [], "no webhook endpoints: %r" % s["webhooks"])
    check(RFC3339.match(s["time"]), "stats time")
    hour, day = s["last_hour"], s["last_day"]
    for w in (hour, day):
        check(list(w) == ["since", "total", "by_outcome", "by_domain", "domains_omitted",
                          "other_domains", "no_recipient"], "window fields: %r" % list(w))
        check(list(w["by_outcome"]) == KINDS, "every outcome listed: %r" % w["by_outcome"])
    check(hour["total"] == 7 and day["total"] == 9, "totals: %d %d" % (hour["total"], day["total"]))
    check(hour["by_outcome"]["delivered"] == 1 and hour["by_outcome"]["queued"] == 2
          and hour["by_outcome"]["expired"] == 0 and hour["by_outcome"]["complained"] == 1,
          "hour: %r" % hour["by_outcome"])
    check(day["by_outcome"]["expired"] == 1 and day["by_outcome"]["received"] == 2
          and day["by_outcome"]["delivered"] == 1, "day: %r" % day["by_outcome"])
    doms = {x["domain"]: x for x in day["by_domain"]}
    check(list(doms) == ["example.net", "example.com", "example.org"],
          "domains, busiest first: %r" % list(doms))
    check(doms["example.org"]["by_outcome"]["bounced"] == 1, "domain lower-cased: %r" % doms)
    check(doms["example.com"]["by_outcome"]["expired"] == 1
          and doms["example.com"]["by_outcome"]["complained"] == 1, "%r" % doms["example.com"])
    check(doms["example.net"]["total"] == 3, "%r" % doms["example.net"])
    # The received events have no recipient: their own row, so rows add up.
    check(day["no_recipient"]["total"] == 2 and day["no_recipient"]["by_outcome"]["received"] == 2
          and day["other_domains"]["total"] == 0, "rows without a domain: %r" % day)
    check(sum(x["total"] for x in day["by_domain"]) + day["no_recipient"]["total"]
          == day["total"], "the day's rows add up: %r" % day)
    r = cli("stats", "--data-dir", d)
    check("LAST HOUR" in r.stdout and "example.net" in r.stdout, r.stdout)
    cli("stats", "--data-dir", d, "extra", rc=64)

    # --- suppress ---------------------------------------------------------------
    lst = json.loads(cli("suppress", "--data-dir", d, "list", "--json").stdout)
    check(len(lst) == 1 and lst[0]["address"] == "b@example.org"
          and lst[0]["reason"] == "bad-mailbox: 550 5.1.1 no such user"
          and lst[0]["queue_id"] == "Q0000000000000A1" and lst[0]["evidence"] == "recipient-domain"
          and lst[0]["bounce"] == "550 5.1.1 no such user"
          and RFC3339.match(lst[0]["until"]), "bounce entry: %r" % lst)
    r = cli("suppress", "--data-dir", d, "list")
    check("caused by Q0000000000000A1 (detector smtp-reply, evidence recipient-domain)"
          in r.stdout, r.stdout)
    e = json.loads(cli("suppress", "--data-dir", d, "add", "<Zed@Example.COM>", "--reason",
                       "complaint", "--for", "2d", "--json").stdout)
    check(list(e) == ["address", "reason", "created", "until", "queue_id", "bounce", "detector",
                      "evidence"], "entry fields: %r" % list(e))
    check(e["queue_id"] is None and e["bounce"] is None, "a manual entry has no bounce: %r" % e)
    check(e["address"] == "Zed@example.com" and e["reason"] == "complaint", "%r" % e)
    e = json.loads(cli("suppress", "--data-dir", d, "add", "ops@example.net", "--json").stdout)
    check(e["until"] is None and e["reason"] == "manual", "for ever: %r" % e)
    lst = json.loads(cli("suppress", "--data-dir", d, "list", "--json").stdout)
    check([x["address"] for x in lst] == ["Zed@example.com", "b@example.org", "ops@example.net"],
          "sorted list: %r" % lst)
    r = cli("suppress", "--data-dir", d, "list")
    check("Zed@example.com" in r.stdout and "3 addresses suppressed" in r.stdout, r.stdout)

    cli("suppress", "--data-dir", d, "add", "not-an-address", rc=65)
    r = cli("suppress", "--data-dir", d, "add", "x@example.com", "--for", "soon", rc=64)
    check("--for" in r.stderr, "names --for: %r" % r.stderr)
    cli("suppress", "--data-dir", d, "frobnicate", rc=64)
    cli("suppress", "--data-dir", d, "remove", rc=64)
    cli("suppress", "--data-dir", d, "list", "--reason", "x", rc=64)
    cli("suppress", "--data-dir", tmp.join("nowhere"), "add", "x@example.com", rc=66)
    check(not os.path.exists(tmp.join("nowhere")), "no directory made for a wrong --data-dir")

    cli("suppress", "--data-dir", d, "remove", "zed@example.com", rc=69)  # local part exact
    r = cli("suppress", "--data-dir", d, "remove", "Zed@EXAMPLE.com", "--json")
    check(json.loads(r.stdout) == {"address": "Zed@example.com", "removed": True}, r.stdout)
    r = cli("suppress", "--data-dir", d, "remove", "Zed@example.com", rc=69)
    check("not on the suppression list" in r.stderr, r.stderr)

    # --- readers beside a writer that holds the lock ------------------------
    db = sqlite3.connect(os.path.join(d, "track.db"), isolation_level=None, timeout=5)
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO events (time_ms, event, queue_id) VALUES (1, 'queued', 'QLOCKED')")
    t = json.loads(cli("track", "--data-dir", d, "Q0000000000000A1", "--json").stdout)
    check(len(t["events"]) == 6, "reader works while the lock is held")
    cli("track", "--data-dir", d, "QLOCKED", rc=69)  # uncommitted: not seen
    cli("stats", "--data-dir", d, "--json")
    check(len(json.loads(cli("suppress", "--data-dir", d, "list", "--json").stdout)) == 2,
          "list while locked")
    # A second writer waits for the busy timeout, then gives up with an error.
    r = cli("suppress", "--data-dir", d, "add", "late@example.com", rc=None)
    check(r.returncode == 74 and "locked" in r.stderr, "busy writer: %d %r"
          % (r.returncode, r.stderr))
    db.execute("COMMIT")
    db.close()
    cli("track", "--data-dir", d, "QLOCKED")
    cli("suppress", "--data-dir", d, "add", "late@example.com")
    print("ok")
finally:
    tmp.cleanup()
