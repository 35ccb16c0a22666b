#!/usr/bin/python3
"""smtpkit serve under the limits of its systemd unit, without systemd: the
unit's CapabilityBoundingSet (setpriv), NoNewPrivileges, and as a seccomp
filter its SystemCallFilter (the set `systemd-analyze syscall-filter`
expands, others fail with SystemCallErrorNumber), RestrictAddressFamilies
(EAFNOSUPPORT) and MemoryDenyWriteExecute, all read from the built unit.
Started as root with the unit's ExecStart arguments (the example
configuration, --user nobody for the unit's user, a data directory made as
its tmpfiles.d line makes it) plus a port below 1024 and a users file that
only root can read, the server must bind, fork the AUTH helper, drop to
the user, answer AUTH, deliver a message to a Maildir, reload on SIGHUP
and stop cleanly on SIGTERM: the capabilities and system calls the unit
leaves are enough. Needs root and python3-seccomp (skipped otherwise)."""

import errno
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit  # noqa: E402
from kit import check, fail, sktest  # noqa: E402

UNIT = os.path.join(kit.BUILD_DIR, "systemd", "smtpkit.service")
# The unit's user does not exist on a test machine; nobody stands in for it.
RUN_AS = "nobody"
AF = {"AF_UNIX": socket.AF_UNIX, "AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6,
      "AF_NETLINK": socket.AF_NETLINK}
AF_MAX = 46  # linux/socket.h
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000

# Run by python3 in the sandbox: load the filter, then exec the server.
LAUNCHER = r"""
import json, os, sys, seccomp
allow, errno_no, families, af_max, mdwe = json.loads(sys.argv[1])
f = seccomp.SyscallFilter(seccomp.ERRNO(errno_no))
for name in allow:
    if name in ("socket", "mmap", "mprotect", "pkey_mprotect", "shmat"):
        continue
    try:
        f.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError, OSError):
        pass  # not a system call of this architecture
for fam in range(af_max + 1):
    f.add_rule(seccomp.ALLOW if fam in families else seccomp.ERRNO(97), "socket",
               seccomp.Arg(0, seccomp.EQ, fam))
f.add_rule(seccomp.ERRNO(97), "socket", seccomp.Arg(0, seccomp.GT, af_max))
# MemoryDenyWriteExecute (the protection or flags are the third argument of
# each): what these rules do not allow gets the default
# answer, EPERM, as systemd answers (mmap writable and executable at once,
# mprotect or shmat adding execution).
W, X, SHM_EXEC = 0x2, 0x4, 0o100000
masks = {"mmap": (W | X, (0, W, X)), "mprotect": (X, (0,)), "pkey_mprotect": (X, (0,)),
         "shmat": (SHM_EXEC, (0,))}
for name, (mask, allowed) in masks.items():
    if name not in allow:
        continue
    if not mdwe:
        f.add_rule(seccomp.ALLOW, name)
        continue
    for value in allowed:
        f.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, mask, value))
f.load()
os.execv(sys.argv[2], sys.argv[2:])
"""


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(kit.SKIP)


def unit_settings():
    with open(UNIT) as f:
        text = f.read()
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def syscall_set(groups):
    """The system calls systemd-analyze lists for filter groups, expanded."""
    names, todo, seen = set(), list(groups), set()
    while todo:
        g = todo.pop()
        if g in seen:
            continue
        seen.add(g)
        if not g.startswith("@"):
            names.add(g)
            continue
        r = subprocess.run(["systemd-analyze", "syscall-filter", g], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, "systemd-analyze syscall-filter %s: %s" % (g, r.stderr))
        for line in r.stdout.splitlines()[1:]:
            word = line.strip().split(" ")[0]
            if word and not word.startswith("#"):
                todo.append(word)
    return sorted(names)


