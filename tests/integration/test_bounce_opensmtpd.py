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
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounce_mta  # noqa: E402
import sktest  # noqa: E402

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
CASES = dict(bounce_mta.REFUSALS)
# Refused until the ttl runs out: a delay warning, then the expiry notice.
LATER = bounce_mta.LATER
LATER_REPLY = bounce_mta.LATER_REPLY

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


def status_part(data):
    """The fields of the first per-recipient block of the status part."""
    m = email.message_from_bytes(data)
    for part in m.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks[1:] if isinstance(blocks, list) else []:
                return {k.lower(): v.strip() for k, v in block.items()}
    return {}


def classify(m):
    """(recipient, kind) of a bounce: its Final-Recipient, and FAILED,
    DELAYED (a delay notice) or EXPIRED (Status X.4.7: given up)."""
    fields = status_part(m["data"])
    rcpt = fields.get("final-recipient", "").partition(";")[2].strip() or None
    if re.fullmatch(r"[45]\.4\.7", fields.get("status", "")):
        return rcpt, bounce_mta.EXPIRED
    delayed = fields.get("action", "").lower() == "delayed"
    return rcpt, bounce_mta.DELAYED if delayed else bounce_mta.FAILED


def expiry(data):
    """The expiry notice: the class expired, with the Action the notice
    gives (6.8.0p2: delayed)."""
    return bounce_mta.Want(status_part(data).get("action", "").lower(), "expired", False)


# Each failure with the remote reply, which OpenSMTPD gives only in its
# text; the warning about later@, then its expiry.
WANTS = {(rcpt, bounce_mta.FAILED): bounce_mta.Want("failed", c[1], c[2], c[0])
         for rcpt, c in CASES.items()}
WANTS[(LATER, bounce_mta.DELAYED)] = bounce_mta.WARNING
WANTS[(LATER, bounce_mta.EXPIRED)] = expiry
# The names of tests/bounces/opensmtpd.
SUFFIXES = {bounce_mta.FAILED: "", bounce_mta.DELAYED: "-warning", bounce_mta.EXPIRED: "-expired"}


def check_machine(tmp):
    bounce_mta.need_root(SMTPD, "the unpacked OpenSMTPD (%s; scripts/deps.sh unpacks it)"
                         % SMTPD)
    bounce_mta.need_users(*USERS)
    bounce_mta.need_programs("unshare")
    # A container may refuse new namespaces or mounts even to root: say so.
    a, b = tmp.join("probe-a"), tmp.join("probe-b")
    os.makedirs(a)
    os.makedirs(b)
    probe = subprocess.run(["unshare", "-m", "-u", "mount", "--bind", a, b], capture_output=True,
                           timeout=30)
    if probe.returncode != 0:
        bounce_mta.skip("unshare -m -u with a bind mount refused here: %s"
                        % probe.stderr.decode(errors="replace").strip())


def main():
    write_dir = bounce_mta.parse_args("test_bounce_opensmtpd.py")
    with bounce_mta.scratch("sk-bounce-opensmtpd-") as tmp:
        smtpd = None
        try:
            check_machine(tmp)
            root = tmp.path
            dirs = [os.path.join(root, d) for d in ("spool", "lib", "run")]
            for d in dirs:
                os.makedirs(d)
            os.makedirs(os.path.join(root, "lib", "opensmtpd", "empty"))
            with bounce_mta.peer(CASES, held={LATER: LATER_REPLY}) as peer:
                port = sktest.free_port()
                conf = os.path.join(root, "smtpd.conf")
                with open(conf, "w") as f:
                    f.write(config(port, peer.port))
                log = open(os.path.join(root, "smtpd.log"), "wb")
                smtpd = sktest.Proc(["unshare", "-m", "-u", "sh", "-c", RUN, "sh", SMTPD, conf]
                                    + dirs + [HOSTNAME], stdout=log, stderr=subprocess.STDOUT)
                log.close()
                sktest.wait_port(port, timeout=20, proc=smtpd)
                bounce_mta.submit_smtp(port, list(CASES) + [LATER])
                got = bounce_mta.wait_reports(peer, classify, WANTS, timeout=WAIT_S,
                                              interval=0.5, log=lambda: smtpd_log(root))
                smtpd.stop()
                sktest.check(smtpd.returncode is not None, "smtpd did not stop")
            # A second warning, if the machine was slow, is read as well.
            n = bounce_mta.check_reports(root, got, classify, WANTS, HOSTNAME,
                                         suffixes=SUFFIXES, write_dir=write_dir)
            # The binds ended with the namespace: nothing of OpenSMTPD's here.
            for path in ("/var/spool/smtpd", "/run/smtpd.sock", "/var/lib/opensmtpd"):
                sktest.check(not os.path.lexists(path), "%s exists outside the namespace" % path)
            sktest.check(os.path.isdir(os.path.join(root, "spool", "smtpd")),
                         "the private spool was not used")
        finally:
            if smtpd:
                smtpd.stop()
    print("ok: %d OpenSMTPD bounces read" % n)


def smtpd_log(root):
    with open(os.path.join(root, "smtpd.log"), "rb") as f:
        return f.read()[-4000:].decode(errors="replace")


if __name__ == "__main__":
    main()
