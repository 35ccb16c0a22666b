#!/usr/bin/python3
"""Bounces made by a real Postfix, read by `smtpkit bounce`.

A private Postfix instance on loopback relays mail for far.test to an
aiosmtpd peer that refuses some recipients (unknown user, full mailbox,
disabled mailbox, a block list, a message too large, a temporary refusal
that Postfix gives up on at once with maximal_queue_lifetime = 0) and
delivers locally for local.test, where one user does not exist and
another's mailbox is full (mailbox_size_limit). The
bounces Postfix sends back to the sender (through the same peer) are read
with `smtpkit bounce --json`: the detector, the recipient, the class and
whether it suppresses must be right. The same bounces with their status
part removed must still be read, by the Postfix text detector.

With --write DIR the bounces are also saved there (tests/bounces/postfix
is made that way); otherwise nothing is kept. Needs root (Postfix's master
starts as root and drops to the postfix user); exits 77 (skipped) without.
"""

import email
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402

POSTFIX = "/usr/sbin/postfix"

# recipient: (the peer's reply at RCPT, or at DATA for big@, the class
# and suppression the bounce must get). None: Postfix itself refuses.
CASES = {
    "unknown@far.test": ("550 5.1.1 <unknown@far.test>: Recipient address rejected: User unknown",
                         "bad-mailbox", True),
    "full@far.test": ("552 5.2.2 <full@far.test>: Mailbox full", "mailbox-full", False),
    "disabled@far.test": ("550 5.2.1 <disabled@far.test>: mailbox disabled, not accepting "
                          "messages", "mailbox-disabled", True),
    "blocked@far.test": ("554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using "
                         "zen.spamhaus.org", "blocked", False),
    "big@far.test": ("552 5.3.4 Message size exceeds fixed maximum message size",
                     "message-too-big", False),
    "later@far.test": ("450 4.2.0 <later@far.test>: try again later", "expired", False),
    "nosuchuser@local.test": (None, "bad-mailbox", True),
    # Postfix's own full mailbox: local(8) writing past mailbox_size_limit
    # (the mailbox is filled nearly to it first) says "cannot update
    # mailbox ... error writing message: File too large" with 5.2.2.
    "nobody@local.test": (None, "mailbox-full", False),
}
# The local user whose mailbox is full, and the limit.
FULL_USER = "nobody"
MAILBOX_LIMIT = 20480


def main():
    write_dir = None
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write_dir = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit("usage: test_bounce_postfix.py [--write DIR]")
    if os.geteuid() != 0 or not os.access(POSTFIX, os.X_OK):
        print("SKIP: needs root and Postfix (a private instance)")
        sys.exit(77)
    tmp = sktest.TempDir("sk-bounce-postfix-")
    rcpt_replies = {k: v[0] for k, v in CASES.items() if v[0] and not k.startswith("big@")}
    peer = Peer(name="mx.far.test", rcpt_replies=rcpt_replies,
                data_replies={"big@far.test": [CASES["big@far.test"][0]]})
    master = None
    try:
        with peer:
            master = start_postfix(tmp.path, peer.port)
            port = master[1]
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                for rcpt in CASES:
                    c.sendmail("alice@origin.test", [rcpt],
                               b"From: alice@origin.test\r\nTo: %s\r\nSubject: test %s\r\n"
                               b"Message-ID: <%s@origin.test>\r\n\r\nHello.\r\n"
                               % (rcpt.encode(), rcpt.encode(), rcpt.split("@")[0].encode()))
            sktest.wait_for(lambda: len(bounces(peer)) >= len(CASES), timeout=20,
                            what="a bounce for each recipient (have %d)" % len(bounces(peer)))
            got = bounces(peer)
        check_bounces(tmp.path, got, write_dir)
    finally:
        if master:
            stop_postfix(master)
        if os.environ.get("SK_KEEP_TMP"):
            print("kept", tmp.path)
        else:
            tmp.cleanup()
    print("ok: %d Postfix bounces read" % len(CASES))


def bounces(peer):
    return [m for m in peer.messages if m["mail_from"] in ("", "<>")]


