#!/usr/bin/python3
"""ARC (RFC 8617) in `smtpkit serve` (docs/authentication.md "In smtpkit
serve"), DNS from dns_server.py on loopback.

A mailing list's server (lists.example.net) has sealed a message with
`smtpkit arc seal`; a serve for which loopback is outside (--relay-net
none) verifies the chain as the message comes in and writes arc=pass with
header.oldest-pass and smtp.remote-ip into its Authentication-Results and
the tracking record; the same message with its body changed after the
seal gets arc=fail, and one without a chain arc=none.

Then a serve with --arc-seal (fwd.example.net) takes the sealed message
from outside and adds its own set (i=2, cv=pass): forwarded from its
Maildir to the next serve, the chain gives arc=pass there, and dkimpy's
arc_verify agrees; changed after our seal, arc=fail. A chain that fails
at the sealing serve is sealed with cv=fail, and nothing is sealed over
that. A key file that cannot be read stops the start with exit 78 naming
it. The key file replaced and SIGHUP: the next set is sealed with the new
key (dkimpy verifies it with the new record, not the old); a key file that
cannot be read on SIGHUP is a reload-failed naming it, and the key in use
stays. The sets are made on the signing threads ("sign/N"), not on the
event loop: a serve sealing with a 4096-bit key shows their CPU time."""

import email.utils
import glob
import os
import re
import signal
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402

try:
    import dkim
except ImportError as e:
    print("needs python3-dkim: %s" % e)
    sys.exit(sktest.SKIP)
from dkimpy_util import txt_lookup  # noqa: E402

tmp = sktest.TempDir("sk-serve-arc-")
AUTHSERV = "mx.test"
LIST = "lists.example.net"


def keygen(domain, selector, path=None, *extra):
    path = path or tmp.join("%s-%s.pem" % (selector, domain))
    r = sktest.smtpkit("dkim", "keygen", "--domain", domain, "--selector", selector,
                       "--out", path, "--force", *extra, check_rc=0)
    value = re.search(r"^value: (.*)$", r.stdout, re.M).group(1)
    return path, re.findall(r'"([^"]*)"', value)


