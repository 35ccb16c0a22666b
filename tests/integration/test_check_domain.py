#!/usr/bin/python3
"""smtpkit check DOMAIN against a test zone (dns_server.py) and an HTTPS
server on loopback serving MTA-STS policies under a throw-away CA.

A clean domain passes every check. Each planted domain is the clean one
with one thing broken (no SPF, two SPF records, 11 DNS lookups, a DKIM key
of 512 bits, t=y, no DMARC, an MTA-STS policy whose mx patterns miss an MX
host, one in testing mode, a policy behind a redirect, a policy host whose
certificate is for another name), and the sending address runs plant a PTR
that does not resolve back and a listed address: each must be reported
once, with its fix, and nothing else. --json carries the same checks. No
real block list is ever asked: every run with --ip names test zones."""

import base64
import functools
import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

tmp = sktest.TempDir("sk-check-domain-")
failures = []


# Every failed check is collected and reported at the end.
expect = functools.partial(sktest.expect, failures=failures)


def strings(record):
    """A TXT record as DNS strings of at most 255 octets (RFC 1035 3.3.14)."""
    return [record[i:i + 255] for i in range(0, len(record), 255)]


# ---- keys ----


def keygen(domain, selector, *extra):
    path = tmp.join("%s-%s.pem" % (domain, selector))
    r = sktest.smtpkit("dkim", "keygen", "--domain", domain, "--selector", selector, "--out", path,
                       *extra, timeout=60)
    sktest.check(r.returncode == 0, "keygen: %s" % r.stderr)
    value = re.search(r"^value: (.*)$", r.stdout, re.M).group(1)
    return re.findall(r'"([^"]*)"', value)


def rsa_record(bits):
    """A key record for an RSA key of any size (keygen refuses under 1024)."""
    key = tmp.join("rsa%d.pem" % bits)
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:%d" % bits, "-out", key], check=True, capture_output=True,
                   timeout=60)
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True, timeout=60).stdout
    b64 = base64.b64encode(der).decode()
    return strings("v=DKIM1; k=rsa; p=" + b64)


RSA2048 = keygen("clean.test", "s1")
ED25519 = keygen("clean.test", "ed", "--type", "ed25519")
RSA512 = rsa_record(512)
RSA1024 = keygen("clean.test", "k1024", "--bits", "1024")

# ---- the zone: a clean domain, and the same with one thing broken ----

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx1.{d}\r\nmx: *.backup.{d}\r\nmax_age: 604800\r\n"


def domain_zone(d, **change):
    """The records of a clean domain d; change replaces (or, with None,
    removes) entries by name relative to d ("@" is d itself)."""
    z = {
        "@": {"MX": [[10, "mx1." + d], [20, "b1.backup." + d]],
              "TXT": ["v=spf1 ip4:192.0.2.0/24 include:_spf.%s -all" % d,
                      "site-verification=0123456789"]},
        "_spf": {"TXT": ["v=spf1 ip6:2001:db8::/32 -all"]},
        "mx1": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
        "b1.backup": {"A": ["192.0.2.11"]},
        "s1._domainkey": {"TXT": [RSA2048]},
        "ed._domainkey": {"TXT": [ED25519]},
        "_dmarc": {"TXT": ["v=DMARC1; p=reject; rua=mailto:dmarc-reports@" + d]},
        "_mta-sts": {"TXT": ["v=STSv1; id=20250101"]},
        "mta-sts": {"A": ["127.0.0.1"]},
        "_smtp._tls": {"TXT": ["v=TLSRPTv1; rua=mailto:tls-reports@" + d]},
    }
    for k, v in change.items():
        k = k.replace("__", ".")
        if v is None:
            z.pop(k, None)
        else:
            z[k] = v
    return {(d if k == "@" else "%s.%s" % (k, d)): v for k, v in z.items()}


LOOKUPS11 = "v=spf1 " + " ".join("include:i%d.lookups.test" % i for i in range(1, 12)) + " -all"

ZONE = {}
ZONE.update(domain_zone("clean.test"))
ZONE.update(domain_zone("nospf.test", **{"@": {"MX": [[10, "mx1.nospf.test"],
                                                      [20, "b1.backup.nospf.test"]]}}))
