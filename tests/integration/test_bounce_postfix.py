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

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounce_mta  # noqa: E402
import sktest  # noqa: E402

POSTFIX = "/usr/sbin/postfix"

# recipient: (the peer's reply at RCPT, or at DATA for big@, the class
# and suppression the bounce must get). None: Postfix itself refuses. The
# peer's refusals, and Postfix's cases.
CASES = dict(bounce_mta.REFUSALS, **{
    "disabled@far.test": ("550 5.2.1 <disabled@far.test>: mailbox disabled, not accepting "
                          "messages", "mailbox-disabled", True),
    "blocked@far.test": ("554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using "
                         "zen.spamhaus.org", "blocked", False),
    "later@far.test": ("450 4.2.0 <later@far.test>: try again later", "expired", False),
    "nosuchuser@local.test": (None, "bad-mailbox", True),
    # Postfix's own full mailbox: local(8) writing past mailbox_size_limit
    # (the mailbox is filled nearly to it first) says "cannot update
    # mailbox ... error writing message: File too large" with 5.2.2.
    "nobody@local.test": (None, "mailbox-full", False),
})
# The local user whose mailbox is full, and the limit.
FULL_USER = "nobody"
MAILBOX_LIMIT = 20480


def main():
    write_dir = bounce_mta.parse_args("test_bounce_postfix.py")
    bounce_mta.need_root(POSTFIX, "Postfix (a private instance)")
    classify = bounce_mta.by_subject()
    wants = bounce_mta.failures_of(CASES)
    with bounce_mta.scratch("sk-bounce-postfix-") as tmp:
        master = None
        try:
            with bounce_mta.peer(CASES) as peer:
                master = start_postfix(tmp.path, peer.port)
                bounce_mta.submit_smtp(master[1], CASES)
                got = bounce_mta.wait_reports(peer, classify, wants, timeout=20, interval=0.05,
                                              log=lambda: postfix_log(tmp.path))
            n = bounce_mta.check_reports(tmp.path, got, classify, wants, "mta.origin.test",
                                         text_detector="postfix", write_dir=write_dir)
        finally:
            if master:
                stop_postfix(master)
    print("ok: %d Postfix bounces read" % n)


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


def postfix_log(root):
    with open(os.path.join(root, "postfix.log"), "rb") as f:
        return f.read()[-3000:].decode(errors="replace")


if __name__ == "__main__":
    main()
