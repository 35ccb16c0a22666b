#!/usr/bin/python3
"""DKIM interoperability with dkimpy (Debian python3-dkim, python3-nacl for
Ed25519), keys served by dns_server.py on loopback.

For messages with folded and long headers, trailing blank lines, an empty
body, UTF-8, an attachment and several From values, signed with RSA and
Ed25519 in relaxed and simple canonicalization: what `smtpkit dkim sign`
makes verifies with dkimpy, what dkimpy makes verifies with `smtpkit dkim
verify`, and a changed header or body fails both ways. Then what the RFCs
make special: over-signed From, several signatures in one pass, l=,
rsa-sha1 and a 512-bit key (RFC 8301), revoked and missing keys, a DNS
failure, LF line ends, and keygen's file and record."""

import base64
import functools
import os
import re
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

try:
    import dkim
    import nacl  # noqa: F401  (dkimpy's Ed25519)
except ImportError as e:
    print("needs python3-dkim and python3-nacl: %s" % e)
    sys.exit(sktest.SKIP)
from dkimpy_util import msg, openssl, sk, txt_lookup  # noqa: E402

DOMAIN = "example.org"
failures = []


# Every failed check is collected and reported at the end.
expect = functools.partial(sktest.expect, failures=failures)


tmp = sktest.TempDir("sk-dkim-interop-")

# ---- keys: ours from keygen, and the same keys in dkimpy's forms ----
records = {}


def keygen(selector, *extra):
    path = tmp.join(selector + ".pem")
    r = sk("dkim", "keygen", "--domain", DOMAIN, "--selector", selector, "--out", path, *extra)
    out = r.stdout.decode()
    expect(r.returncode == 0, "keygen %s: %d %s" % (selector, r.returncode, r.stderr))
    m = re.search(r"^value: (.*)$", out, re.M)
    name = re.search(r"^name:  (\S+)$", out, re.M).group(1)
    expect(name == "%s._domainkey.%s" % (selector, DOMAIN), "record name " + name)
    strings = re.findall(r'"([^"]*)"', m.group(1))
    expect(all(len(s) <= 255 for s in strings), "strings of at most 255 octets: %s" % strings)
    records[name] = strings
    return path


rsa_pem = keygen("rsa")
ed_pem = keygen("ed", "--type", "ed25519")
expect(stat.S_IMODE(os.stat(rsa_pem).st_mode) == 0o600, "keygen writes mode 0600")
expect(len(records["rsa._domainkey." + DOMAIN]) == 2, "a 2048-bit key record needs two strings")
# dkimpy reads RSA keys as PKCS#1 ("RSA PRIVATE KEY") and Ed25519 as the seed.
rsa_pkcs1 = openssl("pkey", "-in", rsa_pem, "-traditional")
rsa_trad_path = tmp.join("rsa-traditional.pem")
with open(rsa_trad_path, "wb") as f:
    f.write(rsa_pkcs1)
ed_seed = base64.b64encode(openssl("pkey", "-in", ed_pem, "-outform", "DER")[-32:])
# A 512-bit key only dkimpy will sign with (RFC 8301 makes it a failure).
weak_pem = openssl("genrsa", "-traditional", "512")
weak_pub = openssl("rsa", "-pubout", "-outform", "DER", input=weak_pem)
records["weak._domainkey." + DOMAIN] = ["v=DKIM1; k=rsa; p=" + base64.b64encode(weak_pub).decode()]
rsa_p = "".join(records["rsa._domainkey." + DOMAIN]).split("p=")[1]
records["revoked._domainkey." + DOMAIN] = ["v=DKIM1; k=rsa; p="]
testing = "v=DKIM1; t=y; k=rsa; p=" + rsa_p
records["testing._domainkey." + DOMAIN] = [testing[i:i + 255] for i in range(0, len(testing), 255)]
records["rsa._domainkey.service.example"] = records["rsa._domainkey." + DOMAIN]

