#!/usr/bin/env python3
"""Man pages and bash completion for smtpkit, made at build time from the
built program's own --help output, so that neither can drift from it.

  helpdoc.py man SMTPKIT --version V --includes DIR --out DIR [--subst K=V]...
      one page per command that `smtpkit --help` lists (smtpkit-CMD.1) and
      smtpkit.1, through help2man; DIR/PAGE.h2m adds what --help does not
      say (FILES, SEE ALSO, ...)
  helpdoc.py completion SMTPKIT --template FILE --out FILE
      the bash completion: commands, each command's options (and the values
      of those that take a file, a directory or one of a few words), and
      the actions its usage lines name

Everything is read from --help: the command list of `smtpkit --help`, the
usage lines ("usage: smtpkit CMD ..." and the lines under it that start
with "smtpkit"), and option lines (an indented "--name META  text", or
"-x, --name"; several options may share a line, separated by ", ")."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# `smtpkit help CMD` prints another command's help: it has no page and no
# options of its own; its argument completes to a command name.
HELP_COMMAND = "help"
# Metavariables naming a file or a directory (the value completes to one).
FILE_METAS = {"FILE", "F"}
DIR_METAS = {"DIR"}
# A positional metavariable in a usage line that names a command.
COMMAND_METAS = {"COMMAND", "CMD"}
HELP_TIMEOUT_S = 30

OPTION_RE = re.compile(r"--[a-z0-9][a-z0-9-]*")
# An option that starts a definition: not "--to/--cc" (prose) nor "--x." etc.
DEF_RE = re.compile(r"^(?P<indent>[ \t]*)(?:-[A-Za-z0-9], )?(?P<opt>--[a-z0-9][a-z0-9-]*)"
                    r"(?=[ =,]|$)(?P<rest>.*)$")
ITEM_RE = re.compile(r"^(?:-[A-Za-z0-9]|(?P<opt>--[a-z0-9][a-z0-9-]*))(?:[ =](?P<meta>\S+))?")
USAGE_RE = re.compile(r"^usage:\s*", re.I)


def die(msg):
    print("helpdoc.py: " + msg, file=sys.stderr)
    sys.exit(1)


def run_help(smtpkit, args):
    """The --help text of `smtpkit ARGS`; it must exit 0 and say something."""
    argv = [smtpkit] + args + ["--help"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        die("%s: %s" % (" ".join(argv), e))
    if r.returncode != 0 or not r.stdout.strip():
        die("%s exited %d with %d bytes on stdout: %s" %
            (" ".join(argv), r.returncode, len(r.stdout), r.stderr.strip()))
    return r.stdout


def commands(top_help):
    """[(name, description)] from the "commands:" block of `smtpkit --help`."""
    out, inside = [], False
    for line in top_help.splitlines():
        if re.match(r"^commands:\s*$", line, re.I):
            inside = True
            continue
        if inside:
            m = re.match(r"^\s+([a-z][a-z0-9-]*)\s+(\S.*)$", line)
            if not m:
                break
            out.append((m.group(1), m.group(2).strip()))
    if not out:
        die("no \"commands:\" list in smtpkit --help")
    return out


def usage_lines(text):
    """The usage line and its continuation lines ("       smtpkit ...")."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if USAGE_RE.match(line):
            out = [USAGE_RE.sub("", line)]
            for more in lines[i + 1:]:
                if not re.match(r"^\s+smtpkit\b", more):
                    break
                out.append(more.strip())
            return out
    return []


def _unbracket(tok):
    """(token without the brackets around it, whether it was bracketed)."""
    bracketed = tok.startswith("[")
    tok = tok.lstrip("[")
    while tok.endswith("]") and tok.count("]") > tok.count("["):
        tok = tok[:-1]
        bracketed = True
    return tok, bracketed


def _is_meta(tok):
    return bool(tok) and not tok.startswith("-") and (re.search(r"[A-Z|]", tok) is not None)


