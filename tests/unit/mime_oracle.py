#!/usr/bin/python3
"""Check messages rendered by SMTPKit's composer with Python's email package.

Run by tests/unit/test_mime.c: argv[1] is a directory holding caseN.eml
files and expected.json (what each message was composed from). Every
message must parse without defects, and the decoded addresses, subject,
bodies, attachments and inline parts must equal what was put in.
Exit status 0 when all cases pass, 1 otherwise (each failure printed).
"""

import base64
import email
import email.policy
import json
import os
import re
import sys

failures = []


def check(cond, case, what):
    if not cond:
        failures.append(f"{case}: {what}")
    return cond


def check_eq(got, want, case, what):
    return check(got == want, case, f"{what}: got {got!r}, want {want!r}")


def check_raw(raw, exp, case):
    """Line ends, line lengths, 7-bit output, no Bcc."""
    check(raw.endswith(b"\r\n"), case, "message does not end with CRLF")
    lines = raw.split(b"\r\n")
    check(all(b"\n" not in l and b"\r" not in l for l in lines), case, "bare CR or LF")
    for i, l in enumerate(lines):
        # RFC 5322 2.1.1; every line the composer writes can stay within 78.
        if not check(len(l) <= 78, case, f"line {i + 1} has {len(l)} octets: {l[:90]!r}"):
            break
    if not exp.get("smtputf8"):
        check(all(b < 128 for b in raw), case, "non-ASCII octet in a message without SMTPUTF8")
    header = raw.split(b"\r\n\r\n", 1)[0]
    check(not re.search(rb"(?im)^bcc:", header), case, "Bcc field in the output")
    for addr in exp.get("bcc", []):
        check(addr.encode() not in raw, case, f"Bcc address {addr} leaked")


def addresses(msg, name):
    h = msg[name]
    if h is None:
        return None
    return [[a.display_name, a.addr_spec] for a in h.addresses]


def header_defects(msg):
    out = []
    for name, value in msg.items():
        for d in getattr(value, "defects", []):
            # RFC 6532 addresses are allowed in SMTPUTF8 messages.
            if isinstance(d, email.errors.NonASCIILocalPartDefect):
                continue
            out.append(f"{name}: {d!r}")
    return out


def check_boundaries(raw, msg, case):
    seen = set()
    for part in msg.walk():
        if not part.is_multipart():
            continue
        b = part.get_boundary()
        check(b is not None and b not in seen, case, f"boundary {b!r} missing or reused")
        seen.add(b)
        # The boundary occurs only in the parameter and the delimiter lines.
        occurrences = raw.count(b.encode())
        delimiters = len(part.get_payload()) + 1
        check_eq(occurrences, delimiters + 1, case, f"occurrences of boundary {b}")
        lines = raw.split(b"\r\n")
        delim_lines = [l for l in lines if l.startswith(b"--" + b.encode())]
        check_eq(len(delim_lines), delimiters, case, f"delimiter lines of {b}")


def text_of(part):
    data = part.get_payload(decode=True)
    return data.decode(part.get_content_charset() or "us-ascii").replace("\r\n", "\n")


