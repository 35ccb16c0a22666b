#!/usr/bin/python3
"""`smtpkit send` for a person at a terminal: short waits in front of a port
where nothing speaks first, and what is there said in the hint (a silent
port, an implicit-TLS port used with --tls starttls, a web server); a
server that pauses its greeting on purpose still gets the message; the
empty-body warning and --quiet; a message over the server's SIZE in MB;
the progress line on a terminal only."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from probe_peers import Web  # noqa: E402
from send_peer import (GreetPause, RawPeer, Runner, Smtpd, TlsSilent, expect,  # noqa: E402
                       expect_exit, json_out, run_on_tty, send)

tmp = sktest.TempDir("sk-send-inter-")
run = Runner()
TEXT = tmp.join("body.txt")
with open(TEXT, "w") as f:
    f.write("hello\n")
ca = sktest.TestCA(tmp.join("ca"))
CERT = ca.issue("localhost", sans=["localhost", "127.0.0.1"])

# The greeting wait send uses by default (SEND_GREETING_TIMEOUT_MS), and
# how long an answer that needs no waiting may take on a loaded machine:
# the old behaviour waited 5 minutes.
GREETING_S = 15
PROMPT_S = 8


def args(port, *extra, body=True):
    a = ["--server", "127.0.0.1:%d" % port, "--from", "a@example.org", "--to", "b@example.net",
         "--subject", "interactive"]
    if body:
        a += ["--text", TEXT]
    return a + list(extra)


def timed_send(*a, timeout=90):
    t0 = time.monotonic()
    r = send(*a, timeout=timeout)
    return r, time.monotonic() - t0


@run.case
def silent_port_times_out_in_seconds():
    # Accepts and never says anything, not even to the TLS or HTTP hellos.
    with RawPeer("silent") as p:
        r, took = timed_send(*args(p.port, "--tls", "none"))
        expect_exit(r, 75)
        expect(took < GREETING_S + 10, "gave up after the interactive greeting wait (%.1fs)"
               % took, r)
        expect("step:   greeting" in r.stderr and "timed out" in r.stderr, "greeting timeout", r)
        expect("said nothing, not even to a TLS or an HTTP hello" in r.stderr,
               "hint says the port never spoke", r)
        # The two identification connections were made.
        expect(p.connections == 3, "%d connections, expected 3" % p.connections, r)


@run.case
def silent_port_with_short_timeout_json():
    with RawPeer("silent") as p:
        r, took = timed_send(*args(p.port, "--tls", "none", "--timeout", "2s", "--json"))
        expect_exit(r, 75)
        j = json_out(r)["error"]
        expect(j["step"] == "greeting" and j["reason"] == "timed out", "error %r" % j, r)
        expect("not even to a TLS or an HTTP hello" in (j["hint"] or ""), "hint %r" % j, r)
        expect(took < 12, "--timeout 2s is the greeting wait (%.1fs)" % took, r)


@run.case
def implicit_tls_port_with_starttls():
    with Smtpd(tls="implicit", cert=CERT) as s:
        r, took = timed_send(*args(s.port, "--tls", "starttls", "--ca-file", ca.cert))
        expect_exit(r, 76)
        expect("hint:   this port speaks TLS first: use --tls implicit" in r.stderr,
               "hint names --tls implicit", r)
        expect(took < PROMPT_S, "answered at once (%.1fs)" % took, r)
        r = send(*args(s.port, "--tls", "starttls", "--json"))
        j = json_out(r)["error"]
        expect(j["step"] == "greeting" and j["reason"] == "protocol error", "error %r" % j, r)
        expect(j["hint"] == "this port speaks TLS first: use --tls implicit", "hint %r" % j, r)
        # The advice works.
        r = send(*args(s.port, "--tls", "implicit", "--ca-file", ca.cert))
        expect_exit(r, 0)
        expect(len(s.messages) == 1, "sent with --tls implicit", r)


@run.case
def implicit_tls_port_of_smtpkit_serve():
    # The same against the daemon's own implicit-TLS listener.
    port = sktest.free_port()
    data = tmp.join("serve-data")
    argv = [sktest.SMTPKIT, "serve", "--listen", "127.0.0.1:%d" % sktest.free_port(),
            "--smtps", "127.0.0.1:%d" % port, "--tls-cert", CERT[0], "--tls-key", CERT[1],
            "--data-dir", data, "--hold"]
    with open(tmp.join("serve.log"), "w") as log, \
            sktest.started(argv, port=port, stderr=log):
        r, took = timed_send(*args(port, "--tls", "starttls"))
        expect_exit(r, 76)
        expect("use --tls implicit" in r.stderr, "hint names --tls implicit", r)
        expect(took < PROMPT_S, "answered at once (%.1fs)" % took, r)


@run.case
def implicit_tls_without_a_greeting():
    # TLS comes up, then nothing (an HTTPS port): --tls implicit was right,
    # the port is not.
    with TlsSilent(CERT) as p:
        r = send(*args(p.port, "--tls", "implicit", "--ca-file", ca.cert, "--timeout", "2s"))
        expect_exit(r, 75)
        expect("step:   greeting" in r.stderr and
               "hint:   TLS works, but no SMTP greeting came inside it" in r.stderr,
               "hint says TLS works but no greeting", r)


@run.case
def web_server():
    with Web() as w:
        r, took = timed_send(*args(w.port))
        expect_exit(r, 76)
        expect("hint:   this looks like an HTTP server" in r.stderr, "hint says HTTP", r)
        expect("HTTP/1.0" in r.stderr, "quotes the status line", r)
        expect(took < PROMPT_S, "answered at once (%.1fs)" % took, r)
        # With implicit TLS the handshake meets the web server's error page.
        r, took = timed_send(*args(w.port, "--tls", "implicit"))
        expect_exit(r, 76)
        expect("this looks like an HTTP server" in r.stderr, "hint says HTTP", r)
        expect(took < PROMPT_S, "answered at once (%.1fs)" % took, r)


@run.case
def greeting_paused_on_purpose_is_waited_for():
    # sendmail's greet_pause: early talkers (the identification) get 554,
    # the polite connection its greeting after 3 s: still SMTP.
    for reject in (True, False):
        with GreetPause(3, reject_early=reject) as g:
            r, took = timed_send(*args(g.port, "--tls", "none"))
            expect_exit(r, 0)
            expect(len(g.messages) == 1, "the message arrived (reject_early=%s)" % reject, r)
            expect(g.early_talkers >= 1, "identification ran (%d early talkers)"
                   % g.early_talkers, r)


@run.case
def empty_body_warns_and_sends():
    with Smtpd() as s:
        r = send(*args(s.port, "--tls", "none", body=False))
        expect_exit(r, 0)
        expect("warning: the message has no body text" in r.stderr, "warning", r)
        expect(len(s.messages) == 1, "sent anyway", r)
        expect(r.stdout.startswith("sent to 1 of 1 recipient"), "sent line", r)
        # --quiet: neither the warning nor the "sent to" line.
        r = send(*args(s.port, "--tls", "none", "--quiet", body=False))
        expect_exit(r, 0)
        expect(r.stderr == "" and r.stdout == "", "nothing printed", r)
        expect(len(s.messages) == 2, "sent", r)
        # A body, an attachment or a prepared message: no warning.
        r = send(*args(s.port, "--tls", "none", "--attach", TEXT, body=False))
        expect("warning" not in r.stderr, "no warning with --attach", r)


@run.case
def quiet_still_prints_errors():
    port = sktest.free_port()
    r = send(*args(port, "--tls", "none", "--quiet"))
    expect_exit(r, 75)
    expect("could not get ready to send" in r.stderr and "hint:" in r.stderr,
           "the error block is printed", r)


@run.case
def message_over_the_size_limit():
    big = tmp.join("big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(1500000))
    with Smtpd(size_limit=1000000) as s:
        r = send(*args(s.port, "--tls", "none", "--attach", big))
        expect_exit(r, 65)
        expect("message is 2.1 MB, the server accepts at most 1 MB" in r.stderr,
               "sizes in MB", r)
        expect("hint:   the server takes no message this large" in r.stderr and
               "base64" in r.stderr, "hint", r)
        expect(s.messages == [], "nothing sent", r)
        j = json_out(send(*args(s.port, "--tls", "none", "--attach", big, "--json")))
        expect(j["exit_code"] == 65 and j["error"]["step"] == "MAIL" and
               "accepts at most 1 MB" in j["error"]["text"], "JSON %r" % j["error"])


@run.case
def progress_line_on_a_terminal_only():
    att = tmp.join("att.bin")
    with open(att, "wb") as f:
        f.write(os.urandom(1000000))  # 1.35 MB in base64
    with Smtpd() as s:
        base = [sktest.SMTPKIT, "send"] + args(s.port, "--tls", "none", "--attach", att)
        rc, out, tty = run_on_tty(base)
        expect(rc == 0, "exit %d: %s %s" % (rc, out, tty))
        expect("sending: " in tty and "of 1.4 MB (100%)" in tty, "progress line: %r" % tty)
        last = tty.rstrip("\r\n").split("\r")[-1]
        expect(last.startswith("sending: 1.4 MB of 1.4 MB (100%), ") and
               last.endswith("B/s\x1b[K"), "the last state, with the rate: %r" % tty)
        expect(out.startswith("sent to 1 of 1"), "sent line on stdout: %r" % out)
        # Never with --json, --verbose or --quiet.
        for flag in ("--json", "--verbose", "--quiet"):
            rc, out, tty = run_on_tty(base + [flag])
            expect(rc == 0 and "sending: " not in tty, "%s: no progress: %r" % (flag, tty))
        # Nor when stderr is not a terminal.
        r = send(*args(s.port, "--tls", "none", "--attach", att))
        expect_exit(r, 0)
        expect("sending" not in r.stderr, "no progress on a pipe", r)
        # Nor for a small message.
        rc, out, tty = run_on_tty([sktest.SMTPKIT, "send"] + args(s.port, "--tls", "none"))
        expect(rc == 0 and "sending: " not in tty, "small message: no progress: %r" % tty)
        expect(len(s.messages) == 6, "%d messages" % len(s.messages))


try:
    run.finish()
finally:
    tmp.cleanup()
