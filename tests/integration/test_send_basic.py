#!/usr/bin/python3
"""`smtpkit send` without TLS against aiosmtpd: composing, envelopes, UTF-8,
--message (sendmail -t), --json, and the usage and input errors."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402
from send_peer import (QUEUE_ID, RawPeer, Runner, Smtpd, crlf_only, expect,  # noqa: E402
                       expect_exit, have_ipv6_loopback, json_out, parse, send)

tmp = sktest.TempDir("sk-send-basic-")
run = Runner()


def write(name, data):
    path = tmp.join(name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


TEXT = write("body.txt", "Hallo Zoë,\nthe report is attached.\n\n-- \nBob\n")
HTML = write("body.html", "<p>Hallo <b>Zoë</b></p>\n")
# Binary with every octet value, so any re-encoding mistake shows.
ATTACH_BYTES = bytes(range(256)) * 40
ATTACH = write("report.pdf", ATTACH_BYTES)


def server_arg(s):
    return "127.0.0.1:%d" % s.port


@run.case
def composed_text_attachment_utf8():
    with Smtpd() as s:
        r = send("--server", server_arg(s), "--tls", "none",
                 "--from", "Zoë Müller <zoe@example.org>",
                 "--to", "Bob <bob@example.net>", "--to", "carol@example.net",
                 "--cc", "Dave Ü <dave@example.com>", "--bcc", "hidden@example.com",
                 "--subject", "Grüße aus Köln – Bericht", "--text", TEXT,
                 "--attach", ATTACH, "--header", "X-Campaign: spring sale")
        expect_exit(r, 0)
        expect(len(s.messages) == 1, "one message received", r)
        m = s.messages[0]
        expect(m["mail_from"] == "zoe@example.org", "reverse-path %r" % m["mail_from"])
        expect(m["rcpt_tos"] == ["bob@example.net", "carol@example.net", "dave@example.com",
                                 "hidden@example.com"], "recipients %r" % m["rcpt_tos"])
        expect(crlf_only(m["data"]), "every line ends in CRLF")
        expect(all(len(line) <= 998 for line in m["data"].split(b"\r\n")), "lines <= 998")
        msg = parse(m["data"])
        expect(msg["Subject"] == "Grüße aus Köln – Bericht", "subject %r" % msg["Subject"])
        expect(msg["From"].addresses[0].display_name == "Zoë Müller", "from %r" % msg["From"])
        expect(msg["From"].addresses[0].addr_spec == "zoe@example.org", "from address")
        expect([a.addr_spec for a in msg["To"].addresses] == ["bob@example.net",
                                                              "carol@example.net"], "To")
        expect(msg["Cc"].addresses[0].display_name == "Dave Ü", "Cc %r" % msg["Cc"])
        expect(msg["Bcc"] is None, "no Bcc header in the message")
        expect(b"hidden@example.com" not in m["data"], "Bcc address not in the message")
        expect(msg["X-Campaign"] == "spring sale", "extra header %r" % msg["X-Campaign"])
        expect(msg["Message-ID"] and msg["Date"], "Message-ID and Date present")
        body = msg.get_body(("plain",))
        expect(body.get_content().replace("\r\n", "\n") == open(TEXT, encoding="utf-8").read(),
               "text body %r" % body.get_content())
        atts = list(msg.iter_attachments())
        expect(len(atts) == 1, "one attachment")
        expect(atts[0].get_filename() == "report.pdf", "file name %r" % atts[0].get_filename())
        expect(atts[0].get_content_type() == "application/pdf", atts[0].get_content_type())
        expect(atts[0].get_content() == ATTACH_BYTES, "attachment bytes intact")


@run.case
def html_alternative_and_text_from_stdin():
    with Smtpd() as s:
        r = send("--server", server_arg(s), "--tls", "none", "--from", "a@example.org",
                 "--to", "b@example.net", "--subject", "both", "--text", "-", "--html", HTML,
                 input="plain part é\n")
        expect_exit(r, 0)
        msg = parse(s.messages[0]["data"])
        expect(msg.get_content_type() == "multipart/alternative", msg.get_content_type())
        expect(msg.get_body(("plain",)).get_content().strip() == "plain part é", "plain part")
        expect("<b>Zoë</b>" in msg.get_body(("html",)).get_content(), "html part")


@run.case
def inline_image_in_html():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    logo = write("logo.png", png)
    html = write("inline.html", '<p>Logo: <img src="cid:logo@example.org"></p>\n')
    with Smtpd() as s:
        r = send("--server", server_arg(s), "--tls", "none", "--from", "a@example.org",
                 "--to", "b@example.net", "--subject", "inline", "--text", TEXT, "--html", html,
                 "--inline", "logo@example.org=" + logo)
        expect_exit(r, 0)
        msg = parse(s.messages[0]["data"])
        related = [p for p in msg.walk() if p.get_content_type() == "multipart/related"]
        expect(len(related) == 1, "one multipart/related", r)
        parts = list(related[0].iter_parts())
        expect(parts[0].get_content_type() == "text/html", "HTML first in related", r)
        img = [p for p in parts if p.get_content_type() == "image/png"]
        expect(len(img) == 1 and img[0]["Content-ID"] == "<logo@example.org>",
               "inline part with its Content-ID", r)
        expect(img[0].get_content() == png, "image bytes intact", r)


@run.case
def utf8_addresses_use_smtputf8():
    with Smtpd() as s:
        r = send("--server", server_arg(s), "--tls", "none", "--from", "Zoë <zoë@exämple.org>",
                 "--to", "Jörg <jörg@exämple.de>", "--subject", "ü", "--text", TEXT)
        expect_exit(r, 0)
        m = s.messages[0]
        expect(m["mail_from"] == "zoë@exämple.org", "UTF-8 reverse-path %r" % m["mail_from"], r)
        expect(m["rcpt_tos"] == ["jörg@exämple.de"], "UTF-8 recipient %r" % m["rcpt_tos"], r)
        expect("SMTPUTF8" in m["mail_options"], "MAIL carries SMTPUTF8 %r" % m["mail_options"])
        msg = parse(m["data"])
        expect(msg["To"].addresses[0].addr_spec == "jörg@exämple.de", "To %r" % msg["To"], r)
        expect(msg["To"].addresses[0].display_name == "Jörg", "To name", r)


@run.case
def dsn_and_priority_parameters():
    with RawPeer("record") as p:
        r = send("--server", "127.0.0.1:%d" % p.port, "--tls", "none", "--from", "a@example.org",
                 "--to", "b@example.net", "--text", TEXT, "--priority", "3",
                 "--dsn-notify", "SUCCESS,FAILURE", "--dsn-ret", "HDRS", "--envid", "env+42",
                 "--timeout", "10s", "--json")
        expect_exit(r, 0)
        mail = [x for x in p.lines if x.upper().startswith("MAIL FROM:")]
        rcpt = [x for x in p.lines if x.upper().startswith("RCPT TO:")]
        expect(len(mail) == 1 and len(rcpt) == 1, "one MAIL and one RCPT: %r" % p.lines, r)
        words = mail[0].split()
        expect("RET=HDRS" in words and "MT-PRIORITY=3" in words, "MAIL %r" % mail[0], r)
        # RFC 3461 4: ENVID is xtext, '+' is written as +2B.
        expect("ENVID=env+2B42" in words, "ENVID xtext-encoded: %r" % mail[0], r)
        expect("NOTIFY=SUCCESS,FAILURE" in rcpt[0].split(), "RCPT %r" % rcpt[0], r)
        expect(json_out(r)["queue_id"] == "RAW1", "queue id from the reply", r)


@run.case
def json_shape_on_success():
    with Smtpd() as s:
        r = send("--server", server_arg(s), "--tls", "none", "--from", "a@example.org",
                 "--to", "b@example.net", "--to", "c@example.net", "--subject", "j",
                 "--text", TEXT, "--json")
        expect_exit(r, 0)
        j = json_out(r)
        expect(j["ok"] is True and j["error"] is None, "ok without error", r)
        expect(j["reply"]["code"] == 250 and j["reply"]["enhanced"] == "2.0.0", "reply", r)
        expect("queued as " + QUEUE_ID in j["reply"]["text"], "queued as text", r)
        expect([x["address"] for x in j["recipients"]] == ["b@example.net", "c@example.net"],
               "recipient addresses", r)
        for x in j["recipients"]:
            expect(x["code"] == 250 and x["enhanced"] == "2.1.5" and x["text"] == "Ok",
                   "recipient reply %r" % x, r)
        msg = parse(s.messages[0]["data"])
        expect(j["message_id"] == msg["Message-ID"], "message_id matches the header", r)


@run.case
def message_file_sendmail_t():
    raw = ("From: Zoë <zoe@example.org>\n"
           "To: Bob <bob@example.net>, carol@example.net\n"
           "Cc: \"Doe, John\" <john@example.com>\n"
           "Bcc: secret@example.com,\n other-secret@example.com\n"
           "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n"
           "Message-ID: <prepared.1@example.org>\n"
           "\n"
           "Body line one\n"
           "..starts with dots\n"
           ".\n"
           "end\n").encode()
    path = write("prepared.eml", raw)
    with Smtpd() as s:
        r = send("--server", server_arg(s), "--tls", "none", "--from", "bounce@example.org",
                 "--message", path)
        expect_exit(r, 0)
        m = s.messages[0]
        expect(m["mail_from"] == "bounce@example.org", "envelope from the flag %r" % m["mail_from"])
        expect(m["rcpt_tos"] == ["bob@example.net", "carol@example.net", "john@example.com",
                                 "secret@example.com", "other-secret@example.com"],
               "recipients from To/Cc/Bcc %r" % m["rcpt_tos"])
        want = b"".join(line + b"\r\n" for line in raw.split(b"\n")[:-1]
                        if not line.startswith(b"Bcc:") and line != b" other-secret@example.com")
        expect(m["data"] == want, "bytes as given, Bcc removed, CRLF\n%r\n%r" % (m["data"], want))


@run.case
def message_file_with_explicit_recipients():
    path = write("prepared2.eml", "From: a@example.org\r\nTo: listed@example.net\r\n"
                                  "Subject: x\r\n\r\nhi\r\n")
    with Smtpd() as s:
        r = send("--server", server_arg(s), "--tls", "none", "--from", "a@example.org",
                 "--to", "only@example.net", "--bcc", "Only <only@example.net>", "--message", path)
        expect_exit(r, 0)
        expect(s.messages[0]["rcpt_tos"] == ["only@example.net"],
               "envelope from the flags only, once: %r" % s.messages[0]["rcpt_tos"])
        expect(s.messages[0]["data"] == open(path, "rb").read(), "bytes unchanged")


@run.case
def ipv6_literal_server():
    if not have_ipv6_loopback():
        print("skip ipv6_literal_server: this machine has no ::1")
        return
    with Smtpd(host="::1") as s:
        r = send("--server", "[::1]:%d" % s.port, "--tls", "none", "--from", "a@example.org",
                 "--to", "b@example.net", "--text", TEXT, "--json")
        expect_exit(r, 0)
        j = json_out(r)
        expect(j["server"] == "[::1]:%d" % s.port and j["remote_address"] == "::1",
               "server %r, address %r" % (j["server"], j["remote_address"]), r)
        expect(len(s.messages) == 1, "received over IPv6", r)
    r = send("--server", "[::1", "--from", "a@example.org", "--to", "b@example.net",
             "--text", TEXT)
    expect_exit(r, 64)
    expect("--server" in r.stderr, "malformed --server named", r)


@run.case
def usage_errors_name_the_argument():
    cases = [
        (["--tls", "sometimes"], "--tls"),
        (["--frobnicate"], "--frobnicate"),
        (["--priority", "high"], "--priority"),
        (["--timeout", "soon"], "--timeout"),
    ]
    base = ["--server", "127.0.0.1:1", "--from", "a@example.org", "--to", "b@example.net",
            "--text", TEXT]
    for extra, name in cases:
        r = send(*(base + extra))
        expect_exit(r, 64)
        expect(name in r.stderr, "message names %s" % name, r)
    r = send("--server", "127.0.0.1:1", "--to", "b@example.net", "--text", TEXT)
    expect_exit(r, 64)
    expect("--from" in r.stderr, "missing --from named", r)
    r = send("--from", "a@example.org", "--to", "b@example.net", "--text", TEXT)
    expect_exit(r, 64)
    expect("--server" in r.stderr, "missing --server named", r)


@run.case
def help_lists_every_option():
    r = send("--help")
    expect_exit(r, 0)
    for opt in ["--server", "--tls", "--ca-file", "--insecure", "--user", "--password-file",
                "--auth", "--from", "--to", "--cc", "--bcc", "--subject", "--text", "--html",
                "--attach", "--header", "--message", "--priority", "--verbose", "--json",
                "--timeout", "SMTPKIT_PASSWORD"]:
        expect(opt in r.stdout, "help mentions %s" % opt, r)


@run.case
def unreadable_attachment_is_bad_data():
    with Smtpd() as s:
        missing = tmp.join("no-such-file.pdf")
        r = send("--server", server_arg(s), "--tls", "none", "--from", "a@example.org",
                 "--to", "b@example.net", "--text", TEXT, "--attach", missing)
        expect_exit(r, 65)
        expect(missing in r.stderr, "names the file", r)
        expect(s.messages == [], "nothing sent")


@run.case
def malformed_address_is_bad_data():
    with Smtpd() as s:
        for bad in ["not an address", "a@b@c", "x <y@example.org"]:
            r = send("--server", server_arg(s), "--tls", "none", "--from", "a@example.org",
                     "--to", bad, "--text", TEXT)
            expect_exit(r, 65)
            expect(bad in r.stderr, "names the address %r" % bad, r)
        r = send("--server", server_arg(s), "--tls", "none", "--from", "Eve\r\nBcc: x@y",
                 "--to", "b@example.net", "--text", TEXT)
        expect_exit(r, 65)
        expect(s.messages == [], "nothing sent")


@run.case
def connection_refused_is_temporary():
    port = sktest.free_port()
    r = send("--server", "127.0.0.1:%d" % port, "--tls", "none", "--from", "a@example.org",
             "--to", "b@example.net", "--text", TEXT, "--json")
    expect_exit(r, 75)
    j = json_out(r)
    expect(j["ok"] is False and j["error"]["step"] == "connect", "JSON names connect", r)
    r = send("--server", "127.0.0.1:%d" % port, "--tls", "none", "--from", "a@example.org",
             "--to", "b@example.net", "--text", TEXT)
    expect("connect" in r.stderr, "error block names the step", r)


try:
    run.finish()
finally:
    tmp.cleanup()