def check_case(directory, exp):
    case = exp["file"]
    with open(os.path.join(directory, case), "rb") as f:
        raw = f.read()
    check_raw(raw, exp, case)
    # 7-bit messages are parsed as bytes, as a mail reader gets them; those
    # with RFC 6532 (UTF-8) header fields as text, so the addresses stay
    # readable.
    if all(b < 128 for b in raw):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    else:
        msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)

    for part in msg.walk():
        check(not part.defects, case, f"defects in {part.get_content_type()}: {part.defects}")
    check(not header_defects(msg), case, f"header defects: {header_defects(msg)}")

    check_eq(msg["MIME-Version"], "1.0", case, "MIME-Version")
    check(msg["Date"] is not None and msg["Date"].datetime is not None, case, "Date")
    mid = msg["Message-ID"]
    check(mid is not None and re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", str(mid)), case,
          f"Message-ID {mid!r}")
    if exp.get("message_id"):
        check_eq(str(mid), exp["message_id"], case, "Message-ID")

    check_eq(addresses(msg, "From"), [exp["from"]], case, "From")
    for field, key in (("To", "to"), ("Cc", "cc"), ("Reply-To", "reply_to"), ("Sender", "sender")):
        want = exp.get(key) or None
        if key in ("reply_to", "sender") and want:
            want = [want]
        check_eq(addresses(msg, field), want, case, field)
    if "subject" in exp:
        check_eq(str(msg["Subject"]), exp["subject"], case, "Subject")
    for name, value in exp.get("headers", {}).items():
        check_eq(str(msg[name]), value, case, name)

    check_eq(msg.get_content_type(), exp["structure"], case, "top-level type")
    check_boundaries(raw, msg, case)

    if exp.get("text") is not None:
        body = msg.get_body(("plain",))
        if check(body is not None, case, "no text/plain body"):
            check_eq(text_of(body), exp["text"], case, "text body")
    if exp.get("html") is not None:
        body = msg.get_body(("html",))
        if check(body is not None, case, "no text/html body"):
            check_eq(text_of(body), exp["html"], case, "HTML body")

    atts = [p for p in msg.walk() if p.get_content_disposition() == "attachment"]
    check_eq(len(atts), len(exp.get("attachments", [])), case, "number of attachments")
    for part, want in zip(atts, exp.get("attachments", [])):
        check_eq(part.get_filename(), want["filename"], case, "attachment file name")
        check_eq(part.get_content_type(), want["type"], case, "attachment type")
        check_eq(part.get_payload(decode=True), base64.b64decode(want["data"]), case,
                 f"bytes of {want['filename']}")

    inl = [p for p in msg.walk() if p["Content-ID"] is not None]
    check_eq(len(inl), len(exp.get("inline", [])), case, "number of inline parts")
    for part, want in zip(inl, exp.get("inline", [])):
        check_eq(str(part["Content-ID"]), "<" + want["cid"] + ">", case, "Content-ID")
        check_eq(part.get_content_disposition(), "inline", case, "inline disposition")
        check_eq(part.get_filename(), want["filename"], case, "inline file name")
        check_eq(part.get_content_type(), want["type"], case, "inline type")
        check_eq(part.get_payload(decode=True), base64.b64decode(want["data"]), case,
                 "inline bytes")
        parent = [p for p in msg.walk() if p.is_multipart() and part in p.get_payload()]
        check(parent and parent[0].get_content_type() == "multipart/related", case,
              "inline part outside multipart/related")


def envelope_key(addr):
    """Recipients compare as SMTPKit dedupes them: domain without case."""
    local, _, domain = addr.rpartition("@")
    return (local, domain.lower())


def check_envelope(directory, exp):
    """sk_message_parse_envelope must agree with Python's address parser."""
    case = exp["file"]
    with open(os.path.join(directory, case), "rb") as f:
        raw = f.read()
    msg = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    origin = msg["Sender"] or msg["From"]
    check_eq(exp["reverse_path"], origin.addresses[0].addr_spec, case, "reverse-path")
    want, seen = [], set()
    for field in ("To", "Cc", "Bcc"):
        for h in msg.get_all(field) or []:
            for a in h.addresses:
                if envelope_key(a.addr_spec) not in seen:
                    seen.add(envelope_key(a.addr_spec))
                    want.append(a.addr_spec)
    # SMTPKit keeps the order of the fields, Python takes all To first:
    # compare without order.
    check_eq(sorted(exp["recipients"]), sorted(want), case, "recipients")


def main():
    directory = sys.argv[1]
    with open(os.path.join(directory, "expected.json"), encoding="utf-8") as f:
        cases = json.load(f)
    if not cases:
        print("no cases", file=sys.stderr)
        return 1
    for exp in cases:
        try:
            check_case(directory, exp)
        except Exception as e:  # a crash in parsing is a failure of the case
            failures.append(f"{exp.get('file')}: {type(e).__name__}: {e}")
    with open(os.path.join(directory, "envelopes.json"), encoding="utf-8") as f:
        envelopes = json.load(f)
    for exp in envelopes:
        try:
            check_envelope(directory, exp)
        except Exception as e:
            failures.append(f"{exp.get('file')}: {type(e).__name__}: {e}")
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    print(f"mime_oracle: {len(cases)} messages, {len(envelopes)} envelopes, "
          f"{len(failures)} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
