#!/usr/bin/python3
"""`smtpkit serve` with msmtp (a config file written here): STARTTLS with
the test CA and AUTH on submission; the message arrives byte for byte."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import Serve, expect, expect_arrived, make_users, message  # noqa: E402

tmp = sktest.TempDir("sk-serve-msmtp-")
try:
    ca = sktest.TestCA(tmp.join("ca"))
    cert, key = ca.issue("mx.test")
    users = make_users(tmp, {"zoe": "msmtp pass"})
    srv = Serve(tmp, submission=1,
                args=["--hostname", "mx.test", "--tls-cert", cert, "--tls-key", key,
                      "--users", users])
    with srv:
        conf = tmp.join("msmtprc")
        with open(conf, "w") as f:
            f.write("defaults\nlogfile %s\n\n"
                    "account test\nhost 127.0.0.1\nport %d\nfrom zoe@example.org\n"
                    "tls on\ntls_starttls on\ntls_trust_file %s\ntls_host_override mx.test\n"
                    "auth plain\nuser zoe\npassword msmtp pass\n\n"
                    "account default : test\n" % (tmp.join("msmtp.log"), srv.submission_port,
                                                  ca.cert))
        os.chmod(conf, 0o600)
        m = message("msmtp", "Dear Bob,\r\n.\r\n..\r\nregards\r\n", sender="zoe@example.org")
        # msmtp reads LF or CRLF; give it LF, as a local mail program would.
        stdin = m.replace("\r\n", "\n")
        r = sktest.run(["msmtp", "-C", conf, "bob@localhost"], input=stdin, timeout=60)
        if r.returncode != 0:
            sktest.fail("msmtp exited %d: %s %s\n--- server ---\n%s" %
                        (r.returncode, r.stdout, r.stderr, srv.log()[-3000:]))
        expect_arrived(srv, "localhost", "bob", m)
    expect(srv.proc.returncode == 0, "exit 0 after SIGTERM", srv)
    print("ok")
finally:
    tmp.cleanup()
