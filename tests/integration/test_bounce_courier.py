#!/usr/bin/python3
"""Bounces made by a real Courier mail server, read by `smtpkit bounce`.

Courier cannot be installed beside Postfix (courier-mta conflicts with every
mail transport agent), so scripts/deps.sh unpacks Debian's courier-base and
courier-mta without installing them (SK_COURIER_DIR, default
/var/cache/smtpkit-test/mta/courier), installs the libraries they need and
creates the courier user their installation would. Courier's paths are built
in (/etc/courier, /usr/lib/courier, /var/lib/courier, /run/courier), so this
test runs courierd in a mount namespace of its own (unshare --mount) where
overlays make the unpacked tree appear at those paths: /usr/lib shows the
unpacked programs over the machine's own (read-only), and /etc, /var/lib and
/run take their changes into this test's scratch directory, which holds
the configuration (esmtproutes sends every domain to an aiosmtpd peer on
loopback; short queuetime, warntime and retry times; MTA-STS off, and a
resolv.conf naming only loopback) and the queue. Those mounts exist only in
that namespace; the machine's own files are not touched. Messages are
submitted with Courier's own sendmail, entered into the same namespace
(nsenter). The peer refuses as the case wants (unknown
user, mailbox full, message too large, a temporary refusal given up when
queuetime runs out, one held until Courier warns about the delay), and
Courier sends every report back to the sender through the same peer.
`smtpkit bounce --json` must name the recipient and give the class, and
never suppress a warning or a temporary failure. The same reports with their
status part removed are read again, by the Courier text detector.

courierd runs in a PID namespace of its own too (unshare --pid), as its
first process: stopping it, by unshare's PID and its process group's
number, ends everything it started (the kernel ends a PID namespace with
its first process).

With --write DIR the reports are also saved there (tests/bounces/courier is
made that way). Exits 77 (skipped) when the unpacked Courier or the courier
user is absent, not run as root, or the machine refuses the namespace or
the overlays."""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounce_mta  # noqa: E402
import sktest  # noqa: E402

COURIER_DIR = os.environ.get("SK_COURIER_DIR", "/var/cache/smtpkit-test/mta/courier")
COURIERD = os.path.join(COURIER_DIR, "usr", "lib", "courier", "courier", "courierd")
SENDMAIL = os.path.join(COURIER_DIR, "usr", "sbin", "sendmail")
# The user Debian's Courier runs its queue and modules as (scripts/deps.sh
# creates it, as courier-base's installation would).
COURIER_USER = "courier"
HOSTNAME = "mta.origin.test"

# Courier's schedule (its control files; "s" is seconds): a message held by
# a temporary failure is retried every RETRY, warned about after WARNTIME
# and given up after QUEUETIME.
WARNTIME = "2s"
QUEUETIME = "12s"
RETRY = "1s"
# How long the whole exchange may take before the test gives up, and
# courierd's start.
RUN_SECONDS = 90
START_SECONDS = 20
# The delivery modules courierd starts (Courier's module.* files): the
# remote one that talks to the peer and the one that writes the reports.
MODULES = {"courieresmtp", "courierdsn"}

# recipient: (peer's RCPT reply, or DATA reply for big@; class; suppress):
# the peer's refusals, and later@ refused for longer than queuetime: given
# up.
CASES = dict(bounce_mta.REFUSALS, **bounce_mta.GIVEN_UP)
# Refused until Courier warns that it is delayed, then accepted.
DELAYED = bounce_mta.HELD
DELAYED_REPLY = bounce_mta.HELD_REPLY

# Run in the new namespaces: the overlays, then the rest of the arguments.
# $1 the scratch directory (upper layers), $2 the unpacked tree.
MOUNT_SH = r"""
set -eu
S=$1
C=$2
shift 2
mount -t overlay overlay -o lowerdir=$C/usr/lib:/usr/lib /usr/lib
mount -t overlay overlay -o lowerdir=/etc,upperdir=$S/etc,workdir=$S/etc.work /etc
mount -t overlay overlay -o lowerdir=/var/lib,upperdir=$S/varlib,workdir=$S/varlib.work /var/lib
mount -t overlay overlay -o lowerdir=/run,upperdir=$S/run,workdir=$S/run.work /run
exec "$@"
"""
UNSHARE = ["unshare", "--mount", "--pid", "--fork", "--kill-child=SIGKILL", "/bin/sh", "-c",
           MOUNT_SH, "sh"]
