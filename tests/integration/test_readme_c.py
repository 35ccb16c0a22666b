#!/usr/bin/python3
"""Every ```c block of README.md is a whole program that compiles and sends.

The blocks are taken from README.md now, not from a copy. Each is compiled
as the README tells a developer to build against the build tree: the flags
of `pkg-config --cflags --libs smtpkit` with PKG_CONFIG_PATH=BUILD-DIR
(which picks smtpkit-uninstalled.pc), plus C17 and the project's warnings
as errors. Each is also compiled and linked against a copy installed in a
temporary prefix, through the installed smtpkit.pc.

Then each program is run as the README shows, `SMTP_PASSWORD=... PROGRAM
HOST PORT`, against `smtpkit serve` on loopback with submission (AUTH after
STARTTLS) and a certificate for "localhost" from a test CA, which the
program trusts through OpenSSL's SSL_CERT_FILE (the library's default is
the system store). It must exit 0, free everything (valgrind, or the
sanitizers in `make asan`), and its message must be in
bob@example.net's Maildir with its report.pdf attached. The same program
must not deliver anything, and must exit non-zero, when its attachment is
missing (no sending after a compose error), when the CA is not trusted
(certificates are verified), when the server does not offer STARTTLS (TLS
is required) and when the password is wrong.
"""

import email
import email.policy
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import Serve, expect, make_users  # noqa: E402

PASSWORD = "readme pass"
README = os.path.join(sktest.SOURCE_DIR, "README.md")
CC = os.environ.get("SK_CC", "cc")
# The project's compile and link options (tests/CMakeLists.txt), so that a
# sanitizer build links the program with the sanitizer runtime too.
C_OPTIONS = shlex.split(os.environ.get("SK_C_OPTIONS", "-Wall -Wextra"))
LINK_OPTIONS = shlex.split(os.environ.get("SK_LINK_OPTIONS", ""))
SANITIZED = any(o.startswith("-fsanitize=") for o in LINK_OPTIONS)


