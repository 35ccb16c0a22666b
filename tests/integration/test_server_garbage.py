#!/usr/bin/python3
"""Robustness: seeded random mixes of valid commands, broken ones, odd line
ends, BDAT/DATA fragments and binary noise, sent in random pieces over many
sessions; the server must keep answering and exit cleanly (run it under
`make asan` to catch memory errors)."""

import os
import random
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402

PIECES = [b"EHLO x.example\r\n", b"HELO x\r\n", b"MAIL FROM:<a@b.example>\r\n",
          b"MAIL FROM:<> SIZE=10 BODY=8BITMIME SMTPUTF8\r\n", b"RCPT TO:<bob@example.org>\r\n",
          b"RCPT TO:<postmaster> NOTIFY=NEVER\r\n", b"DATA\r\n", b"BDAT 5\r\n", b"BDAT 3 LAST\r\n",
          b"BDAT x\r\n", b"RSET\r\n", b"NOOP\r\n", b"VRFY a\r\n", b"AUTH PLAIN AGEAYg==\r\n",
          b"AUTH LOGIN\r\n", b"*\r\n", b"STARTTLS\r\n", b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\r",
          b"\n", b"..\r\n", b"\x00\xff\xfe", b"A" * 1200, b"MAIL FROM:<" + b"x" * 300 + b"@y>\r\n",
          b"QUIT\r\n", b"GET / HTTP/1.0\r\n", b"RCPT TO:<\"q\\\"x\"@b>\r\n", b"hello body\r\n"]


def session(port, rnd):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = b"".join(rnd.choice(PIECES) for _ in range(rnd.randint(1, 40)))
    try:
        while data:
            n = rnd.randint(1, 200)
            s.sendall(data[:n])
            data = data[n:]
        s.settimeout(0.05)
        while s.recv(65536):
            pass
    except (OSError, socket.timeout):
        pass
    s.close()


def main():
    rnd = random.Random(20261123)
    with sh.PrintServer(["--max-idle", "1000", "--user", "u:p", "--auth-loopback"], verbose=False) as srv:
        for _ in range(150):
            session(srv.port, rnd)
        sktest.check(srv.proc.poll() is None, "server died")
        c = sh.Client(srv.port)
        sh.expect(c.cmd("EHLO client.example"), 250, None, "still serving")
        c.close()
    print("ok")


if __name__ == "__main__":
    main()
