#!/usr/bin/python3
"""smtpkit dmarc against a zone served by dns_server.py: the records found
(the From domain's, else its organizational domain's from the Public Suffix
List), alignment, p/sp/pct, several and unusable records, DNS failures as
temperror, a saved message's From field, the JSON output and the exit
codes the help documents."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

ZONE = {
    "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.org",
                                   "v=spf1 -all"]},
    "_dmarc.example.co.uk": {"TXT": [["v=DMARC1; p=qua", "rantine; adkim=s"]]},
    "_dmarc.co.uk": {"TXT": ["v=DMARC1; p=none"]},
    "_dmarc.two.test": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "_dmarc.broken.test": {"TXT": ["v=DMARC1; p=reject; p=none"]},
    "_dmarc.zero.test": {"TXT": ["v=DMARC1; p=reject; pct=0"]},
    "_dmarc.down.test": {"SERVFAIL": True},
}

tmp = sktest.TempDir("sk-dmarc-cli-")


def dmarc(dns, *args, input=None):
    return sktest.smtpkit("dmarc", "--dns-server", dns.address, *args, timeout=60, input=input)


def expect_run(r, rc, *needles):
    """Exit code rc, and every needle in stdout."""
    sktest.expect(r.returncode == rc, "exit %d, want %d" % (r.returncode, rc), r)
    for n in needles:
        sktest.expect(n in r.stdout, "%r not in output:\n%s" % (n, r.stdout))


with DNSTestServer(ZONE) as dns:
    # SPF aligned through the organizational domain's record, with sp=.
    r = dmarc(dns, "--from-domain", "News.Example.ORG", "--spf", "pass:bounce.example.org")
    expect_run(r, 0, "dmarc=pass (sp=quarantine, disposition none)",
           "_dmarc.example.org: p=reject sp=quarantine", "spf:          pass bounce.example.org (aligned)")
    sktest.check(dns.queries()[-2:] == [("_dmarc.news.example.org", "TXT"),
                                        ("_dmarc.example.org", "TXT")],
                 "queries: %s" % dns.queries())

    # Nothing aligned: p=reject applies.
    r = dmarc(dns, "--from-domain", "example.org", "--spf", "pass:example.net",
              "--dkim", "pass:esp.example", "--dkim", "fail:example.org", "--json")
    expect_run(r, 1)
    j = json.loads(r.stdout)
    sktest.check(j["result"] == "fail" and j["policy"] == "reject" and j["disposition"] == "reject"
                 and j["policy_tag"] == "p" and j["record"]["rua"] == ["mailto:d@example.org"],
                 "json: %s" % j)

    # The PSL: mail.example.co.uk's organizational domain is example.co.uk
    # (not co.uk); its record is two strings; adkim=s wants the exact d=.
    r = dmarc(dns, "--from-domain", "mail.example.co.uk", "--dkim", "pass:example.co.uk", "--json")
    expect_run(r, 1)
    j = json.loads(r.stdout)
    sktest.check(j["org_domain"] == "example.co.uk" and j["record"]["domain"] == "example.co.uk"
                 and j["record"]["adkim"] == "s" and j["disposition"] == "quarantine", "json: %s" % j)
    r = dmarc(dns, "--from-domain", "mail.example.co.uk", "--dkim", "pass:mail.example.co.uk")
    expect_run(r, 0, "dkim:         pass d=mail.example.co.uk (aligned)")

    # pct=0: the next lower policy.
    r = dmarc(dns, "--from-domain", "zero.test", "--json")
    expect_run(r, 1)
    j = json.loads(r.stdout)
    sktest.check(j["disposition"] == "quarantine" and j["sampled_out"], "json: %s" % j)

    # No record, several records, an unusable record, a DNS failure.
    expect_run(dmarc(dns, "--from-domain", "a.nothing.test"), 2, "dmarc=none",
           "no DMARC record at _dmarc.a.nothing.test nor _dmarc.nothing.test")
    expect_run(dmarc(dns, "--from-domain", "two.test"), 2, "several DMARC records at _dmarc.two.test")
    expect_run(dmarc(dns, "--from-domain", "broken.test"), 65, "dmarc=permerror", "a tag given twice")
    expect_run(dmarc(dns, "--from-domain", "down.test", "--spf", "pass:down.test"), 75,
           "dmarc=temperror")

    # The From field of a saved message, and of one with two From fields.
    msg = os.path.join(tmp.path, "m.eml")
    with open(msg, "w") as f:
        f.write("From: Zoe <zoe@example.org>\r\nSubject: hi\r\n\r\nFrom: x@evil.example\r\n")
    expect_run(dmarc(dns, "--message", msg, "--dkim", "pass:example.org"), 0, "dmarc=pass")
    expect_run(dmarc(dns, "--message", "-", input="From: a@example.org\nFrom: b@evil.example\n\n"), 65,
           "dmarc=permerror", "several From fields")
    r = dmarc(dns, "--message", os.path.join(tmp.path, "missing.eml"))
    sktest.check(r.returncode == 66 and "cannot read" in r.stderr, "missing file: %s" % r.stderr)

# Arguments: each mistake named, exit 64; a bad resolver is a configuration error.
for args, needle in (
        ([], "give one of --from-domain"),
        (["--from-domain", "a.example", "--message", "m"], "give one of"),
        (["--from-domain", "not a domain"], "--from-domain: 'not a domain' is not a domain name"),
        (["--from-domain", "a.example", "--spf", "pass"], "--spf 'pass': expected RESULT:DOMAIN"),
        (["--from-domain", "a.example", "--dkim", "great:a.example"], "--dkim 'great:a.example'"),
        (["--from-domain", "a.example", "--dkim", "pass:[192.0.2.1]"], "is not a domain name"),
        (["--from-domain", "a.example", "extra"], "unexpected argument 'extra'")):
    r = sktest.smtpkit("dmarc", *args, timeout=30)
    sktest.check(r.returncode == 64 and needle in r.stderr,
                 "%s: exit %d, stderr %s" % (args, r.returncode, r.stderr))
r = sktest.smtpkit("dmarc", "--from-domain", "a.example", "--dns-server", "nowhere", timeout=30)
sktest.check(r.returncode == 78 and "nowhere" in r.stderr, "bad resolver: %s" % r.stderr)

tmp.cleanup()
print("ok")
