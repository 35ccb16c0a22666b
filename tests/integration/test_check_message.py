#!/usr/bin/python3
"""smtpkit check --message: the inbound checks on a saved message, against
a test zone (dns_server.py). A message signed with `smtpkit dkim sign` and
sent from an address SPF authorises gives dkim=pass spf=pass dmarc=pass
(in the checklist and in the Authentication-Results field printed); the
same message with its body changed and sent as another domain's bounce
address fails DKIM and DMARC, with the reason and the fix; --json carries
the same; an Authentication-Results field already claiming our name is
noted; usage errors name the argument."""

import functools
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

tmp = sktest.TempDir("sk-check-message-")
failures = []


# Every failed check is collected and reported at the end.
expect = functools.partial(sktest.expect, failures=failures)


key = tmp.join("s1.pem")
r = sktest.smtpkit("dkim", "keygen", "--domain", "example.test", "--selector", "s1", "--out", key,
                   timeout=60)
sktest.check(r.returncode == 0, "keygen: %s" % r.stderr)
KEY = re.findall(r'"([^"]*)"', re.search(r"^value: (.*)$", r.stdout, re.M).group(1))

ZONE = {
    "example.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
    "s1._domainkey.example.test": {"TXT": [KEY]},
    "_dmarc.example.test": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.test"]},
    "mail.example.test": {"A": ["192.0.2.10"], "TXT": ["v=spf1 a -all"]},
    "other.test": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
}

MESSAGE = ("From: Zoe <zoe@example.test>\n"
           "To: bob@example.net\n"
           "Subject: the report\n"
           "Date: Mon, 06 Jan 2025 10:00:00 +0000\n"
           "Message-ID: <1@example.test>\n"
           "\n"
           "Hello Bob,\n"
           "the report is attached.\n")


def write(name, text):
    path = tmp.join(name)
    with open(path, "w") as f:
        f.write(text)
    return path


def check_message(dns, path, *args, mail_from="zoe@example.test", ip="192.0.2.10"):
    return sktest.smtpkit("check", "--message", path, "--ip", ip, "--helo", "mail.example.test",
                          "--mail-from", mail_from, "--authserv-id", "mx.receiver.test",
                          "--dns-server", dns.address, *args, timeout=60)


