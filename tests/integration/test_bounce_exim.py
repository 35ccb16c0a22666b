#!/usr/bin/python3
"""Bounces made by a real Exim, read by `smtpkit bounce`.

Exim cannot be installed beside Postfix (each is the machine's MTA), so
scripts/deps.sh unpacks Debian's exim4-daemon-light without installing it
(SK_EXIM_DIR, default /var/cache/smtpkit-test/mta/exim). This test runs that
binary as root with a configuration of its own in a private directory
(spool, logs; no daemon, no listening port): each message is submitted on
standard input and delivered at once to an aiosmtpd peer on loopback that
refuses as the case wants (unknown user, mailbox full, message too large,
a temporary refusal given up when its retry time runs out), or to a local
file with a quota (a full mailbox of Exim's own). A delay warning comes from
a message held by a temporary refusal. Exim sends every bounce back through
the same peer; `smtpkit bounce --json` must name the recipient and give the
class, and never suppress on the temporary ones. The same bounces with their
status part removed are read again, by the Exim text detector.

Exits 77 (skipped) when the unpacked Exim is absent or not run as root."""

import email
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402

EXIM_DIR = os.environ.get("SK_EXIM_DIR", "/var/cache/smtpkit-test/mta/exim")
EXIM = os.path.join(EXIM_DIR, "usr", "sbin", "exim4")
# The user Debian's Exim is built to run as (scripts/deps.sh creates it, as
# the package's own installation would).
EXIM_USER = "Debian-exim"

# recipient: (peer's RCPT reply, or DATA reply for big@; class; suppress;
# action). local.test is delivered by Exim itself.
CASES = {
    "unknown@far.test": ("550 5.1.1 <unknown@far.test>: Recipient address rejected: User unknown",
                         "bad-mailbox", True, "failed"),
    "full@far.test": ("552 5.2.2 <full@far.test>: Mailbox full", "mailbox-full", False,
                      "failed"),
    "big@far.test": ("552 5.3.4 Message size exceeds fixed maximum message size",
                     "message-too-big", False, "failed"),
    "later@far.test": ("451 4.3.0 <later@far.test>: try again later", "expired", False,
                       "failed"),
    # Exim's own quota failure: its report says only 5.0.0, without a
    # Diagnostic-Code, and its text "mailbox is full: retry timeout
    # exceeded": the text's reason gives the class, which does not suppress.
    "quota@local.test": (None, "mailbox-full", False, "failed"),
    # Held by a temporary refusal: first a delay warning, then given up.
    "slow@far.test": (None, "expired", False, "failed"),
}
# Held by a temporary refusal until Exim warns that it is delayed.
DELAYED = "slow@far.test"
DELAYED_REPLY = "451 4.3.0 <slow@far.test>: try again later"


def config(root, peer_port):
    return """exim_path = {exim}
primary_hostname = mta.origin.test
qualify_domain = origin.test
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
pid_file_path = {root}/exim.pid
exim_user = Debian-exim
exim_group = Debian-exim
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
message_size_limit = 1M
delay_warning = 2s
delay_warning_condition = true
timeout_frozen_after = 1h
ignore_bounce_errors_after = 0s

begin routers
quota_local:
  driver = accept
  domains = local.test
  transport = quota_file
peer:
  driver = manualroute
  domains = far.test : origin.test
  transport = peer_smtp
  route_list = * 127.0.0.1 byname
  self = send

begin transports
peer_smtp:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_avoid_tls = *
quota_file:
  driver = appendfile
  file = {root}/mail/quota
  user = Debian-exim
  quota = 100
  quota_is_inclusive = true

begin retry
* * F,3s,1s

begin rewrite
""".format(exim=EXIM, root=root, port=peer_port)


def exim(conf, *args, input=None, timeout=60):
    return subprocess.run([EXIM, "-C", conf] + list(args), input=input, capture_output=True,
                          timeout=timeout)


def message(rcpt, size=0):
    body = b"Hello.\r\n" + (b"x" * 70 + b"\r\n") * (size // 72)
    return (b"From: alice@origin.test\r\nTo: %s\r\nSubject: test %s\r\n"
            b"Message-ID: <%s@origin.test>\r\n\r\n" % (rcpt.encode(), rcpt.encode(),
                                                        rcpt.split("@")[0].encode())) + body


def bounces(peer):
    return [m for m in peer.messages if m["mail_from"] in ("", "<>")]


def is_warning(m):
    """Exim's delay warnings: "Warning: message ... delayed ..."."""
    return (email.message_from_bytes(m["data"])["Subject"] or "").startswith("Warning:")


def done(peer):
    got = bounces(peer)
    failed = {about(m["data"]) for m in got if not is_warning(m)}
    warned = {about(m["data"]) for m in got if is_warning(m)}
    return set(CASES) <= failed and DELAYED in warned


def about(data):
    """The recipient a bounce is about: the To of the returned message."""
    m = email.message_from_bytes(data)
    for part in m.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) else email.message_from_string(payload)
            return inner["To"]
    return None


