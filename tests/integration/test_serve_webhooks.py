#!/usr/bin/python3
"""Webhooks of `smtpkit serve` (docs/webhooks.md): 200 messages delivered
to a Maildir while the receiver is down (the events wait in the outbox and
are retried with backoff); then the receiver comes up, slow, and the
server is killed with SIGKILL in the middle of sending; restarted, it sends
the rest. The receiver checks every Standard Webhooks signature with its
own HMAC code; after dedupe by webhook-id it has every tracked event of
the 200 messages exactly once, in order per message. `smtpkit stats`
shows the endpoint's state, and a bad --webhook is refused (exit 78)."""

import base64
import json
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

MESSAGES = 200
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
ORDER = {"received": 0, "queued": 1, "delivered": 2}


def stats(data_dir):
    r = sktest.smtpkit("stats", "--data-dir", data_dir, "--json", timeout=30)
    expect(r.returncode == 0, "stats --json: %d %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)


tmp = sktest.TempDir("sk-serve-webhooks-")
rcv = None
try:
    # A bad endpoint is a configuration error that names it.
    r = sktest.smtpkit("serve", "--data-dir", tmp.join("bad"), "--listen", "127.0.0.1:%d" % sktest.free_port(),
                       "--webhook", "ftp://x.test/ whsec_AAAA", timeout=30)
    expect(r.returncode in (64, 78) and "webhook" in r.stderr,
           "bad --webhook refused: %d %s" % (r.returncode, r.stderr))

    hook_port = sktest.free_port()
    url = "http://%s:%d/hook" % (HOST, hook_port)
    args = ["--hostname", "mx.local.test", "--local-domain", "local.test",
            "--webhook", "%s %s received,queued,delivered" % (url, SECRET)]
    srv = Serve(tmp, args=args)
    srv.start()
    ids = []
    with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
        s.ehlo("client.test")
        for i in range(MESSAGES):
            msg = ("From: <a@client.test>\r\nTo: <u%d@local.test>\r\nSubject: m%d\r\n\r\n"
                   "Hello %d\r\n" % (i % 7, i, i))
            s.sendmail("a@client.test", ["u%d@local.test" % (i % 7)], msg)
    # Every message delivered and tracked; the receiver is still down.
    sktest.wait_for(lambda: stats(srv.data_dir)["last_hour"]["by_outcome"]["delivered"] >=
                    MESSAGES, timeout=60, what="200 deliveries tracked")
    sktest.wait_for(lambda: "webhook failed" in srv.log(), timeout=20,
                    what="a failed webhook attempt\n" + srv.log()[-2000:])
    hooks = stats(srv.data_dir).get("webhooks", [])
    expect(len(hooks) == 1 and hooks[0]["url"] == url and hooks[0]["backlog"] == 3 * MESSAGES and
           hooks[0]["failing_since"] and hooks[0]["last_error"],
           "stats shows the failing endpoint: %r" % hooks, srv)
    text = sktest.smtpkit("stats", "--data-dir", srv.data_dir, timeout=30).stdout
    expect(url in text and "failing" in text, "stats table names the endpoint:\n" + text)

    # Up, and slow: the server is killed while it is sending.
    rcv = Receiver(hook_port, SECRET, delay=0.05).start()
    sktest.wait_for(lambda: len(rcv.got) >= 100, timeout=60,
                    what="100 events received\n" + srv.log()[-2000:])
    srv.kill9()
    before = len(rcv.got)
    expect(before < 3 * MESSAGES, "killed mid-delivery (%d received)" % before)
    rcv.delay = 0
    srv = Serve(tmp, args=args, data_dir=srv.data_dir, name="serve2")
    srv.start()
    sktest.wait_for(lambda: len(rcv.unique()) >= 3 * MESSAGES, timeout=90,
                    what="every event (%d of %d)\n%s" % (len(rcv.unique()), 3 * MESSAGES,
                                                         srv.log()[-2000:]))
    time.sleep(1)
    expect(not rcv.bad, "every signature verified: %r" % rcv.bad[:3])
    got = rcv.unique()
    expect(len(got) == 3 * MESSAGES, "exactly the events, once: %d" % len(got))
    per_msg = {}
    for wid, body in got:
        expect(body["type"] == "message." + body["data"]["event"], "type: %r" % body)
        per_msg.setdefault(body["data"]["queue_id"], []).append(body["data"]["event"])
    expect(len(per_msg) == MESSAGES, "%d messages" % len(per_msg))
    for qid, evs in per_msg.items():
        expect(evs == ["received", "queued", "delivered"],
               "in order, each once, for %s: %r" % (qid, evs))
    # The same events as the tracking store's, for a sample of messages.
    for qid in list(per_msg)[:20]:
        r = sktest.smtpkit("track", "--data-dir", srv.data_dir, qid, "--json", timeout=30)
        kinds = [e["event"] for e in json.loads(r.stdout)["events"]]
        expect(kinds == per_msg[qid], "track %s: %r vs %r" % (qid, kinds, per_msg[qid]))
    sktest.wait_for(lambda: stats(srv.data_dir)["webhooks"][0]["backlog"] == 0, timeout=20,
                    what="an empty outbox")
    h = stats(srv.data_dir)["webhooks"][0]
    expect(h["delivered"] >= 3 * MESSAGES and h["failing_since"] is None,
           "the endpoint's state after: %r" % h)
    print("duplicates after the kill:", len(rcv.got) - len(got))
    srv.stop()
finally:
    if rcv:
        rcv.stop()
    tmp.cleanup()
print("ok")
