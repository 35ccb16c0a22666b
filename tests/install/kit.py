"""Shared helpers for the tests of what `make install` puts on a system:
a throw-away DESTDIR install of the build, the command list and option
names of the built program's --help, and paths under the prefix."""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import sktest  # noqa: E402,F401  (re-exported for the tests)
from sktest import SKIP, TempDir, check, fail, run  # noqa: E402,F401

BUILD_DIR = sktest.BUILD_DIR
SMTPKIT = sktest.SMTPKIT
CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")
PREFIX = os.environ.get("SK_INSTALL_PREFIX", "/usr/local")
DOCS = os.environ.get("SK_DOCS", "1") == "1"
# `smtpkit help CMD` shows another command's help: no page, no options.
HELP_COMMAND = "help"
OPTION_RE = re.compile(r"--[a-z0-9][a-z0-9-]*")


def need_docs():
    if not DOCS:
        print("SKIP: built with SK_DOCS=OFF (no man pages, no completion)")
        sys.exit(SKIP)


def install(tmp):
    """`cmake --install` of the build into tmp/root (what `make install
    DESTDIR=...` runs last); returns (destdir, destdir + prefix)."""
    dest = tmp.join("root")
    r = run([CMAKE, "--install", BUILD_DIR], env={"DESTDIR": dest}, timeout=120)
    if r.returncode != 0:
        fail("cmake --install exited %d:\n%s%s" % (r.returncode, r.stdout, r.stderr))
    return dest, dest + PREFIX


def help_text(*cmd):
    r = run([SMTPKIT] + list(cmd) + ["--help"], timeout=30)
    if r.returncode != 0 or not r.stdout.strip():
        fail("smtpkit %s --help exited %d: %s" % (" ".join(cmd), r.returncode, r.stderr))
    return r.stdout


def commands():
    """The commands `smtpkit --help` lists, in order (read here without
    the generator's code, so that a test can catch its mistakes)."""
    text = help_text()
    block = re.search(r"^commands:\s*\n((?:[ \t]+\S.*\n?)+)", text, re.M | re.I)
    check(block is not None, "no commands: block in smtpkit --help:\n" + text)
    return [line.split()[0] for line in block.group(1).splitlines()]


def mentioned_options(text):
    """Every --option named anywhere in a help text."""
    return set(OPTION_RE.findall(text))


def defined_options(text):
    """The options a help text defines on a line of their own ("  --x ..."
    or "-x, --x"), and those of its usage lines."""
    out = set()
    for line in text.splitlines():
        m = re.match(r"^\s*(?:-\w, )?(--[a-z0-9][a-z0-9-]*)(?:[ ,=]|$)", line)
        if m and (line[:1].isspace() or re.search(r"\S\s{2,}\S", line)):
            out.add(m.group(1))
        if re.match(r"^(usage:|\s+smtpkit\s)", line, re.I):
            out |= mentioned_options(line)
    return out
