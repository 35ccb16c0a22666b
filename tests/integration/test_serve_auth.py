#!/usr/bin/python3
"""Authenticated mail in `smtpkit serve` end to end (docs/authentication.md
"In smtpkit serve"), DNS from dns_server.py on loopback.

A first server signs a message submitted from a relay network with an RSA
and an Ed25519 key made by `smtpkit dkim keygen` and relays it to a second
server, for which loopback is outside (--relay-net none): it checks DKIM,
SPF and DMARC and writes dkim=pass spf=pass dmarc=pass into its
Authentication-Results, which dkimpy confirms on the Maildir file. Then,
against a server that reports and one that enforces: a forged From domain
with p=reject (550 5.7.1 / accepted with dmarc=fail), p=quarantine (the
quarantine field), forged Authentication-Results with our authserv-id
(removed, others kept), a DNS timeout (451 / temperror), --spf-reject-fail
(550 5.7.23), and the results in `smtpkit track --json`."""

import email.utils
import os
import re
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402

try:
    import dkim
    import nacl  # noqa: F401  (dkimpy's Ed25519)
except ImportError as e:
    print("needs python3-dkim and python3-nacl: %s" % e)
    sys.exit(sktest.SKIP)

tmp = sktest.TempDir("sk-serve-auth-")
AUTHSERV = "mx.test"


def keygen(selector, *extra):
    """A key made by `smtpkit dkim keygen`: its file and the TXT record
    it prints (the quoted strings of one record)."""
    path = tmp.join(selector + ".pem")
    r = sktest.smtpkit("dkim", "keygen", "--domain", "example.org", "--selector", selector,
                       "--out", path, *extra, check_rc=0)
    value = re.search(r"^value: (.*)$", r.stdout, re.M).group(1)
    return path, re.findall(r'"([^"]*)"', value)


rsa_pem, rsa_rec = keygen("rsa")
ed_pem, ed_rec = keygen("ed", "--type", "ed25519")
RECORDS = {b"rsa._domainkey.example.org.": "".join(rsa_rec).encode(),
           b"ed._domainkey.example.org.": "".join(ed_rec).encode()}

SPF_LOOPBACK = "v=spf1 ip4:127.0.0.1 -all"
ZONE = {
    # The sending domain: SPF for loopback, both keys, DMARC p=reject.
    "example.org": {"TXT": [SPF_LOOPBACK]},
    "out.example.org": {"TXT": [SPF_LOOPBACK]},  # the relaying server's HELO name
    "client.test": {"TXT": [SPF_LOOPBACK]},      # the test client's HELO name
    "rsa._domainkey.example.org": {"TXT": [rsa_rec]},
    "ed._domainkey.example.org": {"TXT": [ed_rec]},
    "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject"]},
    # A forger's domain: nothing passes for loopback.
    "forged.test": {"TXT": ["v=spf1 -all"]},
    "_dmarc.forged.test": {"TXT": ["v=DMARC1; p=reject"]},
    # Quarantine (softfail, so that --spf-reject-fail does not refuse it).
    "quar.test": {"TXT": ["v=spf1 ~all"]},
    "_dmarc.quar.test": {"TXT": ["v=DMARC1; p=quarantine"]},
    # SPF fail without DMARC.
    "spffail.test": {"TXT": ["v=spf1 -all"]},
    # DMARC that never answers.
    "slow.test": {"TXT": [SPF_LOOPBACK]},
    "_dmarc.slow.test": {"DROP": True},
}


def message(sender, subject, extra=""):
    return ("From: <%s>\r\nTo: <bob@dest.test>\r\nSubject: %s\r\nDate: %s\r\n"
            "Message-ID: <%s.%f@test>\r\n%s\r\nHello.\r\n" %
            (sender, subject, email.utils.formatdate(), subject.replace(" ", "-"), time.time(),
             extra))


def send(port, sender, msg, rcpt="bob@dest.test"):
    """(code, text) of the reply to the end of DATA."""
    with smtplib.SMTP(HOST, port, local_hostname="client.test", timeout=60) as c:
        c.ehlo()
        c.mail(sender)
        code, text = c.rcpt(rcpt)
        if code != 250:
            return code, text.decode()
        code, text = c.data(msg.encode())
        return code, text.decode()


def queue_id(text):
    m = re.search(r"queued as (\S+)", text)
    return m.group(1) if m else None


