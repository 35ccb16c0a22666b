#!/usr/bin/python3
"""One data directory for serve and the operator commands (docs/serve.md,
docs/queue.md): --data-dir, then the data-dir key of --config FILE, then
SMTPKIT_DATA_DIR, then ./var. `smtpkit serve` started without --data-dir in
a directory keeps its data in ./var there, and `smtpkit queue list`, track,
stats and suppress run in the same directory find it without options. A
directory without a spool or store is named in the message, with how it was
chosen."""

import json
import os
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from serve_peer import HOST, expect, message  # noqa: E402

ENV = "SMTPKIT_DATA_DIR"
# What the test runs must not depend on the caller's environment.
os.environ.pop(ENV, None)

tmp = sktest.TempDir("sk-data-dir-")


def cli(args, cwd, env=None, rc=0):
    full = dict(os.environ)
    full.update(env or {})
    r = subprocess.run([sktest.SMTPKIT] + args, cwd=cwd, env=full, capture_output=True,
                       text=True, timeout=30)
    expect(rc is None or r.returncode == rc,
           "smtpkit %s (in %s, env %r): exit %d, expected %s\nstdout: %s\nstderr: %s"
           % (" ".join(args), cwd, env, r.returncode, rc, r.stdout, r.stderr))
    return r


def queue_ids(r):
    return [m["id"] for m in json.loads(r.stdout)]


class DefaultServe:
    """`smtpkit serve` with no --data-dir, in directory cwd."""

    def __init__(self, cwd, name, args=(), env=None):
        self.port = sktest.free_port(HOST)
        self.log_path = tmp.join(name + ".log")
        self.argv = [sktest.SMTPKIT, "serve", "--listen", "%s:%d" % (HOST, self.port),
                     "--hold"] + list(args)
        self.cwd, self.env = cwd, env

    def __enter__(self):
        self.log_file = open(self.log_path, "ab")
        self.proc = sktest.Proc(self.argv, stderr=self.log_file, stdout=subprocess.DEVNULL,
                                cwd=self.cwd, env=self.env)
        sktest.wait_port(self.port, HOST, timeout=15, proc=self.proc)
        sktest.wait_for(lambda: " daemon started " in self.log(), timeout=15,
                        what="serve to log 'daemon started'")
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def send(self, subject):
        with smtplib.SMTP(HOST, self.port, timeout=20) as c:
            c.ehlo("client.test")
            c.mail("alice@example.org")
            c.rcpt("bob@localhost")
            code, resp = c.data(message(subject).encode())
        expect(code == 250, "DATA: %r %r" % (code, resp))
        return resp.decode().rsplit("queued as ", 1)[1].split()[0]

    def __exit__(self, *exc):
        rc = self.proc.stop()
        self.log_file.close()
        expect(rc == 0, "serve exit %r:\n%s" % (rc, self.log()))


