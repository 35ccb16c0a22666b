#!/usr/bin/python3
"""1,000 messages over one connection through the client library
(examples/bulk_send) to Postfix's smtp-sink, with PIPELINING offered, and
a shorter run without it; smtp-sink's own counters must agree."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

SINK = "/usr/sbin/smtp-sink"
BULK = os.path.join(sktest.BUILD_DIR, "example_bulk_send")


def sink_counters(path):
    """smtp-sink -c prints "sess=N quit=N mesg=N" as it goes; the last wins."""
    with open(path, "rb") as f:
        text = f.read().decode("ascii", "replace")
    found = re.findall(r"sess=(\d+) quit=(\d+) mesg=(\d+)", text)
    if not found:
        return None
    return tuple(int(x) for x in found[-1])


def run_once(tmp, count, extra_sink_args):
    port = sktest.free_port()
    out = tmp.join("sink-%d.out" % port)
    argv = [SINK, "-c", "-4"] + extra_sink_args
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
    argv += ["127.0.0.1:%d" % port, "16"]
    with open(out, "wb") as f, sktest.started(argv, port=port, stdout=f,
                                              stderr=subprocess.STDOUT):
        # wait_port's probe was a session too; count from after it.
        probe = sktest.wait_for(lambda: sink_counters(out), timeout=10, what="probe counted")
        r = sktest.run([BULK, "127.0.0.1", str(port), str(count), "300"], timeout=120)
        sktest.check(r.returncode == 0, "bulk_send exited %d: %s %s"
                     % (r.returncode, r.stdout, r.stderr))
        sktest.check(r.stdout.startswith("sent=%d " % count), "bulk_send: %s" % r.stdout)
        # The counters are written when the session's QUIT arrives.
        counters = sktest.wait_for(lambda: (lambda c: c if c and c[1] >= 1 else None)(
            sink_counters(out)), timeout=10, what="smtp-sink's counters")
    sess, quit_, mesg = (counters[i] - probe[i] for i in range(3))
    sktest.check(mesg == count, "smtp-sink counted %d messages, expected %d" % (mesg, count))
    sktest.check(sess == 1 and quit_ == 1, "one session ending in QUIT, got sess=%d quit=%d"
                 % (sess, quit_))
    print("ok: %d messages over one connection (%s)" % (count, r.stdout.strip()))


def main():
    sktest.check(os.access(SINK, os.X_OK), "%s is missing (postfix package)" % SINK)
    sktest.check(os.access(BULK, os.X_OK), "%s is missing (examples/bulk_send.c)" % BULK)
    with sktest.TempDir("sk-sink-") as tmp:
        run_once(tmp, 1000, [])        # PIPELINING offered (smtp-sink's default)
        run_once(tmp, 100, ["-p"])     # not offered: one command at a time


main()
