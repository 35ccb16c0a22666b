#!/usr/bin/python3
"""The man pages made at build time: smtpkit.1 and one smtpkit-CMD.1 for
every command `smtpkit --help` lists. Each renders without a groff
warning (groff -ww), man -l shows it, lexgrog (what mandb and apropos
read) finds its NAME line with the command's summary, every option that
the command's --help names appears in the rendered page, each entry of a
two-column list in --help (options, actions, commands) starts a line of
it, and the page names the other pages under SEE ALSO."""

import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit  # noqa: E402
from kit import check, fail, run  # noqa: E402

MAN_DIR = os.path.join(kit.BUILD_DIR, "man")
# groff's line length for the text that is searched: wide enough that no
# option name is hyphenated at a line end.
WIDE = "-rLL=3000n"


# A line of a two-column list in --help: an option (with its value) or a
# word, two spaces or more, its description.
ENTRY_RE = re.compile(r"^[ \t]*(--?[A-Za-z0-9][\w-]*|[a-z][a-z0-9-]*)(?:[ =]\S+)?"
                      r"(?:, --?\S+(?: \S+)?)*[ \t]{2,}\S", re.M)


def rendered(page):
    """The page as text, one paragraph or list entry a line."""
    r = run(["groff", "-man", "-Tutf8", WIDE, "-P-c", "-P-b", "-P-u", page], timeout=60)
    check(r.returncode == 0, "groff %s exited %d: %s" % (page, r.returncode, r.stderr))
    text = r.stdout
    for dash in ("\u2010", "\u2011", "\u2212"):
        text = text.replace(dash, "-")
    return text


def summaries():
    text = kit.help_text()
    block = re.search(r"^commands:\s*\n((?:[ \t]+\S.*\n?)+)", text, re.M | re.I).group(1)
    return {line.split()[0]: line.split(None, 1)[1].strip() for line in block.splitlines()}


def check_page(name, help_text, summary, others):
    page = os.path.join(MAN_DIR, name + ".1")
    check(os.path.exists(page), "no man page %s" % page)
    w = run(["groff", "-man", "-ww", "-z", page], timeout=60)
    check(w.returncode == 0 and not w.stderr.strip(), "groff warnings for %s:\n%s" % (name, w.stderr))
    m = run(["man", "--warnings", "-l", page], env={"MANPAGER": "cat", "MANWIDTH": "80"},
            timeout=60)
    check(m.returncode == 0 and name.upper() in m.stdout and not m.stderr.strip(),
          "man -l %s exited %d: %s" % (page, m.returncode, m.stderr))
    g = run(["lexgrog", page], timeout=30)
    check(g.returncode == 0, "lexgrog finds no NAME in %s: %s" % (page, g.stdout + g.stderr))
    if summary:
        want = '"%s - %s"' % (name, summary)
        check(want in g.stdout, "lexgrog %s: %r, want %s" % (name, g.stdout.strip(), want))
    lines = rendered(page).splitlines()
    text = re.sub(r"\s+", " ", " ".join(lines))
    missing = sorted(o for o in kit.mentioned_options(help_text) if o not in text)
    check(not missing, "%s.1 lacks options of its --help: %s" % (name, missing))
    # Each entry of a list in --help starts a line of the page (help2man
    # made it a list entry, not words run into a paragraph).
    starts = {line.split()[0].rstrip(",") for line in lines if line.strip()}
    run_in = sorted(set(ENTRY_RE.findall(help_text)) - starts)
    check(not run_in, "%s.1 runs these list entries into its text: %s" % (name, run_in))
    see = text[text.find("SEE ALSO"):]
    check(text.find("SEE ALSO") >= 0 and all("%s(1)" % o in see for o in others),
          "%s.1: SEE ALSO does not name %s" % (name, others))


def main():
    kit.need_docs()
    for tool in ("groff", "man", "lexgrog"):
        if not shutil.which(tool):
            print("SKIP: %s is missing (Debian packages groff-base, man-db)" % tool)
            sys.exit(kit.SKIP)
    sums = summaries()
    names = ["smtpkit"] + ["smtpkit-" + c for c in kit.commands() if c != kit.HELP_COMMAND]
    listed = sorted(f for f in os.listdir(MAN_DIR) if f.endswith(".1"))
    check(listed == sorted(n + ".1" for n in names),
          "pages in %s: %s, commands: %s" % (MAN_DIR, listed, names))
    for name in names:
        cmd = name[len("smtpkit-"):] if name != "smtpkit" else None
        help_text = kit.help_text(cmd) if cmd else kit.help_text()
        check_page(name, help_text, sums.get(cmd), [n for n in names if n != name])
        print("ok %s.1" % name)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        fail(str(e))