ZONE.update(domain_zone("twospf.test", **{"@": {
    "MX": [[10, "mx1.twospf.test"], [20, "b1.backup.twospf.test"]],
    "TXT": ["v=spf1 ip4:192.0.2.0/24 -all", "v=spf1 include:_spf.twospf.test -all"]}}))
ZONE.update(domain_zone("lookups.test", **{"@": {
    "MX": [[10, "mx1.lookups.test"], [20, "b1.backup.lookups.test"]],
    "TXT": [strings(LOOKUPS11)]}}))
for i in range(1, 12):
    ZONE["i%d.lookups.test" % i] = {"TXT": ["v=spf1 ip4:198.51.100.%d -all" % i]}
ZONE.update(domain_zone("weakkey.test", **{"s1._domainkey": {"TXT": [RSA512]}}))
ZONE.update(domain_zone("testkey.test", **{"s1._domainkey": {"TXT": [
    strings("".join(RSA2048).replace("v=DKIM1; k=rsa; ", "v=DKIM1; k=rsa; t=y; "))]}}))
ZONE.update(domain_zone("nodmarc.test", _dmarc=None))
ZONE.update(domain_zone("stsmx.test"))
ZONE.update(domain_zone("ststest.test"))
ZONE.update(domain_zone("stsredirect.test"))
ZONE.update(domain_zone("stscert.test"))
# The sending addresses: .10 is mx1.clean.test both ways; .20 names a host
# that is elsewhere; .66 is fine in DNS but listed.
ZONE["10.2.0.192.in-addr.arpa"] = {"PTR": ["mx1.clean.test"]}
ZONE["20.2.0.192.in-addr.arpa"] = {"PTR": ["mail.elsewhere.test"]}
ZONE["mail.elsewhere.test"] = {"A": ["192.0.2.21"]}
ZONE["66.2.0.192.in-addr.arpa"] = {"PTR": ["out66.clean.test"]}
ZONE["out66.clean.test"] = {"A": ["192.0.2.66"]}
ZONE["66.2.0.192.bl.test"] = {"A": ["127.0.0.2"], "TXT": ["listed: spam trap hits, see "
                                                         "https://bl.test/?192.0.2.66"]}
ZONE["bl.test"] = {"SOA": ["ns.bl.test", "hostmaster.bl.test", 1, 3600, 600, 86400, 60]}
ZONE["10.2.0.192.refusing.test"] = {"A": ["127.255.255.254"]}
ZONE["refusing.test"] = {}

# ---- the policy host ----

POLICIES = {
    "clean.test": (200, "text/plain; charset=utf-8", POLICY.format(d="clean.test")),
    "nospf.test": (200, "text/plain", POLICY.format(d="nospf.test")),
    "twospf.test": (200, "text/plain", POLICY.format(d="twospf.test")),
    "lookups.test": (200, "text/plain", POLICY.format(d="lookups.test")),
    "weakkey.test": (200, "text/plain", POLICY.format(d="weakkey.test")),
    "testkey.test": (200, "text/plain", POLICY.format(d="testkey.test")),
    "nodmarc.test": (200, "text/plain", POLICY.format(d="nodmarc.test")),
    # enforce, but the patterns miss the backup MX host
    "stsmx.test": (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx1.stsmx.test\n"
                   "mx: *.other.test\nmax_age: 604800\n"),
    "ststest.test": (200, "text/plain", POLICY.format(d="ststest.test").replace("enforce",
                                                                                 "testing")),
    "stsredirect.test": (301, "text/html", "https://www.stsredirect.test/mta-sts.txt"),
    "stscert.test": (200, "text/plain", POLICY.format(d="stscert.test")),
}
requests = []


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        requests.append((host, self.path))
        domain = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
        if self.path != "/.well-known/mta-sts.txt" or domain not in POLICIES:
            self.send_error(404)
            return
        status, ctype, body = POLICIES[domain]
        self.send_response(status)
        if status in (301, 302):
            self.send_header("Location", body)
            body = "moved"
        self.send_header("Content-Type", ctype)
        data = body.encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ca = sktest.TestCA(tmp.join("ca"))
# One certificate for every policy host but stscert.test's.
names = ["mta-sts." + d for d in POLICIES if d != "stscert.test"]
cert, key = ca.issue(names[0], sans=names)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PolicyHandler)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
HTTPS = "127.0.0.1:%d" % httpd.server_address[1]