list_pem, list_rec = keygen(LIST, "arc")
FWD = "fwd.example.net"
fwd_pem, fwd_rec = keygen(FWD, "seal")
ZONE = {
    "arc._domainkey." + LIST: {"TXT": [list_rec]},
    "seal._domainkey." + FWD: {"TXT": [fwd_rec]},
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


def forwarded(path):
    """A Maildir file as a forwarder sends it on: CRLF, without the
    Return-Path the delivery added."""
    with open(path, "rb") as f:
        data = f.read().replace(b"\n", b"\r\n")
    return re.sub(rb"^Return-Path:[^\r]*\r\n", b"", data)


def sign_threads_cpu(pid):
    """CPU seconds (user + system) of the server's signing threads."""
    ticks = 0
    for task in glob.glob("/proc/%d/task/*" % pid):
        try:
            with open(task + "/comm") as f:
                if not f.read().startswith("sign/"):
                    continue
            with open(task + "/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


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

    # A key that cannot be read: exit 78 naming the file.
    missing = tmp.join("no-such-key.pem")
    r = sktest.smtpkit("serve", "--data-dir", tmp.join("bad-data"),
                       "--arc-seal", "%s:seal:%s" % (FWD, missing))
    expect(r.returncode == 78 and missing in r.stderr and "arc-seal" in r.stderr,
           "exit 78 naming the key: %d %s" % (r.returncode, r.stderr))
    r = sktest.smtpkit("serve", "--arc-seal", "nocolons")
    expect(r.returncode == 64 and "arc-seal" in r.stderr,
           "a bad --arc-seal is a bad flag: %d %s" % (r.returncode, r.stderr))

    dnsfunc = txt_lookup(dns.port)

    common = ["--hostname", AUTHSERV, "--local-domain", "dest.test", "--relay-net", "none",
              "--dns-server", dns.address]
    fwd = Serve(tmp, name="fwd", args=["--hostname", "mx." + FWD, "--local-domain", "dest.test",
                                        "--relay-net", "none", "--dns-server", dns.address,
                                        "--arc-seal", "%s:seal:%s" % (FWD, fwd_pem)])
    nxt = Serve(tmp, name="next", args=common)
    with fwd, nxt:
        fseen, nseen = [], []

        def through(srv, seen, m, what):
            code, text = send(srv.port, m)
            expect(code == 250, "%s: accepted: %d %s" % (what, code, text), srv)
            files = srv.wait_maildir("dest.test", "bob", len(seen) + 1)
            path = [f for f in files if f not in seen][0]
            seen.append(path)
            return path

        # Sealed by the list, then by fwd (cv=pass), then checked by next.
        path = through(fwd, fseen, seal(message("forwarded one")), "fwd")
        hs = head(path)
        expect(any(h.startswith("ARC-Seal: i=2;") and "cv=pass" in h and "d=" + FWD in h
                   for h in hs), "fwd added i=2 with cv=pass: %r" % hs, fwd)
        aar = [h for h in hs if h.startswith("ARC-Authentication-Results: i=2;")]
        expect(len(aar) == 1 and "mx." + FWD in aar[0] and "arc=pass" in aar[0],
               "the AAR carries fwd's results: %r" % aar, fwd)
        expect("arc-sealed instance=2 cv=pass" in fwd.log(), "logged:\n" + fwd.log()[-2000:])
        m = forwarded(path)
        cv, _, reason = dkim.arc_verify(m, dnsfunc=dnsfunc)
        expect(cv == b"pass", "dkimpy arc_verify: %r %s" % (cv, reason))
        npath = through(nxt, nseen, m, "next")
        ar = ours(npath)
        expect(len(ar) == 1 and "arc=pass" in ar[0] and "header.oldest-pass=0" in ar[0],
               "arc=pass at the next hop: %r" % ar, nxt)
        # Changed after fwd sealed it.
        npath = through(nxt, nseen, m.replace(b"Hello list.", b"Hello lost."), "tampered")
        ar = ours(npath)
        expect(len(ar) == 1 and "arc=fail" in ar[0], "arc=fail after tampering: %r" % ar, nxt)

        # A chain that fails at fwd: sealed with cv=fail; fwd then seals
        # nothing over it.
        bad = seal(message("broken one")) + b"Appended after sealing.\r\n"
        path = through(fwd, fseen, bad, "broken")
        expect(any(h.startswith("ARC-Seal: i=2;") and "cv=fail" in h for h in head(path)),
               "sealed with cv=fail: %r" % head(path), fwd)
        path = through(fwd, fseen, forwarded(path), "over cv=fail")
        expect(not any(h.startswith("ARC-Seal: i=3;") for h in head(path)),
               "nothing sealed over cv=fail: %r" % head(path), fwd)
        expect("arc-unsealed" in fwd.log() and "cv=fail" in fwd.log(),
               "the refusal logged:\n" + fwd.log()[-2000:])

        # The key file replaced, then SIGHUP: sealed with the new key.
        def verify_with(m, record):
            def lookup(name, timeout=5):
                if name.decode().rstrip(".") == "seal._domainkey." + FWD:
                    return "".join(record).encode()
                return dnsfunc(name, timeout)
            return dkim.arc_verify(m, dnsfunc=lookup)[0]

        _, new_rec = keygen(FWD, "seal", fwd_pem)
        mark = len(fwd.log())
        fwd.proc.send_signal(signal.SIGHUP)
        sktest.wait_for(lambda: "reload-done" in fwd.log()[mark:], what="reload-done\n" +
                        fwd.log())
        expect("arc_seal=yes" in fwd.log()[mark:], "reload-done says it seals:\n" +
               fwd.log()[mark:])
        expect("reload-needs-restart option=arc-seal" not in fwd.log(),
               "arc-seal needs no restart:\n" + fwd.log()[mark:])
        m = forwarded(through(fwd, fseen, seal(message("after reload")), "after reload"))
        expect(verify_with(m, new_rec) == b"pass", "sealed with the new key after SIGHUP")
        expect(verify_with(m, fwd_rec) == b"fail", "the old key no longer verifies the seal")
        # A key file that cannot be read: reload-failed naming it; the key
        # in use stays.
        with open(fwd_pem, "w") as f:
            f.write("not a key\n")
        mark = len(fwd.log())
        fwd.proc.send_signal(signal.SIGHUP)
        sktest.wait_for(lambda: "reload-failed" in fwd.log()[mark:], what="reload-failed\n" +
                        fwd.log())
        expect(fwd_pem in fwd.log()[mark:] and "arc-seal" in fwd.log()[mark:],
               "the failure names the key file:\n" + fwd.log()[mark:])
        m = forwarded(through(fwd, fseen, seal(message("bad reload")), "after a bad reload"))
        expect(verify_with(m, new_rec) == b"pass", "still sealing with the key in use")

    # Sealing off the event loop: a 4096-bit key's signatures (two per set)
    # show as CPU time of the signing threads.
    big_pem, _ = keygen(FWD, "big", None, "--bits", "4096")
    big = Serve(tmp, name="big", args=["--hostname", "mx." + FWD, "--local-domain",
                                        "dest.test", "--relay-net", "none", "--dns-server",
                                        dns.address, "--arc-seal", "%s:big:%s" % (FWD, big_pem)])
    with big:
        before = sign_threads_cpu(big.proc.pid)
        bseen = []
        for i in range(20):
            path = through(big, bseen, message("big %d" % i), "big %d" % i)
        expect(any(h.startswith("ARC-Seal: i=1;") and "s=big" in h for h in head(path)),
               "sealed with the 4096-bit key: %r" % head(path), big)
        used = sign_threads_cpu(big.proc.pid) - before
        expect(used > 0, "the signing threads made the seals (%.3f s of CPU)" % used, big)

print("ok")
