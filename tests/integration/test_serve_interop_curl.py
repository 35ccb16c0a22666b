#!/usr/bin/python3
"""`smtpkit serve` with curl: smtp:// with --ssl-reqd (STARTTLS) and
smtps:// (implicit TLS, RFC 8314), certificates checked against a test CA
by name; the message arrives byte for byte in the Maildir."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, expect_arrived, make_users, message  # noqa: E402

tmp = sktest.TempDir("sk-serve-curl-")
try:
    ca = sktest.TestCA(tmp.join("ca"))
    cert, key = ca.issue("mx.test")
    users = make_users(tmp, {"zoe": "pw-for-curl"})
    srv = Serve(tmp, smtps=1,
                args=["--hostname", "mx.test", "--tls-cert", cert, "--tls-key", key,
                      "--users", users])

    def curl(url, port, msg, *extra, rc=0):
        path = tmp.join("msg.eml")
        with open(path, "wb") as f:
            f.write(msg.encode())
        r = sktest.run(["curl", "--silent", "--show-error", "--max-time", "30",
                        "--resolve", "mx.test:%d:%s" % (port, HOST), "--cacert", ca.cert,
                        "--mail-from", "zoe@example.org", "--mail-rcpt", "bob@localhost",
                        "--upload-file", path, url] + list(extra), timeout=60)
        if r.returncode != rc:
            sktest.fail("curl exited %d (expected %d): %s\n--- server ---\n%s" %
                        (r.returncode, rc, r.stderr, srv.log()[-3000:]))
        return r

    with srv:
        body = "Line one\r\n.starts with a dot\r\n\r\nÜnïcödé line\r\n"
        m1 = message("curl starttls", body)
        curl("smtp://mx.test:%d" % srv.port, srv.port, m1, "--ssl-reqd")
        expect_arrived(srv, "localhost", "bob", m1)
        heads = open(srv.maildir("localhost", "bob")[0], "rb").read(1500)
        expect(b"with ESMTPS" in heads, "received over TLS: %r" % heads, srv)

        m2 = message("curl smtps", body)
        curl("smtps://mx.test:%d" % srv.smtps_port, srv.smtps_port, m2,
             "--user", "zoe:pw-for-curl")
        expect_arrived(srv, "localhost", "bob", m2, count=2)

        # The certificate is for mx.test: asking for another name fails
        # (curl 60), so the checks above did verify the name.
        curl("smtps://other.test:%d" % srv.smtps_port, srv.smtps_port, m2, "--user",
             "zoe:pw-for-curl", "--resolve", "other.test:%d:%s" % (srv.smtps_port, HOST), rc=60)
        # smtps requires AUTH before MAIL (curl 55: MAIL refused).
        curl("smtps://mx.test:%d" % srv.smtps_port, srv.smtps_port, m2, rc=55)
    expect(srv.proc.returncode == 0, "exit 0 after SIGTERM", srv)
    print("ok")
finally:
    tmp.cleanup()
