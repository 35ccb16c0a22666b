#!/usr/bin/python3
"""`smtpkit serve --log syslog`: when the syslog socket (/dev/log) is missing
or nobody listens on it, a warning on stderr says so and the log lines go to
stderr instead of nowhere; when it is reachable, the lines go there (also as
JSON) and stderr stays quiet.

/dev/log is the host's, so the test runs itself again in a private mount
namespace (`unshare --mount`; as an unprivileged user with a user namespace
too) with a tmpfs over /dev, where it can take /dev/log away or put its own
socket there. Where no namespace can be made it exits 77 (skipped)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

HOST = "127.0.0.1"
INSIDE = "SK_TEST_SYSLOG_NAMESPACE"
WARNING = ("smtpkit serve: warning: cannot reach the syslog socket /dev/log (%s); "
           "logging to stderr instead\n")


def reexec_in_namespace():
    if os.geteuid() == 0:
        unshare = ["unshare", "--mount", "--propagation", "private"]
    else:
        unshare = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]
    try:
        probe = subprocess.run(unshare + ["true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        print("skipped: unshare: %s" % e)
        sys.exit(sktest.SKIP)
    if probe.returncode != 0:
        print("skipped: no mount namespace here: %s" % probe.stderr.decode(errors="replace"))
        sys.exit(sktest.SKIP)
    # Where the namespace keeps the host's /dev while a tmpfs covers it: out
    # of the test's temporary directory, which is removed with rmtree (never
    # while /dev is mounted on it), and removed here with rmdir once the
    # namespace, and the mount with it, is gone.
    saved = tempfile.mkdtemp(prefix="sk-serve-syslog-dev-")
    env = dict(os.environ, **{INSIDE: saved})
    try:
        r = subprocess.run(unshare + [sktest.PYTHON, os.path.abspath(__file__)], env=env,
                           timeout=240)
    finally:
        os.rmdir(saved)
    sys.exit(r.returncode)


def mount(*args):
    subprocess.run(["mount"] + list(args), check=True, capture_output=True, timeout=30)


def private_dev(saved):
    """A tmpfs over /dev (in this namespace only) with the device nodes the
    programs here use, and no /dev/log."""
    # --rbind: a user namespace may not bind /dev without its submounts.
    mount("--rbind", "/dev", saved)
    mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", "/dev")
    for node in ("null", "zero", "random", "urandom"):
        open("/dev/" + node, "w").close()
        mount("--bind", os.path.join(saved, node), "/dev/" + node)


def serve(tmp, name, *args):
    """serve until it answers SMTP, then SIGTERM; returns (stdout+stderr
    lines before the first log line, everything on stderr)."""
    port = sktest.free_port(HOST)
    log_path = tmp.join(name + ".log")
    argv = [sktest.SMTPKIT, "serve", "--data-dir", tmp.join(name + "-data"),
            "--listen", "%s:%d" % (HOST, port), "--log", "syslog"] + list(args)
    with open(log_path, "wb") as log:
        proc = sktest.Proc(argv, stdout=subprocess.DEVNULL, stderr=log)
        try:
            sktest.wait_port(port, HOST, timeout=15, proc=proc)
            with socket.create_connection((HOST, port), timeout=30) as c:
                sktest.check(c.recv(512).startswith(b"220 "), name + ": no greeting")
                c.sendall(b"QUIT\r\n")
                c.recv(512)
            rc = proc.stop(signal.SIGTERM, timeout=20)
            sktest.check(rc == 0, "%s: exit %s" % (name, rc))
        finally:
            proc.stop(signal.SIGKILL)
    with open(log_path, encoding="utf-8") as f:
        return f.read()


def main():
    tmp = sktest.TempDir("sk-serve-syslog-")
    try:
        private_dev(os.environ[INSIDE])
    except subprocess.CalledProcessError as e:
        print("skipped: cannot mount in the namespace: %s %s"
              % (" ".join(e.cmd), e.stderr.decode(errors="replace")))
        sys.exit(sktest.SKIP)

    # No /dev/log at all.
    err = serve(tmp, "absent")
    sktest.check(err.startswith(WARNING % "No such file or directory"), "absent:\n" + err)
    sktest.check(" daemon started " in err and " daemon stopped\n" in err,
                 "absent: the log lines on stderr:\n" + err)

    # /dev/log is there but no syslog daemon listens on it.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind("/dev/log")
    stale.close()
    err = serve(tmp, "stale", "--log-format", "json")
    sktest.check(err.startswith(WARNING % "Connection refused"), "stale:\n" + err)
    lines = err.splitlines()[1:]
    events = [json.loads(line)["event"] for line in lines]
    sktest.check("started" in events and "stopped" in events, "stale: JSON on stderr:\n" + err)
    os.unlink("/dev/log")

    # A reachable socket: the lines arrive there; nothing on stderr. It is
    # read all the time, as a syslog daemon does: syslog(3) blocks when the
    # socket's queue is full.
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind("/dev/log")
    sink.settimeout(0.1)
    received = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            try:
                received.append(sink.recv(65536).decode("utf-8", errors="replace"))
            except socket.timeout:
                pass

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    for fmt in ("text", "json"):
        err = serve(tmp, "reachable-" + fmt, "--log-format", fmt)
        # The last line, "stopped", was sent before serve exited.
        sktest.wait_for(lambda: any("daemon stopped" in d or '"module":"daemon","event":"stopped"' in d
                                    for d in received), timeout=10,
                        what=fmt + ": the stopped line at the socket")
        got = list(received)
        received.clear()
        sktest.check(err == "", "%s: stderr should be empty:\n%s" % (fmt, err))
        # RFC 3164 as glibc writes it: <PRI>TIMESTAMP smtpkit[PID]: MESSAGE;
        # facility mail (2), so info is <22>.
        msgs = []
        for d in got:
            m = re.match(r"^<(\d+)>.*? smtpkit\[\d+\]: (.*)$", d, re.S)
            sktest.check(m, "%s: a syslog datagram: %r" % (fmt, d))
            msgs.append((int(m.group(1)), m.group(2)))
        started = [(p, t) for p, t in msgs
                   if "- daemon started " in t or '"module":"daemon","event":"started"' in t]
        sktest.check(started, "%s: no started line in %r" % (fmt, got))
        prio, text = started[0]
        sktest.check(prio == 2 * 8 + 6, "%s: mail.info expected: %d" % (fmt, prio))
        if fmt == "json":
            o = json.loads(text)
            sktest.check(o["module"] == "daemon" and o["event"] == "started"
                         and o["level"] == "info", "json: %r" % o)
        else:
            sktest.check(text.startswith("- daemon started "), "text: %r" % text)
    done.set()
    thread.join(timeout=10)
    sink.close()
    tmp.cleanup()
    print("ok")


if __name__ == "__main__":
    if not os.environ.get(INSIDE):
        reexec_in_namespace()
    main()