class Help:
    """What the completion needs from one --help text."""

    def __init__(self, text, words_before=2):
        self.options = {}  # name -> metavariable (None for a flag), in order
        self.actions = []  # bare words of the usage lines: list, show, ...
        self.positionals = []  # metavariables not tied to an option: HOST, ID
        for line in usage_lines(text):
            self._usage(line.split()[words_before:])
        for line in text.splitlines():
            self._definition(line)

    def _add(self, opt, meta):
        if opt not in self.options or (meta and not self.options[opt]):
            self.options[opt] = meta

    def _usage(self, toks):
        i = 0
        while i < len(toks):
            tok, bracketed = _unbracket(toks[i])
            i += 1
            if tok in ("<", ">"):
                break  # a redirection, not an argument
            if OPTION_RE.fullmatch(tok):
                meta = None
                if i < len(toks):
                    nxt, _ = _unbracket(toks[i])
                    if _is_meta(nxt):
                        meta = nxt
                        i += 1
                self._add(tok, meta)
            elif re.fullmatch(r"[a-z][a-z0-9-]*", tok) and not bracketed:
                if tok not in self.actions:
                    self.actions.append(tok)
            elif _is_meta(tok) and tok not in self.positionals:
                self.positionals.append(tok)

    def _definition(self, line):
        m = DEF_RE.match(line)
        if not m:
            return
        # At the left margin only a line with a text column ("--x DIR  text")
        # defines an option; otherwise it is prose that starts with one.
        if not m.group("indent") and not re.search(r"\S\s{2,}\S", line.strip()):
            return
        head = re.split(r"\s{2,}", line.strip())[0]
        for item in head.split(", "):
            im = ITEM_RE.match(item)
            if im and im.group("opt"):
                meta = im.group("meta")
                self._add(im.group("opt"), meta if meta and not meta.startswith("-") else None)


def value_kind(meta):
    """How an option's value completes: file, dir, choices, or none."""
    if meta is None:
        return None
    alts = meta.split("|")
    if FILE_METAS & set(alts):
        return ("file",)
    if DIR_METAS & set(alts):
        return ("dir",)
    if len(alts) > 1 and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", a) for a in alts):
        return ("choices",) + tuple(alts)
    return ("none",)


def gather(smtpkit):
    """(top-level Help, [(command, description, Help, help text)])."""
    top_text = run_help(smtpkit, [])
    top = Help(top_text, words_before=1)
    cmds = []
    for name, desc in commands(top_text):
        if name == HELP_COMMAND:
            cmds.append((name, desc, None, None))
            continue
        text = run_help(smtpkit, [name])
        cmds.append((name, desc, Help(text), text))
    return top_text, top, cmds


# --- man pages --------------------------------------------------------------

# A two-column list entry at the left margin ("list     every queued ...",
# "--json  one JSON object"): help2man reads only indented ones as entries.
MARGIN_ENTRY_RE = re.compile(r"^(?:--?[A-Za-z0-9][\w-]*(?:[ =]\S+)?|[a-z][a-z0-9-]*)\s{2,}\S")


def for_help2man(text):
    """The same text in the layout help2man reads: "Usage:" and "  or:"
    lines make the SYNOPSIS, a two-column list is indented and needs two
    spaces between its columns ("suppress list, add" has one)."""
    out, in_commands = [], False
    for i, line in enumerate(text.splitlines()):
        if MARGIN_ENTRY_RE.match(line):
            line = "  " + line
        if i == 0 and USAGE_RE.match(line):
            line = USAGE_RE.sub("Usage: ", line)
        elif out and (out[-1].startswith("Usage: ") or out[-1].startswith("  or:  ")) \
                and re.match(r"^\s+smtpkit\b", line):
            line = "  or:  " + line.strip()
        if re.match(r"^commands:\s*$", line, re.I):
            in_commands = True
        elif in_commands:
            m = re.match(r"^(\s+)([a-z][a-z0-9-]*)\s+(\S.*)$", line)
            if m:
                line = "%s%-10s  %s" % (m.group(1), m.group(2), m.group(3))
            else:
                in_commands = False
        out.append(line)
    return "\n".join(out) + "\n"


def substitute(text, subst):
    for k, v in subst.items():
        text = text.replace("@%s@" % k, v)
    left = re.search(r"@[A-Z_]+@", text)
    if left:
        die("unknown placeholder %s" % left.group(0))
    return text


def help2man(page, help_text, name_desc, includes, version, out_dir, work):
    """Run help2man on a script that prints help_text as PAGE --help."""
    script = os.path.join(work, page)
    text_path = os.path.join(work, page + ".txt")
    with open(text_path, "w") as f:
        f.write(for_help2man(help_text))
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexec cat '%s'\n" % text_path)
    os.chmod(script, 0o755)
    argv = ["help2man", "--no-info", "--section=1", "--version-string=" + version,
            "--source=SMTPKit " + version, "--manual=SMTPKit Manual",
            "--output=" + os.path.join(out_dir, page + ".1")]
    if name_desc:
        argv.append("--name=" + name_desc)
    for inc in includes:
        argv.append("--include=" + inc)
    argv.append(script)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    if r.returncode != 0 or r.stderr.strip():
        die("help2man for %s exited %d: %s" % (page, r.returncode, r.stderr.strip()))


