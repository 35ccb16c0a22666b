#!/usr/bin/python3
"""`smtpkit serve --http`: the HTTP API end to end. Keys made with `smtpkit
apikey` (scopes, revocation, none), messages composed and raw delivered
byte-correct to a Maildir and to a relay peer, batch substitutions, every
error status (400 naming the field, 401, 403, 404, 405, 413, 429 for a full
queue and for failed keys, 503 for a full disk when root may mount a tmpfs),
idempotency across a restart, tracking, suppressions and queue operations,
and a silent client cut off."""

import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402
from serve_peer import HOST, Serve, as_stored, expect, stored_body  # noqa: E402
from http_client import call, make_key  # noqa: E402

tmp = sktest.TempDir("sk-http-")


def expect_error(got, status, field, srv, what):
    st, doc, _ = got
    expect(st == status, "%s: status %d, expected %d: %r" % (what, st, status, doc), srv)
    if status >= 400 and isinstance(doc, dict):
        err = doc.get("error", {})
        expect(set(err) == {"code", "message", "field"}, "%s: error shape %r" % (what, doc), srv)
        expect(err.get("field") == field, "%s: field %r, expected %r" % (what, err.get("field"),
                                                                         field), srv)


RAW = ("From: Alice <alice@example.org>\r\nTo: bob@localhost\r\nSubject: raw one\r\n"
       "Message-ID: <raw1@example.org>\r\n\r\nLine one\r\n.dot line\r\n")