def start_postfix(root, relay_port):
    os.chmod(root, 0o755)  # the postfix user reaches its data directory
    conf, queue, data, spool = (os.path.join(root, d) for d in ("conf", "queue", "data", "spool"))
    for d in (conf, queue, data, spool):
        os.makedirs(d)
    shutil.chown(data, "postfix")
    os.chmod(spool, 0o1777)  # local(8) locks mailboxes there as the user
    mbox = os.path.join(spool, FULL_USER)
    with open(mbox, "wb") as f:
        head = b"From alice@origin.test Mon Dec  7 00:00:00 2026\nSubject: filler\n\n"
        f.write(head + b"x" * (MAILBOX_LIMIT - 100 - len(head)) + b"\n\n")
    shutil.chown(mbox, FULL_USER)
    os.chmod(mbox, 0o600)
    port = sktest.free_port()
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write("""compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.origin.test
mydomain = origin.test
myorigin = origin.test
mydestination = local.test
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{relay}
smtp_host_lookup = native
disable_dns_lookups = yes
maillog_file = /dev/stdout
smtputf8_enable = no
biff = no
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
mail_spool_directory = {spool}
mailbox_size_limit = {limit}
message_size_limit = {limit}
""".format(conf=conf, queue=queue, data=data, relay=relay_port, spool=spool, limit=MAILBOX_LIMIT))
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write("""127.0.0.1:{port} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
""".format(port=port))
    log = open(os.path.join(root, "postfix.log"), "wb")
    fg = sktest.Proc([POSTFIX, "-c", conf, "start-fg"], stdout=log, stderr=subprocess.STDOUT)
    try:
        sktest.wait_port(port, proc=fg)
    except BaseException:
        fg.stop()
        log.close()
        sys.stderr.write(open(os.path.join(root, "postfix.log")).read()[-2000:])
        raise
    return (fg, port, conf, log)


def stop_postfix(master):
    fg, _, conf, log = master
    # postfix stop signals the master by its pid file; start-fg waits for it.
    subprocess.run([POSTFIX, "-c", conf, "stop"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)
    fg.stop(timeout=20)
    log.close()


def original_rcpt(data):
    """The recipient a bounce is about: the To of the returned message."""
    m = email.message_from_bytes(data)
    for part in m.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) else email.message_from_string(payload)
            return inner["To"]
    return None


def strip_status(data):
    """The bounce without its message/delivery-status part: what a gateway
    that drops unknown parts forwards (derived from the real bounce)."""
    text = data.decode("utf-8", "replace")
    m = re.search(r'boundary="([^"]+)"', text)
    boundary = "--" + m.group(1)
    parts = text.split(boundary)
    kept = [p for p in parts if "message/delivery-status" not in p.split("\n\n", 1)[0]]
    return boundary.join(kept).encode()


def check_bounces(root, got, write_dir):
    failures = []
    files = []
    for i, m in enumerate(got):
        rcpt = original_rcpt(m["data"])
        name = re.sub(r"[^a-z0-9]+", "-", (rcpt or "unknown-%d" % i).split("@")[0]) + ".eml"
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(m["data"])
        stripped = os.path.join(root, "text-" + name)
        with open(stripped, "wb") as f:
            f.write(strip_status(m["data"]))
        files.append((rcpt, path, "rfc3464"))
        files.append((rcpt, stripped, "postfix"))
        if write_dir:
            shutil.copy(path, os.path.join(write_dir, name))
    sktest.check(sorted(r for r, _, d in files if d == "rfc3464") == sorted(CASES),
                 "one bounce per recipient: %r" % [r for r, _, _ in files])
    r = sktest.smtpkit("bounce", "--json", *[p for _, p, _ in files], timeout=60)
    sktest.check(r.returncode == 0, "smtpkit bounce: exit %d: %s" % (r.returncode, r.stderr))
    results = json.loads(r.stdout)
    for (rcpt, path, detector), res in zip(files, results):
        want_cls, want_suppress = CASES[rcpt][1], CASES[rcpt][2]
        rs = res["recipients"]
        ok = (res["detector"] == detector and len(rs) == 1 and rs[0]["recipient"] == rcpt
              and rs[0]["class"] == want_cls and rs[0]["suppress"] == want_suppress
              and rs[0]["action"] == "failed" and res["reporting_mta"] == "mta.origin.test")
        if not ok:
            failures.append("%s: want %s %s %s suppress=%s, got %s" % (
                os.path.basename(path), detector, rcpt, want_cls, want_suppress,
                json.dumps(res)))
    if failures:
        sktest.fail("\n".join(failures))


if __name__ == "__main__":
    main()
