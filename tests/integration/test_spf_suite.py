#!/usr/bin/python3
"""The RFC 7208 conformance suite through our SPF evaluator.

The suite is the openspf.org one (release 2014.04) that Debian's python3-spf
ships as rfc7208-tests.yml.gz (scripts/deps.sh installs it; python3-yaml
reads it). Each scenario's zone data is served by one dns_server.py,
reloaded per scenario; one spf_batch process (tests/integration/spf_batch.c,
the library's asynchronous API on one resolver) evaluates every case, the
resolver's cache flushed between scenarios.

The suite's zone conventions, as its own driver (python3-spf's testspf.py)
applies them: an SPF entry is served as type 99 and also as TXT unless the
name has TXT entries of its own; "TXT: NONE" means no TXT record; TIMEOUT
means no answer for the types the name has no records of. Strings are
UTF-8 encoded. A case checks the MAIL FROM identity (postmaster@HELO for
the null sender); a result given as a list accepts any of its members; an
explanation, when given, must be ours exactly, "DEFAULT" standing for none.

Prints each failure, then "N passed, N failed".
"""

import glob
import gzip
import os
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402

SUITE_GLOB = "/usr/share/doc/python3-spf*/rfc7208-tests.yml.gz"
BATCH = os.path.join(sktest.BUILD_DIR, "tests", "spf_batch")

# Cases that cannot pass here, each with the reason. None so far: every
# case of the suite passes.
CANNOT_PASS = {}


def zone_of(zonedata):
    """dns_server.py's zone for a scenario's zonedata."""
    zone = {}
    for name, records in zonedata.items():
        entry = {}
        own_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
        for r in records:
            if r == "TIMEOUT":
                entry["TIMEOUT"] = True
                continue
            (rtype, value), = r.items()
            if rtype in ("TXT", "SPF"):
                if value == "NONE":
                    continue
                strings = value if isinstance(value, list) else [value]
                strings = [s.encode("utf-8") for s in strings]
                entry.setdefault(rtype, []).append(strings)
                if rtype == "SPF" and not own_txt:
                    entry.setdefault("TXT", []).append(strings)
            elif rtype == "MX":
                entry.setdefault("MX", []).append([value[0], value[1] or "."])
            elif rtype == "CNAME":
                entry["CNAME"] = value
            elif rtype in ("A", "AAAA", "PTR"):
                entry.setdefault(rtype, []).append(value)
            else:
                sktest.fail("scenario uses record type %s, which dns_server.py does not serve"
                            % rtype)
        zone[name] = entry
    return zone


def unescape(s):
    return s.encode("latin-1").decode("unicode_escape")


class Batch:
    def __init__(self, dns_address):
        # A dropped query (TIMEOUT) costs one try of this length.
        self.proc = subprocess.Popen(
            [BATCH, "--dns-server", dns_address, "--timeout-ms", "400", "--tries", "1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="latin-1")

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out:
            sktest.fail("spf_batch exited (%s) on: %r" % (self.proc.poll(), line))
        return out.rstrip("\n")

    def check(self, ip, mailfrom, helo):
        for field in (ip, mailfrom, helo):
            if "\t" in field or "\n" in field:
                sktest.fail("a case field holds a tab or newline: %r" % field)
        f = self.ask("CHECK\tmailfrom\t%s\t%s\t%s" % (ip, mailfrom, helo)).split("\t")
        return {"result": f[0], "explanation": unescape(f[2]) if f[1] == "1" else None,
                "lookups": f[3], "voids": f[4], "reason": unescape(f[5])}

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    found = sorted(glob.glob(SUITE_GLOB))
    sktest.check(found, "no %s: install python3-spf (scripts/deps.sh)" % SUITE_GLOB)
    sktest.check(os.access(BATCH, os.X_OK), "no %s: build the tests" % BATCH)
    with gzip.open(found[0], "rt", encoding="utf-8") as f:
        scenarios = list(yaml.safe_load_all(f))
    passed, failed, failures, marked = 0, 0, [], []
    started = time.monotonic()
    with DNSTestServer({}) as dns:
        batch = Batch(dns.address)
        try:
            for sc in scenarios:
                dns.load(zone_of(sc.get("zonedata") or {}))
                sktest.check(batch.ask("FLUSH") == "OK", "spf_batch did not flush its cache")
                for name, case in sc["tests"].items():
                    got = batch.check(str(case["host"]), str(case["mailfrom"]), str(case["helo"]))
                    want = case["result"]
                    wants = want if isinstance(want, list) else [want]
                    ok = got["result"] in wants
                    why = "" if ok else "result %s, want %s" % (got["result"], "|".join(wants))
                    if ok and "explanation" in case:
                        exp = got["explanation"] if got["explanation"] is not None else "DEFAULT"
                        if exp != case["explanation"]:
                            ok = False
                            why = "explanation %r, want %r" % (exp, case["explanation"])
                    if name in CANNOT_PASS:
                        marked.append("%s: %s (%s)" % (name, CANNOT_PASS[name],
                                                       "passes now" if ok else why))
                        continue
                    if ok:
                        passed += 1
                    else:
                        failed += 1
                        failures.append("%s [%s]: %s; reason: %s; lookups %s, voids %s"
                                        % (name, sc["description"], why, got["reason"],
                                           got["lookups"], got["voids"]))
        finally:
            batch.close()
    elapsed = time.monotonic() - started
    for line in failures:
        print("FAIL:", line)
    for line in marked:
        print("CANNOT PASS:", line)
    print("RFC 7208 suite (%s): %d scenarios, %d cases in %.1f s"
          % (os.path.basename(found[0]), len(scenarios), passed + failed + len(marked), elapsed))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