def cmd_man(a):
    subst = dict(s.split("=", 1) for s in a.subst)
    subst["VERSION"] = a.version
    top_text, _, cmds = gather(a.smtpkit)
    pages = [("smtpkit", None, top_text)]
    pages += [("smtpkit-" + name, desc, text) for name, desc, h, text in cmds if h]
    os.makedirs(a.out, exist_ok=True)
    for old in os.listdir(a.out):
        if old.endswith(".1"):
            os.remove(os.path.join(a.out, old))
    names = [p[0] for p in pages]
    with tempfile.TemporaryDirectory(prefix="helpdoc-") as work:
        for page, desc, text in pages:
            includes = []
            static = os.path.join(a.includes, page + ".h2m")
            if os.path.exists(static):
                with open(static) as f:
                    body = substitute(f.read(), subst)
                path = os.path.join(work, page + ".h2m")
                with open(path, "w") as f:
                    f.write(body)
                includes.append(path)
            elif page == "smtpkit":
                die("%s is missing (it gives the NAME of smtpkit.1)" % static)
            # Every page names the others first under SEE ALSO; what the
            # page's own file adds there starts a paragraph of its own.
            see = [n for n in names if n != page]
            more = any("[SEE ALSO]" in open(i).read() for i in includes)
            path = os.path.join(work, page + ".see.h2m")
            with open(path, "w") as f:
                f.write("[SEE ALSO]\n" + ",\n".join(".BR %s (1)" % n for n in see) +
                        (".\n.PP\n" if more else "\n"))
            includes.insert(0, path)
            help2man(page, text, desc, includes, a.version, a.out, work)
    with open(os.path.join(a.out, "pages.txt"), "w") as f:
        f.write("".join(n + ".1\n" for n in names))


# --- bash completion --------------------------------------------------------

def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def completion_data(top, cmds):
    names = [c[0] for c in cmds]
    out = ["_smtpkit_commands=%s" % sh_quote(" ".join(names)), ""]
    out.append("# _smtpkit_options CMD: the options of CMD (\"\" before a command).")
    out.append("_smtpkit_options() {")
    out.append("    case $1 in")
    out.append("    '') printf '%%s\\n' %s ;;" % sh_quote(" ".join(top.options)))
    for name, _, h, _ in cmds:
        if h:
            out.append("    %s) printf '%%s\\n' %s ;;" % (name, sh_quote(" ".join(h.options))))
    out.append("    esac")
    out.append("}")
    out.append("")
    out.append("# _smtpkit_value CMD OPTION: succeeds when OPTION takes a value, and")
    out.append("# prints how it completes: file, dir, choices WORD..., or none.")
    out.append("_smtpkit_value() {")
    out.append("    case \"$1 $2\" in")
    for name, _, h, _ in cmds:
        if not h:
            continue
        for opt, meta in h.options.items():
            kind = value_kind(meta)
            if kind:
                out.append("    %s) printf '%%s\\n' %s ;;" %
                           (sh_quote(name + " " + opt), sh_quote(" ".join(kind))))
    out.append("    *) return 1 ;;")
    out.append("    esac")
    out.append("}")
    out.append("")
    out.append("# _smtpkit_words CMD: what a word that is not an option completes to")
    out.append("# (the actions of its usage lines; command names where it takes one).")
    out.append("_smtpkit_words() {")
    out.append("    case $1 in")
    for name, _, h, _ in cmds:
        if h is None:
            words = "$_smtpkit_commands"
        else:
            words = " ".join(h.actions)
            if COMMAND_METAS & set(h.positionals):
                words = (words + " $_smtpkit_commands").strip()
        if words:
            out.append("    %s) printf '%%s\\n' \"%s\" ;;" % (name, words))
    out.append("    esac")
    out.append("}")
    return "\n".join(out) + "\n"


def cmd_completion(a):
    _, top, cmds = gather(a.smtpkit)
    with open(a.template) as f:
        tmpl = f.read()
    marker = "# @SMTPKIT_COMPLETION_DATA@\n"
    if marker not in tmpl:
        die("%s has no line %r" % (a.template, marker.strip()))
    text = tmpl.replace(marker, completion_data(top, cmds))
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, a.out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("man")
    m.add_argument("smtpkit")
    m.add_argument("--version", required=True)
    m.add_argument("--includes", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--subst", action="append", default=[])
    c = sub.add_parser("completion")
    c.add_argument("smtpkit")
    c.add_argument("--template", required=True)
    c.add_argument("--out", required=True)
    a = p.parse_args()
    if a.what == "man" and not shutil.which("help2man"):
        die("help2man is not installed (Debian package help2man)")
    {"man": cmd_man, "completion": cmd_completion}[a.what](a)


if __name__ == "__main__":
    main()
