"""Helpers for the `smtpkit serve` integration tests: a server on dynamic
loopback ports with a temporary data directory, stopped by PID, and checks of
what arrived in its Maildirs and its queue."""

import email.utils
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

HOST = "127.0.0.1"


def _read_text(path, offset=0):
    try:
        with open(path, "r", errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


class Serve:
    """`smtpkit serve` on free loopback ports.

    listen/submission/smtps: how many listeners of each kind (ports are
    picked here and available as .port, .submission_port, .smtps_port).
    args: further command-line arguments.
    """

    def __init__(self, tmp, args=(), listen=1, submission=0, smtps=0, data_dir=None,
                 name="serve", print_usage=False):
        self.tmp = tmp
        self.data_dir = data_dir or tmp.join(name + "-data")
        self.log_path = tmp.join(name + ".log")
        self.out_path = tmp.join(name + ".out")
        self.ports = {}
        argv = [sktest.SMTPKIT, "serve", "--data-dir", self.data_dir]
        for kind, count in (("listen", listen), ("submission", submission), ("smtps", smtps)):
            for _ in range(count):
                p = sktest.free_port(HOST)
                self.ports.setdefault(kind, []).append(p)
                argv += ["--" + kind, "%s:%d" % (HOST, p)]
        if print_usage:
            argv.append("--print-usage")
        self.argv = argv + [str(a) for a in args]
        self.proc = None

    @property
    def port(self):
        return self.ports["listen"][0]

    @property
    def submission_port(self):
        return self.ports["submission"][0]

    @property
    def smtps_port(self):
        return self.ports["smtps"][0]

    def start(self, timeout=15.0):
        """Start the server and wait until it has started: its ports answer
        and it has logged "daemon started". The ports open before the spool
        is recovered, the queue started and the signal handlers installed,
        so a test that went on at the first answer could find the queue
        not yet recovered, or have a SIGTERM or SIGHUP end the process."""
        start_at = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self._log = open(self.log_path, "ab")
        self._out = open(self.out_path, "ab")
        self.proc = sktest.Proc(self.argv, stdout=self._out, stderr=self._log)
        try:
            for plist in self.ports.values():
                for p in plist:
                    sktest.wait_port(p, HOST, timeout=timeout, proc=self.proc)
            sktest.wait_for(lambda: self.proc.poll() is not None or
                            " daemon started " in _read_text(self.log_path, start_at),
                            timeout=timeout, what="smtpkit serve to log \"daemon started\"")
            if self.proc.poll() is not None:
                raise RuntimeError("exited with %s" % self.proc.returncode)
        except Exception:
            self.stop(signal.SIGKILL)
            raise RuntimeError("smtpkit serve did not start:\n" + self.log())
        return self

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        rc = None
        if self.proc is not None:
            rc = self.proc.stop(sig, timeout=timeout)
        for f in ("_log", "_out"):
            if getattr(self, f, None):
                getattr(self, f).close()
                setattr(self, f, None)
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.stop()

    def log(self):
        """What the server wrote to stderr so far."""
        return _read_text(self.log_path)

    def out(self):
        """What the server wrote to stdout so far."""
        return _read_text(self.out_path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # What arrived.
    def maildir(self, domain, local):
        return sktest.maildir_messages(self.data_dir, domain, local)

    def wait_maildir(self, domain, local, count=1, timeout=15.0):
        return sktest.wait_for(lambda: len(self.maildir(domain, local)) >= count and
                               self.maildir(domain, local), timeout=timeout,
                               what="%d message(s) for %s@%s\n%s" % (count, local, domain,
                                                                      self.log()[-3000:]))

    def queue_list(self, at_least=0, timeout=10.0):
        """`smtpkit queue list --json`. With at_least, list again until it
        holds that many messages or timeout passes: with the journal a
        message's file is written just after its 250, by another thread.
        The caller still checks the list it gets."""
        def once():
            r = sktest.smtpkit("queue", "--data-dir", self.data_dir, "list", "--json", timeout=30)
            if r.returncode != 0:
                raise AssertionError("queue list failed %d: %s" % (r.returncode, r.stderr))
            return json.loads(r.stdout)
        if not at_least:
            return once()
        box = []

        def enough():
            box[:] = [once()]
            return len(box[0]) >= at_least
        sktest.settle(enough, timeout=timeout)
        return box[0]


# The shared assertion helper, re-exported for the tests that import it from here.
expect = sktest.expect


def stored_body(path):
    """A Maildir file without the trace headers the server adds."""
    with open(path, "rb") as f:
        return sktest.strip_trace_headers(f.read())


def as_stored(sent):
    """What a message sent with CRLF line ends looks like in the Maildir."""
    if isinstance(sent, str):
        sent = sent.encode()
    return sent.replace(b"\r\n", b"\n")


def expect_arrived(server, domain, local, sent, count=1):
    """The newest message for local@domain equals sent (apart from trace
    headers and CRLF -> LF), and there are count messages."""
    files = server.wait_maildir(domain, local, count)
    expect(len(files) == count, "%d messages for %s@%s, expected %d" % (len(files), local,
                                                                     domain, count), server)
    bodies = [stored_body(p) for p in files]
    want = as_stored(sent)
    if want not in bodies:
        sktest.fail("message for %s@%s differs\n--- expected ---\n%r\n--- got ---\n%r" %
                    (local, domain, want[:2000], [b[:2000] for b in bodies]))
    with open(files[0], "rb") as f:
        head = f.read(4096)
    expect(head.startswith(b"Return-Path: <"), "Return-Path first: %r" % head[:200])
    expect(b"\nReceived: " in head, "Received header: %r" % head[:400])
    expect(b"\r" not in head, "LF line ends in the Maildir file")
    return files


def expect_held_then_delivered(server, data_dir, sent, domain="localhost", local="bob"):
    """Every message of sent ({key: text}) is held in the queue; released
    one by one with `smtpkit queue release`, each arrives once for
    local@domain, byte for byte."""
    n = len(sent)
    q = server.queue_list()
    expect(len(q) == n and all(m["state"] == "hold" for m in q),
           "%d held messages: %r" % (n, q), server)
    for m in q:
        r = sktest.smtpkit("queue", "--data-dir", data_dir, "release", m["id"], timeout=30)
        expect(r.returncode == 0, "release %s: %s" % (m["id"], r.stderr), server)
    got = server.wait_maildir(domain, local, n)
    bodies = sorted(stored_body(p) for p in got)
    want = sorted(as_stored(t) for t in sent.values())
    expect(len(got) == n and bodies == want, "every message delivered once, byte for byte", server)


def make_users(tmp, users):
    """A --users file for {"name": "password"} made with `smtpkit passwd`."""
    path = tmp.join("users")
    lines = []
    for name, pw in users.items():
        r = sktest.smtpkit("passwd", name, input=pw + "\n", check_rc=0)
        lines.append(r.stdout.strip())
        expect(r.stdout.startswith(name + ":$"), "smtpkit passwd output %r" % r.stdout)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def message(subject, body="Hello.\r\n", sender="alice@example.org", to="bob@localhost",
            extra=""):
    """An RFC 5322 message with CRLF line ends (Date and Message-ID given,
    so that no client adds its own)."""
    date = email.utils.formatdate(localtime=False)
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\n"
            "Message-ID: <%s.%f@test>\r\n%s\r\n%s" %
            (sender, to, subject, date, subject.replace(" ", "-"), time.time(), extra, body))


def swaks_data(output):
    """The DATA portion swaks sent, from its transcript ("->" or "~>" lines
    after the 354 reply, up to the lone dot), un-dot-stuffed, CRLF ends."""
    out = []
    started = False
    for line in output.split("\n"):
        t = line.lstrip(" ")
        if not started:
            if t[:2] in ("<-", "<~") and t[2:].lstrip(" ").startswith("354"):
                started = True
            continue
        if t[:2] not in ("->", "~>"):
            continue
        text = t[3:] if t[2:3] == " " else t[2:]
        if text == ".":
            break
        if text.startswith("."):
            text = text[1:]
        out.append(text)
    return "".join(x + "\r\n" for x in out).encode("utf-8")
