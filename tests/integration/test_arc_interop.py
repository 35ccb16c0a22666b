#!/usr/bin/python3
"""ARC (RFC 8617) interoperability with dkimpy's implementation (Debian
python3-dkim: dkim.ARC, dkim.arc_verify), keys served by dns_server.py on
loopback.

Chains of 1, 2 and 3 sets sealed by `smtpkit arc seal` verify with
dkimpy and with `smtpkit arc verify`; chains dkimpy seals verify with
ours; chains mixing both verify with both; a changed body, header, AAR,
AMS or seal fails both ways. dkimpy's ARC knows rsa-sha256 only, so the
Ed25519 chains (and chains mixing both algorithms) are checked with our
verifier alone. Then the command's own behaviour: the cv= it finds by
verifying first (none, pass, and fail after tampering, whose set nobody
seals after), a DNS failure that stops it from sealing, --cv, --json,
--remote-ip, LF line ends, and its argument errors."""

import base64
import functools
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

try:
    import dkim
    import authres  # noqa: F401  (dkimpy's ARC signer needs it)
except ImportError as e:
    print("needs python3-dkim and python3-authres: %s" % e)
    sys.exit(sktest.SKIP)
from dkimpy_util import msg, openssl, sk, txt_lookup  # noqa: E402

DOMAIN = "example.org"
LIST = "lists.example.net"
failures = []


# Every failed check is collected and reported at the end.
expect = functools.partial(sktest.expect, failures=failures)


tmp = sktest.TempDir("sk-arc-interop-")
records = {}


def keygen(domain, selector, *extra):
    path = tmp.join("%s-%s.pem" % (selector, domain))
    r = sk("dkim", "keygen", "--domain", domain, "--selector", selector, "--out", path, *extra)
    expect(r.returncode == 0, "keygen %s: %s" % (selector, r.stderr))
    value = re.search(r"^value: (.*)$", r.stdout.decode(), re.M).group(1)
    records["%s._domainkey.%s" % (selector, domain)] = re.findall(r'"([^"]*)"', value)
    return path


rsa_pem = keygen(DOMAIN, "rsa")
ed_pem = keygen(DOMAIN, "ed", "--type", "ed25519")
list_pem = keygen(LIST, "arc")
# dkimpy reads RSA keys as PKCS#1 ("RSA PRIVATE KEY").
rsa_pkcs1 = openssl("pkey", "-in", rsa_pem, "-traditional")
list_pkcs1 = openssl("pkey", "-in", list_pem, "-traditional")
records["flaky._domainkey." + DOMAIN] = records["rsa._domainkey." + DOMAIN]
zone = {name: {"TXT": [strings]} for name, strings in records.items()}
zone["flaky._domainkey." + DOMAIN] = {"SERVFAIL": True}

# Our sealing hops: (key file, domain, selector, authserv-id).
OURS = {"r": (rsa_pem, DOMAIN, "rsa", "mx.example.org"),
        "e": (ed_pem, DOMAIN, "ed", "mx.example.org"),
        "l": (list_pem, LIST, "arc", "mail.lists.example.net")}
# dkimpy's: (PKCS#1 key, domain, selector, authserv-id).
THEIRS = {"R": (rsa_pkcs1, DOMAIN, "rsa", "relay.example.org"),
          "L": (list_pkcs1, LIST, "arc", "in.lists.example.net")}


ATTACHMENT = base64.encodebytes(bytes(range(256)) * 4).replace(b"\n", b"\r\n")
MESSAGES = {
    "plain": msg(["From: Zoe <zoe@example.org>", "To: list@lists.example.net",
                  "Subject: Hello", "Date: Mon, 1 Dec 2025 10:00:00 +0000",
                  "Message-ID: <1@example.org>"], b"Hello list,\r\n\r\nsee you.\r\n"),
    "folded-long": msg(["From: Zoe <zoe@example.org>",
                        "To: a@example.net,\r\n  b@example.net,\r\n\tc@example.net",
                        "Subject: " + " ".join("word%d" % i for i in range(40))
                        + "\r\n  continued   with   spaces\t",
                        "Date: Mon, 1 Dec 2025 10:00:00 +0000"],
                       b"Body  with \t runs  of   space\t \r\n  indented\r\n\r\n\r\n"),
    "empty-body": msg(["From: zoe@example.org", "To: list@lists.example.net",
                       "Subject: empty"], b""),
    "utf8": msg(["From: =?utf-8?q?Zo=C3=AB?= <zoe@example.org>", "To: list@lists.example.net",
                 "Subject: Gr\u00fc\u00dfe", "MIME-Version: 1.0",
                 "Content-Type: text/plain; charset=utf-8"],
                "Gr\u00fc\u00dfe \u2014 \u65e5\u672c\u8a9e\r\n".encode()),
    "attachment": msg(["From: zoe@example.org", "To: list@lists.example.net",
                       "Subject: report", "MIME-Version: 1.0",
                       'Content-Type: multipart/mixed; boundary="b1"'],
                      b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
                      b"--b1\r\nContent-Type: application/octet-stream\r\n"
                      b"Content-Transfer-Encoding: base64\r\n\r\n" + ATTACHMENT + b"--b1--\r\n"),
}


