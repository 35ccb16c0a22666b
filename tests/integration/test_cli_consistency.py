#!/usr/bin/python3
"""One behaviour for every subcommand of the CLI: -h and --help (also among
other arguments) print the usage on stdout and exit 0; `smtpkit help CMD`
prints the same; `smtpkit --version` and `-V` print the version CMake has;
an unknown command, and an unknown option of each subcommand, get the
nearest valid one suggested (exit 64) in one format; an option without its
value is named (exit 64); `serve` refuses config-file lines it does not
understand with the file, the line and a suggestion (exit 78)."""

import functools
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

# Per subcommand: arguments that are valid with it (so that --help must win
# without the command doing its work), an unknown option with the option it
# is nearest to, and an option that takes a value.
COMMANDS = {
    "send": (["--server", "127.0.0.1:1", "--to", "a@example.org", "--subject", "x"],
             "--subjcet", "--subject", "--server"),
    "serve": (["--hold", "--listen", "127.0.0.1:1"], "--lsiten", "--listen", "--data-dir"),
    "queue": (["--data-dir", "/nonexistent", "list"], "--data-dri", "--data-dir", "--data-dir"),
    "track": (["--data-dir", "/nonexistent", "ID"], "--jsno", "--json", "--data-dir"),
    "stats": (["--data-dir", "/nonexistent"], "--josn", "--json", "--data-dir"),
    "suppress": (["--data-dir", "/nonexistent", "add", "x@example.org"], "--reaosn", "--reason",
                 "--reason"),
    "probe": (["--tls", "none", "127.0.0.1:1"], "--verbsoe", "--verbose", "--timeout"),
    "passwd": ([], "--hlep", "--help", None),
    "dmarc": (["--from-domain", "example.org", "--dns-server", "127.0.0.1:1"], "--jsn", "--json",
              "--spf"),
    "dkim": (["verify", "--dns-server", "127.0.0.1:1"], "--dns-sever", "--dns-server",
             "--dns-server"),
    "spf": (["--ip", "192.0.2.1", "--mail-from", "a@example.org"], "--trcae", "--trace",
            "--dns-server"),
    "arc": (["verify", "--dns-server", "127.0.0.1:1"], "--remote-pi", "--remote-ip",
            "--dns-server"),
    "check": (["example.org", "--dns-server", "127.0.0.1:1"], "--selecotr", "--selector",
              "--selector"),
    "apikey": (["--data-dir", "/nonexistent", "list"], "--scoep", "--scope", "--name"),
    "bounce": (["/nonexistent"], "--josn", "--json", "--rules"),
}

tmp = sktest.TempDir("sk-cli-consistency-")
failures = []


# Every failed check is collected and reported at the end.
expect = functools.partial(sktest.expect, failures=failures)


def run(*args):
    return sktest.smtpkit(*args, timeout=30, input="")


def describe(args, r):
    return "smtpkit %s: exit %d\nstdout: %s\nstderr: %s" % (
        " ".join(args), r.returncode, r.stdout[:300], r.stderr[:300])


# -h and --help, alone and among other arguments, before and after them.
helps = {}
for cmd, (others, _, _, _) in COMMANDS.items():
    for flag in ("-h", "--help"):
        for args in ([cmd, flag], [cmd] + others + [flag], [cmd, flag] + others):
            r = run(*args)
            ok = (r.returncode == 0 and r.stdout.startswith("usage: smtpkit " + cmd)
                  and r.stderr == "")
            expect(ok, "help on stdout, exit 0: " + describe(args, r))
            if ok:
                helps.setdefault(cmd, r.stdout)
                expect(r.stdout == helps[cmd], "the same help every time: " + describe(args, r))

# smtpkit help CMD is the command's own help; smtpkit help lists them all.
for cmd in COMMANDS:
    r = run("help", cmd)
    expect(r.returncode == 0 and cmd in helps and r.stdout == helps[cmd],
           "help %s is %s --help: %s" % (cmd, cmd, describe(["help", cmd], r)))
top = run("--help")
for args in (["help"], ["-h"]):
    r = run(*args)
    expect(r.returncode == 0 and r.stdout == top.stdout, "same list: " + describe(args, r))
listed = re.findall(r"^  (\w+) ", top.stdout, re.M)
expect(sorted(listed) == sorted(COMMANDS), "the command list: %s" % listed)
r = run("help", "sned")
expect(r.returncode == 64 and "unknown command 'sned' (did you mean 'send'?)" in r.stderr
       and r.stdout == "", "help with a typo: " + describe(["help", "sned"], r))
r = run("help", "send", "serve")
expect(r.returncode == 64 and r.stdout == "", "help with two commands: " + describe(
    ["help", "send", "serve"], r))

# The version comes from CMake's project() and nowhere else.
with open(os.path.join(sktest.SOURCE_DIR, "CMakeLists.txt")) as f:
    m = re.search(r"project\(\s*smtpkit\s+VERSION\s+([0-9.]+)", f.read())
version = m.group(1)
for flag in ("--version", "-V"):
    r = run(flag)
    expect(r.returncode == 0 and r.stdout == "smtpkit %s\n" % version and r.stderr == "",
           "version %s: %s" % (version, describe([flag], r)))

