#!/usr/bin/python3
"""RFC 3461 NOTIFY, ORCPT, RET and ENVID honoured by `smtpkit serve`:

(a) NOTIFY=SUCCESS to a local Maildir recipient: exactly one DSN to the
    sender, Action: delivered, with ORCPT and ENVID echoed (RFC 3461 5.2.3);
(b) relayed to an MX host that announces DSN: MAIL and RCPT carry RET,
    ENVID, NOTIFY and ORCPT exactly as given (ORCPT added from the address
    when there was none, RFC 3461 4.2), and no DSN comes from us (5.2.1);
(c) relayed to an MX host without DSN: no DSN parameter is sent, and
    NOTIFY=SUCCESS gets one "relayed" DSN (5.2.2);
(e) the null sender never gets one (RFC 3461 6.2).

The MX hosts are aiosmtpd servers on 127.0.0.2/.3 that record each MAIL and
RCPT line as it came; the one announcing DSN takes the parameters, the
other refuses any it does not know (555), as a server without DSN would.
"""

import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (LOCAL, MX, delivery_status, dsns,  # noqa: E402
                            events, expect, serve, wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402
from serve_peer import HOST  # noqa: E402

ZONE = {
    "dsn.test": {"MX": [[10, "mx.dsn.test"]]},
    "mx.dsn.test": {"A": ["127.0.0.2"]},
    "plain.test": {"MX": [[10, "mx.plain.test"]]},
    "mx.plain.test": {"A": ["127.0.0.3"]},
}
DSN_PARAMS = ("RET", "ENVID", "NOTIFY", "ORCPT")


def RawMX(host, port, name, dsn):
    """An MX host (delivery_peers.MX) that keeps each MAIL and RCPT argument
    as received (peer.lines()); with dsn it announces DSN and drops the DSN
    parameters before aiosmtpd (which knows none) sees them."""
    return MX(host, port, name, record_lines=True, ehlo_extra=["DSN"] if dsn else [],
              strip_params=DSN_PARAMS if dsn else ())


def submit(srv, sender, rcpts, mail_options=(), subject="dsn"):
    """One message; rcpts is a list of (address, [RCPT parameters])."""
    msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s.%f@client.test>\r\n"
           "\r\nHello.\r\n" % (sender or "mailer-daemon@client.test", rcpts[0][0], subject,
                               subject.replace(" ", "-"), time.time()))
    with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.mail(sender, list(mail_options))
        expect(code == 250, "MAIL: %d %r" % (code, resp), srv)
        for addr, opts in rcpts:
            code, resp = s.rcpt(addr, list(opts))
            expect(code == 250, "RCPT %s: %d %r" % (addr, code, resp), srv)
        code, resp = s.data(msg.encode())
        expect(code == 250, "DATA: %d %r" % (code, resp), srv)
        return resp.decode().rsplit("queued as ", 1)[1].split()[0]


def params(line):
    """The parameters of a raw MAIL/RCPT line, as a dict (names upper-cased,
    values exactly as sent)."""
    toks = line.split(" ")[2:]
    return {t.split("=", 1)[0].upper(): (t.split("=", 1) + [None])[1] for t in toks}


def one_dsn(srv, local, action):
    """The one DSN in local@LOCAL's Maildir: its per-recipient blocks and the
    message, after checking it is a delivery-status report with action."""
    got = dsns(srv, local)
    expect(len(got) == 1, "%s has %d DSN(s), want 1" % (local, len(got)), srv)
    msg = got[0]
    blocks = delivery_status(msg)
    expect(len(blocks) == 1, "%s: one recipient block: %r" % (local, blocks), srv)
    expect(blocks[0].get("action") == action,
           "%s: Action %r, want %r" % (local, blocks[0].get("action"), action), srv)
    expect(blocks[0].get("status", "").startswith("2."), "status %r" % blocks, srv)
    return blocks[0], msg


def per_message(msg):
    blocks = msg.get_payload()[1].get_payload()
    return {k.lower(): str(v) for k, v in blocks[0].items()}


