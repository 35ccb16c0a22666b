#!/usr/bin/python3
"""`smtpkit serve --dkim DOMAIN:SELECTOR:KEYFILE`: the keys (docs/serve.md,
docs/authentication.md "In smtpkit serve").

A key file that is missing, not a key or an RSA key under 1024 bits stops
the start with exit 78 and the file's name; a malformed value is a bad flag
(64) and a bad config-file line (78). Mail from a relay network is signed
by the key of its From domain or of a parent domain (the most specific),
mail from other domains is not; the signature verifies with dkimpy. A key
file replaced and SIGHUP: the next message is signed with the new key. The
signature is part of what a 250 made durable: a message held, the server
killed with SIGKILL right after the 250, released after a restart, still
arrives signed."""

import email.utils
import os
import re
import signal
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402

try:
    import dkim
    import nacl  # noqa: F401  (dkimpy's Ed25519)
except ImportError as e:
    print("needs python3-dkim and python3-nacl: %s" % e)
    sys.exit(sktest.SKIP)

tmp = sktest.TempDir("sk-serve-dkim-keys-")
records = {}


def keygen(domain, selector, path=None, *extra):
    path = path or tmp.join("%s-%s.pem" % (domain, selector))
    r = sktest.smtpkit("dkim", "keygen", "--domain", domain, "--selector", selector, "--out", path,
                       "--force", *extra, check_rc=0)
    value = re.search(r"^value: (.*)$", r.stdout, re.M).group(1)
    return path, "".join(re.findall(r'"([^"]*)"', value)).encode()


def verify(path, recs):
    """dkimpy's verdict on each DKIM-Signature, with keys from recs
    ({"selector._domainkey.domain": record})."""
    with open(path, "rb") as f:
        data = f.read().replace(b"\n", b"\r\n")
    d = dkim.DKIM(data)
    n = sum(1 for h in d.headers if h[0].lower() == b"dkim-signature")
    return [d.verify(idx=i, dnsfunc=lambda name, timeout=5: recs.get(name.decode().rstrip("."),
                                                                      b""))
            for i in range(n)]


def signatures(path):
    with open(path, "rb") as f:
        block = f.read().split(b"\n\n", 1)[0].decode()
    return re.findall(r"^DKIM-Signature:.*(?:\n[ \t].*)*", block, re.M)


def send(port, sender):
    msg = ("From: <%s>\r\nTo: <bob@example.net>\r\nSubject: keys\r\nDate: %s\r\n"
           "Message-ID: <%f@test>\r\n\r\nSigned, or not.\r\n" %
           (sender, email.utils.formatdate(), time.time()))
    with smtplib.SMTP(HOST, port, timeout=30) as c:
        c.ehlo("client.test")
        c.mail(sender)
        c.rcpt("bob@example.net")
        code, text = c.data(msg.encode())
    expect(code == 250, "accepted: %d %s" % (code, text))
    return re.search(r"queued as (\S+)", text.decode()).group(1)


def serve_rc(*args, config=None):
    argv = [sktest.SMTPKIT, "serve", "--data-dir", tmp.join("bad-data"), "--listen",
            "%s:%d" % (HOST, sktest.free_port(HOST))] + list(args)
    if config:
        argv += ["--config", config]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


org_pem, org_rec = keygen("example.org", "s1")
ed_pem, ed_rec = keygen("example.org", "e1", None, "--type", "ed25519")
news_pem, news_rec = keygen("news.example.org", "n1")

# 1. Keys that cannot be used stop the start, naming the file.
missing = tmp.join("no-such-key.pem")
rc, err = serve_rc("--dkim", "example.org:s1:" + missing)
expect(rc == 78 and missing in err, "missing key: exit 78 naming it: %d %s" % (rc, err))
notkey = tmp.join("not-a-key.pem")
with open(notkey, "w") as f:
    f.write("hello\n")
rc, err = serve_rc("--dkim", "example.org:s1:" + notkey)
expect(rc == 78 and notkey in err, "not a key: exit 78 naming it: %d %s" % (rc, err))
weak = tmp.join("weak.pem")
subprocess.run(["openssl", "genrsa", "-out", weak, "512"], check=True, capture_output=True,
               timeout=60)
rc, err = serve_rc("--dkim", "example.org:s1:" + weak)
expect(rc == 78 and weak in err and "1024" in err,
       "a 512-bit key: exit 78 naming it and the minimum: %d %s" % (rc, err))