# Unknown commands and top-level options: the nearest one suggested.
for word, near in (("sned", "send"), ("srve", "serve"), ("queu", "queue"), ("trakc", "track"),
                   ("suppres", "suppress"), ("porbe", "probe"), ("passwrd", "passwd"),
                   ("hlep", "help")):
    r = run(word, "--help")
    expect(r.returncode == 64 and r.stdout == "" and
           r.stderr.startswith("smtpkit: unknown command '%s' (did you mean '%s'?)\n"
                               % (word, near)), "unknown command: " + describe([word], r))
r = run("frobnicate")
expect(r.returncode == 64 and "unknown command 'frobnicate'\n" in r.stderr,
       "no suggestion when nothing is near: " + describe(["frobnicate"], r))
r = run("--verison")
expect(r.returncode == 64 and "unknown option '--verison' (did you mean '--version'?)" in r.stderr,
       "a top-level option typo: " + describe(["--verison"], r))
r = run()
expect(r.returncode == 64 and "usage: smtpkit COMMAND" in r.stderr, "no command: exit 64")

# Unknown options and options without their value, one format everywhere.
UNKNOWN = "smtpkit %s: unknown option '%s' (did you mean '%s'?)\n(see 'smtpkit %s --help')\n"
for cmd, (others, typo, near, valued) in COMMANDS.items():
    args = [cmd] + others + [typo]
    r = run(*args)
    expect(r.returncode == 64 and r.stderr == UNKNOWN % (cmd, typo, near, cmd),
           "unknown option: " + describe(args, r))
    args = [cmd, "--zzzzzzzz"]
    r = run(*args)
    expect(r.returncode == 64 and r.stderr == "smtpkit %s: unknown option '--zzzzzzzz'\n"
           "(see 'smtpkit %s --help')\n" % (cmd, cmd), "nothing near: " + describe(args, r))
    args = [cmd, "-Z"]
    r = run(*args)
    expect(r.returncode == 64 and r.stderr.startswith("smtpkit %s: unknown option '-Z'" % cmd),
           "unknown short option: " + describe(args, r))
    if valued:
        args = [cmd] + others + [valued]
        r = run(*args)
        lines = r.stderr.splitlines()
        expect(r.returncode == 64 and len(lines) == 2 and lines[0].startswith("smtpkit %s: " % cmd)
               and valued in lines[0] and "needs a" in lines[0]
               and lines[1] == "(see 'smtpkit %s --help')" % cmd,
               "an option without its value: " + describe(args, r))

# dkim and arc ask for the domain and selector of a signature in the same words.
SELECTOR_WORDS = "letters, digits, '-' and '_' in labels separated by dots"
NAME_CASES = [
    (["dkim", "keygen", "--selector", "s", "--out", "k"], "keygen needs --domain"),
    (["dkim", "keygen", "--domain", "example.org", "--out", "k"], "keygen needs --selector"),
    (["dkim", "sign", "--key", "k", "--domain", "a b", "--selector", "s"],
     "--domain 'a b' is not a domain name"),
    (["dkim", "sign", "--key", "k", "--domain", "example.org", "--selector", "a b"],
     "--selector 'a b': " + SELECTOR_WORDS),
    (["arc", "seal", "--key", "k", "--selector", "s"], "seal needs --domain"),
    (["arc", "seal", "--key", "k", "--domain", "example.org"], "seal needs --selector"),
    (["arc", "seal", "--key", "k", "--domain", "a b", "--selector", "s"],
     "--domain 'a b' is not a domain name"),
    (["arc", "seal", "--key", "k", "--domain", "example.org", "--selector", "a b"],
     "--selector 'a b': " + SELECTOR_WORDS),
]
for args, why in NAME_CASES:
    r = run(*args)
    expect(r.returncode == 64 and r.stderr == "smtpkit %s: %s\n(see 'smtpkit %s --help')\n"
           % (args[0], why, args[0]), "domain and selector: " + describe(args, r))

# serve: config-file lines it does not understand stop it with exit 78.
CONFIG_CASES = [
    ("[main]\nhold = yes\n", ":1: sections are not used ([main])"),
    ("hold = yes\n[main]\n", ":2: sections are not used ([main])"),
    ("hold = yes\nlsiten = 127.0.0.1:2525\n", ":2: unknown key 'lsiten' (did you mean 'listen'?)"),
    ("# listen on\nlisten: 127.0.0.1:2525\n", ":2: expected \"key = value\""),
    ("log-level = loud\n", ":1: log-level: \"loud\" is not error, warning, info or debug"),
]
for i, (text, why) in enumerate(CONFIG_CASES):
    path = tmp.join("smtpkit-%d.conf" % i)
    with open(path, "w") as f:
        f.write(text)
    args = ["serve", "--config", path, "--data-dir", tmp.join("data"),
            "--listen", "127.0.0.1:%d" % sktest.free_port()]
    try:
        # Refused at once; a server that takes the file runs until killed
        # (subprocess.run kills it at the timeout).
        r = sktest.smtpkit(*args, timeout=10, input="")
    except subprocess.TimeoutExpired:
        expect(False, "config file: serve started with %r" % text)
        continue
    expect(r.returncode == 78 and r.stderr.startswith("smtpkit serve: %s%s" % (path, why))
           and r.stderr.count("\n") == 1, "config file: " + describe(args, r))

tmp.cleanup()
if failures:
    sktest.fail("%d failure(s):\n\n%s" % (len(failures), "\n\n".join(failures)))
print("ok")
