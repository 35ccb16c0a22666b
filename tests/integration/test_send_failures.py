#!/usr/bin/python3
"""`smtpkit send` when the server refuses or misbehaves: partial and total
recipient refusal, 4xx and 5xx replies, a connection closed during DATA, a
server that never answers; exit codes, error blocks and --json."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from send_peer import RawPeer, Runner, Smtpd, expect, expect_exit, json_out, send  # noqa: E402

tmp = sktest.TempDir("sk-send-fail-")
run = Runner()
TEXT = tmp.join("body.txt")
with open(TEXT, "w") as f:
    f.write("hello\n")


def base(port, *rcpts, extra=()):
    args = ["--server", "127.0.0.1:%d" % port, "--tls", "none", "--from", "a@example.org",
            "--subject", "failures", "--text", TEXT]
    for r in rcpts:
        args += ["--to", r]
    return args + list(extra)


@run.case
def one_recipient_refused_other_accepted():
    refuse = {"gone@example.net": "550 5.1.1 <gone@example.net>: no such user"}
    with Smtpd(rcpt_replies=refuse) as s:
        r = send(*base(s.port, "ok@example.net", "gone@example.net", extra=["--json"]))
        expect_exit(r, 69)
        expect(len(s.messages) == 1, "delivered to the accepted one", r)
        expect(s.messages[0]["rcpt_tos"] == ["ok@example.net"], "envelope %r"
               % s.messages[0]["rcpt_tos"], r)
        j = json_out(r)
        expect(j["sent"] is True and j["ok"] is False and j["exit_code"] == 69, "sent, not ok", r)
        expect(j["reply"]["code"] == 250 and "queued as" in j["reply"]["text"], "final reply", r)
        rc = {x["address"]: x for x in j["recipients"]}
        expect(rc["ok@example.net"]["code"] == 250 and rc["ok@example.net"]["accepted"], "ok", r)
        g = rc["gone@example.net"]
        expect(g["code"] == 550 and g["enhanced"] == "5.1.1" and "no such user" in g["text"]
               and not g["accepted"], "refusal %r" % g, r)
        expect(j["error"]["step"] == "RCPT" and j["error"]["code"] == 550, "error RCPT", r)
        r = send(*base(s.port, "ok@example.net", "gone@example.net"))
        expect_exit(r, 69)
        expect("RCPT" in r.stderr and "550 5.1.1" in r.stderr and "gone@example.net" in r.stderr,
               "error block names RCPT, the reply and the address", r)
        expect("hint" in r.stderr, "error block has a hint", r)


@run.case
def temporary_refusal_of_some_is_75():
    refuse = {"busy@example.net": "450 4.2.1 mailbox busy"}
    with Smtpd(rcpt_replies=refuse) as s:
        r = send(*base(s.port, "ok@example.net", "busy@example.net"))
        expect_exit(r, 75)
        expect(s.messages[0]["rcpt_tos"] == ["ok@example.net"], "sent to the accepted one", r)


@run.case
def all_recipients_refused():
    refuse = {"x@example.net": "550 5.1.1 no such user", "y@example.net": "550 5.1.1 nope"}
    with Smtpd(rcpt_replies=refuse) as s:
        r = send(*base(s.port, "x@example.net", "y@example.net", extra=["--json"]))
        expect_exit(r, 69)
        expect(s.messages == [], "nothing sent")
        j = json_out(r)
        expect(j["sent"] is False and [x["code"] for x in j["recipients"]] == [550, 550],
               "both refusals in JSON", r)


@run.case
def permanent_mail_refusal():
    with Smtpd(mail_reply="553 5.7.1 sender address rejected") as s:
        r = send(*base(s.port, "b@example.net", extra=["--json"]))
        expect_exit(r, 69)
        j = json_out(r)
        expect(j["error"]["step"] == "MAIL" and j["error"]["code"] == 553, "MAIL 553", r)
        expect(j["error"]["enhanced"] == "5.7.1", "enhanced code", r)


@run.case
def temporary_data_refusal():
    with Smtpd(data_reply="451 4.3.0 try again later") as s:
        r = send(*base(s.port, "b@example.net", extra=["--json"]))
        expect_exit(r, 75)
        j = json_out(r)
        expect(j["error"]["step"] == "DATA" and j["error"]["code"] == 451, "DATA 451", r)
        expect(j["sent"] is False, "not sent", r)
        r = send(*base(s.port, "b@example.net"))
        expect("DATA" in r.stderr and "451 4.3.0 try again later" in r.stderr, "error block", r)


@run.case
def connection_closed_during_data():
    with RawPeer("close_in_data") as p:
        r = send(*base(p.port, "b@example.net", extra=["--timeout", "10s", "--json"]))
        expect(p.got_data.is_set(), "the peer got to DATA")
        expect_exit(r, 75)
        expect(json_out(r)["error"]["step"] == "DATA", "step DATA", r)


@run.case
def server_that_never_answers():
    with RawPeer("silent") as p:
        t0 = time.monotonic()
        r = send(*base(p.port, "b@example.net", extra=["--timeout", "2s", "--json"]),
                 timeout=30)
        elapsed = time.monotonic() - t0
        expect_exit(r, 75)
        j = json_out(r)
        expect(j["error"]["reason"] == "timed out", "reason %r" % j["error"]["reason"], r)
        expect(j["error"]["step"] in ("greeting", "connect"), "step %r" % j["error"]["step"], r)
        expect(elapsed < 20, "gave up after the timeout, not later (%.1fs)" % elapsed, r)


@run.case
def verbose_shows_the_conversation():
    with Smtpd() as s:
        r = send(*base(s.port, "b@example.net", extra=["--verbose"]))
        expect_exit(r, 0)
        for line in ("S: 220", "C: EHLO", "C: MAIL FROM:<a@example.org>",
                     "C: RCPT TO:<b@example.net>", "C: DATA", "S: 354", "S: 250 2.0.0 Ok: queued"):
            expect(line in r.stderr, "transcript has %r" % line, r)


try:
    run.finish()
finally:
    tmp.cleanup()
