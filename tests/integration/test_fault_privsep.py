#!/usr/bin/python3
"""Privilege split of `smtpkit serve --users`: a helper process holds the
password hashes and the network process never does (its memory is searched
for a hash, the helper's memory is searched too, to show the search works);
AUTH is answered through the helper; SIGHUP makes the helper read the users
file again; a dead helper turns AUTH into 454 4.7.0 while mail still flows;
the helper exits with the network process, also after kill -9; AUTH brute
force against the daemon is throttled and logged without the passwords.
As root with --user nobody: the network process runs as nobody and cannot
open the users file, the helper stays root."""

import os
import pwd
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from fault_util import (Raw, auth_plain, children, log_wait,  # noqa: E402
                        memory_contains, status, wait_gone)
from serve_peer import Serve, expect, make_users  # noqa: E402

# AUTH in clear text over loopback is what these tests talk.
ARGS = ["--local-domain", "localhost", "--hold", "--auth-plaintext-loopback"]


def helper_of(srv):
    kids = sktest.wait_for(lambda: children(srv.proc.pid), timeout=10, what="the AUTH helper")
    expect(len(kids) == 1, "one helper process: %r" % kids, srv)
    return kids[0]


def auth(srv, user, password):
    c = Raw(srv.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, text = c.cmd(auth_plain(user, password))
    c.cmd("QUIT")
    c.close()
    return code, text


def hash_of(users_path, user):
    with open(users_path) as f:
        for line in f:
            if line.startswith(user + ":"):
                return line.strip().split(":", 1)[1].encode()
    raise AssertionError("no %s in %s" % (user, users_path))


def check_memory(srv, helper, h):
    in_helper = memory_contains(helper, h)
    in_net = memory_contains(srv.proc.pid, h)
    if in_helper is None or in_net is None:
        expect(os.geteuid() != 0, "root cannot read process memory", srv)
        print("note: process memory not readable here; hash search skipped")
        return
    expect(in_helper, "the hash is found in the helper's memory (the search works)", srv)
    expect(not in_net, "the network process holds no password hash", srv)


def send_mail(srv):
    c = Raw(srv.port)
    c.reply()
    c.cmd("EHLO client.test")
    expect(c.cmd("MAIL FROM:<a@example.org>")[0] == 250, "MAIL", srv)
    expect(c.cmd("RCPT TO:<bob@localhost>")[0] == 250, "RCPT", srv)
    expect(c.cmd("DATA")[0] == 354, "DATA", srv)
    code, text = c.cmd("Subject: x\r\n\r\nbody\r\n.")
    c.close()
    return code


def as_user(tmp):
    users = make_users(tmp, {"zoe": "first-Secret"})
    srv = Serve(tmp, args=ARGS + ["--users", users], name="a")
    srv.start()
    try:
        helper = helper_of(srv)
        expect(auth(srv, "zoe", "first-Secret")[0] == 235, "right password: 235", srv)
        expect(auth(srv, "zoe", "wrong")[0] == 535, "wrong password: 535", srv)
        expect(auth(srv, "nobody-here", "x")[0] == 535, "unknown user: 535", srv)
        check_memory(srv, helper, hash_of(users, "zoe"))

        # SIGHUP: the helper reads the file again.
        new = make_users(tmp, {"zoe": "second-Secret"})
        expect(new == users, "same users path", srv)
        srv.proc.send_signal(signal.SIGHUP)
        log_wait(srv, "authd reload-done users=1")
        expect(auth(srv, "zoe", "second-Secret")[0] == 235, "new password after reload", srv)
        expect(auth(srv, "zoe", "first-Secret")[0] == 535, "old password refused", srv)
        expect(helper_of(srv) == helper, "the same helper after reload", srv)

        # kill -9 of the network process: the helper follows.
        srv.kill9()
        expect(wait_gone(helper), "helper exits after kill -9 of the network process")

        # kill -9 of the helper: AUTH is a temporary failure, mail flows.
        srv = Serve(tmp, args=ARGS + ["--users", users], name="b", data_dir=srv.data_dir)
        srv.start()
        helper = helper_of(srv)
        os.kill(helper, signal.SIGKILL)
        log_wait(srv, "authd helper-gone")
        code, text = auth(srv, "zoe", "second-Secret")
        expect(code == 454 and b"4.7.0" in text, "dead helper: 454 4.7.0, got %r" % text, srv)
        expect(send_mail(srv) == 250, "mail still accepted", srv)
        expect(srv.stop() == 0, "serve exits 0 without its helper", srv)

        # Brute force against the daemon: throttled and logged.
        srv = Serve(tmp, args=ARGS + ["--users", users], name="c", data_dir=srv.data_dir)
        srv.start()
        helper = helper_of(srv)
        c = Raw(srv.port)
        c.reply()
        c.cmd("EHLO client.test")
        tries, code = 0, 535
        while code == 535 and tries < 50:
            tries += 1
            code, text = c.cmd(auth_plain("zoe", "guess-%d" % tries))
        expect(code == 421 and tries <= 10, "421 after %d guesses, got %r" % (tries, code), srv)
        expect(c.closed_by_peer(), "closed after too many failures", srv)
        code, text = auth(srv, "zoe", "second-Secret")
        expect(code == 454, "the right password is refused while throttled: %r" % text, srv)
        log = srv.log()
        expect("auth-throttle peer=127.0.0.1" in log, "throttle logged", srv)
        expect('auth-failed peer=127.0.0.1 mech=PLAIN user="zoe"' in log, "failures logged", srv)
        for secret in ["guess-1", "guess-%d" % tries, "second-Secret"]:
            expect(secret not in log, "password %r in the log" % secret, srv)
        expect(srv.stop() == 0, "serve exits 0", srv)
        expect(wait_gone(helper), "helper exits with serve")
    finally:
        srv.stop(signal.SIGKILL)


def as_root(tmp):
    nobody = pwd.getpwnam("nobody")
    os.chmod(tmp.path, 0o755)
    users = make_users(tmp, {"zoe": "root-Secret"})
    os.chmod(users, 0o600)
    srv = Serve(tmp, args=ARGS + ["--users", users, "--user", "nobody"], name="root")
    with srv:
        helper = helper_of(srv)
        log_wait(srv, "privileges-dropped user=nobody")
        expect(status(srv.proc.pid, "Uid") == str(nobody.pw_uid), "network process is nobody",
               srv)
        expect(status(helper, "Uid") == "0", "helper keeps root", srv)
        probe = subprocess.run(
            [sktest.PYTHON, "-c", "import sys; open(sys.argv[1]).read()", users],
            preexec_fn=lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid)),
            capture_output=True, text=True, timeout=30)
        expect(probe.returncode != 0 and "PermissionError" in probe.stderr,
               "nobody cannot read the users file: %r" % probe.stderr[-300:], srv)
        expect(auth(srv, "zoe", "root-Secret")[0] == 235, "AUTH through the root helper", srv)
        expect(auth(srv, "zoe", "wrong")[0] == 535, "wrong password as root", srv)
        check_memory(srv, helper, hash_of(users, "zoe"))
        expect(srv.stop() == 0, "serve exits 0", srv)
    expect(wait_gone(helper), "helper exits with serve")


tmp = sktest.TempDir("sk-fault-privsep-")
try:
    as_user(tmp)
    if os.geteuid() == 0:
        as_root(tmp)
    else:
        print("note: not root; the --user nobody part is skipped")
    print("ok")
finally:
    tmp.cleanup()
