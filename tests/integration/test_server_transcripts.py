#!/usr/bin/python3
"""Run every tests/transcripts/*.txt against a server: examples/server_print
(the library's server, the default) or `smtpkit serve`. Names given on the
command line run only those files.

One item a line; blank lines and lines starting with # are skipped.

The server:
  TARGET: serve              run against `smtpkit serve` (default: server_print)
  OPTS: --max-rcpts 2        options. server_print: given as they are, with
                             the addresses it accepts (server_helper.ACCEPT).
                             serve: after --data-dir (a new temporary
                             directory), --listen 127.0.0.1:PORT and
                             --hostname mx.test (a later --hostname wins)
  USER: zoe pa55 word        an account for AUTH: the name, then the password
                             (the rest of the line). server_print: --user;
                             serve: a --users file made by `smtpkit passwd`

The client, one connection at a time, to the SMTP listener at first:
  C: text                    a line the client sends (CRLF added)
  B: python-escaped bytes    raw bytes sent as they are ("\\r\\n" escapes)
  S: text                    an expected reply line; fnmatch patterns (*, ?)
  S: <closed>                the server closes the connection
  CONNECT: submission        close the connection and open a new one to the
                             listen (also when nothing follows the colon) or
                             submission listener (which the server then gets)
Consecutive C:/B: lines go out in one write (pipelining); the S: lines that
follow are the replies expected for them, in order.

What the server did, checked in the order written once the client is done
and the peers have run. Patterns match a whole line: a log line starts with
its time and session, so those patterns start with "* ".
  O: text                    server_print printed this line on stdout
  L: text                    the log (stderr) has this line
  X: text                    no line printed or logged matches
  Q: 1                       serve: messages in the queue (`smtpkit queue list`)
  M: localhost/bob 1         serve: messages in DATA-DIR/mailboxes/localhost/bob/new
O:, L:, Q: and M: are waited for (the log and the Maildirs lag the replies);
X: is checked after the server stopped.

A peer that serve relays to (serve gets --relay-host 127.0.0.1:PORT):
  PEER: relay                the P:/R: lines that follow are one connection;
                             each further PEER: relay block the next one
  P: text                    a line the peer sends (CRLF added); consecutive
                             P: lines go out in one write
  R: text                    a line the peer must receive (a pattern)
  R: <message>               the message's lines, up to its lone "."
The peer closes a connection when its lines run out. A block that never ran
to its end fails the transcript, and so does a connection beyond the blocks
that comes before the server is stopped (it gets 421).

Long inputs:
  {TEXT*N}                   in any line: TEXT N times ("C: NOOP {x*505}")
  REPEAT N / END             the lines between, N times (may nest)
"""

import fnmatch
import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402
from mx_peers import TranscriptPeer  # noqa: E402
from serve_peer import Serve, make_users  # noqa: E402

LISTENERS = ("listen", "submission")
SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
# How long the checks after the session wait for what lags behind it.
SETTLE_S = 15.0


class Transcript:
    def __init__(self, path):
        self.name = os.path.basename(path)
        self.target = "server_print"
        self.opts, self.users, self.steps = [], [], []
        self.checks, self.absent = [], []  # O:, L:, Q:, M: in file order; X:
        self.peers = []  # one script per connection of the relay host
        self.listeners = {"listen"}

    def fail(self, n, msg):
        sktest.fail("%s:%d: %s" % (self.name, n, msg))


def expand_repeats(lines, path):
    """(number, line) pairs with every REPEAT N ... END block unrolled."""
    out, i = [], 0
    while i < len(lines):
        n, line = lines[i]
        m = re.fullmatch(r"REPEAT (\d+)", line)
        if line == "END":
            sktest.fail("%s:%d: END without REPEAT" % (path, n))
        if not m:
            out.append((n, line))
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(lines) and depth:
            depth += 1 if lines[j][1].startswith("REPEAT ") else -(lines[j][1] == "END")
            j += 1
        if depth:
            sktest.fail("%s:%d: REPEAT without END" % (path, n))
        out += expand_repeats(lines[i + 1:j - 1], path) * int(m.group(1))
        i = j
    return out


def expand_inline(line):
    """{TEXT*N} -> TEXT repeated N times."""
    return re.sub(r"\{([^{}]*?)\*(\d+)\}", lambda m: m.group(1) * int(m.group(2)), line)


