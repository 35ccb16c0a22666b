#!/usr/bin/python3
"""The bounce corpus (tests/bounces): `smtpkit bounce --json` on every file
must give the detector, recipients, actions, classes and suppressions of
expected.tsv, and a message that is no bounce must be said to be none (exit
65). Prints recognition and class agreement by family (the figures of
docs/delivery.md); any disagreement fails the test. Where a bounce carries
the returned message or its header block as a MIME part, its
original_message_id must be that part's Message-ID as Python's email package
reads it (null when the part has none). Also: `--rules` with a file whose
define lines differ changes the suppression, and a missing file exits 66."""

import collections
import email
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sktest  # noqa: E402

CORPUS = os.path.join(os.environ.get("SK_SOURCE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")), "tests", "bounces")


def load_expected():
    rows = []
    with open(os.path.join(CORPUS, "expected.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            file, family, detector, rcpt, action, cls, suppress = line.rstrip("\n").split("\t")
            rows.append(dict(file=file, family=family, detector=detector, recipient=rcpt,
                             action=action, cls=cls, suppress=suppress))
    return rows


RETURNED_TYPES = ("message/rfc822", "message/global")
HEADER_TYPES = ("text/rfc822-headers", "message/global-headers")


def returned_message_id(msg, depth=0):
    """The Message-ID of the first returned message or header block part of
    msg ("" when it has none), None when msg carries neither. A returned
    message that itself carries one is a forwarded bounce: its own returned
    message's (the reader reads the bounce inside then)."""
    for part in msg.get_payload() if msg.is_multipart() else []:
        ctype = part.get_content_type()
        if ctype in RETURNED_TYPES:
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) else email.message_from_string(inner)
            deeper = returned_message_id(inner, depth + 1) if depth < 1 else None
            return deeper if deeper is not None else inner.get("Message-ID", "").strip()
        if ctype in HEADER_TYPES:
            text = part.get_payload(decode=True).decode("utf-8", "replace")
            return email.message_from_string(text).get("Message-ID", "").strip()
        if part.is_multipart():
            found = returned_message_id(part, depth)
            if found is not None:
                return found
    return None


def main():
    rows = load_expected()
    failures = []
    bounce_files = sorted({r["file"] for r in rows if r["detector"] != "-"})
    none_files = sorted({r["file"] for r in rows if r["detector"] == "-"})
    r = sktest.smtpkit("bounce", "--json", *[os.path.join(CORPUS, f) for f in bounce_files],
                       timeout=60)
    sktest.check(r.returncode == 0, "smtpkit bounce: exit %d: %s" % (r.returncode, r.stderr))
    got = {os.path.relpath(res["file"], CORPUS): res for res in json.loads(r.stdout)}

    # Per family: bounces, recipients named, recipients right, classes right.
    stats = collections.OrderedDict()
    for row in rows:
        fam = stats.setdefault(row["family"], collections.Counter())
        if row["detector"] == "-":
            continue
        fam["recipients"] += 1
        res = got.get(row["file"])
        found = [x for x in (res or {}).get("recipients", []) if x["recipient"] == row["recipient"]]
        if res and res["detector"] == row["detector"]:
            fam["detected"] += 1
        if found:
            fam["recipient_right"] += 1
            x = found[0]
            if x["class"] == row["cls"]:
                fam["class_right"] += 1
            ok = (res["detector"] == row["detector"] and x["action"] == row["action"]
                  and x["class"] == row["cls"]
                  and x["suppress"] == (row["suppress"] == "yes"))
        else:
            ok = False
        if not ok:
            failures.append("%s %s: want %s %s %s suppress=%s, got %s" % (
                row["file"], row["recipient"], row["detector"], row["action"], row["cls"],
                row["suppress"], json.dumps(res)))
    # Nothing reported that expected.tsv does not list.
    for f, res in got.items():
        want = {row["recipient"] for row in rows if row["file"] == f}
        extra = [x["recipient"] for x in res["recipients"] if x["recipient"] not in want]
        if extra:
            failures.append("%s: recipients not expected: %r" % (f, extra))
    # The returned message's Message-ID, where the bounce carries it.
    with_id = 0
    for f, res in sorted(got.items()):
        with open(os.path.join(CORPUS, f), "rb") as fh:
            want = returned_message_id(email.message_from_bytes(fh.read()))
        if want is None:
            continue
        with_id += 1 if want else 0
        if res.get("original_message_id") != (want or None):
            failures.append("%s: original_message_id %r, want %r"
                            % (f, res.get("original_message_id"), want or None))
    print("original_message_id: %d bounces return a message with a Message-ID" % with_id)
    if not with_id:
        failures.append("no bounce in the corpus returns a message with a Message-ID")
    for f in none_files:
        r = sktest.smtpkit("bounce", os.path.join(CORPUS, f), timeout=30)
        if r.returncode != 65 or "not a bounce SMTPKit recognises" not in r.stdout:
            failures.append("%s: no bounce, got exit %d: %s" % (f, r.returncode, r.stdout))

    print("%-20s %9s %10s %10s" % ("family", "recipients", "recipient", "class"))
    for fam, c in stats.items():
        if c["recipients"]:
            print("%-20s %9d %9d%% %9d%%" % (fam, c["recipients"],
                                              100 * c["recipient_right"] // c["recipients"],
                                              100 * c["class_right"] // c["recipients"]))

    # --rules: a file's own define lines decide the suppression.
    tmp = sktest.TempDir("sk-bounce-corpus-")
    try:
        rules = tmp.join("rules.conf")
        with open(rules, "w") as f:
            f.write("define class=bad-mailbox suppress=no\nclass=bad-mailbox status=5.1.1\n")
        r = sktest.smtpkit("bounce", "--json", "--rules", rules,
                           os.path.join(CORPUS, "postfix", "unknown.eml"), timeout=30)
        x = json.loads(r.stdout)[0]["recipients"][0] if r.returncode == 0 else None
        if not x or x["class"] != "bad-mailbox" or x["suppress"]:
            failures.append("--rules: want bad-mailbox without suppression: %s %s"
                            % (r.stdout, r.stderr))
        with open(rules, "w") as f:
            f.write("class=nope code=550\n")
        r = sktest.smtpkit("bounce", "--rules", rules,
                           os.path.join(CORPUS, "postfix", "unknown.eml"), timeout=30)
        if r.returncode != 78 or "rules.conf:1: unknown class" not in r.stderr:
            failures.append("bad --rules: exit %d %s" % (r.returncode, r.stderr))
        r = sktest.smtpkit("bounce", tmp.join("missing.eml"), timeout=30)
        if r.returncode != 66 or "missing.eml" not in r.stderr:
            failures.append("missing file: exit %d %s" % (r.returncode, r.stderr))
        r = sktest.smtpkit("bounce", timeout=30)
        if r.returncode != 64 or "FILE" not in r.stderr:
            failures.append("no file: exit %d %s" % (r.returncode, r.stderr))
    finally:
        tmp.cleanup()
    if failures:
        sktest.fail("\n".join(failures))
    print("ok")


if __name__ == "__main__":
    main()