def tamper_body(m):
    return m + b"Appended after sealing.\r\n"


def tamper_header(m):
    return re.sub(rb"(?m)^Subject: ", b"Subject: [list] ", m, count=1)


def tamper_aar1(m):
    return re.sub(rb"(ARC-Authentication-Results: i=1; [^;]*;)", rb"\1 dkim=pass", m, count=1)


# A tag of the field of instance 1, wherever the field is folded.
def tamper_ams1(m):
    return re.sub(rb"(ARC-Message-Signature: i=1;(?:[^\r]|\r\n(?=[ \t]))*?[ \t]t=)(\d)", rb"\g<1>1\2",
                  m, count=1)


def tamper_as1(m):
    return re.sub(rb"(ARC-Seal: i=1;(?:[^\r]|\r\n(?=[ \t]))*?[ \t]t=)(\d)", rb"\g<1>1\2", m, count=1)


TAMPERS = (("body", tamper_body), ("Subject", tamper_header), ("AAR 1", tamper_aar1),
           ("AMS 1", tamper_ams1), ("AS 1", tamper_as1))

with DNSTestServer(zone) as dns:
    dnsfunc = txt_lookup(dns.port)

    def dkimpy_verify(m):
        cv, _, reason = dkim.arc_verify(m, dnsfunc=dnsfunc)
        return cv, reason

    def our_verify(m, *extra):
        r = sk("arc", "verify", "--dns-server", dns.address, *extra, input=m)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def our_seal(m, hop, *extra, ar="spf=pass smtp.mailfrom=example.org"):
        key, domain, selector, srv = OURS[hop]
        return sk("arc", "seal", "--key", key, "--domain", domain, "--selector", selector,
                  "--authserv-id", srv, "--ar", ar, "--dns-server", dns.address, *extra,
                  input=m)

    def dkimpy_seal(m, hop):
        """dkimpy takes the results and cv= from the Authentication-Results
        field bearing its authserv-id, as a hop that verified would write
        it; the field stays in the message, as it would."""
        key, domain, selector, srv = THEIRS[hop]
        cv = dkimpy_verify(m)[0] if b"ARC-Seal" in m else None
        results = "spf=pass smtp.mailfrom=example.org"
        if cv:
            results += "; arc=" + cv.decode()
        m = ("Authentication-Results: %s; %s\r\n" % (srv, results)).encode() + m
        sets = dkim.ARC(m, signature_algorithm=b"rsa-sha256").sign(
            selector.encode(), domain.encode(), key, srv.encode())
        expect(len(sets) == 3, "dkimpy seals hop %s" % hop)
        return b"".join(sets) + m

    def seal_chain(m, hops):
        for hop in hops:
            if hop in OURS:
                r = our_seal(m, hop)
                expect(r.returncode == 0, "seal %s: %d %s" % (hop, r.returncode, r.stderr))
                expect(r.stdout.endswith(m), "the message follows the new set unchanged")
                m = r.stdout
            else:
                m = dkimpy_seal(m, hop)
        return m

    def check_chain(case, m, n, dkimpy_too):
        rc, out, err = our_verify(m)
        expect(rc == 0 and out.startswith("arc=pass header.oldest-pass=0 (%d ARC set" % n),
               "%s: we verify it: %d %s %s" % (case, rc, out, err))
        if dkimpy_too:
            cv, reason = dkimpy_verify(m)
            expect(cv == b"pass", "%s: dkimpy verifies it: %s %s" % (case, cv, reason))
        for how, t in TAMPERS:
            bad = t(m)
            expect(bad != m, "%s: the %s tamper changed something" % (case, how))
            rc, out, _ = our_verify(bad)
            expect(rc == 65 and out.startswith("arc=fail"),
                   "%s: we refuse it with %s changed: %d %s" % (case, how, rc, out))
            if dkimpy_too:
                cv, reason = dkimpy_verify(bad)
                expect(cv != b"pass", "%s: dkimpy refuses it with %s changed: %s" % (case, how,
                                                                                      reason))

    # Ours, dkimpy's, and both in turn, over every message.
    for name, m in MESSAGES.items():
        for hops in ("r", "rl", "rlr", "R", "RL", "RLR", "rL", "Rl", "RlR", "lRl"):
            check_chain("%s %s" % (name, hops), seal_chain(m, hops), len(hops), True)
    # Ed25519 (and Ed25519 mixed with RSA): ours alone, dkimpy's ARC having
    # rsa-sha256 only (so it cannot seal after an Ed25519 set either: it
    # finds the chain failed).
    for hops in ("e", "re", "ere", "Re"):
        m = seal_chain(MESSAGES["plain"], hops)
        if "R" not in hops:
            expect(b"a=ed25519-sha256" in m, "%s: sealed with Ed25519" % hops)
        check_chain("plain %s" % hops, m, len(hops), False)

    # What the command puts in the AAR: --ar, and the chain's status.
    m = MESSAGES["plain"]
    one = seal_chain(m, "r")
    expect(re.search(rb"ARC-Authentication-Results: i=1; mx\.example\.org; spf=pass\s+"
                     rb"smtp\.mailfrom=example\.org;\s+arc=none\r\n", one),
           "the AAR has --ar and arc=none: %r" % one[:1200])
    two = seal_chain(one, "l")
    expect(re.search(rb"ARC-Seal: i=2; a=rsa-sha256; cv=pass;", two), "cv=pass at 2")
    expect(re.search(rb"arc=pass\s+header\.oldest-pass=0\r\n", two), "arc=pass in AAR 2")
    r = our_seal(two, "r", ar="dkim=pass header.d=example.org; arc=pass (checked by hand)")
    expect(r.returncode == 0 and b"arc=pass (checked by hand)\r\n" in r.stdout
           and r.stdout.count(b"arc=pass") == 2, "an arc= in --ar is kept as it is")

    # A list verifies the chain as it arrives (pass), adds a footer, and
    # seals with that status: the chain passes, and oldest-pass says where
    # the run of AMSes that still verify starts.
    footer = tamper_body(one)
    r = our_seal(footer, "l", "--cv", "pass")
    expect(r.returncode == 0, "the list seals with --cv pass: %s" % r.stderr)
    listed = r.stdout
    rc, out, _ = our_verify(listed, "--json", "--remote-ip", "192.0.2.7")
    j = json.loads(out) if out.startswith("{") else {}
    expect(rc == 0 and j.get("result") == "pass" and j.get("oldest_pass") == 2
           and j.get("remote_ip") == "192.0.2.7" and j["sets"][0]["ams"]["result"] == "fail"
           and j["sets"][1]["as"]["domain"] == LIST, "oldest-pass 2 in JSON: %s" % out)
    rc, out, _ = our_verify(listed, "--remote-ip", "192.0.2.7")
    expect(out.startswith("arc=pass header.oldest-pass=2 smtp.remote-ip=192.0.2.7 ("),
           "the arc= line: " + out)
    cv, reason = dkimpy_verify(listed)
    expect(cv == b"pass", "dkimpy verifies a chain whose AMS 1 no longer does: %s" % reason)

    # A chain broken on the way: sealed with cv=fail, the end of the chain.
    broken = tamper_body(two)
    r = our_seal(broken, "r")
    expect(r.returncode == 0 and re.search(rb"ARC-Seal: i=3; a=rsa-sha256; cv=fail;", r.stdout)
           and re.search(rb"arc=fail", r.stdout), "sealed with cv=fail: %s" % r.stderr)
    ended = r.stdout
    rc, out, _ = our_verify(ended)
    expect(rc == 65 and "says cv=fail: the chain ended" in out, "cv=fail ends it: " + out)
    cv, reason = dkimpy_verify(ended)
    expect(cv != b"pass", "dkimpy does not pass it either: %s" % reason)
    for args in ([], ["--cv", "pass"]):
        r = our_seal(ended, "r", *args)
        expect(r.returncode == 65 and b"ends with cv=fail" in r.stderr and not r.stdout,
               "nobody seals after cv=fail %s: %d %s" % (args, r.returncode, r.stderr))

    # --cv given: no verification; one that does not fit the message.
    r = our_seal(m, "r", "--cv", "pass")
    expect(r.returncode == 65 and b"cv must be none" in r.stderr, "--cv pass without a chain")
    r = our_seal(one, "l", "--cv", "none")
    expect(r.returncode == 65 and b"cv cannot be none" in r.stderr, "--cv none on a chain")

    # Keys: a DNS failure is temporary (no cv=fail seal for it); none is a fail.
    r = sk("arc", "seal", "--key", rsa_pem, "--domain", DOMAIN, "--selector", "flaky",
           "--authserv-id", "mx.example.org", "--ar", "spf=pass", "--cv", "none", input=m)
    flaky = r.stdout
    expect(r.returncode == 0, "sealed with the flaky selector: %s" % r.stderr)
    rc, out, _ = our_verify(flaky)
    expect(rc == 75 and out.startswith("arc=fail") and "failed for now" in out,
           "SERVFAIL: %d %s" % (rc, out))
    r = our_seal(flaky, "r")
    expect(r.returncode == 75 and b"could not be verified for now" in r.stderr and not r.stdout,
           "no seal over a DNS failure: %d %s" % (r.returncode, r.stderr))
    rc, out, _ = our_verify(re.sub(rb"s=rsa;", b"s=gone;", one))
    expect(rc == 65 and "arc=fail" in out, "a key that is not there: %d %s" % (rc, out))
    rc, out, _ = our_verify(m)
    expect(rc == 65 and out.startswith("arc=none"), "no chain: %d %s" % (rc, out))

    # LF line ends in, LF line ends out.
    lf = m.replace(b"\r\n", b"\n")
    r = our_seal(lf, "e")
    expect(r.returncode == 0 and b"\r" not in r.stdout and r.stdout.endswith(lf), "LF kept")
    rc, out, _ = our_verify(r.stdout)
    expect(rc == 0, "an LF message sealed verifies: " + out)

