#!/usr/bin/python3
"""The commands `smtpkit serve --print-usage` prints (what `make run` shows)
work as printed.

The server is started the way `make run` starts it, `./build/smtpkit serve
--data-dir ./var --print-usage` from a temporary directory that has the
build directory as ./build, with every other default (local domain
localhost, relaying from loopback) except the listener: a free port of
127.0.0.1 instead of 2525, so that the test does not collide with a server
already running there. Each command under "Send a test message" is run
with /bin/sh from that directory, with a PATH that has no smtpkit on it;
each must exit 0 and the messages must appear where the hint says. Then
the same with --hold, started through a path that needs shell quoting: the
queue command it prints lists the message held. Last, the README's curl
command for the HTTP API that `make run` also serves (a key made with
`smtpkit apikey create` as `make run` makes it, the port a free one
instead of 8025): the message appears in the same Maildir.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

# The shell's PATH for the printed commands: swaks and python3, no smtpkit.
PATH = "/usr/bin:/bin"


class Hinted:
    """smtpkit serve started as `BIN serve ARGS --print-usage` from cwd."""

    def __init__(self, tmp, cwd, binary, args, name):
        self.cwd = cwd
        self.out_path = tmp.join(name + ".out")
        self.log_path = tmp.join(name + ".log")
        self.port = sktest.free_port()
        self.argv = [binary, "serve"] + args + ["--listen", "127.0.0.1:%d" % self.port,
                                                 "--print-usage"]
        self.proc = None

    def read(self, path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as log:
            self.proc = sktest.Proc(self.argv, stdout=out, stderr=log, cwd=self.cwd)
        try:
            sktest.wait_for(lambda: self.proc.poll() is not None or
                            (" daemon started " in self.read(self.log_path) and
                             "Stop with" in self.read(self.out_path)),
                            timeout=15, what="smtpkit serve to start and print its hint")
        except TimeoutError:
            self.proc.stop()
            raise
        if self.proc.poll() is not None:
            sktest.fail("smtpkit serve exited %s:\n%s" % (self.proc.returncode,
                                                          self.read(self.log_path)))
        return self

    def __exit__(self, *exc):
        rc = self.proc.stop()
        if exc[0] is None and rc != 0:
            sktest.fail("smtpkit serve exited %s after SIGTERM:\n%s" %
                        (rc, self.read(self.log_path)))

    def hint(self):
        return self.read(self.out_path)

    def fail(self, msg):
        sktest.fail("%s\n--- printed ---\n%s--- log ---\n%s" %
                    (msg, self.hint(), self.read(self.log_path)[-3000:]))


def shell(cmd, cwd):
    try:
        return subprocess.run(["/bin/sh", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, PATH=PATH))
    except subprocess.TimeoutExpired:
        sktest.fail("did not finish in 60 s: %s" % cmd)


def send_commands(srv):
    """The indented lines under "Send a test message ... :"."""
    m = re.search(r"^Send a test message[^\n]*:\n((?:  \S[^\n]*\n)+)", srv.hint(), re.M)
    if not m:
        srv.fail("no \"Send a test message\" block")
    return [line.strip() for line in m.group(1).splitlines()]


def readme_curl(tmp, build):
    with open(os.path.join(sktest.SOURCE_DIR, "README.md")) as f:
        readme = f.read()
    m = re.search(r"the same message through it:\n\n```sh\n(curl .*?)\n```", readme, re.S)
    if not m:
        sktest.fail("README: no curl block after \"the same message through it\"")
    cmd = m.group(1)
    os.makedirs(tmp.join("var3"))
    r = subprocess.run([sktest.SMTPKIT, "apikey", "--data-dir", tmp.join("var3"), "create",
                        "--name", "make-run", "--scope", "admin"], capture_output=True, text=True,
                       timeout=30)
    key = re.search(r"^key (\S+)$", r.stdout, re.M)
    if r.returncode != 0 or not key:
        sktest.fail("apikey create: %d %s" % (r.returncode, r.stderr))
    http = sktest.free_port()
    if "127.0.0.1:8025" not in cmd:
        sktest.fail("README's curl command names 127.0.0.1:8025, as make run serves: %s" % cmd)
    cmd = cmd.replace("127.0.0.1:8025", "127.0.0.1:%d" % http)
    args = ["--data-dir", "./var3", "--http", "127.0.0.1:%d" % http]
    with Hinted(tmp, tmp.path, "./build/smtpkit", args, "http") as srv:
        r = subprocess.run(["/bin/sh", "-c", cmd], cwd=tmp.path, capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, PATH=PATH, KEY=key.group(1)))
        if r.returncode != 0 or '"messages"' not in r.stdout:
            srv.fail("README's curl exited %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        new = tmp.join("var3", "mailboxes", "localhost", "anyone", "new")
        if not sktest.settle(lambda: os.path.isdir(new) and len(os.listdir(new)) == 1):
            srv.fail("the message in %s" % new)


def main():
    build = os.path.dirname(os.path.abspath(sktest.SMTPKIT))
    tmp = sktest.TempDir("sk-usage-hint-")
    try:
        # As make run: ./build/smtpkit serve --data-dir ./var --print-usage.
        os.symlink(build, tmp.join("build"))
        with Hinted(tmp, tmp.path, "./build/smtpkit", ["--data-dir", "./var"], "run") as srv:
            cmds = send_commands(srv)
            if not all(str(srv.port) in c for c in cmds):
                srv.fail("every command names port %d" % srv.port)
            m = re.search(r"^It appears as a file in (\S+)$", srv.hint(), re.M)
            if not m or m.group(1) != "./var/mailboxes/localhost/someone/new/":
                srv.fail("where the message appears")
            new = os.path.join(tmp.path, m.group(1))
            for i, cmd in enumerate(cmds, 1):
                r = shell(cmd, tmp.path)
                if r.returncode != 0:
                    srv.fail("printed command exited %d: %s\n%s%s" % (r.returncode, cmd, r.stdout,
                                                                      r.stderr))
                got = sktest.settle(lambda: os.path.isdir(new) and len(os.listdir(new)) >= i)
                if not got or len(os.listdir(new)) != i:
                    srv.fail("%d message(s) in %s after: %s" % (i, new, cmd))
            if not any(c.startswith("echo Hello | ./build/smtpkit send ") for c in cmds):
                srv.fail("the smtpkit send command names ./build/smtpkit, as invoked")

        # --hold, started through a path and with a data directory that
        # need quoting in a shell.
        odd = tmp.join("it's build")
        os.symlink(build, odd)
        args = ["--data-dir", "./held var", "--hold"]
        with Hinted(tmp, tmp.path, "./it's build/smtpkit", args, "hold") as srv:
            send = [c for c in send_commands(srv) if " send --server " in c]
            if len(send) != 1:
                srv.fail("one smtpkit send command")
            r = shell(send[0], tmp.path)
            if r.returncode != 0:
                srv.fail("printed send exited %d: %s\n%s" % (r.returncode, send[0], r.stderr))
            qid = re.search(r"queued as (\S+)", r.stdout)
            m = re.search(r"^With --hold it stays in the queue: (.+)$", srv.hint(), re.M)
            if not qid or not m:
                srv.fail("a queue ID in %r and a queue command in the hint" % r.stdout)
            # A journaled message's file is written just after its 250
            # (docs/queue.md): list again, bounded, until it is there.
            def listed():
                r = shell(m.group(1), tmp.path)
                return r if r.returncode == 0 and qid.group(1) in r.stdout else None

            r = sktest.settle(listed) or shell(m.group(1), tmp.path)
            if r.returncode != 0 or qid.group(1) not in r.stdout:
                srv.fail("printed queue command %s (exit %d) lists %s:\n%s%s" %
                         (m.group(1), r.returncode, qid.group(1), r.stdout, r.stderr))
        readme_curl(tmp, build)
        print("ok")
    finally:
        tmp.cleanup()


main()
