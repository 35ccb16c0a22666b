#!/usr/bin/python3
"""The Swift package (Package.swift, swift/): `swift test` against peers
started here on loopback -- aiosmtpd plain, with STARTTLS and with implicit
TLS (a test CA), with AUTH (PLAIN, LOGIN, XOAUTH2), with a refused recipient,
with a certificate for another name, and one for a session alone;
`smtpkit serve` with STARTTLS and with implicit TLS and AUTH (--users); a
port that accepts and never
speaks; the implicit-TLS peer probed with STARTTLS (a TLS-first port, silent to
a plain client); a server that stops reading in the middle of the message; a closed
port. Their ports go to the Swift tests by environment (SK_SWIFT_*); what
the peers received is checked here afterwards. `swift test` builds with
-warnings-as-errors (Swift 6 mode makes data races errors already). Then
the example program (examples/swift, smtpkit-swift-send) sends a file
to `smtpkit serve` over implicit TLS with AUTH, and what arrived is read
back with Python's email package.

The toolchain is the one CMake found (SK_SWIFT, /opt/swift/usr/bin as a
hint); without one the test is skipped (77), saying so."""

import email
import email.policy
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from aiosmtpd_peer import Peer  # noqa: E402
from serve_peer import Serve, make_users  # noqa: E402

SWIFT = os.environ.get("SK_SWIFT", "")
if not SWIFT or SWIFT.endswith("NOTFOUND") or not os.access(SWIFT, os.X_OK):
    if os.environ.get("SK_REQUIRE_SWIFT") == "1":
        # CI and `make swift-test`: the package must be tested, not skipped.
        print("FAIL: SK_REQUIRE_SWIFT=1 but no Swift toolchain (looked for swift in "
              "/opt/swift/usr/bin and PATH)")
        sys.exit(1)
    print("SKIP: no Swift toolchain (looked for swift in /opt/swift/usr/bin and PATH)")
    sys.exit(77)

if os.environ.get("SK_SANITIZED") == "1":
    print("SKIP: the sanitizer build (make asan) is C-only; SwiftPM builds without sanitizers "
          "(docs/swift.md)")
    sys.exit(77)

SOURCE = os.environ["SK_SOURCE_DIR"]
# The whole `swift build` + `swift test` on 2 busy cores stays well inside it.
SWIFT_TIMEOUT = 900

tmp = sktest.TempDir("sk-swift-")
ca = sktest.TestCA(tmp.join("ca"))
GOOD = ca.issue("localhost", ["localhost", "127.0.0.1"])
WRONG = ca.issue("wrong.example", ["wrong.example"])
USERS = {"zoe": "s3cret pass"}
TOKENS = {"zoe": "ya29.bearer-token-for-the-test"}


class Silent(sktest.Listener):
    """Accepts and never says a word (no greeting)."""

    def handle(self, conn):
        self.hold(conn)


