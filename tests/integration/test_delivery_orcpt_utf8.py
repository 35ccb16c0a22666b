#!/usr/bin/python3
"""ORCPT for UTF-8 addresses through `smtpkit serve` (RFC 3461 4.2 and 5.2.1,
RFC 6533 3):

(a) relayed to an MX host that announces SMTPUTF8 and DSN: a recipient
    without ORCPT gets one naming it, "utf-8;" and the address as it is, or
    in the 7-bit \\x{HEX} form when an ASCII character needs an escape; an
    ASCII one gets "rfc822;"; a received ORCPT goes on unchanged;
(b) relayed to a host with DSN but without SMTPUTF8 (the recipient is
    ASCII): a received utf-8 ORCPT holding UTF-8 goes in the 7-bit form;
(c) a recipient the host refuses: the bounce names it with
    Original-Recipient in the 7-bit form, and the delivery-status part is
    7-bit;
(d) malformed utf-8 ORCPTs are refused with 501 at RCPT.

The MX hosts are aiosmtpd servers on 127.0.0.2/.3 that record each RCPT
line as it came.
"""

import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import (LOCAL, MX, delivery_status, dsns,  # noqa: E402
                            expect, serve, wait, wait_event)
from dns_server import DNSTestServer  # noqa: E402
from serve_peer import HOST  # noqa: E402

ZONE = {
    "utf.test": {"MX": [[10, "mx.utf.test"]]},
    "mx.utf.test": {"A": ["127.0.0.2"]},
    "plain.test": {"MX": [[10, "mx.plain.test"]]},
    "mx.plain.test": {"A": ["127.0.0.3"]},
}
DSN_PARAMS = ("NOTIFY", "ORCPT", "RET", "ENVID")


def orcpts(mx):
    """{recipient: ORCPT value or None} from the RCPT lines mx recorded."""
    out = {}
    for ln in mx.lines():
        if not ln.startswith("RCPT "):
            continue
        toks = ln[len("RCPT "):].split(" ")
        rcpt = toks[0][len("TO:<"):-1]
        out[rcpt] = next((t.split("=", 1)[1] for t in toks[1:]
                          if t.upper().startswith("ORCPT=")), None)
    return out


def RawMX(host, port, name, utf8, **script):
    """An MX host (delivery_peers.MX) that announces DSN (aiosmtpd knows it
    not), keeps the raw RCPT lines and drops the DSN parameters before
    aiosmtpd sees them; SMTPUTF8 announced when utf8."""
    return MX(host, port, name, smtputf8=utf8, record_lines=True, ehlo_extra=["DSN"],
              strip_params=DSN_PARAMS, **script)


def submit(srv, rcpts, subject):
    """One message from alice with SMTPUTF8; rcpts: [(address, [params])]."""
    msg = ("From: <alice@%s>\r\nTo: <x@utf.test>\r\nSubject: %s\r\n\r\nHello.\r\n"
           % (LOCAL, subject))
    with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.mail("alice@" + LOCAL, ["SMTPUTF8"])
        expect(code == 250, "MAIL: %d %r" % (code, resp), srv)
        for addr, opts in rcpts:
            code, resp = s.rcpt(addr, opts)
            expect(code == 250, "RCPT %s %r: %d %r" % (addr, opts, code, resp), srv)
        code, resp = s.data(msg.encode())
        expect(code == 250, "DATA: %d %r" % (code, resp), srv)
        return resp.decode().rsplit("queued as ", 1)[1].split()[0]


tmp = sktest.TempDir("sk-orcpt-utf8-")
try:
    port = sktest.free_port()
    with DNSTestServer(ZONE) as dns, \
            RawMX("127.0.0.2", port, "mx.utf.test", True,
                  rcpt_script={"nope@utf.test": ["550 5.1.1 no such user"]}) as mxu, \
            RawMX("127.0.0.3", port, "mx.plain.test", False) as mxp:
        srv = serve(tmp, dns, port)
        with srv:
            # (d) refused at RCPT: "+" is not in the utf-8 encoding, CR LF
            # have no escape, a surrogate is no character.
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.ehlo("client.test")
                code, resp = s.mail("alice@" + LOCAL, ["SMTPUTF8"])
                expect(code == 250, "d: MAIL %d %r" % (code, resp), srv)
                for bad in ("utf-8;a+2Bb@x.test", "utf-8;a\\x{0D}\\x{0A}b@x.test",
                            "utf-8;\\x{D800}@x.test", "rfc822;c\u00e4cilie@x.test"):
                    code, resp = s.rcpt("z@utf.test", ["ORCPT=" + bad])
                    expect(code == 501, "d: ORCPT=%s: %d %r, want 501" % (bad, code, resp), srv)
            qa = submit(srv, [("j\u00f6rg@utf.test", []),
                              ("zo\u00eb+tag@utf.test", []),
                              ("bob@utf.test", ["ORCPT=utf-8;c\u00e4cilie@old.test"]),
                              ("carol@utf.test", ["ORCPT=utf-8;d\\x{E4}n@old.test"]),
                              ("dave@utf.test", []),
                              ("nope@utf.test", ["ORCPT=utf-8;n\u00f6pe@old.test"])], "a")
            qb = submit(srv, [("erin@plain.test", ["ORCPT=utf-8;c\u00e4cilie@old.test"])], "b")
            wait_event(srv, qa, "delivered", 5)
            wait_event(srv, qb, "delivered", 1)
            wait(lambda: dsns(srv, "alice"), 20, "the bounce for nope@utf.test", srv)

            # (a)
            got = orcpts(mxu)
            want = {"j\u00f6rg@utf.test": "utf-8;j\u00f6rg@utf.test",
                    "zo\u00eb+tag@utf.test": "utf-8;zo\\x{EB}\\x{2B}tag@utf.test",
                    "bob@utf.test": "utf-8;c\u00e4cilie@old.test",
                    "carol@utf.test": "utf-8;d\\x{E4}n@old.test",
                    "dave@utf.test": "rfc822;dave@utf.test",
                    "nope@utf.test": "utf-8;n\u00f6pe@old.test"}
            expect(got == want, "a: ORCPTs %r, want %r" % (got, want), srv)
            # (b)
            got = orcpts(mxp)
            want = {"erin@plain.test": "utf-8;c\\x{E4}cilie@old.test"}
            expect(got == want, "b: ORCPTs %r, want %r" % (got, want), srv)
            expect(len(mxp.to("erin@plain.test")) == 1, "b: delivered", srv)
            # (c)
            bounces = dsns(srv, "alice")
            expect(len(bounces) == 1, "c: %d DSNs" % len(bounces), srv)
            blocks = delivery_status(bounces[0])
            expect(len(blocks) == 1, "c: blocks %r" % blocks, srv)
            expect(blocks[0].get("original-recipient") == "utf-8; n\\x{F6}pe@old.test",
                   "c: %r" % blocks[0], srv)
            expect(blocks[0].get("final-recipient") == "rfc822; nope@utf.test",
                   "c: %r" % blocks[0], srv)
            raw = bounces[0].get_payload()[1].as_bytes()
            expect(all(b < 0x80 for b in raw), "c: 8-bit delivery-status part", srv)
    print("ok")
finally:
    tmp.cleanup()
