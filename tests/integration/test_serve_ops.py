#!/usr/bin/python3
"""Operating `smtpkit serve`: flag and config-file errors (64, 78 with
FILE:LINE), --help, --print-usage, --local-recipients, --hold with `smtpkit
queue list --json`, SIGTERM finishing a session in flight (exit 0), SIGHUP
reloading a changed certificate without dropping an open connection."""

import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from fault_util import Raw  # noqa: E402
from serve_peer import HOST, Serve, expect, expect_arrived, message  # noqa: E402

tmp = sktest.TempDir("sk-serve-ops-")


def serve_rc(*args, timeout=30):
    return sktest.smtpkit("serve", "--data-dir", tmp.join("never"), *args, timeout=timeout)


try:
    # --- flags and configuration errors -----------------------------------
    r = serve_rc("--max-message-size", "lots")
    expect(r.returncode == 64, "bad flag value: exit 64, got %d" % r.returncode)
    expect("--max-message-size" in r.stderr, "the bad flag is named: %r" % r.stderr)
    r = serve_rc("--no-such-flag")
    expect(r.returncode == 64 and "--no-such-flag" in r.stderr, "unknown flag: %r" % r.stderr)
    conf = tmp.join("bad.conf")
    with open(conf, "w") as f:
        f.write("# a config\nhostname = mx.test\n\nlisten = 127.0.0.1:notaport\n")
    r = serve_rc("--config", conf)
    expect(r.returncode == 78, "bad config: exit 78, got %d (%s)" % (r.returncode, r.stderr))
    expect(("%s:4: listen" % conf) in r.stderr, "FILE:LINE: reason: %r" % r.stderr)
    r = serve_rc("--config", tmp.join("missing.conf"))
    expect(r.returncode == 78 and "missing.conf" in r.stderr, "missing config: %r" % r.stderr)
    r = serve_rc("--tls-cert", "/nonexistent.pem")
    expect(r.returncode == 78 and "tls-key" in r.stderr, "cert without key: %r" % r.stderr)
    r = sktest.smtpkit("serve", "--help")
    expect(r.returncode == 0, "--help exits 0")
    for opt in ("--listen", "--submission", "--smtps", "--hostname", "--data-dir", "--tls-cert",
                "--tls-key", "--users", "--local-domain", "--local-recipients", "--relay-host",
                "--relay-net", "--max-message-size", "--hold", "--greeting-timeout",
                "--command-timeout", "--data-timeout", "--user", "--config", "--log",
                "--max-connections", "--max-connections-per-ip", "--max-recipients"):
        expect(opt + " " in r.stdout, "--help lists %s" % opt)

    # --- a config file, flags over it, print-usage, local recipients -------
    rcpts = tmp.join("recipients")
    with open(rcpts, "w") as f:
        f.write("bob@list.test\n# comment\nCarol@List.Test\n")
    good = tmp.join("good.conf")
    with open(good, "w") as f:
        f.write("hostname = mx.test\nlocal-domain = list.test\nlocal-domain = open.test\n"
                "local-recipients = %s\nmax-recipients = 1\n" % rcpts)
    srv = Serve(tmp, name="conf", print_usage=True,
                args=["--config", good, "--max-recipients", "3"])
    with srv:
        out = sktest.wait_for(lambda: "swaks" in srv.out() and srv.out(), timeout=10,
                              what="print-usage output")
        expect("--port %d" % srv.port in out, "usage names the port: %r" % out)
        expect("mailboxes/list.test/someone/new" in out, "usage names the Maildir: %r" % out)
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            code, resp = s.ehlo("client.test")
            expect(b"mx.test" in resp.split(b"\n")[0], "hostname from the file: %r" % resp)
            s.mail("a@example.org")
            expect(s.rcpt("bob@list.test")[0] == 250, "listed recipient")
            code, resp = s.rcpt("mallory@list.test")
            expect(code == 550 and resp.startswith(b"5.1.1"), "unlisted: %d %r" % (code, resp))
            expect(s.rcpt("CAROL@list.test")[0] == 250, "listed recipient, any case")
            expect(s.rcpt("postmaster@list.test")[0] == 250, "postmaster always exists")
            code, resp = s.rcpt("anyone@open.test")
            # max-recipients 3 from the flag overrides 1 from the file.
            expect(code == 452, "max-recipients 3 (flag over file): %d %r" % (code, resp), srv)
            code, resp = s.data(message("to list", to="bob@list.test"))
            expect(code == 250, "DATA: %d %r" % (code, resp), srv)
        srv.wait_maildir("list.test", "bob")
        srv.wait_maildir("list.test", "carol")
        # SIGHUP reloads the recipients list.
        with open(rcpts, "a") as f:
            f.write("mallory@list.test\n")
        srv.proc.send_signal(signal.SIGHUP)
        sktest.wait_for(lambda: "reload-done" in srv.log(), timeout=10, what="reload")
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.ehlo("client.test")
            s.mail("a@example.org")
            code, resp = s.rcpt("mallory@list.test")
            expect(code == 250, "recipient added by SIGHUP: %d %r" % (code, resp), srv)
    expect(srv.proc.returncode == 0, "exit 0", srv)

    # --- --user: privileges dropped after binding ----------------------------
    if os.geteuid() == 0:
        os.chmod(tmp.path, 0o711)  # let the unprivileged user reach its data dir
        srv = Serve(tmp, name="user", args=["--user", "nobody"])
        with srv:
            # The port opens before privileges are dropped: wait for the log line.
            sktest.wait_for(lambda: "privileges-dropped" in srv.log(), timeout=10,
                            what="privileges-dropped in the log")
            status = open("/proc/%d/status" % srv.proc.pid).read()
            uids = [ln for ln in status.splitlines() if ln.startswith("Uid:")][0].split()[1:]
            expect(uids == ["65534"] * 4, "running as nobody: %r" % uids, srv)
            m = message("as nobody")
            with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
                s.sendmail("alice@example.org", ["bob@localhost"], m)
            files = expect_arrived(srv, "localhost", "bob", m)
            expect(os.stat(files[0]).st_uid == 65534, "Maildir file owned by nobody", srv)
        expect(srv.proc.returncode == 0, "exit 0", srv)
    else:
        r = serve_rc("--user", "nobody", "--listen", "127.0.0.1:%d" % sktest.free_port())
        expect(r.returncode == 78 and "root" in r.stderr, "--user needs root: %r" % r.stderr)

    # --- --hold: messages stay in the queue ---------------------------------
    srv = Serve(tmp, name="hold", args=["--hold"])
    with srv:
        m = message("held")
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.sendmail("alice@example.org", ["bob@localhost"], m)
        q = srv.queue_list(at_least=1)
        expect(len(q) == 1, "one message in the queue: %r" % q, srv)
        expect(q[0]["state"] == "hold", "state hold: %r" % q[0], srv)
        expect("bob@localhost" in json.dumps(q[0]["recipients"]), "recipient listed: %r" % q[0])
        time.sleep(1.0)  # give a (wrong) delivery the chance to happen
        expect(srv.maildir("localhost", "bob") == [], "nothing delivered with --hold", srv)
    expect(srv.proc.returncode == 0, "exit 0", srv)

    # --- SIGTERM while a session is in DATA ---------------------------------
    srv = Serve(tmp, name="term")
    srv.start()
    try:
        c = Raw(srv.port, timeout=20)
        expect(c.reply()[0] == 220, "greeting")
        expect(c.cmd("EHLO client.test")[0] == 250, "EHLO")
        expect(c.cmd("MAIL FROM:<alice@example.org>")[0] == 250, "MAIL")
        expect(c.cmd("RCPT TO:<bob@localhost>")[0] == 250, "RCPT")
        expect(c.cmd("DATA")[0] == 354, "DATA")
        body = message("in flight", "first half\r\n")
        c.sock.sendall(body.encode())
        srv.proc.send_signal(signal.SIGTERM)
        # New connections are refused once the listeners are closed.
        def refused():
            try:
                socket.create_connection((HOST, srv.port), timeout=2).close()
                return False
            except OSError:
                return True
        sktest.wait_for(refused, timeout=10, what="listener closed after SIGTERM")
        expect(srv.proc.poll() is None, "still running while a session is in flight", srv)
        c.sock.sendall(b"second half\r\n.\r\n")
        code, resp = c.reply()
        expect(code == 250 and b"queued as" in resp, "in-flight message accepted: %r" % resp, srv)
        try:
            code, _ = c.cmd("QUIT")
        except (EOFError, OSError):
            code = 221
        expect(code in (221, 421), "QUIT: %d" % code)
        c.close()
        rc = srv.proc.wait(timeout=20)
        expect(rc == 0, "exit 0 after SIGTERM, got %d" % rc, srv)
    finally:
        srv.stop()
    # The message survives: delivered now or after a restart.
    srv2 = Serve(tmp, name="term2", data_dir=srv.data_dir)
    with srv2:
        expect_arrived(srv2, "localhost", "bob", body + "second half\r\n")

    # --- SIGHUP: a new certificate, the open connection stays ---------------
    ca = sktest.TestCA(tmp.join("ca"))
    cert_a, key_a = ca.issue("mx.test")
    cert_b, key_b = ca.issue("mx.test")
    cert, key = tmp.join("live.pem"), tmp.join("live.key")
    shutil.copy(cert_a, cert)
    shutil.copy(key_a, key)
    der = {n: ssl.PEM_cert_to_DER_cert(open(p).read()) for n, p in (("a", cert_a), ("b", cert_b))}
    ctx = ssl.create_default_context(cafile=ca.cert)

    def served_cert():
        with smtplib.SMTP(HOST, srv.port, timeout=30) as s:
            s.ehlo("client.test")
            s.starttls(context=ctx)
            return s.sock.getpeercert(binary_form=True)

    srv = Serve(tmp, name="hup", args=["--tls-cert", cert, "--tls-key", key,
                                       "--hostname", "mx.test"])
    with srv:
        ctx.check_hostname = False
        expect(served_cert() == der["a"], "certificate A before SIGHUP", srv)
        old = smtplib.SMTP(HOST, srv.port, timeout=30)
        old.ehlo("client.test")
        old.starttls(context=ctx)
        old.ehlo("client.test")
        for src, dst in ((cert_b, cert), (key_b, key)):
            shutil.copy(src, dst + ".new")
            os.replace(dst + ".new", dst)
        srv.proc.send_signal(signal.SIGHUP)
        sktest.wait_for(lambda: "reload-done" in srv.log(), timeout=10, what="reload")
        expect(served_cert() == der["b"], "certificate B after SIGHUP", srv)
        m = message("over the old connection")
        refused = old.sendmail("alice@example.org", ["bob@localhost"], m)
        expect(refused == {}, "old connection still works", srv)
        old.quit()
        expect_arrived(srv, "localhost", "bob", m)
        expect(srv.proc.poll() is None, "still running", srv)
        # A reload with a broken config keeps the running one.
        with open(key, "w") as f:
            f.write("not a key\n")
        srv.proc.send_signal(signal.SIGHUP)
        sktest.wait_for(lambda: "reload-failed" in srv.log(), timeout=10, what="failed reload")
        expect(served_cert() == der["b"], "certificate B still served", srv)
    expect(srv.proc.returncode == 0, "exit 0", srv)
    print("ok")
finally:
    tmp.cleanup()