def privileged_port():
    """A port below 1024 that is free on 127.0.0.1 (root binds it here)."""
    for port in range(1023, 600, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    skip("no free port below 1024 on 127.0.0.1")


def main():
    if os.geteuid() != 0:
        skip("needs root (the unit starts the server as root)")
    for tool in ("setpriv", "systemd-analyze"):
        if not shutil.which(tool):
            skip("%s is missing" % tool)
    if subprocess.run(["/usr/bin/python3", "-c", "import seccomp"],
                      capture_output=True).returncode != 0:
        skip("python3-seccomp is missing")
    u = unit_settings()
    check(u.get("NoNewPrivileges") == ["yes"], "the unit sets NoNewPrivileges=yes")
    check(u.get("SystemCallErrorNumber") == ["EPERM"], "SystemCallErrorNumber=EPERM")
    caps = u["CapabilityBoundingSet"][0].split()
    filters = [w for v in u["SystemCallFilter"] for w in v.split()]
    check(not any(w.startswith("~") for w in filters), "an allow list in SystemCallFilter")
    allow = syscall_set(filters)
    families = [int(AF[name]) for v in u["RestrictAddressFamilies"] for name in v.split()]
    mdwe = u.get("MemoryDenyWriteExecute") == ["yes"]
    argv = shlex.split(u["ExecStart"][0])
    nobody = pwd.getpwnam(RUN_AS)

    with kit.TempDir("sk-sandbox-") as tmp:
        os.chmod(tmp.path, 0o755)  # the user reaches its data directory
        data = tmp.join("data")
        os.mkdir(data, 0o750)  # as the unit's tmpfiles.d line makes it
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
        users = kit.sktest.run(["/bin/sh", "-c", "printf 'Secret-1\\n' | %s passwd zoe" %
                                shlex.quote(kit.SMTPKIT)], check_rc=0).stdout
        users_path = tmp.join("users")
        with open(users_path, "w") as f:
            f.write(users)
        os.chmod(users_path, 0o600)  # root only: the network process cannot read it
        port = privileged_port()

        # The unit's arguments, with what differs on a test machine.
        args = argv[1:]
        args[args.index("--data-dir") + 1] = data
        args[args.index("--user") + 1] = RUN_AS
        args[args.index("--config") + 1] = os.path.join(kit.sktest.SOURCE_DIR, "etc", "smtpkit.conf")
        # AUTH without TLS on loopback is off by default; this test has no
        # certificate and asks the AUTH helper through plain loopback.
        args += ["--listen", "127.0.0.1:%d" % port, "--users", users_path,
                 "--auth-plaintext-loopback"]
        bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)
        cmd = ["setpriv", "--bounding-set", bounding, "--nnp", "/usr/bin/python3", "-c", LAUNCHER,
               json.dumps([allow, errno.EPERM, families, AF_MAX, mdwe]), kit.SMTPKIT] + args
        log_path = tmp.join("serve.log")
        with open(log_path, "wb") as log:
            # LeakSanitizer stops the process's threads with ptrace, which
            # the unit's system call filter forbids: a sanitizer build leaves
            # leak checks to the other tests here (no effect otherwise).
            asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
            proc = sktest.Proc(cmd, stderr=log, stdout=log, env={"ASAN_OPTIONS": asan})
        try:
            def logged():
                with open(log_path, errors="replace") as f:
                    return f.read()
            sktest.wait_for(lambda: proc.poll() is not None or " daemon started " in logged(),
                            timeout=20, what="daemon started")
            check(proc.poll() is None, "the server exited %s:\n%s" % (proc.returncode, logged()))
            check(" daemon privileges-dropped user=%s " % RUN_AS in logged(),
                  "no privileges-dropped line:\n" + logged())

            with smtplib.SMTP("127.0.0.1", port, timeout=20) as c:
                c.ehlo("client.test")
                c.login("zoe", "Secret-1")  # answered by the AUTH helper
                c.sendmail("alice@example.org", ["bob@localhost"],
                           b"Subject: sandbox\r\n\r\nunder the unit's limits\r\n")
            sktest.wait_for(lambda: sktest.maildir_messages(data, "localhost", "bob"),
                            timeout=20, what="delivery to the Maildir\n" + logged())
            msg = sktest.maildir_messages(data, "localhost", "bob")[0]
            check(os.stat(msg).st_uid == nobody.pw_uid, "the Maildir file is not %s's" % RUN_AS)

            proc.send_signal(signal.SIGHUP)
            sktest.wait_for(lambda: "daemon reload-done" in logged() or
                            "reload-failed" in logged(), timeout=20, what="reload")
            check("reload-failed" not in logged(), "reload failed:\n" + logged())
            sktest.wait_for(lambda: "authd reload-done" in logged(), timeout=20,
                            what="the AUTH helper's reload\n" + logged())
            rc = proc.stop(signal.SIGTERM, timeout=60)
            check(rc == 0, "SIGTERM: exit %s\n%s" % (rc, logged()))
            bad = [line for line in logged().splitlines()
                   if re.search(r"not permitted|permission denied|not supported", line, re.I)]
            check(not bad, "the sandbox refused something:\n" + "\n".join(bad))
        finally:
            proc.kill()
    print("ok: %d system calls, capabilities %s" % (len(allow), " ".join(caps)))


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, TimeoutError) as e:
        fail(str(e))
