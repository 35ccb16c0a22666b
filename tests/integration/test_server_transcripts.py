#!/usr/bin/python3
"""Run every tests/transcripts/*.txt against examples/server_print.

Format, one item a line:
  # comment
  OPTS: --max-rcpts 2        server_print options (before the first C:)
  C: text                    a line the client sends (CRLF added)
  B: python-escaped bytes    raw bytes sent as they are ("\\r\\n" escapes)
  S: text                    an expected reply line; fnmatch patterns (*, ?)
  S: <closed>                the server closes the connection
  O: text                    (anywhere) a line server_print must print
  X: text                    (anywhere) a line server_print must not print
Consecutive C:/B: lines go out in one write (pipelining); the S: lines that
follow are the replies expected for them, in order."""

import fnmatch
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def parse(path):
    opts, steps, must, mustnot = [], [], [], []
    for n, raw in enumerate(open(path, encoding="utf-8").read().split("\n"), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        tag, _, rest = raw.partition(": ")
        if raw in ("S:", "C:"):
            tag, rest = raw[:1], ""
        tag = tag.rstrip(":")
        if tag == "OPTS":
            opts += rest.split()
        elif tag == "C":
            steps.append(("send", rest.encode("utf-8") + b"\r\n", n))
        elif tag == "B":
            steps.append(("send", rest.encode("utf-8").decode("unicode_escape").encode("latin-1"), n))
        elif tag == "S":
            steps.append(("expect", rest, n))
        elif tag == "O":
            must.append(rest)
        elif tag == "X":
            mustnot.append(rest)
        else:
            sktest.fail("%s:%d: unknown line %r" % (path, n, raw))
    return opts, steps, must, mustnot


def run_one(path):
    name = os.path.basename(path)
    opts, steps, must, mustnot = parse(path)
    with sh.PrintServer(opts) as srv:
        c = sh.Client(srv.port, timeout=5, greet=False)
        pending = b""
        try:
            for kind, data, n in steps:
                if kind == "send":
                    pending += data
                    continue
                if pending:
                    c.send(pending)
                    pending = b""
                if data == "<closed>":
                    if not c.closed():
                        sktest.fail("%s:%d: connection still open" % (name, n))
                    continue
                try:
                    line = c.readline()
                except (EOFError, OSError) as e:
                    sktest.fail("%s:%d: expected %r, got %s" % (name, n, data, e))
                if not fnmatch.fnmatchcase(line, data):
                    sktest.fail("%s:%d: expected %r, got %r" % (name, n, data, line))
            if pending:
                c.send(pending)
        finally:
            c.close()
        def lines():
            return [l.rstrip("\r") for l in srv.stdout().decode("utf-8", "replace").split("\n")]

        for pat in must:
            if not any(fnmatch.fnmatchcase(l, pat) for l in lines()):
                sktest.wait_for(lambda: any(fnmatch.fnmatchcase(l, pat) for l in lines()),
                                timeout=5, what="%s: output %r" % (name, pat))
        out = lines()
        for pat in mustnot:
            if any(fnmatch.fnmatchcase(l, pat) for l in out):
                sktest.fail("%s: output has %r" % (name, pat))
    print("ok", name)


def main():
    files = sorted(glob.glob(os.path.join(sktest.SOURCE_DIR, "tests", "transcripts", "*.txt")))
    sktest.check(len(files) >= 5, "transcripts not found")
    only = sys.argv[1:]
    for f in files:
        if only and os.path.basename(f) not in only:
            continue
        run_one(f)


if __name__ == "__main__":
    main()
