#!/usr/bin/python3
"""Bounces made by a real OpenSMTPD, read by `smtpkit bounce`.

OpenSMTPD cannot be installed beside Postfix (each is the machine's MTA), so
scripts/deps.sh unpacks Debian's opensmtpd without installing it
(SK_OPENSMTPD_DIR, default /var/cache/smtpkit-test/mta/opensmtpd) and creates
the opensmtpd and opensmtpq users it is built to run as. Its paths are built
in, not set by its configuration: the spool /var/spool/smtpd, the chroot of
its unprivileged processes /var/lib/opensmtpd/empty, the control socket
/run/smtpd.sock. So this test runs `smtpd -d` as root in a mount namespace of
its own (and a UTS namespace named mta.origin.test), where directories of
the test's scratch directory are bound over /var/spool, /var/lib and /run:
nothing of the machine's is read or written there, and the binds end with
the namespace. OpenSMTPD listens on a loopback port and relays everything to
an aiosmtpd peer that refuses as the case wants (unknown user, mailbox full,
message too large, and a temporary refusal until `queue ttl` runs out, with
a delay warning first: `bounce warn-interval`). OpenSMTPD sends every bounce
back through the same peer; `smtpkit bounce --json` must name the recipient
and give the class, and never suppress a warning or a temporary failure.

OpenSMTPD 6.8.0p2 gives the remote reply only in the human-readable part
("ADDR: 550 5.1.1 ...") and a generic 5.0.0 in the status part, and labels
the notice it sends when a message expires as a delay (Action: delayed,
Status: 4.4.7, "Envelope expired"); later releases say failed and 5.4.7. The
expiry must be read as the class expired with the Action the notice gives.

With --write DIR the bounces are also saved there (tests/bounces/opensmtpd
is made that way); otherwise nothing is kept. Exits 77 (skipped) when the
unpacked OpenSMTPD or its users are absent, when not run as root, or when
this machine refuses the namespaces."""

import email
import json
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402

SMTPD_DIR = os.environ.get("SK_OPENSMTPD_DIR", "/var/cache/smtpkit-test/mta/opensmtpd")
SMTPD = os.path.join(SMTPD_DIR, "usr", "sbin", "smtpd")
# The users Debian's OpenSMTPD is built to run as (upstream's _smtpd and
# _smtpq; scripts/deps.sh creates them as the package's installation would).
USERS = ("opensmtpd", "opensmtpq")
HOSTNAME = "mta.origin.test"
# Seconds before OpenSMTPD gives up a message (queue ttl) and before it
# warns that one is delayed (bounce warn-interval).
TTL_S = 8
WARN_S = 2
# How long the test waits for all the bounces: the ttl, then OpenSMTPD's
# scheduler, its bounce batching and the peer, with room for a loaded
# machine.
WAIT_S = TTL_S + 52

# recipient: (peer's RCPT reply, or DATA reply for big@; class; suppress).
CASES = {
    "unknown@far.test": ("550 5.1.1 <unknown@far.test>: Recipient address rejected: User unknown",
                         "bad-mailbox", True),
    "full@far.test": ("552 5.2.2 <full@far.test>: Mailbox full", "mailbox-full", False),
    "big@far.test": ("552 5.3.4 Message size exceeds fixed maximum message size",
                     "message-too-big", False),
}
# Refused until the ttl runs out: a delay warning, then the expiry notice.
LATER = "later@far.test"
LATER_REPLY = "451 4.3.0 <later@far.test>: try again later"

# The mounts, then OpenSMTPD in the foreground: $1 smtpd, $2 its
# configuration, $3-$5 the directories bound over /var/spool, /var/lib
# and /run, $6 the host name.
RUN = ('hostname "$6" && mount --bind "$3" /var/spool && mount --bind "$4" /var/lib && '
       'mount --bind "$5" /run && exec "$1" -d -v -f "$2"')


def config(port, peer_port):
    return ("queue ttl %ds\n"
            "bounce warn-interval %ds\n"
            "listen on 127.0.0.1 port %d\n"
            'action "peer" relay host smtp://127.0.0.1:%d\n'
            'match from any for any action "peer"\n' % (TTL_S, WARN_S, port, peer_port))


def message(rcpt):
    return (b"From: alice@origin.test\r\nTo: %s\r\nSubject: test %s\r\n"
            b"Message-ID: <%s@origin.test>\r\n\r\nHello.\r\n" % (
                rcpt.encode(), rcpt.encode(), rcpt.split("@")[0].encode()))


def bounces(peer):
    return [m for m in peer.messages if m["mail_from"] in ("", "<>")]


def status_part(data):
    """The fields of the first per-recipient block of the status part."""
    m = email.message_from_bytes(data)
    for part in m.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks[1:] if isinstance(blocks, list) else []:
                return {k.lower(): v.strip() for k, v in block.items()}
    return {}


def about(data):
    """(recipient, kind) of a bounce: its Final-Recipient, and failed,
    warning (a delay notice) or expired (Status X.4.7: given up)."""
    fields = status_part(data)
    rcpt = fields.get("final-recipient", "").partition(";")[2].strip() or None
    if re.fullmatch(r"[45]\.4\.7", fields.get("status", "")):
        return rcpt, "expired"
    return rcpt, "warning" if fields.get("action", "").lower() == "delayed" else "failed"


WANT = {(r, "failed") for r in CASES} | {(LATER, "warning"), (LATER, "expired")}


def done(peer):
    return WANT <= {about(m["data"]) for m in bounces(peer)}


def skip(why):
    print("SKIP: " + why)
    sys.exit(sktest.SKIP)


