#!/usr/bin/python3
"""`smtpkit serve` logging: --log-level (and the log-level config key) keeps
the events up to that level and drops the others; --log-format json writes
one JSON object per line with time, level, id, module, event and every
key=value field of the event as a member of its own."""

import json
import os
import re
import signal
import smtplib
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

HOST = "127.0.0.1"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LEVELS = ("error", "warning", "info", "debug")

tmp = sktest.TempDir("sk-serve-logging-")


def serve_session(name, *args):
    """Start serve with args, deliver one message (sender with UTF-8, so
    that the log escapes it), get one connection refused by the per-address
    limit (a warning), stop the server; returns what it wrote to stderr."""
    data_dir = tmp.join(name + "-data")
    log_path = tmp.join(name + ".log")
    port = sktest.free_port(HOST)
    argv = [sktest.SMTPKIT, "serve", "--data-dir", data_dir, "--listen", "%s:%d" % (HOST, port),
            "--max-connections-per-ip", "1"] + list(args)
    with open(log_path, "wb") as log:
        proc = sktest.Proc(argv, stdout=log, stderr=log)
        try:
            # No probe connection first: it could still count against the
            # limit of one when the session below connects.
            deadline = time.monotonic() + 15
            client = None
            while client is None:
                try:
                    client = smtplib.SMTP(HOST, port, timeout=30)
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        sktest.fail("%s: serve did not start (exit %s):\n%s"
                                    % (name, proc.poll(), open(log_path).read()))
                    time.sleep(0.05)
            with client:
                refused = client.sendmail("zo\u00eb@localhost", ["bob@localhost"],
                                          b"Subject: log test\r\n\r\nHello\r\n",
                                          mail_options=["SMTPUTF8"])
                sktest.check(refused == {}, "%s: refused %r" % (name, refused))
                with socket.create_connection((HOST, port), timeout=30) as second:
                    banner = second.recv(512)
                    sktest.check(banner.startswith(b"421 "), "%s: 421 expected: %r"
                                 % (name, banner))
            mailbox = os.path.join(data_dir, "mailboxes", "localhost", "bob", "new")
            sktest.wait_for(lambda: os.path.isdir(mailbox) and os.listdir(mailbox), timeout=15,
                            what="%s: delivery to bob@localhost" % name)
            # The Maildir worker writes the file; the loop then hears of
            # the delivery, logs it and removes the message from the spool.
            # A stop in between drops the report (the next start finds the
            # file: already delivered), so wait for the removal.
            msgdir = os.path.join(data_dir, "spool", "msg")
            sktest.wait_for(lambda: not any(f.endswith(".msg") for f in os.listdir(msgdir)),
                            timeout=15, what="%s: the message off the queue" % name)
            rc = proc.stop(signal.SIGTERM, timeout=20)
            sktest.check(rc == 0, "%s: serve exited %s" % (name, rc))
        finally:
            proc.stop(signal.SIGKILL)
    with open(log_path, "rb") as f:
        return f.read().decode("utf-8")


def events(text):
    """The "module event" pairs of text-format lines."""
    out = set()
    for line in text.splitlines():
        m = re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S+ (\S+) (\S+)", line)
        if m:
            out.add(m.group(1) + " " + m.group(2))
    return out


# Levels: each keeps what is at or above it. Events of this run by level:
# debug "server command", "server state"; info "server connect", "daemon
# queued", "daemon started"; warning "server refuse"; no error.
DEBUG = {"server command", "server state"}
INFO = {"server connect", "daemon queued", "daemon started", "maildir delivered"}
WARNING = {"server refuse"}
conf = tmp.join("warning.conf")
with open(conf, "w") as f:
    f.write("log-level = warning\n")
cases = [
    ("debug", ["--log-level", "debug"], DEBUG | INFO | WARNING, set()),
    ("info", ["--log-level", "info"], INFO | WARNING, DEBUG),
    ("default", [], INFO | WARNING, DEBUG),
    ("warning", ["--log-level", "warning"], WARNING, DEBUG | INFO),
    ("warning-conf", ["--config", conf], WARNING, DEBUG | INFO),
    ("error", ["--log-level", "error"], set(), DEBUG | INFO | WARNING),
]
for name, args, present, absent in cases:
    text = serve_session(name, *args)
    seen = events(text)
    sktest.check(present <= seen and not (absent & seen),
                 "%s: expected %s, not %s; got %s\n%s"
                 % (name, sorted(present), sorted(absent), sorted(seen), text[-3000:]))
    if name == "error":
        sktest.check(seen == set(), "error: no lines expected:\n" + text)

# JSON: every line one object with the fixed members and the fields.
text = serve_session("json", "--log-format", "json", "--log-level", "debug")
objs = []
for line in text.splitlines():
    try:
        o = json.loads(line)
    except ValueError as e:
        sktest.fail("not JSON (%s): %r" % (e, line))
    sktest.check(isinstance(o, dict), "not an object: %r" % line)
    for key in ("time", "level", "id", "module", "event"):
        sktest.check(isinstance(o.get(key), str) and o[key], "%s missing in %r" % (key, line))
    sktest.check(RFC3339.match(o["time"]), "time: %r" % line)
    sktest.check(o["level"] in LEVELS, "level: %r" % line)
    sktest.check(all(isinstance(v, str) for v in o.values()), "string values: %r" % line)
    objs.append(o)


def find(module, event, **fields):
    for o in objs:
        if o["module"] == module and o["event"] == event and \
                all(o.get(k) == v for k, v in fields.items()):
            return o
    sktest.fail("no %s %s with %s in:\n%s" % (module, event, fields, text[-4000:]))


rcpt = find("server", "rcpt", addr="<bob@localhost>", reply="250", level="info")
find("server", "mail", addr="<zo\u00eb@localhost>", reply="250")
queued = find("daemon", "queued", session=rcpt["id"], nrcpt="1", level="info")
sktest.check(queued["from"] == "zo\u00eb@localhost", "UTF-8 unescaped: %r" % queued)
sktest.check(re.match(r"^[0-9A-Z]{16}$", queued["id"]), "queue ID: %r" % queued)
find("maildir", "delivered", id=queued["id"], rcpt="bob@localhost")
find("server", "refuse", level="warning", limit="connections-per-ip", peer=HOST)
sktest.check(any(o["event"] == "command" and o["level"] == "debug" and
                 o["line"].upper().startswith("MAIL FROM:<ZO\u00cb@LOCALHOST>") for o in objs),
             "the MAIL command at debug:\n" + text[-4000:])
find("daemon", "started", id="-", data_dir=tmp.join("json-data"), hold="no")
find("daemon", "stopped")
# The same events as the text format logs.
text_events = events(serve_session("json-text", "--log-level", "debug"))
json_events = {o["module"] + " " + o["event"] for o in objs}
sktest.check(DEBUG | INFO | WARNING <= json_events and
             DEBUG | INFO | WARNING <= text_events, "json %s, text %s"
             % (sorted(json_events), sorted(text_events)))

# Bad values are usage errors naming the flag.
for args, why in ((["--log-level", "loud"], "--log-level: \"loud\" is not error, warning, info"),
                  (["--log-format", "xml"], "--log-format: \"xml\" is neither text nor json")):
    r = sktest.smtpkit("serve", "--data-dir", tmp.join("bad"), *args, timeout=30)
    sktest.check(r.returncode == 64 and why in r.stderr, "%s: %d %s" % (args, r.returncode,
                                                                         r.stderr))

tmp.cleanup()
print("ok")