rc, err = serve_rc("--dkim", "example.org:" + org_pem)
expect(rc == 64 and "--dkim" in err, "a malformed value: a bad flag: %d %s" % (rc, err))
conf = tmp.join("bad.conf")
with open(conf, "w") as f:
    f.write("dkim = example.org:s1:%s\n" % missing)
rc, err = serve_rc(config=conf)
expect(rc == 78 and missing in err, "from the config file too: %d %s" % (rc, err))
rc, err = serve_rc("--dmarc-policy", "strict")
expect(rc == 64 and "dmarc-policy" in err, "--dmarc-policy strict: %d %s" % (rc, err))

# 2. Signing from a relay network (loopback), by the config file's keys.
key_path = tmp.join("rotating.pem")
os.replace(org_pem, key_path)
conf = tmp.join("serve.conf")
with open(conf, "w") as f:
    f.write("dkim = example.org:s1:%s\ndkim = example.org:e1:%s\n"
            "dkim = news.example.org:n1:%s\n" % (key_path, ed_pem, news_pem))
recs = {"s1._domainkey.example.org": org_rec, "e1._domainkey.example.org": ed_rec,
        "n1._domainkey.news.example.org": news_rec}
srv = Serve(tmp, name="sign", args=["--local-domain", "example.net", "--config", conf])
with srv:
    expect(" dkim_keys=3 " in srv.log(), "three keys loaded:\n" + srv.log())
    send(srv.port, "alice@example.org")
    files = srv.wait_maildir("example.net", "bob", 1)
    sigs = signatures(files[0])
    expect(len(sigs) == 2 and verify(files[0], recs) == [True, True],
           "RSA and Ed25519 signatures of example.org that dkimpy verifies: %r" % sigs)
    send(srv.port, "desk@sub.news.example.org")
    files = srv.wait_maildir("example.net", "bob", 2)
    sigs = signatures(files[-1])
    expect(len(sigs) == 1 and "d=news.example.org" in sigs[0] and "s=n1" in sigs[0] and
           verify(files[-1], recs) == [True],
           "below news.example.org: its own key, not example.org's: %r" % sigs)
    send(srv.port, "someone@other.example")
    files = srv.wait_maildir("example.net", "bob", 3)
    expect(signatures(files[-1]) == [], "another domain: not signed")

    # 3. A replaced key file, then SIGHUP.
    _, new_rec = keygen("example.org", "s1", key_path)
    mark = len(srv.log())
    srv.proc.send_signal(signal.SIGHUP)
    sktest.wait_for(lambda: "reload-done" in srv.log()[mark:], what="reload-done\n" + srv.log())
    send(srv.port, "alice@example.org")
    files = srv.wait_maildir("example.net", "bob", 4)
    got = verify(files[-1], recs)
    expect(got == [False, True], "the old RSA key no longer verifies: %r" % got)
    recs["s1._domainkey.example.org"] = new_rec
    got = verify(files[-1], recs)
    expect(got == [True, True], "signed with the new key after SIGHUP: %r" % got)
    # A bad key on reload keeps the keys in use.
    os.replace(notkey, key_path)
    mark = len(srv.log())
    srv.proc.send_signal(signal.SIGHUP)
    sktest.wait_for(lambda: "reload-failed" in srv.log()[mark:], what="reload-failed")
    expect(key_path in srv.log()[mark:], "the reload failure names the file")
    send(srv.port, "alice@example.org")
    files = srv.wait_maildir("example.net", "bob", 5)
    expect(verify(files[-1], recs) == [True, True], "still signing with the keys in use")

# 4. The signature is durable with the 250.
_, rec = keygen("example.org", "s1", key_path)
recs["s1._domainkey.example.org"] = rec
data = tmp.join("held-data")
held = Serve(tmp, name="held", data_dir=data, args=["--local-domain", "example.net", "--hold",
                                                    "--dkim", "example.org:s1:" + key_path])
held.start()
qid = send(held.port, "alice@example.org")
held.kill9()
again = Serve(tmp, name="again", data_dir=data, args=["--local-domain", "example.net"])
with again:
    sktest.smtpkit("queue", "--data-dir", data, "release", qid, check_rc=0)
    files = again.wait_maildir("example.net", "bob", 1)
    expect(verify(files[0], recs) == [True], "signed after kill -9 and release: %r" %
           signatures(files[0]))

print("ok")
