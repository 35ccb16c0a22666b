#!/usr/bin/python3
"""CVE-2011-0411 class: commands pipelined after STARTTLS in clear text must
never be executed inside the TLS session (RFC 3207 4.2)."""

import os
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def main():
    with sktest.TempDir() as tmp:
        cert, key, ctx = sh.tls_setup(tmp)
        with sh.PrintServer(["--tls", cert, key]) as srv:
            # STARTTLS and an injected command in one packet.
            c = sh.Client(srv.port)
            c.cmd("EHLO client.example")
            c.send(b"STARTTLS\r\nRSET\r\n")
            sh.expect(c.reply(), 220, "2.0.0", "STARTTLS")
            sktest.check(c.buf == b"", "reply to the injected command in clear text: %r" % c.buf)
            c.sock = ctx.wrap_socket(c.sock, server_hostname="mx.test")
            # The first reply inside TLS must answer our EHLO, not the
            # injected RSET.
            code, lines = c.cmd("EHLO client.example")
            sktest.check(code == 250 and lines[0] == "mx.test",
                         "first TLS reply is %d %r (injected command answered?)" % (code, lines))
            sh.expect(c.cmd("NOOP"), 250, "2.0.0", "NOOP in TLS")
            c.close()
            sktest.check(sh.log_has(srv, r"starttls-injection peer=127\.0\.0\.1 octets=6"),
                         "injection not logged")

            # Injected bytes that arrive separately, before the handshake,
            # are taken as handshake bytes: the handshake fails, nothing runs.
            c = sh.Client(srv.port)
            c.cmd("EHLO client.example")
            sh.expect(c.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
            c.send(b"MAIL FROM:<evil@example.net>\r\n")
            try:
                tls = ctx.wrap_socket(c.sock, server_hostname="mx.test")
                tls.sendall(b"EHLO client.example\r\n")
                data = tls.recv(4096)
                sktest.check(not data.startswith(b"250 2.1.0"), "injected MAIL executed: %r" % data)
            except (ssl.SSLError, OSError, socket.timeout):
                pass
            c.close()
            sktest.check(b"server mail addr=<evil@example.net>" not in srv.stderr(),
                         "injected MAIL was executed")
    print("ok")


if __name__ == "__main__":
    main()