def check_machine(tmp):
    if os.geteuid() != 0 or not os.access(SMTPD, os.X_OK):
        skip("needs root and the unpacked OpenSMTPD (%s; scripts/deps.sh unpacks it)" % SMTPD)
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            skip("no user %s (scripts/deps.sh creates it)" % user)
    if not shutil.which("unshare"):
        skip("needs unshare")
    # A container may refuse new namespaces or mounts even to root: say so.
    a, b = tmp.join("probe-a"), tmp.join("probe-b")
    os.makedirs(a)
    os.makedirs(b)
    probe = subprocess.run(["unshare", "-m", "-u", "mount", "--bind", a, b], capture_output=True,
                           timeout=30)
    if probe.returncode != 0:
        skip("unshare -m -u with a bind mount refused here: %s"
             % probe.stderr.decode(errors="replace").strip())


def main():
    write_dir = None
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write_dir = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit("usage: test_bounce_opensmtpd.py [--write DIR]")
    tmp = sktest.TempDir("sk-bounce-opensmtpd-")
    smtpd = None
    got = []
    try:
        check_machine(tmp)
        root = tmp.path
        dirs = [os.path.join(root, d) for d in ("spool", "lib", "run")]
        for d in dirs:
            os.makedirs(d)
        os.makedirs(os.path.join(root, "lib", "opensmtpd", "empty"))
        rcpt_replies = {k: v[0] for k, v in CASES.items() if not k.startswith("big@")}
        rcpt_replies[LATER] = LATER_REPLY
        peer = Peer(name="mx.far.test", rcpt_replies=rcpt_replies,
                    data_replies={"big@far.test": [CASES["big@far.test"][0]]})
        with peer:
            port = sktest.free_port()
            conf = os.path.join(root, "smtpd.conf")
            with open(conf, "w") as f:
                f.write(config(port, peer.port))
            log = open(os.path.join(root, "smtpd.log"), "wb")
            smtpd = sktest.Proc(["unshare", "-m", "-u", "sh", "-c", RUN, "sh", SMTPD, conf]
                                + dirs + [HOSTNAME], stdout=log, stderr=subprocess.STDOUT)
            log.close()
            sktest.wait_port(port, timeout=20, proc=smtpd)
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                for rcpt in list(CASES) + [LATER]:
                    c.sendmail("alice@origin.test", [rcpt], message(rcpt))
            sktest.settle(lambda: done(peer), timeout=WAIT_S, interval=0.5)
            got = bounces(peer)
            if not done(peer):
                sktest.fail("want %s, got %s\n--- smtpd log ---\n%s" % (
                    sorted(WANT), sorted(about(m["data"]) for m in got),
                    smtpd_log(root)))
            smtpd.stop()
            sktest.check(smtpd.returncode is not None, "smtpd did not stop")
        check_bounces(root, got, write_dir)
        # The binds ended with the namespace: nothing of OpenSMTPD's here.
        for path in ("/var/spool/smtpd", "/run/smtpd.sock", "/var/lib/opensmtpd"):
            sktest.check(not os.path.lexists(path), "%s exists outside the namespace" % path)
        sktest.check(os.path.isdir(os.path.join(root, "spool", "smtpd")),
                     "the private spool was not used")
    finally:
        if smtpd:
            smtpd.stop()
        if os.environ.get("SK_KEEP_TMP"):
            print("kept", tmp.path)
        else:
            tmp.cleanup()
    print("ok: %d OpenSMTPD bounces read" % len(got))


def smtpd_log(root):
    with open(os.path.join(root, "smtpd.log"), "rb") as f:
        return f.read()[-4000:].decode(errors="replace")


def check_bounces(root, got, write_dir):
    failures = []
    files = []
    seen = set()
    for m in got:
        rcpt, kind = about(m["data"])
        if (rcpt, kind) in seen:
            continue  # a second warning, if the machine was slow: the first is checked
        seen.add((rcpt, kind))
        name = "%s%s.eml" % ((rcpt or "none").split("@")[0],
                             "" if kind == "failed" else "-" + kind)
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(m["data"])
        files.append((rcpt, kind, path, status_part(m["data"]).get("action", "").lower()))
        if write_dir:
            shutil.copy(path, os.path.join(write_dir, name))
    r = sktest.smtpkit("bounce", "--json", *[f[2] for f in files], timeout=60)
    sktest.check(r.returncode == 0, "smtpkit bounce: exit %d: %s %s" % (
        r.returncode, r.stdout, r.stderr))
    for (rcpt, kind, path, action), res in zip(files, json.loads(r.stdout)):
        rs = res["recipients"]
        if kind == "failed" and rcpt in CASES:
            want_action, (want_cls, want_suppress) = "failed", CASES[rcpt][1:]
        elif kind == "warning" and rcpt == LATER:
            want_action, want_cls, want_suppress = "delayed", None, False
        elif kind == "expired" and rcpt == LATER:
            # The Action the notice gives (6.8.0p2: delayed).
            want_action, want_cls, want_suppress = action, "expired", False
        else:
            failures.append("%s: a bounce about %r (%s)" % (os.path.basename(path), rcpt, kind))
            continue
        ok = (res["detector"] == "rfc3464" and len(rs) == 1 and rs[0]["recipient"] == rcpt
              and rs[0]["action"] == want_action and rs[0]["suppress"] == want_suppress
              and (want_cls is None or rs[0]["class"] == want_cls)
              and res["reporting_mta"] == HOSTNAME)
        # The remote reply, which OpenSMTPD gives only in its text.
        if ok and kind == "failed" and rs[0]["reply"] != CASES[rcpt][0]:
            ok = False
        if not ok:
            failures.append("%s (%s, %s): want %s %s suppress=%s, got %s" % (
                os.path.basename(path), rcpt, kind, want_action, want_cls, want_suppress,
                json.dumps(res)))
    if failures:
        sktest.fail("\n".join(failures))


if __name__ == "__main__":
    main()
