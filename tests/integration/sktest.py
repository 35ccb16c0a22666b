"""Shared helpers for SMTPKit's integration tests.

Everything here talks to loopback only, starts processes that the caller
stops by PID (Proc.stop, or the `started` context manager), and bounds every
wait with a timeout.
"""

import contextlib
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

SMTPKIT = os.environ.get("SMTPKIT", "smtpkit")
SOURCE_DIR = os.environ.get(
    "SK_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
BUILD_DIR = os.environ.get("SK_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
PYTHON = "/usr/bin/python3"
# Exit status of a test that cannot run here (CTest reports it as skipped).
SKIP = 77


def fail(msg):
    """Print a failure and exit non-zero (for plain-script tests)."""
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


# How much of a server's log a failed expect() shows (its end, where the
# failure usually is).
LOG_TAIL = 5000


def _context(item):
    """What one context item of expect() adds to a failure message."""
    if hasattr(item, "log") and callable(item.log):
        return "--- server log ---\n" + item.log()[-LOG_TAIL:]
    if hasattr(item, "returncode"):
        return "exit %d\nstdout: %s\nstderr: %s" % (item.returncode, item.stdout, item.stderr)
    return str(item)


def expect(cond, msg, *context, failures=None):
    """The one assertion helper of the integration tests.

    When cond is false the failure is msg followed by what each context item
    tells: a server (anything with .log()) adds the end of its log, a finished
    command (anything with .returncode) its exit code and output, anything
    else its text. Without failures the test ends there (fail()); with a list
    the failure is printed and appended to it, for tests that report every
    failed check at their end."""
    if cond:
        return
    parts = [msg] + [_context(c) for c in context if c is not None]
    text = "\n".join(parts)
    if failures is None:
        fail(text)
    failures.append(text)
    print("FAIL: " + text, flush=True)


def free_port(host="127.0.0.1"):
    """A TCP port that was free on host a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    """True when ::1 can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    """Wait until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d after %.1fs" % (host, port, timeout))


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))


def settle(pred, timeout=10.0, interval=0.05):
    """Poll pred() until it returns a true value or timeout passes; return
    its last value. For output that lags what a test saw (a file written
    after the 250, a line read by another thread): wait for what is about
    to be checked, then check it as strictly as before."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


class SMTPClient:
    """The one raw SMTP client of the tests: a socket that sends exact bytes
    and reads replies, so a test can write anything (floods, dripped bytes,
    injected commands) and see every reply line.

    replies="lines": reply() gives (code, [texts after the code]), and
    raises EOFError when the server closes. replies="bytes": reply() gives
    (code, the whole reply, each line ending in LF), or (None, what came)
    when the server closed or reset the connection. greet reads the banner
    into .banner on connect; tls_context makes it implicit TLS."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, tls_context=None, greet=True,
                 replies="lines", server_hostname="mx.test"):
        if replies not in ("lines", "bytes"):
            raise ValueError("replies must be 'lines' or 'bytes', not %r" % replies)
        self.replies = replies
        self.server_hostname = server_hostname
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if tls_context is not None:
            self.sock = tls_context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.banner = self.reply() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        """Send one command line (CRLF added) and read its reply."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def readline(self):
        """One reply line without its line end (lines mode: LF ends a line)."""
        while b"\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                raise EOFError("connection closed; have %r" % self.buf)
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        return self._reply_lines() if self.replies == "lines" else self._reply_bytes()

    def _reply_lines(self):
        lines = []
        while True:
            line = self.readline()
            if len(line) < 4 or not line[:3].isdigit():
                raise ValueError("not a reply line: %r" % line)
            lines.append(line[4:])
            if line[3] == " ":
                return int(line[:3]), lines

    def _reply_bytes(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return None, b"".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line + b"\n")
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    def closed(self, timeout=5.0):
        """True when the server closes (or resets) the connection within
        timeout; what it sends meanwhile is kept in .buf."""
        self.sock.settimeout(timeout)
        try:
            while True:
                b = self.sock.recv(65536)
                if not b:
                    return True
                self.buf += b
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def closed_by_peer(self, timeout=10.0):
        return self.closed(timeout)

    def starttls(self, ctx):
        code = self.cmd("STARTTLS")[0]
        if code != 220:
            raise RuntimeError("STARTTLS refused: %r" % code)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.server_hostname)

    def reset(self):
        """Close with RST instead of FIN (SO_LINGER with a zero timeout)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Listener:
    """A TCP listener on a loopback address, served by one thread.

    The thread accepts with a short timeout (so that stop() is prompt) and
    hands each connection in turn to handle(conn), which subclasses write;
    an OSError from handle() (the client went away) ends that connection
    only. The connection is closed when handle() returns, unless handle()
    called hold(conn): held connections stay open until stop(). Use it as
    a context manager (start on enter, stop and join on exit).

    .port is the bound port (a free one when port is 0), .connections the
    number accepted so far.
    """

    #: How long stop() waits for the thread (a handler may be mid-read).
    join_timeout = 10.0

    def __init__(self, host="127.0.0.1", port=0, backlog=8, reuse_addr=False):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if reuse_addr:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.conns = []  # held connections, closed by stop()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)

    def handle(self, conn):
        raise NotImplementedError

    def hold(self, conn):
        """Keep conn open after handle() returns, until stop()."""
        self.conns.append(conn)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            try:
                self.handle(conn)
            except OSError:
                pass
            finally:
                if not any(c is conn for c in self.conns):
                    conn.close()

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(self.join_timeout)
        for c in self.conns:
            c.close()
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class TempDir:
    """A temporary directory removed at exit unless SK_KEEP_TMP is set."""

    def __init__(self, prefix="sktest-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        if not os.environ.get("SK_KEEP_TMP"):
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


class Proc:
    """A child process in its own process group, stopped by PID."""

    def __init__(self, argv, stdout=None, stderr=None, env=None, stdin=None, cwd=None):
        self.argv = [str(a) for a in argv]
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.p = subprocess.Popen(
            self.argv,
            stdout=stdout,
            stderr=stderr,
            stdin=stdin,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.p.pid

    def poll(self):
        return self.p.poll()

    @property
    def returncode(self):
        return self.p.returncode

    def send_signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=10.0):
        return self.p.wait(timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send sig to the process; SIGKILL its group if it does not exit in time."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.p.returncode

    def kill(self):
        """SIGKILL the process (and its process group, which only it created)."""
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)


@contextlib.contextmanager
def started(argv, port=None, host="127.0.0.1", timeout=10.0, **kw):
    """Start argv, wait for port if given, and stop it on exit."""
    proc = Proc(argv, **kw)
    try:
        if port is not None:
            wait_port(port, host=host, timeout=timeout, proc=proc)
        yield proc
    finally:
        proc.stop()


def run(argv, timeout=60, input=None, env=None, check_rc=None):
    """Run a command to completion; returns CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    r = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=full_env,
    )
    if check_rc is not None and r.returncode != check_rc:
        fail(
            "%s exited %d, expected %d\nstdout: %s\nstderr: %s"
            % (" ".join(map(str, argv)), r.returncode, check_rc, r.stdout, r.stderr)
        )
    return r


