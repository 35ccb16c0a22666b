"""Helpers for the SMTP server tests: run examples/server_print on a
dynamic loopback port and talk raw SMTP to it (plain or TLS)."""

import os
import re
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

SERVER_PRINT = os.path.join(sktest.BUILD_DIR, "example_server_print")
ACCEPT = ["bob@example.org", "carol@example.org", "j\u00f6rg@m\u00fcller.example", "postmaster"]


class PrintServer:
    """examples/server_print with the given options; stdout collected."""

    def __init__(self, opts=(), accept=ACCEPT, verbose=True, listens=None):
        argv = [SERVER_PRINT] + list(opts)
        for kind, addr in listens or [("--listen", "127.0.0.1:0")]:
            argv += [kind, addr]
        if verbose:
            argv.append("-v")
        argv += accept
        self.proc = sktest.Proc(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""
        self.err = b""
        self.ports = {}
        self._lock = threading.Lock()
        self._t1 = threading.Thread(target=self._pump, args=(self.proc.p.stdout, "out"), daemon=True)
        self._t2 = threading.Thread(target=self._pump, args=(self.proc.p.stderr, "err"), daemon=True)
        self._t1.start()
        self._t2.start()
        n = len(listens or [1])
        sktest.wait_for(lambda: self.stdout().count(b"LISTEN ") >= n or self.proc.poll() is not None,
                        timeout=10, what="server_print to listen")
        for m in re.finditer(rb"LISTEN (\S+) (\d+)", self.stdout()):
            self.ports.setdefault(m.group(1).decode(), []).append(int(m.group(2)))
        if not self.ports:
            sktest.fail("server_print did not start: %r" % self.stderr())
        self.port = (self.ports.get("listen") or list(self.ports.values())[0])[0]

    def _pump(self, f, which):
        while True:
            b = f.read1(65536) if hasattr(f, "read1") else f.read(4096)
            if not b:
                return
            with self._lock:
                if which == "out":
                    self.out += b
                else:
                    self.err += b

    def stdout(self):
        with self._lock:
            return self.out

    def stderr(self):
        with self._lock:
            return self.err

    def stop(self):
        """Stop the server (SIGTERM); fail on a sanitizer report or a bad exit."""
        already = self.proc.poll() is not None
        rc = self.proc.stop(timeout=10)
        self._t1.join(5)
        self._t2.join(5)
        err = self.stderr()
        for marker in (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer", b"runtime error:"):
            if marker in err:
                sktest.fail("server_print: sanitizer report:\n%s" % err.decode("utf-8", "replace")[-4000:])
        if rc != 0 and not already:
            sktest.fail("server_print exited %s after SIGTERM:\n%s" % (rc, err.decode("utf-8", "replace")[-2000:]))
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# The raw SMTP client (sktest.SMTPClient) under the name the server tests use.
Client = sktest.SMTPClient


def expect_reply(got, code, enh=None, what="", server=None):
    """Check a (code, lines) reply: the code, and the enhanced status code
    when enh is given; a server as context adds its log to a failure."""
    c, lines = got
    sktest.expect(c == code and (not enh or lines[-1].startswith(enh + " ")),
                  "%s: expected %d %s, got %d %r" % (what, code, enh or "", c, lines), server)


# The name existing tests use.
expect = expect_reply


def tls_setup(tmp):
    """A test CA and a certificate for mx.test; returns (cert, key, client context)."""
    ca = sktest.TestCA(tmp.join("ca"))
    cert, key = ca.issue("mx.test", ["mx.test", "127.0.0.1"])
    ctx = ssl.create_default_context(cafile=ca.cert)
    return cert, key, ctx


def log_has(server, pattern, timeout=5.0):
    """Wait for a regular expression to appear in the server's log."""
    try:
        return sktest.wait_for(lambda: re.search(pattern, server.stderr().decode("utf-8", "replace")),
                               timeout=timeout, what=pattern)
    except TimeoutError:
        return None


def wait_output(server, needle, timeout=5.0):
    try:
        return sktest.wait_for(lambda: needle in server.stdout(), timeout=timeout, what=repr(needle))
    except TimeoutError:
        return False