def check(dns, domain, *args):
    argv = ["check", domain, "--dns-server", dns.address, "--ca-file", ca.cert,
            "--mta-sts-connect", HTTPS, "--selector", "s1"] + list(args)
    return sktest.smtpkit(*argv, timeout=120)


LINE = re.compile(r"^  \[(?P<mark> OK |INFO|WARN|FAIL)\] (?P<check>\S+)\s+(?P<detail>.*)$")


def lines(out):
    """[(mark, check, detail, fix or None)] from the text output."""
    items = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            items.append([m.group("mark").strip(), m.group("check"), m.group("detail"), None])
        elif line.startswith("         fix     ") and items:
            items[-1][3] = line[len("         fix     "):]
    return items


def expect_only(r, where, rc, mark=None, check_name=None, detail=None, fix=None):
    """Exit code rc; every line OK or INFO but exactly one, of mark for
    check_name, whose detail and fix contain the given texts."""
    out = r.stdout + r.stderr
    expect(r.returncode == rc, "%s: exit %d, want %d\n%s" % (where, r.returncode, rc, out))
    items = lines(r.stdout)
    expect(items, "%s: no checklist\n%s" % (where, out))
    bad = [i for i in items if i[0] in ("WARN", "FAIL")]
    if mark is None:
        expect(not bad, "%s: want all OK, got %s\n%s" % (where, bad, out))
        return items
    expect(len(bad) == 1, "%s: want exactly one %s, got %s\n%s" % (where, mark, bad, out))
    if len(bad) == 1:
        m, c, d, f = bad[0]
        expect(m == mark and c == check_name, "%s: %s %s, want %s %s" % (where, m, c, mark,
                                                                        check_name))
        expect(detail in d, "%s: detail %r lacks %r" % (where, d, detail))
        expect(f is not None and fix in f, "%s: fix %r lacks %r" % (where, f, fix))
    return items


