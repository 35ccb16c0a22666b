#!/usr/bin/python3
"""Honest diagnoses about the data directory (docs/serve.md, docs/queue.md).

`smtpkit queue list` on a spool it may not read says permission denied (not
"no spool"). `smtpkit serve` checks its data directory before any port
opens: a file where the directory should be, a spool that is a file, a
directory it cannot create or write, or (started as root with --user) one
that user cannot write exit 78 with the directory and the reason, without
logging "listening" and without the port ever answering; a spool locked by
another daemon stops it before it listens too.

Permissions do not stop root, and CI runs as root: there the commands that
must be refused run as the user nobody (setpriv, or runuser); as another
user, the directories are made unreadable or read-only with chmod."""

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect  # noqa: E402

EX_IOERR, EX_CONFIG, EX_OSERR = 74, 78, 71
INJECT = os.path.join(sktest.BUILD_DIR, "example_spool_inject")
ROOT = os.geteuid() == 0
os.environ.pop("SMTPKIT_DATA_DIR", None)


def as_nobody(argv):
    """argv run as the user nobody (only called as root)."""
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=%d" % pwd.getpwnam("nobody").pw_gid,
                "--clear-groups"] + argv
    return ["runuser", "-u", "nobody", "--"] + argv


if ROOT:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        print("skip: running as root and there is no user nobody to drop to")
        sys.exit(sktest.SKIP)
    if not shutil.which("setpriv") and not shutil.which("runuser"):
        print("skip: running as root without setpriv or runuser")
        sys.exit(sktest.SKIP)

tmp = sktest.TempDir("sk-data-dir-checks-")
# nobody must reach what is in the temporary directory.
os.chmod(tmp.path, 0o755)
restore = []  # (path, mode) put back before the directory is removed


def run(argv, unprivileged=False, timeout=30):
    argv = [str(a) for a in argv]
    if unprivileged and ROOT:
        argv = as_nobody(argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def serve_fails(data_dir, want, extra=(), unprivileged=False, rc=EX_CONFIG, timeout=30):
    """serve on data_dir exits rc before listening, saying want."""
    port = sktest.free_port(HOST)
    r = run([sktest.SMTPKIT, "serve", "--data-dir", data_dir, "--listen",
             "%s:%d" % (HOST, port)] + list(extra), unprivileged, timeout)
    expect(r.returncode == rc, "serve on %s: exit %d, want %d\n%s" % (data_dir, r.returncode,
                                                                     rc, r.stderr))
    expect(want in r.stderr, "serve says %r:\n%s" % (want, r.stderr))
    expect("listening" not in r.stderr, "refused before listening:\n%s" % r.stderr)
    with socket.socket() as s:
        expect(s.connect_ex((HOST, port)) != 0, "nothing listens on %d" % port)
    return r


def make_unwritable(path):
    """path may not be written by the user the refused commands run as."""
    if not ROOT:
        restore.append((path, stat.S_IMODE(os.stat(path).st_mode)))
        os.chmod(path, 0o555)


try:
    # --- queue list on a spool it may not read ----------------------------
    data = tmp.join("data")
    r = sktest.run([INJECT, data, "--from", "a@example.org", "--to", "b@example.net"],
                   input="Subject: x\r\n\r\nHello.\r\n", timeout=30, check_rc=0)
    qid = r.stdout.strip()
    spool = os.path.join(data, "spool")
    if ROOT:
        # The spool is root's (0700): nobody may not enter it.
        os.chmod(data, 0o755)
    else:
        restore.append((spool, stat.S_IMODE(os.stat(spool).st_mode)))
        os.chmod(spool, 0)
    for args in (["list"], ["list", "--json"], ["show", qid]):
        r = run([sktest.SMTPKIT, "queue", "--data-dir", data] + args, unprivileged=True)
        expect(r.returncode == EX_IOERR, "queue %s: exit %d, want 74: %s"
               % (" ".join(args), r.returncode, r.stderr))
        expect("cannot read the spool in %s (from --data-dir): Permission denied" % data
               in r.stderr and "no spool" not in r.stderr,
               "queue %s says permission denied: %r" % (" ".join(args), r.stderr))
    for path, mode in restore:
        os.chmod(path, mode)
    restore.clear()
    # As track does for a store it may not read.
    if ROOT:
        os.chmod(data, 0o700)
    else:
        restore.append((data, stat.S_IMODE(os.stat(data).st_mode)))
        os.chmod(data, 0)
    r = run([sktest.SMTPKIT, "track", "--data-dir", data, qid], unprivileged=True)
    expect("Permission denied" in r.stderr, "track says permission denied: %r" % r.stderr)
    for path, mode in restore:
        os.chmod(path, mode)
    restore.clear()

    # --- serve: the data directory is checked before binding ---------------
    afile = tmp.join("a-file")
    open(afile, "w").close()
    serve_fails(afile, "data-dir %s: not a directory" % afile)

    spool_file = tmp.join("spool-file")
    os.makedirs(spool_file)
    open(os.path.join(spool_file, "spool"), "w").close()
    serve_fails(spool_file, "data-dir %s: spool is not a directory" % spool_file)

    missing = tmp.join("no", "such")
    serve_fails(missing, "data-dir %s: cannot create it: No such file or directory (its parent "
                "directory does not exist)" % missing)

    readonly = tmp.join("readonly")
    os.makedirs(readonly, 0o755)
    make_unwritable(readonly)
    serve_fails(readonly, "data-dir %s: cannot write in it: Permission denied" % readonly,
                unprivileged=True)

    # A spool another user made, for a daemon that drops to --user nobody.
    if ROOT:
        theirs = tmp.join("theirs")
        os.makedirs(os.path.join(theirs, "spool"), 0o700)
        serve_fails(theirs, "data-dir %s: cannot write in spool as user nobody: Permission "
                    "denied" % theirs, extra=["--user", "nobody"])

    # A spool locked by a running daemon: the second one gives up after
    # the spool's lock wait (5 s) without having listened.
    srv = Serve(tmp, name="first")
    with srv:
        serve_fails(srv.data_dir, "spool %s is in use by process %d"
                    % (os.path.join(srv.data_dir, "spool"), srv.proc.pid), rc=EX_OSERR,
                    timeout=60)
    print("ok")
finally:
    for path, mode in restore:
        os.chmod(path, mode)
    tmp.cleanup()