def main():
    plain = write("plain.eml", MESSAGE)
    r = sktest.smtpkit("dkim", "sign", "--key", key, "--domain", "example.test", "--selector",
                       "s1", plain, timeout=60)
    sktest.check(r.returncode == 0, "sign: %s" % r.stderr)
    signed_text = r.stdout
    signed = write("signed.eml", signed_text)
    tampered = write("tampered.eml", signed_text.replace("attached", "not attached"))

    with DNSTestServer(ZONE) as dns:
        # The signed message from an authorised address: all pass.
        r = check_message(dns, signed)
        out = r.stdout
        expect(r.returncode == 0, "signed: exit %d\n%s%s" % (r.returncode, out, r.stderr))
        for needle in ["[ OK ] dkim      pass: d=example.test s=s1 a=rsa-sha256: verified",
                       "[ OK ] spf       pass: the client may send as example.test",
                       "[ OK ] spf-helo  pass",
                       "[ OK ] dmarc     pass: From example.test",
                       "Authentication-Results: mx.receiver.test;",
                       "dkim=pass header.d=example.test header.i=@example.test header.s=s1",
                       "spf=pass smtp.mailfrom=zoe@example.test",
                       "spf=pass smtp.helo=mail.example.test",
                       "dmarc=pass (p=reject dis=none) header.from=example.test",
                       "result: OK\n"]:
            expect(needle in out, "signed: no %r in\n%s" % (needle, out))

        # Changed after signing, and sent as other.test's bounce address
        # (SPF passes, but for a domain not aligned with From): DKIM and
        # DMARC fail, each with its fix.
        r = check_message(dns, tampered, mail_from="bounce@other.test")
        out = r.stdout
        expect(r.returncode == 65, "tampered: exit %d\n%s%s" % (r.returncode, out, r.stderr))
        for needle in ["[FAIL] dkim      fail: d=example.test s=s1 a=rsa-sha256: body hash did not "
                       "verify",
                       "fix     the message was changed after it was signed",
                       "[ OK ] spf       pass: the client may send as other.test",
                       "[FAIL] dmarc     fail: From example.test; no aligned pass",
                       "; p=reject: the receiver is asked to refuse it",
                       "dkim d=example.test: did not pass",
                       "spf other.test: pass, not aligned with From",
                       "fix     for DMARC to pass, sign with d=example.test",
                       "dkim=fail reason=\"body hash did not verify\" header.d=example.test",
                       "spf=pass smtp.mailfrom=bounce@other.test",
                       "dmarc=fail (p=reject dis=reject) header.from=example.test",
                       "result: 2 problems, 0 warnings (exit 65)"]:
            expect(needle in out, "tampered: no %r in\n%s" % (needle, out))

        # From an address SPF does not list, and unsigned: SPF fails too,
        # the missing signature is a warning.
        r = check_message(dns, plain, ip="203.0.113.5")
        out = r.stdout
        expect(r.returncode == 65 and "[WARN] dkim      none: the message has no DKIM-Signature"
               in out and "[FAIL] spf       fail:" in out and "dkim=none" in out
               and "[FAIL] dmarc" in out, "unsigned, stranger:\n" + out)

        # --json: the same checks and the field.
        r = check_message(dns, tampered, "--json", mail_from="bounce@other.test")
        expect(r.returncode == 65, "--json: exit %d %s" % (r.returncode, r.stderr))
        o = json.loads(r.stdout)
        expect(o["status"] == "fail" and o["exit_code"] == 65 and o["problems"] == 2
               and o["ip"] == "192.0.2.10" and o["authserv_id"] == "mx.receiver.test",
               "--json head: %r" % {k: o[k] for k in o if k != "checks"})
        by = {}
        for c in o["checks"]:
            by.setdefault(c["check"], []).append(c)
        expect(by["dkim"][0]["result"] == "fail" and by["dkim"][0]["domain"] == "example.test"
               and by["dkim"][0]["selector"] == "s1" and by["dkim"][0]["fix"],
               "--json dkim: %r" % by.get("dkim"))
        expect(by["spf"][0]["result"] == "pass"
               and by["spf"][0]["property_value"] == "bounce@other.test", "--json spf")
        expect(by["dmarc"][0]["result"] == "fail" and by["dmarc"][0]["from_domain"] ==
               "example.test" and by["dmarc"][0]["disposition"] == "reject"
               and by["dmarc"][0]["spf_aligned"] is False, "--json dmarc: %r" % by.get("dmarc"))
        ar = o["authentication_results"]
        expect(ar.startswith("Authentication-Results: mx.receiver.test;") and ar.endswith("\r\n")
               and "dmarc=fail" in ar, "--json field: %r" % ar)

        # An Authentication-Results field claiming our name is noted.
        forged = write("forged.eml", "Authentication-Results: mx.receiver.test; dkim=pass\n"
                       + signed_text)
        r = check_message(dns, forged)
        expect(r.returncode == 0 and "[INFO] authres   the message already has 1 "
               "Authentication-Results field claiming to be from mx.receiver.test" in r.stdout,
               "forged field:\n" + r.stdout)

        # The null sender: the MAIL FROM identity is postmaster@HELO.
        r = check_message(dns, signed, mail_from="")
        expect(r.returncode == 0 and "smtp.mailfrom=postmaster@mail.example.test" in r.stdout,
               "null sender:\n" + r.stdout)

        # A DNS failure is temporary (75).
        dns.load(dict(ZONE, **{"s1._domainkey.example.test": {"SERVFAIL": True},
                               "example.test": {"TXT": ["v=spf1 -all"]}}))
        r = check_message(dns, signed, ip="203.0.113.5", mail_from="x@other.test")
        expect(r.returncode == 65 and "temperror" in r.stdout, "servfail with failures:\n"
               + r.stdout)
        dns.load(dict(ZONE, **{"s1._domainkey.example.test": {"SERVFAIL": True}}))
        r = check_message(dns, signed)
        expect(r.returncode == 75 and "[FAIL] dkim      temperror" in r.stdout,
               "servfail: exit %d\n%s" % (r.returncode, r.stdout))

    # Usage and input errors.
    usage = [
        (["--message", signed], "--message needs --ip"),
        (["--message", signed, "--ip", "192.0.2.1"], "--message needs --helo"),
        (["--message", signed, "--ip", "192.0.2.1", "--helo", "h.test"], "--mail-from"),
        (["--message", signed, "--ip", "192.0.2.1", "--helo", "h.test", "--mail-from", "a@b.test",
          "--selector", "s1"], "--selector is for checking a domain"),
        (["example.test", "--message", signed], "not both"),
    ]
    for args, needle in usage:
        r = sktest.smtpkit("check", *args, timeout=30)
        expect(r.returncode == 64 and needle in r.stderr,
               "usage %s: exit %d %s" % (args, r.returncode, r.stderr))
    r = sktest.smtpkit("check", "--message", tmp.join("missing.eml"), "--ip", "192.0.2.1",
                       "--helo", "h.test", "--mail-from", "a@b.test", timeout=30)
    expect(r.returncode == 66 and "missing.eml" in r.stderr, "missing message: %d %s"
           % (r.returncode, r.stderr))
    tmp.cleanup()
    if failures:
        for f in failures:
            print("FAIL:", f, file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
