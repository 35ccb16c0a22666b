#!/usr/bin/python3
"""Certificate reload under load: clients send over STARTTLS without a
pause while the certificate files are replaced and `smtpkit serve` gets
SIGHUP. No session fails, and sessions that start after the reload see the
new certificate (sessions before it the old one)."""

import os
import shutil
import signal
import smtplib
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, Serve, expect, message  # noqa: E402

CLIENTS = 4


def der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


tmp = sktest.TempDir("sk-fault-cert-reload-")
try:
    ca = sktest.TestCA(tmp.join("ca"))
    old_cert, old_key = ca.issue("mx.test")
    new_cert, new_key = ca.issue("mx.test")
    cert, key = tmp.join("cert.pem"), tmp.join("key.pem")
    shutil.copy(old_cert, cert)
    shutil.copy(old_key, key)
    old_der, new_der = der(old_cert), der(new_cert)
    expect(old_der != new_der, "two different certificates")

    ctx = ssl.create_default_context(cafile=ca.cert)
    ctx.check_hostname = False  # connecting by IP; the chain is still verified
    srv = Serve(tmp, args=["--hold", "--hostname", "mx.test", "--tls-cert", cert,
                           "--tls-key", key])
    lock = threading.Lock()
    sessions = []  # (start time, certificate seen)
    failures = []
    stop = threading.Event()

    def client(n):
        i = 0
        while not stop.is_set():
            i += 1
            started = time.monotonic()
            try:
                with smtplib.SMTP(HOST, srv.port, timeout=15) as s:
                    s.ehlo("c%d.test" % n)
                    s.starttls(context=ctx)
                    seen = s.sock.getpeercert(binary_form=True)
                    s.ehlo("c%d.test" % n)
                    s.sendmail("a@example.org", ["bob@localhost"], message("tls %d %d" % (n, i)))
                with lock:
                    sessions.append((started, seen))
            except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
                with lock:
                    failures.append("client %d session %d: %r" % (n, i, e))

    with srv:
        threads = [threading.Thread(target=client, args=(n,), daemon=True)
                   for n in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        # Replace the files the way an ACME client does: write, then rename.
        shutil.copy(new_cert, cert + ".tmp")
        shutil.copy(new_key, key + ".tmp")
        os.replace(key + ".tmp", key)
        os.replace(cert + ".tmp", cert)
        srv.proc.send_signal(signal.SIGHUP)
        sktest.wait_for(lambda: "reload-done" in srv.log() or "reload-failed" in srv.log(),
                        timeout=10, what="reload")
        expect("reload-failed" not in srv.log(), "reload succeeded", srv)
        reloaded = time.monotonic()
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        expect(not any(t.is_alive() for t in threads), "clients finished", srv)
        expect(not failures, "failed sessions: %r" % failures[:5], srv)
        before = [c for start, c in sessions if start < reloaded - 0.5]
        after = [c for start, c in sessions if start > reloaded]
        expect(before and all(c == old_der for c in before),
               "sessions before the reload saw the old certificate", srv)
        expect(after and all(c == new_der for c in after),
               "sessions after the reload see the new certificate (%d of %d)" %
               (sum(c == new_der for c in after), len(after)), srv)
        q = srv.queue_list(at_least=len(sessions))
        expect(len(q) == len(sessions), "every message queued: %d of %d" %
               (len(q), len(sessions)), srv)
        expect(srv.stop() == 0, "serve exits 0", srv)
    print("ok: %d sessions, %d after the reload" % (len(sessions), len(after)))
finally:
    tmp.cleanup()