tmp = sktest.TempDir("sk-delivery-dsn-notify-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, RawMX("127.0.0.2", port, "mx.dsn.test", dsn=True) as mxd, \
            RawMX("127.0.0.3", port, "mx.plain.test", dsn=False) as mxp:
        srv = serve(tmp, dns, port)
        with srv:
            # (a) local delivery, NOTIFY=SUCCESS: "delivered".
            qa = submit(srv, "alice@" + LOCAL,
                        [("carol@" + LOCAL, ["NOTIFY=SUCCESS", "ORCPT=rfc822;Carol+2Bx@" + LOCAL])],
                        ["RET=HDRS", "ENVID=env-a+2B1"], "local success")
            # (b) relayed to a host with DSN: parameters passed on, no DSN from us.
            qb = submit(srv, "dave@" + LOCAL,
                        [("x@dsn.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;X+2Bo@dsn.test"]),
                         ("y@dsn.test", ["NOTIFY=NEVER"]),
                         ("w@dsn.test", [])],
                        ["RET=FULL", "ENVID=Env+2Bb.1"], "relay with dsn")
            # (c) relayed to a host without DSN: nothing passed, "relayed".
            qc = submit(srv, "erin@" + LOCAL,
                        [("z@plain.test", ["NOTIFY=SUCCESS", "ORCPT=rfc822;z@plain.test"])],
                        ["RET=HDRS", "ENVID=env-c"], "relay without dsn")
            # (e) the null sender: successes asked for, none sent.
            qe = submit(srv, "", [("carol@" + LOCAL, ["NOTIFY=SUCCESS"]),
                                  ("z2@plain.test", ["NOTIFY=SUCCESS"])], [], "null sender")
            for q, n in ((qa, 1), (qb, 3), (qc, 1), (qe, 2)):
                wait_event(srv, q, "delivered", n)
            srv.wait_maildir(LOCAL, "alice", 1, timeout=20)
            srv.wait_maildir(LOCAL, "erin", 1, timeout=20)
            wait(lambda: not srv.queue_list(), 20, "queue empty", srv)
            time.sleep(1.0)  # room for a wrong extra DSN to arrive

            # (a)
            blk, msg = one_dsn(srv, "alice", "delivered")
            expect(blk.get("final-recipient") == "rfc822; carol@" + LOCAL, "a: %r" % blk, srv)
            expect(blk.get("original-recipient") == "rfc822; Carol+x@" + LOCAL, "a: %r" % blk,
                   srv)
            expect(per_message(msg).get("original-envelope-id") == "env-a+1",
                   "a: ENVID echoed: %r" % per_message(msg), srv)
            expect([a.addr_spec for a in msg["To"].addresses] == ["alice@" + LOCAL],
                   "a: To %r" % msg["To"], srv)
            expect("remote-mta" not in blk, "a: local delivery has no Remote-MTA", srv)
            expect(len(srv.maildir(LOCAL, "carol")) == 2, "carol got both messages", srv)

            # (b)
            lines = mxd.lines()
            mail = [ln for ln in lines if ln.startswith("MAIL FROM:<dave@")]
            expect(len(mail) == 1, "b: one MAIL: %r" % lines, srv)
            mp = params(mail[0])
            expect(mp.get("RET") == "FULL" and mp.get("ENVID") == "Env+2Bb.1",
                   "b: MAIL carries RET and ENVID as given: %r" % mail[0], srv)
            rc = {ln.split(" ")[1]: params(ln) for ln in lines if ln.startswith("RCPT")}
            want = {"TO:<x@dsn.test>": {"NOTIFY": "SUCCESS,FAILURE",
                                        "ORCPT": "rfc822;X+2Bo@dsn.test"},
                    "TO:<y@dsn.test>": {"NOTIFY": "NEVER", "ORCPT": "rfc822;y@dsn.test"},
                    "TO:<w@dsn.test>": {"ORCPT": "rfc822;w@dsn.test"}}
            expect(rc == want, "b: RCPT parameters %r, want %r" % (rc, want), srv)
            expect(len(mxd.to("x@dsn.test")) == 1, "b: delivered to the DSN host", srv)
            expect(not dsns(srv, "dave"), "b: no DSN from us when the next hop has DSN", srv)

            # (c)
            lines = mxp.lines()
            mine = [ln for ln in lines if "erin@" in ln or "z@plain.test" in ln]
            expect(len(mine) == 2, "c: MAIL and RCPT: %r" % lines, srv)
            for ln in lines:
                expect(not any(k in params(ln) for k in DSN_PARAMS),
                       "c: no DSN parameter to a host without DSN: %r" % ln, srv)
            blk, msg = one_dsn(srv, "erin", "relayed")
            expect(blk.get("final-recipient") == "rfc822; z@plain.test", "c: %r" % blk, srv)
            expect(blk.get("original-recipient") == "rfc822; z@plain.test", "c: %r" % blk, srv)
            expect("mx.plain.test" in blk.get("remote-mta", ""), "c: Remote-MTA %r" % blk, srv)
            expect(per_message(msg).get("original-envelope-id") == "env-c", "c: ENVID", srv)
            # RFC 3461 4.3: no failure, so only the headers come back.
            ctypes = [p.get_content_type() for p in msg.get_payload()]
            expect(ctypes[2:] == ["text/rfc822-headers"], "c: parts %r" % ctypes, srv)

            # (e), and nothing else anywhere: two DSNs in all.
            boxes = os.path.join(srv.data_dir, "mailboxes")
            found = sorted(os.path.relpath(os.path.join(root, f), boxes)
                           for root, _d, files in os.walk(boxes) for f in files
                           if os.path.basename(root) in ("new", "cur"))
            owners = sorted(p.split("/")[1] for p in found)
            expect(owners == ["alice", "carol", "carol", "erin"],
                   "mailboxes: %r" % found, srv)
            log = srv.log()
            expect(len(re.findall(r" queue dsn ", log)) == 2, "two DSNs logged", srv)
            for q in (qb, qe):
                expect(not re.search(r"%s queue dsn " % q, log), "no DSN about %s" % q, srv)
            expect(len(events(srv.data_dir, qe, "delivered")) == 2, "e: delivered", srv)
    print("ok")
finally:
    tmp.cleanup()
