#!/usr/bin/python3
"""Who may use the control socket (docs/SECURITY.md "The control socket"):
with `smtpkit serve` running as root, a user other than root cannot reach
the socket (the spool directory is 0700, the socket 0600), and when both
are opened up on purpose, the daemon still refuses that user by its
credentials (SO_PEERCRED) and changes nothing. With --user nobody, the
socket is made by nobody after the privilege drop; root and nobody may use
it, another user may not. Needs root (setpriv to other users); exits 77
otherwise."""

import json
import os
import pwd
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import Serve, expect  # noqa: E402

if os.geteuid() != 0:
    print("SKIP: needs root to act as other users")
    sys.exit(77)

INJECT = os.path.join(sktest.BUILD_DIR, "example_spool_inject")
NOBODY = pwd.getpwnam("nobody")
OTHER = pwd.getpwnam("daemon")  # a user that is neither root nor nobody

CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect: %s" % e.strerror)
    sys.exit(0)
try:
    s.sendall(b"delete all\\n")
except OSError:
    pass  # refused at once: the answer is still there to read
print(s.makefile().readline().rstrip("\\n"))
"""


def as_user(user, argv):
    return subprocess.run(["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid,
                           "--clear-groups"] + argv, capture_output=True, text=True, timeout=60)


def connect_as(user, sock):
    r = as_user(user, ["/usr/bin/python3", "-c", CONNECT, sock])
    expect(r.returncode == 0, "python as %s: %s" % (user.pw_name, r.stderr))
    return r.stdout.strip()


def queue_as(user, data_dir, *args):
    return as_user(user, [sktest.SMTPKIT, "queue", "--data-dir", data_dir] + list(args))


def held(data_dir):
    r = sktest.smtpkit("queue", "--data-dir", data_dir, "list", "--json", timeout=30,
                       check_rc=0)
    return [m for m in json.loads(r.stdout) if m["state"] == "hold"]


tmp = sktest.TempDir("sk-queue-perms-")
try:
    # Other users may walk to the data directory; what guards the spool
    # is the daemon's own modes.
    os.chmod(tmp.path, 0o755)
    closed = sktest.free_port()
    args = ["--hold", "--relay-host", "127.0.0.1:%d" % closed]

    # --- a daemon running as root -----------------------------------------
    d = tmp.join("root-data")
    sktest.run([INJECT, d, "--from", "a@a.test", "--to", "b@b.test", "--hold"],
               input="Subject: x\r\n\r\nx\r\n", timeout=30, check_rc=0)
    os.chmod(d, 0o755)
    spool = os.path.join(d, "spool")
    sock = os.path.join(spool, "control.sock")
    srv = Serve(tmp, data_dir=d, args=args, name="root")
    with srv:
        st = os.stat(sock)
        expect(st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, "root's socket, 0600", srv)
        expect(stat.S_IMODE(os.stat(spool).st_mode) == 0o700, "the spool is 0700", srv)
        # The CLI as nobody stops at the spool; so does a raw connect.
        r = queue_as(NOBODY, d, "delete", "--all")
        expect(r.returncode == 74 and "Permission denied" in r.stderr, "nobody's CLI: %d %s"
               % (r.returncode, r.stderr), srv)
        expect(connect_as(NOBODY, sock) == "connect: Permission denied", "the 0700 spool", srv)
        # The spool searchable: the socket's mode stops nobody.
        os.chmod(spool, 0o711)
        expect(connect_as(NOBODY, sock) == "connect: Permission denied", "the 0600 socket", srv)
        # Both opened up: the daemon refuses nobody by its credentials.
        os.chmod(sock, 0o666)
        out = connect_as(NOBODY, sock)
        expect(out == "error denied user %d may not use this daemon's control socket"
               % NOBODY.pw_uid, "refused by SO_PEERCRED: %r" % out, srv)
        os.chmod(spool, 0o755)
        os.chmod(os.path.join(spool, "msg"), 0o755)
        r = queue_as(NOBODY, d, "delete", "--all")
        expect(r.returncode == 77 and "may not use this daemon's control socket" in r.stderr,
               "nobody's CLI refused, exit 77: %d %s" % (r.returncode, r.stderr), srv)
        expect(len(held(d)) == 1, "nothing was deleted", srv)
        sktest.wait_for(lambda: "control refused uid=%d" % NOBODY.pw_uid in srv.log() and
                        "reason=user" in srv.log(), what="the refusal logged")
        # Root may.
        r = sktest.smtpkit("queue", "--data-dir", d, "delete", "--all", "--json", timeout=60,
                           check_rc=0)
        j = json.loads(r.stdout)
        expect((j["matched"], j["changed"], j["daemon"]) == (1, 1, True), r.stdout, srv)
        srv.stop()

    # --- a daemon that drops to nobody ------------------------------------
    d = tmp.join("nobody-data")
    sktest.run([INJECT, d, "--from", "a@a.test", "--to", "b@b.test", "--hold"],
               input="Subject: x\r\n\r\nx\r\n", timeout=30, check_rc=0)
    for top, dirs, files in os.walk(d):
        for name in [top] + [os.path.join(top, f) for f in files]:
            os.chown(name, NOBODY.pw_uid, NOBODY.pw_gid)
    spool = os.path.join(d, "spool")
    sock = os.path.join(spool, "control.sock")
    srv = Serve(tmp, data_dir=d, args=args + ["--user", "nobody"], name="nobody")
    with srv:
        st = os.stat(sock)
        expect(st.st_uid == NOBODY.pw_uid and stat.S_IMODE(st.st_mode) == 0o600,
               "made by nobody after the drop: uid %d mode %o" % (st.st_uid, st.st_mode), srv)
        # Root may.
        r = sktest.smtpkit("queue", "--data-dir", d, "flush", "--json", timeout=60, check_rc=0)
        expect(json.loads(r.stdout)["daemon"] is True, r.stdout, srv)
        # Another user may not, however the modes are set.
        os.chmod(d, 0o755)
        os.chmod(spool, 0o755)
        os.chmod(sock, 0o666)
        out = connect_as(OTHER, sock)
        expect(out == "error denied user %d may not use this daemon's control socket"
               % OTHER.pw_uid, "another user refused: %r" % out, srv)
        # The daemon's own user may.
        r = queue_as(NOBODY, d, "release", "--all")
        expect(r.returncode == 0 and r.stdout == "release: 1 matched, 1 changed\n",
               "nobody's CLI: %d %s %s" % (r.returncode, r.stdout, r.stderr), srv)
        srv.stop()
    expect(not os.path.exists(sock), "nobody's daemon removed its socket")
    print("ok")
finally:
    tmp.cleanup()