# Should this test itself be killed (a ctest timeout), unshare gets SIGKILL
# from the kernel, and with it courierd and its namespace.
PDEATHSIG = ["setpriv", "--pdeathsig", "KILL"]
UPPER_DIRS = ("etc", "etc.work", "varlib", "varlib.work", "run", "run.work")
# courierd started the way Courier's own courierctl.start does: from /usr,
# with the environment /etc/courier/courierd sets and nothing else.
COURIERD_SH = "cd /usr && exec env -i /bin/sh -c 'set -a; . /etc/courier/courierd; " \
              "exec /usr/lib/courier/courier/courierd'"


def prepare(root, port):
    """The namespace's upper layers: Courier's configuration (its package's
    files and ours) under etc, its queue under varlib."""
    for d in UPPER_DIRS:
        os.makedirs(os.path.join(root, d))
    user = pwd.getpwnam(COURIER_USER)
    conf = os.path.join(root, "etc", "courier")
    shutil.copytree(os.path.join(COURIER_DIR, "etc", "courier"), conf, symlinks=True)
    settings = {
        "me": HOSTNAME,
        "defaultdomain": "origin.test",
        # Nothing but localhost is local: the reports to alice@origin.test
        # go out through the peer as well.
        "locals": "localhost",
        # Every domain to the peer (an empty domain is the smart host).
        "esmtproutes": ":[127.0.0.1],%d" % port,
        "queuetime": QUEUETIME,
        "warntime": WARNTIME,
        "retryalpha": RETRY,
        "retrybeta": "3",
        "retrygamma": RETRY,
        "retrymaxdelta": "1",
        # Otherwise a refused connection holds back the domain five minutes.
        "esmtpdelay": "0",
    }
    for name, value in settings.items():
        with open(os.path.join(conf, name), "w") as f:
            f.write(value + "\n")
    # Courier's resolver reads /etc/resolv.conf: in the namespace it names
    # only loopback, where no test serves port 53, so a lookup could not
    # leave the machine (with MTA-STS off, below, the routes need none).
    with open(os.path.join(root, "etc", "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\n")
    for dirpath, dirnames, filenames in os.walk(conf):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), 0, user.pw_gid)
    os.chown(conf, 0, user.pw_gid)
    # The queue, as courier-mta's installation lays it out.
    spool = os.path.join(root, "varlib", "courier")
    os.makedirs(spool)
    for d in ("allfilters", "filters", "msgq", "msgs", "track", "sts", "tmp"):
        os.makedirs(os.path.join(spool, d))
    # MTA-STS off (a policy cache of size 0): Courier would otherwise ask
    # DNS for the policy of each route, even one to an address, and wait
    # out the unanswered query.
    with open(os.path.join(spool, "sts", ".cache_size"), "w") as f:
        f.write("0\n")
    for dirpath, dirnames, filenames in os.walk(spool):
        for name in filenames:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid)
        os.chown(dirpath, user.pw_uid, user.pw_gid)
        os.chmod(dirpath, 0o770 if os.path.basename(dirpath) == "tmp" else 0o750)
    rundir = os.path.join(root, "run", "courier")
    os.makedirs(rundir)
    os.chown(rundir, 0, user.pw_gid)
    os.chmod(rundir, 0o775)