def head(path):
    """The header block of a Maildir file (LF line ends), unfolded lines."""
    with open(path, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    block = data.split("\n\n", 1)[0]
    return re.sub(r"\n[ \t]+", " ", block).split("\n")


def fields(path, name):
    return [h for h in head(path) if h.lower().startswith(name.lower() + ":")]


def ours(path):
    """Our Authentication-Results fields."""
    return [h for h in fields(path, "Authentication-Results")
            if h.split(":", 1)[1].strip().lower().startswith(AUTHSERV)]


def new_file(srv, before, local="bob", domain="dest.test"):
    files = srv.wait_maildir(domain, local, len(before) + 1)
    got = [f for f in files if f not in before]
    expect(len(got) == 1, "one new message, got %r" % got, srv)
    return got[0]


def dkimpy_verify(path):
    """dkimpy's verdict on every DKIM-Signature of a Maildir file."""
    with open(path, "rb") as f:
        data = f.read().replace(b"\n", b"\r\n")

    def dns(name, timeout=5):
        return RECORDS.get(name, b"")
    d = dkim.DKIM(data)
    n = sum(1 for h in d.headers if h[0].lower() == b"dkim-signature")
    return [d.verify(idx=i, dnsfunc=dns) for i in range(n)]


with DNSTestServer(ZONE) as dns:
    common = ["--hostname", AUTHSERV, "--local-domain", "dest.test", "--relay-net", "none",
              "--dns-server", dns.address]
    mxr = Serve(tmp, name="mxr", args=common)
    mxe = Serve(tmp, name="mxe", args=common + ["--dmarc-policy", "enforce",
                                                  "--spf-reject-fail"])
    with mxr, mxe:
        out = Serve(tmp, name="out", args=["--hostname", "out.example.org",
                                           "--relay-host", "%s:%d" % (HOST, mxr.port),
                                           "--dkim", "example.org:rsa:" + rsa_pem,
                                           "--dkim", "example.org:ed:" + ed_pem])
        with out:
            # 1. Signed by out, relayed, verified by mxr.
            code, text = send(out.port, "alice@example.org",
                              message("alice@example.org", "signed one"))
            expect(code == 250, "out accepts: %d %s" % (code, text), out)
            path = new_file(mxr, [])
        sigs = fields(path, "DKIM-Signature")
        expect(len(sigs) == 2, "two signatures: %r" % sigs, mxr)
        expect(any("a=rsa-sha256" in s and "s=rsa" in s for s in sigs) and
               any("a=ed25519-sha256" in s and "s=ed" in s for s in sigs),
               "an RSA and an Ed25519 signature: %r" % sigs)
        ar = ours(path)
        expect(len(ar) == 1, "one Authentication-Results of ours: %r" % head(path), mxr)
        ar = ar[0]
        expect(len(re.findall(r"dkim=pass header\.d=example\.org", ar)) == 2 and
               "spf=pass smtp.mailfrom=alice@example.org" in ar and
               "spf=pass smtp.helo=out.example.org" in ar and
               "dmarc=pass" in ar and "header.from=example.org" in ar,
               "dkim=pass (twice) spf=pass dmarc=pass: %s" % ar, mxr)
        expect(dkimpy_verify(path) == [True, True], "dkimpy verifies both signatures of %s" % path)
        hs = head(path)
        expect(hs[0].startswith("Return-Path:") and hs[1].startswith("Received:") and
               hs[2].startswith("Authentication-Results: " + AUTHSERV),
               "Return-Path, Received, then our Authentication-Results: %r" % hs[:4])

        # 2. A forged From domain whose DMARC policy is reject.
        forged = message("ceo@forged.test", "forged one")
        code, text = send(mxe.port, "ceo@forged.test", forged)
        expect(code == 550 and text.startswith("5.7.1") and "DMARC" in text and
               "forged.test" in text, "enforcing: 550 5.7.1 naming DMARC: %d %s" % (code, text),
               mxe)
        expect(mxe.maildir("dest.test", "bob") == [], "nothing stored when refused", mxe)
        code, text = send(mxr.port, "ceo@forged.test", forged)
        expect(code == 250, "reporting: accepted: %d %s" % (code, text), mxr)
        path = new_file(mxr, [path])
        ar = ours(path)[0]
        expect("dmarc=fail" in ar and "spf=fail" in ar and "dkim=none" in ar,
               "dmarc=fail recorded: %s" % ar)
        expect(not fields(path, "X-SMTPKit-Quarantine"), "no quarantine mark when reporting")
        # Events are written in batches (docs/tracking.md): asked again until in.
        qid = queue_id(text)
        track = sktest.wait_for(lambda: (lambda r: r.returncode == 0 and r)(
            sktest.smtpkit("track", "--data-dir", mxr.data_dir, qid, "--json")),
            what="the received event of " + str(qid))
        expect('"event":"received"' in track.stdout and "dmarc=fail" in track.stdout and
               "spf=fail smtp.mailfrom=ceo@forged.test" in track.stdout,
               "the results in track --json: %s" % track.stdout)
        table = sktest.smtpkit("track", "--data-dir", mxr.data_dir, qid, check_rc=0)
        expect("dmarc=fail" in table.stdout, "the results in track: %s" % table.stdout)
        seen = mxr.maildir("dest.test", "bob")

        # 3. p=quarantine: delivered with the field Maildir filters use.
        code, text = send(mxe.port, "x@quar.test", message("x@quar.test", "quarantined"))
        expect(code == 250, "quarantine: accepted: %d %s" % (code, text), mxe)
        path = new_file(mxe, [])
        expect(fields(path, "X-SMTPKit-Quarantine") == ["X-SMTPKit-Quarantine: dmarc"],
               "X-SMTPKit-Quarantine: dmarc: %r" % head(path))
        expect("dis=quarantine" in ours(path)[0], "dis=quarantine: %s" % ours(path))
        enforced = [path]

        # 4. Forged results in our name go, others stay.
        forged_ar = ("Authentication-Results: mx.test; dkim=pass header.d=bank.example\r\n"
                     "Authentication-Results: other.example; spf=pass smtp.mailfrom=a@b.example\r\n"
                     "Authentication-Results: (looks like ours)\r\n"
                     "  MX.Test;\r\n\tdmarc=pass header.from=bank.example\r\n")
        code, text = send(mxr.port, "alice@example.org",
                          message("alice@example.org", "forged results", forged_ar))
        expect(code == 250, "accepted: %d %s" % (code, text), mxr)
        path = new_file(mxr, seen)
        seen.append(path)
        ar = fields(path, "Authentication-Results")
        expect(len(ours(path)) == 1 and "bank.example" not in " ".join(ours(path)),
               "only our own results with our id: %r" % ar)
        expect(any(a.startswith("Authentication-Results: other.example;") for a in ar),
               "another server's results kept: %r" % ar)
        expect("authres-removed" in mxr.log() and "count=2" in mxr.log(),
               "the removal logged:\n" + mxr.log()[-2000:])

        # 5. --spf-reject-fail: SPF fail alone (no DMARC record).
        code, text = send(mxe.port, "x@spffail.test", message("x@spffail.test", "spf fail"))
        expect(code == 550 and text.startswith("5.7.23") and "SPF" in text,
               "--spf-reject-fail: 550 5.7.23: %d %s" % (code, text), mxe)
        code, text = send(mxr.port, "x@spffail.test", message("x@spffail.test", "spf fail"))
        expect(code == 250, "without it: accepted: %d %s" % (code, text), mxr)
        path = new_file(mxr, seen)
        seen.append(path)
        expect("spf=fail" in ours(path)[0] and "dmarc=none" in ours(path)[0],
               "spf=fail recorded: %s" % ours(path))

        # 6. A DNS timeout: never a permanent refusal. Both at once (each
        # waits for the resolver's tries).
        res = {}

        def slow(name, srv):
            res[name] = send(srv.port, "x@slow.test", message("x@slow.test", "slow " + name))
        threads = [threading.Thread(target=slow, args=(n, s)) for n, s in
                   (("enforce", mxe), ("report", mxr))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        code, text = res.get("enforce", (0, "no reply"))
        expect(code == 451 and text.startswith("4.7.") and "DMARC" in text,
               "enforcing: 451 4.7.x: %d %s" % (code, text), mxe)
        code, text = res.get("report", (0, "no reply"))
        expect(code == 250, "reporting: accepted: %d %s" % (code, text), mxr)
        path = new_file(mxr, seen)
        expect("dmarc=temperror" in ours(path)[0] and "spf=pass" in ours(path)[0],
               "dmarc=temperror recorded: %s" % ours(path))
        expect(mxe.maildir("dest.test", "bob") == enforced, "mxe stored only the quarantined one")

print("ok")
