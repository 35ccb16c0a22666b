"""Peers for the `smtpkit probe` tests, all on 127.0.0.1 and free ports:
an aiosmtpd server (plain, STARTTLS or implicit TLS, optional AUTH, a
recipient that does not exist), a listener that never speaks, a small web
server, and a runner for the probe that collects failures.

Servers run in threads of the test process and are stopped by the `with`
block that started them; every probe run is bounded by a timeout.
"""

import http.server
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

from aiosmtpd_peer import Peer  # noqa: E402

HOST = "127.0.0.1"
UNKNOWN = "nobody@example.org"
USER, PASSWORD = "alice", "correct horse battery staple"


def Smtpd(tls=None, cert=None, auth=False):
    """aiosmtpd (aiosmtpd_peer.Peer) on a free port, greeting as
    mx.probe.test: every recipient but UNKNOWN accepted, DATA refused (the
    probe must never send a message; peer.handler.got_data tells), AUTH
    PLAIN/LOGIN for USER when auth. tls: None, "starttls" or "implicit";
    cert: (cert_path, key_path) when tls is set."""
    return Peer(host=HOST, name="mx.probe.test", tls=tls, cert=cert,
                users={USER: PASSWORD} if auth else None,
                rcpt_replies={UNKNOWN: "550 5.1.1 <%s>: Recipient address rejected: User unknown"
                              % UNKNOWN},
                data_reply="554 5.5.0 the probe must not send DATA")


class Silent(sktest.Listener):
    """Accepts connections and never says anything."""

    def __init__(self):
        super().__init__(HOST)

    def handle(self, conn):
        self.hold(conn)


class Scripted(sktest.Listener):
    """A line-based SMTP peer that answers from a script: the greeting, then
    for each command verb the reply (lines joined by CRLF); a verb not in
    the script gets 502. Closes after QUIT, or after the greeting when
    close_after_greeting is set."""

    join_timeout = 15.0

    def __init__(self, greeting, replies=None, close_after_greeting=False):
        super().__init__(HOST)
        self.greeting = greeting
        self.replies = dict(replies or {})
        self.close_after_greeting = close_after_greeting
        self.commands = []

    def handle(self, conn):
        conn.settimeout(10)
        conn.sendall(self.greeting.encode() + b"\r\n")
        if self.close_after_greeting:
            return
        f = conn.makefile("rb")
        while not self.stopping.is_set():
            line = f.readline(1024)
            if not line:
                return
            verb = line.split(b" ")[0].strip().upper().decode("ascii", "replace")
            self.commands.append(verb)
            if verb == "QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            reply = self.replies.get(verb, "502 5.5.1 Command not implemented")
            conn.sendall(reply.replace("\n", "\r\n").encode() + b"\r\n")


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Web:
    """A small HTTP server (http.server) on a free port."""

    def __init__(self):
        self.server = http.server.ThreadingHTTPServer((HOST, 0), _QuietHandler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class Cases:
    """Runs probes and records every failed expectation, so one run of a
    test reports all that is wrong."""

    def __init__(self):
        self.failures = []

    def probe(self, *args, env=None, timeout=60):
        r = sktest.smtpkit("probe", *args, env=env, timeout=timeout)
        return r

    def expect(self, name, cond, r=None, what=""):
        if cond:
            return
        msg = "%s: %s" % (name, what)
        if r is not None:
            msg += "\n  exit %d\n  stdout:\n%s\n  stderr:\n%s" % (r.returncode, r.stdout, r.stderr)
        self.failures.append(msg)

    def json(self, name, r):
        try:
            return json.loads(r.stdout)
        except ValueError as e:
            self.expect(name, False, r, "stdout is not JSON (%s)" % e)
            return None

    def step(self, name, doc, step, status=None):
        """The last step named step in a JSON result (checking its status)."""
        found = [s for s in (doc or {}).get("steps", []) if s.get("step") == step]
        if not found:
            self.failures.append("%s: no step %r in %s" % (name, step, json.dumps(doc)))
            return {}
        s = found[-1]
        if status is not None and s.get("status") != status:
            self.failures.append("%s: step %s is %r, expected %r: %s"
                                 % (name, step, s.get("status"), status, json.dumps(s)))
        return s

    def finish(self):
        if self.failures:
            for f in self.failures:
                print("FAIL:", f, file=sys.stderr)
            sys.exit(1)
        print("ok")
