#!/usr/bin/python3
"""Signals that arrive while `smtpkit serve` is still starting: its port
already answers, but it is still recovering a spool of many messages.
SIGTERM then still means "stop cleanly, exit 0" and SIGHUP "reload" (the
daemon keeps running), as docs/serve.md says; no message is lost. So does
a SIGTERM sent again and again until the process has gone."""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

N = 1500  # held messages, so that recovery takes a while after the bind
TRIES = 3

tmp = sktest.TempDir("sk-early-signal-")
try:
    data = tmp.join("data")
    port = sktest.free_port()
    argv = [sktest.SMTPKIT, "serve", "--hold", "--data-dir", data]
    with sktest.started(argv + ["--listen", "127.0.0.1:%d" % port], port=port,
                        stderr=subprocess.DEVNULL):
        sktest.run(["/usr/sbin/smtp-source", "-s", "20", "-m", str(N), "-l", "300",
                    "-f", "a@example.org", "-t", "b@localhost", "127.0.0.1:%d" % port],
                   timeout=120, check_rc=0)

    def start(i):
        p = sktest.free_port()
        log = tmp.join("serve-%d.log" % i)
        proc = sktest.Proc(argv + ["--listen", "127.0.0.1:%d" % p], stderr=open(log, "w"))
        sktest.wait_port(p, proc=proc, timeout=30)
        return proc, log

    def log_of(path):
        with open(path, errors="replace") as f:
            return f.read()[-3000:]

    for i in range(TRIES):
        proc, log = start(i)
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.stop(signal.SIGTERM, timeout=30)
        sktest.check(rc == 0, "SIGTERM during start-up: exit 0, got %r\n%s" % (rc, log_of(log)))

    # SIGTERM again and again until the process is gone: one that comes
    # while the daemon is being freed, its handlers gone, still ends in
    # exit 0, not death by the signal.
    for i in range(TRIES):
        proc, log = start(TRIES + 1 + i)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            os.kill(proc.pid, signal.SIGTERM)
            time.sleep(0.001)
        rc = proc.stop(signal.SIGTERM, timeout=30)
        sktest.check(rc == 0, "SIGTERM repeated while stopping: exit 0, got %r\n%s"
                     % (rc, log_of(log)))

    proc, log = start(TRIES)
    os.kill(proc.pid, signal.SIGHUP)
    sktest.wait_for(lambda: "daemon started" in log_of(log), timeout=30,
                    what="start after an early SIGHUP\n" + log_of(log))
    sktest.check(proc.poll() is None, "SIGHUP during start-up: still running\n" + log_of(log))
    rc = proc.stop(signal.SIGTERM, timeout=30)
    sktest.check(rc == 0, "then SIGTERM: exit 0, got %r\n%s" % (rc, log_of(log)))

    r = sktest.smtpkit("queue", "--data-dir", data, "list", "--json", timeout=60)
    sktest.check(r.returncode == 0 and r.stdout.count('"id"') == N,
                 "all %d messages still held (%d)" % (N, r.stdout.count('"id"')))
    print("ok: %d early SIGTERMs, %d repeated, and one SIGHUP with %d messages to recover"
          % (TRIES, TRIES, N))
finally:
    tmp.cleanup()
