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

With --write DIR the bounces are also saved there; otherwise nothing is
kept. Exits 77 (skipped) when the unpacked Exim or its user is absent or
not run as root."""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounce_mta  # noqa: E402
import sktest  # noqa: E402

EXIM_DIR = os.environ.get("SK_EXIM_DIR", "/var/cache/smtpkit-test/mta/exim")
EXIM = os.path.join(EXIM_DIR, "usr", "sbin", "exim4")
# The user Debian's Exim is built to run as (scripts/deps.sh creates it, as
# the package's own installation would).
EXIM_USER = "Debian-exim"

# recipient: (peer's RCPT reply, or DATA reply for big@; class; suppress):
# the peer's refusals, later@ given up when its retry time runs out, and
# Exim's cases. local.test is delivered by Exim itself.
CASES = dict(bounce_mta.REFUSALS, **bounce_mta.GIVEN_UP, **{
    # Exim's own quota failure: its report says only 5.0.0, without a
    # Diagnostic-Code, and its text "mailbox is full: retry timeout
    # exceeded": the text's reason gives the class, which does not suppress.
    "quota@local.test": (None, "mailbox-full", False),
    # Held by a temporary refusal: first a delay warning, then given up.
    bounce_mta.HELD: (None, "expired", False),
})
# Held by a temporary refusal until Exim warns that it is delayed.
DELAYED = bounce_mta.HELD
DELAYED_REPLY = bounce_mta.HELD_REPLY


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


# Exim's delay warnings: "Warning: message ... delayed ...".
classify = bounce_mta.by_subject("Warning:")


def main():
    write_dir = bounce_mta.parse_args("test_bounce_exim.py")
    bounce_mta.need_users(EXIM_USER)
    bounce_mta.need_root(EXIM, "the unpacked Exim (%s; scripts/deps.sh unpacks it)" % EXIM)
    # Every failure, and the warning about the held message; a recipient
    # deferred a while (later@, quota@) may be warned about as well.
    wants = bounce_mta.failures_of(CASES)
    wants[(DELAYED, bounce_mta.DELAYED)] = bounce_mta.WARNING
    with bounce_mta.scratch("sk-bounce-exim-") as tmp:
        root = tmp.path
        os.chmod(root, 0o755)  # Exim's user reaches its spool
        for d in ("spool", "log", "mail"):
            os.makedirs(os.path.join(root, d))
            shutil.chown(os.path.join(root, d), EXIM_USER, EXIM_USER)
        conf = os.path.join(root, "exim.conf")
        with bounce_mta.peer(CASES, held={DELAYED: DELAYED_REPLY}) as peer:
            with open(conf, "w") as f:
                f.write(config(root, peer.port))
            os.chmod(conf, 0o644)
            for rcpt in CASES:
                size = 2000 if rcpt.startswith("quota@") else 0
                r = exim(conf, "-odi", "-oi", "-f", bounce_mta.SENDER, rcpt,
                         input=bounce_mta.message(rcpt, size))
                sktest.check(r.returncode == 0, "exim %s: exit %d: %s" % (
                    rcpt, r.returncode, r.stderr.decode(errors="replace")))
            # Past the retry rule's 3s and the delay warning's 2s, queue
            # runs give up on later@ and warn about slow@.
            got = bounce_mta.wait_reports(peer, classify, wants, timeout=30, interval=1.5,
                                          each=lambda: exim(conf, "-qff"),
                                          log=lambda: exim_log(root))
            # Let the delayed message go and clear the queue.
            peer.handler.rcpt_replies.pop(DELAYED, None)
        # Exim's From is Mailer-Daemon@ its qualify_domain, all the text
        # tells of the reporting MTA.
        n = bounce_mta.check_reports(root, got, classify, wants, "mta.origin.test",
                                     text_detector="exim", text_reporting_mta="origin.test",
                                     optional=bounce_mta.warnings_about(CASES),
                                     write_dir=write_dir)
    print("ok: %d Exim bounces read, each with and without its status part" % n)


def exim_log(root):
    log = ""
    for name in ("mainlog", "paniclog", "rejectlog"):
        p = os.path.join(root, "log", name)
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                log += f.read()
    return log[-3000:]


if __name__ == "__main__":
    main()
