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

With --write DIR the bounces are also saved there; otherwise nothing is
kept. Exits 77 (skipped) when the unpacked Sendmail or m4 is absent, or not
run as root."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounce_mta  # noqa: E402
import sktest  # noqa: E402

SM_DIR = os.environ.get("SK_SENDMAIL_DIR", "/var/cache/smtpkit-test/mta/sendmail")
SENDMAIL = os.path.join(SM_DIR, "usr", "libexec", "sendmail", "sendmail")
CF_M4 = os.path.join(SM_DIR, "usr", "share", "sendmail", "cf", "m4", "cf.m4")
HOSTNAME = "mta.origin.test"

# recipient: (peer's RCPT reply, or DATA reply for big@; class; suppress):
# the peer's refusals, and later@ refused for longer than
# Timeout.queuereturn: given up.
CASES = dict(bounce_mta.REFUSALS, **bounce_mta.GIVEN_UP)
# Refused until Sendmail warns that it is delayed, then accepted.
DELAYED = bounce_mta.HELD
DELAYED_REPLY = bounce_mta.HELD_REPLY


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


# Sendmail's delay warnings: "Warning: could not send message for past ...".
classify = bounce_mta.by_subject("Warning:")


def main():
    write_dir = bounce_mta.parse_args("test_bounce_sendmail.py")
    if not os.path.exists(CF_M4):
        bounce_mta.skip("needs the unpacked Sendmail's m4 macros (%s; scripts/deps.sh unpacks"
                        " them)" % CF_M4)
    bounce_mta.need_root(SENDMAIL, "the unpacked Sendmail (%s; scripts/deps.sh unpacks it)"
                         % SENDMAIL)
    bounce_mta.need_programs("m4", "unshare")
    # A container may refuse new namespaces even to root: say so.
    probe = subprocess.run(["unshare", "-u", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        bounce_mta.skip("unshare -u refused here: %s"
                        % probe.stderr.decode(errors="replace").strip())
    # Every failure, and the warning about the held message; later@ may
    # be warned about as well before it is given up.
    wants = bounce_mta.failures_of(CASES)
    wants[(DELAYED, bounce_mta.DELAYED)] = bounce_mta.WARNING
    with bounce_mta.scratch("sk-bounce-sendmail-") as tmp:
        root = tmp.path
        os.makedirs(os.path.join(root, "queue"), mode=0o700)
        with open(os.path.join(root, "service.switch"), "w") as f:
            f.write("hosts files\naliases files\n")
        with open(os.path.join(root, "hosts"), "w") as f:
            f.write("127.0.0.1 %s localhost\n" % HOSTNAME)
        with bounce_mta.peer(CASES, held={DELAYED: DELAYED_REPLY}) as peer:
            cf = os.path.join(root, "sendmail.cf")
            r = subprocess.run(["m4"], input=mc(root, peer.port).encode(), capture_output=True,
                               timeout=30)
            sktest.check(r.returncode == 0 and r.stdout, "m4: %s" % r.stderr.decode())
            with open(cf, "wb") as f:
                f.write(r.stdout)
            for rcpt in list(CASES) + [DELAYED]:
                r = sendmail(cf, "-odi", "-oi", "-f", bounce_mta.SENDER, rcpt,
                             input=bounce_mta.message(rcpt))
                # The delivery's own exit (67 unknown user, 75 left in the
                # queue...); 64 and 78 are a bad command line or configuration.
                sktest.check(r.returncode not in (64, 78), "sendmail %s: exit %d: %s" % (
                    rcpt, r.returncode, r.stderr.decode(errors="replace")))

            # Queue runs: past Timeout.queuewarn (2s) the warnings, past
            # Timeout.queuereturn (8s) later@ given up. slow@ is let through
            # once it has been warned about.
            def queue_run():
                bounce_mta.release(peer, DELAYED, classify)
                sendmail(cf, "-q")

            got = bounce_mta.wait_reports(peer, classify, wants, timeout=40, interval=1.5,
                                          each=queue_run)
        n = bounce_mta.check_reports(root, got, classify, wants, HOSTNAME,
                                     text_detector="sendmail",
                                     optional=bounce_mta.warnings_about(CASES),
                                     write_dir=write_dir)
    print("ok: %d Sendmail bounces read, each with and without its status part" % n)


if __name__ == "__main__":
    main()