class Stall(sktest.Listener):
    """Answers up to DATA's 354, then stops reading: the client blocks
    sending the message. Records what it got once the client has gone."""

    def __init__(self):
        super().__init__()
        self.received = b""
        self.done = threading.Event()

    def handle(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 stall.test ESMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-stall.test\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                break
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")
        # Read nothing until the client has given up; then drain.
        while not self.stopping.is_set():
            r = conn.recv(1, socket.MSG_PEEK)
            if not r:
                break
            time.sleep(0.05)
            if getattr(self, "drain", False):
                break
        conn.settimeout(10)
        data = b""
        while True:
            try:
                chunk = conn.recv(1 << 16)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        self.received = data
        self.done.set()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


failures = []
plain = Peer(rcpt_replies={"nobody@example.net": "550 5.1.1 no such user here"})
session = Peer()
starttls = Peer(tls="starttls", cert=GOOD, users=USERS, tokens=TOKENS)
implicit = Peer(tls="implicit", cert=GOOD, users=USERS)
wrong = Peer(tls="starttls", cert=WRONG)
serve = Serve(tmp, smtps=1,
              args=["--hostname", "localhost", "--local-domain", "example.test",
                    "--tls-cert", GOOD[0], "--tls-key", GOOD[1],
                    "--users", make_users(tmp, USERS)])
silent = Silent()
stall = Stall()
started = []
try:
    for p in (plain, session, starttls, implicit, wrong, serve, silent, stall):
        p.start()
        started.append(p)
    env = dict(os.environ)
    env.update({
        "SK_SWIFT_PLAIN_PORT": str(plain.port),
        "SK_SWIFT_SESSION_PORT": str(session.port),
        "SK_SWIFT_STARTTLS_PORT": str(starttls.port),
        "SK_SWIFT_IMPLICIT_PORT": str(implicit.port),
        "SK_SWIFT_WRONGNAME_PORT": str(wrong.port),
        "SK_SWIFT_SERVE_PORT": str(serve.port),
        "SK_SWIFT_SERVE_SMTPS_PORT": str(serve.smtps_port),
        "SK_SWIFT_SILENT_PORT": str(silent.port),
        "SK_SWIFT_STALL_PORT": str(stall.port),
        "SK_SWIFT_CLOSED_PORT": str(closed_port()),
        "SK_SWIFT_CA": ca.cert,
        "SK_SWIFT_USER": "zoe",
        "SK_SWIFT_PASSWORD": USERS["zoe"],
        "SK_SWIFT_TOKEN": TOKENS["zoe"],
        "SK_SWIFT_PYTHON": "/usr/bin/python3",
        "SK_SWIFT_TMP": tmp.path,
    })
    t0 = time.monotonic()
    # SK_SWIFT_FILTER (a test name pattern) runs only those, while working
    # on them; the checks below then still expect everything.
    extra = ["--filter", os.environ["SK_SWIFT_FILTER"]] if os.environ.get("SK_SWIFT_FILTER") else []
    # SwiftPM builds in SOURCE/.build (git ignores it): a scratch path
    # inside the package, such as the CMake build directory, breaks its
    # incremental builds (Swift 6.3: "unknown build description").
    # -warnings-as-errors: the package builds without a warning (always
    # with this flag here, so that the incremental build stays valid).
    r = subprocess.run([SWIFT, "test", "--package-path", SOURCE, "-j", "2",
                        "-Xswiftc", "-warnings-as-errors"] + extra, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=SWIFT_TIMEOUT)
    out = r.stdout.decode("utf-8", "replace")
    print(out[-20000:])
    print("swift test: exit %d in %.1f s" % (r.returncode, time.monotonic() - t0))
    sktest.expect(r.returncode == 0, "swift test passes", failures=failures)
    sktest.expect(" skipped" not in out.split("Test Suite 'All tests'")[-1] or
                  "with 0 tests skipped" in out,
                  "no Swift test skipped when the peers are given", failures=failures)

    # What the peers received.
    msgs = plain.messages
    sktest.expect(any("bob@example.net" in m["rcpt_tos"] and
                      "nobody@example.net" not in m["rcpt_tos"] for m in msgs),
                  "plain peer: the message went to the accepted recipient only", msgs,
                  failures=failures)
    sktest.expect(len([m for m in session.messages if b"session message" in m["data"]]) == 2
                  and session.connections == 1,
                  "session peer: two messages over one connection", session.connections,
                  session.messages, failures=failures)
    sktest.expect(any(m["tls"] and m["auth"] for m in starttls.messages),
                  "STARTTLS peer: a message over TLS after AUTH", starttls.messages,
                  failures=failures)
    sktest.expect({u for _, u in starttls.handler.auth_logins} == {"zoe"} and
                  {m for m, _ in starttls.handler.auth_logins} >= {"PLAIN", "LOGIN", "XOAUTH2"},
                  "STARTTLS peer: AUTH PLAIN, LOGIN and XOAUTH2", starttls.handler.auth_logins,
                  failures=failures)
    sktest.expect(any(m["tls"] for m in implicit.messages), "implicit TLS peer: a message",
                  failures=failures)
    sktest.expect(wrong.messages == [], "wrong-name peer: nothing sent", failures=failures)
    def arrived(local, subject, count=1):
        """The Maildir files of serve's local@example.test with subject."""
        try:
            serve.wait_maildir("example.test", local, count=count, timeout=15)
        except Exception:
            pass
        out = []
        for path in serve.maildir("example.test", local):
            with open(path, "rb") as f:
                data = f.read()
            # Maildir files have LF line ends.
            if ("\nSubject: " + subject + "\n").encode() in data:
                out.append(data)
        return out

    sktest.expect(arrived("bob", "from Swift to serve", 2),
                  "smtpkit serve: delivered over STARTTLS", failures=failures)
    sktest.expect(arrived("bob", "insecure asked", 2),
                  "smtpkit serve: delivered with verification: .insecure", failures=failures)
    for mech in ("PLAIN", "LOGIN"):
        got = arrived("dave", "implicit TLS AUTH " + mech, 2)
        sktest.expect(len(got) == 1 and b" with ESMTPSA" in got[0],
                      "smtpkit serve: AUTH %s over implicit TLS delivered (ESMTPSA)" % mech,
                      got[:1], failures=failures)
        sktest.expect('auth mech=%s user="zoe" result=ok' % mech in serve.log(),
                      "smtpkit serve: logged AUTH %s" % mech, failures=failures)
    sktest.expect(USERS["zoe"] not in serve.log(), "smtpkit serve: no password in its log",
                  failures=failures)
    # SMTPError's description is the block `smtpkit send` prints for the
    # same failure (hints that name a setting would differ: these do not).
    def smtpkit_send(port, password, *args):
        env = dict(os.environ, SMTPKIT_PASSWORD=password)
        with open(tmp.join("body.txt"), "w") as f:
            f.write("Hello\n")
        return subprocess.run([sktest.SMTPKIT, "send", "--server", "127.0.0.1:%d" % port,
                               "--helo", "client.test", "--from", "Zoë <zoe@example.org>",
                               "--subject", "compared", "--text", tmp.join("body.txt")] +
                              list(args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)

    for name, r in (
            ("refused", smtpkit_send(plain.port, "", "--tls", "none",
                                     "--to", "nobody@example.net")),
            ("wrong-password", smtpkit_send(starttls.port, "not the password",
                                            "--ca-file", ca.cert, "--user", "zoe",
                                            "--to", "bob@example.net"))):
        try:
            with open(tmp.join(name + ".txt"), encoding="utf-8") as f:
                swift_block = f.read()
        except OSError:
            swift_block = ""
        cli = r.stderr.decode("utf-8", "replace")
        sktest.expect(r.returncode in (69, 77) and cli == swift_block,
                      "%s: SMTPError.description is what smtpkit send prints" % name,
                      "smtpkit send (exit %d):\n%sSMTPError.description:\n%s" %
                      (r.returncode, cli, swift_block), failures=failures)

    # The example program, built by `swift test` above (all products).
    r = subprocess.run([SWIFT, "build", "--package-path", SOURCE, "--show-bin-path"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    bin_path = r.stdout.decode().strip().splitlines()[-1]
    example = os.path.join(bin_path, "smtpkit-swift-send")

    # The Swift examples of README and docs/swift.md type-check against the
    # module just built (they are not run: they name smtp.example.org).
    swiftc = os.path.join(os.path.dirname(os.path.realpath(SWIFT)), "swiftc")
    for doc, heading in (("README.md", "## Sending from Swift"), ("docs/swift.md", "")):
        with open(os.path.join(SOURCE, doc), encoding="utf-8") as f:
            text = f.read().split(heading, 1)[1] if heading else f.read()
        snippet = text.split("```swift\n", 1)[1].split("```", 1)[0]
        path = tmp.join("snippet-%s.swift" % os.path.basename(doc).split(".")[0].lower())
        with open(path, "w", encoding="utf-8") as f:
            f.write('let pw = "not used"\n' + snippet)
        r = subprocess.run([swiftc, "-typecheck", "-swift-version", "6", "-I",
                            os.path.join(bin_path, "Modules"), "-Xcc",
                            "-fmodule-map-file=" + os.path.join(
                                SOURCE, "swift/CSMTPKit/include/module.modulemap"),
                            "-Xcc", "-I" + os.path.join(SOURCE, "include"), path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        sktest.expect(r.returncode == 0, "the Swift example of %s compiles" % doc,
                      r.stdout.decode("utf-8", "replace")[-3000:], failures=failures)
    sktest.expect(os.access(example, os.X_OK), "example program built", example,
                  failures=failures)

    def run_example(*args, password=USERS["zoe"]):
        env = dict(os.environ, SMTPKIT_PASSWORD=password)
        return subprocess.run([example] + list(args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)

    r = run_example("--from", "zoe@example.org")
    sktest.expect(r.returncode == 64 and b"--server is required" in r.stderr,
                  "example: a missing argument named, exit 64", r.returncode, r.stderr,
                  failures=failures)
    r = run_example("--server", "127.0.0.1:1", "--from", "a@example.org", "--to",
                    "b@example.org", "--attach", "/dev/null", "--tls", "bogus")
    sktest.expect(r.returncode == 64 and b"--tls: bogus" in r.stderr,
                  "example: a bad --tls named, exit 64", r.returncode, r.stderr,
                  failures=failures)
    photo = bytes(range(256)) * 40
    attach = tmp.join("photo.jpg")
    with open(attach, "wb") as f:
        f.write(photo)
    common = ["--server", "127.0.0.1:%d" % serve.smtps_port, "--tls", "implicit",
              "--ca-file", ca.cert, "--user", "zoe", "--from", "zoe@example.org",
              "--to", "carol@example.test", "--attach", attach]
    r = run_example(*common, "--subject", "example program")
    sktest.expect(r.returncode == 0 and r.stdout.startswith(b"sent: 250"),
                  "example: sent over implicit TLS with AUTH", r.returncode, r.stdout, r.stderr,
                  failures=failures)
    got = arrived("carol", "example program")
    sktest.expect(len(got) == 1, "example: the message arrived at smtpkit serve",
                  failures=failures)
    if len(got) == 1:
        m = email.message_from_bytes(got[0], policy=email.policy.default)
        parts = [p for p in m.walk() if p.get_content_disposition() == "attachment"]
        sktest.expect(m.get_content_type() == "multipart/mixed" and len(parts) == 1 and
                      parts[0].get_filename() == "photo.jpg" and
                      parts[0].get_content_type() == "image/jpeg" and
                      parts[0].get_payload(decode=True) == photo,
                      "example: the attachment arrived whole, named and typed",
                      [(p.get_filename(), p.get_content_type()) for p in parts],
                      failures=failures)
        body = m.get_body(("plain",))
        sktest.expect(body is not None and body.get_content() == "Attached: photo.jpg\n" and
                      str(m["From"]) == "zoe@example.org" and
                      str(m["To"]) == "carol@example.test" and not m.defects,
                      "example: body and header fields", body and body.get_content(),
                      m.defects, failures=failures)
    r = run_example(*common, "--subject", "example wrong password", password="not-the-password-7")
    sktest.expect(r.returncode == 77 and b"  step:   AUTH\n" in r.stderr and
                  b"  hint:   " in r.stderr and b"not-the-password-7" not in r.stderr,
                  "example: a wrong password is exit 77 with the step and hint",
                  r.returncode, r.stderr, failures=failures)

    stall.drain = True
    stall.done.wait(15)
    sktest.expect(stall.done.is_set() and len(stall.received) > 0 and
                  not stall.received.endswith(b"\r\n.\r\n"),
                  "stalled peer: the cancelled message was cut off, never ended",
                  len(stall.received), stall.received[-20:], failures=failures)
finally:
    for p in reversed(started):
        p.stop()
    tmp.cleanup()

if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print("ok")
