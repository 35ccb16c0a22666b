"""Peers for the `smtpkit send` tests: a recording aiosmtpd server, raw
scripted TCP peers (silent, closing during DATA, not SMTP), and a runner
that reports every failed case rather than stopping at the first.

Every server listens on 127.0.0.1 on a free port and is stopped by the
test that started it; every CLI run is bounded by a timeout.
"""

import email
import email.policy
import json
import os
import pty
import select
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

from aiosmtpd_peer import HOST, QUEUE_ID, Peer, PeerHandler  # noqa: E402,F401


# The aiosmtpd peer (aiosmtpd_peer.Peer) under the names the send tests use:
# Smtpd(tls=, cert=, users=, tokens=, auth_require_tls=, host=, size_limit=,
# rcpt_replies=, data_reply=, mail_reply=) on a free port, greeting as mx.test.
Smtpd = Peer
Recorder = PeerHandler


def OAuthRecorder(tokens, **kw):
    """A PeerHandler that also offers XOAUTH2, accepting tokens[user]."""
    return PeerHandler(tokens=tokens, **kw)


class RawPeer(sktest.Listener):
    """A scripted TCP peer on a free loopback port, run in a thread.

    mode "silent": accepts and never says anything.
    mode "not_smtp": answers like a web server and closes.
    mode "close_in_data": plays SMTP until DATA's 354, reads part of the
    message and closes the connection without a final reply.
    mode "record": announces DSN and MT-PRIORITY (which aiosmtpd does not
    know), accepts everything and records the command lines in .lines.
    """

    def __init__(self, mode):
        super().__init__(HOST, backlog=4, reuse_addr=True)
        self.mode = mode
        self.got_data = threading.Event()
        self.lines = []

    def handle(self, conn):
        # Every connection stays open until the peer stops (the silent
        # mode relies on that; the others close theirs themselves).
        self.hold(conn)
        self._serve(conn)

    def _serve(self, conn):
        conn.settimeout(10)
        if self.mode == "silent":
            return
        if self.mode == "not_smtp":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        f = conn.makefile("rb")
        conn.sendall(b"220 raw.test ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            self.lines.append(line.rstrip(b"\r\n").decode("utf-8", "replace"))
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-raw.test\r\n250-PIPELINING\r\n250-DSN\r\n"
                             b"250-MT-PRIORITY\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n")
            elif verb == b"DATA" and self.mode == "record":
                conn.sendall(b"354 go ahead\r\n")
                while f.readline() not in (b".\r\n", b""):
                    pass
                conn.sendall(b"250 2.0.0 Ok: queued as RAW1\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                f.readline()
                self.got_data.set()
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
                return
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                conn.close()
                return
            else:
                conn.sendall(b"250 2.0.0 Ok\r\n")


class TlsSilent(sktest.Listener):
    """Completes a TLS handshake (implicit TLS) and then says nothing, as
    an HTTPS server waiting for its request."""

    def __init__(self, cert):
        super().__init__(HOST)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert[0], cert[1])

    def handle(self, conn):
        conn.settimeout(10)
        try:
            self.hold(self.ctx.wrap_socket(conn, server_side=True))
        except (ssl.SSLError, OSError):
            pass


class GreetPause:
    """An SMTP server that greets only after `delay` seconds, as Postfix's
    postscreen or sendmail's greet_pause do to catch clients that talk
    first, each connection in its own thread. A connection that sends
    anything before its greeting is an early talker: it is counted and,
    with reject_early (sendmail's way), answered 554 and closed; otherwise
    its words are ignored. The others get "220 pause.test" and a minimal
    plain-text ESMTP session that accepts one message (.messages)."""

    def __init__(self, delay, reject_early=True):
        self.delay = delay
        self.reject_early = reject_early
        self.early_talkers = 0
        self.messages = []
        self.lock = threading.Lock()
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                peer._serve(self.request)

        self.server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,),
                                       daemon=True)

    def _serve(self, conn):
        conn.settimeout(10)
        ready, _, _ = select.select([conn], [], [], self.delay)
        if ready:
            with self.lock:
                self.early_talkers += 1
            if self.reject_early:
                conn.sendall(b"554 5.5.0 pause.test rejecting commands: pre-greeting traffic\r\n")
                return
            time.sleep(self.delay)
        conn.sendall(b"220 pause.test ESMTP\r\n")
        f = conn.makefile("rb")
        data = None
        while True:
            line = f.readline()
            if not line:
                return
            if data is not None:
                if line == b".\r\n":
                    with self.lock:
                        self.messages.append(b"".join(data))
                    data = None
                    conn.sendall(b"250 2.0.0 Ok: queued as PAUSE1\r\n")
                else:
                    data.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-pause.test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                data = []
                conn.sendall(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                conn.sendall(b"250 2.0.0 Ok\r\n")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def run_on_tty(argv, timeout=60):
    """Run argv with stderr on a pseudo-terminal (stdout a pipe); returns
    (exit code, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, out.decode("utf-8", "replace"), shown.decode("utf-8", "replace")


# Kept here too: the tests import it from this module.
have_ipv6_loopback = sktest.have_ipv6_loopback


def send(*args, timeout=60, input=None, env=None):
    """Run `smtpkit send ARGS`; returns CompletedProcess (text mode)."""
    return sktest.run([sktest.SMTPKIT, "send"] + [str(a) for a in args], timeout=timeout,
                      input=input, env=env)


def parse(data):
    """A received message as an email.message.EmailMessage. UTF-8 header
    fields (RFC 6532, with SMTPUTF8) are decoded as UTF-8; Python's bytes
    parser would take them for ASCII."""
    try:
        return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    except UnicodeDecodeError:
        return email.message_from_bytes(data, policy=email.policy.default)


def crlf_only(data):
    """True when every line of data ends in CRLF (no bare CR or LF)."""
    stripped = data.replace(b"\r\n", b"")
    return b"\r" not in stripped and b"\n" not in stripped


def json_out(r):
    """The single JSON object `--json` printed on stdout."""
    return json.loads(r.stdout)


class Runner:
    """Runs named cases, prints one line per case, exits 1 if any failed."""

    def __init__(self):
        self.failed = []

    def case(self, fn):
        name = fn.__name__
        try:
            fn()
            print("ok   %s" % name, flush=True)
        except Exception:  # a failed case must not stop the others
            self.failed.append(name)
            print("FAIL %s\n%s" % (name, traceback.format_exc()), flush=True)
        except SystemExit as e:  # sktest.fail() (exit 1) ends the case, not the run
            if e.code != 1:
                raise
            self.failed.append(name)
            print("FAIL %s" % name, flush=True)
        return fn

    def finish(self):
        if self.failed:
            print("failed: %s" % ", ".join(self.failed))
            sys.exit(1)
        print("all cases passed")


# The shared assertion helper (a finished command as context adds its exit
# code and output), re-exported for the tests that import it from here.
expect = sktest.expect


def expect_exit(r, code):
    expect(r.returncode == code, "exit code %d, expected %d" % (r.returncode, code), r)