# Arguments.
m = MESSAGES["plain"]
for args, want in ((["seal", "--domain", DOMAIN, "--selector", "rsa", "--authserv-id", "x",
                     "--ar", "spf=pass"], b"--key"),
                   (["seal", "--key", rsa_pem, "--domain", "bad domain", "--selector", "rsa",
                     "--authserv-id", "x", "--ar", "spf=pass"], b"--domain"),
                   (["seal", "--key", rsa_pem, "--domain", DOMAIN, "--selector", "rsa",
                     "--ar", "spf=pass"], b"--authserv-id"),
                   (["seal", "--key", rsa_pem, "--domain", DOMAIN, "--selector", "rsa",
                     "--authserv-id", "x"], b"--ar"),
                   (["seal", "--key", rsa_pem, "--domain", DOMAIN, "--selector", "rsa",
                     "--authserv-id", "x", "--ar", "spf=pass", "--cv", "maybe"], b"--cv"),
                   (["seal", "--key", rsa_pem, "--domain", DOMAIN, "--selector", "rsa",
                     "--authserv-id", "x", "--ar", "spf=pass\nX-Injected: 1", "--cv", "none"],
                    b"results text"),
                   (["verify", "--key", rsa_pem], b"--key does not go with verify"),
                   (["seal", "--json"], b"--json does not go with seal"),
                   (["check"], b"unknown action"),
                   ([], b"give an action")):
    r = sk("arc", *args, input=m)
    expect(r.returncode == 64 and want in r.stderr, "arc %s: %d %s" % (args, r.returncode,
                                                                       r.stderr))
r = sk("arc", "seal", "--key", tmp.join("none.pem"), "--domain", DOMAIN, "--selector", "s",
       "--authserv-id", "x", "--ar", "spf=pass", input=m)
expect(r.returncode == 66 and tmp.join("none.pem").encode() in r.stderr, "a missing key file")
r = sk("arc", "verify", "--dns-server", "not-an-address", input=one)
expect(r.returncode == 78, "a bad --dns-server: %d %s" % (r.returncode, r.stderr))

tmp.cleanup()
if failures:
    print("%d failures" % len(failures))
    sys.exit(1)
print("ok")
