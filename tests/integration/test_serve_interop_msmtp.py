#!/usr/bin/python3
"""`smtpkit serve` with msmtp (GnuTLS; a config file written here):
STARTTLS with TLS 1.3 and with TLS 1.2, and implicit TLS, each with AUTH
and the certificate checked by name against the test CA; the messages
arrive byte for byte."""

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
    srv = Serve(tmp, submission=1, smtps=1,
                args=["--hostname", "mx.test", "--tls-cert", cert, "--tls-key", key,
                      "--users", users])
    cases = [
        ("starttls-tls1.3", "submission", "tls_starttls on\n"),
        ("starttls-tls1.2", "submission", "tls_starttls on\ntls_priorities NORMAL:-VERS-TLS1.3\n"),
        ("implicit", "smtps", "tls_starttls off\n"),
    ]
    failures = []
    delivered = 0
    with srv:
        for name, listener, tls_lines in cases:
            port = srv.submission_port if listener == "submission" else srv.smtps_port
            conf = tmp.join("msmtprc-" + name)
            with open(conf, "w") as f:
                f.write("defaults\nlogfile %s\ntimeout 10\n\n"
                        "account test\nhost 127.0.0.1\nport %d\ndomain client.test\n"
                        "from zoe@example.org\ntls on\n%stls_trust_file %s\n"
                        "tls_host_override mx.test\nauth plain\nuser zoe\npassword msmtp pass\n\n"
                        "account default : test\n" % (tmp.join("msmtp.log"), port, tls_lines,
                                                      ca.cert))
            os.chmod(conf, 0o600)
            m = message("msmtp " + name, "Dear Bob,\r\n.\r\n..\r\nregards\r\n",
                        sender="zoe@example.org")
            # msmtp reads LF or CRLF; give it LF, as a local mail program would.
            try:
                r = sktest.run(["msmtp", "-C", conf, "bob@localhost"],
                               input=m.replace("\r\n", "\n"), timeout=30)
            except Exception as e:  # subprocess.TimeoutExpired
                failures.append("%s: msmtp did not finish: %s" % (name, e))
                continue
            if r.returncode != 0:
                failures.append("%s: msmtp exited %d: %s" % (name, r.returncode,
                                                              r.stderr.strip()))
                continue
            delivered += 1
            expect_arrived(srv, "localhost", "bob", m, count=delivered)
    if failures:
        sktest.fail("\n".join(failures) + "\n--- server ---\n" + srv.log()[-3000:])
    expect(srv.proc.returncode == 0, "exit 0 after SIGTERM", srv)
    print("ok")
finally:
    tmp.cleanup()