def parse(path):
    t = Transcript(path)
    raw = [(n, l) for n, l in enumerate(open(path, encoding="utf-8").read().split("\n"), 1)
           if l.strip() and not l.startswith("#")]
    peer = None
    for n, line in expand_repeats(raw, t.name):
        m = re.fullmatch(r"([A-Z]+):(?: (.*))?", expand_inline(line), re.S)
        if not m:
            t.fail(n, "not a transcript line: %r" % line)
        tag, rest = m.group(1), m.group(2) or ""
        if tag == "TARGET":
            if rest not in ("serve", "server_print"):
                t.fail(n, "TARGET is serve or server_print, not %r" % rest)
            t.target = rest
        elif tag == "OPTS":
            t.opts += rest.split()
        elif tag == "USER":
            name, _, password = rest.partition(" ")
            t.users.append((name, password))
        elif tag == "C":
            t.steps.append(("send", rest.encode("utf-8") + b"\r\n", n))
        elif tag == "B":
            t.steps.append(("send", rest.encode("utf-8").decode("unicode_escape").encode("latin-1"), n))
        elif tag == "S":
            t.steps.append(("expect", rest, n))
        elif tag == "CONNECT":
            kind = rest or "listen"
            if kind not in LISTENERS:
                t.fail(n, "CONNECT to one of %s, not %r" % (", ".join(LISTENERS), kind))
            t.listeners.add(kind)
            t.steps.append(("connect", kind, n))
        elif tag in ("O", "L"):
            t.checks.append((tag, n, rest))
        elif tag == "X":
            t.absent.append((n, rest))
        elif tag == "Q":
            if not rest.isdigit():
                t.fail(n, "Q: takes a count")
            t.checks.append((tag, n, int(rest)))
        elif tag == "M":
            mm = re.fullmatch(r"([^/\s]+)/([^/\s]+) (\d+)", rest)
            if not mm:
                t.fail(n, "M: takes DOMAIN/USER COUNT")
            t.checks.append((tag, n, (mm.group(1), mm.group(2), int(mm.group(3)))))
        elif tag == "PEER":
            if rest != "relay":
                t.fail(n, "PEER: relay is the only peer, not %r" % rest)
            peer = []
            t.peers.append(peer)
        elif tag in ("P", "R"):
            if peer is None:
                t.fail(n, "%s: outside a PEER: block" % tag)
            where = "%s:%d (PEER relay, connection %d)" % (t.name, n, len(t.peers))
            kind = "send" if tag == "P" else "message" if rest == "<message>" else "expect"
            peer.append((kind, rest, where))
        else:
            t.fail(n, "unknown line %r" % line)
    for tag, n, _ in t.checks:
        if tag in ("Q", "M") and t.target != "serve":
            t.fail(n, "%s: is for TARGET: serve" % tag)
        if tag == "O" and t.target == "serve":
            t.fail(n, "O: is for server_print (serve prints nothing)")
    if t.peers and t.target != "serve":
        t.fail(0, "PEER: is for TARGET: serve")
    if t.target == "server_print" and len(t.users) > 1:
        t.fail(0, "server_print takes one USER:")
    return t


class PrintTarget:
    """examples/server_print."""

    def __init__(self, t, tmp, peer):
        opts = list(t.opts)
        for name, password in t.users:
            opts += ["--user", "%s:%s" % (name, password)]
        self.srv = sh.PrintServer(opts, listens=[("--" + k, "127.0.0.1:0") for k in LISTENERS
                                                 if k in t.listeners])

    def port(self, kind):
        return self.srv.ports[kind][0]

    def output(self):
        return _lines(self.srv.stdout().decode("utf-8", "replace"))

    def log(self):
        return _lines(self.srv.stderr().decode("utf-8", "replace"))

    def stop(self):
        self.srv.stop()  # fails on a sanitizer report or a bad exit


class ServeTarget:
    """`smtpkit serve` on a new data directory."""

    def __init__(self, t, tmp, peer):
        args = ["--hostname", "mx.test"]
        if t.users:
            args += ["--users", make_users(tmp, dict(t.users))]
        if peer:
            args += ["--relay-host", "127.0.0.1:%d" % peer.port]
        self.name = t.name
        self.srv = Serve(tmp, args=args + t.opts, submission=int("submission" in t.listeners))
        self.srv.start()

    def port(self, kind):
        return self.srv.ports[kind][0]

    def output(self):
        return _lines(self.srv.out())

    def log(self):
        return _lines(self.srv.log())

    def queue(self):
        return len(self.srv.queue_list())

    def maildir(self, domain, user):
        return len(self.srv.maildir(domain, user))

    def stop(self):
        rc = self.srv.stop()
        log = self.srv.log()
        for marker in SANITIZER:
            if marker in log:
                sktest.fail("%s: serve: sanitizer report:\n%s" % (self.name, log[-4000:]))
        if rc != 0:
            sktest.fail("%s: serve exited %s after SIGTERM:\n%s" % (self.name, rc, log[-3000:]))


