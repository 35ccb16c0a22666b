#!/usr/bin/python3
"""Bounces made by a real Sendmail, read by `smtpkit bounce`.

Sendmail cannot be installed beside Postfix (each is the machine's MTA), so
scripts/deps.sh unpacks Debian's sendmail-bin and sendmail-cf without
installing them (SK_SENDMAIL_DIR, default /var/cache/smtpkit-test/mta/sendmail).
This test builds a configuration of its own with sendmail-cf's m4 macros
(queue, pid and status files in a private directory, every message sent to a
smart host on loopback) and runs the binary as root, each time in a UTS
namespace of its own named mta.origin.test: Sendmail sleeps a minute when it
cannot qualify the machine's name, and the machine's /etc/hosts is not ours to
change. Each message is submitted on standard input and delivered at once to
an aiosmtpd peer that refuses as the case wants (unknown user, mailbox full,
message too large, a temporary refusal given up when Timeout.queuereturn runs
out); queue runs (-q) make the delay warnings (Timeout.queuewarn). Sendmail
sends every bounce back through the same peer; `smtpkit bounce --json` must
name the recipient and give the class, and never suppress a warning or a
temporary failure. The same bounces with their status part removed are read
again, by the Sendmail text detector.

Exits 77 (skipped) when the unpacked Sendmail or m4 is absent, or not run as
root."""

import email
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402

SM_DIR = os.environ.get("SK_SENDMAIL_DIR", "/var/cache/smtpkit-test/mta/sendmail")
SENDMAIL = os.path.join(SM_DIR, "usr", "libexec", "sendmail", "sendmail")
CF_M4 = os.path.join(SM_DIR, "usr", "share", "sendmail", "cf", "m4", "cf.m4")
HOSTNAME = "mta.origin.test"

# recipient: (peer's RCPT reply, or DATA reply for big@; class; suppress).
CASES = {
    "unknown@far.test": ("550 5.1.1 <unknown@far.test>: Recipient address rejected: User unknown",
                         "bad-mailbox", True),
    "full@far.test": ("552 5.2.2 <full@far.test>: Mailbox full", "mailbox-full", False),
    "big@far.test": ("552 5.3.4 Message size exceeds fixed maximum message size",
                     "message-too-big", False),
    # Refused for longer than Timeout.queuereturn: given up.
    "later@far.test": ("451 4.3.0 <later@far.test>: try again later", "expired", False),
}
# Refused until Sendmail warns that it is delayed, then accepted.
DELAYED = "slow@far.test"
DELAYED_REPLY = "451 4.3.0 <slow@far.test>: try again later"


def mc(root, port):
    """The configuration's m4 source (sendmail-cf's macros)."""
    q = "`"
    lines = [
        "include(%s%s')" % (q, CF_M4),
        "OSTYPE(%slinux')" % q,
        "define(%sQUEUE_DIR', %s%s/queue')" % (q, q, root),
        "define(%sconfPID_FILE', %s%s/sendmail.pid')" % (q, q, root),
        "define(%sconfSTATUS_FILE', %s%s/statistics')" % (q, q, root),
        "define(%sconfSERVICE_SWITCH_FILE', %s%s/service.switch')" % (q, q, root),
        "define(%sconfHOSTS_FILE', %s%s/hosts')" % (q, q, root),
        "define(%sALIAS_FILE', %s')" % (q, q),
        "define(%sconfHOST_STATUS_DIRECTORY', %s')" % (q, q),
        "define(%sconfDONT_PROBE_INTERFACES', %sTrue')" % (q, q),
        "define(%sconfDONT_BLAME_SENDMAIL', %sGroupWritableDirPathSafe')" % (q, q),
        "define(%sconfDOMAIN_NAME', %s%s')" % (q, q, HOSTNAME),
        "define(%sconfTO_QUEUEWARN', %s2s')" % (q, q),
        "define(%sconfTO_QUEUERETURN', %s8s')" % (q, q),
        "define(%sconfTO_ICONNECT', %s5s')" % (q, q),
        "define(%sconfMAX_MESSAGE_SIZE', %s1000000')" % (q, q),
        "define(%sSMART_HOST', %s[127.0.0.1]')" % (q, q),
        "define(%sRELAY_MAILER_ARGS', %sTCP $h %d')" % (q, q, port),
        "define(%sESMTP_MAILER_ARGS', %sTCP $h %d')" % (q, q, port),
        "FEATURE(%snocanonify')" % q,
        "MAILER(%ssmtp')" % q,
    ]
    return "divert(0)dnl\n" + "".join(line + "dnl\n" for line in lines)


def sendmail(cf, *args, input=None, timeout=60):
    # A UTS namespace of its own, named HOSTNAME (see the docstring).
    cmd = ["unshare", "-u", "sh", "-c", 'hostname %s && exec "$0" "$@"' % HOSTNAME, SENDMAIL,
           "-C", cf] + list(args)
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)


def message(rcpt):
    return (b"From: alice@origin.test\r\nTo: %s\r\nSubject: test %s\r\n"
            b"Message-ID: <%s@origin.test>\r\n\r\nHello.\r\n" % (
                rcpt.encode(), rcpt.encode(), rcpt.split("@")[0].encode()))


def bounces(peer):
    return [m for m in peer.messages if m["mail_from"] in ("", "<>")]


def is_warning(m):
    """Sendmail's delay warnings: "Warning: could not send message for past ..."."""
    return (email.message_from_bytes(m["data"])["Subject"] or "").startswith("Warning:")