def c_blocks(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```c\n(.*?)^```\s*$", text, re.M | re.S)


def pkg_config(pc_path, *extra):
    r = sktest.run(["pkg-config", *extra, "--cflags", "--libs", "smtpkit"],
                   env={"PKG_CONFIG_PATH": pc_path})
    if r.returncode != 0:
        sktest.fail("pkg-config with PKG_CONFIG_PATH=%s: %s" % (pc_path, r.stderr))
    return shlex.split(r.stdout)


def compile_block(src, exe, flags):
    argv = [CC, "-std=c17", *C_OPTIONS, "-Werror", "-o", exe, src, *flags, *LINK_OPTIONS]
    r = sktest.run(argv, timeout=120)
    if r.returncode != 0:
        sktest.fail("the README's C block %s does not compile:\n%s\n%s%s" %
                    (src, " ".join(map(shlex.quote, argv)), r.stdout, r.stderr))


def install(tmp):
    """`cmake --install` into a temporary prefix; the pkg-config flags of
    its smtpkit.pc (whose prefix is the configured one, so it is given)."""
    prefix = tmp.join("prefix")
    r = sktest.run(["cmake", "--install", sktest.BUILD_DIR, "--prefix", prefix], timeout=120)
    if r.returncode != 0:
        sktest.fail("cmake --install: %s%s" % (r.stdout, r.stderr))
    pcs = [os.path.join(d, "pkgconfig") for d, _, files in os.walk(prefix)
           if "pkgconfig" in os.listdir(d)]
    expect(len(pcs) == 1, "one pkgconfig directory in the installation: %r" % pcs)
    pc = pcs[0]
    expect(sorted(os.listdir(pc)) == ["smtpkit.pc"], "installed: %r" % os.listdir(pc))
    return pkg_config(pc, "--define-variable=prefix=" + prefix)


def run_program(exe, port, cwd, env_extra, memcheck=False):
    """Run exe as the README shows. memcheck: under valgrind, which makes a
    memory error or a leak (definite or indirect) exit 99; a sanitizer
    build's own leak checker does that job there."""
    env = dict(os.environ, SMTP_PASSWORD=PASSWORD)
    env.update(env_extra)
    argv = [exe, "localhost", str(port)]
    if memcheck and not SANITIZED:
        argv = ["valgrind", "--quiet", "--vgdb=no", "--error-exitcode=99", "--leak-check=full",
                "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect"] + argv
    try:
        return subprocess.run(argv, env=env, cwd=cwd, timeout=120, capture_output=True,
                              text=True)
    except subprocess.TimeoutExpired:
        sktest.fail("%s did not finish in 120 s" % exe)


def main():
    blocks = c_blocks(README)
    expect(blocks, "README.md has C blocks")
    tmp = sktest.TempDir("sk-readme-c-")
    try:
        ca = sktest.TestCA(tmp.join("ca"))
        cert, key = ca.issue("localhost", sans=["localhost", "127.0.0.1"])
        users = make_users(tmp, {"zoe": PASSWORD})
        work = tmp.join("work")
        os.makedirs(work)
        pdf = b"%PDF-1.4\n% readme test\n" + bytes(range(256)) + b"\n%%EOF\n"
        with open(os.path.join(work, "report.pdf"), "wb") as f:
            f.write(pdf)
        empty = tmp.join("empty")  # no report.pdf here
        os.makedirs(empty)

        uninstalled = pkg_config(sktest.BUILD_DIR)
        headers = os.path.realpath(os.path.join(sktest.SOURCE_DIR, "include"))
        expect(any(os.path.realpath(f[2:]) == headers for f in uninstalled if f[:2] == "-I"),
               "the build tree's pkg-config flags name the source tree's headers: %r" %
               uninstalled)
        installed = install(tmp)
        exes = []
        for i, block in enumerate(blocks):
            src = tmp.join("readme_%d.c" % i)
            with open(src, "w", encoding="utf-8") as f:
                f.write(block)
            exe = tmp.join("readme_%d" % i)
            compile_block(src, exe, uninstalled)
            compile_block(src, exe + "-installed", installed)
            exes.append(exe)

        other = sktest.TestCA(tmp.join("other-ca"), name="Another CA")
        trusted = {"SSL_CERT_FILE": ca.cert, "SSL_CERT_DIR": ca.dir}
        untrusted = {"SSL_CERT_FILE": other.cert, "SSL_CERT_DIR": other.dir}
        tls = ["--hostname", "localhost", "--tls-cert", cert, "--tls-key", key,
               "--users", users, "--local-domain", "example.net"]
        srv = Serve(tmp, submission=1, args=tls)
        plain = Serve(tmp, name="plain", args=["--local-domain", "example.net"])
        with srv, plain:
            for n, exe in enumerate(exes, 1):
                refusals = [
                    ("attachment missing", srv.submission_port, empty, trusted),
                    ("CA not trusted", srv.submission_port, work, untrusted),
                    ("no STARTTLS offered", plain.port, work, trusted),
                    ("wrong password", srv.submission_port, work,
                     dict(trusted, SMTP_PASSWORD="not " + PASSWORD)),
                ]
                for what, port, cwd, env in refusals:
                    r = run_program(exe, port, cwd, env)
                    expect(r.returncode != 0, "%s, %s: exit %d, expected a failure\n%s" %
                           (exe, what, r.returncode, r.stderr), srv)
                    expect(r.stderr.strip(), "%s, %s: says why on stderr" % (exe, what))
                r = run_program(exe, srv.submission_port, work, trusted, memcheck=True)
                expect(r.returncode == 0, "%s sends: exit %d\nstdout: %s\nstderr: %s" %
                       (exe, r.returncode, r.stdout, r.stderr), srv)
                srv.wait_maildir("example.net", "bob", n)
            # A message accepted during a refused run is in the Maildir by
            # now or still in the queue.
            files = srv.maildir("example.net", "bob")
            expect(len(files) == len(exes) and not srv.queue_list(),
                   "one message per program and none after a refusal: %r, queue %r" %
                   (files, srv.queue_list()), srv)
            expect(not plain.maildir("example.net", "bob") and not plain.queue_list(),
                   "nothing sent without STARTTLS", plain)
            for path in files:
                with open(path, "rb") as f:
                    msg = email.message_from_binary_file(f, policy=email.policy.default)
                expect(not msg.defects, "%s parses without defects: %r" % (path, msg.defects))
                atts = [(p.get_filename(), p.get_content()) for p in msg.iter_attachments()]
                expect(atts == [("report.pdf", pdf)],
                       "%s has report.pdf attached: %r" % (path, [a[0] for a in atts]))
        print("ok: %d C block(s) of README.md compiled and sent" % len(blocks))
    finally:
        tmp.cleanup()


main()
