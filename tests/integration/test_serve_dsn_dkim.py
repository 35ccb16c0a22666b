#!/usr/bin/python3
"""DSNs from `smtpkit serve` are DKIM-signed (docs/authentication.md "In
smtpkit serve"): a bounce (a recipient at a null-MX domain, bounced at
once) goes to the local sender with a DKIM-Signature of the DSN's From
domain (MAILER-DAEMON at --hostname relay.test, signed by the --dkim key
of relay.test), and dkimpy (python3-dkim) verifies it against the key's
published record, so that the bounce passes DMARC at its receiver. A
server with no key for that domain sends its DSNs unsigned."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from delivery_peers import expect, serve, submit  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

try:
    import dkim
except ImportError as e:
    print("needs python3-dkim: %s" % e)
    sys.exit(sktest.SKIP)

ZONE = {"null.test": {"MX": [[0, "."]]}}

tmp = sktest.TempDir("sk-serve-dsn-dkim-")


def keygen(domain, selector):
    path = tmp.join("%s-%s.pem" % (selector, domain))
    r = sktest.smtpkit("dkim", "keygen", "--domain", domain, "--selector", selector, "--out",
                       path, check_rc=0)
    value = re.search(r"^value: (.*)$", r.stdout, re.M).group(1)
    return path, "".join(re.findall(r'"([^"]*)"', value)).encode()


def dsn_of(srv):
    """The one DSN in alice's Maildir, as it was sent (CRLF, without the
    Return-Path its delivery added)."""
    files = srv.wait_maildir("local.test", "alice", 1, timeout=20)
    with open(files[0], "rb") as f:
        data = f.read().replace(b"\n", b"\r\n")
    return re.sub(rb"^Return-Path:[^\r]*\r\n", b"", data)


def signatures(msg):
    block = msg.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return re.findall(r"^DKIM-Signature:.*(?:\r\n[ \t].*)*", block, re.M)


pem, record = keygen("relay.test", "dsn")
records = {"dsn._domainkey.relay.test": record}
try:
    with DNSTestServer(ZONE) as dns:
        srv = serve(tmp, dns, sktest.free_port(), "--dkim", "relay.test:dsn:" + pem, name="signed")
        with srv:
            submit(srv, "alice@local.test", ["nobody@null.test"], "to null")
            msg = dsn_of(srv)
            sigs = signatures(msg)
            expect(b"From: Mail Delivery System <MAILER-DAEMON@relay.test>" in msg,
                   "a DSN from MAILER-DAEMON@relay.test: %r" % msg[:600], srv)
            expect(len(sigs) == 1 and "d=relay.test" in sigs[0] and "s=dsn" in sigs[0],
                   "one signature of relay.test: %r" % sigs, srv)
            ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5:
                             records.get(name.decode().rstrip("."), b""))
            expect(ok, "dkimpy verifies the DSN's signature: %r" % msg[:1500], srv)
            expect(not dkim.verify(msg.replace(b"5.1.10", b"5.1.1 ", 1),
                                   dnsfunc=lambda name, timeout=5:
                                   records.get(name.decode().rstrip("."), b"")),
                   "and not once its report is changed", srv)

        plain = serve(tmp, dns, sktest.free_port(), name="plain")
        with plain:
            submit(plain, "alice@local.test", ["nobody@null.test"], "to null")
            msg = dsn_of(plain)
            expect(signatures(msg) == [], "no key for relay.test: the DSN goes unsigned", plain)
    print("ok")
finally:
    tmp.cleanup()