try:
    work, elsewhere, empty = tmp.join("work"), tmp.join("elsewhere"), tmp.join("empty")
    for d in (work, elsewhere, empty):
        os.makedirs(d)
    var = os.path.join(work, "var")

    # --- serve and the tools on the default ./var ------------------------
    with DefaultServe(work, "serve-default") as srv:
        expect(os.path.isdir(os.path.join(var, "spool")),
               "serve without --data-dir keeps its data in ./var")
        qid = srv.send("default")
        r = sktest.wait_for(lambda: qid in queue_ids(cli(["queue", "list", "--json"], work)) and
                            cli(["queue", "list", "--json"], work),
                            timeout=10, what="the message in `queue list` without options")
        cli(["queue", "show", qid], work)
        t = sktest.wait_for(lambda: cli(["track", qid, "--json"], work, rc=None).returncode == 0
                            and json.loads(cli(["track", qid, "--json"], work).stdout),
                            timeout=10, what="`track ID` without options")
        expect(t["id"] == qid, "track found it: %r" % t)
        s = json.loads(cli(["stats", "--json"], work).stdout)
        expect(s["last_hour"]["by_outcome"]["received"] == 1, "stats without options: %r" % s)
        cli(["suppress", "add", "x@example.net"], work)
        expect("x@example.net" in cli(["suppress", "list"], work).stdout, "suppress list")

        # Elsewhere, ./var is not there: said with how it was chosen.
        default = "./var (the default; set --data-dir or %s)" % ENV
        r = cli(["queue", "list"], elsewhere, rc=66)
        expect("no spool in %s" % default in r.stderr, "queue names the default: %r" % r.stderr)
        r = cli(["track", qid], elsewhere, rc=66)
        expect("no tracking store in %s" % default in r.stderr, "track: %r" % r.stderr)
        r = cli(["stats"], elsewhere, rc=66)
        expect("no tracking store in %s" % default in r.stderr, "stats: %r" % r.stderr)
        r = cli(["suppress", "list"], elsewhere, rc=66)
        expect("no such directory: %s" % default in r.stderr, "suppress: %r" % r.stderr)

        # --- SMTPKIT_DATA_DIR ------------------------------------------------
        r = cli(["queue", "list", "--json"], elsewhere, env={ENV: var})
        expect(qid in queue_ids(r), "the environment names the directory: %r" % r.stdout)
        cli(["track", qid], elsewhere, env={ENV: var})
        r = cli(["queue", "list"], elsewhere, env={ENV: empty}, rc=66)
        expect("no spool in %s (from %s)" % (empty, ENV) in r.stderr, "env: %r" % r.stderr)
        r = cli(["queue", "list"], elsewhere, env={ENV: ""}, rc=78)
        expect(ENV in r.stderr and "empty" in r.stderr, "an empty variable: %r" % r.stderr)

        # --- --config FILE: the daemon's config file, its data-dir ----------
        conf = tmp.join("serve.conf")
        with open(conf, "w") as f:
            f.write("# the daemon's file\nlisten = 127.0.0.1:2525\nlocal-domain = localhost\n"
                    "data-dir = %s\n" % var)
        nodir = tmp.join("nodir.conf")
        with open(nodir, "w") as f:
            f.write("listen = 127.0.0.1:2525\n")
        r = cli(["queue", "--config", conf, "list", "--json"], elsewhere)
        expect(qid in queue_ids(r), "--config names the directory: %r" % r.stdout)
        cli(["stats", "--config", conf, "--json"], elsewhere)
        # Precedence: --data-dir over the file, the file over the environment.
        r = cli(["queue", "--config", conf, "--data-dir", empty, "list"], elsewhere, rc=66)
        expect("no spool in %s (from --data-dir)" % empty in r.stderr, "flag wins: %r" % r.stderr)
        r = cli(["queue", "--config", conf, "list", "--json"], elsewhere, env={ENV: empty})
        expect(qid in queue_ids(r), "the file wins over the environment: %r" % r.stdout)
        r = cli(["track", "--config", nodir, qid], elsewhere, env={ENV: empty}, rc=66)
        expect("(from %s, as %s has no data-dir)" % (ENV, nodir) in r.stderr,
               "a file without data-dir: the environment: %r" % r.stderr)
        r = cli(["queue", "--config", nodir, "list"], elsewhere, rc=66)
        expect("no spool in ./var (the default, as %s has no data-dir; set --data-dir or %s)"
               % (nodir, ENV) in r.stderr, "then the default: %r" % r.stderr)
        bad = tmp.join("bad.conf")
        with open(bad, "w") as f:
            f.write("data-dir = %s\nno-such-key = 1\n" % var)
        r = cli(["queue", "--config", bad, "list"], elsewhere, rc=78)
        expect(bad in r.stderr and "no-such-key" in r.stderr, "a bad file: %r" % r.stderr)
        r = cli(["queue", "--config", tmp.join("missing.conf"), "list"], elsewhere, rc=78)
        expect("missing.conf" in r.stderr, "a missing file: %r" % r.stderr)
        r = cli(["queue", "--config"], elsewhere, rc=64)
        expect("--config" in r.stderr, "--config without a file: %r" % r.stderr)

    # --- serve takes the same order -------------------------------------------
    # The environment when neither --data-dir nor the file says.
    with DefaultServe(elsewhere, "serve-env", env={ENV: var}) as srv:
        expect("data_dir=%s " % var in srv.log(), "serve used %s:\n%s" % (ENV, srv.log()))
        r = cli(["queue", "list", "--json"], elsewhere, env={ENV: var})
        expect(qid in queue_ids(r), "the held message is still there: %r" % r.stdout)
    expect(not os.path.exists(os.path.join(elsewhere, "var")), "no ./var made elsewhere")
    # The file's data-dir over the environment.
    conf2 = tmp.join("serve2.conf")
    other = tmp.join("other")
    with open(conf2, "w") as f:
        f.write("data-dir = %s\n" % other)
    with DefaultServe(elsewhere, "serve-conf", args=["--config", conf2], env={ENV: var}) as srv:
        expect("data_dir=%s " % other in srv.log(), "the file wins:\n%s" % srv.log())
    print("ok")
finally:
    tmp.cleanup()