def session_procs(sid):
    """{pid: (parent pid, program name)} of the processes in session sid."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:
            procs[int(entry)] = (int(fields[1]), comm)
    return procs


class Courier:
    """courierd in its namespaces: started, entered, stopped by PID.

    unshare makes a mount namespace and a PID namespace whose first process
    becomes courierd; when that process ends the kernel ends every other
    one in the PID namespace, and unshare (--kill-child) ends it when
    unshare itself is stopped. All of them are in the session started here,
    whose number is unshare's PID."""

    def __init__(self, root):
        self.root = root
        self.proc = None
        self.init = None
        self.log = None

    def start(self):
        self.log = open(os.path.join(self.root, "courierd.log"), "wb")
        self.proc = subprocess.Popen(
            PDEATHSIG + UNSHARE + [self.root, COURIER_DIR, "/bin/sh", "-c", COURIERD_SH],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        # Up once its delivery modules run: a message submitted before
        # they do is left unscheduled.
        deadline = time.monotonic() + START_SECONDS
        while True:
            procs = session_procs(self.proc.pid)
            # unshare's child: the PID namespace's first process (courierd
            # once the mounts are made), whose mount namespace is entered.
            first = [pid for pid, (ppid, _) in procs.items() if ppid == self.proc.pid]
            if first and MODULES <= {name for _, name in procs.values()}:
                self.init = first[0]
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.returncode
                self.stop()
                sktest.fail("courierd did not start its modules (exit %r): %s" % (
                    code, self.output()))
            time.sleep(0.1)

    def output(self):
        with open(os.path.join(self.root, "courierd.log"), "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def run(self, *args, input=None, timeout=60):
        """A command in courierd's mount namespace."""
        return subprocess.run(["nsenter", "-t", str(self.init), "-m", "--"] + list(args),
                              input=input, capture_output=True, timeout=timeout)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # The whole group: unshare, courierd and its modules.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # unshare's end SIGKILLs courierd, and with it the PID
                # namespace.
                self.proc.kill()
                self.proc.wait(timeout=10)
        # Whatever of the group is still there (the PID namespace's end is
        # not waited for by unshare).
        deadline = time.monotonic() + 10
        while session_procs(self.proc.pid):
            if time.monotonic() > deadline:
                sktest.fail("Courier's processes did not end: %r" % session_procs(self.proc.pid))
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.1)
        self.proc = None
        self.log.close()


# Courier's delay warnings: its dsnsubjectwarn.txt, "WARNING: delayed mail.".
classify = bounce_mta.by_subject("WARNING:")
# The names of tests/bounces/courier.
SUFFIXES = {bounce_mta.FAILED: "", bounce_mta.DELAYED: "-delay"}


def skip_unless_usable(root):
    bounce_mta.need_root(COURIERD, "the unpacked Courier (%s; scripts/deps.sh unpacks it)"
                         % COURIERD)
    bounce_mta.need_users(COURIER_USER)
    bounce_mta.need_programs("unshare", "nsenter", "setpriv")
    # A container may refuse mount namespaces or overlays even to root:
    # the same mounts, in a namespace that ends at once, say so.
    probe = os.path.join(root, "probe")
    for d in UPPER_DIRS:
        os.makedirs(os.path.join(probe, d))
    r = subprocess.run(UNSHARE + [probe, COURIER_DIR, "true"], capture_output=True, timeout=30)
    if r.returncode != 0:
        bounce_mta.skip("the mount namespace or its overlays were refused here: %s"
                        % r.stderr.decode(errors="replace").strip())
    shutil.rmtree(probe)


def main():
    write_dir = bounce_mta.parse_args("test_bounce_courier.py")
    # Every failure, and the warning about the held message; later@ is
    # warned about as well before it is given up.
    wants = bounce_mta.failures_of(CASES)
    wants[(DELAYED, bounce_mta.DELAYED)] = bounce_mta.WARNING
    with bounce_mta.scratch("sk-bounce-courier-") as tmp:
        courier = None
        try:
            skip_unless_usable(tmp.path)
            root = os.path.join(tmp.path, "ns")
            with bounce_mta.peer(CASES, held={DELAYED: DELAYED_REPLY}) as peer:
                prepare(root, peer.port)
                courier = Courier(root)
                courier.start()
                for rcpt in list(CASES) + [DELAYED]:
                    r = courier.run(SENDMAIL, "-f", bounce_mta.SENDER, rcpt,
                                    input=bounce_mta.message(rcpt, eol=b"\n"))
                    sktest.check(r.returncode == 0, "sendmail %s: exit %d: %s" % (
                        rcpt, r.returncode, r.stderr.decode(errors="replace")))
                # Courier retries on its own: past warntime the warnings, past
                # queuetime later@ given up. slow@ is let through once it has
                # been warned about.
                got = bounce_mta.wait_reports(
                    peer, classify, wants, timeout=RUN_SECONDS, interval=0.5,
                    each=lambda: bounce_mta.release(peer, DELAYED, classify),
                    log=courier.output)
                courier.stop()
                courier = None
            n = bounce_mta.check_reports(tmp.path, got, classify, wants, HOSTNAME,
                                         text_detector="courier",
                                         optional=bounce_mta.warnings_about(CASES),
                                         suffixes=SUFFIXES, write_dir=write_dir)
        finally:
            if courier is not None:
                courier.stop()
    print("ok: %d Courier reports read, each with and without its status part" % n)


if __name__ == "__main__":
    main()
