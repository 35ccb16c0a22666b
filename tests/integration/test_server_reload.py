#!/usr/bin/python3
"""sk_server_reload (SIGHUP in server_print): new sessions get the new
settings and certificate; sessions in flight keep theirs and are not
dropped."""

import os
import signal
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_helper as sh  # noqa: E402
import sktest  # noqa: E402


def pem_der(path):
    return ssl.PEM_cert_to_DER_cert(open(path).read())


def main():
    with sktest.TempDir() as tmp:
        ca = sktest.TestCA(tmp.join("ca"))
        cert1, key1 = ca.issue("mx.test", ["mx.test"])
        cert2, key2 = ca.issue("mx.test", ["mx.test", "mx2.test"])
        ctx = ssl.create_default_context(cafile=ca.cert)
        with sh.PrintServer(["--tls", cert1, key1, "--reload-tls", cert2, key2]) as srv:
            old = sh.Client(srv.port)
            old.cmd("EHLO client.example")
            old.starttls(ctx)
            sktest.check(old.sock.getpeercert(binary_form=True) == pem_der(cert1), "first cert")
            old.cmd("EHLO client.example")
            sh.expect(old.cmd("MAIL FROM:<a@example.net>"), 250, "2.1.0", "MAIL before reload")
            srv.proc.send_signal(signal.SIGHUP)
            sktest.check(sh.wait_output(srv, b"RELOADED"), "no reload")
            new = sh.Client(srv.port)
            sktest.check(new.banner[1][0].startswith("mx2.test"), "new banner %r" % (new.banner,))
            new.cmd("EHLO client.example")
            new.starttls(ctx)
            sktest.check(new.sock.getpeercert(binary_form=True) == pem_der(cert2),
                         "new session has the old certificate")
            # The old session goes on with its settings.
            sh.expect(old.cmd("RCPT TO:<bob@example.org>"), 250, "2.1.5", "RCPT after reload")
            sh.expect(old.cmd("DATA"), 354, None, "DATA after reload")
            sh.expect(old.cmd(b"x\r\n."), 250, "2.0.0", "message after reload")
            code, lines = old.cmd("QUIT")
            sktest.check(code == 221 and "mx.test Bye" in lines[0], "old session %r" % lines)
            new.close()
        # A reload that fails (missing key) changes nothing.
        with sh.PrintServer(["--tls", cert1, key1, "--reload-tls", cert2, tmp.join("none.key")]) as srv:
            srv.proc.send_signal(signal.SIGHUP)
            sktest.check(sh.log_has(srv, r"reload: key .*none\.key"), "failed reload not reported")
            c = sh.Client(srv.port)
            sktest.check(c.banner[1][0].startswith("mx.test"), "settings changed by a failed reload")
            c.close()
    print("ok")


if __name__ == "__main__":
    main()
