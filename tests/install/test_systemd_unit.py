#!/usr/bin/python3
"""The systemd unit as `make install DESTDIR=...` installs it: it starts the
installed program with the installed configuration; `systemd-analyze
verify` (ExecStart pointed at the program under DESTDIR, the man pages of
Documentation= looked up under DESTDIR) has nothing to say about it; its
exposure (`systemd-analyze security --offline`) stays at the level the
hardening options give it; and the sysusers.d and tmpfiles.d files make
the user of --user and the data directory of --data-dir, owned by it.
Skipped (77) where systemd-analyze is missing."""

import os
import re
import shlex
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit  # noqa: E402
from kit import check, fail, run  # noqa: E402

# `systemd-analyze security` exposure of the unit, times ten (its
# --threshold scale), as measured with systemd 252: what remains comes from
# a network daemon started as root that switches user itself.
EXPOSURE_MAX = 24
# Its checks that the unit does not pass, and why. Any other one failing
# means a hardening option went missing (the level alone moves too little
# to show one).
ACCEPTED = {
    "User=/DynamicUser=": "started as root: binds, forks the AUTH helper, then --user",
    "CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)": "setuid/setgid/setgroups to --user",
    "CapabilityBoundingSet=~CAP_(CHOWN|FSETID|SETFCAP)": "gives the data directory to --user",
    "CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)": "ports 25, 465, 587",
    "SystemCallFilter=~@privileged": "chown, setuid, setgroups",
    "SystemCallFilter=~@resources": "part of @system-service; not tried without it",
    "PrivateUsers=": "a user namespace would not map --user",
    "PrivateNetwork=": "a mail server",
    "IPAddressDeny=": "a mail server talks to any address",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "SMTP and DNS",
    "RestrictAddressFamilies=~AF_UNIX": "the AUTH helper's socketpair, syslog",
    "RestrictAddressFamilies=~AF_NETLINK": "getaddrinfo's AI_ADDRCONFIG",
    "RootDirectory=/RootImage=": "ProtectSystem=strict instead",
    "ProcSubset=": "glibc reads /proc/sys (ngroups_max for initgroups)",
    "DeviceAllow=": "char-rtc, read only, from ProtectClock=",
    "UMask=": "0027: Maildirs readable by a mail reader in the group",
}


def unit_values(text, key):
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def argument(argv, flag):
    check(flag in argv, "ExecStart has no %s: %s" % (flag, argv))
    return argv[argv.index(flag) + 1]


def main():
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("SKIP: systemd-analyze is missing (Debian package systemd)")
        sys.exit(kit.SKIP)
    with kit.TempDir("sk-unit-") as tmp:
        dest, root = kit.install(tmp)
        unit = os.path.join(root, "lib/systemd/system/smtpkit.service")
        with open(unit) as f:
            text = f.read()

        # The unit runs the installed program on the installed configuration.
        starts = unit_values(text, "ExecStart")
        check(len(starts) == 1, "one ExecStart: %s" % starts)
        argv = shlex.split(starts[0])
        check(argv[0] == kit.PREFIX + "/bin/smtpkit" and argv[1] == "serve",
              "ExecStart does not run %s/bin/smtpkit serve: %s" % (kit.PREFIX, argv))
        conf = argument(argv, "--config")
        check(os.path.exists(dest + conf), "ExecStart's --config %s is not installed" % conf)
        user, data_dir = argument(argv, "--user"), argument(argv, "--data-dir")
        check(data_dir in unit_values(text, "ReadWritePaths"),
              "--data-dir %s is not in ReadWritePaths" % data_dir)
        reload = unit_values(text, "ExecReload")
        check(reload and re.search(r"\bkill -HUP \$MAINPID$", reload[0]), "ExecReload: %s" % reload)

        # systemd-analyze verify, with the program and the man pages where
        # DESTDIR put them: no warning at all.
        check_dir = tmp.join("units")
        os.mkdir(check_dir)
        checked = os.path.join(check_dir, "smtpkit.service")
        with open(checked, "w") as f:
            f.write(text.replace("\nExecStart=" + argv[0], "\nExecStart=" + root + "/bin/smtpkit"))
        # C.UTF-8: security marks a failed check with U+2717 only in UTF-8.
        env = {"MANPATH": os.path.join(root, "share/man"), "SYSTEMD_LOG_COLOR": "0",
               "LC_ALL": "C.UTF-8"}
        man = "--man=yes" if kit.DOCS else "--man=no"
        r = run([analyze, "verify", man, checked], env=env, timeout=120)
        out = (r.stdout + r.stderr).strip()
        check(r.returncode == 0 and not out,
              "systemd-analyze verify exited %d:\n%s" % (r.returncode, out))

        r = run([analyze, "security", "--offline=true", "--no-pager",
                 "--threshold=%d" % EXPOSURE_MAX, checked], env=env, timeout=120)
        level = re.search(r"Overall exposure level for \S+: (\S+)", r.stdout)
        check(level is not None, "systemd-analyze security printed no level:\n%s" % r.stdout)
        print("exposure level %s (at most %.1f)" % (level.group(1), EXPOSURE_MAX / 10))
        check(r.returncode == 0, "exposure %s is over %.1f:\n%s" %
              (level.group(1), EXPOSURE_MAX / 10, r.stdout[-3000:]))
        failed = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("\u2717 ")]
        check(failed, "no failed check found in systemd-analyze security's output")
        new = sorted(set(failed) - set(ACCEPTED))
        check(not new, "the unit now fails these systemd-analyze security checks: %s" % new)

        # sysusers.d makes the user, tmpfiles.d its data directory.
        os.makedirs(os.path.join(dest, "etc"), exist_ok=True)
        sysusers = os.path.join(root, "lib/sysusers.d/smtpkit.conf")
        tmpfiles = os.path.join(root, "lib/tmpfiles.d/smtpkit.conf")
        # By name where systemd looks (docs/serve.md gives these commands).
        if kit.PREFIX in ("/usr", "/usr/local"):
            sysusers = tmpfiles = "smtpkit.conf"
        r = run(["systemd-sysusers", "--root=" + dest, sysusers], timeout=60)
        check(r.returncode == 0, "systemd-sysusers: %s" % r.stderr)
        with open(os.path.join(dest, "etc/passwd")) as f:
            entry = [line.split(":") for line in f if line.startswith(user + ":")]
        check(len(entry) == 1, "systemd-sysusers made no user %s" % user)
        uid, gid = int(entry[0][2]), int(entry[0][3])
        if os.geteuid() != 0:
            print("note: not root, the data directory's owner is not checked")
        else:
            r = run(["systemd-tmpfiles", "--root=" + dest, "--create", tmpfiles], timeout=60)
            check(r.returncode == 0, "systemd-tmpfiles: %s" % r.stderr)
            st = os.stat(dest + data_dir)
            check((st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, 0o750),
                  "%s is %d:%d %o, want %d:%d 750" % (data_dir, st.st_uid, st.st_gid,
                                                      st.st_mode & 0o7777, uid, gid))
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        fail(str(e))
