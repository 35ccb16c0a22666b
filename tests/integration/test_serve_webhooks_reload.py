#!/usr/bin/python3
"""Webhook endpoints follow the configuration file on SIGHUP
(docs/webhooks.md): a changed secret signs the next events, an added
endpoint gets the events it names, a removed one gets nothing more and is
gone from `smtpkit stats`; a bad endpoint in the new file is refused and
the running ones stay. Each receiver checks the signatures with the
secret the configuration gives it at that moment."""

import base64
import json
import os
import signal
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402

SECRET_A1 = "whsec_" + base64.b64encode(bytes(range(32))).decode()
SECRET_A2 = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
SECRET_B = "whsec_" + base64.b64encode(bytes(range(50, 90))).decode()


def stats(data_dir):
    r = sktest.smtpkit("stats", "--data-dir", data_dir, "--json", timeout=30)
    expect(r.returncode == 0, "stats --json: %d %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)


def write_config(path, hooks):
    with open(path, "w") as f:
        f.write("hostname = mx.local.test\nlocal-domain = local.test\n")
        for h in hooks:
            f.write("webhook = %s\n" % h)


def send(srv, n):
    with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
        s.ehlo("client.test")
        msg = "From: <a@client.test>\r\nTo: <u@local.test>\r\nSubject: m%d\r\n\r\nHello\r\n" % n
        s.sendmail("a@client.test", ["u@local.test"], msg)


def events(rcv):
    return sorted((b["data"]["event"], b["data"]["queue_id"]) for _, b in rcv.unique())


def reload(srv, count):
    """SIGHUP, then wait for the sender's count-th "configured" line."""
    srv.proc.send_signal(signal.SIGHUP)
    sktest.wait_for(lambda: srv.log().count("webhook configured") >= count, timeout=20,
                    what="reload %d applied\n%s" % (count, srv.log()[-2000:]))


tmp = sktest.TempDir("sk-serve-webhooks-reload-")
ra = rb = None
try:
    url_a = "http://%s:%d/a" % (HOST, sktest.free_port())
    url_b = "http://%s:%d/b" % (HOST, sktest.free_port())
    ra = Receiver(int(url_a.split(":")[2].split("/")[0]), SECRET_A1).start()
    rb = Receiver(int(url_b.split(":")[2].split("/")[0]), SECRET_B).start()
    conf = tmp.join("smtpkit.conf")
    write_config(conf, ["%s %s" % (url_a, SECRET_A1)])
    srv = Serve(tmp, args=["--config", conf])
    srv.start()
    ids = []

    def delivered(rcv, qid_count):
        return lambda: len([e for e in events(rcv) if e[0] == "delivered"]) >= qid_count

    # 1: A alone, with its first secret.
    send(srv, 1)
    sktest.wait_for(delivered(ra, 1), timeout=30, what="A: message 1\n" + srv.log()[-2000:])
    expect(len(events(ra)) == 3 and not ra.bad, "A got 3 events of message 1: %r" % events(ra))

    # 2: A's secret changed, B added for delivered events only.
    ra.secret = SECRET_A2
    write_config(conf, ["%s %s" % (url_a, SECRET_A2), "%s %s delivered" % (url_b, SECRET_B)])
    reload(srv, 2)
    send(srv, 2)
    sktest.wait_for(delivered(ra, 2), timeout=30, what="A: message 2\n" + srv.log()[-2000:])
    sktest.wait_for(delivered(rb, 1), timeout=30, what="B: message 2\n" + srv.log()[-2000:])
    expect(not ra.bad, "A's events after the reload signed with the new secret: %r" % ra.bad[:2])
    expect(len(events(ra)) == 6, "A: 6 events: %r" % events(ra))
    expect([e[0] for e in events(rb)] == ["delivered"] and not rb.bad,
           "B: the delivered event of message 2 only: %r" % events(rb))
    urls = [h["url"] for h in stats(srv.data_dir)["webhooks"]]
    expect(urls == [url_a, url_b], "stats: both endpoints: %r" % urls)

    # 3: A removed; B stays.
    write_config(conf, ["%s %s delivered" % (url_b, SECRET_B)])
    reload(srv, 3)
    send(srv, 3)
    sktest.wait_for(delivered(rb, 2), timeout=30, what="B: message 3\n" + srv.log()[-2000:])
    time.sleep(0.5)
    expect(len(events(ra)) == 6, "A removed: nothing more: %r" % events(ra))
    urls = [h["url"] for h in stats(srv.data_dir)["webhooks"]]
    expect(urls == [url_b], "stats: B alone: %r" % urls)

    # 4: a bad endpoint in the file: refused, B goes on.
    write_config(conf, ["%s %s delivered" % (url_b, SECRET_B), "ftp://x.test/ whsec_AAAA"])
    srv.proc.send_signal(signal.SIGHUP)
    sktest.wait_for(lambda: "reload-failed" in srv.log(), timeout=20,
                    what="a failed reload\n" + srv.log()[-2000:])
    send(srv, 4)
    sktest.wait_for(delivered(rb, 3), timeout=30, what="B: message 4\n" + srv.log()[-2000:])
    expect(SECRET_B not in srv.log() and SECRET_A2 not in srv.log(), "no secret in the log")
    srv.stop()
finally:
    for r in (ra, rb):
        if r:
            r.stop()
    tmp.cleanup()
print("ok")
