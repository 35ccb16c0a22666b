"""Peers and a runner for the MX transport tests: MX hosts on loopback
addresses that share one port (127.0.0.1, 127.0.0.2, ..., ::1), each
counting the connections it gets, the driver built into the test_mx
unit test binary, and the scripted peer of the transcripts
(TranscriptPeer).
"""

import fnmatch
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402

DRIVER = os.path.join(sktest.BUILD_DIR, "tests", "test_mx")


def MXHost(host, port, name="mx.test", cert=None, **handler_kw):
    """A recording aiosmtpd MX host on host:port (aiosmtpd_peer.Peer),
    STARTTLS offered when cert=(cert, key) is given."""
    return Peer(host=host, port=port, name=name, tls="starttls" if cert else None, cert=cert,
                **handler_kw)


class Greeter(sktest.Listener):
    """A host that answers every connection with one greeting (421 busy,
    554 go away), then QUIT's answer, and closes; with greeting None it
    says nothing at all. Counts connections."""

    def __init__(self, host, port, greeting):
        super().__init__(host, port, reuse_addr=True)
        self.greeting = greeting

    def handle(self, conn):
        conn.settimeout(5)
        if self.greeting is None:
            # Silent: hold the connection until the client gives up.
            while conn.recv(512):
                pass
            return
        conn.sendall(self.greeting.encode() + b"\r\n")
        if conn.recv(512).upper().startswith(b"QUIT"):
            conn.sendall(b"221 bye\r\n")


def write_message(path, subject="MX test"):
    with open(path, "wb") as f:
        f.write(b"From: a@sender.test\r\nTo: someone\r\nSubject: " + subject.encode() +
                b"\r\n\r\nHello over MX.\r\n")
    return path


def deliver(dns, port, rcpts, message, *extra, sender="a@sender.test", timeout=60):
    """Run the driver; returns (list of job results, CompletedProcess)."""
    argv = [DRIVER, "deliver", "--dns", dns.address, "--mx-port", port, "--from", sender,
            "--message", message, "--timeout-ms", "3000"]
    for r in rcpts:
        argv += ["--rcpt", r]
    argv += list(extra)
    r = sktest.run(argv, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("driver exited %d\nstdout: %s\nstderr: %s"
                             % (r.returncode, r.stdout, r.stderr))
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()], r


def route_keys(dns, *domains):
    r = sktest.run([DRIVER, "key", "--dns", dns.address] + list(domains), timeout=60)
    if r.returncode != 0:
        raise AssertionError("driver exited %d\nstdout: %s\nstderr: %s"
                             % (r.returncode, r.stdout, r.stderr))
    out = {}
    for line in r.stdout.splitlines():
        o = json.loads(line)
        out[o["domain"]] = o["key"]
    return out


class Closer(sktest.Listener):
    """A minimal SMTP host that drops the connection (no 221) right after
    answering each message, as a receiver with a short idle timeout would
    before the next one; counts connections and messages. broken_tls:
    offer STARTTLS, say 220 to it, then answer the handshake with junk.
    idle_421: keep the connection after a message, then answer the next
    command with 421 and close (RFC 5321 3.8), as a receiver whose idle
    timer ran out would."""

    def __init__(self, host, port, broken_tls=False, idle_421=False):
        super().__init__(host, port, reuse_addr=True)
        self.broken_tls = broken_tls
        self.idle_421 = idle_421
        self.starttls = 0
        self.messages = 0

    def handle(self, conn):
        conn.settimeout(5)
        f = conn.makefile("rb")
        conn.sendall(b"220 closer.test ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                tls = b"250-STARTTLS\r\n" if self.broken_tls else b""
                conn.sendall(b"250-closer.test\r\n" + tls + b"250 8BITMIME\r\n")
            elif verb == b"STAR":
                self.starttls += 1
                conn.sendall(b"220 2.0.0 go ahead\r\n")
                conn.recv(4096)  # the ClientHello
                conn.sendall(b"this is not TLS\r\n")
                return
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                while f.readline() not in (b".\r\n", b""):
                    pass
                self.messages += 1
                conn.sendall(b"250 2.0.0 Ok: queued as CLOSER\r\n")
                if self.idle_421:
                    if f.readline():
                        conn.sendall(b"421 4.4.2 closer.test idle too long\r\n")
                    return
                conn.shutdown(socket.SHUT_RDWR)
                return
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 2.0.0 Ok\r\n")


class TranscriptPeer(sktest.Listener):
    """A host that plays one script per connection, in order (the PEER:
    blocks of tests/transcripts). A script is a list of (kind, text, where):
    "send" a line (CRLF added; consecutive sends go out in one write),
    "expect" a line that must match text (an fnmatch pattern), "message"
    the message data up to its lone "." line. The connection is closed when
    its script runs out. .errors says what went wrong, each with the where
    of its step: a line that did not match or never came, a connection no
    script was left for (it gets a 421; named by label); .finished counts
    the scripts run to their end."""

    #: How long a script waits for each line it expects.
    line_timeout = 10.0

    def __init__(self, scripts, host="127.0.0.1", port=0, label="peer"):
        super().__init__(host, port, reuse_addr=True)
        self.scripts = [list(s) for s in scripts]
        self.label = label
        self.finished = 0
        self.errors = []

    def done(self):
        """True when every script has run to its end or one failed."""
        return bool(self.errors) or self.finished >= len(self.scripts)

    def handle(self, conn):
        n = self.connections
        if n > len(self.scripts):
            self.errors.append("%s: connection %d: no script left for it" % (self.label, n))
            conn.sendall(b"421 4.3.0 no script for this connection\r\n")
            return
        conn.settimeout(self.line_timeout)
        f = conn.makefile("rb")
        out = b""
        for kind, text, where in self.scripts[n - 1]:
            if kind == "send":
                out += text.encode("utf-8") + b"\r\n"
                continue
            if out:
                conn.sendall(out)
                out = b""
            got = self._line(f)
            if kind == "message":
                while got not in (".", None):
                    got = self._line(f)
                if got is None:
                    self.errors.append("%s: the message ended without its \".\"" % where)
                    return
            elif got is None or not fnmatch.fnmatchcase(got, text):
                self.errors.append("%s: expected %r, got %s" %
                                   (where, text, "nothing" if got is None else repr(got)))
                return
        if out:
            conn.sendall(out)
        self.finished += 1

    @staticmethod
    def _line(f):
        """The next line without its CRLF; None at the end or after the
        line timeout."""
        try:
            line = f.readline()
        except OSError:
            return None
        if not line:
            return None
        return line.rstrip(b"\r\n").decode("utf-8", "replace")
