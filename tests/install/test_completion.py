#!/usr/bin/python3
"""The bash completion made at build time, loaded into a plain bash (no
bash-completion package) and asked what it would complete: `smtpkit se`
gives the commands of `smtpkit --help` that start with "se"; `smtpkit send
--se` gives --server and only options that send's --help names; for every
command, `--` gives each option its --help defines and nothing its --help
does not name; an option whose value is a FILE completes to files, and
one listed as a|b|c to those words."""

import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kit  # noqa: E402
from kit import check, fail, run  # noqa: E402

COMPLETION = os.path.join(kit.BUILD_DIR, "bash-completion", "smtpkit")
DRIVER = r"""
source "$1" || exit 3
shift
spec=$(complete -p smtpkit) || exit 4
fn=${spec#*-F }
fn=${fn%% *}
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$fn" smtpkit "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(*words):
    """What TAB offers after `words` (the last word is the one completed)."""
    r = run(["bash", "--norc", "--noprofile", "-c", DRIVER, "driver", COMPLETION] + list(words),
            timeout=30)
    check(r.returncode == 0 and not r.stderr.strip(),
          "completing %r: exit %d, %s" % (words, r.returncode, r.stderr))
    return [w for w in r.stdout.splitlines() if w]


def main():
    kit.need_docs()
    if not shutil.which("bash"):
        print("SKIP: no bash")
        sys.exit(kit.SKIP)
    check(os.path.exists(COMPLETION), "no %s" % COMPLETION)
    cmds = kit.commands()

    got = complete("smtpkit", "se")
    want = [c for c in cmds if c.startswith("se")]
    check(sorted(got) == sorted(want) and "send" in got and "serve" in got,
          "smtpkit se<TAB>: %s, want %s" % (got, want))
    check(sorted(complete("smtpkit", "")) == sorted(cmds), "smtpkit <TAB>: not the commands")

    send_help = kit.help_text("send")
    got = complete("smtpkit", "send", "--se")
    check("--server" in got, "smtpkit send --se<TAB>: %s, want --server" % got)
    check(all(o.startswith("--se") and o in kit.mentioned_options(send_help) for o in got),
          "smtpkit send --se<TAB> offers %s" % got)

    file_opt = choice_opt = None
    for cmd in cmds:
        if cmd == kit.HELP_COMMAND:
            continue
        text = kit.help_text(cmd)
        got = set(complete("smtpkit", cmd, "--"))
        extra = got - kit.mentioned_options(text)
        check(not extra, "smtpkit %s --<TAB> offers what its --help does not name: %s" % (cmd, extra))
        missing = kit.defined_options(text) - got
        check(not missing, "smtpkit %s --<TAB> lacks %s" % (cmd, sorted(missing)))
        for m in re.finditer(r"^\s+(--[a-z0-9-]+) (FILE|[a-z]+(?:\|[a-z]+)+)(?:\s|$)", text, re.M):
            if m.group(2) == "FILE":
                file_opt = file_opt or (cmd, m.group(1))
            else:
                choice_opt = choice_opt or (cmd, m.group(1), m.group(2).split("|"))
        print("ok smtpkit %s --<TAB>: %d options" % (cmd, len(got)))

    with kit.TempDir("sk-completion-") as tmp:
        if file_opt:
            target = tmp.join("config-file.conf")
            open(target, "w").close()
            got = complete("smtpkit", file_opt[0], file_opt[1], tmp.join("config-f"))
            check(got == [target], "smtpkit %s %s <TAB>: %s, want %s" % (*file_opt, got, target))
        else:
            print("note: no option takes a FILE")
    if choice_opt:
        got = complete("smtpkit", choice_opt[0], choice_opt[1], "")
        check(sorted(got) == sorted(choice_opt[2]),
              "smtpkit %s %s <TAB>: %s, want %s" % (choice_opt[0], choice_opt[1], got, choice_opt[2]))
    else:
        print("note: no option takes one of a list of words")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        fail(str(e))