def _lines(text):
    return [l.rstrip("\r") for l in text.split("\n")]


def talk(t, target):
    """Play the client's lines, one connection at a time."""
    steps = t.steps
    if not steps or steps[0][0] != "connect":
        steps = [("connect", "listen", 0)] + steps
    c, pending = None, b""
    try:
        for kind, data, n in steps:
            if kind == "send":
                pending += data
                continue
            if pending:
                c.send(pending)
                pending = b""
            if kind == "connect":
                if c:
                    c.close()
                c = sh.Client(target.port(data), timeout=10, greet=False)
            elif data == "<closed>":
                if not c.closed():
                    t.fail(n, "connection still open")
            else:
                try:
                    line = c.readline()
                except (EOFError, OSError) as e:
                    t.fail(n, "expected %r, got %s" % (data, e))
                if not fnmatch.fnmatchcase(line, data):
                    t.fail(n, "expected %r, got %r" % (data, line))
        if pending:
            c.send(pending)
    finally:
        if c:
            c.close()


def check_after(t, target, peer):
    """Everything but X:, waited for as long as SETTLE_S."""
    if peer:
        sktest.settle(peer.done, timeout=SETTLE_S)
        if peer.errors:
            sktest.fail("%s\n--- server log ---\n%s" % ("\n".join(peer.errors),
                                                        "\n".join(target.log()[-40:])))
        if peer.finished < len(peer.scripts):
            sktest.fail("%s: PEER relay: %d of %d connection(s) ran to their end"
                        % (t.name, peer.finished, len(peer.scripts)))

    def has(lines, pat):
        return any(fnmatch.fnmatchcase(l, pat) for l in lines())

    for tag, n, arg in t.checks:
        if tag == "O" and not sktest.settle(lambda: has(target.output, arg), timeout=SETTLE_S):
            t.fail(n, "no output line %r" % arg)
        if tag == "L" and not sktest.settle(lambda: has(target.log, arg), timeout=SETTLE_S):
            t.fail(n, "no log line %r\n--- log ---\n%s" % (arg, "\n".join(target.log()[-40:])))
        if tag == "Q" and not sktest.settle(lambda: target.queue() == arg, timeout=SETTLE_S):
            t.fail(n, "%d message(s) in the queue, expected %d" % (target.queue(), arg))
        if tag == "M":
            domain, user, want = arg
            if not sktest.settle(lambda: target.maildir(domain, user) == want, timeout=SETTLE_S):
                t.fail(n, "%d message(s) for %s/%s, expected %d"
                       % (target.maildir(domain, user), domain, user, want))


def run_one(path):
    t = parse(path)
    with sktest.TempDir("sk-transcript-") as tmp:
        peer = TranscriptPeer(t.peers, label="%s: PEER relay" % t.name).start() if t.peers else None
        target = None
        try:
            target = (ServeTarget if t.target == "serve" else PrintTarget)(t, tmp, peer)
            talk(t, target)
            check_after(t, target, peer)
        finally:
            if target:
                target.stop()
            if peer:
                peer.stop()
        if peer and peer.errors:  # a connection that came during the checks
            sktest.fail("\n".join(peer.errors))
        printed = target.output() + target.log()
        for n, pat in t.absent:
            hit = [l for l in printed if fnmatch.fnmatchcase(l, pat)]
            if hit:
                t.fail(n, "%r printed or logged: %r" % (pat, hit[0]))
    print("ok", t.name)


def main():
    files = sorted(glob.glob(os.path.join(sktest.SOURCE_DIR, "tests", "transcripts", "*.txt")))
    sktest.check(len(files) >= 5, "transcripts not found")
    only = sys.argv[1:]
    for name in only:
        sktest.check(any(os.path.basename(f) == name for f in files), "no transcript %s" % name)
    for f in files:
        if only and os.path.basename(f) not in only:
            continue
        run_one(f)


if __name__ == "__main__":
    main()