zone = {name: {"TXT": [strings]} for name, strings in records.items()}
zone["broken._domainkey." + DOMAIN] = {"SERVFAIL": True}
zone["nokey._domainkey." + DOMAIN] = {"A": ["127.0.0.1"]}

KEYS = {  # selector: (our key file, dkimpy's key, dkimpy's algorithm)
    "rsa": (rsa_pem, rsa_pkcs1, b"rsa-sha256"),
    "ed": (ed_pem, ed_seed, b"ed25519-sha256"),
}


ATTACHMENT = base64.encodebytes(bytes(range(256)) * 8).replace(b"\n", b"\r\n")
MESSAGES = {
    "plain": msg(["From: Zoe <zoe@example.org>", "To: bob@example.net", "Subject: Hello",
                  "Date: Mon, 1 Dec 2025 10:00:00 +0000", "Message-ID: <1@example.org>"],
                 b"Hello Bob,\r\n\r\nsee you.\r\n"),
    "folded-long": msg(["From: Zoe <zoe@example.org>",
                        "To: bob@example.net,\r\n  carol@example.net,\r\n\tdave@example.net",
                        "Subject: " + " ".join(["word%d" % i for i in range(40)])
                        + "\r\n  continued   with   spaces\t\t",
                        "X-Long: " + "x" * 900,
                        "Date: Mon, 1 Dec 2025 10:00:00 +0000",
                        "Message-ID:\r\n <2@example.org>"],
                       b"Body  with \t runs  of   space\t \r\n  indented line\r\n"),
    "trailing-blank": msg(["From: zoe@example.org", "To: bob@example.net", "Subject: blank"],
                          b"text\r\n\r\n\r\n  \r\n\t\r\n\r\n"),
    "empty-body": msg(["From: zoe@example.org", "To: bob@example.net", "Subject: empty"], b""),
    "utf8": msg(["From: =?utf-8?q?Zo=C3=AB?= <zoe@example.org>", "To: bob@example.net",
                 "Subject: Gr\u00fc\u00dfe aus K\u00f6ln", "MIME-Version: 1.0",
                 "Content-Type: text/plain; charset=utf-8",
                 "Content-Transfer-Encoding: 8bit"],
                "Gr\u00fc\u00dfe \u2014 \u65e5\u672c\u8a9e  \r\n\U0001F600\r\n".encode()),
    "attachment": msg(["From: zoe@example.org", "To: bob@example.net", "Subject: report",
                       "MIME-Version: 1.0",
                       'Content-Type: multipart/mixed; boundary="b1"'],
                      b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
                      b"--b1\r\nContent-Type: application/octet-stream\r\n"
                      b'Content-Disposition: attachment; filename="data.bin"\r\n'
                      b"Content-Transfer-Encoding: base64\r\n\r\n" + ATTACHMENT
                      + b"--b1--\r\n"),
    "from-list": msg(["From: zoe@example.org, yann@example.org", "Sender: zoe@example.org",
                      "To: bob@example.net", "Subject: two authors"], b"From both of us.\r\n"),
    "two-from": msg(["From: zoe@example.org", "To: bob@example.net", "From: yann@example.org",
                     "Subject: two From fields"], b"Odd but seen.\r\n"),
}
CANONS = [(b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")]


def tamper_body(m):
    head, _, body = m.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n" + b"X" + body + b"changed\r\n"


def tamper_header(m):
    return re.sub(rb"(?m)^Subject: ", b"Subject: Re: ", m, count=1)


with DNSTestServer(zone) as dns:
    dnsfunc = txt_lookup(dns.port)

    def dkimpy_verify(m, idx=0):
        try:
            return dkim.DKIM(m).verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            return "error: %s" % e

    def our_verify(m, *extra):
        r = sk("dkim", "verify", "--dns-server", dns.address, *extra, input=m)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def our_sign(m, selector, canon, *extra):
        key = KEYS[selector][0]
        r = sk("dkim", "sign", "--key", key, "--domain", DOMAIN, "--selector", selector,
               "--canon", b"/".join(canon).decode(), *extra, input=m)
        expect(r.returncode == 0, "sign: %d %s" % (r.returncode, r.stderr))
        return r.stdout

    def dkimpy_sign(m, selector, canon, **kw):
        _, key, algo = KEYS[selector]
        kw.setdefault("signature_algorithm", algo)
        return dkim.sign(m, selector.encode(), DOMAIN.encode(), key, canonicalize=canon,
                         **kw) + m

    for name, m in MESSAGES.items():
        for selector in KEYS:
            for canon in CANONS:
                case = "%s %s %s" % (name, selector, b"/".join(canon).decode())
                # ours -> dkimpy
                ours = our_sign(m, selector, canon)
                expect(ours.endswith(m), case + ": the message follows the signature unchanged")
                expect(dkimpy_verify(ours) is True, case + ": dkimpy verifies ours")
                for how, t in (("body", tamper_body), ("header", tamper_header)):
                    expect(dkimpy_verify(t(ours)) is not True,
                           case + ": dkimpy refuses ours with the %s changed" % how)
                # dkimpy -> ours
                theirs = dkimpy_sign(m, selector, canon)
                rc, out, err = our_verify(theirs)
                expect(rc == 0 and out.startswith("dkim=pass header.d=%s" % DOMAIN),
                       case + ": we verify dkimpy's: %d %s %s" % (rc, out, err))
                for how, t in (("body", tamper_body), ("header", tamper_header)):
                    rc, out, err = our_verify(t(theirs))
                    want = "body hash did not verify" if how == "body" else "signature did not"
                    expect(rc == 65 and out.startswith("dkim=fail") and want in out,
                           case + ": we refuse dkimpy's with the %s changed: %d %s" % (how, rc, out))

    m = MESSAGES["plain"]
    # From is over-signed: a From added above the signed one breaks it.
    ours = our_sign(m, "rsa", CANONS[0])
    expect("h=from:from:" in re.sub(r"\s", "", ours.decode()), "From listed twice in h=")
    forged = b"From: mallory@example.com\r\n" + ours
    expect(dkimpy_verify(forged) is not True, "dkimpy refuses an added From")
    rc, out, _ = our_verify(forged)
    expect(rc == 65 and "signature did not verify" in out, "we refuse an added From: " + out)

    # Several signatures in one pass: RSA and Ed25519, and a second domain.
    r = sk("dkim", "sign", "--sign", "%s:rsa:%s" % (DOMAIN, rsa_trad_path),
           "--sign", "%s:ed:%s" % (DOMAIN, ed_pem), "--sign", "service.example:rsa:" + rsa_pem,
           input=m)
    expect(r.returncode == 0, "three signatures: %s" % r.stderr)
    three = r.stdout
    expect(three.count(b"DKIM-Signature:") == 3, "three DKIM-Signature fields")
    for i in range(3):
        expect(dkimpy_verify(three, i) is True, "dkimpy verifies signature %d of three" % i)
    rc, out, _ = our_verify(three, "--json")
    expect(rc == 0 and out.count('"result":"pass"') == 4, "we verify all three: " + out)

    # l=: dkimpy can sign part of a body. Covering all of it passes; with
    # text appended it is our policy result (RFC 6376 8.2), not a pass.
    signed_l = dkimpy_sign(m, "rsa", CANONS[0], length=True)
    rc, out, _ = our_verify(signed_l)
    expect(rc == 0 and "dkim=pass" in out, "l= over the whole body: " + out)
    rc, out, _ = our_verify(signed_l + b"Appended by a list\r\n")
    expect(rc == 65 and "dkim=policy" in out and "only part of the body" in out,
           "l= shorter than the body: " + out)

    # RFC 8301: rsa-sha1 and RSA keys under 1024 bits are failures.
    rc, out, _ = our_verify(dkimpy_sign(m, "rsa", CANONS[0], signature_algorithm=b"rsa-sha1"))
    expect(rc == 65 and "dkim=fail" in out and "rsa-sha1" in out, "rsa-sha1: " + out)
    weak = dkim.sign(m, b"weak", DOMAIN.encode(), weak_pem) + m
    rc, out, _ = our_verify(weak)
    expect(rc == 65 and "dkim=fail" in out and "512 bits" in out, "a 512-bit key: " + out)

    # Key records: revoked, missing, DNS failure, testing.
    for selector, want_rc, want in (("revoked", 65, "dkim=permerror"),
                                    ("nokey", 65, "dkim=permerror"),
                                    ("missing", 65, "dkim=permerror"),
                                    ("broken", 75, "dkim=temperror")):
        signed = dkim.sign(m, selector.encode(), DOMAIN.encode(), rsa_pkcs1) + m
        rc, out, _ = our_verify(signed)
        expect(rc == want_rc and out.startswith(want), "key %s: %d %s" % (selector, rc, out))
    signed = dkim.sign(m, b"testing", DOMAIN.encode(), rsa_pkcs1) + m
    rc, out, _ = our_verify(signed, "--json")
    expect(rc == 0 and '"testing":true' in out, "t=y: " + out)

    # LF line ends in, LF line ends out; dkimpy reads LF files too.
    lf = m.replace(b"\r\n", b"\n")
    ours = our_sign(lf, "ed", CANONS[1])
    expect(b"\r" not in ours and ours.endswith(lf), "LF in, LF out")
    expect(dkimpy_verify(ours) is True, "dkimpy verifies a signature made from LF input")
    rc, out, _ = our_verify(ours)
    expect(rc == 0, "we verify our LF output: " + out)

    # x=: an expiry in the past is a failure.
    r = sk("dkim", "sign", "--key", rsa_pem, "--domain", DOMAIN, "--selector", "rsa",
           "--expire", "1s", input=m)
    expired = re.sub(rb"x=(\d+)", lambda g: b"x=" + str(int(g.group(1)) - 3600).encode(),
                     r.stdout, count=1)
    rc, out, _ = our_verify(expired)
    expect(rc == 65 and "x=" in r.stdout.decode() and "dkim=" in out, "x= is written: " + out)

    # No signature at all.
    rc, out, _ = our_verify(m)
    expect(rc == 65 and out.startswith("dkim=none"), "no signature: " + out)

# keygen: refusals and --force.
r = sk("dkim", "keygen", "--domain", DOMAIN, "--selector", "rsa", "--out", rsa_pem)
expect(r.returncode == 73 and b"--force" in r.stderr, "keygen keeps an existing file")
before = open(rsa_pem, "rb").read()
r = sk("dkim", "keygen", "--domain", DOMAIN, "--selector", "rsa", "--out", rsa_pem, "--force",
       "--bits", "1024")
expect(r.returncode == 0 and open(rsa_pem, "rb").read() != before, "--force replaces it")
expect(stat.S_IMODE(os.stat(rsa_pem).st_mode) == 0o600, "still mode 0600")
r = sk("dkim", "keygen", "--domain", DOMAIN, "--selector", "s", "--out", tmp.join("x"),
       "--bits", "512")
expect(r.returncode == 64 and b"--bits" in r.stderr, "512 bits refused: %s" % r.stderr)
r = sk("dkim", "keygen", "--domain", "bad domain", "--selector", "s", "--out", tmp.join("x"))
expect(r.returncode == 64 and b"--domain" in r.stderr, "a bad domain is named")
r = sk("dkim", "sign", "--key", tmp.join("none.pem"), "--domain", DOMAIN, "--selector", "s",
       input=MESSAGES["plain"])
expect(r.returncode == 66 and tmp.join("none.pem").encode() in r.stderr,
       "a missing key file is named: %s" % r.stderr)
r = sk("dkim", "sign", "--key", ed_pem, "--type", "rsa", "--domain", DOMAIN, "--selector", "s",
       input=MESSAGES["plain"])
expect(r.returncode == 64 and b"ed25519" in r.stderr, "--type must match the key")

tmp.cleanup()
if failures:
    print("%d failures" % len(failures))
    sys.exit(1)
print("ok")