def strip_status(data):
    text = data.decode("utf-8", "replace")
    m = re.search(r'boundary="?([^";\s]+)"?', text)
    boundary = "--" + m.group(1)
    parts = text.split(boundary)
    kept = [p for p in parts if "message/delivery-status" not in p.split("\n\n", 1)[0].lower()]
    return boundary.join(kept).encode()


def main():
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        print("SKIP: no %s user (scripts/deps.sh creates it)" % EXIM_USER)
        sys.exit(sktest.SKIP)
    if os.geteuid() != 0 or not os.access(EXIM, os.X_OK):
        print("SKIP: needs root and the unpacked Exim (%s; scripts/deps.sh unpacks it)" % EXIM)
        sys.exit(sktest.SKIP)
    tmp = sktest.TempDir("sk-bounce-exim-")
    rcpt_replies = {k: v[0] for k, v in CASES.items() if v[0] and not k.startswith("big@")}
    rcpt_replies[DELAYED] = DELAYED_REPLY
    peer = Peer(name="mx.far.test", rcpt_replies=rcpt_replies,
                data_replies={"big@far.test": [CASES["big@far.test"][0]]})
    failures = []
    try:
        root = tmp.path
        os.chmod(root, 0o755)  # Exim's user reaches its spool
        for d in ("spool", "log", "mail"):
            os.makedirs(os.path.join(root, d))
            shutil.chown(os.path.join(root, d), EXIM_USER, EXIM_USER)
        conf = os.path.join(root, "exim.conf")
        with peer:
            with open(conf, "w") as f:
                f.write(config(root, peer.port))
            os.chmod(conf, 0o644)
            for rcpt in list(CASES) + [DELAYED]:
                size = 2000 if rcpt.startswith("quota@") else 0
                r = exim(conf, "-odi", "-oi", "-f", "alice@origin.test", rcpt,
                         input=message(rcpt, size))
                sktest.check(r.returncode == 0, "exim %s: exit %d: %s" % (
                    rcpt, r.returncode, r.stderr.decode(errors="replace")))
            # Past the retry rule's 3s and the delay warning's 2s, queue
            # runs give up on later@ and warn about slow@.
            deadline = time.monotonic() + 30
            want = len(CASES) + 1
            while not done(peer) and time.monotonic() < deadline:
                time.sleep(1.5)
                exim(conf, "-qff")
            got = bounces(peer)
            # Let the delayed message go and clear the queue.
            peer.handler.rcpt_replies.pop(DELAYED, None)
        log = ""
        for name in ("mainlog", "paniclog", "rejectlog"):
            p = os.path.join(root, "log", name)
            if os.path.exists(p):
                log += open(p, errors="replace").read()
        sktest.check(done(peer), "want %d bounces, got %d: %r\n%s" % (
            want, len(got), [about(m["data"]) for m in got], log[-3000:]))
        files = []
        for i, m in enumerate(got):
            rcpt = about(m["data"])
            path = os.path.join(root, "b%d.eml" % i)
            with open(path, "wb") as f:
                f.write(m["data"])
            text = os.path.join(root, "t%d.eml" % i)
            with open(text, "wb") as f:
                f.write(strip_status(m["data"]))
            files += [(rcpt, path, "rfc3464", is_warning(m)), (rcpt, text, "exim", is_warning(m))]
        r = sktest.smtpkit("bounce", "--json", *[f[1] for f in files], timeout=60)
        sktest.check(r.returncode == 0, "smtpkit bounce: exit %d: %s %s" % (
            r.returncode, r.stdout, r.stderr))
        seen = set()
        for (rcpt, path, detector, warning), res in zip(files, json.loads(r.stdout)):
            rs = res["recipients"]
            if warning:
                want_cls, want_suppress, want_action = None, False, "delayed"
            elif rcpt in CASES:
                want_cls, want_suppress, want_action = CASES[rcpt][1:]
            else:
                failures.append("%s: a bounce about %r" % (os.path.basename(path), rcpt))
                continue
            seen.add(rcpt + (" (warning)" if warning else ""))
            ok = (res["detector"] == detector and len(rs) == 1 and rs[0]["recipient"] == rcpt
                  and rs[0]["action"] == want_action and rs[0]["suppress"] == want_suppress
                  and (want_cls is None or rs[0]["class"] == want_cls)
                  # Exim's From is Mailer-Daemon@ its qualify_domain, all
                  # the text tells of the reporting MTA.
                  and res["reporting_mta"] == ("mta.origin.test" if detector == "rfc3464"
                                               else "origin.test"))
            if not ok:
                failures.append("%s (%s): want %s %s %s %s suppress=%s, got %s" % (
                    os.path.basename(path), rcpt, detector, rcpt, want_action, want_cls,
                    want_suppress, json.dumps(res)))
        missing = set(CASES) | {DELAYED + " (warning)"}
        missing -= seen
        if missing:
            failures.append("no bounce for %s" % sorted(missing))
    finally:
        if os.environ.get("SK_KEEP_TMP"):
            print("kept", tmp.path)
        else:
            tmp.cleanup()
    if failures:
        sktest.fail("\n".join(failures))
    print("ok: %d Exim bounces read, each with and without its status part" % len(got))


if __name__ == "__main__":
    main()
