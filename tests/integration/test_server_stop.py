#!/usr/bin/python3
"""Graceful stop (SIGTERM through sk_server_stop_on_signal): listeners close,
a session at rest is told 421, a session in a transaction finishes its
message, then the program exits 0."""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    srv = sh.PrintServer()
    try:
        idle = sh.Client(srv.port)
        idle.cmd("EHLO idle.example")
        busy = sh.Client(srv.port)
        busy.cmd("EHLO busy.example")
        sh.expect(busy.cmd("MAIL FROM:<a@example.net>"), 250, "2.1.0", "MAIL")
        srv.proc.send_signal(signal.SIGTERM)
        sh.expect(idle.reply(), 421, "4.3.2", "idle session at stop")
        sktest.check(idle.closed(), "idle session not closed")
        # The listener is gone.
        def refused():
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
                return False
            except OSError:
                return True
        sktest.wait_for(refused, timeout=5, what="listener closed")
        sh.expect(busy.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT while stopping")
        sh.expect(busy.cmd("DATA"), 354, None, "DATA while stopping")
        sh.expect(busy.cmd(b"last message\r\n."), 250, "2.0.0", "message while stopping")
        # After its message, the session is at rest: 421 and close.
        sh.expect(busy.reply(), 421, "4.3.2", "busy session after its message")
        sktest.check(busy.closed(), "busy session not closed")
        rc = srv.proc.wait(10)
        sktest.check(rc == 0, "exit status %s" % rc)
        sktest.check(sh.wait_output(srv, b"STOPPED"), "no STOPPED line: %r" % srv.stdout())
        sktest.check(b"last message" in srv.stdout(), "message lost: %r" % srv.stdout())
    finally:
        srv.stop()
    print("ok")


if __name__ == "__main__":
    main()