def main():
    with DNSTestServer(ZONE) as dns:
        # The clean domain: everything OK, with the sending address too.
        r = check(dns, "clean.test", "--selector", "ed", "--ip", "192.0.2.10", "--dnsbl", "bl.test")
        items = expect_only(r, "clean", 0)
        got = {c for _, c, _, _ in items}
        expect(got == {"mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "ptr", "dnsbl"},
               "clean: checks %s" % sorted(got))
        for needle in ["clean.test: 2 MX hosts, each with an address",
                       "10 mx1.clean.test 192.0.2.10 2001:db8::10",
                       "1 of 10 DNS lookups", "other addresses fail (-all in clean.test)",
                       "192.0.2.10 may send as clean.test",
                       "s1._domainkey.clean.test: an RSA key of 2048 bits",
                       "ed._domainkey.clean.test: an Ed25519 key",
                       "p=reject: mail that fails DMARC as clean.test is refused",
                       "record at _mta-sts.clean.test: id=20250101",
                       "policy mode enforce", "every MX host matches an mx pattern",
                       "TLS reports go to mailto:tls-reports@clean.test",
                       "192.0.2.10 is mx1.clean.test, which resolves back",
                       "192.0.2.10 is not listed on bl.test", "result: OK\n"]:
            expect(needle in r.stdout, "clean: no %r in\n%s" % (needle, r.stdout))
        expect(("mta-sts.clean.test", "/.well-known/mta-sts.txt") in requests,
               "the policy was fetched with the right Host and path: %s" % requests)

        # One planted problem each: reported once, with its fix.
        planted = [
            ("nospf.test", [], 65, "FAIL", "spf", "no SPF record at nospf.test",
             "publish one TXT record at nospf.test"),
            ("twospf.test", [], 65, "FAIL", "spf", "2 SPF records at twospf.test",
             "merge them into one"),
            ("lookups.test", [], 65, "FAIL", "spf", "more than 10 DNS lookups",
             "use fewer include:"),
            ("weakkey.test", [], 65, "FAIL", "dkim", "an RSA key of 512 bits",
             "smtpkit dkim keygen --domain weakkey.test"),
            ("testkey.test", [], 0, "WARN", "dkim", "says t=y (testing)", "remove t=y"),
            ("nodmarc.test", [], 65, "FAIL", "dmarc", "no DMARC record at _dmarc.nodmarc.test",
             "publish TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@nodmarc.test\""),
            ("stsmx.test", [], 65, "FAIL", "mta-sts",
             "MX host b1.backup.stsmx.test matches no mx pattern of the policy: senders that "
             "enforce MTA-STS will not deliver there", "add mx: lines for them"),
            ("ststest.test", [], 0, "WARN", "mta-sts", "policy mode testing",
             "set mode: enforce"),
            ("stsredirect.test", [], 65, "FAIL", "mta-sts",
             "HTTP 301, a redirect to https://www.stsredirect.test/mta-sts.txt (not followed",
             "with status 200 and no redirect"),
            ("stscert.test", [], 65, "FAIL", "mta-sts", "the policy could not be fetched",
             "needs a certificate for that name"),
            ("clean.test", ["--ip", "192.0.2.20", "--dnsbl", "bl.test"], 65, "FAIL", "ptr",
             "192.0.2.20 is mail.elsewhere.test, but that name does not resolve back",
             "publish mail.elsewhere.test A 192.0.2.20"),
            ("clean.test", ["--ip", "192.0.2.66", "--dnsbl", "bl.test"], 65, "FAIL", "dnsbl",
             "192.0.2.66 is listed on bl.test (127.0.0.2)", "ask for removal"),
            ("clean.test", ["--ip", "192.0.2.10", "--dnsbl", "refusing.test"], 0, "WARN",
             "dnsbl", "refusing.test refused the query (127.255.255.254): this is not an answer",
             "check from a resolver of your own"),
        ]
        for domain, extra, rc, mark, name, detail, fix in planted:
            r = check(dns, domain, *extra)
            expect_only(r, "%s %s" % (domain, " ".join(extra)), rc, mark, name, detail, fix)
        r = check(dns, "clean.test", "--ip", "192.0.2.66", "--dnsbl", "bl.test")
        expect("reason: listed: spam trap hits, see https://bl.test/?192.0.2.66" in r.stdout,
               "the list's TXT reason is shown:\n" + r.stdout)
        r = check(dns, "weakkey.test", "--selector", "k1024")
        expect("[FAIL] dkim      s1._domainkey.weakkey.test: an RSA key of 512 bits: under 1024 "
               "bits verifiers refuse the signature" in r.stdout, "512 bits:\n" + r.stdout)
        dns.load(dict(ZONE, **{"k1024._domainkey.weakkey.test": {"TXT": [RSA1024]}}))
        r = check(dns, "weakkey.test", "--selector", "k1024")
        expect("[WARN] dkim      k1024._domainkey.weakkey.test: an RSA key of 1024 bits: accepted"
               in r.stdout, "1024 bits:\n" + r.stdout)
        dns.load(ZONE)

        # Without --selector the DKIM check says what it needs; without --ip
        # there is no ptr or dnsbl line.
        r = sktest.smtpkit("check", "clean.test", "--dns-server", dns.address, "--ca-file",
                           ca.cert, "--mta-sts-connect", HTTPS, timeout=120)
        expect(r.returncode == 0 and "[INFO] dkim      no selector given" in r.stdout
               and "give --selector S" in r.stdout and "ptr" not in r.stdout
               and "dnsbl" not in r.stdout, "no selector, no ip:\n" + r.stdout)

        # --json: one object carrying every check.
        r = check(dns, "stsmx.test", "--ip", "192.0.2.10", "--dnsbl", "bl.test", "--json")
        expect(r.returncode == 65, "--json exit %d: %s" % (r.returncode, r.stderr))
        o = json.loads(r.stdout)
        expect(o["domain"] == "stsmx.test" and o["ip"] == "192.0.2.10" and o["status"] == "fail"
               and o["exit_code"] == 65 and o["problems"] == 1 and o["selectors"] == ["s1"]
               and o["dnsbl"] == ["bl.test"], "--json head: %r" % {k: o[k] for k in o
                                                                   if k != "checks"})
        names = {c["check"] for c in o["checks"]}
        expect(names == {"mx", "spf", "dkim", "dmarc", "mta-sts", "tls-rpt", "ptr", "dnsbl"},
               "--json checks: %s" % sorted(names))
        for c in o["checks"]:
            expect(set(c) >= {"check", "status", "detail", "fix", "temporary", "lines"}
                   and c["status"] in ("ok", "info", "warn", "fail"), "--json item %r" % c)
        fails = [c for c in o["checks"] if c["status"] == "fail"]
        expect(len(fails) == 1 and fails[0]["check"] == "mta-sts" and fails[0]["fix"]
               and fails[0]["mx_hosts"] == ["mx1.stsmx.test", "b1.backup.stsmx.test"],
               "--json failure: %r" % fails)
        mx = [c for c in o["checks"] if c["check"] == "mx"][0]
        expect([h["name"] for h in mx["hosts"]] == ["mx1.stsmx.test", "b1.backup.stsmx.test"]
               and mx["hosts"][0]["addresses"] == ["192.0.2.10", "2001:db8::10"],
               "--json mx: %r" % mx)
        spf = [c for c in o["checks"] if c["check"] == "spf" and "lookups" in c]
        expect(spf and spf[0]["lookups"] == 1 and spf[0]["lookups_max"] == 10,
               "--json spf: %r" % spf)
        policy = [c for c in o["checks"] if c.get("mode")]
        expect(policy and policy[0]["mode"] == "enforce" and policy[0]["max_age"] == 604800
               and policy[0]["mx"] == ["mx1.stsmx.test", "*.other.test"], "--json policy")

        # A DNS failure is temporary (75), not a problem with the domain.
        dns.load(dict(ZONE, **{"_dmarc.clean.test": {"SERVFAIL": True}}))
        r = check(dns, "clean.test")
        expect(r.returncode == 75 and "DMARC lookup failed for now" in r.stdout
               and "         retry   try again later" in r.stdout,
               "servfail: exit %d\n%s" % (r.returncode, r.stdout))
        dns.load(ZONE)
        # Likewise each TXT lookup of a check (the SPF record, a DKIM key, MTA-STS, TLS-RPT).
        for name, what in [("clean.test", "SPF"), ("s1._domainkey.clean.test", "DKIM key"),
                           ("_mta-sts.clean.test", "MTA-STS"),
                           ("_smtp._tls.clean.test", "TLS-RPT")]:
            dns.load(dict(ZONE, **{name: {"SERVFAIL": True}}))
            r = check(dns, "clean.test", "--json")
            items = [c for c in json.loads(r.stdout)["checks"]
                     if c["temporary"] and c["detail"].startswith(
                         "%s: the DNS lookup of TXT %s failed" % (what, name))]
            expect(r.returncode == 75 and len(items) == 1,
                   "servfail %s: exit %d\n%s" % (name, r.returncode, r.stdout))
        dns.load(ZONE)

        # No real block list was asked (every --ip run named test zones).
        asked = [q for q, _ in dns.queries() if "spamhaus" in q or "spamcop" in q]
        expect(not asked, "default block lists were queried: %s" % asked)

        # Usage errors name the argument (64); bad set-up is configuration (78).
        usage = [
            ([], "give a DOMAIN"),
            (["bad domain"], "'bad domain' is not a domain name"),
            (["clean.test", "--ip", "300.1.1.1"], "--ip '300.1.1.1'"),
            (["clean.test", "--selector", "a b"], "--selector 'a b'"),
            (["clean.test", "--dnsbl", "not a zone"], "--dnsbl 'not a zone'"),
            (["clean.test", "--mta-sts-connect", "localhost"], "--mta-sts-connect 'localhost'"),
            (["clean.test", "--timeout", "soon"], "--timeout 'soon'"),
            (["clean.test", "--helo", "x.test"], "--helo goes with --message"),
            (["clean.test", "other.test"], "unexpected argument 'other.test'"),
        ]
        for args, needle in usage:
            r = sktest.smtpkit("check", *args, timeout=30)
            expect(r.returncode == 64 and needle in r.stderr,
                   "usage %s: exit %d %s" % (args, r.returncode, r.stderr))
        r = sktest.smtpkit("check", "clean.test", "--dns-server", "not-an-address", timeout=30)
        expect(r.returncode == 78 and "not-an-address" in r.stderr,
               "bad --dns-server: %d %s" % (r.returncode, r.stderr))
        r = sktest.smtpkit("check", "clean.test", "--ca-file", tmp.join("missing.pem"),
                           timeout=30)
        expect(r.returncode == 78 and "missing.pem" in r.stderr,
               "missing --ca-file: %d %s" % (r.returncode, r.stderr))
    httpd.shutdown()
    httpd.server_close()
    tmp.cleanup()
    if failures:
        for f in failures:
            print("FAIL:", f, file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
