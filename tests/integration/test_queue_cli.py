#!/usr/bin/python3
"""`smtpkit queue` on a spool made through the library (examples/spool_inject):
list/show JSON shapes and tables, exit codes (64 bad argument, 65 unknown ID,
66 no spool),
flush/release/delete directly on the spool; then the same operations while
`smtpkit serve --hold` runs on it (requests answered by the daemon)."""

import json
import os
import re
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402

INJECT = os.path.join(sktest.BUILD_DIR, "example_spool_inject")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
FIELDS = {"id", "sender", "recipients", "size", "arrival", "state", "attempts", "next_attempt",
          "last_reply"}

tmp = sktest.TempDir("sk-queue-cli-")


def queue(data_dir, *args, rc=0):
    r = sktest.smtpkit("queue", "--data-dir", data_dir, *args, timeout=30)
    expect(rc is None or r.returncode == rc,
           "queue %s: exit %d, expected %s\nstdout: %s\nstderr: %s"
           % (" ".join(args), r.returncode, rc, r.stdout, r.stderr))
    return r


def qlist(data_dir):
    return {m["id"]: m for m in json.loads(queue(data_dir, "list", "--json").stdout)}


def inject(data_dir, body, *args):
    r = sktest.run([INJECT, data_dir] + list(args), input=body, timeout=30, check_rc=0)
    qid = r.stdout.strip()
    expect(re.match(r"^[0-9A-Z]{16}$", qid) is not None, "a queue ID: %r" % qid)
    return qid


try:
    # --- a spool with no daemon ------------------------------------------
    d = tmp.join("data")
    body1 = "Subject: first\r\nFrom: <a@example.org>\r\n\r\nHello.\r\n"
    body2 = "Subject: second\r\n\r\nBody \u00fc.\r\n"
    m1 = inject(d, body1, "--from", "a@example.org", "--to", "bob@localhost", "--to",
                "carol@example.net", "--hold")
    m2 = inject(d, body2, "--from", "", "--to", "dave@example.net", "--deferred", "2")

    q = qlist(d)
    expect(set(q) == {m1, m2}, "both listed: %r" % q)
    for m in q.values():
        expect(set(m) == FIELDS, "list fields: %r" % sorted(m))
        expect(RFC3339.match(m["arrival"]), "arrival is RFC 3339: %r" % m["arrival"])
    a, b = q[m1], q[m2]
    expect(a["sender"] == "a@example.org" and a["recipients"] == ["bob@localhost",
                                                                   "carol@example.net"], "%r" % a)
    expect(a["size"] == len(body1.encode()) and b["size"] == len(body2.encode()),
           "sizes are body octets: %r %r" % (a["size"], b["size"]))
    expect(a["state"] == "hold" and a["attempts"] == 0 and a["next_attempt"] is None
           and a["last_reply"] is None, "held message: %r" % a)
    expect(b["state"] == "deferred" and b["attempts"] == 2 and RFC3339.match(b["next_attempt"])
           and b["last_reply"] == "451 4.4.1 test deferral" and b["sender"] == "",
           "deferred message: %r" % b)

    r = queue(d, "list")
    expect(m1 in r.stdout and m2 in r.stdout and "2 messages" in r.stdout, r.stdout)
    expect("hold" in r.stdout and "deferred" in r.stdout, r.stdout)

    s = json.loads(queue(d, "show", m1, "--json").stdout)
    expect(FIELDS <= set(s) and "headers" in s, "show fields: %r" % sorted(s))
    expect(s["headers"] == "Subject: first\r\nFrom: <a@example.org>\r\n", "%r" % s["headers"])
    expect(s["id"] == m1 and s["state"] == "hold", "%r" % s)
    r = queue(d, "show", m2)
    expect("Subject: second" in r.stdout and "dave@example.net" in r.stdout, r.stdout)

    # Exit codes: 64 names the bad argument; 65 for an unknown ID.
    unknown = "0000000000000000"
    for args, code, word in [(("show", unknown), 65, unknown),
                             (("release", unknown), 65, unknown),
                             (("delete", unknown), 65, unknown),
                             (("show", "nope"), 64, "nope"),
                             (("release",), 64, "release"),
                             (("frobnicate",), 64, "frobnicate"),
                             (("list", "--bogus"), 64, "--bogus"),
                             (("flush", "extra"), 64, "extra")]:
        r = queue(d, *args, rc=code)
        expect(word in r.stderr, "%r: stderr names %r: %r" % (args, word, r.stderr))
    # No spool there: 66, naming the directory and where it came from
    # (the default directory and the environment: test_data_dir.py).
    r = sktest.smtpkit("queue", "--data-dir", tmp.join("empty"), "list", timeout=30)
    expect(r.returncode == 66 and "no spool in %s (from --data-dir)" % tmp.join("empty")
           in r.stderr, "no spool: %r" % r.stderr)

    # Operations straight on the spool.
    queue(d, "flush")
    b = qlist(d)[m2]
    expect(b["state"] == "active" and b["next_attempt"] is None and b["attempts"] == 2,
           "flushed: %r" % b)
    expect(qlist(d)[m1]["state"] == "hold", "flush leaves held messages alone")
    queue(d, "release", m1)
    expect(qlist(d)[m1]["state"] == "active", "released")
    queue(d, "delete", m1)
    expect(set(qlist(d)) == {m2}, "deleted")
    queue(d, "delete", m1, rc=65)

    # --- the same while the daemon runs on a spool ----------------------
    srv = Serve(tmp, args=["--hold", "--local-domain", "localhost", "--hostname", "mx.test"])
    with srv:
        for subject in ("keep", "drop"):
            with smtplib.SMTP(HOST, srv.port, timeout=20) as c:
                c.sendmail("alice@example.org", ["bob@localhost"], message(subject))
        q = sktest.wait_for(lambda: len(srv.queue_list()) == 2 and srv.queue_list(),
                            what="two held messages")
        expect(all(m["state"] == "hold" for m in q), "held: %r" % q, srv)
        ids = {}
        for m in q:
            subj = json.loads(queue(srv.data_dir, "show", m["id"], "--json").stdout)["headers"]
            ids["keep" if "Subject: keep" in subj else "drop"] = m["id"]
        expect(set(ids) == {"keep", "drop"}, "headers tell them apart: %r" % ids, srv)

        queue(srv.data_dir, "delete", ids["drop"])
        queue(srv.data_dir, "flush")
        queue(srv.data_dir, "release", unknown, rc=65)
        queue(srv.data_dir, "release", ids["keep"])
        got = srv.wait_maildir("localhost", "bob", 1)
        with open(got[0], "rb") as f:
            data = f.read()
        expect(b"Subject: keep" in data and b"\r" not in data, "delivered with LF ends", srv)
        expect(data.startswith(b"Return-Path: <alice@example.org>\nReceived: from "),
               "trace headers: %r" % data[:200], srv)
        expect(("id %s" % ids["keep"]).encode() in data, "Received names the queue ID", srv)
        sktest.wait_for(lambda: srv.queue_list() == [], what="an empty queue")
        expect(len(srv.maildir("localhost", "bob")) == 1, "the deleted one never arrived", srv)
        rc = srv.stop()
        expect(rc == 0, "serve exited %r" % rc, srv)
    print("ok")
finally:
    tmp.cleanup()
