#!/usr/bin/python3
"""ARC (RFC 8617) in `smtpkit serve` (docs/authentication.md "In smtpkit
serve"), DNS from dns_server.py on loopback.

A mailing list's server (lists.example.net) has sealed a message with
`smtpkit arc seal`; a serve for which loopback is outside (--relay-net
none) verifies the chain as the message comes in and writes arc=pass with
header.oldest-pass and smtp.remote-ip into its Authentication-Results and
the tracking record; the same message with its body changed after the
seal gets arc=fail, and one without a chain arc=none."""

import email.utils
import os
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402

tmp = sktest.TempDir("sk-serve-arc-")
AUTHSERV = "mx.test"
LIST = "lists.example.net"


def keygen(domain, selector):
    path = tmp.join("%s-%s.pem" % (selector, domain))
    r = sktest.smtpkit("dkim", "keygen", "--domain", domain, "--selector", selector,
                       "--out", path, check_rc=0)
    value = re.search(r"^value: (.*)$", r.stdout, re.M).group(1)
    return path, re.findall(r'"([^"]*)"', value)


list_pem, list_rec = keygen(LIST, "arc")
ZONE = {
    "arc._domainkey." + LIST: {"TXT": [list_rec]},
    LIST: {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "client.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
}


def message(subject):
    return ("From: <zoe@example.org>\r\nTo: <bob@dest.test>\r\nSubject: %s\r\nDate: %s\r\n"
            "Message-ID: <%s.%f@test>\r\n\r\nHello list.\r\n" %
            (subject, email.utils.formatdate(), subject.replace(" ", "-"), time.time())).encode()


def send(port, msg):
    with smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=60) as c:
        c.ehlo()
        c.mail("list-bounces@" + LIST)
        code, text = c.rcpt("bob@dest.test")
        if code != 250:
            return code, text.decode()
        code, text = c.data(msg)
        return code, text.decode()


def head(path):
    with open(path, "rb") as f:
        block = f.read().decode("utf-8", "replace").split("\n\n", 1)[0]
    return re.sub(r"\n[ \t]+", " ", block).split("\n")


def ours(path):
    return [h for h in head(path) if h.lower().startswith("authentication-results:") and
            h.split(":", 1)[1].strip().lower().startswith(AUTHSERV)]


with DNSTestServer(ZONE) as dns:
    def seal(m):
        r = subprocess.run([sktest.SMTPKIT, "arc", "seal", "--key", list_pem, "--domain", LIST,
                            "--selector", "arc", "--authserv-id", "in." + LIST,
                            "--ar", "spf=pass smtp.mailfrom=example.org",
                            "--dns-server", dns.address], input=m, capture_output=True,
                           timeout=60)
        expect(r.returncode == 0, "arc seal: %d %s" % (r.returncode, r.stderr))
        return r.stdout

    mx = Serve(tmp, name="mx", args=["--hostname", AUTHSERV, "--local-domain", "dest.test",
                                      "--relay-net", "none", "--dns-server", dns.address])
    with mx:
        seen = []
        cases = (("sealed", seal(message("sealed one")), ("arc=pass", "header.oldest-pass=0",
                                                     "smtp.remote-ip=127.0.0.1")),
                 ("tampered", seal(message("tampered one")) + b"Appended after sealing.\r\n",
                  ("arc=fail", "smtp.remote-ip=127.0.0.1")),
                 ("plain", message("plain one"), ("arc=none",)))
        for name, m, want in cases:
            code, text = send(mx.port, m)
            expect(code == 250, "%s: accepted: %d %s" % (name, code, text), mx)
            files = mx.wait_maildir("dest.test", "bob", len(seen) + 1)
            path = [f for f in files if f not in seen][0]
            seen.append(path)
            ar = ours(path)
            expect(len(ar) == 1 and all(w in ar[0] for w in want), "%s: %s in %r" % (name, want, ar), mx)
            qid = re.search(r"queued as (\S+)", text).group(1)
            track = sktest.wait_for(lambda: (lambda r: r.returncode == 0 and r)(
                sktest.smtpkit("track", "--data-dir", mx.data_dir, qid, "--json")),
                what="the received event of " + qid)  # noqa: B023
            expect(want[0] in track.stdout,
                   "%s: %s in track --json: %s" % (name, want, track.stdout))

print("ok")