def smtpkit(*args, **kw):
    """Run the built smtpkit binary."""
    return run([SMTPKIT] + list(args), **kw)


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


class TestCA:
    """A throw-away CA and certificates made with the openssl command.

    ca.cert is the CA certificate (PEM); issue() makes a server certificate
    signed by it; self_signed() makes one that no CA vouches for.
    """

    def __init__(self, directory, name="SMTPKit Test CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.key = os.path.join(directory, "ca.key")
        self.cert = os.path.join(directory, "ca.pem")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "30",
                 "-subj", "/CN=" + name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
        self._serial = 1

    def issue(self, name, sans=None, days=30, expired=False):
        """Issue a certificate for name (and sans: DNS names or IPs).

        Returns (cert_path, key_path). expired=True makes one whose validity
        ended yesterday.
        """
        sans = sans or [name]
        base = os.path.join(self.dir, "%s-%d" % (name.replace("*", "star"), self._serial))
        self._serial += 1
        key, csr, cert, ext = base + ".key", base + ".csr", base + ".pem", base + ".ext"
        alt = ",".join(("IP:" if _is_ip(s) else "DNS:") + s for s in sans)
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % alt)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=" + name, cwd=self.dir)
        args = ["x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-set_serial", str(1000 + self._serial), "-out", cert, "-extfile", ext]
        if expired:
            return self._issue_expired(name, sans, key, csr, cert, ext)
        args += ["-days", str(days)]
        _openssl(*args, cwd=self.dir)
        return cert, key

    def _issue_expired(self, name, sans, key, csr, cert, ext):
        # `openssl ca` takes explicit validity dates; give it a window that
        # ended long ago.
        cadir = os.path.join(self.dir, "ca-db")
        os.makedirs(cadir, exist_ok=True)
        index = os.path.join(cadir, "index.txt")
        open(index, "a").close()
        serial = os.path.join(cadir, "serial")
        with open(serial, "w") as f:
            f.write("%04X\n" % (5000 + self._serial))
        conf = os.path.join(cadir, "ca.cnf")
        with open(conf, "w") as f:
            f.write(
                "[ca]\ndefault_ca=test\n[test]\ndatabase=%s\nserial=%s\nnew_certs_dir=%s\n"
                "default_md=sha256\npolicy=any\nunique_subject=no\ncopy_extensions=none\n"
                "[any]\ncommonName=supplied\n" % (index, serial, cadir)
            )
        _openssl("ca", "-batch", "-config", conf, "-cert", self.cert, "-keyfile", self.key,
                 "-in", csr, "-out", cert, "-startdate", "20200101000000Z",
                 "-enddate", "20200102000000Z", "-extfile", ext, "-notext", cwd=self.dir)
        return cert, key

    @staticmethod
    def self_signed(directory, name, sans=None):
        """A self-signed certificate for name; returns (cert_path, key_path)."""
        sans = sans or [name]
        os.makedirs(directory, exist_ok=True)
        key = os.path.join(directory, name + "-self.key")
        cert = os.path.join(directory, name + "-self.pem")
        alt = ",".join(("IP:" if _is_ip(s) else "DNS:") + s for s in sans)
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=" + name,
                 "-addext", "subjectAltName=" + alt, cwd=directory)
        return cert, key


def _is_ip(s):
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, s)
            return True
        except OSError:
            pass
    return False


def maildir_messages(data_dir, domain, local):
    """Paths of the messages in DATA-DIR/mailboxes/DOMAIN/LOCAL/new, sorted."""
    d = os.path.join(data_dir, "mailboxes", domain, local, "new")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, f) for f in os.listdir(d))


def strip_trace_headers(data):
    """Remove the Return-Path and Received headers a server added at the top."""
    lines = data.split(b"\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lower().startswith(b"return-path:") or line.lower().startswith(b"received:"):
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        break
    return b"\n".join(lines[i:])
