#!/usr/bin/python3
"""`smtpkit serve --http`: the routes that run the server. GET /metrics passes
`promtool check metrics` and its counters equal the tracking store's after a
run (and it needs a read key unless --http-metrics-public); a webhook added
with POST /v1/webhooks receives the events of a message sent afterwards, with
its tags and metadata, shows its state in GET /v1/webhooks and goes with
DELETE; GET /v1/events filters by type, recipient, tag and time and pages
with a cursor that stays right while events are added; GET /v1/stats by tag;
GET /v1/queue per destination; POST /v1/queue/{id}/hold."""

import http.server
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402
from http_client import call, make_key  # noqa: E402

tmp = sktest.TempDir("sk-httpops-")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver(http.server.BaseHTTPRequestHandler):
    got = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Receiver.lock:
            Receiver.got.append((self.headers.get("webhook-id"), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


try:
    data = tmp.join("data")
    admin = make_key(data, "admin", "admin")["key"]
    reader = make_key(data, "reader", "read")["key"]
    sender = make_key(data, "sender", "send")["key"]
    recv = http.server.ThreadingHTTPServer((HOST, 0), Receiver)
    threading.Thread(target=recv.serve_forever, daemon=True).start()
    hook_url = "http://%s:%d/hook" % (HOST, recv.server_address[1])
    hport = sktest.free_port(HOST)
    srv = Serve(tmp, data_dir=data, args=["--local-domain", "localhost",
                                          "--http", "%s:%d" % (HOST, hport),
                                          "--http-request-timeout", "2s",
                                          "--http-max-connections", "4"])
    with srv:
        # A request dripping a byte every 0.4 s is cut off (408) at its deadline,
        # though the connection is never silent for the idle timeout.
        s = socket.create_connection((HOST, hport), timeout=10)
        req = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n" + b"x" * 50
        t0, got = time.monotonic(), b""
        for i in range(len(req)):
            try:
                s.sendall(req[i:i + 1])
            except OSError:
                break
            time.sleep(0.4)
            s.setblocking(False)
            try:
                got += s.recv(4096)
            except (BlockingIOError, OSError):
                pass
            s.setblocking(True)
            if got:
                break
        waited = time.monotonic() - t0
        s.close()
        expect(got.startswith(b"HTTP/1.1 408") and b'"code":"timeout"' in got and waited < 5,
               "dripping request: %r after %.1fs" % (got[:200], waited), srv)
        # Four connections open; a fifth is answered 503 and closed.
        held = [socket.create_connection((HOST, hport), timeout=10) for _ in range(4)]
        time.sleep(0.3)
        extra = socket.create_connection((HOST, hport), timeout=10)
        ans = b""
        try:
            while True:
                b = extra.recv(4096)
                if not b:
                    break
                ans += b
        except OSError:
            pass
        extra.close()
        expect(ans.startswith(b"HTTP/1.1 503") and b'"code":"busy"' in ans,
               "over the connection cap: %r" % ans[:200], srv)
        for x in held:
            x.close()
        time.sleep(0.3)
        st, doc, _ = call(hport, "GET", "/v1/health")
        expect(st == 200, "after the cap: %d" % st, srv)

        # Webhooks: added, listed with their state, refused twice, bad fields named.
        st, doc, _ = call(hport, "POST", "/v1/webhooks", {"url": hook_url, "secret": SECRET,
                                                          "events": ["received", "delivered"]},
                          key=admin)
        expect(st == 201 and doc["url"] == hook_url and doc["events"] == ["received", "delivered"]
               and doc["source"] == "api", "add webhook: %d %r" % (st, doc), srv)
        hook_id = doc["id"]
        st, doc, _ = call(hport, "POST", "/v1/webhooks", {"url": hook_url, "secret": SECRET},
                          key=admin)
        expect(st == 409, "the same webhook twice: %d %r" % (st, doc), srv)
        st, doc, _ = call(hport, "POST", "/v1/webhooks", {"url": hook_url + "2",
                                                          "secret": "whsec_short"}, key=admin)
        expect(st == 400 and doc["error"]["field"] == "secret" and "whsec_short" not in
               json.dumps(doc), "bad secret: %d %r" % (st, doc), srv)
        st, doc, _ = call(hport, "POST", "/v1/webhooks", {"url": hook_url, "secret": SECRET},
                          key=reader)
        expect(st == 403, "a read key adding a webhook: %d" % st, srv)

        # Messages with tags and metadata; one without.
        ids = []
        for i in range(3):
            body = {"from": "a@example.org", "to": ["t%d@localhost" % i], "text": "hi\n"}
            if i < 2:
                body["tags"] = ["welcome", "batch-%d" % i]
                body["metadata"] = {"order": str(40 + i)}
            st, doc, _ = call(hport, "POST", "/v1/messages", body, key=sender)
            expect(st == 202, "send %d: %d %r" % (i, st, doc), srv)
            ids.append(doc["messages"][0]["id"])
        st, doc, _ = call(hport, "POST", "/v1/messages", {
            "from": "a@example.org", "to": ["x@localhost"], "tags": ["a\x01b"]}, key=sender)
        expect(st == 400 and doc["error"]["field"] == "tags[0]", "bad tag: %r" % doc, srv)
        st, doc, _ = call(hport, "POST", "/v1/messages", {
            "from": "a@example.org", "to": ["x@localhost"], "metadata": {"k": 1}}, key=sender)
        expect(st == 400 and doc["error"]["field"] == "metadata.k", "bad metadata: %r" % doc, srv)
        for i in range(3):
            srv.wait_maildir("localhost", "t%d" % i, 1)

        # The webhook receives received and delivered of each, with tags and metadata.
        def hooked():
            with Receiver.lock:
                return {(d["data"]["queue_id"], d["data"]["event"]) for _, d in Receiver.got}
        sktest.wait_for(lambda: len(hooked()) >= 6, timeout=30, what="webhook events")
        with Receiver.lock:
            for _, d in Receiver.got:
                qi = ids.index(d["data"]["queue_id"])
                want_tags = ["welcome", "batch-%d" % qi] if qi < 2 else []
                want_md = {"order": str(40 + qi)} if qi < 2 else {}
                expect(d["data"]["tags"] == want_tags and d["data"]["metadata"] == want_md,
                       "webhook tags: %r" % d, srv)
        st, doc, _ = call(hport, "GET", "/v1/webhooks", key=reader)
        expect(st == 200 and len(doc["webhooks"]) == 1 and doc["webhooks"][0]["id"] == hook_id,
               "list webhooks: %d %r" % (st, doc), srv)
        sktest.wait_for(lambda: call(hport, "GET", "/v1/webhooks", key=reader)[1]["webhooks"][0]
                        ["delivered"] >= 6, timeout=20, what="webhook state delivered")

        # Events: filters and pages.
        st, doc, _ = call(hport, "GET", "/v1/events?tag=welcome&type=delivered", key=reader)
        expect(st == 200 and sorted(e["queue_id"] for e in doc["events"]) == sorted(ids[:2]) and
               all(e["tags"][0] == "welcome" for e in doc["events"]), "by tag: %r" % doc, srv)
        st, doc, _ = call(hport, "GET", "/v1/events?recipient=T2@LOCALHOST", key=reader)
        expect(st == 200 and {e["event"] for e in doc["events"]} >= {"delivered"} and
               all(e["recipient"] == "t2@localhost" for e in doc["events"]),
               "by recipient: %r" % doc, srv)
        st, doc, _ = call(hport, "GET", "/v1/events?type=nope", key=reader)
        expect(st == 400 and doc["error"]["field"] == "type", "bad type: %r" % doc, srv)
        st, doc, _ = call(hport, "GET", "/v1/events?until=2000-01-01T00:00:00Z", key=reader)
        expect(st == 200 and doc["events"] == [] and doc["next_cursor"] is None,
               "until: %r" % doc, srv)
        st, doc, _ = call(hport, "GET", "/v1/events?since=2000-01-01T00:00:00%2B02:00&limit=1000",
                          key=reader)
        everything = [e["id"] for e in doc["events"]]
        expect(st == 200 and len(everything) >= 6, "since: %r" % doc, srv)
        # Pages of 2, with a message sent between two pages: nothing twice, nothing lost.
        seen, cursor, sent_between = [], None, False
        while True:
            path = "/v1/events?limit=2" + ("&cursor=" + cursor if cursor else "")
            st, doc, _ = call(hport, "GET", path, key=reader)
            expect(st == 200 and len(doc["events"]) <= 2, "page: %d %r" % (st, doc), srv)
            seen += [e["id"] for e in doc["events"]]
            if not sent_between:
                sent_between = True
                st2, d2, _ = call(hport, "POST", "/v1/messages", {
                    "from": "a@example.org", "to": ["late@localhost"], "text": "x\n",
                    "tags": ["late"]}, key=sender)
                expect(st2 == 202, "late: %r" % d2, srv)
                srv.wait_maildir("localhost", "late", 1)
            cursor = doc["next_cursor"]
            if not cursor:
                break
        expect(len(seen) == len(set(seen)) and seen[:len(everything)] == everything and
               len(seen) > len(everything), "pages: %r vs %r" % (seen, everything), srv)

        # Stats by tag.
        st, doc, _ = call(hport, "GET", "/v1/stats?tag=late", key=reader)
        expect(st == 200 and doc["tag"] == "late" and doc["day"]["events"]["received"] == 1,
               "stats by tag: %r" % doc, srv)

        # /metrics needs a read key here; promtool accepts it; counters equal the store's.
        st, _, _ = call(hport, "GET", "/metrics")
        expect(st == 401, "metrics without a key: %d" % st, srv)
        st, text, r = call(hport, "GET", "/metrics", key=reader)
        expect(st == 200 and r.getheader("Content-Type").startswith("text/plain; version=0.0.4"),
               "metrics: %d %r" % (st, r.getheader("Content-Type")), srv)
        text = text.decode() if isinstance(text, bytes) else text
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        expect(p.returncode == 0, "promtool: %s%s" % (p.stdout, p.stderr), srv)
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "track.db"), uri=True)
        counts = dict(db.execute("SELECT event, count(*) FROM events GROUP BY event").fetchall())
        db.close()
        for name, ev in (("smtpkit_messages_received_total", "received"),
                         ("smtpkit_delivered_total", "delivered")):
            expect(metric(text, name) == counts.get(ev, 0),
                   "%s %s, the store %r" % (name, metric(text, name), counts), srv)

        # The webhook goes; a second delete is 404.
        st, _, _ = call(hport, "DELETE", "/v1/webhooks/" + hook_id, key=admin)
        expect(st == 204, "delete webhook: %d" % st, srv)
        st, doc, _ = call(hport, "DELETE", "/v1/webhooks/" + hook_id, key=admin)
        expect(st == 404 and doc["error"]["field"] == "id", "deleted twice: %d %r" % (st, doc), srv)
        st, doc, _ = call(hport, "GET", "/v1/webhooks", key=reader)
        expect(st == 200 and doc["webhooks"] == [], "after delete: %r" % doc, srv)

    # The queue per destination, hold; /metrics open with --http-metrics-public.
    qdata = tmp.join("q")
    qkey = make_key(qdata, "q", "admin")["key"]
    qport = sktest.free_port(HOST)
    srv = Serve(tmp, name="q", data_dir=qdata, args=[
        "--local-domain", "localhost", "--relay-host", "%s:%d" % (HOST, sktest.free_port(HOST)),
        "--retry-schedule", "1h", "--http", "%s:%d" % (HOST, qport), "--http-metrics-public"])
    with srv:
        st, _, _ = call(qport, "GET", "/metrics")
        expect(st == 200, "public metrics: %d" % st, srv)
        qids = []
        for rc in (["a@remote.example", "b@remote.example"], ["c@other.example"]):
            st, doc, _ = call(qport, "POST", "/v1/messages", {"from": "s@example.org", "to": rc,
                                                              "text": "q\n"}, key=qkey)
            expect(st == 202, "queue send: %d %r" % (st, doc), srv)
            qids.append(doc["messages"][0]["id"])

        def dests():
            return {d["destination"]: d for d in
                    call(qport, "GET", "/v1/queue", key=qkey)[1]["destinations"]}
        # The relay host refuses connections: both are deferred for an hour.
        sktest.wait_for(lambda: all(d["next_attempt"] and d["delivering"] == 0
                                    for d in dests().values()) and len(dests()) == 2,
                        timeout=30, what="deferred destinations")
        d = dests()
        expect(d["remote.example"]["recipients"] == 2 and d["remote.example"]["messages"] == 1 and
               d["other.example"]["recipients"] == 1 and d["remote.example"]["oldest"],
               "destinations: %r" % d, srv)
        st, doc, _ = call(qport, "POST", "/v1/queue/%s/hold" % qids[1], key=qkey)
        expect(st == 200 and doc == {"id": qids[1], "operation": "hold", "changed": True},
               "hold: %d %r" % (st, doc), srv)
        d = dests()
        expect(d["other.example"]["held"] == 1 and d["other.example"]["next_attempt"] is None,
               "held destination: %r" % d, srv)
        held = [m for m in srv.queue_list() if m["id"] == qids[1]]
        expect(held and held[0]["state"] == "hold", "held on disk: %r" % held, srv)
        st, doc, _ = call(qport, "POST", "/v1/queue/%s/hold" % qids[1], key=qkey)
        expect(st == 200 and doc["changed"] is False, "hold twice: %r" % doc, srv)
    print("ok")
finally:
    tmp.cleanup()