def about(data):
    """The recipient a bounce is about: the To of the returned message."""
    m = email.message_from_bytes(data)
    for part in m.walk():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) else email.message_from_string(payload)
            return inner["To"]
    return None


def done(peer):
    got = bounces(peer)
    failed = {about(m["data"]) for m in got if not is_warning(m)}
    warned = {about(m["data"]) for m in got if is_warning(m)}
    return set(CASES) <= failed and DELAYED in warned


def strip_status(data):
    text = data.decode("utf-8", "replace")
    m = re.search(r'boundary="?([^";\s]+)"?', text)
    boundary = "--" + m.group(1)
    parts = text.split(boundary)
    kept = [p for p in parts if "message/delivery-status" not in p.split("\n\n", 1)[0].lower()]
    return boundary.join(kept).encode()


def main():
    if os.geteuid() != 0 or not os.access(SENDMAIL, os.X_OK) or not os.path.exists(CF_M4):
        print("SKIP: needs root and the unpacked Sendmail (%s; scripts/deps.sh unpacks it)"
              % SENDMAIL)
        sys.exit(sktest.SKIP)
    if not shutil.which("m4") or not shutil.which("unshare"):
        print("SKIP: needs m4 and unshare")
        sys.exit(sktest.SKIP)
    # A container may refuse new namespaces even to root: say so.
    probe = subprocess.run(["unshare", "-u", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        print("SKIP: unshare -u refused here: %s" % probe.stderr.decode(errors="replace").strip())
        sys.exit(sktest.SKIP)
    tmp = sktest.TempDir("sk-bounce-sendmail-")
    rcpt_replies = {k: v[0] for k, v in CASES.items() if not k.startswith("big@")}
    rcpt_replies[DELAYED] = DELAYED_REPLY
    peer = Peer(name="mx.far.test", rcpt_replies=rcpt_replies,
                data_replies={"big@far.test": [CASES["big@far.test"][0]]})
    failures = []
    got = []
    try:
        root = tmp.path
        os.makedirs(os.path.join(root, "queue"), mode=0o700)
        with open(os.path.join(root, "service.switch"), "w") as f:
            f.write("hosts files\naliases files\n")
        with open(os.path.join(root, "hosts"), "w") as f:
            f.write("127.0.0.1 %s localhost\n" % HOSTNAME)
        with peer:
            cf = os.path.join(root, "sendmail.cf")
            r = subprocess.run(["m4"], input=mc(root, peer.port).encode(), capture_output=True,
                               timeout=30)
            sktest.check(r.returncode == 0 and r.stdout, "m4: %s" % r.stderr.decode())
            with open(cf, "wb") as f:
                f.write(r.stdout)
            for rcpt in list(CASES) + [DELAYED]:
                r = sendmail(cf, "-odi", "-oi", "-f", "alice@origin.test", rcpt,
                             input=message(rcpt))
                # The delivery's own exit (67 unknown user, 75 left in the
                # queue...); 64 and 78 are a bad command line or configuration.
                sktest.check(r.returncode not in (64, 78), "sendmail %s: exit %d: %s" % (
                    rcpt, r.returncode, r.stderr.decode(errors="replace")))
            # Queue runs: past Timeout.queuewarn (2s) the warnings, past
            # Timeout.queuereturn (8s) later@ given up. slow@ is let through
            # once it has been warned about.
            deadline = time.monotonic() + 40
            while not done(peer) and time.monotonic() < deadline:
                time.sleep(1.5)
                if DELAYED in {about(m["data"]) for m in bounces(peer) if is_warning(m)}:
                    peer.handler.rcpt_replies.pop(DELAYED, None)
                sendmail(cf, "-q")
            got = bounces(peer)
            sktest.check(done(peer), "want a failure for each of %s and a warning for %s, got %r"
                         % (sorted(CASES), DELAYED,
                            [(about(m["data"]), is_warning(m)) for m in got]))
        files = []
        for i, m in enumerate(got):
            rcpt = about(m["data"])
            path = os.path.join(root, "b%d.eml" % i)
            with open(path, "wb") as f:
                f.write(m["data"])
            text = os.path.join(root, "t%d.eml" % i)
            with open(text, "wb") as f:
                f.write(strip_status(m["data"]))
            files += [(rcpt, path, "rfc3464", is_warning(m)),
                      (rcpt, text, "sendmail", is_warning(m))]
        r = sktest.smtpkit("bounce", "--json", *[f[1] for f in files], timeout=60)
        sktest.check(r.returncode == 0, "smtpkit bounce: exit %d: %s %s" % (
            r.returncode, r.stdout, r.stderr))
        seen = set()
        for (rcpt, path, detector, warning), res in zip(files, json.loads(r.stdout)):
            rs = res["recipients"]
            if warning:
                want_cls, want_suppress, want_action = None, False, "delayed"
            elif rcpt in CASES:
                want_cls, want_suppress = CASES[rcpt][1:]
                want_action = "failed"
            else:
                failures.append("%s: a bounce about %r" % (os.path.basename(path), rcpt))
                continue
            seen.add(rcpt + (" (warning)" if warning else ""))
            ok = (res["detector"] == detector and len(rs) == 1 and rs[0]["recipient"] == rcpt
                  and rs[0]["action"] == want_action and rs[0]["suppress"] == want_suppress
                  and (want_cls is None or rs[0]["class"] == want_cls)
                  and res["reporting_mta"] == HOSTNAME)
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
    print("ok: %d Sendmail bounces read, each with and without its status part" % len(got))


if __name__ == "__main__":
    main()