try:
    data = tmp.join("data")
    admin = make_key(data, "admin", "admin")["key"]
    sender = make_key(data, "sender", "send")["key"]
    reader = make_key(data, "reader", "read")["key"]
    gone = make_key(data, "gone", "send")
    r = sktest.smtpkit("apikey", "--data-dir", data, "revoke", gone["id"])
    expect(r.returncode == 0, "apikey revoke: %s" % r.stderr)
    r = sktest.smtpkit("apikey", "--data-dir", data, "list", "--json")
    listed = json.loads(r.stdout)
    expect(len(listed) == 4 and all("key" not in k for k in listed), "list: %r" % listed)
    with open(os.path.join(data, "apikeys")) as f:
        expect(admin not in f.read(), "only the key's hash is stored")
    r = sktest.smtpkit("apikey", "--data-dir", data, "create", "--name", "x", "--scope", "root")
    expect(r.returncode == 64 and "--scope" in r.stderr, "bad scope: %d %s" % (r.returncode,
                                                                             r.stderr))

    with Peer() as relay:
        hport = sktest.free_port(HOST)
        srv = Serve(tmp, data_dir=data, args=[
            "--local-domain", "localhost", "--relay-host", "%s:%d" % (HOST, relay.port),
            "--http", "%s:%d" % (HOST, hport), "--http-max-request-size", "64K",
            "--http-request-timeout", "2s"])
        with srv:
            # Health needs no key.
            st, doc, _ = call(hport, "GET", "/v1/health")
            expect(st == 200 and doc == {"status": "ok", "spool": "ok", "tracking": "ok"},
                   "health: %d %r" % (st, doc), srv)

            # A composed message, delivered to the Maildir.
            st, doc, _ = call(hport, "POST", "/v1/messages", {
                "from": "Zoë <zoe@example.org>", "to": ["Bob <bob@localhost>"],
                "subject": "Grüße", "text": "Hello\n", "html": "<p>Hello</p>",
                "headers": {"X-Campaign": "c1"}, "priority": 2,
                "attachments": [{"filename": "a.txt", "content_type": "text/plain",
                                 "content": "aGVsbG8gYXR0YWNobWVudA=="}]}, key=sender)
            expect(st == 202, "compose: %d %r" % (st, doc), srv)
            mid = doc["messages"][0]["id"]
            msgid = doc["messages"][0]["message_id"]
            expect(doc["messages"][0]["recipients"] == ["bob@localhost"], "recipients %r" % doc)
            files = srv.wait_maildir("localhost", "bob", 1)
            body = stored_body(files[0])
            for want in (b"From: =?UTF-8?", b"X-Campaign: c1", b"multipart/alternative",
                         b"aGVsbG8gYXR0YWNobWVudA==", b"filename=\"a.txt\""):
                expect(want in body, "composed message lacks %r:\n%r" % (want, body[:1500]), srv)

            # A raw message, byte for byte to the Maildir and to the relay peer.
            st, doc, _ = call(hport, "POST", "/v1/messages/raw", {"message": RAW}, key=sender)
            expect(st == 202, "raw: %d %r" % (st, doc), srv)
            files = srv.wait_maildir("localhost", "bob", 2)
            expect(as_stored(RAW) in [stored_body(p) for p in files],
                   "raw message not byte-correct in the Maildir", srv)
            st, doc, _ = call(hport, "POST", "/v1/messages/raw", {
                "envelope": {"from": "alice@example.org", "to": ["x@remote.example"]},
                "message": RAW}, key=admin)
            expect(st == 202, "raw relay: %d %r" % (st, doc), srv)
            sktest.wait_for(lambda: len(relay.messages) >= 1, timeout=20, what="relayed message")
            got = relay.messages[0]
            expect(got["mail_from"] == "alice@example.org" and
                   got["rcpt_tos"] == ["x@remote.example"], "relay envelope %r" % got, srv)
            d = got["data"]
            end = d.index(b"\r\n")
            while d[end + 2:end + 3] in (b" ", b"\t"):
                end = d.index(b"\r\n", end + 2)
            expect(d[end + 2:] == RAW.encode(), "relayed bytes differ: %r" % d[:400], srv)

            # Batch: one message per recipient, substitutions HTML-escaped in html.
            st, doc, _ = call(hport, "POST", "/v1/messages", {
                "from": "news@example.org", "subject": "Hi {{name}}",
                "text": "Dear {{name}}", "html": "<b>{{name}}</b>",
                "recipients": [
                    {"to": "carol@localhost", "substitutions": {"name": "Carol & <Co>"}},
                    {"to": "dave@localhost", "substitutions": {"name": "Dave"}}]}, key=sender)
            expect(st == 202 and len(doc["messages"]) == 2, "batch: %d %r" % (st, doc), srv)
            carol = stored_body(srv.wait_maildir("localhost", "carol", 1)[0])
            expect(b"Subject: Hi Carol & <Co>" in carol and b"Carol &amp; &lt;Co&gt;" in carol,
                   "substitutions: %r" % carol[:1200], srv)
            expect(b"Dave" in stored_body(srv.wait_maildir("localhost", "dave", 1)[0]), "dave")
            expect_error(call(hport, "POST", "/v1/messages", {
                "from": "n@example.org", "text": "{{nope}}",
                "recipients": [{"to": "carol@localhost"}]}, key=sender), 400,
                "recipients[0].substitutions", srv, "unknown substitution")

            # 400 naming the field; bad JSON; unknown fields.
            expect_error(call(hport, "POST", "/v1/messages", {
                "from": "a@example.org", "to": ["ok@localhost", "bob"]}, key=sender),
                400, "to[1]", srv, "bad address")
            expect_error(call(hport, "POST", "/v1/messages", {"to": ["b@localhost"]},
                              key=sender), 400, "from", srv, "no from")
            expect_error(call(hport, "POST", "/v1/messages", {"from": "a@example.org",
                                                              "to": ["b@localhost"],
                                                              "colour": "red"}, key=sender),
                         400, "colour", srv, "unknown field")
            expect_error(call(hport, "POST", "/v1/messages", raw=b"{not json", key=sender), 400,
                         None, srv, "bad JSON")
            expect_error(call(hport, "POST", "/v1/messages", {
                "from": "a@example.org", "to": ["b@localhost"],
                "attachments": [{"filename": "x", "content": "!!"}]}, key=sender), 400,
                "attachments[0].content", srv, "bad base64")
            expect_error(call(hport, "POST", "/v1/messages/raw", {
                "message": RAW, "envelope": {"from": "a@example.org", "to": ["nope"]}},
                key=sender), 400, "envelope.to[0]", srv, "bad envelope")

            # 401, 403, 404, 405, 413.
            expect_error(call(hport, "GET", "/v1/stats"), 401, None, srv, "no key")
            expect_error(call(hport, "POST", "/v1/messages", {}, key=gone["key"]), 401, None,
                         srv, "revoked key")
            expect_error(call(hport, "GET", "/v1/stats", key=sender), 403, None, srv,
                         "send key reading")
            expect_error(call(hport, "POST", "/v1/messages/raw", {"message": RAW}, key=reader),
                         403, None, srv, "read key sending")
            expect_error(call(hport, "DELETE", "/v1/suppressions/a@b.example", key=reader), 403,
                         None, srv, "read key changing")
            expect_error(call(hport, "GET", "/v1/nothing", key=admin), 404, None, srv, "route")
            expect_error(call(hport, "PUT", "/v1/messages", key=admin, raw=b"{}"), 405, None,
                         srv, "method")
            big = {"message": RAW + "x" * (70 * 1024)}
            st, _, _ = call(hport, "POST", "/v1/messages/raw", big, key=sender)
            expect(st == 413, "oversized request: %d" % st, srv)
            expect("skk_" not in srv.log(), "a key in the log", srv)

            # Tracking, stats.
            st, doc, _ = call(hport, "GET", "/v1/messages/" + mid, key=reader)
            expect(st == 200 and doc["id"] == mid and
                   any(e["event"] == "delivered" for e in doc["events"]),
                   "message status: %d %r" % (st, doc), srv)
            # The Message-ID as the 202 gave it, without angle brackets, as
            # the events show it.
            expect(msgid and "<" not in msgid and doc["message_id"] == msgid,
                   "message_id %r in the 202, %r in the status" % (msgid, doc["message_id"]), srv)
            expect_error(call(hport, "GET", "/v1/messages/00000000000000ZZ", key=reader), 404,
                         "id", srv, "unknown message")
            st, doc, _ = call(hport, "GET", "/v1/stats", key=reader)
            expect(st == 200 and doc["day"]["events"]["received"] >= 5, "stats %r" % doc, srv)

            # Suppressions: put, get, list, refused at send time, delete.
            st, doc, _ = call(hport, "PUT", "/v1/suppressions/Sup@Example.ORG",
                              {"reason": "asked"}, key=admin)
            expect(st == 200 and doc["address"] == "Sup@example.org" and doc["reason"] == "asked",
                   "put suppression: %d %r" % (st, doc), srv)
            st, doc, _ = call(hport, "GET", "/v1/suppressions/Sup@example.org", key=reader)
            expect(st == 200, "get suppression: %d %r" % (st, doc), srv)
            st, doc, _ = call(hport, "GET", "/v1/suppressions", key=reader)
            expect(st == 200 and [s["address"] for s in doc["suppressions"]] == ["Sup@example.org"],
                   "list: %r" % doc, srv)
            expect_error(call(hport, "PUT", "/v1/suppressions/x@y.example", {"until": "soon"},
                              key=admin), 400, "until", srv, "bad until")
            st, _, _ = call(hport, "DELETE", "/v1/suppressions/Sup@example.org", key=admin)
            expect(st == 204, "delete suppression: %d" % st, srv)
            expect_error(call(hport, "GET", "/v1/suppressions/Sup@example.org", key=reader), 404,
                         "address", srv, "deleted suppression")

            # Idempotency: the same key gives the first answer, one message.
            req = {"from": "a@example.org", "to": ["idem@localhost"], "text": "once\n"}
            hdr = {"Idempotency-Key": "order-42"}
            st1, doc1, _ = call(hport, "POST", "/v1/messages", req, key=sender, headers=hdr)
            st2, doc2, r2 = call(hport, "POST", "/v1/messages", req, key=sender, headers=hdr)
            expect(st1 == 202 and st2 == 202 and doc1 == doc2 and
                   r2.getheader("Idempotent-Replayed") == "true",
                   "replayed answer: %r %r" % (doc1, doc2), srv)
            srv.wait_maildir("localhost", "idem", 1)

            # A client that goes silent is cut off (--http-request-timeout 2s).
            s = socket.create_connection((HOST, hport), timeout=10)
            s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            t0 = time.monotonic()
            try:
                left = s.recv(100)
            except OSError:
                left = b""
            waited = time.monotonic() - t0
            s.close()
            expect(waited < 8 and not left.startswith(b"HTTP/1.1 2"),
                   "slow request: %r after %.1fs" % (left, waited), srv)

        # After a restart the idempotency key still answers the same.
        with srv:
            st3, doc3, r3 = call(hport, "POST", "/v1/messages", req, key=sender, headers=hdr)
            expect(st3 == 202 and doc3 == doc1 and r3.getheader("Idempotent-Replayed") == "true",
                   "after restart: %d %r" % (st3, doc3), srv)
            time.sleep(0.5)
            expect(len(srv.maildir("localhost", "idem")) == 1, "queued twice", srv)

            # Failed keys are throttled per address (429, Retry-After).
            for _ in range(5):
                call(hport, "GET", "/v1/stats", key="skk_000000000000_" + "0" * 64)
            st, doc, r = call(hport, "GET", "/v1/stats", key=reader)
            expect(st == 429 and r.getheader("Retry-After"), "throttle: %d %r" % (st, doc), srv)

    # 429 when the queue is over its limit; the queue operations.
    hold_data = tmp.join("hold")
    hkey = make_key(hold_data, "h", "admin")["key"]
    hport = sktest.free_port(HOST)
    srv = Serve(tmp, name="hold", data_dir=hold_data, args=[
        "--hold", "--local-domain", "localhost", "--http", "%s:%d" % (HOST, hport),
        "--http-queue-limit", "1"])
    with srv:
        msg = {"from": "a@example.org", "to": ["held@localhost"], "text": "held\n"}
        st, doc, _ = call(hport, "POST", "/v1/messages", msg, key=hkey)
        expect(st == 202, "first held: %d %r" % (st, doc), srv)
        qid = doc["messages"][0]["id"]
        sktest.wait_for(lambda: len(srv.queue_list()) >= 1, what="held message queued")
        st, doc, r = call(hport, "POST", "/v1/messages", msg, key=hkey)
        expect(st == 429 and r.getheader("Retry-After") == "30" and
               doc["error"]["code"] == "queue_full", "queue full: %d %r" % (st, doc), srv)
        expect_error(call(hport, "POST", "/v1/queue/NOTANID/release", key=hkey), 400, "id", srv,
                     "bad queue id")
        st, doc, _ = call(hport, "POST", "/v1/queue/%s/release" % qid, key=hkey)
        expect(st == 200 and doc["changed"] is True, "release: %d %r" % (st, doc), srv)
        srv.wait_maildir("localhost", "held", 1)
        # The Maildir file is written on the transport's thread; the queue
        # lets the message go when the loop takes that result, just after.
        sktest.wait_for(lambda: not any(m["id"] == qid for m in srv.queue_list()),
                        what="%s to leave the queue" % qid)
        expect_error(call(hport, "DELETE", "/v1/queue/" + qid, key=hkey), 404, "id", srv,
                     "gone from the queue")

    # 503 on a full disk, nothing queued (root only: a tiny tmpfs).
    if os.geteuid() == 0:
        mnt = tmp.join("small")
        os.makedirs(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt],
                           capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            try:
                fdata = os.path.join(mnt, "data")
                fkey = make_key(fdata, "f", "send")["key"]
                fport = sktest.free_port(HOST)
                srv = Serve(tmp, name="full", data_dir=fdata, args=[
                    "--hold", "--local-domain", "localhost", "--http", "%s:%d" % (HOST, fport)])
                with srv:
                    big = RAW + ("x" * 998 + "\r\n") * 400
                    st, doc, r = call(fport, "POST", "/v1/messages/raw", {"message": big},
                                      key=fkey)
                    expect(st == 503 and r.getheader("Retry-After") and
                           doc["error"]["code"] == "insufficient_storage",
                           "full disk: %d %r" % (st, doc), srv)
                    expect(srv.queue_list() == [], "something was queued", srv)
                    st, doc, _ = call(fport, "POST", "/v1/messages/raw", {"message": RAW},
                                      key=fkey)
                    expect(st == 202, "a message that fits: %d %r" % (st, doc), srv)
            finally:
                subprocess.run(["umount", mnt], timeout=30)
        else:
            print("note: no tmpfs here, the full-disk case is not run: %s" % r.stderr.strip())
    print("ok")
finally:
    tmp.cleanup()
