#!/usr/bin/python3
"""Slowloris with BDAT: a chunk trickling in a byte at a time (each byte
well inside the idle timeout), or a message sent as many one-octet chunks,
is ended (421 4.4.2, "too-slow") once it has lasted longer than the data
timeout at a rate below SK_SERVER_DATA_MIN_OCTETS_PER_S, as DATA is."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

TIMEOUT_MS = 1000
DRIP_S = 0.2   # well inside the idle timeout
BOUND_S = 6    # not ended by then: the guard is missing


def drip(port, chunks):
    """After MAIL and RCPT, send each (command, chunk, reply_after) of
    chunks: the BDAT command whole (the command guard is not tested here),
    its chunk a byte at a time; return the first non-250 reply code (None
    if there was none) and whether the server closed the connection."""
    c = sh.Client(port)
    c.cmd("EHLO client.example")
    sh.expect(c.cmd("MAIL FROM:<slow@example.org>"), 250, "2.1.0", "MAIL")
    sh.expect(c.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT")
    start = time.monotonic()
    code = None
    try:
        for command, chunk, reply_after in chunks:
            c.send(command)
            for i in range(len(chunk)):
                if time.monotonic() - start > BOUND_S:
                    c.close()
                    return None, False  # still open: not ended while trickling
                c.send(chunk[i:i + 1])
                time.sleep(DRIP_S)
            if reply_after:
                code, _ = c.reply()
                if code != 250:
                    break
                code = None
    except OSError:
        pass  # the server ended it while we were sending: its reply follows
    if code is None:
        try:
            c.sock.settimeout(3)
            code, _ = c.reply()
        except (OSError, EOFError, ValueError):
            pass
    closed = c.closed(timeout=3)
    c.close()
    return code, closed


def main():
    with sh.PrintServer(["--timeout", str(TIMEOUT_MS)]) as srv:
        # One chunk announced large, its octets trickling in.
        code, closed = drip(srv.port, [(b"BDAT 1000 LAST\r\n", b"x" * 100, False)])
        sktest.check(code == 421 and closed, "trickled chunk: code=%r closed=%r" % (code, closed))
        # Many one-octet chunks, each complete and answered.
        code, closed = drip(srv.port, [(b"BDAT 1\r\n", b"x", True)] * 60)
        sktest.check(code == 421 and closed, "one-octet chunks: code=%r closed=%r" % (code, closed))
        sktest.check(sh.log_has(srv, "too-slow"), "too-slow not logged")
        sktest.check(b"END ok=1" not in srv.stdout(), "a trickled message was accepted")
    print("ok")


if __name__ == "__main__":
    main()
