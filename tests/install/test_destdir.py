#!/usr/bin/python3
"""`make install DESTDIR=...` (its `cmake --install` step) into a temporary
directory: the program, the shared and static library, the headers and
smtpkit.pc, the systemd unit with its sysusers.d and tmpfiles.d files, the
configuration, the documentation, a man page for every command and the
bash completion appear under DESTDIR + prefix and nowhere else; the
installed program runs, a program builds against the installed library
with pkg-config, and installing again keeps an edited configuration."""

import glob
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit  # noqa: E402
from kit import check, fail, run  # noqa: E402

PROGRAM = r"""
#include <smtpkit/smtpkit.h>
#include <stdio.h>
int main(void)
{
    sk_message *m = sk_message_new();
    sk_error err;
    int bad = sk_message_set_subject(m, "installed", &err) != SK_OK;
    sk_message_free(m);
    puts(bad ? "bad" : "ok");
    return bad;
}
"""


def main():
    with kit.TempDir("sk-install-") as tmp:
        dest, root = kit.install(tmp)
        outside = [os.path.join(d, f) for d, _, files in os.walk(dest) for f in files
                   if not os.path.join(d, f).startswith(root + "/")]
        check(not outside, "installed outside the prefix: %s" % outside[:5])

        # The program runs from where it was installed.
        prog = os.path.join(root, "bin", "smtpkit")
        check(os.access(prog, os.X_OK), "no executable %s" % prog)
        r = run([prog, "--help"], timeout=30)
        check(r.returncode == 0 and "usage:" in r.stdout.lower(), "installed smtpkit --help: %r" % r)

        # Library, headers, pkg-config.
        libs = glob.glob(root + "/lib*/libsmtpkit.so.*.*.*") + \
            glob.glob(root + "/lib*/*/libsmtpkit.so.*.*.*")
        check(len(libs) == 1, "one shared library under %s/lib*: %s" % (root, libs))
        libdir = os.path.dirname(libs[0])
        for name in ("libsmtpkit.so", "libsmtpkit.so.0", "libsmtpkit.a"):
            check(os.path.exists(os.path.join(libdir, name)), "no %s in %s" % (name, libdir))
        check(os.path.exists(os.path.join(root, "include/smtpkit/smtpkit.h")), "no smtpkit.h")
        pc = os.path.join(libdir, "pkgconfig", "smtpkit.pc")
        check(os.path.exists(pc), "no %s" % pc)
        with open(pc) as f:
            check("prefix=%s\n" % kit.PREFIX in f.read(), "smtpkit.pc names another prefix")
        env = {"PKG_CONFIG_PATH": os.path.dirname(pc), "PKG_CONFIG_SYSROOT_DIR": dest}
        flags = run(["pkg-config", "--cflags", "--libs", "smtpkit"], env=env, check_rc=0).stdout
        src = tmp.join("use.c")
        with open(src, "w") as f:
            f.write(PROGRAM)
        exe = tmp.join("use")
        # The build's compiler and link options: a sanitizer build's library
        # needs the sanitizer runtime linked into the program too.
        cc = run([os.environ.get("SK_CC", "cc"), "-o", exe, src] + flags.split() +
                 shlex.split(os.environ.get("SK_LINK_OPTIONS", "")) + ["-Wl,-rpath," + libdir],
                 timeout=120)
        check(cc.returncode == 0, "building against the install failed:\n%s" % cc.stderr)
        r = run([exe], timeout=30)
        check(r.returncode == 0 and r.stdout == "ok\n", "program using the install: %r" % r)

        # systemd: the unit runs the installed program; sysusers/tmpfiles.
        unit = os.path.join(root, "lib/systemd/system/smtpkit.service")
        check(os.path.exists(unit), "no %s" % unit)
        with open(unit) as f:
            text = f.read()
        check("\nExecStart=%s/bin/smtpkit serve " % kit.PREFIX in text,
              "the unit does not start %s/bin/smtpkit serve" % kit.PREFIX)
        for sub in ("lib/sysusers.d/smtpkit.conf", "lib/tmpfiles.d/smtpkit.conf",
                    "etc/smtpkit/smtpkit.conf", "share/doc/smtpkit/README.md",
                    "share/doc/smtpkit/serve.md", "share/doc/smtpkit/examples/smtpkit.conf"):
            check(os.path.exists(os.path.join(root, sub)), "no %s" % sub)

        # A man page for smtpkit and each command; the completion.
        if kit.DOCS:
            for cmd in kit.commands():
                if cmd == kit.HELP_COMMAND:
                    continue
                page = os.path.join(root, "share/man/man1/smtpkit-%s.1" % cmd)
                check(os.path.exists(page), "no man page %s" % page)
            check(os.path.exists(os.path.join(root, "share/man/man1/smtpkit.1")), "no smtpkit.1")
            comp = os.path.join(root, "share/bash-completion/completions/smtpkit")
            check(os.path.exists(comp), "no %s" % comp)
        else:
            print("note: SK_DOCS=OFF: no man pages or completion to look for")

        # Installing again keeps the operator's configuration.
        conf = os.path.join(root, "etc/smtpkit/smtpkit.conf")
        with open(conf, "a") as f:
            f.write("# edited by the operator\n")
        kit.install(tmp)
        with open(conf) as f:
            check(f.read().endswith("# edited by the operator\n"), "make install replaced %s" % conf)
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        fail(str(e))
