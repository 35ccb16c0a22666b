"""Helpers for the end-to-end delivery tests: `smtpkit serve` delivering by
MX (DNS from dns_server.py on loopback) to scripted aiosmtpd MX hosts on
127.0.0.x addresses that share one port, and readers of what the server
tracked (`smtpkit track`, `queue list`, `suppress list`).

Every process is started here or by the test and stopped by PID; every wait
is bounded.
"""

import email
import email.policy
import json
import os
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve  # noqa: E402

from aiosmtpd_peer import Peer, PeerHandler, _Controller  # noqa: E402,F401

# The local domain of every test server: senders there receive their DSNs
# in DATA-DIR/mailboxes/local.test/LOCALPART/new.
LOCAL = "local.test"


# The aiosmtpd handler and controller under the names tests import from here.
Handler = PeerHandler


def MX(host, port, name="mx.test", rcpt_script=None, data_script=None, smtputf8=False, **kw):
    """A scripted MX host on host:port (aiosmtpd_peer.Peer, SMTPUTF8
    announced only when smtputf8). rcpt_script maps a recipient (or "@domain" for every
    recipient there) to a list of replies given to its successive RCPT
    commands; None in the list, or the list running out, accepts.
    data_script does the same for the reply after DATA, keyed by the
    message's first recipient. A 421 reply closes the connection."""
    return Peer(host=host, port=port, name=name, smtputf8=smtputf8, rcpt_replies=rcpt_script,
                data_replies=data_script, **kw)


SMTP_SOURCE = "/usr/sbin/smtp-source"


