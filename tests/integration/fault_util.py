"""Helpers for the failure-suite tests (test_fault_*.py): a line-level SMTP
client on raw sockets (so that a test can write floods, drip bytes or reset
the connection), and process facts read from /proc."""

import base64
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

HOST = "127.0.0.1"


def Raw(port, timeout=10.0, host=HOST):
    """One SMTP connection on a plain socket (sktest.SMTPClient): no banner
    read on connect, replies read whole as bytes, (None, what came) when the
    server closed or reset the connection."""
    return sktest.SMTPClient(port, host=host, timeout=timeout, greet=False, replies="bytes")


def auth_plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0" +
                                            password.encode()).decode()


def children(pid):
    """PIDs of pid's child processes."""
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def status(pid, key):
    """A field of /proc/PID/status, e.g. "Uid" -> its first number."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1]
    return None


def rss_kb(pid):
    return int(status(pid, "VmRSS"))


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False


def memory_contains(pid, needle):
    """Does any readable memory mapping of pid hold needle? None when the
    memory cannot be read at all (no permission)."""
    try:
        maps = open("/proc/%d/maps" % pid).read().splitlines()
        mem = open("/proc/%d/mem" % pid, "rb", 0)
    except OSError:
        return None
    read_any = False
    step = 4 << 20
    with mem:
        for line in maps:
            parts = line.split()
            if "r" not in parts[1] or (len(parts) > 5 and parts[5].startswith("[v")):
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            # Sanitizer shadow memory reserves terabytes that hold no data.
            if end - start > (1 << 30):
                continue
            # Read in pieces that overlap by the needle's length.
            for at in range(start, end, step):
                try:
                    mem.seek(at)
                    data = mem.read(min(step + len(needle), end - at))
                except (OSError, ValueError, OverflowError):
                    break
                read_any = True
                if needle in data:
                    return True
    return False if read_any else None


def wait_gone(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def settled(server, timeout=10.0):
    """Wait until every session the server logged has ended (e.g. the
    probe connection made while waiting for its port)."""
    def done():
        log = server.log()
        # The probe's connection may not be logged yet when the port opens:
        # wait for the daemon to be started and at least one connection seen.
        if " daemon started " not in log or " server connect " not in log:
            return False
        return log.count(" server disconnect ") >= log.count(" server connect ")
    sktest.wait_for(done, timeout=timeout, what="sessions ended\n" + server.log()[-2000:])


def log_wait(server, text, timeout=10.0):
    return sktest.wait_for(lambda: text in server.log(), timeout=timeout,
                           what="%r in the log\n%s" % (text, server.log()[-3000:]))