def source(srv, count, sender, rcpt, sessions=10):
    """Start Postfix's smtp-source: count messages from sender to rcpt over
    sessions parallel sessions; returns the sktest.Proc (wait on it)."""
    return sktest.Proc([SMTP_SOURCE, "-s", sessions, "-m", count, "-l", 512, "-f", sender,
                        "-t", rcpt, "-M", "client.test", "%s:%d" % (HOST, srv.port)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc, timeout, what, srv=None):
    """Wait for a process started by source(); it must exit 0."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        expect(False, "%s did not finish in %ds" % (what, timeout), srv)
    err = proc.p.stderr.read().decode(errors="replace") if proc.p.stderr else ""
    expect(rc == 0, "%s exited %d: %s" % (what, rc, err[-2000:]), srv)


def rules_file(tmp, first=(), drop=()):
    """A --rules file: the built-in rules (etc/smtpkit-rules.conf) with the
    lines in first put before them and the lines in drop taken out."""
    with open(os.path.join(sktest.SOURCE_DIR, "etc", "smtpkit-rules.conf")) as f:
        lines = [ln.rstrip("\n") for ln in f]
    for d in drop:
        expect(d in lines, "rule %r not in the built-in set" % d)
    lines = list(first) + [ln for ln in lines if ln not in drop]
    path = tmp.join("rules.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def serve(tmp, dns, mx_port, *args, name="serve", retry="1s,2s", lifetime="60s",
          data_dir=None):
    """A `smtpkit serve` (not started) that delivers by MX through dns."""
    argv = ["--hostname", "relay.test", "--local-domain", LOCAL, "--dns-server", dns.address,
            "--mx-port", str(mx_port), "--retry-schedule", retry,
            "--max-queue-lifetime", lifetime] + [str(a) for a in args]
    return Serve(tmp, args=argv, name=name, data_dir=data_dir)


def submit(srv, sender, rcpts, subject="test", mail_options=(), body="Hello.\r\n",
           extra_headers=""):
    """Send one message through SMTP; returns its queue ID (from the 250)."""
    if isinstance(rcpts, str):
        rcpts = [rcpts]
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s.%f@client.test>\r\n%s"
           "\r\n%s" % (sender or "mailer-daemon@client.test", rcpts[0], subject,
                       subject.replace(" ", "-"), time.time(), extra_headers, body))
    with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
        return send_on(s, sender, rcpts, msg, mail_options)


def send_on(s, sender, rcpts, msg, mail_options=()):
    """One transaction on an open smtplib session; returns the queue ID."""
    if s.helo_resp is None and s.ehlo_resp is None:
        s.ehlo("client.test")
    code, resp = s.mail(sender, list(mail_options))
    expect(code == 250, "MAIL FROM:<%s>: %d %r" % (sender, code, resp))
    for r in rcpts:
        code, resp = s.rcpt(r)
        expect(code == 250, "RCPT TO:<%s>: %d %r" % (r, code, resp))
    code, resp = s.data(msg.encode() if isinstance(msg, str) else msg)
    expect(code == 250, "DATA: %d %r" % (code, resp))
    text = resp.decode()
    expect("queued as " in text, "no queue ID in %r" % text)
    return text.rsplit("queued as ", 1)[1].split()[0]


# The shared assertion helper, re-exported for the tests that import it from here.
expect = sktest.expect


def wait(pred, timeout, what, srv=None):
    try:
        return sktest.wait_for(pred, timeout=timeout, interval=0.1, what=what)
    except TimeoutError as e:
        expect(False, str(e), srv)


def track(data_dir, qid):
    """`smtpkit track ID --json`: the object, or None when nothing is known."""
    r = sktest.smtpkit("track", "--data-dir", data_dir, qid, "--json", timeout=30)
    if r.returncode in (66, 69):
        return None
    if r.returncode != 0:
        sktest.fail("smtpkit track %s: exit %d: %s" % (qid, r.returncode, r.stderr))
    return json.loads(r.stdout)


def events(data_dir, qid, kind=None):
    t = track(data_dir, qid)
    evs = t["events"] if t else []
    return [e for e in evs if kind is None or e["event"] == kind]


def wait_event(srv, qid, kind, count=1, timeout=30):
    """Wait for count `kind` events of qid in the tracking store."""
    return wait(lambda: len(events(srv.data_dir, qid, kind)) >= count and
                events(srv.data_dir, qid, kind), timeout,
                "%d %s event(s) for %s (have %r)" % (count, kind, qid,
                                                      events(srv.data_dir, qid)), srv)


def queue_entry(srv, qid):
    for m in srv.queue_list():
        if m["id"] == qid:
            return m
    return None


def suppress_list(data_dir):
    r = sktest.smtpkit("suppress", "--data-dir", data_dir, "list", "--json", timeout=30)
    if r.returncode != 0:
        sktest.fail("smtpkit suppress list: exit %d: %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)


def dsns(srv, local):
    """DSNs in the Maildir of local@LOCAL, parsed (policy=default)."""
    out = []
    for path in srv.maildir(LOCAL, local):
        with open(path, "rb") as f:
            out.append(email.message_from_bytes(f.read(), policy=email.policy.default))
    return out


def delivery_status(msg):
    """Check msg is an RFC 3464 report; return its per-recipient field
    blocks as dicts (lower-case names)."""
    expect(msg.get_content_type() == "multipart/report",
           "DSN content type %r" % msg.get_content_type())
    expect(msg.get_param("report-type") == "delivery-status",
           "report-type %r" % msg.get_param("report-type"))
    parts = msg.get_payload()
    expect(isinstance(parts, list) and len(parts) >= 2, "DSN has %d parts" % len(parts))
    expect(parts[0].get_content_type() == "text/plain",
           "first part %r" % parts[0].get_content_type())
    ds = parts[1]
    expect(ds.get_content_type() == "message/delivery-status",
           "second part %r" % ds.get_content_type())
    # The email package parses message/delivery-status into a list of header
    # blocks: the per-message one, then one per recipient (RFC 3464 2.1).
    blocks = ds.get_payload()
    expect(isinstance(blocks, list) and len(blocks) >= 2,
           "delivery-status blocks: %r" % (blocks,))
    per_msg = {k.lower(): str(v) for k, v in blocks[0].items()}
    expect("reporting-mta" in per_msg, "Reporting-MTA in %r" % per_msg)
    return [{k.lower(): str(v) for k, v in b.items()} for b in blocks[1:]]
